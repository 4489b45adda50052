//! Convolution and pooling layers, with PyTorch's names, weight layouts,
//! initialisation and `print(model)` lines: [`Conv2d`], [`Conv1d`],
//! [`MaxPool2d`], [`AvgPool2d`], [`MaxPool1d`], [`AvgPool1d`] and
//! [`GlobalAvgPool2d`].
//!
//! Channels, kernel, stride and padding are part of a layer's type; the
//! spatial sizes are the input's (its dimensions may be `Const` or run-time
//! `usize`; the output's are run-time). A channel count that does not match
//! the previous layer's is a compile error at the layer.
//!
//! **Memory budgets.** The scratch a convolution needs depends on its
//! input's spatial size, which the type does not hold yet: the
//! [`Footprint`] of these layers counts parameters and graph nodes exactly,
//! and [`train_budget`](super::train_budget) of a model that contains one
//! does not compile (its scratch is [`SCRATCH_UNKNOWN`](super::SCRATCH_UNKNOWN),
//! and the budget's evaluation fails with a message that says why). Size such an arena from a step's
//! [`Graph::peak`](crate::Graph::peak).
//!
//! **Deployment.** The deployable format holds dense layers: exporting a
//! model with these layers is an error that names the layer
//! (`deploy::plan`), never a file without them.
//!
//! For options beyond the type's (dilation, groups, asymmetric or SAME
//! padding), call [`Tensor::conv2d`] with [`ConvOptions`] in a derived
//! model's `forward`, with the weight as a [`Param`] field.

use super::{Build, Footprint, Forward, LayerInput, Module, Name, ParamInfo, ParamKind};
use crate::backend::{Backend, Padding};
use crate::error::Result;
use crate::memory::{Memory, Param};
use crate::ops::conv::ConvOptions;
use crate::ops::pool::PoolOptions;
use crate::rng::Rng;
use crate::shape::{Const, Dim, Rank1, Rank3, Rank4};
use crate::tensor::Tensor;
use core::fmt;

/// What the scratch constants of a layer whose memory depends on its
/// input's spatial size say when a budget asks for them.
pub(crate) const SPATIAL: &str = "a convolution or pooling layer's scratch depends on its input's height and width, which its type does not hold: size the arena from Graph::peak";

macro_rules! spatial_footprint {
    ($params:expr, $nodes:expr) => {
        const PARAMS: usize = $params;
        const NODES: usize = $nodes;
        const IN_FEATURES: Option<usize> = None;
        const OUT_FEATURES: Option<usize> = None;
        const SCRATCH_FIXED: usize = super::SCRATCH_UNKNOWN;
        const SCRATCH_PER_FEATURE: usize = super::SCRATCH_UNKNOWN;
    };
}

/// Weight and bias drawn from `U(-1/√fan_in, 1/√fan_in)`, as PyTorch's
/// `reset_parameters` of a convolution does (Kaiming uniform with
/// `a = √5`).
fn uniform_fan_in<S1: crate::shape::ConstShape, S2: crate::shape::ConstShape, B: Backend>(
    fan_in: usize,
    mem: &mut Memory<'_, B>,
    rng: &mut Rng,
) -> Result<(Param<S1>, Param<S2>)> {
    let bound = 1.0 / libm::sqrtf(fan_in.max(1) as f32);
    let weight = mem.param_from_fn(|_| rng.uniform_in(-bound, bound))?;
    let bias = mem.param_from_fn(|_| rng.uniform_in(-bound, bound))?;
    Ok((weight, bias))
}

/// Visits a convolution's `weight` and `bias`.
fn visit_weight_bias(
    weight: crate::memory::ParamRef,
    wdims: crate::shape::Dims,
    bias: crate::memory::ParamRef,
    bdims: crate::shape::Dims,
    name: &mut Name,
    f: &mut dyn FnMut(&ParamInfo<'_>),
) {
    name.with("weight", |n| {
        f(&ParamInfo {
            name: n.as_str(),
            kind: ParamKind::Weight,
            dims: wdims,
            param: weight,
        })
    });
    name.with("bias", |n| {
        f(&ParamInfo {
            name: n.as_str(),
            kind: ParamKind::Bias,
            dims: bdims,
            param: bias,
        })
    });
}

/// A 2-D convolution, PyTorch's `nn.Conv2d(I, O, K, stride=S, padding=P)`:
/// weight `[O, I, K, K]`, bias `[O]`, on `[batch, I, h, w]` inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d<
    const I: usize,
    const O: usize,
    const K: usize,
    const S: usize = 1,
    const P: usize = 0,
> {
    /// The weight, `[O, I, K, K]`.
    pub weight: Param<Rank4<O, I, K, K>>,
    /// The bias, `[O]`.
    pub bias: Param<Rank1<O>>,
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize>
    Conv2d<I, O, K, S, P>
{
    /// The options [`Tensor::conv2d`] runs with.
    pub const OPTIONS: ConvOptions = ConvOptions {
        stride: [S, S],
        padding: Padding::Symmetric([P, P]),
        dilation: [1, 1],
        groups: 1,
    };
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize> Build
    for Conv2d<I, O, K, S, P>
{
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        let (weight, bias) = uniform_fan_in(I * K * K, mem, rng)?;
        Ok(Conv2d { weight, bias })
    }
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize> Footprint
    for Conv2d<I, O, K, S, P>
{
    // Weight, bias, and the composition of `Tensor::conv2d`: unfold, three
    // views, the product, the bias' broadcast and sum, the swap and a view.
    spatial_footprint!(O * I * K * K + O, 12);
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize> Module
    for Conv2d<I, O, K, S, P>
{
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        let (w, b) = (self.weight, self.bias);
        visit_weight_bias(w.into(), w.dims(), b.into(), b.dims(), name, f);
    }

    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        write!(
            f,
            "Conv2d({I}, {O}, kernel_size=({K}, {K}), stride=({S}, {S})"
        )?;
        if P != 0 {
            write!(f, ", padding=({P}, {P})")?;
        }
        f.write_str(")")
    }
}

impl<
        't,
        N: Dim,
        H: Dim,
        W: Dim,
        B: Backend,
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
    > LayerInput<Conv2d<I, O, K, S, P>> for Tensor<'t, (N, Const<I>, H, W), B>
{
    type Output = Tensor<'t, (N, Const<O>, usize, usize), B>;
    fn run(self, layer: &Conv2d<I, O, K, S, P>) -> Self::Output {
        let g = self.tape();
        let options = Conv2d::<I, O, K, S, P>::OPTIONS;
        self.conv2d(g.param(&layer.weight), Some(g.param(&layer.bias)), options)
    }
}

/// A 1-D convolution, PyTorch's `nn.Conv1d(I, O, K, stride=S, padding=P)`:
/// weight `[O, I, K]`, bias `[O]`, on `[batch, I, length]` inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1d<
    const I: usize,
    const O: usize,
    const K: usize,
    const S: usize = 1,
    const P: usize = 0,
> {
    /// The weight, `[O, I, K]`.
    pub weight: Param<Rank3<O, I, K>>,
    /// The bias, `[O]`.
    pub bias: Param<Rank1<O>>,
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize> Build
    for Conv1d<I, O, K, S, P>
{
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        let (weight, bias) = uniform_fan_in(I * K, mem, rng)?;
        Ok(Conv1d { weight, bias })
    }
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize> Footprint
    for Conv1d<I, O, K, S, P>
{
    // Conv2d's nodes and the 1-D views around them.
    spatial_footprint!(O * I * K + O, 15);
}

impl<const I: usize, const O: usize, const K: usize, const S: usize, const P: usize> Module
    for Conv1d<I, O, K, S, P>
{
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        let (w, b) = (self.weight, self.bias);
        visit_weight_bias(w.into(), w.dims(), b.into(), b.dims(), name, f);
    }

    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        write!(f, "Conv1d({I}, {O}, kernel_size=({K},), stride=({S},)")?;
        if P != 0 {
            write!(f, ", padding=({P},)")?;
        }
        f.write_str(")")
    }
}

impl<
        't,
        N: Dim,
        L: Dim,
        B: Backend,
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
    > LayerInput<Conv1d<I, O, K, S, P>> for Tensor<'t, (N, Const<I>, L), B>
{
    type Output = Tensor<'t, (N, Const<O>, usize), B>;
    fn run(self, layer: &Conv1d<I, O, K, S, P>) -> Self::Output {
        let g = self.tape();
        let options = ConvOptions {
            stride: [1, S],
            padding: Padding::Symmetric([0, P]),
            ..ConvOptions::default()
        };
        self.conv1d(g.param(&layer.weight), Some(g.param(&layer.bias)), options)
    }
}

/// Declares a pooling layer: its type, `Build`, `Footprint`, `Module` and
/// the tensors it takes.
macro_rules! pool_layer {
    (
        $(#[$doc:meta])* $name:ident, $rank:tt, $method:ident, $nodes:expr,
        |$f:ident| $fmt:expr
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name<const K: usize, const S: usize = K, const P: usize = 0>;

        impl<const K: usize, const S: usize, const P: usize> $name<K, S, P> {
            /// The window [`Tensor`]'s pooling runs with.
            pub const OPTIONS: PoolOptions = PoolOptions::new([K, K])
                .stride([S, S])
                .padding(Padding::Symmetric([P, P]));
        }

        impl<const K: usize, const S: usize, const P: usize> Build for $name<K, S, P> {
            fn build<B: Backend>(_mem: &mut Memory<'_, B>, _rng: &mut Rng) -> Result<Self> {
                Ok($name)
            }
        }

        impl<const K: usize, const S: usize, const P: usize> Footprint for $name<K, S, P> {
            spatial_footprint!(0, $nodes);
        }

        impl<const K: usize, const S: usize, const P: usize> Module for $name<K, S, P> {
            fn visit(&self, _name: &mut Name, _f: &mut dyn FnMut(&ParamInfo<'_>)) {}
            fn fmt_module(&self, $f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
                $fmt
            }
        }

        pool_layer!(@input $name, $rank, $method);

        impl<X: LayerInput<Self>, const K: usize, const S: usize, const P: usize> Forward<X>
            for $name<K, S, P>
        {
            type Output = X::Output;
            fn forward(&self, x: X) -> X::Output {
                x.run(self)
            }
        }
    };
    (@input $name:ident, 2, $method:ident) => {
        impl<'t, N: Dim, C: Dim, H: Dim, W: Dim, B: Backend, const K: usize, const S: usize, const P: usize>
            LayerInput<$name<K, S, P>> for Tensor<'t, (N, C, H, W), B>
        {
            type Output = Tensor<'t, (N, C, usize, usize), B>;
            fn run(self, _layer: &$name<K, S, P>) -> Self::Output {
                self.$method($name::<K, S, P>::OPTIONS)
            }
        }
    };
    (@input $name:ident, 1, $method:ident) => {
        impl<'t, N: Dim, C: Dim, L: Dim, B: Backend, const K: usize, const S: usize, const P: usize>
            LayerInput<$name<K, S, P>> for Tensor<'t, (N, C, L), B>
        {
            type Output = Tensor<'t, (N, C, usize), B>;
            fn run(self, _layer: &$name<K, S, P>) -> Self::Output {
                self.$method($name::<K, S, P>::OPTIONS)
            }
        }
    };
}

pool_layer!(
    /// 2-D max pooling, PyTorch's `nn.MaxPool2d(K, stride=S, padding=P)`
    /// (stride defaults to the kernel).
    MaxPool2d, 2, max_pool2d, 1,
    |f| write!(f, "MaxPool2d(kernel_size={K}, stride={S}, padding={P}, dilation=1, ceil_mode=False)")
);
pool_layer!(
    /// 2-D average pooling, PyTorch's `nn.AvgPool2d(K, stride=S,
    /// padding=P)`, counting the padding's zeros as PyTorch does by default.
    AvgPool2d, 2, avg_pool2d, 5,
    |f| write!(f, "AvgPool2d(kernel_size={K}, stride={S}, padding={P})")
);
pool_layer!(
    /// 1-D max pooling, PyTorch's `nn.MaxPool1d(K, stride=S, padding=P)`.
    MaxPool1d, 1, max_pool1d, 3,
    |f| write!(f, "MaxPool1d(kernel_size={K}, stride={S}, padding={P}, dilation=1, ceil_mode=False)")
);
pool_layer!(
    /// 1-D average pooling, PyTorch's `nn.AvgPool1d(K, stride=S, padding=P)`.
    AvgPool1d, 1, avg_pool1d, 7,
    |f| write!(f, "AvgPool1d(kernel_size=({K},), stride=({S},), padding=({P},))")
);

/// Global average pooling: the mean of each channel of `[batch, channels,
/// h, w]`, flattened to `[batch, channels]` (PyTorch's
/// `nn.AdaptiveAvgPool2d(1)` followed by `nn.Flatten()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalAvgPool2d;

impl Build for GlobalAvgPool2d {
    fn build<B: Backend>(_mem: &mut Memory<'_, B>, _rng: &mut Rng) -> Result<Self> {
        Ok(GlobalAvgPool2d)
    }
}

impl Footprint for GlobalAvgPool2d {
    spatial_footprint!(0, 3);
}

impl Module for GlobalAvgPool2d {
    fn visit(&self, _name: &mut Name, _f: &mut dyn FnMut(&ParamInfo<'_>)) {}
    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        f.write_str("GlobalAvgPool2d(AdaptiveAvgPool2d(output_size=1), Flatten())")
    }
}

impl<'t, N: Dim, C: Dim, H: Dim, W: Dim, B: Backend> LayerInput<GlobalAvgPool2d>
    for Tensor<'t, (N, C, H, W), B>
{
    type Output = Tensor<'t, (N, C), B>;
    fn run(self, _layer: &GlobalAvgPool2d) -> Self::Output {
        self.global_avg_pool2d()
    }
}

/// `Forward` for a layer through its [`LayerInput`]s (one impl per layer,
/// for the one-error-per-mismatch reason given there).
macro_rules! forward_via_input {
    ($($layer:ident),*) => {$(
        impl<X: LayerInput<Self>, const I: usize, const O: usize, const K: usize, const S: usize, const P: usize>
            Forward<X> for $layer<I, O, K, S, P>
        {
            type Output = X::Output;
            fn forward(&self, x: X) -> X::Output {
                x.run(self)
            }
        }
    )*};
}
forward_via_input!(Conv2d, Conv1d);

impl<X: LayerInput<Self>> Forward<X> for GlobalAvgPool2d {
    type Output = X::Output;
    fn forward(&self, x: X) -> X::Output {
        x.run(self)
    }
}
