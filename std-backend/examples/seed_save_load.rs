//! Saving and loading a model's parameters (issue 12, "the seeds"):
//!
//! ```python
//! net = MLP(); X = torch.rand(3, 10); Y = net(X)
//! torch.save(net.state_dict(), 'mlp.params')
//! clone = MLP()
//! clone.load_state_dict(torch.load('mlp.params'))
//! clone.eval()
//! Y_clone = clone(X); Y_clone == Y
//! ```
//!
//! `ember_nn_std::state_dict` writes safetensors with PyTorch's names and
//! layouts (so `safetensors.torch.load_file` reads it into the same PyTorch
//! class) and loads strictly, as `load_state_dict(strict=True)` does. The
//! example checks that the clone's output is bit for bit the original's, and
//! that a model of another shape is refused with the tensor's name.
//!
//! Run: `cargo run --release -p ember-nn-std --example seed_save_load`

use ember_nn_core::nn::{Build, Forward, Linear, Module};
use ember_nn_core::prelude::*;
use ember_nn_std::state_dict::{self, StateDictError};

#[allow(clippy::upper_case_acronyms)]
#[derive(Module)]
struct MLP {
    hidden: Linear<10, 5>,
    out: Linear<5, 2>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<10>), B>> for MLP {
    type Output = Tensor<'t, (usize, Const<2>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<10>), B>) -> Self::Output {
        self.out.forward(self.hidden.forward(x).relu())
    }
}

/// The same class with a wider hidden layer: its file must not load into `MLP`.
#[derive(Module)]
struct Wider {
    hidden: Linear<10, 8>,
    out: Linear<8, 2>,
}

fn run<B: Backend>(net: &MLP, mem: &mut Memory<'_, B>, xs: &[f32]) -> Result<[f32; 6]> {
    let mut y = [0.0f32; 6];
    let g = Graph::new(mem);
    net.forward(g.from_slice((3usize, Const::<10>), xs))
        .read(&mut y)?;
    Ok(y)
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(0);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("mlp.params");

    let net = MLP::build(&mut mem, &mut rng)?;
    let xs: Vec<f32> = (0..3 * 10).map(|_| rng.uniform()).collect();
    let y = run(&net, &mut mem, &xs)?;

    // torch.save(net.state_dict(), 'mlp.params')
    state_dict::save(&path, &net, &mem)?;
    // print(net.state_dict()): what the file holds, by name.
    for t in state_dict::named_tensors(&net, &mem)? {
        println!(
            "{} {:?} {:.4?}",
            t.name,
            t.shape,
            &t.data[..t.data.len().min(5)]
        );
    }

    // clone = MLP(); clone.load_state_dict(torch.load('mlp.params')); clone.eval()
    let mut clone = MLP::build(&mut mem, &mut rng)?;
    assert_ne!(run(&clone, &mut mem, &xs)?, y, "a fresh MLP differs");
    state_dict::load(&path, &clone, &mut mem)?;
    clone.eval();
    let y_clone = run(&clone, &mut mem, &xs)?;
    println!("Y       {y:?}\nY_clone {y_clone:?}");
    assert_eq!(
        y_clone.map(f32::to_bits),
        y.map(f32::to_bits),
        "Y_clone == Y, bit for bit"
    );

    // strict=True: another architecture is refused, naming the tensor.
    let wider = Wider::build(&mut mem, &mut rng)?;
    let e = state_dict::load(&path, &wider, &mut mem).unwrap_err();
    println!("a wider model refuses the file, as load_state_dict(strict=True) does: {e}");
    assert!(matches!(e, StateDictError::Shape { ref name, .. } if name == "hidden.weight"));
    Ok(())
}
