//! MLPerf Tiny's models as Ember types, trainable on the host and meant for
//! the firmware too (`no_std`, no allocation):
//!
//! - [`KwsDsCnn`]: keyword spotting's DS-CNN on `[N, 1, 49, 10]` MFCC maps,
//!   12 classes; 23,756 parameters, 2,656,768 multiply-adds per sample
//!   ([`KwsDsCnn::MACS`]);
//! - [`ResNet8`]: image classification's ResNet-8 (the 16-filter model of
//!   the reference `.tflite`) on `[N, 3, 32, 32]` images, 10 classes;
//!   78,186 parameters, 12,501,632 multiply-adds ([`ResNet8::MACS`]);
//! - [`DeepAutoEncoder`]: anomaly detection's Deep AutoEncoder on
//!   `[N, 640]` log-mel frames (640 → 128 ×4 → 8 → 128 ×4 → 640);
//!   267,928 parameters (Keras counts 269,992 with the running statistics),
//!   264,192 multiply-adds
//!   ([`DeepAutoEncoder::MACS`]). It exports as a dense file (format
//!   version 2): each batch norm, in evaluation mode, folds into the
//!   `Linear` before it;
//! - [`MobileNetV1Vww`]: visual wake words' MobileNetV1 ×0.25 on
//!   `[N, 3, 96, 96]` images, 2 classes; 7,489,664 multiply-adds
//!   ([`MobileNetV1Vww::MACS`]).
//!
//! The convolutional ones follow the reference Keras models of MLPerf Tiny's training code:
//! every convolution has a bias, TFLite's SAME padding ([`Padding::Same`]:
//! at stride 2 one more row and column below and to the right), batch
//! norms with PyTorch's defaults (`eps = 1e-5`, `momentum = 0.1`; Keras's
//! are `1e-3` and `0.01`, see [`BatchNormConfig`](super::BatchNormConfig)),
//! and logits out (the reference's softmax is the loss's). The DS-CNN's
//! dropout layers (0.2, 0.4) are left out: they do nothing at inference.
//!
//! Parameter names are those of the PyTorch classes `KwsDsCnn` and `ResNet8`
//! of `scripts/torch-fixtures.py` (`stem.weight`, `blocks.2.pointwise.bias`,
//! `stack2.shortcut.weight`, ...), so a state_dict saved from them loads by
//! name, and `print(model)`'s lines are theirs.
//!
//! ```
//! use ember_nn_core::nn::zoo::KwsDsCnn;
//! use ember_nn_core::nn::{Build, Footprint, Forward};
//! use ember_nn_core::prelude::*;
//! let mut buf = vec![0.0f32; 1 << 20];
//! let mut mem = Memory::new(&Cpu, &mut buf[..]);
//! let model = KwsDsCnn::build(&mut mem, &mut Rng::new(0))?;
//! assert_eq!(KwsDsCnn::PARAMS, 23_756);
//! let g = Graph::new(&mut mem);
//! let logits = model.forward(g.from_fn((2usize, Const::<1>, Const::<49>, Const::<10>), |_| 0.0));
//! assert_eq!(logits.dims().as_slice(), &[2, 12]);
//! # Ok::<(), ember_nn_core::Error>(())
//! ```

use super::{
    BatchNorm1d, BatchNorm2d, BufferInfo, Build, Conv2d, Conv2dWith, DepthwiseConv2d, Footprint,
    Forward, Linear, Module, Name, ParamInfo, SCRATCH_UNKNOWN,
};
use crate::backend::{Backend, Padding};
use crate::error::Result;
use crate::memory::Memory;
use crate::ops::conv::ConvOptions;
use crate::rng::Rng;
use crate::shape::{Const, Dim};
use crate::tensor::Tensor;
use core::fmt;

/// TFLite's SAME padding at `stride`.
const fn same(stride: usize) -> ConvOptions {
    ConvOptions {
        stride: [stride, stride],
        padding: Padding::Same,
        dilation: [1, 1],
        groups: 1,
    }
}

/// Writes `indent` levels of PyTorch's two-space indentation.
fn pad(f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result {
    for _ in 0..indent {
        compact_loop!();
        f.write_str("  ")?;
    }
    Ok(())
}

/// `Module` for a struct of named layer fields, as `#[derive(Module)]`
/// writes it (the derive's paths name `::ember_nn_core`, which this crate
/// cannot use for itself).
macro_rules! fields_module {
    ($ty:ident $(<$(const $g:ident: usize),*>)?, $class:literal, [$($field:ident),*]) => {
        impl$(<$(const $g: usize),*>)? Module for $ty$(<$($g),*>)? {
            fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
                $( name.with(stringify!($field), |n| self.$field.visit(n, f)); )*
            }
            fn visit_buffers(&self, name: &mut Name, f: &mut dyn FnMut(&BufferInfo<'_>)) {
                $( name.with(stringify!($field), |n| self.$field.visit_buffers(n, f)); )*
            }
            fn set_training(&mut self, training: bool) {
                $( self.$field.set_training(training); )*
            }
            fn fmt_module(&self, f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result {
                f.write_str(concat!($class, "(\n"))?;
                $(
                    pad(f, indent + 1)?;
                    f.write_str(concat!("(", stringify!($field), "): "))?;
                    self.$field.fmt_module(f, indent + 1)?;
                    f.write_str("\n")?;
                )*
                pad(f, indent)?;
                f.write_str(")")
            }
        }
    };
}

/// `Footprint` of a struct of the given layer types (plus `extra` graph
/// nodes its `forward` records itself): sums, and an unknown scratch as
/// every convolution's.
macro_rules! fields_footprint {
    ($ty:ident $(<$(const $g:ident: usize),*>)?, $extra:expr, [$($field:ty),*]) => {
        impl$(<$(const $g: usize),*>)? Footprint for $ty$(<$($g),*>)? {
            const PARAMS: usize = 0 $(+ <$field as Footprint>::PARAMS)*;
            const BUFFERS: usize = 0 $(+ <$field as Footprint>::BUFFERS)*;
            const NODES: usize = $extra $(+ <$field as Footprint>::NODES)*;
            const IN_FEATURES: Option<usize> = None;
            const OUT_FEATURES: Option<usize> = None;
            const SCRATCH_FIXED: usize = SCRATCH_UNKNOWN;
            const SCRATCH_PER_FEATURE: usize = SCRATCH_UNKNOWN;
        }
    };
}

/// A `[batch, C, h, w]` feature map of `C` channels.
type Map<'t, N, const C: usize, B> = Tensor<'t, (N, Const<C>, usize, usize), B>;

// ============================================================== DS-CNN

/// One depthwise-separable block of the DS-CNN: a depthwise 3×3 convolution
/// (SAME), batch norm, ReLU, a pointwise 1×1 convolution of `C` to `C`
/// channels, batch norm, ReLU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DsBlock<const C: usize> {
    /// The depthwise 3×3 convolution, `groups = C`.
    pub depthwise: DepthwiseConv2d<C, 3>,
    /// Its batch norm.
    pub bn1: BatchNorm2d<C>,
    /// The pointwise 1×1 convolution.
    pub pointwise: Conv2d<C, C, 1>,
    /// Its batch norm.
    pub bn2: BatchNorm2d<C>,
}

impl<const C: usize> Build for DsBlock<C> {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Ok(DsBlock {
            depthwise: DepthwiseConv2d::new(same(1), mem, rng)?,
            bn1: BatchNorm2d::new(mem)?,
            pointwise: Conv2d::build(mem, rng)?,
            bn2: BatchNorm2d::new(mem)?,
        })
    }
}

fields_module!(DsBlock<const C: usize>, "DsBlock", [depthwise, bn1, pointwise, bn2]);
fields_footprint!(
    DsBlock<const C: usize>,
    2,
    [DepthwiseConv2d<C, 3>, BatchNorm2d<C>, Conv2d<C, C, 1>, BatchNorm2d<C>]
);

impl<'t, N: Dim, H: Dim, W: Dim, B: Backend, const C: usize>
    Forward<Tensor<'t, (N, Const<C>, H, W), B>> for DsBlock<C>
{
    type Output = Tensor<'t, (N, Const<C>, usize, usize), B>;
    fn forward(&self, x: Tensor<'t, (N, Const<C>, H, W), B>) -> Self::Output {
        let x = self.bn1.forward(self.depthwise.forward(x)).relu();
        self.bn2.forward(self.pointwise.forward(x)).relu()
    }
}

/// MLPerf Tiny's keyword-spotting DS-CNN: on `[N, 1, 49, 10]` MFCC maps, a
/// 10×4 stride-2 convolution to 64 channels with TFLite's SAME padding (4
/// rows above, 5 below, a column each side: `[N, 64, 25, 5]`), batch norm,
/// ReLU; four [`DsBlock`]s of 64 channels; the average over the whole
/// 25×5 map; a linear layer to 12 logits.
///
/// PyTorch's names: `stem`, `bn`, `blocks.0` … `blocks.3` (each
/// `depthwise`, `bn1`, `pointwise`, `bn2`) and `fc`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KwsDsCnn {
    /// The 10×4 stride-2 convolution, 1 → 64 channels.
    pub stem: Conv2dWith<1, 64, 10, 4>,
    /// Its batch norm.
    pub bn: BatchNorm2d<64>,
    /// The four depthwise-separable blocks (PyTorch's `nn.ModuleList`).
    pub blocks: [DsBlock<64>; 4],
    /// The classifier, 64 → 12.
    pub fc: Linear<64, 12>,
}

impl KwsDsCnn {
    /// Multiply-adds of one `[1, 49, 10]` sample: the stem's
    /// `25 · 5 · 64 · 10 · 4`, each block's depthwise `25 · 5 · 64 · 9` and
    /// pointwise `25 · 5 · 64 · 64`, the classifier's `64 · 12` (batch norms,
    /// biases, ReLUs and the pooling not counted, as MLPerf Tiny does).
    pub const MACS: usize = 125 * 64 * 40 + 4 * (125 * 64 * 9 + 125 * 64 * 64) + 64 * 12;
}

impl Build for KwsDsCnn {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Ok(KwsDsCnn {
            stem: Conv2dWith::new(same(2), mem, rng)?,
            bn: BatchNorm2d::new(mem)?,
            blocks: [
                DsBlock::build(mem, rng)?,
                DsBlock::build(mem, rng)?,
                DsBlock::build(mem, rng)?,
                DsBlock::build(mem, rng)?,
            ],
            fc: Linear::build(mem, rng)?,
        })
    }
}

/// The names of the blocks' indices.
const INDEX: [&str; 4] = ["0", "1", "2", "3"];

impl Module for KwsDsCnn {
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        name.with("stem", |n| self.stem.visit(n, f));
        name.with("bn", |n| self.bn.visit(n, f));
        name.with("blocks", |n| {
            for (i, b) in self.blocks.iter().enumerate() {
                compact_loop!();
                n.with(INDEX[i], |n| b.visit(n, f));
            }
        });
        name.with("fc", |n| self.fc.visit(n, f));
    }

    fn visit_buffers(&self, name: &mut Name, f: &mut dyn FnMut(&BufferInfo<'_>)) {
        name.with("bn", |n| self.bn.visit_buffers(n, f));
        name.with("blocks", |n| {
            for (i, b) in self.blocks.iter().enumerate() {
                compact_loop!();
                n.with(INDEX[i], |n| b.visit_buffers(n, f));
            }
        });
    }

    fn set_training(&mut self, training: bool) {
        self.bn.set_training(training);
        for b in &mut self.blocks {
            compact_loop!();
            b.set_training(training);
        }
    }

    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result {
        f.write_str("KwsDsCnn(\n")?;
        pad(f, indent + 1)?;
        f.write_str("(stem): ")?;
        self.stem.fmt_module(f, indent + 1)?;
        f.write_str("\n")?;
        pad(f, indent + 1)?;
        f.write_str("(bn): ")?;
        self.bn.fmt_module(f, indent + 1)?;
        f.write_str("\n")?;
        pad(f, indent + 1)?;
        f.write_str("(blocks): ModuleList(\n")?;
        for (i, b) in self.blocks.iter().enumerate() {
            compact_loop!();
            pad(f, indent + 2)?;
            write!(f, "({i}): ")?;
            b.fmt_module(f, indent + 2)?;
            f.write_str("\n")?;
        }
        pad(f, indent + 1)?;
        f.write_str(")\n")?;
        pad(f, indent + 1)?;
        f.write_str("(fc): ")?;
        self.fc.fmt_module(f, indent + 1)?;
        f.write_str("\n")?;
        pad(f, indent)?;
        f.write_str(")")
    }
}

impl Footprint for KwsDsCnn {
    const PARAMS: usize = <Conv2dWith<1, 64, 10, 4> as Footprint>::PARAMS
        + <BatchNorm2d<64> as Footprint>::PARAMS
        + 4 * <DsBlock<64> as Footprint>::PARAMS
        + <Linear<64, 12> as Footprint>::PARAMS;
    const BUFFERS: usize =
        <BatchNorm2d<64> as Footprint>::BUFFERS + 4 * <DsBlock<64> as Footprint>::BUFFERS;
    // The stem's ReLU and the global average pooling's nodes besides.
    const NODES: usize = <Conv2dWith<1, 64, 10, 4> as Footprint>::NODES
        + <BatchNorm2d<64> as Footprint>::NODES
        + 1
        + 4 * <DsBlock<64> as Footprint>::NODES
        + <super::GlobalAvgPool2d as Footprint>::NODES
        + <Linear<64, 12> as Footprint>::NODES;
    const IN_FEATURES: Option<usize> = None;
    const OUT_FEATURES: Option<usize> = None;
    const SCRATCH_FIXED: usize = SCRATCH_UNKNOWN;
    const SCRATCH_PER_FEATURE: usize = SCRATCH_UNKNOWN;
}

impl<'t, N: Dim, H: Dim, W: Dim, B: Backend> Forward<Tensor<'t, (N, Const<1>, H, W), B>>
    for KwsDsCnn
{
    type Output = Tensor<'t, (N, Const<12>), B>;
    fn forward(&self, x: Tensor<'t, (N, Const<1>, H, W), B>) -> Self::Output {
        let mut x = self.bn.forward(self.stem.forward(x)).relu();
        for b in &self.blocks {
            compact_loop!();
            x = b.forward(x);
        }
        self.fc.forward(x.global_avg_pool2d())
    }
}

// ============================================================ ResNet-8

/// A residual block that keeps its `C` channels and size: 3×3 convolution
/// (SAME), batch norm, ReLU, 3×3 convolution, batch norm, the input added,
/// ReLU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidualBlock<const C: usize> {
    /// The first 3×3 convolution.
    pub conv1: Conv2d<C, C, 3, 1, 1>,
    /// Its batch norm.
    pub bn1: BatchNorm2d<C>,
    /// The second 3×3 convolution.
    pub conv2: Conv2d<C, C, 3, 1, 1>,
    /// Its batch norm.
    pub bn2: BatchNorm2d<C>,
}

impl<const C: usize> Build for ResidualBlock<C> {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Ok(ResidualBlock {
            conv1: Conv2d::build(mem, rng)?,
            bn1: BatchNorm2d::new(mem)?,
            conv2: Conv2d::build(mem, rng)?,
            bn2: BatchNorm2d::new(mem)?,
        })
    }
}

fields_module!(ResidualBlock<const C: usize>, "ResidualBlock", [conv1, bn1, conv2, bn2]);
// Two ReLUs and the sum.
fields_footprint!(
    ResidualBlock<const C: usize>,
    3,
    [Conv2d<C, C, 3, 1, 1>, BatchNorm2d<C>, Conv2d<C, C, 3, 1, 1>, BatchNorm2d<C>]
);

impl<'t, N: Dim, B: Backend, const C: usize> Forward<Map<'t, N, C, B>> for ResidualBlock<C> {
    type Output = Map<'t, N, C, B>;
    fn forward(&self, x: Map<'t, N, C, B>) -> Map<'t, N, C, B> {
        let y = self.bn1.forward(self.conv1.forward(x)).relu();
        let y = self.bn2.forward(self.conv2.forward(y));
        (y + x).relu()
    }
}

/// A residual block from `I` to `O` channels at half the size: 3×3 stride-2
/// convolution (SAME: one more row and column below and right), batch norm,
/// ReLU, 3×3 convolution, batch norm, plus the shortcut (a 1×1 stride-2
/// convolution with a bias and no batch norm, as the reference Keras
/// model's), ReLU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DownsampleBlock<const I: usize, const O: usize> {
    /// The first 3×3 convolution, stride 2, SAME.
    pub conv1: Conv2dWith<I, O, 3, 3>,
    /// Its batch norm.
    pub bn1: BatchNorm2d<O>,
    /// The second 3×3 convolution.
    pub conv2: Conv2d<O, O, 3, 1, 1>,
    /// Its batch norm.
    pub bn2: BatchNorm2d<O>,
    /// The 1×1 stride-2 convolution of the input.
    pub shortcut: Conv2d<I, O, 1, 2>,
}

impl<const I: usize, const O: usize> Build for DownsampleBlock<I, O> {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Ok(DownsampleBlock {
            conv1: Conv2dWith::new(same(2), mem, rng)?,
            bn1: BatchNorm2d::new(mem)?,
            conv2: Conv2d::build(mem, rng)?,
            bn2: BatchNorm2d::new(mem)?,
            shortcut: Conv2d::build(mem, rng)?,
        })
    }
}

fields_module!(
    DownsampleBlock<const I: usize, const O: usize>,
    "DownsampleBlock",
    [conv1, bn1, conv2, bn2, shortcut]
);
fields_footprint!(
    DownsampleBlock<const I: usize, const O: usize>,
    3,
    [
        Conv2dWith<I, O, 3, 3>,
        BatchNorm2d<O>,
        Conv2d<O, O, 3, 1, 1>,
        BatchNorm2d<O>,
        Conv2d<I, O, 1, 2>
    ]
);

impl<'t, N: Dim, B: Backend, const I: usize, const O: usize> Forward<Map<'t, N, I, B>>
    for DownsampleBlock<I, O>
{
    type Output = Map<'t, N, O, B>;
    fn forward(&self, x: Map<'t, N, I, B>) -> Map<'t, N, O, B> {
        let y = self.bn1.forward(self.conv1.forward(x)).relu();
        let y = self.bn2.forward(self.conv2.forward(y));
        (y + self.shortcut.forward(x)).relu()
    }
}

/// MLPerf Tiny's image-classification ResNet-8 (16 filters) on
/// `[N, 3, 32, 32]`: a 3×3 convolution to 16 channels, batch norm, ReLU;
/// a [`ResidualBlock`] of 16 channels; [`DownsampleBlock`]s to 32 channels
/// (16×16) and 64 channels (8×8); the average over the 8×8 map; a linear
/// layer to 10 logits.
///
/// PyTorch's names: `stem`, `bn`, `stack1` (`conv1`, `bn1`, `conv2`,
/// `bn2`), `stack2` and `stack3` (the same and `shortcut`), `fc`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResNet8 {
    /// The 3×3 convolution, 3 → 16 channels.
    pub stem: Conv2d<3, 16, 3, 1, 1>,
    /// Its batch norm.
    pub bn: BatchNorm2d<16>,
    /// The first stack: 16 channels, 32×32.
    pub stack1: ResidualBlock<16>,
    /// The second stack: 32 channels, 16×16.
    pub stack2: DownsampleBlock<16, 32>,
    /// The third stack: 64 channels, 8×8.
    pub stack3: DownsampleBlock<32, 64>,
    /// The classifier, 64 → 10.
    pub fc: Linear<64, 10>,
}

impl ResNet8 {
    /// Multiply-adds of one `[3, 32, 32]` sample: each convolution's output
    /// positions times its weight's size, plus the classifier's `64 · 10`
    /// (batch norms, biases, sums, ReLUs and the pooling not counted).
    pub const MACS: usize = 32 * 32 * 16 * 27
        + 2 * (32 * 32 * 16 * 144)
        + 16 * 16 * 32 * (144 + 288 + 16)
        + 8 * 8 * 64 * (288 + 576 + 32)
        + 64 * 10;
}

impl Build for ResNet8 {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Ok(ResNet8 {
            stem: Conv2d::build(mem, rng)?,
            bn: BatchNorm2d::new(mem)?,
            stack1: ResidualBlock::build(mem, rng)?,
            stack2: DownsampleBlock::build(mem, rng)?,
            stack3: DownsampleBlock::build(mem, rng)?,
            fc: Linear::build(mem, rng)?,
        })
    }
}

fields_module!(ResNet8, "ResNet8", [stem, bn, stack1, stack2, stack3, fc]);
// The stem's ReLU.
fields_footprint!(
    ResNet8,
    1 + <super::GlobalAvgPool2d as Footprint>::NODES,
    [
        Conv2d<3, 16, 3, 1, 1>,
        BatchNorm2d<16>,
        ResidualBlock<16>,
        DownsampleBlock<16, 32>,
        DownsampleBlock<32, 64>,
        Linear<64, 10>
    ]
);

impl<'t, N: Dim, H: Dim, W: Dim, B: Backend> Forward<Tensor<'t, (N, Const<3>, H, W), B>>
    for ResNet8
{
    type Output = Tensor<'t, (N, Const<10>), B>;
    fn forward(&self, x: Tensor<'t, (N, Const<3>, H, W), B>) -> Self::Output {
        let x = self.bn.forward(self.stem.forward(x)).relu();
        let x = self
            .stack3
            .forward(self.stack2.forward(self.stack1.forward(x)));
        self.fc.forward(x.global_avg_pool2d())
    }
}

// ===================================================== Deep AutoEncoder

/// One hidden layer of the [`DeepAutoEncoder`]: a `Linear` of `I` to `O`
/// features, a batch norm ([`BatchNorm1d`]), ReLU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DenseBlock<const I: usize, const O: usize> {
    /// The fully connected layer.
    pub fc: Linear<I, O>,
    /// Its batch norm (folded into `fc` on export, in evaluation mode).
    pub bn: BatchNorm1d<O>,
}

impl<const I: usize, const O: usize> Build for DenseBlock<I, O> {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Ok(DenseBlock {
            fc: Linear::build(mem, rng)?,
            bn: BatchNorm1d::new(mem)?,
        })
    }
}

fields_module!(DenseBlock<const I: usize, const O: usize>, "DenseBlock", [fc, bn]);
// The ReLU.
fields_footprint!(
    DenseBlock<const I: usize, const O: usize>,
    1,
    [Linear<I, O>, BatchNorm1d<O>]
);

impl<'t, N: Dim, B: Backend, const I: usize, const O: usize> Forward<Tensor<'t, (N, Const<I>), B>>
    for DenseBlock<I, O>
{
    type Output = Tensor<'t, (N, Const<O>), B>;
    fn forward(&self, x: Tensor<'t, (N, Const<I>), B>) -> Self::Output {
        self.bn.forward(self.fc.forward(x)).relu()
    }
}

/// MLPerf Tiny's anomaly-detection Deep AutoEncoder on `[N, 640]` (five
/// frames of 128 log-mel bins): four [`DenseBlock`]s of 128 features, a
/// bottleneck [`DenseBlock`] of 8 (batch norm and ReLU too, as the
/// reference Keras model's), four [`DenseBlock`]s of 128, and a `Linear`
/// back to 640 features (the reconstruction; its error is the anomaly
/// score).
///
/// PyTorch's names: `enc1` … `enc4`, `bottleneck`, `dec1` … `dec4` (each
/// `fc`, `bn`) and `out`.
///
/// ```
/// use ember_nn_core::nn::zoo::DeepAutoEncoder;
/// use ember_nn_core::nn::{Build, Footprint, Forward, Module};
/// use ember_nn_core::prelude::*;
/// let mut buf = vec![0.0f32; 1 << 20];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let mut model = DeepAutoEncoder::build(&mut mem, &mut Rng::new(0))?;
/// model.eval();
/// assert_eq!(DeepAutoEncoder::PARAMS, 267_928);
/// let g = Graph::new(&mut mem);
/// let y = model.forward(g.from_fn((2usize, Const::<640>), |_| 0.5));
/// assert_eq!(y.dims().as_slice(), &[2, 640]);
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeepAutoEncoder {
    /// 640 → 128.
    pub enc1: DenseBlock<640, 128>,
    /// 128 → 128.
    pub enc2: DenseBlock<128, 128>,
    /// 128 → 128.
    pub enc3: DenseBlock<128, 128>,
    /// 128 → 128.
    pub enc4: DenseBlock<128, 128>,
    /// 128 → 8, the code.
    pub bottleneck: DenseBlock<128, 8>,
    /// 8 → 128.
    pub dec1: DenseBlock<8, 128>,
    /// 128 → 128.
    pub dec2: DenseBlock<128, 128>,
    /// 128 → 128.
    pub dec3: DenseBlock<128, 128>,
    /// 128 → 128.
    pub dec4: DenseBlock<128, 128>,
    /// 128 → 640, the reconstruction (no batch norm, no activation).
    pub out: Linear<128, 640>,
}

impl DeepAutoEncoder {
    /// Input (and output) features: five frames of 128 log-mel bins.
    pub const FEATURES: usize = 640;
    /// Multiply-adds of one sample: the weights' sizes,
    /// `2 · 640 · 128 + 6 · 128 · 128 + 2 · 128 · 8` (batch norms, folded
    /// on export, biases and ReLUs not counted).
    pub const MACS: usize = 2 * 640 * 128 + 6 * 128 * 128 + 2 * 128 * 8;
}

impl Build for DeepAutoEncoder {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Ok(DeepAutoEncoder {
            enc1: DenseBlock::build(mem, rng)?,
            enc2: DenseBlock::build(mem, rng)?,
            enc3: DenseBlock::build(mem, rng)?,
            enc4: DenseBlock::build(mem, rng)?,
            bottleneck: DenseBlock::build(mem, rng)?,
            dec1: DenseBlock::build(mem, rng)?,
            dec2: DenseBlock::build(mem, rng)?,
            dec3: DenseBlock::build(mem, rng)?,
            dec4: DenseBlock::build(mem, rng)?,
            out: Linear::build(mem, rng)?,
        })
    }
}

fields_module!(
    DeepAutoEncoder,
    "DeepAutoEncoder",
    [enc1, enc2, enc3, enc4, bottleneck, dec1, dec2, dec3, dec4, out]
);
fields_footprint!(
    DeepAutoEncoder,
    0,
    [
        DenseBlock<640, 128>,
        DenseBlock<128, 128>,
        DenseBlock<128, 128>,
        DenseBlock<128, 128>,
        DenseBlock<128, 8>,
        DenseBlock<8, 128>,
        DenseBlock<128, 128>,
        DenseBlock<128, 128>,
        DenseBlock<128, 128>,
        Linear<128, 640>
    ]
);

impl<'t, N: Dim, B: Backend> Forward<Tensor<'t, (N, Const<640>), B>> for DeepAutoEncoder {
    type Output = Tensor<'t, (N, Const<640>), B>;
    fn forward(&self, x: Tensor<'t, (N, Const<640>), B>) -> Self::Output {
        let x = self
            .enc4
            .forward(self.enc3.forward(self.enc2.forward(self.enc1.forward(x))));
        let x = self.dec1.forward(self.bottleneck.forward(x));
        let x = self.dec4.forward(self.dec3.forward(self.dec2.forward(x)));
        self.out.forward(x)
    }
}

// ============================================== MobileNetV1 ×0.25 (VWW)

/// A depthwise-separable block of MobileNetV1 from `I` to `O` channels: a
/// depthwise 3×3 convolution (SAME, stride 1 or 2), batch norm, ReLU, a
/// pointwise 1×1 convolution, batch norm, ReLU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeparableBlock<const I: usize, const O: usize> {
    /// The depthwise 3×3 convolution, `groups = I`.
    pub depthwise: DepthwiseConv2d<I, 3>,
    /// Its batch norm.
    pub bn1: BatchNorm2d<I>,
    /// The pointwise 1×1 convolution.
    pub pointwise: Conv2d<I, O, 1>,
    /// Its batch norm.
    pub bn2: BatchNorm2d<O>,
}

impl<const I: usize, const O: usize> SeparableBlock<I, O> {
    /// A block whose depthwise convolution has `stride` (SAME padding).
    pub fn new<B: Backend>(stride: usize, mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Ok(SeparableBlock {
            depthwise: DepthwiseConv2d::new(same(stride), mem, rng)?,
            bn1: BatchNorm2d::new(mem)?,
            pointwise: Conv2d::build(mem, rng)?,
            bn2: BatchNorm2d::new(mem)?,
        })
    }
}

fields_module!(
    SeparableBlock<const I: usize, const O: usize>,
    "SeparableBlock",
    [depthwise, bn1, pointwise, bn2]
);
fields_footprint!(
    SeparableBlock<const I: usize, const O: usize>,
    2,
    [DepthwiseConv2d<I, 3>, BatchNorm2d<I>, Conv2d<I, O, 1>, BatchNorm2d<O>]
);

impl<'t, N: Dim, H: Dim, W: Dim, B: Backend, const I: usize, const O: usize>
    Forward<Tensor<'t, (N, Const<I>, H, W), B>> for SeparableBlock<I, O>
{
    type Output = Map<'t, N, O, B>;
    fn forward(&self, x: Tensor<'t, (N, Const<I>, H, W), B>) -> Self::Output {
        let x = self.bn1.forward(self.depthwise.forward(x)).relu();
        self.bn2.forward(self.pointwise.forward(x)).relu()
    }
}

/// MLPerf Tiny's visual-wake-words MobileNetV1 (width ×0.25) on
/// `[N, 3, 96, 96]`: a 3×3 stride-2 convolution to 8 channels (SAME), batch
/// norm, ReLU; thirteen [`SeparableBlock`]s (8→16, 16→32 /2, 32→32,
/// 32→64 /2, 64→64, 64→128 /2, five of 128, 128→256 /2, 256→256; `/2`: a
/// stride-2 depthwise convolution) down to a 3×3 map; the average over it;
/// a linear layer to 2 logits. Its convolutions have biases (the reference
/// has none before its batch norms; folded on export, they change no
/// multiply-add).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MobileNetV1Vww {
    /// The 3×3 stride-2 convolution, 3 → 8 channels.
    pub stem: Conv2dWith<3, 8, 3, 3>,
    /// Its batch norm.
    pub bn: BatchNorm2d<8>,
    /// 8 → 16, 48×48.
    pub block1: SeparableBlock<8, 16>,
    /// 16 → 32, to 24×24.
    pub block2: SeparableBlock<16, 32>,
    /// 32 → 32.
    pub block3: SeparableBlock<32, 32>,
    /// 32 → 64, to 12×12.
    pub block4: SeparableBlock<32, 64>,
    /// 64 → 64.
    pub block5: SeparableBlock<64, 64>,
    /// 64 → 128, to 6×6.
    pub block6: SeparableBlock<64, 128>,
    /// 128 → 128.
    pub block7: SeparableBlock<128, 128>,
    /// 128 → 128.
    pub block8: SeparableBlock<128, 128>,
    /// 128 → 128.
    pub block9: SeparableBlock<128, 128>,
    /// 128 → 128.
    pub block10: SeparableBlock<128, 128>,
    /// 128 → 128.
    pub block11: SeparableBlock<128, 128>,
    /// 128 → 256, to 3×3.
    pub block12: SeparableBlock<128, 256>,
    /// 256 → 256.
    pub block13: SeparableBlock<256, 256>,
    /// The classifier, 256 → 2.
    pub fc: Linear<256, 2>,
}

impl MobileNetV1Vww {
    /// Multiply-adds of one `[3, 96, 96]` sample: each convolution's output
    /// positions times its weight's size, plus the classifier's `256 · 2`.
    pub const MACS: usize = 48 * 48 * 8 * 27
        + 48 * 48 * (8 * 9 + 16 * 8)
        + 24 * 24 * (16 * 9 + 32 * 16)
        + 24 * 24 * (32 * 9 + 32 * 32)
        + 12 * 12 * (32 * 9 + 64 * 32)
        + 12 * 12 * (64 * 9 + 64 * 64)
        + 6 * 6 * (64 * 9 + 128 * 64)
        + 5 * 6 * 6 * (128 * 9 + 128 * 128)
        + 3 * 3 * (128 * 9 + 256 * 128)
        + 3 * 3 * (256 * 9 + 256 * 256)
        + 256 * 2;
}

impl Build for MobileNetV1Vww {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Ok(MobileNetV1Vww {
            stem: Conv2dWith::new(same(2), mem, rng)?,
            bn: BatchNorm2d::new(mem)?,
            block1: SeparableBlock::new(1, mem, rng)?,
            block2: SeparableBlock::new(2, mem, rng)?,
            block3: SeparableBlock::new(1, mem, rng)?,
            block4: SeparableBlock::new(2, mem, rng)?,
            block5: SeparableBlock::new(1, mem, rng)?,
            block6: SeparableBlock::new(2, mem, rng)?,
            block7: SeparableBlock::new(1, mem, rng)?,
            block8: SeparableBlock::new(1, mem, rng)?,
            block9: SeparableBlock::new(1, mem, rng)?,
            block10: SeparableBlock::new(1, mem, rng)?,
            block11: SeparableBlock::new(1, mem, rng)?,
            block12: SeparableBlock::new(2, mem, rng)?,
            block13: SeparableBlock::new(1, mem, rng)?,
            fc: Linear::build(mem, rng)?,
        })
    }
}

fields_module!(
    MobileNetV1Vww,
    "MobileNetV1Vww",
    [
        stem, bn, block1, block2, block3, block4, block5, block6, block7, block8, block9, block10,
        block11, block12, block13, fc
    ]
);
// The stem's ReLU.
fields_footprint!(
    MobileNetV1Vww,
    1 + <super::GlobalAvgPool2d as Footprint>::NODES,
    [
        Conv2dWith<3, 8, 3, 3>,
        BatchNorm2d<8>,
        SeparableBlock<8, 16>,
        SeparableBlock<16, 32>,
        SeparableBlock<32, 32>,
        SeparableBlock<32, 64>,
        SeparableBlock<64, 64>,
        SeparableBlock<64, 128>,
        SeparableBlock<128, 128>,
        SeparableBlock<128, 128>,
        SeparableBlock<128, 128>,
        SeparableBlock<128, 128>,
        SeparableBlock<128, 128>,
        SeparableBlock<128, 256>,
        SeparableBlock<256, 256>,
        Linear<256, 2>
    ]
);

impl<'t, N: Dim, H: Dim, W: Dim, B: Backend> Forward<Tensor<'t, (N, Const<3>, H, W), B>>
    for MobileNetV1Vww
{
    type Output = Tensor<'t, (N, Const<2>), B>;
    fn forward(&self, x: Tensor<'t, (N, Const<3>, H, W), B>) -> Self::Output {
        let x = self.bn.forward(self.stem.forward(x)).relu();
        let x = self
            .block3
            .forward(self.block2.forward(self.block1.forward(x)));
        let x = self
            .block6
            .forward(self.block5.forward(self.block4.forward(x)));
        let x = self
            .block9
            .forward(self.block8.forward(self.block7.forward(x)));
        let x = self
            .block12
            .forward(self.block11.forward(self.block10.forward(x)));
        self.fc.forward(self.block13.forward(x).global_avg_pool2d())
    }
}
