//! Elementwise functions of one tensor: the tensor methods (`x.exp()`,
//! `x.relu()`, ...), each recording a [`Map`] node on the tape. The functions
//! themselves, value and derivative, are defined once in [`crate::backend::map`].

pub use crate::backend::map::{Map, SELU_ALPHA, SELU_SCALE};
use crate::backend::Backend;
use crate::graph::Op;
use crate::shape::Shape;
use crate::tensor::Tensor;

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    /// Applies an elementwise function.
    pub fn map(self, f: Map) -> Self {
        self.unary_op(Op::Map(f), self.shape, |be, buf, out, ins| {
            be.map(buf, f, ins[0], out)
        })
    }
    /// `-x` (also the `-` operator).
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> Self {
        self.map(Map::Neg)
    }
    /// `xᵖ` for a scalar exponent.
    pub fn pow(self, p: f32) -> Self {
        self.map(Map::Pow(p))
    }
    /// `xᵖ` (alias of [`pow`](Self::pow), named as in PyTorch's `powf`).
    pub fn powf(self, p: f32) -> Self {
        self.pow(p)
    }
    /// `x²`.
    pub fn square(self) -> Self {
        self.map(Map::Pow(2.0))
    }
    /// `1 / x`.
    pub fn recip(self) -> Self {
        self.map(Map::Recip)
    }
    /// `eˣ`.
    pub fn exp(self) -> Self {
        self.map(Map::Exp)
    }
    /// `ln x`.
    pub fn ln(self) -> Self {
        self.map(Map::Ln)
    }
    /// `√x`.
    pub fn sqrt(self) -> Self {
        self.map(Map::Sqrt)
    }
    /// `|x|`.
    pub fn abs(self) -> Self {
        self.map(Map::Abs)
    }
    /// `sin x`.
    pub fn sin(self) -> Self {
        self.map(Map::Sin)
    }
    /// `cos x`.
    pub fn cos(self) -> Self {
        self.map(Map::Cos)
    }
    /// `tanh x`.
    pub fn tanh(self) -> Self {
        self.map(Map::Tanh)
    }
    /// The logistic sigmoid.
    pub fn sigmoid(self) -> Self {
        self.map(Map::Sigmoid)
    }
    /// `max(x, 0)`.
    pub fn relu(self) -> Self {
        self.map(Map::Relu)
    }
    /// Leaky ReLU with the given negative slope (PyTorch's default is 0.01).
    pub fn leaky_relu(self, slope: f32) -> Self {
        self.map(Map::LeakyRelu(slope))
    }
    /// ELU with the given α (PyTorch's default is 1).
    pub fn elu(self, alpha: f32) -> Self {
        self.map(Map::Elu(alpha))
    }
    /// SELU.
    pub fn selu(self) -> Self {
        self.map(Map::Selu)
    }
    /// SiLU (swish): `x · sigmoid(x)`.
    pub fn silu(self) -> Self {
        self.map(Map::Silu)
    }
    /// GELU, tanh approximation (PyTorch's `approximate='tanh'`).
    pub fn gelu_tanh(self) -> Self {
        self.map(Map::GeluTanh)
    }
    /// GELU, exact erf form (PyTorch's default).
    pub fn gelu(self) -> Self {
        self.map(Map::GeluErf)
    }
    /// `x / (1 + |x|)`.
    pub fn softsign(self) -> Self {
        self.map(Map::Softsign)
    }
    /// `ln(1 + eˣ)`.
    pub fn softplus(self) -> Self {
        self.map(Map::Softplus)
    }
    /// Limits every element to `[lo, hi]`.
    pub fn clamp(self, lo: f32, hi: f32) -> Self {
        self.map(Map::Clamp(lo, hi))
    }
}
