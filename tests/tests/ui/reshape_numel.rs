// [2, 3] (6 elements) reshaped to [4, 2] (8 elements): a constant-evaluation error.
use ember_nn_core::prelude::*;

fn main() {
    let mut buf = [0.0f32; 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.zeros::<Rank2<2, 3>>();
    let _ = a.reshape::<Rank2<4, 2>>();
}
