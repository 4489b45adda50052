//! Elementwise functions of one tensor: the tensor methods (`x.exp()`,
//! `x.relu()`, ...), each recording a [`Map`] node on the tape. The functions
//! themselves, value and derivative, are defined once in [`crate::backend::map`].

pub use crate::backend::map::{fns, Map, MapFn, SELU_ALPHA, SELU_SCALE};
use crate::backend::{Backend, Span};
use crate::error::Result;
use crate::graph::{Input, Op};
use crate::shape::Shape;
use crate::tensor::Tensor;

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    /// Applies an elementwise function chosen at run time (the methods
    /// below name theirs at compile time, which links only that function).
    pub fn map(self, f: Map) -> Self {
        self.map_fn(f)
    }

    /// Applies an elementwise function given as a type ([`fns`]: the
    /// kernels compiled are that function's alone), or a [`Map`].
    pub fn map_fn<F: MapFn>(self, f: F) -> Self {
        self.unary_op(
            Op::Map(f.map()),
            self.shape,
            backward::<B, F>,
            move |be, buf, out, ins| be.map_fn(buf, f, ins[0], out),
        )
    }
    /// `-x` (also the `-` operator).
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> Self {
        self.map_fn(fns::Neg)
    }
    /// `xᵖ` for a scalar exponent.
    pub fn pow(self, p: f32) -> Self {
        self.map_fn(fns::Pow(p))
    }
    /// `xᵖ` (alias of [`pow`](Self::pow), named as in PyTorch's `powf`).
    pub fn powf(self, p: f32) -> Self {
        self.pow(p)
    }
    /// `x²`.
    pub fn square(self) -> Self {
        self.map_fn(fns::Square)
    }
    /// `1 / x`.
    pub fn recip(self) -> Self {
        self.map_fn(fns::Recip)
    }
    /// `eˣ`.
    pub fn exp(self) -> Self {
        self.map_fn(fns::Exp)
    }
    /// `ln x`.
    pub fn ln(self) -> Self {
        self.map_fn(fns::Ln)
    }
    /// `√x`.
    pub fn sqrt(self) -> Self {
        self.map_fn(fns::Sqrt)
    }
    /// `|x|`.
    pub fn abs(self) -> Self {
        self.map_fn(fns::Abs)
    }
    /// `sin x`.
    pub fn sin(self) -> Self {
        self.map_fn(fns::Sin)
    }
    /// `cos x`.
    pub fn cos(self) -> Self {
        self.map_fn(fns::Cos)
    }
    /// `tanh x`.
    pub fn tanh(self) -> Self {
        self.map_fn(fns::Tanh)
    }
    /// The logistic sigmoid.
    pub fn sigmoid(self) -> Self {
        self.map_fn(fns::Sigmoid)
    }
    /// `max(x, 0)`.
    pub fn relu(self) -> Self {
        self.map_fn(fns::Relu)
    }
    /// Leaky ReLU with the given negative slope (PyTorch's default is 0.01).
    pub fn leaky_relu(self, slope: f32) -> Self {
        self.map_fn(fns::LeakyRelu(slope))
    }
    /// ELU with the given α (PyTorch's default is 1).
    pub fn elu(self, alpha: f32) -> Self {
        self.map_fn(fns::Elu(alpha))
    }
    /// SELU.
    pub fn selu(self) -> Self {
        self.map_fn(fns::Selu)
    }
    /// SiLU (swish): `x · sigmoid(x)`.
    pub fn silu(self) -> Self {
        self.map_fn(fns::Silu)
    }
    /// GELU, tanh approximation (PyTorch's `approximate='tanh'`).
    pub fn gelu_tanh(self) -> Self {
        self.map_fn(fns::GeluTanh)
    }
    /// GELU, exact erf form (PyTorch's default).
    pub fn gelu(self) -> Self {
        self.map_fn(fns::GeluErf)
    }
    /// `x / (1 + |x|)`.
    pub fn softsign(self) -> Self {
        self.map_fn(fns::Softsign)
    }
    /// `ln(1 + eˣ)`.
    pub fn softplus(self) -> Self {
        self.map_fn(fns::Softplus)
    }
    /// Limits every element to `[lo, hi]`.
    pub fn clamp(self, lo: f32, hi: f32) -> Self {
        self.map_fn(fns::Clamp(lo, hi))
    }
}

/// The backward of a [`Map`] node: `dx += f'(x) · dy`.
fn backward<B: Backend, F: MapFn>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    y: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let (
        Op::Map(m),
        Some(Input {
            value: x,
            grad: Some(dx),
        }),
    ) = (*op, inputs[0])
    else {
        return Ok(());
    };
    be.map_backward_fn(buf, F::from_map(m), x, y, dy, dx)
}
