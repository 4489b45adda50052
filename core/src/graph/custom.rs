//! The user's own differentiable operations as the tape records them: the
//! [`CustomOp`] trait and [`CustomRef`], the node kind that names one.
//! `ops::custom` records and runs them and re-exports both.

use crate::error::Result;
use core::fmt;

/// A differentiable operation written by the user: its forward pass and
/// the gradient of each of its inputs, on host slices (row-major, in the
/// shapes the tensors have). One input ([`Tensor::custom`],
/// [`Tensor::custom_to`]) or two ([`Tensor::custom2`]).
///
/// The recording methods give the op the slices of its inputs' and output's
/// shapes but check nothing between them: an op that needs its inputs to
/// agree (elementwise on two inputs, say) checks the slices' lengths itself
/// and returns [`Error::InvalidArgument`](crate::Error::InvalidArgument)
/// rather than indexing past one.
///
/// [`Tensor::custom`]: crate::Tensor::custom
/// [`Tensor::custom_to`]: crate::Tensor::custom_to
/// [`Tensor::custom2`]: crate::Tensor::custom2
pub trait CustomOp: Sync {
    /// The name the output's `grad_fn` shows (`"SoftThresholdBackward"`).
    fn name(&self) -> &'static str;

    /// Writes the output `y` from the inputs' values.
    fn forward(&self, inputs: &[&[f32]], y: &mut [f32]) -> Result<()>;

    /// Adds to `grad` the gradient of the loss with respect to input
    /// `index`, given the inputs' values, the output `y` and the output's
    /// gradient `dy`. Called only for inputs that need a gradient, one at a
    /// time; `grad` already holds the gradient from other uses of that input
    /// (add to it, as PyTorch accumulates; [`gradcheck`](crate::gradcheck)
    /// says how to test that).
    fn backward(
        &self,
        index: usize,
        inputs: &[&[f32]],
        y: &[f32],
        dy: &[f32],
        grad: &mut [f32],
    ) -> Result<()>;
}

/// A recorded custom operation: which one (compared by address).
#[derive(Clone, Copy)]
pub struct CustomRef(pub(crate) &'static dyn CustomOp);

impl CustomRef {
    /// The operation's `grad_fn` name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl PartialEq for CustomRef {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::addr_eq(self.0, other.0)
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for CustomRef {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Custom({=str})", self.0.name())
    }
}

impl fmt::Debug for CustomRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Custom({})", self.0.name())
    }
}
