//! Inference: the runners that chain the dense kernels (`dense_f32`, `int8`)
//! through two activation buffers, input quantization, dequantization of
//! outputs and layers. The host evaluates int8 models with these very
//! functions, so its numbers are the microcontroller's.

use super::dense_f32::dense_f32;
use super::format::{LayerWeights, Model};
use super::int8::{self, Input, Int8Input, Int8Layer};

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
    /// A layer count or index beyond the model's layers (or zero layers).
    LayerCount {
        /// Layers the model has.
        layers: usize,
    },
    /// `infer_u8` on a model whose input zero point is not −128.
    NotU8Input {
        /// The model's input zero point.
        zero: i32,
    },
    /// Bytes given to a model that standardizes real inputs first (an
    /// [`InputStep`](super::InputStep)): it takes `f32` features,
    /// through [`Model::infer_i8`] or [`Model::quantize_input`].
    StandardizedInput,
    /// A graph whose last node is not a dense layer, asked for its head
    /// (the layer a device trains, [`GraphModel::head_features_q8`](super::GraphModel::head_features_q8)).
    NoDenseHead,
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
            InferError::LayerCount { layers } => {
                write!(f, "the model has {layers} layers")
            }
            InferError::NotU8Input { zero } => write!(
                f,
                "the model's input zero point is {zero}, not -128: bytes cannot be its input"
            ),
            InferError::StandardizedInput => write!(
                f,
                "the model standardizes its real inputs first: give it f32 features (infer_i8), not bytes"
            ),
            InferError::NoDenseHead => write!(
                f,
                "the graph's last node is not a dense layer: it has no head to train"
            ),
        }
    }
}

impl core::error::Error for InferError {}

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
        for (i, (h, w)) in self.layers().enumerate() {
            let LayerWeights::F32 { weight, bias } = w else {
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

    /// Runs an int8 model on quantized input (the first layer's input
    /// quantization, see [`quantize_input`](Self::quantize_input)), read in
    /// place; `scratch` must hold [`scratch_len`](Self::scratch_len) bytes.
    /// Returns the quantized outputs (a slice of `scratch`; see
    /// [`dequantize_output`](Self::dequantize_output)).
    pub fn infer_q8<'s>(
        &self,
        input: &[i8],
        scratch: &'s mut [i8],
    ) -> Result<&'s [i8], InferError> {
        self.run_i8(input, scratch, self.layer_count())
    }

    /// Runs an int8 model on bytes read in place, a byte `p` standing for the
    /// quantized input `p − 128`: the raw pixels of an image, for a model
    /// whose input quantization is zero point −128 (which `ember export`
    /// gives a model trained on data scaled to `[0, 1]`: scale 1/255, so `p`
    /// is the real value `p / 255`). No input buffer, no conversion.
    /// Returns the quantized outputs, as [`infer_q8`](Self::infer_q8).
    pub fn infer_u8<'s>(
        &self,
        input: &[u8],
        scratch: &'s mut [i8],
    ) -> Result<&'s [i8], InferError> {
        self.bytes_are_input()?;
        self.run_i8(input, scratch, self.layer_count())
    }

    /// Runs the first `layers` layers of an int8 model on bytes read in
    /// place, as [`infer_u8`](Self::infer_u8) runs them all: the frozen
    /// feature layers of a model whose head is trained on the device.
    /// Returns layer `layers − 1`'s quantized outputs (a slice of `scratch`);
    /// [`dequantize_output_of`](Self::dequantize_output_of) makes them real.
    pub fn features_u8<'s>(
        &self,
        input: &[u8],
        layers: usize,
        scratch: &'s mut [i8],
    ) -> Result<&'s [i8], InferError> {
        self.bytes_are_input()?;
        self.run_i8(input, scratch, layers)
    }

    /// Refuses bytes for a model that standardizes its inputs.
    fn bytes_are_input(&self) -> Result<(), InferError> {
        match self.input_step() {
            Some(_) => Err(InferError::StandardizedInput),
            None => Ok(()),
        }
    }

    /// Real values of layer `layer`'s quantized outputs: `scale · (q − zero)`
    /// with its output parameters. `out` must hold as many values as `q`.
    pub fn dequantize_output_of(
        &self,
        layer: usize,
        q: &[i8],
        out: &mut [f32],
    ) -> Result<(), InferError> {
        let Some((h, LayerWeights::Int8 { .. })) = self.layer(layer) else {
            return Err(InferError::WrongDtype);
        };
        if q.len() != out.len() || q.len() > h.out_features {
            return Err(InferError::OutputLength {
                expected: h.out_features,
            });
        }
        for (o, &v) in out.iter_mut().zip(q) {
            *o = (i32::from(v) - h.out_zero) as f32 * h.out_scale;
        }
        Ok(())
    }

    /// Layer `layer`'s parameters as real numbers: the weight row-major
    /// `[out, in]` into `weight`, the bias into `bias`. For an int8 layer,
    /// `w = q · s_w` per output channel and `b` the bias the quantizer
    /// rounded (unfolded from the zero point), so that a layer trained on
    /// the device can start from the deployed one.
    pub fn dequantize_layer(
        &self,
        layer: usize,
        weight: &mut [f32],
        bias: &mut [f32],
    ) -> Result<(), InferError> {
        let Some((h, w)) = self.layer(layer) else {
            return Err(InferError::LayerCount {
                layers: self.layer_count(),
            });
        };
        let (rows, n) = (h.out_features, h.in_features);
        if weight.len() != rows * n || bias.len() != rows {
            return Err(InferError::OutputLength { expected: rows * n });
        }
        match w {
            LayerWeights::F32 {
                weight: wf,
                bias: bf,
            } => {
                weight.copy_from_slice(wf);
                bias.copy_from_slice(bf);
            }
            LayerWeights::Int8 {
                weight: wq,
                bias: bq,
                scales,
                ..
            } => {
                for (o, (row, b)) in weight.chunks_exact_mut(n).zip(bias.iter_mut()).enumerate() {
                    let ws = scales[o];
                    let mut sum = 0i32;
                    for (j, v) in row.iter_mut().enumerate() {
                        let q = wq[int8::int8_weight_offset(o, j, rows, n)];
                        sum += i32::from(q);
                        *v = f32::from(q) * ws;
                    }
                    // The file holds bq − (z_in + 128)·Σw.
                    let unfolded = i64::from(bq[o]) + i64::from(h.in_zero + 128) * i64::from(sum);
                    // `(unfolded as f64 · in_scale · ws) as f32`, without `f64`.
                    *b = super::quant::dequantize_bias(unfolded, h.in_scale, ws);
                }
            }
        }
        Ok(())
    }

    /// Quantizes real inputs with the first layer's input parameters:
    /// `round(x / scale) + zero`, saturated, computed as a multiplication by
    /// the reciprocal. A model with an [`InputStep`](super::InputStep)
    /// standardizes each feature first, `(x − offset) / scale` (one
    /// division per feature). `out` must hold
    /// [`input_features`](Self::input_features) values.
    pub fn quantize_input(&self, input: &[f32], out: &mut [i8]) -> Result<(), InferError> {
        let Some((h, LayerWeights::Int8 { .. })) = self.layer(0) else {
            return Err(InferError::WrongDtype);
        };
        for len in [input.len(), out.len()] {
            if len != h.in_features {
                return Err(InferError::InputLength {
                    expected: h.in_features,
                    found: len,
                });
            }
        }
        let inv = 1.0 / h.in_scale;
        match self.input_step() {
            Some(step) => {
                for (j, (q, &x)) in out.iter_mut().zip(input).enumerate() {
                    *q = quantize_value(step.apply(j, x), inv, h.in_zero);
                }
            }
            None => {
                for (q, &x) in out.iter_mut().zip(input) {
                    *q = quantize_value(x, inv, h.in_zero);
                }
            }
        }
        Ok(())
    }

    /// Real values of quantized outputs: `scale · (q − zero)` with the last
    /// layer's output parameters. `out` must hold as many values as `q`.
    pub fn dequantize_output(&self, q: &[i8], out: &mut [f32]) -> Result<(), InferError> {
        self.dequantize_output_of(self.layer_count().saturating_sub(1), q, out)
    }

    /// Runs an int8 model on `input` (real values, quantized with
    /// [`quantize_input`](Self::quantize_input) into `quantized`, which must
    /// hold [`input_features`](Self::input_features) bytes); `scratch` must
    /// hold [`scratch_len`](Self::scratch_len) bytes; the dequantized
    /// outputs go to `out`.
    pub fn infer_i8(
        &self,
        input: &[f32],
        quantized: &mut [i8],
        scratch: &mut [i8],
        out: &mut [f32],
    ) -> Result<(), InferError> {
        if out.len() != self.output_features() {
            return Err(InferError::OutputLength {
                expected: self.output_features(),
            });
        }
        self.quantize_input(input, quantized)?;
        let q = self.run_i8(&*quantized, scratch, self.layer_count())?;
        self.dequantize_output(q, out)
    }

    /// The int8 layers, the first reading `input` in place, the others
    /// reading the previous layer's output: in an arena of
    /// [`scratch_len`](Self::scratch_len) bytes at the start of `scratch`,
    /// the even layers write at its start, the odd ones at its end, so that
    /// a layer's output never meets its input. Hidden activations are stored
    /// as `q + 128` (what the next kernel reads), the outputs as `q`.
    // Inlined into each caller: a firmware links only the callers it uses.
    #[inline(always)]
    fn run_i8<'s, X: Int8Input>(
        &self,
        input: &[X],
        scratch: &'s mut [i8],
        count: usize,
    ) -> Result<&'s [i8], InferError> {
        if !self.int8 {
            return Err(InferError::WrongDtype);
        }
        if count == 0 || count > self.layer_count() {
            return Err(InferError::LayerCount {
                layers: self.layer_count(),
            });
        }
        self.check(input.len(), scratch.len())?;
        let arena = &mut int8::bytes_mut(scratch)[..self.arena];
        let len = arena.len();
        let last = count - 1;
        // Where the last layer run wrote: `arena[at..at + n]`.
        let (mut at, mut n) = (0, 0);
        for (i, (h, w)) in self.layers().take(count).enumerate() {
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
            let layer = Int8Layer {
                weight,
                bias,
                requant,
                table: table.map(|t| (&t.values, t.pre_zero)),
                header: &h,
                out_flip: if i == last { 0 } else { 0x80 },
                fast_requant: self.fast_requant,
            };
            // The output at the start of the arena (even layers) or at its
            // end (odd ones); the input at the other end.
            let out_at = if i % 2 == 0 { 0 } else { len - h.out_features };
            if i == 0 {
                if X::FLIP == 0 && h.in_zero != -128 {
                    return Err(InferError::NotU8Input { zero: h.in_zero });
                }
                let bytes = X::bytes(input);
                let (dst, free) = arena.split_at_mut(h.out_features);
                // The Cortex-M4's DSP kernels take unflipped input only: an
                // `i8` input that fits beside the first layer's output (free
                // until the second layer) is flipped there once, so that the
                // first layer runs them too (the same sums, the same bytes
                // out).
                let x = if X::FLIP != 0 && bytes.len() <= free.len() {
                    let skip = free.len() - bytes.len();
                    let t = &mut free[skip..];
                    flip_into(t, bytes, X::FLIP);
                    Input {
                        bytes: &*t,
                        flip: 0,
                    }
                } else {
                    Input {
                        bytes,
                        flip: X::FLIP,
                    }
                };
                int8::run(&layer, x, dst);
            } else {
                // `in + out ≤ len` for every layer after the first (the
                // arena's plan): the two never overlap.
                let (src, dst) = if out_at == 0 {
                    let (lo, hi) = arena.split_at_mut(len - h.in_features);
                    (&hi[..], &mut lo[..h.out_features])
                } else {
                    let (lo, hi) = arena.split_at_mut(out_at);
                    (&lo[..h.in_features], hi)
                };
                int8::run(
                    &layer,
                    Input {
                        bytes: src,
                        flip: 0,
                    },
                    dst,
                );
            }
            (at, n) = (out_at, h.out_features);
        }
        Ok(int8::as_i8(&arena[at..at + n]))
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

/// `dst[j] = src[j] ^ flip`, a word at a time (`dst` as long as `src`).
#[inline(always)]
fn flip_into(dst: &mut [u8], src: &[u8], flip: u8) {
    let f = u32::from_le_bytes([flip; 4]);
    let mut d = dst.chunks_exact_mut(4);
    let mut s = src.chunks_exact(4);
    for (d, s) in (&mut d).zip(&mut s) {
        let w = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) ^ f;
        d.copy_from_slice(&w.to_le_bytes());
    }
    for (d, &s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = s ^ flip;
    }
}

/// `round(x · inv_scale) + zero` (half away from zero), saturated to i8;
/// NaN gives `zero`.
#[inline]
pub(crate) fn quantize_value(x: f32, inv_scale: f32, zero: i32) -> i8 {
    let v = x * inv_scale;
    let r = if v >= 0.0 { v + 0.5 } else { v - 0.5 };
    // `as` truncates toward zero, saturates, and turns NaN into 0.
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

/// Index of the first largest quantized value (the predicted class: the
/// dequantization is increasing); 0 for an empty slice.
pub fn argmax_i8(values: &[i8]) -> usize {
    let mut best = (0usize, i8::MIN);
    for (i, &v) in values.iter().enumerate() {
        if v > best.1 || i == 0 {
            best = (i, v);
        }
    }
    best.0
}
