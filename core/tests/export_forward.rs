//! What deploys is what was trained: the deployable file is read off the
//! forward pass (`deploy::plan`, `deploy::export_f32`), so functional
//! activations, users' own layers and fields reused or run in another order
//! are exported as computed, and what the format cannot express is refused
//! with the op's name.

use ember_nn_core::deploy::{self, Activation, Aligned, ExportError, Model, Probe};
use ember_nn_core::nn::{Build, Dropout, Flatten, Forward, Linear, Module, ParamInfo, ParamKind};
use ember_nn_core::nn::{Name, ReLU, Tanh};
use ember_nn_core::prelude::*;
use std::cell::Cell;

/// An exported file's bytes, aligned.
type File = Box<Aligned<[u8; 8192]>>;

/// Exports through `forward` and returns the file (aligned) and its length.
fn export<S: Shape>(
    model: &dyn ModuleDyn,
    mem: &mut Memory<'_, Cpu>,
    forward: impl for<'t> Fn(&Probe<'t, Cpu>) -> Tensor<'t, S, Cpu>,
) -> Result<(File, usize), ExportError> {
    let mut out = Box::new(Aligned([0u8; 8192]));
    let mut scratch = vec![0.0f32; 256];
    let n = deploy::export_f32(model, mem, forward, &mut out.0, &mut scratch)?;
    Ok((out, n))
}

/// `Module` as a trait object (export takes `?Sized` models).
trait ModuleDyn: Module {}
impl<M: Module> ModuleDyn for M {}

/// Runs `file` through the deployment kernels on `rows` and compares with
/// the training graph's `expected` outputs, to rounding.
fn assert_same(file: &[u8], rows: &[Vec<f32>], expected: &[Vec<f32>]) {
    let model = Model::parse(file).unwrap();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    for (x, e) in rows.iter().zip(expected) {
        let y = model.infer_f32(x, &mut scratch).unwrap();
        for (a, b) in y.iter().zip(e) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{y:?} vs {e:?}");
        }
    }
}

fn rows(n: usize, width: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| (0..width).map(|_| 2.0 * rng.normal()).collect())
        .collect()
}

/// The training graph's outputs for `xs`, through `f`.
fn graph_outputs<const IN: usize, const OUT: usize>(
    mem: &mut Memory<'_, Cpu>,
    xs: &[Vec<f32>],
    f: impl for<'t> Fn(Tensor<'t, (usize, Const<IN>)>) -> Tensor<'t, (usize, Const<OUT>)>,
) -> Vec<Vec<f32>> {
    xs.iter()
        .map(|x| {
            let g = Graph::new(mem);
            let y = g.no_grad(|| f(g.from_slice((1, Const::<IN>), x)));
            let mut out = vec![0.0; OUT];
            y.read(&mut out).unwrap();
            out
        })
        .collect()
}

// The README's model with the seeds' `F.relu`: no field holds the ReLU.
#[derive(Module)]
struct FunctionalRelu {
    hidden: Linear<10, 5>,
    out: Linear<5, 2>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<10>), B>> for FunctionalRelu {
    type Output = Tensor<'t, (usize, Const<2>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<10>), B>) -> Self::Output {
        self.out.forward(self.hidden.forward(x).relu())
    }
}

#[test]
fn a_functional_relu_is_exported_as_computed() {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = FunctionalRelu::build(&mut mem, &mut Rng::new(3)).unwrap();
    let (file, n) = export(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<10>)))
    })
    .unwrap();
    // The file has the ReLU, and loads as the sequence the forward runs.
    let model = Model::load::<(Linear<10, 5>, ReLU, Linear<5, 2>)>(&file.0[..n]).unwrap();
    assert_eq!(model.layer(0).unwrap().0.activation, Activation::Relu);
    // Not as the fields alone: that was the silent bug.
    assert!(Model::load::<(Linear<10, 5>, Linear<5, 2>)>(&file.0[..n]).is_err());
    let xs = rows(16, 10, 9);
    let expected = graph_outputs(&mut mem, &xs, |x| net.forward(x));
    assert_same(&file.0[..n], &xs, &expected);
}

/// A user's own dense layer: `tanh(x · w + b)` with `w` stored `[in, out]`
/// (as `x @ W` in a NumPy model), its bias broadcast by `+`.
struct MyDense {
    w: Param<(Const<6>, Const<4>)>,
    b: Param<(Const<4>,)>,
}

impl Module for MyDense {
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        name.with("w", |n| {
            f(&ParamInfo {
                name: n.as_str(),
                kind: ParamKind::Weight,
                dims: self.w.dims(),
                param: self.w.into(),
            })
        });
        name.with("b", |n| {
            f(&ParamInfo {
                name: n.as_str(),
                kind: ParamKind::Bias,
                dims: self.b.dims(),
                param: self.b.into(),
            })
        });
    }
    fn fmt_module(&self, f: &mut std::fmt::Formatter<'_>, _indent: usize) -> std::fmt::Result {
        write!(f, "MyDense")
    }
}

#[derive(Module)]
struct WithCustomLayer {
    mine: MyDenseField,
    head: Linear<4, 3>,
}

/// `MyDense` behind a `Build` (the derive builds every field).
struct MyDenseField(MyDense);

impl Module for MyDenseField {
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        self.0.visit(name, f)
    }
    fn fmt_module(&self, f: &mut std::fmt::Formatter<'_>, indent: usize) -> std::fmt::Result {
        self.0.fmt_module(f, indent)
    }
}

impl Build for MyDenseField {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        let w = mem.param_from_fn(|_| 0.5 * rng.normal())?;
        let b = mem.param_from_fn(|_| 0.1 * rng.normal())?;
        Ok(MyDenseField(MyDense { w, b }))
    }
}

impl ember_nn_core::nn::Footprint for MyDenseField {
    const PARAMS: usize = 6 * 4 + 4;
    const NODES: usize = 6;
    const IN_FEATURES: Option<usize> = Some(6);
    const OUT_FEATURES: Option<usize> = Some(4);
    const SCRATCH_FIXED: usize = 16;
    const SCRATCH_PER_FEATURE: usize = 0;
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<6>), B>> for WithCustomLayer {
    type Output = Tensor<'t, (usize, Const<3>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<6>), B>) -> Self::Output {
        let g = x.tape();
        let (w, b) = (g.param(&self.mine.0.w), g.param(&self.mine.0.b));
        let h = (x.matmul(w) + b).tanh();
        self.head.forward(h)
    }
}

#[test]
fn a_custom_layer_of_built_in_ops_is_exported_as_computed() {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = WithCustomLayer::build(&mut mem, &mut Rng::new(4)).unwrap();
    let (file, n) = export(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<6>)))
    })
    .unwrap();
    // The `[in, out]` weight is stored transposed, as the format's `[out, in]`.
    Model::load::<(Linear<6, 4>, Tanh, Linear<4, 3>)>(&file.0[..n]).unwrap();
    let xs = rows(16, 6, 1);
    let expected = graph_outputs(&mut mem, &xs, |x| net.forward(x));
    assert_same(&file.0[..n], &xs, &expected);
}

#[test]
fn products_with_a_transposed_weight_and_without_a_bias_export() {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let lin = Linear::<5, 3>::build(&mut mem, &mut Rng::new(2)).unwrap();
    fn fw<'t>(
        lin: &Linear<5, 3>,
        f: bool,
        x: Tensor<'t, (usize, Const<5>)>,
    ) -> Tensor<'t, (usize, Const<3>)> {
        let w = x.tape().param(&lin.weight);
        if f {
            x.matmul_t(w).relu()
        } else {
            x.matmul(w.t()).relu()
        }
    }
    for f in [true, false] {
        let (file, n) = export(&lin, &mut mem, |p| {
            fw(&lin, f, p.input((p.rows(), Const::<5>)))
        })
        .unwrap_or_else(|e| panic!("transposed {f}: {e}"));
        let model = Model::load::<(Linear<5, 3>, ReLU)>(&file.0[..n]).unwrap();
        // No bias in the forward pass: zeros in the file.
        let Some((_, deploy::LayerWeights::F32 { bias, .. })) = model.layer(0) else {
            panic!("f32")
        };
        assert_eq!(bias, [0.0; 3]);
        let xs = rows(8, 5, 3);
        let expected = graph_outputs(&mut mem, &xs, |x| fw(&lin, f, x));
        assert_same(&file.0[..n], &xs, &expected);
    }
}

// Fields declared in another order than they run, one of them used twice.
#[derive(Module)]
struct Reordered {
    middle: Linear<8, 8>,
    out: Linear<8, 2>,
    first: Linear<4, 8>,
    act: ReLU,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<4>), B>> for Reordered {
    type Output = Tensor<'t, (usize, Const<2>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<4>), B>) -> Self::Output {
        let h = self.act.forward(self.first.forward(x));
        let h = self.middle.forward(h).tanh();
        let h = self.act.forward(self.middle.forward(h));
        self.out.forward(h)
    }
}

#[test]
fn reordered_and_reused_fields_export_as_they_run() {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Reordered::build(&mut mem, &mut Rng::new(5)).unwrap();
    let (file, n) = export(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<4>)))
    })
    .unwrap();
    type AsRun = (
        Linear<4, 8>,
        ReLU,
        Linear<8, 8>,
        Tanh,
        Linear<8, 8>,
        ReLU,
        Linear<8, 2>,
    );
    let model = Model::load::<AsRun>(&file.0[..n]).unwrap();
    // The reused layer's weights are stored twice, the same.
    let w = |i| match model.layer(i) {
        Some((_, deploy::LayerWeights::F32 { weight, .. })) => weight.to_vec(),
        _ => panic!("f32"),
    };
    assert_eq!(w(1), w(2));
    let xs = rows(16, 4, 6);
    let expected = graph_outputs(&mut mem, &xs, |x| net.forward(x));
    assert_same(&file.0[..n], &xs, &expected);
}

#[test]
fn flatten_and_dropout_in_evaluation_mode_export() {
    type Net = (Flatten<6>, Linear<6, 4>, ReLU, Dropout, Linear<4, 2>);
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut net = Net::build(&mut mem, &mut Rng::new(6)).unwrap();
    // In training mode the dropout's mask is a product with a constant.
    net.train();
    let err = deploy::plan(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<2>, Const::<3>)))
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            ExportError::Unsupported {
                op: "MulBackward",
                ..
            }
        ),
        "{err}"
    );
    net.eval();
    let (file, n) = export(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<2>, Const::<3>)))
    })
    .unwrap();
    Model::load::<(Linear<6, 4>, ReLU, Linear<4, 2>)>(&file.0[..n]).unwrap();
}

/// Hard-swish as a custom op: the format cannot store it.
#[path = "support/hard_swish.rs"]
mod hard_swish;
use hard_swish::HardSwish;

type Two = (Linear<4, 4>, Linear<4, 2>);

/// The error of exporting `Two` run through `f`.
fn refusal(
    f: impl for<'t> Fn(&Two, Tensor<'t, (usize, Const<4>)>) -> Tensor<'t, (usize, Const<2>)>,
) -> ExportError {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Two::build(&mut mem, &mut Rng::new(7)).unwrap();
    export(&net, &mut mem, |p| f(&net, p.input((p.rows(), Const::<4>))))
        .map(|_| ())
        .unwrap_err()
}

#[test]
fn what_the_format_cannot_express_is_refused_by_name() {
    let cases: [(ExportError, &str); 6] = [
        (
            refusal(|n, x| n.1.forward(n.0.forward(x).custom(&HardSwish))),
            "HardSwishBackward",
        ),
        (
            refusal(|n, x| n.1.forward(n.0.forward(x) - x)),
            "SubBackward",
        ),
        (
            refusal(|n, x| n.1.forward(n.0.forward(x)) * 2.0),
            "MulBackward",
        ),
        (
            refusal(|n, x| n.1.forward(n.0.forward(x).relu().tanh())),
            "TanhBackward",
        ),
        (
            refusal(|n, x| n.1.forward(n.0.forward(x.relu()))),
            "ReluBackward",
        ),
        (
            refusal(|n, x| n.1.forward(n.0.forward(x).exp())),
            "ExpBackward",
        ),
    ];
    for (err, name) in cases {
        match err {
            ExportError::Unsupported { op, .. } => assert_eq!(op, name, "{err}"),
            other => panic!("{name}: {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.contains("cannot express"),
            "{msg}"
        );
    }
    // Where it is: the custom op is after the first of two dense layers.
    let err = refusal(|n, x| n.1.forward(n.0.forward(x).custom(&HardSwish)));
    assert!(
        err.to_string()
            .contains("1 dense layer(s) before its output"),
        "{err}"
    );
}

#[test]
fn a_forward_pass_that_ignores_its_input_or_another_models_weights_is_refused() {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Two::build(&mut mem, &mut Rng::new(8)).unwrap();
    let other = Linear::<4, 4>::build(&mut mem, &mut Rng::new(9)).unwrap();
    let never = export(&net, &mut mem, |p| {
        net.forward(p.tape().from_fn((p.rows(), Const::<4>), |i| i as f32))
    });
    assert_eq!(never.map(|_| ()), Err(ExportError::NoInput));
    let foreign = export(&net, &mut mem, |p| {
        net.1
            .forward(other.forward(p.input((p.rows(), Const::<4>))))
    });
    assert_eq!(foreign.map(|_| ()), Err(ExportError::ForeignParameter));
    let rows = export(&net, &mut mem, |p| {
        net.forward(p.input((2usize, Const::<4>)))
    });
    assert_eq!(rows.map(|_| ()), Err(ExportError::ProbeRows { found: 2 }));
}

#[test]
fn a_file_that_computes_otherwise_than_the_graph_is_refused() {
    // A forward pass that runs tanh when traced and ReLU when checked: what
    // would be written is not what runs, and the check through the
    // deployment kernels catches it.
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Two::build(&mut mem, &mut Rng::new(10)).unwrap();
    let calls = Cell::new(0);
    let err = export(&net, &mut mem, |p| {
        calls.set(calls.get() + 1);
        let h = net.0.forward(p.input((p.rows(), Const::<4>)));
        let h = if calls.get() == 1 { h.tanh() } else { h.relu() };
        net.1.forward(h)
    })
    .map(|_| ())
    .unwrap_err();
    let ExportError::Mismatch {
        expected,
        found,
        tolerance,
        ..
    } = err
    else {
        panic!("{err}")
    };
    assert!((expected - found).abs() > tolerance);
    assert!(err.to_string().contains("computes another model"), "{err}");
}

#[test]
fn buffers_too_small_say_what_they_need() {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Two::build(&mut mem, &mut Rng::new(11)).unwrap();
    let plan = deploy::plan(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<4>)))
    })
    .unwrap();
    assert_eq!(plan.scratch_len(), 4 + 2 * 4);
    let mut out = Aligned([0u8; 1024]);
    let mut scratch = [0.0f32; 4];
    let err = deploy::export_f32(
        &net,
        &mut mem,
        |p| net.forward(p.input((p.rows(), Const::<4>))),
        &mut out.0,
        &mut scratch,
    );
    assert_eq!(err, Err(ExportError::ScratchTooSmall { needed: 12 }));
    let mut scratch = [0.0f32; 12];
    let err = deploy::export_f32(
        &net,
        &mut mem,
        |p| net.forward(p.input((p.rows(), Const::<4>))),
        &mut out.0[..16],
        &mut scratch,
    );
    assert_eq!(
        err,
        Err(ExportError::Format(deploy::FormatError::BufferTooSmall {
            needed: plan.file_len()
        }))
    );
}

/// `Linear` then `BatchNorm1d` (eval mode): the norm is folded into the
/// layer's weights, so the file holds two plain dense layers that compute
/// what the unfolded model does; int8 quantization takes the folded file.
#[test]
fn a_batch_norm_after_a_linear_is_folded_into_it() {
    use ember_nn_core::nn::BatchNorm1d;
    type Net = (
        Linear<4, 6>,
        BatchNorm1d<6>,
        ReLU,
        Linear<6, 2>,
        BatchNorm1d<2>,
    );
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut net = Net::build(&mut mem, &mut Rng::new(11)).unwrap();
    // Statistics and affine parameters far from the identity.
    mem.set_value(&net.1.weight, &[1.5, -0.7, 0.3, 2.0, 1.0, -1.2])
        .unwrap();
    mem.set_value(&net.1.bias, &[0.1, -0.2, 0.3, 0.0, 0.5, -0.4])
        .unwrap();
    mem.write(net.1.running_mean, &[0.2, -0.3, 0.1, 0.4, -0.5, 0.0])
        .unwrap();
    mem.write(net.1.running_var, &[0.5, 2.0, 0.1, 1.5, 0.8, 3.0])
        .unwrap();
    mem.set_value(&net.4.weight, &[0.8, -1.5]).unwrap();
    mem.set_value(&net.4.bias, &[0.2, 0.3]).unwrap();
    mem.write(net.4.running_mean, &[-0.1, 0.25]).unwrap();
    mem.write(net.4.running_var, &[0.4, 1.7]).unwrap();

    // In training mode the norm depends on the batch: refused by name.
    let err = deploy::plan(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<4>)))
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

    net.eval();
    // export_f32 checks the folded file against the graph (F32_TOLERANCE).
    let (file, n) = export(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<4>)))
    })
    .unwrap();
    let model = Model::load::<(Linear<4, 6>, ReLU, Linear<6, 2>)>(&file.0[..n]).unwrap();
    let xs = rows(8, 4, 3);
    let expected = graph_outputs::<4, 2>(&mut mem, &xs, |x| net.forward(x));
    assert_same(&file.0[..n], &xs, &expected);

    // int8: calibrate on the rows, quantize, run.
    let mut calib = deploy::Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    for x in &xs {
        calib.observe(&model, x, &mut scratch).unwrap();
    }
    let mut q = Box::new(Aligned([0u8; 8192]));
    let qn = deploy::quantize(&model, &calib, &mut q.0).unwrap();
    let q8 = Model::load::<(Linear<4, 6>, ReLU, Linear<6, 2>)>(&q.0[..qn]).unwrap();
    let (mut quantized, mut s8, mut out) = (vec![0i8; 4], vec![0i8; q8.scratch_len()], [0.0f32; 2]);
    let largest = expected
        .iter()
        .flatten()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    for (x, e) in xs.iter().zip(&expected) {
        q8.infer_i8(x, &mut quantized, &mut s8, &mut out).unwrap();
        for (a, b) in out.iter().zip(e) {
            // Quantization error: a few percent of the output range.
            assert!((a - b).abs() <= 0.1 * (1.0 + largest), "{out:?} vs {e:?}");
        }
    }
}

/// A batch norm that does not directly follow a `linear` node is refused.
#[test]
fn a_batch_norm_not_after_a_linear_is_refused() {
    use ember_nn_core::nn::BatchNorm1d;
    type Net = (Linear<4, 3>, ReLU, BatchNorm1d<3>, Linear<3, 2>);
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut net = Net::build(&mut mem, &mut Rng::new(12)).unwrap();
    net.eval();
    let err = export(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<4>)))
    })
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(
            err,
            ExportError::Unsupported {
                op: "NativeBatchNormBackward",
                from_output: 1,
                ..
            }
        ),
        "{err}"
    );
    // Before the first layer: nothing to fold into.
    type First = (BatchNorm1d<4>, Linear<4, 2>);
    let mut first = First::build(&mut mem, &mut Rng::new(13)).unwrap();
    first.eval();
    let err = export(&first, &mut mem, |p| {
        first.forward(p.input((p.rows(), Const::<4>)))
    })
    .map(|_| ())
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

/// A batch norm over positions (`BatchNorm1d` on `[N, C, L]`; a
/// `BatchNorm2d` likewise) is refused even right after a `Linear` whose
/// output is only reshaped: its channels are not the layer's outputs, and
/// the format has no convolution to fold it into.
#[test]
fn a_batch_norm_over_positions_is_refused() {
    use ember_nn_core::nn::BatchNorm1d;
    type Net = (Linear<4, 6>, BatchNorm1d<3>, Linear<6, 2>);
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut net = Net::build(&mut mem, &mut Rng::new(14)).unwrap();
    net.eval();
    let err = export(&net, &mut mem, |p| {
        let h = net.0.forward(p.input((p.rows(), Const::<4>)));
        let rows = h.shape().0;
        let h = net.1.forward(h.reshape_to((rows, Const::<3>, Const::<2>)));
        net.2.forward(h.reshape_to((rows, Const::<6>)))
    })
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(
            err,
            ExportError::Unsupported {
                op: "NativeBatchNormBackward",
                why,
                ..
            } if why.contains("spatial")
        ),
        "{err}"
    );
}
