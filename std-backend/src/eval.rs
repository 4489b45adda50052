//! Evaluation and prediction for any model: the model runs on a data set in
//! order, in batches, in evaluation mode and without recording gradients,
//! through a closure like the [`Learner`](crate::learner::Learner)'s step.
//!
//! [`evaluate`] takes the step closure (model, graph, mini-batch →
//! [`StepOutput`](crate::learner::StepOutput)) and gives the mean loss and, for a step that classifies,
//! the accuracy, the accuracy per class and the confusion matrix
//! ([`Evaluation`]). [`predict`] takes a forward closure (model, graph,
//! mini-batch → any tensor) and gives each sample's outputs
//! ([`Predictions`]). A [`Trained`](crate::learner::Trained) model has both
//! as methods, on its own memory; the Learner's validation and test set go
//! through the same loop.
//!
//! ```
//! use ember_nn_core::nn::loss::{cross_entropy, Reduction};
//! use ember_nn_core::nn::{Build, Forward, Linear};
//! use ember_nn_core::prelude::*;
//! use ember_nn_std::data::TensorDataset;
//! use ember_nn_std::eval;
//! use ember_nn_std::learner::StepOutput;
//!
//! let mut buf = vec![0.0f32; 4096];
//! let mut mem = Memory::new(&Cpu, &mut buf[..]);
//! let mut net = Linear::<2, 2>::build(&mut mem, &mut Rng::new(0))?;
//! // The identity: the larger feature is the class.
//! mem.write(net.weight.value, &[1.0, 0.0, 0.0, 1.0])?;
//! mem.write(net.bias.value, &[0.0, 0.0])?;
//! let data = TensorDataset::new(vec![1.0, 0.0, 0.0, 1.0, 3.0, 2.0], vec![0, 1, 1], 2, 2)?;
//!
//! let e = eval::evaluate(&mut net, &mut mem, &data, 2, |net: &Linear<2, 2>, g, b| {
//!     let logits = net.forward(g.from_slice((b.len(), Const::<2>), &b.features));
//!     let loss = cross_entropy(logits, &b.labels, Reduction::Mean);
//!     Ok(StepOutput::classified(loss, logits))
//! })?;
//! let c = e.classification.as_ref().unwrap();
//! assert_eq!(c.predictions, [0, 1, 0]);
//! assert_eq!(c.confusion, [[1, 0], [1, 1]]);
//! assert_eq!(c.per_class, [Some(1.0), Some(0.5)]);
//!
//! let p = eval::predict(&mut net, &mut mem, &data, 2, |net: &Linear<2, 2>, g, b| {
//!     Ok(net.forward(g.from_slice((b.len(), Const::<2>), &b.features)))
//! })?;
//! assert_eq!(p.row(2), Some(&[3.0, 2.0][..]));
//! assert_eq!(p.classes(), [0, 1, 0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::data::{Dataset, MiniBatch, TensorDataset};
use crate::learner::TrainError;
use crate::learner::{BatchForward, Step};
use crate::report;
use ember_nn_core::nn::Module;
use ember_nn_core::{Backend, Graph, Memory, Shape, Tape};

/// The most classes an evaluation counts: a predicted class at or above it
/// is an error (a step's own predictions that are no class indices).
pub const MAX_CLASSES: usize = 1 << 16;

/// The most classes of a confusion matrix; with more,
/// [`Classification::confusion`] is empty (the accuracy per class is still
/// there).
pub const MAX_CONFUSION_CLASSES: usize = 4096;

/// How a model did on a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Samples evaluated.
    pub samples: usize,
    /// The mean loss per sample (each batch's loss, a mean over the batch,
    /// weighted by its size).
    pub loss: f32,
    /// Accuracy and the rest, when every batch's step classified
    /// ([`StepOutput::classified`](crate::learner::StepOutput::classified), [`StepOutput::with_predictions`](crate::learner::StepOutput::with_predictions));
    /// `None` for a loss alone ([`StepOutput::loss`](crate::learner::StepOutput::loss)).
    pub classification: Option<Classification>,
    /// RMSE, MAE and R² per target, when every batch's step gave its
    /// outputs ([`StepOutput::regressed`](crate::learner::StepOutput::regressed))
    /// and the data set has float targets of their width
    /// ([`TensorDataset::regression`]).
    pub regression: Option<Regression>,
}

impl Evaluation {
    /// The fraction classified correctly, for a classifier.
    pub fn accuracy(&self) -> Option<f32> {
        self.classification.as_ref().map(|c| c.accuracy)
    }
}

/// A regression's figures on a data set: [`regression`]'s result.
#[derive(Clone, Debug, PartialEq)]
pub struct Regression {
    /// The model's outputs, row-major `[samples, targets]`, in the data
    /// set's order.
    pub predictions: Vec<f32>,
    /// The figures of each target (output) column.
    pub per_target: Vec<TargetMetrics>,
}

/// One target's regression figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetMetrics {
    /// Root mean squared error.
    pub rmse: f32,
    /// Mean absolute error.
    pub mae: f32,
    /// The coefficient of determination, `1 - SS_res / SS_tot`: 1 for a
    /// perfect fit, 0 for predicting the mean, negative for worse. For a
    /// constant target (no variance) 1 when every prediction is exact and
    /// 0 otherwise, as scikit-learn's `r2_score` says.
    pub r2: f32,
}

impl Regression {
    /// The table `ember train` and `ember eval` print: one line per
    /// target, named by `names` (numbers stand in for missing ones).
    pub fn report(&self, names: &[String]) -> String {
        let mut out = format!(
            "{:<20} {:>12} {:>12} {:>8}\n",
            "target", "RMSE", "MAE", "R²"
        );
        for (i, m) in self.per_target.iter().enumerate() {
            let name = names.get(i).cloned().unwrap_or_else(|| i.to_string());
            out.push_str(&format!(
                "{name:<20} {:>12.4} {:>12.4} {:>8.4}\n",
                m.rmse, m.mae, m.r2
            ));
        }
        out
    }
}

/// RMSE, MAE and R² of `predictions` against `truth`, each row-major with
/// `width` values per sample. Fails when the lengths disagree or `width`
/// is 0.
pub fn regression(
    predictions: Vec<f32>,
    truth: &[f32],
    width: usize,
) -> Result<Regression, TrainError> {
    if width == 0 || predictions.len() != truth.len() || !truth.len().is_multiple_of(width) {
        return Err(TrainError::Data(format!(
            "{} predictions of width {width} against {} targets",
            predictions.len(),
            truth.len()
        )));
    }
    let n = (truth.len() / width).max(1) as f64;
    let per_target = (0..width)
        .map(|j| {
            let column = |v: &[f32]| -> Vec<f64> {
                v.iter()
                    .skip(j)
                    .step_by(width)
                    .map(|&x| f64::from(x))
                    .collect()
            };
            let (p, t) = (column(&predictions), column(truth));
            let mean = t.iter().sum::<f64>() / n;
            let ss_res: f64 = p.iter().zip(&t).map(|(p, t)| (p - t) * (p - t)).sum();
            let ss_tot: f64 = t.iter().map(|t| (t - mean) * (t - mean)).sum();
            let abs: f64 = p.iter().zip(&t).map(|(p, t)| (p - t).abs()).sum();
            let r2 = if ss_tot > 0.0 {
                1.0 - ss_res / ss_tot
            } else if ss_res == 0.0 {
                1.0
            } else {
                0.0
            };
            TargetMetrics {
                rmse: (ss_res / n).sqrt() as f32,
                mae: (abs / n) as f32,
                r2: r2 as f32,
            }
        })
        .collect();
    Ok(Regression {
        predictions,
        per_target,
    })
}

/// A classifier's figures on a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    /// The fraction of samples classified correctly.
    pub accuracy: f32,
    /// The predicted class of each sample, in the data set's order.
    pub predictions: Vec<usize>,
    /// Accuracy per true class, `None` for a class without samples; one
    /// per class (the data set's classes, or more when the model predicted
    /// a class beyond them).
    pub per_class: Vec<Option<f32>>,
    /// The confusion matrix `confusion[true][predicted]`, square, one row
    /// per class as `per_class`; empty with more than
    /// [`MAX_CONFUSION_CLASSES`] classes.
    pub confusion: Vec<Vec<usize>>,
}

impl Classification {
    /// Classes counted (`per_class.len()`).
    pub fn classes(&self) -> usize {
        self.per_class.len()
    }

    /// Samples classified correctly.
    pub fn correct(&self) -> usize {
        (0..self.confusion.len())
            .map(|c| self.confusion[c][c])
            .sum()
    }

    /// Accuracy, accuracy per class and the confusion matrix as text, the
    /// report `ember train` writes ([`report::confusion_report`]); `names`
    /// are the classes' names (the data set's
    /// [`class_names`](TensorDataset::class_names); fewer, and numbers
    /// stand for the others).
    pub fn report(&self, names: &[String]) -> String {
        if self.confusion.is_empty() && self.classes() > 0 {
            return format!(
                "accuracy: {:.4} of {} samples ({} classes: too many for a confusion matrix)\n",
                self.accuracy,
                self.predictions.len(),
                self.classes()
            );
        }
        report::confusion_report(&self.confusion, names)
    }
}

/// Each sample's outputs: [`predict`]'s result.
#[derive(Clone, Debug, PartialEq)]
pub struct Predictions {
    /// The outputs, row-major: `width` values per sample, in the data
    /// set's order.
    pub outputs: Vec<f32>,
    /// Values per sample (the forward pass's output per batch divided by
    /// its samples: 10 for `[batch, 10]` logits, 1 for `[batch]`).
    pub width: usize,
}

impl Predictions {
    /// Samples predicted.
    pub fn len(&self) -> usize {
        self.outputs.len().checked_div(self.width).unwrap_or(0)
    }

    /// Whether no sample was predicted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `i`'s outputs, if there is one.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let start = i.checked_mul(self.width)?;
        self.outputs.get(start..start.checked_add(self.width)?)
    }

    /// Each sample's outputs in order.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.outputs.chunks_exact(self.width.max(1))
    }

    /// Each sample's class: the index of its largest output (the first of
    /// equal ones; NaN is never largest).
    pub fn classes(&self) -> Vec<usize> {
        self.rows()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                        if v > best.1 {
                            (i, v)
                        } else {
                            best
                        }
                    })
                    .0
            })
            .collect()
    }
}

/// Evaluates `model` on `data` in batches of `batch`, in order, with `step`
/// (the [`Learner`](crate::learner::Learner)'s step closure serves): in
/// evaluation mode ([`Module::eval`], where the model stays) and without
/// recording gradients, each batch in a graph over the free part of `mem`.
///
/// Errors: an empty data set or a zero batch is [`TrainError::Data`] /
/// [`TrainError::Config`]; a batch that needs more memory than `mem` has
/// free a [`TrainError::Memory`] that says so; a predicted class that is
/// not a class index (from [`StepOutput::with_predictions`](crate::learner::StepOutput::with_predictions)) a
/// [`TrainError::Data`]; any other error of the step a
/// [`TrainError::Core`].
pub fn evaluate<B, M, StepFn>(
    model: &mut M,
    mem: &mut Memory<'_, B>,
    data: &TensorDataset,
    batch: usize,
    mut step: StepFn,
) -> Result<Evaluation, TrainError>
where
    B: Backend,
    M: Module,
    StepFn: Step<M, B>,
{
    check_eval(data, batch)?;
    model.eval();
    let free = mem.available();
    run(model, mem, data, batch, &mut step).map_err(|f| f.into_error("evaluating", free))
}

/// The outputs of `model` on `data`, in batches of `batch`, in order:
/// `forward` records the forward pass of a mini-batch and returns its
/// output (any shape whose first dimension is the batch's samples), in
/// evaluation mode ([`Module::eval`], where the model stays) and without
/// recording gradients. The data set's labels are not read (a set without
/// labels: [`TensorDataset::new`] with zeros and one class).
///
/// Errors as [`evaluate`]'s; an output whose size is not a multiple of
/// its batch's samples, or whose width changes between batches, is a
/// [`TrainError::Data`].
pub fn predict<B, M, S, F>(
    model: &mut M,
    mem: &mut Memory<'_, B>,
    data: &TensorDataset,
    batch: usize,
    mut forward: F,
) -> Result<Predictions, TrainError>
where
    B: Backend,
    M: Module,
    S: Shape,
    F: BatchForward<M, B, S>,
{
    check_eval(data, batch)?;
    model.eval();
    let free = mem.available();
    run_predict(model, mem, data, batch, &mut forward).map_err(|f| f.into_error("predicting", free))
}

/// A data set and batch size that can be evaluated.
pub(crate) fn check_eval(data: &TensorDataset, batch: usize) -> Result<(), TrainError> {
    if batch == 0 {
        return Err(TrainError::Config("the batch size must be positive".into()));
    }
    if data.is_empty() {
        return Err(TrainError::Data(
            "nothing to evaluate: the data set is empty".into(),
        ));
    }
    Ok(())
}

/// Why an evaluation loop stopped: a step failed on a batch (which the
/// Learner measures when it ran out of memory), or something else.
pub(crate) enum Failure {
    /// A step's error, with the batch it ran on.
    Step {
        /// The step's error.
        error: ember_nn_core::Error,
        /// The batch.
        batch: Box<MiniBatch>,
    },
    /// Any other error.
    Other(TrainError),
}

impl From<TrainError> for Failure {
    fn from(e: TrainError) -> Self {
        Failure::Other(e)
    }
}

impl Failure {
    /// The error of a loop run on a memory of the caller's (`free` floats
    /// free for graphs): an out-of-memory error says what to change.
    fn into_error(self, what: &str, free: usize) -> TrainError {
        match self {
            Failure::Step {
                error: ember_nn_core::Error::OutOfMemory { .. },
                batch,
            } => TrainError::Memory(format!(
                "{what} a batch of {} samples needs more than the {free} floats free in the memory: \
                 use smaller batches, or a memory with more floats",
                batch.len()
            )),
            Failure::Step { error, .. } => TrainError::Core(error),
            Failure::Other(e) => e,
        }
    }
}

/// Batch `c` of `data` in order (the last one shorter).
pub(crate) fn nth_batch(data: &TensorDataset, c: usize, batch: usize) -> Option<MiniBatch> {
    let d = data.feature_len();
    let start = c.checked_mul(batch)?;
    let end = start.checked_add(batch)?.min(data.len());
    if start >= end {
        return None;
    }
    let t = data.target_len();
    Some(MiniBatch {
        features: data.features().get(start * d..end * d)?.to_vec(),
        labels: data.labels().get(start..end)?.to_vec(),
        targets: data.targets().get(start * t..end * t)?.to_vec(),
        target_len: t,
        indices: (start..end).collect(),
        feature_len: d,
        index: c,
    })
}

/// What an evaluation step gave besides its loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gave {
    /// Nothing: a loss alone.
    Loss,
    /// Each sample's predicted class, in `preds[..n]`.
    Classes,
    /// The outputs, appended to the values.
    Values,
}

/// Records one evaluation step on `tape` with gradients off: the loss, and
/// what else the step gave (its predictions, one per sample, then in
/// `preds[..n]`; its outputs, appended to `values`).
pub(crate) fn eval_step<B, M, StepFn>(
    model: &M,
    tape: &dyn Tape<B>,
    step: &mut StepFn,
    b: &MiniBatch,
    preds: &mut Vec<f32>,
    values: &mut Vec<f32>,
) -> Result<(f32, Gave), ember_nn_core::Error>
where
    B: Backend,
    StepFn: Step<M, B>,
{
    let prev = tape.set_grad_enabled(false);
    let result = (|| {
        let out = step(model, tape, b)?;
        let loss = out.loss.item()?;
        let gave = match (out.predict, out.values) {
            (Some(predict), _) => {
                let n = b.len();
                preds.resize(preds.len().max(n), 0.0);
                predict().read(&mut preds[..n])?;
                Gave::Classes
            }
            (None, Some(read)) => {
                values.extend(read()?);
                Gave::Values
            }
            (None, None) => Gave::Loss,
        };
        Ok((loss, gave))
    })();
    tape.set_grad_enabled(prev);
    result
}

/// A prediction as a class index, if it is one.
pub(crate) fn class_index(p: f32) -> Option<usize> {
    (p.is_finite() && p >= 0.0 && p.fract() == 0.0 && p < MAX_CLASSES as f32).then_some(p as usize)
}

/// The evaluation loop: `model` as it is (the caller chose its mode) on
/// `data`, in order, each batch in a fresh graph over `mem`.
pub(crate) fn run<B, M, StepFn>(
    model: &M,
    mem: &mut Memory<'_, B>,
    data: &TensorDataset,
    batch: usize,
    step: &mut StepFn,
) -> Result<Evaluation, Failure>
where
    B: Backend,
    StepFn: Step<M, B>,
{
    let mut loss_sum = 0.0f64;
    let mut classified = true;
    let mut regressed = true;
    let mut predictions = Vec::with_capacity(data.len());
    let mut preds = Vec::new();
    let mut values = Vec::new();
    let mut c = 0;
    while let Some(b) = nth_batch(data, c, batch) {
        let n = b.len();
        let result = {
            let g = Graph::new(mem);
            eval_step(model, &*g, step, &b, &mut preds, &mut values)
        };
        let (loss, got) = match result {
            Ok(r) => r,
            Err(error) => {
                return Err(Failure::Step {
                    error,
                    batch: Box::new(b),
                })
            }
        };
        loss_sum += f64::from(loss) * n as f64;
        regressed &= got == Gave::Values;
        if got == Gave::Classes && classified {
            for (i, &p) in preds[..n].iter().enumerate() {
                let class = class_index(p).ok_or_else(|| {
                    TrainError::Data(format!(
                        "the step predicted {p} for sample {}: not a class index (0 to {})",
                        c * batch + i,
                        MAX_CLASSES - 1
                    ))
                })?;
                predictions.push(class);
            }
        } else {
            classified = false;
        }
        c += 1;
    }
    let samples = data.len();
    let classification = if classified {
        Some(classification(data, predictions)?)
    } else {
        None
    };
    let t = data.target_len();
    let regression = if regressed && t > 0 && values.len() == data.targets().len() {
        Some(regression(values, data.targets(), t)?)
    } else {
        None
    };
    Ok(Evaluation {
        samples,
        loss: (loss_sum / samples.max(1) as f64) as f32,
        classification,
        regression,
    })
}

/// Accuracy, per-class accuracy and the confusion matrix of `predictions`
/// (class indices below [`MAX_CLASSES`]) against `data`'s labels.
fn classification(
    data: &TensorDataset,
    predictions: Vec<usize>,
) -> Result<Classification, TrainError> {
    let labels = data.labels();
    if let Some(&y) = labels.iter().find(|&&y| y >= MAX_CLASSES) {
        return Err(TrainError::Data(format!(
            "label {y}: more classes than an evaluation counts ({MAX_CLASSES})"
        )));
    }
    let classes = predictions
        .iter()
        .chain(labels)
        .max()
        .map_or(0, |m| m + 1)
        .max(data.num_classes().min(MAX_CLASSES));
    let mut total = vec![0usize; classes];
    let mut right = vec![0usize; classes];
    for (&y, &p) in labels.iter().zip(&predictions) {
        total[y] += 1;
        right[y] += usize::from(y == p);
    }
    let correct: usize = right.iter().sum();
    let confusion = if classes <= MAX_CONFUSION_CLASSES {
        report::confusion(labels, &predictions, classes)
    } else {
        Vec::new()
    };
    Ok(Classification {
        accuracy: correct as f32 / labels.len().max(1) as f32,
        per_class: total
            .iter()
            .zip(&right)
            .map(|(&t, &r)| (t > 0).then(|| r as f32 / t as f32))
            .collect(),
        predictions,
        confusion,
    })
}

/// The prediction loop: `model` as it is on `data`, in order, with
/// gradients off.
pub(crate) fn run_predict<B, M, S, F>(
    model: &M,
    mem: &mut Memory<'_, B>,
    data: &TensorDataset,
    batch: usize,
    forward: &mut F,
) -> Result<Predictions, Failure>
where
    B: Backend,
    S: Shape,
    F: BatchForward<M, B, S>,
{
    let mut outputs = Vec::new();
    let mut width = None;
    let mut c = 0;
    while let Some(b) = nth_batch(data, c, batch) {
        let n = b.len();
        let before = outputs.len();
        let result = {
            let g = Graph::new(mem);
            g.no_grad(|| -> Result<(), ember_nn_core::Error> {
                let y = forward(model, &*g, &b)?;
                outputs.resize(before + y.numel(), 0.0);
                y.read(&mut outputs[before..])
            })
        };
        if let Err(error) = result {
            return Err(Failure::Step {
                error,
                batch: Box::new(b),
            });
        }
        let got = outputs.len() - before;
        if got % n != 0 || width.is_some_and(|w| w != got / n) {
            return Err(TrainError::Data(format!(
                "the forward pass gave {got} values for a batch of {n} samples{}",
                width.map_or(String::new(), |w| format!(" ({w} per sample before)"))
            ))
            .into());
        }
        width = Some(got / n);
        c += 1;
    }
    Ok(Predictions {
        outputs,
        width: width.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::StepOutput;
    use ember_nn_core::nn::loss::{cross_entropy, Reduction};
    use ember_nn_core::nn::{Build, Forward, Linear};
    use ember_nn_core::{Const, Cpu, Rng};

    #[test]
    fn only_class_indices_are_classes() {
        assert_eq!(class_index(3.0), Some(3));
        assert_eq!(class_index(0.0), Some(0));
        for p in [-1.0, 0.5, f32::NAN, f32::INFINITY, MAX_CLASSES as f32] {
            assert_eq!(class_index(p), None, "{p}");
        }
    }

    #[test]
    fn a_class_beyond_the_data_widens_the_figures() {
        let data = TensorDataset::new(vec![0.0; 4], vec![0, 1, 1, 0], 1, 2).unwrap();
        let c = classification(&data, vec![0, 3, 1, 1]).unwrap();
        assert_eq!(c.classes(), 4);
        assert_eq!(c.per_class, [Some(0.5), Some(0.5), None, None]);
        assert_eq!(c.confusion[1], [0, 1, 0, 1]);
        assert_eq!((c.correct(), c.accuracy), (2, 0.5));
        let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let text = c.report(&names);
        assert!(text.starts_with("accuracy: 0.5000 (2/4)"), "{text}");
        assert!(text.contains(" 1 b            0.5000 (1/2)"), "{text}");
        // The same text as the command line's report of the same predictions.
        assert_eq!(
            text,
            report::classification_report(data.labels(), &c.predictions, &names)
        );
    }

    #[test]
    fn predictions_by_row() {
        let p = Predictions {
            outputs: vec![1.0, f32::NAN, 0.0, 2.0, 2.0, 1.0],
            width: 3,
        };
        assert_eq!(p.len(), 2);
        assert_eq!(p.row(1), Some(&[2.0, 2.0, 1.0][..]));
        assert_eq!(p.row(2), None);
        assert_eq!(p.classes(), [0, 0]);
        let empty = Predictions {
            outputs: Vec::new(),
            width: 0,
        };
        assert!(empty.is_empty() && empty.classes().is_empty());
    }

    /// A step's own predictions that are no class indices are an error
    /// that says so, not a wrong confusion matrix.
    #[test]
    fn a_step_predicting_no_class_is_refused() {
        let mut buf = vec![0.0f32; 1024];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let mut net = Linear::<1, 2>::build(&mut mem, &mut Rng::new(0)).unwrap();
        let data = TensorDataset::new(vec![0.5, -0.5, 1.0], vec![0, 1, 0], 1, 2).unwrap();
        let err = evaluate(&mut net, &mut mem, &data, 2, |net: &Linear<1, 2>, g, b| {
            let logits = net.forward(g.from_slice((b.len(), Const::<1>), &b.features));
            let loss = cross_entropy(logits, &b.labels, Reduction::Mean);
            let halves = vec![0.5f32; b.len()];
            Ok(StepOutput::with_predictions(
                loss,
                g.from_slice((b.len(),), &halves),
            ))
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "data: the step predicted 0.5 for sample 0: not a class index (0 to 65535)"
        );
    }
}
