//! Elementwise functions of two tensors of one shape, the arithmetic operators,
//! and their forms with a scalar. (Broadcasting between shapes is in
//! [`crate::ops::broadcast`]; the functions themselves in
//! [`crate::backend::zip`].)

pub use crate::backend::zip::Zip;
use crate::backend::{Backend, Span};
use crate::error::Result;
use crate::graph::{Input, Op};
use crate::ops::map::fns;
use crate::shape::Shape;
use crate::tensor::Tensor;
use core::ops::{Add, Div, Mul, Neg, Sub};

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    /// Applies an elementwise function of two tensors of the same shape.
    pub fn zip(self, rhs: Self, f: Zip) -> Self {
        if let Err(e) = self.check_same_shape("elementwise op", &rhs) {
            return self.fail(e);
        }
        self.binary_op(
            rhs.id,
            Op::Zip(f),
            self.shape,
            backward::<B>,
            move |be, buf, out, ins| be.zip(buf, f, ins[0], ins[1], out),
        )
    }
    /// Adds a constant.
    pub fn add_scalar(self, c: f32) -> Self {
        self.map_fn(fns::AddScalar(c))
    }
    /// Multiplies by a constant.
    pub fn mul_scalar(self, c: f32) -> Self {
        self.map_fn(fns::MulScalar(c))
    }
    /// Divides by a constant.
    pub fn div_scalar(self, c: f32) -> Self {
        self.map_fn(fns::MulScalar(1.0 / c))
    }
}

macro_rules! binary_operator {
    ($tr:ident, $method:ident, $zip:expr, $scalar:expr) => {
        impl<'t, S: Shape, B: Backend> $tr for Tensor<'t, S, B> {
            type Output = Self;
            fn $method(self, rhs: Self) -> Self {
                self.zip(rhs, $zip)
            }
        }
        impl<'t, S: Shape, B: Backend> $tr<f32> for Tensor<'t, S, B> {
            type Output = Self;
            fn $method(self, rhs: f32) -> Self {
                #[allow(clippy::redundant_closure_call)]
                ($scalar)(self, rhs)
            }
        }
    };
}
binary_operator!(Add, add, Zip::Add, |t: Self, c: f32| t.add_scalar(c));
binary_operator!(Sub, sub, Zip::Sub, |t: Self, c: f32| t.add_scalar(-c));
binary_operator!(Mul, mul, Zip::Mul, |t: Self, c: f32| t.mul_scalar(c));
binary_operator!(Div, div, Zip::Div, |t: Self, c: f32| t.div_scalar(c));

macro_rules! scalar_lhs_operator {
    ($tr:ident, $method:ident, $body:expr) => {
        impl<'t, S: Shape, B: Backend> $tr<Tensor<'t, S, B>> for f32 {
            type Output = Tensor<'t, S, B>;
            fn $method(self, rhs: Tensor<'t, S, B>) -> Tensor<'t, S, B> {
                #[allow(clippy::redundant_closure_call)]
                ($body)(self, rhs)
            }
        }
    };
}
scalar_lhs_operator!(Add, add, |c: f32, t: Tensor<'t, S, B>| t.add_scalar(c));
scalar_lhs_operator!(Sub, sub, |c: f32, t: Tensor<'t, S, B>| t
    .neg()
    .add_scalar(c));
scalar_lhs_operator!(Mul, mul, |c: f32, t: Tensor<'t, S, B>| t.mul_scalar(c));
scalar_lhs_operator!(Div, div, |c: f32, t: Tensor<'t, S, B>| t
    .recip()
    .mul_scalar(c));

impl<'t, S: Shape, B: Backend> Neg for Tensor<'t, S, B> {
    type Output = Self;
    fn neg(self) -> Self {
        self.map_fn(fns::Neg)
    }
}

/// The backward of a [`Zip`] node: each input's partial derivative times `dy`.
fn backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let (Op::Zip(f), Some(a), Some(b)) = (*op, inputs[0], inputs[1]) else {
        return Ok(());
    };
    if let Some(da) = a.grad {
        be.zip_backward(buf, f, false, a.value, b.value, dy, da)?;
    }
    if let Some(db) = b.grad {
        be.zip_backward(buf, f, true, a.value, b.value, dy, db)?;
    }
    Ok(())
}
