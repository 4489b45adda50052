// The well-shaped counterparts of the compile-fail cases build and run.
use ember_nn_core::prelude::*;

fn main() {
    let mut buf = [0.0f32; 256];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.tensor([[1.0f32, 2.0, 3.0]]);
    let _ = a + a;
    let m = g.zeros::<Rank2<2, 3>>();
    let _ = m.matmul(g.zeros::<Rank2<3, 5>>());
    let _ = m.reshape::<Rank2<3, 2>>();
    let _ = m.cat_to::<0, Rank2<3, 3>, _>(g.zeros::<Rank2<1, 3>>());
    let _ = g.zeros::<Rank3<2, 3, 4>>().flatten::<12>();
    let _ = a.squeeze::<0>();
    g.status().unwrap();
}
