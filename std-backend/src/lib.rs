//! # ember-nn-std
//!
//! What a desktop adds to `ember-nn-core`: [`Parallel`], a multi-threaded CPU
//! backend with a SIMD GEMM; data sets and data loaders; training runs with
//! checkpoints and reports; safetensors interchange with PyTorch; and the
//! `ember` command line.
//!
//! To train a model of your own (a `#[derive(Module)]` struct) with
//! everything `ember train` has (checkpoints, exact resume, early stopping,
//! metrics), give it to a [`learner::Learner`] with a step closure that
//! computes the loss; it gives the trained model back in its memory
//! ([`learner::Trained`]), to evaluate on a test set ([`eval`]: accuracy,
//! accuracy per class, confusion matrix, or the mean loss), run, save, or
//! export for a microcontroller in one call (`Trained::export`: the files
//! are read off the forward pass and checked, see [`export`]).
//! The module's documentation has a complete example, and
//! `examples/train_own_model.rs` a runnable one.
//!
//! The command line is the quickest way in:
//!
//! ```text
//! cargo run --release -p ember-nn-std --bin ember -- train
//! ```
//!
//! trains an MLP on FashionMNIST (the full set from
//! `/usr/share/datasets/fashion-mnist/` when installed, otherwise a built-in
//! subset), reports accuracy per class with a confusion matrix, and exports
//! the model for microcontrollers (f32 and int8) and for PyTorch.

#![deny(missing_docs)]

pub mod atomic;
pub mod checkpoint;
pub mod cnn;
pub mod config;
pub mod data;
pub mod eval;
pub mod export;
pub mod image;
pub mod learner;
pub mod parallel;
pub mod report;
pub mod schedule;
pub mod state_dict;
pub mod train;

pub use parallel::{Parallel, PAR_THRESHOLD};
