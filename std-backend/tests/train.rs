//! A small model trained on `Parallel` follows the same path as on `Cpu`:
//! the layers are large enough for every parallel path (GEMM on several
//! threads, chunked elementwise kernels and optimizer updates) to run.

use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::{self, Build, Forward, Linear, Optimizer, ReLU, Rule};
use ember_nn_core::prelude::*;
use ember_nn_std::{Parallel, PAR_THRESHOLD};

const BATCH: usize = 128;
const IN: usize = 64;
const HIDDEN: usize = 512;
const CLASSES: usize = 10;
const STEPS: usize = 12;

type Model = (Linear<IN, HIDDEN>, ReLU, Linear<HIDDEN, CLASSES>);
const FLOATS: usize =
    nn::train_floats::<Model>(BATCH, nn::loss::Loss::CrossEntropy, nn::Rule::adam());

/// The loss after each of `STEPS` Adam steps on one fixed random batch.
fn losses<B: Backend<Buffer = [f32]>>(be: &B) -> Result<[f32; STEPS]> {
    let mut rng = Rng::new(7);
    let x: Vec<f32> = (0..BATCH * IN).map(|_| rng.normal()).collect();
    let y: Vec<usize> = (0..BATCH)
        .map(|_| rng.below(CLASSES as u32) as usize)
        .collect();

    let mut buf = vec![0.0f32; FLOATS];
    let mut mem = Memory::new(be, &mut buf[..]);
    let model = Model::build(&mut mem, &mut rng)?;
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 1e-3)?;
    let mut out = [0.0; STEPS];
    for loss_out in &mut out {
        opt.zero_grad(&mut mem)?;
        {
            let g = Graph::new(&mut mem);
            let x = g.from_slice((BATCH, Const::<IN>), &x);
            let loss = cross_entropy(model.forward(x), &y, Reduction::Mean);
            loss.backward()?;
            *loss_out = loss.item()?;
        }
        opt.step(&mut mem)?;
    }
    Ok(out)
}

#[test]
fn training_on_parallel_follows_cpu() {
    // Activations, their gradients and the first layer's weights are above
    // the threshold, so they take the chunked paths.
    const { assert!(BATCH * HIDDEN >= PAR_THRESHOLD && IN * HIDDEN >= PAR_THRESHOLD) };
    let reference = losses(&Cpu).unwrap();
    assert!(reference[STEPS - 1] < reference[0] * 0.9, "{reference:?}");
    for threads in [1, 2] {
        let ours = losses(&Parallel::new(threads)).unwrap();
        for (step, (a, b)) in reference.iter().zip(&ours).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "{threads} threads, step {step}: {b} against {a}"
            );
        }
    }
}
