// A layer of the user's own, written as the built-in ones are (`Forward` for
// any `LayerInput` of it), chains in a sequence and runs;
// `own_layer_width_mismatch.rs` is the same layer in a sequence that does not chain.
use ember_core::nn::{Build, Footprint, Forward, LayerInput, Linear, Module, Name, ParamInfo, ReLU};
use ember_core::prelude::*;

/// Multiplies its input by 2.
#[derive(Clone, Copy, Debug, Default)]
pub struct Double;

impl Module for Double {
    fn visit(&self, _name: &mut Name, _f: &mut dyn FnMut(&ParamInfo<'_>)) {}
    fn fmt_module(&self, f: &mut core::fmt::Formatter<'_>, _indent: usize) -> core::fmt::Result {
        f.write_str("Double()")
    }
}

impl Build for Double {
    fn build<B: Backend>(_mem: &mut Memory<'_, B>, _rng: &mut Rng) -> ember_core::Result<Self> {
        Ok(Double)
    }
}

impl Footprint for Double {
    const PARAMS: usize = 0;
    const NODES: usize = 1;
    const IN_FEATURES: Option<usize> = None;
    const OUT_FEATURES: Option<usize> = None;
    const SCRATCH_FIXED: usize = 0;
    const SCRATCH_PER_FEATURE: usize = 2;
}

impl<'t, S: Shape, B: Backend> LayerInput<Double> for Tensor<'t, S, B> {
    type Output = Self;
    fn run(self, _layer: &Double) -> Self {
        self * 2.0
    }
}

impl<X: LayerInput<Self>> Forward<X> for Double {
    type Output = X::Output;
    fn forward(&self, x: X) -> X::Output {
        x.run(self)
    }
}

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
