//! Regression with the `Learner`: float targets (one or several per
//! sample) in a `TensorDataset`, a step that returns its outputs
//! (`StepOutput::regressed`), and RMSE, MAE and R² per target; the same
//! through `train::train` with MSE, L1 and Huber losses.

use ember_nn_core::nn::loss::{mse, Loss, Reduction};
use ember_nn_core::nn::{Build, Forward, Linear, Rule};
use ember_nn_core::prelude::*;
use ember_nn_std::config::{LossKind, SchedulerKind, TaskKind};
use ember_nn_std::data::{Dataset, MiniBatch, TensorDataset};
use ember_nn_std::eval;
use ember_nn_std::learner::{Arena, Learner, StepOutput};
use ember_nn_std::train::{self, Checkpointing, Quiet, TrainConfig};

/// `n` samples of 3 features and 2 targets: `y0 = x0 - 2 x1 + 0.5`,
/// `y1 = 3 x2 - 1`.
fn linear(n: usize, from: usize) -> TensorDataset {
    let xs: Vec<f32> = (from * 3..(from + n) * 3)
        .map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0)
        .collect();
    let ys = xs
        .chunks(3)
        .flat_map(|x| [x[0] - 2.0 * x[1] + 0.5, 3.0 * x[2] - 1.0])
        .collect();
    TensorDataset::regression(xs, ys, 3, 2).unwrap()
}

fn step<'t, B: Backend>(
    net: &Linear<3, 2>,
    g: &'t dyn Tape<B>,
    b: &MiniBatch,
) -> ember_nn_core::Result<StepOutput<'t, B>> {
    let y = net.forward(g.from_slice((b.len(), Const::<3>), &b.features));
    let t = g.from_slice((b.len(), Const::<2>), &b.targets);
    Ok(StepOutput::regressed(mse(y, t, Reduction::Mean), y))
}

#[test]
fn a_learner_fits_float_targets_and_reports_each() {
    let mut trained = Learner::new(Rule::adam(), 0.05, Arena::of::<Linear<3, 2>>(Loss::Mse))
        .epochs(40)
        .batch(16)
        .test_set(linear(40, 200))
        .fit(
            &Cpu,
            Linear::<3, 2>::build,
            step,
            linear(200, 0),
            Some(&linear(40, 300)),
            &mut Quiet,
        )
        .unwrap();
    let test = trained.test.clone().unwrap();
    assert!(test.classification.is_none() && test.accuracy().is_none());
    let r = test.regression.expect("the step regressed");
    assert_eq!(r.per_target.len(), 2);
    assert_eq!(r.predictions.len(), 80);
    for m in &r.per_target {
        assert!(m.r2 > 0.99 && m.rmse < 0.1 && m.mae <= m.rmse, "{m:?}");
    }
    assert!(trained.history.last().unwrap().train_acc.is_none());
    // Evaluated again, the same figures.
    let again = trained.evaluate(&linear(40, 200), 7, step).unwrap();
    let again = again.regression.unwrap();
    for (a, b) in again.per_target.iter().zip(&r.per_target) {
        assert!((a.r2 - b.r2).abs() < 1e-5);
    }
}

#[test]
fn regression_figures_by_hand() {
    // Target column 0: truth 1, 2, 3 (mean 2, SS_tot 2); predictions 1, 2,
    // 5: SS_res 4, RMSE sqrt(4/3), MAE 2/3, R² 1 - 4/2 = -1. Column 1:
    // a constant truth, predicted exactly: R² 1.
    let r = eval::regression(
        vec![1.0, 7.0, 2.0, 7.0, 5.0, 7.0],
        &[1.0, 7.0, 2.0, 7.0, 3.0, 7.0],
        2,
    )
    .unwrap();
    let m = r.per_target[0];
    assert!((m.rmse - (4.0f32 / 3.0).sqrt()).abs() < 1e-6, "{m:?}");
    assert!((m.mae - 2.0 / 3.0).abs() < 1e-6, "{m:?}");
    assert!((m.r2 + 1.0).abs() < 1e-6, "{m:?}");
    assert_eq!(r.per_target[1].r2, 1.0);
    let off = eval::regression(vec![1.0, 2.0], &[7.0, 7.0], 1).unwrap();
    assert_eq!(off.per_target[0].r2, 0.0);
    assert!(eval::regression(vec![1.0], &[1.0, 2.0], 1).is_err());
    let text = r.report(&["a".into()]);
    assert!(
        text.contains("a ") && text.lines().nth(2).unwrap().starts_with('1'),
        "{text}"
    );
}

#[test]
fn the_mlp_run_regresses_with_each_loss() {
    for loss in [LossKind::Mse, LossKind::L1, LossKind::Huber] {
        let cfg = TrainConfig {
            widths: vec![3, 16, 2],
            epochs: 40,
            batch: 16,
            lr: 0.01,
            scheduler: SchedulerKind::None,
            task: TaskKind::Regress,
            loss,
            ..TrainConfig::default()
        };
        let val = linear(40, 300);
        let mut trained = train::train(
            &Cpu,
            &cfg,
            linear(200, 0),
            Some(&val),
            None,
            &Checkpointing::default(),
            &mut Quiet,
        )
        .unwrap();
        let d = 3;
        let e = trained
            .evaluate(&linear(40, 200), 16, |m: &ember_nn_core::nn::Mlp, g, b| {
                let y = m.forward(g.from_slice((b.len(), d), &b.features));
                let t = g.from_slice((b.len(), 2), &b.targets);
                Ok(StepOutput::regressed(train::regression_loss(loss, y, t), y))
            })
            .unwrap();
        let r = e.regression.unwrap();
        for m in &r.per_target {
            assert!(m.r2 > 0.9, "{loss}: {m:?}");
        }
    }
}

#[test]
fn the_mlp_run_checks_the_targets_against_its_outputs() {
    let cfg = TrainConfig {
        widths: vec![3, 4, 1],
        task: TaskKind::Regress,
        ..TrainConfig::default()
    };
    let e = train::train(
        &Cpu,
        &cfg,
        linear(20, 0),
        None,
        None,
        &Checkpointing::default(),
        &mut Quiet,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "data: the data has 2 target(s) per sample but the last layer has 1 outputs"
    );
    assert_eq!(linear(4, 0).target_len(), 2);
}

#[test]
fn the_mlp_run_trains_an_autoencoder_and_scores_rows() {
    use ember_nn_std::train::{quantile, ModelInfo};
    // 4 features that live on a 2-dimensional plane: x2 = x0 + x1, x3 = x0 - x1.
    let rows = |n: usize, from: usize| -> Vec<f32> {
        (from..from + n)
            .flat_map(|i| {
                let (a, b) = (
                    (i * 37 % 23) as f32 / 11.5 - 1.0,
                    (i * 11 % 19) as f32 / 9.5 - 1.0,
                );
                [a, b, a + b, a - b]
            })
            .collect()
    };
    let set = |x: Vec<f32>| TensorDataset::regression(x.clone(), x, 4, 4).unwrap();
    let cfg = TrainConfig {
        widths: vec![4, 8, 2, 8, 4],
        epochs: 60,
        batch: 16,
        lr: 0.01,
        scheduler: SchedulerKind::None,
        task: TaskKind::Reconstruct,
        ..TrainConfig::default()
    };
    let val = set(rows(40, 300));
    let mut trained = train::train(
        &Cpu,
        &cfg,
        set(rows(200, 0)),
        Some(&val),
        None,
        &Checkpointing::default(),
        &mut Quiet,
    )
    .unwrap();
    let p = trained
        .predict(&val, 16, |m: &ember_nn_core::nn::Mlp, g, b| {
            Ok(m.forward(g.from_slice((b.len(), 4), &b.features)))
        })
        .unwrap();
    let info = ModelInfo {
        task: TaskKind::Reconstruct,
        features: ["a", "b", "c", "d"].map(String::from).to_vec(),
        targets: Vec::new(),
        outputs: Vec::new(),
        scaler: None,
        target_scaler: None,
        threshold: None,
        quantile: Some(0.99),
    };
    let scores = info.scores(val.features(), &p.outputs);
    assert_eq!(scores.len(), 40);
    let t = quantile(&scores, 0.99).unwrap();
    assert!(t < 0.05, "{t}");
    // A row off the plane scores far above the threshold.
    let off = [0.5, 0.5, -1.0, 1.0];
    let q = trained
        .predict(&set(off.to_vec()), 1, |m: &ember_nn_core::nn::Mlp, g, b| {
            Ok(m.forward(g.from_slice((b.len(), 4), &b.features)))
        })
        .unwrap();
    assert!(info.scores(&off, &q.outputs)[0] > 10.0 * t);
    assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
    assert_eq!(quantile(&[1.0, 2.0], 0.25), Some(1.25));
    assert_eq!(quantile(&[], 0.5), None);
}
