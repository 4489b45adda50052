//! Differentiable operations of the user's own (PyTorch's
//! `torch.autograd.Function`): a type implementing [`CustomOp`] gives a
//! forward pass and the gradient of each input on host slices, and
//! [`Tensor::custom`] / [`Tensor::custom2`] record it on the tape like a
//! built-in operation, so that `backward` and the gradient checker
//! ([`crate::gradcheck`]) go through it. No allocator is needed: the op is a
//! `&'static` value (a `static`, or a promoted constant such as
//! `&SoftThreshold { lambda: 0.5 }`), and its inputs, output and gradients
//! are spans of the graph's memory.
//!
//! It runs where the backend's memory is host memory
//! ([`Backend::host_mut`]: the CPU backends); on another backend (a GPU)
//! recording one is an error, [`Error::Backend`], not a panic.
//!
//! ```
//! use ember_nn_core::prelude::*;
//! use ember_nn_core::ops::custom::CustomOp;
//!
//! /// `y = x³`.
//! struct Cube;
//! impl CustomOp for Cube {
//!     fn name(&self) -> &'static str {
//!         "CubeBackward"
//!     }
//!     fn forward(&self, inputs: &[&[f32]], y: &mut [f32]) -> Result<()> {
//!         for (y, x) in y.iter_mut().zip(inputs[0]) {
//!             *y = x * x * x;
//!         }
//!         Ok(())
//!     }
//!     fn backward(&self, _: usize, inputs: &[&[f32]], _: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
//!         for ((g, x), d) in dx.iter_mut().zip(inputs[0]).zip(dy) {
//!             *g += 3.0 * x * x * d;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut buf = [0.0f32; 64];
//! let mut mem = Memory::new(&Cpu, &mut buf[..]);
//! let g: Graph<'_, Cpu> = Graph::new(&mut mem);
//! let x = g.tensor([1.0f32, 2.0]).requires_grad();
//! let y = x.custom(&Cube);
//! assert_eq!(y.grad_fn(), Some("CubeBackward"));
//! y.sum().backward()?;
//! assert_eq!(x.grad()?, Some([3.0, 12.0]));
//! # Ok::<(), ember_nn_core::Error>(())
//! ```

use crate::backend::{Backend, Span};
use crate::error::{Error, Result};
pub use crate::graph::custom::{CustomOp, CustomRef};
use crate::graph::{Input, Op};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// What a backend without host memory says when a custom operation is recorded.
const NO_HOST: Error = Error::Backend {
    code: 0,
    message: crate::error::Message::new("custom ops need host memory: a CPU backend"),
};

/// Runs `op`'s forward on the values of `ins` as host slices, into the span
/// `out`. `out` must lie after every input (it was allocated after them), so
/// that the shared and the mutable borrows are apart.
fn forward_on_host<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &dyn CustomOp,
    ins: &[Span],
    out: Span,
) -> Result<()> {
    let host = be.host_mut(buf).ok_or(NO_HOST)?;
    if ins.iter().any(|s| s.end() > out.offset) || out.end() > host.len() {
        return Err(Error::InvalidTensor);
    }
    let (lo, hi) = host.split_at_mut(out.offset);
    let mut views: [&[f32]; 3] = [&[]; 3];
    for (v, s) in views.iter_mut().zip(ins) {
        *v = &lo[s.offset..s.end()];
    }
    op.forward(&views[..ins.len()], &mut hi[..out.len])
}

/// The forward kernel of a node recording `op` on `n` inputs.
fn forward<B: Backend>(
    op: &'static dyn CustomOp,
    n: usize,
) -> impl FnMut(&B, &mut B::Buffer, Span, [Span; 3]) -> Result<()> {
    move |be, buf, out, ins| forward_on_host(be, buf, op, &ins[..n], out)
}

/// Accumulates the gradients of a custom node's inputs. Each gradient span
/// is written alone while the values, the output and `dy` are read; the
/// spans are checked to be apart (they are distinct allocations of the
/// graph), so the borrows never alias.
pub(crate) fn backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    y: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::Custom(op) = *op else {
        return Ok(());
    };
    let n = inputs.iter().take_while(|i| i.is_some()).count();
    let mut values = [Span::default(); 3];
    for (v, i) in values.iter_mut().zip(inputs.iter().flatten()) {
        *v = i.value;
    }
    let host = be.host_mut(buf).ok_or(NO_HOST)?;
    for (index, input) in inputs.iter().take(n).enumerate() {
        let Some(grad) = input.and_then(|i| i.grad) else {
            continue;
        };
        let reads = values[..n].iter().chain([&y, &dy]);
        let apart = reads
            .clone()
            .all(|s| s.len == 0 || s.end() <= grad.offset || grad.end() <= s.offset);
        if !apart || grad.end() > host.len() || reads.clone().any(|s| s.end() > host.len()) {
            return Err(Error::InvalidTensor);
        }
        let base = host.as_mut_ptr();
        // SAFETY: every span lies within `host` (checked above), and the
        // one span borrowed mutably (`grad`) overlaps none of the spans
        // borrowed shared (the values, `y`, `dy`); shared borrows may
        // overlap each other. Nothing else touches `host` while they live.
        let (xs, y_s, dy_s, g) = unsafe {
            let view =
                |s: Span| core::slice::from_raw_parts(base.add(s.offset) as *const f32, s.len);
            let mut xs: [&[f32]; 3] = [&[]; 3];
            for (x, s) in xs.iter_mut().zip(&values[..n]) {
                *x = view(*s);
            }
            (
                xs,
                view(y),
                view(dy),
                core::slice::from_raw_parts_mut(base.add(grad.offset), grad.len),
            )
        };
        op.0.backward(index, &xs[..n], y_s, dy_s, g)?;
    }
    Ok(())
}

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    /// `op` applied to this tensor, an output of the same shape (an
    /// elementwise custom function, say).
    pub fn custom(self, op: &'static dyn CustomOp) -> Self {
        let shape = self.shape();
        self.custom_to(op, shape)
    }

    /// `op` applied to this tensor, an output of shape `out`.
    pub fn custom_to<S2: Shape>(self, op: &'static dyn CustomOp, out: S2) -> Tensor<'t, S2, B> {
        self.unary_op(
            Op::Custom(CustomRef(op)),
            out,
            backward::<B>,
            forward::<B>(op, 1),
        )
    }

    /// `op` applied to this tensor and `other` (a learnable parameter,
    /// say), an output of shape `out`.
    pub fn custom2<S2: Shape, S3: Shape>(
        self,
        other: Tensor<'t, S2, B>,
        op: &'static dyn CustomOp,
        out: S3,
    ) -> Tensor<'t, S3, B> {
        if let Err(e) = self.check_same_tape(&other) {
            return crate::tensor::invalid(self.tape(), out, e);
        }
        self.binary_op(
            other.id,
            Op::Custom(CustomRef(op)),
            out,
            backward::<B>,
            forward::<B>(op, 2),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::Error;
    extern crate std;
    use std::vec;

    /// A custom operation on a backend whose memory is not host memory is
    /// an error on the graph, not a panic.
    #[test]
    fn custom_ops_need_host_memory() {
        struct Double;
        impl CustomOp for Double {
            fn name(&self) -> &'static str {
                "DoubleBackward"
            }
            fn forward(&self, x: &[&[f32]], y: &mut [f32]) -> crate::Result<()> {
                y.iter_mut().zip(x[0]).for_each(|(y, x)| *y = 2.0 * x);
                Ok(())
            }
            fn backward(
                &self,
                _: usize,
                _: &[&[f32]],
                _: &[f32],
                dy: &[f32],
                g: &mut [f32],
            ) -> crate::Result<()> {
                g.iter_mut().zip(dy).for_each(|(g, d)| *g += 2.0 * d);
                Ok(())
            }
        }
        let mut buf = vec![0.0f32; 64];
        let mut mem = crate::Memory::new(&crate::backend::conformance::tests::Broken, &mut buf[..]);
        let g: crate::Graph<'_, crate::backend::conformance::tests::Broken> =
            crate::Graph::new(&mut mem);
        let y = g.tensor([1.0f32, 2.0]).custom(&Double);
        assert!(!y.is_valid());
        assert!(
            matches!(g.status(), Err(Error::Backend { .. })),
            "{:?}",
            g.status()
        );
        // The same op on the CPU.
        let mut buf = vec![0.0f32; 64];
        let mut mem = crate::Memory::new(&Cpu, &mut buf[..]);
        let g: crate::Graph<'_, Cpu> = crate::Graph::new(&mut mem);
        let x = g.tensor([1.0f32, 2.0]).requires_grad();
        let y = x.custom(&Double);
        assert_eq!(y.to_array().unwrap(), [2.0, 4.0]);
        y.sum().backward().unwrap();
        assert_eq!(x.grad().unwrap(), Some([2.0, 2.0]));
    }
}
