//! Softmax and log-softmax along an axis.

use crate::backend::{AxisDims, Backend, Span};
use crate::error::Result;
use crate::graph::{Input, Op};
use crate::shape::{HasAxis, Shape};
use crate::tensor::Tensor;

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    fn softmax_impl<const AX: usize>(self, log: bool) -> Self
    where
        S: HasAxis<AX>,
    {
        let dims = AxisDims::around(self.dims().as_slice(), AX);
        self.unary_op(
            Op::Softmax { dims, log },
            self.shape,
            backward::<B>,
            move |be, buf, y, ins| be.softmax(buf, ins[0], y, dims, log),
        )
    }

    /// Softmax along axis `AX` (computed stably, shifted by the maximum).
    pub fn softmax<const AX: usize>(self) -> Self
    where
        S: HasAxis<AX>,
    {
        self.softmax_impl::<AX>(false)
    }

    /// Log-softmax along axis `AX` (computed stably with log-sum-exp).
    pub fn log_softmax<const AX: usize>(self) -> Self
    where
        S: HasAxis<AX>,
    {
        self.softmax_impl::<AX>(true)
    }
}

pub(crate) fn backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    y: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::Softmax { dims, log } = *op else {
        return Ok(());
    };
    if let Some(Input { grad: Some(dx), .. }) = inputs[0] {
        be.softmax_backward(buf, y, dy, dx, dims, log)?;
    }
    Ok(())
}
