//! A `Sequential` filled with `add_module` (issue 12, "the seeds"):
//!
//! ```python
//! class NNN(torch.nn.Module):
//!     def __init__(self):
//!         super(NNN, self).__init__()
//!         self.layers = torch.nn.Sequential()
//!         self.layers.add_module('lin1', torch.nn.Linear(10, 5))
//!         self.layers.add_module('relu1', torch.nn.ReLU())
//!         self.layers.add_module('lin2', torch.nn.Linear(5, 2))
//!     def forward(self, input):
//!         return self.layers(input)
//! ```
//!
//! Ember's modules are types, fixed at compile time, so "add a module under
//! a name" is "declare a field of that name": a derived struct whose fields
//! are the modules in order gives the same parameter names
//! (`layers.lin1.weight`, ...). A plain `nn.Sequential(a, b, c)` is a tuple
//! (`0.weight`, `2.weight`). The example checks both against PyTorch's names.
//!
//! Run: `cargo run --release -p ember-nn-core --example seed_add_module`

use ember_nn_core::nn::{summary, Build, Forward, Linear, Module, ReLU};
use ember_nn_core::prelude::*;

/// `nn.Sequential()` with `add_module('lin1', ...)`, `('relu1', ...)`, `('lin2', ...)`.
#[derive(Module)]
struct Layers {
    lin1: Linear<10, 5>,
    relu1: ReLU,
    lin2: Linear<5, 2>,
}

/// A `Sequential` runs its modules in the order they were added.
impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<10>), B>> for Layers {
    type Output = Tensor<'t, (usize, Const<2>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<10>), B>) -> Self::Output {
        self.lin2.forward(self.relu1.forward(self.lin1.forward(x)))
    }
}

#[allow(clippy::upper_case_acronyms)]
#[derive(Module)]
struct NNN {
    layers: Layers,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<10>), B>> for NNN {
    type Output = Tensor<'t, (usize, Const<2>), B>;
    fn forward(&self, input: Tensor<'t, (usize, Const<10>), B>) -> Self::Output {
        self.layers.forward(input)
    }
}

/// `net = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))`
type Net = (Linear<10, 5>, ReLU, Linear<5, 2>);

fn names<M: Module>(m: &M) -> Vec<String> {
    let mut v = Vec::new();
    m.named_parameters(&mut |p| v.push(p.name.to_string()));
    v
}

fn main() -> Result<()> {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(0);

    let nnn = NNN::build(&mut mem, &mut rng)?;
    print!("{}", summary(&nnn));
    // PyTorch: [n for n, _ in NNN().named_parameters()]
    assert_eq!(
        names(&nnn),
        [
            "layers.lin1.weight",
            "layers.lin1.bias",
            "layers.lin2.weight",
            "layers.lin2.bias"
        ]
    );
    // print(net) names each module as PyTorch does; the container prints
    // under its Rust type's name (`Layers`) where PyTorch says `Sequential`.
    assert!(summary(&nnn).to_string().starts_with(
        "NNN(\n  (layers): Layers(\n    (lin1): Linear(in_features=10, out_features=5, bias=True)\n    (relu1): ReLU()\n    (lin2): Linear(in_features=5, out_features=2, bias=True)\n  )\n)"
    ));

    let net = Net::build(&mut mem, &mut rng)?;
    print!("{}", summary(&net));
    assert_eq!(names(&net), ["0.weight", "0.bias", "2.weight", "2.bias"]);

    // Same weights in both: copy net's into nnn (what load_state_dict would
    // do by position), then both give the same output on X = torch.rand(3, 10).
    let copies = [
        (net.0.weight.value, nnn.layers.lin1.weight.value),
        (net.0.bias.value, nnn.layers.lin1.bias.value),
        (net.2.weight.value, nnn.layers.lin2.weight.value),
        (net.2.bias.value, nnn.layers.lin2.bias.value),
    ];
    for (from, to) in copies {
        let mut v = vec![0.0f32; from.len];
        mem.read(from, &mut v)?;
        mem.write(to, &v)?;
    }
    let xs: Vec<f32> = (0..3 * 10).map(|_| rng.uniform()).collect();
    let (mut a, mut b) = ([0.0f32; 6], [0.0f32; 6]);
    {
        let g = Graph::new(&mut mem);
        let x = g.from_slice((3usize, Const::<10>), &xs);
        nnn.forward(x).read(&mut a)?;
        net.forward(x).read(&mut b)?;
    }
    assert_eq!(a, b);
    println!("NNN()(X) == Sequential(...)(X) with the same weights: {a:?}");
    Ok(())
}
