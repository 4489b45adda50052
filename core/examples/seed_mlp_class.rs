//! The tutorials' `class MLP(nn.Module)` (issue 12, "the seeds"): two fields,
//! `hidden` and `out`, and a `forward` that applies `F.relu` between them.
//!
//! ```python
//! class MLP(nn.Module):
//!     def __init__(self):
//!         super().__init__()
//!         self.hidden = nn.Linear(10, 5)
//!         self.out = nn.Linear(5, 2)
//!     def forward(self, X):
//!         return self.out(F.relu(self.hidden(X)))
//! net = MLP(); X = torch.rand(3, 10); net(X)
//! ```
//!
//! `#[derive(Module)]` does what `nn.Module` does for the attributes
//! (parameter names, `print(net)`, building); `forward` is ours. The
//! example checks the names, the printout, and the output against the same
//! arithmetic done by hand on the parameters' values.
//!
//! Run: `cargo run --release -p ember-nn-core --example seed_mlp_class`

use ember_nn_core::nn::{summary, Build, Forward, Linear, Module};
use ember_nn_core::prelude::*;

/// Named `MLP`, as in the tutorials, so that `print(net)` reads the same.
#[allow(clippy::upper_case_acronyms)]
#[derive(Module)]
struct MLP {
    hidden: Linear<10, 5>,
    out: Linear<5, 2>,
}

/// `forward(self, X)`, for a batch of any number of rows of 10 features.
impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<10>), B>> for MLP {
    type Output = Tensor<'t, (usize, Const<2>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<10>), B>) -> Self::Output {
        // F.relu is the tensor method; nn.ReLU() would be a field (see
        // seed_add_module), which the computed memory bound then counts.
        self.out.forward(self.hidden.forward(x).relu())
    }
}

fn main() -> Result<()> {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(0);

    // net = MLP()
    let net = MLP::build(&mut mem, &mut rng)?;

    // print(net)
    let printed = summary(&net).to_string();
    print!("{printed}");
    assert!(printed.starts_with(
        "MLP(\n  (hidden): Linear(in_features=10, out_features=5, bias=True)\n  (out): Linear(in_features=5, out_features=2, bias=True)\n)"
    ));

    // [name for name, _ in net.named_parameters()]
    let mut names = Vec::new();
    net.named_parameters(&mut |p| names.push(format!("{} {:?}", p.name, p.dims)));
    assert_eq!(
        names,
        [
            "hidden.weight [5, 10]",
            "hidden.bias [5]",
            "out.weight [2, 5]",
            "out.bias [2]"
        ]
    );
    // sum(p.numel() for p in net.parameters())
    assert_eq!(net.param_count(), 10 * 5 + 5 + 5 * 2 + 2);

    // X = torch.rand(3, 10); net(X)
    let xs: Vec<f32> = (0..3 * 10).map(|_| rng.uniform()).collect();
    let mut y = [0.0f32; 3 * 2];
    {
        let g = Graph::new(&mut mem);
        let x = g.from_slice((3usize, Const::<10>), &xs);
        let out = net.forward(x);
        assert_eq!(out.dims().as_slice(), [3, 2]);
        out.read(&mut y)?;
    }
    println!("net(X) = {y:?}");

    // The same by hand: out.weight @ relu(hidden.weight @ x + hidden.bias) + out.bias.
    let (w1, b1) = (mem.value(&net.hidden.weight)?, mem.value(&net.hidden.bias)?);
    let (w2, b2) = (mem.value(&net.out.weight)?, mem.value(&net.out.bias)?);
    for (row, x) in xs.chunks(10).enumerate() {
        let h: Vec<f32> = (0..5)
            .map(|i| (b1[i] + (0..10).map(|k| w1[i][k] * x[k]).sum::<f32>()).max(0.0))
            .collect();
        for o in 0..2 {
            let want = b2[o] + (0..5).map(|i| w2[o][i] * h[i]).sum::<f32>();
            let got = y[row * 2 + o];
            assert!((got - want).abs() < 1e-5, "row {row}: {got} vs {want}");
        }
    }
    println!("net(X) matches the layers' arithmetic done by hand");
    Ok(())
}
