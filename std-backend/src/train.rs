//! The training run behind `ember train`: an MLP on a classification data
//! set, on any [`Device`], with per-epoch checkpoints, exact resume, early
//! stopping, and a clean stop on a NaN or infinite loss.

use crate::checkpoint::{Checkpoint, CheckpointError, Meta};
use crate::data::{DataLoader, Dataset, MiniBatch, TensorDataset};
use crate::state_dict::{named_tensors, NamedTensor};
use ember_core::backend::Device;
use ember_core::deploy::Activation;
use ember_core::nn::loss::{cross_entropy, Reduction};
use ember_core::nn::optim::clip_grad_norm;
use ember_core::nn::sched::{
    CosineAnnealingLR, ExponentialLR, LrScheduler, PlateauMode, ReduceLROnPlateau, StepLR,
};
use ember_core::nn::{Forward, Mlp, Module, Optimizer, Rule};
use ember_core::{Graph, Memory, Rng};
use serde::{Deserialize, Serialize};
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
    Core(#[from] ember_core::Error),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The data set does not fit the model.
    #[error("data: {0}")]
    Data(String),
    /// The run needs more memory than the machine has (checked before
    /// anything is allocated).
    #[error("{0}")]
    Memory(String),
}

/// Settings of a training run (also stored in each checkpoint).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Layer widths, input first (`[784, 256, 128, 10]`).
    pub widths: Vec<usize>,
    /// Hidden activation: relu, tanh, sigmoid, leaky_relu, elu, selu, silu, gelu, gelu_tanh, softsign, softplus.
    pub activation: String,
    /// sgd, adam, adamw, rmsprop or adagrad.
    pub optimizer: String,
    /// Learning rate.
    pub lr: f32,
    /// SGD / RMSprop momentum.
    pub momentum: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// none, step, exponential, cosine or plateau.
    pub scheduler: String,
    /// StepLR period.
    pub step_size: usize,
    /// Decay factor (step, exponential, plateau).
    pub gamma: f32,
    /// Epochs of linear warmup before the schedule.
    pub warmup: usize,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Augment training images (shifts, rotations, flips, noise).
    pub augment: bool,
    /// Fraction of the training set held out for validation (0 for none).
    pub val_fraction: f32,
    /// Stop after this many epochs without a better validation loss.
    pub patience: Option<usize>,
    /// Clip gradients to this global norm.
    pub clip: Option<f32>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            widths: vec![784, 256, 128, 10],
            activation: "relu".into(),
            optimizer: "adam".into(),
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 0.0,
            scheduler: "cosine".into(),
            step_size: 5,
            gamma: 0.5,
            warmup: 0,
            epochs: 5,
            batch: 64,
            seed: 0,
            augment: false,
            val_fraction: 0.1,
            patience: None,
            clip: None,
        }
    }
}

/// Parses an activation name.
pub fn parse_activation(name: &str) -> Result<Activation, TrainError> {
    Ok(match name {
        "relu" => Activation::Relu,
        "tanh" => Activation::Tanh,
        "sigmoid" => Activation::Sigmoid,
        "leaky_relu" => Activation::LeakyRelu(0.01),
        "elu" => Activation::Elu(1.0),
        "selu" => Activation::Selu,
        "silu" => Activation::Silu,
        "gelu" => Activation::Gelu,
        "gelu_tanh" => Activation::GeluTanh,
        "softsign" => Activation::Softsign,
        "softplus" => Activation::Softplus,
        other => return Err(TrainError::Config(format!("unknown activation `{other}`"))),
    })
}

/// Parses `784-256-128-10`.
pub fn parse_widths(s: &str) -> Result<Vec<usize>, TrainError> {
    let w: Result<Vec<usize>, _> = s.split('-').map(|p| p.trim().parse::<usize>()).collect();
    match w {
        Ok(w) if w.len() >= 2 && w.iter().all(|&x| x > 0) => Ok(w),
        _ => Err(TrainError::Config(format!(
            "layer sizes must look like 784-256-10 (at least two positive widths), got `{s}`"
        ))),
    }
}

impl TrainConfig {
    /// The optimizer rule.
    pub fn rule(&self) -> Result<Rule, TrainError> {
        let wd = self.weight_decay;
        Ok(match self.optimizer.as_str() {
            "sgd" => Rule::Sgd {
                momentum: self.momentum,
                dampening: 0.0,
                nesterov: false,
                weight_decay: wd,
            },
            "adam" => Rule::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: wd,
                amsgrad: false,
            },
            "adamw" => Rule::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: if wd == 0.0 { 0.01 } else { wd },
                amsgrad: false,
            },
            "rmsprop" => Rule::RmsProp {
                alpha: 0.99,
                eps: 1e-8,
                weight_decay: wd,
                momentum: self.momentum,
                centered: false,
            },
            "adagrad" => Rule::Adagrad {
                lr_decay: 0.0,
                weight_decay: wd,
                eps: 1e-10,
                initial_accumulator: 0.0,
            },
            other => return Err(TrainError::Config(format!("unknown optimizer `{other}`"))),
        })
    }

    /// Checks every setting (widths, batch, epochs, learning rate,
    /// validation fraction, activation, optimizer, scheduler) without
    /// touching any data: a run calls it before it loads anything.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.widths.len() < 2 || self.widths.contains(&0) {
            return Err(TrainError::Config(
                "at least two positive layer widths are needed".into(),
            ));
        }
        if self.batch == 0 || self.epochs == 0 {
            return Err(TrainError::Config(
                "batch and epochs must be positive".into(),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(TrainError::Config(
                "the learning rate must be positive".into(),
            ));
        }
        if !(0.0..0.9).contains(&self.val_fraction) {
            return Err(TrainError::Config(
                "the validation fraction must be in [0, 0.9)".into(),
            ));
        }
        parse_activation(&self.activation)?;
        self.rule()?;
        Schedule::new(self)?;
        Ok(())
    }
}

/// Bytes of memory that new allocations can have now (Linux's
/// `MemAvailable` in `/proc/meminfo`), if the system says.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes a training run of `cfg` holds at once: the training arena
/// ([`Mlp::train_floats_for`]: parameters, gradients, optimizer state, a
/// batch's graph), and the copies of the parameters and optimizer state that
/// a checkpoint and the best model take. `None` when the arena's count
/// overflows a `usize` (no machine has that memory).
fn run_bytes(cfg: &TrainConfig, planes: usize) -> Option<u128> {
    let arena = Mlp::train_floats_for(&cfg.widths, cfg.batch, planes)?;
    let params: u128 = cfg
        .widths
        .windows(2)
        .map(|p| p[0] as u128 * p[1] as u128 + p[1] as u128)
        .sum();
    Some(4 * (arena as u128 + params * (2 + planes as u128)))
}

fn gib(bytes: u128) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// "this model needs N GiB for training at batch B; M GiB are available".
fn memory_message(cfg: &TrainConfig, available: Option<u64>) -> String {
    let planes = cfg.rule().map_or(2, |r| r.state_planes());
    let needed = match run_bytes(cfg, planes) {
        Some(b) => format!("{:.1} GiB", gib(b)),
        None => "more memory than an address space holds".to_string(),
    };
    let model = cfg
        .widths
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("-");
    match available {
        Some(a) => format!(
            "this model ({model}) needs {needed} for training at batch {}; {:.1} GiB are available",
            cfg.batch,
            gib(u128::from(a))
        ),
        None => format!(
            "this model ({model}) needs {needed} for training at batch {}, and the machine could not provide it",
            cfg.batch
        ),
    }
}

/// The floats of a training step's arena for `cfg`, after checking, before
/// anything is allocated, that the run fits in the memory available: a model
/// too large for the machine is a [`TrainError::Memory`] saying how much it
/// needs and how much there is, not an abort.
pub fn check_memory(cfg: &TrainConfig) -> Result<usize, TrainError> {
    let planes = cfg.rule()?.state_planes();
    let available = available_memory();
    let floats = Mlp::train_floats_for(&cfg.widths, cfg.batch, planes);
    let fits = match (run_bytes(cfg, planes), available) {
        (Some(need), Some(a)) => need <= u128::from(a),
        (need, None) => need.is_some(),
        (None, Some(_)) => false,
    };
    match floats {
        Some(f) if fits => Ok(f),
        _ => Err(TrainError::Memory(memory_message(cfg, available))),
    }
}

/// The learning-rate schedule of a run, with its state.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    kind: Kind,
    warmup: usize,
    epoch: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    None,
    Step(StepLR),
    Exponential(ExponentialLR),
    Cosine(CosineAnnealingLR),
    Plateau(ReduceLROnPlateau),
}

impl Schedule {
    /// The schedule `cfg` names.
    pub fn new(cfg: &TrainConfig) -> Result<Self, TrainError> {
        let after = cfg.epochs.saturating_sub(cfg.warmup).max(1);
        let kind = match cfg.scheduler.as_str() {
            "none" => Kind::None,
            "step" => Kind::Step(StepLR::new(cfg.step_size, cfg.gamma)),
            "exponential" => Kind::Exponential(ExponentialLR::new(cfg.gamma)),
            "cosine" => Kind::Cosine(CosineAnnealingLR::new(after, 0.0)),
            "plateau" => Kind::Plateau(ReduceLROnPlateau::new(
                PlateauMode::Min,
                cfg.gamma.min(0.99),
                2,
                1e-4,
            )),
            other => return Err(TrainError::Config(format!("unknown scheduler `{other}`"))),
        };
        Ok(Schedule {
            kind,
            warmup: cfg.warmup,
            epoch: 0,
        })
    }

    /// Ends an epoch whose validation (or training) loss was `metric`.
    pub fn step(&mut self, metric: f32) {
        if self.epoch >= self.warmup {
            match &mut self.kind {
                Kind::None => {}
                Kind::Step(s) => s.step(),
                Kind::Exponential(s) => s.step(),
                Kind::Cosine(s) => s.step(),
                Kind::Plateau(s) => s.step_with(metric),
            }
        }
        self.epoch += 1;
    }

    /// The rate now for a base rate.
    pub fn lr(&self, base: f32) -> f32 {
        if self.epoch < self.warmup {
            return base * (self.epoch + 1) as f32 / (self.warmup + 1) as f32;
        }
        match &self.kind {
            Kind::None => base,
            Kind::Step(s) => s.lr(base),
            Kind::Exponential(s) => s.lr(base),
            Kind::Cosine(s) => s.lr(base),
            Kind::Plateau(s) => s.lr(base),
        }
    }

    /// The state as JSON, for checkpoints.
    pub fn state(&self) -> serde_json::Value {
        let inner = match &self.kind {
            Kind::None => serde_json::json!({}),
            Kind::Step(s) => serde_json::json!({ "epoch": s.epoch }),
            Kind::Exponential(s) => serde_json::json!({ "epoch": s.epoch }),
            Kind::Cosine(s) => serde_json::json!({ "epoch": s.epoch }),
            Kind::Plateau(s) => serde_json::json!({
                "best": s.best, "bad_epochs": s.bad_epochs, "cooldown_left": s.cooldown_left, "scale": s.scale
            }),
        };
        serde_json::json!({ "epoch": self.epoch, "inner": inner })
    }

    /// Restores a state saved by [`state`](Self::state).
    pub fn restore(&mut self, v: &serde_json::Value) -> Result<(), String> {
        let get_u =
            |o: &serde_json::Value, k: &str| o.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
        let get_f =
            |o: &serde_json::Value, k: &str| o.get(k).and_then(|x| x.as_f64()).map(|x| x as f32);
        self.epoch = get_u(v, "epoch").ok_or("scheduler epoch missing")?;
        let inner = v.get("inner").ok_or("scheduler state missing")?;
        match &mut self.kind {
            Kind::None => {}
            Kind::Step(s) => s.epoch = get_u(inner, "epoch").ok_or("scheduler epoch missing")?,
            Kind::Exponential(s) => {
                s.epoch = get_u(inner, "epoch").ok_or("scheduler epoch missing")?
            }
            Kind::Cosine(s) => s.epoch = get_u(inner, "epoch").ok_or("scheduler epoch missing")?,
            Kind::Plateau(s) => {
                // `best` is +inf before any metric; JSON stores that as null.
                s.best = get_f(inner, "best").unwrap_or(f32::INFINITY);
                s.bad_epochs = get_u(inner, "bad_epochs").ok_or("plateau state missing")?;
                s.cooldown_left = get_u(inner, "cooldown_left").ok_or("plateau state missing")?;
                s.scale = get_f(inner, "scale").ok_or("plateau state missing")?;
            }
        }
        Ok(())
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f32,
    /// Training accuracy.
    pub train_acc: f32,
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

/// What a run produced.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Per-epoch figures.
    pub history: Vec<EpochMetrics>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Final parameters (the best by validation loss when early stopping is on).
    pub params: Vec<NamedTensor>,
}

/// Hooks for progress reporting.
pub trait Progress {
    /// An epoch starts, with this many batches.
    fn epoch_start(&mut self, epoch: usize, batches: usize);
    /// A batch ended.
    fn batch(&mut self, done: usize, loss: f32, acc: f32, samples_per_sec: f32);
    /// An epoch ended.
    fn epoch_end(&mut self, m: &EpochMetrics);
}

/// Progress that reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn epoch_start(&mut self, _: usize, _: usize) {}
    fn batch(&mut self, _: usize, _: f32, _: f32, _: f32) {}
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

/// Splits off the last `fraction` of `data` as a validation set.
pub fn split_validation(
    data: TensorDataset,
    fraction: f32,
) -> (TensorDataset, Option<TensorDataset>) {
    let n = data.len();
    let v = ((n as f32) * fraction).round() as usize;
    if v == 0 || v >= n {
        return (data, None);
    }
    let (train, val) = data.split_at(n - v);
    (train, Some(val))
}

/// Runs (or resumes) a training run on `device`.
#[allow(clippy::too_many_arguments)]
pub fn train<D: Device>(
    device: &D,
    cfg: &TrainConfig,
    train_set: TensorDataset,
    val_set: Option<&TensorDataset>,
    augment: Option<crate::data::transform::Compose>,
    ckpt: &Checkpointing,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome, TrainError> {
    cfg.validate()?;
    let in_features = cfg.widths[0];
    let classes = *cfg.widths.last().unwrap_or(&1);
    if train_set.feature_len() != in_features {
        return Err(TrainError::Data(format!(
            "samples have {} features but the first layer takes {in_features}",
            train_set.feature_len()
        )));
    }
    if train_set.num_classes() > classes {
        return Err(TrainError::Data(format!(
            "the data has {} classes but the last layer has {classes} outputs",
            train_set.num_classes()
        )));
    }
    let act = parse_activation(&cfg.activation)?;
    let rule = cfg.rule()?;

    // Memory: size it from the widths, refuse what the machine cannot hold,
    // then build everything in it.
    let floats = check_memory(cfg)?;
    let mut storage = device
        .alloc(floats)
        .map_err(|_| TrainError::Memory(memory_message(cfg, available_memory())))?;
    let mut mem = Memory::new(device, storage.as_mut());
    let mut rng = Rng::new(cfg.seed);
    let model = Mlp::new(&mut mem, &mut rng, &cfg.widths, act)?;
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, rule, cfg.lr)?;
    let mut sched = Schedule::new(cfg)?;

    let mut loader = DataLoader::new(train_set, cfg.batch)
        .shuffle(true)
        .seed(cfg.seed ^ 0x5EED);
    if let Some(a) = augment {
        loader = loader.augment(a);
    }

    let mut history = Vec::new();
    let mut best: Option<(f32, Vec<NamedTensor>)> = None;
    let mut bad_epochs = 0;
    let mut start = 1;
    if let Some(path) = &ckpt.resume {
        let c = Checkpoint::load(path)?;
        c.check_architecture(path, &cfg.widths, &cfg.activation)?;
        write_params(&model, &mut mem, &c.params, path)?;
        let lrs = c.meta.lrs.clone();
        opt.load_state(&mut mem, &c.optimizer, c.meta.optimizer_steps, &lrs)
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
        loader.set_state(crate::data::LoaderState {
            rng: c.meta.loader_rng,
            epoch: c.meta.loader_epoch,
        });
        history = c.meta.history.clone();
        bad_epochs = c.meta.bad_epochs;
        if let Some(b) = c.meta.best_val_loss {
            best = Some((b, c.params.clone()));
        }
        start = c.meta.epoch + 1;
    }

    // A run killed while writing its checkpoint left a temporary file: the
    // checkpoint itself is whole (the write is atomic); the leftover goes.
    if let Some(path) = &ckpt.path {
        crate::atomic::remove_stale_temporaries(path).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
    }
    let mut last_ckpt: Option<PathBuf> = ckpt.resume.clone();
    let mut stopped_early = false;
    let nodes_ok = model.nodes() + 16 <= ember_core::DEFAULT_NODES;
    if !nodes_ok {
        return Err(TrainError::Config(
            "too many layers for the graph's node table".into(),
        ));
    }
    for epoch in start..=cfg.epochs {
        let t0 = Instant::now();
        let lr = opt.lr();
        loader.set_training(true);
        progress.epoch_start(epoch, loader.len());
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut preds = vec![0.0f32; cfg.batch];
        for (bi, batch) in loader.iter().enumerate() {
            let n = batch.len();
            opt.zero_grad(&mut mem)?;
            let loss = {
                let g = Graph::new(&mut mem);
                let x = g.from_slice((n, in_features), &batch.features);
                let logits = model.forward(x);
                let loss = cross_entropy(logits, &batch.labels, Reduction::Mean);
                let value = loss.item()?;
                if !value.is_finite() {
                    return Err(TrainError::NonFiniteLoss {
                        value,
                        epoch,
                        batch: bi,
                        checkpoint: last_ckpt,
                    });
                }
                loss.backward()?;
                logits.argmax_axis::<1>().read(&mut preds[..n])?;
                value
            };
            if let Some(c) = cfg.clip {
                clip_grad_norm(&mut mem, &model, c)?;
            }
            opt.step(&mut mem)?;
            loss_sum += f64::from(loss) * n as f64;
            correct += count_correct(&preds[..n], &batch);
            seen += n;
            let secs = t0.elapsed().as_secs_f32().max(1e-6);
            progress.batch(
                bi + 1,
                (loss_sum / seen as f64) as f32,
                correct as f32 / seen as f32,
                seen as f32 / secs,
            );
        }
        let train_secs = t0.elapsed().as_secs_f32();
        let (val_loss, val_acc) = match val_set {
            Some(v) => {
                let r = evaluate(&model, &mut mem, v, cfg.batch)?;
                (Some(r.loss), Some(r.accuracy))
            }
            None => (None, None),
        };
        let m = EpochMetrics {
            epoch,
            train_loss: (loss_sum / seen.max(1) as f64) as f32,
            train_acc: correct as f32 / seen.max(1) as f32,
            val_loss,
            val_acc,
            lr,
            samples_per_sec: seen as f32 / train_secs.max(1e-6),
            seconds: t0.elapsed().as_secs_f32(),
        };
        progress.epoch_end(&m);
        sched.step(val_loss.unwrap_or(m.train_loss));
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
                    widths: cfg.widths.clone(),
                    activation: cfg.activation.clone(),
                    epoch,
                    optimizer_steps: opt.steps(),
                    lrs: opt.groups().iter().map(|g| g.lr).collect(),
                    scheduler: sched.state(),
                    loader_rng: ls.rng,
                    loader_epoch: ls.epoch,
                    best_val_loss: best.as_ref().map(|b| b.0),
                    bad_epochs,
                    history: history.clone(),
                    config: serde_json::to_value(cfg).unwrap_or_default(),
                },
                params: named_tensors(&model, &mem)?,
                optimizer: state,
            };
            c.save(path)?;
            last_ckpt = Some(path.clone());
        }
        if cfg.patience.is_some_and(|p| bad_epochs >= p) {
            stopped_early = true;
            break;
        }
        if ckpt.stop_after == Some(epoch) {
            break;
        }
    }
    let params = match (cfg.patience, best) {
        (Some(_), Some((_, p))) => p,
        _ => named_tensors(&model, &mem)?,
    };
    Ok(TrainOutcome {
        history,
        stopped_early,
        params,
    })
}

fn count_correct(preds: &[f32], batch: &MiniBatch) -> usize {
    preds
        .iter()
        .zip(&batch.labels)
        .filter(|(p, y)| **p as usize == **y)
        .count()
}

/// Writes named parameters into `model`'s memory (names and shapes must match).
pub fn write_params<M: Module, D: Device>(
    model: &M,
    mem: &mut Memory<'_, D>,
    params: &[NamedTensor],
    path: &Path,
) -> Result<(), CheckpointError> {
    let mut spans = Vec::new();
    model.named_parameters(&mut |p| {
        spans.push((
            p.name.to_string(),
            p.dims.as_slice().to_vec(),
            p.param.value,
        ))
    });
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
    for ((name, shape, span), t) in spans.iter().zip(params) {
        if *name != t.name || *shape != t.shape {
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

/// Loss, accuracy and predictions of a model on a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalResult {
    /// Mean cross-entropy.
    pub loss: f32,
    /// Fraction correct.
    pub accuracy: f32,
    /// Predicted class of each sample.
    pub predictions: Vec<usize>,
}

/// Evaluates `model` on `data` in batches, recording nothing for backward.
pub fn evaluate<D: Device>(
    model: &Mlp,
    mem: &mut Memory<'_, D>,
    data: &TensorDataset,
    batch: usize,
) -> Result<EvalResult, TrainError> {
    let d = data.feature_len();
    let (feats, labels) = (data.features(), data.labels());
    let mut predictions = Vec::with_capacity(labels.len());
    let mut loss_sum = 0.0f64;
    let mut preds = vec![0.0f32; batch];
    for (c, ys) in labels.chunks(batch.max(1)).enumerate() {
        let n = ys.len();
        let start = c * batch;
        let g = Graph::new(mem);
        let loss = g.no_grad(|| {
            let x = g.from_slice((n, d), &feats[start * d..(start + n) * d]);
            let logits = model.forward(x);
            logits.argmax_axis::<1>().read(&mut preds[..n])?;
            cross_entropy(logits, ys, Reduction::Sum).item()
        })?;
        loss_sum += f64::from(loss);
        predictions.extend(preds[..n].iter().map(|&p| p as usize));
    }
    let correct = predictions
        .iter()
        .zip(labels)
        .filter(|(p, y)| p == y)
        .count();
    Ok(EvalResult {
        loss: (loss_sum / labels.len().max(1) as f64) as f32,
        accuracy: correct as f32 / labels.len().max(1) as f32,
        predictions,
    })
}
