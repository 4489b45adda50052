//! Learning-rate schedulers, stepped once per epoch as in PyTorch:
//! StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, ReduceLROnPlateau
//! and linear warmup. Each maps a group's base learning rate to the current
//! one; [`Optimizer::set_lr_with`](super::Optimizer::set_lr_with) applies it.
//! Every scheduler is plain data (`Copy`), so it goes into a checkpoint whole.

use core::f32::consts::PI;

/// A learning-rate schedule.
pub trait LrScheduler {
    /// Ends an epoch.
    fn step(&mut self);
    /// Ends an epoch whose monitored metric (e.g. validation loss) was
    /// `metric`; schedules that ignore metrics just step.
    fn step_with(&mut self, metric: f32) {
        let _ = metric;
        self.step();
    }
    /// The learning rate now, for a group whose base rate is `base`.
    fn lr(&self, base: f32) -> f32;
}

/// Multiplies the rate by `gamma` every `step_size` epochs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLR {
    /// Epochs between decays.
    pub step_size: usize,
    /// Decay factor.
    pub gamma: f32,
    /// Epochs completed.
    pub epoch: usize,
}

impl StepLR {
    /// A schedule at epoch 0.
    pub fn new(step_size: usize, gamma: f32) -> Self {
        StepLR {
            step_size: step_size.max(1),
            gamma,
            epoch: 0,
        }
    }
}

impl LrScheduler for StepLR {
    fn step(&mut self) {
        self.epoch += 1;
    }
    fn lr(&self, base: f32) -> f32 {
        base * libm::powf(self.gamma, (self.epoch / self.step_size) as f32)
    }
}

/// Multiplies the rate by `gamma` at each milestone epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiStepLR {
    /// Epochs at which to decay.
    pub milestones: heapless::Vec<usize, 16>,
    /// Decay factor.
    pub gamma: f32,
    /// Epochs completed.
    pub epoch: usize,
}

impl MultiStepLR {
    /// A schedule at epoch 0 (at most 16 milestones are kept).
    pub fn new(milestones: &[usize], gamma: f32) -> Self {
        MultiStepLR {
            milestones: milestones.iter().copied().take(16).collect(),
            gamma,
            epoch: 0,
        }
    }
}

impl LrScheduler for MultiStepLR {
    fn step(&mut self) {
        self.epoch += 1;
    }
    fn lr(&self, base: f32) -> f32 {
        let passed = self.milestones.iter().filter(|&&m| m <= self.epoch).count();
        base * libm::powf(self.gamma, passed as f32)
    }
}

/// Multiplies the rate by `gamma` every epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExponentialLR {
    /// Decay factor.
    pub gamma: f32,
    /// Epochs completed.
    pub epoch: usize,
}

impl ExponentialLR {
    /// A schedule at epoch 0.
    pub fn new(gamma: f32) -> Self {
        ExponentialLR { gamma, epoch: 0 }
    }
}

impl LrScheduler for ExponentialLR {
    fn step(&mut self) {
        self.epoch += 1;
    }
    fn lr(&self, base: f32) -> f32 {
        base * libm::powf(self.gamma, self.epoch as f32)
    }
}

/// Cosine annealing from the base rate to `eta_min` over `t_max` epochs, and
/// back up over the next `t_max` (PyTorch's `CosineAnnealingLR`, without restarts).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealingLR {
    /// Half-period in epochs.
    pub t_max: usize,
    /// Lowest rate.
    pub eta_min: f32,
    /// Epochs completed.
    pub epoch: usize,
}

impl CosineAnnealingLR {
    /// A schedule at epoch 0.
    pub fn new(t_max: usize, eta_min: f32) -> Self {
        CosineAnnealingLR {
            t_max: t_max.max(1),
            eta_min,
            epoch: 0,
        }
    }
}

impl LrScheduler for CosineAnnealingLR {
    fn step(&mut self) {
        self.epoch += 1;
    }
    fn lr(&self, base: f32) -> f32 {
        let c = cos_pi_ratio(self.epoch, self.t_max);
        self.eta_min + (base - self.eta_min) * (1.0 + c) / 2.0
    }
}

/// `cos(π · num / den)` in `f32` arithmetic only (no `libm::cosf`, whose
/// argument reduction links 7 KB of tables and `f64` code on a
/// microcontroller): the period `2 · den` and the symmetry about `π` are
/// taken out in integers, which leaves `w = num / den` in `[0, 1]`; then a
/// Taylor polynomial of `cos` or `sin` on `[−π/4, π/4]` (errors below
/// 3e-8 before rounding). Exact at the ends and the middle: `1`, `0`, `−1`.
/// The same code on every target, so a schedule is bit for bit the same on
/// the host and the device.
fn cos_pi_ratio(num: usize, den: usize) -> f32 {
    let den = den.max(1);
    let e = match den.checked_mul(2) {
        Some(period) => num % period,
        None => num,
    };
    let e = if e > den { den - (e - den).min(den) } else { e };
    let w = e as f32 / den as f32;
    let cos = |x: f32| {
        let x2 = x * x;
        1.0 - x2 / 2.0 * (1.0 - x2 / 12.0 * (1.0 - x2 / 30.0 * (1.0 - x2 / 56.0)))
    };
    let sin = |x: f32| {
        let x2 = x * x;
        x * (1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0 * (1.0 - x2 / 72.0))))
    };
    if w <= 0.25 {
        cos(PI * w)
    } else if w >= 0.75 {
        -cos(PI * (1.0 - w))
    } else {
        sin(PI * (0.5 - w))
    }
}

/// Whether a lower or a higher metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlateauMode {
    /// Lower is better (a loss).
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// How the improvement threshold is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Relative to the best value so far.
    Rel,
    /// In the metric's units.
    Abs,
}

/// Divides the rate by `1 / factor` when the metric has not improved for
/// more than `patience` epochs (PyTorch's `ReduceLROnPlateau`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReduceLROnPlateau {
    /// Lower or higher is better.
    pub mode: PlateauMode,
    /// Multiplier applied on a plateau.
    pub factor: f32,
    /// Epochs without improvement tolerated.
    pub patience: usize,
    /// Least improvement that counts.
    pub threshold: f32,
    /// How `threshold` is measured.
    pub threshold_mode: ThresholdMode,
    /// Epochs to wait after a reduction before counting again.
    pub cooldown: usize,
    /// Lowest rate.
    pub min_lr: f32,
    /// Best metric so far.
    pub best: f32,
    /// Epochs without improvement.
    pub bad_epochs: usize,
    /// Cooldown epochs left.
    pub cooldown_left: usize,
    /// Product of the reductions so far.
    pub scale: f32,
}

impl ReduceLROnPlateau {
    /// PyTorch's defaults for `mode`, with the given factor, patience and
    /// relative threshold (PyTorch: 0.1, 10, 1e-4).
    pub fn new(mode: PlateauMode, factor: f32, patience: usize, threshold: f32) -> Self {
        ReduceLROnPlateau {
            mode,
            factor,
            patience,
            threshold,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            best: match mode {
                PlateauMode::Min => f32::INFINITY,
                PlateauMode::Max => f32::NEG_INFINITY,
            },
            bad_epochs: 0,
            cooldown_left: 0,
            scale: 1.0,
        }
    }

    fn is_better(&self, m: f32) -> bool {
        match (self.mode, self.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => m < self.best * (1.0 - self.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => m < self.best - self.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => m > self.best * (1.0 + self.threshold),
            (PlateauMode::Max, ThresholdMode::Abs) => m > self.best + self.threshold,
        }
    }
}

impl LrScheduler for ReduceLROnPlateau {
    /// Without a metric nothing is learned: counts as an epoch without improvement.
    fn step(&mut self) {
        self.step_with(f32::NAN);
    }
    fn step_with(&mut self, metric: f32) {
        if self.is_better(metric) {
            self.best = metric;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.bad_epochs = 0;
        }
        if self.bad_epochs > self.patience {
            self.scale *= self.factor;
            self.cooldown_left = self.cooldown;
            self.bad_epochs = 0;
        }
    }
    fn lr(&self, base: f32) -> f32 {
        (base * self.scale).max(self.min_lr)
    }
}

/// Linear warmup from `start_factor · base` to `base` over `epochs` epochs,
/// then the inner schedule (which starts counting after the warmup).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Warmup<S> {
    /// Fraction of the base rate at epoch 0.
    pub start_factor: f32,
    /// Warmup length in epochs.
    pub epochs: usize,
    /// Epochs completed.
    pub epoch: usize,
    /// The schedule after the warmup.
    pub inner: S,
}

impl<S: LrScheduler> Warmup<S> {
    /// Warms up over `epochs`, then follows `inner`.
    pub fn new(start_factor: f32, epochs: usize, inner: S) -> Self {
        Warmup {
            start_factor,
            epochs,
            epoch: 0,
            inner,
        }
    }
}

/// A schedule that keeps the base rate (to use [`Warmup`] alone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Constant;

impl LrScheduler for Constant {
    fn step(&mut self) {}
    fn lr(&self, base: f32) -> f32 {
        base
    }
}

impl<S: LrScheduler> LrScheduler for Warmup<S> {
    fn step(&mut self) {
        if self.epoch >= self.epochs {
            self.inner.step();
        }
        self.epoch += 1;
    }
    fn step_with(&mut self, metric: f32) {
        if self.epoch >= self.epochs {
            self.inner.step_with(metric);
        }
        self.epoch += 1;
    }
    fn lr(&self, base: f32) -> f32 {
        if self.epoch < self.epochs {
            let f = self.start_factor
                + (1.0 - self.start_factor) * self.epoch as f32 / self.epochs as f32;
            base * f
        } else {
            self.inner.lr(base)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cos_pi_ratio;

    /// Within 2.4e-7 of the true cosine (`libm::cosf` of the rounded
    /// `π · num / den`, which it replaces, was off by up to 1.4e-6 there) for every fraction of up to 1000 steps, over two periods,
    /// and exact where the cosine is 1, 0 or −1.
    #[test]
    fn cos_pi_ratio_is_the_cosine() {
        for den in 1..=1000usize {
            compact_loop!();
            for num in 0..=4 * den {
                compact_loop!();
                let got = f64::from(cos_pi_ratio(num, den));
                let want = (core::f64::consts::PI * num as f64 / den as f64).cos();
                assert!(
                    (got - want).abs() <= 2.4e-7,
                    "cos(π·{num}/{den}): {got} vs {want}"
                );
            }
        }
        assert_eq!(cos_pi_ratio(0, 7), 1.0);
        assert_eq!(cos_pi_ratio(7, 7), -1.0);
        assert_eq!(cos_pi_ratio(14, 7), 1.0);
        assert_eq!(cos_pi_ratio(2, 4), 0.0);
        assert_eq!(cos_pi_ratio(6, 4), 0.0);
        assert_eq!(cos_pi_ratio(5, 0), -1.0);
    }
}
