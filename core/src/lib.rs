//! # ember-nn-core
//!
//! A deep-learning core that needs neither `std` nor an allocator: tensors
//! whose shapes are checked at compile time, reverse-mode automatic
//! differentiation on a tape of fixed capacity, and the primitives that
//! layers, losses and optimizers are built from. The same code trains a model
//! on a desktop and on a microcontroller.
//!
//! ## A first example
//!
//! PyTorch's autograd tutorial: `Q = 3a³ − b²` with `a = [2, 3]` and
//! `b = [6, 4]`; the gradient of `Q` with respect to `a` is `9a²` and with
//! respect to `b` is `−2b`.
//!
//! ```
//! use ember_nn_core::prelude::*;
//!
//! // All tensor data lives in memory the caller provides: here a stack array.
//! let mut buf = [0.0f32; 128];
//! let mut mem = Memory::new(&Cpu, &mut buf[..]);
//! let g = Graph::new(&mut mem);
//!
//! let a = g.tensor([2.0f32, 3.0]).requires_grad();
//! let b = g.tensor([6.0f32, 4.0]).requires_grad();
//! let q = a.pow(3.0) * 3.0 - b.pow(2.0);
//! assert_eq!(q.to_array()?, [-12.0, 65.0]);
//! assert_eq!(q.grad_fn(), Some("SubBackward"));
//!
//! // Q is a vector, so backward takes the external gradient dQ/dQ = 1.
//! q.backward_with(&[1.0, 1.0])?;
//! assert_eq!(a.grad()?, Some([36.0, 81.0]));
//! assert_eq!(b.grad()?, Some([-12.0, -8.0]));
//! # Ok::<(), ember_nn_core::Error>(())
//! ```
//!
//! ## Design
//!
//! **Where data lives.** A [`Memory`] manages one buffer owned by the caller:
//! a `static` array on a microcontroller, a stack array or `Vec` on the host,
//! device memory on a GPU. Parameters, their gradients and optimizer state are
//! allocated at its bottom and persist; a [`Graph`] borrows the rest as
//! scratch for one forward and backward pass and returns it when dropped.
//! Nothing allocates on the heap, and running out of room is an
//! [`Error::OutOfMemory`], never a panic. Because every operation's output size
//! follows from its shapes, the memory a model needs for a training step is a
//! constant the model can state (`nn` modules do).
//!
//! **Tensors.** A [`Tensor<'t, S, B>`](Tensor) is a `Copy` handle to a node of
//! a graph: its shape type `S` is a tuple of dimensions, each [`Const<N>`]
//! (checked by the compiler) or `usize` (a run-time batch dimension). Ranks 0
//! to 4 are supported, on stable Rust without `generic_const_exprs`: checks
//! that need arithmetic on sizes (reshape, concatenation) are constant
//! evaluations that fail the build when generic code is instantiated.
//!
//! **The tape.** A [`Graph`] holds at most `N` nodes (a const parameter,
//! default [`DEFAULT_NODES`]) in creation order, which is topological, so the
//! backward pass is one reverse sweep. Gradients accumulate into leaves that
//! require them ([`Tensor::requires_grad`], and every parameter) until they
//! are zeroed; intermediate gradients are scratch and are released after each
//! walk. [`Tensor::backward`] frees the graph after walking it;
//! [`Tensor::backward_retain`] keeps it. [`Graph::no_grad`] records nothing
//! for backward, and [`Tensor::detach`] cuts a value off the graph. An
//! operation that fails records the error in the graph and returns an invalid
//! tensor, so operator syntax (`a * b + c`) needs no `?`; the error surfaces
//! at the next call that returns a `Result`.
//!
//! **Operations.** Each family of operations lives in one module of [`ops`]:
//! the tensor methods that record the forward pass, and the backward function
//! for the nodes they record. Elementwise functions and their derivatives are
//! written once ([`backend::Map`], [`backend::Zip`], [`backend::Update`])
//! and shared by every backend.
//!
//! **Backends.** A [`Backend`] provides a buffer type and a
//! small set of kernels over spans of that buffer: upload/download, fill,
//! strided copy, elementwise map and zip (each with its backward), batched
//! GEMM with transposed operands, reduction along an axis and its transpose
//! (broadcast), max's backward and transpose. Everything else (layers,
//! losses, optimizers) is composed from these, so a new backend implements
//! those fourteen methods and nothing more; the fused kernels (bias +
//! activation, softmax, cross-entropy, the optimizer update) have default
//! bodies built from them ([`backend::composed`]) that a backend overrides
//! for speed. A backend over host memory implements
//! [`HostKernels`](backend::HostKernels) instead, on operands that core has
//! checked, and gets its `Backend` impl from [`host_backend!`]. The portable [`Cpu`] backend lives here; the `ember-nn-std` crate
//! adds a multi-threaded, SIMD-friendly one, and `ember-nn-cuda` one whose
//! buffer is GPU memory, with the same model types and training loop.
//!
//! ## Features
//! - `alloc`: `Vec` conveniences such as [`Tensor::to_vec`](Tensor).
//! - `defmt`: `defmt::Format` for [`Error`] and the small public types.
//!
//! ## Gradient checking
//! [`gradcheck`] compares the gradients of any function built from these
//! operations, layers included, with central finite differences.

#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;

/// On bare-metal Arm, an empty `asm!` statement in a loop's body: LLVM's
/// Arm M-profile tuning does not runtime-unroll a loop that contains a call
/// (inline assembly counts as one), and the training code's loops run on
/// few elements there, where unrolling buys little speed for much flash
/// (several KB of a training program). It emits no instruction. Elsewhere it is nothing.
macro_rules! compact_loop {
    () => {
        #[cfg(all(target_arch = "arm", target_os = "none"))]
        // SAFETY: no instructions, no operands.
        unsafe {
            core::arch::asm!("", options(nomem, nostack, preserves_flags));
        }
    };
}

pub mod backend;
pub mod deploy;
pub mod error;
pub mod gradcheck;
pub mod graph;
pub mod memory;
pub mod nn;
pub mod ops;
pub mod rng;
pub mod shape;
mod sqrt;
pub mod tensor;

pub use backend::{Backend, Cpu, Span};
pub use error::{Error, Message, Result};
pub use graph::{Graph, Tape, DEFAULT_NODES};
pub use memory::{Memory, Param, ParamRef};
pub use rng::Rng;
pub use shape::{Batch, Const, ConstShape, Dim, Rank0, Rank1, Rank2, Rank3, Rank4, Shape};
pub use tensor::Tensor;

/// The names most programs need.
pub mod prelude {
    pub use crate::backend::{Backend, Cpu, Padding};
    pub use crate::error::{Error, Result};
    pub use crate::graph::{Graph, Tape};
    pub use crate::memory::{Memory, Param};
    pub use crate::ops::conv::ConvOptions;
    pub use crate::ops::matmul::MatMul;
    pub use crate::ops::pool::PoolOptions;
    pub use crate::rng::Rng;
    pub use crate::shape::{
        Batch, Const, ConstShape, Dim, Rank0, Rank1, Rank2, Rank3, Rank4, Shape,
    };
    pub use crate::tensor::Tensor;
}
