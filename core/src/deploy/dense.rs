//! The dense-layer kernels of inference, f32 and int8, for every target.
//!
//! Each kernel computes several output rows per pass over the input, so that
//! every input element loaded is used by all of them, with one accumulator
//! per row, summed in the same order as the one-row reference: the results
//! are the same bits whatever kernel a target runs.
//!
//! - f32: [`ROWS_F32`] rows per pass.
//! - int8 on targets with the Armv7E-M DSP extension (Cortex-M4/M7, cfg
//!   `ember_dsp`): four rows per pass, four columns per step, bytes widened in
//!   pairs with `SXTB16` and multiplied-accumulated in pairs with `SMLAD`
//!   (as CMSIS-NN's `arm_nn_vec_mat_mult_t_s8`). The same code runs on the
//!   host with those instructions emulated ([`dsp::Emulated`]), which is how
//!   the tests compare it with the portable kernel.
//! - int8 elsewhere (Cortex-M0, hosts): two rows per pass, one multiply and
//!   add per weight.
//!
//! An int8 layer reads its input as `i8`, or as `u8` bytes `p` standing for
//! the quantized value `p − 128` (see [`Int8Input`]): an image's pixels go in
//! as they are, read in place.

use super::format::LayerHeader;
use super::quant::requantize;
use super::Activation;

/// Output rows an f32 kernel pass computes.
pub const ROWS_F32: usize = 8;

/// `y = act(W x + b)` for `W` stored `[y.len(), x.len()]`, [`ROWS_F32`] rows
/// per pass, the rest one by one; the same bits as [`dense_f32_row`] row by
/// row.
pub fn dense_f32(weight: &[f32], bias: &[f32], x: &[f32], y: &mut [f32], act: Activation) {
    let n = x.len().max(1);
    let blocks = weight
        .chunks_exact(ROWS_F32 * n)
        .zip(bias.chunks_exact(ROWS_F32))
        .zip(y.chunks_exact_mut(ROWS_F32));
    let mut done = 0;
    for ((w, b), yo) in blocks {
        let mut r = w.chunks_exact(n);
        let mut row = || r.next().unwrap_or(&[]);
        let (w0, w1, w2, w3) = (row(), row(), row(), row());
        let (w4, w5, w6, w7) = (row(), row(), row(), row());
        let mut s = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        let cols = w0
            .iter()
            .zip(w1)
            .zip(w2)
            .zip(w3)
            .zip(w4)
            .zip(w5)
            .zip(w6)
            .zip(w7)
            .zip(x);
        for ((((((((&a0, &a1), &a2), &a3), &a4), &a5), &a6), &a7), &xv) in cols {
            s[0] += a0 * xv;
            s[1] += a1 * xv;
            s[2] += a2 * xv;
            s[3] += a3 * xv;
            s[4] += a4 * xv;
            s[5] += a5 * xv;
            s[6] += a6 * xv;
            s[7] += a7 * xv;
        }
        for (o, v) in yo.iter_mut().zip(s) {
            *o = act.apply(v);
        }
        done += ROWS_F32;
    }
    let rows = weight
        .chunks_exact(n)
        .zip(bias)
        .zip(y.iter_mut())
        .skip(done);
    for ((row, &b), yo) in rows {
        *yo = act.apply(dense_f32_row(row, b, x));
    }
}

/// One f32 row: `b + Σ w·x`, summed left to right (the reference order).
#[inline]
pub fn dense_f32_row(row: &[f32], b: f32, x: &[f32]) -> f32 {
    let mut s = b;
    for (&w, &xv) in row.iter().zip(x) {
        s += w * xv;
    }
    s
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for i8 {}
    impl Sealed for u8 {}
}

/// The input element of an int8 layer: `i8` (the quantized value itself) or
/// `u8` (a byte `p` standing for the quantized value `p − 128`, as a pixel
/// `p` stands for `p / 255` in a model whose input quantization is scale
/// 1/255, zero point −128). Sealed: only these two.
pub trait Int8Input: Copy + sealed::Sealed {
    /// What XOR-ing an element's byte with turns it into the quantized `i8`.
    const FLIP: u8;
    /// The elements' bytes.
    fn bytes(x: &[Self]) -> &[u8];
}

impl Int8Input for i8 {
    const FLIP: u8 = 0;
    fn bytes(x: &[i8]) -> &[u8] {
        // SAFETY: i8 and u8 have the same size and alignment and every bit
        // pattern is valid for both; the slice borrows `x`.
        unsafe { core::slice::from_raw_parts(x.as_ptr().cast::<u8>(), x.len()) }
    }
}

impl Int8Input for u8 {
    const FLIP: u8 = 0x80;
    fn bytes(x: &[u8]) -> &[u8] {
        x
    }
}

/// An int8 layer's input as the kernels read it: bytes, and what to XOR each
/// with to get the quantized value (0 for `i8` input, 0x80 for `u8`).
#[derive(Clone, Copy)]
pub(crate) struct Input<'x> {
    pub(crate) bytes: &'x [u8],
    pub(crate) flip: u8,
}

impl Input<'_> {
    /// The quantized value of byte `b`.
    #[inline(always)]
    fn value(self, b: u8) -> i32 {
        i32::from((b ^ self.flip) as i8)
    }
}

/// The int8 dense layer: accumulate `Σ x·w` in i32 from the folded bias,
/// requantize per output channel, apply the activation (ReLU and identity in
/// integers, the others through f32), and saturate to i8. Runs the target's
/// kernel (see the module documentation); every kernel gives the same bytes.
#[allow(clippy::too_many_arguments)]
pub fn dense_i8<X: Int8Input>(
    weight: &[i8],
    bias: &[i32],
    scales: &[f32],
    requant: &[i32],
    x: &[X],
    y: &mut [i8],
    h: &LayerHeader,
) {
    let layer = Int8Layer {
        weight,
        bias,
        scales,
        requant,
        header: h,
    };
    let x = Input {
        bytes: X::bytes(x),
        flip: X::FLIP,
    };
    #[cfg(ember_dsp)]
    packed::<dsp::Arm>(&layer, x, y);
    #[cfg(not(ember_dsp))]
    blocked(&layer, x, y);
}

/// An int8 layer's parameters, as the kernels take them.
#[derive(Clone, Copy)]
pub(crate) struct Int8Layer<'a, 'h> {
    pub(crate) weight: &'a [i8],
    pub(crate) bias: &'a [i32],
    #[cfg_attr(not(feature = "int8-float-activations"), allow(dead_code))]
    pub(crate) scales: &'a [f32],
    pub(crate) requant: &'a [i32],
    pub(crate) header: &'h LayerHeader,
}

impl Int8Layer<'_, '_> {
    /// Output `o` from its accumulator.
    #[inline(never)]
    fn output(&self, o: usize, acc: i32) -> i8 {
        let h = self.header;
        let (m, s) = match self.requant.get(2 * o..2 * o + 2) {
            Some(&[m, s]) => (m, s),
            _ => (0, 0),
        };
        let q = match h.activation {
            Activation::Identity => requantize(acc, m, s).saturating_add(h.out_zero),
            Activation::Relu => requantize(acc, m, s)
                .saturating_add(h.out_zero)
                .max(h.out_zero),
            #[cfg(feature = "int8-float-activations")]
            act => {
                let ws = self.scales.get(o).copied().unwrap_or(0.0);
                let real = acc as f32 * h.in_scale * ws;
                let v = act.apply(real) / h.out_scale;
                let r = libm::roundf(v);
                // NaN becomes 0 through `as`; out-of-range values saturate.
                (r as i32).saturating_add(h.out_zero)
            }
            // Never reached: `Model::parse` and `Model::from_layers` reject
            // such layers in a build without the feature.
            #[cfg(not(feature = "int8-float-activations"))]
            _ => h.out_zero,
        };
        q.clamp(-128, 127) as i8
    }

    /// Rows that the layer, `x` and `y` all have.
    fn rows(&self, n: usize, y: usize) -> usize {
        (self.weight.len() / n.max(1)).min(self.bias.len()).min(y)
    }
}

/// The one-row reference: what every int8 kernel must reproduce.
#[cfg(test)]
pub(crate) fn reference(layer: &Int8Layer<'_, '_>, x: Input<'_>, y: &mut [i8]) {
    let n = x.bytes.len().max(1);
    for o in 0..layer.rows(n, y.len()) {
        reference_row(layer, o, x, y);
    }
}

/// Row `o` alone (`o` below [`Int8Layer::rows`]), the reference way.
fn reference_row(layer: &Int8Layer<'_, '_>, o: usize, x: Input<'_>, y: &mut [i8]) {
    let n = x.bytes.len().max(1);
    let mut acc = layer.bias[o];
    for (&w, &b) in layer.weight[o * n..(o + 1) * n].iter().zip(x.bytes) {
        acc = acc.wrapping_add(i32::from(w) * x.value(b));
    }
    y[o] = layer.output(o, acc);
}

/// Two rows per pass, one multiply and add per weight (targets without DSP).
#[cfg_attr(ember_dsp, allow(dead_code))]
pub(crate) fn blocked(layer: &Int8Layer<'_, '_>, x: Input<'_>, y: &mut [i8]) {
    let n = x.bytes.len().max(1);
    let rows = layer.rows(n, y.len());
    let mut o = 0;
    for w in layer.weight[..2 * (rows / 2) * n].chunks_exact(2 * n) {
        let mut acc = [layer.bias[o], layer.bias[o + 1]];
        pair(&mut acc, w, x);
        y[o] = layer.output(o, acc[0]);
        y[o + 1] = layer.output(o + 1, acc[1]);
        o += 2;
    }
    if o < rows {
        reference_row(layer, o, x, y);
    }
}

/// Adds `Σ_j w[j]·x[j]` and `Σ_j w[n + j]·x[j]` (two rows of `n = x.len()`
/// weights, `w.len() == 2n`) to the two accumulators.
#[inline(always)]
fn pair(acc: &mut [i32; 2], w: &[i8], x: Input<'_>) {
    let n = x.bytes.len();
    #[cfg(ember_thumb1)]
    if n > 0 && w.len() == 2 * n {
        thumb1::pair(acc, w, x);
        return;
    }
    let (w0, w1) = w.split_at(n.min(w.len()));
    for ((&p, &q), &b) in w0.iter().zip(w1).zip(x.bytes) {
        let xv = x.value(b);
        acc[0] = acc[0].wrapping_add(i32::from(p) * xv);
        acc[1] = acc[1].wrapping_add(i32::from(q) * xv);
    }
}

/// The two-row loop in Armv6-M assembly: LLVM unrolls it and spills the
/// accumulators (about 20 instructions per weight pair); this is 9, or 10
/// for `u8` input.
#[cfg(ember_thumb1)]
mod thumb1 {
    use super::Input;

    /// As [`super::pair`], for `n = x.len() > 0` and `w.len() == 2n`.
    #[inline(always)]
    pub(super) fn pair(acc: &mut [i32; 2], w: &[i8], x: Input<'_>) {
        let n = x.bytes.len();
        let [mut a0, mut a1] = *acc;
        macro_rules! pair_loop {
            ($($load:literal),+) => {
                // SAFETY: the three pointers point one past the ends of
                // `x` and of the two rows in `w` (`n` > 0 bytes each,
                // `w.len() == 2n`: checked by the caller), and the index
                // runs from −n to −1: every byte read is in bounds. It writes
                // only the operand registers, the flags, and r7 (which
                // operands may not name: pushed before and popped after, so
                // the asm uses the stack; no memory Rust can see is written).
                unsafe {
                    core::arch::asm!(
                        "push {{r7}}",
                        "2:",
                        $($load,)+
                        "ldrsb {t}, [{p0}, {i}]",
                        "muls {t}, r7, {t}",
                        "adds {a0}, {a0}, {t}",
                        "ldrsb {t}, [{p1}, {i}]",
                        "muls {t}, r7, {t}",
                        "adds {a1}, {a1}, {t}",
                        "adds {i}, #1",
                        "bne 2b",
                        "pop {{r7}}",
                        xp = in(reg) x.bytes.as_ptr().wrapping_add(n),
                        p0 = in(reg) w.as_ptr().wrapping_add(n),
                        p1 = in(reg) w.as_ptr().wrapping_add(2 * n),
                        i = inout(reg) n.wrapping_neg() => _,
                        a0 = inout(reg) a0,
                        a1 = inout(reg) a1,
                        t = out(reg) _,
                        options(readonly),
                    );
                }
            };
        }
        if x.flip == 0 {
            pair_loop!("ldrsb r7, [{xp}, {i}]");
        } else {
            pair_loop!("ldrb r7, [{xp}, {i}]", "subs r7, #128");
        }
        *acc = [a0, a1];
    }
}

/// Four rows per pass, four columns per step, with `SXTB16` and `SMLAD`
/// (real on Armv7E-M, emulated elsewhere); leftover columns and rows go
/// through the one-row loop.
#[cfg_attr(not(ember_dsp), allow(dead_code))]
pub(crate) fn packed<D: dsp::Dsp>(layer: &Int8Layer<'_, '_>, x: Input<'_>, y: &mut [i8]) {
    let n = x.bytes.len().max(1);
    let rows = layer.rows(n, y.len());
    let body = x.bytes.len() - x.bytes.len() % 4;
    let (xs, x_tail) = x.bytes.split_at(body);
    let flip = u32::from_le_bytes([x.flip; 4]);
    let mut o = 0;
    for w in layer.weight[..4 * (rows / 4) * n].chunks_exact(4 * n) {
        let mut acc = [
            layer.bias[o],
            layer.bias[o + 1],
            layer.bias[o + 2],
            layer.bias[o + 3],
        ];
        D::quad(&mut acc, w, xs, flip);
        for (k, a) in acc.iter_mut().enumerate() {
            for (&wv, &b) in w[k * n + body..(k + 1) * n].iter().zip(x_tail) {
                *a = a.wrapping_add(i32::from(wv) * x.value(b));
            }
            y[o + k] = layer.output(o + k, *a);
        }
        o += 4;
    }
    while o < rows {
        reference_row(layer, o, x, y);
        o += 1;
    }
}

/// The two DSP instructions the packed kernel uses, real or emulated.
pub(crate) mod dsp {
    /// `SXTB16` and `SMLAD`, and the four-row loop built from them.
    pub(crate) trait Dsp {
        /// Bytes 0 and 2 of `x`, sign-extended to the two halfwords.
        fn sxtb16(x: u32) -> u32;
        /// Bytes 1 and 3 of `x`, sign-extended to the two halfwords.
        fn sxtb16_ror8(x: u32) -> u32;
        /// `acc + a.lo·b.lo + a.hi·b.hi` (signed halfwords, wrapping).
        fn smlad(a: u32, b: u32, acc: i32) -> i32;

        /// Adds `Σ_j w[k·n + j] · x[j]` to `acc[k]` for the four rows of
        /// `w` (`n = w.len() / 4` weights each) over the columns of `x`
        /// (`x.len()` a multiple of 4, at most `n`), four at a time, each
        /// input word XOR-ed with `flip` first.
        #[inline(always)]
        fn quad(acc: &mut [i32; 4], w: &[i8], x: &[u8], flip: u32) {
            let n = w.len() / 4;
            let body = x.len().min(n) / 4 * 4;
            for (k, a) in acc.iter_mut().enumerate() {
                let row = &w[k * n..k * n + body];
                for (c, xc) in row.chunks_exact(4).zip(x.chunks_exact(4)) {
                    let xw = u32::from_le_bytes([xc[0], xc[1], xc[2], xc[3]]) ^ flip;
                    let ww = u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]);
                    *a = Self::smlad(Self::sxtb16(ww), Self::sxtb16(xw), *a);
                    *a = Self::smlad(Self::sxtb16_ror8(ww), Self::sxtb16_ror8(xw), *a);
                }
            }
        }
    }

    /// The instructions' definitions in portable Rust.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) struct Emulated;

    impl Dsp for Emulated {
        #[inline(always)]
        fn sxtb16(x: u32) -> u32 {
            let lo = u32::from(x as u8 as i8 as i16 as u16);
            let hi = u32::from((x >> 16) as u8 as i8 as i16 as u16);
            lo | hi << 16
        }
        #[inline(always)]
        fn sxtb16_ror8(x: u32) -> u32 {
            Self::sxtb16(x.rotate_right(8))
        }
        #[inline(always)]
        fn smlad(a: u32, b: u32, acc: i32) -> i32 {
            let lo = i32::from(a as u16 as i16) * i32::from(b as u16 as i16);
            let hi = i32::from((a >> 16) as u16 as i16) * i32::from((b >> 16) as u16 as i16);
            acc.wrapping_add(lo).wrapping_add(hi)
        }
    }

    /// The Armv7E-M instructions themselves.
    #[cfg(ember_dsp)]
    pub(crate) struct Arm;

    #[cfg(ember_dsp)]
    impl Dsp for Arm {
        #[inline(always)]
        fn sxtb16(x: u32) -> u32 {
            let r: u32;
            // SAFETY: SXTB16 reads and writes only the named registers (no
            // memory, stack or flags); the DSP extension is present on every
            // `thumbv7em` target, the only ones that set `ember_dsp`.
            unsafe {
                core::arch::asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
                    options(pure, nomem, nostack, preserves_flags));
            }
            r
        }
        #[inline(always)]
        fn sxtb16_ror8(x: u32) -> u32 {
            let r: u32;
            // SAFETY: as in `sxtb16`.
            unsafe {
                core::arch::asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
                    options(pure, nomem, nostack, preserves_flags));
            }
            r
        }
        #[inline(always)]
        fn smlad(a: u32, b: u32, acc: i32) -> i32 {
            let r: i32;
            // SAFETY: SMLAD reads and writes only the named registers; it may
            // set the sticky Q flag on overflow, which nothing here reads
            // (the result wraps, as `Emulated::smlad` does), and no condition
            // flag (N, Z, C, V) changes.
            unsafe {
                core::arch::asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r,
                    a = in(reg) a, b = in(reg) b, acc = in(reg) acc,
                    options(pure, nomem, nostack, preserves_flags));
            }
            r
        }

        /// The loop in assembly: LLVM keeps the five pointers in registers
        /// badly (about 35 instructions a step where 24 do). Rows 1 and 3
        /// are addressed from rows 0 and 2 with the row stride, so that the
        /// loop fits in the registers: twelve operands and r7 (which
        /// operands may not name, saved and restored around the loop).
        #[inline(always)]
        fn quad(acc: &mut [i32; 4], w: &[i8], x: &[u8], flip: u32) {
            let n = w.len() / 4;
            let steps = x.len().min(n) / 4;
            if steps == 0 {
                return;
            }
            let [mut a0, mut a1, mut a2, mut a3] = *acc;
            // The loop, with the input word XOR-ed with `flip` (an immediate:
            // only 0 and 0x80808080 occur) or not.
            macro_rules! quad_loop {
                ($($flip:literal)?) => {
                    // SAFETY: the loop runs `steps` (> 0) times; each step
                    // reads 4 bytes at `xp`, `p0`, `p0 + n`, `p2`, `p2 + n`
                    // and advances `xp`, `p0` and `p2` by 4, so it reads
                    // x[..4 * steps] and the first 4 * steps bytes of each of
                    // the four `n`-byte rows of `w` (4 * steps <= n and
                    // 4 * steps <= x.len()): all in bounds. Unaligned word
                    // loads are allowed on Armv7E-M. It writes only the
                    // operand registers, the flags, and r7 (which operands
                    // may not name: pushed before and popped after, so the
                    // asm uses the stack; no memory Rust can see is written).
                    unsafe {
                        core::arch::asm!(
                            "push {{r7}}",
                            "2:",
                            "ldr r7, [{xp}], #4",
                            $(concat!("eor r7, r7, #", $flip),)?
                            "sxtb16 {xe}, r7",
                            "sxtb16 {xo}, r7, ror #8",
                            "ldr r7, [{p0}, {n}]",
                            "sxtb16 {u}, r7",
                            "smlad {a1}, {u}, {xe}, {a1}",
                            "sxtb16 r7, r7, ror #8",
                            "smlad {a1}, r7, {xo}, {a1}",
                            "ldr r7, [{p0}], #4",
                            "sxtb16 {u}, r7",
                            "smlad {a0}, {u}, {xe}, {a0}",
                            "sxtb16 r7, r7, ror #8",
                            "smlad {a0}, r7, {xo}, {a0}",
                            "ldr r7, [{p2}, {n}]",
                            "sxtb16 {u}, r7",
                            "smlad {a3}, {u}, {xe}, {a3}",
                            "sxtb16 r7, r7, ror #8",
                            "smlad {a3}, r7, {xo}, {a3}",
                            "ldr r7, [{p2}], #4",
                            "sxtb16 {u}, r7",
                            "smlad {a2}, {u}, {xe}, {a2}",
                            "sxtb16 r7, r7, ror #8",
                            "smlad {a2}, r7, {xo}, {a2}",
                            "subs {steps}, #1",
                            "bne 2b",
                            "pop {{r7}}",
                            xp = inout(reg) x.as_ptr() => _,
                            p0 = inout(reg) w.as_ptr() => _,
                            p2 = inout(reg) w.as_ptr().wrapping_add(2 * n) => _,
                            n = in(reg) n,
                            steps = inout(reg) steps => _,
                            a0 = inout(reg) a0,
                            a1 = inout(reg) a1,
                            a2 = inout(reg) a2,
                            a3 = inout(reg) a3,
                            xe = out(reg) _,
                            xo = out(reg) _,
                            u = out(reg) _,
                            options(readonly),
                        );
                    }
                };
            }
            if flip == 0 {
                quad_loop!();
            } else {
                quad_loop!("0x80808080");
            }
            *acc = [a0, a1, a2, a3];
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::dsp::{Dsp, Emulated};
    use super::*;
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
    fn emulated_instructions() {
        assert_eq!(Emulated::sxtb16(0x80_7f_ff_01), 0x007f_0001);
        assert_eq!(Emulated::sxtb16_ror8(0x80_7f_ff_01), 0xff80_ffff);
        assert_eq!(Emulated::smlad(0xffff_0002, 0x0003_0004, 10), 10 + 8 - 3);
        assert_eq!(
            Emulated::smlad(0x8000_8000, 0x8000_8000, i32::MAX),
            i32::MAX.wrapping_add(1 << 31)
        );
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
        /// The packed (emulated DSP) and blocked kernels give the
        /// reference's bytes, for i8 and u8 inputs and each kind of output.
        #[test]
        fn kernels_agree((rows, _n, weight, bias, xb, act) in layer_strategy()) {
            let act = [Activation::Relu, Activation::Identity, Activation::Tanh][usize::from(act)];
            let h = header(act, 7);
            let scales: Vec<f32> = (0..rows).map(|i| 0.001 * (i + 1) as f32).collect();
            let requant: Vec<i32> = (0..rows).flat_map(|i| [1_300_000_000 + i as i32, -6]).collect();
            let layer = Int8Layer { weight: &weight, bias: &bias, scales: &scales, requant: &requant, header: &h };
            let xi: Vec<i8> = xb.iter().map(|&b| b as i8).collect();
            for x in [Input { bytes: &xb, flip: 0x80 }, Input { bytes: i8::bytes(&xi), flip: 0 }] {
                let mut want = vec![0i8; rows];
                reference(&layer, x, &mut want);
                let mut got = vec![0i8; rows];
                packed::<Emulated>(&layer, x, &mut got);
                prop_assert_eq!(&got, &want);
                let mut got = vec![0i8; rows];
                blocked(&layer, x, &mut got);
                prop_assert_eq!(&got, &want);
            }
            // u8 input p is the i8 input p - 128.
            let shifted: Vec<i8> = xb.iter().map(|&b| (i32::from(b) - 128) as i8).collect();
            let (mut a, mut b) = (vec![0i8; rows], vec![0i8; rows]);
            dense_i8(&weight, &bias, &scales, &requant, &shifted, &mut a, &h);
            dense_i8(&weight, &bias, &scales, &requant, &xb, &mut b, &h);
            prop_assert_eq!(&a, &b);
        }

        /// The blocked f32 kernel gives the one-row loop's bits.
        #[test]
        fn f32_blocks_match_rows(rows in 1usize..11, n in 1usize..20, seed in any::<u64>()) {
            let mut r = crate::Rng::new(seed);
            let w: Vec<f32> = (0..rows * n).map(|_| r.uniform_in(-1.0, 1.0)).collect();
            let b: Vec<f32> = (0..rows).map(|_| r.uniform_in(-1.0, 1.0)).collect();
            let x: Vec<f32> = (0..n).map(|_| r.uniform_in(-1.0, 1.0)).collect();
            let mut y = vec![0.0; rows];
            dense_f32(&w, &b, &x, &mut y, Activation::Tanh);
            for o in 0..rows {
                let want = Activation::Tanh.apply(dense_f32_row(&w[o * n..(o + 1) * n], b[o], &x));
                prop_assert_eq!(y[o].to_bits(), want.to_bits());
            }
        }
    }
}
