//! Parameter initialisers, applied to a whole model the way PyTorch's
//! `net.apply(init_fn)` is:
//!
//! ```
//! use ember_nn_core::prelude::*;
//! use ember_nn_core::nn::{init::{self, Init}, Build, Linear, ParamKind, ReLU};
//! let mut buf = [0.0f32; 256];
//! let mut mem = Memory::new(&Cpu, &mut buf[..]);
//! let mut rng = Rng::new(1);
//! let net = <(Linear<4, 8>, ReLU, Linear<8, 2>)>::build(&mut mem, &mut rng)?;
//! init::apply(&net, &mut mem, &mut rng, |p| match p.kind {
//!     ParamKind::Weight => Init::Normal { mean: 0.0, std: 0.01 },
//!     ParamKind::Bias => Init::Zeros,
//! })?;
//! # Ok::<(), ember_nn_core::Error>(())
//! ```

use super::{Module, ParamInfo};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::memory::Memory;
use crate::rng::Rng;
use crate::sqrt::sqrtf;

/// Which fan a Kaiming initialiser preserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    /// Preserve the variance of the forward pass.
    FanIn,
    /// Preserve the variance of the backward pass.
    FanOut,
}

/// An initialisation rule, as in `torch.nn.init`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Leave the parameter as it is.
    Keep,
    /// `U(low, high)`.
    Uniform {
        /// Lower bound.
        low: f32,
        /// Upper bound.
        high: f32,
    },
    /// `N(mean, std²)`.
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// All zeros.
    Zeros,
    /// A constant.
    Constant(f32),
    /// Xavier/Glorot uniform: `U(-a, a)`, `a = gain·√(6 / (fan_in + fan_out))`.
    XavierUniform {
        /// Gain.
        gain: f32,
    },
    /// Xavier/Glorot normal: `std = gain·√(2 / (fan_in + fan_out))`.
    XavierNormal {
        /// Gain.
        gain: f32,
    },
    /// Kaiming/He uniform for a leaky-ReLU slope `a` (0 for ReLU).
    KaimingUniform {
        /// Negative slope of the following leaky ReLU.
        a: f32,
        /// Fan to preserve.
        mode: FanMode,
    },
    /// Kaiming/He normal for a leaky-ReLU slope `a` (0 for ReLU).
    KaimingNormal {
        /// Negative slope of the following leaky ReLU.
        a: f32,
        /// Fan to preserve.
        mode: FanMode,
    },
}

fn kaiming_std(a: f32, mode: FanMode, p: &ParamInfo<'_>) -> f32 {
    let fan = match mode {
        FanMode::FanIn => p.fan_in(),
        FanMode::FanOut => p.fan_out(),
    } as f32;
    let gain = sqrtf(2.0 / (1.0 + a * a));
    gain / sqrtf(fan.max(1.0))
}

impl Init {
    /// Writes this rule's values into the parameter `p`.
    pub fn apply_to<B: Backend>(
        &self,
        p: &ParamInfo<'_>,
        mem: &mut Memory<'_, B>,
        rng: &mut Rng,
    ) -> Result<()> {
        let span = p.param.value;
        let fans = (p.fan_in() + p.fan_out()).max(1) as f32;
        match *self {
            Init::Keep => Ok(()),
            Init::Uniform { low, high } => {
                if low > high || low.is_nan() || high.is_nan() {
                    return Err(Error::InvalidArgument {
                        what: "uniform init: low > high",
                    });
                }
                mem.write_fn(span, |_| rng.uniform_in(low, high))
            }
            Init::Normal { mean, std } => mem.write_fn(span, |_| mean + std * rng.normal()),
            Init::Zeros => mem.fill(span, 0.0),
            Init::Constant(c) => mem.fill(span, c),
            Init::XavierUniform { gain } => {
                let a = gain * sqrtf(6.0 / fans);
                mem.write_fn(span, |_| rng.uniform_in(-a, a))
            }
            Init::XavierNormal { gain } => {
                let std = gain * sqrtf(2.0 / fans);
                mem.write_fn(span, |_| std * rng.normal())
            }
            Init::KaimingUniform { a, mode } => {
                let bound = sqrtf(3.0) * kaiming_std(a, mode, p);
                mem.write_fn(span, |_| rng.uniform_in(-bound, bound))
            }
            Init::KaimingNormal { a, mode } => {
                let std = kaiming_std(a, mode, p);
                mem.write_fn(span, |_| std * rng.normal())
            }
        }
    }
}

/// Applies the rule `rule(param)` chooses to every parameter of `model`.
pub fn apply<M: Module, B: Backend>(
    model: &M,
    mem: &mut Memory<'_, B>,
    rng: &mut Rng,
    mut rule: impl FnMut(&ParamInfo<'_>) -> Init,
) -> Result<()> {
    let mut result = Ok(());
    model.named_parameters(&mut |p| {
        if result.is_ok() {
            result = rule(p).apply_to(p, mem, rng);
        }
    });
    result
}
