//! The fused and op-specific kernels composed from the primitives: the
//! default bodies of [`Backend::bias_act`], [`Backend::act_backward`],
//! [`Backend::softmax`], [`Backend::softmax_backward`],
//! [`Backend::cross_entropy`], [`Backend::cross_entropy_backward`] and
//! [`Backend::update`].
//!
//! A new backend that implements only the primitives (memory, `fill`,
//! `copy`, `map`, `zip`, `gemm`, `reduce`, `expand`, `transpose` and their
//! backwards) runs every layer, loss and optimizer through these, and
//! overrides them one by one for speed. They work in the backend's scratch
//! region ([`Backend::scratch`]), a span of the buffer that no tensor is
//! placed in, in chunks of whatever fits: a larger region means fewer,
//! longer kernel launches, not a different result. The least each needs:
//!
//! | kernel | scratch floats, at least | chunks over |
//! |---|---|---|
//! | `bias_act` | one row (`bias.len`) | rows |
//! | `act_backward` | 1 | elements |
//! | `softmax`, `softmax_backward` | one outer slice: `3·len·inner + 2·inner` | outer indices |
//! | `cross_entropy` and its backward | `5·classes + 8` | rows |
//! | `update` | 4 | elements (4 floats each) |
//!
//! With less they return [`Error::OutOfMemory`] with the size needed,
//! having written nothing.
//!
//! They check their operands as the backends do ([`check`]) before they
//! write anything. Their results agree with the [`Cpu`](super::Cpu)
//! kernels to rounding (the conformance suite's tolerance) on finite data;
//! two corners differ: a NaN logit makes its row's max NaN here (the fused
//! kernels skip it), and a cross-entropy row whose `dloss` is zero gets
//! `0 · (p − hot)`, which is NaN, not nothing, when its logits are infinite.

use super::check::{self, check_cross_entropy, check_rows, same_len};
use super::{Acc, AxisDims, Backend, Blocks, Map, Reduce, Span, Update, Zip};
use crate::error::{Error, Result};

/// Scratch planes a chunk of work needs: `per_unit` floats for each unit
/// (row, outer slice, element) and `fixed` floats once.
struct Plan {
    scratch: Span,
    /// Units per chunk.
    chunk: usize,
}

/// Splits the backend's scratch region into chunks of `per_unit` floats per
/// unit after `fixed` floats, checking that it overlaps no operand.
fn plan<B: Backend + ?Sized>(
    be: &B,
    buf: &B::Buffer,
    operands: &[Span],
    per_unit: usize,
    fixed: usize,
    units: usize,
) -> Result<Plan> {
    let scratch = be.scratch(buf);
    if operands.iter().any(|o| o.overlaps(&scratch)) {
        return Err(Error::InvalidArgument {
            what: "the backend's scratch region overlaps an operand",
        });
    }
    let needed = per_unit.checked_add(fixed).ok_or(check::OUT_OF_BOUNDS)?;
    if units > 0 && scratch.len < needed {
        return Err(Error::OutOfMemory {
            needed,
            available: scratch.len,
        });
    }
    let chunk = (scratch.len - fixed.min(scratch.len))
        .checked_div(per_unit)
        .map_or(units, |c| c.min(units));
    Ok(Plan { scratch, chunk })
}

/// Checks that every operand lies in the buffer and that outputs overlap
/// nothing else, without slicing it (the buffer may be device memory).
fn check_spans<B: Backend + ?Sized>(
    be: &B,
    buf: &B::Buffer,
    ins: &[Span],
    outs: &[Span],
) -> Result<()> {
    check::disjoint(be.buffer_len(buf), ins, outs)
}

/// A plain copy of `src` to `dst` (same length), overwriting or adding.
fn copy<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    src: Span,
    dst: Span,
    acc: Acc,
) -> Result<()> {
    be.copy(
        buf,
        &Blocks {
            src,
            src_stride: src.len,
            dst,
            dst_stride: dst.len,
            blocks: 1,
            block_len: src.len,
            acc,
        },
    )
}

/// `n` consecutive spans of `len` floats from the start of `at`.
fn planes<const N: usize>(at: Span, len: usize) -> [Span; N] {
    core::array::from_fn(|i| at.sub(i * len, len))
}

/// [`Backend::bias_act`]: `y = f(y + bias)` per row, through a copy of the
/// rows in scratch, `expand` (accumulating the bias) and `map`.
pub fn bias_act<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    f: Map,
    bias: Span,
    y: Span,
) -> Result<()> {
    check_rows(y, bias.len)?;
    check_spans(be, buf, &[bias], &[y])?;
    let cols = bias.len;
    let rows = y.len.checked_div(cols).unwrap_or(0);
    let p = plan(be, buf, &[bias, y], cols, 0, rows)?;
    let mut r = 0;
    while r < rows {
        let n = p.chunk.min(rows - r);
        let yc = y.sub(r * cols, n * cols);
        let t = p.scratch.sub(0, yc.len);
        copy(be, buf, yc, t, Acc::Set)?;
        let along_rows = AxisDims {
            outer: 1,
            len: n,
            inner: cols,
        };
        be.expand(buf, bias, t, along_rows, Acc::Add)?;
        be.map(buf, f, t, yc)?;
        r += n;
    }
    Ok(())
}

/// [`Backend::act_backward`]: `dy = f'(y) · dy` in place, through
/// `map_backward` with the output standing in for the input (which is
/// exact for the activations that [`Map::fuses`]) into scratch, and a copy back.
pub fn act_backward<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    f: Map,
    y: Span,
    dy: Span,
) -> Result<()> {
    same_len(&[y, dy])?;
    check_spans(be, buf, &[y], &[dy])?;
    let p = plan(be, buf, &[y, dy], 1, 0, y.len)?;
    let mut i = 0;
    while i < y.len {
        let n = p.chunk.min(y.len - i);
        let (yc, dyc, t) = (y.sub(i, n), dy.sub(i, n), p.scratch.sub(0, n));
        be.fill(buf, t, 0.0)?;
        be.map_backward(buf, f, yc, yc, dyc, t)?;
        copy(be, buf, t, dyc, Acc::Set)?;
        i += n;
    }
    Ok(())
}

/// The slices of an axis tensor for outer indices `[o, o + n)`.
fn outer_chunk(x: Span, d: AxisDims, o: usize, n: usize) -> (Span, AxisDims) {
    let slice = d.len * d.inner;
    (
        x.sub(o * slice, n * slice),
        AxisDims {
            outer: n,
            len: d.len,
            inner: d.inner,
        },
    )
}

/// Scratch for one outer slice of a softmax: three planes of the slice and
/// two of its reduction.
fn softmax_plan<B: Backend + ?Sized>(
    be: &B,
    buf: &B::Buffer,
    operands: &[Span],
    d: AxisDims,
) -> Result<Plan> {
    let slice = d.len.checked_mul(d.inner).ok_or(check::OUT_OF_BOUNDS)?;
    let per = slice
        .checked_mul(3)
        .and_then(|v| v.checked_add(2 * d.inner))
        .ok_or(check::OUT_OF_BOUNDS)?;
    plan(be, buf, operands, per, 0, d.outer)
}

/// The scratch planes of a softmax chunk: three of `numel`, two of `rows`.
fn softmax_planes(scratch: Span, d: AxisDims) -> ([Span; 3], [Span; 2]) {
    let numel = d.numel();
    let rows = d.outer * d.inner;
    let big = planes::<3>(scratch, numel);
    let small = planes::<2>(scratch.sub(3 * numel, 2 * rows), rows);
    (big, small)
}

/// [`Backend::softmax`]: `max`, `exp(x − max)`, its sum, then a division
/// (or, for log-softmax, `(x − max) − ln Σ`), all along the axis.
pub fn softmax<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    x: Span,
    y: Span,
    d: AxisDims,
    log: bool,
) -> Result<()> {
    check::check_softmax(&[x, y], d)?;
    check_spans(be, buf, &[x], &[y])?;
    let p = softmax_plan(be, buf, &[x, y], d)?;
    let mut o = 0;
    while o < d.outer {
        let n = p.chunk.min(d.outer - o);
        let (xc, dc) = outer_chunk(x, d, o, n);
        let (yc, _) = outer_chunk(y, d, o, n);
        let ([t1, t2, _], [m, s]) = softmax_planes(p.scratch, dc);
        be.reduce(buf, Reduce::Max, xc, m, dc, Acc::Set)?;
        be.expand(buf, m, t1, dc, Acc::Set)?;
        be.zip(buf, Zip::Sub, xc, t1, t2)?; // x − max
        be.map(buf, Map::Exp, t2, t1)?;
        be.reduce(buf, Reduce::Sum, t1, s, dc, Acc::Set)?;
        if log {
            be.map(buf, Map::Ln, s, m)?;
            be.expand(buf, m, t1, dc, Acc::Set)?;
            be.zip(buf, Zip::Sub, t2, t1, yc)?;
        } else {
            be.expand(buf, s, t2, dc, Acc::Set)?;
            be.zip(buf, Zip::Div, t1, t2, yc)?;
        }
        o += n;
    }
    Ok(())
}

/// [`Backend::softmax_backward`]: `dx += y · (dy − Σ dy·y)`, or for
/// log-softmax `dx += dy − exp(y) · Σ dy`.
pub fn softmax_backward<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    y: Span,
    dy: Span,
    dx: Span,
    d: AxisDims,
    log: bool,
) -> Result<()> {
    check::check_softmax(&[y, dy, dx], d)?;
    check_spans(be, buf, &[y, dy], &[dx])?;
    let p = softmax_plan(be, buf, &[y, dy, dx], d)?;
    let mut o = 0;
    while o < d.outer {
        let n = p.chunk.min(d.outer - o);
        let (yc, dc) = outer_chunk(y, d, o, n);
        let (dyc, _) = outer_chunk(dy, d, o, n);
        let (dxc, _) = outer_chunk(dx, d, o, n);
        let ([t1, t2, t3], [s, _]) = softmax_planes(p.scratch, dc);
        if log {
            be.reduce(buf, Reduce::Sum, dyc, s, dc, Acc::Set)?;
            be.expand(buf, s, t1, dc, Acc::Set)?;
            be.map(buf, Map::Exp, yc, t2)?;
            be.zip(buf, Zip::Mul, t2, t1, t3)?; // exp(y) · Σ dy
            be.zip(buf, Zip::Sub, dyc, t3, t1)?;
        } else {
            be.zip(buf, Zip::Mul, dyc, yc, t1)?;
            be.reduce(buf, Reduce::Sum, t1, s, dc, Acc::Set)?;
            be.expand(buf, s, t1, dc, Acc::Set)?;
            be.zip(buf, Zip::Sub, dyc, t1, t2)?;
            be.zip(buf, Zip::Mul, yc, t2, t1)?;
        }
        copy(be, buf, t1, dxc, Acc::Add)?;
        o += n;
    }
    Ok(())
}

/// Floats of scratch per row of a cross-entropy chunk: four planes of the
/// row and eight per-row values.
const CE_ROW_PLANES: usize = 4;
const CE_ROW_VALUES: usize = 8;

/// The scratch of a cross-entropy: the class indices `0, 1, …` once, then
/// per chunk four `[rows, classes]` planes and eight `[rows]` values.
struct CrossEntropyScratch {
    iota: Span,
    big: [Span; CE_ROW_PLANES],
    small: [Span; CE_ROW_VALUES],
}

fn cross_entropy_plan<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    operands: &[Span],
    rows: usize,
    classes: usize,
) -> Result<Plan> {
    let per = classes
        .checked_mul(CE_ROW_PLANES)
        .and_then(|v| v.checked_add(CE_ROW_VALUES))
        .ok_or(check::OUT_OF_BOUNDS)?;
    let p = plan(be, buf, operands, per, classes, rows)?;
    // The class indices, written once from the host in small pieces.
    let iota = p.scratch.sub(0, classes);
    let mut piece = [0.0f32; 64];
    let mut c = 0;
    while c < classes {
        let n = piece.len().min(classes - c);
        for (j, v) in piece[..n].iter_mut().enumerate() {
            *v = (c + j) as f32;
        }
        be.upload(buf, iota.sub(c, n), &piece[..n])?;
        c += n;
    }
    Ok(p)
}

fn cross_entropy_scratch(scratch: Span, rows: usize, classes: usize) -> CrossEntropyScratch {
    let iota = scratch.sub(0, classes);
    let big_at = scratch.sub(classes, CE_ROW_PLANES * rows * classes);
    let small_at = scratch.sub(classes + big_at.len, CE_ROW_VALUES * rows);
    CrossEntropyScratch {
        iota,
        big: planes(big_at, rows * classes),
        small: planes(small_at, rows),
    }
}

/// One-hot rows of the targets in `hot`, and per row `q = max(hot) − 1`:
/// 0 for a valid class index, negative for one that is out of range or not
/// an integer (whose row then has no 1). Built as `relu(1 − |c − t|)`.
#[allow(clippy::too_many_arguments)]
fn one_hot<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    s: &CrossEntropyScratch,
    t: Span,
    rows: usize,
    classes: usize,
    hot: Span,
    q: Span,
) -> Result<()> {
    let [a, b, c, _] = s.big;
    let across = AxisDims {
        outer: 1,
        len: rows,
        inner: classes,
    };
    let along = AxisDims {
        outer: rows,
        len: classes,
        inner: 1,
    };
    let (a, b, c) = (a.sub(0, hot.len), b.sub(0, hot.len), c.sub(0, hot.len));
    be.expand(buf, s.iota, a, across, Acc::Set)?; // c
    be.expand(buf, t, b, along, Acc::Set)?; // t
    be.zip(buf, Zip::Sub, a, b, c)?;
    be.map(buf, Map::Abs, c, a)?;
    be.map(buf, Map::Neg, a, b)?;
    be.map(buf, Map::AddScalar(1.0), b, a)?;
    be.map(buf, Map::Relu, a, hot)?;
    let mx = s.small[7].sub(0, rows);
    be.reduce(buf, Reduce::Max, hot, mx, along, Acc::Set)?;
    be.map(buf, Map::AddScalar(-1.0), mx, q)
}

/// `Σ exp(x − max)` per row in `sum` and `x − max` in `shifted`, using `tmp`.
#[allow(clippy::too_many_arguments)]
fn shift_and_sum<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    x: Span,
    along: AxisDims,
    max: Span,
    shifted: Span,
    exp: Span,
    sum: Span,
) -> Result<()> {
    be.reduce(buf, Reduce::Max, x, max, along, Acc::Set)?;
    be.expand(buf, max, exp, along, Acc::Set)?;
    be.zip(buf, Zip::Sub, x, exp, shifted)?;
    be.map(buf, Map::Exp, shifted, exp)?;
    be.reduce(buf, Reduce::Sum, exp, sum, along, Acc::Set)
}

/// [`Backend::cross_entropy`]: `loss = (max + ln Σ exp(x − max)) − Σ x · hot`,
/// plus `√q` (0, or NaN for an invalid target).
pub fn cross_entropy<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    x: Span,
    targets: Span,
    loss: Span,
    classes: usize,
) -> Result<()> {
    check_cross_entropy(x, targets, loss, None, classes)?;
    check_spans(be, buf, &[x, targets], &[loss])?;
    let rows = targets.len;
    if classes == 0 {
        return be.fill(buf, loss, f32::NAN);
    }
    if rows == 0 {
        return Ok(());
    }
    let p = cross_entropy_plan(be, buf, &[x, targets, loss], rows, classes)?;
    let mut r = 0;
    while r < rows {
        let n = p.chunk.min(rows - r);
        let s = cross_entropy_scratch(p.scratch, n, classes);
        let (xc, tc, lc) = (
            x.sub(r * classes, n * classes),
            targets.sub(r, n),
            loss.sub(r, n),
        );
        let along = AxisDims {
            outer: n,
            len: classes,
            inner: 1,
        };
        let [a, b, _, hot] = s.big.map(|p| p.sub(0, xc.len));
        let [m, sum, ln, lse, q, mask, picked, _] = s.small.map(|p| p.sub(0, n));
        shift_and_sum(be, buf, xc, along, m, a, b, sum)?;
        be.map(buf, Map::Ln, sum, ln)?;
        be.zip(buf, Zip::Add, m, ln, lse)?;
        one_hot(be, buf, &s, tc, n, classes, hot, q)?;
        be.map(buf, Map::Sqrt, q, mask)?;
        be.zip(buf, Zip::Mul, xc, hot, a)?;
        be.reduce(buf, Reduce::Sum, a, picked, along, Acc::Set)?;
        be.zip(buf, Zip::Sub, lse, picked, ln)?;
        be.zip(buf, Zip::Add, ln, mask, lc)?;
        r += n;
    }
    Ok(())
}

/// [`Backend::cross_entropy_backward`]:
/// `dx += dloss · (softmax(x) − hot) + √(q · |dloss|)`, where the last term
/// is 0, or NaN for an invalid target in a row whose `dloss` is not zero.
pub fn cross_entropy_backward<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    x: Span,
    targets: Span,
    dloss: Span,
    dx: Span,
    classes: usize,
) -> Result<()> {
    check_cross_entropy(x, targets, dloss, Some(dx), classes)?;
    check_spans(be, buf, &[x, targets, dloss], &[dx])?;
    let rows = targets.len;
    if classes == 0 || rows == 0 {
        return Ok(());
    }
    let p = cross_entropy_plan(be, buf, &[x, targets, dloss, dx], rows, classes)?;
    let mut r = 0;
    while r < rows {
        let n = p.chunk.min(rows - r);
        let s = cross_entropy_scratch(p.scratch, n, classes);
        let xc = x.sub(r * classes, n * classes);
        let (tc, gc, dxc) = (
            targets.sub(r, n),
            dloss.sub(r, n),
            dx.sub(r * classes, n * classes),
        );
        let along = AxisDims {
            outer: n,
            len: classes,
            inner: 1,
        };
        let [a, b, c, hot] = s.big.map(|p| p.sub(0, xc.len));
        let [m, sum, q, ag, qg, mask, _, _] = s.small.map(|p| p.sub(0, n));
        one_hot(be, buf, &s, tc, n, classes, hot, q)?;
        be.map(buf, Map::Abs, gc, ag)?;
        be.zip(buf, Zip::Mul, q, ag, qg)?;
        be.map(buf, Map::Sqrt, qg, mask)?;
        shift_and_sum(be, buf, xc, along, m, a, b, sum)?;
        be.expand(buf, sum, a, along, Acc::Set)?;
        be.zip(buf, Zip::Div, b, a, c)?; // softmax
        be.zip(buf, Zip::Sub, c, hot, a)?;
        be.expand(buf, gc, b, along, Acc::Set)?;
        be.zip(buf, Zip::Mul, a, b, c)?;
        be.expand(buf, mask, c, along, Acc::Add)?;
        copy(be, buf, c, dxc, Acc::Add)?;
        r += n;
    }
    Ok(())
}

/// Scratch planes an update needs per element.
const UPDATE_PLANES: usize = 4;

/// [`Backend::update`]: the rule's formula ([`Update::step`]) as a
/// sequence of elementwise maps and zips over the parameter, its gradient
/// and its state planes.
pub fn update<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    rule: &Update,
    param: Span,
    grad: Span,
    state: Span,
) -> Result<()> {
    check::check_update(rule, param, grad, state)?;
    check_spans(be, buf, &[grad], &[param, state])?;
    let p = plan(be, buf, &[param, grad, state], UPDATE_PLANES, 0, param.len)?;
    let mut i = 0;
    while i < param.len {
        let n = p.chunk.min(param.len - i);
        let plane = |k: usize| state.sub(k * param.len + i, n);
        let t: [Span; UPDATE_PLANES] = planes(p.scratch, n);
        update_chunk(be, buf, rule, param.sub(i, n), grad.sub(i, n), plane, t)?;
        i += n;
    }
    Ok(())
}

/// `a · x + b · y` into `out`, using `t` (`b · y`) as scratch.
#[allow(clippy::too_many_arguments)]
fn blend<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    a: f32,
    x: Span,
    b: f32,
    y: Span,
    tx: Span,
    ty: Span,
    out: Span,
) -> Result<()> {
    be.map(buf, Map::MulScalar(a), x, tx)?;
    be.map(buf, Map::MulScalar(b), y, ty)?;
    be.zip(buf, Zip::Add, tx, ty, out)
}

fn update_chunk<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    rule: &Update,
    p: Span,
    g: Span,
    plane: impl Fn(usize) -> Span,
    [t0, t1, t2, t3]: [Span; UPDATE_PLANES],
) -> Result<()> {
    // `g + weight_decay · p` into t0.
    let decayed = |be: &B, buf: &mut B::Buffer, wd: f32| -> Result<Span> {
        be.map(buf, Map::MulScalar(wd), p, t1)?;
        be.zip(buf, Zip::Add, g, t1, t0)?;
        Ok(t0)
    };
    match *rule {
        Update::Sgd {
            lr,
            momentum,
            dampening,
            nesterov,
            weight_decay,
            first,
        } => {
            let mut d = decayed(be, buf, weight_decay)?;
            if momentum != 0.0 {
                let s = plane(0);
                if first {
                    copy(be, buf, d, s, Acc::Set)?;
                } else {
                    blend(be, buf, momentum, s, 1.0 - dampening, d, t1, t2, s)?;
                }
                d = if nesterov {
                    be.map(buf, Map::MulScalar(momentum), s, t1)?;
                    be.zip(buf, Zip::Add, d, t1, t2)?;
                    t2
                } else {
                    s
                };
            }
            be.map(buf, Map::MulScalar(-lr), d, t3)?;
            copy(be, buf, t3, p, Acc::Add)
        }
        Update::Adam {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
            amsgrad,
            bias1,
            bias2_sqrt,
        } => {
            let g = if decoupled {
                be.map(buf, Map::MulScalar(1.0 - lr * weight_decay), p, t0)?;
                copy(be, buf, t0, p, Acc::Set)?;
                g
            } else {
                decayed(be, buf, weight_decay)?
            };
            let (m, v) = (plane(0), plane(1));
            blend(be, buf, beta1, m, 1.0 - beta1, g, t1, t2, m)?;
            be.map(buf, Map::MulScalar(1.0 - beta2), g, t1)?;
            be.zip(buf, Zip::Mul, t1, g, t2)?; // (1 − β2) · g · g
            be.map(buf, Map::MulScalar(beta2), v, t1)?;
            be.zip(buf, Zip::Add, t1, t2, v)?;
            let v = if amsgrad {
                // vmax = v + relu(vmax − v): the larger of the two, and NaN
                // when v is (as torch.maximum).
                let vmax = plane(2);
                be.zip(buf, Zip::Sub, vmax, v, t1)?;
                be.map(buf, Map::Relu, t1, t2)?;
                be.zip(buf, Zip::Add, v, t2, vmax)?;
                vmax
            } else {
                v
            };
            be.map(buf, Map::Sqrt, v, t1)?;
            be.map(buf, Map::MulScalar(1.0 / bias2_sqrt), t1, t2)?;
            be.map(buf, Map::AddScalar(eps), t2, t1)?; // the denominator
            be.map(buf, Map::MulScalar(-(lr / bias1)), m, t2)?;
            be.zip(buf, Zip::Div, t2, t1, t3)?;
            copy(be, buf, t3, p, Acc::Add)
        }
        Update::RmsProp {
            lr,
            alpha,
            eps,
            weight_decay,
            momentum,
            centered,
        } => {
            let g = decayed(be, buf, weight_decay)?;
            let sq = plane(0);
            be.map(buf, Map::MulScalar(1.0 - alpha), g, t1)?;
            be.zip(buf, Zip::Mul, t1, g, t2)?; // (1 − α) · g · g
            be.map(buf, Map::MulScalar(alpha), sq, t1)?;
            be.zip(buf, Zip::Add, t1, t2, sq)?;
            if centered {
                let avg = plane(2);
                blend(be, buf, alpha, avg, 1.0 - alpha, g, t1, t2, avg)?;
                be.zip(buf, Zip::Mul, avg, avg, t1)?;
                be.zip(buf, Zip::Sub, sq, t1, t2)?;
                be.map(buf, Map::Sqrt, t2, t1)?;
            } else {
                be.map(buf, Map::Sqrt, sq, t1)?;
            }
            be.map(buf, Map::AddScalar(eps), t1, t2)?; // the denominator
            if momentum > 0.0 {
                let buf_m = plane(1);
                be.zip(buf, Zip::Div, g, t2, t1)?;
                be.map(buf, Map::MulScalar(momentum), buf_m, t3)?;
                be.zip(buf, Zip::Add, t3, t1, buf_m)?;
                be.map(buf, Map::MulScalar(-lr), buf_m, t3)?;
            } else {
                be.map(buf, Map::MulScalar(-lr), g, t1)?;
                be.zip(buf, Zip::Div, t1, t2, t3)?;
            }
            copy(be, buf, t3, p, Acc::Add)
        }
        Update::Adagrad {
            lr,
            eps,
            weight_decay,
        } => {
            let g = decayed(be, buf, weight_decay)?;
            let sum = plane(0);
            be.zip(buf, Zip::Mul, g, g, t1)?;
            copy(be, buf, t1, sum, Acc::Add)?;
            be.map(buf, Map::Sqrt, sum, t1)?;
            be.map(buf, Map::AddScalar(eps), t1, t2)?;
            be.map(buf, Map::MulScalar(-lr), g, t1)?;
            be.zip(buf, Zip::Div, t1, t2, t3)?;
            copy(be, buf, t3, p, Acc::Add)
        }
    }
}
