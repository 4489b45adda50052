// A batch norm takes the channels the convolution before it produces.
use ember_nn_core::nn::{BatchNorm2d, Build, Conv2d, Forward};
use ember_nn_core::prelude::*;

fn main() {
    type Net = (Conv2d<1, 4, 3>, BatchNorm2d<8>);
    let mut buf = vec![0.0f32; 1 << 12];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0)).unwrap();
    let g = Graph::new(&mut mem);
    let x = g.from_fn((1usize, Const::<1>, Const::<8>, Const::<8>), |_| 0.0);
    let _ = net.forward(x);
}
