// A layer of the user's own, written as the built-in ones are (`Forward` for
// any `LayerInput` of it), between two Linears whose widths disagree: one
// error, at the second Linear, as with the built-in layers.
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

type Net = (Linear<2, 16>, Double, ReLU, Linear<8, 2>);

fn main() {
    let mut buf = [0.0f32; 512];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0)).unwrap();
    let g = Graph::new(&mut mem);
    let _y = net.forward(g.tensor([[1.0f32, 2.0]]));
}
