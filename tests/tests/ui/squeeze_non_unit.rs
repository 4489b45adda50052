// Axis 1 of [2, 3] has size 3, so it cannot be squeezed.
use ember_nn_core::prelude::*;

fn main() {
    let mut buf = [0.0f32; 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.zeros::<Rank2<2, 3>>();
    let _ = a.squeeze::<1>();
}
