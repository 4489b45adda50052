//! Gradient checking against finite differences, for any scalar function
//! built from tensor operations: single ops, layers, losses, whole models.
//!
//! The function's inputs are parameters in a [`Memory`] (make plain inputs
//! with [`Memory::param`], or [`Memory::param_shaped`] for a shape known at
//! run time, as a proptest's random lengths are). [`check`] runs one backward
//! pass for the analytic gradient, then estimates each partial derivative by
//! perturbing one element at a time and re-evaluating the function with
//! recording off. The memory holds the parameters, their gradients and the
//! function's graph (values and gradients of every node): a few times the
//! inputs' size is usually plenty, and too little is a clear
//! [`GradCheckError::Graph`] (`out of tensor memory: N floats needed`).
//!
//! **A custom op** ([`CustomOp`](crate::ops::custom::CustomOp)) must *add*
//! its gradient to the input's. A function that uses the op's output once
//! cannot tell adding from overwriting (the gradient starts at zero); use
//! the op twice on the same input, `(x.custom(&op) + x.custom(&op)).sum()`,
//! and an overwrite loses one use's share and fails the check.
//!
//! **Accuracy.** The function is evaluated in `f32`, so each value carries a
//! rounding error of about `ε·|f|` with `ε ≈ 6e-8`. A plain central
//! difference with step `h` has truncation error `O(h²)` and rounding error
//! `O(ε|f|/h)`; no `h` makes both small in `f32`. The checker therefore
//! combines central differences at `h` and `h/2` by Richardson extrapolation,
//! `(4·D(h/2) − D(h)) / 3`, whose truncation error is `O(h⁴)`, and does that
//! arithmetic in `f64`. With the default `h = 1e-2·max(1, |x|)` the
//! truncation term is about `1e-8·f⁽⁵⁾` and the rounding term about
//! `1e-5·|f|`, so the default tolerance (`|a − n| ≤ 1e-3 + 1e-2·max(|a|, |n|)`)
//! passes every correct gradient of a smooth function of moderate size while a
//! wrong factor, sign or term fails. At a kink (ReLU at 0, `|x|` at 0, a tie
//! in a max) finite differences are meaningless: keep inputs away from kinks
//! by at least `h`.
//!
//! ```
//! use ember_nn_core::prelude::*;
//! use ember_nn_core::gradcheck::{check, GradCheck};
//!
//! let mut buf = [0.0f32; 1024];
//! let mut mem = Memory::new(&Cpu, &mut buf[..]);
//! let x = mem.param::<Rank1<3>>(&[0.5, -1.0, 2.0])?;
//! let report = check(&mut mem, &[x.into()], &GradCheck::default(), |g| {
//!     let x = g.param(&x);
//!     (x.sin() * x.exp()).sum()
//! })
//! .expect("gradients agree");
//! assert_eq!(report.checked, 3);
//! # Ok::<(), ember_nn_core::Error>(())
//! ```

use crate::backend::Backend;
use crate::error::Error;
use crate::graph::{Graph, Tape};
use crate::memory::{Memory, ParamRef};
use crate::tensor::Tensor;

/// Settings of a gradient check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradCheck {
    /// Relative step: element `x` is perturbed by `step · max(1, |x|)`.
    pub step: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Check at most this many elements of each parameter (evenly spaced).
    pub max_per_param: usize,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            step: 1e-2,
            rtol: 1e-2,
            atol: 1e-3,
            max_per_param: usize::MAX,
        }
    }
}

/// What a passing check measured.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Report {
    /// Elements compared.
    pub checked: usize,
    /// Largest `|analytic − numeric|`.
    pub max_abs_err: f64,
    /// Largest `|analytic − numeric| / max(|analytic|, |numeric|)` over the
    /// elements whose gradients are not both tiny.
    pub max_rel_err: f64,
}

/// Why a check failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GradCheckError {
    /// The function itself failed.
    Graph(Error),
    /// An analytic gradient disagrees with its finite-difference estimate.
    Mismatch {
        /// Which parameter (index into the slice given to [`check`]).
        param: usize,
        /// Which element of it (row-major).
        index: usize,
        /// The gradient from backward.
        analytic: f64,
        /// The finite-difference estimate.
        numeric: f64,
    },
    /// The function's value is NaN or infinite at the point or near it.
    NonFinite {
        /// Which parameter was being perturbed.
        param: usize,
        /// Which element.
        index: usize,
    },
}

impl From<Error> for GradCheckError {
    fn from(e: Error) -> Self {
        GradCheckError::Graph(e)
    }
}

impl core::fmt::Display for GradCheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GradCheckError::Graph(e) => write!(f, "the function failed: {e}"),
            GradCheckError::Mismatch {
                param,
                index,
                analytic,
                numeric,
            } => write!(
                f,
                "gradient mismatch at parameter {param}, element {index}: backward gives {analytic}, finite differences {numeric}"
            ),
            GradCheckError::NonFinite { param, index } => write!(
                f,
                "the function is not finite near parameter {param}, element {index}"
            ),
        }
    }
}

impl core::error::Error for GradCheckError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            GradCheckError::Graph(e) => Some(e),
            _ => None,
        }
    }
}

/// Node capacity of the graphs the checker builds.
const NODES: usize = 512;

fn eval<B: Backend, F>(mem: &mut Memory<'_, B>, f: &mut F) -> Result<f64, Error>
where
    F: for<'t> FnMut(&'t (dyn Tape<B> + 't)) -> Tensor<'t, (), B>,
{
    let g: Graph<'_, B, NODES> = Graph::with_capacity(mem);
    g.no_grad(|| f(&*g).item().map(f64::from))
}

fn read1<B: Backend>(mem: &Memory<'_, B>, span: crate::Span, i: usize) -> Result<f32, Error> {
    let mut v = [0.0f32];
    mem.read(span.sub(i, 1), &mut v)?;
    Ok(v[0])
}

/// Checks the gradients of the scalar function `f` with respect to `params`.
///
/// `f` is called with a fresh graph each time; it must build the same
/// function of the parameters every time (fix any randomness inside it). The
/// parameters' gradients are zeroed first and hold the analytic gradient
/// afterwards; their values are restored exactly.
pub fn check<B: Backend, F>(
    mem: &mut Memory<'_, B>,
    params: &[ParamRef],
    cfg: &GradCheck,
    mut f: F,
) -> Result<Report, GradCheckError>
where
    F: for<'t> FnMut(&'t (dyn Tape<B> + 't)) -> Tensor<'t, (), B>,
{
    for p in params {
        mem.fill(p.grad, 0.0)?;
    }
    {
        let g: Graph<'_, B, NODES> = Graph::with_capacity(mem);
        let loss = f(&*g);
        loss.backward()?;
    }
    let mut report = Report::default();
    for (pi, p) in params.iter().enumerate() {
        let n = p.value.len;
        let count = n.min(cfg.max_per_param.max(1));
        for c in 0..count {
            let i = if count == n { c } else { c * n / count };
            let analytic = f64::from(read1(mem, p.grad, i)?);
            let x0 = read1(mem, p.value, i)?;
            let h = cfg.step * f64::from(x0.abs()).max(1.0);
            // Central differences with steps h and h/2, each divided by the
            // step actually representable in f32.
            let mut diff = |mem: &mut Memory<'_, B>, h: f64| -> Result<f64, Error> {
                mem.write(p.value.sub(i, 1), &[(f64::from(x0) + h) as f32])?;
                let xp = f64::from(read1(mem, p.value, i)?);
                let fp = eval(mem, &mut f)?;
                mem.write(p.value.sub(i, 1), &[(f64::from(x0) - h) as f32])?;
                let xm = f64::from(read1(mem, p.value, i)?);
                let fm = eval(mem, &mut f)?;
                Ok((fp - fm) / (xp - xm))
            };
            let d1 = diff(mem, h);
            let d2 = diff(mem, h / 2.0);
            mem.write(p.value.sub(i, 1), &[x0])?;
            let (d1, d2) = (d1?, d2?);
            let numeric = (4.0 * d2 - d1) / 3.0;
            if !numeric.is_finite() || !analytic.is_finite() {
                return Err(GradCheckError::NonFinite {
                    param: pi,
                    index: i,
                });
            }
            let err = (analytic - numeric).abs();
            let scale = analytic.abs().max(numeric.abs());
            if err > cfg.atol + cfg.rtol * scale {
                return Err(GradCheckError::Mismatch {
                    param: pi,
                    index: i,
                    analytic,
                    numeric,
                });
            }
            report.checked += 1;
            report.max_abs_err = report.max_abs_err.max(err);
            if scale > cfg.atol {
                report.max_rel_err = report.max_rel_err.max(err / scale);
            }
        }
    }
    Ok(report)
}
