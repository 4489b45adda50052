// A sequence whose second Linear takes 8 features where the first gives 16:
// one error, at that Linear, that says which widths disagree.
use ember_nn_core::nn::{Build, Forward, Linear, ReLU};
use ember_nn_core::prelude::*;

type Net = (Linear<2, 16>, ReLU, Linear<8, 2>);

fn main() {
    let mut buf = [0.0f32; 512];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0)).unwrap();
    let g = Graph::new(&mut mem);
    let x = g.tensor([[1.0f32, 2.0]]);
    let _y = net.forward(x);
}
