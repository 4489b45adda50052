//! Training checkpoints: model, optimizer, scheduler, data-loader RNG and
//! epoch in one safetensors file, with a CRC over the tensor data, written
//! atomically. A checkpoint restores a run bit for bit.

use crate::atomic::write_atomic;
use crate::config::ActivationKind;
use crate::state_dict::{self, NamedTensor};
use safetensors::tensor::SafeTensors;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a checkpoint could not be written or read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a checkpoint, or a damaged one.
    #[error("{path}: not a valid Ember checkpoint: {msg}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A checkpoint of another architecture (an MLP's widths or activation).
    #[error("{path}: checkpoint is for a {found} model, this run builds {expected}")]
    Architecture {
        /// The file.
        path: PathBuf,
        /// This run's architecture.
        expected: String,
        /// The checkpoint's.
        found: String,
    },
    /// A checkpoint whose parameters are not the model's: a name missing on
    /// either side, or a shape that differs.
    #[error("{path}: checkpoint is for another architecture: tensor `{name}` is {} in the checkpoint, {} in this model", shape_text(.found), shape_text(.expected))]
    Parameters {
        /// The file.
        path: PathBuf,
        /// The first tensor that differs.
        name: String,
        /// Its shape in the model (`None`: the model has no such parameter).
        expected: Option<Vec<usize>>,
        /// Its shape in the checkpoint (`None`: the checkpoint lacks it).
        found: Option<Vec<usize>>,
    },
    /// A checkpoint of a run with other settings: the settings the
    /// [`Learner`](crate::learner::Learner) recorded (optimizer and its
    /// hyper-parameters, learning rate, schedule, batch, seed, clipping,
    /// patience, augmentation), or the configuration recorded with
    /// [`Learner::record_config`](crate::learner::Learner::record_config),
    /// differ from this run's in more than the epoch count.
    #[error("{path}: the checkpoint is of a run with other settings ({}); resume with that run's settings (only the number of epochs may change), or start a new run", .differences.join("; "))]
    Settings {
        /// The file.
        path: PathBuf,
        /// Each setting that differs: `lr: 0.001 in the checkpoint, 0.1 now`.
        differences: Vec<String>,
    },
}

/// The settings in which two recorded configurations differ, `epochs`
/// aside: each setting's name and `name: old in the checkpoint, new now`.
fn config_differences(old: &serde_json::Value, new: &serde_json::Value) -> Vec<(String, String)> {
    use serde_json::Value;
    // As the command line writes them: names unquoted, an `f32` setting
    // (stored through `f64`) in its own shortest form, no value as `none`.
    let show = |v: Option<&Value>| match v {
        None => "not set".to_string(),
        Some(Value::Null) => "none".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() && f64::from(f as f32) == f => (f as f32).to_string(),
            _ => n.to_string(),
        },
        Some(v) => v.to_string(),
    };
    match (old, new) {
        (Value::Null, _) | (_, Value::Null) => Vec::new(),
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .filter(|k| k.as_str() != "epochs" && !same_setting(a.get(*k), b.get(*k)))
                .map(|k| {
                    let text = format!(
                        "{k}: {} in the checkpoint, {} now",
                        show(a.get(k)),
                        show(b.get(k))
                    );
                    (k.clone(), text)
                })
                .collect()
        }
        (a, b) if !same_setting(Some(a), Some(b)) => {
            vec![(String::new(), format!("{a} in the checkpoint, {b} now"))]
        }
        _ => Vec::new(),
    }
}

/// Whether two recorded values are the same setting: equal, or numbers
/// that are the same `f32`. Settings are `f32`s stored through `f64`, and
/// reading JSON back may move an `f64` by an ulp (serde_json parses
/// floats fast, not exactly), which an `f32` does not see.
fn same_setting(a: Option<&serde_json::Value>, b: Option<&serde_json::Value>) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || x as f32 == y as f32,
                _ => false,
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_setting(Some(x), Some(y)))
        }
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.len() == y.len() && x.iter().all(|(k, v)| same_setting(Some(v), y.get(k)))
        }
        (a, b) => a == b,
    }
}

/// An `f32` setting as JSON: the `f64` of its shortest decimal form (`0.999`,
/// not `0.9990000128746033`), which reads back as written.
pub(crate) fn f32_json(x: f32) -> serde_json::Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

fn shape_text(s: &Option<Vec<usize>>) -> String {
    match s {
        Some(s) => format!("{s:?}"),
        None => "absent".into(),
    }
}

/// Everything in a checkpoint besides the tensors.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    /// An MLP's layer widths, input first (empty for other models).
    #[serde(default)]
    pub widths: Vec<usize>,
    /// An MLP's hidden activation (`None` for other models).
    #[serde(default)]
    pub activation: Option<ActivationKind>,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub optimizer_steps: u32,
    /// Current learning rate of each parameter group.
    pub lrs: Vec<f32>,
    /// Scheduler state (its own JSON).
    pub scheduler: serde_json::Value,
    /// Data loader RNG state and epoch.
    pub loader_rng: [u32; 4],
    /// Data loader epoch counter.
    pub loader_epoch: u64,
    /// Best validation loss so far (early stopping).
    pub best_val_loss: Option<f32>,
    /// Epochs since the best validation loss.
    pub bad_epochs: usize,
    /// Per-epoch metrics so far.
    pub history: Vec<crate::learner::EpochMetrics>,
    /// The configuration recorded with
    /// [`Learner::record_config`](crate::learner::Learner::record_config)
    /// (the command line's `TrainConfig`), `null` when none was.
    pub config: serde_json::Value,
    /// The settings the [`Learner`](crate::learner::Learner) recorded of
    /// itself (optimizer, learning rate, schedule, batch, seed, clipping,
    /// patience, augmentation), an object of one key per setting; `null`
    /// in checkpoints written before it recorded them.
    #[serde(default)]
    pub settings: serde_json::Value,
    /// What the model needs at inference besides its parameters, as
    /// [`Learner::model_info`](crate::learner::Learner::model_info) gave
    /// it (`ember train` on a data file: the task, the feature and target
    /// names, the input scaling, an autoencoder's threshold); `null` when
    /// none was. Not compared on resume.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub model: serde_json::Value,
}

/// A checkpoint in memory.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Scalars and history.
    pub meta: Meta,
    /// Model parameters by PyTorch name.
    pub params: Vec<NamedTensor>,
    /// Optimizer state, flat.
    pub optimizer: Vec<f32>,
    /// The parameters of the best epoch by validation loss, when the run
    /// stops early (so that a resumed run returns them); `None` in
    /// checkpoints of runs without early stopping, and of versions before
    /// the `Learner`.
    pub best_params: Option<Vec<NamedTensor>>,
}

const FORMAT: &str = "ember-checkpoint-1";
const OPT: &str = "optimizer.state";
const ORDER: &str = "parameter_order";
const BEST: &str = "best.";

/// The checksum of the parameters, the optimizer state and the best
/// parameters, in that order (without best parameters, the checksum of
/// earlier versions).
fn data_crc(tensors: &[NamedTensor], opt: &[f32], best: Option<&[NamedTensor]>) -> u32 {
    let values = tensors
        .iter()
        .flat_map(|t| &t.data)
        .chain(opt)
        .chain(best.unwrap_or_default().iter().flat_map(|t| &t.data));
    values.fold(0, |crc, v| {
        ember_nn_core::deploy::crc32(crc, &v.to_le_bytes())
    })
}

impl Checkpoint {
    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let mut tensors: Vec<NamedTensor> = self
            .params
            .iter()
            .map(|t| NamedTensor {
                name: format!("model.{}", t.name),
                shape: t.shape.clone(),
                data: t.data.clone(),
            })
            .collect();
        tensors.push(NamedTensor {
            name: OPT.into(),
            shape: vec![self.optimizer.len()],
            data: self.optimizer.clone(),
        });
        for t in self.best_params.iter().flatten() {
            tensors.push(NamedTensor {
                name: format!("{BEST}{}", t.name),
                shape: t.shape.clone(),
                data: t.data.clone(),
            });
        }
        let mut md = HashMap::new();
        md.insert("format".into(), FORMAT.into());
        // The parameters' order (the model's visiting order, which the
        // checksum follows): safetensors keeps tensors sorted by name.
        let order: Vec<&str> = self.params.iter().map(|t| t.name.as_str()).collect();
        md.insert(
            ORDER.into(),
            serde_json::to_string(&order).map_err(|e| CheckpointError::Invalid {
                path: path.into(),
                msg: e.to_string(),
            })?,
        );
        md.insert(
            "crc32".into(),
            data_crc(&self.params, &self.optimizer, self.best_params.as_deref()).to_string(),
        );
        md.insert(
            "meta".into(),
            serde_json::to_string(&self.meta).map_err(|e| CheckpointError::Invalid {
                path: path.into(),
                msg: e.to_string(),
            })?,
        );
        let bytes =
            state_dict::to_bytes(&tensors, Some(md)).map_err(|e| CheckpointError::Invalid {
                path: path.into(),
                msg: e.to_string(),
            })?;
        write_atomic(path, &bytes).map_err(|source| CheckpointError::Io {
            path: path.into(),
            source,
        })
    }

    /// Reads and verifies a checkpoint.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// Verifies and decodes a checkpoint's bytes (the content of `path`,
    /// which names it in errors). Never panics, whatever `bytes` holds.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, CheckpointError> {
        let invalid = |msg: String| CheckpointError::Invalid {
            path: path.into(),
            msg,
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| invalid(e.to_string()))?;
        let md = header.metadata().clone().unwrap_or_default();
        if md.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(invalid("missing or unknown format tag".into()));
        }
        let meta: Meta = serde_json::from_str(
            md.get("meta")
                .ok_or_else(|| invalid("no metadata".into()))?,
        )
        .map_err(|e| invalid(format!("metadata: {e}")))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| invalid(e.to_string()))?;
        let mut params = Vec::new();
        let mut best = Vec::new();
        let mut optimizer = None;
        let mut names = st.names();
        names.sort();
        for name in names {
            let view = st.tensor(name).map_err(|e| invalid(e.to_string()))?;
            let data = state_dict::to_f32(path, name, &view).map_err(|e| invalid(e.to_string()))?;
            if name == OPT {
                optimizer = Some(data);
            } else if let Some(n) = name.strip_prefix("model.") {
                params.push(NamedTensor {
                    name: n.to_string(),
                    shape: view.shape().to_vec(),
                    data,
                });
            } else if let Some(n) = name.strip_prefix(BEST) {
                best.push(NamedTensor {
                    name: n.to_string(),
                    shape: view.shape().to_vec(),
                    data,
                });
            } else {
                return Err(invalid(format!("unexpected tensor `{name}`")));
            }
        }
        // Restore visiting order: as recorded, or, in checkpoints from
        // before the order was recorded (MLPs only), 0.weight, 0.bias,
        // 2.weight, ...
        match md.get(ORDER) {
            Some(order) => {
                let order: Vec<String> = serde_json::from_str(order)
                    .map_err(|e| invalid(format!("parameter order: {e}")))?;
                if order.len() != params.len() {
                    return Err(invalid(format!(
                        "{} parameters listed, {} stored",
                        order.len(),
                        params.len()
                    )));
                }
                let mut ranked = Vec::with_capacity(params.len());
                for t in params {
                    let rank = order.iter().position(|n| *n == t.name).ok_or_else(|| {
                        invalid(format!("parameter `{}` is not in the order", t.name))
                    })?;
                    ranked.push((rank, t));
                }
                ranked.sort_by_key(|(rank, _)| *rank);
                params = ranked.into_iter().map(|(_, t)| t).collect();
            }
            None => params.sort_by_key(|t| {
                let (idx, kind) = t.name.split_once('.').unwrap_or((&t.name, ""));
                (idx.parse::<usize>().unwrap_or(usize::MAX), kind != "weight")
            }),
        }
        let optimizer = optimizer.ok_or_else(|| invalid("no optimizer state".into()))?;
        // The best parameters: the same names as the parameters, in their order.
        let best_params = if best.is_empty() {
            None
        } else {
            if best.len() != params.len() {
                return Err(invalid(format!(
                    "{} best parameters for {} parameters",
                    best.len(),
                    params.len()
                )));
            }
            let mut ranked = Vec::with_capacity(best.len());
            for t in best {
                let rank = params
                    .iter()
                    .position(|p| p.name == t.name && p.shape == t.shape)
                    .ok_or_else(|| {
                        invalid(format!("best parameter `{}` is no parameter", t.name))
                    })?;
                ranked.push((rank, t));
            }
            ranked.sort_by_key(|(rank, _)| *rank);
            Some(ranked.into_iter().map(|(_, t)| t).collect::<Vec<_>>())
        };
        let stored: u32 = md
            .get("crc32")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("no checksum".into()))?;
        if stored != data_crc(&params, &optimizer, best_params.as_deref()) {
            return Err(invalid("checksum mismatch: the file is corrupt".into()));
        }
        Ok(Checkpoint {
            meta,
            params,
            optimizer,
            best_params,
        })
    }

    /// Checks that the checkpoint is for an MLP of these widths and activation.
    pub fn check_architecture(
        &self,
        path: &Path,
        widths: &[usize],
        activation: Option<ActivationKind>,
    ) -> Result<(), CheckpointError> {
        if self.meta.widths != widths || self.meta.activation != activation {
            let fmt = |w: &[usize], a: Option<ActivationKind>| {
                let w = w.iter().map(|x| x.to_string()).collect::<Vec<_>>();
                match a {
                    Some(a) => format!("{} {a}", w.join("-")),
                    None => format!("{} (not an MLP)", w.join("-")),
                }
            };
            return Err(CheckpointError::Architecture {
                path: path.into(),
                expected: fmt(widths, activation),
                found: fmt(&self.meta.widths, self.meta.activation),
            });
        }
        Ok(())
    }

    /// Checks that a run's recorded configuration is the checkpoint's,
    /// except for `epochs` (a run may be extended). Nothing is checked when
    /// either side recorded none (`null`).
    pub fn check_config(
        &self,
        path: &Path,
        config: &serde_json::Value,
    ) -> Result<(), CheckpointError> {
        self.check_settings(path, &serde_json::Value::Null, config)
    }

    /// Checks a run's settings against the checkpoint's: the Learner's own
    /// (`settings`, against [`Meta::settings`]) and the configuration
    /// recorded besides (`config`, against [`Meta::config`]), each except
    /// for `epochs`. Every setting that differs is named once in the
    /// [`CheckpointError::Settings`] (a setting both record, as the command
    /// line's `lr`, once), sorted by name. Nothing is compared where either
    /// side recorded nothing (`null`: checkpoints from before the Learner
    /// recorded its settings).
    pub fn check_settings(
        &self,
        path: &Path,
        settings: &serde_json::Value,
        config: &serde_json::Value,
    ) -> Result<(), CheckpointError> {
        let mut by_name = std::collections::BTreeMap::new();
        for (name, text) in config_differences(&self.meta.settings, settings)
            .into_iter()
            .chain(config_differences(&self.meta.config, config))
        {
            by_name.entry(name).or_insert(text);
        }
        if by_name.is_empty() {
            Ok(())
        } else {
            Err(CheckpointError::Settings {
                path: path.into(),
                differences: by_name.into_values().collect(),
            })
        }
    }

    /// Checks that the checkpoint's parameters are exactly `expected`'s
    /// names and shapes (a model's, in any order).
    pub fn check_parameters(
        &self,
        path: &Path,
        expected: &[(String, Vec<usize>)],
    ) -> Result<(), CheckpointError> {
        let differ = |name: &str, expected: Option<&Vec<usize>>, found: Option<&Vec<usize>>| {
            CheckpointError::Parameters {
                path: path.into(),
                name: name.to_string(),
                expected: expected.cloned(),
                found: found.cloned(),
            }
        };
        for (name, shape) in expected {
            match self.params.iter().find(|t| t.name == *name) {
                Some(t) if t.shape == *shape => {}
                t => return Err(differ(name, Some(shape), t.map(|t| &t.shape))),
            }
        }
        if let Some(t) = self
            .params
            .iter()
            .find(|t| !expected.iter().any(|(n, _)| *n == t.name))
        {
            return Err(differ(&t.name, None, Some(&t.shape)));
        }
        Ok(())
    }
}
