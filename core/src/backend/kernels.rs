//! The portable kernels, on plain slices.
//!
//! [`Cpu`](super::Cpu) runs these directly; a parallel CPU backend runs them on
//! chunks from several threads. They are the reference the other backends are
//! tested against.

use super::{Acc, AxisDims, Reduce};
use crate::ops::map::Map;
use crate::ops::optim::Update;
use crate::ops::zip::Zip;

#[inline]
fn store(out: &mut f32, v: f32, acc: Acc) {
    match acc {
        Acc::Set => *out = v,
        Acc::Add => *out += v,
    }
}

/// `y = f(x)`.
pub fn map(f: Map, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = f.apply(x);
    }
}

/// `dx += f'(x) · dy`. A zero `dy` contributes exactly zero, even where
/// `f'(x)` is infinite (`ln` at a clamped 0), so that a gradient blocked
/// downstream stays blocked instead of turning into `0 · ∞ = NaN`.
pub fn map_backward(f: Map, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    for i in 0..dx.len().min(x.len()).min(y.len()).min(dy.len()) {
        if dy[i] != 0.0 {
            dx[i] += f.derivative(x[i], y[i]) * dy[i];
        }
    }
}

/// `y = a ∘ b`.
pub fn zip(f: Zip, a: &[f32], b: &[f32], y: &mut [f32]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
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
            let ci = &mut c[i * n..(i + 1) * n];
            for p in 0..k {
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
            for j in 0..n {
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
pub fn reduce(op: Reduce, x: &[f32], y: &mut [f32], d: AxisDims, acc: Acc) {
    for o in 0..d.outer {
        for i in 0..d.inner {
            let at = |l: usize| x[(o * d.len + l) * d.inner + i];
            let v = match op {
                Reduce::Sum => (0..d.len).map(at).sum(),
                Reduce::Max => {
                    let mut m = f32::NEG_INFINITY;
                    for l in 0..d.len {
                        let v = at(l);
                        if v > m || v.is_nan() {
                            m = v;
                            if v.is_nan() {
                                break;
                            }
                        }
                    }
                    m
                }
                Reduce::ArgMax => {
                    let (mut best, mut m) = (0usize, f32::NEG_INFINITY);
                    for l in 0..d.len {
                        let v = at(l);
                        if v > m || (v.is_nan() && !m.is_nan()) {
                            m = v;
                            best = l;
                            if v.is_nan() {
                                break;
                            }
                        }
                    }
                    best as f32
                }
            };
            store(&mut y[o * d.inner + i], v, acc);
        }
    }
}

/// `y[o, l, i] (+)= x[o, i]`.
pub fn expand(x: &[f32], y: &mut [f32], d: AxisDims, acc: Acc) {
    for o in 0..d.outer {
        for l in 0..d.len {
            let row = &mut y[(o * d.len + l) * d.inner..][..d.inner];
            let src = &x[o * d.inner..][..d.inner];
            for (yv, &xv) in row.iter_mut().zip(src) {
                store(yv, xv, acc);
            }
        }
    }
}

/// `dx[o, l, i] += dy[o, i]` at the first `l` where `x[o, l, i] == y[o, i]`.
pub fn max_backward(x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32], d: AxisDims) {
    for o in 0..d.outer {
        for i in 0..d.inner {
            let m = y[o * d.inner + i];
            for l in 0..d.len {
                let idx = (o * d.len + l) * d.inner + i;
                let v = x[idx];
                if v == m || (v.is_nan() && m.is_nan()) {
                    dx[idx] += dy[o * d.inner + i];
                    break;
                }
            }
        }
    }
}

/// Softmax (or log-softmax) along the middle axis.
pub fn softmax(x: &[f32], y: &mut [f32], d: AxisDims, log: bool) {
    for o in 0..d.outer {
        for i in 0..d.inner {
            let idx = |l: usize| (o * d.len + l) * d.inner + i;
            let mut m = f32::NEG_INFINITY;
            for l in 0..d.len {
                m = m.max(x[idx(l)]);
            }
            if m == f32::NEG_INFINITY {
                m = 0.0;
            }
            let mut s = 0.0f32;
            for l in 0..d.len {
                s += libm::expf(x[idx(l)] - m);
            }
            if log {
                let lse = m + libm::logf(s);
                for l in 0..d.len {
                    y[idx(l)] = x[idx(l)] - lse;
                }
            } else {
                let inv = 1.0 / s;
                for l in 0..d.len {
                    y[idx(l)] = libm::expf(x[idx(l)] - m) * inv;
                }
            }
        }
    }
}

/// Gradient of softmax (or log-softmax) from its output `y`.
pub fn softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], d: AxisDims, log: bool) {
    for o in 0..d.outer {
        for i in 0..d.inner {
            let idx = |l: usize| (o * d.len + l) * d.inner + i;
            if log {
                // dx = dy - softmax · sum(dy)
                let s: f32 = (0..d.len).map(|l| dy[idx(l)]).sum();
                for l in 0..d.len {
                    dx[idx(l)] += dy[idx(l)] - libm::expf(y[idx(l)]) * s;
                }
            } else {
                // dx = y · (dy - sum(dy · y))
                let s: f32 = (0..d.len).map(|l| dy[idx(l)] * y[idx(l)]).sum();
                for l in 0..d.len {
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
        let (xb, yb) = (&x[b * sz..][..sz], &mut y[b * sz..][..sz]);
        for r in 0..rows {
            for c in 0..cols {
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
        let s = &src[b * src_stride..][..block_len];
        let d = &mut dst[b * dst_stride..][..block_len];
        match acc {
            Acc::Set => d.copy_from_slice(s),
            Acc::Add => d.iter_mut().zip(s).for_each(|(d, &s)| *d += s),
        }
    }
}

/// One optimizer update over a parameter; `state` holds `rule.state_planes()`
/// planes of `param.len()` floats each.
pub fn update(rule: &Update, param: &mut [f32], grad: &[f32], state: &mut [f32]) {
    let n = param.len();
    let planes = rule.state_planes();
    for i in 0..n {
        let mut s = [0.0f32; 3];
        for (k, sk) in s.iter_mut().enumerate().take(planes) {
            *sk = state[k * n + i];
        }
        param[i] = rule.step(param[i], grad[i], &mut s);
        for (k, sk) in s.iter().enumerate().take(planes) {
            state[k * n + i] = *sk;
        }
    }
}
