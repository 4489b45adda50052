// [1, 3] + [1, 2]: the operands' shapes are different types.
use ember_nn_core::prelude::*;

fn main() {
    let mut buf = [0.0f32; 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.tensor([[1.0f32, 2.0, 3.0]]);
    let b = g.tensor([[1.0f32, 2.0]]);
    let _ = a + b;
}
