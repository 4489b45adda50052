//! Activation layers, `Flatten` and `Dropout`.

use super::{
    Build, BuildWithP, Footprint, Forward, Layer, LayerInput, LayerKind, Module, Name, ParamInfo,
    Signature,
};
use crate::backend::activation::Activation;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::memory::Memory;
use crate::rng::Rng;
use crate::shape::{Const, HasFirst, Shape};
use crate::tensor::Tensor;
use core::cell::Cell;
use core::fmt;

macro_rules! elementwise_footprint {
    ($name:ty, $nodes:expr, $per_feature:expr) => {
        impl Footprint for $name {
            const PARAMS: usize = 0;
            const NODES: usize = $nodes;
            const IN_FEATURES: Option<usize> = None;
            const OUT_FEATURES: Option<usize> = None;
            const SCRATCH_FIXED: usize = 0;
            const SCRATCH_PER_FEATURE: usize = $per_feature;
        }
    };
}

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $method:ident, $print:literal, $kind:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        // One node; its value and gradient per feature.
        elementwise_footprint!($name, 1, 2);

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

        elementwise_footprint!($name, 1, 2);

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
