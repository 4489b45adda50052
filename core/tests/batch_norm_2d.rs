//! `BatchNorm2d` between convolutions, as a user writes it: a CNN with a
//! batch norm after each convolution trains, its gradients agree with
//! finite differences, and evaluation mode runs on the running statistics.

use ember_nn_core::gradcheck::{check, GradCheck};
use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::{
    self, AvgPool2d, BatchNorm2d, Build, Conv2d, Flatten, Forward, Linear, MaxPool2d, Module,
    Optimizer, ReLU, Rule, Tanh,
};
use ember_nn_core::prelude::*;

#[path = "support/quadrants.rs"]
mod quadrants;
use quadrants::quadrants;

type Net = (
    Conv2d<1, 4, 3, 1, 1>,
    BatchNorm2d<4>,
    ReLU,
    MaxPool2d<2>,
    Conv2d<4, 8, 3>,
    BatchNorm2d<8>,
    ReLU,
    AvgPool2d<2>,
    Flatten<8>,
    Linear<8, 4>,
);

#[test]
fn a_cnn_with_batch_norms_learns_and_evaluates_on_running_statistics() {
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(5);
    let mut model = Net::build(&mut mem, &mut rng).unwrap();
    let printed = nn::summary(&model).to_string();
    assert!(printed.contains(
        "(1): BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    ));
    let mut buffers = Vec::new();
    model.named_buffers(&mut |b| buffers.push(b.name.to_string()));
    assert_eq!(
        buffers[..3],
        ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    );
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 0.02).unwrap();
    let (xs, ys) = quadrants(32, &mut rng);
    let shape = (32usize, Const::<1>, Const::<8>, Const::<8>);
    let mut losses = Vec::new();
    for _ in 0..60 {
        opt.zero_grad(&mut mem).unwrap();
        {
            let g = Graph::new(&mut mem);
            let loss = cross_entropy(
                model.forward(g.from_slice(shape, &xs)),
                &ys,
                Reduction::Mean,
            );
            loss.backward().unwrap();
            losses.push(loss.item().unwrap());
        }
        opt.step(&mut mem).unwrap();
    }
    assert!(
        losses[59] < 0.1 * losses[0],
        "{} -> {}",
        losses[0],
        losses[59]
    );
    let mut nb = [0.0f32];
    mem.read(model.5.num_batches_tracked, &mut nb).unwrap();
    assert_eq!(nb, [60.0]);

    // Evaluation mode: the running statistics, which leave the counts
    // alone; new samples are classified.
    model.eval();
    let (xt, yt) = quadrants(32, &mut rng);
    let g = Graph::new(&mut mem);
    let mut logits = vec![0.0f32; 32 * 4];
    model
        .forward(g.from_slice(shape, &xt))
        .read(&mut logits)
        .unwrap();
    let right = logits
        .chunks(4)
        .zip(&yt)
        .filter(|(l, &y)| (0..4).all(|k| l[k] <= l[y]))
        .count();
    assert!(right >= 28, "{right} of 32 right in eval mode");
    drop(g);
    mem.read(model.5.num_batches_tracked, &mut nb).unwrap();
    assert_eq!(nb, [60.0]);
}

/// `Net` with smooth activations and pooling: in training mode a batch
/// norm moves every value when one weight moves, so ReLU's kink and max
/// pooling's ties would be crossed by some finite-difference step.
type Smooth = (
    Conv2d<1, 4, 3, 1, 1>,
    BatchNorm2d<4>,
    Tanh,
    AvgPool2d<2>,
    Conv2d<4, 8, 3>,
    BatchNorm2d<8>,
    Tanh,
    AvgPool2d<2>,
    Flatten<8>,
    Linear<8, 4>,
);

#[test]
fn a_cnn_with_batch_norms_has_the_gradients_of_finite_differences() {
    let mut buf = vec![0.0f32; 1 << 17];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(11);
    let mut model = Smooth::build(&mut mem, &mut rng).unwrap();
    let x: Vec<f32> = (0..3 * 64).map(|_| rng.uniform_in(-1.0, 1.0)).collect();
    let mut params = Vec::new();
    model.named_parameters(&mut |p| params.push(p.param));
    for training in [true, false] {
        model.set_training(training);
        let report = check(&mut mem, &params, &GradCheck::default(), |g| {
            let x = g.from_slice((3usize, Const::<1>, Const::<8>, Const::<8>), &x);
            cross_entropy(model.forward(x), &[0, 2, 3], Reduction::Mean)
        })
        .unwrap_or_else(|e| panic!("training {training}: {e}"));
        assert_eq!(report.checked, model.param_count());
    }
}
