//! Operations: each module holds one family's forward (the tensor methods that
//! record a node) and its backward (the crate-private `backward` function dispatches to).

mod autograd;
pub mod broadcast;
pub mod create;
pub mod cross_entropy;
pub mod custom;
pub mod join;
pub mod linear;
pub mod map;
pub mod matmul;
pub mod optim;
pub mod reduce;
pub mod softmax;
pub mod view;
pub mod zip;

use crate::backend::{Backend, Span};
use crate::error::Result;
use crate::graph::{Input, Op};

/// Accumulates a node's gradient `dy` into its inputs' gradients.
pub(crate) fn backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    y: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    match *op {
        Op::Leaf | Op::Param | Op::Detach => Ok(()),
        Op::Map(f) => map_backward(be, buf, f, y, dy, inputs),
        Op::Zip(f) => zip_backward(be, buf, f, dy, inputs),
        Op::MatMul { .. } => matmul::backward(be, buf, op, dy, inputs),
        Op::Linear { m, n, k } => linear::backward(be, buf, (m, n, k), dy, inputs),
        Op::LinearAct { m, n, k, act } => {
            linear::act_backward(be, buf, (m, n, k, act), y, dy, inputs)
        }
        Op::CrossEntropy { classes, .. } => cross_entropy::backward(be, buf, classes, dy, inputs),
        Op::Reduce { op: r, dims } => reduce::backward(be, buf, r, dims, y, dy, inputs),
        Op::Expand { dims } => reduce::expand_backward(be, buf, dims, dy, inputs),
        Op::Softmax { dims, log } => softmax::backward(be, buf, dims, log, y, dy, inputs),
        Op::Transpose { batch, rows, cols } => {
            view::transpose_backward(be, buf, batch, rows, cols, dy, inputs)
        }
        Op::Reshape => view::reshape_backward(be, buf, dy, inputs),
        Op::Concat {
            outer,
            a_block,
            b_block,
        } => join::backward(be, buf, outer, a_block, b_block, dy, inputs),
        Op::Custom(c) => custom::backward(be, buf, c, y, dy, inputs),
    }
}

fn map_backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    f: map::Map,
    y: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    if let Some(Input {
        value,
        grad: Some(dx),
        ..
    }) = inputs[0]
    {
        be.map_backward(buf, f, value, y, dy, dx)?;
    }
    Ok(())
}

fn zip_backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    f: zip::Zip,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let (Some(a), Some(b)) = (inputs[0], inputs[1]) else {
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
