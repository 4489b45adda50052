//! The `Learner` on a user's own model: a `#[derive(Module)]` struct (the
//! PyTorch tutorial's `class MLP(nn.Module)`: `hidden`, then `out`) trained
//! with a custom loss closure, resumed bit for bit from a checkpoint, stopped
//! early with its best parameters, stopped cleanly on a NaN loss, and
//! refusing a checkpoint of another architecture.

use ember_nn_core::nn::loss::{cross_entropy, mse, Loss, Reduction};
use ember_nn_core::nn::{BatchNorm1d, Build, Forward, Linear, Module, ReLU, Rule};
use ember_nn_core::prelude::*;
use ember_nn_std::checkpoint::{Checkpoint, CheckpointError};
use ember_nn_std::config::SchedulerKind;
use ember_nn_std::data::transform::Compose;
use ember_nn_std::data::{Dataset, MiniBatch, TensorDataset};
use ember_nn_std::eval::{self, Evaluation};
use ember_nn_std::learner::{Arena, Learner, StepOutput, Trained};
use ember_nn_std::schedule::Schedule;
use ember_nn_std::train::{Checkpointing, EpochMetrics, Progress, Quiet, TrainError, TrainOutcome};
use ember_nn_std::{report, Parallel};
use std::path::Path;

const IN: usize = 12;
const CLASSES: usize = 3;

/// ```python
/// class MLP(nn.Module):
///     def __init__(self):
///         super().__init__()
///         self.hidden = nn.Linear(12, 16)
///         self.out = nn.Linear(16, 3)
///     def forward(self, X):
///         return self.out(F.relu(self.hidden(X)))
/// ```
#[derive(Module)]
struct Net {
    hidden: Linear<IN, 16>,
    act: ReLU,
    out: Linear<16, CLASSES>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<IN>), B>> for Net {
    type Output = Tensor<'t, (usize, Const<CLASSES>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<IN>), B>) -> Self::Output {
        self.out.forward(self.act.forward(self.hidden.forward(x)))
    }
}

/// The same layer names with another hidden width.
#[derive(Module)]
struct Wider {
    hidden: Linear<IN, 24>,
    act: ReLU,
    out: Linear<24, CLASSES>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<IN>), B>> for Wider {
    type Output = Tensor<'t, (usize, Const<CLASSES>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<IN>), B>) -> Self::Output {
        self.out.forward(self.act.forward(self.hidden.forward(x)))
    }
}

/// The same shapes under other names.
#[derive(Module)]
struct Renamed {
    fc1: Linear<IN, 16>,
    act: ReLU,
    fc2: Linear<16, CLASSES>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<IN>), B>> for Renamed {
    type Output = Tensor<'t, (usize, Const<CLASSES>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<IN>), B>) -> Self::Output {
        self.fc2.forward(self.act.forward(self.fc1.forward(x)))
    }
}

/// `n` samples whose class is the largest of three fixed projections of
/// their features (learnable, not trivially), from a small generator.
fn data(n: usize, seed: u64) -> TensorDataset {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    let xs: Vec<f32> = (0..n * IN).map(|_| next()).collect();
    let ys = xs
        .chunks(IN)
        .map(|r| {
            let score = |c: usize| -> f32 { r.iter().skip(c).step_by(CLASSES).sum() };
            (0..CLASSES)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                .unwrap_or(0)
        })
        .collect();
    TensorDataset::new(xs, ys, IN, CLASSES).unwrap()
}

/// The user's loss: cross-entropy plus a small penalty on the logits' size
/// (so that it is not the CLI's loss).
fn step<'t, B: Backend>(
    net: &Net,
    g: &'t dyn Tape<B>,
    b: &MiniBatch,
) -> ember_nn_core::Result<StepOutput<'t, B>> {
    let x = g.from_slice((b.len(), Const::<IN>), &b.features);
    let logits = net.forward(x);
    let penalty = logits.square().mean() * 0.01;
    let loss = cross_entropy(logits, &b.labels, Reduction::Mean) + penalty;
    Ok(StepOutput::classified(loss, logits))
}

fn learner(epochs: usize) -> Learner {
    learner_at(Rule::adam(), 0.02, epochs)
}

fn learner_at(rule: Rule, lr: f32, epochs: usize) -> Learner {
    // The penalty records more than `Loss::CrossEntropy` counts: the arena's
    // size is given (generously) rather than computed from the type.
    Learner::new(rule, lr, Arena::floats(40_000))
        .epochs(epochs)
        .batch(16)
        .seed(11)
        .schedule(Schedule::new(SchedulerKind::Plateau, epochs, 1, 1, 0.5))
        .clip(Some(5.0))
        .patience(Some(100))
}

fn fit(
    l: Learner,
    train: TensorDataset,
    val: Option<&TensorDataset>,
) -> Result<TrainOutcome, TrainError> {
    l.fit(&Parallel::new(1), Net::build, step, train, val, &mut Quiet)
        .and_then(Trained::into_outcome)
}

/// What must repeat exactly: everything but the timings.
fn figures(h: &[EpochMetrics]) -> Vec<[u32; 6]> {
    let b = |v: Option<f32>| v.map_or(u32::MAX, f32::to_bits);
    h.iter()
        .map(|m| {
            [
                m.epoch as u32,
                m.train_loss.to_bits(),
                b(m.train_acc),
                b(m.val_loss),
                b(m.val_acc),
                m.lr.to_bits(),
            ]
        })
        .collect()
}

fn bits(o: &TrainOutcome) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    o.params
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.shape.clone(),
                t.data.iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

#[test]
fn a_derived_model_learns_with_its_own_loss_and_reports() {
    let val = data(64, 2);
    let out = fit(learner(8), data(192, 1), Some(&val)).unwrap();
    assert_eq!(out.history.len(), 8);
    let (first, last) = (&out.history[0], &out.history[7]);
    assert!(
        last.train_loss < first.train_loss * 0.8,
        "{first:?} -> {last:?}"
    );
    assert!(last.val_acc.unwrap() > 0.6, "{last:?}");
    // The warmup epoch ran at half the rate, then the full rate.
    assert_eq!(first.lr, 0.01);
    assert_eq!(out.history[1].lr, 0.02);
    let names: Vec<_> = out
        .params
        .iter()
        .map(|t| (t.name.as_str(), t.shape.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("hidden.weight", vec![16, IN]),
            ("hidden.bias", vec![16]),
            ("out.weight", vec![CLASSES, 16]),
            ("out.bias", vec![CLASSES]),
        ]
    );
    // The reports of `ember train` work for any model's history.
    let dir = tempfile::tempdir().unwrap();
    report::write_metrics(&dir.path().join("metrics.csv"), &out.history).unwrap();
    report::plot_curves(&dir.path().join("curves.svg"), &out.history).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9);
}

#[test]
fn a_loss_without_predictions_reports_no_accuracy() {
    // The arena computed from the model's type and the loss suffices.
    let device = Parallel::new(1);
    let out = Learner::new(Rule::sgd_momentum(0.9), 0.05, Arena::of::<Net>(Loss::Mse))
        .epochs(3)
        .batch(32)
        .fit(
            &device,
            Net::build,
            |net: &Net, g, b| {
                // Regress the one-hot target.
                let onehot: Vec<f32> = b
                    .labels
                    .iter()
                    .flat_map(|&y| (0..CLASSES).map(move |c| f32::from(u8::from(c == y))))
                    .collect();
                let x = g.from_slice((b.len(), Const::<IN>), &b.features);
                let t = g.from_slice((b.len(), Const::<CLASSES>), &onehot);
                Ok(StepOutput::loss(mse(net.forward(x), t, Reduction::Mean)))
            },
            data(128, 3),
            None,
            &mut Quiet,
        )
        .unwrap();
    assert!(out
        .history
        .iter()
        .all(|m| m.train_acc.is_none() && m.val_loss.is_none()));
    assert!(out.history[2].train_loss < out.history[0].train_loss);
    let csv = report::metrics_csv(&out.history);
    assert!(csv.lines().nth(1).unwrap().starts_with("1,"), "{csv}");
    assert_eq!(csv.lines().nth(1).unwrap().split(',').nth(2), Some(""));
}

#[test]
fn resume_is_bit_identical_to_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let val = data(48, 5);
    let full = fit(
        learner(5).checkpointing(Checkpointing {
            path: Some(dir.path().join("full.ckpt")),
            ..Default::default()
        }),
        data(160, 4),
        Some(&val),
    )
    .unwrap();

    let part = dir.path().join("part.ckpt");
    let first = fit(
        learner(5).checkpointing(Checkpointing {
            path: Some(part.clone()),
            stop_after: Some(2),
            ..Default::default()
        }),
        data(160, 4),
        Some(&val),
    )
    .unwrap();
    assert_eq!(first.history.len(), 2);
    assert_eq!(Checkpoint::load(&part).unwrap().meta.epoch, 2);
    let resumed = fit(
        learner(5).checkpointing(Checkpointing {
            path: Some(part.clone()),
            resume: Some(part.clone()),
            ..Default::default()
        }),
        data(160, 4),
        Some(&val),
    )
    .unwrap();
    assert_eq!(figures(&full.history), figures(&resumed.history));
    assert_eq!(bits(&full), bits(&resumed), "resumed parameters differ");
    // Not a vacuous comparison: the run moved its parameters.
    assert_ne!(bits(&first), bits(&full));
}

/// `Net` with a batch norm after the hidden layer: state that is not a
/// parameter (running mean and variance, batches seen).
#[derive(Module)]
struct NetBn {
    hidden: Linear<IN, 16>,
    bn: BatchNorm1d<16>,
    act: ReLU,
    out: Linear<16, CLASSES>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<IN>), B>> for NetBn {
    type Output = Tensor<'t, (usize, Const<CLASSES>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<IN>), B>) -> Self::Output {
        self.out
            .forward(self.act.forward(self.bn.forward(self.hidden.forward(x))))
    }
}

fn step_bn<'t, B: Backend>(
    net: &NetBn,
    g: &'t dyn Tape<B>,
    b: &MiniBatch,
) -> ember_nn_core::Result<StepOutput<'t, B>> {
    let logits = net.forward(g.from_slice((b.len(), Const::<IN>), &b.features));
    let loss = cross_entropy(logits, &b.labels, Reduction::Mean);
    Ok(StepOutput::classified(loss, logits))
}

fn fit_bn(l: Learner, val: &TensorDataset) -> TrainOutcome {
    l.fit(
        &Parallel::new(1),
        NetBn::build,
        step_bn,
        data(160, 4),
        Some(val),
        &mut Quiet,
    )
    .and_then(Trained::into_outcome)
    .unwrap()
}

#[test]
fn a_batch_norms_running_statistics_are_checkpointed_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let val = data(48, 5);
    let ckpt = |path: &Path, stop_after, resume: bool| Checkpointing {
        path: Some(path.to_path_buf()),
        stop_after,
        resume: resume.then(|| path.to_path_buf()),
    };
    // Without early stopping: each run returns its last epoch's state.
    let learner = |epochs| learner(epochs).patience(None);
    let full = fit_bn(
        learner(4).checkpointing(ckpt(&dir.path().join("full"), None, false)),
        &val,
    );
    let part = dir.path().join("part");
    let first = fit_bn(learner(4).checkpointing(ckpt(&part, Some(2), false)), &val);
    let resumed = fit_bn(learner(4).checkpointing(ckpt(&part, None, true)), &val);

    // The state holds the buffers, after the parameters, by PyTorch's names.
    let names: Vec<&str> = full.params.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names[names.len() - 3..],
        [
            "bn.running_mean",
            "bn.running_var",
            "bn.num_batches_tracked"
        ]
    );
    let batches = |o: &TrainOutcome| o.params.last().unwrap().data[0];
    // 160 samples in batches of 16: 10 a epoch.
    assert_eq!(batches(&first), 20.0);
    assert_eq!(batches(&full), 40.0);
    // The checkpoint holds them, and the resumed run continues from them:
    // the same validation losses (eval mode reads the running statistics)
    // and the same state, bit for bit.
    let c = Checkpoint::load(&part).unwrap();
    assert!(c.params.iter().any(|t| t.name == "bn.running_var"));
    assert_eq!(figures(&full.history), figures(&resumed.history));
    assert_eq!(bits(&full), bits(&resumed), "resumed state differs");
}

#[test]
fn early_stopping_fires_and_keeps_the_best_parameters() {
    // The validation labels are the training labels shifted by one: the
    // better the model learns, the worse its validation loss.
    let train = data(192, 6);
    let (xs, ys) = train.clone().into_parts();
    let shifted = ys.iter().map(|y| (y + 1) % CLASSES).collect();
    let val = TensorDataset::new(xs, shifted, IN, CLASSES).unwrap();
    let run_with = |epochs: usize, patience: Option<usize>, ckpt: Checkpointing| {
        fit(
            Learner::new(Rule::adam(), 0.02, Arena::floats(40_000))
                .epochs(epochs)
                .batch(16)
                .seed(3)
                .patience(patience)
                .checkpointing(ckpt),
            train.clone(),
            Some(&val),
        )
        .unwrap_or_else(|e| panic!("epochs {epochs}: {e}"))
    };
    let run = |epochs, patience| run_with(epochs, patience, Checkpointing::default());
    let stopped = run(20, Some(2));
    assert!(stopped.stopped_early, "{:?}", stopped.history);
    assert!(stopped.history.len() < 20);
    let best = stopped
        .history
        .iter()
        .min_by(|a, b| a.val_loss.unwrap().total_cmp(&b.val_loss.unwrap()))
        .unwrap();
    assert_eq!(best.epoch + 2, stopped.history.len());
    // The parameters returned are those after the best epoch.
    let until_best = run(best.epoch, None);
    assert_eq!(bits(&stopped), bits(&until_best));

    // Interrupted after one epoch without improvement and resumed, the run
    // remembers its best loss, parameters and count: it stops at the same
    // epoch with the same parameters.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    let ckpt = |stop_after, resume: bool| Checkpointing {
        path: Some(path.clone()),
        resume: resume.then(|| path.clone()),
        stop_after,
    };
    let first = run_with(20, Some(2), ckpt(Some(best.epoch + 1), false));
    assert!(!first.stopped_early);
    let resumed = run_with(20, Some(2), ckpt(None, true));
    assert!(resumed.stopped_early);
    assert_eq!(figures(&resumed.history), figures(&stopped.history));
    assert_eq!(bits(&resumed), bits(&stopped));
}

#[test]
fn a_nan_loss_stops_with_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    let ckpt = |resume: bool| Checkpointing {
        path: Some(path.clone()),
        resume: resume.then(|| path.clone()),
        ..Default::default()
    };
    fit(learner(1).checkpointing(ckpt(false)), data(64, 7), None).unwrap();
    let before = std::fs::read(&path).unwrap();

    // Features so large that the logits overflow: the loss is NaN.
    let (mut xs, ys) = data(64, 7).into_parts();
    xs.iter_mut().for_each(|v| *v *= 1e38);
    let poisoned = TensorDataset::new(xs, ys, IN, CLASSES).unwrap();
    let err = fit(learner(2).checkpointing(ckpt(true)), poisoned, None).unwrap_err();
    match &err {
        TrainError::NonFiniteLoss {
            value,
            epoch,
            checkpoint,
            ..
        } => {
            assert!(!value.is_finite());
            assert_eq!(*epoch, 2);
            assert_eq!(checkpoint.as_deref(), Some(path.as_path()));
        }
        other => panic!("expected a non-finite loss, got {other}"),
    }
    assert!(err.to_string().contains("last good checkpoint"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the good checkpoint was overwritten"
    );
}

fn resume_as<M>(path: &Path) -> TrainError
where
    M: Module + Build,
    M: for<'t> Forward<
        Tensor<'t, (usize, Const<IN>), Parallel>,
        Output = Tensor<'t, (usize, Const<CLASSES>), Parallel>,
    >,
{
    Learner::new(Rule::adam(), 0.02, Arena::floats(1 << 16))
        .epochs(2)
        .batch(16)
        .checkpointing(Checkpointing {
            resume: Some(path.to_path_buf()),
            ..Default::default()
        })
        .fit(
            &Parallel::new(1),
            M::build,
            |net: &M, g, b| {
                let x = g.from_slice((b.len(), Const::<IN>), &b.features);
                let logits = net.forward(x);
                Ok(StepOutput::classified(
                    cross_entropy(logits, &b.labels, Reduction::Mean),
                    logits,
                ))
            },
            data(32, 8),
            None,
            &mut Quiet,
        )
        .unwrap_err()
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.ckpt");
    fit(
        learner(1).checkpointing(Checkpointing {
            path: Some(path.clone()),
            ..Default::default()
        }),
        data(32, 8),
        None,
    )
    .unwrap();
    match resume_as::<Wider>(&path) {
        TrainError::Checkpoint(CheckpointError::Parameters {
            path: p,
            name,
            expected,
            found,
        }) => {
            assert_eq!(p, path);
            assert_eq!(name, "hidden.weight");
            assert_eq!(expected, Some(vec![24, IN]));
            assert_eq!(found, Some(vec![16, IN]));
        }
        other => panic!("expected a parameter mismatch, got {other}"),
    }
    let err = resume_as::<Renamed>(&path);
    match &err {
        TrainError::Checkpoint(CheckpointError::Parameters {
            name,
            expected,
            found,
            ..
        }) => {
            assert_eq!(name, "fc1.weight");
            assert_eq!(
                (expected.as_deref(), found.as_deref()),
                (Some(&[16, IN][..]), None)
            );
        }
        other => panic!("expected a parameter mismatch, got {other}"),
    }
    assert!(err.to_string().contains("net.ckpt"), "{err}");
    // The same architecture resumes.
    let ok = fit(
        learner(2).checkpointing(Checkpointing {
            resume: Some(path.clone()),
            ..Default::default()
        }),
        data(32, 8),
        None,
    )
    .unwrap();
    assert_eq!(ok.history.len(), 2);
}

#[test]
fn a_run_too_large_for_the_machine_is_refused_before_allocating() {
    let err = Learner::new(Rule::adam(), 0.01, Arena::floats(usize::MAX / 8))
        .name("huge")
        .fit(
            &Parallel::new(1),
            Net::build,
            step,
            data(16, 9),
            None,
            &mut Quiet,
        )
        .unwrap_err();
    assert!(matches!(err, TrainError::Memory(_)), "{err}");
    assert!(
        err.to_string().starts_with("this model (huge) needs "),
        "{err}"
    );
}

/// A resume whose recorded settings differ from the checkpoint's (here the
/// learning rate) is refused with the difference named, before any training;
/// a higher epoch count alone is accepted: the run is extended.
#[test]
fn a_resume_with_other_settings_is_refused_but_may_train_longer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    let settings = |lr: f32, epochs: usize| serde_json::json!({ "lr": lr, "epochs": epochs });
    let ckpt = |resume: bool| Checkpointing {
        path: Some(path.clone()),
        resume: resume.then(|| path.clone()),
        ..Default::default()
    };
    fit(
        learner(1)
            .record_config(settings(0.02, 1))
            .checkpointing(ckpt(false)),
        data(64, 9),
        None,
    )
    .unwrap();
    let before = std::fs::read(&path).unwrap();

    let err = fit(
        learner(2)
            .record_config(settings(0.5, 2))
            .checkpointing(ckpt(true)),
        data(64, 9),
        None,
    )
    .unwrap_err();
    match &err {
        TrainError::Checkpoint(CheckpointError::Settings {
            path: p,
            differences,
        }) => {
            assert_eq!(p, &path);
            assert_eq!(differences, &["lr: 0.02 in the checkpoint, 0.5 now"]);
        }
        other => panic!("expected a settings mismatch, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("only the number of epochs may change"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refused resume wrote"
    );

    let longer = fit(
        learner(2)
            .record_config(settings(0.02, 2))
            .checkpointing(ckpt(true)),
        data(64, 9),
        None,
    )
    .unwrap();
    assert_eq!(longer.history.len(), 2);
    assert_eq!(Checkpoint::load(&path).unwrap().meta.epoch, 2);
}

/// Progress that keeps the test set's evaluation and the notes.
#[derive(Default)]
struct Keep {
    tests: Vec<Evaluation>,
    notes: Vec<String>,
}

impl Progress for Keep {
    fn epoch_start(&mut self, _: usize, _: usize) {}
    fn batch(&mut self, _: usize, _: f32, _: Option<f32>, _: f32) {}
    fn epoch_end(&mut self, _: &EpochMetrics) {}
    fn test_end(&mut self, e: &Evaluation) {
        self.tests.push(e.clone());
    }
    fn note(&mut self, text: &str) {
        self.notes.push(text.to_string());
    }
}

/// The model comes back in its memory with the best epoch's parameters:
/// evaluated again on the validation set it gives that epoch's figures bit
/// for bit, its parameters are those of a run stopped there, it runs on a
/// graph of one's own, and the optimizer state is freed.
#[test]
fn the_trained_model_comes_back_with_its_best_parameters() {
    // The validation labels shifted: the validation loss soon rises.
    let train = data(192, 6);
    let (xs, ys) = train.clone().into_parts();
    let shifted = ys.iter().map(|y| (y + 1) % CLASSES).collect();
    let val = TensorDataset::new(xs, shifted, IN, CLASSES).unwrap();
    let device = Parallel::new(1);
    let l = |epochs, patience| {
        Learner::new(Rule::adam(), 0.02, Arena::floats(40_000))
            .epochs(epochs)
            .batch(16)
            .seed(3)
            .patience(patience)
    };
    let mut trained = l(20, Some(2))
        .fit(
            &device,
            Net::build,
            step,
            train.clone(),
            Some(&val),
            &mut Quiet,
        )
        .unwrap();
    assert!(trained.stopped_early, "{:?}", trained.history);
    let best = trained
        .history
        .iter()
        .min_by(|a, b| a.val_loss.unwrap().total_cmp(&b.val_loss.unwrap()))
        .unwrap()
        .clone();
    assert!(best.epoch < trained.history.len());

    let again = trained.evaluate(&val, 16, step).unwrap();
    assert_eq!(again.loss.to_bits(), best.val_loss.unwrap().to_bits());
    assert_eq!(again.accuracy(), best.val_acc);
    assert_eq!(again.samples, val.len());

    let until_best = fit(l(best.epoch, None), train, Some(&val)).unwrap();
    let params = trained.params().unwrap();
    assert_eq!(params, until_best.params);

    // The memory: the parameters and their gradients, nothing else (Adam's
    // two planes of state are freed).
    let count = trained.model().param_count();
    assert_eq!(trained.model_floats(), 2 * count);
    assert_eq!(trained.memory().unwrap().available(), 40_000 - 2 * count);

    // The model runs on a graph of one's own: the same logits as predict.
    let predicted = trained
        .predict(&val, 16, |net: &Net, g, b| {
            Ok(net.forward(g.from_slice((b.len(), Const::<IN>), &b.features)))
        })
        .unwrap();
    assert_eq!((predicted.len(), predicted.width), (val.len(), CLASSES));
    let (net, mut mem) = trained.parts().unwrap();
    let g = Graph::new(&mut mem);
    let row = val.get(5).unwrap().features;
    let logits = net.forward(g.from_slice((1, Const::<IN>), row));
    assert_eq!(logits.to_vec().unwrap(), predicted.row(5).unwrap());
    drop(g);
    assert_eq!(
        predicted.classes(),
        again.classification.as_ref().unwrap().predictions
    );
}

/// A test set is evaluated once after training, with the parameters
/// returned: its accuracy, per-class accuracy and confusion matrix are in
/// the result and went to the progress hook.
#[test]
fn a_test_set_is_evaluated_after_training() {
    let test = data(90, 12);
    let device = Parallel::new(1);
    let mut keep = Keep::default();
    let mut trained = learner(6)
        .test_set(test.clone())
        .fit(
            &device,
            Net::build,
            step,
            data(192, 1),
            Some(&data(64, 2)),
            &mut keep,
        )
        .unwrap();
    let e = trained.test.clone().unwrap();
    assert_eq!(keep.tests, std::slice::from_ref(&e));
    assert_eq!(e.samples, 90);
    let c = e.classification.as_ref().unwrap();
    assert!(c.accuracy > 0.6, "{e:?}");
    // The figures agree with each other and with the labels.
    assert_eq!(c.predictions.len(), 90);
    assert_eq!(c.confusion.len(), CLASSES);
    assert_eq!(c.confusion.iter().flatten().sum::<usize>(), 90);
    assert_eq!(c.correct() as f32 / 90.0, c.accuracy);
    for (k, acc) in c.per_class.iter().enumerate() {
        let of_k: Vec<_> = test
            .labels()
            .iter()
            .zip(&c.predictions)
            .filter(|(y, _)| **y == k)
            .collect();
        let right = of_k.iter().filter(|(y, p)| y == p).count();
        assert_eq!(*acc, Some(right as f32 / of_k.len() as f32), "class {k}");
        assert_eq!(c.confusion[k].iter().sum::<usize>(), of_k.len());
    }
    let text = c.report(&[]);
    assert!(
        text.starts_with(&format!("accuracy: {:.4} ({}/90)", c.accuracy, c.correct())),
        "{text}"
    );
    // The same as evaluating the returned model (the same batches).
    assert_eq!(trained.evaluate(&test, 16, step).unwrap(), e);
    // In other batches the same predictions and nearly the same loss.
    let by_7 = trained.evaluate(&test, 7, step).unwrap();
    assert_eq!(by_7.classification, e.classification);
    assert!(
        (by_7.loss - e.loss).abs() < 1e-5,
        "{} {}",
        by_7.loss,
        e.loss
    );
    // An empty test set is refused before training.
    let empty = TensorDataset::new(vec![], vec![], IN, CLASSES).unwrap();
    let err = learner(1)
        .test_set(empty)
        .fit(&device, Net::build, step, data(32, 1), None, &mut Quiet)
        .unwrap_err();
    assert!(matches!(err, TrainError::Data(_)), "{err}");
}

/// A step without predictions: evaluation gives the mean loss only, and
/// `eval::evaluate` works on a memory of one's own, saying what to change
/// when a batch does not fit.
#[test]
fn a_regression_is_evaluated_by_its_loss() {
    fn regress<'t>(
        net: &Net,
        g: &'t dyn Tape<Parallel>,
        b: &MiniBatch,
    ) -> ember_nn_core::Result<StepOutput<'t, Parallel>> {
        let onehot: Vec<f32> = b
            .labels
            .iter()
            .flat_map(|&y| (0..CLASSES).map(move |c| f32::from(u8::from(c == y))))
            .collect();
        let x = g.from_slice((b.len(), Const::<IN>), &b.features);
        let t = g.from_slice((b.len(), Const::<CLASSES>), &onehot);
        Ok(StepOutput::loss(mse(net.forward(x), t, Reduction::Mean)))
    }
    let device = Parallel::new(1);
    let test = data(40, 13);
    let mut buf = vec![0.0f32; 8192];
    let mut mem = Memory::new(&device, &mut buf[..]);
    let mut net = Net::build(&mut mem, &mut Rng::new(1)).unwrap();
    let e = eval::evaluate(&mut net, &mut mem, &test, 16, regress).unwrap();
    assert!(e.classification.is_none() && e.accuracy().is_none());
    assert!(e.loss > 0.0 && e.loss.is_finite(), "{e:?}");
    // Batches of 16, 16 and 8 weighted by their sizes: the mean over samples.
    let whole = eval::evaluate(&mut net, &mut mem, &test, 40, regress).unwrap();
    assert!(
        (e.loss - whole.loss).abs() < 1e-6,
        "{} {}",
        e.loss,
        whole.loss
    );
    assert!(matches!(
        eval::evaluate(&mut net, &mut mem, &test, 0, regress),
        Err(TrainError::Config(_))
    ));

    // A memory with room for the parameters and little else.
    let mut small = vec![0.0f32; 2 * net.param_count() + 64];
    let mut mem = Memory::new(&device, &mut small[..]);
    let mut net = Net::build(&mut mem, &mut Rng::new(1)).unwrap();
    let err = eval::evaluate(&mut net, &mut mem, &test, 16, regress).unwrap_err();
    assert!(matches!(err, TrainError::Memory(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("evaluating a batch of 16 samples needs more than the 64 floats free"),
        "{err}"
    );
}

/// The learner records its own settings in every checkpoint: a resume with
/// another learning rate, batch, clipping, optimizer, schedule or
/// augmentation is refused naming each difference, without writing; one
/// with more epochs trains on; a checkpoint from before the settings were
/// recorded resumes with a note.
#[test]
fn the_learners_settings_are_recorded_and_checked_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    let ckpt = |resume: bool| Checkpointing {
        path: Some(path.clone()),
        resume: resume.then(|| path.clone()),
        ..Default::default()
    };
    fit(learner(1).checkpointing(ckpt(false)), data(64, 9), None).unwrap();
    let before = std::fs::read(&path).unwrap();
    let settings = Checkpoint::load(&path).unwrap().meta.settings;
    assert_eq!(settings, learner(1).settings());
    assert_eq!(settings["lr"], serde_json::json!(0.02));
    assert_eq!(settings["optimizer"], "adam");

    let refused = |l: Learner| -> Vec<String> {
        match fit(l.checkpointing(ckpt(true)), data(64, 9), None) {
            Err(TrainError::Checkpoint(CheckpointError::Settings { differences, .. })) => {
                differences
            }
            other => panic!("expected a settings mismatch, got {other:?}"),
        }
    };
    assert_eq!(
        refused(learner_at(Rule::adam(), 0.05, 2)),
        ["lr: 0.02 in the checkpoint, 0.05 now"]
    );
    assert_eq!(
        refused(learner(2).batch(32).clip(None)),
        [
            "batch: 16 in the checkpoint, 32 now",
            "clip: 5 in the checkpoint, none now"
        ]
    );
    assert_eq!(
        refused(learner_at(Rule::adamw(), 0.02, 2)),
        [
            "optimizer: adam in the checkpoint, adamw now",
            "weight_decay: 0 in the checkpoint, 0.01 now"
        ]
    );
    assert_eq!(
        refused(learner_at(Rule::adam().with_amsgrad(true), 0.02, 2)),
        ["amsgrad: false in the checkpoint, true now"]
    );
    let cosine = refused(learner(2).schedule(Schedule::new(SchedulerKind::Cosine, 2, 1, 1, 0.5)));
    assert!(
        cosine.contains(&"scheduler: plateau in the checkpoint, cosine now".to_string()),
        "{cosine:?}"
    );
    assert_eq!(
        refused(learner(2).augment(Some(Compose::new()))),
        ["augment: false in the checkpoint, true now"]
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refused resume wrote"
    );

    // More epochs (and a schedule made for them) are no other settings.
    let longer = learner(3).schedule(Schedule::new(SchedulerKind::Plateau, 3, 1, 1, 0.5));
    let longer = fit(longer.checkpointing(ckpt(true)), data(64, 9), None).unwrap();
    assert_eq!(longer.history.len(), 3);

    // A checkpoint written before the settings were recorded: resumed
    // unchecked, with a note saying so.
    let mut old = Checkpoint::load(&path).unwrap();
    old.meta.settings = serde_json::Value::Null;
    let old_path = dir.path().join("old.ckpt");
    old.save(&old_path).unwrap();
    let mut keep = Keep::default();
    let resumed = learner_at(Rule::adam(), 0.05, 4)
        .checkpointing(Checkpointing {
            resume: Some(old_path.clone()),
            ..Default::default()
        })
        .fit(
            &Parallel::new(1),
            Net::build,
            step,
            data(64, 9),
            None,
            &mut keep,
        )
        .map(|t| t.history.len());
    assert_eq!(resumed.unwrap(), 4);
    assert_eq!(keep.notes.len(), 1, "{:?}", keep.notes);
    assert!(
        keep.notes[0].contains("written before the Learner recorded its settings"),
        "{:?}",
        keep.notes
    );
}

/// The step of [`step`] with a padding leaf of 256 floats per sample that
/// `Arena::of` does not count, recorded in training and validation, or
/// (`only_without_grad`) only where no gradient is recorded.
fn padded<'t, B: Backend>(
    net: &Net,
    g: &'t dyn Tape<B>,
    b: &MiniBatch,
    only_without_grad: bool,
) -> ember_nn_core::Result<StepOutput<'t, B>> {
    let x = g.from_slice((b.len(), Const::<IN>), &b.features);
    let logits = net.forward(x);
    let mut loss = cross_entropy(logits, &b.labels, Reduction::Mean);
    if !only_without_grad || !g.is_grad_enabled() {
        let pad = vec![1.0f32; b.len() * 256];
        loss = loss + g.from_slice((pad.len(),), &pad).sum() * 0.0;
    }
    Ok(StepOutput::classified(loss, logits))
}

/// Runs `padded` in `arena` with a validation and a test set.
fn fit_padded<'d>(
    device: &'d Parallel,
    arena: Arena,
    only_without_grad: bool,
) -> Result<Trained<'d, Parallel, Net>, TrainError> {
    Learner::new(Rule::adam(), 0.02, arena)
        .epochs(2)
        .batch(16)
        .test_set(data(40, 14))
        .fit(
            device,
            Net::build,
            |net: &Net, g, b| padded(net, g, b, only_without_grad),
            data(64, 15),
            Some(&data(40, 16)),
            &mut Quiet,
        )
}

/// The arena a step out of memory asks for: the error's `needed`, after
/// checking what the error says.
fn asked_for(err: TrainError, arena: &str, during: &str) -> usize {
    asked_for_at(err, arena, during, 16)
}

/// [`asked_for`] of a batch of `at` samples.
fn asked_for_at(err: TrainError, arena: &str, during: &str, at: usize) -> usize {
    let text = err.to_string();
    let TrainError::ArenaTooSmall {
        arena: given,
        during: what,
        batch,
        needed: Some(n),
        ..
    } = err
    else {
        panic!("expected a measured arena too small, got {text}")
    };
    assert_eq!((given.as_str(), what, batch), (arena, during, at), "{text}");
    assert!(
        text.starts_with(&format!("the arena given to the Learner ({arena}, ")),
        "{text}"
    );
    assert!(
        text.contains(&format!("too small for {during} at batch {at}")),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("give the Learner Arena::floats({n})")),
        "{text}"
    );
    n
}

/// A training step that records more than `Arena::of` counts fails with an
/// error naming the arena given and `Arena::floats(N)`: with exactly N
/// floats the run succeeds (validation and test set included), with one
/// fewer it fails asking for the same N.
#[test]
fn a_training_step_out_of_memory_names_the_arena_to_give() {
    let device = Parallel::new(1);
    let err = fit_padded(&device, Arena::of::<Net>(Loss::CrossEntropy), false).unwrap_err();
    let n = asked_for(err, "Arena::of::<Net>(CrossEntropy)", "a training step");
    let given = Arena::of::<Net>(Loss::CrossEntropy)
        .floats_for(16, &Rule::adam())
        .unwrap();
    assert!(n > given + 16 * 256, "{n} {given}");

    let trained = fit_padded(&device, Arena::floats(n), false).unwrap();
    assert_eq!(trained.history.len(), 2);
    assert!(trained.test.is_some());
    let err = fit_padded(&device, Arena::floats(n - 1), false).unwrap_err();
    assert_eq!(
        asked_for(err, &format!("Arena::floats({})", n - 1), "a training step"),
        n
    );
}

/// The same for a step that records more in validation than in training.
#[test]
fn a_validation_step_out_of_memory_names_the_arena_to_give() {
    let device = Parallel::new(1);
    let err = fit_padded(&device, Arena::of::<Net>(Loss::CrossEntropy), true).unwrap_err();
    let n = asked_for(err, "Arena::of::<Net>(CrossEntropy)", "a validation step");
    fit_padded(&device, Arena::floats(n), true).unwrap();
    let err = fit_padded(&device, Arena::floats(n - 1), true).unwrap_err();
    assert_eq!(
        asked_for(
            err,
            &format!("Arena::floats({})", n - 1),
            "a validation step"
        ),
        n
    );
}

/// The returned model evaluated in larger batches than its arena was made
/// for: the error names the arena to give the Learner, which then trains
/// and evaluates in those batches.
#[test]
fn evaluating_the_returned_model_out_of_memory_names_the_arena_to_give() {
    let device = Parallel::new(1);
    let err = fit_padded(&device, Arena::of::<Net>(Loss::CrossEntropy), false).unwrap_err();
    let n = asked_for(err, "Arena::of::<Net>(CrossEntropy)", "a training step");
    let test = data(128, 17);
    fn eval_padded<'t, B: Backend>(
        net: &Net,
        g: &'t dyn Tape<B>,
        b: &MiniBatch,
    ) -> ember_nn_core::Result<StepOutput<'t, B>> {
        padded(net, g, b, false)
    }
    let mut trained = fit_padded(&device, Arena::floats(n), false).unwrap();
    let err = trained.evaluate(&test, 128, eval_padded).unwrap_err();
    let m = asked_for_at(err, &format!("Arena::floats({n})"), "evaluating", 128);
    assert!(m > n, "{m} {n}");
    let mut trained = fit_padded(&device, Arena::floats(m), false).unwrap();
    let e = trained.evaluate(&test, 128, eval_padded).unwrap();
    assert_eq!(e.samples, 128);
}

/// A step that runs out of memory however large the arena (here it says
/// so itself): no size can be measured, and the error gives the lower
/// bound it knows.
#[test]
fn a_step_out_of_memory_in_every_arena_gives_a_lower_bound() {
    let device = Parallel::new(1);
    let err = Learner::new(Rule::sgd(), 0.1, Arena::floats(4096))
        .batch(16)
        .fit(
            &device,
            Net::build,
            |_: &Net, _: &dyn Tape<Parallel>, _: &MiniBatch| {
                Err::<StepOutput<'_, Parallel>, _>(ember_nn_core::Error::OutOfMemory {
                    needed: 10,
                    available: 0,
                })
            },
            data(32, 18),
            None,
            &mut Quiet,
        )
        .unwrap_err();
    let text = err.to_string();
    // Parameters and gradients (SGD without momentum keeps no state), then
    // a graph that had taken everything and asked for 10 more.
    let at_least = 4096 + 10;
    match err {
        TrainError::ArenaTooSmall {
            needed: None,
            at_least: a,
            ..
        } => assert_eq!(a, at_least, "{text}"),
        other => panic!("expected an unmeasured arena too small, got {other}"),
    }
    assert!(
        text.ends_with(&format!(
            "it needs at least {at_least} floats (a larger trial arena to measure the exact size could not be had); give the Learner Arena::floats(N) with N at least {at_least}"
        )),
        "{text}"
    );
}
