//! The `cnn` preset of `ember train --model cnn`: a small convolutional
//! network for 28×28 grey-scale images (FashionMNIST), trained by the
//! [`Learner`] like any model, with its arena sized by a formula that a
//! test checks against the measured peak of a step.
//!
//! [`FashionCnn`] is PyTorch's
//!
//! ```text
//! nn.Sequential(
//!     nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
//!     nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
//!     nn.Flatten(), nn.Linear(1568, 10))
//! ```
//!
//! with 20,490 parameters (a fifth of the 784-128-64-10 MLP's 109,386).
//! Its parameters are named `conv1.*`, `conv2.*` and `fc.*`.
//!
//! A checkpoint of this preset is evaluated here ([`evaluate_checkpoint`]);
//! [`f32_file`] writes its deployable graph file (`deploy::GraphModel`),
//! which `export::int8_file` quantizes.

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::data::{Dataset, MiniBatch, TensorDataset};
use crate::eval::{self, Evaluation};
use crate::export::{traced_f32, AlignedBytes, DeployError};
use crate::learner::{Arena, Learner, StepOutput, Trained};
use crate::state_dict::NamedTensor;
use crate::train::{write_params, Checkpointing, Progress, TrainConfig, TrainError};
use ember_nn_core::backend::{Device, Map};
use ember_nn_core::deploy::PROBE_ROWS;
use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::{summary, Build, Conv2d, Footprint, Linear, MaxPool2d, Module, Rule};
use ember_nn_core::{Backend, Const, Cpu, Graph, Memory, Rng, Tape, Tensor};
use serde_json::{json, Value};
use std::path::Path;

/// The preset's name on the command line (`--model cnn`).
pub const PRESET: &str = "cnn";

/// The presets `--model` takes.
pub const PRESETS: [&str; 1] = [PRESET];

/// Input features of a sample: one 28×28 channel.
pub const IN_FEATURES: usize = 784;

/// Classes the preset predicts.
pub const CLASSES: usize = 10;

/// Features after the second pooling: 32 channels of 7×7.
const FLAT: usize = 32 * 7 * 7;

/// The `cnn` preset: two 3×3 convolutions (16 and 32 channels, padding 1),
/// each followed by a ReLU and a 2×2 max pooling, then a linear layer.
#[derive(Module)]
pub struct FashionCnn {
    /// `Conv2d(1, 16, 3, padding=1)`.
    pub conv1: Conv2d<1, 16, 3, 1, 1>,
    /// `MaxPool2d(2)`, after each convolution's ReLU.
    pub pool: MaxPool2d<2>,
    /// `Conv2d(16, 32, 3, padding=1)`.
    pub conv2: Conv2d<16, 32, 3, 1, 1>,
    /// `Linear(1568, 10)`.
    pub fc: Linear<FLAT, CLASSES>,
}

/// A batch of images, `[n, 1, 28, 28]`.
pub type Images<'t, B> = Tensor<'t, (usize, Const<1>, Const<28>, Const<28>), B>;

/// A batch's logits, `[n, 10]`.
pub type Logits<'t, B> = Tensor<'t, (usize, Const<CLASSES>), B>;

impl FashionCnn {
    /// The forward pass, calling `trace` with each layer's name (as
    /// PyTorch's `nn.Sequential` numbers them) and output shape.
    pub fn forward_traced<'t, B: Backend>(
        &self,
        x: Images<'t, B>,
        trace: &mut dyn FnMut(&str, &[usize]),
    ) -> Logits<'t, B> {
        use ember_nn_core::nn::Forward;
        let g = x.tape();
        let (c1, c2) = (&self.conv1, &self.conv2);
        // The ReLU is fused into the convolution's epilogue.
        let x = x.conv2d_act(
            g.param(&c1.weight),
            Some(g.param(&c1.bias)),
            Conv2d::<1, 16, 3, 1, 1>::OPTIONS,
            Some(Map::Relu),
        );
        trace("(0): Conv2d + (1): ReLU", x.dims().as_slice());
        let x = self.pool.forward(x);
        trace("(2): MaxPool2d", x.dims().as_slice());
        let x = x.conv2d_act(
            g.param(&c2.weight),
            Some(g.param(&c2.bias)),
            Conv2d::<16, 32, 3, 1, 1>::OPTIONS,
            Some(Map::Relu),
        );
        trace("(3): Conv2d + (4): ReLU", x.dims().as_slice());
        let x = self.pool.forward(x);
        trace("(5): MaxPool2d", x.dims().as_slice());
        let x = x.flatten::<FLAT>();
        trace("(6): Flatten", x.dims().as_slice());
        let x = self.fc.forward(x);
        trace("(7): Linear", x.dims().as_slice());
        x
    }

    /// The forward pass: logits of a batch of images.
    pub fn forward<'t, B: Backend>(&self, x: Images<'t, B>) -> Logits<'t, B> {
        self.forward_traced(x, &mut |_, _| {})
    }

    /// The Learner's step: cross-entropy of a mini-batch, with its logits
    /// for accuracy.
    pub fn step<'t, B: Backend>(
        &self,
        g: &'t dyn Tape<B>,
        batch: &MiniBatch,
    ) -> ember_nn_core::Result<StepOutput<'t, B>> {
        let x = g.from_slice(images(batch.len()), &batch.features);
        let logits = self.forward(x);
        let loss = cross_entropy(logits, &batch.labels, Reduction::Mean);
        Ok(StepOutput::classified(loss, logits))
    }
}

fn images(n: usize) -> (usize, Const<1>, Const<28>, Const<28>) {
    (n, Const, Const, Const)
}

/// The preset's f32 weight file (a graph file: `deploy::GraphModel`), read
/// off its forward pass with `params` (a checkpoint's or a trained run's)
/// and checked against it through the deployment kernels.
pub fn f32_file(params: &[NamedTensor]) -> Result<AlignedBytes, DeployError> {
    // The probe batch's forward pass: each convolution's unfolded rows and
    // output (values and gradients), with room to spare.
    let trace = PROBE_ROWS * 2 * (IN_FEATURES * 9 + 3 * 16 * 784 + 196 * 16 * 9 + 3 * 32 * 196);
    let mut buf = vec![0.0f32; PARAMS + trace + 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = FashionCnn::build(&mut mem, &mut Rng::new(0))?;
    write_params(&model, &mut mem, params, Path::new("<parameters>"))?;
    Ok(traced_f32(&model, &mut mem, |p| {
        model.forward(p.input(images(p.rows())))
    })?)
}

/// The preset's parameter count.
pub const PARAMS: usize = <FashionCnn as Footprint>::PARAMS;

/// Floats of one training step's graph per sample of the batch (inputs,
/// im2row buffers, activations, the gradients of each, and the backward
/// pass's scratch): `Graph::peak` is `STEP_FIXED + STEP_PER_SAMPLE · n`
/// at batch `n`, measured and checked by a test at several batch sizes.
pub const STEP_PER_SAMPLE: usize = 188_183;

/// Floats of a training step's graph that do not grow with the batch
/// (the loss, the parameters' views, alignment padding): 4,757 measured,
/// and 4,096 of room for what the learner runs around a step (gradient
/// clipping's norm).
pub const STEP_FIXED: usize = 4_757 + 4_096;

/// The floats of a training arena at `batch` samples with optimizer
/// `rule`: the parameters, their gradients and the optimizer's state
/// planes, and a training step's graph (an evaluation step, without
/// gradients, needs less). `None` when it overflows.
pub fn train_floats(batch: usize, rule: &Rule) -> Option<usize> {
    let params = PARAMS.checked_mul(2 + rule.state_planes())?;
    let step = STEP_PER_SAMPLE
        .checked_mul(batch)?
        .checked_add(STEP_FIXED)?;
    params.checked_add(step)
}

/// The floats to evaluate the preset in batches of `batch`: the parameters
/// (with their gradients' space, as a model is built) and one training
/// step's graph, an upper bound of an evaluation step's.
pub fn eval_floats(batch: usize) -> Option<usize> {
    train_floats(batch, &Rule::sgd())
}

/// The configuration a run of the preset records in its checkpoints
/// (its `model` key names the preset; the rest is the command line's
/// `TrainConfig`).
pub fn record(cfg: &TrainConfig) -> Value {
    let mut v = serde_json::to_value(cfg).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        // The MLP's architecture does not apply.
        for k in ["widths", "activation", "dropout"] {
            m.remove(k);
        }
        m.insert("model".into(), json!(PRESET));
    }
    v
}

/// Whether a checkpoint is of the `cnn` preset (`ember train --model cnn`).
pub fn is_preset(c: &Checkpoint) -> bool {
    c.meta.config.get("model").and_then(Value::as_str) == Some(PRESET)
}

/// Trains (or resumes) the preset on `device` with `cfg`'s optimizer,
/// learning rate, schedule, epochs, batch, seed, patience and clipping
/// (its widths, activation and dropout are the MLP's and do not apply),
/// evaluating `test` after training when given.
#[allow(clippy::too_many_arguments)]
pub fn train<'d, D: Device>(
    device: &'d D,
    cfg: &TrainConfig,
    train_set: TensorDataset,
    val_set: Option<&TensorDataset>,
    test: Option<TensorDataset>,
    augment: Option<crate::data::transform::Compose>,
    ckpt: &Checkpointing,
    progress: &mut dyn Progress,
) -> Result<Trained<'d, D, FashionCnn>, TrainError> {
    if train_set.feature_len() != IN_FEATURES {
        return Err(TrainError::Data(format!(
            "the cnn preset takes 28×28 images ({IN_FEATURES} features); the samples have {}",
            train_set.feature_len()
        )));
    }
    if train_set.num_classes() > CLASSES {
        return Err(TrainError::Data(format!(
            "the data has {} classes; the cnn preset predicts {CLASSES}",
            train_set.num_classes()
        )));
    }
    let rule = cfg.rule();
    let floats = train_floats(cfg.batch, &rule).ok_or_else(|| {
        TrainError::Memory(format!(
            "the cnn preset at batch {} needs more memory than an address space holds",
            cfg.batch
        ))
    })?;
    let mut learner = Learner::new(rule, cfg.lr, Arena::floats(floats).with_params(PARAMS))
        .schedule(cfg.schedule())
        .epochs(cfg.epochs)
        .batch(cfg.batch)
        .seed(cfg.seed)
        .patience(cfg.patience)
        .clip(cfg.clip)
        .checkpointing(ckpt.clone())
        .augment(augment)
        .name(PRESET)
        .record_config(record(cfg));
    if let Some(t) = test {
        learner = learner.test_set(t);
    }
    learner.fit(
        device,
        FashionCnn::build,
        |m: &FashionCnn, g, b| m.step(g, b),
        train_set,
        val_set,
        progress,
    )
}

/// Evaluates a checkpoint of the preset (`path`, loaded as `c`) on `data`
/// in batches of `batch` on `device`.
pub fn evaluate_checkpoint<D: Device>(
    device: &D,
    path: &Path,
    c: &Checkpoint,
    data: &TensorDataset,
    batch: usize,
) -> Result<Evaluation, TrainError> {
    if !is_preset(c) {
        return Err(CheckpointError::Invalid {
            path: path.to_path_buf(),
            msg: "not a checkpoint of the cnn preset".into(),
        }
        .into());
    }
    if data.feature_len() != IN_FEATURES {
        return Err(TrainError::Data(format!(
            "the cnn preset takes {IN_FEATURES} features; the data has {}",
            data.feature_len()
        )));
    }
    let floats = eval_floats(batch)
        .ok_or_else(|| TrainError::Config(format!("batch {batch} is too large")))?;
    let mut storage = device
        .alloc(floats)
        .map_err(|_| TrainError::Memory(format!("{floats} floats could not be allocated")))?;
    let mut mem = Memory::new(device, storage.as_mut());
    let mut model = FashionCnn::build(&mut mem, &mut Rng::new(0))?;
    write_params(&model, &mut mem, &c.params, path)?;
    eval::evaluate(&mut model, &mut mem, data, batch, |m: &FashionCnn, g, b| {
        m.step(g, b)
    })
}

/// `print(model)` of the preset, each layer's output shape for a batch of
/// `batch` images, the parameter count and the training memory (Adam) at
/// batches 64 and 256.
pub fn summary_text(batch: usize) -> Result<String, TrainError> {
    use std::fmt::Write;
    let floats = eval_floats(batch)
        .ok_or_else(|| TrainError::Config(format!("batch {batch} is too large")))?;
    let mut buf = vec![0.0f32; floats];
    let mut mem = Memory::new(&ember_nn_core::Cpu, &mut buf[..]);
    let model = FashionCnn::build(&mut mem, &mut Rng::new(0))?;
    let mut text = format!("{}", summary(&model));
    let mut shapes = Vec::new();
    {
        let g = Graph::new(&mut mem);
        let input = vec![0.0f32; batch * IN_FEATURES];
        g.no_grad(|| {
            let x = g.from_slice(images(batch), &input);
            shapes.push(("input".to_string(), x.dims().as_slice().to_vec()));
            model.forward_traced(x, &mut |name, dims| {
                shapes.push((name.to_string(), dims.to_vec()))
            });
        });
    }
    let _ = writeln!(text, "\nOutput shapes (batch {batch}):");
    for (name, dims) in &shapes {
        let _ = writeln!(text, "  {name:<26} {dims:?}");
    }
    let mib = |b: usize| {
        train_floats(b, &Rule::adam()).map_or(f64::INFINITY, |f| 4.0 * f as f64 / (1 << 20) as f64)
    };
    let _ = writeln!(
        text,
        "Parameters: {PARAMS} ({:.1} KiB as f32)\nTraining memory (Adam): {:.1} MiB at batch 64, {:.1} MiB at batch 256",
        PARAMS as f64 * 4.0 / 1024.0,
        mib(64),
        mib(256)
    );
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_nn_core::Cpu;

    /// One training step's graph peak at `n` samples on `device`.
    fn peak<D: Device>(device: &D, n: usize) -> usize {
        let mut storage = device.alloc(PARAMS * 2 + (1 << 20) + 400_000 * n).unwrap();
        let mut mem = Memory::new(device, storage.as_mut());
        let model = FashionCnn::build(&mut mem, &mut Rng::new(0)).unwrap();
        let features: Vec<f32> = (0..n * IN_FEATURES).map(|i| (i % 7) as f32 / 7.0).collect();
        let batch = MiniBatch {
            features,
            labels: (0..n).map(|i| i % CLASSES).collect(),
            targets: Vec::new(),
            target_len: 0,
            indices: (0..n).collect(),
            feature_len: IN_FEATURES,
            index: 0,
        };
        let g = Graph::new(&mut mem);
        let out = model.step(&*g, &batch).unwrap();
        out.loss.backward().unwrap();
        g.peak()
    }

    #[test]
    fn twenty_thousand_parameters() {
        assert_eq!(PARAMS, 16 * 9 + 16 + 32 * 16 * 9 + 32 + 1568 * 10 + 10);
        assert_eq!(PARAMS, 20_490);
    }

    #[test]
    fn the_arena_formula_is_the_measured_peak() {
        let parallel = crate::Parallel::new(2);
        for n in [1, 3, 16, 64, 100] {
            // The measured part of the formula, exactly, on both backends.
            let exact = STEP_FIXED - 4_096 + STEP_PER_SAMPLE * n;
            assert_eq!(peak(&Cpu, n), exact, "Cpu, batch {n}");
            assert_eq!(peak(&parallel, n), exact, "Parallel, batch {n}");
            let arena = train_floats(n, &Rule::adam()).unwrap();
            assert_eq!(arena, 4 * PARAMS + exact + 4_096);
        }
    }

    #[test]
    fn summary_shows_shapes() {
        let text = summary_text(2).unwrap();
        assert!(text.contains("[2, 16, 28, 28]"), "{text}");
        assert!(text.contains("[2, 32, 7, 7]"), "{text}");
        assert!(text.contains("[2, 1568]"), "{text}");
        assert!(text.contains("Total params: 20,490"), "{text}");
    }
}
