//! Memory: one buffer that holds parameters, their gradients, optimizer state
//! and, above those, the scratch space of a [`Graph`](crate::Graph).
//!
//! The buffer belongs to the caller: a `static` array on a microcontroller, a
//! stack array, a `Vec` on the host, device memory on a GPU. `Memory` only
//! keeps track of how much of it is taken. Persistent allocations (parameters,
//! optimizer state) are made between graphs; a graph uses what is left and
//! gives it back when it is dropped.

use crate::backend::{Backend, Span};
use crate::error::{Error, Result};
use crate::shape::{ConstShape, Dims, Shape};

/// A parameter (or any persistent tensor): its value and its gradient, which
/// accumulates across backward passes until it is zeroed.
#[derive(Debug, PartialEq, Eq)]
pub struct Param<S: Shape> {
    /// Where the value lives.
    pub value: Span,
    /// Where the gradient lives.
    pub grad: Span,
    /// The shape.
    pub shape: S,
}

impl<S: Shape> Clone for Param<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: Shape> Copy for Param<S> {}

/// A parameter with its shape erased: where its value and gradient live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamRef {
    /// Where the value lives.
    pub value: Span,
    /// Where the gradient lives.
    pub grad: Span,
}

impl<S: Shape> From<Param<S>> for ParamRef {
    fn from(p: Param<S>) -> Self {
        ParamRef {
            value: p.value,
            grad: p.grad,
        }
    }
}

impl<S: Shape> From<&Param<S>> for ParamRef {
    fn from(p: &Param<S>) -> Self {
        ParamRef::from(*p)
    }
}

impl<S: Shape> Param<S> {
    /// The sizes, for messages.
    pub fn dims(&self) -> Dims {
        self.shape.dims_slice()
    }
}

/// Bookkeeping over a caller-provided backend buffer.
pub struct Memory<'m, B: Backend> {
    backend: &'m B,
    buf: &'m mut B::Buffer,
    used: usize,
}

impl<'m, B: Backend> Memory<'m, B> {
    /// Manages `buf`; its contents are left as they are until written.
    pub fn new(backend: &'m B, buf: &'m mut B::Buffer) -> Self {
        Memory {
            backend,
            buf,
            used: 0,
        }
    }

    /// Manages `buf` whose first `used` floats are persistent already: the
    /// allocations (parameters, optimizer state) that an earlier `Memory`
    /// over the same buffer made, whose [`used`](Self::used) this is. They
    /// are kept as they are, and a model built then (which holds only
    /// [`Span`]s into the buffer) works with this `Memory` as with the
    /// first. A smaller `used` than the earlier memory's frees what was
    /// allocated above it (optimizer state made after the model, say) for
    /// graphs and new allocations.
    ///
    /// An [`Error::InvalidArgument`] when `used` is more than the buffer
    /// holds. Allocates nothing.
    ///
    /// ```
    /// use ember_nn_core::prelude::*;
    /// let mut buf = [0.0f32; 64];
    /// let (p, used) = {
    ///     let mut mem = Memory::new(&Cpu, &mut buf[..]);
    ///     let p = mem.param::<Rank1<2>>(&[1.0, 2.0])?;
    ///     (p, mem.used())
    /// };
    /// let mem = Memory::with_used(&Cpu, &mut buf[..], used)?;
    /// assert_eq!(mem.value(&p)?, [1.0, 2.0]);
    /// assert_eq!(mem.available(), 64 - used);
    /// drop(mem);
    /// assert!(Memory::with_used(&Cpu, &mut buf[..], 65).is_err());
    /// # Ok::<(), ember_nn_core::Error>(())
    /// ```
    pub fn with_used(backend: &'m B, buf: &'m mut B::Buffer, used: usize) -> Result<Self> {
        if used > backend.buffer_len(buf) {
            return Err(Error::InvalidArgument {
                what: "more persistent floats than the buffer holds",
            });
        }
        Ok(Memory { backend, buf, used })
    }

    /// The backend.
    pub fn backend(&self) -> &'m B {
        self.backend
    }

    /// Floats in the buffer.
    pub fn capacity(&self) -> usize {
        self.backend.buffer_len(self.buf)
    }

    /// Floats taken by persistent allocations.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Floats left for graphs and further allocations.
    pub fn available(&self) -> usize {
        self.capacity() - self.used
    }

    /// Takes `len` floats, zeroed, for as long as the memory lives.
    pub fn alloc(&mut self, len: usize) -> Result<Span> {
        let available = self.available();
        if len > available {
            return Err(Error::OutOfMemory {
                needed: len,
                available,
            });
        }
        let s = Span::new(self.used, len);
        self.backend.fill(self.buf, s, 0.0)?;
        self.used += len;
        Ok(s)
    }

    /// A parameter with the given initial value and a zero gradient.
    pub fn param<S: ConstShape>(&mut self, init: &S::Array) -> Result<Param<S>> {
        let p = self.param_zeros::<S>()?;
        self.backend.upload(self.buf, p.value, S::flat(init))?;
        Ok(p)
    }

    /// A parameter whose value and gradient are zero.
    pub fn param_zeros<S: ConstShape>(&mut self) -> Result<Param<S>> {
        let needed = 2 * S::NUMEL;
        if needed > self.available() {
            return Err(Error::OutOfMemory {
                needed,
                available: self.available(),
            });
        }
        self.param_zeros_shaped(S::default())
    }

    /// A zero parameter of any shape, including run-time dimensions.
    pub fn param_zeros_shaped<S: Shape>(&mut self, shape: S) -> Result<Param<S>> {
        let n = shape.numel();
        let needed = 2 * n;
        if needed > self.available() {
            return Err(Error::OutOfMemory {
                needed,
                available: self.available(),
            });
        }
        let value = self.alloc(n)?;
        let grad = self.alloc(n)?;
        Ok(Param { value, grad, shape })
    }

    /// A parameter of any shape (including run-time dimensions) holding a copy of `data`.
    pub fn param_shaped<S: Shape>(&mut self, shape: S, data: &[f32]) -> Result<Param<S>> {
        if data.len() != shape.numel() {
            return Err(Error::Length {
                expected: shape.numel(),
                found: data.len(),
            });
        }
        let p = self.param_zeros_shaped(shape)?;
        self.backend.upload(self.buf, p.value, data)?;
        Ok(p)
    }

    /// A parameter whose `i`-th element (row-major) is `f(i)`.
    pub fn param_from_fn<S: ConstShape>(
        &mut self,
        f: impl FnMut(usize) -> f32,
    ) -> Result<Param<S>> {
        let p = self.param_zeros::<S>()?;
        self.write_fn(p.value, f)?;
        Ok(p)
    }

    /// Fills `dst` with `f(0), f(1), ...`, in chunks, without allocating.
    pub fn write_fn(&mut self, dst: Span, mut f: impl FnMut(usize) -> f32) -> Result<()> {
        let mut chunk = [0.0f32; 64];
        let mut done = 0;
        while done < dst.len {
            compact_loop!();
            compact_loop!();
            let n = (dst.len - done).min(chunk.len());
            for (i, c) in chunk[..n].iter_mut().enumerate() {
                compact_loop!();
                compact_loop!();
                *c = f(done + i);
            }
            self.backend
                .upload(self.buf, dst.sub(done, n), &chunk[..n])?;
            done += n;
        }
        Ok(())
    }

    /// Copies host floats into a span of the memory.
    pub fn write(&mut self, dst: Span, src: &[f32]) -> Result<()> {
        self.check(dst)?;
        if src.len() != dst.len {
            return Err(Error::Length {
                expected: dst.len,
                found: src.len(),
            });
        }
        self.backend.upload(self.buf, dst, src)
    }

    /// Copies a span of the memory to host floats.
    pub fn read(&self, src: Span, dst: &mut [f32]) -> Result<()> {
        self.check(src)?;
        if dst.len() != src.len {
            return Err(Error::Length {
                expected: src.len,
                found: dst.len(),
            });
        }
        self.backend.download(self.buf, src, dst)
    }

    /// Sets a span to a constant.
    pub fn fill(&mut self, dst: Span, value: f32) -> Result<()> {
        self.check(dst)?;
        self.backend.fill(self.buf, dst, value)
    }

    /// A parameter's value as an array.
    pub fn value<S: ConstShape>(&self, p: &Param<S>) -> Result<S::Array> {
        let mut a = S::zeros_array();
        self.read(p.value, S::flat_mut(&mut a))?;
        Ok(a)
    }

    /// A parameter's gradient as an array.
    pub fn grad<S: ConstShape>(&self, p: &Param<S>) -> Result<S::Array> {
        let mut a = S::zeros_array();
        self.read(p.grad, S::flat_mut(&mut a))?;
        Ok(a)
    }

    /// Sets a parameter's value.
    pub fn set_value<S: ConstShape>(&mut self, p: &Param<S>, value: &S::Array) -> Result<()> {
        self.write(p.value, S::flat(value))
    }

    /// Zeroes a parameter's gradient.
    pub fn zero_grad<S: Shape>(&mut self, p: &Param<S>) -> Result<()> {
        self.fill(p.grad, 0.0)
    }

    /// Runs a backend operation directly on the buffer (used by optimizers).
    pub fn with_buffer<R>(&mut self, f: impl FnOnce(&B, &mut B::Buffer) -> Result<R>) -> Result<R> {
        f(self.backend, self.buf)
    }

    fn check(&self, s: Span) -> Result<()> {
        if s.end() > self.capacity() {
            return Err(Error::InvalidArgument {
                what: "span outside the memory",
            });
        }
        Ok(())
    }

    pub(crate) fn split(&mut self) -> (&'m B, &mut B::Buffer, usize) {
        (self.backend, self.buf, self.used)
    }
}
