//! Batch normalisation over the rows of a `[rows, features]` tensor
//! (PyTorch's `F.batch_norm` on `[N, C]` input), forward and backward side
//! by side. One node: its inputs are the batch, `γ` and `β`; the running
//! statistics are spans of persistent memory named in the node's op
//! ([`BatchNormStats`]), which the forward updates in training mode.
//!
//! Both passes work on blocks of up to 32 features (`BLOCK`) with stack
//! arrays, through the backend's `download`/`upload`: no allocation, and no
//! scratch in the graph beyond the output and its gradient.

use crate::backend::{Backend, Span};
use crate::error::{Error, Result};
use crate::graph::{Input, Op};
use crate::shape::Dim;
use crate::tensor::{invalid, Tensor};

/// Features processed together (the stack arrays' length).
const BLOCK: usize = 32;

/// What PyTorch says of a training batch of one row.
pub const ONE_ROW: &str = "Expected more than 1 value per channel when training";

pub use crate::graph::BatchNormStats;

impl<'t, R: Dim, C: Dim, B: Backend> Tensor<'t, (R, C), B> {
    /// `(x − μ) / √(σ² + eps) · γ + β` per feature (column), as PyTorch's
    /// `F.batch_norm(x, running_mean, running_var, weight, bias, training,
    /// momentum, eps)`: in training mode `μ`, `σ²` are the batch's mean
    /// and biased variance, and the running statistics move towards the
    /// batch's (with its unbiased variance) by `momentum`; otherwise they
    /// are the running ones. A training batch of one row is an
    /// [`Error::InvalidArgument`] recorded on the graph.
    pub fn batch_norm(
        self,
        weight: Tensor<'t, (C,), B>,
        bias: Tensor<'t, (C,), B>,
        stats: BatchNormStats,
    ) -> Self {
        let out = self.shape;
        let (m, n) = (self.shape.0.size(), self.shape.1.size());
        let checks = (|| {
            self.check_same_tape(&weight)?;
            self.check_same_tape(&bias)?;
            if weight.shape.0.size() != n
                || bias.shape.0.size() != n
                || stats.running_mean.len != n
                || stats.running_var.len != n
                || stats.num_batches_tracked.len != 1
            {
                return Err(Error::Shape {
                    op: "batch_norm: weight, bias and running statistics must be [features]",
                    expected: self.dims(),
                    found: weight.dims(),
                });
            }
            if stats.training && m < 2 {
                return Err(Error::InvalidArgument { what: ONE_ROW });
            }
            Ok(())
        })();
        if let Err(e) = checks {
            return invalid(self.tape, out, e);
        }
        if !self.is_valid() || !weight.is_valid() || !bias.is_valid() {
            return invalid(self.tape, out, Error::InvalidTensor);
        }
        let op = Op::BatchNorm { m, n, stats };
        let id = self.tape.record(
            op,
            out.dims_slice(),
            [self.id, weight.id, bias.id],
            backward::<B>,
            &mut |be, buf, y, ins| forward(be, buf, m, n, &stats, ins, y),
        );
        Tensor::from_id(self.tape, id, out)
    }
}

use crate::shape::Shape;

/// Per-feature `(μ, 1/√(σ² + eps))` of features `j0..j0 + w`, and the
/// unbiased variance when `training` (from the batch, else the running
/// statistics).
#[allow(clippy::too_many_arguments)]
fn stats_block<B: Backend>(
    be: &B,
    buf: &B::Buffer,
    (m, n): (usize, usize),
    s: &BatchNormStats,
    x: Span,
    j0: usize,
    w: usize,
    mean: &mut [f32; BLOCK],
    inv: &mut [f32; BLOCK],
    unbiased: &mut [f32; BLOCK],
) -> Result<()> {
    if !s.training {
        be.download(buf, s.running_mean.sub(j0, w), &mut mean[..w])?;
        be.download(buf, s.running_var.sub(j0, w), &mut inv[..w])?;
        for v in &mut inv[..w] {
            *v = 1.0 / libm::sqrtf(*v + s.eps);
        }
        return Ok(());
    }
    let mut row = [0.0f32; BLOCK];
    let mut sum = [0.0f32; BLOCK];
    for i in 0..m {
        be.download(buf, x.sub(i * n + j0, w), &mut row[..w])?;
        sum[..w]
            .iter_mut()
            .zip(&row[..w])
            .for_each(|(s, x)| *s += x);
    }
    for j in 0..w {
        mean[j] = sum[j] / m as f32;
    }
    let mut sq = [0.0f32; BLOCK];
    for i in 0..m {
        be.download(buf, x.sub(i * n + j0, w), &mut row[..w])?;
        for j in 0..w {
            let d = row[j] - mean[j];
            sq[j] += d * d;
        }
    }
    for j in 0..w {
        inv[j] = 1.0 / libm::sqrtf(sq[j] / m as f32 + s.eps);
        unbiased[j] = sq[j] / (m - 1).max(1) as f32;
    }
    Ok(())
}

/// The forward kernel: `y` from `ins = [x, γ, β]`, and the running
/// statistics' update in training mode.
fn forward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    m: usize,
    n: usize,
    s: &BatchNormStats,
    ins: [Span; 3],
    y: Span,
) -> Result<()> {
    let (mut mean, mut inv, mut unbiased) = ([0.0f32; BLOCK], [0.0f32; BLOCK], [0.0f32; BLOCK]);
    let (mut gamma, mut beta, mut row) = ([0.0f32; BLOCK], [0.0f32; BLOCK], [0.0f32; BLOCK]);
    let mut j0 = 0;
    while j0 < n {
        let w = (n - j0).min(BLOCK);
        stats_block(
            be,
            buf,
            (m, n),
            s,
            ins[0],
            j0,
            w,
            &mut mean,
            &mut inv,
            &mut unbiased,
        )?;
        be.download(buf, ins[1].sub(j0, w), &mut gamma[..w])?;
        be.download(buf, ins[2].sub(j0, w), &mut beta[..w])?;
        for i in 0..m {
            be.download(buf, ins[0].sub(i * n + j0, w), &mut row[..w])?;
            for j in 0..w {
                row[j] = (row[j] - mean[j]) * inv[j] * gamma[j] + beta[j];
            }
            be.upload(buf, y.sub(i * n + j0, w), &row[..w])?;
        }
        if s.training {
            let k = s.momentum;
            for (span, batch) in [(s.running_mean, &mean), (s.running_var, &unbiased)] {
                be.download(buf, span.sub(j0, w), &mut row[..w])?;
                for j in 0..w {
                    row[j] = (1.0 - k) * row[j] + k * batch[j];
                }
                be.upload(buf, span.sub(j0, w), &row[..w])?;
            }
        }
        j0 += w;
    }
    if s.training {
        let mut t = [0.0f32];
        be.download(buf, s.num_batches_tracked, &mut t)?;
        t[0] += 1.0;
        be.upload(buf, s.num_batches_tracked, &t)?;
    }
    Ok(())
}

/// Adds `add` to the `w` floats of `span` at `at`.
fn accumulate<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    span: Span,
    at: usize,
    add: &[f32],
) -> Result<()> {
    let mut cur = [0.0f32; BLOCK];
    let w = add.len();
    be.download(buf, span.sub(at, w), &mut cur[..w])?;
    cur[..w].iter_mut().zip(add).for_each(|(c, a)| *c += a);
    be.upload(buf, span.sub(at, w), &cur[..w])
}

/// The backward of [`Op::BatchNorm`]. With `x̂ = (x − μ)·inv`:
/// `dβ += Σ dy`, `dγ += Σ dy·x̂`, and in training mode (μ and σ² depend
/// on `x`) `dx += γ·inv/m · (m·dy − Σ dy − x̂·Σ dy·x̂)`; in evaluation mode
/// `dx += γ·inv·dy`.
fn backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::BatchNorm { m, n, stats } = *op else {
        return Ok(());
    };
    let (Some(x), Some(g), Some(b)) = (inputs[0], inputs[1], inputs[2]) else {
        return Ok(());
    };
    let (mut mean, mut inv, mut unbiased) = ([0.0f32; BLOCK], [0.0f32; BLOCK], [0.0f32; BLOCK]);
    let (mut gamma, mut xr, mut dr) = ([0.0f32; BLOCK], [0.0f32; BLOCK], [0.0f32; BLOCK]);
    let mut j0 = 0;
    while j0 < n {
        let w = (n - j0).min(BLOCK);
        stats_block(
            be,
            buf,
            (m, n),
            &stats,
            x.value,
            j0,
            w,
            &mut mean,
            &mut inv,
            &mut unbiased,
        )?;
        be.download(buf, g.value.sub(j0, w), &mut gamma[..w])?;
        let (mut sdy, mut sdyx) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
        for i in 0..m {
            be.download(buf, x.value.sub(i * n + j0, w), &mut xr[..w])?;
            be.download(buf, dy.sub(i * n + j0, w), &mut dr[..w])?;
            for j in 0..w {
                sdy[j] += dr[j];
                sdyx[j] += dr[j] * (xr[j] - mean[j]) * inv[j];
            }
        }
        if let Some(dg) = g.grad {
            accumulate(be, buf, dg, j0, &sdyx[..w])?;
        }
        if let Some(db) = b.grad {
            accumulate(be, buf, db, j0, &sdy[..w])?;
        }
        if let Some(dx) = x.grad {
            let mf = m as f32;
            for i in 0..m {
                be.download(buf, x.value.sub(i * n + j0, w), &mut xr[..w])?;
                be.download(buf, dy.sub(i * n + j0, w), &mut dr[..w])?;
                for j in 0..w {
                    let scale = gamma[j] * inv[j];
                    dr[j] = if stats.training {
                        let xhat = (xr[j] - mean[j]) * inv[j];
                        scale / mf * (mf * dr[j] - sdy[j] - xhat * sdyx[j])
                    } else {
                        scale * dr[j]
                    };
                }
                accumulate(be, buf, dx, i * n + j0, &dr[..w])?;
            }
        }
        j0 += w;
    }
    Ok(())
}
