//! Reductions (sum, mean, max, argmax; over everything or along an axis) and
//! their transpose, broadcasting along an axis.

use crate::backend::{Acc, AxisDims, Backend, Reduce, Span};
use crate::error::Result;
use crate::graph::{no_backward, Input, Op, NONE};
use crate::shape::{check, Dim, HasAxis, Shape};
use crate::tensor::{invalid, Tensor};

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    fn reduce_dims<S2: Shape>(self, op: Reduce, dims: AxisDims, out: S2) -> Tensor<'t, S2, B> {
        let node = Op::Reduce { op, dims };
        if op == Reduce::ArgMax {
            // No gradient flows through an index: record without inputs.
            let x = match self.tape.node(self.id) {
                Ok((v, ..)) => v,
                Err(e) => return invalid(self.tape, out, e),
            };
            let id = self.tape.record(
                node,
                out.dims_slice(),
                [NONE; 3],
                no_backward::<B>,
                &mut |be, buf, y, _| be.reduce(buf, op, x, y, dims, Acc::Set),
            );
            return Tensor::from_id(self.tape, id, out);
        }
        // Each reduction's own backward, so that a program that only sums
        // does not link the maximum's.
        let back = match op {
            Reduce::Max => max_backward::<B>,
            _ => sum_backward::<B>,
        };
        self.unary_op(node, out, back, move |be, buf, y, ins| {
            be.reduce(buf, op, ins[0], y, dims, Acc::Set)
        })
    }

    fn all_dims(&self) -> AxisDims {
        AxisDims {
            outer: 1,
            len: self.numel(),
            inner: 1,
        }
    }

    fn axis_dims<const AX: usize>(&self) -> AxisDims {
        AxisDims::around(self.dims().as_slice(), AX)
    }

    /// Sum of all elements.
    pub fn sum(self) -> Tensor<'t, (), B> {
        let d = self.all_dims();
        self.reduce_dims(Reduce::Sum, d, ())
    }

    /// Mean of all elements.
    pub fn mean(self) -> Tensor<'t, (), B> {
        let n = self.numel().max(1) as f32;
        self.sum().mul_scalar(1.0 / n)
    }

    /// Largest element, like `torch.max(x)`: tied maxima share the gradient
    /// evenly.
    pub fn max(self) -> Tensor<'t, (), B> {
        let d = self.all_dims();
        self.reduce_dims(Reduce::Max, d, ())
    }

    /// Sum along axis `AX`, which disappears.
    pub fn sum_axis<const AX: usize>(self) -> Tensor<'t, S::Removed, B>
    where
        S: HasAxis<AX>,
    {
        let d = self.axis_dims::<AX>();
        let out = self.shape.remove();
        self.reduce_dims(Reduce::Sum, d, out)
    }

    /// Mean along axis `AX`, which disappears.
    pub fn mean_axis<const AX: usize>(self) -> Tensor<'t, S::Removed, B>
    where
        S: HasAxis<AX>,
    {
        let n = self.dims().dims[AX].max(1) as f32;
        self.sum_axis::<AX>().mul_scalar(1.0 / n)
    }

    /// Maximum along axis `AX`, which disappears, like `torch.amax(x, AX)`:
    /// tied maxima share the gradient evenly. (`torch.max(x, AX).values`
    /// gives it all to the one index it returns.)
    pub fn max_axis<const AX: usize>(self) -> Tensor<'t, S::Removed, B>
    where
        S: HasAxis<AX>,
    {
        let d = self.axis_dims::<AX>();
        let out = self.shape.remove();
        self.reduce_dims(Reduce::Max, d, out)
    }

    /// Index of the first maximum along axis `AX`, as floats; no gradient.
    pub fn argmax_axis<const AX: usize>(self) -> Tensor<'t, S::Removed, B>
    where
        S: HasAxis<AX>,
    {
        let d = self.axis_dims::<AX>();
        let out = self.shape.remove();
        self.reduce_dims(Reduce::ArgMax, d, out)
    }

    /// Index (row-major) of the first maximum of all elements.
    pub fn argmax(self) -> Result<usize> {
        let d = self.all_dims();
        let idx = self.reduce_dims(Reduce::ArgMax, d, ()).item()?;
        Ok(idx as usize)
    }

    /// Repeats this tensor along a new axis `AX` of `shape` (whose other
    /// dimensions must equal this tensor's).
    pub fn broadcast_axis<const AX: usize, S2>(self, shape: S2) -> Tensor<'t, S2, B>
    where
        S2: HasAxis<AX, Removed = S>,
    {
        let () = check::Axis::<S2, AX>::OK;
        if shape.remove() != self.shape {
            return invalid(
                self.tape,
                shape,
                crate::Error::Shape {
                    op: "broadcast",
                    expected: shape.remove().dims_slice(),
                    found: self.dims(),
                },
            );
        }
        let dims = AxisDims::around(shape.dims_slice().as_slice(), AX);
        self.unary_op(
            Op::Expand { dims },
            shape,
            expand_backward::<B>,
            move |be, buf, y, ins| be.expand(buf, ins[0], y, dims, Acc::Set),
        )
    }
}

impl<'t, C: Dim, B: Backend> Tensor<'t, (C,), B> {
    /// Repeats this row vector `rows` times: `[c]` to `[rows, c]`.
    pub fn broadcast_rows<R: Dim>(self, rows: R) -> Tensor<'t, (R, C), B> {
        self.broadcast_axis::<0, _>((rows, self.shape.0))
    }
}

impl<'t, B: Backend> Tensor<'t, (), B> {
    /// Repeats this scalar to fill `shape`.
    pub fn broadcast_to<S2: Shape>(self, shape: S2) -> Tensor<'t, S2, B> {
        let dims = AxisDims {
            outer: 1,
            len: shape.numel(),
            inner: 1,
        };
        self.unary_op(
            Op::Expand { dims },
            shape,
            expand_backward::<B>,
            move |be, buf, y, ins| be.expand(buf, ins[0], y, dims, Acc::Set),
        )
    }
}

/// The backward of a sum along an axis: its gradient broadcast back.
fn sum_backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let (Op::Reduce { dims, .. }, Some(Input { grad: Some(dx), .. })) = (*op, inputs[0]) else {
        return Ok(());
    };
    be.expand(buf, dy, dx, dims, Acc::Add)
}

/// The backward of a maximum along an axis: to the maxima, ties sharing it.
fn max_backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    y: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let (
        Op::Reduce { dims, .. },
        Some(Input {
            value: x,
            grad: Some(dx),
        }),
    ) = (*op, inputs[0])
    else {
        return Ok(());
    };
    be.max_backward(buf, x, y, dy, dx, dims)
}

/// The backward of a broadcast along an axis: the gradient summed over it.
pub(crate) fn expand_backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::Expand { dims } = *op else {
        return Ok(());
    };
    if let Some(Input { grad: Some(dx), .. }) = inputs[0] {
        be.reduce(buf, Reduce::Sum, dy, dx, dims, Acc::Add)?;
    }
    Ok(())
}
