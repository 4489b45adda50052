//! Exporting a trained model, any model: the deployable format read off its
//! forward pass (f32 and calibrated int8, each checked against the model it
//! came from: [`traced_f32`], [`check_int8`]), Rust source and the model's
//! type for a firmware, all in one call ([`export_files`]); and evaluation
//! through the very kernels a microcontroller runs.

use crate::atomic::write_atomic;
use crate::config::ActivationKind;
use crate::data::{Dataset, TensorDataset};
use crate::learner::write_params;
use crate::state_dict::NamedTensor;
use ember_nn_core::deploy::{
    self, Calibration, ExportError, FormatError, GraphCalibration, GraphModel, InferError,
    InputStep, Model, Probe,
};
use ember_nn_core::nn::{Forward, Mlp, Module};
use ember_nn_core::{Backend, Cpu, Memory, Rng, Shape, Tensor};
use std::path::{Path, PathBuf};

/// Why a weight file could not be made, checked, evaluated or written.
/// Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A weight file was refused by the format's validation, or could
    /// not be written in it.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Running a weight file failed.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// Reading the model off its forward pass failed (an op the format
    /// cannot express, a file that does not compute the model).
    #[error(transparent)]
    Trace(#[from] ExportError),
    /// A tensor operation failed (building the model, reading its memory).
    #[error("tensor error: {0}")]
    Core(#[from] ember_nn_core::Error),
    /// The parameters do not fit the model.
    #[error(transparent)]
    Params(#[from] crate::checkpoint::CheckpointError),
    /// Rust source could not be formatted.
    #[error("formatting Rust source failed")]
    Source(#[from] std::fmt::Error),
    /// The state_dict could not be serialized.
    #[error("the state_dict: {0}")]
    StateDict(#[from] safetensors::SafeTensorError),
    /// Writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data's rows are not as wide as the model's input.
    #[error("the data has {data} features, the model takes {model}")]
    Features {
        /// Features per row of the data.
        data: usize,
        /// Inputs of the model.
        model: usize,
    },
    /// The int8 file and the f32 file have different layers.
    #[error("the int8 file does not have the f32 model's layers")]
    LayersDiffer,
    /// A weight or bias of the int8 file is not its f32 value rounded to
    /// its step.
    #[error("the int8 file is not a quantization of the f32 model: {} of layer {layer} is {f32} in f32, {int8} in int8 (step {step})", match col { Some(c) => format!("weight ({row}, {c})"), None => format!("bias {row}") })]
    NotQuantized {
        /// The layer.
        layer: usize,
        /// The output channel.
        row: usize,
        /// The input (`None`: the bias).
        col: Option<usize>,
        /// The f32 value.
        f32: f32,
        /// The int8 value, dequantized.
        int8: f32,
        /// The quantization step.
        step: f32,
    },
    /// An int8 output left the bound its quantization allows.
    #[error("the int8 file computes another model than the f32 one: output {output} of calibration row {row} is {int8} in int8, {f32} in f32 (difference {diff}, beyond the quantization bound {bound}); nothing was exported")]
    Drift {
        /// The output.
        output: usize,
        /// The calibration row.
        row: usize,
        /// The int8 output.
        int8: f32,
        /// The f32 output.
        f32: f32,
        /// Their difference.
        diff: f32,
        /// The bound it exceeded.
        bound: f32,
    },
}

/// A write's error, naming the file.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeployError + '_ {
    move |source| DeployError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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
) -> Result<AlignedBytes, DeployError> {
    let act = activation.activation();
    // The parameters, and a traced forward pass on the probe rows (values
    // and the input's gradient buffer).
    let in_features = widths.first().copied().unwrap_or(0);
    let trace = deploy::PROBE_ROWS * (2 * widths.iter().sum::<usize>() + 2 * in_features);
    let mut buf = vec![0.0f32; Mlp::param_floats(widths) + trace + 1024];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Mlp::new(&mut mem, &mut Rng::new(0), widths, act)?;
    write_params(&model, &mut mem, params, Path::new("<parameters>"))?;
    Ok(traced_f32(&model, &mut mem, |p| {
        model.forward(p.input((p.rows(), in_features)))
    })?)
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
    // `deploy::export_f32` in three steps, so that the buffers are sized
    // by the one trace.
    let plan = deploy::plan(model, mem, &forward)?;
    let mut out = AlignedBytes::zeroed(plan.file_len());
    let mut scratch = vec![0.0f32; plan.scratch_len()];
    let n = deploy::write_f32(&plan, mem, out.bytes_mut())?;
    out.truncate(n);
    deploy::check_f32(&plan, mem, forward, out.bytes(), &mut scratch)?;
    Ok(out)
}

/// What [`export_files`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportReport {
    /// Bytes of `model.emb`.
    pub f32_len: usize,
    /// Bytes of `model-int8.emb`.
    pub int8_len: usize,
    /// How close the int8 file came to the f32 model on the calibration rows.
    pub int8_check: Int8Check,
    /// The deployed layers, as `model_type.rs` declares them
    /// (`Linear<784, 128>, ReLU, ...`).
    pub layers: String,
}

/// Exports a trained model of any kind, in one call, to `dir`: the f32 and
/// int8 weight files read off its forward pass and checked against it
/// (`model.emb`, `model-int8.emb`, calibrated on up to `samples` rows of
/// `calibration`), their Rust source (`model.rs`, `model_int8.rs`), the
/// model's type for a firmware (`model_type.rs`), and its state_dict
/// (`model.safetensors`, PyTorch's names and layouts). `forward` makes the
/// input with `probe.input(shape)` and runs the model, as a training step
/// does. Every file is written atomically, and none is written unless all
/// the checks passed.
pub fn export_files<M, B, S, F>(
    dir: &Path,
    model: &M,
    mem: &mut Memory<'_, B>,
    forward: F,
    calibration: &TensorDataset,
    samples: usize,
) -> Result<ExportReport, DeployError>
where
    M: Module,
    B: Backend,
    S: Shape,
    F: for<'t> Fn(&Probe<'t, B>) -> Tensor<'t, S, B>,
{
    let f32_bytes = traced_f32(model, mem, forward)?;
    let f = Model::parse(f32_bytes.bytes())?;
    if calibration.feature_len() != f.input_features() {
        return Err(DeployError::Features {
            data: calibration.feature_len(),
            model: f.input_features(),
        });
    }
    let (int8_bytes, int8_check) = quantize_checked(&f, None, calibration, samples)?;
    let tensors = crate::state_dict::named_state(model, mem)?;
    let safetensors = crate::state_dict::to_bytes(&tensors, None)?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_deployables(dir, &f32_bytes, &int8_bytes)?;
    let path = dir.join("model.safetensors");
    write_atomic(&path, &safetensors).map_err(io(&path))?;
    let mut layers = String::new();
    deploy::write_layer_types(&f, &mut layers)?;
    Ok(ExportReport {
        f32_len: f32_bytes.bytes().len(),
        int8_len: int8_bytes.bytes().len(),
        int8_check,
        layers,
    })
}

/// Writes the deployable files of an f32 weight file and its int8
/// quantization to `dir`: `model.emb`, `model-int8.emb`, `model.rs`,
/// `model_int8.rs` and `model_type.rs`, each atomically.
pub fn write_deployables(
    dir: &Path,
    f32_bytes: &AlignedBytes,
    int8_bytes: &AlignedBytes,
) -> Result<(), DeployError> {
    let f = Model::parse(f32_bytes.bytes())?;
    let q = Model::parse(int8_bytes.bytes())?;
    for (name, bytes) in [("model.emb", f32_bytes), ("model-int8.emb", int8_bytes)] {
        let path = dir.join(name);
        write_atomic(&path, bytes.bytes()).map_err(io(&path))?;
    }
    write_rust(&f, &dir.join("model.rs"))?;
    write_rust(&q, &dir.join("model_int8.rs"))?;
    write_model_type(&f, &dir.join("model_type.rs"))
}

/// Quantizes an f32 weight file to int8, calibrating on up to `samples`
/// rows of `data`, and checks the result ([`check_int8`]) on up to 16 of
/// those rows: an int8 file whose outputs leave the quantization bound is
/// refused, saying by how much. An f32 graph file (a CNN's) is quantized
/// per channel ([`deploy::quantize_graph`]), calibrated likewise.
pub fn int8_file(
    f32_bytes: &AlignedBytes,
    data: &TensorDataset,
    samples: usize,
) -> Result<AlignedBytes, DeployError> {
    if let Ok(graph) = GraphModel::parse(f32_bytes.bytes()) {
        return int8_graph(&graph, data, samples);
    }
    let model = Model::parse(f32_bytes.bytes())?;
    quantize_checked(&model, None, data, samples).map(|(bytes, _)| bytes)
}

/// The int8 file of an f32 graph file (a CNN's), calibrated on the first
/// `samples` rows of `data`.
fn int8_graph(
    graph: &GraphModel<'_>,
    data: &TensorDataset,
    samples: usize,
) -> Result<AlignedBytes, DeployError> {
    let d = data.feature_len();
    if d != graph.input_features() {
        return Err(DeployError::Features {
            data: d,
            model: graph.input_features(),
        });
    }
    let mut calib = GraphCalibration::new();
    let mut scratch = vec![0.0f32; graph.scratch_len()];
    for row in data.features().chunks_exact(d).take(samples) {
        calib.observe(graph, row, &mut scratch)?;
    }
    let mut out = AlignedBytes::zeroed(deploy::graph_quantized_len(graph));
    let n = deploy::quantize_graph(graph, &calib, out.bytes_mut())?;
    out.truncate(n);
    GraphModel::parse(out.bytes())?;
    Ok(out)
}

/// [`int8_file`] of a model trained on standardized features: `f32_bytes`
/// is that model (no scaling folded into its first layer), `data` holds
/// raw rows, and the int8 file keeps `step` ([`InputStep`]) and applies it
/// to what it is given, so that it takes raw features with one
/// quantization step per standardized feature rather than one over raw
/// features of any magnitude. Calibrated and checked on the rows
/// standardized by the step itself.
pub fn int8_file_with_step(
    f32_bytes: &AlignedBytes,
    step: InputStep<'_>,
    data: &TensorDataset,
    samples: usize,
) -> Result<AlignedBytes, DeployError> {
    let model = Model::parse(f32_bytes.bytes())?;
    quantize_checked(&model, Some(step), data, samples).map(|(bytes, _)| bytes)
}

/// `row` standardized by `step` (as the int8 file computes it), or itself.
fn standardized(step: Option<InputStep<'_>>, row: &[f32]) -> Vec<f32> {
    match step {
        Some(s) => row
            .iter()
            .enumerate()
            .map(|(j, &x)| s.apply(j, x))
            .collect(),
        None => row.to_vec(),
    }
}

/// [`int8_file`] of a parsed f32 model, with its check's figures.
fn quantize_checked(
    model: &Model<'_>,
    step: Option<InputStep<'_>>,
    data: &TensorDataset,
    samples: usize,
) -> Result<(AlignedBytes, Int8Check), DeployError> {
    let mut calib = Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    let d = data.feature_len();
    if d != model.input_features() {
        return Err(DeployError::Features {
            data: d,
            model: model.input_features(),
        });
    }
    if step.is_some_and(|s| s.features() != d) {
        return Err(DeployError::Format(FormatError::BadInputStep));
    }
    for row in data.features().chunks_exact(d).take(samples) {
        calib.observe(model, &standardized(step, row), &mut scratch)?;
    }
    let step_len = step.map_or(0, |s| InputStep::file_len(s.features()));
    let mut out = AlignedBytes::zeroed(deploy::quantized_len(model) + step_len);
    let n = match step {
        Some(s) => deploy::quantize_with_input_step(model, &calib, s, out.bytes_mut()),
        None => deploy::quantize(model, &calib, out.bytes_mut()),
    }?;
    out.truncate(n);
    let int8 = Model::parse(out.bytes())?;
    let rows: Vec<&[f32]> = data
        .features()
        .chunks_exact(d)
        .take(samples.min(16))
        .collect();
    let check = check_int8(model, &int8, &rows)?;
    Ok((out, check))
}

/// How far an int8 file's outputs were from its f32 model's ([`check_int8`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Int8Check {
    /// The largest difference between the two models' outputs.
    pub max_diff: f32,
    /// The largest difference the quantization allowed at that output.
    pub bound: f32,
}

/// Runs the int8 file and the f32 file it was quantized from on `rows`
/// through the deployment kernels and checks every output against the
/// error the quantization can cause, propagated layer by layer from what
/// the files hold: the input's rounding, each weight's rounding to its
/// channel's scale, the bias's rounding to accumulator units, the
/// activation's slope, the output's rounding and clipping to its int8
/// range. A difference beyond that bound means the int8 file computes
/// something else than the f32 model: the error says where and by how much.
/// For an int8 file with an input step ([`InputStep`]) `rows` are raw and
/// the f32 model runs on them standardized by that step.
pub fn check_int8(
    f32_model: &Model<'_>,
    int8: &Model<'_>,
    rows: &[&[f32]],
) -> Result<Int8Check, DeployError> {
    if f32_model.layer_count() != int8.layer_count() || !int8.is_int8() || f32_model.is_int8() {
        return Err(DeployError::LayersDiffer);
    }
    let mut worst = Int8Check {
        max_diff: 0.0,
        bound: 0.0,
    };
    let mut qi = vec![0i8; int8.input_features()];
    let mut is = vec![0i8; int8.scratch_len()];
    let mut got = vec![0.0f32; int8.output_features()];
    for (r, row) in rows.iter().enumerate() {
        int8.infer_i8(row, &mut qi, &mut is, &mut got)?;
        let (want, bound) =
            f32_with_int8_bound(f32_model, int8, &standardized(int8.input_step(), row))?;
        for (j, ((&g, &w), &b)) in got.iter().zip(&want).zip(&bound).enumerate() {
            let diff = (g - w).abs();
            if diff.is_nan() || diff > b {
                return Err(DeployError::Drift {
                    output: j,
                    row: r,
                    int8: g,
                    f32: w,
                    diff,
                    bound: b,
                });
            }
            if diff > worst.max_diff {
                worst = Int8Check {
                    max_diff: diff,
                    bound: b,
                };
            }
        }
    }
    Ok(worst)
}

/// The f32 model's outputs on `x`, and for each the bound on how far the
/// int8 file's can be from it.
fn f32_with_int8_bound(
    f32_model: &Model<'_>,
    int8: &Model<'_>,
    x: &[f32],
) -> Result<(Vec<f32>, Vec<f32>), DeployError> {
    let layers = || DeployError::LayersDiffer;
    let (h0, _) = int8.layer(0).ok_or_else(layers)?;
    // The input's rounding (and clipping) to the first layer's int8 input.
    let mut err: Vec<f32> = x
        .iter()
        .map(|&v| {
            let q = ((v / h0.in_scale).round() + h0.in_zero as f32).clamp(-128.0, 127.0);
            (v - h0.in_scale * (q - h0.in_zero as f32)).abs()
        })
        .collect();
    let mut cur = x.to_vec();
    for (l, ((hf, wf), (hq, wq))) in f32_model.layers().zip(int8.layers()).enumerate() {
        let (
            deploy::LayerWeights::F32 { weight, bias },
            deploy::LayerWeights::Int8 {
                weight: qw,
                bias: qb,
                scales,
                table,
                ..
            },
        ) = (wf, wq)
        else {
            return Err(layers());
        };
        let (n_in, n_out) = (hf.in_features, hf.out_features);
        if (hq.in_features, hq.out_features) != (n_in, n_out) || hq.activation != hf.activation {
            return Err(layers());
        }
        // The pre-activation, then the activation (the same bits as
        // `dense_f32` with it).
        let mut pre_act = vec![0.0f32; n_out];
        deploy::dense_f32(
            weight,
            bias,
            &cur,
            &mut pre_act,
            deploy::Activation::Identity,
        );
        let next: Vec<f32> = pre_act.iter().map(|&v| hf.activation.apply(v)).collect();
        let slope = lipschitz(hf.activation);
        let (lo, hi) = (
            hq.out_scale * (-128 - hq.out_zero) as f32,
            hq.out_scale * (127 - hq.out_zero) as f32,
        );
        let mut next_err = vec![0.0f32; n_out];
        for o in 0..n_out {
            let ws = scales[o];
            let row = &weight[o * n_in..(o + 1) * n_in];
            let mut wsum = 0i64;
            let mut pre = 0.0f32;
            for (j, &w) in row.iter().enumerate() {
                let q = qw[deploy::int8_weight_offset(o, j, n_out, n_in)];
                wsum += i64::from(q);
                let dw = (w - ws * f32::from(q)).abs();
                // Rounding moves a weight by at most half its channel's step.
                if dw.is_nan() || dw > 0.5 * ws * (1.0 + 1e-4) {
                    return Err(DeployError::NotQuantized {
                        layer: l,
                        row: o,
                        col: Some(j),
                        f32: w,
                        int8: ws * f32::from(q),
                        step: ws,
                    });
                }
                pre += w.abs() * err[j] + dw * (cur[j].abs() + err[j]);
            }
            // The bias in accumulator units, unfolded from the kernels' form.
            let acc = hq.in_scale * ws;
            let bq = i64::from(qb[o]) + i64::from(hq.in_zero + 128) * wsum;
            let db = (bias[o] - acc * bq as f32).abs();
            if db.is_nan() || db > 0.5 * acc * (1.0 + 1e-3) + 1e-6 * bias[o].abs() {
                return Err(DeployError::NotQuantized {
                    layer: l,
                    row: o,
                    col: None,
                    f32: bias[o],
                    int8: acc * bq as f32,
                    step: acc,
                });
            }
            pre += db;
            let clip = (lo - next[o]).max(next[o] - hi).max(0.0);
            // The activation's slope, then the rounding of the rescale and of
            // the output, and what clipping to the output's range cuts. With
            // an activation table, the rescale rounds (and clips) to the
            // pre-activation's quantization, and the table rounds the output.
            next_err[o] = match table {
                Some(t) => {
                    let (s, z) = (t.pre_scale, t.pre_zero);
                    let (plo, phi) = (s * (-128 - z) as f32, s * (127 - z) as f32);
                    let pclip = (plo - pre_act[o]).max(pre_act[o] - phi).max(0.0);
                    slope * (pre + s / 2.0 + pclip) + hq.out_scale / 2.0 + clip
                }
                None => slope * (pre + hq.out_scale / 2.0) + hq.out_scale / 2.0 + clip,
            };
        }
        cur = next;
        err = next_err;
    }
    // Float rounding in both paths: a little slack on top.
    let bound = err
        .iter()
        .zip(&cur)
        .map(|(e, y)| 1.01 * e + 1e-5 * (1.0 + y.abs()))
        .collect();
    Ok((cur, bound))
}

/// The largest slope of an activation (its Lipschitz constant).
fn lipschitz(a: deploy::Activation) -> f32 {
    use deploy::Activation as A;
    match a {
        A::Identity | A::Relu | A::Tanh | A::Softsign | A::Softplus => 1.0,
        A::Sigmoid => 0.25,
        A::LeakyRelu(s) => s.abs().max(1.0),
        A::Elu(alpha) => alpha.abs().max(1.0),
        A::Selu => 1.0507 * 1.6733,
        A::Silu => 1.1,
        A::Gelu | A::GeluTanh => 1.13,
    }
}

/// Accuracy and predictions of a weight file on a data set, computed with
/// the deployment kernels (f32 or int8).
pub fn evaluate_file(
    model: &Model<'_>,
    data: &TensorDataset,
) -> Result<(f32, Vec<usize>), InferError> {
    let outputs = outputs_file(model, data.features())?;
    let preds: Vec<usize> = outputs
        .chunks_exact(model.output_features().max(1))
        .map(deploy::argmax)
        .collect();
    let correct = preds
        .iter()
        .zip(data.labels())
        .filter(|(p, y)| p == y)
        .count();
    Ok((correct as f32 / data.len().max(1) as f32, preds))
}

/// The outputs of a weight file's model (f32 or int8, through the
/// deployment kernels) on each row of `features` (row-major, the model's
/// input width per row), row-major: a regression's values, an
/// autoencoder's reconstruction, a classifier's logits.
pub fn outputs_file(model: &Model<'_>, features: &[f32]) -> Result<Vec<f32>, InferError> {
    let d = model.input_features().max(1);
    let width = model.output_features();
    let mut outputs = Vec::with_capacity(features.len() / d * width);
    let mut fs = vec![0.0f32; model.scratch_len()];
    let mut is = vec![0i8; model.scratch_len()];
    let mut qi = vec![0i8; model.input_features()];
    let mut out = vec![0.0f32; width];
    for row in features.chunks_exact(d) {
        if model.is_int8() {
            model.infer_i8(row, &mut qi, &mut is, &mut out)?;
            outputs.extend_from_slice(&out);
        } else {
            outputs.extend_from_slice(model.infer_f32(row, &mut fs)?);
        }
    }
    Ok(outputs)
}

/// Writes a weight file's Rust source next to it.
pub fn write_rust(model: &Model<'_>, path: &Path) -> Result<(), DeployError> {
    let mut src = String::new();
    deploy::write_rust_source(model, &mut src)?;
    write_atomic(path, src.as_bytes()).map_err(io(path))
}

/// Writes the model's type (`pub type Net = (Linear<784, 128>, ReLU, ...)`)
/// and sizes as Rust source ([`deploy::write_model_type`]): what a firmware
/// that embeds the `.emb` file loads it with (`Model::load::<Net>`).
pub fn write_model_type(model: &Model<'_>, path: &Path) -> Result<(), DeployError> {
    let mut src = String::new();
    deploy::write_model_type(model, &mut src)?;
    write_atomic(path, src.as_bytes()).map_err(io(path))
}
