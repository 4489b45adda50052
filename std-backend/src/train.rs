//! The training run behind `ember train`: an MLP on a data set, on any
//! [`Device`], trained by a [`Learner`] with cross-entropy for a classifier
//! or MSE, L1 or Huber for a regression or an autoencoder (so with
//! per-epoch checkpoints, exact resume, early stopping, and a clean stop on
//! a NaN or infinite loss); and what a data file's model keeps
//! ([`ModelInfo`]). The types every run shares ([`TrainError`],
//! [`EpochMetrics`], [`Progress`], [`Checkpointing`]) live with the
//! [`Learner`](crate::learner) and are re-exported here.

use crate::config::{ActivationKind, LossKind, OptimizerKind, SchedulerKind, TaskKind};
use crate::data::{Dataset, TensorDataset};
use crate::learner::{Arena, Learner, StepOutput, Trained};
// The types every run shares live with the Learner; here too, where they
// always were.
pub use crate::learner::{
    available_memory, write_params, Checkpointing, EpochMetrics, Progress, Quiet, TrainError,
    TrainOutcome,
};
use crate::schedule::Schedule;
use crate::state_dict::NamedTensor;
use ember_nn_core::backend::Device;
use ember_nn_core::nn::loss::{cross_entropy, huber, l1, mse, Reduction};
use ember_nn_core::nn::{Forward, Mlp, Rule};
use ember_nn_core::{Backend, Memory};
use serde::{Deserialize, Serialize};

/// Settings of a training run (also stored in each checkpoint).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Layer widths, input first (`[784, 256, 128, 10]`).
    pub widths: Vec<usize>,
    /// Hidden activation.
    pub activation: ActivationKind,
    /// The optimizer (core's defaults, with `momentum` and `weight_decay`).
    pub optimizer: OptimizerKind,
    /// Learning rate.
    pub lr: f32,
    /// SGD / RMSprop momentum.
    pub momentum: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// The learning-rate schedule.
    pub scheduler: SchedulerKind,
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
    /// Dropout probability after each hidden activation, in training only
    /// (0: none). Recorded only when not 0, so that checkpoints of runs
    /// from before the setting existed resume unchanged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropout: f32,
    /// What the model learns: classes (cross-entropy on the labels),
    /// float targets, or its input (an autoencoder); the data set's
    /// [`targets`](TensorDataset::targets) for the last two. Recorded only
    /// when not `classify` (as checkpoints before it).
    #[serde(default, skip_serializing_if = "is_default")]
    pub task: TaskKind,
    /// The loss of `regress` and `reconstruct` (recorded only when not
    /// `mse`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub loss: LossKind,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_zero(p: &f32) -> bool {
    *p == 0.0
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            widths: vec![784, 256, 128, 10],
            activation: ActivationKind::Relu,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 0.0,
            scheduler: SchedulerKind::Cosine,
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
            dropout: 0.0,
            task: TaskKind::Classify,
            loss: LossKind::Mse,
        }
    }
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
    /// The optimizer rule: core's defaults for `optimizer` with this
    /// run's momentum and weight decay.
    pub fn rule(&self) -> Rule {
        self.optimizer.rule(self.momentum, self.weight_decay)
    }

    /// The learning-rate schedule of the run.
    pub fn schedule(&self) -> Schedule {
        Schedule::new(
            self.scheduler,
            self.epochs,
            self.warmup,
            self.step_size,
            self.gamma,
        )
    }

    /// The training arena of the run's MLP (with its dropout's masks).
    pub fn arena(&self) -> Arena {
        let arena = Arena::mlp_with_dropout(&self.widths, self.dropout > 0.0);
        match self.task {
            TaskKind::Classify => arena,
            TaskKind::Regress | TaskKind::Reconstruct => arena.with_loss(self.loss.loss()),
        }
    }

    /// The widths as `784-256-10`.
    pub fn layers(&self) -> String {
        self.widths
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Checks every setting (widths, batch, epochs, learning rate,
    /// validation fraction, clipping, dropout) without
    /// touching any data: a run calls it before it loads anything.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.widths.len() < 2 || self.widths.contains(&0) {
            return Err(TrainError::Config(
                "at least two positive layer widths are needed".into(),
            ));
        }
        crate::learner::check_run(self.batch, self.epochs, self.lr, self.clip)?;
        if !(0.0..0.9).contains(&self.val_fraction) {
            return Err(TrainError::Config(
                "the validation fraction must be in [0, 0.9)".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(TrainError::Config(format!(
                "the dropout probability must be in [0, 1), got {}",
                self.dropout
            )));
        }
        Ok(())
    }
}

/// The floats of a training step's arena for `cfg`, after checking, before
/// anything is allocated, that the run fits in the memory available: a model
/// too large for the machine is a [`TrainError::Memory`] saying how much it
/// needs and how much there is, not an abort.
pub fn check_memory(cfg: &TrainConfig) -> Result<usize, TrainError> {
    cfg.arena()
        .check(cfg.batch, &cfg.rule(), Some(&cfg.layers()))
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

/// Runs (or resumes) a training run of an [`Mlp`] on `device`: one user of
/// the [`Learner`], with cross-entropy as the loss. The trained MLP comes
/// back in its memory ([`Trained`]; [`Trained::params`] copies its
/// parameters out, [`Trained::into_outcome`] everything).
#[allow(clippy::too_many_arguments)]
pub fn train<'d, D: Device>(
    device: &'d D,
    cfg: &TrainConfig,
    train_set: TensorDataset,
    val_set: Option<&TensorDataset>,
    augment: Option<crate::data::transform::Compose>,
    ckpt: &Checkpointing,
    progress: &mut dyn Progress,
) -> Result<Trained<'d, D, Mlp>, TrainError> {
    train_with_info(
        device,
        cfg,
        train_set,
        val_set,
        augment,
        ckpt,
        serde_json::Value::Null,
        progress,
    )
}

/// [`train`], with `model_info` (the input scaling, the names of the
/// classes or targets, ...) stored in every checkpoint
/// ([`Learner::model_info`]).
#[allow(clippy::too_many_arguments)]
pub fn train_with_info<'d, D: Device>(
    device: &'d D,
    cfg: &TrainConfig,
    train_set: TensorDataset,
    val_set: Option<&TensorDataset>,
    augment: Option<crate::data::transform::Compose>,
    ckpt: &Checkpointing,
    model_info: serde_json::Value,
    progress: &mut dyn Progress,
) -> Result<Trained<'d, D, Mlp>, TrainError> {
    cfg.validate()?;
    let in_features = cfg.widths[0];
    let classes = *cfg.widths.last().unwrap_or(&1);
    if train_set.feature_len() != in_features {
        return Err(TrainError::Data(format!(
            "samples have {} features but the first layer takes {in_features}",
            train_set.feature_len()
        )));
    }
    match cfg.task {
        TaskKind::Classify if train_set.num_classes() > classes => {
            return Err(TrainError::Data(format!(
                "the data has {} classes but the last layer has {classes} outputs",
                train_set.num_classes()
            )))
        }
        TaskKind::Regress | TaskKind::Reconstruct if train_set.target_len() != classes => {
            return Err(TrainError::Data(format!(
                "the data has {} target(s) per sample but the last layer has {classes} outputs",
                train_set.target_len()
            )))
        }
        _ => {}
    }
    if cfg.task == TaskKind::Reconstruct && classes != in_features {
        return Err(TrainError::Data(format!(
            "an autoencoder's output is its input: {in_features} features in, {classes} out"
        )));
    }
    let learner = Learner::new(cfg.rule(), cfg.lr, cfg.arena())
        .schedule(cfg.schedule())
        .epochs(cfg.epochs)
        .batch(cfg.batch)
        .seed(cfg.seed)
        .patience(cfg.patience)
        .clip(cfg.clip)
        .checkpointing(ckpt.clone())
        .augment(augment)
        .name(cfg.layers())
        .mlp_architecture(&cfg.widths, cfg.activation)
        .record_config(serde_json::to_value(cfg).unwrap_or_default())
        .model_info(model_info);
    let (widths, act) = (&cfg.widths, cfg.activation.activation());
    let (dropout, seed, task, loss_kind) = (cfg.dropout, cfg.seed, cfg.task, cfg.loss);
    learner.fit(
        device,
        |mem, rng| -> Result<Mlp, TrainError> {
            let model = Mlp::new(mem, rng, widths, act)?.with_dropout(dropout, seed)?;
            if model.nodes() + 16 > ember_nn_core::DEFAULT_NODES {
                return Err(TrainError::Config(
                    "too many layers for the graph's node table".into(),
                ));
            }
            Ok(model)
        },
        |model: &Mlp, g, batch| {
            // The masks come from the run's seed and the batch's samples
            // (which the loader's restored state reproduces), so that a
            // resumed run draws the masks an uninterrupted one would.
            model.seed_dropout(batch_seed(seed, batch));
            let x = g.from_slice((batch.len(), in_features), &batch.features);
            let y = model.forward(x);
            if task == TaskKind::Classify {
                let loss = cross_entropy(y, &batch.labels, Reduction::Mean);
                return Ok(StepOutput::classified(loss, y));
            }
            let target = g.from_slice((batch.len(), classes), &batch.targets);
            Ok(StepOutput::regressed(
                regression_loss(loss_kind, y, target),
                y,
            ))
        },
        train_set,
        val_set,
        progress,
    )
}

/// A seed for a training step's dropout masks: the run's `seed` mixed
/// with the batch's number and its samples' indices (SplitMix64 steps).
/// What a model trained on a data file needs at inference besides its
/// parameters: stored in its checkpoints ([`Meta::model`](crate::checkpoint::Meta::model))
/// and in its safetensors file's metadata (key [`ModelInfo::KEY`], as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// What the model does.
    pub task: TaskKind,
    /// The feature columns' names, in the model's input order.
    pub features: Vec<String>,
    /// The target columns' names (one for a classifier, none for an
    /// autoencoder).
    #[serde(default)]
    pub targets: Vec<String>,
    /// The classes' names (classify), the target columns' (regress), or
    /// the features' again (reconstruct): one per output.
    pub outputs: Vec<String>,
    /// The input scaling the model was trained behind, fitted on its
    /// training split; folded into the first layer of the `.emb` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaler: Option<crate::data::scale::Scaler>,
    /// A regression's target scaling: the model is trained on scaled
    /// targets and its last layer, in the `.emb` files, gives them back in
    /// their units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_scaler: Option<crate::data::scale::Scaler>,
    /// An autoencoder's anomaly threshold: a row whose score (the mean
    /// squared reconstruction error, in the scaled space) is above it is
    /// an anomaly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// The quantile of the validation split's scores the threshold is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f32>,
}

impl ModelInfo {
    /// The safetensors metadata key it is stored under.
    pub const KEY: &'static str = "ember.model";

    /// An MLP of `layers` `Linear` layers' parameters with the input
    /// scaling folded into its first layer (`0.weight`, `0.bias`), so that
    /// the model takes raw features, and a target scaling undone in its
    /// last; unchanged without scaling. The f32 `.emb` file's parameters.
    pub fn fold(
        &self,
        params: &[NamedTensor],
        layers: usize,
    ) -> Result<Vec<NamedTensor>, TrainError> {
        let mut out = self.fold_outputs(params, layers)?;
        if let Some(s) = self.input_step_scaler() {
            out = s
                .fold(&out, "0.weight", "0.bias")
                .ok_or_else(|| misfit("input"))?;
        }
        Ok(out)
    }

    /// [`fold`](Self::fold) without the input scaling: the parameters of
    /// the int8 `.emb` file, which standardizes its raw inputs with
    /// [`input_step`](Self::input_step) before quantizing them (one
    /// quantization step cannot serve raw features of any magnitude).
    pub fn fold_outputs(
        &self,
        params: &[NamedTensor],
        layers: usize,
    ) -> Result<Vec<NamedTensor>, TrainError> {
        let mut out = params.to_vec();
        if let Some(s) = self.target_scaler.as_ref().filter(|s| !s.is_identity()) {
            let last = 2 * layers.saturating_sub(1);
            out = s
                .unfold_outputs(&out, &format!("{last}.weight"), &format!("{last}.bias"))
                .ok_or_else(|| misfit("target"))?;
        }
        Ok(out)
    }

    /// The input scaling as the int8 file's input step, if there is one
    /// that changes anything.
    pub fn input_step(&self) -> Option<ember_nn_core::deploy::InputStep<'_>> {
        self.input_step_scaler()
            .map(|s| ember_nn_core::deploy::InputStep {
                offset: &s.offset,
                scale: &s.scale,
            })
    }

    fn input_step_scaler(&self) -> Option<&crate::data::scale::Scaler> {
        self.scaler.as_ref().filter(|s| !s.is_identity())
    }

    /// The anomaly score of each row of an autoencoder: the mean squared
    /// difference between its `outputs` (the reconstruction, in the scaled
    /// space the model was trained in) and its raw `features` scaled.
    pub fn scores(&self, features: &[f32], outputs: &[f32]) -> Vec<f32> {
        let d = self.features.len().max(1);
        let mut scaled = features.to_vec();
        if let Some(s) = &self.scaler {
            s.apply(&mut scaled);
        }
        scaled
            .chunks(d)
            .zip(outputs.chunks(d))
            .map(|(x, y)| {
                let sum: f64 = x
                    .iter()
                    .zip(y)
                    .map(|(a, b)| f64::from(a - b) * f64::from(a - b))
                    .sum();
                (sum / d as f64) as f32
            })
            .collect()
    }

    /// `table`'s rows as this model's data set, its feature columns found
    /// by name: with their classes (in the model's order) for a
    /// classifier, their targets for a regression, the features again for
    /// an autoencoder. The features stay raw, as the exported model takes
    /// them. What `ember eval --data` evaluates, and what the firmware's
    /// held-out rows are made from (`cargo xtask test-rows`).
    pub fn rows(&self, table: &crate::data::table::Table) -> crate::data::Result<TensorDataset> {
        use crate::data::table::{Classified, Column, LabelKind, Regressed};
        use crate::data::DataError;
        let d = self.features.len();
        let target = || -> crate::data::Result<String> {
            self.targets
                .first()
                .cloned()
                .ok_or_else(|| DataError::Invalid("the model names no target column".into()))
        };
        match self.task {
            TaskKind::Classify => {
                let kind = if self.outputs == ["false", "true"] {
                    LabelKind::Bools
                } else if self.outputs.iter().all(|o| o.parse::<i64>().is_ok()) {
                    LabelKind::Integers
                } else {
                    LabelKind::Strings
                };
                let dataset = TensorDataset::new(Vec::new(), Vec::new(), d, self.outputs.len())?
                    .with_class_names(self.outputs.clone())?;
                table.classify_like(&Classified {
                    dataset,
                    target: 0,
                    target_name: target()?,
                    features: (0..d).collect(),
                    feature_names: self.features.clone(),
                    kind,
                    by_name: true,
                })
            }
            TaskKind::Regress => table.regress_like(&Regressed {
                dataset: TensorDataset::new(Vec::new(), Vec::new(), d, 1)?,
                targets: (0..self.targets.len()).collect(),
                target_names: self.targets.clone(),
                features: (0..d).collect(),
                feature_names: self.features.clone(),
                by_name: true,
            }),
            TaskKind::Reconstruct => {
                let cols: Vec<Column> = self
                    .features
                    .iter()
                    .map(|f| Column::name(f.as_str()))
                    .collect();
                table.reconstruct(Some(&cols)).map(|r| r.dataset)
            }
        }
    }
}

/// The error of a scaling whose width is not the model's.
fn misfit(what: &str) -> TrainError {
    TrainError::Data(format!(
        "the {what} scaling does not fit the model's layers"
    ))
}

/// The `q` quantile of `values` (linear between the closest ranks, as
/// NumPy's default): `None` when there are none or `q` is not in [0, 1].
pub fn quantile(values: &[f32], q: f32) -> Option<f32> {
    if values.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    let pos = f64::from(q) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let t = (pos - lo as f64) as f32;
    Some(v[lo] + (v[hi] - v[lo]) * t)
}

/// The mean of `loss` over the elements of `pred` against `target` (Huber
/// with delta 1, PyTorch's default).
pub fn regression_loss<'t, S: ember_nn_core::Shape, B: Backend>(
    loss: LossKind,
    pred: ember_nn_core::Tensor<'t, S, B>,
    target: ember_nn_core::Tensor<'t, S, B>,
) -> ember_nn_core::Tensor<'t, (), B> {
    match loss {
        LossKind::Mse => mse(pred, target, Reduction::Mean),
        LossKind::L1 => l1(pred, target, Reduction::Mean),
        LossKind::Huber => huber(pred, target, 1.0, Reduction::Mean),
    }
}

fn batch_seed(seed: u64, batch: &crate::data::MiniBatch) -> u64 {
    let mix = |h: u64, v: u64| {
        let mut z = (h ^ v).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let h = mix(seed ^ 0xD80D_0D80, batch.index as u64);
    batch.indices.iter().fold(h, |h, &i| mix(h, i as u64))
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

/// Evaluates an [`Mlp`] on `data` in batches with cross-entropy, recording
/// nothing for backward: [`eval::evaluate`](crate::eval::evaluate) with
/// the step of [`train`] (which gives the accuracy per class and the
/// confusion matrix too). The model is left in evaluation mode.
pub fn evaluate<D: Backend>(
    model: &mut Mlp,
    mem: &mut Memory<'_, D>,
    data: &TensorDataset,
    batch: usize,
) -> Result<EvalResult, TrainError> {
    let d = data.feature_len();
    let e = crate::eval::evaluate(model, mem, data, batch, |model: &Mlp, g, b| {
        let logits = model.forward(g.from_slice((b.len(), d), &b.features));
        let loss = cross_entropy(logits, &b.labels, Reduction::Mean);
        Ok(StepOutput::classified(loss, logits))
    })?;
    let c = e
        .classification
        .ok_or_else(|| TrainError::Data("the evaluation classified nothing".into()))?;
    Ok(EvalResult {
        loss: e.loss,
        accuracy: c.accuracy,
        predictions: c.predictions,
    })
}
