//! `#[derive(Module)]` on the tutorials' model classes: PyTorch's parameter
//! names and `print(model)`, computed memory constants, nested and tuple
//! structs, skipped fields, and training with the host API.
#![cfg(feature = "derive")]

use ember_nn_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_nn_core::nn::{
    self, Build, Dropout, Flatten, Footprint, Forward, Linear, Module, Optimizer, ReLU, Rule,
};
use ember_nn_core::prelude::*;

/// ```python
/// class MLP(nn.Module):
///     def __init__(self):
///         super().__init__()
///         self.hidden = nn.Linear(10, 5)
///         self.out = nn.Linear(5, 2)
///     def forward(self, X):
///         return self.out(F.relu(self.hidden(X)))
/// ```
///
/// The ReLU is a field (`nn.ReLU()` rather than `F.relu`) so that the
/// computed memory constants count its node; it has no parameters, so the
/// names are the same.
#[derive(Module)]
struct Mlp {
    hidden: Linear<10, 5>,
    act: ReLU,
    out: Linear<5, 2>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<10>), B>> for Mlp {
    type Output = Tensor<'t, (usize, Const<2>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<10>), B>) -> Self::Output {
        self.out.forward(self.act.forward(self.hidden.forward(x)))
    }
}

/// ```python
/// class NeuralNetwork(nn.Module):
///     def __init__(self):
///         super().__init__()
///         self.flatten = nn.Flatten()
///         self.linear_relu_stack = nn.Sequential(
///             nn.Linear(28*28, 512), nn.ReLU(),
///             nn.Linear(512, 512), nn.ReLU(),
///             nn.Linear(512, 10))
/// ```
/// (narrower here: 784-32-32-10).
#[derive(Module)]
struct NeuralNetwork {
    flatten: Flatten<784>,
    linear_relu_stack: (Linear<784, 32>, ReLU, Linear<32, 32>, ReLU, Linear<32, 10>),
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<28>, Const<28>), B>> for NeuralNetwork {
    type Output = Tensor<'t, (usize, Const<10>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<28>, Const<28>), B>) -> Self::Output {
        self.linear_relu_stack.forward(self.flatten.forward(x))
    }
}

/// A tuple struct, a nested derived struct, and a skipped field.
#[derive(Module)]
struct Wrapped(Mlp, Dropout);

#[derive(Module)]
struct WithSettings {
    body: Mlp,
    #[module(skip)]
    temperature: Option<f32>,
}

/// Layers with settings: PyTorch's `nn.Dropout(p=0.2)` and
/// `nn.LeakyReLU(0.1)`, a layer built by an expression that uses the
/// build's memory and generator, and a skipped field with a value.
#[derive(Module)]
struct Regularised {
    hidden: Linear<10, 5>,
    #[module(init = nn::LeakyReLU { negative_slope: 0.1 })]
    act: nn::LeakyReLU,
    #[module(p = 0.2)]
    drop: Dropout,
    #[module(init = Linear::build(mem, rng))]
    out: Linear<5, 2>,
    #[module(skip, init = 3)]
    label_count: usize,
}

/// A generic field with a probability: `Build` is bounded by `BuildWithP`.
#[derive(Module)]
struct Generic<D> {
    hidden: Linear<2, 2>,
    #[module(p = 0.1)]
    drop: D,
}

/// A probability out of range, given to the derive.
#[derive(Module)]
struct BadDropout {
    hidden: Linear<2, 2>,
    #[module(p = 1.5)]
    drop: Dropout,
}

/// An `init` whose `Result` is an error.
#[derive(Module)]
struct FailingInit {
    #[module(init = Dropout::new(-0.5, 1))]
    drop: Dropout,
}

fn names<M: Module>(m: &M) -> Vec<String> {
    let mut v = Vec::new();
    m.named_parameters(&mut |p| v.push(format!("{} {:?}", p.name, p.dims)));
    v
}

#[test]
fn parameter_names_are_pytorchs() {
    let mut buf = vec![0.0f32; 60_000];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mlp = Mlp::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(
        names(&mlp),
        [
            "hidden.weight [5, 10]",
            "hidden.bias [5]",
            "out.weight [2, 5]",
            "out.bias [2]"
        ]
    );
    let nn = NeuralNetwork::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(
        names(&nn),
        [
            "linear_relu_stack.0.weight [32, 784]",
            "linear_relu_stack.0.bias [32]",
            "linear_relu_stack.2.weight [32, 32]",
            "linear_relu_stack.2.bias [32]",
            "linear_relu_stack.4.weight [10, 32]",
            "linear_relu_stack.4.bias [10]",
        ]
    );
    let w = Wrapped::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(names(&w)[0], "0.hidden.weight [5, 10]");
    let s = WithSettings::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(s.temperature, None);
    assert_eq!(names(&s)[3], "body.out.bias [2]");
}

#[test]
fn print_model_is_pytorchs() {
    let mut buf = vec![0.0f32; 60_000];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let nn = NeuralNetwork::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(
        nn::summary(&nn).to_string().lines().take(10).collect::<Vec<_>>().join("\n"),
        "NeuralNetwork(\n  (flatten): Flatten(start_dim=1, end_dim=-1)\n  (linear_relu_stack): Sequential(\n    (0): Linear(in_features=784, out_features=32, bias=True)\n    (1): ReLU()\n    (2): Linear(in_features=32, out_features=32, bias=True)\n    (3): ReLU()\n    (4): Linear(in_features=32, out_features=10, bias=True)\n  )\n)"
    );
}

#[test]
fn memory_constants_are_computed() {
    assert_eq!(Mlp::PARAMS, 10 * 5 + 5 + 5 * 2 + 2);
    assert_eq!(Mlp::IN_FEATURES, Some(10));
    assert_eq!(Mlp::OUT_FEATURES, Some(2));
    assert_eq!(
        NeuralNetwork::PARAMS,
        <(
            Flatten<784>,
            Linear<784, 32>,
            ReLU,
            Linear<32, 32>,
            ReLU,
            Linear<32, 10>
        )>::PARAMS
    );
    assert_eq!(NeuralNetwork::IN_FEATURES, Some(784));
    assert_eq!(WithSettings::PARAMS, Mlp::PARAMS);
}

/// A derived model's deployable layers are what its forward pass runs
/// (`deploy::plan`), here through the flatten and the nested sequence.
#[test]
fn a_derived_models_layers_are_read_off_its_forward_pass() {
    let mut buf = vec![0.0f32; 64 * 1024];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let nn = NeuralNetwork::build(&mut mem, &mut Rng::new(0)).unwrap();
    let plan = ember_nn_core::deploy::plan(&nn, &mut mem, |p| {
        nn.forward(p.input((p.rows(), Const::<28>, Const::<28>)))
    })
    .unwrap();
    let layers: Vec<_> = plan
        .layers()
        .iter()
        .map(|l| (l.in_features, l.out_features, l.activation))
        .collect();
    use ember_nn_core::deploy::Activation::{Identity, Relu};
    assert_eq!(
        layers,
        [(784, 32, Relu), (32, 32, Relu), (32, 10, Identity)]
    );
}

/// The derived model trains with the host API in an arena of exactly the
/// size its computed constants give, which its steps use entirely.
#[test]
fn a_derived_model_trains() {
    const B: nn::TrainBudget = nn::train_budget::<Mlp>(16, Loss::CrossEntropy, Rule::adam());
    let mut buf = vec![0.0f32; B.floats];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Mlp::build(&mut mem, &mut Rng::new(3)).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 0.05).unwrap();
    let xs: Vec<f32> = (0..160)
        .map(|i| ((i * 7919) % 97) as f32 / 48.0 - 1.0)
        .collect();
    let ys: Vec<usize> = (0..16)
        .map(|r| usize::from(xs[r * 10] + xs[r * 10 + 1] > 0.0))
        .collect();
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..200 {
        opt.zero_grad(&mut mem).unwrap();
        {
            let g = Graph::<Cpu, { B.nodes }>::with_capacity(&mut mem);
            let x = g.from_slice((16usize, Const::<10>), &xs);
            let loss = cross_entropy(model.forward(x), &ys, Reduction::Mean);
            loss.backward().unwrap();
            assert_eq!(g.peak() + mem_used(&model), B.floats);
            last = loss.item().unwrap();
            first.get_or_insert(last);
        }
        opt.step(&mut mem).unwrap();
    }
    assert!(last < first.unwrap() / 4.0, "{first:?} -> {last}");
}

/// Parameters, gradients and Adam's two moments.
fn mem_used(m: &Mlp) -> usize {
    4 * m.param_count()
}

/// `#[module(p = 0.2)]` builds the dropout with p = 0.2: `print(model)`
/// says so, and in training mode it zeroes a fifth of a large tensor and
/// scales the rest by 1/0.8; in evaluation mode it passes its input through.
#[test]
fn field_attributes_set_how_layers_are_built() {
    let mut buf = vec![0.0f32; 400_000];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut model = Regularised::build(&mut mem, &mut Rng::new(5)).unwrap();
    let text = nn::summary(&model).to_string();
    assert!(
        text.starts_with(
            "Regularised(\n  (hidden): Linear(in_features=10, out_features=5, bias=True)\n  (act): LeakyReLU(negative_slope=0.1)\n  (drop): Dropout(p=0.2, inplace=False)\n  (out): Linear(in_features=5, out_features=2, bias=True)\n)"
        ),
        "{text}"
    );
    assert_eq!(model.drop.p(), 0.2);
    assert_eq!(model.label_count, 3);
    let generic = Generic::<Dropout>::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(generic.drop.p(), 0.1);
    assert_eq!(
        names(&model),
        [
            "hidden.weight [5, 10]",
            "hidden.bias [5]",
            "out.weight [2, 5]",
            "out.bias [2]"
        ]
    );
    // The expression-built layer is initialised as PyTorch's default:
    // within ±1/√5.
    let w: Vec<f32> = mem
        .value(&model.out.weight)
        .unwrap()
        .iter()
        .flatten()
        .copied()
        .collect();
    assert!(w.iter().all(|v| v.abs() <= 1.0 / 5f32.sqrt()) && w.iter().any(|v| *v != 0.0));

    const N: usize = 100_000;
    model.train();
    let (zeros, kept_right) = {
        let g = Graph::new(&mut mem);
        let y = model.drop.forward(g.from_fn((N,), |_| 1.0));
        let mut out = vec![0.0f32; N];
        y.read(&mut out).unwrap();
        let zeros = out.iter().filter(|v| **v == 0.0).count();
        let kept_right = out.iter().all(|v| *v == 0.0 || (*v - 1.25).abs() < 1e-6);
        (zeros, kept_right)
    };
    let fraction = zeros as f32 / N as f32;
    assert!(
        (fraction - 0.2).abs() < 0.01,
        "{fraction} of the elements dropped"
    );
    assert!(kept_right, "the kept elements are not scaled by 1/(1 - p)");
    model.eval();
    let g = Graph::new(&mut mem);
    let y = model.drop.forward(g.from_fn((N,), |_| 1.0));
    let mut out = vec![0.0f32; N];
    y.read(&mut out).unwrap();
    assert!(out.iter().all(|v| *v == 1.0));
}

/// A probability out of range and an `init` that fails are errors from
/// `build`, not panics.
#[test]
fn bad_field_settings_are_build_errors() {
    let mut buf = vec![0.0f32; 1024];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    for r in [
        BadDropout::build(&mut mem, &mut Rng::new(0)).map(|_| ()),
        FailingInit::build(&mut mem, &mut Rng::new(0)).map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument { what } if what.contains("dropout probability")),
            "{e:?}"
        );
    }
}
