//! Matrix products: matrix × matrix, vector × matrix, matrix × vector and
//! vector · vector, with either operand stored transposed.

use crate::backend::{Acc, Backend, Gemm, Span};
use crate::error::{Error, Result};
use crate::graph::{Input, Op};
use crate::shape::{Dim, Shape};
use crate::tensor::{invalid, Tensor};

/// Shapes that can be multiplied: `Self · Rhs`.
pub trait MatMul<Rhs> {
    /// The product's type.
    type Output;
    /// The product.
    fn matmul(self, rhs: Rhs) -> Self::Output;
}

/// Records `a · b` where `a` is viewed as `[m, k]` (or `[k, m]` stored when
/// `trans_a`) and `b` as `[k, n]` (or `[n, k]` when `trans_b`).
#[allow(clippy::too_many_arguments)]
fn product<'t, SA: Shape, SB: Shape, SO: Shape, B: Backend>(
    a: Tensor<'t, SA, B>,
    b: Tensor<'t, SB, B>,
    out: SO,
    mnk: (usize, usize, usize),
    ks: (usize, usize),
    trans_a: bool,
    trans_b: bool,
) -> Tensor<'t, SO, B> {
    batched(a, b, out, (1, 1), mnk, ks, trans_a, trans_b)
}

/// [`product`] of `batch` pairs of matrices laid out one after another
/// (`batches` are the two operands' batch sizes, which must agree).
#[allow(clippy::too_many_arguments)]
fn batched<'t, SA: Shape, SB: Shape, SO: Shape, B: Backend>(
    a: Tensor<'t, SA, B>,
    b: Tensor<'t, SB, B>,
    out: SO,
    (batch, batch_b): (usize, usize),
    (m, n, k): (usize, usize, usize),
    (ka, kb): (usize, usize),
    trans_a: bool,
    trans_b: bool,
) -> Tensor<'t, SO, B> {
    if let Err(e) = a.check_same_tape(&b) {
        return invalid(a.tape, out, e);
    }
    if batch != batch_b {
        return invalid(
            a.tape,
            out,
            Error::Shape {
                op: "bmm: batch sizes differ",
                expected: a.dims(),
                found: b.dims(),
            },
        );
    }
    if ka != kb {
        return invalid(
            a.tape,
            out,
            Error::Shape {
                op: "matmul: inner dimensions differ",
                expected: a.dims(),
                found: b.dims(),
            },
        );
    }
    let op = Op::MatMul {
        batch,
        m,
        n,
        k,
        trans_a,
        trans_b,
    };
    a.binary_op(b.id, op, out, backward::<B>, move |be, buf, c, ins| {
        be.gemm(
            buf,
            batch,
            &Gemm {
                m,
                n,
                k,
                a: ins[0],
                trans_a,
                b: ins[1],
                trans_b,
                c,
                acc: Acc::Set,
            },
        )
    })
}

impl<'t, M: Dim, K: Dim, N: Dim, B: Backend> MatMul<Tensor<'t, (K, N), B>>
    for Tensor<'t, (M, K), B>
{
    type Output = Tensor<'t, (M, N), B>;
    fn matmul(self, rhs: Tensor<'t, (K, N), B>) -> Self::Output {
        let (m, k, n) = (self.shape.0.size(), self.shape.1.size(), rhs.shape.1.size());
        let out = (self.shape.0, rhs.shape.1);
        product(
            self,
            rhs,
            out,
            (m, n, k),
            (k, rhs.shape.0.size()),
            false,
            false,
        )
    }
}

impl<'t, K: Dim, N: Dim, B: Backend> MatMul<Tensor<'t, (K, N), B>> for Tensor<'t, (K,), B> {
    type Output = Tensor<'t, (N,), B>;
    fn matmul(self, rhs: Tensor<'t, (K, N), B>) -> Self::Output {
        let (k, n) = (self.shape.0.size(), rhs.shape.1.size());
        product(
            self,
            rhs,
            (rhs.shape.1,),
            (1, n, k),
            (k, rhs.shape.0.size()),
            false,
            false,
        )
    }
}

impl<'t, M: Dim, K: Dim, B: Backend> MatMul<Tensor<'t, (K,), B>> for Tensor<'t, (M, K), B> {
    type Output = Tensor<'t, (M,), B>;
    fn matmul(self, rhs: Tensor<'t, (K,), B>) -> Self::Output {
        let (m, k) = (self.shape.0.size(), self.shape.1.size());
        product(
            self,
            rhs,
            (self.shape.0,),
            (m, 1, k),
            (k, rhs.shape.0.size()),
            false,
            false,
        )
    }
}

impl<'t, K: Dim, B: Backend> MatMul<Tensor<'t, (K,), B>> for Tensor<'t, (K,), B> {
    type Output = Tensor<'t, (), B>;
    fn matmul(self, rhs: Tensor<'t, (K,), B>) -> Self::Output {
        let k = self.shape.0.size();
        product(
            self,
            rhs,
            (),
            (1, 1, k),
            (k, rhs.shape.0.size()),
            false,
            false,
        )
    }
}

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    /// Matrix product (PyTorch's `@`): `[m, k]·[k, n]`, `[k]·[k, n]`,
    /// `[m, k]·[k]` or `[k]·[k]`. The inner dimensions must have the same type,
    /// so a mismatch between compile-time sizes does not compile:
    ///
    /// ```compile_fail,E0277
    /// use ember_nn_core::prelude::*;
    /// let mut buf = [0.0f32; 64];
    /// let mut mem = Memory::new(&Cpu, &mut buf[..]);
    /// let g = Graph::new(&mut mem);
    /// let a = g.zeros::<Rank2<2, 3>>();
    /// let b = g.zeros::<Rank2<4, 5>>();
    /// let _ = a.matmul(b); // 3 != 4
    /// ```
    pub fn matmul<R>(self, rhs: R) -> <Self as MatMul<R>>::Output
    where
        Self: MatMul<R>,
    {
        MatMul::matmul(self, rhs)
    }
}

impl<'t, M: Dim, K: Dim, B: Backend> Tensor<'t, (M, K), B> {
    /// `self · rhsᵀ` without materialising the transpose (`rhs` is `[n, k]`,
    /// as a `Linear` layer stores its weight).
    pub fn matmul_t<N: Dim>(self, rhs: Tensor<'t, (N, K), B>) -> Tensor<'t, (M, N), B> {
        let (m, k, n) = (self.shape.0.size(), self.shape.1.size(), rhs.shape.0.size());
        let out = (self.shape.0, rhs.shape.0);
        product(
            self,
            rhs,
            out,
            (m, n, k),
            (k, rhs.shape.1.size()),
            false,
            true,
        )
    }

    /// `selfᵀ · rhs` without materialising the transpose (`self` is `[k, m]`).
    pub fn t_matmul<N: Dim>(self, rhs: Tensor<'t, (M, N), B>) -> Tensor<'t, (K, N), B> {
        let (k, m, n) = (self.shape.0.size(), self.shape.1.size(), rhs.shape.1.size());
        let out = (self.shape.1, rhs.shape.1);
        product(
            self,
            rhs,
            out,
            (m, n, k),
            (k, rhs.shape.0.size()),
            true,
            false,
        )
    }
}

impl<'t, G: Dim, M: Dim, K: Dim, B: Backend> Tensor<'t, (G, M, K), B> {
    /// Batched matrix product (PyTorch's `torch.bmm`): `[g, m, k] · [g, k,
    /// n]` is `[g, m, n]`, one product per leading index.
    pub fn bmm<N: Dim>(self, rhs: Tensor<'t, (G, K, N), B>) -> Tensor<'t, (G, M, N), B> {
        let (g, m, k) = (
            self.shape.0.size(),
            self.shape.1.size(),
            self.shape.2.size(),
        );
        let out = (self.shape.0, self.shape.1, rhs.shape.2);
        let (gb, kb, n) = (rhs.shape.0.size(), rhs.shape.1.size(), rhs.shape.2.size());
        batched(self, rhs, out, (g, gb), (m, n, k), (k, kb), false, false)
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
    let Op::MatMul {
        batch,
        m,
        n,
        k,
        trans_a,
        trans_b,
    } = *op
    else {
        return Ok(());
    };
    let (Some(a), Some(b)) = (inputs[0], inputs[1]) else {
        return Ok(());
    };
    if let Some(da) = a.grad {
        let g = if !trans_a {
            // dA[m,k] += dY[m,n] · op(B)ᵀ
            Gemm {
                m,
                n: k,
                k: n,
                a: dy,
                trans_a: false,
                b: b.value,
                trans_b: !trans_b,
                c: da,
                acc: Acc::Add,
            }
        } else {
            // A is stored [k,m]: dAᵀ[k,m] += op(B) · dYᵀ
            Gemm {
                m: k,
                n: m,
                k: n,
                a: b.value,
                trans_a: trans_b,
                b: dy,
                trans_b: true,
                c: da,
                acc: Acc::Add,
            }
        };
        be.gemm(buf, batch, &g)?;
    }
    if let Some(db) = b.grad {
        let g = if !trans_b {
            // dB[k,n] += op(A)ᵀ · dY
            Gemm {
                m: k,
                n,
                k: m,
                a: a.value,
                trans_a: !trans_a,
                b: dy,
                trans_b: false,
                c: db,
                acc: Acc::Add,
            }
        } else {
            // B is stored [n,k]: dBᵀ[n,k] += dYᵀ · op(A)
            Gemm {
                m: n,
                n: k,
                k: m,
                a: dy,
                trans_a: true,
                b: a.value,
                trans_b: trans_a,
                c: db,
                acc: Acc::Add,
            }
        };
        be.gemm(buf, batch, &g)?;
    }
    Ok(())
}
