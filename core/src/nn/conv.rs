//! Convolution and pooling layers, with PyTorch's names, weight layouts,
//! initialisation and `print(model)` lines: [`Conv2d`], [`Conv1d`],
//! [`MaxPool2d`], [`AvgPool2d`], [`MaxPool1d`], [`AvgPool1d`] and
//! [`GlobalAvgPool2d`]; [`Conv2dWith`] and [`DepthwiseConv2d`] for
//! non-square kernels, SAME or asymmetric padding, dilation and depthwise
//! convolutions, whose options are a run-time field.
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
//! For options beyond the type's (dilation, asymmetric or SAME padding), use
//! [`Conv2dWith`] (any kernel `KH × KW`, one group) or [`DepthwiseConv2d`]
//! (`groups = C`): their [`ConvOptions`] are a field set when the layer is
//! made, because a [`Padding`] cannot be a const parameter on stable Rust
//! and the spatial sizes they change are run-time values anyway. Other
//! group counts: call [`Tensor::conv2d`] in a derived model's `forward`,
//! with the weight as a [`Param`] field.

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
    let bound = 1.0 / crate::sqrt::sqrtf(fan_in.max(1) as f32);
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
    // Weight, bias, and the composition of `Tensor::conv2d`: unfold, the
    // weight's view, the fused product, a view, the transpose and a view.
    spatial_footprint!(O * I * K * K + O, 8);
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
    spatial_footprint!(O * I * K + O, 11);
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
    // The view, the sum, the scale and the view that names the layer.
    spatial_footprint!(0, 4);
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

/// Writes PyTorch's `stride=(.., ..)`, `padding=...` and `dilation=...`
/// parts of a convolution's `print` line (`padding=same` as PyTorch writes
/// it; an asymmetric padding as `padding=(top, bottom, left, right)`, which
/// PyTorch writes as a `ZeroPad2d` before the convolution).
fn fmt_options(f: &mut fmt::Formatter<'_>, o: &ConvOptions) -> fmt::Result {
    write!(f, ", stride=({}, {})", o.stride[0], o.stride[1])?;
    match o.padding {
        Padding::Valid | Padding::Symmetric([0, 0]) => {}
        Padding::Symmetric([h, w]) => write!(f, ", padding=({h}, {w})")?,
        Padding::Same => f.write_str(", padding=same")?,
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => write!(f, ", padding=({top}, {bottom}, {left}, {right})")?,
    }
    if o.dilation != [1, 1] {
        write!(f, ", dilation=({}, {})", o.dilation[0], o.dilation[1])?;
    }
    Ok(())
}

/// A 2-D convolution of one group with a `KH × KW` kernel and run-time
/// [`ConvOptions`] (stride, any [`Padding`] including TFLite's SAME,
/// dilation): PyTorch's `nn.Conv2d(I, O, (KH, KW), stride, padding,
/// dilation)`, weight `[O, I, KH, KW]`, bias `[O]`, on `[batch, I, h, w]`
/// inputs. [`Conv2d`] is the same with its options in its type.
///
/// [`Build::build`] gives PyTorch's defaults (stride 1, no padding);
/// [`Conv2dWith::new`] takes the options, in a derived model with
/// `#[module(init = Conv2dWith::new(options, mem, rng))]`.
///
/// ```
/// use ember_nn_core::nn::{self, Conv2dWith, Forward};
/// use ember_nn_core::prelude::*;
/// let mut buf = [0.0f32; 4096];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// // MLPerf Tiny's keyword-spotting stem: 10×4, stride 2, TFLite's SAME.
/// let options = ConvOptions { stride: [2, 2], padding: Padding::Same, ..ConvOptions::default() };
/// let conv = Conv2dWith::<1, 8, 10, 4>::new(options, &mut mem, &mut Rng::new(0))?;
/// assert_eq!(
///     nn::summary(&conv).to_string().lines().next(),
///     Some("Conv2d(1, 8, kernel_size=(10, 4), stride=(2, 2), padding=same)")
/// );
/// let g = Graph::new(&mut mem);
/// let y = conv.forward(g.from_fn((1usize, Const::<1>, 49usize, 10usize), |_| 0.0));
/// assert_eq!(y.dims().as_slice(), &[1, 8, 25, 5]);
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dWith<const I: usize, const O: usize, const KH: usize, const KW: usize> {
    /// The weight, `[O, I, KH, KW]`.
    pub weight: Param<Rank4<O, I, KH, KW>>,
    /// The bias, `[O]`.
    pub bias: Param<Rank1<O>>,
    /// Stride, padding and dilation (`groups` is always 1).
    pub options: ConvOptions,
}

impl<const I: usize, const O: usize, const KH: usize, const KW: usize> Conv2dWith<I, O, KH, KW> {
    /// A layer running with `options` (their `groups` is set to 1), its
    /// weight and bias drawn as PyTorch does.
    pub fn new<B: Backend>(
        options: ConvOptions,
        mem: &mut Memory<'_, B>,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (weight, bias) = uniform_fan_in(I * KH * KW, mem, rng)?;
        Ok(Conv2dWith {
            weight,
            bias,
            options: ConvOptions {
                groups: 1,
                ..options
            },
        })
    }
}

impl<const I: usize, const O: usize, const KH: usize, const KW: usize> Build
    for Conv2dWith<I, O, KH, KW>
{
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Self::new(ConvOptions::default(), mem, rng)
    }
}

impl<const I: usize, const O: usize, const KH: usize, const KW: usize> Footprint
    for Conv2dWith<I, O, KH, KW>
{
    // `Conv2d`'s.
    spatial_footprint!(O * I * KH * KW + O, 8);
}

impl<const I: usize, const O: usize, const KH: usize, const KW: usize> Module
    for Conv2dWith<I, O, KH, KW>
{
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        let (w, b) = (self.weight, self.bias);
        visit_weight_bias(w.into(), w.dims(), b.into(), b.dims(), name, f);
    }

    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        write!(f, "Conv2d({I}, {O}, kernel_size=({KH}, {KW})")?;
        fmt_options(f, &self.options)?;
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
        const KH: usize,
        const KW: usize,
    > LayerInput<Conv2dWith<I, O, KH, KW>> for Tensor<'t, (N, Const<I>, H, W), B>
{
    type Output = Tensor<'t, (N, Const<O>, usize, usize), B>;
    fn run(self, layer: &Conv2dWith<I, O, KH, KW>) -> Self::Output {
        let g = self.tape();
        self.conv2d(
            g.param(&layer.weight),
            Some(g.param(&layer.bias)),
            layer.options,
        )
    }
}

impl<X: LayerInput<Self>, const I: usize, const O: usize, const KH: usize, const KW: usize>
    Forward<X> for Conv2dWith<I, O, KH, KW>
{
    type Output = X::Output;
    fn forward(&self, x: X) -> X::Output {
        x.run(self)
    }
}

/// A depthwise 2-D convolution of `C` channels (`groups = C`, one filter
/// per channel) with a `KH × KW` kernel and run-time [`ConvOptions`]:
/// PyTorch's `nn.Conv2d(C, C, (KH, KW), stride, padding, dilation,
/// groups=C)`, weight `[C, 1, KH, KW]`, bias `[C]`, on `[batch, C, h, w]`
/// inputs (Keras's `DepthwiseConv2D` with `depth_multiplier=1`).
///
/// [`Build::build`] gives stride 1 and TFLite's SAME padding (the output
/// keeps the input's size), what depthwise-separable blocks use;
/// [`DepthwiseConv2d::new`] takes other options (their `groups` is set to
/// `C`).
///
/// ```
/// use ember_nn_core::nn::{self, Build, DepthwiseConv2d, Forward};
/// use ember_nn_core::prelude::*;
/// let mut buf = [0.0f32; 4096];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let dw = DepthwiseConv2d::<4, 3>::build(&mut mem, &mut Rng::new(0))?;
/// assert_eq!(
///     nn::summary(&dw).to_string().lines().next(),
///     Some("Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1), padding=same, groups=4)")
/// );
/// let g = Graph::new(&mut mem);
/// let y = dw.forward(g.from_fn((2usize, Const::<4>, 25usize, 5usize), |_| 0.0));
/// assert_eq!(y.dims().as_slice(), &[2, 4, 25, 5]);
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseConv2d<const C: usize, const KH: usize, const KW: usize = KH> {
    /// The weight, `[C, 1, KH, KW]`.
    pub weight: Param<Rank4<C, 1, KH, KW>>,
    /// The bias, `[C]`.
    pub bias: Param<Rank1<C>>,
    /// Stride, padding and dilation (`groups` is always `C`).
    pub options: ConvOptions,
}

impl<const C: usize, const KH: usize, const KW: usize> DepthwiseConv2d<C, KH, KW> {
    /// A layer running with `options` (their `groups` is set to `C`), its
    /// weight and bias drawn as PyTorch does (fan-in `KH · KW`).
    pub fn new<B: Backend>(
        options: ConvOptions,
        mem: &mut Memory<'_, B>,
        rng: &mut Rng,
    ) -> Result<Self> {
        let (weight, bias) = uniform_fan_in(KH * KW, mem, rng)?;
        Ok(DepthwiseConv2d {
            weight,
            bias,
            options: ConvOptions {
                groups: C,
                ..options
            },
        })
    }
}

impl<const C: usize, const KH: usize, const KW: usize> Build for DepthwiseConv2d<C, KH, KW> {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        let same = ConvOptions {
            padding: Padding::Same,
            ..ConvOptions::default()
        };
        Self::new(same, mem, rng)
    }
}

impl<const C: usize, const KH: usize, const KW: usize> Footprint for DepthwiseConv2d<C, KH, KW> {
    // Weight, bias, and the grouped composition of `Tensor::conv2d`:
    // unfold, the batched product, the transpose, the axes' swap, the
    // bias's broadcast and sum, and the views of the rows, the weight and
    // the results between them (a test counts them).
    spatial_footprint!(C * KH * KW + C, 16);
}

impl<const C: usize, const KH: usize, const KW: usize> Module for DepthwiseConv2d<C, KH, KW> {
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        let (w, b) = (self.weight, self.bias);
        visit_weight_bias(w.into(), w.dims(), b.into(), b.dims(), name, f);
    }

    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        write!(f, "Conv2d({C}, {C}, kernel_size=({KH}, {KW})")?;
        fmt_options(f, &self.options)?;
        write!(f, ", groups={C})")
    }
}

impl<'t, N: Dim, H: Dim, W: Dim, B: Backend, const C: usize, const KH: usize, const KW: usize>
    LayerInput<DepthwiseConv2d<C, KH, KW>> for Tensor<'t, (N, Const<C>, H, W), B>
{
    type Output = Tensor<'t, (N, Const<C>, usize, usize), B>;
    fn run(self, layer: &DepthwiseConv2d<C, KH, KW>) -> Self::Output {
        let g = self.tape();
        let options = ConvOptions {
            groups: C,
            ..layer.options
        };
        self.conv2d(g.param(&layer.weight), Some(g.param(&layer.bias)), options)
    }
}

impl<X: LayerInput<Self>, const C: usize, const KH: usize, const KW: usize> Forward<X>
    for DepthwiseConv2d<C, KH, KW>
{
    type Output = X::Output;
    fn forward(&self, x: X) -> X::Output {
        x.run(self)
    }
}

impl<X: LayerInput<Self>> Forward<X> for GlobalAvgPool2d {
    type Output = X::Output;
    fn forward(&self, x: X) -> X::Output {
        x.run(self)
    }
}
