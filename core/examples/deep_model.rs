//! A 16-module model (8 dense layers) built, summarised and trained for a few
//! steps: flat tuples keep compile times linear in depth (see BENCHMARKS.md).
//!
//! Run: `cargo run --release -p ember-nn-core --example deep_model`

use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::{self, summary, Build, Footprint, Forward, Linear, Optimizer, ReLU, Rule};
use ember_nn_core::prelude::*;

type Deep = (
    Linear<32, 64>,
    ReLU,
    Linear<64, 64>,
    ReLU,
    Linear<64, 64>,
    ReLU,
    Linear<64, 64>,
    ReLU,
    Linear<64, 64>,
    ReLU,
    Linear<64, 64>,
    ReLU,
    Linear<64, 64>,
    ReLU,
    Linear<64, 10>,
    ReLU,
);

const BATCH: usize = 16;
const FLOATS: usize =
    nn::train_floats::<Deep>(BATCH, nn::loss::Loss::CrossEntropy, nn::Rule::adam());

fn main() -> Result<()> {
    let mut buf = vec![0.0f32; FLOATS];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(0);
    let model = Deep::build(&mut mem, &mut rng)?;
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 1e-3)?;
    print!("{}", summary(&model));
    let labels: [usize; BATCH] = core::array::from_fn(|i| i % 10);
    for step in 0..5 {
        opt.zero_grad(&mut mem)?;
        let loss = {
            let g: Graph<'_, Cpu, { Deep::NODES + 16 }> = Graph::with_capacity(&mut mem);
            let x = g.from_fn((BATCH, Const::<32>), |i| ((i * 7919) % 101) as f32 / 101.0);
            let loss = cross_entropy(model.forward(x), &labels, Reduction::Mean);
            loss.backward()?;
            loss.item()?
        };
        opt.step(&mut mem)?;
        println!("step {step}: loss {loss:.4}");
    }
    Ok(())
}
