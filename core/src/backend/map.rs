//! Elementwise functions of one value: math and activations, part of the
//! vocabulary the backends share.
//!
//! Each function's value and derivative are defined here, once; every CPU
//! kernel evaluates [`Map::apply`] and [`Map::derivative`]. The tensor methods
//! (`x.exp()`, `x.relu()`, ...) in `ops::map` record a [`Map`] node
//! on the tape.
//!
//! The same functions exist as types ([`fns`]: `fns::Tanh`,
//! `fns::MulScalar(c)`, ...), each a [`MapFn`]: the tensor methods run their
//! kernels through these, so that the compiled kernel and its backward are
//! those of the one function, and a program links only the functions it
//! uses (on a microcontroller, a `match` over every [`Map`] links `sin`,
//! `cos`, `pow`, `erf`, ... whichever one the model uses). [`Map`] itself is
//! a [`MapFn`] too: the function chosen at run time.

use crate::sqrt::sqrtf;
use libm::{cosf, erff, expf, fabsf, logf, powf, sinf, tanhf};

/// SELU's α (PyTorch's constant).
pub const SELU_ALPHA: f32 = 1.673_263_2;
/// SELU's scale (PyTorch's constant).
pub const SELU_SCALE: f32 = 1.050_701;
/// `sqrt(2 / π)`, for GELU's tanh form.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// `1 / sqrt(2)`, for GELU's erf form.
const FRAC_1_SQRT_2: f32 = core::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// An elementwise function of one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Map {
    /// `-x`.
    Neg,
    /// `x + c`.
    AddScalar(f32),
    /// `x · c`.
    MulScalar(f32),
    /// `xᵖ` for a scalar exponent `p`.
    Pow(f32),
    /// `1 / x`.
    Recip,
    /// `eˣ`.
    Exp,
    /// `ln x`.
    Ln,
    /// `√x`.
    Sqrt,
    /// `|x|` (gradient 0 at 0, as PyTorch).
    Abs,
    /// `sin x`.
    Sin,
    /// `cos x`.
    Cos,
    /// `tanh x`.
    Tanh,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `max(x, 0)` (gradient 0 at 0, as PyTorch).
    Relu,
    /// `x` if `x > 0`, else `slope · x`.
    LeakyRelu(f32),
    /// `x` if `x > 0`, else `α (eˣ - 1)`.
    Elu(f32),
    /// `scale · elu(x, α)` with PyTorch's constants.
    Selu,
    /// `x · sigmoid(x)` (swish).
    Silu,
    /// GELU, tanh approximation.
    GeluTanh,
    /// GELU, exact (erf) form.
    GeluErf,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `ln(1 + eˣ)`, computed without overflow.
    Softplus,
    /// `x` limited to `[lo, hi]`: gradient 1 strictly inside, 0 outside and
    /// at exactly a bound (as PyTorch 2.x gives it).
    Clamp(f32, f32),
}

/// The activation functions, each on its own, for code that applies one
/// chosen at run time (`deploy::Activation::apply`): calling these instead of
/// [`Map::apply`] links only the activations' math, not every elementwise
/// function's (`sin`, `cos`, `pow`, ...), which matters in a microcontroller's
/// flash. [`Map::apply`] uses them too, so the values are the same.
pub(crate) mod act {
    use super::{FRAC_1_SQRT_2, SELU_ALPHA, SELU_SCALE, SQRT_2_OVER_PI};
    use libm::{erff, expf, expm1f, fabsf, log1pf, tanhf};

    #[inline]
    pub(crate) fn sigmoid(x: f32) -> f32 {
        // Split by sign so that neither branch overflows.
        if x >= 0.0 {
            1.0 / (1.0 + expf(-x))
        } else {
            let e = expf(x);
            e / (1.0 + e)
        }
    }

    #[inline]
    pub(crate) fn tanh(x: f32) -> f32 {
        tanhf(x)
    }

    #[inline]
    pub(crate) fn relu(x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            0.0
        }
    }

    #[inline]
    pub(crate) fn leaky_relu(slope: f32, x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            slope * x
        }
    }

    #[inline]
    pub(crate) fn elu(alpha: f32, x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            alpha * expm1f(x)
        }
    }

    #[inline]
    pub(crate) fn selu(x: f32) -> f32 {
        SELU_SCALE * if x > 0.0 { x } else { SELU_ALPHA * expm1f(x) }
    }

    #[inline]
    pub(crate) fn silu(x: f32) -> f32 {
        x * sigmoid(x)
    }

    #[inline]
    pub(crate) fn gelu_tanh(x: f32) -> f32 {
        let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
        0.5 * x * (1.0 + tanhf(u))
    }

    #[inline]
    pub(crate) fn gelu_erf(x: f32) -> f32 {
        0.5 * x * (1.0 + erff(x * FRAC_1_SQRT_2))
    }

    #[inline]
    pub(crate) fn softsign(x: f32) -> f32 {
        x / (1.0 + fabsf(x))
    }

    /// `max(x, 0) + ln(1 + e^-|x|)`: exact for large |x| of either sign.
    #[inline]
    pub(crate) fn softplus(x: f32) -> f32 {
        x.max(0.0) + log1pf(expf(-fabsf(x)))
    }
}

use act::sigmoid;

impl Map {
    /// The function's value at `x`.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Map::Neg => -x,
            Map::AddScalar(c) => x + c,
            Map::MulScalar(c) => x * c,
            Map::Pow(p) => {
                if p == 2.0 {
                    x * x
                } else {
                    powf(x, p)
                }
            }
            Map::Recip => 1.0 / x,
            Map::Exp => expf(x),
            Map::Ln => logf(x),
            Map::Sqrt => sqrtf(x),
            Map::Abs => fabsf(x),
            Map::Sin => sinf(x),
            Map::Cos => cosf(x),
            Map::Tanh => act::tanh(x),
            Map::Sigmoid => sigmoid(x),
            Map::Relu => act::relu(x),
            Map::LeakyRelu(s) => act::leaky_relu(s, x),
            Map::Elu(a) => act::elu(a, x),
            Map::Selu => act::selu(x),
            Map::Silu => act::silu(x),
            Map::GeluTanh => act::gelu_tanh(x),
            Map::GeluErf => act::gelu_erf(x),
            Map::Softsign => act::softsign(x),
            Map::Softplus => act::softplus(x),
            Map::Clamp(lo, hi) => x.max(lo).min(hi),
        }
    }

    /// The derivative at `x`, where `y = self.apply(x)`.
    #[inline(always)]
    pub fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Map::Neg => -1.0,
            Map::AddScalar(_) => 1.0,
            Map::MulScalar(c) => c,
            Map::Pow(p) => {
                if p == 0.0 {
                    0.0
                } else if p == 1.0 {
                    1.0
                } else if p == 2.0 {
                    2.0 * x
                } else {
                    p * powf(x, p - 1.0)
                }
            }
            Map::Recip => -y * y,
            Map::Exp => y,
            Map::Ln => 1.0 / x,
            Map::Sqrt => 0.5 / y,
            Map::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Map::Sin => cosf(x),
            Map::Cos => -sinf(x),
            Map::Tanh => 1.0 - y * y,
            Map::Sigmoid => y * (1.0 - y),
            Map::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Map::LeakyRelu(s) => {
                if x > 0.0 {
                    1.0
                } else {
                    s
                }
            }
            Map::Elu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a * expf(x)
                }
            }
            Map::Selu => {
                if x > 0.0 {
                    SELU_SCALE
                } else {
                    SELU_SCALE * SELU_ALPHA * expf(x)
                }
            }
            Map::Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
            Map::GeluTanh => {
                let x2 = x * x;
                let u = SQRT_2_OVER_PI * (x + 0.044_715 * x2 * x);
                let t = tanhf(u);
                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044_715 * x2);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
            }
            Map::GeluErf => {
                let cdf = 0.5 * (1.0 + erff(x * FRAC_1_SQRT_2));
                let pdf = FRAC_1_SQRT_2PI * expf(-0.5 * x * x);
                cdf + x * pdf
            }
            Map::Softsign => {
                let d = 1.0 + fabsf(x);
                1.0 / (d * d)
            }
            Map::Softplus => sigmoid(x),
            Map::Clamp(lo, hi) => {
                if x > lo && x < hi {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// Whether the derivative is a function of the output alone, so that an
    /// activation can be fused into the layer before it
    /// ([`Tensor::linear_act`](crate::Tensor::linear_act)) without keeping
    /// its input: for these, `derivative(y, y) == derivative(x, y)` wherever
    /// `y = apply(x)`. ReLU and leaky ReLU with a non-negative slope
    /// (`y > 0` exactly when `x > 0`), sigmoid (`y(1 − y)`) and tanh (`1 − y²`).
    pub fn fuses(self) -> bool {
        match self {
            Map::Relu | Map::Sigmoid | Map::Tanh => true,
            Map::LeakyRelu(s) => s >= 0.0,
            _ => false,
        }
    }

    /// The name PyTorch gives this function's backward node.
    pub fn name(self) -> &'static str {
        match self {
            Map::Neg => "NegBackward",
            Map::AddScalar(_) => "AddBackward",
            Map::MulScalar(_) => "MulBackward",
            Map::Pow(_) => "PowBackward",
            Map::Recip => "ReciprocalBackward",
            Map::Exp => "ExpBackward",
            Map::Ln => "LogBackward",
            Map::Sqrt => "SqrtBackward",
            Map::Abs => "AbsBackward",
            Map::Sin => "SinBackward",
            Map::Cos => "CosBackward",
            Map::Tanh => "TanhBackward",
            Map::Sigmoid => "SigmoidBackward",
            Map::Relu => "ReluBackward",
            Map::LeakyRelu(_) => "LeakyReluBackward",
            Map::Elu(_) => "EluBackward",
            Map::Selu => "EluBackward",
            Map::Silu => "SiluBackward",
            Map::GeluTanh | Map::GeluErf => "GeluBackward",
            Map::Softsign => "SoftsignBackward",
            Map::Softplus => "SoftplusBackward",
            Map::Clamp(..) => "ClampBackward",
        }
    }
}

/// An elementwise function as a type: [`Map`] (chosen at run time) or one
/// of the types of [`fns`] (chosen at compile time, so that the kernels
/// compiled for it contain that function alone). Its value and derivative
/// are [`Map::apply`] and [`Map::derivative`] of [`map`](MapFn::map), the
/// same arithmetic either way.
pub trait MapFn: Copy {
    /// Whether the function is chosen at run time ([`Map`]): the kernels
    /// then take their path for a [`Map`] value.
    const RUNTIME: bool = false;
    /// The function as a value: what the tape records, and what a backend
    /// without typed kernels dispatches on.
    fn map(self) -> Map;
    /// The function back from the value recorded for it (`m` is what
    /// [`map`](MapFn::map) returned; another variant gives parameters of NaN).
    fn from_map(m: Map) -> Self;
    /// The value at `x`.
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        self.map().apply(x)
    }
    /// The derivative at `x`, where `y = self.apply(x)`.
    #[inline(always)]
    fn derivative(self, x: f32, y: f32) -> f32 {
        self.map().derivative(x, y)
    }
}

impl MapFn for Map {
    const RUNTIME: bool = true;
    #[inline(always)]
    fn map(self) -> Map {
        self
    }
    #[inline(always)]
    fn from_map(m: Map) -> Self {
        m
    }
}

/// The elementwise functions as types, one per [`Map`] variant (a
/// variant's parameters are the type's fields): the [`MapFn`]s that the
/// tensor methods record, so that only the functions a program uses are
/// compiled into it.
pub mod fns {
    use super::{Map, MapFn};

    macro_rules! unit_fn {
        ($($name:ident),* $(,)?) => {$(
            #[doc = concat!("[`Map::", stringify!($name), "`] as a type.")]
            #[derive(Clone, Copy, Debug, Default, PartialEq)]
            pub struct $name;

            impl MapFn for $name {
                #[inline(always)]
                fn map(self) -> Map {
                    Map::$name
                }
                #[inline(always)]
                fn from_map(_: Map) -> Self {
                    $name
                }
            }
        )*};
    }

    macro_rules! param_fn {
        ($($name:ident),* $(,)?) => {$(
            #[doc = concat!("[`Map::", stringify!($name), "`] as a type, with its parameter.")]
            #[derive(Clone, Copy, Debug, PartialEq)]
            pub struct $name(pub f32);

            impl MapFn for $name {
                #[inline(always)]
                fn map(self) -> Map {
                    Map::$name(self.0)
                }
                #[inline(always)]
                fn from_map(m: Map) -> Self {
                    match m {
                        Map::$name(p) => $name(p),
                        _ => $name(f32::NAN),
                    }
                }
            }
        )*};
    }

    unit_fn!(
        Neg, Recip, Exp, Ln, Sqrt, Abs, Sin, Cos, Tanh, Sigmoid, Relu, Selu, Silu, GeluTanh,
        GeluErf, Softsign, Softplus,
    );
    param_fn!(AddScalar, MulScalar, Pow, LeakyRelu, Elu);

    /// `x²`: [`Map::Pow`]`(2.0)` as a type (`x · x`, no `powf`).
    #[derive(Clone, Copy, Debug, Default, PartialEq)]
    pub struct Square;

    impl MapFn for Square {
        #[inline(always)]
        fn map(self) -> Map {
            Map::Pow(2.0)
        }
        #[inline(always)]
        fn from_map(_: Map) -> Self {
            Square
        }
    }

    /// [`Map::Clamp`] as a type, with its bounds.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Clamp(pub f32, pub f32);

    impl MapFn for Clamp {
        #[inline(always)]
        fn map(self) -> Map {
            Map::Clamp(self.0, self.1)
        }
        #[inline(always)]
        fn from_map(m: Map) -> Self {
            match m {
                Map::Clamp(lo, hi) => Clamp(lo, hi),
                _ => Clamp(f32::NAN, f32::NAN),
            }
        }
    }
}
