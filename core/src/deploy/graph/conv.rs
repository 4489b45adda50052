//! The convolution kernel of graph files, for both data types: direct,
//! channel-first, one output row at a time in blocks of [`BLOCK`] columns,
//! each tap's weight loaded once per block and the columns it reaches found
//! by arithmetic (no per-tap bounds test). Each output sums its taps in the
//! same order as the reference loop (input channel, kernel row, kernel
//! column), so f32 results are bit-identical to it and int8 ones exact.
//!
//! It runs every f32 convolution, and the int8 ones on targets without a
//! kernel of their own: on Armv7E-M (cfg `ember_dsp`) and Armv6-M (cfg
//! `ember_thumb1`) the int8 convolution is `im2col`'s, which gives the same
//! bytes (proptested against this kernel).

use super::{Geometry, NodeHeader};

/// An int8 convolution's operands, what every int8 convolution kernel
/// takes: the node, its input's zero point, its weights (`[out, in/groups,
/// k_h, k_w]`), its biases (accumulator units) and its input.
#[derive(Clone, Copy)]
pub(super) struct Int8Conv<'a> {
    pub(super) h: &'a NodeHeader,
    pub(super) z_in: i32,
    pub(super) weight: &'a [i8],
    pub(super) bias: &'a [i32],
    pub(super) x: &'a [i8],
}

/// Output columns accumulated at once.
const BLOCK: usize = 32;

/// The output columns `[lo, hi)` whose tap at offset `off` (`k · dilation`)
/// falls on an input row of `len` with `before` padding, at `stride`.
#[inline]
fn columns(off: usize, before: usize, stride: usize, len: usize, outputs: usize) -> (usize, usize) {
    let lo = before.saturating_sub(off).div_ceil(stride);
    let hi = match (len + before).checked_sub(off + 1) {
        Some(last) => (last / stride + 1).min(outputs),
        None => 0,
    };
    (lo, hi.max(lo))
}

/// A convolution of `x` (`h.in_shape`) by `weight` (`[out, in/groups, k_h,
/// k_w]`) into `y` (`h.out_shape`): each output starts at `init(channel)`,
/// takes `mac(acc, w, x)` for each tap on the input, and is stored by
/// `store(acc, channel)`.
#[inline(always)]
pub(super) fn conv2d<X: Copy, W: Copy, A: Copy, Y>(
    h: &NodeHeader,
    weight: &[W],
    x: &[X],
    y: &mut [Y],
    init: impl Fn(usize) -> A,
    mac: impl Fn(A, W, X) -> A,
    store: impl Fn(A, usize) -> Y,
) {
    let [c, ih, iw] = h.in_shape;
    let [o, oh, ow] = h.out_shape;
    let Geometry {
        kernel: [kh, kw],
        stride: [sh, sw],
        dilation: [dh, dw],
        pad: [pt, pl, ..],
        groups,
    } = h.geometry;
    let cg = c / groups;
    let og = o / groups;
    let taps = cg * kh * kw;
    for oc in 0..o {
        let first = oc / og * cg;
        let wo = &weight[oc * taps..(oc + 1) * taps];
        let a0 = init(oc);
        for oy in 0..oh {
            let mut ox0 = 0;
            while ox0 < ow {
                let n = BLOCK.min(ow - ox0);
                let mut acc = [a0; BLOCK];
                for ci in 0..cg {
                    let plane = &x[(first + ci) * ih * iw..(first + ci + 1) * ih * iw];
                    for ky in 0..kh {
                        let Some(iy) = (oy * sh + ky * dh).checked_sub(pt).filter(|&r| r < ih)
                        else {
                            continue;
                        };
                        let row = &plane[iy * iw..(iy + 1) * iw];
                        let wr = &wo[(ci * kh + ky) * kw..(ci * kh + ky + 1) * kw];
                        for (kx, &w) in wr.iter().enumerate() {
                            let off = kx * dw;
                            let (lo, hi) = columns(off, pl, sw, iw, ow);
                            let (lo, hi) = (lo.max(ox0), hi.min(ox0 + n));
                            if lo >= hi {
                                continue;
                            }
                            // Zipped slices: no index tests in the loop.
                            let xs = row[lo * sw + off - pl..].iter().step_by(sw);
                            for (a, &xv) in acc[lo - ox0..hi - ox0].iter_mut().zip(xs) {
                                *a = mac(*a, w, xv);
                            }
                        }
                    }
                }
                let out = &mut y[(oc * oh + oy) * ow + ox0..(oc * oh + oy) * ow + ox0 + n];
                for (v, &a) in out.iter_mut().zip(&acc[..n]) {
                    *v = store(a, oc);
                }
                ox0 += n;
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{Geometry, NodeHeader, NodeOp};
    use super::conv2d;
    use crate::deploy::Activation;
    use proptest::prelude::*;
    extern crate std;
    use std::{vec, vec::Vec};

    /// The reference: each output's taps in turn, each tested against the
    /// input's bounds.
    fn reference<A: Copy>(
        h: &NodeHeader,
        mut tap: impl FnMut(A, usize, usize) -> A,
        init: impl Fn(usize) -> A,
    ) -> Vec<A> {
        let [c, ih, iw] = h.in_shape;
        let [o, oh, ow] = h.out_shape;
        let g = h.geometry;
        let (cg, og) = (c / g.groups, o / g.groups);
        let [kh, kw] = g.kernel;
        let mut out = Vec::new();
        for oc in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut a = init(oc);
                    for ci in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy =
                                    (oy * g.stride[0] + ky * g.dilation[0]).checked_sub(g.pad[0]);
                                let ix =
                                    (ox * g.stride[1] + kx * g.dilation[1]).checked_sub(g.pad[1]);
                                if let (Some(iy), Some(ix)) = (iy, ix) {
                                    if iy < ih && ix < iw {
                                        let wi = ((oc * cg + ci) * kh + ky) * kw + kx;
                                        let xi = ((oc / og * cg + ci) * ih + iy) * iw + ix;
                                        a = tap(a, wi, xi);
                                    }
                                }
                            }
                        }
                    }
                    out.push(a);
                }
            }
        }
        out
    }

    /// Groups, channels in and out per group, kernel, stride, dilation,
    /// padding, input height and width.
    pub(crate) type Params = (
        usize,
        usize,
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 4],
        usize,
        usize,
    );

    /// A valid convolution node from random hyper-parameters.
    /// A target kernel's run of layer `h` on weights, biases and inputs:
    /// `false` if it left the layer to another kernel.
    pub(crate) type Kernel<'k> =
        dyn Fn(&[i8], &[i32], &[i8], &mut [i8], &dyn Fn(i32, usize) -> i8) -> bool + 'k;

    /// A layer's random weights, inputs, biases and fast requantization
    /// pairs (`[multiplier, shift]` per output channel).
    pub(crate) struct RandomLayer {
        pub(crate) w: Vec<i8>,
        pub(crate) x: Vec<i8>,
        pub(crate) b: Vec<i32>,
        pub(crate) pairs: Vec<i32>,
    }

    /// Random values for layer `h`, from `seed`.
    pub(crate) fn random_layer(h: &NodeHeader, seed: u64) -> RandomLayer {
        let mut rng = crate::Rng::new(seed);
        let g = h.geometry;
        let taps = h.in_shape[0] / g.groups * g.kernel[0] * g.kernel[1];
        let o = h.out_shape[0];
        let w = (0..o * taps).map(|_| rng.next_u32() as i8).collect();
        let x = (0..h.in_len()).map(|_| rng.next_u32() as i8).collect();
        let b = (0..o).map(|_| rng.next_u32() as i32 >> 8).collect();
        let pairs = (0..o)
            .flat_map(|_| {
                [
                    (rng.next_u32() >> 1) as i32,
                    -((rng.next_u32() % 12) as i32) - 2,
                ]
            })
            .collect();
        RandomLayer { w, x, b, pairs }
    }

    /// The portable kernel's int8 outputs of layer `h` on `l` with input
    /// zero point `z`, stored by `out`.
    pub(crate) fn portable(
        h: &NodeHeader,
        l: &RandomLayer,
        z: i32,
        out: &dyn Fn(i32, usize) -> i8,
    ) -> Vec<i8> {
        let mut y = vec![0i8; h.out_len()];
        conv2d(
            h,
            &l.w,
            &l.x,
            &mut y,
            |o| l.b[o],
            |a: i32, w: i8, x: i8| a.wrapping_add(i32::from(w) * (i32::from(x) - z)),
            out,
        );
        y
    }

    /// Runs `kernel` and the portable kernel on layer `h` with random
    /// weights, inputs and biases (from `seed`) and input zero point `z`,
    /// through two epilogues: one that folds every bit of the accumulator
    /// into the byte, and a requantization. `Ok(false)` if the kernel left
    /// the layer; a failed case if an output differs.
    pub(crate) fn agrees_with_portable(
        h: &NodeHeader,
        seed: u64,
        z: i32,
        kernel: &Kernel<'_>,
    ) -> Result<bool, TestCaseError> {
        let l = random_layer(h, seed);
        let fold = |a: i32, _: usize| (a ^ a >> 8 ^ a >> 16 ^ a >> 24) as i8;
        let requant = |a: i32, o: usize| {
            let (m, s) = (l.pairs[2 * o], l.pairs[2 * o + 1]);
            (crate::deploy::requantize(a, m, s).saturating_add(3)).clamp(-128, 127) as i8
        };
        let outs: [&dyn Fn(i32, usize) -> i8; 2] = [&fold, &requant];
        for out in outs {
            let want = portable(h, &l, z, out);
            let mut got = vec![0i8; h.out_len()];
            if !kernel(&l.w, &l.b, &l.x, &mut got, out) {
                return Ok(false);
            }
            prop_assert_eq!(got, want);
        }
        Ok(true)
    }

    pub(crate) fn node((groups, cg, og, kh, kw, s, d, pad, ih, iw): Params) -> Option<NodeHeader> {
        let geometry = Geometry {
            kernel: [kh, kw],
            stride: s,
            dilation: d,
            pad,
            groups,
        };
        let [oh, ow] = geometry.output([ih, iw])?;
        Some(NodeHeader {
            op: NodeOp::Conv,
            inputs: [0; 2],
            in_shape: [groups * cg, ih, iw],
            out_shape: [groups * og, oh, ow],
            geometry,
            activation: Activation::Identity,
            arena: 0,
            out_scale: 0.0,
            out_zero: 0,
        })
    }

    proptest! {
        /// On random layers (groups, kernels, strides, dilations,
        /// asymmetric padding, wide rows across blocks), the kernel gives
        /// the reference's int8 accumulators exactly and its f32 outputs
        /// bit for bit.
        #[test]
        fn the_kernel_is_the_reference(
            p in (1usize..4, 1usize..4, 1usize..3, 1usize..4, 1usize..4,
                  proptest::array::uniform2(1usize..4), proptest::array::uniform2(1usize..3),
                  proptest::array::uniform4(0usize..3), 1usize..9, 1usize..70),
            seed in any::<u64>(),
            z in -128i32..128,
        ) {
            let Some(h) = node(p) else { return Ok(()) };
            let mut rng = crate::Rng::new(seed);
            let taps = h.in_shape[0] / h.geometry.groups * h.geometry.kernel[0] * h.geometry.kernel[1];
            let wn = h.out_shape[0] * taps;
            let w8: Vec<i8> = (0..wn).map(|_| (rng.next_u32() % 255) as i8).collect();
            let x8: Vec<i8> = (0..h.in_len()).map(|_| rng.next_u32() as i8).collect();
            let b: Vec<i32> = (0..h.out_shape[0]).map(|_| rng.next_u32() as i32 >> 12).collect();
            let want = reference(&h, |a: i32, wi, xi| a + i32::from(w8[wi]) * (i32::from(x8[xi]) - z), |o| b[o]);
            let mut got = vec![0i32; h.out_len()];
            conv2d(&h, &w8, &x8, &mut got, |o| b[o], |a: i32, w: i8, x: i8| a + i32::from(w) * (i32::from(x) - z), |a, _| a);
            prop_assert_eq!(got, want);

            let wf: Vec<f32> = w8.iter().map(|&v| f32::from(v) / 37.0).collect();
            let xf: Vec<f32> = x8.iter().map(|&v| f32::from(v) / 11.0).collect();
            let bf: Vec<f32> = b.iter().map(|&v| v as f32 / 1e5).collect();
            let want = reference(&h, |a: f32, wi, xi| a + wf[wi] * xf[xi], |o| bf[o]);
            let mut got = vec![0f32; h.out_len()];
            conv2d(&h, &wf, &xf, &mut got, |o| bf[o], |a: f32, w: f32, x: f32| a + w * x, |a, _| a);
            let (got, want): (Vec<u32>, Vec<u32>) = (got.iter().map(|v| v.to_bits()).collect(), want.iter().map(|v| v.to_bits()).collect());
            prop_assert_eq!(got, want);
        }
    }
}
