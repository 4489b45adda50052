//! `HardSwish`, a custom op (PyTorch's `nn.Hardswish`) shared by the tests
//! that train one as a layer and that check export refuses it.

use ember_nn_core::nn::ConstOp;
use ember_nn_core::ops::custom::CustomOp;
use ember_nn_core::Result;

/// `x · min(max(x + 3, 0), 6) / 6`, PyTorch's `nn.Hardswish`.
pub struct HardSwish;

impl CustomOp for HardSwish {
    fn name(&self) -> &'static str {
        "HardSwishBackward"
    }
    fn forward(&self, inputs: &[&[f32]], y: &mut [f32]) -> Result<()> {
        for (y, &x) in y.iter_mut().zip(inputs[0]) {
            *y = x * (x + 3.0).clamp(0.0, 6.0) / 6.0;
        }
        Ok(())
    }
    fn backward(
        &self,
        _: usize,
        inputs: &[&[f32]],
        _: &[f32],
        dy: &[f32],
        grad: &mut [f32],
    ) -> Result<()> {
        for ((g, &x), &d) in grad.iter_mut().zip(inputs[0]).zip(dy) {
            let slope = if x < -3.0 {
                0.0
            } else if x > 3.0 {
                1.0
            } else {
                (2.0 * x + 3.0) / 6.0
            };
            *g += d * slope;
        }
        Ok(())
    }
}

impl ConstOp for HardSwish {
    const OP: &'static Self = &HardSwish;
}
