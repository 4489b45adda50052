// The user's own layer of the `own_layer` cases, written as the built-in
// layers are: `Forward` for any `LayerInput` of it. Included by each case
// (paths in full, so that it adds no imports to the case's own).

/// Multiplies its input by 2.
#[derive(Clone, Copy, Debug, Default)]
pub struct Double;

impl ember_nn_core::nn::Module for Double {
    fn visit(
        &self,
        _name: &mut ember_nn_core::nn::Name,
        _f: &mut dyn FnMut(&ember_nn_core::nn::ParamInfo<'_>),
    ) {
    }
    fn fmt_module(&self, f: &mut core::fmt::Formatter<'_>, _indent: usize) -> core::fmt::Result {
        f.write_str("Double()")
    }
}

impl ember_nn_core::nn::Build for Double {
    fn build<B: ember_nn_core::backend::Backend>(
        _mem: &mut ember_nn_core::Memory<'_, B>,
        _rng: &mut ember_nn_core::Rng,
    ) -> ember_nn_core::Result<Self> {
        Ok(Double)
    }
}

impl ember_nn_core::nn::Footprint for Double {
    const PARAMS: usize = 0;
    const NODES: usize = 1;
    const IN_FEATURES: Option<usize> = None;
    const OUT_FEATURES: Option<usize> = None;
    const SCRATCH_FIXED: usize = 0;
    const SCRATCH_PER_FEATURE: usize = 2;
}

impl<'t, S: ember_nn_core::shape::Shape, B: ember_nn_core::backend::Backend>
    ember_nn_core::nn::LayerInput<Double> for ember_nn_core::Tensor<'t, S, B>
{
    type Output = Self;
    fn run(self, _layer: &Double) -> Self {
        self * 2.0
    }
}

impl<X: ember_nn_core::nn::LayerInput<Self>> ember_nn_core::nn::Forward<X> for Double {
    type Output = X::Output;
    fn forward(&self, x: X) -> X::Output {
        x.run(self)
    }
}
