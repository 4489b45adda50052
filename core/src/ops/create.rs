//! Making tensors: from arrays and slices, constants, ranges, identity
//! matrices, random values, and parameters from [`Memory`](crate::Memory).

use crate::backend::Backend;
use crate::error::Error;
use crate::graph::{no_backward, Op, Tape, NONE};
use crate::memory::{Param, ParamRef};
use crate::rng::Rng;
use crate::shape::{ArrayShape, Const, ConstShape, Shape};
use crate::tensor::{invalid, Tensor};

impl<'t, B: Backend> dyn Tape<B> + 't {
    /// Records a leaf of `shape` whose `i`-th element is `f(i)`, written in
    /// chunks so that no host buffer of the tensor's size is needed.
    pub fn from_fn<S: Shape>(
        &'t self,
        shape: S,
        mut f: impl FnMut(usize) -> f32,
    ) -> Tensor<'t, S, B> {
        let id = self.record(
            Op::Leaf,
            shape.dims_slice(),
            [NONE; 3],
            no_backward::<B>,
            &mut |be, buf, out, _| {
                let mut chunk = [0.0f32; 256];
                let mut done = 0;
                while done < out.len {
                    compact_loop!();
                    let n = (out.len - done).min(chunk.len());
                    for (i, c) in chunk[..n].iter_mut().enumerate() {
                        compact_loop!();
                        *c = f(done + i);
                    }
                    be.upload(buf, out.sub(done, n), &chunk[..n])?;
                    done += n;
                }
                Ok(())
            },
        );
        Tensor::from_id(self, id, shape)
    }

    /// A leaf holding a copy of a nested array; the shape follows the array's
    /// type: `g.tensor([[1.0, 2.0]])` is a `Rank2<1, 2>`.
    pub fn tensor<A: ArrayShape>(&'t self, data: A) -> Tensor<'t, A::Shape, B> {
        self.from_slice(A::Shape::default(), <A::Shape as ConstShape>::flat(&data))
    }

    /// A leaf holding a copy of `data` (row-major), of any shape, including run-time ones.
    pub fn from_slice<S: Shape>(&'t self, shape: S, data: &[f32]) -> Tensor<'t, S, B> {
        if data.len() != shape.numel() {
            return invalid(
                self,
                shape,
                Error::Length {
                    expected: shape.numel(),
                    found: data.len(),
                },
            );
        }
        let id = self.record(
            Op::Leaf,
            shape.dims_slice(),
            [NONE; 3],
            no_backward::<B>,
            &mut |be, buf, out, _| be.upload(buf, out, data),
        );
        Tensor::from_id(self, id, shape)
    }

    /// A leaf filled with `value`.
    pub fn full_like<S: Shape>(&'t self, shape: S, value: f32) -> Tensor<'t, S, B> {
        let id = self.record(
            Op::Leaf,
            shape.dims_slice(),
            [NONE; 3],
            no_backward::<B>,
            &mut |be, buf, out, _| be.fill(buf, out, value),
        );
        Tensor::from_id(self, id, shape)
    }

    /// Zeros of a compile-time shape.
    pub fn zeros<S: ConstShape>(&'t self) -> Tensor<'t, S, B> {
        self.full_like(S::default(), 0.0)
    }

    /// Ones of a compile-time shape.
    pub fn ones<S: ConstShape>(&'t self) -> Tensor<'t, S, B> {
        self.full_like(S::default(), 1.0)
    }

    /// A compile-time shape filled with `value`.
    pub fn full<S: ConstShape>(&'t self, value: f32) -> Tensor<'t, S, B> {
        self.full_like(S::default(), value)
    }

    /// The `R × C` matrix with ones on the main diagonal (PyTorch's `eye(R, C)`).
    pub fn eye<const R: usize, const C: usize>(&'t self) -> Tensor<'t, (Const<R>, Const<C>), B> {
        self.from_fn(
            Default::default(),
            |i| if i / C == i % C { 1.0 } else { 0.0 },
        )
    }

    /// `start, start + step, ...`, `N` values.
    pub fn arange<const N: usize>(&'t self, start: f32, step: f32) -> Tensor<'t, (Const<N>,), B> {
        self.from_fn(Default::default(), |i| start + step * i as f32)
    }

    /// `N` evenly spaced values from `start` to `end`, both included.
    pub fn linspace<const N: usize>(&'t self, start: f32, end: f32) -> Tensor<'t, (Const<N>,), B> {
        let step = if N > 1 {
            (end - start) / (N - 1) as f32
        } else {
            0.0
        };
        self.from_fn(Default::default(), |i| {
            if N > 1 && i == N - 1 {
                end
            } else {
                start + step * i as f32
            }
        })
    }

    /// Uniform values in `[0, 1)`.
    pub fn rand<S: Shape>(&'t self, shape: S, rng: &mut Rng) -> Tensor<'t, S, B> {
        self.from_fn(shape, |_| rng.uniform())
    }

    /// Standard normal values.
    pub fn randn<S: Shape>(&'t self, shape: S, rng: &mut Rng) -> Tensor<'t, S, B> {
        self.from_fn(shape, |_| rng.normal())
    }

    /// The parameter `p` as a leaf of this graph: no copy is made, and its
    /// gradient accumulates into the parameter's gradient in memory.
    pub fn param<S: Shape>(&'t self, p: &Param<S>) -> Tensor<'t, S, B> {
        let shape = p.shape;
        let id = self.record_param(shape.dims_slice(), p.value, p.grad);
        Tensor::from_id(self, id, shape)
    }

    /// A parameter of any shape seen as a flat vector (for penalties and
    /// statistics over all of a model's parameters).
    pub fn param_flat(&'t self, p: &ParamRef) -> Tensor<'t, (usize,), B> {
        let shape = (p.value.len,);
        let id = self.record_param(shape.dims_slice(), p.value, p.grad);
        Tensor::from_id(self, id, shape)
    }
}
