//! The convolution tests' models (training, gradients, printing, export):
//! PyTorch's CNN tutorial and a residual block written in a derived
//! model's `forward`.

use ember_nn_core::nn::{self, Conv2d, Flatten, Forward, GlobalAvgPool2d, Linear, MaxPool2d, ReLU};
use ember_nn_core::prelude::*;

/// PyTorch's CNN tutorial on one channel of 28×28 (FashionMNIST):
/// `Conv2d(1, 6, 5)`, `MaxPool2d(2, 2)`, `Conv2d(6, 16, 5)`, then 120, 84, 10.
#[allow(dead_code)] // each test file uses what it needs
pub type Tutorial = (
    Conv2d<1, 6, 5>,
    ReLU,
    MaxPool2d<2>,
    Conv2d<6, 16, 5>,
    ReLU,
    MaxPool2d<2>,
    Flatten<256>,
    Linear<256, 120>,
    ReLU,
    Linear<120, 84>,
    ReLU,
    Linear<84, 10>,
);

/// `y = relu(x + conv2(relu(conv1(x))))` after a stem, then global average
/// pooling and a linear head: `[N, 2, H, W]` to 3 logits.
#[derive(nn::Module)]
pub struct Residual {
    stem: Conv2d<2, 4, 3, 1, 1>,
    conv1: Conv2d<4, 4, 3, 1, 1>,
    conv2: Conv2d<4, 4, 3, 1, 1>,
    pool: GlobalAvgPool2d,
    head: Linear<4, 3>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<2>, usize, usize), B>> for Residual {
    type Output = Tensor<'t, (usize, Const<3>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<2>, usize, usize), B>) -> Self::Output {
        let x = self.stem.forward(x).relu();
        let y = x + self.conv2.forward(self.conv1.forward(x).relu());
        self.head.forward(self.pool.forward(y.relu()))
    }
}
