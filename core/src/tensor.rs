//! Tensors: typed handles to nodes of a graph.

use crate::backend::{Backend, Cpu, Span};
use crate::error::{Error, Result};
use crate::graph::{Backward, Kernel, Op, Tape, NONE};
use crate::shape::{ConstShape, Dims, Shape};

/// A tensor of shape `S` recorded on a graph's tape.
///
/// A `Tensor` is a small `Copy` handle (like a PyTorch tensor, which is a
/// reference to storage): the data lives in the graph's memory. Operations
/// never panic. When one fails (out of memory, a run-time shape mismatch), the
/// graph records the error and every later operation on the result yields
/// another invalid tensor; the error comes out of the next call that returns a
/// `Result` ([`backward`](Self::backward), [`to_array`](Self::to_array),
/// [`Graph::status`](crate::Graph::status), ...).
pub struct Tensor<'t, S: Shape, B: Backend = Cpu> {
    pub(crate) tape: &'t dyn Tape<B>,
    pub(crate) id: u32,
    pub(crate) shape: S,
}

impl<S: Shape, B: Backend> Clone for Tensor<'_, S, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: Shape, B: Backend> Copy for Tensor<'_, S, B> {}

impl<S: Shape, B: Backend> core::fmt::Debug for Tensor<'_, S, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("Tensor");
        d.field("shape", &self.shape.dims_slice());
        if let Some(name) = self.grad_fn() {
            d.field("grad_fn", &name);
        }
        d.field("requires_grad", &self.is_requires_grad());
        d.finish()
    }
}

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    pub(crate) fn from_id(tape: &'t dyn Tape<B>, id: u32, shape: S) -> Self {
        Tensor { tape, id, shape }
    }

    /// The shape.
    pub fn shape(&self) -> S {
        self.shape
    }

    /// The sizes, as a printable value.
    pub fn dims(&self) -> Dims {
        self.shape.dims_slice()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// The graph this tensor is recorded on.
    pub fn tape(&self) -> &'t dyn Tape<B> {
        self.tape
    }

    /// Whether the tensor is valid (no operation leading to it failed).
    pub fn is_valid(&self) -> bool {
        self.id != NONE && self.tape.error().is_none()
    }

    /// The name of the operation that made this tensor, like PyTorch's
    /// `grad_fn` (`None` for leaves and for tensors that do not require a gradient).
    pub fn grad_fn(&self) -> Option<&'static str> {
        match self.tape.node(self.id) {
            Ok((_, _, _, true, op)) => op.name(),
            _ => None,
        }
    }

    /// Whether a gradient will be computed for this tensor.
    pub fn is_requires_grad(&self) -> bool {
        matches!(self.tape.node(self.id), Ok((_, _, _, true, _)))
    }

    /// Makes this leaf require a gradient (PyTorch's `requires_grad_()`); its
    /// gradient starts at zero and accumulates over backward passes.
    pub fn requires_grad(self) -> Self {
        match self.tape.set_requires_grad(self.id) {
            Ok(()) => self,
            Err(e) => self.fail(e),
        }
    }

    /// The same values, cut off from the graph: gradients do not flow through.
    pub fn detach(self) -> Self {
        let id = self.tape.record_alias(
            Op::Detach,
            self.dims(),
            self.id,
            crate::graph::no_backward::<B>,
        );
        Tensor::from_id(self.tape, id, self.shape)
    }

    /// Copies the values to `out` (row-major).
    pub fn read(&self, out: &mut [f32]) -> Result<()> {
        let (value, ..) = self.tape.node(self.id)?;
        read_span(self.tape, value, out)
    }

    /// Copies the gradient to `out`; `Ok(false)` when the tensor has none,
    /// as PyTorch's `x.grad` is `None`: it does not require a gradient, or it
    /// is a leaf that no backward has reached yet, or it is an intermediate
    /// result (whose gradient backward returns to the graph's memory).
    pub fn read_grad(&self, out: &mut [f32]) -> Result<bool> {
        match self.tape.node(self.id)? {
            (_, _, Some(g), ..) => read_span(self.tape, g, out).map(|()| true),
            _ => Ok(false),
        }
    }

    /// Overwrites this leaf's elements `offset..offset + data.len()`
    /// (row-major), as PyTorch's `x[i] = row` does on a tensor outside
    /// autograd: an input batch filled sample by sample as the samples
    /// arrive, with no host buffer of the batch's size. The tensor must be
    /// the graph's newest node (nothing has read it yet) and must not require
    /// a gradient; anything else is an error, and so is a range past its end.
    ///
    /// ```
    /// use ember_nn_core::prelude::*;
    /// let mut buf = [0.0f32; 16];
    /// let mut mem = Memory::new(&Cpu, &mut buf[..]);
    /// let g: Graph<'_, Cpu> = Graph::new(&mut mem);
    /// let x = g.full_like((2usize, Const::<3>), 0.0);
    /// x.write_at(3, &[1.0, 2.0, 3.0])?;
    /// let mut v = [9.0f32; 6];
    /// x.read(&mut v)?;
    /// assert_eq!(v, [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
    /// assert!(x.write_at(4, &[1.0, 2.0, 3.0]).is_err());
    /// # Ok::<(), ember_nn_core::Error>(())
    /// ```
    pub fn write_at(&self, offset: usize, data: &[f32]) -> Result<()> {
        self.tape.write_leaf(self.id, offset, data)
    }

    /// Sets this leaf's gradient to zero (PyTorch's `x.grad.zero_()`).
    pub fn zero_grad(&self) -> Result<()> {
        match self.tape.node(self.id)? {
            (_, _, Some(g), ..) => self.tape.with_buffer(&mut |be, buf| be.fill(buf, g, 0.0)),
            _ => Ok(()),
        }
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        let n = self.numel();
        if n != 1 {
            return Err(Error::Length {
                expected: 1,
                found: n,
            });
        }
        let mut v = [0.0f32];
        self.read(&mut v)?;
        Ok(v[0])
    }

    /// Returns an invalid tensor of this shape and records `e`.
    pub(crate) fn fail(self, e: Error) -> Self {
        invalid(self.tape, self.shape, e)
    }

    /// Records a node with one input.
    pub(crate) fn unary_op<S2: Shape>(
        self,
        op: Op,
        shape: S2,
        backward: Backward<B>,
        mut kernel: impl FnMut(&B, &mut B::Buffer, Span, [Span; 3]) -> Result<()>,
    ) -> Tensor<'t, S2, B> {
        let k: Kernel<'_, B> = &mut kernel;
        let id = if self.id == NONE {
            NONE
        } else {
            self.tape
                .record(op, shape.dims_slice(), [self.id, NONE, NONE], backward, k)
        };
        Tensor::from_id(self.tape, id, shape)
    }

    /// Records a node with two inputs.
    pub(crate) fn binary_op<S2: Shape>(
        self,
        rhs: u32,
        op: Op,
        shape: S2,
        backward: Backward<B>,
        mut kernel: impl FnMut(&B, &mut B::Buffer, Span, [Span; 3]) -> Result<()>,
    ) -> Tensor<'t, S2, B> {
        let k: Kernel<'_, B> = &mut kernel;
        let id = if self.id == NONE || rhs == NONE {
            NONE
        } else {
            self.tape
                .record(op, shape.dims_slice(), [self.id, rhs, NONE], backward, k)
        };
        Tensor::from_id(self.tape, id, shape)
    }

    /// Checks that `other` is on the same graph and has the same run-time shape.
    pub(crate) fn check_same_shape<S2: Shape>(
        &self,
        op: &'static str,
        other: &Tensor<'t, S2, B>,
    ) -> Result<()> {
        self.check_same_tape(other)?;
        if self.dims() != other.dims() {
            return Err(Error::Shape {
                op,
                expected: self.dims(),
                found: other.dims(),
            });
        }
        Ok(())
    }

    /// Checks that `other` is on the same graph.
    pub(crate) fn check_same_tape<S2: Shape>(&self, other: &Tensor<'t, S2, B>) -> Result<()> {
        if core::ptr::addr_eq(self.tape, other.tape) {
            Ok(())
        } else {
            Err(Error::InvalidTensor)
        }
    }
}

/// Records `e` on `tape` and returns an invalid tensor of shape `shape`.
pub(crate) fn invalid<S: Shape, B: Backend>(
    tape: &dyn Tape<B>,
    shape: S,
    e: Error,
) -> Tensor<'_, S, B> {
    tape.fail(e);
    Tensor::from_id(tape, NONE, shape)
}

fn read_span<B: Backend>(tape: &dyn Tape<B>, span: Span, out: &mut [f32]) -> Result<()> {
    if out.len() != span.len {
        return Err(Error::Length {
            expected: span.len,
            found: out.len(),
        });
    }
    tape.with_buffer(&mut |be, buf| be.download(buf, span, out))
}

impl<'t, S: ConstShape, B: Backend> Tensor<'t, S, B> {
    /// The values as a nested array.
    pub fn to_array(&self) -> Result<S::Array> {
        let mut a = S::zeros_array();
        self.read(S::flat_mut(&mut a))?;
        Ok(a)
    }

    /// The gradient as a nested array, `None` when the tensor has none.
    pub fn grad(&self) -> Result<Option<S::Array>> {
        let mut a = S::zeros_array();
        Ok(self.read_grad(S::flat_mut(&mut a))?.then_some(a))
    }
}

#[cfg(feature = "alloc")]
impl<S: Shape, B: Backend> Tensor<'_, S, B> {
    /// The values in a `Vec` (row-major).
    pub fn to_vec(&self) -> Result<alloc::vec::Vec<f32>> {
        let mut v = alloc::vec![0.0; self.numel()];
        self.read(&mut v)?;
        Ok(v)
    }

    /// The gradient in a `Vec`, `None` when the tensor has none.
    pub fn grad_to_vec(&self) -> Result<Option<alloc::vec::Vec<f32>>> {
        let mut v = alloc::vec![0.0; self.numel()];
        Ok(self.read_grad(&mut v)?.then_some(v))
    }
}
