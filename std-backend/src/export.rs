//! Exporting a trained MLP: the deployable format (f32 and calibrated int8),
//! Rust source, and evaluation through the very kernels a microcontroller runs.

use crate::atomic::write_atomic;
use crate::config::ActivationKind;
use crate::data::{Dataset, TensorDataset};
use crate::state_dict::NamedTensor;
use crate::train::write_params;
use ember_core::deploy::{self, Calibration, ExportError, FormatError, Model, Probe};
use ember_core::nn::{Forward, Mlp, Module};
use ember_core::{Backend, Cpu, Memory, Rng, Shape, Tensor};
use std::path::Path;

/// Bytes aligned for in-place reading of weight files on the host.
pub struct AlignedBytes {
    words: Vec<u32>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into 4-byte-aligned storage.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        for (w, c) in words.iter_mut().zip(bytes.chunks(4)) {
            let mut a = [0u8; 4];
            a[..c.len()].copy_from_slice(c);
            *w = u32::from_ne_bytes(a);
        }
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }

    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        AlignedBytes {
            words: vec![0; len.div_ceil(4)],
            len,
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the words own at least `len` initialised bytes (4 per
        // word), u8 has no alignment or validity requirements, and the slice
        // borrows `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// The bytes, mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, with a unique borrow of `self`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }

    /// Keeps the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// Builds the f32 weight file of an MLP from its parameters.
pub fn f32_file(
    widths: &[usize],
    activation: ActivationKind,
    params: &[NamedTensor],
) -> Result<AlignedBytes, String> {
    let act = activation.activation();
    // The parameters, and a traced forward pass on the probe rows (values
    // and the input's gradient buffer).
    let trace = deploy::PROBE_ROWS * (2 * widths.iter().sum::<usize>() + 2 * widths[0]);
    let mut buf = vec![0.0f32; Mlp::param_floats(widths) + trace + 1024];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Mlp::new(&mut mem, &mut Rng::new(0), widths, act).map_err(|e| e.to_string())?;
    write_params(&model, &mut mem, params, Path::new("<parameters>")).map_err(|e| e.to_string())?;
    let in_features = widths[0];
    traced_f32(&model, &mut mem, |p| {
        model.forward(p.input((p.rows(), in_features)))
    })
    .map_err(|e| e.to_string())
}

/// The f32 weight file of any model, read off its forward pass and checked
/// against it through the deployment kernels ([`deploy::export_f32`]):
/// `forward` makes the model's input with `probe.input(shape)` and runs the
/// model, as a training step does with a batch. An operation the format
/// cannot express is an [`ExportError::Unsupported`] naming it. `mem` needs
/// free room for the probe batch's forward pass.
pub fn traced_f32<M, B, S, F>(
    model: &M,
    mem: &mut Memory<'_, B>,
    forward: F,
) -> Result<AlignedBytes, ExportError>
where
    M: Module + ?Sized,
    B: Backend,
    S: Shape,
    F: for<'t> Fn(&Probe<'t, B>) -> Tensor<'t, S, B>,
{
    let plan = deploy::plan(model, mem, &forward)?;
    let mut out = AlignedBytes::zeroed(plan.file_len());
    let mut scratch = vec![0.0f32; plan.scratch_len()];
    let n = deploy::export_f32(model, mem, &forward, out.bytes_mut(), &mut scratch)?;
    out.truncate(n);
    Ok(out)
}

/// Quantizes an f32 weight file to int8, calibrating on up to `samples` rows of `data`.
pub fn int8_file(
    f32_bytes: &AlignedBytes,
    data: &TensorDataset,
    samples: usize,
) -> Result<AlignedBytes, FormatError> {
    let model = Model::parse(f32_bytes.bytes())?;
    let mut calib = Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    let d = data.feature_len();
    for row in data.features().chunks_exact(d).take(samples) {
        calib
            .observe(&model, row, &mut scratch)
            .map_err(|_| FormatError::Unsupported)?;
    }
    let mut out = AlignedBytes::zeroed(deploy::quantized_len(&model));
    let n = deploy::quantize(&model, &calib, out.bytes_mut())?;
    out.truncate(n);
    Ok(out)
}

/// Accuracy and predictions of a weight file on a data set, computed with
/// the deployment kernels (f32 or int8).
pub fn evaluate_file(model: &Model<'_>, data: &TensorDataset) -> Result<(f32, Vec<usize>), String> {
    let d = data.feature_len();
    let mut preds = Vec::with_capacity(data.len());
    let mut fs = vec![0.0f32; model.scratch_len()];
    let mut is = vec![0i8; model.scratch_len()];
    let mut qi = vec![0i8; model.input_features()];
    let mut out = vec![0.0f32; model.output_features()];
    for row in data.features().chunks_exact(d) {
        let p = if model.is_int8() {
            model
                .infer_i8(row, &mut qi, &mut is, &mut out)
                .map_err(|e| e.to_string())?;
            deploy::argmax(&out)
        } else {
            deploy::argmax(model.infer_f32(row, &mut fs).map_err(|e| e.to_string())?)
        };
        preds.push(p);
    }
    let correct = preds
        .iter()
        .zip(data.labels())
        .filter(|(p, y)| p == y)
        .count();
    Ok((correct as f32 / data.len().max(1) as f32, preds))
}

/// Writes a weight file's Rust source next to it.
pub fn write_rust(model: &Model<'_>, path: &Path) -> Result<(), String> {
    let mut src = String::new();
    deploy::write_rust_source(model, &mut src).map_err(|e| e.to_string())?;
    write_atomic(path, src.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the model's type (`pub type Net = (Linear<784, 128>, ReLU, ...)`)
/// and sizes as Rust source ([`deploy::write_model_type`]): what a firmware
/// that embeds the `.emb` file loads it with (`Model::load::<Net>`).
pub fn write_model_type(model: &Model<'_>, path: &Path) -> Result<(), String> {
    let mut src = String::new();
    deploy::write_model_type(model, &mut src).map_err(|e| e.to_string())?;
    write_atomic(path, src.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}
