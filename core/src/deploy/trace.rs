//! Export from what runs: the deployable layers of a model are read off one
//! recorded forward pass, not off the model's fields, so that what deploys
//! is what was trained.
//!
//! [`plan`] runs the caller's forward pass on a few probe rows and walks the
//! tape back from the output to the probe's input. Each node on the way
//! must be something the format stores:
//! - a fully connected layer: `linear` / `linear_act` (every `nn::Linear`),
//!   or a matrix product with a parameter (`x.matmul_t(w)`,
//!   `x.matmul(w.t())`, `x.matmul(w)`), optionally plus a broadcast
//!   parameter bias;
//! - a convolution (`conv2d`, `conv1d`: every `Conv2d`, `Conv1d`,
//!   `Conv2dWith`, `DepthwiseConv2d`; stride, padding, dilation, groups),
//!   a max or average pooling (2-D and 1-D), a global average pooling: each
//!   is named on the tape by its last node ([`Composite`](crate::graph::Composite));
//! - an activation the format knows ([`Activation`]) right after a layer, a
//!   pooling or an addition, whose value nothing else reads: a field
//!   `act: ReLU` and an inline `.relu()` are the same node;
//! - a residual addition of two paths of the same size (`x + block(x)`);
//! - a reshape that keeps the rows (`Flatten`), or a dropout in evaluation
//!   mode (which records nothing);
//! - a batch norm in evaluation mode directly after a `Linear`
//!   ([`BatchNorm1d`](crate::nn::BatchNorm1d)) or a convolution
//!   ([`BatchNorm2d`](crate::nn::BatchNorm2d)): it is folded into that
//!   layer ([`FoldedNorm`]). In training mode, or after anything else, it is
//!   unsupported.
//!
//! Anything else (a custom op, a product of two paths, a second activation
//! in a row, a constant) is an [`ExportError::Unsupported`] that names the
//! op as its backward node is named (`ReluBackward`, a custom op's name).
//!
//! A chain of dense layers is written in the dense format (version 2,
//! [`Model`]); anything else as a graph file (version 3, [`GraphModel`]).
//! [`export_f32`] writes the file and runs it on the same probe rows
//! through the deployment kernels, refusing a file whose outputs differ
//! from the training graph's by more than rounding ([`F32_TOLERANCE`]).

use super::format::{finish, padded, set_field, write_header, FIXED, RECORD};
use super::graph::{data_parts, graph_file_len, plan_arena, write_graph_header};
use super::walk::{PlannedNode, Walk, TRACE_NODES};
use super::{Activation, FormatError, GraphModel, Model, NodeHeader, NodeOp, MAX_LAYERS};
use super::{MAX_NODES, NODE_RECORD};
use crate::backend::{Backend, Map, Span};
use crate::error::Error;
use crate::graph::{Graph, Tape};
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

/// The deployable layers of a model, read off its forward pass by [`plan`]:
/// a chain of dense layers (written in the dense format, version 2), or a
/// graph (convolutions, pooling, residual additions: a graph file,
/// [`GraphModel`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The dense layers of a chain (empty for a graph).
    layers: heapless::Vec<PlannedLayer, MAX_LAYERS>,
    /// The graph's nodes, the input first, arena offsets set.
    nodes: heapless::Vec<PlannedNode, MAX_NODES>,
    /// Floats of the graph's arena.
    arena: usize,
}

impl Plan {
    /// The plan of `nodes` (the input first, in an order that runs): a
    /// chain of dense layers when each reads the one before.
    fn new(nodes: &mut heapless::Vec<PlannedNode, MAX_NODES>) -> Result<Plan, ExportError> {
        let chain = nodes
            .iter()
            .enumerate()
            .skip(1)
            .all(|(i, n)| n.header.op == NodeOp::Dense && n.header.inputs[0] == i - 1);
        let mut layers = heapless::Vec::new();
        if chain {
            for n in nodes.iter().skip(1) {
                let mut l = n.params.ok_or(ExportError::NoInput)?;
                l.activation = n.header.activation;
                layers.push(l).map_err(|_| ExportError::TooManyLayers)?;
            }
            return Ok(Plan {
                layers,
                nodes: heapless::Vec::new(),
                arena: 0,
            });
        }
        let mut headers: heapless::Vec<NodeHeader, MAX_NODES> =
            nodes.iter().map(|n| n.header).collect();
        let arena = plan_arena(&mut headers);
        for (n, h) in nodes.iter_mut().zip(&headers) {
            n.header.arena = h.arena;
            if let Some(p) = n.params.as_mut() {
                p.activation = h.activation;
            }
        }
        Ok(Plan {
            layers,
            nodes: nodes.clone(),
            arena,
        })
    }

    /// The dense layers, input first (empty for a graph: see
    /// [`nodes`](Self::nodes)).
    pub fn layers(&self) -> &[PlannedLayer] {
        &self.layers
    }

    /// Whether the model is a graph (convolutions, pooling, residual
    /// additions) rather than a chain of dense layers.
    pub fn is_graph(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// A graph's nodes, the input first (empty for a chain of dense layers).
    pub fn nodes(&self) -> &[PlannedNode] {
        &self.nodes
    }

    /// Input features of the model.
    pub fn input_features(&self) -> usize {
        match self.nodes.first() {
            Some(n) => n.header.out_len(),
            None => self.layers.first().map_or(0, |l| l.in_features),
        }
    }

    /// Output features of the model.
    pub fn output_features(&self) -> usize {
        match self.nodes.last() {
            Some(n) => n.header.out_len(),
            None => self.layers.last().map_or(0, |l| l.out_features),
        }
    }

    fn headers(&self) -> heapless::Vec<NodeHeader, MAX_NODES> {
        self.nodes.iter().map(|n| n.header).collect()
    }

    /// Bytes of the f32 file.
    pub fn file_len(&self) -> usize {
        if self.is_graph() {
            return graph_file_len(&self.headers(), false).unwrap_or(usize::MAX);
        }
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
        if self.is_graph() {
            return self.input_features() + self.arena;
        }
        let widest = self
            .layers
            .iter()
            .map(|l| l.out_features)
            .max()
            .unwrap_or(0);
        self.input_features() + 2 * widest
    }
}

/// The activation the format stores for an elementwise function, if any.
pub(crate) fn activation_of(m: Map) -> Option<Activation> {
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
    let mut walk = Walk::new(&*g, model, output, input)?;
    let last = walk.resolve(output, 0)?;
    let mut nodes = walk.nodes;
    drop(g);
    if last == 0 {
        return Err(ExportError::NoInput);
    }
    Plan::new(&mut nodes)
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
    if plan.is_graph() {
        return write_graph(plan, mem, out);
    }
    let mut shapes: heapless::Vec<(usize, usize, Activation), MAX_LAYERS> = heapless::Vec::new();
    for l in &plan.layers {
        let _ = shapes.push((l.in_features, l.out_features, l.activation));
    }
    let data_len = needed - 4 - padded(FIXED + RECORD * plan.layers.len());
    let header_len = write_header(out, false, &shapes, data_len);
    let mut at = header_len;
    for (i, l) in plan.layers.iter().enumerate() {
        let w_end = at + padded(4 * l.in_features * l.out_features);
        let b_end = w_end + padded(4 * l.out_features);
        set_field(out, i, 16, ((at - header_len) as u32).to_le_bytes());
        set_field(out, i, 20, ((w_end - header_len) as u32).to_le_bytes());
        let (w, b) = out[at..b_end].split_at_mut(w_end - at);
        write_params(mem, l, w, b)?;
        at = b_end;
    }
    Ok(finish(out, at))
}

/// Writes a graph plan's file (see [`write_f32`]).
fn write_graph<B: Backend>(
    plan: &Plan,
    mem: &Memory<'_, B>,
    out: &mut [u8],
) -> Result<usize, FormatError> {
    let headers = plan.headers();
    let header_len = padded(FIXED + NODE_RECORD * headers.len());
    let data_len = plan.file_len() - 4 - header_len;
    write_graph_header(out, &headers, false, plan.arena, data_len)?;
    for (i, node) in plan.nodes.iter().enumerate() {
        let Some(l) = node.params else { continue };
        let bad = FormatError::BadShape { layer: i };
        let [(w_at, w_len), (b_at, b_len), ..] = data_parts(&headers, i, false).ok_or(bad)?;
        let (w_at, b_at) = (header_len + w_at, header_len + b_at);
        let (w, b) = out[w_at..b_at + padded(b_len)].split_at_mut(b_at - w_at);
        if w.len() != padded(w_len) {
            return Err(bad);
        }
        write_params(mem, &l, w, b)?;
    }
    Ok(finish(out, header_len + data_len))
}

/// Writes a layer's weight (`[out, in]`, padded) and bias into `w` and
/// `b`, with its batch norm folded in.
fn write_params<B: Backend>(
    mem: &Memory<'_, B>,
    l: &PlannedLayer,
    w: &mut [u8],
    b: &mut [u8],
) -> Result<(), FormatError> {
    if let Some(norm) = l.norm {
        write_folded(mem, l, &norm, w, None)?;
        write_folded(mem, l, &norm, &mut [], Some(b))
    } else {
        if l.transposed {
            write_transposed(mem, l.weight, l.in_features, l.out_features, w)?;
        } else {
            write_floats(mem, Some(l.weight), l.weight.len, w)?;
        }
        write_floats(mem, l.bias, l.out_features, b)
    }
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
    let model = if plan.is_graph() {
        Parsed::Graph(GraphModel::parse(file)?)
    } else {
        Parsed::Chain(Model::parse(file)?)
    };
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
        let got = match &model {
            Parsed::Chain(m) => m.infer_f32(row_in, rest),
            Parsed::Graph(m) => m.infer_f32(row_in, rest),
        }
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

/// A file as [`check_f32`] runs it.
enum Parsed<'a> {
    Chain(Model<'a>),
    Graph(GraphModel<'a>),
}

fn download<B: Backend>(g: &dyn Tape<B>, span: Span, out: &mut [f32]) -> Result<(), Error> {
    g.with_buffer(&mut |be, buf| be.download(buf, span, out))
}
