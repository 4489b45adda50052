//! A custom differentiable operation runs on the rayon backend as on the
//! portable one: same values, same gradients.

use ember_nn_core::ops::custom::CustomOp;
use ember_nn_core::prelude::*;
use ember_nn_std::Parallel;

/// `y = x · |x|`, gradient `2|x|`.
struct SignedSquare;

impl CustomOp for SignedSquare {
    fn name(&self) -> &'static str {
        "SignedSquareBackward"
    }
    fn forward(&self, inputs: &[&[f32]], y: &mut [f32]) -> Result<()> {
        for (y, &x) in y.iter_mut().zip(inputs[0]) {
            *y = x * x.abs();
        }
        Ok(())
    }
    fn backward(
        &self,
        _: usize,
        inputs: &[&[f32]],
        _: &[f32],
        dy: &[f32],
        g: &mut [f32],
    ) -> Result<()> {
        for ((g, &x), &d) in g.iter_mut().zip(inputs[0]).zip(dy) {
            *g += 2.0 * x.abs() * d;
        }
        Ok(())
    }
}

fn run<B: Backend>(be: &B, buf: &mut B::Buffer) -> ([f32; 6], [f32; 6]) {
    let mut mem = Memory::new(be, buf);
    let g: Graph<'_, B> = Graph::new(&mut mem);
    let x = g
        .tensor([[-1.5f32, 0.0, 2.0], [0.5, -0.25, 3.0]])
        .requires_grad();
    let w = g.tensor([[1.0f32, 2.0, -1.0], [0.5, 4.0, 1.0]]);
    let y = x.custom(&SignedSquare);
    assert_eq!(y.grad_fn(), Some("SignedSquareBackward"));
    (y * w).sum().backward().unwrap();
    let mut v = [0.0f32; 6];
    y.read(&mut v).unwrap();
    let mut d = [0.0f32; 6];
    assert!(x.read_grad(&mut d).unwrap());
    (v, d)
}

#[test]
fn custom_ops_run_on_the_rayon_backend() {
    let mut a = vec![0.0f32; 256];
    let mut b = vec![0.0f32; 256];
    let cpu = run(&Cpu, &mut a[..]);
    let par = run(&Parallel::try_new(2).unwrap(), &mut b[..]);
    assert_eq!(cpu, par);
    assert_eq!(cpu.0, [-2.25, 0.0, 4.0, 0.25, -0.0625, 9.0]);
    assert_eq!(cpu.1, [3.0, 0.0, -4.0, 0.5, 2.0, 6.0]);
}
