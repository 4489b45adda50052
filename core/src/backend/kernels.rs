//! The portable kernels, on plain slices.
//!
//! [`Cpu`](super::Cpu) runs these directly; a parallel CPU backend runs them on
//! chunks from several threads. They are the reference the other backends are
//! tested against.

use super::map::{Map, MapFn};
use super::update::{LibmSqrt, Sqrt, Update};
use super::zip::Zip;
use super::{Acc, AxisDims, Reduce};

#[inline]
fn store(out: &mut f32, v: f32, acc: Acc) {
    match acc {
        Acc::Set => *out = v,
        Acc::Add => *out += v,
    }
}

/// `f(x)`: inlined into each loop on hosts (where each function gets its
/// own loop, see [`map`]); on microcontrollers one out-of-line copy that
/// every elementwise kernel calls with a [`Map`] chosen at run time, so
/// that the functions' code is in flash once rather than once per kernel.
#[cfg_attr(not(target_os = "none"), inline(always))]
#[cfg_attr(target_os = "none", inline(never))]
fn apply(f: Map, x: f32) -> f32 {
    f.apply(x)
}

/// `f'(x)` given `y = f(x)`, placed as [`apply`] is.
#[cfg_attr(not(target_os = "none"), inline(always))]
#[cfg_attr(target_os = "none", inline(never))]
fn derivative(f: Map, x: f32, y: f32) -> f32 {
    f.derivative(x, y)
}

/// `f(x)` for a [`MapFn`]: a function chosen at compile time is inlined
/// (its kernels hold that function alone); a [`Map`] goes through [`apply`].
#[inline(always)]
fn apply_fn<F: MapFn>(f: F, x: f32) -> f32 {
    if F::RUNTIME {
        apply(f.map(), x)
    } else {
        f.apply(x)
    }
}

/// `f'(x)`, placed as [`apply_fn`] is.
#[inline(always)]
fn derivative_fn<F: MapFn>(f: F, x: f32, y: f32) -> f32 {
    if F::RUNTIME {
        derivative(f.map(), x, y)
    } else {
        f.derivative(x, y)
    }
}

#[inline(always)]
fn map_run<F: MapFn>(f: F, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        compact_loop!();
        *y = apply_fn(f, x);
    }
}

/// `y = f(x)`.
pub fn map(f: Map, x: &[f32], y: &mut [f32]) {
    // On microcontrollers flash is scarcer than cycles: one loop serves all
    // functions. Elsewhere each function gets its own vectorisable loop.
    #[cfg(not(target_os = "none"))]
    each_map!(f, m => map_run(m, x, y));
    #[cfg(target_os = "none")]
    map_run(f, x, y);
}

/// [`map`] for a [`MapFn`]: the loop of that one function (a [`Map`] runs
/// [`map`]).
#[inline]
pub fn map_fn<F: MapFn>(f: F, x: &[f32], y: &mut [f32]) {
    if F::RUNTIME {
        map(f.map(), x, y)
    } else {
        map_run(f, x, y)
    }
}

/// Calls `$body` with `$m` bound to `$f` in an arm per variant, so that the
/// function's `match` is resolved once, outside the loop in `$body`, and the
/// loop can be vectorised.
#[cfg_attr(target_os = "none", allow(unused_macros))]
macro_rules! each_map {
    ($f:expr, $m:ident => $body:expr) => {
        match $f {
            $m @ Map::Neg => $body,
            $m @ Map::AddScalar(_) => $body,
            $m @ Map::MulScalar(_) => $body,
            $m @ Map::Pow(_) => $body,
            $m @ Map::Recip => $body,
            $m @ Map::Exp => $body,
            $m @ Map::Ln => $body,
            $m @ Map::Sqrt => $body,
            $m @ Map::Abs => $body,
            $m @ Map::Sin => $body,
            $m @ Map::Cos => $body,
            $m @ Map::Tanh => $body,
            $m @ Map::Sigmoid => $body,
            $m @ Map::Relu => $body,
            $m @ Map::LeakyRelu(_) => $body,
            $m @ Map::Elu(_) => $body,
            $m @ Map::Selu => $body,
            $m @ Map::Silu => $body,
            $m @ Map::GeluTanh => $body,
            $m @ Map::GeluErf => $body,
            $m @ Map::Softsign => $body,
            $m @ Map::Softplus => $body,
            $m @ Map::Clamp(..) => $body,
        }
    };
}
#[cfg_attr(target_os = "none", allow(unused_imports))]
use each_map;

#[inline(always)]
fn map_backward_run<F: MapFn>(f: F, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let n = dx.len().min(x.len()).min(y.len()).min(dy.len());
    let (x, y, dy, dx) = (&x[..n], &y[..n], &dy[..n], &mut dx[..n]);
    for i in 0..n {
        compact_loop!();
        let d = derivative_fn(f, x[i], y[i]) * dy[i];
        // A select, not a branch, so that the loop vectorises.
        dx[i] += if dy[i] != 0.0 { d } else { 0.0 };
    }
}

/// `dx += f'(x) · dy`. A zero `dy` contributes exactly zero, even where
/// `f'(x)` is infinite (`ln` at a clamped 0), so that a gradient blocked
/// downstream stays blocked instead of turning into `0 · ∞ = NaN`.
pub fn map_backward(f: Map, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    #[cfg(not(target_os = "none"))]
    each_map!(f, m => map_backward_run(m, x, y, dy, dx));
    #[cfg(target_os = "none")]
    map_backward_run(f, x, y, dy, dx);
}

/// [`map_backward`] for a [`MapFn`].
#[inline]
pub fn map_backward_fn<F: MapFn>(f: F, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    if F::RUNTIME {
        map_backward(f.map(), x, y, dy, dx)
    } else {
        map_backward_run(f, x, y, dy, dx)
    }
}

#[inline(always)]
fn bias_act_run<F: MapFn>(f: F, bias: &[f32], y: &mut [f32]) {
    if bias.is_empty() {
        return;
    }
    for row in y.chunks_exact_mut(bias.len()) {
        compact_loop!();
        for (v, &b) in row.iter_mut().zip(bias) {
            compact_loop!();
            *v = apply_fn(f, *v + b);
        }
    }
}

/// The epilogue of a fused linear layer, in place: `y[r, c] = f(y[r, c] + bias[c])`
/// for every row of `y` (rows of `bias.len()` floats; a partial last row is
/// left alone).
pub fn bias_act(f: Map, bias: &[f32], y: &mut [f32]) {
    #[cfg(not(target_os = "none"))]
    each_map!(f, m => bias_act_run(m, bias, y));
    #[cfg(target_os = "none")]
    bias_act_run(f, bias, y);
}

/// [`bias_act`] for a [`MapFn`].
#[inline]
pub fn bias_act_fn<F: MapFn>(f: F, bias: &[f32], y: &mut [f32]) {
    if F::RUNTIME {
        bias_act(f.map(), bias, y)
    } else {
        bias_act_run(f, bias, y)
    }
}

#[inline(always)]
fn act_backward_run<F: MapFn>(f: F, y: &[f32], dy: &mut [f32]) {
    let n = y.len().min(dy.len());
    let (y, dy) = (&y[..n], &mut dy[..n]);
    for i in 0..n {
        compact_loop!();
        let g = dy[i];
        let d = derivative_fn(f, y[i], y[i]) * g;
        dy[i] = if g != 0.0 { d } else { 0.0 };
    }
}

/// Backward through a fused activation, in place: `dy = f'(y) · dy`, the
/// derivative taken from the output `y = f(x)` alone (`f` must be one that
/// [`Map::fuses`]). Where `dy` is exactly zero it stays zero.
pub fn act_backward(f: Map, y: &[f32], dy: &mut [f32]) {
    #[cfg(not(target_os = "none"))]
    each_map!(f, m => act_backward_run(m, y, dy));
    #[cfg(target_os = "none")]
    act_backward_run(f, y, dy);
}

/// [`act_backward`] for a [`MapFn`].
#[inline]
pub fn act_backward_fn<F: MapFn>(f: F, y: &[f32], dy: &mut [f32]) {
    if F::RUNTIME {
        act_backward(f.map(), y, dy)
    } else {
        act_backward_run(f, y, dy)
    }
}

/// The class a target float names: an integer in `[0, classes)`, or `None`.
#[inline]
pub fn class_of(t: f32, classes: usize) -> Option<usize> {
    if t >= 0.0 && t < classes as f32 && libm::floorf(t) == t {
        Some(t as usize)
    } else {
        None
    }
}

/// The maximum of a row (NaNs ignored, `0` if every value is `-inf`) and
/// `Σ e^(x − max)`: the shift and the denominator of a stable softmax, in the
/// order [`softmax`] computes them.
#[inline]
fn shift_and_sum(row: &[f32]) -> (f32, f32) {
    let mut m = f32::NEG_INFINITY;
    for &v in row {
        compact_loop!();
        m = m.max(v);
    }
    if m == f32::NEG_INFINITY {
        m = 0.0;
    }
    let mut s = 0.0f32;
    for &v in row {
        compact_loop!();
        s += libm::expf(v - m);
    }
    (m, s)
}

/// Softmax and cross-entropy fused, per row: for logits `x` `[rows, classes]`
/// and class indices `t` `[rows]` (as floats),
/// `loss[r] = (m + ln Σ_c e^(x[r, c] − m)) − x[r, t[r]]`, `m` the row's maximum.
/// A target that is not an integer in `[0, classes)` gives a NaN loss.
pub fn cross_entropy(x: &[f32], t: &[f32], loss: &mut [f32], classes: usize) {
    if classes == 0 {
        loss.fill(f32::NAN);
        return;
    }
    for ((row, &t), l) in x.chunks_exact(classes).zip(t).zip(loss) {
        compact_loop!();
        let (m, s) = shift_and_sum(row);
        *l = match class_of(t, classes) {
            Some(c) => (m + libm::logf(s)) - row[c],
            None => f32::NAN,
        };
    }
}

/// The gradient of [`cross_entropy`]:
/// `dx[r, c] += dloss[r] · (softmax(x[r])[c] − [c = t[r]])`. Rows whose
/// `dloss` is exactly zero get nothing; a row with an invalid target gets NaN.
pub fn cross_entropy_backward(x: &[f32], t: &[f32], dloss: &[f32], dx: &mut [f32], classes: usize) {
    if classes == 0 {
        return;
    }
    let rows = x.chunks_exact(classes).zip(dx.chunks_exact_mut(classes));
    for (((row, drow), &t), &g) in rows.zip(t).zip(dloss) {
        compact_loop!();
        if g == 0.0 {
            continue;
        }
        let (m, s) = shift_and_sum(row);
        let inv = 1.0 / s;
        let target = class_of(t, classes);
        for (c, (&v, d)) in row.iter().zip(drow.iter_mut()).enumerate() {
            compact_loop!();
            let p = libm::expf(v - m) * inv;
            let hot = match target {
                Some(k) if k == c => 1.0,
                Some(_) => 0.0,
                None => f32::NAN,
            };
            *d += g * (p - hot);
        }
    }
}

/// `y = a ∘ b`.
pub fn zip(f: Zip, a: &[f32], b: &[f32], y: &mut [f32]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        compact_loop!();
        *y = f.apply(a, b);
    }
}

/// `d += ∂(a ∘ b)/∂a · dy` (or `∂/∂b` when `rhs`).
pub fn zip_backward(f: Zip, rhs: bool, a: &[f32], b: &[f32], dy: &[f32], d: &mut [f32]) {
    let n = d.len().min(a.len()).min(b.len()).min(dy.len());
    match (f, rhs) {
        (Zip::Add, _) => d[..n].iter_mut().zip(dy).for_each(|(d, &g)| *d += g),
        (Zip::Sub, true) => d[..n].iter_mut().zip(dy).for_each(|(d, &g)| *d -= g),
        (Zip::Sub, false) => d[..n].iter_mut().zip(dy).for_each(|(d, &g)| *d += g),
        _ => {
            for i in 0..n {
                compact_loop!();
                let p = if rhs {
                    f.d_rhs(a[i], b[i])
                } else {
                    f.d_lhs(a[i], b[i])
                };
                d[i] += p * dy[i];
            }
        }
    }
}

/// `c (+)= op(a) · op(b)` for one row-major product of `m × k` by `k × n`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    c: &mut [f32],
    acc: Acc,
) {
    if acc == Acc::Set {
        c[..m * n].iter_mut().for_each(|v| *v = 0.0);
    }
    let at = |i: usize, p: usize| if trans_a { a[p * m + i] } else { a[i * k + p] };
    if !trans_b {
        // c[i, :] += a[i, p] · b[p, :], streaming rows of b.
        for i in 0..m {
            compact_loop!();
            let ci = &mut c[i * n..(i + 1) * n];
            for p in 0..k {
                compact_loop!();
                let aip = at(i, p);
                if aip == 0.0 {
                    continue;
                }
                let bp = &b[p * n..(p + 1) * n];
                for (cv, &bv) in ci.iter_mut().zip(bp) {
                    *cv += aip * bv;
                }
            }
        }
    } else {
        // c[i, j] += dot(a[i, :], b[j, :]).
        for i in 0..m {
            compact_loop!();
            for j in 0..n {
                compact_loop!();
                let bj = &b[j * k..(j + 1) * k];
                let mut s = 0.0f32;
                if trans_a {
                    for (p, &bv) in bj.iter().enumerate() {
                        s += a[p * m + i] * bv;
                    }
                } else {
                    let ai = &a[i * k..(i + 1) * k];
                    for (&av, &bv) in ai.iter().zip(bj) {
                        s += av * bv;
                    }
                }
                c[i * n + j] += s;
            }
        }
    }
}

/// `y[o, i] (+)= reduce over l of x[o, l, i]`.
///
/// Sums add pairwise (as NumPy and PyTorch do): the error of a sum of `n`
/// floats grows like `log n` rather than `n`, and the blocks of eight
/// independent partial sums vectorise.
pub fn reduce(op: Reduce, x: &[f32], y: &mut [f32], d: AxisDims, acc: Acc) {
    let arg = match op {
        Reduce::Sum if d.inner > 1 => return sum_rows(x, y, d, acc),
        Reduce::Sum => {
            for (o, yv) in y[..d.outer].iter_mut().enumerate() {
                compact_loop!();
                store(yv, pairwise_sum(&x[o * d.len..][..d.len]), acc);
            }
            return;
        }
        Reduce::Max => false,
        Reduce::ArgMax => true,
    };
    for o in 0..d.outer {
        compact_loop!();
        for i in 0..d.inner {
            compact_loop!();
            let at = |l: usize| x[(o * d.len + l) * d.inner + i];
            // The first maximum, or the first NaN (nothing beats it).
            let (mut best, mut m) = (0usize, f32::NEG_INFINITY);
            for l in 0..d.len {
                compact_loop!();
                let v = at(l);
                if v > m || (v.is_nan() && !m.is_nan()) {
                    m = v;
                    best = l;
                    if v.is_nan() {
                        break;
                    }
                }
            }
            let v = if arg { best as f32 } else { m };
            store(&mut y[o * d.inner + i], v, acc);
        }
    }
}

/// Values summed in one block (eight running sums) below this many; halves
/// added pairwise above.
const PAIRWISE_BASE: usize = 128;

/// Pairwise sum of a contiguous slice: eight running sums over blocks of
/// up to 128 values, the halves of longer slices added
/// recursively (NumPy's scheme).
pub fn pairwise_sum(x: &[f32]) -> f32 {
    if x.len() > PAIRWISE_BASE {
        let mid = x.len() / 2;
        return pairwise_sum(&x[..mid]) + pairwise_sum(&x[mid..]);
    }
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        compact_loop!();
        for (a, &v) in acc.iter_mut().zip(c) {
            compact_loop!();
            *a += v;
        }
    }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for &v in rest {
        compact_loop!();
        s += v;
    }
    s
}

/// Rows added in order below this many; halves added pairwise above.
const ROWS_BASE: usize = 16;

/// Columns of a block in [`sum_rows`].
const COLUMNS: usize = 64;

/// Sum along an axis with `inner > 1`: a block of up to [`COLUMNS`] columns
/// at a time, rows of the block added in order (contiguous reads, vectorised
/// adds) in runs of [`ROWS_BASE`], the runs' sums added pairwise. The stack
/// holds one block of partial sums per level of halving (256 bytes each,
/// none below 17 rows).
fn sum_rows(x: &[f32], y: &mut [f32], d: AxisDims, acc: Acc) {
    let mut t = [0.0f32; COLUMNS];
    for o in 0..d.outer {
        compact_loop!();
        let mut i0 = 0;
        while i0 < d.inner {
            compact_loop!();
            let w = (d.inner - i0).min(COLUMNS);
            let t = &mut t[..w];
            let rows = |l: usize| &x[(o * d.len + l) * d.inner + i0..][..w];
            sum_rows_pairwise(&rows, 0, d.len, t);
            for (yv, &v) in y[o * d.inner + i0..][..w].iter_mut().zip(t.iter()) {
                compact_loop!();
                store(yv, v, acc);
            }
            i0 += w;
        }
    }
}

/// `t = Σ_{l in lo..hi} row(l)`, pairwise over runs of [`ROWS_BASE`] rows.
fn sum_rows_pairwise<'a>(row: &impl Fn(usize) -> &'a [f32], lo: usize, hi: usize, t: &mut [f32]) {
    if hi - lo > ROWS_BASE {
        let mid = lo + (hi - lo) / 2;
        sum_rows_pairwise(row, lo, mid, t);
        let mut right = [0.0f32; COLUMNS];
        let right = &mut right[..t.len()];
        sum_rows_pairwise(row, mid, hi, right);
        for (a, &b) in t.iter_mut().zip(right.iter()) {
            compact_loop!();
            *a += b;
        }
        return;
    }
    t.fill(0.0);
    for l in lo..hi {
        compact_loop!();
        for (a, &v) in t.iter_mut().zip(row(l)) {
            compact_loop!();
            *a += v;
        }
    }
}

/// `y[o, l, i] (+)= x[o, i]`.
pub fn expand(x: &[f32], y: &mut [f32], d: AxisDims, acc: Acc) {
    for o in 0..d.outer {
        compact_loop!();
        for l in 0..d.len {
            compact_loop!();
            let row = &mut y[(o * d.len + l) * d.inner..][..d.inner];
            let src = &x[o * d.inner..][..d.inner];
            for (yv, &xv) in row.iter_mut().zip(src) {
                compact_loop!();
                store(yv, xv, acc);
            }
        }
    }
}

/// `dx[o, l, i] += dy[o, i] / k` at each of the `k` positions `l` where
/// `x[o, l, i] == y[o, i]` (or both are NaN): tied maxima share the gradient
/// evenly, as PyTorch's `max()` and `amax` do.
pub fn max_backward(x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32], d: AxisDims) {
    let is_max = |v: f32, m: f32| v == m || (v.is_nan() && m.is_nan());
    for o in 0..d.outer {
        compact_loop!();
        for i in 0..d.inner {
            compact_loop!();
            let m = y[o * d.inner + i];
            let at = |l: usize| (o * d.len + l) * d.inner + i;
            let ties = (0..d.len).filter(|&l| is_max(x[at(l)], m)).count();
            if ties == 0 {
                continue;
            }
            let share = dy[o * d.inner + i] / ties as f32;
            for l in 0..d.len {
                compact_loop!();
                if is_max(x[at(l)], m) {
                    dx[at(l)] += share;
                }
            }
        }
    }
}

/// Softmax (or log-softmax) along the middle axis.
pub fn softmax(x: &[f32], y: &mut [f32], d: AxisDims, log: bool) {
    for o in 0..d.outer {
        compact_loop!();
        for i in 0..d.inner {
            compact_loop!();
            let idx = |l: usize| (o * d.len + l) * d.inner + i;
            let mut m = f32::NEG_INFINITY;
            for l in 0..d.len {
                compact_loop!();
                m = m.max(x[idx(l)]);
            }
            if m == f32::NEG_INFINITY {
                m = 0.0;
            }
            let mut s = 0.0f32;
            for l in 0..d.len {
                compact_loop!();
                s += libm::expf(x[idx(l)] - m);
            }
            if log {
                let lse = m + libm::logf(s);
                for l in 0..d.len {
                    compact_loop!();
                    y[idx(l)] = x[idx(l)] - lse;
                }
            } else {
                let inv = 1.0 / s;
                for l in 0..d.len {
                    compact_loop!();
                    y[idx(l)] = libm::expf(x[idx(l)] - m) * inv;
                }
            }
        }
    }
}

/// Gradient of softmax (or log-softmax) from its output `y`.
pub fn softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], d: AxisDims, log: bool) {
    for o in 0..d.outer {
        compact_loop!();
        for i in 0..d.inner {
            compact_loop!();
            let idx = |l: usize| (o * d.len + l) * d.inner + i;
            if log {
                // dx = dy - softmax · sum(dy); sums as `Iterator::sum`
                // adds (from −0), in a loop kept compact.
                let mut s = -0.0f32;
                for l in 0..d.len {
                    compact_loop!();
                    s += dy[idx(l)];
                }
                for l in 0..d.len {
                    compact_loop!();
                    dx[idx(l)] += dy[idx(l)] - libm::expf(y[idx(l)]) * s;
                }
            } else {
                // dx = y · (dy - sum(dy · y))
                let mut s = -0.0f32;
                for l in 0..d.len {
                    compact_loop!();
                    s += dy[idx(l)] * y[idx(l)];
                }
                for l in 0..d.len {
                    compact_loop!();
                    dx[idx(l)] += y[idx(l)] * (dy[idx(l)] - s);
                }
            }
        }
    }
}

/// `y[b] (+)= x[b]ᵀ` for `batch` matrices of `rows × cols`.
pub fn transpose(x: &[f32], y: &mut [f32], batch: usize, rows: usize, cols: usize, acc: Acc) {
    let sz = rows * cols;
    for b in 0..batch {
        compact_loop!();
        let (xb, yb) = (&x[b * sz..][..sz], &mut y[b * sz..][..sz]);
        for r in 0..rows {
            compact_loop!();
            for c in 0..cols {
                compact_loop!();
                store(&mut yb[c * rows + r], xb[r * cols + c], acc);
            }
        }
    }
}

/// Strided block copy on slices that start at the first block.
#[allow(clippy::too_many_arguments)]
pub fn copy_blocks(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    blocks: usize,
    block_len: usize,
    acc: Acc,
) {
    for b in 0..blocks {
        compact_loop!();
        let s = &src[b * src_stride..][..block_len];
        let d = &mut dst[b * dst_stride..][..block_len];
        match acc {
            Acc::Set => d.copy_from_slice(s),
            Acc::Add => {
                for (d, &s) in d.iter_mut().zip(s) {
                    compact_loop!();
                    *d += s;
                }
            }
        }
    }
}

/// One optimizer update over a parameter. State plane `k` of element `i` is
/// `planes[k][i]` (planes the rule does not use may be empty). Elements
/// beyond the shortest slice the rule uses are left alone.
pub fn update(rule: &Update, param: &mut [f32], grad: &[f32], planes: [&mut [f32]; 3]) {
    update_with::<LibmSqrt>(rule, param, grad, planes)
}

/// [`update`] with a chosen square root (a host backend passes one the
/// compiler can vectorise).
pub fn update_with<Q: Sqrt>(
    rule: &Update,
    param: &mut [f32],
    grad: &[f32],
    planes: [&mut [f32]; 3],
) {
    /// One loop per rule and plane count, so that the rule's `match` is
    /// resolved outside the loop and the loop can be vectorised.
    #[inline(always)]
    fn run<const K: usize, Q: Sqrt>(r: Update, p: &mut [f32], g: &[f32], planes: [&mut [f32]; 3]) {
        let [s0, s1, s2] = planes;
        let mut n = p.len().min(g.len());
        for s in [&*s0, &*s1, &*s2].into_iter().take(K) {
            compact_loop!();
            n = n.min(s.len());
        }
        let (p, g) = (&mut p[..n], &g[..n]);
        let (l0, l1, l2) = (n.min(s0.len()), n.min(s1.len()), n.min(s2.len()));
        let (s0, s1, s2) = (&mut s0[..l0], &mut s1[..l1], &mut s2[..l2]);
        for i in 0..n {
            let mut s = [0.0f32; 3];
            if K > 0 {
                s[0] = s0[i];
            }
            if K > 1 {
                s[1] = s1[i];
            }
            if K > 2 {
                s[2] = s2[i];
            }
            p[i] = r.step_with::<Q>(p[i], g[i], &mut s);
            if K > 0 {
                s0[i] = s[0];
            }
            if K > 1 {
                s1[i] = s[1];
            }
            if K > 2 {
                s2[i] = s[2];
            }
        }
    }
    match *rule {
        r @ Update::Sgd { momentum: 0.0, .. } => run::<0, Q>(r, param, grad, planes),
        r @ Update::Sgd { .. } => run::<1, Q>(r, param, grad, planes),
        r @ Update::Adam { amsgrad: false, .. } => run::<2, Q>(r, param, grad, planes),
        r @ Update::Adam { .. } => run::<3, Q>(r, param, grad, planes),
        r @ Update::RmsProp { .. } => run::<3, Q>(r, param, grad, planes),
        r @ Update::Adagrad { .. } => run::<1, Q>(r, param, grad, planes),
    }
}

/// Splits optimizer state of `n`-element parameters into its planes.
pub fn state_planes(state: &mut [f32], n: usize, planes: usize) -> [&mut [f32]; 3] {
    let used = (planes * n).min(state.len());
    let (mut rest, _) = state.split_at_mut(used);
    let mut out: [&mut [f32]; 3] = [&mut [], &mut [], &mut []];
    for o in out.iter_mut().take(planes) {
        let k = n.min(rest.len());
        let (head, tail) = core::mem::take(&mut rest).split_at_mut(k);
        *o = head;
        rest = tail;
    }
    out
}
