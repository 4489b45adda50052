//! Neural-network building blocks: modules, losses, optimizers, learning-rate
//! schedulers and initialisers, all without `std` or an allocator.
//!
//! A model is a type: a layer, or a tuple of layers run in sequence (PyTorch's
//! `nn.Sequential`). Its parameters live in a [`Memory`]; the model value
//! holds only where they are, so it is small and `Copy`-cheap to pass around.
//!
//! ```
//! use ember_nn_core::prelude::*;
//! use ember_nn_core::nn::{self, Build, Footprint, Forward, Linear, ReLU};
//!
//! type Mlp = (Linear<4, 8>, ReLU, Linear<8, 3>);
//! // Parameters, gradients, Adam's two moments, and a batch-16 step's scratch:
//! const FLOATS: usize = nn::train_floats::<Mlp>(16, nn::loss::Loss::CrossEntropy, nn::Rule::adam());
//! let mut buf = [0.0f32; FLOATS];
//! let mut mem = Memory::new(&Cpu, &mut buf[..]);
//! let mut rng = Rng::new(0);
//! let model = Mlp::build(&mut mem, &mut rng)?;
//! assert_eq!(Mlp::PARAMS, 4 * 8 + 8 + 8 * 3 + 3);
//!
//! let g = Graph::new(&mut mem);
//! let x = g.from_fn((16usize, Const::<4>), |i| (i % 7) as f32 / 7.0);
//! let logits = model.forward(x);
//! let labels = [0usize; 16];
//! let loss = nn::loss::cross_entropy(logits, &labels, nn::loss::Reduction::Mean);
//! loss.backward()?;
//! # Ok::<(), ember_nn_core::Error>(())
//! ```

pub mod activation;
pub mod conv;
pub mod dynamic;
pub mod init;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod sched;
mod sequential;
pub mod summary;
pub mod zoo;

pub use activation::{
    ConstOp, Custom, Dropout, Flatten, GELUTanh, LeakyReLU, ReLU, SiLU, Sigmoid, Softplus,
    Softsign, Tanh, ELU, GELU, SELU,
};
pub use conv::{
    AvgPool1d, AvgPool2d, Conv1d, Conv2d, Conv2dWith, DepthwiseConv2d, GlobalAvgPool2d, MaxPool1d,
    MaxPool2d,
};
pub use dynamic::{DynLinear, Mlp};
/// `#[derive(Module)]`: a struct of layers becomes a module (`Module`,
/// `Build`, `Footprint`), with PyTorch's parameter names; see
/// the `ember_nn_derive` crate.
#[cfg(feature = "derive")]
pub use ember_nn_derive::Module;
pub use linear::{Linear, LinearInput};
pub use norm::{BatchNorm, BatchNorm1d, BatchNorm2d, BatchNormConfig};
pub use optim::{Optimizer, Rule};
pub use summary::summary;

use crate::backend::Backend;
use crate::error::Result;
use crate::memory::{Memory, Param, ParamRef};
use crate::rng::Rng;
use crate::shape::{ConstShape, Dims, Shape};
use core::fmt;

/// What a parameter is, for initialisers that treat weights and biases apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A weight matrix.
    Weight,
    /// A bias vector.
    Bias,
}

/// A parameter as a model's visitor sees it.
#[derive(Clone, Copy, Debug)]
pub struct ParamInfo<'a> {
    /// Its name, as in PyTorch's `named_parameters()`: `0.weight`, `2.bias`, ...
    pub name: &'a str,
    /// Weight or bias.
    pub kind: ParamKind,
    /// Its shape (`[out, in]` for a weight).
    pub dims: Dims,
    /// Where it lives.
    pub param: ParamRef,
}

impl ParamInfo<'_> {
    /// Inputs per output unit (PyTorch's fan-in: the second dimension of a
    /// weight, 1 for a bias... as `torch.nn.init` computes it).
    pub fn fan_in(&self) -> usize {
        let d = self.dims.as_slice();
        if d.len() >= 2 {
            d[1..].iter().product()
        } else {
            d.first().copied().unwrap_or(1)
        }
    }
    /// Outputs (PyTorch's fan-out: the first dimension).
    pub fn fan_out(&self) -> usize {
        let d = self.dims.as_slice();
        if d.len() >= 2 {
            d[0] * d[2..].iter().product::<usize>()
        } else {
            d.first().copied().unwrap_or(1)
        }
    }
}

/// A buffer (non-trained state saved with the model, such as a batch
/// norm's running statistics) as a model's buffer visitor sees it.
#[derive(Clone, Copy, Debug)]
pub struct BufferInfo<'a> {
    /// Its name, as in PyTorch's `named_buffers()`: `1.running_mean`, ...
    pub name: &'a str,
    /// Its shape (`[]` for a scalar).
    pub dims: Dims,
    /// Where its values live.
    pub value: crate::backend::Span,
}

/// A dotted parameter path built without allocation.
pub struct Name {
    buf: heapless::String<128>,
}

impl Default for Name {
    fn default() -> Self {
        Self::new()
    }
}

impl Name {
    /// The empty path.
    pub fn new() -> Self {
        Name {
            buf: heapless::String::new(),
        }
    }
    /// The path so far.
    pub fn as_str(&self) -> &str {
        &self.buf
    }
    /// Runs `f` with `segment` appended (after a dot unless the path is empty).
    /// Paths longer than 128 bytes are cut short rather than failing.
    pub fn with<R>(&mut self, segment: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let len = self.push(segment);
        let r = f(self);
        self.buf.truncate(len);
        r
    }

    /// Appends `segment` as [`with`](Self::with) does and returns the
    /// length before. Out of line: once in a program's code, not once per
    /// closure that `with` runs.
    #[inline(never)]
    fn push(&mut self, segment: &str) -> usize {
        let len = self.buf.len();
        if !self.buf.is_empty() {
            let _ = self.buf.push('.');
        }
        for c in segment.chars() {
            compact_loop!();
            if self.buf.push(c).is_err() {
                break;
            }
        }
        len
    }
}

/// A layer or model: its parameters, names, mode and size.
///
/// Module types whose sizes are fixed at compile time also implement
/// [`Footprint`], whose constants let a program size its memory before
/// running: see [`train_floats`].
pub trait Module {
    /// Visits every parameter with its name (relative to `name`).
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>));

    /// Visits every buffer (state that is saved with the model but not
    /// trained: a batch norm's running statistics) with its name, as
    /// PyTorch's `named_buffers()`. Optimizers never see buffers. Default:
    /// none.
    fn visit_buffers(&self, name: &mut Name, f: &mut dyn FnMut(&BufferInfo<'_>)) {
        let _ = (name, f);
    }

    /// Calls `f` for every buffer with its full name.
    fn named_buffers(&self, f: &mut dyn FnMut(&BufferInfo<'_>)) {
        self.visit_buffers(&mut Name::new(), f)
    }

    /// Describes the module's inference layers in order, for modules whose
    /// forward pass is the library's: the built-in layers, sequences of them
    /// and [`Mlp`]. Layers that do nothing at inference (dropout, flatten)
    /// describe nothing. The default, and a derived model (whose `forward`
    /// is its author's), describe nothing: export reads the layers off the
    /// forward pass itself ([`deploy::plan`](crate::deploy::plan)).
    fn layers(&self, f: &mut dyn FnMut(Layer)) {
        let _ = f;
    }

    /// Switches between training and evaluation behaviour (dropout). Default: nothing.
    fn set_training(&mut self, training: bool) {
        let _ = training;
    }

    /// Writes this module the way PyTorch's `print(model)` does, indented by `indent` levels.
    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result;

    /// Scalar parameters (counted by visiting them).
    fn param_count(&self) -> usize {
        let mut n = 0;
        self.visit(&mut Name::new(), &mut |p| n += p.param.value.len);
        n
    }

    /// Calls `f` for every parameter with its full name.
    fn named_parameters(&self, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        self.visit(&mut Name::new(), f)
    }

    /// Training mode (PyTorch's `model.train()`).
    fn train(&mut self) {
        self.set_training(true)
    }

    /// Evaluation mode (PyTorch's `model.eval()`).
    fn eval(&mut self) {
        self.set_training(false)
    }

    /// Zeroes every parameter's gradient.
    fn zero_grad<B: Backend>(&self, mem: &mut Memory<'_, B>) -> Result<()>
    where
        Self: Sized,
    {
        let mut r = Ok(());
        self.named_parameters(&mut |p| {
            if r.is_ok() {
                r = mem.fill(p.param.grad, 0.0);
            }
        });
        r
    }
}

/// An inference layer, as the deployable format sees a model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layer {
    /// A fully connected layer and where its parameters live.
    Dense {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// The `[out, in]` weight.
        weight: ParamRef,
        /// The `[out]` bias.
        bias: ParamRef,
    },
    /// An elementwise activation.
    Activation(crate::backend::activation::Activation),
}

/// Sizes of a module type known at compile time: parameters, graph nodes,
/// and the scratch memory a training step needs, as an affine function of
/// the input width (so that a sequence can compose them).
pub trait Footprint {
    /// Scalar parameters.
    const PARAMS: usize;
    /// Floats of buffers (state saved with the model but not trained, such
    /// as a batch norm's running statistics); no gradient, no optimizer
    /// state. Default: 0.
    const BUFFERS: usize = 0;
    /// Graph nodes one forward pass records (an upper bound).
    const NODES: usize;
    /// Input features, when the module fixes them (a `Linear` does; an activation does not).
    const IN_FEATURES: Option<usize>;
    /// Output features, when the module changes them (`None`: same as its input).
    const OUT_FEATURES: Option<usize>;
    /// Scratch floats per sample for forward and backward, not counting the
    /// part proportional to the input width...
    const SCRATCH_FIXED: usize;
    /// ...which is this many floats per input feature per sample.
    const SCRATCH_PER_FEATURE: usize;
}

/// A layer of a model type, known without an instance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerKind {
    /// A fully connected layer.
    Dense {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
    },
    /// An elementwise activation (with its default parameter).
    Activation(crate::backend::activation::Activation),
}

/// A model type's inference layers, for checking a weight file against a type.
pub trait Signature {
    /// Describes the type's inference layers in order.
    fn signature(f: &mut dyn FnMut(LayerKind));
}

/// A module that can be made with its default initialisation.
pub trait Build: Sized {
    /// Allocates the parameters in `mem` and initialises them as PyTorch does.
    fn build<B: Backend>(mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self>;
}

/// A layer built with a probability: what `#[module(p = 0.2)]` on a field
/// of a derived model calls (for [`Dropout`], PyTorch's `nn.Dropout(p=0.2)`).
/// A value out of the layer's range is an error from `build`, not a panic.
#[diagnostic::on_unimplemented(
    message = "`#[module(p = ...)]` sets a probability, and `{Self}` has none",
    label = "`p` is for `Dropout` and other layers that implement `BuildWithP`",
    note = "build any other field with `#[module(init = <expression>)]`"
)]
pub trait BuildWithP: Sized {
    /// Allocates and initialises the layer as [`Build::build`] does, with probability `p`.
    fn build_with_p<B: Backend>(p: f32, mem: &mut Memory<'_, B>, rng: &mut Rng) -> Result<Self>;
}

/// What `#[module(init = EXPR)]` on a field of type `T` of a derived model
/// may give: the field's value itself, or a `Result` of it whose error
/// converts into [`Error`](crate::Error) (an error is returned from
/// [`Build::build`]). The expression is evaluated in `build`, in field
/// order, with `mem` (the [`Memory`]) and `rng` (the [`Rng`]) in scope.
///
/// ```
/// use ember_nn_core::nn::{self, Build, Dropout, Forward, LeakyReLU, Linear, Module};
/// use ember_nn_core::prelude::*;
///
/// #[derive(Module)]
/// struct Net {
///     hidden: Linear<4, 8>,
///     // A value: PyTorch's `nn.LeakyReLU(0.2)`.
///     #[module(init = LeakyReLU { negative_slope: 0.2 })]
///     act: LeakyReLU,
///     // PyTorch's `nn.Dropout(p=0.2)`; `init = Dropout::new(0.2, 7)`
///     // (a `Result`) would do too, with a fixed seed.
///     #[module(p = 0.2)]
///     drop: Dropout,
///     out: Linear<8, 2>,
///     // Not a layer: a setting of the model's own.
///     #[module(skip, init = 2.0)]
///     temperature: f32,
/// }
///
/// let mut buf = [0.0f32; 256];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let net = Net::build(&mut mem, &mut Rng::new(0))?;
/// assert_eq!(net.act.negative_slope, 0.2);
/// assert_eq!(net.temperature, 2.0);
/// assert!(nn::summary(&net).to_string().contains("(drop): Dropout(p=0.2, inplace=False)"));
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`#[module(init = ...)]` gives `{Self}`, but the field is `{T}`",
    label = "expected `{T}` or a `Result` of it",
    note = "the expression is the field's value, or a `Result` of it whose error converts into `ember_nn_core::Error`"
)]
pub trait FieldInit<T> {
    /// The field's value, or the error `build` returns.
    fn into_field(self) -> Result<T>;
}

impl<T> FieldInit<T> for T {
    fn into_field(self) -> Result<T> {
        Ok(self)
    }
}

impl<T, E: Into<crate::error::Error>> FieldInit<T> for core::result::Result<T, E> {
    fn into_field(self) -> Result<T> {
        self.map_err(Into::into)
    }
}

/// Running a module on an input.
///
/// Write it for your own modules as for any trait, usually for one input
/// type (`impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<784>), B>> for
/// Net`). The layers of this crate implement it once each, for any input
/// that is a [`LayerInput`] of the layer ([`LinearInput`]
/// for [`Linear`]), so that a sequence whose layers do not chain fails to
/// compile with one error that names the layer and the input it cannot take.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot take `{X}` as its input",
    label = "the input's width (its last dimension) is not the width this layer takes",
    note = "in a sequence such as `(Linear<2, 16>, ReLU, Linear<16, 2>)`, each `Linear<IN, OUT>` takes the width the layer before it produces: its `IN` must equal the previous `OUT` (activations keep the width)"
)]
pub trait Forward<X> {
    /// The result's type.
    type Output;
    /// The forward pass.
    fn forward(&self, x: X) -> Self::Output;
}

/// An input a layer `L` can run on: the layer's computation, written
/// for the tensor types it takes.
///
/// Each layer of this crate implements [`Forward`] once, for any
/// `X: LayerInput<Self>`, instead of implementing it for `Tensor<'t, S, B>`
/// directly. The reason is the compiler's error when a sequence does not
/// chain: a layer with a single `Forward` impl for a tensor type makes rustc
/// infer through that layer, and a mismatch further on is then reported
/// twice, or as a type mismatch at another layer. With the input a bare type
/// parameter, the error is one `E0277` at the layer that does not fit
/// (`tests/ui/sequential_*` in `ember-tests` pin this).
///
/// A layer of your own that sits inside sequences gets the same by doing
/// as the built-in ones do; the orphan rule allows the first impl because
/// your layer is the trait's parameter (`tests/ui/pass/own_layer_ok.rs`):
///
/// ```
/// use ember_nn_core::nn::{Forward, LayerInput};
/// use ember_nn_core::prelude::*;
///
/// /// Multiplies its input by 2.
/// pub struct Double;
///
/// impl<'t, S: Shape, B: Backend> LayerInput<Double> for Tensor<'t, S, B> {
///     type Output = Self;
///     fn run(self, _layer: &Double) -> Self {
///         self * 2.0
///     }
/// }
///
/// impl<X: LayerInput<Self>> Forward<X> for Double {
///     type Output = X::Output;
///     fn forward(&self, x: X) -> X::Output {
///         x.run(self)
///     }
/// }
///
/// let mut buf = [0.0f32; 16];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let g = Graph::new(&mut mem);
/// let y = Double.forward(g.tensor([1.0f32, 2.0]));
/// assert_eq!(y.to_array()?, [2.0, 4.0]);
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{L}` cannot take `{Self}` as its input",
    label = "`{L}` cannot take this input"
)]
pub trait LayerInput<L: ?Sized> {
    /// The layer's result.
    type Output;
    /// Runs `layer` on `self`.
    fn run(self, layer: &L) -> Self::Output;
}

/// A bare parameter is a module of its own (handy for optimizing a tensor
/// directly, as in `torch.optim.SGD([w], lr)`); its one parameter is named by
/// the path it is visited under (empty at the top level).
impl<S: ConstShape> Footprint for Param<S> {
    const PARAMS: usize = S::NUMEL;
    const NODES: usize = 1;
    const IN_FEATURES: Option<usize> = None;
    const OUT_FEATURES: Option<usize> = None;
    const SCRATCH_FIXED: usize = 0;
    const SCRATCH_PER_FEATURE: usize = 0;
}

impl<S: Shape> Module for Param<S> {
    fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
        f(&ParamInfo {
            name: name.as_str(),
            kind: ParamKind::Weight,
            dims: self.dims(),
            param: (*self).into(),
        })
    }
    fn fmt_module(&self, f: &mut fmt::Formatter<'_>, _indent: usize) -> fmt::Result {
        write!(f, "Parameter({:?})", self.dims())
    }
}

/// The scratch constants of a layer whose scratch its type cannot tell (a
/// convolution's depends on its input's height and width): a sequence or
/// derived model containing one has an unknown scratch too, and
/// [`train_budget`] of it is a compile-time error that says why.
pub const SCRATCH_UNKNOWN: usize = usize::MAX;

/// Graph scratch (values and gradients) one sample needs in a training step
/// of `M` on inputs of `in_features`.
pub const fn scratch_per_sample<M: Footprint>(in_features: usize) -> usize {
    M::SCRATCH_FIXED + M::SCRATCH_PER_FEATURE * in_features
}

/// What one training step of a model type needs, known at compile time:
/// the floats of its arena and the node capacity of its graph
/// (`Graph::<_, { BUDGET.nodes }>`). See [`train_budget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainBudget {
    /// Floats: parameters, gradients, optimizer state and the step's graph at its peak.
    pub floats: usize,
    /// Graph nodes a step records: the input, the model's and the loss's.
    pub nodes: usize,
}

/// The memory a training step of `M` needs on a batch of `batch` samples,
/// with `loss` and an optimizer following `rule`: the parameters and their
/// gradients, the rule's state ([`Rule::state_planes`] floats per
/// parameter), the input batch, and the graph's values and gradients at the
/// peak of backward ([`Graph::peak`](crate::Graph::peak)). It is an upper
/// bound for a model whose first module has parameters (a test holds it
/// within 10% of what real steps use); a leading parameter-free layer is
/// counted with a gradient it does not get.
///
/// ```
/// use ember_nn_core::nn::{self, loss::Loss, Linear, ReLU, Rule};
/// type Net = (Linear<4, 8>, ReLU, Linear<8, 3>);
/// const BUDGET: nn::TrainBudget = nn::train_budget::<Net>(16, Loss::CrossEntropy, Rule::adam());
/// static mut ARENA: [f32; BUDGET.floats] = [0.0; BUDGET.floats];
/// type StepGraph<'m> = ember_nn_core::Graph<'m, ember_nn_core::Cpu, { BUDGET.nodes }>;
/// // The input, two linear maps of 4 nodes (weight, bias, product, sum: a
/// // bound for any input), the ReLU, and the loss's 4.
/// assert_eq!(BUDGET.nodes, 1 + 4 + 1 + 4 + 4);
/// ```
pub const fn train_budget<M: Footprint>(batch: usize, loss: loss::Loss, rule: Rule) -> TrainBudget {
    // Evaluated when the function is instantiated for `M`, so that a
    // model whose scratch its type cannot tell fails to compile wherever
    // its budget is asked for, at run time included.
    const {
        let known =
            M::SCRATCH_FIXED != SCRATCH_UNKNOWN && M::SCRATCH_PER_FEATURE != SCRATCH_UNKNOWN;
        assert!(known, "{}", conv::SPATIAL);
    }
    let input = match M::IN_FEATURES {
        Some(n) => n,
        None => 0,
    };
    let output = match M::OUT_FEATURES {
        Some(n) => n,
        None => input,
    };
    TrainBudget {
        floats: M::PARAMS * (2 + rule.state_planes())
            + M::BUFFERS
            + batch * (input + scratch_per_sample::<M>(input))
            + loss.floats(batch, output),
        nodes: 1 + M::NODES + loss.nodes(),
    }
}

/// The floats of [`train_budget`]: what to size a training arena by.
pub const fn train_floats<M: Footprint>(batch: usize, loss: loss::Loss, rule: Rule) -> usize {
    train_budget::<M>(batch, loss, rule).floats
}
