//! The training loop of the PyTorch tutorials, step for step, with no
//! allocator in the loop: for each epoch, for each batch, zero_grad, forward,
//! loss, backward, optimizer step; a scheduler step per epoch; loss and
//! accuracy reported per epoch. The data is a generated two-spirals set.
//!
//! Run: `cargo run --release -p ember-nn-core --example train_loop`

use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::sched::{CosineAnnealingLR, LrScheduler};
use ember_nn_core::nn::{
    self, summary, Build, Forward, Linear, Module, Optimizer, ReLU, Rule, Tanh,
};
use ember_nn_core::prelude::*;

const N: usize = 400;
const BATCH: usize = 40;
const EPOCHS: usize = 120;

type Model = (Linear<2, 32>, Tanh, Linear<32, 32>, ReLU, Linear<32, 2>);
const FLOATS: usize =
    nn::train_floats::<Model>(BATCH, nn::loss::Loss::CrossEntropy, nn::Rule::adam());

/// Two interleaved spirals, one per class.
fn spirals(rng: &mut Rng, xs: &mut [[f32; 2]; N], ys: &mut [usize; N]) {
    for i in 0..N {
        let class = i % 2;
        let r = (i / 2) as f32 / (N / 2) as f32;
        let t = 1.25 * r * 2.0 * std::f32::consts::PI + class as f32 * std::f32::consts::PI;
        xs[i] = [
            r * t.cos() + 0.02 * rng.normal(),
            r * t.sin() + 0.02 * rng.normal(),
        ];
        ys[i] = class;
    }
}

fn main() -> Result<()> {
    let mut rng = Rng::new(2024);
    let (mut xs, mut ys) = ([[0.0f32; 2]; N], [0usize; N]);
    spirals(&mut rng, &mut xs, &mut ys);

    // All tensor memory, sized at compile time.
    let mut buf = vec![0.0f32; FLOATS];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut model = Model::build(&mut mem, &mut rng)?;
    let mut optimizer: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 0.02)?;
    let mut scheduler = CosineAnnealingLR::new(EPOCHS, 1e-4);
    println!("{}", summary(&model));
    println!("memory: {FLOATS} floats ({} KiB)\n", FLOATS * 4 / 1024);

    let mut order: [usize; N] = core::array::from_fn(|i| i);
    let (mut bx, mut by) = ([0.0f32; 2 * BATCH], [0usize; BATCH]);
    for epoch in 1..=EPOCHS {
        model.train();
        rng.shuffle(&mut order);
        let (mut loss_sum, mut correct) = (0.0f32, 0usize);
        for batch in order.chunks(BATCH) {
            let n = batch.len();
            for (j, &i) in batch.iter().enumerate() {
                bx[2 * j..2 * j + 2].copy_from_slice(&xs[i]);
                by[j] = ys[i];
            }
            optimizer.zero_grad(&mut mem)?;
            {
                let g = Graph::new(&mut mem);
                let x = g.from_slice((n, Const::<2>), &bx[..2 * n]);
                let logits = model.forward(x);
                let loss = cross_entropy(logits, &by[..n], Reduction::Mean);
                loss.backward()?;
                loss_sum += loss.item()? * n as f32;
                let mut pred = [0.0f32; BATCH];
                logits.argmax_axis::<1>().read(&mut pred[..n])?;
                correct += pred[..n]
                    .iter()
                    .zip(&by[..n])
                    .filter(|(p, y)| **p as usize == **y)
                    .count();
            }
            optimizer.step(&mut mem)?;
        }
        scheduler.step();
        optimizer.set_lr_with(|base| scheduler.lr(base));
        if epoch % 20 == 0 || epoch == 1 {
            println!(
                "epoch {epoch:>3}  loss {:.4}  accuracy {:.1}%  lr {:.5}",
                loss_sum / N as f32,
                100.0 * correct as f32 / N as f32,
                optimizer.lr()
            );
        }
    }
    Ok(())
}
