//! The int8 kernel of Armv7E-M (Cortex-M4/M7): four rows per pass (a block
//! of the layout), eight columns per step, with the DSP extension's `UXTB16`
//! and `SXTB16` (two bytes widened to two halfwords) and `SMLAD` (two
//! halfword products added to an accumulator). [`Arm`] runs the step in
//! assembly; [`Emulated`] defines the same instructions in portable Rust,
//! so that the host tests the kernel against the reference. The same trait
//! has the inner step of the graph files' int8 convolution
//! ([`Dsp::conv_step`], used by `deploy::graph::im2col`).

use super::{blocks, Input, Int8Layer};
use crate::backend::activation::Activation;

/// The instructions the packed kernel uses, and its eight-column step.
pub(crate) trait Dsp {
    /// Bytes 0 and 2 of `x`, sign-extended to the two halfwords.
    fn sxtb16(x: u32) -> u32;
    /// Bytes 1 and 3 of `x`, sign-extended to the two halfwords.
    fn sxtb16_ror8(x: u32) -> u32;
    /// Bytes 0 and 2 of `x`, zero-extended to the two halfwords.
    fn uxtb16(x: u32) -> u32;
    /// Bytes 1 and 3 of `x`, zero-extended to the two halfwords.
    fn uxtb16_ror8(x: u32) -> u32;
    /// `acc + a.lo·b.lo + a.hi·b.hi` (signed halfwords, wrapping).
    fn smlad(a: u32, b: u32, acc: i32) -> i32;
    /// `acc + a.lo·b.lo` (signed halfwords, wrapping).
    fn smlabb(a: u32, b: u32, acc: i32) -> i32;
    /// `a − b` per halfword (wrapping).
    fn ssub16(a: u32, b: u32) -> u32;

    /// One kernel row of three taps of a depthwise convolution
    /// (`deploy::graph::depthwise`): `acc + w0·x0 + w1·x1 + w2·x2`, with
    /// `w02` the halfwords `w0, w2`, `w1` in the low halfword, and `x` the
    /// input bytes `x0..x3` (x3 unused). Two `SXTB16`, an `SMLAD` and an
    /// `SMLABB`.
    #[inline(always)]
    fn row3(acc: i32, w02: u32, w1: u32, x: u32) -> i32 {
        Self::smlabb(
            w1,
            Self::sxtb16_ror8(x),
            Self::smlad(w02, Self::sxtb16(x), acc),
        )
    }

    /// A run of outputs of a 3×3 depthwise convolution at unit dilation
    /// (`deploy::graph::depthwise`), each from `init`: output `k` adds
    /// [`row3`](Self::row3) of the words at `x + k · stride + r · width`
    /// for its kernel rows `r` = 0, 1, 2, with `w02[r]` the row's `(w0,
    /// w2)` halfwords, `w1[0]` rows 0's and 1's `w1` (low and high
    /// halfwords) and `w1[1]` row 2's (low).
    ///
    /// # Safety
    /// The bytes from `x` to `x + (accs.len() − 1) · stride + 2 · width + 3`
    /// must be readable.
    #[inline(always)]
    unsafe fn dw3_run(
        accs: &mut [i32],
        x: *const i8,
        width: usize,
        stride: usize,
        init: i32,
        w02: [u32; 3],
        w1: [u32; 2],
    ) {
        // SAFETY: the caller makes every word read here readable.
        let word = |p: *const i8| u32::from_le(unsafe { p.cast::<u32>().read_unaligned() });
        for (k, a) in accs.iter_mut().enumerate() {
            let p = x.wrapping_add(k * stride);
            let v = Self::row3(init, w02[0], w1[0] & 0xffff, word(p));
            let v = Self::row3(v, w02[1], w1[0] >> 16, word(p.wrapping_add(width)));
            *a = Self::row3(v, w02[2], w1[1], word(p.wrapping_add(2 * width)));
        }
    }

    /// Up to `steps` steps over a block (four rows of `n = x.len()` weights
    /// in the layout), from its first group: each step adds to `acc` the
    /// products of two groups (eight columns), each input word XOR-ed with
    /// `flip` first. Returns the groups done (the caller does the rest).
    #[inline(always)]
    fn steps(acc: &mut [i32; 4], block: &[i8], x: &[u8], flip: u32, steps: usize) -> usize {
        let groups = block
            .chunks_exact(16)
            .zip(x.chunks_exact(4))
            .take(2 * steps);
        let mut done = 0;
        for (g, xs) in groups {
            let xw = u32::from_le_bytes([xs[0], xs[1], xs[2], xs[3]]) ^ flip;
            let (xe, xo) = (Self::uxtb16(xw), Self::uxtb16_ror8(xw));
            for (a, w) in acc.iter_mut().zip(g.chunks_exact(4)) {
                let ww = u32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8]);
                *a = Self::smlad(Self::sxtb16(ww), xe, *a);
                *a = Self::smlad(Self::sxtb16_ror8(ww), xo, *a);
            }
            done += 1;
        }
        done
    }

    /// The first `q` blocks of a layer on unflipped input of `steps` whole
    /// steps (`x.len() = 8 · steps`), their outputs through the epilogue
    /// `e` (every pair fast): per block the bias, [`Dsp::steps`] and
    /// [`Dsp::out4`] ([`full_blocks`]).
    #[inline(always)]
    fn full_blocks(
        layer: &Int8Layer<'_, '_>,
        x: &[u8],
        y: &mut [u8],
        q: usize,
        steps: usize,
        e: Epilogue,
    ) {
        full_blocks::<Self>(layer, x, y, q, steps, e);
    }

    /// Writes `out[..4]`, a block's four output bytes, from their
    /// accumulators and `rq`, their four requantization pairs, every pair
    /// fast (`quant::requant_is_fast`): [`Epilogue::output`] each (in
    /// `Arm::full_blocks`, the same instructions in assembly).
    #[inline(always)]
    fn out4(acc: [i32; 4], rq: &[i32], out: &mut [u8], e: Epilogue) {
        for ((o, a), p) in out.iter_mut().zip(acc).zip(rq.chunks_exact(2)) {
            *o = e.output(a, p[0], p[1]);
        }
    }

    /// Adds to `acc` the products of one row-major row `w` with `x` over
    /// up to their first `4 · (min(w.len(), x.len()) / 4)` columns, four a
    /// step, each input word XOR-ed with `flip` first. Returns the columns
    /// done (the caller does the rest).
    #[inline(always)]
    fn row(acc: &mut i32, w: &[i8], x: &[u8], flip: u32) -> usize {
        let mut done = 0;
        for (c, xs) in w.chunks_exact(4).zip(x.chunks_exact(4)) {
            let xw = u32::from_le_bytes([xs[0], xs[1], xs[2], xs[3]]) ^ flip;
            let ww = u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]);
            *acc = Self::smlad(Self::sxtb16(ww), Self::uxtb16(xw), *acc);
            *acc = Self::smlad(Self::sxtb16_ror8(ww), Self::uxtb16_ror8(xw), *acc);
            done += 4;
        }
        done
    }
    /// The convolution step of the im2col kernel
    /// (`deploy::graph::im2col`): adds to `acc` (output channel a's columns
    /// 0 and 1, then channel b's) the products of the first `4 · groups`
    /// weights of rows `wa` and `wb` with the buffer `buf`, where each group
    /// of four taps is eight halfwords: column 0's taps (0, 2) and (1, 3),
    /// then column 1's. A group is two weight words, each widened once by
    /// `SXTB16` and `SXTB16 ROR #8`, and eight `SMLAD`.
    #[inline(always)]
    fn conv_step(acc: &mut [i32; 4], wa: &[i8], wb: &[i8], buf: &[i16], groups: usize) {
        let word = |w: &[i8]| u32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8]);
        let steps = wa
            .chunks_exact(4)
            .zip(wb.chunks_exact(4))
            .zip(buf.chunks_exact(8))
            .take(groups);
        for ((a, b), x) in steps {
            let half = |i: usize| pack(x[i] as u16, x[i + 1] as u16);
            let (ae, ao, be, bo) = (half(0), half(2), half(4), half(6));
            let (wa, wb) = (word(a), word(b));
            let (ea, oa) = (Self::sxtb16(wa), Self::sxtb16_ror8(wa));
            let (eb, ob) = (Self::sxtb16(wb), Self::sxtb16_ror8(wb));
            acc[0] = Self::smlad(oa, ao, Self::smlad(ea, ae, acc[0]));
            acc[1] = Self::smlad(oa, bo, Self::smlad(ea, be, acc[1]));
            acc[2] = Self::smlad(ob, ao, Self::smlad(eb, ae, acc[2]));
            acc[3] = Self::smlad(ob, bo, Self::smlad(eb, be, acc[3]));
        }
    }
}

/// The packed kernel: per block, the eight-column steps, then the block's
/// last group (when the groups are odd) and leftover columns; then the
/// leftover rows. Out of line: inference runs it for the first layer and
/// for the others, and two inlined copies cost 1.5 KB of flash.
#[inline(never)]
pub(crate) fn packed<D: Dsp>(layer: &Int8Layer<'_, '_>, x: Input<'_>, y: &mut [u8]) {
    let n = x.bytes.len();
    let steps = n / 8;
    let flip = u32::from_le_bytes([x.flip; 4]);
    let mut layer = *layer;
    let mut y = y;
    // Unflipped input of whole steps, ReLU or the identity, every pair
    // fast: the full blocks with the steps and the DSP epilogue; whatever
    // rows are left over by `blocks` below.
    if let Some(e) = Epilogue::of(&layer) {
        if x.flip == 0 && steps > 0 && n == 8 * steps {
            let q = layer.rows(n, y.len()) / 4;
            if q > 0 {
                D::full_blocks(&layer, x.bytes, y, q, steps, e);
            }
            // The leftover rows are row-major after the blocks: a layer of
            // their own.
            layer.weight = &layer.weight[4 * q * n..];
            layer.bias = &layer.bias[4 * q..];
            layer.requant = &layer.requant[(8 * q).min(layer.requant.len())..];
            y = &mut y[4 * q..];
            if y.is_empty() {
                return;
            }
        }
    }
    blocks(
        &layer,
        x,
        y,
        |acc, block| D::steps(acc, block, x.bytes, flip, steps),
        |acc, w| D::row(acc, w, x.bytes, flip),
    );
}

/// [`Dsp::full_blocks`] in Rust: per block the bias, the steps and the
/// four outputs.
#[inline(always)]
fn full_blocks<D: Dsp + ?Sized>(
    layer: &Int8Layer<'_, '_>,
    x: &[u8],
    y: &mut [u8],
    q: usize,
    steps: usize,
    e: Epilogue,
) {
    let n = x.len();
    let full = layer.weight[..4 * q * n]
        .chunks_exact(4 * n)
        .zip(layer.bias[..4 * q].chunks_exact(4))
        .zip(layer.requant[..8 * q].chunks_exact(8))
        .zip(y[..4 * q].chunks_exact_mut(4));
    for (((block, bias), rq), out) in full {
        let mut acc = [bias[0], bias[1], bias[2], bias[3]];
        D::steps(&mut acc, block, x, 0, steps);
        D::out4(acc, rq, out, e);
    }
}

/// What `Arm::full_blocks` keeps in memory (the operands take every
/// register): the input, the steps, and the pointers it moves block by
/// block.
#[cfg(ember_dsp)]
#[repr(C)]
struct Frame {
    /// 0: the input.
    x: *const u8,
    /// 4: steps per block.
    steps: usize,
    /// 8: the next block's biases.
    bias: *const i32,
    /// 12: the next block's requantization pairs.
    rq: *const i32,
    /// 16: the next block's outputs.
    y: *mut u8,
    /// 20: [`Epilogue::c1`].
    c1: i32,
    /// 24: [`Epilogue::ff`].
    ff: u32,
    /// 28: where the weight pointer is after the last block.
    end: *const i8,
}

/// The DSP kernel's epilogue constants of a layer whose activation is ReLU
/// or the identity and whose requantization pairs are all fast: the output
/// byte is computed in `u = q + 128` units with `SMMUL`, shifts, `USAT`
/// and `USUB8`/`SEL` ([`Epilogue::output`]), ten instructions an output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epilogue {
    /// `1 + 2·(z + 128)`, `z` the output zero point: the rounding half and
    /// the zero point, doubled (the last shift halves them).
    c1: i32,
    /// Byte 0: the least output `u` (`z + 128` for ReLU, 0 for the
    /// identity); byte 1: what the output byte is XOR-ed with
    /// (`0x80 ^ out_flip`: `u` for a hidden layer, `q` for the last).
    ff: u32,
}

impl Epilogue {
    /// The layer's constants, if its outputs can take this epilogue.
    pub(crate) fn of(layer: &Int8Layer<'_, '_>) -> Option<Self> {
        let h = layer.header;
        if !layer.fast_requant || !(-128..=127).contains(&h.out_zero) {
            return None;
        }
        let least = match h.activation {
            Activation::Relu => h.out_zero + 128,
            Activation::Identity => 0,
            _ => return None,
        };
        Some(Epilogue {
            c1: 1 + 2 * (h.out_zero + 128),
            ff: least as u32 | u32::from(0x80 ^ layer.out_flip) << 8,
        })
    }

    /// The output byte of accumulator `acc` with the pair `(m, s)` (fast:
    /// `m ≥ 0`, `s` in −31..=−2), the instructions of `Arm::full_blocks`'s
    /// epilogue one by one. With `k = −1 − s`, [`requantize`](crate::deploy::quant) is
    /// `(hi + 2^(k−1)) >> k` (`hi` the product's high word), which is
    /// `((hi >> (k − 1)) + 1) >> 1`; the zero point `z` and 128 join the
    /// last shift doubled, and `USAT` saturates `u` to 0..=255 (`q` to
    /// −128..=127); ReLU is the larger of `u` and `z + 128`.
    #[inline(always)]
    pub(crate) fn output(self, acc: i32, m: i32, s: i32) -> u8 {
        // SMMUL: the high word of the product.
        let hi = ((i64::from(acc) * i64::from(m)) >> 32) as i32;
        // SUB, ASR (by the bottom byte of the register), ADD.
        let k1 = ((-2i32).wrapping_sub(s) as u32) & 0xff;
        let t = (hi >> k1.min(31)).wrapping_add(self.c1);
        // USAT #8 of `t ASR #1`.
        let u = (t >> 1).clamp(0, 255) as u32;
        // USUB8 and SEL on byte 0: the larger of `u` and the least output.
        let u = u.max(self.ff & 0xff);
        // EOR with `ff LSR #8`; the store keeps byte 0.
        (u ^ (self.ff >> 8)) as u8
    }
}

/// The instructions' definitions in portable Rust.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Emulated;

/// Halfwords `lo` and `hi` packed in a word.
fn pack(lo: u16, hi: u16) -> u32 {
    u32::from(lo) | u32::from(hi) << 16
}

impl Dsp for Emulated {
    #[inline(always)]
    fn sxtb16(x: u32) -> u32 {
        pack(
            x as u8 as i8 as i16 as u16,
            (x >> 16) as u8 as i8 as i16 as u16,
        )
    }
    #[inline(always)]
    fn sxtb16_ror8(x: u32) -> u32 {
        Self::sxtb16(x.rotate_right(8))
    }
    #[inline(always)]
    fn uxtb16(x: u32) -> u32 {
        x & 0x00ff_00ff
    }
    #[inline(always)]
    fn uxtb16_ror8(x: u32) -> u32 {
        Self::uxtb16(x.rotate_right(8))
    }
    #[inline(always)]
    fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let lo = i32::from(a as u16 as i16) * i32::from(b as u16 as i16);
        let hi = i32::from((a >> 16) as u16 as i16) * i32::from((b >> 16) as u16 as i16);
        acc.wrapping_add(lo).wrapping_add(hi)
    }
    #[inline(always)]
    fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(i32::from(a as u16 as i16) * i32::from(b as u16 as i16))
    }
    #[inline(always)]
    fn ssub16(a: u32, b: u32) -> u32 {
        pack(
            (a as u16).wrapping_sub(b as u16),
            ((a >> 16) as u16).wrapping_sub((b >> 16) as u16),
        )
    }
}

/// One eight-column step of `Arm::steps` over a block's four rows (46
/// instructions for 32 multiply-adds): two word loads and four `UXTB16`
/// for the input, then per row and group one load, two `SXTB16` and two
/// `SMLAD`; the first weight load moves `wp` to the step's 32 bytes.
#[cfg(ember_dsp)]
macro_rules! step {
    () => {
        concat!(
            "ldr {xa}, [{xp}], #4\n",
            "ldr {xb}, [{xp}], #4\n",
            "uxtb16 {xo0}, {xa}, ror #8\n",
            "uxtb16 {xa}, {xa}\n",
            "uxtb16 {xo1}, {xb}, ror #8\n",
            "uxtb16 {xb}, {xb}\n",
            "ldr r7, [{wp}, #32]!\n",
            "sxtb16 {u}, r7\n",
            "smlad {a0}, {u}, {xa}, {a0}\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad {a0}, r7, {xo0}, {a0}\n",
            "ldr r7, [{wp}, #4]\n",
            "sxtb16 {u}, r7\n",
            "smlad {a1}, {u}, {xa}, {a1}\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad {a1}, r7, {xo0}, {a1}\n",
            "ldr r7, [{wp}, #8]\n",
            "sxtb16 {u}, r7\n",
            "smlad {a2}, {u}, {xa}, {a2}\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad {a2}, r7, {xo0}, {a2}\n",
            "ldr r7, [{wp}, #12]\n",
            "sxtb16 {u}, r7\n",
            "smlad {a3}, {u}, {xa}, {a3}\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad {a3}, r7, {xo0}, {a3}\n",
            "ldr r7, [{wp}, #16]\n",
            "sxtb16 {u}, r7\n",
            "smlad {a0}, {u}, {xb}, {a0}\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad {a0}, r7, {xo1}, {a0}\n",
            "ldr r7, [{wp}, #20]\n",
            "sxtb16 {u}, r7\n",
            "smlad {a1}, {u}, {xb}, {a1}\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad {a1}, r7, {xo1}, {a1}\n",
            "ldr r7, [{wp}, #24]\n",
            "sxtb16 {u}, r7\n",
            "smlad {a2}, {u}, {xb}, {a2}\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad {a2}, r7, {xo1}, {a2}\n",
            "ldr r7, [{wp}, #28]\n",
            "sxtb16 {u}, r7\n",
            "smlad {a3}, {u}, {xb}, {a3}\n",
            "sxtb16 r7, r7, ror #8\n",
            "smlad {a3}, r7, {xo1}, {a3}\n",
        )
    };
}

/// One output of `Arm::full_blocks` (ten instructions,
/// [`Epilogue::output`]): accumulator `$a`, the pair at `xb` and the byte
/// to `xp`, both moved on; c1 in `xo0`, ff in `xo1`, −2 in `steps`.
#[cfg(ember_dsp)]
macro_rules! out_next {
    ($a:literal) => {
        concat!(
            "ldrd {u}, r7, [{xb}], #8\n",
            "smmul {u}, {",
            $a,
            "}, {u}\n",
            "sub r7, {steps}, r7\n",
            "asr {u}, {u}, r7\n",
            "add {u}, {u}, {xo0}\n",
            "usat {u}, #8, {u}, asr #1\n",
            "usub8 r7, {u}, {xo1}\n",
            "sel {u}, {u}, {xo1}\n",
            "eor {u}, {u}, {xo1}, lsr #8\n",
            "strb {u}, [{xp}], #1\n",
        )
    };
}

/// A [`Dsp`] method that is one instruction on registers: `name(a) ->
/// u32`, `name(a, b) -> u32`, or `name(a, b, c) -> i32` with `c` the
/// accumulator, as the template names them (`{r}` the result).
#[cfg(ember_dsp)]
macro_rules! one_instruction {
    ($name:ident($a:ident) -> u32 = $asm:literal) => {
        #[inline(always)]
        fn $name($a: u32) -> u32 {
            let r;
            // SAFETY: one instruction on registers, nothing else touched.
            unsafe {
                core::arch::asm!($asm, r = lateout(reg) r, a = in(reg) $a,
                    options(pure, nomem, nostack));
            }
            r
        }
    };
    ($name:ident($a:ident, $b:ident) -> u32 = $asm:literal) => {
        #[inline(always)]
        fn $name($a: u32, $b: u32) -> u32 {
            let r;
            // SAFETY: one instruction on registers (it may set the GE
            // flags, which nothing reads), nothing else touched.
            unsafe {
                core::arch::asm!($asm, r = lateout(reg) r, a = in(reg) $a, b = in(reg) $b,
                    options(pure, nomem, nostack));
            }
            r
        }
    };
    ($name:ident($a:ident, $b:ident, $c:ident) -> i32 = $asm:literal) => {
        #[inline(always)]
        fn $name($a: u32, $b: u32, $c: i32) -> i32 {
            let r;
            // SAFETY: one instruction on registers (it may set the Q flag
            // on overflow, which nothing reads), nothing else touched.
            unsafe {
                core::arch::asm!($asm, r = lateout(reg) r, a = in(reg) $a, b = in(reg) $b,
                    c = in(reg) $c, options(pure, nomem, nostack));
            }
            r
        }
    };
}

/// The Armv7E-M instructions themselves.
#[cfg(ember_dsp)]
pub(crate) struct Arm;

#[cfg(ember_dsp)]
impl Dsp for Arm {
    // The single instructions, each one instruction of inline assembly
    // (the default `row3` and the pointwise fill use them; `steps`, `row`,
    // `conv_step` and `dw3_run` are whole loops of assembly below).
    one_instruction!(sxtb16(a) -> u32 = "sxtb16 {r}, {a}");
    one_instruction!(sxtb16_ror8(a) -> u32 = "sxtb16 {r}, {a}, ror #8");
    #[inline(always)]
    fn uxtb16(x: u32) -> u32 {
        Emulated::uxtb16(x)
    }
    #[inline(always)]
    fn uxtb16_ror8(x: u32) -> u32 {
        Emulated::uxtb16_ror8(x)
    }
    one_instruction!(smlad(a, b, c) -> i32 = "smlad {r}, {a}, {b}, {c}");
    one_instruction!(ssub16(a, b) -> u32 = "ssub16 {r}, {a}, {b}");
    one_instruction!(smlabb(a, b, c) -> i32 = "smlabb {r}, {a}, {b}, {c}");

    /// The run in assembly, 18 instructions an output for 9 multiply-adds:
    /// per kernel row an unaligned word load, two `SXTB16`, an `SMLAD` and
    /// an `SMLABB`/`SMLATB`, then the store and the loop's three. Thirteen
    /// operands and r7 (pushed before the loop and popped after).
    #[inline(always)]
    unsafe fn dw3_run(
        accs: &mut [i32],
        x: *const i8,
        width: usize,
        stride: usize,
        init: i32,
        w02: [u32; 3],
        w1: [u32; 2],
    ) {
        let n = accs.len();
        if n == 0 {
            return;
        }
        // SAFETY: the loop runs n (> 0) times; pass k reads the words at p +
        // width, p + 2 · width and p, p = x + k · stride, which the caller
        // makes readable (unaligned word loads are allowed on Armv7E-M), and
        // writes accs[k] (the pointer moves by 4 a pass: n words, in
        // bounds). Besides that it writes only its operand registers, the
        // flags, and r7 (pushed before and popped after, so the asm uses the
        // stack).
        unsafe {
            core::arch::asm!(
                "push {{r7}}",
                "2:",
                "ldr r7, [{p}, {w}]",
                "sxtb16 {o}, r7, ror #8",
                "sxtb16 r7, r7",
                "smlad {a}, {w02_1}, r7, {init}",
                "smlatb {a}, {w1_01}, {o}, {a}",
                "ldr r7, [{p}, {w}, lsl #1]",
                "sxtb16 {o}, r7, ror #8",
                "sxtb16 r7, r7",
                "smlad {a}, {w02_2}, r7, {a}",
                "smlabb {a}, {w1_2}, {o}, {a}",
                "ldr r7, [{p}]",
                "add {p}, {s}",
                "sxtb16 {o}, r7, ror #8",
                "sxtb16 r7, r7",
                "smlad {a}, {w02_0}, r7, {a}",
                "smlabb {a}, {w1_01}, {o}, {a}",
                "str {a}, [{acc}], #4",
                "subs {n}, #1",
                "bne 2b",
                "pop {{r7}}",
                p = inout(reg) x => _,
                w = in(reg) width,
                s = in(reg) stride,
                n = inout(reg) n => _,
                acc = inout(reg) accs.as_mut_ptr() => _,
                init = in(reg) init,
                w02_0 = in(reg) w02[0],
                w02_1 = in(reg) w02[1],
                w02_2 = in(reg) w02[2],
                w1_01 = in(reg) w1[0],
                w1_2 = in(reg) w1[1],
                o = out(reg) _,
                a = out(reg) _,
            );
        }
    }

    /// The steps in assembly, two a pass (`step!`, 46 instructions for 32
    /// multiply-adds; the loop's two per 64; an odd count enters the pass
    /// at its second step): two word loads and four `UXTB16` for the
    /// input, then per row and group one load, two `SXTB16` and two
    /// `SMLAD`. One pointer walks the block (the first load of a step moves
    /// it with pre-indexed writeback); twelve operands and r7, which
    /// operands may not name (pushed before the loop and popped after). Input that needs a flip (`i8` input, only
    /// ever a first layer) is left to the portable loop: it keeps one loop
    /// in flash.
    #[inline(always)]
    fn steps(acc: &mut [i32; 4], block: &[i8], x: &[u8], flip: u32, steps: usize) -> usize {
        let n = x.len();
        if flip != 0 || steps == 0 || 8 * steps > n || block.len() != 4 * n {
            return 0;
        }
        let [mut a0, mut a1, mut a2, mut a3] = *acc;
        // SAFETY: the steps run `steps` (> 0) times (a pass of two, entered
        // at its second for an odd count); a step reads the 8
        // bytes at `xp` and the 32 at `wp + 32` (then moves `xp` by 8 and
        // `wp` by 32), so it reads x[..8 · steps] and block[..32 · steps]:
        // in bounds, as 8 · steps ≤ n = x.len() and block.len() = 4n
        // (checked above). `wp` starts 32 bytes before the block and is only
        // dereferenced after moving into it. Unaligned word loads are allowed
        // on Armv7E-M. It writes only the operand registers, the flags, and
        // r7 (pushed before and popped after, so the asm uses the stack; no
        // memory Rust can see is written).
        unsafe {
            core::arch::asm!(
                "push {{r7}}",
                // Two steps a pass; odd `steps` enter at the second.
                "lsrs {steps}, {steps}, #1",
                "bcs 3f",
                "sub {steps}, {steps}, #1",
                "2:",
                step!(),
                "3:",
                step!(),
                "subs {steps}, {steps}, #1",
                "bpl 2b",
                "pop {{r7}}",
                xp = inout(reg) x.as_ptr() => _,
                wp = inout(reg) block.as_ptr().wrapping_sub(32) => _,
                steps = inout(reg) steps => _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                xa = out(reg) _,
                xb = out(reg) _,
                xo0 = out(reg) _,
                xo1 = out(reg) _,
                u = out(reg) _,
                options(readonly),
            );
        }
        *acc = [a0, a1, a2, a3];
        2 * steps
    }

    /// The blocks in assembly, one loop: per block 7 instructions to load
    /// the input pointer, the step count and the biases (and store the
    /// moved bias pointer), 2 or 3 to enter the steps, the steps, 4 to load
    /// the epilogue's operands, the four outputs (ten instructions each), 4
    /// to store the moved pointers and loop: about 57 a block besides the
    /// steps. Only the weight pointer stays in a register from block to
    /// block; the rest is a [`Frame`] whose address is on the stack.
    #[inline(always)]
    fn full_blocks(
        layer: &Int8Layer<'_, '_>,
        x: &[u8],
        y: &mut [u8],
        q: usize,
        steps: usize,
        e: Epilogue,
    ) {
        let n = x.len();
        let ok = q > 0
            && steps > 0
            && n == 8 * steps
            && layer.weight.len() >= 4 * q * n
            && layer.bias.len() >= 4 * q
            && layer.requant.len() >= 8 * q
            && y.len() >= 4 * q;
        if !ok {
            return full_blocks::<Self>(layer, x, y, q, steps, e);
        }
        let w = layer.weight.as_ptr();
        let mut frame = Frame {
            x: x.as_ptr(),
            steps,
            bias: layer.bias.as_ptr(),
            rq: layer.requant.as_ptr(),
            y: y.as_mut_ptr(),
            c1: e.c1,
            ff: e.ff,
            end: w.wrapping_add(4 * q * n).wrapping_sub(32),
        };
        // SAFETY: the loop runs `q` (> 0) blocks, until the weight pointer
        // reaches `end`. A block reads the 8 · steps bytes of `x` (n bytes:
        // in bounds), its four biases and eight requantization words at
        // `frame.bias` and `frame.rq` (moved by 16 and 32 bytes a block:
        // bias[..4q] and requant[..8q], in bounds), and 32 · steps = 4n
        // weight bytes from where the last block ended (`wp` starts 32
        // bytes before the weights and is dereferenced only after moving
        // into them; the q blocks read weight[..4qn], in bounds); it writes
        // four bytes at `frame.y` (moved by 4: y[..4q], in bounds, `y`
        // borrowed uniquely). All checked above. `LDRD` needs word-aligned
        // addresses: `&[i32]` and `frame` (`repr(C)`, pointer-sized fields)
        // are; unaligned `LDR`s of the input and weights are allowed on
        // Armv7E-M. It writes `frame`'s moved pointers (borrowed uniquely),
        // the output bytes, the operand registers, the flags (`USUB8` sets
        // the GE flags `SEL` reads) and r7 and the frame's address, pushed
        // to the stack and popped before the end.
        unsafe {
            core::arch::asm!(
                "push {{r7}}",
                "push {{{xa}}}",
                "4:",
                "ldr {xa}, [sp]",
                "ldr {xp}, [{xa}]",
                "ldr {steps}, [{xa}, #4]",
                "ldr {xb}, [{xa}, #8]",
                "ldrd {a0}, {a1}, [{xb}], #8",
                "ldrd {a2}, {a3}, [{xb}], #8",
                "str {xb}, [{xa}, #8]",
                // Two steps a pass; odd `steps` enter at the second.
                "lsrs {steps}, {steps}, #1",
                "bcs 3f",
                "sub {steps}, {steps}, #1",
                "2:",
                step!(),
                "3:",
                step!(),
                "subs {steps}, {steps}, #1",
                "bpl 2b",
                // The epilogue: rq in xb, y in xp, c1 in xo0, ff in xo1,
                // −2 in steps; u and r7 the temporaries.
                "ldr {xa}, [sp]",
                "ldrd {xb}, {xp}, [{xa}, #12]",
                "ldrd {xo0}, {xo1}, [{xa}, #20]",
                "mvn {steps}, #1",
                out_next!("a0"),
                out_next!("a1"),
                out_next!("a2"),
                out_next!("a3"),
                "strd {xb}, {xp}, [{xa}, #12]",
                "ldr {xb}, [{xa}, #28]",
                "cmp {wp}, {xb}",
                "bne 4b",
                "add sp, #4",
                "pop {{r7}}",
                xa = inout(reg) core::ptr::addr_of_mut!(frame) => _,
                wp = inout(reg) w.wrapping_sub(32) => _,
                xp = out(reg) _,
                steps = out(reg) _,
                xb = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
                xo0 = out(reg) _,
                xo1 = out(reg) _,
                u = out(reg) _,
            );
        }
    }

    /// One row in assembly: 10 instructions for four multiply-adds
    /// (unflipped input only, as `steps`).
    #[inline(always)]
    fn row(acc: &mut i32, w: &[i8], x: &[u8], flip: u32) -> usize {
        let steps = w.len().min(x.len()) / 4;
        if flip != 0 || steps == 0 {
            return 0;
        }
        let mut a = *acc;
        // SAFETY: the loop runs `steps` (> 0) times and reads the words at
        // `xp` and `wp`, advancing both by 4: x[..4 · steps] and
        // w[..4 · steps], in bounds as 4 · steps ≤ min(w.len(), x.len()).
        // Unaligned word loads are allowed on Armv7E-M. It writes only its
        // operand registers and the flags.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldr {t}, [{xp}], #4",
                "ldr {u}, [{wp}], #4",
                "uxtb16 {v}, {t}",
                "sxtb16 {s}, {u}",
                "smlad {a}, {s}, {v}, {a}",
                "uxtb16 {t}, {t}, ror #8",
                "sxtb16 {u}, {u}, ror #8",
                "smlad {a}, {u}, {t}, {a}",
                "subs {n}, #1",
                "bne 2b",
                xp = inout(reg) x.as_ptr() => _,
                wp = inout(reg) w.as_ptr() => _,
                n = inout(reg) steps => _,
                a = inout(reg) a,
                t = out(reg) _,
                u = out(reg) _,
                v = out(reg) _,
                s = out(reg) _,
                options(readonly, nostack),
            );
        }
        *acc = a;
        4 * steps
    }

    /// The convolution step in assembly: 18 instructions for 16
    /// multiply-adds (two weight loads, four `SXTB16`, two `LDRD` of the
    /// buffer, eight `SMLAD`, the loop's two).
    #[inline(always)]
    fn conv_step(acc: &mut [i32; 4], wa: &[i8], wb: &[i8], buf: &[i16], groups: usize) {
        let short = wa.len() < 4 * groups || wb.len() < 4 * groups || buf.len() < 8 * groups;
        if groups == 0 || short || !(buf.as_ptr() as usize).is_multiple_of(4) {
            return Emulated::conv_step(acc, wa, wb, buf, groups);
        }
        let [mut a0, mut a1, mut a2, mut a3] = *acc;
        // SAFETY: the loop runs `groups` (> 0) times; a pass reads the words
        // at `wa` and `wb` and the 16 bytes at `xp`, then moves them by 4, 4
        // and 16: it reads wa[..4 · groups], wb[..4 · groups] and
        // buf[..8 · groups], in bounds by the checks above. `LDRD` needs a
        // word-aligned address: `buf` is (checked above) and moves by 8;
        // unaligned `LDR`s of the weights are allowed on Armv7E-M. It writes
        // only the operand registers, the flags, and r7 (which operands may
        // not name: pushed before the loop and popped after, so the asm uses
        // the stack; no memory Rust can see is written).
        unsafe {
            core::arch::asm!(
                "push {{r7}}",
                "2:",
                "ldr {ea}, [{wa}], #4",
                "ldr {eb}, [{wb}], #4",
                "sxtb16 {oa}, {ea}, ror #8",
                "sxtb16 {ea}, {ea}",
                "sxtb16 {ob}, {eb}, ror #8",
                "sxtb16 {eb}, {eb}",
                "ldrd {x}, r7, [{xp}], #8",
                "smlad {a0}, {ea}, {x}, {a0}",
                "smlad {a2}, {eb}, {x}, {a2}",
                "smlad {a0}, {oa}, r7, {a0}",
                "smlad {a2}, {ob}, r7, {a2}",
                "ldrd {x}, r7, [{xp}], #8",
                "smlad {a1}, {ea}, {x}, {a1}",
                "smlad {a3}, {eb}, {x}, {a3}",
                "smlad {a1}, {oa}, r7, {a1}",
                "smlad {a3}, {ob}, r7, {a3}",
                "subs {n}, #1",
                "bne 2b",
                "pop {{r7}}",
                wa = inout(reg) wa.as_ptr() => _,
                wb = inout(reg) wb.as_ptr() => _,
                xp = inout(reg) buf.as_ptr() => _,
                n = inout(reg) groups => _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                ea = out(reg) _,
                oa = out(reg) _,
                eb = out(reg) _,
                ob = out(reg) _,
                x = out(reg) _,
                options(readonly),
            );
        }
        *acc = [a0, a1, a2, a3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::LayerHeader;
    use proptest::prelude::*;

    proptest! {
        /// The DSP epilogue gives the shared epilogue's byte for every fast
        /// pair, zero point, ReLU or the identity, and output form.
        #[test]
        fn epilogue_is_the_shared_one(
            acc in any::<i32>(),
            m in 0i32..=i32::MAX,
            s in -31i32..=-2,
            z in -128i32..=127,
            relu in any::<bool>(),
            last in any::<bool>(),
        ) {
            let h = LayerHeader {
                in_features: 1,
                out_features: 1,
                activation: if relu { Activation::Relu } else { Activation::Identity },
                in_scale: 0.02,
                in_zero: -3,
                out_scale: 0.05,
                out_zero: z,
            };
            let requant = [m, s];
            let layer = Int8Layer {
                weight: &[1],
                bias: &[0],
                requant: &requant,
                table: None,
                header: &h,
                out_flip: if last { 0 } else { 0x80 },
                fast_requant: true,
            };
            let e = Epilogue::of(&layer).expect("ReLU or the identity, fast pairs");
            prop_assert_eq!(e.output(acc, m, s), layer.output(0, acc));
        }
    }

    #[test]
    fn emulated_instructions() {
        assert_eq!(Emulated::sxtb16(0x80_7f_ff_01), 0x007f_0001);
        assert_eq!(Emulated::sxtb16_ror8(0x80_7f_ff_01), 0xff80_ffff);
        assert_eq!(Emulated::uxtb16(0x80_7f_ff_01), 0x007f_0001);
        assert_eq!(Emulated::uxtb16_ror8(0x80_7f_ff_01), 0x0080_00ff);
        assert_eq!(Emulated::smlad(0xffff_0002, 0x0003_0004, 10), 10 + 8 - 3);
        assert_eq!(Emulated::smlabb(0xffff_fffe, 0x7000_0005, 10), 10 - 10);
        assert_eq!(Emulated::ssub16(0x0005_ff80, 0x0007_0001), 0xfffe_ff7f);
        // x = bytes 1, -2, 3, 4; w0, w1, w2 = 5, -6, 7.
        let (w02, w1) = (0x0007_0005, 0x0000_fffa);
        assert_eq!(
            Emulated::row3(100, w02, w1, 0x04_03_fe_01),
            100 + 5 + 12 + 21
        );
        assert_eq!(
            Emulated::smlad(0x8000_8000, 0x8000_8000, i32::MAX),
            i32::MAX.wrapping_add(1 << 31)
        );
    }
}
