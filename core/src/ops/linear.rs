//! The affine map of a fully connected layer, `y = x Wᵀ + b` (PyTorch's
//! `F.linear`, `addmm`), as one node: the bias is broadcast into the output
//! and the product accumulated onto it, so a layer records one node and one
//! `[rows, out]` buffer instead of three.
//!
//! [`Tensor::linear_act`] fuses the activation after it as well:
//! `y = f(x Wᵀ + b)` is the product, then one in-place pass that adds the
//! bias and applies `f` ([`Backend::bias_act`]). Its backward turns the
//! output gradient into the pre-activation gradient in place
//! ([`Backend::act_backward`], from the output alone), so the layer keeps
//! one `[rows, out]` buffer and no pre-activation copy.

use crate::backend::{Acc, AxisDims, Backend, Gemm, Reduce, Span};
use crate::error::{Error, Result};
use crate::graph::{Backward, Input, Kernel, Op};
use crate::ops::map::{Map, MapFn};
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
        let (m, n, k) = match self.affine_dims(&weight, &bias) {
            Ok(d) => d,
            Err(e) => return invalid(self.tape, out, e),
        };
        let id = self.record_affine(
            Op::Linear { m, n, k },
            out,
            &weight,
            &bias,
            backward::<B>,
            &mut |be, buf, y, ins| {
                let rows = AxisDims {
                    outer: 1,
                    len: m,
                    inner: n,
                };
                be.expand(buf, ins[2], y, rows, Acc::Set)?;
                be.gemm(buf, 1, &product(m, n, k, ins, y, Acc::Add))
            },
        );
        Tensor::from_id(self.tape, id, out)
    }

    /// `f(self · weightᵀ + bias)`: [`linear`](Self::linear) and an
    /// activation in one node, whose gradient is worked out from the output
    /// alone (see [`Map::fuses`]: ReLU, leaky ReLU, sigmoid, tanh). Another
    /// `f` is recorded unfused, as `linear` then [`map`](Self::map), with the
    /// same result.
    pub fn linear_act<N: Dim>(
        self,
        weight: Tensor<'t, (N, K), B>,
        bias: Tensor<'t, (N,), B>,
        f: Map,
    ) -> Tensor<'t, (R, N), B> {
        self.linear_act_fn(weight, bias, f)
    }

    /// [`linear_act`](Self::linear_act) with the activation given as a type
    /// ([`fns`](crate::ops::map::fns): only that function's kernels are
    /// compiled), or a [`Map`].
    pub fn linear_act_fn<N: Dim, F: MapFn>(
        self,
        weight: Tensor<'t, (N, K), B>,
        bias: Tensor<'t, (N,), B>,
        f: F,
    ) -> Tensor<'t, (R, N), B> {
        if !f.map().fuses() {
            return self.linear(weight, bias).map_fn(f);
        }
        let out = (self.shape.0, weight.shape.0);
        let (m, n, k) = match self.affine_dims(&weight, &bias) {
            Ok(d) => d,
            Err(e) => return invalid(self.tape, out, e),
        };
        let id = self.record_affine(
            Op::LinearAct {
                m,
                n,
                k,
                act: f.map(),
            },
            out,
            &weight,
            &bias,
            act_backward::<B, F>,
            &mut |be, buf, y, ins| {
                be.gemm(buf, 1, &product(m, n, k, ins, y, Acc::Set))?;
                be.bias_act_fn(buf, f, ins[2], y)
            },
        );
        Tensor::from_id(self.tape, id, out)
    }

    /// `(m, n, k)` of an affine map of this input by `weight` and `bias`,
    /// or why they do not fit.
    fn affine_dims<N: Dim>(
        &self,
        weight: &Tensor<'t, (N, K), B>,
        bias: &Tensor<'t, (N,), B>,
    ) -> Result<(usize, usize, usize)> {
        let (m, k, n) = (
            self.shape.0.size(),
            self.shape.1.size(),
            weight.shape.0.size(),
        );
        self.check_same_tape(weight)?;
        self.check_same_tape(bias)?;
        if weight.shape.1.size() != k || bias.shape.0.size() != n {
            return Err(Error::Shape {
                op: "linear: weight must be [out, in] and bias [out]",
                expected: self.dims(),
                found: weight.dims(),
            });
        }
        Ok((m, n, k))
    }

    fn record_affine<N: Dim>(
        &self,
        op: Op,
        out: (R, N),
        weight: &Tensor<'t, (N, K), B>,
        bias: &Tensor<'t, (N,), B>,
        backward: Backward<B>,
        kernel: Kernel<'_, B>,
    ) -> u32 {
        if !self.is_valid() || !weight.is_valid() || !bias.is_valid() {
            crate::graph::NONE
        } else {
            self.tape.record(
                op,
                out.dims_slice(),
                [self.id, weight.id, bias.id],
                backward,
                kernel,
            )
        }
    }
}

/// The product of an affine map's input (`ins[0]`, `[m, k]`) by its weight
/// (`ins[1]`, `[n, k]`) transposed, into `y`.
fn product(m: usize, n: usize, k: usize, ins: [Span; 3], y: Span, acc: Acc) -> Gemm {
    Gemm {
        m,
        n,
        k,
        a: ins[0],
        trans_a: false,
        b: ins[1],
        trans_b: true,
        c: y,
        acc,
    }
}

use crate::shape::Shape;

/// The backward of [`Op::LinearAct`]: the output gradient `dy` becomes the
/// pre-activation gradient in place (nothing reads a node's gradient after
/// its own backward), then as [`Op::Linear`].
fn act_backward<B: Backend, F: MapFn>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    y: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::LinearAct { m, n, k, act } = *op else {
        return Ok(());
    };
    if inputs.iter().flatten().all(|i| i.grad.is_none()) {
        return Ok(());
    }
    be.act_backward_fn(buf, F::from_map(act), y, dy)?;
    affine_backward(be, buf, (m, n, k), dy, inputs)
}

/// The backward of [`Op::Linear`].
fn backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::Linear { m, n, k } = *op else {
        return Ok(());
    };
    affine_backward(be, buf, (m, n, k), dy, inputs)
}

fn affine_backward<B: Backend>(
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
