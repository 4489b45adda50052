//! The int8 depthwise convolution of the microcontrollers (one input and
//! one output channel a group): per channel, a band of its input rows is
//! copied into a buffer on the stack with the padding written as the input's
//! zero point, so that every output's taps lie in the buffer (no bounds to
//! test) and `x − z_in` needs no subtraction per tap: each output sums `w ·
//! x` from `bias − z_in · Σw` (the padding's bytes, `z_in`, then add
//! nothing, as a real zero should), the same sum modulo 2³² as the portable
//! kernel's.
//!
//! A 3×3 kernel at unit dilation (MobileNet's, DS-CNN's) runs a kernel
//! row a step through the target's [`Row3`]: on Armv7E-M one unaligned word
//! load, two `SXTB16`, an `SMLAD` and an `SMLABB` for three taps
//! ([`Simd`]); elsewhere three byte loads and multiply-adds ([`Scalar`]).
//! Other kernels go tap by tap through a table of the taps' offsets in the
//! buffer. The epilogue is prepared once per channel.
//!
//! Layers whose band does not fit (an output row needs more than
//! [`BAND`] bytes of input rows) or with more than [`TAPS`] taps are left
//! to the caller (`im2col`'s general kernel takes them).

use super::conv::Int8Conv;
use super::epilogue::Epilogue;

/// Bytes of the band buffer: padded input rows of one channel.
const BAND: usize = 1024;

/// Taps of the general path's offset table.
const TAPS: usize = 64;

/// Outputs whose accumulators the 3×3 path keeps before their epilogue.
const ROW: usize = 32;

/// The products of one kernel row of three taps with three adjacent input
/// bytes: the target's instructions.
pub(super) trait Row3 {
    /// A kernel row's three weights, as the step wants them.
    type W: Copy;
    /// Packs the weights `w[0..3]`.
    fn pack(w: &[i8]) -> Self::W;
    /// `acc + w0·x[0] + w1·x[1] + w2·x[2]` (wrapping).
    ///
    /// # Safety
    /// The four bytes at `x` must be readable (the fourth is read on some
    /// targets, never used).
    unsafe fn row(acc: i32, w: Self::W, x: *const i8) -> i32;

    /// A run of 3×3 outputs along a band row, each from `init`: output `k`
    /// sums [`row`](Self::row) at `x + k · stride + r · width` with
    /// `w[r]`, r = 0, 1, 2, into `accs[k]`.
    ///
    /// # Safety
    /// The bytes from `x` to `x + (accs.len() − 1) · stride + 2 · width + 3`
    /// must be readable.
    #[inline(always)]
    unsafe fn run(
        accs: &mut [i32],
        x: *const i8,
        width: usize,
        stride: usize,
        init: i32,
        w: &[Self::W; 3],
    ) {
        for (k, a) in accs.iter_mut().enumerate() {
            // SAFETY: the caller makes these bytes readable.
            *a = unsafe {
                let p = x.add(k * stride);
                let v = Self::row(init, w[0], p);
                let v = Self::row(v, w[1], p.add(width));
                Self::row(v, w[2], p.add(2 * width))
            };
        }
    }
}

/// Three byte loads and multiply-adds: Armv6-M's step (and the host's
/// tests').
#[cfg(any(ember_thumb1, test))]
pub(super) struct Scalar;

#[cfg(any(ember_thumb1, test))]
impl Row3 for Scalar {
    type W = [i32; 3];
    #[inline(always)]
    fn pack(w: &[i8]) -> [i32; 3] {
        [i32::from(w[0]), i32::from(w[1]), i32::from(w[2])]
    }
    #[inline(always)]
    unsafe fn row(acc: i32, w: [i32; 3], x: *const i8) -> i32 {
        // SAFETY: the caller makes x[0..4] readable.
        let (a, b, c) = unsafe { (*x, *x.add(1), *x.add(2)) };
        acc.wrapping_add(w[0] * i32::from(a))
            .wrapping_add(w[1] * i32::from(b))
            .wrapping_add(w[2] * i32::from(c))
    }
}

/// Armv7E-M's step ([`Dsp::row3`]), the instructions from `D` (the
/// assembly, or their emulation on the host).
#[cfg(any(ember_dsp, test))]
pub(super) struct Simd<D>(core::marker::PhantomData<D>);

#[cfg(any(ember_dsp, test))]
use crate::deploy::int8::dsp::Dsp;

#[cfg(any(ember_dsp, test))]
impl<D: Dsp> Row3 for Simd<D> {
    /// `(w0, w2)` as halfwords, and `w1` in the low halfword.
    type W = (u32, u32);
    #[inline(always)]
    fn pack(w: &[i8]) -> (u32, u32) {
        let half = |v: i8| u32::from(v as i16 as u16);
        (half(w[0]) | half(w[2]) << 16, half(w[1]))
    }
    #[inline(always)]
    unsafe fn row(acc: i32, w: (u32, u32), x: *const i8) -> i32 {
        // SAFETY: the caller makes x[0..4] readable; an unaligned word load
        // (one `LDR` on Armv7E-M).
        let word = unsafe { x.cast::<u32>().read_unaligned() };
        D::row3(acc, w.0, w.1, u32::from_le(word))
    }
    #[inline(always)]
    unsafe fn run(
        accs: &mut [i32],
        x: *const i8,
        width: usize,
        stride: usize,
        init: i32,
        w: &[(u32, u32); 3],
    ) {
        let w02 = [w[0].0, w[1].0, w[2].0];
        let w1 = [w[0].1 | w[1].1 << 16, w[2].1];
        // SAFETY: the caller's contract is D::dw3_run's.
        unsafe { D::dw3_run(accs, x, width, stride, init, w02, w1) }
    }
}

/// Runs the depthwise layer `h` (see the module documentation) with the
/// step `R` if this kernel takes it: per output the bias plus `w · (x −
/// z_in)` over the taps on the input, stored by `ep`. Returns `false`,
/// having written nothing, for a layer that is not depthwise or that it
/// leaves to the caller.
#[inline(never)]
pub(super) fn depthwise<R: Row3>(l: &Int8Conv<'_>, y: &mut [i8], ep: &impl Epilogue) -> bool {
    let Int8Conv {
        h,
        z_in,
        weight,
        bias,
        x,
    } = *l;
    let [c, ih, iw] = h.in_shape;
    let [o, oh, ow] = h.out_shape;
    let g = h.geometry;
    let ([kh, kw], [sh, sw], [dh, dw]) = (g.kernel, g.stride, g.dilation);
    let taps = kh * kw;
    let (plane, pixels) = (ih * iw, oh * ow);
    if g.groups != c
        || o != c
        || taps == 0
        || taps > TAPS
        || pixels == 0
        || sh == 0
        || sw == 0
        || weight.len() < c * taps
        || bias.len() < c
        || x.len() < c * plane
        || y.len() < c * pixels
    {
        return false;
    }
    // The buffer's columns: column j is the input's column j − pad_left;
    // `width` of them reach every tap of an output row.
    let width = (ow - 1) * sw + (kw - 1) * dw + 1;
    let span = (kh - 1) * dh + 1;
    let fit = BAND / width;
    if fit < span {
        return false;
    }
    let per_band = ((fit - span) / sh + 1).min(oh);
    let z = z_in as i8;
    // Four bytes past the band: a step reads a word at its last tap.
    let mut band = [z; BAND + 4];
    let mut accs = [0i32; ROW];
    let three = kh == 3 && kw == 3 && dh == 1 && dw == 1;
    let mut offs = [0usize; TAPS];
    for (i, off) in offs.iter_mut().take(taps).enumerate() {
        *off = i / kw * dh * width + i % kw * dw;
    }
    let offs = &offs[..taps];
    let [pt, pl, ..] = g.pad;
    // The input's columns in the buffer: [lo, hi). The others are `z` from
    // the start and stay so: a row of the input writes only these, a row of
    // the padding all `z`.
    let lo = pl.min(width);
    let hi = (pl + iw).min(width).max(lo);
    let chans = x
        .chunks_exact(plane)
        .zip(weight.chunks_exact(taps))
        .zip(y.chunks_exact_mut(pixels))
        .zip(bias)
        .take(c);
    for (ch, (((xs, w), ys), &b)) in chans.enumerate() {
        let wsum = w.iter().fold(0i32, |a, &v| a.wrapping_add(i32::from(v)));
        let folded = b.wrapping_sub(z_in.wrapping_mul(wsum));
        let m = ep.channel(ch);
        let packed = if three {
            [R::pack(&w[0..3]), R::pack(&w[3..6]), R::pack(&w[6..9])]
        } else {
            [R::pack(&[0; 3]); 3]
        };
        let mut oy0 = 0;
        while oy0 < oh {
            let n = per_band.min(oh - oy0);
            let rows = (n - 1) * sh + span;
            // Padded row r0 + j is the input's row r0 + j − pad_top.
            let r0 = oy0 * sh;
            for (j, row) in band[..rows * width].chunks_exact_mut(width).enumerate() {
                match (r0 + j).checked_sub(pt).filter(|&iy| iy < ih) {
                    Some(iy) => copy(&mut row[lo..hi], &xs[iy * iw..][..hi - lo]),
                    None => row.fill(z),
                }
            }
            let outs = &mut ys[oy0 * ow..(oy0 + n) * ow];
            if three {
                // Per band row, ROW outputs at a time: their accumulators,
                // then their epilogue (two short loops, each with its
                // constants in registers).
                for (r, yr) in outs.chunks_exact_mut(ow).enumerate() {
                    let row = r * sh * width;
                    for (j, chunk) in yr.chunks_mut(ROW).enumerate() {
                        let accs = &mut accs[..chunk.len()];
                        // SAFETY: output (r, ox) reads the four bytes at
                        // r · sh · width + ox · sw + ky · width (ky < 3); as
                        // ox · sw + 3 ≤ width and r · sh + 3 ≤ rows, the
                        // last is below (r · sh + 3) · width ≤ rows · width
                        // ≤ BAND, within the buffer's BAND + 4 bytes.
                        unsafe {
                            let p = band.as_ptr().add(row + j * ROW * sw);
                            R::run(accs, p, width, sw, folded, &packed);
                        }
                        ep.store(m, accs, chunk);
                    }
                }
            } else {
                for (r, yr) in outs.chunks_exact_mut(ow).enumerate() {
                    for (ox, v) in yr.iter_mut().enumerate() {
                        let win = &band[r * sh * width + ox * sw..];
                        let acc = offs.iter().zip(w).fold(folded, |a, (&off, &wv)| {
                            // Not unrolled: flash (3×3 kernels have their
                            // own path).
                            compact_loop!();
                            a.wrapping_add(i32::from(wv) * i32::from(win[off]))
                        });
                        *v = ep.apply(m, acc);
                    }
                }
            }
            oy0 += n;
        }
    }
    true
}

/// `dst.copy_from_slice(src)`, a short row byte by byte (a call to
/// `memcpy` costs more than a few bytes' copy).
#[inline(always)]
fn copy(dst: &mut [i8], src: &[i8]) {
    if dst.len() <= 16 {
        for (d, &v) in dst.iter_mut().zip(src) {
            compact_loop!();
            *d = v;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::{agrees_with_portable, node, Kernel};
    use super::super::NodeHeader;
    use super::*;
    use crate::deploy::int8::dsp::Emulated;
    use proptest::prelude::*;
    extern crate std;
    use std::vec;

    /// `R`'s depthwise kernel gives the portable kernel's bytes on layer
    /// `h`; `false` if it left the layer.
    fn agree<R: Row3>(h: &NodeHeader, seed: u64, z: i32) -> Result<bool, TestCaseError> {
        let run: &Kernel<'_> = &|w, b, x, y, out| {
            let l = Int8Conv {
                h,
                z_in: z,
                weight: w,
                bias: b,
                x,
            };
            depthwise::<R>(&l, y, &out)
        };
        agrees_with_portable(h, seed, z, run)
    }

    proptest! {
        /// On random depthwise layers (kernels, strides, dilations,
        /// asymmetric padding, maps from one pixel to wider than a band
        /// holds at once, zero points), both steps give the portable
        /// kernel's bytes.
        #[test]
        fn depthwise_is_the_portable_kernel(
            c in 1usize..6,
            k in proptest::array::uniform2(1usize..5),
            s in proptest::array::uniform2(1usize..3),
            d in proptest::array::uniform2(1usize..3),
            pad in proptest::array::uniform4(0usize..3),
            ih in 1usize..40,
            iw in 1usize..40,
            seed in any::<u64>(),
            z in -128i32..128,
        ) {
            let p = (c, 1, 1, k[0], k[1], s, d, pad, ih, iw);
            if let Some(h) = node(p) {
                let simd = agree::<Simd<Emulated>>(&h, seed, z)?;
                let scalar = agree::<Scalar>(&h, seed, z)?;
                prop_assert_eq!(simd, scalar);
            }
        }

        /// The 3×3 step on every stride and padding of MobileNet's and
        /// DS-CNN's layers, and on maps taller than a band.
        #[test]
        fn three_by_three(
            c in 1usize..4,
            s in 1usize..3,
            pad in proptest::array::uniform4(0usize..2),
            ih in 1usize..70,
            iw in 3usize..60,
            seed in any::<u64>(),
            z in -128i32..128,
        ) {
            let p = (c, 1, 1, 3, 3, [s, s], [1, 1], pad, ih, iw);
            if let Some(h) = node(p) {
                prop_assert!(agree::<Simd<Emulated>>(&h, seed, z)?);
                prop_assert!(agree::<Scalar>(&h, seed, z)?);
            }
        }
    }

    /// A layer wider than a band is left to the caller, untouched.
    #[test]
    fn leaves_what_does_not_fit() {
        let h = node((1, 1, 1, 3, 3, [1, 1], [1, 1], [1; 4], 3, 2000)).unwrap();
        let mut y = vec![7i8; h.out_len()];
        let x = vec![0i8; h.in_len()];
        let ep = |a: i32, _: usize| a as i8;
        let l = Int8Conv {
            h: &h,
            z_in: 0,
            weight: &[1; 9],
            bias: &[0],
            x: &x,
        };
        assert!(!depthwise::<Scalar>(&l, &mut y, &ep));
        assert!(y.iter().all(|&v| v == 7));
    }
}
