//! Loss functions and parameter penalties, composed from tensor operations
//! (so each one's gradient follows from theirs and is checked with them).

use super::Module;
use crate::backend::Backend;
use crate::error::Error;
use crate::graph::Tape;
use crate::shape::{Dim, Shape};
use crate::tensor::{invalid, Tensor};

/// How per-element losses are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean (PyTorch's default). For class losses, the mean over samples.
    #[default]
    Mean,
    /// The sum.
    Sum,
}

/// A loss, as the memory bound of a training step sees it: which graph
/// nodes and floats it records on top of the model's output. Give it to
/// [`train_budget`](super::train_budget) with the model's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// [`cross_entropy`] against class indices.
    CrossEntropy,
    /// [`mse`] against a target of the output's shape.
    Mse,
    /// [`l1`] against a target of the output's shape.
    L1,
    /// [`bce_with_logits`] against a target of the output's shape.
    BceWithLogits,
    /// [`huber`] against a target of the output's shape.
    Huber,
}

impl Loss {
    /// Graph nodes the loss records, the target included (with
    /// [`Reduction::Mean`]; `Sum` records one fewer).
    pub const fn nodes(self) -> usize {
        match self {
            // Targets, the fused per-row loss, the sum, the 1/n scale.
            Loss::CrossEntropy => 4,
            // Target, difference, square (or abs), sum, scale.
            Loss::Mse | Loss::L1 => 5,
            // Target, softplus, product, difference, sum, scale.
            Loss::BceWithLogits => 6,
            // Target, difference, abs, clamp, square, half, excess, its
            // scale, their sum, the sum, scale.
            Loss::Huber => 11,
        }
    }

    /// Floats the loss holds at the peak of a training step (its values and
    /// the gradients backward gives them) for `batch` samples of `outputs`
    /// features; the model output's own gradient is the model's.
    pub const fn floats(self, batch: usize, outputs: usize) -> usize {
        let per_sample = match self {
            // The target index and the row's loss, and that loss's gradient,
            // whatever the classes.
            Loss::CrossEntropy => 3,
            // The target, and two elementwise nodes with their gradients.
            Loss::Mse | Loss::L1 => 5 * outputs,
            // The target, and three elementwise nodes with their gradients.
            Loss::BceWithLogits => 7 * outputs,
            // The target, and nine elementwise nodes with their gradients.
            Loss::Huber => 19 * outputs,
        };
        // The sum and the scale (values and gradients) and the seed of backward.
        batch * per_sample + 5
    }
}

/// Probabilities are clamped up to this before the logarithm (whose result is
/// then clamped at -100, as PyTorch's `binary_cross_entropy` does), so that
/// `p = 0` gives a finite loss and a zero, not NaN, gradient.
const MIN_PROB: f32 = 1e-44;

fn reduce<'t, S: Shape, B: Backend>(
    x: Tensor<'t, S, B>,
    r: Reduction,
    count: usize,
) -> Tensor<'t, (), B> {
    match r {
        Reduction::Sum => x.sum(),
        Reduction::Mean => x.sum().mul_scalar(1.0 / count.max(1) as f32),
    }
}

/// Mean squared error.
pub fn mse<'t, S: Shape, B: Backend>(
    pred: Tensor<'t, S, B>,
    target: Tensor<'t, S, B>,
    r: Reduction,
) -> Tensor<'t, (), B> {
    let n = pred.numel();
    reduce((pred - target).square(), r, n)
}

/// Mean absolute error (L1).
pub fn l1<'t, S: Shape, B: Backend>(
    pred: Tensor<'t, S, B>,
    target: Tensor<'t, S, B>,
    r: Reduction,
) -> Tensor<'t, (), B> {
    let n = pred.numel();
    reduce((pred - target).abs(), r, n)
}

/// Huber loss (PyTorch's `HuberLoss` with `delta`): per element, with
/// `d = pred - target`, `0.5 d²` where `|d| ≤ delta` and
/// `delta (|d| - 0.5 delta)` beyond; quadratic near the target, linear
/// (robust to outliers) far from it. Composed from tensor operations as
/// `0.5 q² + delta (|d| - q)` with `q = min(|d|, delta)`, so that its
/// gradient is theirs. A `delta` that is not positive and finite is an
/// error of the result.
pub fn huber<'t, S: Shape, B: Backend>(
    pred: Tensor<'t, S, B>,
    target: Tensor<'t, S, B>,
    delta: f32,
    r: Reduction,
) -> Tensor<'t, (), B> {
    if !(delta.is_finite() && delta > 0.0) {
        return invalid(
            pred.tape(),
            (),
            Error::InvalidArgument {
                what: "the Huber loss's delta must be positive and finite",
            },
        );
    }
    let n = pred.numel();
    let a = (pred - target).abs();
    let q = a.clamp(0.0, delta);
    reduce(q.square().mul_scalar(0.5) + (a - q).mul_scalar(delta), r, n)
}

/// One-hot rows for class indices, or an error naming the bad index.
fn one_hot<'t, R: Dim, C: Dim, B: Backend>(
    like: Tensor<'t, (R, C), B>,
    targets: &[usize],
) -> Tensor<'t, (R, C), B> {
    let (rows, classes) = (like.shape().0.size(), like.shape().1.size());
    if targets.len() != rows {
        return invalid(
            like.tape(),
            like.shape(),
            Error::Length {
                expected: rows,
                found: targets.len(),
            },
        );
    }
    if targets.iter().any(|&t| t >= classes) {
        return invalid(
            like.tape(),
            like.shape(),
            Error::InvalidArgument {
                what: "class index out of range",
            },
        );
    }
    like.tape().from_fn(like.shape(), |i| {
        if targets[i / classes] == i % classes {
            1.0
        } else {
            0.0
        }
    })
}

/// Negative log-likelihood of class indices, given log-probabilities `[rows, classes]`.
pub fn nll<'t, R: Dim, C: Dim, B: Backend>(
    log_probs: Tensor<'t, (R, C), B>,
    targets: &[usize],
    r: Reduction,
) -> Tensor<'t, (), B> {
    let rows = log_probs.shape().0.size();
    let picked = log_probs * one_hot(log_probs, targets);
    reduce(picked, r, rows).neg()
}

/// Cross-entropy of logits `[rows, classes]` against class indices
/// (PyTorch's `CrossEntropyLoss`), as one fused node
/// ([`Tensor::cross_entropy_rows`]: a stable log-sum-exp forward, a
/// `softmax − one_hot` backward). A wrong number of targets or an index out
/// of range is a typed error.
pub fn cross_entropy<'t, R: Dim, C: Dim, B: Backend>(
    logits: Tensor<'t, (R, C), B>,
    targets: &[usize],
    r: Reduction,
) -> Tensor<'t, (), B> {
    let (rows, classes) = (logits.shape().0.size(), logits.shape().1.size());
    let out = (logits.shape().0,);
    let bad = if targets.len() != rows {
        Some(Error::Length {
            expected: rows,
            found: targets.len(),
        })
    } else if targets.iter().any(|&t| t >= classes) {
        Some(Error::InvalidArgument {
            what: "class index out of range",
        })
    } else {
        None
    };
    let per_row = match bad {
        Some(e) => invalid(logits.tape(), out, e),
        None => {
            let t = logits.tape().from_fn(out, |i| targets[i] as f32);
            logits.cross_entropy_rows(t)
        }
    };
    reduce(per_row, r, rows)
}

/// Binary cross-entropy of probabilities `p` against targets `y` in `[0, 1]`.
/// Logarithms are clamped at -100, as in PyTorch.
pub fn bce<'t, S: Shape, B: Backend>(
    p: Tensor<'t, S, B>,
    y: Tensor<'t, S, B>,
    r: Reduction,
) -> Tensor<'t, (), B> {
    let n = p.numel();
    let log_p = p.clamp(MIN_PROB, 1.0).ln().clamp(-100.0, 0.0);
    let log_1mp = (1.0 - p).clamp(MIN_PROB, 1.0).ln().clamp(-100.0, 0.0);
    let per = (y * log_p + (1.0 - y) * log_1mp).neg();
    reduce(per, r, n)
}

/// Binary cross-entropy on logits: `softplus(z) − z·y`, stable for any `z`.
pub fn bce_with_logits<'t, S: Shape, B: Backend>(
    logits: Tensor<'t, S, B>,
    y: Tensor<'t, S, B>,
    r: Reduction,
) -> Tensor<'t, (), B> {
    let n = logits.numel();
    reduce(logits.softplus() - logits * y, r, n)
}

fn penalty<'t, M: Module, B: Backend>(
    tape: &'t (dyn Tape<B> + 't),
    model: &M,
    f: impl Fn(Tensor<'t, (usize,), B>) -> Tensor<'t, (), B>,
) -> Tensor<'t, (), B> {
    let mut total: Option<Tensor<'t, (), B>> = None;
    model.named_parameters(&mut |p| {
        let term = f(tape.param_flat(&p.param));
        total = Some(match total {
            Some(t) => t + term,
            None => term,
        });
    });
    total.unwrap_or_else(|| tape.full_like((), 0.0))
}

/// `Σ |w|` over every parameter of `model` (add `λ ·` this to a loss).
pub fn l1_penalty<'t, M: Module, B: Backend>(
    tape: &'t (dyn Tape<B> + 't),
    model: &M,
) -> Tensor<'t, (), B> {
    penalty(tape, model, |w| w.abs().sum())
}

/// `Σ w²` over every parameter of `model` (add `λ ·` this to a loss).
pub fn l2_penalty<'t, M: Module, B: Backend>(
    tape: &'t (dyn Tape<B> + 't),
    model: &M,
) -> Tensor<'t, (), B> {
    penalty(tape, model, |w| w.square().sum())
}
