//! The int8 dense-layer kernels of inference, their weight layout, and the
//! one-row reference they all reproduce byte for byte.
//!
//! **Arithmetic.** A kernel reads its input as unsigned bytes `u = q + 128`
//! (`q` the quantized value): the pixels of an image as they are, for a model
//! whose input zero point is −128, or the previous layer's outputs, which the
//! kernels store that way. The bias is folded for that input,
//! `bias = round(b / (s_in·s_w)) − (z_in + 128)·Σw`, so that
//! `acc = bias + Σ w·u` is the real product in accumulator units. Then
//! requantization per output channel and saturation to i8, with ReLU and the
//! identity in integers; any other activation is a table lookup: the
//! requantized accumulator is the pre-activation `q` (its own quantization)
//! and the output is `table[q + 128]` ([`ActivationTable`], computed when the
//! model is quantized), in the one epilogue every kernel shares.
//!
//! **Layout** ([`int8_weight_offset`]). Rows in blocks of four; in a block,
//! columns in groups of four, the four rows' four bytes of a group one after
//! the other (16 bytes), then the block's leftover `n mod 4` columns row by
//! row; leftover rows (`rows mod 4`) row-major after the blocks. So one
//! pointer walks a block while the kernel computes its four rows, each input
//! word used four times (as CMSIS-NN's reordered `_opt` weights).
//!
//! **Kernels.**
//! - Armv7E-M (Cortex-M4/M7, cfg `ember_dsp`): eight columns a step, bytes
//!   widened in pairs (`UXTB16`, `SXTB16`) and multiplied-accumulated in
//!   pairs (`SMLAD`), in assembly ([`dsp`]). A layer of whole steps on
//!   unflipped input, ReLU or the identity, whose requantization pairs all
//!   take [`requantize`]'s 32-bit path runs its blocks in one assembly loop
//!   with its own epilogue (`SMMUL`, `USAT`, `USUB8`/`SEL`: ten
//!   instructions an output, `dsp::Epilogue`); any other layer, the shared
//!   one. The same steps and epilogue run on the host with the instructions
//!   emulated, which is how the tests compare them with the portable
//!   kernel and [`requantize`].
//! - Armv6-M (Cortex-M0, cfg `ember_thumb1`): two rows of a block at a time,
//!   in assembly ([`thumb1`]).
//! - Elsewhere: the portable kernel, block by block.
//!
//! The int8 convolutions of graph files have their own kernels on the same
//! two targets (`deploy::graph::im2col`: im2col of two output positions,
//! then two output channels × two positions a step), whose inner steps live
//! here beside the dense ones: `dsp::Dsp::conv_step` (`SMLAD`, 18
//! instructions for 16 multiply-adds) and `thumb1::conv_pair` (34
//! instructions for 8).

#[cfg_attr(not(ember_dsp), allow(dead_code))]
pub(crate) mod dsp;
#[cfg(ember_thumb1)]
pub(crate) mod thumb1;

use super::format::{ActivationTable, LayerHeader};
use super::quant::requantize;
use super::Activation;

mod sealed {
    pub trait Sealed {}
    impl Sealed for i8 {}
    impl Sealed for u8 {}
}

/// The input element of an int8 layer: `i8` (the quantized value `q`) or
/// `u8` (a byte `p` standing for the quantized value `p − 128`, as a pixel
/// `p` stands for `p / 255` in a model whose input quantization is scale
/// 1/255, zero point −128). Sealed: only these two.
pub trait Int8Input: Copy + sealed::Sealed {
    /// What XOR-ing an element's byte with turns it into `q + 128`.
    const FLIP: u8;
    /// The elements' bytes.
    fn bytes(x: &[Self]) -> &[u8];
}

impl Int8Input for i8 {
    const FLIP: u8 = 0x80;
    fn bytes(x: &[i8]) -> &[u8] {
        // SAFETY: i8 and u8 have the same size and alignment and every bit
        // pattern is valid for both; the slice borrows `x`.
        unsafe { core::slice::from_raw_parts(x.as_ptr().cast::<u8>(), x.len()) }
    }
}

impl Int8Input for u8 {
    const FLIP: u8 = 0;
    fn bytes(x: &[u8]) -> &[u8] {
        x
    }
}

/// Where weight `(o, j)` (output row `o`, input column `j`) of an int8
/// layer with `rows` outputs and `n` inputs is stored, in elements from the
/// start of the weights (see the module documentation).
pub fn int8_weight_offset(o: usize, j: usize, rows: usize, n: usize) -> usize {
    let full = rows / 4 * 4;
    if o >= full {
        return o * n + j;
    }
    let (block, r) = (o / 4, o % 4);
    let body = n / 4 * 4;
    let base = 4 * n * block;
    if j < body {
        base + 16 * (j / 4) + 4 * r + j % 4
    } else {
        base + 4 * body + (n - body) * r + (j - body)
    }
}

/// The int8 dense layer (see the module documentation for the arithmetic and
/// the layout): `x` as [`Int8Input`], `y` as `i8` values; `table` the
/// activation's for an activation other than ReLU and the identity (without
/// one, such a layer outputs its output zero point). Runs the target's
/// kernel; every kernel gives the same bytes.
#[allow(clippy::too_many_arguments)]
pub fn dense_i8<X: Int8Input>(
    weight: &[i8],
    bias: &[i32],
    requant: &[i32],
    table: Option<&ActivationTable>,
    x: &[X],
    y: &mut [i8],
    h: &LayerHeader,
) {
    let layer = Int8Layer {
        weight,
        bias,
        requant,
        table: table.map(|t| (&t.values, t.pre_zero)),
        header: h,
        out_flip: 0,
        fast_requant: super::quant::all_fast(requant),
    };
    let x = Input {
        bytes: X::bytes(x),
        flip: X::FLIP,
    };
    run(&layer, x, bytes_mut(y));
}

/// The bytes of `i8` values.
pub(crate) fn bytes_mut(x: &mut [i8]) -> &mut [u8] {
    // SAFETY: i8 and u8 have the same size and alignment and every bit
    // pattern is valid for both; the slice borrows `x` uniquely.
    unsafe { core::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<u8>(), x.len()) }
}

/// Bytes read as `i8` values.
pub(crate) fn as_i8(x: &[u8]) -> &[i8] {
    // SAFETY: as in `bytes_mut`, shared.
    unsafe { core::slice::from_raw_parts(x.as_ptr().cast::<i8>(), x.len()) }
}

/// The target's kernel.
#[inline]
pub(crate) fn run(layer: &Int8Layer<'_, '_>, x: Input<'_>, y: &mut [u8]) {
    #[cfg(ember_dsp)]
    dsp::packed::<dsp::Arm>(layer, x, y);
    #[cfg(ember_thumb1)]
    thumb1::kernel(layer, x, y);
    #[cfg(not(any(ember_dsp, ember_thumb1)))]
    portable(layer, x, y);
}

/// An int8 layer's input as the kernels read it: bytes, and what to XOR each
/// with to get `u = q + 128` (0 for `u8` input, 0x80 for `i8`).
#[derive(Clone, Copy)]
pub(crate) struct Input<'x> {
    pub(crate) bytes: &'x [u8],
    pub(crate) flip: u8,
}

impl Input<'_> {
    /// `u` for byte `b`.
    #[inline(always)]
    fn value(self, b: u8) -> i32 {
        i32::from(b ^ self.flip)
    }
}

/// An int8 layer's parameters, as the kernels take them.
#[derive(Clone, Copy)]
pub(crate) struct Int8Layer<'a, 'h> {
    pub(crate) weight: &'a [i8],
    pub(crate) bias: &'a [i32],
    pub(crate) requant: &'a [i32],
    /// The activation table and the pre-activation zero point, for an
    /// activation other than ReLU and the identity.
    pub(crate) table: Option<(&'a [i8; 256], i32)>,
    pub(crate) header: &'h LayerHeader,
    /// XOR-ed into each output byte: 0 stores `q` (as `i8`), 0x80 stores
    /// `q + 128` (the next layer's input).
    pub(crate) out_flip: u8,
    /// Every requantization pair takes the 32-bit path
    /// (`quant::requant_is_fast`): a kernel may run its own epilogue.
    pub(crate) fast_requant: bool,
}

impl Int8Layer<'_, '_> {
    /// The output byte of row `o` from its accumulator.
    #[inline(always)]
    fn output(&self, o: usize, acc: i32) -> u8 {
        let h = self.header;
        let (m, s) = match self.requant.get(2 * o..2 * o + 2) {
            Some(&[m, s]) => (m, s),
            _ => (0, 0),
        };
        let floor = match h.activation {
            Activation::Relu => h.out_zero,
            Activation::Identity => i32::MIN,
            _ => return self.table_output(acc, m, s),
        };
        self.store(requantize(acc, m, s).saturating_add(h.out_zero).max(floor))
    }

    /// The output byte of accumulator `acc` for an activation other than
    /// ReLU and the identity: requantized by `(m, s)` to the
    /// pre-activation, looked up in the activation table. Out of line (as
    /// [`Self::table_block`]): the kernels inline their ReLU and identity
    /// epilogues, and the table paths cost flash only once.
    #[inline(never)]
    fn table_output(&self, acc: i32, m: i32, s: i32) -> u8 {
        let q = requantize(acc, m, s);
        match self.table {
            Some((values, zero)) => {
                (ActivationTable::lookup(values, zero, q) as u8) ^ self.out_flip
            }
            // Never reached: `Model::parse` and `Model::from_layers` refuse
            // such a layer without a table.
            None => self.store(self.header.out_zero),
        }
    }

    /// [`Self::output_block`] through the activation table.
    #[inline(never)]
    fn table_block(&self, acc: [i32; 4], rq: &[i32], out: &mut [u8]) {
        for ((o, a), p) in out.iter_mut().zip(acc).zip(rq.chunks_exact(2)) {
            *o = self.table_output(a, p[0], p[1]);
        }
    }

    /// `q` saturated to i8, as the output byte.
    #[inline(always)]
    fn store(&self, q: i32) -> u8 {
        (q.clamp(-128, 127) as i8 as u8) ^ self.out_flip
    }

    /// Rows that the layer, `x` and `y` all have.
    fn rows(&self, n: usize, y: usize) -> usize {
        (self.weight.len() / n.max(1)).min(self.bias.len()).min(y)
    }

    /// Writes `out`, the four outputs of a block, from their accumulators
    /// and `rq`, their requantization pairs (the activation's kind decided
    /// once per block).
    #[inline(always)]
    fn output_block(&self, acc: [i32; 4], rq: &[i32], out: &mut [u8]) {
        let h = self.header;
        let floor = match h.activation {
            Activation::Relu => h.out_zero,
            Activation::Identity => i32::MIN,
            _ => return self.table_block(acc, rq, out),
        };
        for ((o, a), p) in out.iter_mut().zip(acc).zip(rq.chunks_exact(2)) {
            *o = self.store(
                requantize(a, p[0], p[1])
                    .saturating_add(h.out_zero)
                    .max(floor),
            );
        }
    }
}

/// The one-row reference, through [`int8_weight_offset`]: what every int8
/// kernel must reproduce.
#[cfg(test)]
pub(crate) fn reference(layer: &Int8Layer<'_, '_>, x: Input<'_>, y: &mut [u8]) {
    let n = x.bytes.len().max(1);
    let rows = layer.rows(n, y.len());
    for (o, yo) in y.iter_mut().enumerate().take(rows) {
        let mut acc = layer.bias[o];
        for (j, &b) in x.bytes.iter().enumerate() {
            let w = layer.weight[int8_weight_offset(o, j, rows, n)];
            acc = acc.wrapping_add(i32::from(w) * x.value(b));
        }
        *yo = layer.output(o, acc);
    }
}

/// The portable kernel: block by block, group by group.
#[cfg_attr(any(ember_dsp, ember_thumb1), allow(dead_code))]
pub(crate) fn portable(layer: &Int8Layer<'_, '_>, x: Input<'_>, y: &mut [u8]) {
    blocks(layer, x, y, |_, _| 0, |_, _| 0);
}

/// Runs a layer in the weight layout, the driver of every kernel: per
/// block, `groups(acc, block)` adds the products of as many leading
/// four-column groups as the target's loop does and returns how many, the
/// portable loop does the block's other columns, and the block's four
/// outputs are written; then per leftover row, `row(acc, w)` adds the
/// products of as many leading columns as it does and returns how many, and
/// the portable loop does the rest.
#[inline(always)]
pub(crate) fn blocks(
    layer: &Int8Layer<'_, '_>,
    x: Input<'_>,
    y: &mut [u8],
    mut groups: impl FnMut(&mut [i32; 4], &[i8]) -> usize,
    mut row: impl FnMut(&mut i32, &[i8]) -> usize,
) {
    let n = x.bytes.len().max(1);
    let rows = layer.rows(n, y.len());
    let q = rows / 4;
    let full = layer.weight[..4 * q * n]
        .chunks_exact(4 * n)
        .zip(layer.bias[..4 * q].chunks_exact(4))
        .zip(layer.requant[..8 * q].chunks_exact(8))
        .zip(y[..4 * q].chunks_exact_mut(4));
    for (((block, bias), rq), out) in full {
        let mut acc = [bias[0], bias[1], bias[2], bias[3]];
        let done = groups(&mut acc, block);
        if 4 * done != x.bytes.len() {
            block_columns(&mut acc, block, x, done);
        }
        layer.output_block(acc, rq, out);
    }
    let first = 4 * q;
    let rest = layer.weight[first * n..rows * n]
        .chunks_exact(n)
        .zip(&layer.bias[first..rows])
        .zip(&mut y[first..rows]);
    for (k, ((w, &bias), yo)) in rest.enumerate() {
        let mut acc = bias;
        let done = row(&mut acc, w).min(w.len()).min(x.bytes.len());
        for (&wv, &b) in w[done..].iter().zip(&x.bytes[done..]) {
            acc = acc.wrapping_add(i32::from(wv) * x.value(b));
        }
        *yo = layer.output(first + k, acc);
    }
}

/// Adds to `acc` the products of a block's columns from group `from_group`
/// on: its remaining four-column groups, then its leftover columns. (Out of
/// line: on a microcontroller it is the rare path, and flash matters more.)
#[inline(never)]
fn block_columns(acc: &mut [i32; 4], block: &[i8], x: Input<'_>, from_group: usize) {
    let n = x.bytes.len();
    let body = n / 4 * 4;
    let t = n - body;
    // Column by column; each row's weight of column `j` is at `at + 4r`
    // in a group, at `at + t·r` in the leftover columns.
    for j in (4 * from_group).min(n)..n {
        let (at, stride) = if j < body {
            (16 * (j / 4) + j % 4, 4)
        } else {
            (4 * body + (j - body), t)
        };
        let u = x.value(x.bytes[j]);
        for (r, a) in acc.iter_mut().enumerate() {
            let w = block.get(at + stride * r).copied().unwrap_or(0);
            *a = a.wrapping_add(i32::from(w) * u);
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::dsp::{packed, Emulated};
    use super::*;
    use crate::deploy::QuantParams;
    use proptest::prelude::*;
    use std::{vec, vec::Vec};

    fn header(act: Activation, out_zero: i32) -> LayerHeader {
        LayerHeader {
            in_features: 0,
            out_features: 0,
            activation: act,
            in_scale: 0.02,
            in_zero: -3,
            out_scale: 0.05,
            out_zero,
        }
    }

    #[test]
    fn layout_is_a_permutation() {
        for rows in 1..11 {
            for n in 1..14 {
                let mut seen = vec![false; rows * n];
                for o in 0..rows {
                    for j in 0..n {
                        let at = int8_weight_offset(o, j, rows, n);
                        assert!(!seen[at], "{rows}x{n}: ({o}, {j}) -> {at} twice");
                        seen[at] = true;
                    }
                }
            }
        }
        // Block 0, group 1, row 2, column 5 (= group 1, byte 1).
        assert_eq!(int8_weight_offset(2, 5, 8, 8), 16 + 8 + 1);
    }

    fn layer_strategy() -> impl Strategy<Value = (usize, usize, Vec<i8>, Vec<i32>, Vec<u8>, u8)> {
        (1usize..12, 1usize..40).prop_flat_map(|(rows, n)| {
            (
                Just(rows),
                Just(n),
                proptest::collection::vec(any::<i8>(), rows * n),
                proptest::collection::vec(-5000i32..5000, rows),
                proptest::collection::vec(any::<u8>(), n),
                0u8..3,
            )
        })
    }

    proptest! {
        /// The packed (emulated DSP) and portable kernels give the
        /// reference's bytes, for both inputs, both output forms and each
        /// kind of activation.
        #[test]
        fn kernels_agree((rows, _n, weight, bias, xb, act) in layer_strategy()) {
            let acts = [Activation::Relu, Activation::Identity, Activation::Tanh];
            let h = header(acts[usize::from(act)], 7);
            let values: [i8; 256] = core::array::from_fn(|i| (i as i32 * 37 % 256 - 128) as i8);
            let table = ActivationTable::new(QuantParams { scale: 0.03, zero: -5 }, values);
            let table = &table;
            let table = (h.activation != Activation::Relu && h.activation != Activation::Identity)
                .then_some(table);
            // Shifts of the 32-bit path (the DSP epilogue's), and now and
            // then one of the 64-bit path (the whole layer through the
            // shared epilogue).
            let shift = |i: usize| match (rows % 5, i) {
                (0, 0) => 1,
                _ => [-6, -2, -31, -14][i % 4],
            };
            let requant: Vec<i32> = (0..rows).flat_map(|i| [1_300_000_000 + i as i32, shift(i)]).collect();
            for out_flip in [0, 0x80] {
                let layer = Int8Layer {
                    weight: &weight, bias: &bias, requant: &requant,
                    table: table.map(|t| (&t.values, t.pre_zero)),
                    header: &h, out_flip,
                    fast_requant: crate::deploy::quant::all_fast(&requant),
                };
                for flip in [0, 0x80] {
                    let x = Input { bytes: &xb, flip };
                    let mut want = vec![0u8; rows];
                    reference(&layer, x, &mut want);
                    let mut got = vec![0u8; rows];
                    packed::<Emulated>(&layer, x, &mut got);
                    prop_assert_eq!(&got, &want);
                    let mut got = vec![0u8; rows];
                    portable(&layer, x, &mut got);
                    prop_assert_eq!(&got, &want);
                }
            }
            // A u8 input p is the i8 input p - 128.
            let shifted: Vec<i8> = xb.iter().map(|&b| (b ^ 0x80) as i8).collect();
            let (mut a, mut b) = (vec![0i8; rows], vec![0i8; rows]);
            dense_i8(&weight, &bias, &requant, table, &shifted, &mut a, &h);
            dense_i8(&weight, &bias, &requant, table, &xb, &mut b, &h);
            prop_assert_eq!(&a, &b);
        }
    }
}
