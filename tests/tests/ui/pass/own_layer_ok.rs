// A layer of the user's own, written as the built-in ones are (`Forward` for
// any `LayerInput` of it), chains in a sequence and runs;
// `own_layer_width_mismatch.rs` is the same layer in a sequence that does not chain.
use ember_nn_core::nn::{Build, Forward, Linear, ReLU};
use ember_nn_core::prelude::*;

include!("../support/double_layer.rs");

type Net = (Linear<2, 16>, Double, ReLU, Linear<16, 2>);

fn main() {
    let mut buf = [0.0f32; 512];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0)).unwrap();
    let g = Graph::new(&mut mem);
    let y = net.forward(g.tensor([[1.0f32, 2.0]]));
    assert_eq!(y.dims().as_slice(), &[1, 2]);
    g.status().unwrap();
}
