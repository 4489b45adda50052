//! Models whose widths are chosen at run time (a command line's
//! `--layers 784-256-128-10`): the same operations and memory as the typed
//! layers, with `usize` dimensions checked when the graph runs.

use super::{loss, Dropout, Forward, Layer, LayerInput, Module, Name, ParamInfo, ParamKind};
use crate::backend::activation::Activation;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::memory::{Memory, Param};
use crate::ops::map::Map;
use crate::rng::Rng;
use crate::shape::{Dim, Shape};
use crate::tensor::Tensor;
use core::fmt;

/// Most dense layers in an [`Mlp`].
pub const MAX_DEPTH: usize = 16;

/// A fully connected layer of run-time width, stored as `nn.Linear` stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynLinear {
    /// The weight, `[out, in]`.
    pub weight: Param<(usize, usize)>,
    /// The bias, `[out]`.
    pub bias: Param<(usize,)>,
}

impl DynLinear {
    /// A layer initialised as PyTorch does: `U(-1/√in, 1/√in)`.
    pub fn new<B: Backend>(
        mem: &mut Memory<'_, B>,
        rng: &mut Rng,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::InvalidArgument {
                what: "layer widths must be positive",
            });
        }
        let bound = 1.0 / crate::sqrt::sqrtf(in_features as f32);
        let weight = mem.param_zeros_shaped((out_features, in_features))?;
        mem.write_fn(weight.value, |_| rng.uniform_in(-bound, bound))?;
        let bias = mem.param_zeros_shaped((out_features,))?;
        mem.write_fn(bias.value, |_| rng.uniform_in(-bound, bound))?;
        Ok(DynLinear { weight, bias })
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.shape.1
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.shape.0
    }
}

impl Module for DynLinear {
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        for (seg, kind, dims, param) in [
            (
                "weight",
                ParamKind::Weight,
                self.weight.dims(),
                self.weight.into(),
            ),
            ("bias", ParamKind::Bias, self.bias.dims(), self.bias.into()),
        ] {
            name.with(seg, |n| {
                f(&ParamInfo {
                    name: n.as_str(),
                    kind,
                    dims,
                    param,
                })
            });
        }
    }

    fn layers(&self, f: &mut dyn FnMut(Layer)) {
        f(Layer::Dense {
            in_features: self.in_features(),
            out_features: self.out_features(),
            weight: self.weight.into(),
            bias: self.bias.into(),
        })
    }

    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        write!(
            f,
            "Linear(in_features={}, out_features={}, bias=True)",
            self.in_features(),
            self.out_features()
        )
    }
}

impl<'t, R: Dim, B: Backend> LayerInput<DynLinear> for Tensor<'t, (R, usize), B> {
    type Output = Self;
    fn run(self, layer: &DynLinear) -> Self {
        let g = self.tape();
        self.linear(g.param(&layer.weight), g.param(&layer.bias))
    }
}

impl<X: LayerInput<Self>> Forward<X> for DynLinear {
    type Output = X::Output;
    fn forward(&self, x: X) -> Self::Output {
        x.run(self)
    }
}

impl Activation {
    /// The elementwise function of the training graph (`None` for the identity).
    pub fn as_map(self) -> Option<Map> {
        Some(match self {
            Activation::Identity => return None,
            Activation::Relu => Map::Relu,
            Activation::Sigmoid => Map::Sigmoid,
            Activation::Tanh => Map::Tanh,
            Activation::LeakyRelu(s) => Map::LeakyRelu(s),
            Activation::Elu(a) => Map::Elu(a),
            Activation::Selu => Map::Selu,
            Activation::Silu => Map::Silu,
            Activation::Gelu => Map::GeluErf,
            Activation::GeluTanh => Map::GeluTanh,
            Activation::Softsign => Map::Softsign,
            Activation::Softplus => Map::Softplus,
        })
    }

    /// The name PyTorch prints for the activation module.
    pub fn module_name(self) -> &'static str {
        match self {
            Activation::Identity => "Identity()",
            Activation::Relu => "ReLU()",
            Activation::Sigmoid => "Sigmoid()",
            Activation::Tanh => "Tanh()",
            Activation::LeakyRelu(_) => "LeakyReLU()",
            Activation::Elu(_) => "ELU()",
            Activation::Selu => "SELU()",
            Activation::Silu => "SiLU()",
            Activation::Gelu => "GELU(approximate='none')",
            Activation::GeluTanh => "GELU(approximate='tanh')",
            Activation::Softsign => "Softsign()",
            Activation::Softplus => "Softplus(beta=1.0, threshold=20.0)",
        }
    }
}

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    /// Applies an activation given at run time.
    pub fn activation(self, a: Activation) -> Self {
        match a.as_map() {
            Some(m) => self.map(m),
            None => self,
        }
    }
}

/// A multilayer perceptron of run-time widths: `Linear, act, Linear, act, …,
/// Linear`, with PyTorch's `Sequential` parameter names (`0.weight`,
/// `2.weight`, …).
///
/// With [`with_dropout`](Self::with_dropout), a [`Dropout`] follows each
/// hidden activation in training mode (the default, as for a PyTorch
/// module; [`Module::eval`] turns it off). Dropout is the identity at
/// inference, so it is not one of the model's inference layers
/// ([`Module::layers`]), its parameter names and `print(model)`'s indices
/// stay those of the model without it (`0`, `2`, …: what is exported, and
/// what PyTorch's `Sequential` of the same linear layers loads), and it
/// appears in neither.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    layers: heapless::Vec<DynLinear, MAX_DEPTH>,
    activation: Activation,
    dropout: Option<Dropout>,
}

impl Mlp {
    /// An MLP with the given widths (`[784, 256, 128, 10]`) and hidden activation.
    pub fn new<B: Backend>(
        mem: &mut Memory<'_, B>,
        rng: &mut Rng,
        widths: &[usize],
        activation: Activation,
    ) -> Result<Self> {
        if widths.len() < 2 || widths.len() > MAX_DEPTH + 1 {
            return Err(Error::InvalidArgument {
                what: "an MLP needs 2 to 17 widths",
            });
        }
        let mut layers = heapless::Vec::new();
        for w in widths.windows(2) {
            compact_loop!();
            let l = DynLinear::new(mem, rng, w[0], w[1])?;
            layers.push(l).map_err(|_| Error::InvalidArgument {
                what: "too many layers",
            })?;
        }
        Ok(Mlp {
            layers,
            activation,
            dropout: None,
        })
    }

    /// This model with dropout of probability `p` after each hidden
    /// activation, its masks drawn from a generator seeded with `seed`; a
    /// `p` of 0 is no dropout. A `p` outside `[0, 1)` is
    /// [`Error::InvalidArgument`].
    pub fn with_dropout(mut self, p: f32, seed: u64) -> Result<Self> {
        let d = Dropout::new(p, seed)?;
        self.dropout = (p > 0.0).then_some(d);
        Ok(self)
    }

    /// The dropout probability after each hidden activation (0: none).
    pub fn dropout(&self) -> f32 {
        self.dropout.as_ref().map_or(0.0, Dropout::p)
    }

    /// Reseeds the dropout masks' generator (nothing without dropout).
    /// A training loop that must resume bit for bit reseeds it before each
    /// step from something its checkpoint restores (the run's seed and the
    /// batch's samples, as `ember train` does), since the generator's
    /// state is not a parameter.
    pub fn seed_dropout(&self, seed: u64) {
        if let Some(d) = &self.dropout {
            d.set_rng_state(Rng::new(seed).state());
        }
    }

    /// The dense layers.
    pub fn linears(&self) -> &[DynLinear] {
        &self.layers
    }

    /// The hidden activation.
    pub fn hidden_activation(&self) -> Activation {
        self.activation
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.layers.first().map_or(0, DynLinear::in_features)
    }

    /// Output features (classes).
    pub fn out_features(&self) -> usize {
        self.layers.last().map_or(0, DynLinear::out_features)
    }

    /// The widths, input first.
    pub fn widths(&self) -> heapless::Vec<usize, { MAX_DEPTH + 1 }> {
        let mut w = heapless::Vec::new();
        let _ = w.push(self.in_features());
        for l in &self.layers {
            compact_loop!();
            let _ = w.push(l.out_features());
        }
        w
    }

    /// Graph nodes one forward pass records (in training mode, with dropout).
    pub fn nodes(&self) -> usize {
        let dropout = match &self.dropout {
            Some(_) => <Dropout as super::Footprint>::NODES * self.layers.len().saturating_sub(1),
            None => 0,
        };
        4 * self.layers.len() + dropout
    }

    /// Floats of memory a training step needs: parameters, gradients,
    /// `opt_state_planes` floats of optimizer state per parameter, the input
    /// batch and the graph (with the dropout's masks, if any), with a
    /// cross-entropy loss (an upper bound).
    pub fn train_floats(&self, batch: usize, opt_state_planes: usize) -> usize {
        let widths = self.widths();
        Self::train_floats_with(&widths, batch, opt_state_planes, self.dropout.is_some())
            .unwrap_or(usize::MAX)
    }

    /// [`train_floats`](Self::train_floats) of an MLP of these widths
    /// without dropout, without building one (so that a run can be refused
    /// before any memory is taken); `None` when the count overflows a `usize`.
    pub fn train_floats_for(
        widths: &[usize],
        batch: usize,
        opt_state_planes: usize,
    ) -> Option<usize> {
        Self::train_floats_with(widths, batch, opt_state_planes, false)
    }

    /// [`train_floats_for`](Self::train_floats_for), with dropout after
    /// each hidden activation when `dropout` is true (its mask, its output
    /// and the output's gradient per hidden feature: [`Dropout`]'s
    /// [`Footprint`](super::Footprint)).
    pub fn train_floats_with(
        widths: &[usize],
        batch: usize,
        opt_state_planes: usize,
        dropout: bool,
    ) -> Option<usize> {
        let (&first, &last) = (widths.first()?, widths.last()?);
        let mut params = 0usize;
        // The input, then per layer the affine map and the activation,
        // values and gradients, and after a hidden layer the dropout's.
        let mut per_sample = first;
        let hidden = widths.len().saturating_sub(2);
        for (i, w) in widths.windows(2).enumerate() {
            compact_loop!();
            params = params.checked_add(w[0].checked_mul(w[1])?.checked_add(w[1])?)?;
            per_sample = per_sample.checked_add(w[1].checked_mul(4)?)?;
            if dropout && i < hidden {
                let d = <Dropout as super::Footprint>::SCRATCH_PER_FEATURE;
                per_sample = per_sample.checked_add(w[1].checked_mul(d)?)?;
            }
        }
        params
            .checked_mul(opt_state_planes.checked_add(2)?)?
            .checked_add(batch.checked_mul(per_sample)?)?
            .checked_add(loss::Loss::CrossEntropy.floats(batch, last))
    }

    /// Floats of memory for the parameters and gradients of an MLP of these widths.
    pub fn param_floats(widths: &[usize]) -> usize {
        2 * widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum::<usize>()
    }
}

const SEQ_INDEX: [&str; 2 * MAX_DEPTH] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
];

impl Module for Mlp {
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        for (i, l) in self.layers.iter().enumerate() {
            compact_loop!();
            name.with(SEQ_INDEX[2 * i], |n| l.visit(n, f));
        }
    }

    fn set_training(&mut self, training: bool) {
        if let Some(d) = &mut self.dropout {
            d.set_training(training);
        }
    }

    fn layers(&self, f: &mut dyn FnMut(Layer)) {
        let n = self.layers.len();
        for (i, l) in self.layers.iter().enumerate() {
            compact_loop!();
            l.layers(f);
            if i + 1 < n && self.activation != Activation::Identity {
                f(Layer::Activation(self.activation));
            }
        }
    }

    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result {
        f.write_str("Sequential(\n")?;
        let n = self.layers.len();
        let pad = |f: &mut fmt::Formatter<'_>, k: usize| (0..k).try_for_each(|_| f.write_str("  "));
        for (i, l) in self.layers.iter().enumerate() {
            compact_loop!();
            pad(f, indent + 1)?;
            write!(f, "({}): ", 2 * i)?;
            l.fmt_module(f, indent + 1)?;
            f.write_str("\n")?;
            if i + 1 < n {
                pad(f, indent + 1)?;
                writeln!(f, "({}): {}", 2 * i + 1, self.activation.module_name())?;
            }
        }
        pad(f, indent)?;
        f.write_str(")")
    }
}

impl<'t, R: Dim, B: Backend> LayerInput<Mlp> for Tensor<'t, (R, usize), B> {
    type Output = Self;
    fn run(self, model: &Mlp) -> Self {
        let n = model.layers.len();
        let g = self.tape();
        let mut h = self;
        for (i, l) in model.layers.iter().enumerate() {
            compact_loop!();
            let (w, b) = (g.param(&l.weight), g.param(&l.bias));
            h = match model.activation.as_map() {
                // Hidden layers: the activation fused into the layer where
                // its gradient allows (`Map::fuses`), else after it.
                Some(f) if i + 1 < n => h.linear_act(w, b, f),
                _ => h.linear(w, b),
            };
            if let (Some(d), true) = (&model.dropout, i + 1 < n) {
                h = d.forward(h);
            }
        }
        h
    }
}

impl<X: LayerInput<Self>> Forward<X> for Mlp {
    type Output = X::Output;
    fn forward(&self, x: X) -> Self::Output {
        x.run(self)
    }
}
