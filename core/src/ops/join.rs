//! Joining: concatenation along an axis and stacking along a new first axis.

use crate::backend::{Acc, Backend, Blocks, Span};
use crate::error::{Error, Result};
use crate::graph::{Input, Op};
use crate::shape::{check, HasAxis, Shape, Stack, MAX_RANK};
use crate::tensor::{invalid, Tensor};

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    /// Concatenates `self` and `other` along axis `AX` (PyTorch's
    /// `torch.cat((self, other), AX)`); the result's axis `AX` is a run-time
    /// dimension, the others keep `self`'s types. The inputs must agree
    /// outside `AX` (checked at run time; between compile-time sizes it does
    /// not compile). To get a compile-time shape, name it with
    /// [`cat_to`](Self::cat_to).
    ///
    /// ```
    /// use ember_nn_core::prelude::*;
    /// let mut buf = [0.0f32; 64];
    /// let mut mem = Memory::new(&Cpu, &mut buf[..]);
    /// let g = Graph::new(&mut mem);
    /// let a = g.tensor([[1.0f32, 2.0], [3.0, 4.0]]);
    /// let b = g.tensor([[5.0f32, 6.0]]);
    /// let c = a.cat::<0, _>(b); // (usize, Const<2>)
    /// assert_eq!(c.dims().as_slice(), &[3, 2]);
    /// let mut out = [0.0f32; 6];
    /// c.read(&mut out)?;
    /// assert_eq!(out, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    /// # Ok::<(), ember_nn_core::Error>(())
    /// ```
    pub fn cat<const AX: usize, S2: Shape>(
        self,
        other: Tensor<'t, S2, B>,
    ) -> Tensor<'t, S::Runtime, B>
    where
        S: HasAxis<AX>,
    {
        self.cat_to::<AX, S::Runtime, S2>(other)
    }

    /// Concatenates `self` and `other` along axis `AX` into the shape `O`
    /// the caller names (stable Rust cannot add dimensions in types);
    /// between compile-time sizes a wrong `O` does not compile:
    ///
    /// ```compile_fail,E0080
    /// use ember_nn_core::prelude::*;
    /// let mut buf = [0.0f32; 64];
    /// let mut mem = Memory::new(&Cpu, &mut buf[..]);
    /// let g = Graph::new(&mut mem);
    /// let a = g.zeros::<Rank2<2, 3>>();
    /// let b = g.zeros::<Rank2<1, 3>>();
    /// let _ = a.cat_to::<0, Rank2<4, 3>, _>(b); // 2 + 1 != 4
    /// ```
    pub fn cat_to<const AX: usize, O: Shape, S2: Shape>(
        self,
        other: Tensor<'t, S2, B>,
    ) -> Tensor<'t, O, B> {
        let () = check::Concat::<S, S2, O, AX>::OK;
        let (a, b) = (self.dims(), other.dims());
        let mut out = [1usize; MAX_RANK];
        let mut ok = true;
        for (i, o) in out.iter_mut().enumerate().take(S::RANK) {
            compact_loop!();
            *o = if i == AX {
                a.dims[i] + b.dims[i]
            } else {
                a.dims[i]
            };
            if i != AX && a.dims[i] != b.dims[i] {
                ok = false;
            }
        }
        let shape = O::from_dims(&out[..O::RANK]);
        let Some(shape) = shape.filter(|_| ok) else {
            return invalid(
                self.tape,
                O::placeholder(),
                Error::Shape {
                    op: "cat: the inputs differ outside the axis, or the output shape is wrong",
                    expected: a,
                    found: b,
                },
            );
        };
        if let Err(e) = self.check_same_tape(&other) {
            return invalid(self.tape, shape, e);
        }
        let outer: usize = a.dims[..AX].iter().product();
        let a_block = a.numel() / outer.max(1);
        let b_block = b.numel() / outer.max(1);
        let op = Op::Concat {
            outer,
            a_block,
            b_block,
        };
        self.binary_op(
            other.id,
            op,
            shape,
            backward::<B>,
            move |be, buf, y, ins| {
                let stride = a_block + b_block;
                be.copy(
                    buf,
                    &Blocks {
                        src: ins[0],
                        src_stride: a_block,
                        dst: y,
                        dst_stride: stride,
                        blocks: outer,
                        block_len: a_block,
                        acc: Acc::Set,
                    },
                )?;
                be.copy(
                    buf,
                    &Blocks {
                        src: ins[1],
                        src_stride: b_block,
                        dst: y.sub(a_block, y.len - a_block),
                        dst_stride: stride,
                        blocks: outer,
                        block_len: b_block,
                        acc: Acc::Set,
                    },
                )
            },
        )
    }

    /// Stacks `self` and `other` along a new first axis of size 2; their
    /// run-time dimensions must agree too.
    pub fn stack(self, other: Self) -> Tensor<'t, S::Stacked, B>
    where
        S: Stack,
    {
        let mut dims = [1usize; MAX_RANK];
        dims[0] = 2;
        dims[1..=S::RANK].copy_from_slice(self.dims().as_slice());
        match <S::Stacked as Shape>::from_dims(&dims[..S::RANK + 1]) {
            Some(shape) => {
                // Run-time dimensions may differ even though the types agree.
                if let Err(e) = self.check_same_shape("stack", &other) {
                    return invalid(self.tape, shape, e);
                }
                let joined = self
                    .flatten_dyn()
                    .cat_to::<0, (usize,), _>(other.flatten_dyn());
                joined.reshape_to(shape)
            }
            None => invalid(
                self.tape,
                <S::Stacked as Shape>::placeholder(),
                Error::InvalidTensor,
            ),
        }
    }

    fn flatten_dyn(self) -> Tensor<'t, (usize,), B> {
        let n = self.numel();
        self.reshape_to((n,))
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
    let Op::Concat {
        outer,
        a_block,
        b_block,
    } = *op
    else {
        return Ok(());
    };
    let stride = a_block + b_block;
    if let Some(Input { grad: Some(da), .. }) = inputs[0] {
        be.copy(
            buf,
            &Blocks {
                src: dy,
                src_stride: stride,
                dst: da,
                dst_stride: a_block,
                blocks: outer,
                block_len: a_block,
                acc: Acc::Add,
            },
        )?;
    }
    if let Some(Input { grad: Some(db), .. }) = inputs[1] {
        be.copy(
            buf,
            &Blocks {
                src: dy.sub(a_block, dy.len - a_block),
                src_stride: stride,
                dst: db,
                dst_stride: b_block,
                blocks: outer,
                block_len: b_block,
                acc: Acc::Add,
            },
        )?;
    }
    Ok(())
}
