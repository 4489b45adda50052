//! Export from what runs: the deployable layers of a model are read off one
//! recorded forward pass, not off the model's fields, so that what deploys
//! is what was trained.
//!
//! [`plan`] runs the caller's forward pass on a few probe rows and walks the
//! tape back from the output to the probe's input. Each node on that path
//! must be something the format stores:
//! - a fully connected layer: `linear` / `linear_act` (every `nn::Linear`),
//!   or a matrix product with a parameter (`x.matmul_t(w)`,
//!   `x.matmul(w.t())`, `x.matmul(w)`), optionally plus a broadcast
//!   parameter bias;
//! - an activation the format knows ([`Activation`]), right after such a
//!   layer: a field `act: ReLU` and an inline `.relu()` are the same node;
//! - a reshape that keeps the rows (`Flatten`), or a dropout in evaluation
//!   mode (which records nothing);
//! - a batch norm ([`BatchNorm1d`](crate::nn::BatchNorm1d)) in evaluation
//!   mode directly after a `linear` node: it is folded into that layer
//!   ([`FoldedNorm`]). In training mode, after anything else, or on
//!   `[N, C, L]` or `[N, C, H, W]` input (`BatchNorm2d`), it is
//!   unsupported.
//!
//! Anything else (a custom op, a residual addition, a second activation in a
//! row, a constant) is an [`ExportError::Unsupported`] that names the op as
//! its backward node is named (`ReluBackward`, a custom op's name).
//!
//! [`export_f32`] then writes the file and runs it on the same probe rows
//! through the deployment kernels ([`Model::infer_f32`]), refusing a file
//! whose outputs differ from the training graph's by more than rounding
//! ([`F32_TOLERANCE`]).

use super::format::{finish, padded, set_field, write_header, FIXED, RECORD};
use super::{Activation, FormatError, Model, MAX_LAYERS};
use crate::backend::{Backend, Map, Span, Zip};
use crate::error::Error;
use crate::graph::{Graph, Op, Tape};
use crate::memory::Memory;
use crate::nn::Module;
use crate::shape::Shape;
use crate::tensor::Tensor;
use core::cell::Cell;

/// Rows of the probe batch a forward pass is traced and checked on.
pub const PROBE_ROWS: usize = 4;

/// The largest difference [`export_f32`] accepts between the training
/// graph's outputs and the exported file's on the probe rows, relative to
/// `1 + ` the largest output magnitude: the two sum in other orders, so they
/// agree to rounding (about 1e-6 here); a dropped or wrong layer is off by
/// orders of magnitude more.
pub const F32_TOLERANCE: f32 = 1e-3;

/// Graph nodes a traced forward pass may record.
const TRACE_NODES: usize = 256;

/// Why a model could not be exported.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ExportError {
    /// The forward pass runs an operation the format cannot express.
    Unsupported {
        /// The operation, as its backward node is named (`MulBackward`,
        /// `CatBackward`, a custom op's name).
        op: &'static str,
        /// Dense layers between it and the output (0: the last op).
        from_output: usize,
        /// Why the format cannot hold it there.
        why: &'static str,
    },
    /// The forward pass never read the probe's input ([`Probe::input`]), or
    /// its output does not depend on it.
    NoInput,
    /// A layer's weight or bias is not one of the model's parameters.
    ForeignParameter,
    /// The probe's input has other rows than [`Probe::rows`].
    ProbeRows {
        /// The input's first dimension.
        found: usize,
    },
    /// More dense layers than the format holds ([`MAX_LAYERS`]).
    TooManyLayers,
    /// The exported file computes something else than the training graph.
    Mismatch {
        /// Probe row.
        row: usize,
        /// Output feature.
        output: usize,
        /// The training graph's value.
        expected: f32,
        /// The file's value, through the deployment kernels.
        found: f32,
        /// The largest difference accepted.
        tolerance: f32,
    },
    /// The scratch slice is shorter than [`Plan::scratch_len`].
    ScratchTooSmall {
        /// Floats needed.
        needed: usize,
    },
    /// Writing or reading the file failed.
    Format(FormatError),
    /// Running the forward pass failed.
    Core(Error),
}

impl From<FormatError> for ExportError {
    fn from(e: FormatError) -> Self {
        ExportError::Format(e)
    }
}

impl From<Error> for ExportError {
    fn from(e: Error) -> Self {
        ExportError::Core(e)
    }
}

impl core::fmt::Display for ExportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ExportError::Unsupported {
                op,
                from_output,
                why,
            } => {
                write!(f, "the forward pass runs `{op}` ")?;
                match from_output {
                    0 => write!(f, "after its last dense layer")?,
                    n => write!(f, "{n} dense layer(s) before its output")?,
                }
                write!(
                    f,
                    ", which the deployable format cannot express ({why}); \
                     nothing was exported"
                )
            }
            ExportError::NoInput => write!(
                f,
                "the forward pass given to export never reads the probe's input \
                 (`probe.input(shape)`), or its output does not depend on it"
            ),
            ExportError::ForeignParameter => write!(
                f,
                "a layer's weight or bias is not a parameter of the model being exported"
            ),
            ExportError::ProbeRows { found } => write!(
                f,
                "the probe's input must have `probe.rows()` = {PROBE_ROWS} rows, not {found}"
            ),
            ExportError::TooManyLayers => {
                write!(f, "the model has more than {MAX_LAYERS} dense layers")
            }
            ExportError::Mismatch {
                row,
                output,
                expected,
                found,
                tolerance,
            } => write!(
                f,
                "the exported file computes another model than the training graph: \
                 output {output} of probe row {row} is {found} in the file, {expected} in \
                 training (difference {}, tolerance {tolerance}); nothing was exported",
                (found - expected).abs()
            ),
            ExportError::ScratchTooSmall { needed } => {
                write!(f, "the export's scratch must hold {needed} floats")
            }
            ExportError::Format(e) => write!(f, "{e}"),
            ExportError::Core(e) => write!(f, "the forward pass failed: {e}"),
        }
    }
}

impl core::error::Error for ExportError {}

#[cfg(feature = "defmt")]
impl defmt::Format for ExportError {
    fn format(&self, f: defmt::Formatter) {
        match self {
            ExportError::Unsupported {
                op, from_output, ..
            } => {
                defmt::write!(
                    f,
                    "unsupported op {=str} ({=usize} from output)",
                    op,
                    from_output
                )
            }
            ExportError::Format(e) => defmt::write!(f, "{}", e),
            ExportError::Core(e) => defmt::write!(f, "{}", e),
            _ => defmt::write!(f, "export error"),
        }
    }
}

/// The input of a traced forward pass: the closure given to [`plan`] or
/// [`export_f32`] makes its model's input with [`input`](Self::input),
/// exactly as its training step makes a batch (`g.from_slice((rows,
/// Const::<784>), ..)`), and runs the model on it.
pub struct Probe<'t, B: Backend> {
    tape: &'t dyn Tape<B>,
    input: Cell<Option<u32>>,
}

impl<'t, B: Backend> Probe<'t, B> {
    /// Rows of the probe batch (the shape's first dimension): [`PROBE_ROWS`].
    pub fn rows(&self) -> usize {
        PROBE_ROWS
    }

    /// The graph the forward pass records on.
    pub fn tape(&self) -> &'t dyn Tape<B> {
        self.tape
    }

    /// The probe batch as the model's input, of `shape` (whose first
    /// dimension is [`rows`](Self::rows)): fixed pseudo-random values, half
    /// the rows in `[-1, 1]` and half in `[0, 1]`.
    pub fn input<S: Shape>(&self, shape: S) -> Tensor<'t, S, B> {
        let features = shape.numel() / PROBE_ROWS;
        let x = self
            .tape
            .from_fn(shape, |i| {
                probe_value(i / features.max(1), i % features.max(1))
            })
            .requires_grad();
        self.input.set(Some(x.id));
        x
    }
}

/// Runs `forward` on a probe over `tape`: the output's node and the
/// probe's input node (`None` when the forward pass made none).
fn run_probe<B, S, F>(tape: &dyn Tape<B>, forward: &F) -> Result<(u32, Option<u32>), ExportError>
where
    B: Backend,
    S: Shape,
    F: for<'t> Fn(&Probe<'t, B>) -> Tensor<'t, S, B>,
{
    let probe = Probe {
        tape,
        input: Cell::new(None),
    };
    let y = forward(&probe);
    match tape.error() {
        Some(e) => Err(e.into()),
        None => Ok((y.id, probe.input.get())),
    }
}

/// Probe row `row`'s value at feature `j`.
fn probe_value(row: usize, j: usize) -> f32 {
    // splitmix64 of the position: the same values in both passes.
    let mut z = ((row as u64) << 32 | j as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
    if row.is_multiple_of(2) {
        2.0 * u - 1.0
    } else {
        u
    }
}

/// A dense layer as the forward pass computed it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedLayer {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// The weight's values: `[out, in]`, or `[in, out]` when `transposed`.
    pub weight: Span,
    /// The weight is stored `[in, out]` (a product `x · w`).
    pub transposed: bool,
    /// The bias's values (`None`: a product without a bias, stored as zeros).
    pub bias: Option<Span>,
    /// The activation applied to its output.
    pub activation: Activation,
    /// A batch norm in evaluation mode right after the layer, folded into
    /// its weight and bias when the file is written.
    pub norm: Option<FoldedNorm>,
}

/// A batch norm in evaluation mode folded into the dense layer before it:
/// with `s = γ / √(running_var + eps)`, the file holds the weight's row `o`
/// times `s[o]` and the bias `(b − running_mean)·s + β`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FoldedNorm {
    /// γ, `[out]`.
    pub weight: Span,
    /// β, `[out]`.
    pub bias: Span,
    /// The running mean, `[out]`.
    pub running_mean: Span,
    /// The running variance, `[out]`.
    pub running_var: Span,
    /// Added to the variance.
    pub eps: f32,
}

/// The deployable layers of a model, read off its forward pass by [`plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    layers: heapless::Vec<PlannedLayer, MAX_LAYERS>,
}

impl Plan {
    /// The layers, input first.
    pub fn layers(&self) -> &[PlannedLayer] {
        &self.layers
    }

    /// Input features of the model.
    pub fn input_features(&self) -> usize {
        self.layers.first().map_or(0, |l| l.in_features)
    }

    /// Output features of the model.
    pub fn output_features(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_features)
    }

    /// Bytes of the f32 file.
    pub fn file_len(&self) -> usize {
        let data: usize = self
            .layers
            .iter()
            .map(|l| padded(4 * l.in_features * l.out_features) + padded(4 * l.out_features))
            .sum();
        padded(FIXED + RECORD * self.layers.len()) + data + 4
    }

    /// Floats of scratch [`export_f32`] needs to check the file: a probe
    /// row and inference's two activation buffers.
    pub fn scratch_len(&self) -> usize {
        let widest = self
            .layers
            .iter()
            .map(|l| l.out_features)
            .max()
            .unwrap_or(0);
        self.input_features() + 2 * widest
    }
}

/// One step of the path from the output back to the input.
#[derive(Clone, Copy)]
enum Step {
    Dense(PlannedLayer),
    Act(Activation, &'static str),
}

/// The activation the format stores for an elementwise function, if any.
fn activation_of(m: Map) -> Option<Activation> {
    Some(match m {
        Map::Relu => Activation::Relu,
        Map::Sigmoid => Activation::Sigmoid,
        Map::Tanh => Activation::Tanh,
        Map::LeakyRelu(s) => Activation::LeakyRelu(s),
        Map::Elu(a) => Activation::Elu(a),
        Map::Selu => Activation::Selu,
        Map::Silu => Activation::Silu,
        Map::GeluErf => Activation::Gelu,
        Map::GeluTanh => Activation::GeluTanh,
        Map::Softsign => Activation::Softsign,
        Map::Softplus => Activation::Softplus,
        _ => return None,
    })
}

/// Runs `forward` once on the probe batch and reads the deployable layers
/// off the recorded graph. `model` is the model `forward` runs: every
/// weight and bias on the path must be one of its parameters.
///
/// ```
/// use ember_nn_core::prelude::*;
/// use ember_nn_core::deploy::{self, Activation};
/// use ember_nn_core::nn::{Build, Forward, Linear, Module};
///
/// #[derive(Module)]
/// struct Net {
///     hidden: Linear<4, 8>,
///     out: Linear<8, 3>,
/// }
/// impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<4>), B>> for Net {
///     type Output = Tensor<'t, (usize, Const<3>), B>;
///     fn forward(&self, x: Tensor<'t, (usize, Const<4>), B>) -> Self::Output {
///         // A functional ReLU: no field holds it, the forward pass runs it.
///         self.out.forward(self.hidden.forward(x).relu())
///     }
/// }
///
/// let mut buf = [0.0f32; 1024];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let net = Net::build(&mut mem, &mut Rng::new(0))?;
/// let plan = deploy::plan(&net, &mut mem, |p| net.forward(p.input((p.rows(), Const::<4>))))
///     .expect("traces");
/// assert_eq!(plan.layers()[0].activation, Activation::Relu);
/// assert_eq!(plan.layers()[1].activation, Activation::Identity);
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
pub fn plan<M, B, S, F>(model: &M, mem: &mut Memory<'_, B>, forward: F) -> Result<Plan, ExportError>
where
    M: Module + ?Sized,
    B: Backend,
    S: Shape,
    F: for<'t> Fn(&Probe<'t, B>) -> Tensor<'t, S, B>,
{
    let g = Graph::<B, TRACE_NODES>::with_capacity(mem);
    let (output, input) = run_probe(&*g, &forward)?;
    let input = input.ok_or(ExportError::NoInput)?;
    let (_, in_dims, ..) = g.node(input)?;
    let found = in_dims.as_slice().first().copied().unwrap_or(1);
    if in_dims.rank == 0 || found != PROBE_ROWS {
        return Err(ExportError::ProbeRows { found });
    }
    let steps = walk(&*g, model, output, input)?;
    drop(g);
    fold(&steps)
}

/// The steps from `output` back to `input`, output first.
fn walk<B: Backend, M: Module + ?Sized>(
    g: &dyn Tape<B>,
    model: &M,
    output: u32,
    input: u32,
) -> Result<heapless::Vec<Step, { 2 * MAX_LAYERS }>, ExportError> {
    let mut steps: heapless::Vec<Step, { 2 * MAX_LAYERS }> = heapless::Vec::new();
    let mut cur = output;
    // A bias added after a product, waiting for the product.
    let mut pending_bias: Option<(Span, &'static str)> = None;
    // A batch norm in evaluation mode, waiting for the `linear` it folds into.
    let mut pending_norm: Option<FoldedNorm> = None;
    let dense_so_far = |steps: &heapless::Vec<Step, { 2 * MAX_LAYERS }>| {
        steps.iter().filter(|s| matches!(s, Step::Dense(_))).count()
    };
    // The format holds dense layers: a convolution or a pooling anywhere in
    // the pass is named as such, before the walk meets what surrounds it.
    for id in 0..output {
        if let (.., op @ Op::Window { .. }) = g.node(id)? {
            return Err(ExportError::Unsupported {
                op: op.name().unwrap_or("a window"),
                from_output: 0,
                why: "convolution and pooling layers are not in the deployable format yet",
            });
        }
    }
    while cur != input {
        let (_, dims, _, requires_grad, op) = g.node(cur)?;
        let parents = g.parents(cur)?;
        let from_output = dense_so_far(&steps);
        let unsupported = |why: &'static str| ExportError::Unsupported {
            op: op.name().unwrap_or(match op {
                Op::Param => "a parameter",
                Op::Detach => "detach",
                _ => "a tensor made inside the forward pass",
            }),
            from_output,
            why,
        };
        if !requires_grad || (parents[0] == crate::graph::NONE && !matches!(op, Op::Param)) {
            // Nodes that do not depend on the input or a parameter carry no
            // parents: a constant, or a detached value.
            return Err(if matches!(op, Op::Leaf) {
                ExportError::NoInput
            } else {
                unsupported("it does not depend on the input")
            });
        }
        if pending_norm.is_some() && !matches!(op, Op::Linear { .. }) {
            return Err(ExportError::Unsupported {
                op: "NativeBatchNormBackward",
                from_output,
                why: "a batch norm is exported folded into a Linear layer directly before it",
            });
        }
        if let Some((_, name)) = pending_bias {
            // Between the bias and its product only the no-op view that
            // broadcasting records (the same sizes) may stand.
            let same_view = op == Op::Reshape && g.node(parents[0])?.1 == dims;
            if !matches!(op, Op::MatMul { .. }) && !same_view {
                return Err(ExportError::Unsupported {
                    op: name,
                    from_output,
                    why: "a parameter added to something that is not a matrix product",
                });
            }
        }
        let step = match op {
            Op::Linear { n, k, .. } | Op::LinearAct { n, k, .. } => {
                let weight = param(g, model, parents[1], &[n, k], from_output)?;
                let bias = param(g, model, parents[2], &[n], from_output)?;
                if let Op::LinearAct { act, .. } = op {
                    let a = activation_of(act).ok_or(unsupported("an unknown activation"))?;
                    push(&mut steps, Step::Act(a, act.name()))?;
                }
                Step::Dense(PlannedLayer {
                    in_features: k,
                    out_features: n,
                    weight,
                    transposed: false,
                    bias: Some(bias),
                    activation: Activation::Identity,
                    norm: pending_norm.take(),
                })
            }
            Op::BatchNorm { dims: bn, stats } => {
                if stats.training {
                    return Err(unsupported(
                        "a batch norm in training mode normalises by the batch: export the model in eval() mode",
                    ));
                }
                if bn.inner != 1 {
                    return Err(unsupported(
                        "a batch norm over spatial positions ([N, C, L] or [N, C, H, W] input): the format stores no convolution to fold it into",
                    ));
                }
                let n = bn.len;
                let weight = param(g, model, parents[1], &[n], from_output)?;
                let bias = param(g, model, parents[2], &[n], from_output)?;
                pending_norm = Some(FoldedNorm {
                    weight,
                    bias,
                    running_mean: stats.running_mean,
                    running_var: stats.running_var,
                    eps: stats.eps,
                });
                cur = parents[0];
                continue;
            }
            Op::Map(m) => match activation_of(m) {
                Some(a) => Step::Act(a, m.name()),
                None => return Err(unsupported("not an activation the format stores")),
            },
            Op::Reshape => {
                let (_, pdims, ..) = g.node(parents[0])?;
                let rows = |d: crate::shape::Dims| d.as_slice().first().copied();
                if dims.rank < 2 || rows(dims) != rows(pdims) {
                    return Err(unsupported("a reshape that mixes the rows of a batch"));
                }
                cur = parents[0];
                continue;
            }
            Op::MatMul {
                batch: 1,
                n,
                k,
                trans_a: false,
                trans_b,
                ..
            } => {
                // x · wᵀ (trans_b, or the product with `w.t()`), or x · w.
                let (.., pop) = g.node(parents[1])?;
                let (weight, transposed) = match pop {
                    Op::Transpose { batch: 1, .. } if !trans_b => {
                        let w = g.parents(parents[1])?[0];
                        (param(g, model, w, &[n, k], from_output)?, false)
                    }
                    _ if trans_b => (param(g, model, parents[1], &[n, k], from_output)?, false),
                    _ => (param(g, model, parents[1], &[k, n], from_output)?, true),
                };
                Step::Dense(PlannedLayer {
                    in_features: k,
                    out_features: n,
                    weight,
                    transposed,
                    bias: pending_bias.take().map(|(s, _)| s),
                    activation: Activation::Identity,
                    norm: None,
                })
            }
            Op::Zip(Zip::Add) => {
                // One side the path, the other a parameter broadcast over the rows.
                let bias_of = |id: u32| -> Result<Option<Span>, ExportError> {
                    let (_, _, _, _, o) = g.node(id)?;
                    if !matches!(o, Op::Expand { .. } | Op::Reshape) {
                        return Ok(None);
                    }
                    let p = g.parents(id)?[0];
                    let (v, d, _, _, po) = g.node(p)?;
                    let n = dims.as_slice().last().copied().unwrap_or(0);
                    Ok((po == Op::Param && d.as_slice() == [n]).then_some(v))
                };
                let (bias, next) = match (bias_of(parents[1])?, bias_of(parents[0])?) {
                    (Some(b), _) => (b, parents[0]),
                    (None, Some(b)) => (b, parents[1]),
                    (None, None) => return Err(unsupported(
                        "only a layer's bias may be added: a residual or a constant is not stored",
                    )),
                };
                if !owned(model, bias) {
                    return Err(ExportError::ForeignParameter);
                }
                pending_bias = Some((bias, "AddBackward"));
                cur = next;
                continue;
            }
            _ => return Err(unsupported("not a dense layer or an activation")),
        };
        push(&mut steps, step)?;
        cur = parents[0];
    }
    if let Some((_, name)) = pending_bias {
        return Err(ExportError::Unsupported {
            op: name,
            from_output: dense_so_far(&steps),
            why: "a parameter added to the input",
        });
    }
    if pending_norm.is_some() {
        return Err(ExportError::Unsupported {
            op: "NativeBatchNormBackward",
            from_output: dense_so_far(&steps),
            why: "a batch norm is exported folded into a Linear layer directly before it",
        });
    }
    Ok(steps)
}

fn push(steps: &mut heapless::Vec<Step, { 2 * MAX_LAYERS }>, s: Step) -> Result<(), ExportError> {
    steps.push(s).map_err(|_| ExportError::TooManyLayers)
}

/// Whether `span` is the value of one of `model`'s parameters.
fn owned<M: Module + ?Sized>(model: &M, span: Span) -> bool {
    let mut found = false;
    model.named_parameters(&mut |p| found |= p.param.value == span);
    found
}

/// The value of parameter node `id`, which must be one of `model`'s, of `dims`.
fn param<B: Backend, M: Module + ?Sized>(
    g: &dyn Tape<B>,
    model: &M,
    id: u32,
    dims: &[usize],
    from_output: usize,
) -> Result<Span, ExportError> {
    let (value, d, _, _, op) = g.node(id)?;
    if op != Op::Param {
        return Err(ExportError::Unsupported {
            op: op.name().unwrap_or("a tensor made inside the forward pass"),
            from_output,
            why: "a layer's weight or bias must be a parameter of the model",
        });
    }
    if d.as_slice() != dims || !owned(model, value) {
        return Err(ExportError::ForeignParameter);
    }
    Ok(value)
}

/// Dense layers with their activations, input first, from the steps
/// (output first).
fn fold(steps: &[Step]) -> Result<Plan, ExportError> {
    let mut layers: heapless::Vec<PlannedLayer, MAX_LAYERS> = heapless::Vec::new();
    let total = steps.iter().filter(|s| matches!(s, Step::Dense(_))).count();
    for s in steps.iter().rev() {
        match *s {
            Step::Dense(l) => {
                if let Some(prev) = layers.last() {
                    if prev.out_features != l.in_features {
                        return Err(FormatError::BadShape {
                            layer: layers.len(),
                        }
                        .into());
                    }
                }
                layers.push(l).map_err(|_| ExportError::TooManyLayers)?;
            }
            Step::Act(a, name) => {
                let from_output = total - layers.len();
                match layers.last_mut() {
                    Some(last) if last.activation == Activation::Identity => last.activation = a,
                    Some(_) => {
                        return Err(ExportError::Unsupported {
                            op: name,
                            from_output,
                            why: "a second activation after a dense layer",
                        })
                    }
                    None => {
                        return Err(ExportError::Unsupported {
                            op: name,
                            from_output,
                            why: "an activation before the first dense layer",
                        })
                    }
                }
            }
        }
    }
    if layers.is_empty() {
        return Err(ExportError::NoInput);
    }
    Ok(Plan { layers })
}

/// Writes the f32 file of `model` as `forward` computes it, into `out`, and
/// checks it: the file, run on the probe rows through the deployment
/// kernels ([`Model::infer_f32`]), must give the training graph's outputs
/// within [`F32_TOLERANCE`]. Returns the bytes written. `scratch` holds
/// [`Plan::scratch_len`] floats; `out` [`Plan::file_len`] bytes. No
/// allocation: the graphs of the trace and of the check use `mem`'s free
/// part.
///
/// ```
/// use ember_nn_core::prelude::*;
/// use ember_nn_core::deploy::{self, Model};
/// use ember_nn_core::nn::{Build, Forward, Linear, ReLU};
/// type Net = (Linear<4, 8>, ReLU, Linear<8, 3>);
///
/// let mut buf = [0.0f32; 1024];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let net = Net::build(&mut mem, &mut Rng::new(0))?;
/// let mut bytes = deploy::Aligned([0u8; 1024]);
/// let mut scratch = [0.0f32; 32];
/// let n = deploy::export_f32(
///     &net,
///     &mut mem,
///     |p| net.forward(p.input((p.rows(), Const::<4>))),
///     &mut bytes.0,
///     &mut scratch,
/// )
/// .expect("exports");
/// let model = Model::load::<Net>(&bytes.0[..n]).expect("valid");
/// assert_eq!(model.output_features(), 3);
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
pub fn export_f32<M, B, S, F>(
    model: &M,
    mem: &mut Memory<'_, B>,
    forward: F,
    out: &mut [u8],
    scratch: &mut [f32],
) -> Result<usize, ExportError>
where
    M: Module + ?Sized,
    B: Backend,
    S: Shape,
    F: for<'t> Fn(&Probe<'t, B>) -> Tensor<'t, S, B>,
{
    let plan = plan(model, mem, &forward)?;
    if scratch.len() < plan.scratch_len() {
        // Before anything is written.
        return Err(ExportError::ScratchTooSmall {
            needed: plan.scratch_len(),
        });
    }
    let n = write_f32(&plan, mem, out)?;
    check_f32(&plan, mem, forward, &out[..n], scratch)?;
    Ok(n)
}

/// Writes the planned layers' parameters from `mem` in the f32 format.
pub fn write_f32<B: Backend>(
    plan: &Plan,
    mem: &Memory<'_, B>,
    out: &mut [u8],
) -> Result<usize, FormatError> {
    let needed = plan.file_len();
    if out.len() < needed {
        return Err(FormatError::BufferTooSmall { needed });
    }
    let mut shapes: heapless::Vec<(usize, usize, Activation), MAX_LAYERS> = heapless::Vec::new();
    for l in &plan.layers {
        let _ = shapes.push((l.in_features, l.out_features, l.activation));
    }
    let data_len = needed - 4 - padded(FIXED + RECORD * plan.layers.len());
    let header_len = write_header(out, false, &shapes, data_len);
    let mut at = header_len;
    for (i, l) in plan.layers.iter().enumerate() {
        set_field(out, i, 16, ((at - header_len) as u32).to_le_bytes());
        let end = at + padded(4 * l.in_features * l.out_features);
        let dst = &mut out[at..end];
        if let Some(norm) = l.norm {
            write_folded(mem, l, &norm, dst, None)?;
        } else if l.transposed {
            write_transposed(mem, l.weight, l.in_features, l.out_features, dst)?;
        } else {
            write_floats(mem, Some(l.weight), l.weight.len, dst)?;
        }
        at = end;
        set_field(out, i, 20, ((at - header_len) as u32).to_le_bytes());
        let end = at + padded(4 * l.out_features);
        if let Some(norm) = l.norm {
            write_folded(mem, l, &norm, &mut [], Some(&mut out[at..end]))?;
        } else {
            write_floats(mem, l.bias, l.out_features, &mut out[at..end])?;
        }
        at = end;
    }
    Ok(finish(out, at))
}

/// Reads one float of `mem`.
fn read_one<B: Backend>(mem: &Memory<'_, B>, span: Span, at: usize) -> Result<f32, FormatError> {
    let mut v = [0.0f32];
    mem.read(span.sub(at, 1), &mut v)
        .map_err(FormatError::Memory)?;
    Ok(v[0])
}

/// Writes a `[out, in]` (not transposed) layer's weight with a batch norm
/// folded in to `weight` (row `o` times `s[o] = γ[o] / √(var[o] + eps)`),
/// or, given `bias`, its bias `(b[o] − mean[o])·s[o] + β[o]`.
fn write_folded<B: Backend>(
    mem: &Memory<'_, B>,
    l: &PlannedLayer,
    norm: &FoldedNorm,
    weight: &mut [u8],
    bias: Option<&mut [u8]>,
) -> Result<(), FormatError> {
    let scale = |o: usize| -> Result<f32, FormatError> {
        let var = read_one(mem, norm.running_var, o)?;
        Ok(read_one(mem, norm.weight, o)? / crate::sqrt::sqrtf(var + norm.eps))
    };
    let Some(out) = bias else {
        weight.fill(0);
        let mut chunk = [0.0f32; 64];
        for o in 0..l.out_features {
            let s = scale(o)?;
            let mut done = 0;
            while done < l.in_features {
                let n = (l.in_features - done).min(chunk.len());
                mem.read(l.weight.sub(o * l.in_features + done, n), &mut chunk[..n])
                    .map_err(FormatError::Memory)?;
                for (j, v) in chunk[..n].iter().enumerate() {
                    let p = 4 * (o * l.in_features + done + j);
                    weight[p..p + 4].copy_from_slice(&(v * s).to_le_bytes());
                }
                done += n;
            }
        }
        return Ok(());
    };
    out.fill(0);
    for o in 0..l.out_features {
        let b = match l.bias {
            Some(span) => read_one(mem, span, o)?,
            None => 0.0,
        };
        let v =
            (b - read_one(mem, norm.running_mean, o)?) * scale(o)? + read_one(mem, norm.bias, o)?;
        out[4 * o..4 * o + 4].copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// Copies `len` floats of `span` (zeros for `None`) as little-endian f32
/// into `out`, zero-padding the rest.
fn write_floats<B: Backend>(
    mem: &Memory<'_, B>,
    span: Option<Span>,
    len: usize,
    out: &mut [u8],
) -> Result<(), FormatError> {
    out.fill(0);
    let Some(span) = span else { return Ok(()) };
    let mut chunk = [0.0f32; 64];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len());
        mem.read(span.sub(done, n), &mut chunk[..n])
            .map_err(FormatError::Memory)?;
        for (j, v) in chunk[..n].iter().enumerate() {
            let p = 4 * (done + j);
            out[p..p + 4].copy_from_slice(&v.to_le_bytes());
        }
        done += n;
    }
    Ok(())
}

/// Writes a `[rows, cols]` matrix of `mem` transposed (`[cols, rows]`).
fn write_transposed<B: Backend>(
    mem: &Memory<'_, B>,
    span: Span,
    rows: usize,
    cols: usize,
    out: &mut [u8],
) -> Result<(), FormatError> {
    out.fill(0);
    let mut chunk = [0.0f32; 64];
    for r in 0..rows {
        let mut done = 0;
        while done < cols {
            let n = (cols - done).min(chunk.len());
            mem.read(span.sub(r * cols + done, n), &mut chunk[..n])
                .map_err(FormatError::Memory)?;
            for (j, v) in chunk[..n].iter().enumerate() {
                let p = 4 * ((done + j) * rows + r);
                out[p..p + 4].copy_from_slice(&v.to_le_bytes());
            }
            done += n;
        }
    }
    Ok(())
}

/// Checks that `file`, written from `plan` ([`write_f32`]), computes what
/// `forward` does: runs `forward` on the probe rows and `file` on the same
/// rows through [`Model::infer_f32`], and refuses any output that differs by
/// more than [`F32_TOLERANCE`] ([`ExportError::Mismatch`]). `scratch` holds
/// [`Plan::scratch_len`] floats. [`export_f32`] is [`plan`], [`write_f32`]
/// and this; a caller that sizes its buffer from the plan calls the three
/// itself and traces once less.
pub fn check_f32<B, S, F>(
    plan: &Plan,
    mem: &mut Memory<'_, B>,
    forward: F,
    file: &[u8],
    scratch: &mut [f32],
) -> Result<(), ExportError>
where
    B: Backend,
    S: Shape,
    F: for<'t> Fn(&Probe<'t, B>) -> Tensor<'t, S, B>,
{
    if scratch.len() < plan.scratch_len() {
        return Err(ExportError::ScratchTooSmall {
            needed: plan.scratch_len(),
        });
    }
    let model = Model::parse(file)?;
    let (n_in, n_out) = (plan.input_features(), plan.output_features());
    let g = Graph::<B, TRACE_NODES>::with_capacity(mem);
    let (output, _) = run_probe(&*g, &forward)?;
    let (values, ..) = g.node(output)?;
    if values.len != PROBE_ROWS * n_out {
        return Err(ExportError::NoInput);
    }
    // The largest reference output sets the tolerance's scale.
    let mut chunk = [0.0f32; 64];
    let mut largest = 0.0f32;
    let mut done = 0;
    while done < values.len {
        let n = (values.len - done).min(chunk.len());
        download(&*g, values.sub(done, n), &mut chunk[..n])?;
        largest = chunk[..n].iter().fold(largest, |m, v| m.max(v.abs()));
        done += n;
    }
    let tolerance = F32_TOLERANCE * (1.0 + largest);
    let (row_in, rest) = scratch.split_at_mut(n_in);
    for row in 0..PROBE_ROWS {
        for (j, x) in row_in.iter_mut().enumerate() {
            *x = probe_value(row, j);
        }
        let got = model
            .infer_f32(row_in, rest)
            .map_err(|_| FormatError::BadShape { layer: 0 })?;
        let mut done = 0;
        while done < n_out {
            let n = (n_out - done).min(chunk.len());
            download(&*g, values.sub(row * n_out + done, n), &mut chunk[..n])?;
            for (j, (&e, &f)) in chunk[..n].iter().zip(&got[done..done + n]).enumerate() {
                // A NaN on either side is a mismatch too.
                if (f - e).is_nan() || (f - e).abs() > tolerance {
                    return Err(ExportError::Mismatch {
                        row,
                        output: done + j,
                        expected: e,
                        found: f,
                        tolerance,
                    });
                }
            }
            done += n;
        }
    }
    Ok(())
}

fn download<B: Backend>(g: &dyn Tape<B>, span: Span, out: &mut [f32]) -> Result<(), Error> {
    g.with_buffer(&mut |be, buf| be.download(buf, span, out))
}
