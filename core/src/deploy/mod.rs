//! Deployment: the weight format a microcontroller runs from flash, its f32
//! and int8 inference kernels, post-training quantization, and export as Rust
//! source.
//!
//! Two file layouts share the magic and the checks: chains of dense layers
//! (version 2, below, [`Model`]) and graphs of layers for convolutional
//! networks (version 3: convolutions, pooling, residual additions,
//! [`GraphModel`]; f32 for now). Export ([`export_f32`]) writes whichever
//! the model's forward pass needs.
//!
//! The dense format (version 2, little-endian, every part aligned to 16 bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `EMBR` |
//! | 4 | 2 | format version ([`VERSION`]) |
//! | 6 | 1 | dtype: 0 = f32, 1 = int8 |
//! | 7 | 1 | number of dense layers `L` (at most [`MAX_LAYERS`]) |
//! | 8 | 4 | header length `H` (bytes before the data) |
//! | 12 | 4 | data length `D` |
//! | 16 | 4 | model input features |
//! | 20 | 4 | model output features |
//! | 24 | 1 | flags: bit 0, an int8 file's input step ([`InputStep`]); bit 1, an int8 file's activation tables ([`ActivationTable`]); the others zero |
//! | 25 | 7 | reserved (zero) |
//! | 32 | 48·L | layer records (see [`LayerHeader`]) |
//! | H | D | data: weights, biases, per-channel scales, requantization |
//! | H + D | 4 | CRC-32 (IEEE) of bytes `[0, H + D)` |
//!
//! An int8 file with the input step (flag bit 0) starts its data with it:
//! the input features' offsets, then their scales (`f32` each), each part
//! 16-byte aligned and zero-padded; the layers' data follow.
//! Each layer's data follow in order: weight, bias, and for int8 the
//! per-channel weight scales and `(multiplier, shift)` requantization pairs,
//! each part starting on a 16-byte boundary, zero-padded. An int8 layer
//! whose activation is neither ReLU nor the identity has one more part (and
//! the file flag bit 1; exactly the files with such a layer have it): its
//! activation table ([`ActivationTable`]), to which its requantization pairs
//! lead:
//!
//! | offset in the part | size | field |
//! |---|---|---|
//! | 0 | 4 | pre-activation scale (`f32`, finite, positive) |
//! | 4 | 4 | pre-activation zero point (`i32`, −128 to 127) |
//! | 8 | 8 | reserved (zero) |
//! | 16 | 256 | the outputs (`i8`), indexed by the pre-activation `q + 128` |
//!
//! Its offset is implied (the next 16-byte boundary after the pairs): the
//! layer record has no field for it. An int8 file with such a layer and no
//! table (written when int8 activations went through f32) is refused with
//! [`FormatError::MissingActivationTable`]: quantize the model again. f32 weights are
//! row-major `[out, in]`; int8 weights are in the kernels' block layout
//! ([`int8_weight_offset`]) and int8 biases are folded for the kernels'
//! unsigned input (the `int8` kernels' documentation): version 2. Version 1
//! differs only there (row-major int8 weights, biases folded for `i8`
//! input); its f32 files still load.
//!
//! The header is the model's signature: layer widths and activation kinds,
//! and for int8 the quantization parameters. [`Model::parse`] validates every
//! byte of it (and never panics, whatever the input), checks the CRC, and
//! gives slices that point into the input: nothing is copied, so weights in
//! flash (`include_bytes!`) are read in place. [`Model::load`] also checks the
//! signature against a model type.
//!
//! ```
//! use ember_nn_core::prelude::*;
//! use ember_nn_core::deploy::{self, Model};
//! use ember_nn_core::nn::{Build, Forward, Linear, ReLU};
//! type Net = (Linear<4, 8>, ReLU, Linear<8, 3>);
//!
//! let mut buf = [0.0f32; 1024];
//! let mut mem = Memory::new(&Cpu, &mut buf[..]);
//! let net = Net::build(&mut mem, &mut Rng::new(0))?;
//! let mut bytes = deploy::Aligned([0u8; 1024]);
//! // The file is read off one forward pass on a probe batch, then checked
//! // against it through the deployment kernels.
//! let mut scratch = [0.0f32; 32];
//! let n = deploy::export_f32(
//!     &net,
//!     &mut mem,
//!     |p| net.forward(p.input((p.rows(), Const::<4>))),
//!     &mut bytes.0,
//!     &mut scratch,
//! )
//! .expect("fits");
//! let model = Model::load::<Net>(&bytes.0[..n]).expect("valid");
//! let mut scratch = [0.0f32; 16];
//! let out = model.infer_f32(&[0.1, 0.2, 0.3, 0.4], &mut scratch).expect("runs");
//! assert_eq!(out.len(), 3);
//! # Ok::<(), ember_nn_core::Error>(())
//! ```
//!
//! The int8 path: observe the f32 model's ranges on sample inputs
//! ([`Calibration`]), [`quantize`], then run on an image's bytes in place
//! ([`Model::infer_u8`]: byte `p` is the input `p / 255` for a model whose
//! inputs were in `[0, 1]`). Loading and quantizing fail with a
//! [`FormatError`], inference with an [`InferError`]; both implement
//! `core::error::Error` (and `defmt::Format` with the `defmt` feature), so
//! a firmware wraps them in its own error type, as below.
//!
//! ```
//! use ember_nn_core::prelude::*;
//! use ember_nn_core::deploy::{self, argmax_i8, Calibration, ExportError, FormatError, InferError, Model};
//! use ember_nn_core::nn::{Build, Forward, Linear, ReLU};
//! type Net = (Linear<4, 8>, ReLU, Linear<8, 3>);
//!
//! #[derive(Debug)]
//! enum DeployError {
//!     Export(ExportError),
//!     Format(FormatError),
//!     Infer(InferError),
//! }
//! impl From<ExportError> for DeployError {
//!     fn from(e: ExportError) -> Self { DeployError::Export(e) }
//! }
//! impl From<FormatError> for DeployError {
//!     fn from(e: FormatError) -> Self { DeployError::Format(e) }
//! }
//! impl From<InferError> for DeployError {
//!     fn from(e: InferError) -> Self { DeployError::Infer(e) }
//! }
//!
//! fn main() -> Result<(), DeployError> {
//!     let mut buf = [0.0f32; 1024];
//!     let mut mem = Memory::new(&Cpu, &mut buf[..]);
//!     let net = Net::build(&mut mem, &mut Rng::new(0)).expect("fits");
//!     let mut f32_bytes = deploy::Aligned([0u8; 1024]);
//!     let mut fscratch = [0.0f32; 32];
//!     let n = deploy::export_f32(
//!         &net,
//!         &mut mem,
//!         |p| net.forward(p.input((p.rows(), Const::<4>))),
//!         &mut f32_bytes.0,
//!         &mut fscratch,
//!     )?;
//!     let f32_model = Model::load::<Net>(&f32_bytes.0[..n])?;
//!
//!     // Calibrate on inputs spanning [0, 1], as images scaled by 1/255 do.
//!     let mut calib = Calibration::new();
//!     let mut scratch = [0.0f32; 16];
//!     for i in 0..=8 {
//!         let v = i as f32 / 8.0;
//!         calib.observe(&f32_model, &[v, 1.0 - v, 0.5 * v, 0.25], &mut scratch)?;
//!     }
//!     let mut int8_bytes = deploy::Aligned([0u8; 1024]);
//!     let n = deploy::quantize(&f32_model, &calib, &mut int8_bytes.0)?;
//!
//!     // On the device: the file in flash, loaded in place; the scratch is
//!     // the arena of `Model::scratch_len`: a layer's input and output side
//!     // by side (8 + 3), or the first layer's output and its `i8` input
//!     // flipped beside it (8 + 4).
//!     let model = Model::load::<Net>(&int8_bytes.0[..n])?;
//!     let mut scratch = [0i8; 8 + 4];
//!     assert_eq!(model.scratch_len(), scratch.len());
//!     let pixels = [0u8, 255, 128, 64];
//!     let logits = model.infer_u8(&pixels, &mut scratch)?;
//!     assert_eq!(logits.len(), 3);
//!     let _class = argmax_i8(logits);
//!     Ok(())
//! }
//! ```

mod crc;
mod dense_f32;
mod format;
mod graph;
mod infer;
mod int8;
mod quant;
mod source;
mod trace;
mod walk;

pub use crate::backend::activation::Activation;
pub use crc::crc32;
pub use dense_f32::{dense_f32, dense_f32_row, ROWS_F32};
pub use format::{
    ActivationTable, DenseSignature, FormatError, InputStep, LayerHeader, LayerWeights, Layers,
    Model, MAX_LAYERS, VERSION,
};
pub use graph::{
    graph_head_len, graph_quantized_len, quantize_graph, write_graph_with_head, Geometry,
    GraphCalibration, GraphModel, NodeEvent, NodeHeader, NodeOp, GRAPH_VERSION, MAX_NODES,
    NODE_RECORD,
};
pub use infer::{argmax, argmax_i8, InferError};
pub use int8::{dense_i8, int8_weight_offset, Int8Input};
pub use quant::{
    activation_table, int8_layer_len, quantize, quantize_layer, quantize_with_input_step,
    quantized_len, requantize, write_with_last_layer, Calibration, QuantParams,
};
pub use source::{write_layer_types, write_model_type, write_rust_source};
pub use trace::{
    check_f32, export_f32, plan, write_f32, ExportError, FoldedNorm, Plan, PlannedLayer, Probe,
    F32_TOLERANCE, PROBE_ROWS,
};
pub use walk::PlannedNode;

/// Bytes aligned to 16, so that a weight file embedded with `include_bytes!`
/// can be read in place as `f32`:
/// `static W: Aligned<[u8; N]> = Aligned(*include_bytes!("model.emb"));`
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aligned<T: ?Sized>(pub T);
