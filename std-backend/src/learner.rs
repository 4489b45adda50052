//! A training loop for any model: a [`Learner`] trains a [`Module`] (a
//! `#[derive(Module)]` struct, an [`Mlp`], ...) with a step closure that
//! computes the loss of a mini-batch, and gives it everything `ember train`
//! has: progress hooks, per-epoch metrics, atomic
//! per-epoch checkpoints with bit-identical resume (refused when the run's
//! settings differ from the checkpoint's), early stopping with the
//! best model kept, a clean stop on a NaN or infinite loss, gradient
//! clipping, validation, a test set evaluated after training, and a
//! memory check before anything is allocated.
//!
//! Regression and autoencoders train the same way: a data set of float
//! targets ([`TensorDataset::regression`], one or several per sample; an
//! autoencoder's are its features), a step that computes its loss against
//! the batch's [`targets`](MiniBatch::targets) and returns its outputs
//! ([`StepOutput::regressed`]), and the evaluations give RMSE, MAE and R²
//! per target ([`Evaluation::regression`](crate::eval::Evaluation::regression)).
//!
//! [`fit`](Learner::fit) gives the trained model back in its memory
//! ([`Trained`]): evaluate it ([`Trained::evaluate`], [`Trained::predict`]),
//! run it ([`Trained::parts`]), or copy its parameters out
//! ([`Trained::params`]).
//!
//! ```
//! use ember_nn_core::nn::loss::{cross_entropy, Loss, Reduction};
//! use ember_nn_core::nn::{Build, Forward, Linear, Module, ReLU, Rule};
//! use ember_nn_core::prelude::*;
//! use ember_nn_std::data::{MiniBatch, TensorDataset};
//! use ember_nn_std::learner::{Arena, Learner, StepOutput};
//! use ember_nn_std::train::Quiet;
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
//! /// A mini-batch's loss, and the logits for accuracy.
//! fn step<'t, B: Backend>(
//!     net: &Net,
//!     g: &'t dyn Tape<B>,
//!     batch: &MiniBatch,
//! ) -> ember_nn_core::Result<StepOutput<'t, B>> {
//!     let x = g.from_slice((batch.len(), Const::<4>), &batch.features);
//!     let logits = net.forward(x);
//!     let loss = cross_entropy(logits, &batch.labels, Reduction::Mean);
//!     Ok(StepOutput::classified(loss, logits))
//! }
//!
//! // Samples `from..from + n` of a sequence; class 1 when the first feature is positive.
//! let samples = |from: usize, n: usize| -> Result<TensorDataset, ember_nn_std::data::DataError> {
//!     let xs: Vec<f32> = (from * 4..(from + n) * 4)
//!         .map(|i| ((i * 37) % 17) as f32 / 8.0 - 1.0)
//!         .collect();
//!     let ys = xs.chunks(4).map(|r| usize::from(r[0] > 0.0)).collect();
//!     TensorDataset::new(xs, ys, 4, 2)
//! };
//!
//! let mut trained = Learner::new(Rule::adam(), 0.05, Arena::of::<Net>(Loss::CrossEntropy))
//!     .epochs(20)
//!     .batch(16)
//!     .test_set(samples(64, 32)?)
//!     .fit(&Cpu, Net::build, step, samples(0, 64)?, None, &mut Quiet)?;
//! let last = trained.history.last().unwrap();
//! assert!(last.train_acc.unwrap() > 0.9, "{last:?}");
//! // The test set, evaluated after training.
//! let test = trained.test.clone().unwrap();
//! assert!(test.accuracy().unwrap() > 0.8, "{test:?}");
//!
//! // The model, in its memory: evaluate it again, or run it.
//! let again = trained.evaluate(&samples(64, 32)?, 8, step)?;
//! assert_eq!(again.accuracy(), test.accuracy());
//! let (net, mut mem) = trained.parts()?;
//! let g = Graph::new(&mut mem);
//! let logits = net.forward(g.from_slice((1, Const::<4>), &[0.9, 0.0, 0.0, 0.0]));
//! assert_eq!(logits.argmax_axis::<1>().to_vec()?, [1.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::checkpoint::{f32_json, Checkpoint, CheckpointError, Meta};
use crate::config::ActivationKind;
use crate::data::transform::Compose;
use crate::data::{DataLoader, Dataset, LoaderState, MiniBatch, TensorDataset};
use crate::eval::{self, Evaluation, Failure, Predictions};
use crate::schedule::Schedule;
use crate::state_dict::{named_state, state_spans, NamedTensor};

use ember_nn_core::backend::{Device, Span};
use ember_nn_core::nn::loss::Loss;
use ember_nn_core::nn::optim::clip_grad_norm;
use ember_nn_core::nn::sched::LrScheduler;
use ember_nn_core::nn::{self, Footprint, Mlp, Module, Optimizer, Rule};
use ember_nn_core::{Backend, Dim, Graph, Memory, Rng, Shape, Tape, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why training stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting is invalid.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error("the loss became {value} at epoch {epoch}, batch {batch}; training stopped{}", match .checkpoint { Some(p) => format!(" (last good checkpoint: {})", p.display()), None => " before the first checkpoint".into() })]
    NonFiniteLoss {
        /// The loss.
        value: f32,
        /// Epoch (1-based).
        epoch: usize,
        /// Batch within the epoch (0-based).
        batch: usize,
        /// The last checkpoint written, if any.
        checkpoint: Option<PathBuf>,
    },
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Core(#[from] ember_nn_core::Error),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The data set does not fit the model.
    #[error("data: {0}")]
    Data(String),
    /// Exporting the trained model failed or was refused (an op the
    /// deployable format cannot express, a file that does not compute
    /// the model): nothing was written.
    #[error("export: {0}")]
    Export(#[from] crate::export::DeployError),
    /// The run needs more memory than the machine has (checked before
    /// anything is allocated), or an evaluation's batch more than the
    /// memory it was given has free.
    #[error("{0}")]
    Memory(String),
    /// A step (training, validation, evaluation) needs more floats than
    /// the run's arena holds: the message names the arena as it was given
    /// and the size to give instead.
    #[error("{}", arena_message(.arena, *.floats, .during, *.batch, *.needed, *.at_least))]
    ArenaTooSmall {
        /// The arena as it was given: `Arena::of::<Net>(CrossEntropy)`,
        /// `Arena::floats(8192)`, ...
        arena: String,
        /// Its floats.
        floats: usize,
        /// What ran out of memory: `a training step`, `a validation
        /// step`, `evaluating the test set`, ...
        during: &'static str,
        /// The samples of the batch it ran on.
        batch: usize,
        /// The arena's size that the step needs, measured by running it in
        /// a larger trial arena: `Arena::floats(needed)` is exactly enough
        /// for it. `None` when it could not be measured (no larger arena
        /// could be had, or the step failed otherwise there).
        needed: Option<usize>,
        /// A lower bound of the size needed: the arena's floats and what
        /// the failed allocation lacked.
        at_least: usize,
    },
}

/// The message of [`TrainError::ArenaTooSmall`].
fn arena_message(
    arena: &str,
    floats: usize,
    during: &str,
    batch: usize,
    needed: Option<usize>,
    at_least: usize,
) -> String {
    let head = format!(
        "the arena given to the Learner ({arena}, {floats} floats) is too small for {during} at batch {batch}"
    );
    match needed {
        Some(n) => format!(
            "{head}: it needs {n} floats (the parameters and their gradients, the optimizer state while training, and the step's graph at its peak, measured in a larger trial arena); give the Learner Arena::floats({n})"
        ),
        None => format!(
            "{head}: it needs at least {at_least} floats (a larger trial arena to measure the exact size could not be had); give the Learner Arena::floats(N) with N at least {at_least}"
        ),
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f32,
    /// Training accuracy (`None` when the step does not classify).
    pub train_acc: Option<f32>,
    /// Validation loss.
    pub val_loss: Option<f32>,
    /// Validation accuracy.
    pub val_acc: Option<f32>,
    /// Learning rate used in the epoch.
    pub lr: f32,
    /// Training samples per second.
    pub samples_per_sec: f32,
    /// Wall time of the epoch.
    pub seconds: f32,
}

/// What a run produced, copied to the host: [`Trained::into_outcome`]
/// gives it (the trained model itself, in device memory, is the
/// [`Trained`]).
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Per-epoch figures.
    pub history: Vec<EpochMetrics>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Final parameters, then buffers such as a batch norm's running
    /// statistics (the best epoch's when early stopping is on).
    pub params: Vec<NamedTensor>,
    /// The test set's evaluation ([`Learner::test_set`]), if it had one.
    pub test: Option<Evaluation>,
}

/// Hooks for progress reporting.
pub trait Progress {
    /// An epoch starts, with this many batches.
    fn epoch_start(&mut self, epoch: usize, batches: usize);
    /// A batch ended: `done` batches of the epoch, their mean loss and
    /// accuracy (`None` when the step does not classify).
    fn batch(&mut self, done: usize, loss: f32, acc: Option<f32>, samples_per_sec: f32);
    /// An epoch ended.
    fn epoch_end(&mut self, m: &EpochMetrics);
    /// The test set ([`Learner::test_set`]) was evaluated after training,
    /// with the parameters the run returns. Default: nothing.
    fn test_end(&mut self, e: &Evaluation) {
        let _ = e;
    }
    /// A remark on the run that is no error: a resumed checkpoint from
    /// before the Learner recorded its settings, say. Default: nothing.
    fn note(&mut self, text: &str) {
        let _ = text;
    }
}

/// Progress that reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn epoch_start(&mut self, _: usize, _: usize) {}
    fn batch(&mut self, _: usize, _: f32, _: Option<f32>, _: f32) {}
    fn epoch_end(&mut self, _: &EpochMetrics) {}
}

/// Where checkpoints go and which one to resume from.
#[derive(Clone, Debug, Default)]
pub struct Checkpointing {
    /// Written after every epoch.
    pub path: Option<PathBuf>,
    /// Resume from this checkpoint.
    pub resume: Option<PathBuf>,
    /// End the run (as if interrupted) after this epoch; resume it later.
    pub stop_after: Option<usize>,
}

/// Bytes of memory that new allocations can have now (Linux's
/// `MemAvailable` in `/proc/meminfo`), if the system says.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Writes named parameters into `model`'s memory: every parameter of the
/// model must have a tensor of its name and shape in `params`, and nothing
/// else may be there (in any order).
pub fn write_params<M: Module, D: Device>(
    model: &M,
    mem: &mut Memory<'_, D>,
    params: &[NamedTensor],
    path: &Path,
) -> Result<(), CheckpointError> {
    // Parameters and buffers (a batch norm's running statistics).
    let spans = crate::state_dict::state_spans(model);
    let invalid = |msg: String| CheckpointError::Invalid {
        path: path.into(),
        msg,
    };
    if spans.len() != params.len() {
        return Err(invalid(format!(
            "{} tensors, the model has {}",
            params.len(),
            spans.len()
        )));
    }
    for (name, shape, span) in &spans {
        let t = params
            .iter()
            .find(|t| t.name == *name)
            .ok_or_else(|| invalid(format!("no tensor `{name}` {shape:?}")))?;
        if t.shape != *shape {
            return Err(invalid(format!(
                "tensor `{}` {:?} does not fit `{name}` {shape:?}",
                t.name, t.shape
            )));
        }
        mem.write(*span, &t.data)
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

/// The predicted classes of a batch, computed when the learner asks (after
/// backward, so that they take no memory at the step's peak).
type Predict<'t, B> = Box<dyn FnOnce() -> Tensor<'t, (usize,), B> + 't>;

/// A regression's outputs, read to the host when the learner asks.
type Values<'t> = Box<dyn FnOnce() -> Result<Vec<f32>, ember_nn_core::Error> + 't>;

/// A step closure, as [`Learner::fit`], [`Trained::evaluate`] and
/// [`eval::evaluate`] take it: the model, the graph to record on and a
/// mini-batch in, the batch's [`StepOutput`] out. Any closure of that
/// signature is one (the bound is written here once).
pub trait Step<M, B: Backend>:
    for<'t> FnMut(&M, &'t dyn Tape<B>, &MiniBatch) -> Result<StepOutput<'t, B>, ember_nn_core::Error>
{
}

impl<M, B: Backend, F> Step<M, B> for F where
    F: for<'t> FnMut(
        &M,
        &'t dyn Tape<B>,
        &MiniBatch,
    ) -> Result<StepOutput<'t, B>, ember_nn_core::Error>
{
}

/// A forward closure, as [`Trained::predict`] and [`eval::predict`] take
/// it: the model, the graph and a mini-batch in, the batch's output
/// tensor (its first dimension the batch's samples) out.
pub trait BatchForward<M, B: Backend, S: Shape>:
    for<'t> FnMut(&M, &'t dyn Tape<B>, &MiniBatch) -> Result<Tensor<'t, S, B>, ember_nn_core::Error>
{
}

impl<M, B: Backend, S: Shape, F> BatchForward<M, B, S> for F where
    F: for<'t> FnMut(
        &M,
        &'t dyn Tape<B>,
        &MiniBatch,
    ) -> Result<Tensor<'t, S, B>, ember_nn_core::Error>
{
}

/// What a step closure computed on a mini-batch: the loss to minimise
/// and, for classifiers, each sample's predicted class (for accuracy), or
/// for regression its outputs (for RMSE, MAE and R² per target).
pub struct StepOutput<'t, B: Backend> {
    /// The batch's loss (a mean over its samples, so that validation can
    /// weigh batches by their size).
    pub loss: Tensor<'t, (), B>,
    pub(crate) predict: Option<Predict<'t, B>>,
    pub(crate) values: Option<Values<'t>>,
}

impl<'t, B: Backend> StepOutput<'t, B> {
    /// A loss alone (regression, autoencoders): no accuracy is reported.
    pub fn loss(loss: Tensor<'t, (), B>) -> Self {
        StepOutput {
            loss,
            predict: None,
            values: None,
        }
    }

    /// A regression's (or an autoencoder's) loss and its outputs
    /// (`[batch, targets]`): evaluation compares them with the batch's
    /// [`targets`](MiniBatch::targets), target by target
    /// ([`Evaluation::regression`](crate::eval::Evaluation::regression)).
    /// Training reads them not.
    pub fn regressed<C: Dim>(loss: Tensor<'t, (), B>, outputs: Tensor<'t, (usize, C), B>) -> Self {
        StepOutput {
            loss,
            predict: None,
            values: Some(Box::new(move || outputs.to_vec())),
        }
    }

    /// A classifier's loss and its logits (`[batch, classes]`): the
    /// predicted class is each row's argmax, taken after backward.
    pub fn classified<C: Dim>(loss: Tensor<'t, (), B>, logits: Tensor<'t, (usize, C), B>) -> Self {
        StepOutput {
            loss,
            predict: Some(Box::new(move || logits.argmax_axis::<1>())),
            values: None,
        }
    }

    /// A loss and each sample's predicted class, computed already.
    pub fn with_predictions(loss: Tensor<'t, (), B>, classes: Tensor<'t, (usize,), B>) -> Self {
        StepOutput {
            loss,
            predict: Some(Box::new(move || classes)),
            values: None,
        }
    }
}

#[derive(Clone, Debug)]
enum ArenaKind {
    Floats(usize),
    Typed {
        floats: fn(usize, Loss, Rule) -> usize,
        loss: Loss,
        model: &'static str,
    },
    Mlp(Vec<usize>, bool, Loss),
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
                model: std::any::type_name::<M>(),
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
            kind: ArenaKind::Mlp(widths.to_vec(), dropout, Loss::CrossEntropy),
            params: Some(params),
        }
    }

    /// An [`Mlp`] arena ([`mlp`](Self::mlp), [`mlp_with_dropout`](Self::mlp_with_dropout))
    /// whose step computes `loss` on the outputs instead of cross-entropy
    /// (a regression's MSE holds more floats per sample). Other arenas
    /// are unchanged.
    pub fn with_loss(mut self, loss: Loss) -> Self {
        if let ArenaKind::Mlp(_, _, l) = &mut self.kind {
            *l = loss;
        }
        self
    }

    /// The arena as it was given, for messages: `Arena::floats(8192)`,
    /// `Arena::of::<Net>(CrossEntropy)`, `Arena::mlp(&[784, 256, 10])`.
    pub fn label(&self) -> String {
        match &self.kind {
            ArenaKind::Floats(f) => format!("Arena::floats({f})"),
            ArenaKind::Typed { loss, model, .. } => {
                format!("Arena::of::<{}>({loss:?})", short_type_name(model))
            }
            ArenaKind::Mlp(w, false, Loss::CrossEntropy) => format!("Arena::mlp(&{w:?})"),
            ArenaKind::Mlp(w, true, Loss::CrossEntropy) => {
                format!("Arena::mlp_with_dropout(&{w:?}, true)")
            }
            ArenaKind::Mlp(w, dropout, loss) => {
                format!("Arena::mlp_with_dropout(&{w:?}, {dropout}).with_loss({loss:?})")
            }
        }
    }

    /// The arena's floats for `batch` samples and `rule`; `None` when the
    /// count overflows a `usize`.
    pub fn floats_for(&self, batch: usize, rule: &Rule) -> Option<usize> {
        match &self.kind {
            ArenaKind::Floats(f) => Some(*f),
            ArenaKind::Typed { floats, loss, .. } => Some(floats(batch, *loss, *rule)),
            ArenaKind::Mlp(w, dropout, loss) => {
                let out = *w.last()?;
                Mlp::train_floats_with(w, batch, rule.state_planes(), *dropout)?
                    .checked_sub(Loss::CrossEntropy.floats(batch, out))?
                    .checked_add(loss.floats(batch, out))
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

/// A type's name without its paths: `(Linear<4, 8>, ReLU)` for
/// `(ember_nn_core::nn::linear::Linear<4, 8>, ember_nn_core::nn::activation::ReLU)`.
fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut word = String::new();
    let last = |w: &str| w.rsplit("::").next().unwrap_or(w).to_string();
    for ch in full.chars() {
        if ch.is_alphanumeric() || ch == '_' || ch == ':' {
            word.push(ch);
        } else {
            out.push_str(&last(&word));
            word.clear();
            out.push(ch);
        }
    }
    out.push_str(&last(&word));
    out
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
    test: Option<TensorDataset>,
    name: Option<String>,
    widths: Vec<usize>,
    activation: Option<ActivationKind>,
    config: Value,
    model_info: Value,
}

impl Learner {
    /// A run with optimizer `rule` at learning rate `lr` in an arena of
    /// `arena`'s size; 5 epochs of batches of 64, seed 0, a constant rate,
    /// no early stopping, clipping, augmentation, test set or checkpoints.
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
            test: None,
            name: None,
            widths: Vec::new(),
            activation: None,
            config: Value::Null,
            model_info: Value::Null,
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

    /// Augments training batches (never validation or test batches).
    pub fn augment(mut self, augment: Option<Compose>) -> Self {
        self.augment = augment;
        self
    }

    /// A test set, evaluated once after training with the parameters the
    /// run returns (the best epoch's when early stopping) and the step
    /// closure, as the validation set is: its [`Evaluation`] is
    /// [`Trained::test`] and goes to [`Progress::test_end`]. It takes no
    /// part in training or early stopping. Taken by value, as the training
    /// set is (clone a set you keep).
    pub fn test_set(mut self, test: TensorDataset) -> Self {
        self.test = Some(test);
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

    /// Settings of your own as JSON (the command line records its whole
    /// `TrainConfig`), stored in every checkpoint besides the learner's
    /// own ([`settings`](Self::settings), always recorded). On resume they
    /// must equal the checkpoint's, except `epochs` (a top-level key a run
    /// may raise to train longer); otherwise the resume is refused with
    /// [`CheckpointError::Settings`], which lists what differs. Without
    /// a configuration (the default) only the learner's settings are
    /// compared.
    pub fn record_config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// What the model needs at inference besides its parameters (its
    /// input scaling, class or target names, ...), as JSON: stored in
    /// every checkpoint ([`Meta::model`]) and, unlike
    /// [`record_config`](Self::record_config), not compared on resume.
    pub fn model_info(mut self, info: Value) -> Self {
        self.model_info = info;
        self
    }

    /// The settings this learner records in its checkpoints and checks a
    /// resume against: what changes the run but for the epoch count (which
    /// a resumed run may raise). One key per setting: `optimizer` (`sgd`,
    /// `adam`, `adamw`, `rmsprop`, `adagrad`) and each hyper-parameter of
    /// its rule (`momentum`, `beta1`, `weight_decay`, ...), `lr`, the
    /// schedule's ([`Schedule::settings`]: `scheduler`, `warmup`, ...),
    /// `batch`, `seed`, `clip`, `patience` and `augment` (whether batches
    /// are augmented). Names the command line's configuration shares
    /// (`lr`, `batch`, ...) are named once in a refusal.
    pub fn settings(&self) -> Value {
        let mut m = rule_settings(&self.rule);
        m.insert("lr".into(), f32_json(self.lr));
        m.extend(self.schedule.settings());
        m.insert("batch".into(), json!(self.batch));
        m.insert("seed".into(), json!(self.seed));
        m.insert("clip".into(), self.clip.map_or(Value::Null, f32_json));
        m.insert("patience".into(), json!(self.patience));
        m.insert("augment".into(), json!(self.augment.is_some()));
        Value::Object(m)
    }

    fn check_settings(&self) -> Result<(), TrainError> {
        check_run(self.batch, self.epochs, self.lr, self.clip)
    }

    /// Trains (or resumes) the model `build` makes, on `device`, and gives
    /// it back in its memory ([`Trained`]).
    ///
    /// `build` allocates and initialises the model in the run's arena (for
    /// a derived model, `Net::build`). `step` computes a mini-batch's loss:
    /// it gets the model, the graph to record on and the batch, and returns
    /// a [`StepOutput`]; the learner runs backward, clipping and the
    /// optimizer step in training, and the same closure without recording
    /// gradients on the validation set and the [test set](Self::test_set)
    /// (in order, in batches of the same size). The model is in training
    /// mode ([`Module::train`]) for the training batches and in evaluation
    /// mode for validation, testing, and when it is returned.
    ///
    /// The model returned holds the last epoch's parameters, or, with
    /// early stopping ([`patience`](Self::patience)), the best epoch's by
    /// validation loss. Its memory is the run's arena, the optimizer state
    /// freed.
    ///
    /// The graph has [`ember_nn_core::DEFAULT_NODES`] nodes; a step that
    /// records more fails with a [`TrainError::Core`] error.
    ///
    /// Errors are typed: a NaN or infinite training loss is
    /// [`TrainError::NonFiniteLoss`] naming the last checkpoint written, a
    /// checkpoint of another model or of a run with other settings a
    /// [`CheckpointError`], a run too large for the machine a
    /// [`TrainError::Memory`] before any allocation, a step that needs more
    /// than the arena given a [`TrainError::ArenaTooSmall`] that gives the
    /// size to ask for, an empty validation or test set a
    /// [`TrainError::Data`].
    pub fn fit<'d, D, M, E, BuildFn, StepFn>(
        self,
        device: &'d D,
        build: BuildFn,
        mut step: StepFn,
        train_set: TensorDataset,
        val_set: Option<&TensorDataset>,
        progress: &mut dyn Progress,
    ) -> Result<Trained<'d, D, M>, TrainError>
    where
        D: Device,
        M: Module,
        E: Into<TrainError>,
        BuildFn: FnOnce(&mut Memory<'_, D>, &mut Rng) -> Result<M, E>,
        StepFn: Step<M, D>,
    {
        self.check_settings()?;
        if val_set.is_some_and(|v| v.is_empty()) {
            return Err(TrainError::Data("the validation set is empty".into()));
        }
        if self.test.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(TrainError::Data("the test set is empty".into()));
        }
        let settings = self.settings();
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
            test,
            name,
            widths,
            activation,
            config,
            model_info,
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
        let given = ArenaGiven {
            label: arena.label(),
            floats,
        };
        let mut mem = Memory::new(device, storage.as_mut());
        let mut rng = Rng::new(seed);
        let mut model = build(&mut mem, &mut rng).map_err(Into::into)?;
        // The model's floats: what stays after training (the optimizer
        // state, allocated next, is freed then).
        let model_floats = mem.used();
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
            // Another model first (the more fundamental difference), then
            // other settings.
            let shapes = parameter_shapes(&model);
            c.check_parameters(path, &shapes)?;
            c.check_settings(path, &settings, &config)?;
            if c.meta.settings.is_null() {
                progress.note(&format!(
                    "{}: written before the Learner recorded its settings; the optimizer, learning rate, schedule, batch, seed, clipping, patience and augmentation are not checked against it{}",
                    path.display(),
                    if c.meta.config.is_null() {
                        ""
                    } else {
                        " (the configuration it records is)"
                    }
                ));
            }
            write_params(&model, &mut mem, &c.params, path)?;
            opt.load_state(&mut mem, &c.optimizer, c.meta.optimizer_steps, &c.meta.lrs)
                .map_err(|e| CheckpointError::Invalid {
                    path: path.clone(),
                    msg: format!("optimizer state does not fit this run: {e}"),
                })?;
            sched
                .restore(&c.meta.scheduler)
                .map_err(|e| CheckpointError::Invalid {
                    path: path.clone(),
                    msg: e.to_string(),
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
        let mut preds = Vec::new();
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
                let result = {
                    let g = Graph::new(&mut mem);
                    train_step(&model, &*g, &mut step, &b, &mut preds)
                };
                let (value, got) = match result {
                    Ok(r) => r,
                    Err(e) => {
                        return Err(step_error(
                            device,
                            &mem,
                            &given,
                            e,
                            "a training step",
                            n,
                            &mut |tape| {
                                train_step(&model, tape, &mut step, &b, &mut Vec::new()).map(drop)
                            },
                        ))
                    }
                };
                if !value.is_finite() {
                    return Err(TrainError::NonFiniteLoss {
                        value,
                        epoch,
                        batch: bi,
                        checkpoint: last_ckpt,
                    });
                }
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
                    let e = evaluate_in(
                        device,
                        &model,
                        &mut mem,
                        &given,
                        v,
                        batch,
                        &mut step,
                        "a validation step",
                    )?;
                    (Some(e.loss), e.accuracy())
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
                    best = Some((vl, named_state(&model, &mem)?));
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
                        settings: settings.clone(),
                        model: model_info.clone(),
                    },
                    params: named_state(&model, &mem)?,
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
        // The model returned: the best epoch's parameters when early
        // stopping, in evaluation mode, without the optimizer state.
        if let (Some(_), Some((_, p))) = (patience, &best) {
            restore_params(&model, &mut mem, p)?;
        }
        model.eval();
        drop(opt);
        let mut mem = Memory::with_used(device, storage.as_mut(), model_floats)?;
        let test = match &test {
            Some(t) => {
                let e = evaluate_in(
                    device,
                    &model,
                    &mut mem,
                    &given,
                    t,
                    batch,
                    &mut step,
                    "evaluating the test set",
                )?;
                progress.test_end(&e);
                Some(e)
            }
            None => None,
        };
        Ok(Trained {
            history,
            stopped_early,
            test,
            device,
            storage,
            model_floats,
            model,
            given,
        })
    }
}

/// The arena a run was given, for messages.
#[derive(Clone, Debug)]
struct ArenaGiven {
    /// As it was given ([`Arena::label`]).
    label: String,
    /// Its floats, as allocated.
    floats: usize,
}

/// A trained model in its memory, with what its run measured: what
/// [`Learner::fit`] returns.
///
/// The model value (`M`, a derived struct, an [`Mlp`]) holds only spans
/// into memory; the memory is the run's arena, owned here, whose first
/// [`model_floats`](Self::model_floats) floats hold the model's
/// parameters (and their gradients) and the rest is free for graphs (the
/// optimizer state is freed). [`memory`](Self::memory) and
/// [`parts`](Self::parts) give a [`Memory`] over it to run the model with;
/// [`evaluate`](Self::evaluate) and [`predict`](Self::predict) run it on a
/// data set; [`params`](Self::params) copies its parameters to the host.
pub struct Trained<'d, D: Device, M> {
    /// Per-epoch figures (those before a resume included).
    pub history: Vec<EpochMetrics>,
    /// Whether early stopping ended the run (the model then holds the
    /// best epoch's parameters).
    pub stopped_early: bool,
    /// The test set's evaluation ([`Learner::test_set`]) with the
    /// parameters returned, if the run had a test set.
    pub test: Option<Evaluation>,
    device: &'d D,
    storage: D::Storage,
    model_floats: usize,
    model: M,
    given: ArenaGiven,
}

impl<D: Device, M> std::fmt::Debug for Trained<'_, D, M> {
    /// The run's figures and the arena (not the model or its memory).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trained")
            .field("history", &self.history)
            .field("stopped_early", &self.stopped_early)
            .field("test", &self.test)
            .field("device", &self.device.name())
            .field("arena", &self.given.label)
            .field("floats", &self.given.floats)
            .field("model_floats", &self.model_floats)
            .finish_non_exhaustive()
    }
}

impl<'d, D: Device, M: Module> Trained<'d, D, M> {
    /// The model (in evaluation mode as returned).
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The device its memory is on.
    pub fn device(&self) -> &'d D {
        self.device
    }

    /// Floats at the start of the memory that the model takes (its
    /// parameters, their gradients, and anything else its `build`
    /// allocated); the rest is free.
    pub fn model_floats(&self) -> usize {
        self.model_floats
    }

    /// A [`Memory`] over the model's arena to run it with (see
    /// [`parts`](Self::parts) for the model at the same time). What is
    /// allocated through it lasts only as long as it: the next memory
    /// starts again after the model.
    pub fn memory(&mut self) -> Result<Memory<'_, D>, TrainError> {
        Ok(Memory::with_used(
            self.device,
            self.storage.as_mut(),
            self.model_floats,
        )?)
    }

    /// The model and a [`Memory`] over its arena, together: to record its
    /// forward pass on a graph of your own (`Graph::new(&mut mem)`), switch
    /// its mode, or change its parameters.
    pub fn parts(&mut self) -> Result<(&mut M, Memory<'_, D>), TrainError> {
        let mem = Memory::with_used(self.device, self.storage.as_mut(), self.model_floats)?;
        Ok((&mut self.model, mem))
    }

    /// Exports the trained model to `dir` in one call
    /// ([`export::export_files`](crate::export::export_files)): `model.emb`
    /// and `model-int8.emb` read off its forward pass and checked against
    /// it (int8 calibrated on up to `samples` rows of `calibration`), their
    /// Rust source, `model_type.rs` for a firmware and `model.safetensors`.
    /// `forward` runs the model on the probe's input, as the step closure
    /// does on a batch:
    /// `|net, p| net.forward(p.input((p.rows(), Const::<784>)))`.
    pub fn export<S, F>(
        &mut self,
        dir: &std::path::Path,
        calibration: &TensorDataset,
        samples: usize,
        forward: F,
    ) -> Result<crate::export::ExportReport, TrainError>
    where
        S: Shape,
        F: for<'t> Fn(&M, &ember_nn_core::deploy::Probe<'t, D>) -> Tensor<'t, S, D>,
    {
        self.model.eval();
        let mut mem = Memory::with_used(self.device, self.storage.as_mut(), self.model_floats)?;
        let model = &self.model;
        crate::export::export_files(
            dir,
            model,
            &mut mem,
            |p| forward(model, p),
            calibration,
            samples,
        )
        .map_err(TrainError::Export)
    }

    /// The model's state copied to the host, by name, in the model's order:
    /// its parameters, then its buffers (a batch norm's running statistics),
    /// as [`state_dict::save`](crate::state_dict::save) writes them.
    pub fn params(&self) -> Result<Vec<NamedTensor>, TrainError> {
        let buf = self.storage.as_ref();
        let mut out = Vec::new();
        for (name, shape, span) in state_spans(&self.model) {
            let mut data = vec![0.0f32; span.len];
            self.device.download(buf, span, &mut data)?;
            out.push(NamedTensor { name, shape, data });
        }
        Ok(out)
    }

    /// Evaluates the model on `data` with a step closure like
    /// [`Learner::fit`]'s (the same one serves), in batches of `batch`,
    /// in order, in evaluation mode and without recording gradients: the
    /// mean loss and, for a step that classifies, the accuracy, the
    /// accuracy per class and the confusion matrix
    /// ([`eval::evaluate`], on this model's memory). A batch that needs
    /// more memory than the arena has is a [`TrainError::ArenaTooSmall`]
    /// with the size to ask for (or use smaller batches).
    pub fn evaluate<StepFn>(
        &mut self,
        data: &TensorDataset,
        batch: usize,
        mut step: StepFn,
    ) -> Result<Evaluation, TrainError>
    where
        StepFn: Step<M, D>,
    {
        eval::check_eval(data, batch)?;
        self.model.eval();
        let mut mem = Memory::with_used(self.device, self.storage.as_mut(), self.model_floats)?;
        evaluate_in(
            self.device,
            &self.model,
            &mut mem,
            &self.given,
            data,
            batch,
            &mut step,
            "evaluating",
        )
    }

    /// Each sample's outputs on `data`: `forward` records a mini-batch's
    /// forward pass and returns its output (its first dimension the
    /// batch's samples), run in batches of `batch`, in order, in
    /// evaluation mode and without recording gradients
    /// ([`eval::predict`], on this model's memory). Errors as
    /// [`evaluate`](Self::evaluate)'s.
    pub fn predict<S, F>(
        &mut self,
        data: &TensorDataset,
        batch: usize,
        mut forward: F,
    ) -> Result<Predictions, TrainError>
    where
        S: Shape,
        F: BatchForward<M, D, S>,
    {
        eval::check_eval(data, batch)?;
        self.model.eval();
        let mut mem = Memory::with_used(self.device, self.storage.as_mut(), self.model_floats)?;
        let model = &self.model;
        match eval::run_predict(model, &mut mem, data, batch, &mut forward) {
            Ok(p) => Ok(p),
            Err(Failure::Other(e)) => Err(e),
            Err(Failure::Step { error, batch: b }) => Err(step_error(
                self.device,
                &mem,
                &self.given,
                error,
                "predicting",
                b.len(),
                &mut |tape| {
                    let prev = tape.set_grad_enabled(false);
                    let r = forward(model, tape, &b).and_then(|y| y.to_vec().map(drop));
                    tape.set_grad_enabled(prev);
                    r
                },
            )),
        }
    }

    /// Everything on the host: the history, the test set's evaluation and
    /// the parameters ([`params`](Self::params)); the device memory is
    /// freed.
    pub fn into_outcome(self) -> Result<TrainOutcome, TrainError> {
        let params = self.params()?;
        Ok(TrainOutcome {
            history: self.history,
            stopped_early: self.stopped_early,
            params,
            test: self.test,
        })
    }

    /// The model, its arena and the floats the model takes at its start:
    /// to keep them apart (`Memory::with_used(device, storage.as_mut(),
    /// floats)` runs the model again).
    pub fn into_parts(self) -> (M, D::Storage, usize) {
        (self.model, self.storage, self.model_floats)
    }
}

/// The learner's settings of an optimizer rule: its name as the command
/// line has it and each hyper-parameter by name.
fn rule_settings(rule: &Rule) -> serde_json::Map<String, Value> {
    let f = f32_json;
    let v = match *rule {
        Rule::Sgd {
            momentum,
            dampening,
            nesterov,
            weight_decay,
        } => json!({
            "optimizer": "sgd", "momentum": f(momentum), "dampening": f(dampening),
            "nesterov": nesterov, "weight_decay": f(weight_decay),
        }),
        Rule::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
            amsgrad,
        }
        | Rule::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
            amsgrad,
        } => json!({
            "optimizer": if matches!(rule, Rule::AdamW { .. }) { "adamw" } else { "adam" },
            "beta1": f(beta1), "beta2": f(beta2), "eps": f(eps),
            "weight_decay": f(weight_decay), "amsgrad": amsgrad,
        }),
        Rule::RmsProp {
            alpha,
            eps,
            weight_decay,
            momentum,
            centered,
        } => json!({
            "optimizer": "rmsprop", "alpha": f(alpha), "eps": f(eps), "weight_decay": f(weight_decay),
            "momentum": f(momentum), "centered": centered,
        }),
        Rule::Adagrad {
            lr_decay,
            weight_decay,
            eps,
            initial_accumulator,
        } => json!({
            "optimizer": "adagrad", "lr_decay": f(lr_decay), "weight_decay": f(weight_decay),
            "eps": f(eps), "initial_accumulator": f(initial_accumulator),
        }),
    };
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// Records one training step on `tape`: the step, its loss's value and,
/// when that is finite, backward and the predicted classes, counted
/// against the labels (after backward, so that they take no memory at the
/// step's peak).
fn train_step<D, M, StepFn>(
    model: &M,
    tape: &dyn Tape<D>,
    step: &mut StepFn,
    b: &MiniBatch,
    preds: &mut Vec<f32>,
) -> Result<(f32, Option<usize>), ember_nn_core::Error>
where
    D: Backend,
    StepFn: Step<M, D>,
{
    let out = step(model, tape, b)?;
    let value = out.loss.item()?;
    if !value.is_finite() {
        return Ok((value, None));
    }
    out.loss.backward()?;
    let got = match out.predict {
        Some(predict) => {
            let n = b.len();
            preds.resize(preds.len().max(n), 0.0);
            predict().read(&mut preds[..n])?;
            Some(count_correct(&preds[..n], &b.labels))
        }
        None => None,
    };
    Ok((value, got))
}

/// The evaluation loop ([`eval::run`]) on the run's memory, its errors
/// the learner's: a step out of memory is measured for the arena to ask for.
#[allow(clippy::too_many_arguments)]
fn evaluate_in<D, M, StepFn>(
    device: &D,
    model: &M,
    mem: &mut Memory<'_, D>,
    given: &ArenaGiven,
    data: &TensorDataset,
    batch: usize,
    step: &mut StepFn,
    during: &'static str,
) -> Result<Evaluation, TrainError>
where
    D: Device,
    StepFn: Step<M, D>,
{
    match eval::run(model, mem, data, batch, step) {
        Ok(e) => Ok(e),
        Err(Failure::Other(e)) => Err(e),
        Err(Failure::Step { error, batch: b }) => Err(step_error(
            device,
            mem,
            given,
            error,
            during,
            b.len(),
            &mut |tape| {
                eval::eval_step(model, tape, step, &b, &mut Vec::new(), &mut Vec::new()).map(drop)
            },
        )),
    }
}

/// A step's error as the learner's. Out of memory, the step is run again
/// by `record` in a larger trial arena to measure its graph's peak, and the
/// error says which arena to give: the floats the memory holds persistently
/// (parameters, gradients, optimizer state) plus that peak, plus whatever
/// the device keeps of an allocation for itself (its scratch).
fn step_error<D: Device>(
    device: &D,
    mem: &Memory<'_, D>,
    given: &ArenaGiven,
    error: ember_nn_core::Error,
    during: &'static str,
    batch: usize,
    record: &mut dyn FnMut(&dyn Tape<D>) -> Result<(), ember_nn_core::Error>,
) -> TrainError {
    let ember_nn_core::Error::OutOfMemory { needed, available } = error else {
        return TrainError::Core(error);
    };
    let free = mem.available();
    // The graph had taken `free - available` when it asked for `needed` more.
    let graph_at_least = free.saturating_sub(available).saturating_add(needed);
    let reserved = given.floats.saturating_sub(mem.capacity());
    let around = |graph: usize| reserved.saturating_add(mem.used()).saturating_add(graph);
    let needed = measure_peak(device, mem, graph_at_least, record).map(around);
    TrainError::ArenaTooSmall {
        arena: given.label.clone(),
        floats: given.floats,
        during,
        batch,
        needed,
        at_least: around(graph_at_least),
    }
}

/// Doublings of a trial arena's graph memory before giving up.
const TRIALS: usize = 8;

/// The graph memory a step needs at its peak: `record` records it on a
/// graph over a trial arena (a copy of `mem`'s persistent floats, then at
/// least `lower` floats for the graph), the room doubled until the step
/// fits. `None` when no trial arena the machine can give fits it, or the
/// step fails otherwise there.
fn measure_peak<D: Device>(
    device: &D,
    mem: &Memory<'_, D>,
    lower: usize,
    record: &mut dyn FnMut(&dyn Tape<D>) -> Result<(), ember_nn_core::Error>,
) -> Option<usize> {
    let used = mem.used();
    let mut persistent = vec![0.0f32; used];
    mem.read(Span::new(0, used), &mut persistent).ok()?;
    let mut graph = lower.max(mem.available().saturating_mul(2)).max(1);
    for _ in 0..TRIALS {
        let floats = used.checked_add(graph)?;
        // Leave the machine room: a trial may take at most half of what is free.
        if available_memory().is_some_and(|a| 4 * floats as u128 > u128::from(a) / 2) {
            return None;
        }
        let mut storage = device.alloc(floats).ok()?;
        let mut trial = Memory::with_used(device, storage.as_mut(), used).ok()?;
        trial.write(Span::new(0, used), &persistent).ok()?;
        let g = Graph::new(&mut trial);
        match record(&*g) {
            Ok(()) => return Some(g.peak()),
            Err(ember_nn_core::Error::OutOfMemory { .. }) => graph = graph.checked_mul(2)?,
            Err(_) => return None,
        }
    }
    None
}

/// Writes `params` (by name) into the model's parameters and buffers.
fn restore_params<M: Module, D: Backend>(
    model: &M,
    mem: &mut Memory<'_, D>,
    params: &[NamedTensor],
) -> Result<(), TrainError> {
    for (name, _, span) in state_spans(model) {
        let t = params
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| TrainError::Data(format!("the best parameters lack `{name}`")))?;
        mem.write(span, &t.data)?;
    }
    Ok(())
}

/// Each parameter's and buffer's name and shape, in visiting order.
fn parameter_shapes<M: Module>(model: &M) -> Vec<(String, Vec<usize>)> {
    state_spans(model)
        .into_iter()
        .map(|(name, shape, _)| (name, shape))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(short_type_name("learner::Net"), "Net");
        assert_eq!(
            short_type_name(
                "(ember_nn_core::nn::linear::Linear<4, 8>, ember_nn_core::nn::activation::ReLU)"
            ),
            "(Linear<4, 8>, ReLU)"
        );
        assert_eq!(
            Arena::of::<(nn::Linear<4, 8>, nn::ReLU)>(Loss::Mse).label(),
            "Arena::of::<(Linear<4, 8>, ReLU)>(Mse)"
        );
        assert_eq!(Arena::floats(12).label(), "Arena::floats(12)");
        assert_eq!(Arena::mlp(&[4, 2]).label(), "Arena::mlp(&[4, 2])");
    }
}
