//! f32 inference of a graph file: the portable reference kernels, one per
//! node op, channel-first (`[C, H, W]` per sample).

use super::{Geometry, GraphModel, NodeHeader, NodeOp};
use crate::deploy::{dense_f32, InferError};

impl GraphModel<'_> {
    /// Runs an f32 graph on `input` (`C·H·W` features, channel-first, read
    /// in place); `scratch` must hold [`scratch_len`](Self::scratch_len)
    /// floats, the arena of the file's plan. Returns the outputs (a slice
    /// of `scratch`).
    pub fn infer_f32<'s>(
        &self,
        input: &[f32],
        scratch: &'s mut [f32],
    ) -> Result<&'s [f32], InferError> {
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
        let mut last = (0, 0);
        for i in 1..n {
            let (h, w) = self.node(i).ok_or(bad)?;
            let len = h.out_len();
            // The output, and the arena on either side of it: the inputs
            // are elsewhere ([`GraphModel::parse`] checked the plan).
            let (left, rest) = scratch.split_at_mut(h.arena);
            let (y, right) = rest.split_at_mut(len);
            let out_end = h.arena + len;
            let mut src = [&[][..]; 2];
            for (k, s) in src.iter_mut().enumerate() {
                let from = h.inputs[k];
                if k == 1 && h.op != NodeOp::Add {
                    break;
                }
                *s = if from == 0 {
                    input
                } else {
                    let (f, _) = self.node(from).ok_or(bad)?;
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
            match h.op {
                NodeOp::Dense => dense_f32(w.weight, w.bias, src[0], y, h.activation),
                NodeOp::Conv => conv2d(&h, w.weight, w.bias, src[0], y),
                NodeOp::MaxPool | NodeOp::AvgPool => pool(&h, src[0], y),
                NodeOp::GlobalAvgPool => {
                    let plane = h.in_shape[1] * h.in_shape[2];
                    for (v, x) in y.iter_mut().zip(src[0].chunks_exact(plane)) {
                        *v = h.activation.apply(x.iter().sum::<f32>() / plane as f32);
                    }
                }
                NodeOp::Add => {
                    for ((v, &a), &b) in y.iter_mut().zip(src[0]).zip(src[1]) {
                        *v = h.activation.apply(a + b);
                    }
                }
                NodeOp::Input => return Err(bad),
            }
            last = (h.arena, len);
        }
        Ok(&scratch[last.0..last.0 + last.1])
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

/// A direct convolution (PyTorch's `F.conv2d`: cross-correlation, zero
/// padding, dilation, groups).
fn conv2d(h: &NodeHeader, weight: &[f32], bias: &[f32], x: &[f32], y: &mut [f32]) {
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
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = bias[oc];
                for ci in 0..cg {
                    let plane = &x[(first + ci) * ih * iw..(first + ci + 1) * ih * iw];
                    for ky in 0..kh {
                        let Some(iy) = tap(oy, ky, sh, dh, pt, ih) else {
                            continue;
                        };
                        for kx in 0..kw {
                            if let Some(ix) = tap(ox, kx, sw, dw, pl, iw) {
                                s += wo[(ci * kh + ky) * kw + kx] * plane[iy * iw + ix];
                            }
                        }
                    }
                }
                y[(oc * oh + oy) * ow + ox] = h.activation.apply(s);
            }
        }
    }
}

/// Max pooling (padding never wins, a NaN does) or average pooling (the
/// padding's zeros counted: the sum over the whole window's taps).
fn pool(h: &NodeHeader, x: &[f32], y: &mut [f32]) {
    let [c, ih, iw] = h.in_shape;
    let [_, oh, ow] = h.out_shape;
    let g = h.geometry;
    let [kh, kw] = g.kernel;
    let max = h.op == NodeOp::MaxPool;
    for ch in 0..c {
        let plane = &x[ch * ih * iw..(ch + 1) * ih * iw];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                for ky in 0..kh {
                    let Some(iy) = tap(oy, ky, g.stride[0], g.dilation[0], g.pad[0], ih) else {
                        continue;
                    };
                    for kx in 0..kw {
                        let Some(ix) = tap(ox, kx, g.stride[1], g.dilation[1], g.pad[1], iw) else {
                            continue;
                        };
                        let v = plane[iy * iw + ix];
                        if !max {
                            acc += v;
                        } else if v.is_nan() || v > acc {
                            acc = v;
                        }
                    }
                }
                if !max {
                    acc /= (kh * kw) as f32;
                }
                y[(ch * oh + oy) * ow + ox] = h.activation.apply(acc);
            }
        }
    }
}
