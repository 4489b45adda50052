//! Batch normalisation per channel of an `[N, C, L…]` tensor (PyTorch's
//! `F.batch_norm` on `[N, C]`, `[N, C, L]` and `[N, C, H, W]` input),
//! forward and backward side by side. One node: its inputs are the batch,
//! `γ` and `β`; the running statistics are spans of persistent memory named
//! in the node's op ([`BatchNormStats`]), which the forward updates in
//! training mode.
//!
//! The input is seen as `[outer, len, inner]` ([`AxisDims`]): `N` samples,
//! `C` channels and `L` positions per channel (the product of the spatial
//! sizes; 1 for `[N, C]`). A channel's statistics are taken over its
//! `N · L` values.
//!
//! Both passes work on blocks of channels with stack arrays of `BLOCK`
//! (32) floats, through the backend's `download`/`upload`: no allocation,
//! and no scratch in the graph beyond the output and its gradient. A block
//! holds `max(1, 32 / L)` channels, so that each sample's part of it is one
//! contiguous run of at most 32 floats, or (for `L > 32`) one channel whose
//! `L` contiguous floats are read 32 at a time. On `[N, C]` input a block is
//! 32 features of a row.

use crate::backend::{AxisDims, Backend, Span};
use crate::error::{Error, Result};
use crate::graph::{Input, Op};
use crate::shape::{Dim, Shape};
use crate::tensor::{invalid, Tensor};

/// Floats processed together (the stack arrays' length).
const BLOCK: usize = 32;

/// What PyTorch says of a training batch with one value per channel
/// (`N · L == 1`).
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
        let (n, c) = (self.shape.0.size(), self.shape.1.size());
        batch_norm(self, n, c, 1, weight, bias, stats)
    }
}

impl<'t, N: Dim, C: Dim, L: Dim, B: Backend> Tensor<'t, (N, C, L), B> {
    /// Batch normalisation of `[N, C, L]` input per channel (dimension 1),
    /// as PyTorch's `F.batch_norm` (and `nn.BatchNorm1d`) on 3-D input:
    /// the statistics of a channel are taken over its `N · L` values.
    /// Otherwise as [`batch_norm`](Tensor::batch_norm) on `[N, C]`; a
    /// training batch with `N · L == 1` is an [`Error::InvalidArgument`].
    ///
    /// ```
    /// use ember_nn_core::ops::batch_norm::BatchNormStats;
    /// use ember_nn_core::prelude::*;
    /// let mut buf = [0.0f32; 256];
    /// let mut mem = Memory::new(&Cpu, &mut buf[..]);
    /// let (running_mean, running_var) = (mem.alloc(2)?, mem.alloc(2)?);
    /// mem.fill(running_var, 1.0)?;
    /// let stats = BatchNormStats {
    ///     running_mean,
    ///     running_var,
    ///     num_batches_tracked: mem.alloc(1)?,
    ///     eps: 0.0,
    ///     momentum: 0.1,
    ///     training: true,
    /// };
    /// let g = Graph::new(&mut mem);
    /// // One sample, two channels of two positions each.
    /// let x = g.tensor([[[1.0f32, 3.0], [10.0, 12.0]]]);
    /// let y = x.batch_norm(g.tensor([1.0f32, 1.0]), g.tensor([0.0f32, 5.0]), stats);
    /// assert_eq!(y.to_array()?, [[[-1.0, 1.0], [4.0, 6.0]]]);
    /// # Ok::<(), ember_nn_core::Error>(())
    /// ```
    pub fn batch_norm(
        self,
        weight: Tensor<'t, (C,), B>,
        bias: Tensor<'t, (C,), B>,
        stats: BatchNormStats,
    ) -> Self {
        let [n, c, l, _] = self.shape.dims();
        batch_norm(self, n, c, l, weight, bias, stats)
    }
}

impl<'t, N: Dim, C: Dim, H: Dim, W: Dim, B: Backend> Tensor<'t, (N, C, H, W), B> {
    /// Batch normalisation of `[N, C, H, W]` input per channel (dimension
    /// 1), as PyTorch's `F.batch_norm` (and `nn.BatchNorm2d`): the
    /// statistics of a channel are taken over its `N · H · W` values.
    /// Otherwise as [`batch_norm`](Tensor::batch_norm) on `[N, C]`; a
    /// training batch with `N · H · W == 1` is an
    /// [`Error::InvalidArgument`].
    pub fn batch_norm(
        self,
        weight: Tensor<'t, (C,), B>,
        bias: Tensor<'t, (C,), B>,
        stats: BatchNormStats,
    ) -> Self {
        let [n, c, h, w] = self.shape.dims();
        batch_norm(self, n, c, h * w, weight, bias, stats)
    }
}

/// The op on `x` seen as `[n, c, l]`, for every rank.
fn batch_norm<'t, S: Shape, C: Dim, B: Backend>(
    x: Tensor<'t, S, B>,
    n: usize,
    c: usize,
    l: usize,
    weight: Tensor<'t, (C,), B>,
    bias: Tensor<'t, (C,), B>,
    stats: BatchNormStats,
) -> Tensor<'t, S, B> {
    let out = x.shape;
    let dims = AxisDims {
        outer: n,
        len: c,
        inner: l,
    };
    let checks = (|| {
        x.check_same_tape(&weight)?;
        x.check_same_tape(&bias)?;
        if weight.shape.0.size() != c
            || bias.shape.0.size() != c
            || stats.running_mean.len != c
            || stats.running_var.len != c
            || stats.num_batches_tracked.len != 1
        {
            return Err(Error::Shape {
                op: "batch_norm: weight, bias and running statistics must be [channels] (the input's dimension 1)",
                expected: x.dims(),
                found: weight.dims(),
            });
        }
        if stats.training && n * l < 2 {
            return Err(Error::InvalidArgument { what: ONE_ROW });
        }
        Ok(())
    })();
    if let Err(e) = checks {
        return invalid(x.tape, out, e);
    }
    if !x.is_valid() || !weight.is_valid() || !bias.is_valid() {
        return invalid(x.tape, out, Error::InvalidTensor);
    }
    let id = x.tape.record(
        Op::BatchNorm { dims, stats },
        out.dims_slice(),
        [x.id, weight.id, bias.id],
        backward::<B>,
        &mut |be, buf, y, ins| forward(be, buf, dims, &stats, ins, y),
    );
    Tensor::from_id(x.tape, id, out)
}

/// Channels per block: each sample's part of a block is one run of at
/// most `BLOCK` floats, or one channel when `inner > BLOCK`.
fn block_channels(d: AxisDims, c0: usize) -> usize {
    (d.len - c0).min((BLOCK / d.inner.max(1)).max(1))
}

/// A contiguous run of the input: `len` floats at `at`, starting `pos`
/// floats into its sample's part of the block (so float `j` belongs to the
/// block's channel `(pos + j) / inner`).
struct Run {
    at: usize,
    len: usize,
    pos: usize,
    inner: usize,
}

impl Run {
    /// The block's channels the run touches.
    fn channels(&self) -> core::ops::RangeInclusive<usize> {
        self.pos / self.inner..=(self.pos + self.len - 1) / self.inner
    }

    /// Calls `f(j, c)` for each float `j` of the run and its block channel
    /// `c`, in order, a channel's floats at a time.
    #[inline(always)]
    fn each(&self, mut f: impl FnMut(usize, usize)) {
        if self.inner == 1 {
            // `[N, C]`: one run per sample, float `j` is channel `j`.
            (0..self.len).for_each(|j| f(j, j));
            return;
        }
        let (mut j, mut c) = (0, self.pos / self.inner);
        while j < self.len {
            compact_loop!();
            let end = ((c + 1) * self.inner - self.pos).min(self.len);
            (j..end).for_each(|k| f(k, c));
            (j, c) = (end, c + 1);
        }
    }
}

/// The runs of channels `c0..c0 + w` of an `[outer, len, inner]` tensor,
/// sample by sample, in memory order.
struct Runs {
    d: AxisDims,
    c0: usize,
    /// Floats of the block per sample: `w · inner`.
    span: usize,
    sample: usize,
    pos: usize,
}

impl Runs {
    fn new(d: AxisDims, c0: usize, w: usize) -> Self {
        Runs {
            d,
            c0,
            span: w * d.inner,
            sample: 0,
            pos: 0,
        }
    }
}

impl Iterator for Runs {
    type Item = Run;
    fn next(&mut self) -> Option<Run> {
        if self.pos == self.span {
            self.sample += 1;
            self.pos = 0;
        }
        if self.span == 0 || self.sample >= self.d.outer {
            return None;
        }
        let len = (self.span - self.pos).min(BLOCK);
        let at = (self.sample * self.d.len + self.c0) * self.d.inner + self.pos;
        let run = Run {
            at,
            len,
            pos: self.pos,
            inner: self.d.inner,
        };
        self.pos += len;
        Some(run)
    }
}

/// Per-channel sums of `f(j, value)` over the runs of block `c0..c0 + w`
/// of `x`, added into `acc`: a run's values are summed apart first, so
/// that a long channel (`N · L` values) is summed in pieces of at most
/// `BLOCK` (on `[N, C]` input, a row at a time, as a plain sum).
fn channel_sums<B: Backend>(
    be: &B,
    buf: &B::Buffer,
    d: AxisDims,
    (c0, w): (usize, usize),
    x: Span,
    acc: &mut [f32; BLOCK],
    mut f: impl FnMut(usize, f32) -> f32,
) -> Result<()> {
    let mut row = [0.0f32; BLOCK];
    for run in Runs::new(d, c0, w) {
        compact_loop!();
        be.download(buf, x.sub(run.at, run.len), &mut row[..run.len])?;
        let mut part = [0.0f32; BLOCK];
        run.each(|j, c| part[c] += f(c, row[j]));
        for c in run.channels() {
            compact_loop!();
            acc[c] += part[c];
        }
    }
    Ok(())
}

/// The statistics of a block of channels: per channel `μ`, `1/√(σ² + eps)`
/// and, in training mode, the unbiased variance.
struct BlockStats {
    mean: [f32; BLOCK],
    inv: [f32; BLOCK],
    unbiased: [f32; BLOCK],
}

/// The statistics of channels `c0..c0 + w`: the batch's when `training`
/// (from `x`), else the running ones.
fn stats_block<B: Backend>(
    be: &B,
    buf: &B::Buffer,
    d: AxisDims,
    s: &BatchNormStats,
    x: Span,
    (c0, w): (usize, usize),
) -> Result<BlockStats> {
    let mut b = BlockStats {
        mean: [0.0; BLOCK],
        inv: [0.0; BLOCK],
        unbiased: [0.0; BLOCK],
    };
    if !s.training {
        be.download(buf, s.running_mean.sub(c0, w), &mut b.mean[..w])?;
        be.download(buf, s.running_var.sub(c0, w), &mut b.inv[..w])?;
        for v in &mut b.inv[..w] {
            compact_loop!();
            *v = 1.0 / crate::sqrt::sqrtf(*v + s.eps);
        }
        return Ok(b);
    }
    let count = d.outer * d.inner;
    let mut sum = [0.0f32; BLOCK];
    channel_sums(be, buf, d, (c0, w), x, &mut sum, |_, v| v)?;
    for (m, s) in b.mean[..w].iter_mut().zip(&sum) {
        compact_loop!();
        *m = s / count as f32;
    }
    let mut sq = [0.0f32; BLOCK];
    let mean = &b.mean;
    channel_sums(be, buf, d, (c0, w), x, &mut sq, |c, v| {
        let e = v - mean[c];
        e * e
    })?;
    for (j, sq) in sq[..w].iter().enumerate() {
        compact_loop!();
        b.inv[j] = 1.0 / crate::sqrt::sqrtf(sq / count as f32 + s.eps);
        b.unbiased[j] = sq / (count - 1).max(1) as f32;
    }
    Ok(b)
}

/// The forward kernel: `y` from `ins = [x, γ, β]`, and the running
/// statistics' update in training mode.
fn forward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    d: AxisDims,
    s: &BatchNormStats,
    ins: [Span; 3],
    y: Span,
) -> Result<()> {
    let (mut gamma, mut beta, mut row) = ([0.0f32; BLOCK], [0.0f32; BLOCK], [0.0f32; BLOCK]);
    let mut c0 = 0;
    while c0 < d.len {
        compact_loop!();
        let w = block_channels(d, c0);
        let st = stats_block(be, buf, d, s, ins[0], (c0, w))?;
        be.download(buf, ins[1].sub(c0, w), &mut gamma[..w])?;
        be.download(buf, ins[2].sub(c0, w), &mut beta[..w])?;
        for run in Runs::new(d, c0, w) {
            compact_loop!();
            let r = &mut row[..run.len];
            be.download(buf, ins[0].sub(run.at, run.len), r)?;
            run.each(|j, c| r[j] = (r[j] - st.mean[c]) * st.inv[c] * gamma[c] + beta[c]);
            be.upload(buf, y.sub(run.at, run.len), r)?;
        }
        if s.training {
            let k = s.momentum;
            for (span, batch) in [(s.running_mean, &st.mean), (s.running_var, &st.unbiased)] {
                compact_loop!();
                be.download(buf, span.sub(c0, w), &mut row[..w])?;
                for j in 0..w {
                    compact_loop!();
                    row[j] = (1.0 - k) * row[j] + k * batch[j];
                }
                be.upload(buf, span.sub(c0, w), &row[..w])?;
            }
        }
        c0 += w;
    }
    if s.training {
        let mut t = [0.0f32];
        be.download(buf, s.num_batches_tracked, &mut t)?;
        t[0] += 1.0;
        be.upload(buf, s.num_batches_tracked, &t)?;
    }
    Ok(())
}

/// Adds `add` to the floats of `span` at `at`.
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

/// The backward of [`Op::BatchNorm`]. With `x̂ = (x − μ)·inv` and `m = N·L`
/// values per channel: `dβ += Σ dy`, `dγ += Σ dy·x̂`, and in training mode
/// (μ and σ² depend on `x`) `dx += γ·inv/m · (m·dy − Σ dy − x̂·Σ dy·x̂)`;
/// in evaluation mode `dx += γ·inv·dy`.
fn backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::BatchNorm { dims: d, stats } = *op else {
        return Ok(());
    };
    let (Some(x), Some(g), Some(b)) = (inputs[0], inputs[1], inputs[2]) else {
        return Ok(());
    };
    let (mut gamma, mut xr, mut dr) = ([0.0f32; BLOCK], [0.0f32; BLOCK], [0.0f32; BLOCK]);
    let mf = (d.outer * d.inner) as f32;
    let mut c0 = 0;
    while c0 < d.len {
        compact_loop!();
        let w = block_channels(d, c0);
        let st = stats_block(be, buf, d, &stats, x.value, (c0, w))?;
        be.download(buf, g.value.sub(c0, w), &mut gamma[..w])?;
        let (mut sdy, mut sdyx) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
        for run in Runs::new(d, c0, w) {
            compact_loop!();
            let n = run.len;
            be.download(buf, x.value.sub(run.at, n), &mut xr[..n])?;
            be.download(buf, dy.sub(run.at, n), &mut dr[..n])?;
            let (mut p, mut px) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
            run.each(|j, c| {
                p[c] += dr[j];
                px[c] += dr[j] * (xr[j] - st.mean[c]) * st.inv[c];
            });
            for c in run.channels() {
                compact_loop!();
                sdy[c] += p[c];
                sdyx[c] += px[c];
            }
        }
        if let Some(dg) = g.grad {
            accumulate(be, buf, dg, c0, &sdyx[..w])?;
        }
        if let Some(db) = b.grad {
            accumulate(be, buf, db, c0, &sdy[..w])?;
        }
        if let Some(dx) = x.grad {
            for run in Runs::new(d, c0, w) {
                compact_loop!();
                let n = run.len;
                be.download(buf, x.value.sub(run.at, n), &mut xr[..n])?;
                be.download(buf, dy.sub(run.at, n), &mut dr[..n])?;
                run.each(|j, c| {
                    let scale = gamma[c] * st.inv[c];
                    dr[j] = if stats.training {
                        let xhat = (xr[j] - st.mean[c]) * st.inv[c];
                        scale / mf * (mf * dr[j] - sdy[c] - xhat * sdyx[c])
                    } else {
                        scale * dr[j]
                    };
                });
                accumulate(be, buf, dx, run.at, &dr[..n])?;
            }
        }
        c0 += w;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::graph::Graph;
    use crate::memory::Memory;
    use crate::shape::Const;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    /// The `[m, n]` algorithm as it was before channels had positions:
    /// plain sums down each column. Returns `y`, `dx`, `dγ`, `dβ`, the
    /// running mean and variance after one step from 0 and 1.
    #[allow(clippy::type_complexity)]
    fn plain(
        (m, n): (usize, usize),
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        dy: &[f32],
        eps: f32,
    ) -> [Vec<f32>; 6] {
        let (mut y, mut dx) = (vec![0.0; m * n], vec![0.0; m * n]);
        let (mut dg, mut db, mut rm, mut rv) =
            (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let mf = m as f32;
        for j in 0..n {
            compact_loop!();
            let mut sum = 0.0f32;
            for i in 0..m {
                compact_loop!();
                sum += x[i * n + j];
            }
            let mean = sum / mf;
            let mut sq = 0.0f32;
            for i in 0..m {
                compact_loop!();
                let d = x[i * n + j] - mean;
                sq += d * d;
            }
            let inv = 1.0 / crate::sqrt::sqrtf(sq / mf + eps);
            let unbiased = sq / (m - 1).max(1) as f32;
            let (mut sdy, mut sdyx) = (0.0f32, 0.0f32);
            for i in 0..m {
                compact_loop!();
                let k = i * n + j;
                y[k] = (x[k] - mean) * inv * gamma[j] + beta[j];
                sdy += dy[k];
                sdyx += dy[k] * (x[k] - mean) * inv;
            }
            for i in 0..m {
                compact_loop!();
                let k = i * n + j;
                let xhat = (x[k] - mean) * inv;
                dx[k] = gamma[j] * inv / mf * (mf * dy[k] - sdy - xhat * sdyx);
            }
            (dg[j], db[j]) = (sdyx, sdy);
            rm[j] = 0.9 * 0.0 + 0.1 * mean;
            rv[j] = 0.9 * 1.0 + 0.1 * unbiased;
        }
        [y, dx, dg, db, rm, rv]
    }

    /// On `[m, n]` input, blocks and runs change no bit of the results
    /// (forward, gradients, running statistics), across a 32-feature block
    /// boundary.
    #[test]
    fn two_d_results_are_the_plain_algorithms_bit_for_bit() {
        const M: usize = 5;
        const N: usize = 37;
        let (m, n) = (M, N);
        let x: Vec<f32> = (0..m * n)
            .map(|i| libm::sinf(i as f32 * 0.7) * 3.0 + 0.1 * i as f32)
            .collect();
        let dy: Vec<f32> = (0..m * n).map(|i| libm::cosf(i as f32 * 1.3)).collect();
        let gamma: Vec<f32> = (0..n).map(|j| 0.5 + 0.03 * j as f32).collect();
        let beta: Vec<f32> = (0..n).map(|j| -0.2 + 0.01 * j as f32).collect();
        let want = plain((m, n), &x, &gamma, &beta, &dy, 1e-5);

        let mut buf = vec![0.0f32; 4096];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let xp = mem.param_shaped((Const::<M>, Const::<N>), &x).unwrap();
        let gp = mem.param_shaped((Const::<N>,), &gamma).unwrap();
        let bp = mem.param_shaped((Const::<N>,), &beta).unwrap();
        let (running_mean, running_var) = (mem.alloc(n).unwrap(), mem.alloc(n).unwrap());
        mem.fill(running_var, 1.0).unwrap();
        let stats = BatchNormStats {
            running_mean,
            running_var,
            num_batches_tracked: mem.alloc(1).unwrap(),
            eps: 1e-5,
            momentum: 0.1,
            training: true,
        };
        let mut y = vec![0.0f32; m * n];
        {
            let g = Graph::new(&mut mem);
            let out = g.param(&xp).batch_norm(g.param(&gp), g.param(&bp), stats);
            out.read(&mut y).unwrap();
            (out * g.from_slice((Const::<M>, Const::<N>), &dy))
                .sum()
                .backward()
                .unwrap();
        }
        let mut got = [
            y,
            vec![0.0; m * n],
            vec![0.0; n],
            vec![0.0; n],
            vec![0.0; n],
            vec![0.0; n],
        ];
        got[1] = mem.grad(&xp).unwrap().as_flattened().to_vec();
        got[2] = mem.grad(&gp).unwrap().to_vec();
        got[3] = mem.grad(&bp).unwrap().to_vec();
        mem.read(running_mean, &mut got[4]).unwrap();
        mem.read(running_var, &mut got[5]).unwrap();
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            compact_loop!();
            let bits = |v: &Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a), bits(b), "result {k}: {a:?} vs {b:?}");
        }
    }
}
