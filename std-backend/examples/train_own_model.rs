//! A model of your own, trained by the `Learner` with everything
//! `ember train` has: the PyTorch tutorial's `class MLP(nn.Module)` as a
//! `#[derive(Module)]` struct, on the built-in FashionMNIST subset, with
//! validation, a warmup and cosine schedule, per-epoch checkpoints (which
//! record the run's settings), early stopping, metrics.csv + curves.svg,
//! and the trained model back: evaluated on the test set (accuracy per
//! class, confusion matrix) and run on a few samples.
//!
//! ```text
//! cargo run --release -p ember-nn-std --example train_own_model [OUT_DIR]
//! ```
//!
//! Run it twice: the second run resumes from the checkpoint of the first
//! and has nothing left to do (but evaluating its model). A resume with
//! other settings (change the learning rate below) is refused, naming them.

use ember_nn_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_nn_core::nn::{Build, Forward, Linear, Module, ReLU, Rule};
use ember_nn_core::prelude::*;
use ember_nn_std::config::SchedulerKind;
use ember_nn_std::data::{FashionMnist, MiniBatch, Split};
use ember_nn_std::eval::Evaluation;
use ember_nn_std::learner::{Arena, Learner, StepOutput};
use ember_nn_std::schedule::Schedule;
use ember_nn_std::train::{split_validation, Checkpointing, EpochMetrics, Progress};
use ember_nn_std::{report, Parallel};
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

/// A mini-batch's loss and logits: the step of training, validation and
/// evaluation alike.
fn step<'t, B: Backend>(
    model: &Mlp,
    g: &'t dyn Tape<B>,
    b: &MiniBatch,
) -> ember_nn_core::Result<StepOutput<'t, B>> {
    let x = g.from_slice((b.len(), Const::<784>), &b.features);
    let logits = model.forward(x);
    let loss = cross_entropy(logits, &b.labels, Reduction::Mean);
    Ok(StepOutput::classified(loss, logits))
}

/// One line per epoch, and one for the test set.
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
    fn test_end(&mut self, e: &Evaluation) {
        println!(
            "test loss {:.4}  test acc {:.1}%",
            e.loss,
            100.0 * e.accuracy().unwrap_or(f32::NAN)
        );
    }
    fn note(&mut self, text: &str) {
        println!("note: {text}");
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
    let test = FashionMnist::builtin(Split::Test)?.into_dataset();
    let names: Vec<String> = FashionMnist::CLASSES
        .iter()
        .map(|c| c.to_string())
        .collect();

    let epochs = 6;
    let batch = 32;
    let rule = Rule::adam();
    let device = Parallel::try_new(0)?;
    let mut trained = Learner::new(rule, 2e-3, Arena::of::<Mlp>(Loss::CrossEntropy))
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
        .test_set(test.clone())
        .fit(&device, Mlp::build, step, train, val.as_ref(), &mut Print)?;

    report::write_metrics(&out.join("metrics.csv"), &trained.history)?;
    report::plot_curves(&out.join("curves.svg"), &trained.history)?;

    // The trained model (the best epoch's parameters), evaluated on the test
    // set after training: accuracy per class and the confusion matrix.
    if let Some(c) = trained
        .test
        .as_ref()
        .and_then(|e| e.classification.as_ref())
    {
        print!("\n{}", c.report(&names));
    }
    // And run on the first test images.
    let first = test.select(&[0, 1, 2, 3])?;
    let predicted = trained
        .predict(&first, batch, |model: &Mlp, g, b| {
            Ok(model.forward(g.from_slice((b.len(), Const::<784>), &b.features)))
        })?
        .classes();
    for (&p, &y) in predicted.iter().zip(first.labels()) {
        let name = |c: usize| FashionMnist::CLASSES.get(c).copied().unwrap_or("?");
        println!("predicted {:<12} true {}", name(p), name(y));
    }
    let params = trained.params()?;
    let names: Vec<_> = params.iter().map(|t| t.name.as_str()).collect();
    println!(
        "parameters {names:?}; wrote {}: checkpoint.safetensors, metrics.csv, curves.svg",
        out.display()
    );
    Ok(())
}
