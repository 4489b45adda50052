//! Normalisation layers: [`BatchNorm1d`] and [`BatchNorm2d`], one generic
//! [`BatchNorm`] type whose second parameter is the number of spatial
//! dimensions it expects after `[N, C]`.

use super::{
    BufferInfo, Build, Footprint, Forward, LayerInput, Module, Name, ParamInfo, ParamKind,
};
use crate::backend::{Backend, Span};
use crate::error::Result;
use crate::memory::{Memory, Param};
use crate::ops::batch_norm::BatchNormStats;
use crate::rng::Rng;
use crate::shape::{Const, Dim, Rank1, Shape};
use crate::tensor::Tensor;
use core::fmt;

/// The settings of a [`BatchNorm1d`] or [`BatchNorm2d`], PyTorch's
/// defaults unless changed: `eps = 1e-5`, `momentum = 0.1`.
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

    /// A layer of `C` channels (features) with these settings: `γ = 1`,
    /// `β = 0`, running mean 0, running variance 1, in training mode. The
    /// layer's type says which: [`BatchNorm1d<C>`] or [`BatchNorm2d<C>`].
    pub fn init<const C: usize, const D: usize, B: Backend>(
        self,
        mem: &mut Memory<'_, B>,
    ) -> Result<BatchNorm<C, D>> {
        const {
            assert!(
                D == 1 || D == 2,
                "BatchNorm<C, D>: D is 1 (BatchNorm1d) or 2 (BatchNorm2d)"
            )
        };
        let weight = mem.param_from_fn(|_| 1.0)?;
        let bias = mem.param_zeros()?;
        let running_mean = mem.alloc(C)?;
        let running_var = mem.alloc(C)?;
        mem.fill(running_var, 1.0)?;
        let num_batches_tracked = mem.alloc(1)?;
        Ok(BatchNorm {
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

/// Batch normalisation per channel, as PyTorch's `nn.BatchNorm1d(C)`
/// (`D = 1`, [`BatchNorm1d`]) and `nn.BatchNorm2d(C)` (`D = 2`,
/// [`BatchNorm2d`]): `y = (x − μ) / √(σ² + eps) · γ + β` per channel
/// (dimension 1 of the input), the statistics taken over the batch and the
/// spatial positions.
///
/// - Training mode (the default, [`Module::train`]): `μ` and `σ²` are the
///   batch's mean and biased variance; `running_mean` and `running_var`
///   move towards the batch's mean and *unbiased* variance by `momentum`,
///   and `num_batches_tracked` counts the batches. A batch with one value
///   per channel (one row of `[N, C]`, or `N · H · W == 1`) is an
///   [`Error::InvalidArgument`](crate::Error::InvalidArgument) recorded on
///   the graph (PyTorch's "Expected more than 1 value per channel when
///   training").
/// - Evaluation mode ([`Module::eval`]): the running statistics.
///
/// Parameters `weight` (γ) and `bias` (β) are trained; the running
/// statistics are buffers ([`Module::visit_buffers`]): saved and loaded
/// with the model under PyTorch's names, never seen by an optimizer.
/// Export folds a [`BatchNorm1d`] on `[N, C]` input in evaluation mode
/// right after a `Linear` into that layer's weights.
///
/// Use it through its aliases; `D` is the number of spatial dimensions
/// after `[N, C]` (a `BatchNorm<C, 3>` does not build).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm<const C: usize, const D: usize> {
    /// γ, `[C]`, initially 1.
    pub weight: Param<Rank1<C>>,
    /// β, `[C]`, initially 0.
    pub bias: Param<Rank1<C>>,
    /// The running mean, `[C]` floats, initially 0.
    pub running_mean: Span,
    /// The running variance, `[C]` floats, initially 1.
    pub running_var: Span,
    /// Training batches seen, one float (PyTorch stores an int64).
    pub num_batches_tracked: Span,
    config: BatchNormConfig,
    training: bool,
}

/// PyTorch's `nn.BatchNorm1d(N)`: a [`BatchNorm`] of `N` features on
/// `[batch, N]` input, or of `N` channels on `[batch, N, L]` input (the
/// statistics of a channel over its `batch · L` values).
///
/// ```
/// use ember_nn_core::nn::{BatchNorm1d, Forward};
/// use ember_nn_core::prelude::*;
/// let mut buf = [0.0f32; 64];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let bn = BatchNorm1d::<2>::new(&mut mem)?;
/// let g = Graph::new(&mut mem);
/// // [2, 2]: feature 0 is 2 ± 1, feature 1 is constant.
/// let y = bn.forward(g.tensor([[1.0f32, 5.0], [3.0, 5.0]]));
/// // [1, 2, 2]: the same values per channel, along L.
/// let z = bn.forward(g.tensor([[[1.0f32, 3.0], [5.0, 5.0]]]));
/// let one = 1.0 / (1.0f32 + 1e-5).sqrt(); // (x − μ) / √(σ² + eps) at ±1
/// let (y, z) = (y.to_array()?, z.to_array()?);
/// assert!((y[0][0] + one).abs() < 1e-6 && (y[1][0] - one).abs() < 1e-6);
/// assert!((z[0][0][0] + one).abs() < 1e-6 && (z[0][0][1] - one).abs() < 1e-6);
/// assert_eq!((y[0][1], z[0][1]), (0.0, [0.0, 0.0]));
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
pub type BatchNorm1d<const N: usize> = BatchNorm<N, 1>;

/// PyTorch's `nn.BatchNorm2d(C)`: a [`BatchNorm`] of `C` channels on
/// `[batch, C, H, W]` input, the statistics of a channel over its
/// `batch · H · W` values. Its buffers, names, settings and modes are
/// those of [`BatchNorm1d`].
///
/// ```
/// use ember_nn_core::nn::{self, BatchNorm2d, Forward, Module};
/// use ember_nn_core::prelude::*;
/// let mut buf = [0.0f32; 64];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let mut bn = BatchNorm2d::<3>::new(&mut mem)?;
/// bn.eval();
/// let g = Graph::new(&mut mem);
/// // [1, 3, 1, 2]: running mean 0 and variance 1 in evaluation mode.
/// let y = bn.forward(g.tensor([[[[2.0f32, 4.0]], [[0.0, 1.0]], [[-1.0, 0.0]]]]));
/// assert_eq!(y.dims().as_slice(), &[1, 3, 1, 2]);
/// assert!((y.to_array()?[0][0][0][1] - 4.0 / (1.0f32 + 1e-5).sqrt()).abs() < 1e-6);
/// assert!(nn::summary(&bn).to_string().starts_with(
///     "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
/// ));
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
pub type BatchNorm2d<const C: usize> = BatchNorm<C, 2>;

impl<const C: usize, const D: usize> BatchNorm<C, D> {
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

impl<const C: usize, const D: usize> Build for BatchNorm<C, D> {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, _rng: &mut Rng) -> Result<Self> {
        Self::new(mem)
    }
}

impl<const C: usize, const D: usize> Footprint for BatchNorm<C, D> {
    const PARAMS: usize = 2 * C;
    // Running mean, running variance and the batch count.
    const BUFFERS: usize = 2 * C + 1;
    // γ, β and the normalisation.
    const NODES: usize = 3;
    // A `BatchNorm1d` fixes its input's width on `[batch, C]` input; a
    // sample of `[batch, C, H, W]` is `C · H · W` wide, which the type
    // does not know.
    const IN_FEATURES: Option<usize> = if D == 1 { Some(C) } else { None };
    const OUT_FEATURES: Option<usize> = None;
    // One value of the input's shape and its gradient: two floats per
    // input float of a sample (`2 · C` on `[batch, C]`, `2 · C · L` on
    // `[batch, C, L]`).
    const SCRATCH_FIXED: usize = 0;
    const SCRATCH_PER_FEATURE: usize = 2;
}

impl<const C: usize, const D: usize> Module for BatchNorm<C, D> {
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
                    dims: (Const::<C>,).dims_slice(),
                    value,
                })
            });
        }
        name.with("num_batches_tracked", |n| {
            f(&BufferInfo {
                name: n.as_str(),
                dims: ().dims_slice(),
                value: self.num_batches_tracked,
            })
        });
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        write!(f, "BatchNorm{D}d({C}, eps=")?;
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

impl<'t, R: Dim, const C: usize, B: Backend> LayerInput<BatchNorm1d<C>>
    for Tensor<'t, (R, Const<C>), B>
{
    type Output = Self;
    fn run(self, layer: &BatchNorm1d<C>) -> Self {
        let g = self.tape();
        self.batch_norm(g.param(&layer.weight), g.param(&layer.bias), layer.stats())
    }
}

/// `[batch, C, L]` input, as PyTorch's `nn.BatchNorm1d` takes.
impl<'t, R: Dim, const C: usize, L: Dim, B: Backend> LayerInput<BatchNorm1d<C>>
    for Tensor<'t, (R, Const<C>, L), B>
{
    type Output = Self;
    fn run(self, layer: &BatchNorm1d<C>) -> Self {
        let g = self.tape();
        self.batch_norm(g.param(&layer.weight), g.param(&layer.bias), layer.stats())
    }
}

impl<'t, R: Dim, const C: usize, H: Dim, W: Dim, B: Backend> LayerInput<BatchNorm2d<C>>
    for Tensor<'t, (R, Const<C>, H, W), B>
{
    type Output = Self;
    fn run(self, layer: &BatchNorm2d<C>) -> Self {
        let g = self.tape();
        self.batch_norm(g.param(&layer.weight), g.param(&layer.bias), layer.stats())
    }
}

impl<X: LayerInput<Self>, const C: usize, const D: usize> Forward<X> for BatchNorm<C, D> {
    type Output = X::Output;
    fn forward(&self, x: X) -> Self::Output {
        x.run(self)
    }
}
