//! Graph files (format version 3): models that are not a chain of dense
//! layers (convolutions, pooling, residual additions) as a small graph of
//! nodes, each reading one or two earlier nodes' outputs.
//!
//! Activations are per sample and channel-first, `[C, H, W]`, as PyTorch
//! lays out `[N, C, H, W]` without the batch: a flatten or any reshape
//! that keeps a sample's values in order is free (a dense layer reads its
//! input node's values in that order, whatever its shape), the file's
//! weights keep PyTorch's layouts (`[out, in/groups, k_h, k_w]`,
//! `[out, in]`), and the device's input is the host model's. A 1-D signal
//! `[C, L]` is `[C, 1, L]`.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `EMBR` |
//! | 4 | 2 | format version, 3 ([`GRAPH_VERSION`]) |
//! | 6 | 1 | dtype: 0 = f32, 1 = int8 |
//! | 7 | 1 | number of nodes `n`, the input included (2 to [`MAX_NODES`]) |
//! | 8 | 4 | header length `H` |
//! | 12 | 4 | data length `D` |
//! | 16 | 4 | model input features (the input node's `C·H·W`) |
//! | 20 | 4 | model output features (the last node's) |
//! | 24 | 4 | reserved (zero) |
//! | 28 | 4 | arena length: elements of the activation buffers ([`GraphModel::scratch_len`]) |
//! | 32 | 96·n | node records ([`NODE_RECORD`] bytes each) |
//! | H | D | data: each node's parts in order, 16-byte aligned, zero-padded |
//! | H + D | 4 | CRC-32 (IEEE) of bytes `[0, H + D)` |
//!
//! A node record:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | op: 0 input, 1 dense, 2 convolution, 3 max pooling, 4 average pooling, 5 global average pooling, 6 addition |
//! | 1 | 1 | activation code, then 2 reserved bytes, then its parameter (`f32`, at 4) |
//! | 8 | 2 + 2 | the nodes it reads (`u16` each; the second for an addition only, else 0) |
//! | 12 | 12 | input shape `C, H, W` (`u32` each) |
//! | 24 | 12 | output shape `C, H, W` |
//! | 36 | 22 | geometry (`u16` each): kernel h, w; stride h, w; dilation h, w; padding top, left, bottom, right; groups |
//! | 58 | 2 | reserved |
//! | 60 | 4 | where the output lives in the arena (elements) |
//! | 64 | 16 | data offsets: weight, bias, int8 weight scales, int8 requantization pairs (0 where absent) |
//! | 80 | 8 | int8: the output's scale (`f32`) and zero point (`i32`); zero in an f32 file |
//! | 88 | 4 | int8: the activation table's data offset (0 where absent) |
//! | 92 | 4 | reserved (zero) |
//!
//! A node's data parts: for a dense layer or a convolution in an f32 file,
//! its weight (`[out, in]`, `[out, in/groups, k_h, k_w]`) and bias; in an
//! int8 file, the weight in `i8` (same layout, symmetric per output
//! channel), the bias in accumulator units (`i32`, input scale × the
//! channel's weight scale; the input's zero point is subtracted per tap,
//! not folded in, so that padding is a real zero), the weight scales
//! (`f32`) and per channel the `(multiplier, shift)` pair that takes the
//! accumulator to the output's scale. An int8 addition holds two pairs, each
//! input's scale over the output's times 2^16, and an int8 global average
//! one, the input's scale over the plane's size and the output's scale.
//! Max and average poolings have no data, and in int8 keep their input's
//! quantization. An int8 node whose activation is not ReLU or the identity
//! (tanh, sigmoid, GELU, ...) has one more part, its activation table
//! ([`ActivationTable`](crate::deploy::ActivationTable), 272 bytes, as in
//! dense files): its pairs lead to the table's pre-activation quantization
//! (a pooling's is its input's) and the table maps that to the output's.
//!
//! ```
//! use ember_nn_core::deploy::{self, Aligned, GraphCalibration, GraphModel, NodeOp};
//! use ember_nn_core::nn::{Build, Conv2d, Flatten, Forward, Linear, MaxPool2d, ReLU};
//! use ember_nn_core::prelude::*;
//! type Cnn = (Conv2d<1, 4, 3, 1, 1>, ReLU, MaxPool2d<2>, Flatten<64>, Linear<64, 3>);
//!
//! let mut buf = vec![0.0f32; 1 << 16];
//! let mut mem = Memory::new(&Cpu, &mut buf[..]);
//! let cnn = Cnn::build(&mut mem, &mut Rng::new(0))?;
//! let mut file = Box::new(Aligned([0u8; 4096]));
//! let mut scratch = [0.0f32; 512];
//! let n = deploy::export_f32(
//!     &cnn,
//!     &mut mem,
//!     |p| cnn.forward(p.input((p.rows(), Const::<1>, Const::<8>, Const::<8>))),
//!     &mut file.0,
//!     &mut scratch,
//! )
//! .expect("exports");
//! let graph = GraphModel::parse(&file.0[..n]).expect("valid");
//! let ops: Vec<NodeOp> = graph.nodes().map(|(h, _)| h.op).collect();
//! assert_eq!(ops, [NodeOp::Input, NodeOp::Conv, NodeOp::MaxPool, NodeOp::Dense]);
//!
//! // f32 inference in exactly the file's arena: the convolution's 4×8×8
//! // map and the pooling's 4×4×4.
//! let mut arena = vec![0.0f32; graph.scratch_len()];
//! assert_eq!(arena.len(), 256 + 64);
//! let image = [0.5f32; 64];
//! let logits = graph.infer_f32(&image, &mut arena).expect("runs");
//! assert_eq!(logits.len(), 3);
//!
//! // int8, calibrated on sample inputs.
//! let mut calib = GraphCalibration::new();
//! for i in 0..8 {
//!     let x: Vec<f32> = (0..64).map(|j| ((i * 7 + j) % 10) as f32 / 10.0).collect();
//!     calib.observe(&graph, &x, &mut arena).expect("runs");
//! }
//! let mut q = Box::new(Aligned([0u8; 4096]));
//! let qn = deploy::quantize_graph(&graph, &calib, &mut q.0).expect("quantizes");
//! let int8 = GraphModel::parse(&q.0[..qn]).expect("valid");
//! let (mut qin, mut qarena, mut out) = ([0i8; 64], vec![0i8; int8.scratch_len()], [0.0f32; 3]);
//! int8.infer_i8(&image, &mut qin, &mut qarena, &mut out).expect("runs");
//! # Ok::<(), ember_nn_core::Error>(())
//! ```
//!
//! Node 0 is the input, read in place. Every other node reads earlier
//! nodes only (the records are in an order that runs), and every node but
//! the last (the output) is read by a later one. The arena plan is in the
//! file: [`GraphModel::parse`] checks that no node writes over a buffer that
//! is still to be read, and that the arena is as long as the plan needs,
//! so inference runs in exactly [`GraphModel::scratch_len`] floats with no
//! planner on the device.

mod conv;
#[cfg(any(ember_dsp, ember_thumb1, test))]
mod depthwise;
mod epilogue;
mod file;
mod head;
#[cfg(any(ember_dsp, ember_thumb1, test))]
mod im2col;
#[cfg(test)]
mod profile_tests;
mod quant;
mod run;

pub(crate) use file::{data_parts, graph_file_len, plan_arena, write_graph_header};
pub use file::{GraphModel, GRAPH_VERSION, MAX_NODES, NODE_RECORD};
pub use head::{graph_head_len, write_graph_with_head};
pub use quant::{graph_quantized_len, quantize_graph, GraphCalibration};

use super::Activation;

/// What a node computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NodeOp {
    /// The model's input (node 0 only).
    Input,
    /// A fully connected layer over the input node's values in order.
    Dense,
    /// A convolution (PyTorch's `Conv2d`; `Conv1d` with a height of 1).
    Conv,
    /// Max pooling (padding never wins).
    MaxPool,
    /// Average pooling, the padding's zeros counted (PyTorch's default).
    AvgPool,
    /// The mean of each channel: `[C, 1, 1]`.
    GlobalAvgPool,
    /// The sum of two nodes of the same size (a residual connection).
    Add,
}

impl NodeOp {
    pub(crate) fn code(self) -> u8 {
        match self {
            NodeOp::Input => 0,
            NodeOp::Dense => 1,
            NodeOp::Conv => 2,
            NodeOp::MaxPool => 3,
            NodeOp::AvgPool => 4,
            NodeOp::GlobalAvgPool => 5,
            NodeOp::Add => 6,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => NodeOp::Input,
            1 => NodeOp::Dense,
            2 => NodeOp::Conv,
            3 => NodeOp::MaxPool,
            4 => NodeOp::AvgPool,
            5 => NodeOp::GlobalAvgPool,
            6 => NodeOp::Add,
            _ => return None,
        })
    }

    /// Whether it has a weight and a bias.
    pub fn has_parameters(self) -> bool {
        matches!(self, NodeOp::Dense | NodeOp::Conv)
    }

    /// Whether it slides a window ([`Geometry`]).
    pub fn has_window(self) -> bool {
        matches!(self, NodeOp::Conv | NodeOp::MaxPool | NodeOp::AvgPool)
    }
}

/// The window of a convolution or a pooling, per axis `[height, width]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Geometry {
    /// Kernel size.
    pub kernel: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Spacing between taps.
    pub dilation: [usize; 2],
    /// Zero padding `[top, left, bottom, right]`.
    pub pad: [usize; 4],
    /// Channel groups (a convolution's; 1 for a pooling).
    pub groups: usize,
}

impl Geometry {
    /// The output `[height, width]` over an input of `input`, as PyTorch
    /// computes it: `⌊(in + before + after − dilation·(k − 1) − 1) /
    /// stride⌋ + 1`. `None` when a kernel, stride or dilation is 0, or the
    /// dilated kernel is larger than the padded input.
    pub fn output(&self, input: [usize; 2]) -> Option<[usize; 2]> {
        let mut out = [0; 2];
        for a in 0..2 {
            let (k, s, d) = (self.kernel[a], self.stride[a], self.dilation[a]);
            if k == 0 || s == 0 || d == 0 {
                return None;
            }
            let padded = input[a]
                .checked_add(self.pad[a])?
                .checked_add(self.pad[a + 2])?;
            let span = (k - 1).checked_mul(d)?.checked_add(1)?;
            out[a] = padded.checked_sub(span)? / s + 1;
        }
        Some(out)
    }
}

/// A node as its record describes it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NodeHeader {
    /// What it computes.
    pub op: NodeOp,
    /// The nodes it reads: the first, and an addition's second.
    pub inputs: [usize; 2],
    /// Its input `[C, H, W]` (a dense layer's: `[in, 1, 1]`).
    pub in_shape: [usize; 3],
    /// Its output `[C, H, W]`.
    pub out_shape: [usize; 3],
    /// The window (convolutions and poolings; zero otherwise).
    pub geometry: Geometry,
    /// The activation applied to its output.
    pub activation: Activation,
    /// Where its output starts in the arena (elements; 0 for the input,
    /// which is read in place).
    pub arena: usize,
    /// int8: the scale of its output (the input node's: of the model's
    /// input); 0 in an f32 file.
    pub out_scale: f32,
    /// int8: the zero point of its output; 0 in an f32 file.
    pub out_zero: i32,
}

/// When [`GraphModel::infer_q8_profiled`] and
/// [`GraphModel::infer_f32_profiled`] call their observer: each node but
/// the input gets a `Start` just before its kernel runs and an `End` just
/// after it (before the next node's `Start`), so what the observer does
/// between an `End` and the next `Start` (logging, say) is outside both
/// nodes' spans. A node whose kernel fails gets no `End`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NodeEvent {
    /// The node's kernel is about to run.
    Start,
    /// The node's kernel has written its output.
    End,
}

impl NodeHeader {
    /// The multiply-adds its kernel does: a dense layer's `in · out`, a
    /// convolution's `out elements · in/groups · k_h · k_w` (padding taps
    /// counted); 0 for the other ops.
    pub fn multiply_adds(&self) -> usize {
        match self.op {
            NodeOp::Dense => self.in_len() * self.out_len(),
            NodeOp::Conv => {
                let g = self.geometry;
                self.out_len() * (self.in_shape[0] / g.groups.max(1)) * g.kernel[0] * g.kernel[1]
            }
            _ => 0,
        }
    }

    /// Elements of its output.
    pub fn out_len(&self) -> usize {
        self.out_shape[0] * self.out_shape[1] * self.out_shape[2]
    }

    /// Elements of its input.
    pub fn in_len(&self) -> usize {
        self.in_shape[0] * self.in_shape[1] * self.in_shape[2]
    }
}
