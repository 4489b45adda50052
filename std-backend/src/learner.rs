//! A training loop for any model: a [`Learner`] trains a [`Module`] (a
//! `#[derive(Module)]` struct, an [`Mlp`], ...) with a step closure that
//! computes the loss of a mini-batch, and gives it everything `ember train`
//! has: progress hooks, per-epoch metrics, atomic
//! per-epoch checkpoints with bit-identical resume, early stopping with the
//! best model kept, a clean stop on a NaN or infinite loss, gradient
//! clipping, validation, and a memory check before anything is allocated.
//!
//! ```
//! use ember_core::nn::loss::{cross_entropy, Loss, Reduction};
//! use ember_core::nn::{Build, Forward, Linear, Module, ReLU, Rule};
//! use ember_core::prelude::*;
//! use ember_std::data::TensorDataset;
//! use ember_std::learner::{Arena, Learner, StepOutput};
//! use ember_std::train::Quiet;
//!
//! /// PyTorch's `class MLP(nn.Module)`: `hidden`, then `out`.
//! #[derive(Module)]
//! struct Net {
//!     hidden: Linear<4, 8>,
//!     act: ReLU,
//!     out: Linear<8, 2>,
//! }
//!
//! impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<4>), B>> for Net {
//!     type Output = Tensor<'t, (usize, Const<2>), B>;
//!     fn forward(&self, x: Tensor<'t, (usize, Const<4>), B>) -> Self::Output {
//!         self.out.forward(self.act.forward(self.hidden.forward(x)))
//!     }
//! }
//!
//! // Class 1 when the first feature is positive.
//! let xs: Vec<f32> = (0..256).map(|i| ((i * 37) % 17) as f32 / 8.0 - 1.0).collect();
//! let ys: Vec<usize> = xs.chunks(4).map(|r| usize::from(r[0] > 0.0)).collect();
//! let data = TensorDataset::new(xs, ys, 4, 2)?;
//!
//! let outcome = Learner::new(Rule::adam(), 0.05, Arena::of::<Net>(Loss::CrossEntropy))
//!     .epochs(20)
//!     .batch(16)
//!     .fit(
//!         &Cpu,
//!         Net::build,
//!         |net: &Net, g, batch| {
//!             let x = g.from_slice((batch.len(), Const::<4>), &batch.features);
//!             let logits = net.forward(x);
//!             let loss = cross_entropy(logits, &batch.labels, Reduction::Mean);
//!             Ok(StepOutput::classified(loss, logits))
//!         },
//!         data,
//!         None,
//!         &mut Quiet,
//!     )?;
//! let last = outcome.history.last().unwrap();
//! assert!(last.train_acc.unwrap() > 0.9, "{last:?}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::checkpoint::{Checkpoint, CheckpointError, Meta};
use crate::config::ActivationKind;
use crate::data::transform::Compose;
use crate::data::{DataLoader, Dataset, LoaderState, MiniBatch, TensorDataset};
use crate::schedule::Schedule;
use crate::state_dict::{named_tensors, NamedTensor};
use crate::train::{
    available_memory, write_params, Checkpointing, EpochMetrics, Progress, TrainError, TrainOutcome,
};
use ember_core::backend::Device;
use ember_core::nn::loss::Loss;
use ember_core::nn::optim::clip_grad_norm;
use ember_core::nn::sched::LrScheduler;
use ember_core::nn::{self, Footprint, Mlp, Module, Optimizer, Rule};
use ember_core::{Backend, Dim, Graph, Memory, Rng, Tape, Tensor};
use std::path::PathBuf;
use std::time::Instant;

/// The predicted classes of a batch, computed when the learner asks (after
/// backward, so that they take no memory at the step's peak).
type Predict<'t, B> = Box<dyn FnOnce() -> Tensor<'t, (usize,), B> + 't>;

/// What a step closure computed on a mini-batch: the loss to minimise
/// and, for classifiers, each sample's predicted class (for accuracy).
pub struct StepOutput<'t, B: Backend> {
    /// The batch's loss (a mean over its samples, so that validation can
    /// weigh batches by their size).
    pub loss: Tensor<'t, (), B>,
    predict: Option<Predict<'t, B>>,
}

impl<'t, B: Backend> StepOutput<'t, B> {
    /// A loss alone (regression, autoencoders): no accuracy is reported.
    pub fn loss(loss: Tensor<'t, (), B>) -> Self {
        StepOutput {
            loss,
            predict: None,
        }
    }

    /// A classifier's loss and its logits (`[batch, classes]`): the
    /// predicted class is each row's argmax, taken after backward.
    pub fn classified<C: Dim>(loss: Tensor<'t, (), B>, logits: Tensor<'t, (usize, C), B>) -> Self {
        StepOutput {
            loss,
            predict: Some(Box::new(move || logits.argmax_axis::<1>())),
        }
    }

    /// A loss and each sample's predicted class, computed already.
    pub fn with_predictions(loss: Tensor<'t, (), B>, classes: Tensor<'t, (usize,), B>) -> Self {
        StepOutput {
            loss,
            predict: Some(Box::new(move || classes)),
        }
    }
}

#[derive(Clone, Debug)]
enum ArenaKind {
    Floats(usize),
    Typed {
        floats: fn(usize, Loss, Rule) -> usize,
        loss: Loss,
    },
    Mlp(Vec<usize>, bool),
}

/// The size of a run's training arena (parameters, gradients, optimizer
/// state and one step's graph), checked against the memory available before
/// anything is allocated.
#[derive(Clone, Debug)]
pub struct Arena {
    kind: ArenaKind,
    params: Option<u128>,
}

impl Arena {
    /// Exactly `floats` floats: for a model whose size is known only at run
    /// time. Too few make the first step fail with an out-of-memory error.
    pub fn floats(floats: usize) -> Self {
        Arena {
            kind: ArenaKind::Floats(floats),
            params: None,
        }
    }

    /// The model's scalar parameter count, for a closer memory estimate
    /// (without it the host copies a checkpoint and the best model take are
    /// bounded by the arena's size, which holds the parameters, their
    /// gradients and the optimizer state).
    pub fn with_params(mut self, params: usize) -> Self {
        self.params = Some(params as u128);
        self
    }

    /// Computed from a model type's compile-time sizes
    /// ([`nn::train_floats`]) for the learner's batch size and optimizer,
    /// with `loss` the loss the step closure computes: an upper bound for a
    /// model whose first module has parameters and a step that is the
    /// forward pass and this loss.
    pub fn of<M: Footprint>(loss: Loss) -> Self {
        Arena {
            kind: ArenaKind::Typed {
                floats: nn::train_floats::<M>,
                loss,
            },
            params: Some(M::PARAMS as u128),
        }
    }

    /// An [`Mlp`] of these widths ([`Mlp::train_floats_for`]).
    pub fn mlp(widths: &[usize]) -> Self {
        Self::mlp_with_dropout(widths, false)
    }

    /// An [`Mlp`] of these widths, with dropout after each hidden
    /// activation when `dropout` is true ([`Mlp::train_floats_with`]).
    pub fn mlp_with_dropout(widths: &[usize], dropout: bool) -> Self {
        let params = widths
            .windows(2)
            .map(|p| p[0] as u128 * p[1] as u128 + p[1] as u128)
            .sum();
        Arena {
            kind: ArenaKind::Mlp(widths.to_vec(), dropout),
            params: Some(params),
        }
    }

    /// The arena's floats for `batch` samples and `rule`; `None` when the
    /// count overflows a `usize`.
    pub fn floats_for(&self, batch: usize, rule: &Rule) -> Option<usize> {
        match &self.kind {
            ArenaKind::Floats(f) => Some(*f),
            ArenaKind::Typed { floats, loss, .. } => Some(floats(batch, *loss, *rule)),
            ArenaKind::Mlp(w, dropout) => {
                Mlp::train_floats_with(w, batch, rule.state_planes(), *dropout)
            }
        }
    }

    /// Bytes the run holds at once: the arena, and the host copies of the
    /// parameters and optimizer state that a checkpoint and the best model
    /// take. `None` when that overflows.
    pub fn run_bytes(&self, batch: usize, rule: &Rule) -> Option<u128> {
        let arena = self.floats_for(batch, rule)? as u128;
        let planes = rule.state_planes() as u128;
        // Without a count: the arena holds the parameters (2 + planes) times over.
        let params = self.params.unwrap_or(arena / (2 + planes));
        Some(4 * (arena + params * (2 + planes)))
    }

    /// The arena's floats, after checking that the run fits in the memory
    /// available: otherwise a [`TrainError::Memory`] saying how much the
    /// model (`name`, when given) needs and how much there is.
    pub fn check(
        &self,
        batch: usize,
        rule: &Rule,
        name: Option<&str>,
    ) -> Result<usize, TrainError> {
        let available = available_memory();
        let need = self.run_bytes(batch, rule);
        let fits = match (need, available) {
            (Some(need), Some(a)) => need <= u128::from(a),
            (need, None) => need.is_some(),
            (None, Some(_)) => false,
        };
        match self.floats_for(batch, rule) {
            Some(f) if fits => Ok(f),
            _ => Err(TrainError::Memory(memory_message(
                need, available, batch, name,
            ))),
        }
    }
}

fn gib(bytes: u128) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// "this model (NAME) needs N GiB for training at batch B; M GiB are available".
fn memory_message(
    need: Option<u128>,
    available: Option<u64>,
    batch: usize,
    name: Option<&str>,
) -> String {
    let needed = match need {
        Some(b) => format!("{:.1} GiB", gib(b)),
        None => "more memory than an address space holds".to_string(),
    };
    let model = name.map_or_else(|| "this model".to_string(), |n| format!("this model ({n})"));
    match available {
        Some(a) => format!(
            "{model} needs {needed} for training at batch {batch}; {:.1} GiB are available",
            gib(u128::from(a))
        ),
        None => format!(
            "{model} needs {needed} for training at batch {batch}, and the machine could not provide it"
        ),
    }
}

/// A training run's settings, for any model: build it with [`Learner::new`]
/// and the setters, then [`fit`](Learner::fit) a model.
pub struct Learner {
    rule: Rule,
    lr: f32,
    arena: Arena,
    schedule: Schedule,
    epochs: usize,
    batch: usize,
    seed: u64,
    patience: Option<usize>,
    clip: Option<f32>,
    checkpointing: Checkpointing,
    augment: Option<Compose>,
    name: Option<String>,
    widths: Vec<usize>,
    activation: Option<ActivationKind>,
    config: serde_json::Value,
}

impl Learner {
    /// A run with optimizer `rule` at learning rate `lr` in an arena of
    /// `arena`'s size; 5 epochs of batches of 64, seed 0, a constant rate,
    /// no early stopping, clipping, augmentation or checkpoints.
    pub fn new(rule: Rule, lr: f32, arena: Arena) -> Self {
        Learner {
            rule,
            lr,
            arena,
            schedule: Schedule::constant(),
            epochs: 5,
            batch: 64,
            seed: 0,
            patience: None,
            clip: None,
            checkpointing: Checkpointing::default(),
            augment: None,
            name: None,
            widths: Vec::new(),
            activation: None,
            config: serde_json::Value::Null,
        }
    }

    /// The learning-rate schedule (stepped after every epoch with the
    /// validation loss, or the training loss without validation).
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Epochs to train (in all, counting those before a resume).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Samples per mini-batch.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Seed of initialisation, shuffling and augmentation.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Stop after this many epochs without a better validation loss, and
    /// return the best parameters.
    pub fn patience(mut self, patience: Option<usize>) -> Self {
        self.patience = patience;
        self
    }

    /// Clip gradients to this global L2 norm.
    pub fn clip(mut self, clip: Option<f32>) -> Self {
        self.clip = clip;
        self
    }

    /// Where checkpoints go, which one to resume from, and where to stop.
    pub fn checkpointing(mut self, checkpointing: Checkpointing) -> Self {
        self.checkpointing = checkpointing;
        self
    }

    /// Augments training batches (never validation batches).
    pub fn augment(mut self, augment: Option<Compose>) -> Self {
        self.augment = augment;
        self
    }

    /// The model's name in messages (`784-256-10` says the CLI).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Records an [`Mlp`]'s widths and activation in checkpoints (which
    /// `ember export` rebuilds it from) and checks them on resume, besides
    /// the parameters' names and shapes that are always checked.
    pub fn mlp_architecture(mut self, widths: &[usize], activation: ActivationKind) -> Self {
        self.widths = widths.to_vec();
        self.activation = Some(activation);
        self
    }

    /// The run's settings as JSON, stored in every checkpoint. On resume
    /// they must equal the checkpoint's, except `epochs` (a top-level key a
    /// run may raise to train longer); otherwise the resume is refused with
    /// [`CheckpointError::Settings`], which lists what differs. Without
    /// recorded settings (the default) nothing is compared.
    pub fn record_config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    fn check_settings(&self) -> Result<(), TrainError> {
        check_run(self.batch, self.epochs, self.lr, self.clip)
    }

    /// Trains (or resumes) the model `build` makes, on `device`.
    ///
    /// `build` allocates and initialises the model in the run's arena (for
    /// a derived model, `Net::build`). `step` computes a mini-batch's loss:
    /// it gets the model, the graph to record on and the batch, and returns
    /// a [`StepOutput`]; the learner runs backward, clipping and the
    /// optimizer step in training, and the same closure without recording
    /// gradients on the validation set (in order, in batches of the same
    /// size). The model is in training mode ([`Module::train`]) for the
    /// training batches and in evaluation mode for validation.
    ///
    /// The graph has [`ember_core::DEFAULT_NODES`] nodes; a step that
    /// records more fails with a [`TrainError::Core`] error.
    ///
    /// Errors are typed: a NaN or infinite training loss is
    /// [`TrainError::NonFiniteLoss`] naming the last checkpoint written, a
    /// checkpoint of another model is a [`CheckpointError`], a run too large
    /// for the machine a [`TrainError::Memory`] before any allocation.
    pub fn fit<D, M, E, BuildFn, StepFn>(
        self,
        device: &D,
        build: BuildFn,
        mut step: StepFn,
        train_set: TensorDataset,
        val_set: Option<&TensorDataset>,
        progress: &mut dyn Progress,
    ) -> Result<TrainOutcome, TrainError>
    where
        D: Device,
        M: Module,
        E: Into<TrainError>,
        BuildFn: FnOnce(&mut Memory<'_, D>, &mut Rng) -> Result<M, E>,
        StepFn: for<'t> FnMut(
            &M,
            &'t dyn Tape<D>,
            &MiniBatch,
        ) -> Result<StepOutput<'t, D>, ember_core::Error>,
    {
        self.check_settings()?;
        let Learner {
            rule,
            lr,
            arena,
            schedule: mut sched,
            epochs,
            batch,
            seed,
            patience,
            clip,
            checkpointing: ckpt,
            augment,
            name,
            widths,
            activation,
            config,
        } = self;

        // Memory: refuse what the machine cannot hold, then build
        // everything in one arena.
        let floats = arena.check(batch, &rule, name.as_deref())?;
        let mut storage = device.alloc(floats).map_err(|_| {
            TrainError::Memory(memory_message(
                arena.run_bytes(batch, &rule),
                available_memory(),
                batch,
                name.as_deref(),
            ))
        })?;
        let mut mem = Memory::new(device, storage.as_mut());
        let mut rng = Rng::new(seed);
        let mut model = build(&mut mem, &mut rng).map_err(Into::into)?;
        let mut opt: Optimizer = Optimizer::new(&mut mem, &model, rule, lr)?;

        let mut loader = DataLoader::new(train_set, batch)
            .shuffle(true)
            .seed(seed ^ 0x5EED);
        if let Some(a) = augment {
            loader = loader.augment(a);
        }

        let mut history = Vec::new();
        let mut best: Option<(f32, Vec<NamedTensor>)> = None;
        let mut bad_epochs = 0;
        let mut start = 1;
        if let Some(path) = &ckpt.resume {
            let c = Checkpoint::load(path)?;
            if !widths.is_empty() || activation.is_some() {
                c.check_architecture(path, &widths, activation)?;
            }
            c.check_config(path, &config)?;
            let shapes = parameter_shapes(&model);
            c.check_parameters(path, &shapes)?;
            write_params(&model, &mut mem, &c.params, path)?;
            opt.load_state(&mut mem, &c.optimizer, c.meta.optimizer_steps, &c.meta.lrs)
                .map_err(|e| CheckpointError::Invalid {
                    path: path.clone(),
                    msg: format!("optimizer state does not fit this run: {e}"),
                })?;
            sched
                .restore(&c.meta.scheduler)
                .map_err(|msg| CheckpointError::Invalid {
                    path: path.clone(),
                    msg,
                })?;
            loader.set_state(LoaderState {
                rng: c.meta.loader_rng,
                epoch: c.meta.loader_epoch,
            });
            history = c.meta.history.clone();
            bad_epochs = c.meta.bad_epochs;
            if let Some(b) = c.meta.best_val_loss {
                // Checkpoints of runs without early stopping (or from before
                // the Learner) do not hold the best parameters: the current
                // ones stand in, as they always did.
                let params = c.best_params.unwrap_or(c.params);
                best = Some((b, in_model_order(&shapes, params)));
            }
            start = c.meta.epoch + 1;
        } else {
            // The first epoch's rate (a warmup's first step).
            opt.set_lr_with(|base| sched.lr(base));
        }

        // A run killed while writing its checkpoint left a temporary file:
        // the checkpoint itself is whole (the write is atomic); the
        // leftover goes.
        if let Some(path) = &ckpt.path {
            crate::atomic::remove_stale_temporaries(path).map_err(|source| {
                CheckpointError::Io {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        let mut last_ckpt: Option<PathBuf> = ckpt.resume.clone();
        let mut stopped_early = false;
        let mut preds = vec![0.0f32; batch];
        for epoch in start..=epochs {
            let t0 = Instant::now();
            let lr = opt.lr();
            loader.set_training(true);
            model.train();
            progress.epoch_start(epoch, loader.len());
            let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
            let mut classified = true;
            for (bi, b) in loader.iter().enumerate() {
                let n = b.len();
                opt.zero_grad(&mut mem)?;
                let (value, got) = {
                    let g = Graph::new(&mut mem);
                    let out = step(&model, &*g, &b)?;
                    let value = out.loss.item()?;
                    if !value.is_finite() {
                        return Err(TrainError::NonFiniteLoss {
                            value,
                            epoch,
                            batch: bi,
                            checkpoint: last_ckpt,
                        });
                    }
                    out.loss.backward()?;
                    let got = match out.predict {
                        Some(predict) => {
                            let out = preds.get_mut(..n).ok_or_else(|| too_long(n, batch))?;
                            predict().read(out)?;
                            Some(count_correct(&preds[..n], &b.labels))
                        }
                        None => None,
                    };
                    (value, got)
                };
                if let Some(c) = clip {
                    clip_grad_norm(&mut mem, &model, c)?;
                }
                opt.step(&mut mem)?;
                loss_sum += f64::from(value) * n as f64;
                match got {
                    Some(c) => correct += c,
                    None => classified = false,
                }
                seen += n;
                let secs = t0.elapsed().as_secs_f32().max(1e-6);
                progress.batch(
                    bi + 1,
                    (loss_sum / seen as f64) as f32,
                    classified.then(|| correct as f32 / seen as f32),
                    seen as f32 / secs,
                );
            }
            let train_secs = t0.elapsed().as_secs_f32();
            model.eval();
            let (val_loss, val_acc) = match val_set {
                Some(v) => {
                    let (l, a) = validate(&model, &mut mem, v, batch, &mut step)?;
                    (Some(l), a)
                }
                None => (None, None),
            };
            let m = EpochMetrics {
                epoch,
                train_loss: (loss_sum / seen.max(1) as f64) as f32,
                train_acc: classified.then(|| correct as f32 / seen.max(1) as f32),
                val_loss,
                val_acc,
                lr,
                samples_per_sec: seen as f32 / train_secs.max(1e-6),
                seconds: t0.elapsed().as_secs_f32(),
            };
            progress.epoch_end(&m);
            sched.step_with(val_loss.unwrap_or(m.train_loss));
            opt.set_lr_with(|base| sched.lr(base));
            history.push(m);

            if let Some(vl) = val_loss {
                if best.as_ref().is_none_or(|(b, _)| vl < *b) {
                    best = Some((vl, named_tensors(&model, &mem)?));
                    bad_epochs = 0;
                } else {
                    bad_epochs += 1;
                }
            }
            if let Some(path) = &ckpt.path {
                let mut state = vec![0.0f32; opt.state_len()];
                opt.save_state(&mem, &mut state)?;
                let ls = loader.state();
                let c = Checkpoint {
                    meta: Meta {
                        widths: widths.clone(),
                        activation,
                        epoch,
                        optimizer_steps: opt.steps(),
                        lrs: opt.groups().iter().map(|g| g.lr).collect(),
                        scheduler: sched.state(),
                        loader_rng: ls.rng,
                        loader_epoch: ls.epoch,
                        best_val_loss: best.as_ref().map(|b| b.0),
                        bad_epochs,
                        history: history.clone(),
                        config: config.clone(),
                    },
                    params: named_tensors(&model, &mem)?,
                    optimizer: state,
                    // Lent to the checkpoint (no copy), taken back below.
                    best_params: if patience.is_some() {
                        best.as_mut().map(|(_, p)| std::mem::take(p))
                    } else {
                        None
                    },
                };
                let saved = c.save(path);
                if let (Some((_, p)), Some(lent)) = (best.as_mut(), c.best_params) {
                    *p = lent;
                }
                saved?;
                last_ckpt = Some(path.clone());
            }
            if patience.is_some_and(|p| bad_epochs >= p) {
                stopped_early = true;
                break;
            }
            if ckpt.stop_after == Some(epoch) {
                break;
            }
        }
        let params = match (patience, best) {
            (Some(_), Some((_, p))) => p,
            _ => named_tensors(&model, &mem)?,
        };
        Ok(TrainOutcome {
            history,
            stopped_early,
            params,
        })
    }
}

fn too_long(n: usize, batch: usize) -> TrainError {
    TrainError::Data(format!(
        "a mini-batch of {n} samples is larger than the batch size {batch}"
    ))
}

/// Each parameter's name and shape, in visiting order.
fn parameter_shapes<M: Module>(model: &M) -> Vec<(String, Vec<usize>)> {
    let mut v = Vec::new();
    model.named_parameters(&mut |p| v.push((p.name.to_string(), p.dims.as_slice().to_vec())));
    v
}

/// `params` in the order of `shapes` (a checkpoint's tensors come back
/// sorted by name); the names have been checked to be the same.
fn in_model_order(
    shapes: &[(String, Vec<usize>)],
    mut params: Vec<NamedTensor>,
) -> Vec<NamedTensor> {
    let rank = |t: &NamedTensor| shapes.iter().position(|(n, _)| *n == t.name);
    params.sort_by_key(|t| rank(t).unwrap_or(usize::MAX));
    params
}

fn count_correct(preds: &[f32], labels: &[usize]) -> usize {
    preds
        .iter()
        .zip(labels)
        .filter(|(p, y)| **p as usize == **y)
        .count()
}

/// Checks the settings every run has: batch and epochs positive, a
/// positive finite learning rate, a positive finite clipping norm if any.
pub(crate) fn check_run(
    batch: usize,
    epochs: usize,
    lr: f32,
    clip: Option<f32>,
) -> Result<(), TrainError> {
    if batch == 0 || epochs == 0 {
        return Err(TrainError::Config(
            "batch and epochs must be positive".into(),
        ));
    }
    if !(lr.is_finite() && lr > 0.0) {
        return Err(TrainError::Config(
            "the learning rate must be positive".into(),
        ));
    }
    if clip.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
        return Err(TrainError::Config(
            "the gradient clipping norm must be positive".into(),
        ));
    }
    Ok(())
}

/// Mean loss (and accuracy, when the step classifies) of `model` on `data`,
/// in batches, recording nothing for backward.
fn validate<D, M, StepFn>(
    model: &M,
    mem: &mut Memory<'_, D>,
    data: &TensorDataset,
    batch: usize,
    step: &mut StepFn,
) -> Result<(f32, Option<f32>), TrainError>
where
    D: Device,
    M: Module,
    StepFn: for<'t> FnMut(
        &M,
        &'t dyn Tape<D>,
        &MiniBatch,
    ) -> Result<StepOutput<'t, D>, ember_core::Error>,
{
    let d = data.feature_len();
    let (feats, labels) = (data.features(), data.labels());
    let mut loss_sum = 0.0f64;
    let (mut correct, mut classified) = (0usize, true);
    let mut preds = vec![0.0f32; batch];
    for (c, ys) in labels.chunks(batch.max(1)).enumerate() {
        let n = ys.len();
        let start = c * batch;
        let b = MiniBatch {
            features: feats
                .get(start * d..(start + n) * d)
                .ok_or_else(|| {
                    TrainError::Data("the validation set is shorter than its labels".into())
                })?
                .to_vec(),
            labels: ys.to_vec(),
            indices: (start..start + n).collect(),
            feature_len: d,
            index: c,
        };
        let g = Graph::new(mem);
        let (loss, got) = g.no_grad(|| -> Result<_, TrainError> {
            let out = step(model, &*g, &b)?;
            let loss = out.loss.item()?;
            let got = match out.predict {
                Some(predict) => {
                    predict().read(preds.get_mut(..n).ok_or_else(|| too_long(n, batch))?)?;
                    Some(count_correct(&preds[..n], ys))
                }
                None => None,
            };
            Ok((loss, got))
        })?;
        loss_sum += f64::from(loss) * n as f64;
        match got {
            Some(k) => correct += k,
            None => classified = false,
        }
    }
    let total = labels.len().max(1) as f32;
    Ok((
        (loss_sum / labels.len().max(1) as f64) as f32,
        classified.then(|| correct as f32 / total),
    ))
}
