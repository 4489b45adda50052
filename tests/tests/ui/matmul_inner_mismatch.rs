// [2, 3] · [4, 5]: the inner dimensions differ, so no `MatMul` impl applies.
use ember_nn_core::prelude::*;

fn main() {
    let mut buf = [0.0f32; 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.zeros::<Rank2<2, 3>>();
    let b = g.zeros::<Rank2<4, 5>>();
    let _ = a.matmul(b);
}
