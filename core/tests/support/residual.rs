//! A residual block written in a derived model's `forward`, for the
//! convolution tests (training, gradients, export).

use ember_nn_core::nn::{self, Conv2d, Forward, GlobalAvgPool2d, Linear};
use ember_nn_core::prelude::*;

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
