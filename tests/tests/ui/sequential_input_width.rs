// A model's first Linear takes 2 features and the input has 3: one error,
// at the first layer, through the activations and dropout that follow.
use ember_nn_core::nn::{Build, Dropout, Forward, Linear, ReLU, Tanh};
use ember_nn_core::prelude::*;

type Net = (Linear<2, 16>, Tanh, Dropout, Linear<16, 4>, ReLU);

fn main() {
    let mut buf = [0.0f32; 512];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0)).unwrap();
    let g = Graph::new(&mut mem);
    let x = g.tensor([[1.0f32, 2.0, 3.0]]);
    let _y = net.forward(x);
}
