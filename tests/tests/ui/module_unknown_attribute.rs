// A `#[module(...)]` key the derive does not know: one error, at the key,
// that lists the keys there are.
use ember_nn_core::nn::{Dropout, Linear, Module};

#[derive(Module)]
struct Net {
    hidden: Linear<4, 8>,
    #[module(prob = 0.2)]
    drop: Dropout,
}

fn main() {}
