//! Normalisation layers: [`BatchNorm1d`].

use super::{
    BufferInfo, Build, Footprint, Forward, LayerInput, Module, Name, ParamInfo, ParamKind,
};
use crate::backend::{Backend, Span};
use crate::error::Result;
use crate::memory::{Memory, Param};
use crate::ops::batch_norm::BatchNormStats;
use crate::rng::Rng;
use crate::shape::{Const, Dim, Rank1};
use crate::tensor::Tensor;
use core::fmt;

/// The settings of a [`BatchNorm1d`], PyTorch's defaults unless changed:
/// `eps = 1e-5`, `momentum = 0.1`.
///
/// ```
/// use ember_nn_core::nn::{BatchNorm1d, BatchNormConfig};
/// use ember_nn_core::prelude::*;
/// let mut buf = [0.0f32; 64];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// // PyTorch's `nn.BatchNorm1d(8, eps=1e-3, momentum=0.01)`.
/// let bn: BatchNorm1d<8> = BatchNormConfig::new().with_eps(1e-3).with_momentum(0.01).init(&mut mem)?;
/// assert_eq!(bn.config().eps, 1e-3);
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before its square root.
    pub eps: f32,
    /// Weight of each training batch's statistics in the running ones.
    pub momentum: f32,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchNormConfig {
    /// PyTorch's defaults: `eps = 1e-5`, `momentum = 0.1`.
    pub const fn new() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// The same with `eps`.
    pub const fn with_eps(self, eps: f32) -> Self {
        BatchNormConfig { eps, ..self }
    }

    /// The same with `momentum`.
    pub const fn with_momentum(self, momentum: f32) -> Self {
        BatchNormConfig { momentum, ..self }
    }

    /// A layer of `N` features with these settings: `γ = 1`, `β = 0`,
    /// running mean 0, running variance 1, in training mode.
    pub fn init<const N: usize, B: Backend>(
        self,
        mem: &mut Memory<'_, B>,
    ) -> Result<BatchNorm1d<N>> {
        let weight = mem.param_from_fn(|_| 1.0)?;
        let bias = mem.param_zeros()?;
        let running_mean = mem.alloc(N)?;
        let running_var = mem.alloc(N)?;
        mem.fill(running_var, 1.0)?;
        let num_batches_tracked = mem.alloc(1)?;
        Ok(BatchNorm1d {
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
            config: self,
            training: true,
        })
    }
}

/// Batch normalisation of `[batch, N]` input, as PyTorch's
/// `nn.BatchNorm1d(N)`: `y = (x − μ) / √(σ² + eps) · γ + β` per feature.
///
/// - Training mode (the default, [`Module::train`]): `μ` and `σ²` are the
///   batch's mean and biased variance; `running_mean` and `running_var`
///   move towards the batch's mean and *unbiased* variance by `momentum`,
///   and `num_batches_tracked` counts the batches. A batch of one row is
///   an [`Error::InvalidArgument`](crate::Error::InvalidArgument) recorded
///   on the graph (PyTorch's "Expected more than 1 value per channel when
///   training").
/// - Evaluation mode ([`Module::eval`]): the running statistics.
///
/// Parameters `weight` (γ) and `bias` (β) are trained; the running
/// statistics are buffers ([`Module::visit_buffers`]): saved and loaded
/// with the model, never seen by an optimizer. Export folds a layer in
/// evaluation mode right after a `Linear` into that layer's weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm1d<const N: usize> {
    /// γ, `[N]`, initially 1.
    pub weight: Param<Rank1<N>>,
    /// β, `[N]`, initially 0.
    pub bias: Param<Rank1<N>>,
    /// The running mean, `[N]` floats, initially 0.
    pub running_mean: Span,
    /// The running variance, `[N]` floats, initially 1.
    pub running_var: Span,
    /// Training batches seen, one float (PyTorch stores an int64).
    pub num_batches_tracked: Span,
    config: BatchNormConfig,
    training: bool,
}

impl<const N: usize> BatchNorm1d<N> {
    /// A layer with PyTorch's defaults ([`BatchNormConfig::new`]).
    pub fn new<B: Backend>(mem: &mut Memory<'_, B>) -> Result<Self> {
        BatchNormConfig::new().init(mem)
    }

    /// Its settings.
    pub fn config(&self) -> BatchNormConfig {
        self.config
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The statistics and mode its forward pass records.
    pub fn stats(&self) -> BatchNormStats {
        BatchNormStats {
            running_mean: self.running_mean,
            running_var: self.running_var,
            num_batches_tracked: self.num_batches_tracked,
            eps: self.config.eps,
            momentum: self.config.momentum,
            training: self.training,
        }
    }
}

impl<const N: usize> Build for BatchNorm1d<N> {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, _rng: &mut Rng) -> Result<Self> {
        Self::new(mem)
    }
}

impl<const N: usize> Footprint for BatchNorm1d<N> {
    const PARAMS: usize = 2 * N;
    // Running mean, running variance and the batch count.
    const BUFFERS: usize = 2 * N + 1;
    // γ, β and the normalisation.
    const NODES: usize = 3;
    const IN_FEATURES: Option<usize> = Some(N);
    const OUT_FEATURES: Option<usize> = Some(N);
    // One [batch, N] value and its gradient.
    const SCRATCH_FIXED: usize = 2 * N;
    const SCRATCH_PER_FEATURE: usize = 0;
}

impl<const N: usize> Module for BatchNorm1d<N> {
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        name.with("weight", |n| {
            f(&ParamInfo {
                name: n.as_str(),
                kind: ParamKind::Weight,
                dims: self.weight.dims(),
                param: self.weight.into(),
            })
        });
        name.with("bias", |n| {
            f(&ParamInfo {
                name: n.as_str(),
                kind: ParamKind::Bias,
                dims: self.bias.dims(),
                param: self.bias.into(),
            })
        });
    }

    fn visit_buffers(&self, name: &mut Name, f: &mut dyn FnMut(&BufferInfo<'_>)) {
        for (seg, value) in [
            ("running_mean", self.running_mean),
            ("running_var", self.running_var),
        ] {
            name.with(seg, |n| {
                f(&BufferInfo {
                    name: n.as_str(),
                    dims: crate::shape::Shape::dims_slice(&(Const::<N>,)),
                    value,
                })
            });
        }
        name.with("num_batches_tracked", |n| {
            f(&BufferInfo {
                name: n.as_str(),
                dims: crate::shape::Shape::dims_slice(&()),
                value: self.num_batches_tracked,
            })
        });
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        write!(f, "BatchNorm1d({N}, eps=")?;
        write_py_float(f, self.config.eps)?;
        write!(
            f,
            ", momentum={}, affine=True, track_running_stats=True)",
            self.config.momentum
        )
    }
}

/// Writes `v` as Python's `repr` does for the usual settings: `1e-05`
/// below `1e-4`, `0.001` above.
fn write_py_float(f: &mut fmt::Formatter<'_>, v: f32) -> fmt::Result {
    use core::fmt::Write;
    if v == 0.0 || v.abs() >= 1e-4 {
        return write!(f, "{v}");
    }
    let mut s: heapless::String<32> = heapless::String::new();
    write!(s, "{v:e}")?;
    match s.split_once('e') {
        // A one-digit exponent gets Python's leading zero: `1e-5` → `1e-05`.
        Some((m, e)) if e.len() == 2 && e.starts_with('-') => write!(f, "{m}e-0{}", &e[1..]),
        _ => f.write_str(&s),
    }
}

impl<'t, R: Dim, const N: usize, B: Backend> LayerInput<BatchNorm1d<N>>
    for Tensor<'t, (R, Const<N>), B>
{
    type Output = Self;
    fn run(self, layer: &BatchNorm1d<N>) -> Self {
        let g = self.tape();
        self.batch_norm(g.param(&layer.weight), g.param(&layer.bias), layer.stats())
    }
}

impl<X: LayerInput<Self>, const N: usize> Forward<X> for BatchNorm1d<N> {
    type Output = X::Output;
    fn forward(&self, x: X) -> Self::Output {
        x.run(self)
    }
}
