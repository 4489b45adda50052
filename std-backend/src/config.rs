//! The named choices of a training run (activation, optimizer, scheduler) as
//! enums, parsed once: the command line parses straight into them, and
//! checkpoints store them under the names they always had (`relu`,
//! `gelu_tanh`, `adamw`, `plateau`, ...).

use clap::ValueEnum;
use ember_nn_core::deploy::Activation;
use ember_nn_core::nn::loss::Loss;
use ember_nn_core::nn::Rule;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A name that is none of an enum's values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}` (one of: {expected})")]
pub struct UnknownName {
    /// What was named ("activation", "optimizer", "scheduler").
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// The valid names, comma-separated.
    pub expected: String,
}

/// The name of `v` as the command line and checkpoints write it.
fn name_of<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// Parses `s` as one of `T`'s names (exactly, case-sensitive).
fn parse_name<T: ValueEnum>(what: &'static str, s: &str) -> Result<T, UnknownName> {
    T::from_str(s, false).map_err(|_| UnknownName {
        what,
        name: s.to_string(),
        expected: T::value_variants()
            .iter()
            .map(name_of)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

macro_rules! named {
    ($t:ty, $what:literal) => {
        impl FromStr for $t {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                parse_name($what, s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&name_of(self))
            }
        }
    };
}

/// A hidden layer's activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ActivationKind {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// Leaky ReLU with slope 0.01 (PyTorch's default).
    LeakyRelu,
    /// ELU with alpha 1 (PyTorch's default).
    Elu,
    /// SELU.
    Selu,
    /// SiLU (swish).
    Silu,
    /// GELU (exact, with erf).
    Gelu,
    /// GELU, tanh approximation.
    GeluTanh,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `ln(1 + e^x)`.
    Softplus,
}
named!(ActivationKind, "activation");

impl ActivationKind {
    /// The activation with its PyTorch default parameter.
    pub fn activation(self) -> Activation {
        match self {
            ActivationKind::Relu => Activation::Relu,
            ActivationKind::Tanh => Activation::Tanh,
            ActivationKind::Sigmoid => Activation::Sigmoid,
            ActivationKind::LeakyRelu => Activation::LeakyRelu(0.01),
            ActivationKind::Elu => Activation::Elu(1.0),
            ActivationKind::Selu => Activation::Selu,
            ActivationKind::Silu => Activation::Silu,
            ActivationKind::Gelu => Activation::Gelu,
            ActivationKind::GeluTanh => Activation::GeluTanh,
            ActivationKind::Softsign => Activation::Softsign,
            ActivationKind::Softplus => Activation::Softplus,
        }
    }
}

/// An optimization algorithm, with core's defaults ([`Rule::adam`], ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD ([`Rule::sgd_momentum`]).
    Sgd,
    /// Adam ([`Rule::adam`]).
    #[default]
    Adam,
    /// AdamW ([`Rule::adamw`]).
    Adamw,
    /// RMSprop ([`Rule::rmsprop`]).
    Rmsprop,
    /// Adagrad ([`Rule::adagrad`]).
    Adagrad,
}
named!(OptimizerKind, "optimizer");

impl OptimizerKind {
    /// The rule: core's defaults with `momentum` (SGD, RMSprop) and
    /// `weight_decay` applied. For AdamW a weight decay of 0 keeps its
    /// default (0.01), as the command line always did.
    pub fn rule(self, momentum: f32, weight_decay: f32) -> Rule {
        let rule = match self {
            OptimizerKind::Sgd => Rule::sgd(),
            OptimizerKind::Adam => Rule::adam(),
            OptimizerKind::Adamw => Rule::adamw(),
            OptimizerKind::Rmsprop => Rule::rmsprop(),
            OptimizerKind::Adagrad => Rule::adagrad(),
        }
        .with_momentum(momentum);
        // AdamW keeps its own default decay (0.01) unless one is given.
        match rule {
            Rule::AdamW { .. } if weight_decay == 0.0 => rule,
            _ => rule.with_weight_decay(weight_decay),
        }
    }
}

/// A learning-rate schedule (see [`Schedule`](crate::schedule::Schedule)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// The base rate throughout.
    None,
    /// StepLR: times gamma every `step_size` epochs.
    Step,
    /// ExponentialLR: times gamma every epoch.
    Exponential,
    /// CosineAnnealingLR over the epochs after the warmup.
    #[default]
    Cosine,
    /// ReduceLROnPlateau on the validation (or training) loss.
    Plateau,
}
named!(SchedulerKind, "scheduler");

/// What a model learns from its data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum TaskKind {
    /// Classes (cross-entropy on logits): accuracy.
    #[default]
    Classify,
    /// Float targets, one or several: RMSE, MAE and R² per target.
    Regress,
    /// An autoencoder whose target is its input: the anomaly score is a
    /// row's mean squared reconstruction error.
    Reconstruct,
}
named!(TaskKind, "task");

/// The loss of a regression or an autoencoder (a classifier's is
/// cross-entropy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum LossKind {
    /// Mean squared error (PyTorch's `MSELoss`).
    #[default]
    Mse,
    /// Mean absolute error (`L1Loss`).
    L1,
    /// Huber with delta 1 (`HuberLoss`): squared near the target, absolute
    /// beyond.
    Huber,
}
named!(LossKind, "loss");

/// How features are scaled before the model ([`Scaler`](crate::data::scale::Scaler)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ScaleKind {
    /// To mean 0 and standard deviation 1 (scikit-learn's `StandardScaler`).
    #[default]
    Standard,
    /// To `[0, 1]` over the training set's range (`MinMaxScaler`).
    Minmax,
    /// Raw features.
    None,
}
named!(ScaleKind, "scaling");

impl LossKind {
    /// The loss as the memory bound sees it.
    pub fn loss(self) -> Loss {
        match self {
            LossKind::Mse => Loss::Mse,
            LossKind::L1 => Loss::L1,
            LossKind::Huber => Loss::Huber,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value goes through serde (checkpoints) and `FromStr` (the
    /// command line, safetensors metadata) under the names earlier
    /// versions stored.
    fn round_trips<T>(pairs: &[(T, &str)])
    where
        T: ValueEnum + FromStr<Err = UnknownName> + fmt::Display + PartialEq + fmt::Debug,
        T: Serialize + for<'de> Deserialize<'de>,
    {
        assert_eq!(
            pairs.len(),
            T::value_variants().len(),
            "a value is untested"
        );
        for (v, name) in pairs {
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), v);
            assert_eq!(&name.parse::<T>().unwrap(), v);
            assert_eq!(v.to_string(), *name);
        }
    }

    #[test]
    fn config_enums_round_trip_under_the_old_names() {
        use ActivationKind as A;
        round_trips(&[
            (A::Relu, "relu"),
            (A::Tanh, "tanh"),
            (A::Sigmoid, "sigmoid"),
            (A::LeakyRelu, "leaky_relu"),
            (A::Elu, "elu"),
            (A::Selu, "selu"),
            (A::Silu, "silu"),
            (A::Gelu, "gelu"),
            (A::GeluTanh, "gelu_tanh"),
            (A::Softsign, "softsign"),
            (A::Softplus, "softplus"),
        ]);
        use OptimizerKind as O;
        round_trips(&[
            (O::Sgd, "sgd"),
            (O::Adam, "adam"),
            (O::Adamw, "adamw"),
            (O::Rmsprop, "rmsprop"),
            (O::Adagrad, "adagrad"),
        ]);
        use SchedulerKind as S;
        round_trips(&[
            (S::None, "none"),
            (S::Step, "step"),
            (S::Exponential, "exponential"),
            (S::Cosine, "cosine"),
            (S::Plateau, "plateau"),
        ]);
        use TaskKind as T;
        round_trips(&[
            (T::Classify, "classify"),
            (T::Regress, "regress"),
            (T::Reconstruct, "reconstruct"),
        ]);
        use LossKind as L;
        round_trips(&[(L::Mse, "mse"), (L::L1, "l1"), (L::Huber, "huber")]);
        use ScaleKind as C;
        round_trips(&[
            (C::Standard, "standard"),
            (C::Minmax, "minmax"),
            (C::None, "none"),
        ]);
    }

    #[test]
    fn unknown_names_say_what_is_valid() {
        let e = "adamx".parse::<OptimizerKind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown optimizer `adamx` (one of: sgd, adam, adamw, rmsprop, adagrad)"
        );
        assert!("Relu".parse::<ActivationKind>().is_err());
        assert!(serde_json::from_str::<SchedulerKind>("\"linear\"").is_err());
    }

    #[test]
    fn rules_are_cores_defaults_with_the_overrides() {
        assert_eq!(OptimizerKind::Adam.rule(0.9, 0.0), Rule::adam());
        assert_eq!(OptimizerKind::Adamw.rule(0.9, 0.0), Rule::adamw());
        let (
            Rule::AdamW {
                beta1, beta2, eps, ..
            },
            Rule::AdamW { weight_decay, .. },
        ) = (Rule::adamw(), OptimizerKind::Adamw.rule(0.9, 0.1))
        else {
            panic!("not AdamW");
        };
        assert_eq!(
            OptimizerKind::Adamw.rule(0.9, 0.1),
            Rule::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                amsgrad: false,
            }
        );
        assert_eq!(weight_decay, 0.1);
        assert_eq!(OptimizerKind::Sgd.rule(0.5, 0.0), Rule::sgd_momentum(0.5));
        assert!(matches!(
            OptimizerKind::Rmsprop.rule(0.9, 0.01),
            Rule::RmsProp { momentum, weight_decay, .. } if momentum == 0.9 && weight_decay == 0.01
        ));
        assert!(matches!(
            OptimizerKind::Adagrad.rule(0.9, 0.2),
            Rule::Adagrad { weight_decay, .. } if weight_decay == 0.2
        ));
    }
}
