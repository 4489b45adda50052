//! `#[derive(Module)]` on the tutorials' model classes: PyTorch's parameter
//! names and `print(model)`, computed memory constants, nested and tuple
//! structs, skipped fields, and training with the host API.
#![cfg(feature = "derive")]

use ember_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_core::nn::{
    self, Build, Dropout, Flatten, Footprint, Forward, Linear, Module, Optimizer, ReLU, Rule,
};
use ember_core::prelude::*;

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
    let plan = ember_core::deploy::plan(&nn, &mut mem, |p| {
        nn.forward(p.input((p.rows(), Const::<28>, Const::<28>)))
    })
    .unwrap();
    let layers: Vec<_> = plan
        .layers()
        .iter()
        .map(|l| (l.in_features, l.out_features, l.activation))
        .collect();
    use ember_core::deploy::Activation::{Identity, Relu};
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
