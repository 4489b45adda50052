// [2, 3, 4] flattens to [2, 12], not [2, 10].
use ember_nn_core::prelude::*;

fn main() {
    let mut buf = [0.0f32; 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.zeros::<Rank3<2, 3, 4>>();
    let _ = a.flatten::<10>();
}
