//! A model of your own, trained by the `Learner` with everything
//! `ember train` has: the PyTorch tutorial's `class MLP(nn.Module)` as a
//! `#[derive(Module)]` struct, on the built-in FashionMNIST subset, with
//! validation, a warmup and cosine schedule, per-epoch checkpoints, early
//! stopping, and metrics.csv + curves.svg.
//!
//! ```text
//! cargo run --release -p ember-std --example train_own_model [OUT_DIR]
//! ```
//!
//! Run it twice: the second run resumes from the checkpoint of the first
//! and has nothing left to do.

use ember_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_core::nn::{Build, Forward, Linear, Module, ReLU, Rule};
use ember_core::prelude::*;
use ember_std::config::SchedulerKind;
use ember_std::data::{FashionMnist, Split};
use ember_std::learner::{Arena, Learner, StepOutput};
use ember_std::schedule::Schedule;
use ember_std::train::{split_validation, Checkpointing, EpochMetrics, Progress};
use ember_std::{report, Parallel};
use std::path::PathBuf;

/// ```python
/// class MLP(nn.Module):
///     def __init__(self):
///         super().__init__()
///         self.hidden = nn.Linear(784, 64)
///         self.out = nn.Linear(64, 10)
///     def forward(self, X):
///         return self.out(F.relu(self.hidden(X)))
/// ```
#[derive(Module)]
struct Mlp {
    hidden: Linear<784, 64>,
    act: ReLU,
    out: Linear<64, 10>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<784>), B>> for Mlp {
    type Output = Tensor<'t, (usize, Const<10>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<784>), B>) -> Self::Output {
        self.out.forward(self.act.forward(self.hidden.forward(x)))
    }
}

/// One line per epoch.
struct Print;

impl Progress for Print {
    fn epoch_start(&mut self, _: usize, _: usize) {}
    fn batch(&mut self, _: usize, _: f32, _: Option<f32>, _: f32) {}
    fn epoch_end(&mut self, m: &EpochMetrics) {
        println!(
            "epoch {}  loss {:.4}  val loss {:.4}  val acc {:.1}%  lr {:.1e}",
            m.epoch,
            m.train_loss,
            m.val_loss.unwrap_or(f32::NAN),
            100.0 * m.val_acc.unwrap_or(f32::NAN),
            m.lr
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ember-own-model"));
    std::fs::create_dir_all(&out)?;
    let ckpt = out.join("checkpoint.safetensors");
    if ckpt.is_file() {
        println!(
            "resuming from {} (a finished run has nothing left to train; delete the directory to start over)",
            ckpt.display()
        );
    }

    let data = FashionMnist::builtin(Split::Train)?.into_dataset();
    let (train, val) = split_validation(data, 0.2);

    let epochs = 6;
    let batch = 32;
    let rule = Rule::adam();
    let outcome = Learner::new(rule, 2e-3, Arena::of::<Mlp>(Loss::CrossEntropy))
        .epochs(epochs)
        .batch(batch)
        .seed(1)
        .schedule(Schedule::new(SchedulerKind::Cosine, epochs, 1, 1, 0.5))
        .patience(Some(3))
        .checkpointing(Checkpointing {
            path: Some(ckpt.clone()),
            resume: ckpt.is_file().then(|| ckpt.clone()),
            stop_after: None,
        })
        .fit(
            &Parallel::try_new(0)?,
            Mlp::build,
            |model: &Mlp, g, b| {
                let x = g.from_slice((b.len(), Const::<784>), &b.features);
                let logits = model.forward(x);
                let loss = cross_entropy(logits, &b.labels, Reduction::Mean);
                Ok(StepOutput::classified(loss, logits))
            },
            train,
            val.as_ref(),
            &mut Print,
        )?;

    report::write_metrics(&out.join("metrics.csv"), &outcome.history)?;
    report::plot_curves(&out.join("curves.svg"), &outcome.history)?;
    let names: Vec<_> = outcome.params.iter().map(|t| t.name.as_str()).collect();
    println!(
        "parameters {names:?}; wrote {}: checkpoint.safetensors, metrics.csv, curves.svg",
        out.display()
    );
    Ok(())
}
