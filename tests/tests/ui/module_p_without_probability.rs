// `#[module(p = ...)]` on a layer that has no probability: one error, at
// the value, that says so and points to `init`.
use ember_nn_core::nn::{Linear, Module};

#[derive(Module)]
struct Net {
    #[module(p = 0.2)]
    hidden: Linear<4, 8>,
}

fn main() {}
