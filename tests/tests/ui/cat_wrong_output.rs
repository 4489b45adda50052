// [2, 3] ++ [1, 3] along axis 0 is [3, 3], not [4, 3].
use ember_nn_core::prelude::*;

fn main() {
    let mut buf = [0.0f32; 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.zeros::<Rank2<2, 3>>();
    let b = g.zeros::<Rank2<1, 3>>();
    let _ = a.cat_to::<0, Rank2<4, 3>, _>(b);
}
