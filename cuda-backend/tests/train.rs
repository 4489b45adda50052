//! A training smoke test: a small MLP from `ember_nn_core::nn`, its parameters,
//! gradients, Adam state and every activation in GPU memory, learns two
//! interleaved spirals; the loss falls, and it follows the same run on the
//! CPU reference step for step. Skipped (with a message) where there is no
//! CUDA device.

mod common;

use ember_nn_core::backend::{Backend, Device};
use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::{self, Build, Forward, Linear, Optimizer, ReLU, Rule, Tanh};
use ember_nn_core::prelude::*;

const N: usize = 128;
const STEPS: usize = 300;

type Model = (Linear<2, 32>, Tanh, Linear<32, 32>, ReLU, Linear<32, 2>);
const FLOATS: usize = nn::train_floats::<Model>(N, nn::loss::Loss::CrossEntropy, nn::Rule::adam());

/// Two interleaved spirals, one per class.
fn spirals() -> (Vec<f32>, Vec<usize>) {
    let mut rng = Rng::new(3);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for i in 0..N {
        let class = i % 2;
        let r = (i / 2) as f32 / (N / 2) as f32;
        let t = 1.25 * r * 2.0 * std::f32::consts::PI + class as f32 * std::f32::consts::PI;
        xs.push(r * t.cos() + 0.02 * rng.normal());
        xs.push(r * t.sin() + 0.02 * rng.normal());
        ys.push(class);
    }
    (xs, ys)
}

/// Full-batch Adam on `be`'s memory; the loss before each step.
fn train<B: Backend>(mem: &mut Memory<'_, B>, xs: &[f32], ys: &[usize]) -> Vec<f32> {
    let mut rng = Rng::new(11);
    let model = Model::build(mem, &mut rng).unwrap();
    let mut opt: Optimizer = Optimizer::new(mem, &model, Rule::adam(), 0.02).unwrap();
    let mut losses = Vec::with_capacity(STEPS);
    for _ in 0..STEPS {
        opt.zero_grad(mem).unwrap();
        {
            let g = Graph::new(mem);
            let x = g.from_slice((N, Const::<2>), xs);
            let loss = cross_entropy(model.forward(x), ys, Reduction::Mean);
            loss.backward().unwrap();
            losses.push(loss.item().unwrap());
        }
        opt.step(mem).unwrap();
    }
    losses
}

#[test]
fn an_mlp_learns_on_the_gpu_as_on_the_cpu() {
    let Some(cuda) = common::device() else {
        return;
    };
    let (xs, ys) = spirals();

    let mut dbuf = cuda.alloc(FLOATS).unwrap();
    let mut dmem = Memory::new(&cuda, &mut dbuf);
    let t = std::time::Instant::now();
    let gpu = train(&mut dmem, &xs, &ys);
    let elapsed = t.elapsed();

    let mut hbuf = vec![0.0f32; FLOATS];
    let mut hmem = Memory::new(&Cpu, &mut hbuf[..]);
    let cpu = train(&mut hmem, &xs, &ys);

    eprintln!(
        "{}: loss {:.4} -> {:.4} in {STEPS} steps ({elapsed:?}); CPU {:.4} -> {:.4}",
        cuda.name(),
        gpu[0],
        gpu[STEPS - 1],
        cpu[0],
        cpu[STEPS - 1]
    );
    // Same initial weights (same seed), same data: the first loss agrees.
    assert!((gpu[0] - cpu[0]).abs() < 1e-5, "{} vs {}", gpu[0], cpu[0]);
    // The early trajectory agrees within rounding (it may drift later).
    for (i, (g, c)) in gpu.iter().zip(&cpu).take(20).enumerate() {
        assert!(
            (g - c).abs() < 1e-3 * c.abs().max(1.0),
            "step {i}: {g} vs {c}"
        );
    }
    // And it learns.
    assert!(gpu.iter().all(|l| l.is_finite()));
    assert!(
        gpu[STEPS - 1] < 0.5 * gpu[0],
        "the loss did not fall: {} -> {}",
        gpu[0],
        gpu[STEPS - 1]
    );
}
