//! The affine map of a fully connected layer, `y = x Wᵀ + b` (PyTorch's
//! `F.linear`, `addmm`), as one node: the bias is broadcast into the output
//! and the product accumulated onto it, so a layer records one node and one
//! `[rows, out]` buffer instead of three.

use crate::backend::{Acc, AxisDims, Backend, Gemm, Reduce, Span};
use crate::error::{Error, Result};
use crate::graph::{Input, Op};
use crate::shape::Dim;
use crate::tensor::{invalid, Tensor};

impl<'t, R: Dim, K: Dim, B: Backend> Tensor<'t, (R, K), B> {
    /// `self · weightᵀ + bias`, with `weight` stored `[n, k]` and `bias` `[n]`,
    /// as `nn.Linear` stores them.
    pub fn linear<N: Dim>(
        self,
        weight: Tensor<'t, (N, K), B>,
        bias: Tensor<'t, (N,), B>,
    ) -> Tensor<'t, (R, N), B> {
        let out = (self.shape.0, weight.shape.0);
        let (m, k, n) = (
            self.shape.0.size(),
            self.shape.1.size(),
            weight.shape.0.size(),
        );
        if let Err(e) = self
            .check_same_tape(&weight)
            .and_then(|()| self.check_same_tape(&bias))
        {
            return invalid(self.tape, out, e);
        }
        if weight.shape.1.size() != k || bias.shape.0.size() != n {
            return invalid(
                self.tape,
                out,
                Error::Shape {
                    op: "linear: weight must be [out, in] and bias [out]",
                    expected: self.dims(),
                    found: weight.dims(),
                },
            );
        }
        let id = if !self.is_valid() || !weight.is_valid() || !bias.is_valid() {
            crate::graph::NONE
        } else {
            self.tape.record(
                Op::Linear { m, n, k },
                out.dims_slice(),
                [self.id, weight.id, bias.id],
                &mut |be, buf, y, ins| {
                    let rows = AxisDims {
                        outer: 1,
                        len: m,
                        inner: n,
                    };
                    be.expand(buf, ins[2], y, rows, Acc::Set)?;
                    be.gemm(
                        buf,
                        1,
                        &Gemm {
                            m,
                            n,
                            k,
                            a: ins[0],
                            trans_a: false,
                            b: ins[1],
                            trans_b: true,
                            c: y,
                            acc: Acc::Add,
                        },
                    )
                },
            )
        };
        Tensor::from_id(self.tape, id, out)
    }
}

use crate::shape::Shape;

pub(crate) fn backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    (m, n, k): (usize, usize, usize),
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let (Some(x), Some(w)) = (inputs[0], inputs[1]) else {
        return Ok(());
    };
    if let Some(dx) = x.grad {
        // dX[m,k] += dY[m,n] · W[n,k]
        let g = Gemm {
            m,
            n: k,
            k: n,
            a: dy,
            trans_a: false,
            b: w.value,
            trans_b: false,
            c: dx,
            acc: Acc::Add,
        };
        be.gemm(buf, 1, &g)?;
    }
    if let Some(dw) = w.grad {
        // dW[n,k] += dYᵀ[n,m] · X[m,k]
        let g = Gemm {
            m: n,
            n: k,
            k: m,
            a: dy,
            trans_a: true,
            b: x.value,
            trans_b: false,
            c: dw,
            acc: Acc::Add,
        };
        be.gemm(buf, 1, &g)?;
    }
    if let Some(Input { grad: Some(db), .. }) = inputs[2] {
        // db[n] += Σ_rows dY
        be.reduce(
            buf,
            Reduce::Sum,
            dy,
            db,
            AxisDims {
                outer: 1,
                len: m,
                inner: n,
            },
            Acc::Add,
        )?;
    }
    Ok(())
}
