//! Convolutional networks deploy as they were trained: the forward pass of
//! a CNN (convolutions with stride, padding, dilation and groups, pooling,
//! batch norm, residual additions) is read off into a graph file (format
//! version 3, `deploy::GraphModel`), whose reference kernels give the
//! training graph's outputs; the parser refuses every malformed file.

use ember_nn_core::deploy::GraphCalibration;
use ember_nn_core::deploy::{self, Activation, Aligned, ExportError, FormatError, GraphModel};
use ember_nn_core::deploy::{InferError, Model, NodeOp, Probe};
use ember_nn_core::nn::{
    self, AvgPool1d, AvgPool2d, BatchNorm2d, Build, Conv1d, Conv2d, Conv2dWith, DepthwiseConv2d,
    Flatten, Forward, Linear, MaxPool1d, MaxPool2d, Module, ReLU,
};
use ember_nn_core::prelude::*;

/// A file's storage: 16-byte aligned blocks.
type Store = Vec<Aligned<[u8; 16]>>;

/// Bytes aligned for the format, of any length.
fn aligned(len: usize) -> Store {
    vec![Aligned([0u8; 16]); len.div_ceil(16)]
}

fn bytes(v: &mut [Aligned<[u8; 16]>]) -> &mut [u8] {
    // SAFETY: `Aligned<[u8; 16]>` is 16 bytes with no padding
    // (`repr(C, align(16))` over `[u8; 16]`), so the slice's memory is
    // `16 · len` initialised bytes, borrowed mutably for the result's life.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), 16 * v.len()) }
}

/// Exports through `forward`; the file's bytes (aligned) and length.
fn export<M: Module, S: Shape>(
    model: &M,
    mem: &mut Memory<'_, Cpu>,
    forward: impl for<'t> Fn(&Probe<'t, Cpu>) -> Tensor<'t, S, Cpu>,
) -> Result<(Store, usize), ExportError> {
    let plan = deploy::plan(model, mem, &forward)?;
    let mut file = aligned(plan.file_len());
    let mut scratch = vec![0.0f32; plan.scratch_len()];
    let n = deploy::export_f32(model, mem, forward, bytes(&mut file), &mut scratch)?;
    assert_eq!(n, plan.file_len());
    Ok((file, n))
}

/// Draws every parameter afresh (so that biases and batch norms are not
/// their identity initial values).
fn randomize<M: Module>(model: &M, mem: &mut Memory<'_, Cpu>, rng: &mut Rng) {
    let mut spans = Vec::new();
    model.named_parameters(&mut |p| spans.push(p.param.value));
    for s in spans {
        let v: Vec<f32> = (0..s.len).map(|_| rng.uniform_in(-0.8, 0.8)).collect();
        mem.write(s, &v).unwrap();
    }
}

/// The training graph's outputs (no gradient) for each of `xs` of `shape`
/// per sample, against the file's through its kernels, to rounding.
fn assert_same<M, X, Y>(
    file: &[u8],
    xs: &[Vec<f32>],
    mem: &mut Memory<'_, Cpu>,
    model: &M,
    shape: X,
) where
    X: Fn(usize) -> Y,
    Y: Shape,
    M: for<'t> Forward<Tensor<'t, Y, Cpu>>,
    for<'t> <M as Forward<Tensor<'t, Y, Cpu>>>::Output: Readable,
{
    let graph = GraphModel::parse(file).expect("valid graph file");
    let mut scratch = vec![0.0f32; graph.scratch_len()];
    for x in xs {
        let expected = {
            let g = Graph::new(mem);
            let y = g.no_grad(|| model.forward(g.from_slice(shape(1), x)));
            y.read_all()
        };
        let got = graph.infer_f32(x, &mut scratch).expect("runs");
        assert_eq!(got.len(), expected.len());
        for (a, b) in got.iter().zip(&expected) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{got:?} vs {expected:?}"
            );
        }
    }
}

/// A tensor whose values can be read out.
trait Readable {
    fn read_all(&self) -> Vec<f32>;
}
impl<S: Shape> Readable for Tensor<'_, S, Cpu> {
    fn read_all(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.numel()];
        self.read(&mut out).unwrap();
        out
    }
}

fn inputs(n: usize, width: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| (0..width).map(|_| rng.uniform_in(-1.0, 1.0)).collect())
        .collect()
}

fn ops(file: &[u8]) -> Vec<(NodeOp, Activation)> {
    let g = GraphModel::parse(file).unwrap();
    g.nodes().map(|(h, _)| (h.op, h.activation)).collect()
}

#[test]
fn the_tutorial_cnn_deploys_as_trained() {
    let mut buf = vec![0.0f32; 1 << 20];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Tutorial::build(&mut mem, &mut Rng::new(0)).unwrap();
    let shape = |n: usize| (n, Const::<1>, Const::<28>, Const::<28>);
    let (mut file, n) = export(&model, &mut mem, |p| {
        model.forward(p.input(shape(p.rows())))
    })
    .unwrap();
    let file = &bytes(&mut file)[..n];
    let (r, i, d) = (Activation::Relu, Activation::Identity, NodeOp::Dense);
    assert_eq!(
        ops(file),
        [
            (NodeOp::Input, i),
            (NodeOp::Conv, r),
            (NodeOp::MaxPool, i),
            (NodeOp::Conv, r),
            (NodeOp::MaxPool, i),
            (d, r),
            (d, r),
            (d, i),
        ]
    );
    let g = GraphModel::parse(file).unwrap();
    assert_eq!((g.input_shape(), g.output_features()), ([1, 28, 28], 10));
    // Two adjacent maps at most: conv1's 6×24×24 and the pool's 6×12×12.
    assert_eq!(g.scratch_len(), 6 * 24 * 24 + 6 * 12 * 12);
    // A dense chain's file is the dense format; a CNN's is not.
    assert_eq!(Model::parse(file).unwrap_err(), FormatError::GraphFile);
    assert_same(file, &inputs(3, 784, 1), &mut mem, &model, shape);
}

#[path = "support/cnn_models.rs"]
mod cnn_models;
use cnn_models::{Residual, Tutorial};

#[test]
fn a_residual_block_deploys_with_its_skip_and_an_exact_arena() {
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(3);
    let model = Residual::build(&mut mem, &mut rng).unwrap();
    randomize(&model, &mut mem, &mut rng);
    let shape = |n: usize| (n, Const::<2>, 6usize, 5usize);
    let (mut file, n) = export(&model, &mut mem, |p| {
        model.forward(p.input(shape(p.rows())))
    })
    .unwrap();
    let file = &bytes(&mut file)[..n];
    let g = GraphModel::parse(file).unwrap();
    let nodes: Vec<_> = g.nodes().map(|(h, _)| h).collect();
    let add = nodes
        .iter()
        .position(|h| h.op == NodeOp::Add)
        .expect("an addition");
    // The addition reads the stem's output (its skip) and conv2's.
    assert_eq!(nodes[add].activation, Activation::Relu);
    let reads: Vec<NodeOp> = nodes[add].inputs.iter().map(|&i| nodes[i].op).collect();
    assert_eq!(reads, [NodeOp::Conv, NodeOp::Conv]);
    assert!(
        nodes[add].inputs.contains(&1),
        "the skip is the stem's output"
    );
    // Three maps of 4×6×5 live at once (the skip, conv1's, conv2's).
    assert_eq!(g.scratch_len(), 3 * 4 * 6 * 5);
    assert_same(file, &inputs(3, 60, 2), &mut mem, &model, shape);
    // It runs in exactly its scratch, and not in one float less.
    let x = vec![0.5f32; 60];
    let mut scratch = vec![0.0f32; g.scratch_len()];
    assert!(g.infer_f32(&x, &mut scratch).is_ok());
    assert_eq!(
        g.infer_f32(&x, &mut scratch[..g.scratch_len() - 1]),
        Err(InferError::ScratchTooSmall {
            needed: g.scratch_len()
        })
    );
}

/// Every window option, groups, a batch norm to fold and 1-D layers.
#[derive(nn::Module)]
struct Windows {
    /// Stride 2 with TFLite's SAME padding: one more row and column after.
    same2: Conv2dWith<1, 4, 4, 3>,
    norm: BatchNorm2d<4>,
    /// Depthwise, dilated.
    depthwise: DepthwiseConv2d<4, 3>,
    /// Asymmetric explicit padding.
    padded: Conv2dWith<4, 6, 2, 2>,
    avg: AvgPool2d<3, 2, 1>,
    head: Linear<36, 5>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<1>, usize, usize), B>> for Windows {
    type Output = Tensor<'t, (usize, Const<5>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<1>, usize, usize), B>) -> Self::Output {
        let x = self.norm.forward(self.same2.forward(x)).relu();
        let x = self.depthwise.forward(x).relu();
        let x = self.avg.forward(self.padded.forward(x));
        let [n, ..] = x.dims().dims;
        self.head.forward(x.reshape_to((n, Const::<36>)))
    }
}

#[test]
fn windows_groups_and_a_folded_batch_norm_deploy_as_trained() {
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(5);
    let same2 = ConvOptions {
        stride: [2, 2],
        padding: Padding::Same,
        ..ConvOptions::default()
    };
    let dilated = ConvOptions {
        padding: Padding::Same,
        dilation: [2, 2],
        ..ConvOptions::default()
    };
    let explicit = ConvOptions {
        padding: Padding::Explicit {
            top: 0,
            bottom: 1,
            left: 1,
            right: 0,
        },
        ..ConvOptions::default()
    };
    let mut model = Windows {
        same2: Conv2dWith::new(same2, &mut mem, &mut rng).unwrap(),
        norm: BatchNorm2d::new(&mut mem).unwrap(),
        depthwise: DepthwiseConv2d::new(dilated, &mut mem, &mut rng).unwrap(),
        padded: Conv2dWith::new(explicit, &mut mem, &mut rng).unwrap(),
        avg: AvgPool2d,
        head: Linear::build(&mut mem, &mut rng).unwrap(),
    };
    randomize(&model, &mut mem, &mut rng);
    let mean: Vec<f32> = (0..4).map(|_| rng.uniform_in(-0.5, 0.5)).collect();
    let var: Vec<f32> = (0..4).map(|_| rng.uniform_in(0.2, 2.0)).collect();
    mem.write(model.norm.running_mean, &mean).unwrap();
    mem.write(model.norm.running_var, &var).unwrap();
    // 9×7 → same2 5×4 → depthwise 5×4 → padded 5×4 → avg 3×2: 6·3·2 = 36.
    let shape = |n: usize| (n, Const::<1>, 9usize, 7usize);
    let fwd = |m: &Windows, mem: &mut Memory<'_, Cpu>| {
        export(m, mem, |p| m.forward(p.input(shape(p.rows()))))
    };
    // In training mode the batch norm normalises by the batch: refused.
    model.train();
    let err = fwd(&model, &mut mem).unwrap_err();
    assert!(
        matches!(err, ExportError::Unsupported { op: "NativeBatchNormBackward", why, .. } if why.contains("eval")),
        "{err}"
    );
    model.eval();
    let (mut file, n) = fwd(&model, &mut mem).unwrap();
    let file = &bytes(&mut file)[..n];
    let g = GraphModel::parse(file).unwrap();
    let convs: Vec<_> = g
        .nodes()
        .filter(|(h, _)| h.op == NodeOp::Conv)
        .map(|(h, _)| h)
        .collect();
    assert_eq!(convs.len(), 3, "the batch norm is folded, not a node");
    assert_eq!(
        convs[0].geometry.pad,
        [1, 1, 2, 1],
        "SAME at stride 2 pads one more after"
    );
    assert_eq!(
        (convs[1].geometry.groups, convs[1].geometry.dilation),
        (4, [2, 2])
    );
    assert_eq!(convs[2].geometry.pad, [0, 1, 1, 0]);
    assert_same(file, &inputs(4, 63, 6), &mut mem, &model, shape);
}

/// A 1-D network: `Conv1d`, pooling along the length, a linear head.
type Signal = (
    Conv1d<2, 4, 3, 1, 1>,
    ReLU,
    MaxPool1d<2>,
    Conv1d<4, 4, 3, 2>,
    AvgPool1d<2>,
    Flatten<8>,
    Linear<8, 3>,
);

#[test]
fn one_dimensional_layers_deploy_as_a_height_of_one() {
    let mut buf = vec![0.0f32; 1 << 17];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(8);
    let model = Signal::build(&mut mem, &mut rng).unwrap();
    randomize(&model, &mut mem, &mut rng);
    let shape = |n: usize| (n, Const::<2>, Const::<20>);
    let (mut file, n) = export(&model, &mut mem, |p| {
        model.forward(p.input(shape(p.rows())))
    })
    .unwrap();
    let file = &bytes(&mut file)[..n];
    assert_eq!(GraphModel::parse(file).unwrap().input_shape(), [2, 1, 20]);
    assert_same(file, &inputs(3, 40, 9), &mut mem, &model, shape);
}

#[derive(nn::Module)]
struct PreActivationSkip {
    conv: Conv2d<1, 2, 3, 1, 1>,
    head: Linear<32, 2>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<1>, Const<4>, Const<4>), B>>
    for PreActivationSkip
{
    type Output = Tensor<'t, (usize, Const<2>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<1>, Const<4>, Const<4>), B>) -> Self::Output {
        let y = self.conv.forward(x);
        let z = y.relu() + y;
        let [n, ..] = z.dims().dims;
        self.head.forward(z.reshape_to((n, Const::<32>)))
    }
}

#[test]
fn what_a_graph_file_cannot_hold_is_refused_by_name() {
    let mut buf = vec![0.0f32; 1 << 17];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = PreActivationSkip::build(&mut mem, &mut Rng::new(0)).unwrap();
    let err = export(&model, &mut mem, |p| {
        model.forward(p.input((p.rows(), Const::<1>, Const::<4>, Const::<4>)))
    })
    .unwrap_err();
    // The activation cannot be folded into the convolution: its value is
    // also read without it.
    assert!(
        matches!(err, ExportError::Unsupported { op: "ReluBackward", why, .. } if why.contains("also read")),
        "{err}"
    );
    // A batch norm after a pooling has no layer to fold into.
    type NormAfterPool = (
        Conv2d<1, 2, 3>,
        MaxPool2d<2>,
        BatchNorm2d<2>,
        Flatten<2>,
        Linear<2, 2>,
    );
    let mut model = NormAfterPool::build(&mut mem, &mut Rng::new(0)).unwrap();
    model.eval();
    let err = export(&model, &mut mem, |p| {
        model.forward(p.input((p.rows(), Const::<1>, Const::<4>, Const::<4>)))
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            ExportError::Unsupported {
                op: "NativeBatchNormBackward",
                ..
            }
        ),
        "{err}"
    );
}

/// The tutorial-sized residual file, for the parser's tests.
fn residual_file() -> (Store, usize) {
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(3);
    let model = Residual::build(&mut mem, &mut rng).unwrap();
    export(&model, &mut mem, |p| {
        model.forward(p.input((p.rows(), Const::<2>, 6usize, 5usize)))
    })
    .unwrap()
}

/// `file` with its CRC made right again after an edit.
fn recrc(file: &mut [u8]) {
    let n = file.len() - 4;
    let crc = deploy::crc32(0, &file[..n]);
    file[n..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn graph_files_are_validated_before_anything_runs() {
    let (mut store, n) = residual_file();
    let file = &mut bytes(&mut store)[..n];
    let good = file.to_vec();
    assert!(GraphModel::parse(file).is_ok());
    // Corruption, truncation, versions.
    file[200] ^= 1;
    assert!(matches!(
        GraphModel::parse(file),
        Err(FormatError::Crc { .. })
    ));
    file.copy_from_slice(&good);
    assert!(matches!(
        GraphModel::parse(&file[..n - 1]),
        Err(FormatError::LengthMismatch { .. })
    ));
    file[4] = 2;
    recrc(file);
    assert_eq!(
        GraphModel::parse(file).unwrap_err(),
        FormatError::UnsupportedVersion(2)
    );
    // Reserved bytes: the fixed header's, and a record's.
    let record = |i: usize| 32 + 96 * i;
    for at in [24, record(1) + 2, record(2) + 58, record(1) + 80] {
        file.copy_from_slice(&good);
        file[at] = 1;
        recrc(file);
        assert!(
            matches!(GraphModel::parse(file), Err(FormatError::Reserved { .. })),
            "byte {at}"
        );
    }
    // A node reading a later node; the output's arena over a live buffer;
    // a window that does not give the output shape.
    file.copy_from_slice(&good);
    file[record(2) + 8] = 5;
    recrc(file);
    assert_eq!(
        GraphModel::parse(file).unwrap_err(),
        FormatError::BadGraph { layer: 2 }
    );
    file.copy_from_slice(&good);
    let g = GraphModel::parse(file).unwrap();
    let add = g.nodes().position(|(h, _)| h.op == NodeOp::Add).unwrap();
    let skip = g.node(1).unwrap().0.arena as u32;
    file[record(add) + 60..record(add) + 64].copy_from_slice(&skip.to_le_bytes());
    recrc(file);
    assert_eq!(
        GraphModel::parse(file).unwrap_err(),
        FormatError::BadArena { layer: add }
    );
    file.copy_from_slice(&good);
    file[record(1) + 38] = 2; // the stem's kernel width: 3 → 2
    recrc(file);
    assert_eq!(
        GraphModel::parse(file).unwrap_err(),
        FormatError::BadGeometry { layer: 1 }
    );
}

#[test]
fn no_edit_of_a_graph_header_makes_parse_or_inference_panic() {
    let (mut store, n) = residual_file();
    let file = &mut bytes(&mut store)[..n];
    let good = file.to_vec();
    let header = u32::from_le_bytes(good[8..12].try_into().unwrap()) as usize;
    let mut rng = Rng::new(17);
    let mut parsed = 0;
    for round in 0..4000 {
        file.copy_from_slice(&good);
        let at = round % header;
        let v = (rng.next_u32() % 256) as u8;
        file[at] = if round % 3 == 0 {
            v
        } else {
            file[at].wrapping_add(1 + (v % 3))
        };
        recrc(file);
        if let Ok(g) = GraphModel::parse(file) {
            parsed += 1;
            let x = vec![0.25f32; g.input_features()];
            let mut scratch = vec![0.0f32; g.scratch_len()];
            let y = g.infer_f32(&x, &mut scratch).expect("a valid file runs");
            assert_eq!(y.len(), g.output_features());
        }
    }
    assert!(
        parsed > 0,
        "some edits (an activation, a parameter) are valid files"
    );
}

/// The int8 file of the f32 graph `file`, calibrated on `inputs`.
fn int8_of(file: &[u8], inputs: &[Vec<f32>]) -> (Store, usize) {
    let g = GraphModel::parse(file).unwrap();
    let mut calib = GraphCalibration::new();
    let mut scratch = vec![0.0f32; g.scratch_len()];
    for x in inputs {
        calib.observe(&g, x, &mut scratch).unwrap();
    }
    let mut q = aligned(deploy::graph_quantized_len(&g));
    let n = deploy::quantize_graph(&g, &calib, bytes(&mut q)).unwrap();
    assert_eq!(n, deploy::graph_quantized_len(&g));
    (q, n)
}

/// The largest difference between the int8 and the f32 file's outputs on
/// `inputs`, in steps of the int8 output.
fn int8_error(f32_file: &[u8], int8_file: &[u8], inputs: &[Vec<f32>]) -> f32 {
    let (f, q) = (
        GraphModel::parse(f32_file).unwrap(),
        GraphModel::parse(int8_file).unwrap(),
    );
    assert!(q.is_int8() && !f.is_int8());
    assert_eq!(q.scratch_len(), f.scratch_len(), "the same plan, in bytes");
    let mut fs = vec![0.0f32; f.scratch_len()];
    let mut qs = vec![0i8; q.scratch_len()];
    let mut qin = vec![0i8; q.input_features()];
    let mut out = vec![0.0f32; q.output_features()];
    let step = q.output_quantization().scale;
    let mut worst = 0.0f32;
    for x in inputs {
        let e = f.infer_f32(x, &mut fs).unwrap();
        q.infer_i8(x, &mut qin, &mut qs, &mut out).unwrap();
        for (a, b) in out.iter().zip(e) {
            worst = worst.max((a - b).abs() / step);
        }
    }
    worst
}

#[test]
fn int8_graphs_follow_their_f32_files() {
    // The residual block (an int8 addition with rescaling, a global
    // average) and the window zoo (SAME, dilation, groups, asymmetric
    // padding, a folded batch norm, an average pooling counting padding).
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(3);
    let model = Residual::build(&mut mem, &mut rng).unwrap();
    randomize(&model, &mut mem, &mut rng);
    let (mut file, n) = export(&model, &mut mem, |p| {
        model.forward(p.input((p.rows(), Const::<2>, 6usize, 5usize)))
    })
    .unwrap();
    let file = &bytes(&mut file)[..n];
    // Calibrated on the inputs it is checked on: no value outside its
    // range (which would saturate whatever the kernels), so the error is
    // the kernels' and the quantization's.
    let xs = inputs(64, 60, 20);
    let (mut q, qn) = int8_of(file, &xs);
    let q = &bytes(&mut q)[..qn];
    let err = int8_error(file, q, &xs);
    assert!(err <= 4.0, "residual: {err} steps");
    let ops_q: Vec<_> = ops(q);
    assert_eq!(ops_q, ops(file), "the same graph");

    type Tiny = (
        Conv2d<1, 4, 3, 1, 1>,
        ReLU,
        MaxPool2d<2>,
        AvgPool2d<3, 1, 1>,
        Flatten<64>,
        Linear<64, 5>,
    );
    let tiny = Tiny::build(&mut mem, &mut rng).unwrap();
    randomize(&tiny, &mut mem, &mut rng);
    let (mut file, n) = export(&tiny, &mut mem, |p| {
        tiny.forward(p.input((p.rows(), Const::<1>, Const::<8>, Const::<8>)))
    })
    .unwrap();
    let file = &bytes(&mut file)[..n];
    let xs = inputs(64, 64, 22);
    let (mut q, qn) = int8_of(file, &xs);
    let q = &bytes(&mut q)[..qn];
    let err = int8_error(file, q, &xs);
    assert!(err <= 4.0, "tiny: {err} steps");
    // A pooling keeps its input's quantization: a file that says otherwise
    // is refused.
    let g = GraphModel::parse(q).unwrap();
    let pool = g
        .nodes()
        .position(|(h, _)| h.op == NodeOp::MaxPool)
        .unwrap();
    let mut edited = aligned(qn);
    let e = &mut bytes(&mut edited)[..qn];
    e.copy_from_slice(q);
    let at = 32 + 96 * pool + 84;
    e[at] = e[at].wrapping_add(1);
    recrc(e);
    assert_eq!(
        GraphModel::parse(e).unwrap_err(),
        FormatError::QuantizationChain { layer: pool }
    );
    e.copy_from_slice(q);
    let stem = 32 + 96; // node 1's record
    e[stem + 80..stem + 84].copy_from_slice(&(-1.0f32).to_le_bytes());
    recrc(e);
    assert_eq!(
        GraphModel::parse(e).unwrap_err(),
        FormatError::BadQuantization { layer: 1 }
    );
    // The f32 entry points refuse int8 files, and the other way round.
    let mut s = vec![0.0f32; g.scratch_len()];
    assert_eq!(
        g.infer_f32(&[0.0; 64], &mut s).unwrap_err(),
        InferError::WrongDtype
    );
}

/// A conv net with smooth activations: after a convolution, a pooling, a
/// residual addition and a dense layer.
#[derive(nn::Module)]
struct Smooth {
    stem: Conv2d<1, 4, 3, 1, 1>,
    pool: MaxPool2d<2>,
    conv: Conv2d<4, 4, 3, 1, 1>,
    hidden: Linear<36, 8>,
    head: Linear<8, 3>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<1>, Const<6>, Const<6>), B>> for Smooth {
    type Output = Tensor<'t, (usize, Const<3>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<1>, Const<6>, Const<6>), B>) -> Self::Output {
        let x = self.stem.forward(x).tanh();
        let x = self.pool.forward(x).sigmoid();
        let y = (x + self.conv.forward(x)).gelu();
        let [n, ..] = y.dims().dims;
        self.head
            .forward(self.hidden.forward(y.reshape_to((n, Const::<36>))).silu())
    }
}

/// An int8 node whose activation is not ReLU or the identity carries an
/// activation table (as dense files do): its pairs lead to the
/// pre-activation's quantization, the table to the output's, the same
/// table the host computes; a file with a bad one is refused.
#[test]
fn int8_graphs_carry_activation_tables() {
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(17);
    let model = Smooth::build(&mut mem, &mut rng).unwrap();
    randomize(&model, &mut mem, &mut rng);
    let (mut file, n) = export(&model, &mut mem, |p| {
        model.forward(p.input((p.rows(), Const::<1>, Const::<6>, Const::<6>)))
    })
    .unwrap();
    let file = &bytes(&mut file)[..n];
    let acts: Vec<_> = ops(file).into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        acts,
        [
            Activation::Identity,
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Identity,
            Activation::Gelu,
            Activation::Silu,
            Activation::Identity,
        ]
    );
    let xs = inputs(64, 36, 50);
    let (mut q, qn) = int8_of(file, &xs);
    let q = &bytes(&mut q)[..qn];
    // Four tables in a row each add a rounding of their own: 4.3 steps.
    let err = int8_error(file, q, &xs);
    assert!(err <= 6.0, "smooth: {err} steps");
    let g = GraphModel::parse(q).unwrap();
    let mut tables = 0;
    for (i, (h, w)) in g.nodes().enumerate() {
        let deploy::LayerWeights::Int8 { table, .. } = w else {
            panic!("int8")
        };
        assert_eq!(
            table.is_some(),
            deploy::ActivationTable::needed(h.activation)
        );
        let Some(t) = table else { continue };
        tables += 1;
        let out = deploy::QuantParams {
            scale: h.out_scale,
            zero: h.out_zero,
        };
        assert_eq!(
            t.values,
            deploy::activation_table(h.activation, t.pre(), out),
            "node {i}"
        );
        if h.op == NodeOp::MaxPool {
            // A pooling's table reads its input's quantization.
            let src = g.nodes().nth(h.inputs[0]).unwrap().0;
            assert_eq!((t.pre_scale, t.pre_zero), (src.out_scale, src.out_zero));
        }
    }
    assert_eq!(tables, 4);
    // Edits of a table the parser refuses: its pre-activation scale, and
    // a pooling's pre-activation zero point that is not its input's.
    let table_of = |node: usize| {
        let r = 32 + 96 * node + 88;
        let header = u32::from_le_bytes(q[8..12].try_into().unwrap()) as usize;
        header + u32::from_le_bytes(q[r..r + 4].try_into().unwrap()) as usize
    };
    let mut edited = aligned(qn);
    let e = &mut bytes(&mut edited)[..qn];
    for (node, at, value, want) in [
        (
            1,
            0,
            (-1.0f32).to_le_bytes(),
            FormatError::BadQuantization { layer: 1 },
        ),
        (
            1,
            8,
            1u32.to_le_bytes(),
            FormatError::BadQuantization { layer: 1 },
        ),
        (
            2,
            4,
            (t_zero(q, table_of(2)) ^ 1).to_le_bytes(),
            FormatError::QuantizationChain { layer: 2 },
        ),
    ] {
        e.copy_from_slice(q);
        let t = table_of(node);
        e[t + at..t + at + 4].copy_from_slice(&value);
        recrc(e);
        assert_eq!(
            GraphModel::parse(e).unwrap_err(),
            want,
            "node {node}, byte {at}"
        );
    }
    // The bytes after a record's table offset are reserved.
    e.copy_from_slice(q);
    e[32 + 96 + 92] = 1;
    recrc(e);
    assert_eq!(
        GraphModel::parse(e).unwrap_err(),
        FormatError::Reserved { layer: Some(1) }
    );
}

/// The pre-activation zero point of the table at `at`.
fn t_zero(file: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap())
}

#[test]
fn windows_quantize_within_a_few_steps() {
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(9);
    let opts = |stride, padding, dilation| ConvOptions {
        stride: [stride; 2],
        padding,
        dilation: [dilation; 2],
        ..ConvOptions::default()
    };
    let mut model = Windows {
        same2: Conv2dWith::new(opts(2, Padding::Same, 1), &mut mem, &mut rng).unwrap(),
        norm: BatchNorm2d::new(&mut mem).unwrap(),
        depthwise: DepthwiseConv2d::new(opts(1, Padding::Same, 2), &mut mem, &mut rng).unwrap(),
        padded: Conv2dWith::new(
            opts(
                1,
                Padding::Explicit {
                    top: 0,
                    bottom: 1,
                    left: 1,
                    right: 0,
                },
                1,
            ),
            &mut mem,
            &mut rng,
        )
        .unwrap(),
        avg: AvgPool2d,
        head: Linear::build(&mut mem, &mut rng).unwrap(),
    };
    randomize(&model, &mut mem, &mut rng);
    model.eval();
    let (mut file, n) = export(&model, &mut mem, |p| {
        model.forward(p.input((p.rows(), Const::<1>, 9usize, 7usize)))
    })
    .unwrap();
    let file = &bytes(&mut file)[..n];
    let xs = inputs(64, 63, 30);
    let (mut q, qn) = int8_of(file, &xs);
    let q = &bytes(&mut q)[..qn];
    let err = int8_error(file, q, &xs);
    assert!(err <= 4.0, "windows: {err} steps");
}

/// MLPerf Tiny's keyword spotting DS-CNN and image classification ResNet-8
/// (`nn::zoo`, batch norms in eval mode) export as graph files that compute
/// what they do, and quantize to int8 within a few output steps.
#[test]
fn mlperf_tiny_models_deploy_as_graph_files() {
    use ember_nn_core::nn::zoo::{KwsDsCnn, ResNet8};
    let mut buf = vec![0.0f32; 1 << 23];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(12);
    let mut kws = KwsDsCnn::build(&mut mem, &mut rng).unwrap();
    kws.eval();
    let (mut file, n) = export(&kws, &mut mem, |p| {
        kws.forward(p.input((p.rows(), Const::<1>, 49usize, 10usize)))
    })
    .unwrap();
    let file = &bytes(&mut file)[..n];
    let g = GraphModel::parse(file).unwrap();
    let convs = g.nodes().filter(|(h, _)| h.op == NodeOp::Conv).count();
    assert_eq!(convs, 9, "the stem and four depthwise-separable blocks");
    assert_eq!(g.nodes().last().map(|(h, _)| h.op), Some(NodeOp::Dense));
    let xs = inputs(24, 490, 40);
    let (mut q, qn) = int8_of(file, &xs);
    let err = int8_error(file, &bytes(&mut q)[..qn], &xs);
    assert!(err <= 2.0, "kws: {err} steps");

    let mut resnet = ResNet8::build(&mut mem, &mut rng).unwrap();
    resnet.eval();
    let (mut file, n) = export(&resnet, &mut mem, |p| {
        resnet.forward(p.input((p.rows(), Const::<3>, 32usize, 32usize)))
    })
    .unwrap();
    let file = &bytes(&mut file)[..n];
    let g = GraphModel::parse(file).unwrap();
    assert_eq!(g.nodes().filter(|(h, _)| h.op == NodeOp::Add).count(), 3);
    let xs = inputs(8, 3072, 41);
    let (mut q, qn) = int8_of(file, &xs);
    let err = int8_error(file, &bytes(&mut q)[..qn], &xs);
    assert!(err <= 2.0, "resnet8: {err} steps");
}

/// A graph's head trained on the device, as a dense model's last layer is:
/// the frozen nodes' int8 features, the head dequantized into an
/// `nn::Linear`, trained with the host's API on new labels, and written
/// back into the int8 file, which then gets them right.
#[test]
fn a_graphs_head_is_fine_tuned_and_written_back() {
    type Cnn = (
        Conv2d<1, 4, 3, 1, 1>,
        ReLU,
        MaxPool2d<2>,
        Flatten<64>,
        Linear<64, 3>,
    );
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(31);
    let cnn = Cnn::build(&mut mem, &mut rng).unwrap();
    randomize(&cnn, &mut mem, &mut rng);
    let (mut file, n) = export(&cnn, &mut mem, |p| {
        cnn.forward(p.input((p.rows(), Const::<1>, Const::<8>, Const::<8>)))
    })
    .unwrap();
    let f32_file = &bytes(&mut file)[..n];
    let xs = inputs(384, 64, 60);
    let (mut q, qn) = int8_of(f32_file, &xs);
    let q = &bytes(&mut q)[..qn];
    let g = GraphModel::parse(q).unwrap();
    assert_eq!(g.head_shape(), Ok((64, 3)));

    // The features are what the whole run leaves in the head's input.
    let mut qin = vec![0i8; 64];
    let mut arena = vec![0i8; g.scratch_len()];
    g.quantize_input(&xs[0], &mut qin).unwrap();
    let feats = g.head_features_q8(&qin, &mut arena).unwrap().to_vec();
    g.infer_q8(&qin, &mut arena).unwrap();
    let before_head = g.nodes().nth(g.node_count() - 2).unwrap().0;
    assert_eq!(feats, arena[before_head.arena..before_head.arena + 64]);
    let f = GraphModel::parse(f32_file).unwrap();
    let mut farena = vec![0.0f32; f.scratch_len()];
    assert_eq!(f.head_features_f32(&xs[0], &mut farena).unwrap().len(), 64);

    // Real features of each input, and labels from a teacher the deployed
    // head does not know.
    let fq = g.head_input_quantization().unwrap();
    let features: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| {
            g.quantize_input(x, &mut qin).unwrap();
            let h = g.head_features_q8(&qin, &mut arena).unwrap();
            h.iter()
                .map(|&v| (i32::from(v) - fq.zero) as f32 * fq.scale)
                .collect()
        })
        .collect();
    let teacher: Vec<f32> = (0..3 * 64).map(|_| rng.uniform_in(-1.0, 1.0)).collect();
    let labels: Vec<usize> = features
        .iter()
        .map(|f| {
            let logits: Vec<f32> = teacher
                .chunks_exact(64)
                .map(|w| w.iter().zip(f).map(|(a, b)| a * b).sum())
                .collect();
            deploy::argmax(&logits)
        })
        .collect();
    let (train, held) = (0..256, 256..384);
    let accuracy = |file: &[u8]| {
        let m = GraphModel::parse(file).unwrap();
        let (mut qi, mut ar, mut out) = (vec![0i8; 64], vec![0i8; m.scratch_len()], [0.0f32; 3]);
        held.clone()
            .filter(|&i| {
                m.infer_i8(&xs[i], &mut qi, &mut ar, &mut out).unwrap();
                deploy::argmax(&out) == labels[i]
            })
            .count() as f32
            / held.len() as f32
    };

    // The head, started from the deployed one; a dequantized head written
    // back as it is gives the file's weights again.
    let mut hbuf = vec![0.0f32; 1 << 16];
    let mut hmem = Memory::new(&Cpu, &mut hbuf[..]);
    let head = Linear::<64, 3>::build(&mut hmem, &mut Rng::new(0)).unwrap();
    let (mut w, mut b) = (vec![0.0f32; 192], vec![0.0f32; 3]);
    g.dequantize_head(&mut w, &mut b).unwrap();
    let write = |w: &[f32], b: &[f32], qout| {
        let mut scratch = vec![0u8; deploy::graph_head_len(64, 3)];
        let mut out = aligned(qn);
        let mut at = 0;
        let len = deploy::write_graph_with_head(&g, w, b, qout, &mut scratch, &mut |part| {
            bytes(&mut out)[at..at + part.len()].copy_from_slice(part);
            at += part.len();
            Ok(())
        })
        .unwrap();
        assert_eq!(len, qn, "the same architecture, the same length");
        out
    };
    let mut same = write(&w, &b, g.output_quantization());
    let same = &bytes(&mut same)[..qn];
    let weight_of = |file: &[u8]| match GraphModel::parse(file).unwrap().nodes().last().unwrap().1 {
        deploy::LayerWeights::Int8 { weight, .. } => weight.to_vec(),
        _ => panic!("int8"),
    };
    assert_eq!(weight_of(same), weight_of(q));
    hmem.write(head.weight.value, &w).unwrap();
    hmem.write(head.bias.value, &b).unwrap();

    let mut opt: nn::Optimizer<2, 1> =
        nn::Optimizer::new(&mut hmem, &head, nn::Rule::sgd_momentum(0.9), 0.1).unwrap();
    let mut range = (f32::INFINITY, f32::NEG_INFINITY);
    for epoch in 0..30 {
        for batch in train.clone().collect::<Vec<_>>().chunks(16) {
            opt.zero_grad(&mut hmem).unwrap();
            {
                let gr = Graph::<Cpu, 16>::with_capacity(&mut hmem);
                let flat: Vec<f32> = batch.iter().flat_map(|&i| features[i].clone()).collect();
                let x = gr.from_slice((batch.len(), Const::<64>), &flat);
                let logits = head.forward(x);
                if epoch == 29 {
                    let mut out = vec![0.0f32; 3 * batch.len()];
                    logits.read(&mut out).unwrap();
                    for v in out {
                        range = (range.0.min(v), range.1.max(v));
                    }
                }
                let ys: Vec<usize> = batch.iter().map(|&i| labels[i]).collect();
                nn::loss::cross_entropy(logits, &ys, nn::loss::Reduction::Mean)
                    .backward()
                    .unwrap();
            }
            opt.step(&mut hmem).unwrap();
        }
    }
    let (mut w, mut b) = (vec![0.0f32; 192], vec![0.0f32; 3]);
    hmem.read(head.weight.value, &mut w).unwrap();
    hmem.read(head.bias.value, &mut b).unwrap();
    let qout = deploy::QuantParams::from_range(range.0, range.1);
    let mut adapted = write(&w, &b, qout);
    let adapted = &bytes(&mut adapted)[..qn];
    assert_eq!(
        GraphModel::parse(adapted).unwrap().output_quantization(),
        qout
    );
    let (before, after) = (accuracy(q), accuracy(adapted));
    assert!(
        after >= before + 0.2 && after >= 0.8,
        "held-out accuracy {before} -> {after}"
    );

    // A graph without a dense head has none to train.
    type NoHead = (Conv2d<1, 2, 3, 1, 1>, ReLU, MaxPool2d<2>);
    let nohead = NoHead::build(&mut mem, &mut rng).unwrap();
    let (mut file, n) = export(&nohead, &mut mem, |p| {
        nohead.forward(p.input((p.rows(), Const::<1>, Const::<4>, Const::<4>)))
    })
    .unwrap();
    let g = GraphModel::parse(&bytes(&mut file)[..n]).unwrap();
    assert_eq!(g.head_shape(), Err(InferError::NoDenseHead));
    let mut arena = vec![0.0f32; g.scratch_len()];
    assert_eq!(
        g.head_features_f32(&[0.0; 16], &mut arena).unwrap_err(),
        InferError::NoDenseHead
    );
}
