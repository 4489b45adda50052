//! Training runs: exact resume, a NaN loss that stops training and keeps the
//! last good checkpoint, checkpoints of another architecture or corrupted,
//! and early stopping.

use ember_nn_std::checkpoint::{Checkpoint, CheckpointError};
use ember_nn_std::config::{ActivationKind, OptimizerKind, SchedulerKind};
use ember_nn_std::data::transform::{Compose, RandomRotation, RandomShift};
use ember_nn_std::data::{Dataset, FashionMnist, Split, TensorDataset};
use ember_nn_std::learner::Trained;
use ember_nn_std::state_dict::{self, NamedTensor};
use ember_nn_std::train::{self, Checkpointing, Quiet, TrainConfig, TrainError};
use ember_nn_std::Parallel;
use std::path::Path;

fn subset(n: usize) -> TensorDataset {
    FashionMnist::builtin(Split::Train)
        .unwrap()
        .into_dataset()
        .split_at(n)
        .0
}

fn config() -> TrainConfig {
    TrainConfig {
        widths: vec![784, 24, 10],
        epochs: 4,
        batch: 32,
        seed: 7,
        augment: true,
        scheduler: SchedulerKind::Plateau,
        val_fraction: 0.2,
        ..TrainConfig::default()
    }
}

fn augment() -> Option<Compose> {
    Some(
        Compose::new()
            .then(RandomShift::new(2))
            .then(RandomRotation::new(15.0)),
    )
}

fn run(cfg: &TrainConfig, ckpt: &Checkpointing) -> Result<train::TrainOutcome, TrainError> {
    let (tr, val) = train::split_validation(subset(400), cfg.val_fraction);
    train::train(
        &Parallel::new(2),
        cfg,
        tr,
        val.as_ref(),
        augment(),
        ckpt,
        &mut Quiet,
    )
    .and_then(Trained::into_outcome)
}

#[test]
fn resume_is_bit_identical_to_an_uninterrupted_run() {
    resumes_bit_identically(&config());
}

/// With dropout too: the masks of a resumed run are those of the
/// uninterrupted one (they are drawn from the seed and the batch), and
/// dropout changes what is learned.
#[test]
fn resume_with_dropout_is_bit_identical() {
    let cfg = TrainConfig {
        dropout: 0.3,
        ..config()
    };
    let with = resumes_bit_identically(&cfg);
    let without = run(&config(), &Checkpointing::default()).unwrap();
    assert_ne!(with.params, without.params, "dropout changed nothing");
}

fn resumes_bit_identically(cfg: &TrainConfig) -> train::TrainOutcome {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg.clone();
    let full = run(
        &cfg,
        &Checkpointing {
            path: Some(dir.path().join("full.ckpt")),
            ..Default::default()
        },
    )
    .unwrap();

    let part = dir.path().join("part.ckpt");
    let first = run(
        &cfg,
        &Checkpointing {
            path: Some(part.clone()),
            stop_after: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(first.history.len(), 2);
    let resumed = run(
        &cfg,
        &Checkpointing {
            path: Some(part.clone()),
            resume: Some(part.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(resumed.history.len(), 4);
    for (a, b) in full.history.iter().zip(&resumed.history) {
        assert_eq!(
            (a.train_loss, a.train_acc, a.val_loss, a.lr),
            (b.train_loss, b.train_acc, b.val_loss, b.lr)
        );
    }
    assert_eq!(
        full.params, resumed.params,
        "resumed parameters differ from the uninterrupted run"
    );
    full
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    let mut cfg = config();
    cfg.epochs = 1;
    // Without augmentation, in both runs (the learner records whether it
    // augments, and refuses a resume that differs).
    cfg.augment = false;
    let (tr, val) = train::split_validation(subset(400), cfg.val_fraction);
    let device = Parallel::new(1);
    let ckpt = Checkpointing {
        path: Some(path.clone()),
        ..Default::default()
    };
    train::train(&device, &cfg, tr, val.as_ref(), None, &ckpt, &mut Quiet).unwrap();
    let before = std::fs::read(&path).unwrap();

    // Resume for a second epoch on data that makes the loss infinite.
    cfg.epochs = 2;
    let (mut feats, labels) = subset(320).into_parts();
    feats.iter_mut().for_each(|v| *v *= 1e38);
    let poisoned = TensorDataset::new(feats, labels, 784, 10).unwrap();
    let err = train::train(
        &Parallel::new(1),
        &cfg,
        poisoned,
        None,
        None,
        &Checkpointing {
            path: Some(path.clone()),
            resume: Some(path.clone()),
            ..Default::default()
        },
        &mut Quiet,
    )
    .unwrap_err();
    match &err {
        TrainError::NonFiniteLoss {
            epoch, checkpoint, ..
        } => {
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
    assert_eq!(Checkpoint::load(&path).unwrap().meta.epoch, 1);
}

#[test]
fn checkpoints_of_another_architecture_or_corrupted_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.ckpt");
    let mut cfg = config();
    cfg.epochs = 1;
    run(
        &cfg,
        &Checkpointing {
            path: Some(path.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut other = cfg.clone();
    other.widths = vec![784, 32, 10];
    other.epochs = 2;
    let err = run(
        &other,
        &Checkpointing {
            resume: Some(path.clone()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Checkpoint(CheckpointError::Architecture { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("784-24-10") && err.to_string().contains("c.ckpt"),
        "{err}"
    );

    let bytes = std::fs::read(&path).unwrap();
    let corrupt = |b: &[u8], name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, b).unwrap();
        let e = Checkpoint::load(&p).unwrap_err();
        assert!(matches!(e, CheckpointError::Invalid { .. }), "{name}: {e}");
        assert!(e.to_string().contains(name), "{e}");
    };
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 10] ^= 0x40;
    corrupt(&flipped, "flipped.ckpt");
    corrupt(&bytes[..bytes.len() - 100], "truncated.ckpt");
    corrupt(b"garbage", "garbage.ckpt");
    assert!(matches!(
        Checkpoint::load(Path::new("/nonexistent/c.ckpt")),
        Err(CheckpointError::Io { .. })
    ));
}

#[test]
fn early_stopping_ends_the_run_and_keeps_the_best_parameters() {
    let mut cfg = config();
    cfg.epochs = 10;
    cfg.lr = 5.0; // so large that the validation loss soon stops improving
    cfg.optimizer = OptimizerKind::Sgd;
    cfg.momentum = 0.0;
    cfg.patience = Some(2);
    cfg.scheduler = SchedulerKind::None;
    cfg.augment = false;
    let (tr, val) = train::split_validation(subset(400), cfg.val_fraction);
    let device = Parallel::new(2);
    let out = train::train(
        &device,
        &cfg,
        tr,
        val.as_ref(),
        None,
        &Checkpointing::default(),
        &mut Quiet,
    );
    match out {
        Ok(o) => {
            assert!(
                o.stopped_early && o.history.len() < 10,
                "{} epochs",
                o.history.len()
            );
        }
        // Divergence to an infinite loss is also a clean stop.
        Err(TrainError::NonFiniteLoss { .. }) => {}
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bad_settings_are_reported() {
    // Names are parsed once, into the config's enums.
    assert!("lbfgs".parse::<OptimizerKind>().is_err());
    let mut cfg = config();
    cfg.clip = Some(0.0);
    assert!(matches!(
        run(&cfg, &Checkpointing::default()),
        Err(TrainError::Config(_))
    ));
    let mut cfg = config();
    cfg.widths = vec![100, 10];
    assert!(matches!(
        run(&cfg, &Checkpointing::default()),
        Err(TrainError::Data(_))
    ));
    assert!(train::parse_widths("784-x-10").is_err());
    assert!(train::parse_widths("784").is_err());
    assert_eq!(
        train::parse_widths("784-256-10").unwrap(),
        vec![784, 256, 10]
    );
    let _ = FashionMnist::builtin(Split::Test).unwrap().dataset().len();
}

/// Rewrites a checkpoint as the code before the `Learner` wrote it: without
/// the recorded parameter order (the rest of the format is unchanged).
fn without_parameter_order(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut md = header.metadata().clone().unwrap();
    assert!(md.remove("parameter_order").is_some());
    let tensors: Vec<NamedTensor> = st
        .names()
        .into_iter()
        .map(|name| {
            let view = st.tensor(name).unwrap();
            NamedTensor {
                name: name.to_string(),
                shape: view.shape().to_vec(),
                data: state_dict::to_f32(path, name, &view).unwrap(),
            }
        })
        .collect();
    std::fs::write(path, state_dict::to_bytes(&tensors, Some(md)).unwrap()).unwrap();
}

#[test]
fn checkpoints_from_before_the_learner_still_resume_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let full = run(&cfg, &Checkpointing::default()).unwrap();
    let part = dir.path().join("old.ckpt");
    run(
        &cfg,
        &Checkpointing {
            path: Some(part.clone()),
            stop_after: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    without_parameter_order(&part);
    let resumed = run(
        &cfg,
        &Checkpointing {
            resume: Some(part.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(full.params, resumed.params);

    // A checkpoint the previous code wrote (the fuzzing corpus's seed):
    // string names of the activation, a plain training accuracy.
    let old = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/checkpoint-before-learner.ckpt"
    ));
    let c = Checkpoint::load(old).unwrap();
    assert_eq!(c.meta.activation, Some(ActivationKind::Relu));
    assert_eq!(c.meta.history[0].train_acc, Some(0.6));
    c.check_architecture(old, &[4, 6, 3], Some(ActivationKind::Relu))
        .unwrap();
    let names: Vec<_> = c.params.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
}
