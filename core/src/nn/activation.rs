//! Activation layers, `Flatten`, `Dropout`, and [`Custom`]: an operation
//! of your own as a layer.

use super::{
    Build, BuildWithP, Footprint, Forward, Layer, LayerInput, LayerKind, Module, Name, ParamInfo,
    Signature,
};
use crate::backend::activation::Activation;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::memory::Memory;
use crate::ops::custom::CustomOp;
use crate::rng::Rng;
use crate::shape::{Const, HasFirst, Shape};
use crate::tensor::Tensor;
use core::cell::Cell;
use core::fmt;

macro_rules! elementwise_footprint {
    ([$($generics:tt)*] $name:ty, $nodes:expr, $per_feature:expr) => {
        impl<$($generics)*> Footprint for $name {
            const PARAMS: usize = 0;
            const NODES: usize = $nodes;
            const IN_FEATURES: Option<usize> = None;
            const OUT_FEATURES: Option<usize> = None;
            const SCRATCH_FIXED: usize = 0;
            const SCRATCH_PER_FEATURE: usize = $per_feature;
        }
    };
    ($name:ty, $nodes:expr, $per_feature:expr) => {
        elementwise_footprint!([] $name, $nodes, $per_feature);
    };
}

/// The footprint of a layer that records one node of its input's shape:
/// the node's value and its gradient per feature (every activation, and
/// [`Custom`]).
macro_rules! unary_footprint {
    ([$($generics:tt)*] $name:ty) => {
        elementwise_footprint!([$($generics)*] $name, 1, 2);
    };
    ($name:ty) => {
        elementwise_footprint!([] $name, 1, 2);
    };
}

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $method:ident, $print:literal, $kind:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        unary_footprint!($name);

        impl Module for $name {
            fn visit(&self, _name: &mut Name, _f: &mut dyn FnMut(&ParamInfo<'_>)) {}
            fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
                f.write_str($print)
            }
            fn layers(&self, f: &mut dyn FnMut(Layer)) {
                f(Layer::Activation(Activation::$kind))
            }
        }

        impl Build for $name {
            fn build<B: Backend>(_mem: &mut Memory<'_, B>, _rng: &mut Rng) -> Result<Self> {
                Ok($name)
            }
        }

        impl Signature for $name {
            fn signature(f: &mut dyn FnMut(LayerKind)) {
                f(LayerKind::Activation(Activation::$kind))
            }
        }

        impl<'t, S: Shape, B: Backend> LayerInput<$name> for Tensor<'t, S, B> {
            type Output = Self;
            fn run(self, _layer: &$name) -> Self {
                self.$method()
            }
        }

        impl<X: LayerInput<Self>> Forward<X> for $name {
            type Output = X::Output;
            fn forward(&self, x: X) -> Self::Output {
                x.run(self)
            }
        }
    };
}

activation!(
    /// `max(x, 0)`.
    ReLU, relu, "ReLU()", Relu);
activation!(
    /// The logistic sigmoid.
    Sigmoid, sigmoid, "Sigmoid()", Sigmoid);
activation!(
    /// `tanh x`.
    Tanh, tanh, "Tanh()", Tanh);
activation!(
    /// SELU with PyTorch's constants.
    SELU, selu, "SELU()", Selu);
activation!(
    /// `x · sigmoid(x)` (swish).
    SiLU, silu, "SiLU()", Silu);
activation!(
    /// GELU, exact erf form (PyTorch's default).
    GELU, gelu, "GELU(approximate='none')", Gelu);
activation!(
    /// GELU, tanh approximation.
    GELUTanh, gelu_tanh, "GELU(approximate='tanh')", GeluTanh);
activation!(
    /// `x / (1 + |x|)`.
    Softsign, softsign, "Softsign()", Softsign);
activation!(
    /// `ln(1 + eˣ)`.
    Softplus, softplus, "Softplus(beta=1.0, threshold=20.0)", Softplus);

macro_rules! parameterised_activation {
    ($(#[$doc:meta])* $name:ident, $field:ident, $default:expr, $method:ident, $print:literal, $kind:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct $name {
            #[doc = concat!("The `", stringify!($field), "` parameter.")]
            pub $field: f32,
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $field: $default }
            }
        }

        unary_footprint!($name);

        impl Module for $name {
            fn visit(&self, _name: &mut Name, _f: &mut dyn FnMut(&ParamInfo<'_>)) {}
            fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
                write!(f, $print, self.$field)
            }
            fn layers(&self, f: &mut dyn FnMut(Layer)) {
                f(Layer::Activation(Activation::$kind(self.$field)))
            }
        }

        impl Build for $name {
            fn build<B: Backend>(_mem: &mut Memory<'_, B>, _rng: &mut Rng) -> Result<Self> {
                Ok(Self::default())
            }
        }

        impl Signature for $name {
            fn signature(f: &mut dyn FnMut(LayerKind)) {
                f(LayerKind::Activation(Activation::$kind($default)))
            }
        }

        impl<'t, S: Shape, B: Backend> LayerInput<$name> for Tensor<'t, S, B> {
            type Output = Self;
            fn run(self, layer: &$name) -> Self {
                self.$method(layer.$field)
            }
        }

        impl<X: LayerInput<Self>> Forward<X> for $name {
            type Output = X::Output;
            fn forward(&self, x: X) -> Self::Output {
                x.run(self)
            }
        }
    };
}

parameterised_activation!(
    /// Leaky ReLU; the negative slope defaults to PyTorch's 0.01.
    LeakyReLU, negative_slope, 0.01, leaky_relu, "LeakyReLU(negative_slope={})", LeakyRelu);
parameterised_activation!(
    /// ELU; α defaults to 1.
    ELU, alpha, 1.0, elu, "ELU(alpha={})", Elu);

/// Flattens every dimension after the first into `N` features: `[b, 28, 28]` to `[b, 784]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flatten<const N: usize>;

impl<const N: usize> Footprint for Flatten<N> {
    const PARAMS: usize = 0;
    const NODES: usize = 1;
    const IN_FEATURES: Option<usize> = Some(N);
    const OUT_FEATURES: Option<usize> = Some(N);
    const SCRATCH_FIXED: usize = 0;
    const SCRATCH_PER_FEATURE: usize = 1;
}

impl<const N: usize> Module for Flatten<N> {
    fn visit(&self, _name: &mut Name, _f: &mut dyn FnMut(&ParamInfo<'_>)) {}
    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        f.write_str("Flatten(start_dim=1, end_dim=-1)")
    }
}

impl<const N: usize> Signature for Flatten<N> {
    fn signature(_f: &mut dyn FnMut(LayerKind)) {}
}

impl Signature for Dropout {
    fn signature(_f: &mut dyn FnMut(LayerKind)) {}
}

impl<const N: usize> Build for Flatten<N> {
    fn build<B: Backend>(_mem: &mut Memory<'_, B>, _rng: &mut Rng) -> Result<Self> {
        Ok(Flatten)
    }
}

impl<'t, S: HasFirst, const N: usize, B: Backend> LayerInput<Flatten<N>> for Tensor<'t, S, B> {
    type Output = Tensor<'t, (S::First, Const<N>), B>;
    fn run(self, _layer: &Flatten<N>) -> Self::Output {
        self.flatten::<N>()
    }
}

impl<X: LayerInput<Self>, const N: usize> Forward<X> for Flatten<N> {
    type Output = X::Output;
    fn forward(&self, x: X) -> Self::Output {
        x.run(self)
    }
}

/// Dropout: in training mode, zeroes each element with probability `p` and
/// scales the rest by `1 / (1 - p)`; in evaluation mode, passes its input through.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    p: f32,
    training: bool,
    rng: Cell<Rng>,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1)`, drawing masks from a generator seeded with `seed`.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::InvalidArgument {
                what: "dropout probability must be in [0, 1)",
            });
        }
        Ok(Dropout {
            p,
            training: true,
            rng: Cell::new(Rng::new(seed)),
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The mask generator's state (for checkpoints).
    pub fn rng_state(&self) -> [u32; 4] {
        self.rng.get().state()
    }

    /// Restores the mask generator's state.
    pub fn set_rng_state(&self, s: [u32; 4]) {
        self.rng.set(Rng::from_state(s));
    }
}

// The mask, the product and the product's gradient.
elementwise_footprint!(Dropout, 2, 3);

impl Module for Dropout {
    fn visit(&self, _name: &mut Name, _f: &mut dyn FnMut(&ParamInfo<'_>)) {}
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        write!(f, "Dropout(p={}, inplace=False)", self.p)
    }
}

impl Build for Dropout {
    /// `p = 0.5` (PyTorch's default), seeded from `rng`.
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Self::build_with_p(0.5, mem, rng)
    }
}

impl BuildWithP for Dropout {
    /// `p` (in `[0, 1)`, else [`Error::InvalidArgument`]), seeded from `rng`
    /// as [`Build::build`] seeds it.
    fn build_with_p<B: Backend>(p: f32, _mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        let seed = (u64::from(rng.next_u32()) << 32) | u64::from(rng.next_u32());
        Dropout::new(p, seed)
    }
}

impl<'t, S: Shape, B: Backend> LayerInput<Dropout> for Tensor<'t, S, B> {
    type Output = Self;
    fn run(self, layer: &Dropout) -> Self {
        if !layer.training || layer.p == 0.0 {
            return self;
        }
        let mut rng = layer.rng.get();
        let keep = 1.0 / (1.0 - layer.p);
        let p = layer.p;
        let mask = self
            .tape()
            .from_fn(self.shape(), |_| if rng.uniform() < p { 0.0 } else { keep });
        layer.rng.set(rng);
        self * mask
    }
}

impl<X: LayerInput<Self>> Forward<X> for Dropout {
    type Output = X::Output;
    fn forward(&self, x: X) -> Self::Output {
        x.run(self)
    }
}

/// An operation of your own ([`CustomOp`]) as a layer: one input, and an
/// output of the input's shape (an elementwise function, a normalisation
/// along a row, ...), so that it can be a field of a `#[derive(Module)]`
/// struct or a step of a sequence like a built-in activation.
///
/// - [`Forward`]: `x.custom(op)` for any tensor ([`Tensor::custom`]), on
///   the CPU backends (on another backend the graph records an error).
/// - [`Module`]: no parameters; `print(model)` shows the op's name without
///   its `Backward` suffix (`HardSwish()` for `"HardSwishBackward"`).
/// - [`Footprint`]: the memory of one node of the input's shape (its value
///   and gradient), as for the built-in activations, so that
///   [`train_budget`](super::train_budget) counts it. An op that needs
///   scratch memory of its own keeps it itself.
/// - [`Signature`] and [`Module::layers`] describe nothing: the deployable
///   weight format cannot express an op of your own, so a model with one
///   trains and runs on the host but does not export.
/// - [`Build`], when the op is a [`ConstOp`]: a constant of the op's type
///   (a unit struct's one value, or fixed settings).
///
/// The graph borrows the op for `'static` (it allocates nothing), and so
/// does this layer. An op whose settings are known only at run time is
/// built with [`Custom::new`], from a `static` or an op leaked once
/// (`Box::leak(Box::new(op))`), in `#[module(init = ...)]`:
///
/// ```
/// use ember_nn_core::nn::{self, Build, ConstOp, Custom, Footprint, Forward, Linear, Module, ReLU};
/// use ember_nn_core::ops::custom::CustomOp;
/// use ember_nn_core::prelude::*;
///
/// /// `x · min(max(x + 3, 0), 6) / 6` (PyTorch's `nn.Hardswish`).
/// #[derive(Debug)]
/// struct HardSwish;
///
/// impl CustomOp for HardSwish {
///     fn name(&self) -> &'static str {
///         "HardSwishBackward"
///     }
///     fn forward(&self, inputs: &[&[f32]], y: &mut [f32]) -> Result<()> {
///         for (y, &x) in y.iter_mut().zip(inputs[0]) {
///             *y = x * (x + 3.0).clamp(0.0, 6.0) / 6.0;
///         }
///         Ok(())
///     }
///     fn backward(&self, _: usize, inputs: &[&[f32]], _: &[f32], dy: &[f32], grad: &mut [f32]) -> Result<()> {
///         for ((g, &x), &d) in grad.iter_mut().zip(inputs[0]).zip(dy) {
///             *g += d * if x < -3.0 { 0.0 } else if x > 3.0 { 1.0 } else { (2.0 * x + 3.0) / 6.0 };
///         }
///         Ok(())
///     }
/// }
///
/// // What `Custom<HardSwish>::build` uses.
/// impl ConstOp for HardSwish {
///     const OP: &'static Self = &HardSwish;
/// }
///
/// /// `x · k`, with `k` chosen when the model is built.
/// struct Scale(f32);
/// impl CustomOp for Scale {
///     fn name(&self) -> &'static str {
///         "ScaleBackward"
///     }
///     fn forward(&self, inputs: &[&[f32]], y: &mut [f32]) -> Result<()> {
///         y.iter_mut().zip(inputs[0]).for_each(|(y, x)| *y = x * self.0);
///         Ok(())
///     }
///     fn backward(&self, _: usize, _: &[&[f32]], _: &[f32], dy: &[f32], grad: &mut [f32]) -> Result<()> {
///         grad.iter_mut().zip(dy).for_each(|(g, d)| *g += d * self.0);
///         Ok(())
///     }
/// }
///
/// #[derive(Module)]
/// struct Net {
///     hidden: Linear<4, 8>,
///     act: Custom<HardSwish>,
///     // A constant of the op (promoted to a `'static`); a run-time one
///     // would be `Custom::new(Box::leak(Box::new(Scale(k))))`.
///     #[module(init = Custom::new(&Scale(0.5)))]
///     scale: Custom<Scale>,
///     out: Linear<8, 2>,
/// }
///
/// // The op counts as an activation does.
/// assert_eq!(Net::NODES, <(Linear<4, 8>, ReLU, ReLU, Linear<8, 2>)>::NODES);
/// assert_eq!(Net::SCRATCH_PER_FEATURE, <(Linear<4, 8>, ReLU, ReLU, Linear<8, 2>)>::SCRATCH_PER_FEATURE);
///
/// let mut buf = [0.0f32; 512];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let net = Net::build(&mut mem, &mut Rng::new(0))?;
/// assert!(nn::summary(&net).to_string().contains("(act): HardSwish()\n  (scale): Scale()"));
/// let g = Graph::new(&mut mem);
/// let x = g.tensor([[1.0f32, -2.0, 0.5, 4.0]]);
/// let y = net.out.forward(net.scale.forward(net.act.forward(net.hidden.forward(x))));
/// assert_eq!(y.dims().as_slice(), &[1, 2]);
/// g.status()?;
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
pub struct Custom<O: 'static> {
    op: &'static O,
}

impl<O: 'static> Custom<O> {
    /// The layer of `op` (a `static`, a promoted constant such as
    /// `&SoftThreshold { lambda: 0.1 }`, or an op leaked once).
    pub const fn new(op: &'static O) -> Self {
        Custom { op }
    }

    /// The op.
    pub fn op(&self) -> &'static O {
        self.op
    }
}

impl<O: 'static> Clone for Custom<O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<O: 'static> Copy for Custom<O> {}

impl<O: CustomOp> fmt::Debug for Custom<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Custom({})", self.op.name())
    }
}

/// An op with a constant of its type, from which [`Custom`] builds itself
/// ([`Build`]) without being given one: for a unit struct, its one value.
///
/// ```
/// # use ember_nn_core::prelude::*;
/// # use ember_nn_core::ops::custom::CustomOp;
/// # struct HardSwish;
/// # impl CustomOp for HardSwish {
/// #     fn name(&self) -> &'static str { "HardSwishBackward" }
/// #     fn forward(&self, _: &[&[f32]], _: &mut [f32]) -> Result<()> { Ok(()) }
/// #     fn backward(&self, _: usize, _: &[&[f32]], _: &[f32], _: &[f32], _: &mut [f32]) -> Result<()> { Ok(()) }
/// # }
/// impl ember_nn_core::nn::ConstOp for HardSwish {
///     const OP: &'static Self = &HardSwish;
/// }
/// ```
pub trait ConstOp: CustomOp + 'static {
    /// The op a [`Custom`] layer built without arguments applies.
    const OP: &'static Self;
}

unary_footprint!([O: CustomOp] Custom<O>);

impl<O: CustomOp> Module for Custom<O> {
    fn visit(&self, _name: &mut Name, _f: &mut dyn FnMut(&ParamInfo<'_>)) {}
    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        let name = self.op.name();
        f.write_str(name.strip_suffix("Backward").unwrap_or(name))?;
        f.write_str("()")
    }
}

// No `Signature`: the deployable format has no layer for an op of your
// own, so a model type holding one cannot be what a weight file is loaded
// as (`Model::load::<(Linear<..>, Custom<Op>, ..)>` does not compile), and
// export refuses it by name (`ExportError::Unsupported`).

impl<O: ConstOp> Build for Custom<O> {
    /// The layer of [`ConstOp::OP`]; it takes no memory.
    fn build<B: Backend>(_mem: &mut Memory<'_, B>, _rng: &mut Rng) -> Result<Self> {
        Ok(Custom::new(O::OP))
    }
}

impl<'t, S: Shape, B: Backend, O: CustomOp> LayerInput<Custom<O>> for Tensor<'t, S, B> {
    type Output = Self;
    fn run(self, layer: &Custom<O>) -> Self {
        self.custom(layer.op)
    }
}

impl<X: LayerInput<Self>, O: CustomOp> Forward<X> for Custom<O> {
    type Output = X::Output;
    fn forward(&self, x: X) -> Self::Output {
        x.run(self)
    }
}
