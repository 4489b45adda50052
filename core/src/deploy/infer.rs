//! Inference kernels (f32 and int8 dense layers) and the runner that chains
//! them through two activation buffers. The host evaluates int8 models with
//! these very functions, so its numbers are the microcontroller's.

use super::format::{LayerHeader, LayerWeights, Model};
use super::quant::requantize;
use super::Activation;

/// Why inference could not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InferError {
    /// `infer_f32` on an int8 model, or `infer_i8` on an f32 one.
    WrongDtype,
    /// The input has the wrong number of features.
    InputLength {
        /// Features the model takes.
        expected: usize,
        /// Features given.
        found: usize,
    },
    /// The scratch buffer is shorter than [`Model::scratch_len`].
    ScratchTooSmall {
        /// Elements needed.
        needed: usize,
    },
    /// The output buffer has the wrong length.
    OutputLength {
        /// Elements expected.
        expected: usize,
    },
}

impl core::fmt::Display for InferError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InferError::WrongDtype => {
                write!(f, "the model's data type does not match the inference call")
            }
            InferError::InputLength { expected, found } => {
                write!(f, "expected {expected} input features, got {found}")
            }
            InferError::ScratchTooSmall { needed } => {
                write!(f, "scratch buffer too small ({needed} elements needed)")
            }
            InferError::OutputLength { expected } => {
                write!(f, "output buffer must hold {expected} elements")
            }
        }
    }
}

impl core::error::Error for InferError {}

/// `y = act(W x + b)` for `W` stored `[y.len(), x.len()]`.
pub fn dense_f32(weight: &[f32], bias: &[f32], x: &[f32], y: &mut [f32], act: Activation) {
    let n = x.len().max(1);
    for ((row, &b), yo) in weight.chunks_exact(n).zip(bias).zip(y.iter_mut()) {
        let mut s = b;
        for (&w, &xv) in row.iter().zip(x) {
            s += w * xv;
        }
        *yo = act.apply(s);
    }
}

/// The int8 dense layer: accumulate `Σ x·w` in i32 from the folded bias,
/// requantize per output channel, apply the activation (ReLU and identity in
/// integers, the others through f32), and saturate to i8.
#[allow(clippy::too_many_arguments)]
pub fn dense_i8(
    weight: &[i8],
    bias: &[i32],
    scales: &[f32],
    requant: &[i32],
    x: &[i8],
    y: &mut [i8],
    h: &LayerHeader,
) {
    let n = x.len().max(1);
    let rows = weight
        .chunks_exact(n)
        .zip(bias.iter().zip(scales))
        .zip(requant.chunks_exact(2));
    for (((row, (&b, &ws)), rq), yo) in rows.zip(y.iter_mut()) {
        let mut acc = b;
        for (&w, &xv) in row.iter().zip(x) {
            acc = acc.wrapping_add(i32::from(w) * i32::from(xv));
        }
        let q = match h.activation {
            Activation::Identity => requantize(acc, rq[0], rq[1]).saturating_add(h.out_zero),
            Activation::Relu => requantize(acc, rq[0], rq[1])
                .saturating_add(h.out_zero)
                .max(h.out_zero),
            act => {
                let real = acc as f32 * h.in_scale * ws;
                let v = act.apply(real) / h.out_scale;
                let r = libm::roundf(v);
                // NaN becomes 0 through `as`; out-of-range values saturate.
                (r as i32).saturating_add(h.out_zero)
            }
        };
        *yo = q.clamp(-128, 127) as i8;
    }
}

impl Model<'_> {
    /// Runs an f32 model on `input`; `scratch` must hold
    /// [`scratch_len`](Self::scratch_len) floats. Returns the outputs (a
    /// slice of `scratch`).
    pub fn infer_f32<'s>(
        &self,
        input: &[f32],
        scratch: &'s mut [f32],
    ) -> Result<&'s [f32], InferError> {
        if self.int8 {
            return Err(InferError::WrongDtype);
        }
        self.check(input.len(), scratch.len())?;
        let (a, b) = scratch.split_at_mut(self.max_width);
        let mut in_a = false;
        for (i, (h, w)) in self.layers.iter().enumerate() {
            let LayerWeights::F32 { weight, bias } = *w else {
                return Err(InferError::WrongDtype);
            };
            let (src, dst): (&[f32], &mut [f32]) = if i == 0 {
                (input, &mut a[..])
            } else if in_a {
                (&a[..h.in_features], &mut b[..])
            } else {
                (&b[..h.in_features], &mut a[..])
            };
            dense_f32(weight, bias, src, &mut dst[..h.out_features], h.activation);
            in_a = i == 0 || !in_a;
        }
        let n = self.output_features();
        Ok(if in_a { &a[..n] } else { &b[..n] })
    }

    /// Runs an int8 model on `input` (quantized with the first layer's input
    /// parameters); `scratch` must hold [`scratch_len`](Self::scratch_len)
    /// bytes; the dequantized outputs go to `out`.
    pub fn infer_i8(
        &self,
        input: &[f32],
        scratch: &mut [i8],
        out: &mut [f32],
    ) -> Result<(), InferError> {
        if !self.int8 {
            return Err(InferError::WrongDtype);
        }
        self.check(input.len(), scratch.len())?;
        if out.len() != self.output_features() {
            return Err(InferError::OutputLength {
                expected: self.output_features(),
            });
        }
        let (a, b) = scratch.split_at_mut(self.max_width);
        if let Some((h0, _)) = self.layers.first() {
            for (q, &x) in a.iter_mut().zip(input) {
                *q = quantize_value(x, h0.in_scale, h0.in_zero);
            }
        }
        let mut in_a = true;
        let mut last = (1.0, 0);
        for (h, w) in self.layers.iter() {
            let LayerWeights::Int8 {
                weight,
                bias,
                scales,
                requant,
            } = *w
            else {
                return Err(InferError::WrongDtype);
            };
            let (src, dst): (&[i8], &mut [i8]) = if in_a {
                (&a[..h.in_features], &mut b[..])
            } else {
                (&b[..h.in_features], &mut a[..])
            };
            dense_i8(
                weight,
                bias,
                scales,
                requant,
                src,
                &mut dst[..h.out_features],
                h,
            );
            in_a = !in_a;
            last = (h.out_scale, h.out_zero);
        }
        let res = if in_a {
            &a[..out.len()]
        } else {
            &b[..out.len()]
        };
        for (o, &q) in out.iter_mut().zip(res) {
            *o = (i32::from(q) - last.1) as f32 * last.0;
        }
        Ok(())
    }

    fn check(&self, input: usize, scratch: usize) -> Result<(), InferError> {
        if input != self.input_features() {
            return Err(InferError::InputLength {
                expected: self.input_features(),
                found: input,
            });
        }
        if scratch < self.scratch_len() {
            return Err(InferError::ScratchTooSmall {
                needed: self.scratch_len(),
            });
        }
        Ok(())
    }
}

/// `round(x / scale) + zero`, saturated to i8.
#[inline]
pub(crate) fn quantize_value(x: f32, scale: f32, zero: i32) -> i8 {
    let r = libm::roundf(x / scale);
    (r as i32).saturating_add(zero).clamp(-128, 127) as i8
}

/// Index of the first largest value (the predicted class); 0 for an empty slice.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}
