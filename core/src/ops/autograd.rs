//! Starting a backward walk from a tensor: the tape walks its nodes in
//! reverse and runs each op's backward, which the op's forward stored in
//! its node.

use crate::backend::Backend;
use crate::error::Result;
use crate::graph::Seed;
use crate::shape::Shape;
use crate::tensor::Tensor;

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    /// Walks the graph backward from this one-element tensor, then frees the
    /// graph's intermediate state (a second walk returns [`Error::GraphFreed`](crate::Error::GraphFreed)).
    pub fn backward(&self) -> Result<()> {
        self.tape.backward(self.id, Seed::One, false)
    }

    /// Like [`backward`](Self::backward), but keeps the graph so that it can be
    /// walked again (PyTorch's `retain_graph=True`).
    pub fn backward_retain(&self) -> Result<()> {
        self.tape.backward(self.id, Seed::One, true)
    }

    /// Backward with an external gradient of the same shape (a
    /// vector-Jacobian product), for a tensor with several elements.
    pub fn backward_with(&self, grad: &[f32]) -> Result<()> {
        self.tape.backward(self.id, Seed::Host(grad), false)
    }

    /// [`backward_with`](Self::backward_with) that keeps the graph.
    pub fn backward_with_retain(&self, grad: &[f32]) -> Result<()> {
        self.tape.backward(self.id, Seed::Host(grad), true)
    }

    /// Backward with an external gradient held by a tensor of the same graph.
    pub fn backward_with_tensor(&self, grad: &Tensor<'t, S, B>, retain: bool) -> Result<()> {
        self.check_same_tape(grad)?;
        self.tape.backward(self.id, Seed::Tensor(grad.id), retain)
    }
}
