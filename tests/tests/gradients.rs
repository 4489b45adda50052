//! Every differentiable operation's backward pass agrees with finite
//! differences, over random shapes and values.
//!
//! Each property builds its inputs as parameters with run-time dimensions
//! (`(usize, usize)` shapes, sizes 1 to 5 chosen by proptest) and hands
//! [`ember_nn_core::gradcheck::check`] a scalar function of them. An operation
//! whose output has several elements is reduced with a random weight tensor,
//! `(y * w).sum()`, so that every row of its Jacobian takes part (a plain sum
//! would only test the Jacobian's column sums).
//!
//! **Tolerances.** The checker's defaults are used throughout
//! (`|analytic − numeric| ≤ 1e-3 + 1e-2·max(|analytic|, |numeric|)`, step
//! `1e-2·max(1, |x|)`): it evaluates in `f32` but extrapolates central
//! differences at `h` and `h/2` (Richardson) in `f64`, so its truncation error
//! is `O(h⁴)` and its rounding error about `1e-5·|f|`. Input ranges are chosen
//! to keep `|f|` moderate (at most a few tens), so a correct gradient passes
//! with a wide margin while a wrong factor, sign or term fails (see
//! `checker_catches_a_missing_term`). Finite differences are meaningless at a
//! kink, so inputs of ReLU, |x|, leaky ReLU, ELU, SELU and softsign keep
//! `|x| ≥ 0.1` (ten steps away), and inputs of `max` are distinct and at
//! least 0.4 apart.
//!
//! Case counts are small (24 per property, or `PROPTEST_CASES`) so that the
//! file runs in seconds in a debug build.

use ember_nn_core::gradcheck::{check, GradCheck, GradCheckError};
use ember_nn_core::nn::loss::Reduction;
use ember_nn_core::ops::map::Map;
use ember_nn_core::ops::zip::Zip;
use ember_nn_core::prelude::*;
use ember_nn_core::{ParamRef, Tape};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

type T<'t, S> = Tensor<'t, S, Cpu>;
type M = (usize, usize);

/// 24 cases per property unless `PROPTEST_CASES` asks for more (a soak run).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    ProptestConfig::with_cases(cases)
}

/// Floats of memory for parameters and the checker's graphs.
const MEM: usize = 1 << 14;

// ---------------------------------------------------------------- strategies

/// How input values are drawn.
#[derive(Clone, Copy, Debug)]
enum D {
    /// Uniform in `[lo, hi)`.
    U(f32, f32),
    /// `|x|` uniform in `[lo, hi)`, either sign: away from a kink at 0.
    Away(f32, f32),
}

fn vals(n: usize, d: D) -> BoxedStrategy<Vec<f32>> {
    match d {
        D::U(lo, hi) => vec(lo..hi, n).boxed(),
        D::Away(lo, hi) => vec(
            (lo..hi, any::<bool>()).prop_map(|(m, pos)| if pos { m } else { -m }),
            n,
        )
        .boxed(),
    }
}

fn dim() -> std::ops::RangeInclusive<usize> {
    1..=5
}

/// A run-time `(rows, cols)` shape and values for it.
fn mat(d: D) -> impl Strategy<Value = (M, Vec<f32>)> {
    (dim(), dim()).prop_flat_map(move |s| (Just(s), vals(s.0 * s.1, d)))
}

/// A shape and two value sets for it.
fn mat2(da: D, db: D) -> impl Strategy<Value = (M, Vec<f32>, Vec<f32>)> {
    (dim(), dim()).prop_flat_map(move |s| (Just(s), vals(s.0 * s.1, da), vals(s.0 * s.1, db)))
}

/// `n` distinct values at least 0.4 apart, in random order (no ties for max).
fn distinct(n: usize) -> impl Strategy<Value = Vec<f32>> {
    (
        Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
        vec(0.0f32..0.1, n),
    )
        .prop_map(move |(perm, noise)| {
            perm.iter()
                .zip(noise)
                .map(|(&i, e)| 0.5 * i as f32 - 0.25 * n as f32 + e)
                .collect()
        })
}

/// Weights for reducing any output here (at most 75 elements) to a scalar.
fn weights() -> impl Strategy<Value = Vec<f32>> {
    vec(-1.0f32..1.0, 75)
}

// ------------------------------------------------------------------- helpers

/// `(y * w).sum()` with the first `numel(y)` weights: a random linear
/// functional of `y`, so the check covers the whole Jacobian.
fn weighted<'t, S: Shape>(y: T<'t, S>, w: &[f32]) -> T<'t, ()> {
    let wt = y.tape().from_slice(y.shape(), &w[..y.numel()]);
    (y * wt).sum()
}

/// Runs the gradient check with the default tolerances and turns a failure
/// into a proptest failure naming the operation.
fn grad_ok<F>(
    what: &str,
    mem: &mut Memory<'_, Cpu>,
    params: &[ParamRef],
    f: F,
) -> Result<(), TestCaseError>
where
    F: for<'t> FnMut(&'t (dyn Tape<Cpu> + 't)) -> T<'t, ()>,
{
    match check(mem, params, &GradCheck::default(), f) {
        Ok(report) => {
            let expected: usize = params.iter().map(|p| p.value.len).sum();
            prop_assert_eq!(
                report.checked,
                expected,
                "{}: not every element checked",
                what
            );
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!("{what}: {e}"))),
    }
}

/// Checks `weighted(f(x))` for an elementwise function `f` of one `(r, c)` input.
fn unary(
    what: &str,
    s: M,
    x: &[f32],
    w: &[f32],
    f: impl for<'t> Fn(T<'t, M>) -> T<'t, M>,
) -> Result<(), TestCaseError> {
    let mut buf = vec![0.0f32; MEM];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let xp = mem.param_shaped(s, x).unwrap();
    grad_ok(what, &mut mem, &[xp.into()], |g| {
        weighted(f(g.param(&xp)), w)
    })
}

/// Checks `weighted(f(a, b))` with respect to both inputs.
#[allow(clippy::too_many_arguments)]
fn binary<SA: Shape, SB: Shape, SO: Shape>(
    what: &str,
    sa: SA,
    a: &[f32],
    sb: SB,
    b: &[f32],
    w: &[f32],
    f: impl for<'t> Fn(T<'t, SA>, T<'t, SB>) -> T<'t, SO>,
) -> Result<(), TestCaseError> {
    let mut buf = vec![0.0f32; MEM];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let ap = mem.param_shaped(sa, a).unwrap();
    let bp = mem.param_shaped(sb, b).unwrap();
    grad_ok(what, &mut mem, &[ap.into(), bp.into()], |g| {
        weighted(f(g.param(&ap), g.param(&bp)), w)
    })
}

/// Checks `weighted(f(x))` for any shape-changing function of one input.
fn view<SI: Shape, SO: Shape>(
    what: &str,
    s: SI,
    x: &[f32],
    w: &[f32],
    f: impl for<'t> Fn(T<'t, SI>) -> T<'t, SO>,
) -> Result<(), TestCaseError> {
    let mut buf = vec![0.0f32; MEM];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let xp = mem.param_shaped(s, x).unwrap();
    grad_ok(what, &mut mem, &[xp.into()], |g| {
        weighted(f(g.param(&xp)), w)
    })
}

// ------------------------------------------------------------ elementwise

proptest! {
    #![proptest_config(config())]

    /// Smooth functions defined everywhere, and the scalar arithmetic.
    #[test]
    fn smooth_maps((s, x) in mat(D::U(-3.0, 3.0)), w in weights()) {
        unary("neg", s, &x, &w, |x| x.neg())?;
        unary("-x", s, &x, &w, |x| -x)?;
        unary("sin", s, &x, &w, |x| x.sin())?;
        unary("cos", s, &x, &w, |x| x.cos())?;
        unary("tanh", s, &x, &w, |x| x.tanh())?;
        unary("sigmoid", s, &x, &w, |x| x.sigmoid())?;
        unary("silu", s, &x, &w, |x| x.silu())?;
        unary("gelu_tanh", s, &x, &w, |x| x.gelu_tanh())?;
        unary("gelu", s, &x, &w, |x| x.gelu())?;
        unary("add_scalar", s, &x, &w, |x| x.add_scalar(0.7))?;
        unary("mul_scalar", s, &x, &w, |x| x.mul_scalar(-1.3))?;
        unary("div_scalar", s, &x, &w, |x| x.div_scalar(2.5))?;
        unary("x + c", s, &x, &w, |x| x + 0.3)?;
        unary("x - c", s, &x, &w, |x| x - 0.3)?;
        unary("x * c", s, &x, &w, |x| x * 1.5)?;
        unary("x / c", s, &x, &w, |x| x / 4.0)?;
        unary("c + x", s, &x, &w, |x| 0.5 + x)?;
        unary("c - x", s, &x, &w, |x| 2.0 - x)?;
        unary("c * x", s, &x, &w, |x| 3.0 * x)?;
        unary("square", s, &x, &w, |x| x.square())?;
        unary("pow 2", s, &x, &w, |x| x.pow(2.0))?;
        unary("pow 3", s, &x, &w, |x| x.pow(3.0))?;
        unary("pow 1", s, &x, &w, |x| x.pow(1.0))?;
        unary("pow 0", s, &x, &w, |x| x.pow(0.0))?;
    }

    /// `exp` on a narrower range, so that `|f|` stays moderate (see the header).
    #[test]
    fn exp_map((s, x) in mat(D::U(-2.0, 2.0)), w in weights()) {
        unary("exp", s, &x, &w, |x| x.exp())?;
    }

    /// Functions of positive inputs: ln, sqrt and real exponents.
    #[test]
    fn positive_maps((s, x) in mat(D::U(0.5, 2.0)), w in weights()) {
        unary("ln", s, &x, &w, |x| x.ln())?;
        unary("sqrt", s, &x, &w, |x| x.sqrt())?;
        for p in [0.5f32, -1.5, 2.5, -2.0, 1.7] {
            unary(&format!("pow {p}"), s, &x, &w, |x| x.pow(p))?;
            unary(&format!("powf {p}"), s, &x, &w, |x| x.powf(p))?;
        }
    }

    /// Functions with a kink or a pole at 0, on inputs away from it.
    #[test]
    fn kinked_maps((s, x) in mat(D::Away(0.1, 3.0)), w in weights()) {
        unary("abs", s, &x, &w, |x| x.abs())?;
        unary("relu", s, &x, &w, |x| x.relu())?;
        unary("leaky_relu 0.01", s, &x, &w, |x| x.leaky_relu(0.01))?;
        unary("leaky_relu 0.2", s, &x, &w, |x| x.leaky_relu(0.2))?;
        unary("elu 1", s, &x, &w, |x| x.elu(1.0))?;
        unary("elu 0.5", s, &x, &w, |x| x.elu(0.5))?;
        unary("selu", s, &x, &w, |x| x.selu())?;
        unary("softsign", s, &x, &w, |x| x.softsign())?;
    }

    /// `1/x` and `c/x`, away from the pole.
    #[test]
    fn reciprocal_maps((s, x) in mat(D::Away(0.5, 2.0)), w in weights()) {
        unary("recip", s, &x, &w, |x| x.recip())?;
        unary("c / x", s, &x, &w, |x| 3.0 / x)?;
    }

    /// `a ∘ b` for the four operators, with respect to both operands.
    #[test]
    fn zip_ops((s, a, b) in mat2(D::U(-2.0, 2.0), D::Away(0.5, 2.0)), w in weights()) {
        binary("a + b", s, &a, s, &b, &w, |a, b| a + b)?;
        binary("a - b", s, &a, s, &b, &w, |a, b| a - b)?;
        binary("a * b", s, &a, s, &b, &w, |a, b| a * b)?;
        binary("a / b", s, &a, s, &b, &w, |a, b| a / b)?;
        // The same tensor on both sides: both contributions accumulate.
        unary("x * x", s, &a, &w, |x| x * x)?;
        unary("x / x + x", s, &b, &w, |x| x / x + x)?;
    }

    /// A row vector broadcast over every row of a batch, for all four operators.
    #[test]
    fn row_broadcast(
        ((r, c), a, v) in (dim(), dim()).prop_flat_map(|(r, c)| {
            (Just((r, c)), vals(r * c, D::U(-2.0, 2.0)), vals(c, D::Away(0.5, 2.0)))
        }),
        w in weights(),
    ) {
        let (sa, sv) = ((r, c), (c,));
        binary("(R,C) + (C,)", sa, &a, sv, &v, &w, |a, v| a + v)?;
        binary("(R,C) - (C,)", sa, &a, sv, &v, &w, |a, v| a - v)?;
        binary("(R,C) * (C,)", sa, &a, sv, &v, &w, |a, v| a * v)?;
        binary("(R,C) / (C,)", sa, &a, sv, &v, &w, |a, v| a / v)?;
        view("broadcast_rows", sv, &v, &w, move |v| v.broadcast_rows(r))?;
        // The vector on the left.
        binary("(C,) + (R,C)", sv, &v, sa, &a, &w, |v, a| v + a)?;
        binary("(C,) - (R,C)", sv, &v, sa, &a, &w, |v, a| v - a)?;
        binary("(C,) * (R,C)", sv, &v, sa, &a, &w, |v, a| v * a)?;
        binary("(C,) / (R,C)", sv, &v, sa, &a, &w, |v, a| v / a.square().add_scalar(1.0))?;
    }

    /// PyTorch's broadcasting with size-1 dimensions on both sides: a
    /// column [R, 1] against a row [1, C], a [R, 1] column against [R, C],
    /// and expansions along two separate runs of axes.
    #[test]
    fn size_one_broadcast(
        ((r, c), col, row) in (dim(), dim()).prop_flat_map(|(r, c)| {
            (Just((r, c)), vals(r, D::U(-2.0, 2.0)), vals(c, D::Away(0.5, 2.0)))
        }),
        w in weights(),
    ) {
        binary("[R,1] * [1,C]", (r, 1usize), &col, (1usize, c), &row, &w, |a, b| {
            a.broadcast_zip(b, Zip::Mul)
        })?;
        binary("[1,C] - [R,1]", (1usize, c), &row, (r, 1usize), &col, &w, |a, b| {
            a.broadcast_zip(b, Zip::Sub)
        })?;
        let full: Vec<f32> = (0..r * c).map(|i| col[i / c] + row[i % c]).collect();
        binary("[R,1] / [R,C]", (r, 1usize), &col, (r, c), &full, &w, |a, b| {
            a.broadcast_zip(b.square().add_scalar(1.0), Zip::Div)
        })?;
        view("expand [1,C,1] to [R,C,2]", (1usize, c, 1usize), &row, &w, move |x| {
            x.expand_to((r, c, 2usize))
        })?;
        view("expand [C] to [R,2,C]", (c,), &row, &w, move |x| x.expand_to((r, 2usize, c)))?;
    }

    /// A scalar broadcast to a matrix.
    #[test]
    fn scalar_broadcast(s in (dim(), dim()), x in -2.0f32..2.0, w in weights()) {
        view("broadcast_to", (), &[x], &w, move |x| x.broadcast_to(s))?;
    }
}

// -------------------------------------------------------------- products

proptest! {
    #![proptest_config(config())]

    /// The four shape forms of `matmul`, and the transposed-operand products.
    #[test]
    fn matmul_forms(
        ((m, k, n), a, b, c) in (dim(), dim(), dim()).prop_flat_map(|(m, k, n)| {
            let u = D::U(-1.5, 1.5);
            (Just((m, k, n)), vals(m * k, u), vals(k * n, u), vals(m * n, u))
        }),
        w in weights(),
    ) {
        binary("[m,k]·[k,n]", (m, k), &a, (k, n), &b, &w, |a, b| a.matmul(b))?;
        binary("[k]·[k,n]", (k,), &a[..k], (k, n), &b, &w, |a, b| a.matmul(b))?;
        binary("[m,k]·[k]", (m, k), &a, (k,), &b[..k], &w, |a, b| a.matmul(b))?;
        binary("[k]·[k]", (k,), &a[..k], (k,), &b[..k], &w, |a, b| a.matmul(b))?;
        // a as [m, k] and b as [n, k]: a · bᵀ, of shape [m, n].
        binary("matmul_t", (m, k), &a, (n, k), &b, &w, |a, b| a.matmul_t(b))?;
        // a as [m, k] and c as [m, n]: aᵀ · c, of shape [k, n].
        binary("t_matmul", (m, k), &a, (m, n), &c, &w, |a, c| a.t_matmul(c))?;
        // Mixed compile-time and run-time dimensions take the same path.
        binary(
            "[m,3]·[3,n]",
            (m, Const::<3>),
            &vec![0.25; m * 3],
            (Const::<3>, n),
            &b.iter().cycle().take(3 * n).copied().collect::<Vec<_>>(),
            &w,
            |a, b| a.matmul(b),
        )?;
    }

    /// The fused affine map of a layer, `x · Wᵀ + b`, with respect to all three.
    #[test]
    fn linear(
        ((m, k, n), x, wt, b) in (dim(), dim(), dim()).prop_flat_map(|(m, k, n)| {
            let u = D::U(-1.5, 1.5);
            (Just((m, k, n)), vals(m * k, u), vals(n * k, u), vals(n, u))
        }),
        w in weights(),
    ) {
        let mut buf = vec![0.0f32; MEM];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let xp = mem.param_shaped((m, k), &x).unwrap();
        let wp = mem.param_shaped((n, k), &wt).unwrap();
        let bp = mem.param_shaped((n,), &b).unwrap();
        grad_ok("linear", &mut mem, &[xp.into(), wp.into(), bp.into()], |g| {
            weighted(g.param(&xp).linear(g.param(&wp), g.param(&bp)), &w)
        })?;
    }

    /// A layer with its activation fused in (`linear_act`), with respect to
    /// all three inputs, for every activation that fuses; kinked ones only
    /// where no pre-activation lies within 0.1 of the kink.
    #[test]
    fn linear_act(
        ((m, k, n), x, wt, b) in (dim(), dim(), dim()).prop_flat_map(|(m, k, n)| {
            let u = D::U(-1.5, 1.5);
            (Just((m, k, n)), vals(m * k, u), vals(n * k, u), vals(n, u))
        }),
        w in weights(),
    ) {
        let z = |i: usize, j: usize| {
            (0..k).map(|p| x[i * k + p] * wt[j * k + p]).sum::<f32>() + b[j]
        };
        let near_kink = (0..m).any(|i| (0..n).any(|j| z(i, j).abs() < 0.1));
        for f in [Map::Sigmoid, Map::Tanh, Map::Relu, Map::LeakyRelu(0.1), Map::Elu(1.0)] {
            if near_kink && !matches!(f, Map::Sigmoid | Map::Tanh) {
                continue;
            }
            let mut buf = vec![0.0f32; MEM];
            let mut mem = Memory::new(&Cpu, &mut buf[..]);
            let xp = mem.param_shaped((m, k), &x).unwrap();
            let wp = mem.param_shaped((n, k), &wt).unwrap();
            let bp = mem.param_shaped((n,), &b).unwrap();
            let what = format!("linear_act {f:?}");
            grad_ok(&what, &mut mem, &[xp.into(), wp.into(), bp.into()], |g| {
                weighted(g.param(&xp).linear_act(g.param(&wp), g.param(&bp), f), &w)
            })?;
        }
    }

    /// Transpose of the last two axes, rank 2 and rank 3.
    #[test]
    fn transpose(
        ((b, r, c), x) in (1usize..=3, dim(), dim())
            .prop_flat_map(|s| (Just(s), vals(s.0 * s.1 * s.2, D::U(-2.0, 2.0)))),
        w in weights(),
    ) {
        view("t rank 2", (r, c), &x[..r * c], &w, |x| x.t())?;
        view("t rank 3", (b, r, c), &x, &w, |x| x.t())?;
        // A transpose feeding a product: the gradient is transposed back.
        view("t · x", (r, c), &x[..r * c], &w, |x| x.t().matmul(x))?;
    }
}

// ----------------------------------------------------------------- views

proptest! {
    #![proptest_config(config())]

    /// Reshape, flatten, squeeze and unsqueeze share data; their gradients
    /// must land on the right elements.
    #[test]
    fn views((s, x) in mat(D::U(-2.0, 2.0)), w in weights()) {
        let (r, c) = s;
        view("reshape_to (c, r)", s, &x, &w, move |x| x.reshape_to((c, r)).sin())?;
        view("reshape_to (rc,)", s, &x, &w, move |x| x.reshape_to((r * c,)))?;
        view("reshape_to (r, 1, c)", s, &x, &w, move |x| x.reshape_to((r, 1usize, c)).exp())?;
        view("unsqueeze 0", s, &x, &w, |x| x.unsqueeze::<0>())?;
        view("unsqueeze 1", s, &x, &w, |x| x.unsqueeze::<1>().tanh())?;
        view("unsqueeze 2", s, &x, &w, |x| x.unsqueeze::<2>())?;
        view("unsqueeze 1 squeeze 1", s, &x, &w, |x| x.unsqueeze::<1>().squeeze::<1>().sin())?;
        // A run-time axis of size 1 squeezed away.
        view("squeeze run-time axis", (r, 1usize, c), &x, &w, |x| x.squeeze::<1>().cos())?;
        view("squeeze run-time axis 0", (1usize, r * c), &x, &w, |x| x.squeeze::<0>().sin())?;
    }

    /// `flatten::<4>` of `[b, r, c]` with `r · c = 4`.
    #[test]
    fn flatten(
        (b, r, x) in (dim(), prop::sample::select(vec![1usize, 2, 4]))
            .prop_flat_map(|(b, r)| (Just(b), Just(r), vals(b * 4, D::U(-2.0, 2.0)))),
        w in weights(),
    ) {
        let c = 4 / r;
        view("flatten", (b, r, c), &x, &w, |x| x.flatten::<4>().sin())?;
        view("flatten rank 2", (b, 4usize), &x, &w, |x| x.flatten::<4>())?;
    }
}

// ------------------------------------------------------------ reductions

proptest! {
    #![proptest_config(config())]

    /// Sum and mean, of everything and along each axis.
    #[test]
    fn sums((s, x) in mat(D::U(-2.0, 2.0)), w in weights()) {
        view("sum", s, &x, &w, |x| x.sum())?;
        view("mean", s, &x, &w, |x| x.mean())?;
        view("sum_axis 0", s, &x, &w, |x| x.sum_axis::<0>())?;
        view("sum_axis 1", s, &x, &w, |x| x.sum_axis::<1>())?;
        view("mean_axis 0", s, &x, &w, |x| x.mean_axis::<0>())?;
        view("mean_axis 1", s, &x, &w, |x| x.mean_axis::<1>())?;
        view("sum of squares", s, &x, &w, |x| x.square().sum())?;
    }

    /// Max of everything and along each axis, on distinct inputs (no ties).
    #[test]
    fn maxima(
        (s, x) in (dim(), dim()).prop_flat_map(|s| (Just(s), distinct(s.0 * s.1))),
        w in weights(),
    ) {
        view("max", s, &x, &w, |x| x.max())?;
        view("max_axis 0", s, &x, &w, |x| x.max_axis::<0>())?;
        view("max_axis 1", s, &x, &w, |x| x.max_axis::<1>())?;
        // The maximum of a (monotonic, so still tie-free) function of x.
        view("max of exp", s, &x, &w, |x| (x * 0.3).exp().max_axis::<1>())?;
    }

    /// Softmax and cross-entropy fused, per row (with some rows weighted
    /// zero, which the backward skips) and as the mean loss.
    #[test]
    fn cross_entropy(
        ((r, c), x, t) in (dim(), dim()).prop_flat_map(|(r, c)| {
            (Just((r, c)), vals(r * c, D::U(-3.0, 3.0)), vec(0..c, r))
        }),
        w in vec(prop_oneof![Just(0.0f32), -1.0f32..1.0], 75),
    ) {
        let targets: Vec<f32> = t.iter().map(|&t| t as f32).collect();
        view("cross_entropy_rows", (r, c), &x, &w, |x| {
            x.cross_entropy_rows(x.tape().from_slice((r,), &targets))
        })?;
        view("cross_entropy mean", (r, c), &x, &w, |x| {
            ember_nn_core::nn::loss::cross_entropy(x, &t, Reduction::Mean)
        })?;
        view("cross_entropy sum", (r, c), &x, &w, |x| {
            ember_nn_core::nn::loss::cross_entropy(x, &t, Reduction::Sum)
        })?;
    }

    /// The Huber loss (quadratic within delta, linear beyond; its gradient
    /// is continuous at the seam), against both operands, mean and sum.
    #[test]
    fn huber((s, a, b) in mat2(D::U(-3.0, 3.0), D::U(-3.0, 3.0)), w in weights()) {
        use ember_nn_core::nn::loss::huber;
        binary("huber mean", s, &a, s, &b, &w, |a, b| huber(a, b, 1.0, Reduction::Mean))?;
        binary("huber sum 0.5", s, &a, s, &b, &w, |a, b| huber(a, b, 0.5, Reduction::Sum))?;
    }

    /// Softmax and log-softmax along each axis.
    #[test]
    fn softmaxes((s, x) in mat(D::U(-2.0, 2.0)), w in weights()) {
        view("softmax 0", s, &x, &w, |x| x.softmax::<0>())?;
        view("softmax 1", s, &x, &w, |x| x.softmax::<1>())?;
        view("log_softmax 0", s, &x, &w, |x| x.log_softmax::<0>())?;
        view("log_softmax 1", s, &x, &w, |x| x.log_softmax::<1>())?;
    }
}

// ---------------------------------------------------------------- rank 3

type M3 = (usize, usize, usize);

/// A rank-3 run-time shape (sizes 1 to 3) and values for it.
fn cube(d: D) -> impl Strategy<Value = (M3, Vec<f32>)> {
    (1usize..=3, 1usize..=3, 1usize..=3).prop_flat_map(move |s| (Just(s), vals(s.0 * s.1 * s.2, d)))
}

proptest! {
    #![proptest_config(config())]

    /// Axis operations on the middle axis of a rank-3 tensor, where the
    /// elements before and after the axis are both strided.
    #[test]
    fn rank3_axis_ops((s, x) in cube(D::U(-2.0, 2.0)), w in weights()) {
        view("sum_axis 1", s, &x, &w, |x| x.sum_axis::<1>())?;
        view("sum_axis 2", s, &x, &w, |x| x.sum_axis::<2>())?;
        view("mean_axis 1", s, &x, &w, |x| x.mean_axis::<1>())?;
        view("softmax 1", s, &x, &w, |x| x.softmax::<1>())?;
        view("log_softmax 1", s, &x, &w, |x| x.log_softmax::<1>())?;
        view("log_softmax 2", s, &x, &w, |x| x.log_softmax::<2>())?;
        let (a, b, c) = s;
        view("broadcast_axis 1", (a, c), &x[..a * c], &w, move |x| {
            x.broadcast_axis::<1, M3>((a, b, c))
        })?;
        view("cat 1", s, &x, &w, |x| x.cat_to::<1, M3, _>(x.sin()))?;
        view("cat 2", s, &x, &w, |x| x.cat_to::<2, M3, _>(x.exp()))?;
    }

    /// Max along the middle axis, on distinct inputs.
    #[test]
    fn rank3_max(
        (s, x) in (1usize..=3, 1usize..=3, 1usize..=3)
            .prop_flat_map(|s| (Just(s), distinct(s.0 * s.1 * s.2))),
        w in weights(),
    ) {
        view("max_axis 1", s, &x, &w, |x| x.max_axis::<1>())?;
        view("max_axis 2", s, &x, &w, |x| x.max_axis::<2>())?;
    }
}

// ----------------------------------------------------------------- joins

proptest! {
    #![proptest_config(config())]

    /// Concatenation along axis 0 and axis 1, and stacking.
    #[test]
    fn joins(
        ((r1, r2, c), a, b) in (dim(), dim(), dim()).prop_flat_map(|(r1, r2, c)| {
            (Just((r1, r2, c)), vals(r1 * c, D::U(-2.0, 2.0)), vals(r2 * c, D::U(-2.0, 2.0)))
        }),
        w in weights(),
    ) {
        // [r1, c] ++ [r2, c] along axis 0.
        binary("cat 0", (r1, c), &a, (r2, c), &b, &w, |a, b| a.cat_to::<0, M, _>(b))?;
        // [c, r1] ++ [c, r2] along axis 1 (same data, other shapes).
        binary("cat 1", (c, r1), &a, (c, r2), &b, &w, |a, b| a.cat_to::<1, M, _>(b).sin())?;
        // Two [r1, c] stacked into [2, r1, c].
        let b1 = &b.iter().cycle().take(r1 * c).copied().collect::<Vec<_>>();
        binary("stack", (r1, c), &a, (r1, c), b1, &w, |a, b| a.stack(b))?;
        binary("stack 1-d", (r1 * c,), &a, (r1 * c,), b1, &w, |a, b| a.stack(b).exp())?;
        // A tensor joined with a function of itself.
        view("cat x, x²", (r1, c), &a, &w, |x| x.cat_to::<1, M, _>(x.square()))?;
    }

    /// A composition in which inputs reach the output along several paths.
    #[test]
    fn composite((s, x) in mat(D::U(-1.5, 1.5)), w in weights()) {
        view("composite", s, &x, &w, |x| {
            let y = (x * x.sin() + x).tanh();
            let z = y.softmax::<1>() * x.exp();
            z + y.sum_axis::<1>().broadcast_axis::<1, M>(z.shape())
        })?;
    }
}

// ------------------------------------------------ the checker itself

/// A deliberately wrong gradient must fail the check: `x * x.detach()` has
/// value `x²` (so finite differences see `2x`), but backward, which does not
/// see through `detach`, gives `x`.
#[test]
fn checker_catches_a_missing_term() {
    let mut buf = vec![0.0f32; MEM];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let data = [0.5f32, -1.0, 2.0, 1.5, -0.7, 0.9];
    let xp = mem.param_shaped((2usize, 3usize), &data).unwrap();
    let r = check(&mut mem, &[xp.into()], &GradCheck::default(), |g| {
        let x = g.param(&xp);
        (x * x.detach()).sum()
    });
    match r {
        Err(GradCheckError::Mismatch {
            param: 0,
            index: 0,
            analytic,
            numeric,
        }) => {
            assert!((analytic - 0.5).abs() < 1e-6, "analytic {analytic}");
            assert!((numeric - 1.0).abs() < 1e-3, "numeric {numeric}");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // The same function without the detach passes.
    check(&mut mem, &[xp.into()], &GradCheck::default(), |g| {
        let x = g.param(&xp);
        (x * x).sum()
    })
    .expect("x * x passes");
}

/// A gradient off by a small factor fails too: the tolerance is tight enough.
#[test]
fn checker_catches_a_wrong_factor() {
    let mut buf = vec![0.0f32; MEM];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let xp = mem.param_shaped((3usize,), &[0.3, -1.2, 2.0]).unwrap();
    // Value: 1.05·sin(x). Backward sees sin(x) + 0.05·sin(x0), with x0 held
    // fixed by detach: the analytic gradient is cos(x), 5 % too small.
    let r = check(&mut mem, &[xp.into()], &GradCheck::default(), |g| {
        let x = g.param(&xp);
        (x.sin() + x.sin().detach() * 0.05).sum()
    });
    assert!(
        matches!(r, Err(GradCheckError::Mismatch { .. })),
        "expected a mismatch, got {r:?}"
    );
}

// ------------------------------------------------------- batch norm

/// A `[rows, cols]` batch (2 to 5 rows) whose every column holds distinct
/// values at least 0.4 apart, so the batch variance stays away from 0
/// (where the normalisation's gradient grows without bound).
fn spread_batch() -> impl Strategy<Value = (M, Vec<f32>)> {
    (2usize..=5, dim()).prop_flat_map(|(r, c)| {
        (Just((r, c)), vec(distinct(r), c)).prop_map(move |(s, cols)| {
            let mut x = vec![0.0f32; r * c];
            for (j, col) in cols.iter().enumerate() {
                for (i, &v) in col.iter().enumerate() {
                    x[i * c + j] = v;
                }
            }
            (s, x)
        })
    })
}

/// Checks `weighted(batch_norm(x, γ, β))` with respect to all three, in
/// training mode (batch statistics) or evaluation mode (running ones).
fn batch_norm_check(
    training: bool,
    (r, c): M,
    x: &[f32],
    gb: &[f32],
    w: &[f32],
) -> Result<(), TestCaseError> {
    use ember_nn_core::ops::batch_norm::BatchNormStats;
    let mut buf = vec![0.0f32; MEM];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let xp = mem.param_shaped((r, c), x).unwrap();
    let gp = mem.param_shaped((c,), &gb[..c]).unwrap();
    let bp = mem.param_shaped((c,), &gb[c..2 * c]).unwrap();
    let running_mean = mem.alloc(c).unwrap();
    mem.write(running_mean, &gb[2 * c..3 * c]).unwrap();
    let running_var = mem.alloc(c).unwrap();
    let var: Vec<f32> = gb[3 * c..4 * c].iter().map(|v| 0.5 + v.abs()).collect();
    mem.write(running_var, &var).unwrap();
    let stats = BatchNormStats {
        running_mean,
        running_var,
        num_batches_tracked: mem.alloc(1).unwrap(),
        eps: 1e-5,
        momentum: 0.1,
        training,
    };
    let what = if training {
        "batch_norm train"
    } else {
        "batch_norm eval"
    };
    grad_ok(what, &mut mem, &[xp.into(), gp.into(), bp.into()], |g| {
        weighted(
            g.param(&xp).batch_norm(g.param(&gp), g.param(&bp), stats),
            w,
        )
    })
}

proptest! {
    #![proptest_config(config())]

    /// Batch normalisation: the exact gradient with respect to the batch,
    /// γ and β, through the batch's mean and variance in training mode.
    #[test]
    fn batch_norm((s, x) in spread_batch(), gb in vec(-1.5f32..1.5, 20), w in weights()) {
        batch_norm_check(true, s, &x, &gb, &w)?;
        batch_norm_check(false, s, &x, &gb, &w)?;
    }
}

// ------------------------------------------------------- convolution, pooling

/// A convolution's geometry: `(batch, groups, in/groups, out/groups,
/// [h, w], [k_h, k_w], stride, dilation, padding)`, the input at least as
/// large as the dilated kernel.
type ConvCase = (
    usize,
    usize,
    usize,
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 2],
    Padding,
);

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::Valid),
        Just(Padding::Same),
        (0..=2usize, 0..=2usize).prop_map(|(h, w)| Padding::Symmetric([h, w])),
        (0..=2usize, 0..=2usize, 0..=2usize, 0..=2usize).prop_map(|(top, bottom, left, right)| {
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            }
        }),
    ]
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        1..=2usize,
        1..=3usize,
        1..=2usize,
        1..=2usize,
        [1..=3usize, 1..=3usize],
        [1..=2usize, 1..=2usize],
        [1..=2usize, 1..=2usize],
        padding(),
    )
        .prop_flat_map(|(n, g, cg, og, k, s, d, p)| {
            let span = |a: usize| (k[a] - 1) * d[a] + 1;
            (
                Just((n, g, cg, og)),
                [span(0)..=span(0) + 3, span(1)..=span(1) + 3],
                Just((k, s, d, p)),
            )
        })
        .prop_map(|((n, g, cg, og), hw, (k, s, d, p))| (n, g, cg, og, hw, k, s, d, p))
}

/// Values in `[-1, 1)` for `n` elements, from one seed (the sizes are
/// random, so the values are drawn after them).
fn seeded(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ember_nn_core::Rng::new(seed);
    (0..n).map(|_| rng.uniform_in(-1.0, 1.0)).collect()
}

proptest! {
    #![proptest_config(config())]

    /// `conv2d`: the gradient with respect to the input, the weight and the
    /// bias, over random shapes, strides, dilations, paddings (symmetric,
    /// asymmetric, SAME) and groups (depthwise included: `in/groups = 1`).
    #[test]
    fn conv2d(c in conv_case(), seed in any::<u64>(), bias in any::<bool>()) {
        let (n, g, cg, og, [h, w], [kh, kw], stride, dilation, padding) = c;
        let (ci, co) = (g * cg, g * og);
        let mut buf = vec![0.0f32; 1 << 17];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let xs = (n, ci, h, w);
        let ws = (co, cg, kh, kw);
        let xp = mem.param_shaped(xs, &seeded(n * ci * h * w, seed)).unwrap();
        let wp = mem.param_shaped(ws, &seeded(co * cg * kh * kw, seed ^ 1)).unwrap();
        let bp = mem.param_shaped((co,), &seeded(co, seed ^ 2)).unwrap();
        let weights = seeded(4096, seed ^ 3);
        let options = ConvOptions { stride, padding, dilation, groups: g };
        let mut params = vec![xp.into(), wp.into()];
        if bias {
            params.push(bp.into());
        }
        grad_ok("conv2d", &mut mem, &params, |t| {
            let b = bias.then(|| t.param(&bp));
            weighted(t.param(&xp).conv2d(t.param(&wp), b, options), &weights)
        })?;
        // The activation fused into the product's epilogue (one group).
        grad_ok("conv2d_act tanh", &mut mem, &params, |t| {
            let b = bias.then(|| t.param(&bp));
            let y = t.param(&xp).conv2d_act(t.param(&wp), b, options, Some(Map::Tanh));
            weighted(y, &weights)
        })?;
    }

    /// `conv1d` through its own shapes (the 2-D convolution of height 1).
    #[test]
    fn conv1d(c in conv_case(), seed in any::<u64>()) {
        let (n, g, cg, og, [_, l], [_, k], stride, dilation, padding) = c;
        let (ci, co) = (g * cg, g * og);
        let mut buf = vec![0.0f32; 1 << 16];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let xp = mem.param_shaped((n, ci, l), &seeded(n * ci * l, seed)).unwrap();
        let wp = mem.param_shaped((co, cg, k), &seeded(co * cg * k, seed ^ 1)).unwrap();
        let bp = mem.param_shaped((co,), &seeded(co, seed ^ 2)).unwrap();
        let weights = seeded(4096, seed ^ 3);
        let options = ConvOptions { stride, padding, dilation, groups: g };
        grad_ok("conv1d", &mut mem, &[xp.into(), wp.into(), bp.into()], |t| {
            let y = t.param(&xp).conv1d(t.param(&wp), Some(t.param(&bp)), options);
            weighted(y, &weights)
        })?;
    }

    /// Max pooling: values distinct and 0.05 apart (a tie is a kink), the
    /// step small enough not to cross one; padding at most half the window.
    /// Between ties the pool is linear, so the differences have no
    /// truncation error, only the rounding of a sum of up to 216 maxima of
    /// up to 5.4 over a small step: an absolute tolerance of `1e-2`, far
    /// below the weights (`|w|` about 0.5) that a misrouted gradient
    /// would be off by.
    #[test]
    fn max_pool2d(
        (n, c, h, w) in (1..=2usize, 1..=3usize, 1..=6usize, 1..=6usize),
        k in [1..=3usize, 1..=3usize],
        s in [1..=3usize, 1..=2usize],
        d in [1..=2usize, 1..=2usize],
        seed in any::<u64>(),
    ) {
        let span = |a: usize| (k[a] - 1) * d[a] + 1;
        prop_assume!(h >= span(0) && w >= span(1));
        let pad = [span(0) / 2, span(1) / 2];
        let len = n * c * h * w;
        let mut order: Vec<usize> = (0..len).collect();
        ember_nn_core::Rng::new(seed).shuffle(&mut order);
        let x: Vec<f32> = order.iter().map(|&i| i as f32 * 0.05 - 1.0).collect();
        let mut buf = vec![0.0f32; 1 << 15];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let xp = mem.param_shaped((n, c, h, w), &x).unwrap();
        let weights = seeded(4096, seed ^ 3);
        let options = PoolOptions { kernel: k, stride: Some(s), padding: Padding::Symmetric(pad), dilation: d };
        let fine = GradCheck { step: 1e-3, atol: 1e-2, ..GradCheck::default() };
        let report = check(&mut mem, &[xp.into()], &fine, |t| {
            weighted(t.param(&xp).max_pool2d(options), &weights)
        });
        prop_assert!(report.is_ok(), "max_pool2d: {:?}", report.err());
    }

    /// Average pooling (zeros of the padding counted) and global average
    /// pooling, 2-D and 1-D.
    #[test]
    fn avg_pool(
        (n, c, h, w) in (1..=2usize, 1..=3usize, 1..=6usize, 1..=6usize),
        k in [1..=3usize, 1..=3usize],
        s in [1..=3usize, 1..=2usize],
        seed in any::<u64>(),
    ) {
        prop_assume!(h >= k[0] && w >= k[1]);
        let mut buf = vec![0.0f32; 1 << 15];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let xp = mem.param_shaped((n, c, h, w), &seeded(n * c * h * w, seed)).unwrap();
        let weights = seeded(4096, seed ^ 3);
        let options = PoolOptions::new(k).stride(s).padding(Padding::Symmetric([k[0] / 2, k[1] / 2]));
        grad_ok("avg_pool2d", &mut mem, &[xp.into()], |t| {
            let x = t.param(&xp);
            weighted(x.avg_pool2d(options), &weights) + weighted(x.global_avg_pool2d(), &weights)
        })?;
        let xq = mem.param_shaped((n, c, w), &seeded(n * c * w, seed ^ 4)).unwrap();
        grad_ok("avg_pool1d", &mut mem, &[xq.into()], |t| {
            let x = t.param(&xq);
            weighted(x.avg_pool1d(options), &weights) + weighted(x.global_avg_pool1d(), &weights)
        })?;
    }
}

// ------------------------------------------------ batch norm over positions

/// An `[n, c, h, w]` batch (`n · h · w ≥ 2`) whose every channel holds
/// distinct values (spaced at least `2.5 / (n·h·w)` apart, within about
/// ±1.3), so the channel variance stays away from 0. `h · w` reaches 35,
/// more than the op's 32-float blocks.
fn spread_batch_4d() -> impl Strategy<Value = ([usize; 4], Vec<f32>)> {
    (
        1usize..=3,
        1usize..=4,
        1usize..=5,
        prop_oneof![1usize..=4, Just(7)],
    )
        .prop_filter("one value per channel", |&(n, _, h, w)| n * h * w >= 2)
        .prop_flat_map(|(n, c, h, w)| {
            let m = n * h * w;
            vec(distinct(m), c).prop_map(move |chans| (spread_4d([n, c, h, w], &chans), chans))
        })
        .prop_map(|(s, _)| s)
}

/// Lays channel values out as `[n, c, h, w]`, scaled into about ±1.3.
fn spread_4d(s: [usize; 4], chans: &[Vec<f32>]) -> ([usize; 4], Vec<f32>) {
    let [n, c, h, w] = s;
    let l = h * w;
    let scale = 1.25 / (0.25 * (n * l) as f32).max(1.0);
    let mut x = vec![0.0f32; n * c * l];
    for (j, col) in chans.iter().enumerate() {
        for (k, &v) in col.iter().enumerate() {
            let (i, p) = (k / l, k % l);
            x[(i * c + j) * l + p] = v * scale;
        }
    }
    (s, x)
}

/// Checks `weighted(batch_norm(x, γ, β))` on `[n, c, h, w]` input (through
/// the `[n, c, w]` method when `h == 1`) with respect to all three, in
/// training or evaluation mode.
fn batch_norm_4d_check(
    training: bool,
    [n, c, h, w]: [usize; 4],
    x: &[f32],
    gb: &[f32],
    wt: &[f32],
) -> Result<(), TestCaseError> {
    use ember_nn_core::ops::batch_norm::BatchNormStats;
    let mut buf = vec![0.0f32; MEM];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let xp = mem.param_shaped((n, c, h, w), x).unwrap();
    let gp = mem.param_shaped((c,), &gb[..c]).unwrap();
    let bp = mem.param_shaped((c,), &gb[c..2 * c]).unwrap();
    let running_mean = mem.alloc(c).unwrap();
    mem.write(running_mean, &gb[2 * c..3 * c]).unwrap();
    let running_var = mem.alloc(c).unwrap();
    let var: Vec<f32> = gb[3 * c..4 * c].iter().map(|v| 0.5 + v.abs()).collect();
    mem.write(running_var, &var).unwrap();
    let stats = BatchNormStats {
        running_mean,
        running_var,
        num_batches_tracked: mem.alloc(1).unwrap(),
        eps: 1e-5,
        momentum: 0.1,
        training,
    };
    let what = format!(
        "batch_norm {} [{n}, {c}, {h}, {w}]",
        if training { "train" } else { "eval" }
    );
    grad_ok(&what, &mut mem, &[xp.into(), gp.into(), bp.into()], |g| {
        let (x, gamma, beta) = (g.param(&xp), g.param(&gp), g.param(&bp));
        if h == 1 {
            let x3: T<'_, (usize, usize, usize)> = x.reshape_to((n, c, w));
            weighted(x3.batch_norm(gamma, beta, stats), wt)
        } else {
            weighted(x.batch_norm(gamma, beta, stats), wt)
        }
    })
}

proptest! {
    #![proptest_config(config())]

    /// Batch normalisation per channel of `[N, C, H, W]` (and `[N, C, L]`)
    /// input: the statistics over `N · H · W` values, the same gradients.
    #[test]
    fn batch_norm_4d((s, x) in spread_batch_4d(), gb in vec(-1.5f32..1.5, 40), w in vec(-1.0f32..1.0, 420)) {
        batch_norm_4d_check(true, s, &x, &gb, &w)?;
        batch_norm_4d_check(false, s, &x, &gb, &w)?;
    }
}

/// The op's block boundaries, which random shapes reach only by chance:
/// a channel of 35 positions (read 32, then 3) and 9 channels of 4
/// positions (blocks of 8 channels, then 1); 40 features of `[N, C]` rows
/// (32, then 8).
#[test]
fn batch_norm_4d_block_boundaries() {
    for s in [[2, 3, 5, 7], [2, 9, 2, 2], [2, 40, 1, 1]] {
        let [n, c, h, w] = s;
        let m = n * h * w;
        let chans: Vec<Vec<f32>> = (0..c)
            .map(|j| {
                (0..m)
                    .map(|k| 0.5 * ((k * 3 + j) % m) as f32 - 0.25 * m as f32)
                    .collect()
            })
            .collect();
        let (s, x) = spread_4d(s, &chans);
        let gb: Vec<f32> = (0..4 * c)
            .map(|i| ((i * 5) % 7) as f32 * 0.4 - 1.2)
            .collect();
        let wt: Vec<f32> = (0..x.len())
            .map(|i| ((i * 11) % 13) as f32 / 6.5 - 1.0)
            .collect();
        for training in [true, false] {
            batch_norm_4d_check(training, s, &x, &gb, &wt).unwrap();
        }
    }
}
