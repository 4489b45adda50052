// A 4×3 image flattened to 12 features, through dropout, into a Linear that
// takes 16: one error, at the Linear, with both widths.
use ember_nn_core::nn::{Build, Dropout, Flatten, Forward, Linear};
use ember_nn_core::prelude::*;

type Net = (Flatten<12>, Dropout, Linear<16, 2>);

fn main() {
    let mut buf = [0.0f32; 512];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0)).unwrap();
    let g = Graph::new(&mut mem);
    let x = g.tensor([[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [1.0, 2.0, 3.0]]]);
    let _y = net.forward(x);
}
