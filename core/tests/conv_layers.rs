//! Convolution and pooling layers as a user writes them: PyTorch's CNN
//! tutorial as a sequence, a residual block in a derived model's `forward`,
//! `print(model)`, parameter names and training (their export:
//! `export_graph.rs`).

use ember_nn_core::gradcheck::{check, GradCheck};
use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::{
    self, AvgPool2d, Build, Conv2d, Flatten, Forward, Linear, MaxPool2d, Module, Optimizer, ReLU,
    Rule,
};
use ember_nn_core::prelude::*;

#[path = "support/quadrants.rs"]
mod quadrants;
use quadrants::quadrants;

#[test]
fn the_tutorial_cnn_prints_names_and_counts_as_pytorch() {
    let mut buf = vec![0.0f32; 1 << 17];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Tutorial::build(&mut mem, &mut Rng::new(0)).unwrap();
    // PyTorch: sum(p.numel() for p in net.parameters()) on one channel.
    assert_eq!(model.param_count(), 156 + 2416 + 30840 + 10164 + 850);
    assert_eq!(<Tutorial as nn::Footprint>::PARAMS, model.param_count());
    let mut names = Vec::new();
    model.named_parameters(&mut |p| names.push((p.name.to_string(), p.dims.as_slice().to_vec())));
    assert_eq!(names[0], ("0.weight".to_string(), vec![6, 1, 5, 5]));
    assert_eq!(names[2], ("3.weight".to_string(), vec![16, 6, 5, 5]));
    assert_eq!(names[4], ("7.weight".to_string(), vec![120, 256]));
    let printed = nn::summary(&model).to_string();
    for line in [
        "(0): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))",
        "(2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)",
        "(3): Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))",
    ] {
        assert!(printed.contains(line), "{line} not in\n{printed}");
    }
    let g = Graph::new(&mut mem);
    let y = model.forward(g.from_fn((2usize, Const::<1>, Const::<28>, Const::<28>), |_| 0.0));
    assert_eq!(y.dims().as_slice(), [2, 10]);
}

type Small = (
    Conv2d<1, 4, 3, 1, 1>,
    ReLU,
    MaxPool2d<2>,
    Conv2d<4, 8, 3>,
    ReLU,
    AvgPool2d<2>,
    Flatten<8>,
    Linear<8, 4>,
);

#[test]
fn a_cnn_learns_where_the_square_is() {
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(5);
    let model = Small::build(&mut mem, &mut rng).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 0.02).unwrap();
    let (xs, ys) = quadrants(32, &mut rng);
    let mut losses = Vec::new();
    for _ in 0..60 {
        opt.zero_grad(&mut mem).unwrap();
        {
            let g = Graph::new(&mut mem);
            let x = g.from_slice((32usize, Const::<1>, Const::<8>, Const::<8>), &xs);
            let loss = cross_entropy(model.forward(x), &ys, Reduction::Mean);
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
}

#[path = "support/cnn_models.rs"]
mod cnn_models;
use cnn_models::{Residual, Tutorial};

#[test]
fn a_residual_blocks_gradients_agree_with_finite_differences() {
    let mut buf = vec![0.0f32; 1 << 17];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(11);
    let model = Residual::build(&mut mem, &mut rng).unwrap();
    let x: Vec<f32> = (0..2 * 2 * 5 * 4)
        .map(|_| rng.uniform_in(-1.0, 1.0))
        .collect();
    let mut params = Vec::new();
    model.named_parameters(&mut |p| params.push(p.param));
    let report = check(&mut mem, &params, &GradCheck::default(), |g| {
        let x = g.from_slice((2usize, Const::<2>, 5usize, 4usize), &x);
        let y = model.forward(x);
        cross_entropy(y, &[0, 2], Reduction::Mean)
    })
    .expect("gradients agree");
    assert_eq!(report.checked, model.param_count());
}
