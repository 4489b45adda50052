//! Softmax and cross-entropy fused into one node (PyTorch's
//! `F.cross_entropy(..., reduction='none')`): the forward writes one loss per
//! row and keeps no probabilities; the backward recomputes the row's softmax
//! and writes `softmax − one_hot` straight into the logits' gradient. One
//! kernel each way instead of the five nodes of log-softmax, one-hot, product,
//! sum and negation.

use crate::backend::{Backend, Span};
use crate::error::{Error, Result};
use crate::graph::{Input, Op};
use crate::shape::Dim;
use crate::tensor::{invalid, Tensor};

impl<'t, R: Dim, C: Dim, B: Backend> Tensor<'t, (R, C), B> {
    /// The cross-entropy of each row of these logits against its class index,
    /// `logsumexp(x[r]) − x[r, targets[r]]`, with the class indices given as
    /// floats (`0.0`, `1.0`, …). The targets get no gradient. A target that is
    /// not an integer in `[0, C)` gives a NaN loss; [`nn::loss::cross_entropy`]
    /// checks them first and reports a typed error instead.
    ///
    /// [`nn::loss::cross_entropy`]: crate::nn::loss::cross_entropy
    pub fn cross_entropy_rows(self, targets: Tensor<'t, (R,), B>) -> Tensor<'t, (R,), B> {
        let out = (self.shape.0,);
        let (rows, classes) = (self.shape.0.size(), self.shape.1.size());
        if let Err(e) = self.check_same_tape(&targets) {
            return invalid(self.tape, out, e);
        }
        if targets.shape.0.size() != rows {
            return invalid(
                self.tape,
                out,
                Error::Shape {
                    op: "cross_entropy_rows: one target per row",
                    expected: self.dims(),
                    found: targets.dims(),
                },
            );
        }
        self.binary_op(
            targets.id,
            Op::CrossEntropy { rows, classes },
            out,
            backward::<B>,
            move |be, buf, y, ins| be.cross_entropy(buf, ins[0], ins[1], y, classes),
        )
    }
}

pub(crate) fn backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::CrossEntropy { classes, .. } = *op else {
        return Ok(());
    };
    if let (
        Some(Input {
            value: x,
            grad: Some(dx),
        }),
        Some(t),
    ) = (inputs[0], inputs[1])
    {
        be.cross_entropy_backward(buf, x, t.value, dy, dx, classes)?;
    }
    Ok(())
}
