//! The fully connected layer.

use super::{Build, Footprint, Forward, Module, Name, ParamInfo, ParamKind};
use crate::backend::Backend;
use crate::error::Result;
use crate::memory::{Memory, Param};
use crate::rng::Rng;
use crate::shape::{Const, Dim, Rank1, Rank2};
use crate::tensor::Tensor;
use core::fmt;

/// `y = x Wᵀ + b`, with `W` stored `[OUT, IN]` and `b` `[OUT]`, as PyTorch's `nn.Linear`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear<const IN: usize, const OUT: usize> {
    /// The weight, `[OUT, IN]`.
    pub weight: Param<Rank2<OUT, IN>>,
    /// The bias, `[OUT]`.
    pub bias: Param<Rank1<OUT>>,
}

impl<const IN: usize, const OUT: usize> Linear<IN, OUT> {
    /// A layer whose weight and bias are drawn from `U(-1/√IN, 1/√IN)`, as PyTorch does.
    pub fn new<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        let bound = 1.0 / crate::sqrt::sqrtf(IN as f32);
        let weight = mem.param_from_fn(|_| rng.uniform_in(-bound, bound))?;
        let bias = mem.param_from_fn(|_| rng.uniform_in(-bound, bound))?;
        Ok(Linear { weight, bias })
    }
}

impl<const IN: usize, const OUT: usize> super::Signature for Linear<IN, OUT> {
    fn signature(f: &mut dyn FnMut(super::LayerKind)) {
        f(super::LayerKind::Dense {
            in_features: IN,
            out_features: OUT,
        })
    }
}

impl<const IN: usize, const OUT: usize> Build for Linear<IN, OUT> {
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self> {
        Self::new(mem, rng)
    }
}

impl<const IN: usize, const OUT: usize> Footprint for Linear<IN, OUT> {
    const PARAMS: usize = IN * OUT + OUT;
    // Weight, bias and the affine map (a vector input records a product and
    // a sum instead of the one affine node).
    const NODES: usize = 4;
    const IN_FEATURES: Option<usize> = Some(IN);
    const OUT_FEATURES: Option<usize> = Some(OUT);
    // One [batch, OUT] value (the fused affine map) and its gradient.
    const SCRATCH_FIXED: usize = 2 * OUT;
    const SCRATCH_PER_FEATURE: usize = 0;
}

impl<const IN: usize, const OUT: usize> Module for Linear<IN, OUT> {
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        name.with("weight", |n| {
            f(&ParamInfo {
                name: n.as_str(),
                kind: ParamKind::Weight,
                dims: self.weight.dims(),
                param: self.weight.into(),
            })
        });
        name.with("bias", |n| {
            f(&ParamInfo {
                name: n.as_str(),
                kind: ParamKind::Bias,
                dims: self.bias.dims(),
                param: self.bias.into(),
            })
        });
    }

    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        write!(f, "Linear(in_features={IN}, out_features={OUT}, bias=True)")
    }

    fn layers(&self, f: &mut dyn FnMut(super::Layer)) {
        f(super::Layer::Dense {
            in_features: IN,
            out_features: OUT,
            weight: self.weight.into(),
            bias: self.bias.into(),
        })
    }
}

/// An input a [`Linear<IN, OUT>`] can take: a tensor whose last dimension is
/// `Const<IN>`, batched (`(R, Const<IN>)`) or a single vector (`(Const<IN>,)`).
///
/// `Linear` implements [`Forward`] for any `X: LinearInput<IN, OUT>`, so that
/// a width that does not match is one error that says which widths disagree
/// (see [`LayerInput`](super::LayerInput) for why).
#[diagnostic::on_unimplemented(
    message = "`Linear<{IN}, {OUT}>` takes {IN} input features, but its input is `{Self}`",
    label = "this input is not `[batch, {IN}]` or `[{IN}]`",
    note = "in a sequence such as `(Linear<2, 16>, ReLU, Linear<16, 2>)`, each `Linear<IN, OUT>` takes the width the layer before it produces: its `IN` must equal the previous `OUT` (activations keep the width)"
)]
pub trait LinearInput<const IN: usize, const OUT: usize> {
    /// The result: the same batch with `OUT` features.
    type Output;
    /// `self Wᵀ + b`.
    fn linear(self, layer: &Linear<IN, OUT>) -> Self::Output;
}

impl<'t, R: Dim, const IN: usize, const OUT: usize, B: Backend> LinearInput<IN, OUT>
    for Tensor<'t, (R, Const<IN>), B>
{
    type Output = Tensor<'t, (R, Const<OUT>), B>;
    fn linear(self, layer: &Linear<IN, OUT>) -> Self::Output {
        let g = self.tape();
        Tensor::linear(self, g.param(&layer.weight), g.param(&layer.bias))
    }
}

impl<'t, const IN: usize, const OUT: usize, B: Backend> LinearInput<IN, OUT>
    for Tensor<'t, (Const<IN>,), B>
{
    type Output = Tensor<'t, (Const<OUT>,), B>;
    fn linear(self, layer: &Linear<IN, OUT>) -> Self::Output {
        let g = self.tape();
        g.param(&layer.weight).matmul(self) + g.param(&layer.bias)
    }
}

impl<X: LinearInput<IN, OUT>, const IN: usize, const OUT: usize> Forward<X> for Linear<IN, OUT> {
    type Output = X::Output;
    fn forward(&self, x: X) -> Self::Output {
        x.linear(self)
    }
}
