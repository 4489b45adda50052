//! The learning-rate schedule of a run: one of core's schedulers behind
//! core's linear [`Warmup`], with its state as JSON for checkpoints.

use crate::checkpoint::f32_json;
use crate::config::SchedulerKind;
use ember_nn_core::nn::sched::{
    CosineAnnealingLR, ExponentialLR, LrScheduler, PlateauMode, ReduceLROnPlateau, StepLR, Warmup,
};
use serde_json::{json, Value};

/// The learning-rate schedule of a run, with its state: stepped once per
/// epoch with the epoch's monitored loss ([`LrScheduler::step_with`]), which
/// only ReduceLROnPlateau reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    inner: Warmup<Kind>,
}

/// The schedule after the warmup.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    None,
    Step(StepLR),
    Exponential(ExponentialLR),
    Cosine(CosineAnnealingLR),
    Plateau(ReduceLROnPlateau),
}

impl LrScheduler for Kind {
    fn step(&mut self) {
        match self {
            Kind::None => {}
            Kind::Step(s) => s.step(),
            Kind::Exponential(s) => s.step(),
            Kind::Cosine(s) => s.step(),
            Kind::Plateau(s) => s.step(),
        }
    }
    fn step_with(&mut self, metric: f32) {
        match self {
            Kind::Plateau(s) => s.step_with(metric),
            other => other.step(),
        }
    }
    fn lr(&self, base: f32) -> f32 {
        match self {
            Kind::None => base,
            Kind::Step(s) => s.lr(base),
            Kind::Exponential(s) => s.lr(base),
            Kind::Cosine(s) => s.lr(base),
            Kind::Plateau(s) => s.lr(base),
        }
    }
}

impl Schedule {
    /// `kind` for a run of `epochs` epochs, after `warmup` epochs of linear
    /// warmup ([`Warmup`] from `1 / (warmup + 1)` of the base rate, so
    /// epoch `e` of the warmup runs at `(e + 1) / (warmup + 1)` of it).
    /// `step_size` is StepLR's period; `gamma` the decay of step,
    /// exponential and plateau (capped at 0.99 for plateau, whose patience
    /// is 2 epochs and threshold 1e-4). Cosine anneals to 0 over the epochs
    /// after the warmup.
    pub fn new(
        kind: SchedulerKind,
        epochs: usize,
        warmup: usize,
        step_size: usize,
        gamma: f32,
    ) -> Self {
        let after = epochs.saturating_sub(warmup).max(1);
        let kind = match kind {
            SchedulerKind::None => Kind::None,
            SchedulerKind::Step => Kind::Step(StepLR::new(step_size, gamma)),
            SchedulerKind::Exponential => Kind::Exponential(ExponentialLR::new(gamma)),
            SchedulerKind::Cosine => Kind::Cosine(CosineAnnealingLR::new(after, 0.0)),
            SchedulerKind::Plateau => Kind::Plateau(ReduceLROnPlateau::new(
                PlateauMode::Min,
                gamma.min(0.99),
                2,
                1e-4,
            )),
        };
        Schedule {
            inner: Warmup::new(1.0 / (warmup as f32 + 1.0), warmup, kind),
        }
    }

    /// The base rate throughout.
    pub fn constant() -> Self {
        Self::new(SchedulerKind::None, 1, 0, 1, 1.0)
    }

    /// The schedule's settings as JSON, which a [`Learner`](crate::learner::Learner)
    /// records in its checkpoints: the kind (`scheduler`, named as the
    /// command line names it), the warmup epochs and the kind's own
    /// parameters (`step_size`, `gamma`), but nothing that follows from
    /// the epoch count (cosine's length), which a resumed run may raise.
    pub fn settings(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        let (kind, params) = match &self.inner.inner {
            Kind::None => (SchedulerKind::None, json!({})),
            Kind::Step(s) => (
                SchedulerKind::Step,
                json!({ "step_size": s.step_size, "gamma": f32_json(s.gamma) }),
            ),
            Kind::Exponential(s) => (
                SchedulerKind::Exponential,
                json!({ "gamma": f32_json(s.gamma) }),
            ),
            Kind::Cosine(s) => (
                SchedulerKind::Cosine,
                json!({ "eta_min": f32_json(s.eta_min) }),
            ),
            Kind::Plateau(s) => (
                SchedulerKind::Plateau,
                json!({ "gamma": f32_json(s.factor) }),
            ),
        };
        m.insert("scheduler".into(), json!(kind.to_string()));
        m.insert("warmup".into(), json!(self.inner.epochs));
        if let Value::Object(p) = params {
            m.extend(p);
        }
        m
    }

    /// The state as JSON, for checkpoints.
    pub fn state(&self) -> Value {
        let inner = match &self.inner.inner {
            Kind::None => json!({}),
            Kind::Step(s) => json!({ "epoch": s.epoch }),
            Kind::Exponential(s) => json!({ "epoch": s.epoch }),
            Kind::Cosine(s) => json!({ "epoch": s.epoch }),
            Kind::Plateau(s) => json!({
                "best": s.best, "bad_epochs": s.bad_epochs, "cooldown_left": s.cooldown_left, "scale": s.scale
            }),
        };
        json!({ "epoch": self.inner.epoch, "inner": inner })
    }

    /// Restores a state saved by [`state`](Self::state); the part of it that
    /// is missing otherwise.
    pub fn restore(&mut self, v: &Value) -> Result<(), MissingState> {
        let get_u = |o: &Value, k: &str| o.get(k).and_then(Value::as_u64).map(|x| x as usize);
        let get_f = |o: &Value, k: &str| o.get(k).and_then(Value::as_f64).map(|x| x as f32);
        let epoch = get_u(v, "epoch").ok_or(MissingState("scheduler epoch"))?;
        let inner = v.get("inner").ok_or(MissingState("scheduler state"))?;
        match &mut self.inner.inner {
            Kind::None => {}
            Kind::Step(StepLR { epoch, .. })
            | Kind::Exponential(ExponentialLR { epoch, .. })
            | Kind::Cosine(CosineAnnealingLR { epoch, .. }) => {
                *epoch = get_u(inner, "epoch").ok_or(MissingState("scheduler epoch"))?
            }
            Kind::Plateau(s) => {
                // `best` is +inf before any metric; JSON stores that as null.
                s.best = get_f(inner, "best").unwrap_or(f32::INFINITY);
                s.bad_epochs = get_u(inner, "bad_epochs").ok_or(MissingState("plateau state"))?;
                s.cooldown_left =
                    get_u(inner, "cooldown_left").ok_or(MissingState("plateau state"))?;
                s.scale = get_f(inner, "scale").ok_or(MissingState("plateau state"))?;
            }
        }
        self.inner.epoch = epoch;
        Ok(())
    }
}

impl LrScheduler for Schedule {
    fn step(&mut self) {
        self.inner.step();
    }
    fn step_with(&mut self, metric: f32) {
        self.inner.step_with(metric);
    }
    fn lr(&self, base: f32) -> f32 {
        self.inner.lr(base)
    }
}

/// A scheduler state ([`Schedule::restore`]) that lacks a part its
/// schedule needs: the part's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} missing")]
pub struct MissingState(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_ramps_then_the_schedule_starts_counting() {
        let mut s = Schedule::new(SchedulerKind::Step, 10, 3, 1, 0.5);
        let mut lrs = Vec::new();
        for _ in 0..6 {
            lrs.push(s.lr(1.0));
            s.step_with(0.0);
        }
        let want = [0.25, 0.5, 0.75, 1.0, 0.5, 0.25];
        for (l, w) in lrs.iter().zip(want) {
            assert!((l - w).abs() < 1e-6, "{lrs:?}");
        }
    }

    #[test]
    fn plateau_reads_the_metric_and_its_state_round_trips() {
        let mut s = Schedule::new(SchedulerKind::Plateau, 10, 0, 1, 0.5);
        for m in [1.0, 1.0, 1.0, 1.0] {
            s.step_with(m);
        }
        assert_eq!(s.lr(1.0), 0.5);
        let mut t = Schedule::new(SchedulerKind::Plateau, 10, 0, 1, 0.5);
        t.restore(&s.state()).unwrap();
        assert_eq!(s, t);
        assert!(t.restore(&json!({ "epoch": 1 })).is_err());
    }

    #[test]
    fn settings_name_the_kind_and_its_parameters_but_not_the_length() {
        let s = Schedule::new(SchedulerKind::Step, 10, 2, 3, 0.5).settings();
        assert_eq!(
            Value::Object(s),
            json!({ "scheduler": "step", "warmup": 2, "step_size": 3, "gamma": 0.5 })
        );
        // Cosine's length follows from the epochs: a longer run has the same settings.
        let cosine = |epochs| Schedule::new(SchedulerKind::Cosine, epochs, 1, 1, 0.5).settings();
        assert_eq!(cosine(5), cosine(50));
        assert_ne!(
            cosine(5),
            Schedule::new(SchedulerKind::Cosine, 5, 0, 1, 0.5).settings()
        );
        assert_eq!(
            Schedule::constant().settings().get("scheduler"),
            Some(&json!("none"))
        );
    }
}
