//! MLPerf Tiny's keyword-spotting DS-CNN and ResNet-8 (`nn::zoo`):
//! - one real training step of each on `Cpu` and on `ember_nn_std::Parallel`
//!   (random data, finite loss, every parameter moved, the two backends
//!   within 1e-4 of each other);
//! - the forward pass of a PyTorch state_dict loaded by name gives
//!   PyTorch's logits, in evaluation and in training mode
//!   (`std-backend/tests/data/torch_zoo_*`, written by
//!   `scripts/torch-fixtures.py zoo`);
//! - parameter counts and multiply-adds (counted from the weights' shapes
//!   and each layer's output size) equal MLPerf Tiny's figures;
//! - anomaly detection's Deep AutoEncoder trains one step on `Parallel`
//!   and exports, its batch norms folded, as a dense file (version 2).

use ember_nn_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_nn_core::nn::zoo::{KwsDsCnn, ResNet8};
use ember_nn_core::nn::{self, Build, Footprint, Forward, Module, Optimizer, Rule};
use ember_nn_core::prelude::*;
use ember_nn_std::{state_dict, Parallel};
use std::path::Path;

/// Graph capacity of the tests' steps (the models' `NODES` are checked
/// against what a step records).
const NODES: usize = 512;

/// Every parameter's values (or gradients), in visiting order.
fn params<M: Module, B: Backend>(model: &M, mem: &Memory<'_, B>, grads: bool) -> Vec<f32> {
    let mut spans = Vec::new();
    model.named_parameters(&mut |p| spans.push(if grads { p.param.grad } else { p.param.value }));
    let mut out = Vec::new();
    for s in spans {
        let mut v = vec![0.0f32; s.len];
        mem.read(s, &mut v).unwrap();
        out.extend(v);
    }
    out
}

/// What one step gives: the loss, the logits, the parameters after the
/// step, and the nodes the step recorded.
struct Step {
    loss: f32,
    logits: Vec<f32>,
    before: Vec<f32>,
    grads: Vec<f32>,
    after: Vec<f32>,
    nodes: usize,
}

/// Builds `M` (seed 3), then runs one Adam step on `x` `[n, C, H, W]` with
/// `labels`, on `backend`.
fn step<M, B, const C: usize, const K: usize>(
    backend: &B,
    buf: &mut [f32],
    hw: (usize, usize),
    x: &[f32],
    labels: &[usize],
) -> Step
where
    M: Module + Build,
    B: Backend<Buffer = [f32]>,
    for<'t> M: Forward<
        Tensor<'t, (usize, Const<C>, usize, usize), B>,
        Output = Tensor<'t, (usize, Const<K>), B>,
    >,
{
    let mut mem = Memory::new(backend, buf);
    let model = M::build(&mut mem, &mut Rng::new(3)).unwrap();
    let mut opt: Optimizer<128> = Optimizer::new(&mut mem, &model, Rule::adam(), 1e-3).unwrap();
    let before = params(&model, &mem, false);
    let n = labels.len();
    let (loss, logits, nodes) = {
        let g = Graph::<_, NODES>::with_capacity(&mut mem);
        let y = model.forward(g.from_slice((n, Const::<C>, hw.0, hw.1), x));
        let loss = cross_entropy(y, labels, Reduction::Mean);
        loss.backward().unwrap();
        let mut logits = vec![0.0f32; n * K];
        y.read(&mut logits).unwrap();
        (loss.item().unwrap(), logits, g.len())
    };
    let grads = params(&model, &mem, true);
    opt.step(&mut mem).unwrap();
    let after = params(&model, &mem, false);
    Step {
        loss,
        logits,
        before,
        grads,
        after,
        nodes,
    }
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.uniform_in(-1.0, 1.0)).collect()
}

/// One step on `Cpu` and on `Parallel`: finite, every parameter tensor
/// moved, and the two within `tol` (relative, for logits and gradients;
/// absolute for the parameters after the step).
fn train_on_both<M, const C: usize, const K: usize>(hw: (usize, usize), n: usize, tol: f32)
where
    M: Module + Build + Footprint,
    for<'t> M: Forward<
            Tensor<'t, (usize, Const<C>, usize, usize), Cpu>,
            Output = Tensor<'t, (usize, Const<K>), Cpu>,
        > + Forward<
            Tensor<'t, (usize, Const<C>, usize, usize), Parallel>,
            Output = Tensor<'t, (usize, Const<K>), Parallel>,
        >,
{
    let x = random(n * C * hw.0 * hw.1, 17);
    let labels: Vec<usize> = (0..n).map(|i| (i * 5) % K).collect();
    // VWW's 96×96 maps need more room than the others' (im2col buffers).
    let floats = if hw.0 * hw.1 > 32 * 32 {
        1 << 25
    } else {
        1 << 23
    };
    let mut a = vec![0.0f32; floats];
    let cpu = step::<M, Cpu, C, K>(&Cpu, &mut a[..], hw, &x, &labels);
    drop(a);
    let mut b = vec![0.0f32; floats];
    let par =
        step::<M, Parallel, C, K>(&Parallel::try_new(2).unwrap(), &mut b[..], hw, &x, &labels);

    assert!(cpu.loss.is_finite(), "loss {}", cpu.loss);
    assert!(
        (cpu.loss - par.loss).abs() <= 1e-4,
        "{} vs {}",
        cpu.loss,
        par.loss
    );
    for (what, a, b) in [
        ("logits", &cpu.logits, &par.logits),
        ("gradients", &cpu.grads, &par.grads),
    ] {
        // Relative to the value's size: the two backends sum in other
        // orders (MobileNet's gradients reach about 5, through 27 batch
        // norms in training mode on maps down to 3×3).
        for (i, (p, q)) in a.iter().zip(b.iter()).enumerate() {
            assert!(
                (p - q).abs() <= tol * (1.0 + p.abs()),
                "{what}[{i}]: Cpu {p}, Parallel {q}"
            );
        }
    }
    // The parameters after Adam's step, except where the gradient is
    // rounding noise on both: a convolution's bias right before a batch
    // norm in training mode has a gradient of exactly zero in exact
    // arithmetic (the norm subtracts the channel's mean), and Adam's first
    // step moves a parameter by about the rate whatever its gradient's
    // size, in the direction of the noise's sign. The noise floor is
    // `tol / 100`.
    let mut noise = 0;
    for (i, (p, q)) in cpu.after.iter().zip(&par.after).enumerate() {
        if cpu.grads[i].abs() < tol / 100.0 && par.grads[i].abs() < tol / 100.0 {
            noise += 1;
            continue;
        }
        assert!(
            (p - q).abs() <= tol,
            "parameter {i} after the step: Cpu {p}, Parallel {q}"
        );
    }
    assert!(
        noise < M::PARAMS / 20,
        "{noise} gradients below the noise floor"
    );
    assert_eq!(cpu.before.len(), M::PARAMS);
    // Adam moves every parameter that has a gradient by about the rate.
    let moved = cpu
        .before
        .iter()
        .zip(&cpu.after)
        .filter(|(p, q)| p != q)
        .count();
    assert!(
        moved >= M::PARAMS * 99 / 100,
        "{moved} of {} parameters moved",
        M::PARAMS
    );
    // The type's node count bounds a step's: the input, the model, the loss.
    let bound = 1 + M::NODES + Loss::CrossEntropy.nodes();
    assert!(
        cpu.nodes <= bound && par.nodes <= bound,
        "{} nodes recorded, {bound} declared",
        cpu.nodes
    );
}

#[test]
fn kws_ds_cnn_trains_one_step_on_cpu_and_parallel_alike() {
    train_on_both::<KwsDsCnn, 1, 12>((49, 10), 3, 1e-4);
}

#[test]
fn resnet8_trains_one_step_on_cpu_and_parallel_alike() {
    train_on_both::<ResNet8, 3, 10>((32, 32), 2, 1e-4);
}

/// The f32 file exported through `forward` (in 16-byte aligned storage,
/// as the format wants: the bytes start at an `Aligned` block).
fn export_file<M: Module, B: Backend, S: Shape>(
    model: &M,
    mem: &mut Memory<'_, B>,
    forward: impl for<'t> Fn(&ember_nn_core::deploy::Probe<'t, B>) -> Tensor<'t, S, B>,
) -> AlignedFile {
    use ember_nn_core::deploy::{self, Aligned};
    let plan = deploy::plan(model, mem, &forward).unwrap();
    let mut file = vec![Aligned([0u8; 16]); plan.file_len().div_ceil(16)];
    let mut scratch = vec![0.0f32; plan.scratch_len()];
    // SAFETY: `Aligned<[u8; 16]>` is 16 bytes without padding.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(file.as_mut_ptr().cast::<u8>(), 16 * file.len()) };
    let len = deploy::export_f32(model, mem, forward, bytes, &mut scratch).unwrap();
    AlignedFile { file, len }
}

/// An exported file's aligned storage and length.
struct AlignedFile {
    file: Vec<ember_nn_core::deploy::Aligned<[u8; 16]>>,
    len: usize,
}

impl std::ops::Deref for AlignedFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: as in `export_file`; `len` is at most the storage's bytes.
        unsafe { std::slice::from_raw_parts(self.file.as_ptr().cast::<u8>(), self.len) }
    }
}

/// Visual wake words' MobileNetV1 ×0.25: one step on `Cpu` and `Parallel`
/// alike, then, in evaluation mode, an export as a graph file (27
/// convolutions, the batch norms folded) within the trace's limits.
///
/// On a thread of 32 MiB of stack: export walks the trace back from the
/// output recursively, a few frames per tape node, and a debug build's
/// frames for MobileNet's hundreds of nodes pass the test thread's 2 MiB.
#[test]
fn mobilenet_v1_vww_trains_one_step_and_exports() {
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(vww_step_and_export)
        .unwrap()
        .join()
        .unwrap();
}

fn vww_step_and_export() {
    use ember_nn_core::deploy::{GraphModel, NodeOp};
    use ember_nn_core::nn::zoo::MobileNetV1Vww;
    train_on_both::<MobileNetV1Vww, 3, 2>((96, 96), 2, 1e-3);
    assert_eq!(MobileNetV1Vww::MACS, 7_489_664);

    let mut buf = vec![0.0f32; 1 << 25];
    let backend = Parallel::try_new(2).unwrap();
    let mut mem = Memory::new(&backend, &mut buf[..]);
    let mut model = MobileNetV1Vww::build(&mut mem, &mut Rng::new(5)).unwrap();
    let positions = |name: &str| {
        let block: usize = name
            .strip_prefix("block")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let side = match block {
            0 | 1 => 48,
            2 | 3 => 24,
            4 | 5 => 12,
            6..=11 => 6,
            _ => 3,
        };
        side * side
    };
    assert_eq!(macs(&model, positions), MobileNetV1Vww::MACS);
    model.eval();
    let file = export_file(&model, &mut mem, |p| {
        model.forward(p.input((p.rows(), Const::<3>, 96usize, 96usize)))
    });
    let g = GraphModel::parse(&file[..]).expect("a graph file");
    assert_eq!(g.nodes().filter(|(h, _)| h.op == NodeOp::Conv).count(), 27);
    assert_eq!(g.output_features(), 2);
}

/// Loads PyTorch's state_dict `torch_zoo_<name>` into `M` by name and
/// compares the logits of the fixture's input with PyTorch's, in
/// evaluation mode, then in training mode (the batch's statistics).
fn matches_pytorch<M, const C: usize, const K: usize>(name: &str)
where
    M: Module + Build,
    for<'t> M: Forward<
        Tensor<'t, (usize, Const<C>, usize, usize), Cpu>,
        Output = Tensor<'t, (usize, Const<K>), Cpu>,
    >,
{
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../std-backend/tests/data");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("torch_zoo_{name}.json"))).unwrap(),
    )
    .unwrap();
    let shape: Vec<usize> = expected["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let (n, h, w) = (shape[0], shape[2], shape[3]);
    assert_eq!(shape[1], C);
    let x: Vec<f32> = (0..n * C * h * w)
        .map(|k| (0.01 * k as f64).sin() as f32)
        .collect();
    let mut buf = vec![0.0f32; 1 << 22];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut model = M::build(&mut mem, &mut Rng::new(0)).unwrap();
    state_dict::load(
        &dir.join(format!("torch_zoo_{name}.safetensors")),
        &model,
        &mut mem,
    )
    .unwrap();
    for (mode, training) in [("eval", false), ("train", true)] {
        model.set_training(training);
        let g = Graph::<_, NODES>::with_capacity(&mut mem);
        let y = model.forward(g.from_slice((n, Const::<C>, h, w), &x));
        let mut got = vec![0.0f32; n * K];
        y.read(&mut got).unwrap();
        let want: Vec<f32> = expected[mode]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().clone())
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4,
                "{name} {mode} logit {i}: ember {a}, PyTorch {b}"
            );
        }
    }
}

#[test]
fn kws_ds_cnn_gives_pytorchs_logits_on_pytorchs_weights() {
    matches_pytorch::<KwsDsCnn, 1, 12>("kws");
}

#[test]
fn resnet8_gives_pytorchs_logits_on_pytorchs_weights() {
    matches_pytorch::<ResNet8, 3, 10>("resnet8");
}

/// Multiply-adds of one sample, from the model's weights: each 4-D weight
/// `[out, in/groups, kh, kw]` costs its size per output position of its
/// layer (looked up by the parameter's name in `positions`), each 2-D
/// weight its size.
fn macs<M: Module>(model: &M, positions: impl Fn(&str) -> usize) -> usize {
    let mut total = 0;
    model.named_parameters(&mut |p| {
        let d = p.dims.as_slice();
        if p.name.ends_with("weight") && d.len() == 4 {
            total += d.iter().product::<usize>() * positions(p.name);
        } else if p.name.ends_with("weight") && d.len() == 2 {
            total += d[0] * d[1];
        }
    });
    total
}

#[test]
fn parameters_and_multiply_adds_are_mlperf_tinys() {
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let kws = KwsDsCnn::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(kws.param_count(), 23_756);
    assert_eq!(KwsDsCnn::PARAMS, 23_756);
    // Every convolution of the DS-CNN writes the 25×5 map.
    let kws_macs = macs(&kws, |_| 25 * 5);
    assert_eq!(kws_macs, 2_656_768);
    assert_eq!(KwsDsCnn::MACS, 2_656_768);
    // Running statistics: 2 · 64 floats and a count per batch norm, 9 of them.
    assert_eq!(KwsDsCnn::BUFFERS, 9 * (2 * 64 + 1));

    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let resnet = ResNet8::build(&mut mem, &mut Rng::new(0)).unwrap();
    // Keras's summary of the reference model: 78,666 parameters, of which
    // 480 are the batch norms' moving statistics.
    assert_eq!(resnet.param_count(), 78_666 - 480);
    assert_eq!(ResNet8::PARAMS, 78_186);
    let resnet_macs = macs(&resnet, |name| {
        if name.starts_with("stack2") {
            16 * 16
        } else if name.starts_with("stack3") {
            8 * 8
        } else {
            32 * 32
        }
    });
    assert_eq!(resnet_macs, 12_501_632);
    assert_eq!(ResNet8::MACS, 12_501_632);
}

#[test]
fn the_models_print_like_pytorch_and_name_their_state_as_pytorch() {
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let kws = KwsDsCnn::build(&mut mem, &mut Rng::new(0)).unwrap();
    let printed = nn::summary(&kws).to_string();
    for line in [
        "KwsDsCnn(",
        "  (stem): Conv2d(1, 64, kernel_size=(10, 4), stride=(2, 2), padding=same)",
        "  (blocks): ModuleList(",
        "    (3): DsBlock(",
        "      (depthwise): Conv2d(64, 64, kernel_size=(3, 3), stride=(1, 1), padding=same, groups=64)",
        "      (pointwise): Conv2d(64, 64, kernel_size=(1, 1), stride=(1, 1))",
        "  (fc): Linear(in_features=64, out_features=12, bias=True)",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line:?} in\n{printed}");
    }
    let mut names = Vec::new();
    kws.named_parameters(&mut |p| names.push(p.name.to_string()));
    kws.named_buffers(&mut |b| names.push(b.name.to_string()));
    for name in [
        "stem.weight",
        "bn.bias",
        "blocks.0.depthwise.weight",
        "blocks.3.bn2.running_var",
        "fc.bias",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }

    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let resnet = ResNet8::build(&mut mem, &mut Rng::new(0)).unwrap();
    let printed = nn::summary(&resnet).to_string();
    for line in [
        "ResNet8(",
        "  (stack2): DownsampleBlock(",
        "    (conv1): Conv2d(16, 32, kernel_size=(3, 3), stride=(2, 2), padding=same)",
        "    (shortcut): Conv2d(16, 32, kernel_size=(1, 1), stride=(2, 2))",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line:?} in\n{printed}");
    }
}

/// The new layers' `NODES` are what their forward pass records.
#[test]
fn the_option_layers_count_their_nodes_exactly() {
    use ember_nn_core::nn::{Conv2dWith, DepthwiseConv2d, GlobalAvgPool2d};
    let mut buf = vec![0.0f32; 1 << 16];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let same = ConvOptions {
        stride: [2, 2],
        padding: Padding::Same,
        ..ConvOptions::default()
    };
    let conv = Conv2dWith::<2, 3, 3, 2>::new(same, &mut mem, &mut Rng::new(0)).unwrap();
    let dw = DepthwiseConv2d::<3, 3>::build(&mut mem, &mut Rng::new(0)).unwrap();
    let g = Graph::new(&mut mem);
    let x = g.from_fn((2usize, Const::<2>, 7usize, 5usize), |_| 0.0);
    let y = conv.forward(x);
    assert_eq!(y.dims().as_slice(), &[2, 3, 4, 3]);
    assert_eq!(g.len() - 1, Conv2dWith::<2, 3, 3, 2>::NODES);
    let before = g.len();
    let z = dw.forward(y);
    assert_eq!(z.dims().as_slice(), &[2, 3, 4, 3]);
    assert_eq!(g.len() - before, DepthwiseConv2d::<3, 3>::NODES);
    let before = g.len();
    let _ = GlobalAvgPool2d.forward(z);
    assert_eq!(g.len() - before, GlobalAvgPool2d::NODES);
}

/// In a derived model, `#[module(init = ...)]` sets a layer's options;
/// the layers keep their PyTorch names and shapes.
#[test]
fn a_derived_model_sets_the_options_of_its_convolutions() {
    use ember_nn_core::nn::{Conv2dWith, DepthwiseConv2d};

    #[derive(Module)]
    struct Stem {
        #[module(init = Conv2dWith::new(
            ConvOptions { stride: [2, 2], padding: Padding::Same, ..ConvOptions::default() },
            mem,
            rng,
        ))]
        conv: Conv2dWith<1, 4, 10, 4>,
        dw: DepthwiseConv2d<4, 3>,
    }

    let mut buf = vec![0.0f32; 1 << 16];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let stem = Stem::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(stem.conv.options.padding, Padding::Same);
    assert_eq!(stem.dw.options.groups, 4);
    let mut names = Vec::new();
    stem.named_parameters(&mut |p| names.push((p.name.to_string(), p.dims.as_slice().to_vec())));
    assert_eq!(
        names,
        [
            ("conv.weight".to_string(), vec![4, 1, 10, 4]),
            ("conv.bias".to_string(), vec![4]),
            ("dw.weight".to_string(), vec![4, 1, 3, 3]),
            ("dw.bias".to_string(), vec![4]),
        ]
    );
    let g = Graph::new(&mut mem);
    let x = g.from_fn((1usize, Const::<1>, 49usize, 10usize), |i| i as f32 / 490.0);
    let y = stem.dw.forward(stem.conv.forward(x));
    assert_eq!(y.dims().as_slice(), &[1, 4, 25, 5]);
}

/// The Deep AutoEncoder: one real training step (MSE reconstruction, Adam)
/// on `Parallel`, then, in evaluation mode with the running statistics the
/// step moved, an export as a dense file (format version 2) of ten layers:
/// every batch norm folded into the `Linear` before it, ReLU after each
/// hidden layer (the bottleneck too), none after the last.
///
/// On a thread of 32 MiB of stack, as MobileNet's: a debug build's export
/// frames (22 layers, 10 folded batch norms) passed the test thread's 2 MiB
/// in CI.
#[test]
fn deep_autoencoder_trains_on_parallel_and_exports_as_a_dense_file() {
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(ad_step_and_export)
        .unwrap()
        .join()
        .unwrap();
}

fn ad_step_and_export() {
    use ember_nn_core::deploy::{Activation, Model};
    use ember_nn_core::nn::loss::mse;
    use ember_nn_core::nn::zoo::DeepAutoEncoder;

    let backend = Parallel::try_new(2).unwrap();
    let mut buf = vec![0.0f32; 1 << 22];
    let mut mem = Memory::new(&backend, &mut buf[..]);
    let mut model = DeepAutoEncoder::build(&mut mem, &mut Rng::new(3)).unwrap();
    assert_eq!(model.param_count(), DeepAutoEncoder::PARAMS);
    assert_eq!(DeepAutoEncoder::PARAMS, 267_928);
    assert_eq!(DeepAutoEncoder::MACS, 264_192);
    assert_eq!(macs(&model, |_| 1), DeepAutoEncoder::MACS);
    let mut opt: Optimizer<128> = Optimizer::new(&mut mem, &model, Rule::adam(), 1e-3).unwrap();
    let before = params(&model, &mem, false);
    let n = 4;
    let x = random(n * 640, 21);
    let (loss, nodes) = {
        let g = Graph::<_, NODES>::with_capacity(&mut mem);
        let input = g.from_slice((n, Const::<640>), &x);
        let target = g.from_slice((n, Const::<640>), &x);
        let loss = mse(model.forward(input), target, Reduction::Mean);
        loss.backward().unwrap();
        (loss.item().unwrap(), g.len())
    };
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    // The input, the target, the model, the loss's difference, square, sum
    // and scaling.
    assert!(nodes <= 2 + DeepAutoEncoder::NODES + 4, "{nodes} nodes");
    opt.step(&mut mem).unwrap();
    let after = params(&model, &mem, false);
    let moved = before.iter().zip(&after).filter(|(p, q)| p != q).count();
    assert!(moved >= DeepAutoEncoder::PARAMS * 99 / 100, "{moved} moved");

    model.eval();
    let file = export_file(&model, &mut mem, |p| {
        model.forward(p.input((p.rows(), Const::<640>)))
    });
    let m = Model::parse(&file[..]).expect("a dense file");
    assert_eq!((m.input_features(), m.output_features()), (640, 640));
    let layers: Vec<_> = m
        .layers()
        .map(|(h, _)| (h.in_features, h.out_features, h.activation))
        .collect();
    assert_eq!(layers.len(), 10);
    assert_eq!(layers[4], (128, 8, Activation::Relu));
    assert_eq!(layers[9], (128, 640, Activation::Identity));
    assert!(layers[..9].iter().all(|l| l.2 == Activation::Relu));

    // The file computes what the model does in evaluation mode.
    let row = random(640, 22);
    let expected = {
        let g = Graph::<_, NODES>::with_capacity(&mut mem);
        let y = g.no_grad(|| model.forward(g.from_slice((1usize, Const::<640>), &row)));
        let mut v = vec![0.0f32; 640];
        y.read(&mut v).unwrap();
        v
    };
    let mut s = vec![0.0f32; m.scratch_len()];
    let got = m.infer_f32(&row, &mut s).unwrap();
    for (a, b) in got.iter().zip(&expected) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
}
