//! Views: reshape, flatten, squeeze, unsqueeze (which share the input's data)
//! and the transpose of the last two dimensions (which copies).

use crate::backend::{Acc, Backend, Span};
use crate::error::{Error, Result};
use crate::graph::{add_into, Composite, Input, Op};
use crate::shape::{
    check, Const, ConstShape, Dim, HasAxis, HasFirst, InsertAxis, Shape, Transpose,
};
use crate::tensor::{invalid, Tensor};

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    /// The same data seen with another shape of the same size. Between
    /// compile-time shapes a size mismatch does not compile:
    ///
    /// ```compile_fail,E0080
    /// use ember_nn_core::prelude::*;
    /// let mut buf = [0.0f32; 64];
    /// let mut mem = Memory::new(&Cpu, &mut buf[..]);
    /// let g = Graph::new(&mut mem);
    /// let a = g.zeros::<Rank2<2, 3>>();
    /// let _ = a.reshape::<Rank2<4, 2>>(); // 6 elements into 8
    /// ```
    pub fn reshape<S2: ConstShape>(self) -> Tensor<'t, S2, B> {
        let () = check::SameNumel::<S, S2>::OK;
        self.reshape_to(S2::default())
    }

    /// The same data seen with `shape`, which may have run-time dimensions;
    /// the element counts are checked at run time.
    pub fn reshape_to<S2: Shape>(self, shape: S2) -> Tensor<'t, S2, B> {
        let () = check::SameNumel::<S, S2>::OK;
        self.view_as(shape, "reshape")
    }

    /// This tensor (the output of a layer that other nodes compose) seen as
    /// `shape` through a view node that names the layer ([`Op::Layer`]).
    pub(crate) fn mark_layer<S2: Shape>(self, shape: S2, layer: Composite) -> Tensor<'t, S2, B> {
        if shape.numel() != self.numel() {
            return self.view_as(shape, "layer");
        }
        let id = self.tape.record_alias(
            Op::Layer(layer),
            shape.dims_slice(),
            self.id,
            reshape_backward::<B>,
        );
        Tensor::from_id(self.tape, id, shape)
    }

    /// The view node behind every reshape: the element counts checked at
    /// run time only. The public views make their own compile-time check
    /// first, so that a wrong shape is one error, named after the view.
    fn view_as<S2: Shape>(self, shape: S2, op: &'static str) -> Tensor<'t, S2, B> {
        if shape.numel() != self.numel() {
            return invalid(
                self.tape,
                shape,
                Error::Shape {
                    op,
                    expected: self.dims(),
                    found: shape.dims_slice(),
                },
            );
        }
        let id = self.tape.record_alias(
            Op::Reshape,
            shape.dims_slice(),
            self.id,
            reshape_backward::<B>,
        );
        Tensor::from_id(self.tape, id, shape)
    }

    /// Removes axis `AX`, whose size must be 1.
    pub fn squeeze<const AX: usize>(self) -> Tensor<'t, S::Removed, B>
    where
        S: HasAxis<AX>,
    {
        let () = check::UnitAxis::<S, AX>::OK;
        let out = self.shape.remove();
        if self.dims().dims[AX] != 1 {
            return invalid(
                self.tape,
                out,
                Error::Shape {
                    op: "squeeze: the axis is not of size 1",
                    expected: out.dims_slice(),
                    found: self.dims(),
                },
            );
        }
        self.view_as(out, "squeeze")
    }

    /// Inserts an axis of size 1 at `AX`.
    pub fn unsqueeze<const AX: usize>(self) -> Tensor<'t, S::Inserted, B>
    where
        S: InsertAxis<AX>,
    {
        let out = self.shape.insert();
        self.reshape_to(out)
    }

    /// Keeps the first dimension and flattens the rest into `N` (checked at
    /// compile time when the rest is known): `[b, 28, 28]` to `[b, 784]`.
    pub fn flatten<const N: usize>(self) -> Tensor<'t, (S::First, Const<N>), B>
    where
        S: HasFirst,
    {
        let () = check::RestNumel::<S, N>::OK;
        self.view_as((self.shape.first(), Const::<N>), "flatten")
    }

    /// All elements as a vector of `N` (checked at compile time when known).
    pub fn flatten_all<const N: usize>(self) -> Tensor<'t, (Const<N>,), B> {
        self.reshape_to((Const::<N>,))
    }

    /// Swaps the last two dimensions (a copy; PyTorch's `.t()` / `.mT`).
    pub fn t(self) -> Tensor<'t, S::Transposed, B>
    where
        S: Transpose,
    {
        let d = self.dims();
        let r = S::RANK;
        let (rows, cols) = (d.dims[r - 2], d.dims[r - 1]);
        let batch = d.numel() / (rows * cols).max(1);
        let out = self.shape.transposed();
        self.unary_op(
            Op::Transpose { batch, rows, cols },
            out,
            transpose_backward::<B>,
            move |be, buf, y, ins| be.transpose(buf, ins[0], y, batch, rows, cols, Acc::Set),
        )
    }
}

impl<'t, R: Dim, C: Dim, B: Backend> Tensor<'t, (R, C), B> {
    /// Number of rows of a matrix (the batch size of a batch of rows).
    pub fn rows(&self) -> usize {
        self.shape.0.size()
    }
}

pub(crate) fn transpose_backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::Transpose { batch, rows, cols } = *op else {
        return Ok(());
    };
    if let Some(Input { grad: Some(dx), .. }) = inputs[0] {
        be.transpose(buf, dy, dx, batch, cols, rows, Acc::Add)?;
    }
    Ok(())
}

pub(crate) fn reshape_backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    _: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    if let Some(Input { grad: Some(dx), .. }) = inputs[0] {
        add_into(be, buf, dy, dx)?;
    }
    Ok(())
}
