//! # ember-std
//!
//! What a desktop adds to `ember-core`: a multi-threaded CPU backend, data
//! sets and data loaders, training runs with checkpoints and reports,
//! safetensors interchange with PyTorch, and the `ember` command line.
//!
//! The command line is the quickest way in:
//!
//! ```text
//! cargo run --release -p ember-std --bin ember -- train
//! ```
//!
//! trains a 784-256-128-10 MLP on FashionMNIST (the full set from
//! `/usr/share/datasets/fashion-mnist/` when installed, otherwise a built-in
//! subset), reports accuracy per class with a confusion matrix, and exports
//! the model for microcontrollers (f32 and int8) and for PyTorch.

pub mod atomic;
pub mod checkpoint;
pub mod data;
pub mod export;
pub mod image;
pub mod report;
pub mod state_dict;
pub mod train;
