// A convolution takes the channels the layer before it produces.
use ember_nn_core::nn::{Build, Conv2d, Forward, ReLU};
use ember_nn_core::prelude::*;

fn main() {
    type Net = (Conv2d<1, 4, 3>, ReLU, Conv2d<8, 16, 3>);
    let mut buf = vec![0.0f32; 1 << 12];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0)).unwrap();
    let g = Graph::new(&mut mem);
    let x = g.from_fn((1usize, Const::<1>, Const::<8>, Const::<8>), |_| 0.0);
    let _ = net.forward(x);
}
