//! Optimizer update rules, elementwise, defined once.
//!
//! An [`Update`] carries one step's hyper-parameters (with per-step scalars such
//! as Adam's bias corrections already worked out); [`Update::step`] updates one
//! element. Backends run it over a whole parameter in one kernel
//! ([`Backend::update`](crate::backend::Backend::update)), so that optimizer
//! state never leaves the device. The optimizers in `nn::optim` build these.
//! Part of the vocabulary the backends share.

/// The square root the update rules use. Core's default is `libm`, which
/// works everywhere (no `std`); a host backend can supply one the compiler
/// vectorises (`f32::sqrt`) without the formulas being written twice.
pub trait Sqrt {
    /// `√x`.
    fn sqrt(x: f32) -> f32;
}

/// [`Sqrt`] from `libm` (no `std` needed).
#[derive(Clone, Copy, Debug, Default)]
pub struct LibmSqrt;

impl Sqrt for LibmSqrt {
    #[inline(always)]
    fn sqrt(x: f32) -> f32 {
        crate::sqrt::sqrtf(x)
    }
}

/// One optimizer step for one parameter, following PyTorch's update conventions.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Update {
    /// SGD with optional momentum, dampening, Nesterov momentum and L2 weight decay.
    /// State: the momentum buffer (when `momentum != 0`).
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum factor.
        momentum: f32,
        /// Dampening of the momentum.
        dampening: f32,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 penalty added to the gradient.
        weight_decay: f32,
        /// The first step (the momentum buffer starts as the gradient).
        first: bool,
    },
    /// Adam, or AdamW when `decoupled`. State: first and second moments, and
    /// with `amsgrad` the largest second moment so far.
    Adam {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
        /// Weight decay: an L2 term in the gradient (Adam) or a decoupled shrink (AdamW).
        weight_decay: f32,
        /// AdamW's decoupled weight decay.
        decoupled: bool,
        /// AMSGrad: divide by the largest second moment so far (state plane 2).
        amsgrad: bool,
        /// `1 - beta1^t`.
        bias1: f32,
        /// `sqrt(1 - beta2^t)`.
        bias2_sqrt: f32,
    },
    /// RMSprop. State: the square average, the momentum buffer, the gradient average.
    RmsProp {
        /// Learning rate.
        lr: f32,
        /// Smoothing constant.
        alpha: f32,
        /// Added to the denominator.
        eps: f32,
        /// L2 penalty added to the gradient.
        weight_decay: f32,
        /// Momentum factor.
        momentum: f32,
        /// Normalise by the centred second moment.
        centered: bool,
    },
    /// Adagrad. State: the sum of squared gradients.
    Adagrad {
        /// This step's learning rate, after decay.
        lr: f32,
        /// Added to the denominator.
        eps: f32,
        /// L2 penalty added to the gradient.
        weight_decay: f32,
    },
}

impl Update {
    /// Floats of state per parameter element.
    pub const fn state_planes(&self) -> usize {
        match self {
            Update::Sgd { momentum, .. } => {
                if *momentum != 0.0 {
                    1
                } else {
                    0
                }
            }
            Update::Adam { amsgrad, .. } => {
                if *amsgrad {
                    3
                } else {
                    2
                }
            }
            Update::RmsProp { .. } => 3,
            Update::Adagrad { .. } => 1,
        }
    }

    /// The updated value of one element `p` with gradient `g`; `s` holds this
    /// element's state (first `state_planes()` entries used).
    #[inline(always)]
    pub fn step(&self, p: f32, g: f32, s: &mut [f32; 3]) -> f32 {
        self.step_with::<LibmSqrt>(p, g, s)
    }

    /// [`step`](Self::step) with a chosen square root.
    #[inline(always)]
    pub fn step_with<Q: Sqrt>(&self, p: f32, g: f32, s: &mut [f32; 3]) -> f32 {
        let sqrtf = Q::sqrt;
        match *self {
            Update::Sgd {
                lr,
                momentum,
                dampening,
                nesterov,
                weight_decay,
                first,
            } => {
                let mut d = g + weight_decay * p;
                if momentum != 0.0 {
                    s[0] = if first {
                        d
                    } else {
                        momentum * s[0] + (1.0 - dampening) * d
                    };
                    d = if nesterov { d + momentum * s[0] } else { s[0] };
                }
                p - lr * d
            }
            Update::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
                amsgrad,
                bias1,
                bias2_sqrt,
            } => {
                let (mut p, mut g) = (p, g);
                if decoupled {
                    p *= 1.0 - lr * weight_decay;
                } else {
                    g += weight_decay * p;
                }
                s[0] = beta1 * s[0] + (1.0 - beta1) * g;
                s[1] = beta2 * s[1] + (1.0 - beta2) * g * g;
                let v = if amsgrad {
                    // PyTorch's torch.maximum: NaN propagates.
                    s[2] = if s[1] > s[2] || s[1].is_nan() {
                        s[1]
                    } else {
                        s[2]
                    };
                    s[2]
                } else {
                    s[1]
                };
                let denom = sqrtf(v) / bias2_sqrt + eps;
                p - (lr / bias1) * s[0] / denom
            }
            Update::RmsProp {
                lr,
                alpha,
                eps,
                weight_decay,
                momentum,
                centered,
            } => {
                let g = g + weight_decay * p;
                s[0] = alpha * s[0] + (1.0 - alpha) * g * g;
                let avg = if centered {
                    s[2] = alpha * s[2] + (1.0 - alpha) * g;
                    sqrtf(s[0] - s[2] * s[2]) + eps
                } else {
                    sqrtf(s[0]) + eps
                };
                if momentum > 0.0 {
                    s[1] = momentum * s[1] + g / avg;
                    p - lr * s[1]
                } else {
                    p - lr * g / avg
                }
            }
            Update::Adagrad {
                lr,
                eps,
                weight_decay,
            } => {
                let g = g + weight_decay * p;
                s[0] += g * g;
                p - lr * g / (sqrtf(s[0]) + eps)
            }
        }
    }
}
