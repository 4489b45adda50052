// A layer of the user's own, written as the built-in ones are (`Forward` for
// any `LayerInput` of it), between two Linears whose widths disagree: one
// error, at the second Linear, as with the built-in layers.
use ember_nn_core::nn::{Build, Forward, Linear, ReLU};
use ember_nn_core::prelude::*;

include!("support/double_layer.rs");

type Net = (Linear<2, 16>, Double, ReLU, Linear<8, 2>);

fn main() {
    let mut buf = [0.0f32; 512];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0)).unwrap();
    let g = Graph::new(&mut mem);
    let _y = net.forward(g.tensor([[1.0f32, 2.0]]));
}
