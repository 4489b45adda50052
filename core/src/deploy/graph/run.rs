//! Inference of a graph file: the portable reference kernels, one per node
//! op and data type, channel-first (`[C, H, W]` per sample), and the walk
//! over the file's arena that feeds them.

use super::conv::Int8Conv;
use super::epilogue::{Epilogue, Requant};
use super::{conv, GraphModel, NodeEvent, NodeHeader, NodeOp};
#[cfg(any(ember_dsp, ember_thumb1))]
use super::{depthwise, im2col};
use crate::deploy::{dense_f32, Activation, InferError, LayerWeights, QuantParams};

/// A node's kernel for [`GraphModel::run`]: the node's index, record and
/// data, what it reads, and its output.
type NodeFn<'a, 'f, T> = dyn FnMut(usize, &NodeHeader, LayerWeights<'a>, [&[T]; 2], &mut [T]) -> Result<(), InferError>
    + 'f;

/// What [`GraphModel::run`] tells of each node, just before and just after
/// its kernel (see [`GraphModel::infer_q8_profiled`]).
pub(super) type ProfileFn<'f> = dyn FnMut(usize, &NodeHeader, NodeEvent) + 'f;

impl<'a> GraphModel<'a> {
    /// Runs the first `count` nodes (the input included) in order over the
    /// arena `scratch`: `node` computes node `i` from what it reads (the
    /// input read in place) into its output, between `profile`'s calls.
    /// Returns the last run node's output.
    fn run<'s, T: Copy>(
        &self,
        input: &[T],
        scratch: &'s mut [T],
        count: usize,
        profile: &mut ProfileFn<'_>,
        node: &mut NodeFn<'a, '_, T>,
    ) -> Result<&'s [T], InferError> {
        if input.len() != self.input_features() {
            return Err(InferError::InputLength {
                expected: self.input_features(),
                found: input.len(),
            });
        }
        if scratch.len() < self.scratch_len() {
            return Err(InferError::ScratchTooSmall {
                needed: self.scratch_len(),
            });
        }
        let n = self.node_count();
        let bad = InferError::LayerCount { layers: n };
        if count < 2 || count > n {
            return Err(bad);
        }
        let mut last = (0, 0);
        for i in 1..count {
            let (h, w) = self.node(i).ok_or(bad)?;
            let len = h.out_len();
            // The output, and the arena on either side of it: the inputs
            // are elsewhere ([`GraphModel::parse`] checked the plan).
            let (left, rest) = scratch.split_at_mut(h.arena);
            let (y, right) = rest.split_at_mut(len);
            let out_end = h.arena + len;
            let mut src: [&[T]; 2] = [&[], &[]];
            for (k, s) in src.iter_mut().enumerate().take(super::file::reads(h.op)) {
                let from = h.inputs[k];
                *s = if from == 0 {
                    input
                } else {
                    let f = self.node_header(from);
                    let (at, l) = (f.arena, f.out_len());
                    if at + l <= h.arena {
                        &left[at..at + l]
                    } else {
                        at.checked_sub(out_end)
                            .and_then(|s| right.get(s..s + l))
                            .ok_or(bad)?
                    }
                };
            }
            profile(i, &h, NodeEvent::Start);
            node(i, &h, w, src, y)?;
            profile(i, &h, NodeEvent::End);
            last = (h.arena, len);
        }
        Ok(&scratch[last.0..last.0 + last.1])
    }

    /// Runs an f32 graph on `input` (`C·H·W` features, channel-first, read
    /// in place); `scratch` must hold [`scratch_len`](Self::scratch_len)
    /// floats, the arena of the file's plan. Returns the outputs (a slice
    /// of `scratch`).
    pub fn infer_f32<'s>(
        &self,
        input: &[f32],
        scratch: &'s mut [f32],
    ) -> Result<&'s [f32], InferError> {
        self.infer_f32_observed(
            input,
            scratch,
            self.node_count(),
            &mut |_, _, _| {},
            &mut |_, _, _| {},
        )
    }

    /// [`infer_f32`](Self::infer_f32), calling `profile` with each node's
    /// index and record just before and just after its kernel (see
    /// [`NodeEvent`]): per-node timing, with no allocation.
    pub fn infer_f32_profiled<'s>(
        &self,
        input: &[f32],
        scratch: &'s mut [f32],
        profile: &mut dyn FnMut(usize, &NodeHeader, NodeEvent),
    ) -> Result<&'s [f32], InferError> {
        self.infer_f32_observed(
            input,
            scratch,
            self.node_count(),
            &mut |_, _, _| {},
            profile,
        )
    }

    /// [`infer_f32`](Self::infer_f32) of the first `count` nodes, showing
    /// `observe` each node's values as they are made (its index, whether
    /// they are the pre-activation, and the values): first before its
    /// activation, then after. What calibration reads. `profile` is called
    /// when each node starts and ends (the public form is
    /// [`infer_f32_profiled`](Self::infer_f32_profiled)).
    pub(crate) fn infer_f32_observed<'s>(
        &self,
        input: &[f32],
        scratch: &'s mut [f32],
        count: usize,
        observe: &mut dyn FnMut(usize, bool, &[f32]),
        profile: &mut ProfileFn<'_>,
    ) -> Result<&'s [f32], InferError> {
        if self.int8 {
            return Err(InferError::WrongDtype);
        }
        self.run(input, scratch, count, profile, &mut |i, h, w, src, y| {
            let LayerWeights::F32 { weight, bias } = w else {
                return Err(InferError::WrongDtype);
            };
            // The kernels compute the pre-activation; the activation is a
            // pass of its own (the same values as applied in the kernel).
            let act = h.activation;
            let h = &NodeHeader {
                activation: Activation::Identity,
                ..*h
            };
            match h.op {
                NodeOp::Dense => dense_f32(weight, bias, src[0], y, Activation::Identity),
                NodeOp::Conv => conv2d_f32(h, weight, bias, src[0], y),
                NodeOp::MaxPool | NodeOp::AvgPool => pool_f32(h, src[0], y),
                NodeOp::GlobalAvgPool => {
                    let plane = h.in_shape[1] * h.in_shape[2];
                    for (v, x) in y.iter_mut().zip(src[0].chunks_exact(plane)) {
                        *v = x.iter().sum::<f32>() / plane as f32;
                    }
                }
                NodeOp::Add => {
                    for ((v, &a), &b) in y.iter_mut().zip(src[0]).zip(src[1]) {
                        *v = a + b;
                    }
                }
                NodeOp::Input => return Err(InferError::LayerCount { layers: i }),
            }
            observe(i, true, y);
            if act != Activation::Identity {
                for v in y.iter_mut() {
                    *v = act.apply(*v);
                }
            }
            observe(i, false, y);
            Ok(())
        })
    }

    /// The quantization of the model's input (an int8 file's input node).
    pub fn input_quantization(&self) -> QuantParams {
        let h = self.node_header(0);
        QuantParams {
            scale: h.out_scale,
            zero: h.out_zero,
        }
    }

    /// The quantization of the model's output (an int8 file's last node).
    pub fn output_quantization(&self) -> QuantParams {
        let h = self.node_header(self.node_count() - 1);
        QuantParams {
            scale: h.out_scale,
            zero: h.out_zero,
        }
    }

    /// Runs an int8 graph on quantized input (see
    /// [`input_quantization`](Self::input_quantization)), read in place;
    /// `scratch` must hold [`scratch_len`](Self::scratch_len) bytes.
    /// Returns the quantized outputs (a slice of `scratch`).
    pub fn infer_q8<'s>(
        &self,
        input: &[i8],
        scratch: &'s mut [i8],
    ) -> Result<&'s [i8], InferError> {
        self.infer_q8_profiled(input, scratch, &mut |_, _, _| {})
    }

    /// [`infer_q8`](Self::infer_q8), calling `profile` just before and just
    /// after each node's kernel (see [`NodeEvent`]).
    pub fn infer_q8_profiled<'s>(
        &self,
        input: &[i8],
        scratch: &'s mut [i8],
        profile: &mut dyn FnMut(usize, &NodeHeader, NodeEvent),
    ) -> Result<&'s [i8], InferError> {
        self.infer_q8_first(input, scratch, self.node_count(), profile)
    }

    /// [`infer_q8_profiled`](Self::infer_q8_profiled) of the first `count`
    /// nodes; returns node `count − 1`'s output.
    pub(super) fn infer_q8_first<'s>(
        &self,
        input: &[i8],
        scratch: &'s mut [i8],
        count: usize,
        profile: &mut ProfileFn<'_>,
    ) -> Result<&'s [i8], InferError> {
        if !self.int8 {
            return Err(InferError::WrongDtype);
        }
        self.run(input, scratch, count, profile, &mut |i, h, w, src, y| {
            let LayerWeights::Int8 {
                weight,
                bias,
                requant,
                table,
                ..
            } = w
            else {
                return Err(InferError::WrongDtype);
            };
            let z_in = self.node_header(h.inputs[0]).out_zero;
            // With a table, the pairs lead to the pre-activation's
            // quantization and the table gives the output.
            let ep = Requant::new(h, requant, table);
            match h.op {
                NodeOp::Dense => {
                    let k = src[0].len();
                    for (o, (v, row)) in y.iter_mut().zip(weight.chunks_exact(k)).enumerate() {
                        let acc = row.iter().zip(src[0]).fold(bias[o], |a, (&w, &x)| {
                            a.wrapping_add(i32::from(w) * (i32::from(x) - z_in))
                        });
                        *v = ep.apply(ep.channel(o), acc);
                    }
                }
                NodeOp::Conv => {
                    let l = Int8Conv {
                        h,
                        z_in,
                        weight,
                        bias,
                        x: src[0],
                    };
                    conv2d_i8(&l, y, &ep)
                }
                NodeOp::MaxPool | NodeOp::AvgPool => {
                    pool_i8(h, z_in, src[0], y, ep.floor());
                    if table.is_some() {
                        for v in y.iter_mut() {
                            *v = ep.lookup(i32::from(*v));
                        }
                    }
                }
                NodeOp::GlobalAvgPool => {
                    // Requantized to its own scale: a mean's range is
                    // narrower than its input's.
                    let plane = h.in_shape[1] * h.in_shape[2];
                    let m = ep.channel(0);
                    for (v, x) in y.iter_mut().zip(src[0].chunks_exact(plane)) {
                        let sum = x
                            .iter()
                            .fold(0i32, |a, &q| a.wrapping_add(i32::from(q) - z_in));
                        *v = ep.apply(m, sum);
                    }
                }
                NodeOp::Add => {
                    let zb = self.node_header(h.inputs[1]).out_zero;
                    let (ma, mb) = (ep.multiplier(0), ep.multiplier(1));
                    if let (Some(sa), Some(sb)) = (ma.small(), mb.small()) {
                        // The usual pairs: 32-bit arithmetic throughout
                        // (each rescaled term below 2^30, their sum below
                        // 2^31), the same results.
                        let (floor, zero) = (ep.floor(), ep.zero());
                        for ((v, &a), &b) in y.iter_mut().zip(src[0]).zip(src[1]) {
                            let a = sa.apply(i32::from(a) - z_in);
                            let b = sb.apply(i32::from(b) - zb);
                            let sum = (a + b + (1 << 15)) >> 16;
                            *v = ep.lookup((sum + zero).max(floor).min(127));
                        }
                        return Ok(());
                    }
                    let (floor, zero) = (i64::from(ep.floor()), i64::from(ep.zero()));
                    for ((v, &a), &b) in y.iter_mut().zip(src[0]).zip(src[1]) {
                        let a = ma.apply_inline(i32::from(a) - z_in);
                        let b = mb.apply_inline(i32::from(b) - zb);
                        let sum = (i64::from(a) + i64::from(b) + (1 << 15)) >> 16;
                        *v = ep.lookup((sum + zero).clamp(floor, 127) as i32);
                    }
                }
                NodeOp::Input => return Err(InferError::LayerCount { layers: i }),
            }
            Ok(())
        })
    }

    /// Quantizes real inputs with the model's input quantization into `out`.
    pub fn quantize_input(&self, x: &[f32], out: &mut [i8]) -> Result<(), InferError> {
        if x.len() != self.input_features() || out.len() != x.len() {
            return Err(InferError::InputLength {
                expected: self.input_features(),
                found: x.len(),
            });
        }
        let q = self.input_quantization();
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (libm::roundf(v / q.scale) as i32 + q.zero).clamp(-128, 127) as i8;
        }
        Ok(())
    }

    /// Runs an int8 graph on real inputs: quantizes `x` into `q` (input
    /// features long), runs in `scratch`, and writes the real outputs to
    /// `out` (output features long).
    pub fn infer_i8(
        &self,
        x: &[f32],
        q: &mut [i8],
        scratch: &mut [i8],
        out: &mut [f32],
    ) -> Result<(), InferError> {
        if out.len() != self.output_features() {
            return Err(InferError::OutputLength {
                expected: self.output_features(),
            });
        }
        self.quantize_input(x, q)?;
        let y = self.infer_q8(q, scratch)?;
        let p = self.output_quantization();
        for (o, &v) in out.iter_mut().zip(y) {
            *o = (i32::from(v) - p.zero) as f32 * p.scale;
        }
        Ok(())
    }
}

/// `a / b` rounded half away from zero (`b > 0`).
fn div_round(a: i64, b: i64) -> i64 {
    if a >= 0 {
        (a + b / 2) / b
    } else {
        -((-a + b / 2) / b)
    }
}

/// The input position of tap `k` of output `o` along an axis (`before`
/// the padding there), if it falls inside the input of length `len`.
#[inline]
fn tap(
    o: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    before: usize,
    len: usize,
) -> Option<usize> {
    (o * stride + k * dilation)
        .checked_sub(before)
        .filter(|&i| i < len)
}

/// A convolution in f32 (PyTorch's `F.conv2d`: cross-correlation, zero
/// padding, dilation, groups).
fn conv2d_f32(h: &NodeHeader, weight: &[f32], bias: &[f32], x: &[f32], y: &mut [f32]) {
    let act = h.activation;
    conv::conv2d(
        h,
        weight,
        x,
        y,
        |o| bias[o],
        |a, w, x| a + w * x,
        |a, _| act.apply(a),
    );
}

/// The int8 convolution: per output, the bias plus `w · (x − z_in)` over
/// the taps on the input (padding is a real zero), requantized by `ep`
/// (the one epilogue of every kernel). The target's kernels: on Armv7E-M
/// and Armv6-M `depthwise`'s for the depthwise layers it takes and
/// `im2col`'s for the others, the portable row kernel elsewhere; all give
/// the same bytes.
fn conv2d_i8(l: &Int8Conv<'_>, y: &mut [i8], ep: &Requant<'_>) {
    #[cfg(ember_dsp)]
    {
        use crate::deploy::int8::dsp::Arm;
        if !depthwise::depthwise::<depthwise::Simd<Arm>>(l, y, ep) {
            im2col::conv2d_i8::<im2col::DspConv<Arm>>(l, y, ep);
        }
    }
    #[cfg(ember_thumb1)]
    if !depthwise::depthwise::<depthwise::Scalar>(l, y, ep) {
        im2col::conv2d_i8::<im2col::Thumb1>(l, y, ep);
    }
    #[cfg(not(any(ember_dsp, ember_thumb1)))]
    conv::conv2d(
        l.h,
        l.weight,
        l.x,
        y,
        |o| l.bias[o],
        |a: i32, w: i8, x: i8| a.wrapping_add(i32::from(w) * (i32::from(x) - l.z_in)),
        |a, o| ep.apply(ep.channel(o), a),
    );
}

/// Max pooling (padding never wins, a NaN does) or average pooling (the
/// padding's zeros counted: the sum over the whole window's taps).
fn pool_f32(h: &NodeHeader, x: &[f32], y: &mut [f32]) {
    let taps = (h.geometry.kernel[0] * h.geometry.kernel[1]) as f32;
    let act = h.activation;
    if h.op == NodeOp::MaxPool {
        let max = |acc: f32, xi: usize| {
            let v = x[xi];
            if v.is_nan() || v > acc {
                v
            } else {
                acc
            }
        };
        pool_windows(h, f32::NEG_INFINITY, max, |at, acc, _| {
            y[at] = act.apply(acc)
        });
    } else {
        let sum = |acc: f32, xi: usize| acc + x[xi];
        pool_windows(h, 0.0, sum, |at, acc, _| y[at] = act.apply(acc / taps));
    }
}

/// int8 max pooling, or average pooling with the padding counted as the
/// input's zero point `zero` (a real zero), rounded half away from zero; the
/// result is in the input's quantization, and ReLU is the floor `floor`.
fn pool_i8(h: &NodeHeader, zero: i32, x: &[i8], y: &mut [i8], floor: i32) {
    // At most 65,535² taps (the format's kernel sizes are 16-bit): i64.
    let taps = (h.geometry.kernel[0] as i64 * h.geometry.kernel[1] as i64).max(1);
    let g = h.geometry;
    let two = g.kernel == [2, 2] && g.stride == [2, 2] && g.dilation == [1, 1];
    if h.op == NodeOp::MaxPool && two && g.pad == [0; 4] {
        return max_pool_2x2(h, x, y, floor);
    }
    if h.op == NodeOp::MaxPool {
        let max = |m: i32, xi: usize| m.max(i32::from(x[xi]));
        pool_windows(h, i32::MIN, max, |at, m, _| {
            y[at] = m.clamp(floor, 127) as i8;
        });
    } else {
        let sum = |s: i64, xi: usize| s + i64::from(x[xi]);
        pool_windows(h, 0i64, sum, |at, s, n| {
            let v = div_round(s + (taps - n as i64) * i64::from(zero), taps);
            y[at] = v.clamp(i64::from(floor), 127) as i8;
        });
    }
}

/// int8 2×2 max pooling at stride 2, unit dilation, without padding (the
/// commonest pooling), a pair of input rows at a time with no bounds test
/// per tap: the generic loop's bytes.
fn max_pool_2x2(h: &NodeHeader, x: &[i8], y: &mut [i8], floor: i32) {
    let [c, ih, iw] = h.in_shape;
    let [_, oh, ow] = h.out_shape;
    if ow == 0 || iw == 0 {
        return;
    }
    let planes = x.chunks_exact(ih * iw).zip(y.chunks_exact_mut(oh * ow));
    for (xc, yc) in planes.take(c) {
        for (rows, yr) in xc.chunks_exact(2 * iw).zip(yc.chunks_exact_mut(ow)) {
            let (r0, r1) = rows.split_at(iw);
            let pairs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
            for (v, (a, b)) in yr.iter_mut().zip(pairs) {
                let m = a[0].max(a[1]).max(b[0]).max(b[1]);
                *v = i32::from(m).max(floor).min(127) as i8;
            }
        }
    }
}

/// Folds every output window of a pooling: for output `at`, `acc` starts
/// at `init`, takes `tap(acc, input index)` for each of the window's taps
/// on the input in order (rows, then columns; padding skipped, PyTorch's
/// rule on the padding leaves at least one), and `store(at, acc, taps on
/// the input)` writes it. Generic, so that the taps cost no calls.
#[inline(always)]
fn pool_windows<A: Copy>(
    h: &NodeHeader,
    init: A,
    mut tap_fn: impl FnMut(A, usize) -> A,
    mut store: impl FnMut(usize, A, usize),
) {
    let [c, ih, iw] = h.in_shape;
    let [_, oh, ow] = h.out_shape;
    let g = h.geometry;
    let [kh, kw] = g.kernel;
    if g.pad == [0; 4] {
        // Without padding every window lies inside the input (the output
        // size is PyTorch's): no bounds to test per tap.
        let ([sh, sw], [dh, dw]) = (g.stride, g.dilation);
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = init;
                    for ky in 0..kh {
                        let row = (ch * ih + oy * sh + ky * dh) * iw + ox * sw;
                        for kx in 0..kw {
                            // Not unrolled: flash (2×2 max pooling, the hot
                            // case, has a loop of its own).
                            compact_loop!();
                            acc = tap_fn(acc, row + kx * dw);
                        }
                    }
                    store((ch * oh + oy) * ow + ox, acc, kh * kw);
                }
            }
        }
        return;
    }
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut acc, mut n) = (init, 0);
                for ky in 0..kh {
                    let Some(iy) = tap(oy, ky, g.stride[0], g.dilation[0], g.pad[0], ih) else {
                        continue;
                    };
                    let row = (ch * ih + iy) * iw;
                    for kx in 0..kw {
                        compact_loop!();
                        if let Some(ix) = tap(ox, kx, g.stride[1], g.dilation[1], g.pad[1], iw) {
                            acc = tap_fn(acc, row + ix);
                            n += 1;
                        }
                    }
                }
                store((ch * oh + oy) * ow + ox, acc, n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::node;
    use super::*;
    use proptest::prelude::*;
    extern crate std;
    use std::{vec, vec::Vec};

    proptest! {
        /// The 2×2 max pooling is the generic window loop's, on odd and
        /// even sizes and with ReLU's floor.
        #[test]
        fn max_pool_2x2_is_the_window_loop(
            c in 1usize..4,
            ih in 2usize..12,
            iw in 2usize..12,
            floor in -128i32..128,
            seed in any::<u64>(),
        ) {
            let mut h = node((c, 1, 1, 2, 2, [2, 2], [1, 1], [0; 4], ih, iw)).unwrap();
            h.op = NodeOp::MaxPool;
            let mut rng = crate::Rng::new(seed);
            let x: Vec<i8> = (0..h.in_len()).map(|_| rng.next_u32() as i8).collect();
            let mut want = vec![0i8; h.out_len()];
            let max = |m: i32, xi: usize| m.max(i32::from(x[xi]));
            pool_windows(&h, i32::MIN, max, |at, m, _| {
                want[at] = m.clamp(floor, 127) as i8;
            });
            let mut got = vec![0i8; h.out_len()];
            max_pool_2x2(&h, &x, &mut got, floor);
            prop_assert_eq!(got, want);
        }
    }
}
