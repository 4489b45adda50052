//! A conformance suite for backends: every kernel of [`Backend`], on random
//! data, compared with the reference [`Cpu`] backend.
//!
//! [`cases`] is the one list of kernel calls to compare. Each case is a
//! [`Call`]: one kernel with its sizes and flags. [`check`] runs every case on
//! the backend under test and on [`Cpu`] (over a host buffer the caller
//! provides, so the suite needs neither `std` nor an allocator), then
//! downloads the result and compares it with the reference, element by
//! element, within a tolerance. It compares the whole region the case
//! touched, inputs and the guard floats between operands included, so a
//! kernel that writes outside its output or into its inputs is caught too.
//! Outputs that a kernel overwrites start as NaN, so a kernel that reads them
//! (say, a GEMM computing `0 · c + a · b`) is caught as well.
//!
//! The cases cover every [`Map`] (forward and backward), every [`Zip`]
//! (forward, and backward to both sides), GEMM with all four transpose
//! combinations, overwrite and accumulate, batches and degenerate sizes
//! (`k = 0`), every [`Reduce`] over several [`AxisDims`] (ties and NaNs
//! included), expand, max's backward, softmax and log-softmax with their
//! backward, transpose, strided copies (a broadcast source included), fill and
//! every [`Update`] rule. Sizes run from empty to [`LARGE`] elements, above any
//! threshold at which a backend might switch to parallel code.
//!
//! # Adding a kernel
//! A kernel added to [`Backend`] gets a variant of [`Call`]; the compiler then
//! asks for its name, operands and invocation (in [`Call::kernel`],
//! `Call::operands` and [`Call::run`]), and [`cases`] gets the sizes to try.
//!
//! # Example
//! ```no_run
//! use ember_nn_core::backend::conformance::{self, BUF_LEN};
//! use ember_nn_core::Cpu;
//!
//! let mut buf = vec![0.0f32; BUF_LEN]; // the backend under test's buffer
//! let mut host = vec![0.0f32; BUF_LEN]; // the reference's
//! let report = conformance::check(&Cpu, &mut buf[..], &mut host, 42, 1e-4)
//!     .unwrap_or_else(|m| panic!("{m}"));
//! assert!(report.cases > 0);
//! ```

use super::map::Map;
use super::update::Update;
use super::zip::Zip;
use super::{
    Acc, AxisDims, Backend, Blocks, Cpu, Gemm, Reduce, Span, Window, WindowCall, WindowKernel,
};
use crate::error::Error;
use crate::rng::Rng;
use core::fmt;

/// Floats that both the buffer under test and the host reference buffer must
/// hold: the largest case needs fewer (a unit test checks it).
pub const BUF_LEN: usize = 1 << 19;

/// Elements of the largest elementwise and axis cases: larger than 2¹⁶, and
/// odd, so any chunking leaves a remainder.
pub const LARGE: usize = 70_001;

/// Floats before the first operand, so that no operand starts at offset 0.
const LEAD: usize = 3;
/// Guard floats after every operand; they must come back unchanged.
const PAD: usize = 5;
/// The most operands a call has.
const MAX_OPERANDS: usize = 4;

/// How the data of an operand is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Dist {
    /// Uniform in `[lo, hi)`.
    Uniform(f32, f32),
    /// Integers from `lo` to `hi`, so that maxima tie.
    Ints(f32, f32),
    /// Uniform, with about one value in eight exactly zero (where a
    /// derivative has a kink).
    SomeZeros(f32, f32),
    /// Uniform, with about one value in sixteen NaN.
    SomeNans(f32, f32),
    /// Every value NaN: what an output holds before a kernel overwrites it,
    /// which the kernel must not read (`0 · NaN` is NaN).
    Nan,
}

impl Dist {
    fn sample(self, rng: &mut Rng) -> f32 {
        match self {
            Dist::Uniform(lo, hi) => rng.uniform_in(lo, hi),
            Dist::Ints(lo, hi) => libm::floorf(rng.uniform_in(lo, hi + 1.0)).min(hi),
            Dist::SomeZeros(lo, hi) => {
                if rng.below(8) == 0 {
                    0.0
                } else {
                    rng.uniform_in(lo, hi)
                }
            }
            Dist::SomeNans(lo, hi) => {
                if rng.below(16) == 0 {
                    f32::NAN
                } else {
                    rng.uniform_in(lo, hi)
                }
            }
            Dist::Nan => f32::NAN,
        }
    }
}

const UNIT: Dist = Dist::Uniform(-1.0, 1.0);

/// The prior contents of an output: NaN where the kernel overwrites it,
/// numbers where it accumulates.
const fn out(acc: Acc) -> Dist {
    match acc {
        Acc::Set => Dist::Nan,
        Acc::Add => UNIT,
    }
}

/// One call of one backend kernel, with its sizes: a test case.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Call {
    /// [`Backend::fill`].
    Fill {
        /// Floats to set.
        len: usize,
        /// The value.
        value: f32,
    },
    /// [`Backend::copy`].
    Copy {
        /// Number of blocks.
        blocks: usize,
        /// Floats per block.
        block_len: usize,
        /// Distance between source blocks (0 repeats one block).
        src_stride: usize,
        /// Distance between destination blocks.
        dst_stride: usize,
        /// Overwrite or accumulate.
        acc: Acc,
    },
    /// [`Backend::map`].
    Map {
        /// The function.
        f: Map,
        /// Elements.
        len: usize,
    },
    /// [`Backend::map_backward`].
    MapBackward {
        /// The function.
        f: Map,
        /// Elements.
        len: usize,
    },
    /// [`Backend::bias_act`].
    BiasAct {
        /// The activation.
        f: Map,
        /// Rows of the output.
        rows: usize,
        /// Columns (the bias' length).
        cols: usize,
    },
    /// [`Backend::act_backward`] (its `y` is `f` of random data, worked out
    /// by the reference).
    ActBackward {
        /// The activation.
        f: Map,
        /// Elements.
        len: usize,
    },
    /// [`Backend::zip`].
    Zip {
        /// The function.
        f: Zip,
        /// Elements.
        len: usize,
    },
    /// [`Backend::zip_backward`].
    ZipBackward {
        /// The function.
        f: Zip,
        /// The gradient of the right-hand operand.
        rhs: bool,
        /// Elements.
        len: usize,
    },
    /// [`Backend::gemm`].
    Gemm {
        /// Independent products.
        batch: usize,
        /// Rows of the result.
        m: usize,
        /// Columns of the result.
        n: usize,
        /// Inner dimension.
        k: usize,
        /// `a` stored transposed.
        trans_a: bool,
        /// `b` stored transposed.
        trans_b: bool,
        /// Overwrite or accumulate.
        acc: Acc,
    },
    /// [`Backend::reduce`].
    Reduce {
        /// The reduction.
        op: Reduce,
        /// The input around the axis.
        dims: AxisDims,
        /// Overwrite or accumulate.
        acc: Acc,
        /// The input's data.
        dist: Dist,
    },
    /// [`Backend::expand`].
    Expand {
        /// The output around the axis.
        dims: AxisDims,
        /// Overwrite or accumulate.
        acc: Acc,
    },
    /// [`Backend::max_backward`] (its `y` is the maximum of `x`, worked out
    /// by the reference).
    MaxBackward {
        /// The input around the axis.
        dims: AxisDims,
        /// The input's data.
        dist: Dist,
    },
    /// [`Backend::softmax`].
    Softmax {
        /// The tensor around the axis.
        dims: AxisDims,
        /// Log-softmax.
        log: bool,
    },
    /// [`Backend::softmax_backward`] (its `y` is a softmax, worked out by the
    /// reference).
    SoftmaxBackward {
        /// The tensor around the axis.
        dims: AxisDims,
        /// Log-softmax.
        log: bool,
    },
    /// [`Backend::cross_entropy`].
    CrossEntropy {
        /// Rows.
        rows: usize,
        /// Classes.
        classes: usize,
        /// Some targets out of range (`-1` or `classes`): NaN losses.
        bad_targets: bool,
    },
    /// [`Backend::cross_entropy_backward`].
    CrossEntropyBackward {
        /// Rows.
        rows: usize,
        /// Classes.
        classes: usize,
        /// Some targets out of range: NaN gradients in their rows.
        bad_targets: bool,
    },
    /// [`Backend::transpose`].
    Transpose {
        /// Matrices.
        batch: usize,
        /// Rows of each input matrix.
        rows: usize,
        /// Columns of each input matrix.
        cols: usize,
        /// Overwrite or accumulate.
        acc: Acc,
    },
    /// [`Backend::window`].
    Window {
        /// The kernel.
        kernel: WindowKernel,
        /// Its geometry.
        window: Window,
        /// How the input is drawn (integers, so that pooling windows tie).
        dist: Dist,
    },
    /// [`Backend::update`].
    Update {
        /// The rule.
        rule: Update,
        /// Elements of the parameter.
        len: usize,
    },
}

/// One operand of a call: a name for messages, a length and its data.
#[derive(Clone, Copy, Debug)]
struct Operand {
    name: &'static str,
    len: usize,
    dist: Dist,
}

const NO_OPERAND: Operand = Operand {
    name: "",
    len: 0,
    dist: UNIT,
};

fn operands<const N: usize>(
    ops: [(&'static str, usize, Dist); N],
) -> ([Operand; MAX_OPERANDS], usize) {
    let mut out = [NO_OPERAND; MAX_OPERANDS];
    for (o, (name, len, dist)) in out.iter_mut().zip(ops) {
        *o = Operand { name, len, dist };
    }
    (out, N)
}

/// The span a strided run of blocks covers.
const fn extent(blocks: usize, stride: usize, block_len: usize) -> usize {
    if blocks == 0 {
        0
    } else {
        (blocks - 1) * stride + block_len
    }
}

impl Call {
    /// The name of the [`Backend`] method this call runs.
    pub fn kernel(&self) -> &'static str {
        match self {
            Call::Fill { .. } => "fill",
            Call::Copy { .. } => "copy",
            Call::Map { .. } => "map",
            Call::MapBackward { .. } => "map_backward",
            Call::BiasAct { .. } => "bias_act",
            Call::ActBackward { .. } => "act_backward",
            Call::Zip { .. } => "zip",
            Call::ZipBackward { .. } => "zip_backward",
            Call::Gemm { .. } => "gemm",
            Call::Reduce { .. } => "reduce",
            Call::Expand { .. } => "expand",
            Call::MaxBackward { .. } => "max_backward",
            Call::Softmax { .. } => "softmax",
            Call::SoftmaxBackward { .. } => "softmax_backward",
            Call::CrossEntropy { .. } => "cross_entropy",
            Call::CrossEntropyBackward { .. } => "cross_entropy_backward",
            Call::Transpose { .. } => "transpose",
            Call::Window { .. } => "window",
            Call::Update { .. } => "update",
        }
    }

    /// The call's operands, laid out one after another in this order.
    fn operands(&self) -> ([Operand; MAX_OPERANDS], usize) {
        match *self {
            Call::Fill { len, .. } => operands([("dst", len, Dist::Nan)]),
            Call::Copy {
                blocks,
                block_len,
                src_stride,
                dst_stride,
                acc,
            } => operands([
                ("src", extent(blocks, src_stride, block_len), UNIT),
                ("dst", extent(blocks, dst_stride, block_len), out(acc)),
            ]),
            Call::Map { f, len } => operands([("x", len, map_domain(f)), ("y", len, Dist::Nan)]),
            Call::MapBackward { f, len } => operands([
                ("x", len, map_domain(f)),
                ("y", len, map_domain(f)),
                ("dy", len, Dist::SomeZeros(-1.0, 1.0)),
                ("dx", len, UNIT),
            ]),
            Call::BiasAct { f, rows, cols } => {
                operands([("bias", cols, UNIT), ("y", rows * cols, map_domain(f))])
            }
            Call::ActBackward { f, len } => operands([
                ("x", len, map_domain(f)),
                ("y", len, Dist::Nan),
                ("dy", len, Dist::SomeZeros(-1.0, 1.0)),
            ]),
            Call::Zip { f, len } => operands([
                ("a", len, Dist::Uniform(-2.0, 2.0)),
                ("b", len, zip_rhs_domain(f)),
                ("y", len, Dist::Nan),
            ]),
            Call::ZipBackward { f, rhs, len } => operands([
                ("a", len, Dist::Uniform(-2.0, 2.0)),
                ("b", len, zip_rhs_domain(f)),
                ("dy", len, UNIT),
                (if rhs { "db" } else { "da" }, len, UNIT),
            ]),
            Call::Gemm {
                batch,
                m,
                n,
                k,
                acc,
                ..
            } => operands([
                ("a", batch * m * k, UNIT),
                ("b", batch * k * n, UNIT),
                ("c", batch * m * n, out(acc)),
            ]),
            Call::Reduce {
                dims, dist, acc, ..
            } => operands([
                ("x", dims.numel(), dist),
                ("y", dims.outer * dims.inner, out(acc)),
            ]),
            Call::Expand { dims, acc } => operands([
                ("x", dims.outer * dims.inner, UNIT),
                ("y", dims.numel(), out(acc)),
            ]),
            Call::MaxBackward { dims, dist } => operands([
                ("x", dims.numel(), dist),
                ("y", dims.outer * dims.inner, UNIT),
                ("dy", dims.outer * dims.inner, UNIT),
                ("dx", dims.numel(), UNIT),
            ]),
            Call::Softmax { dims, .. } => operands([
                ("x", dims.numel(), Dist::Uniform(-4.0, 4.0)),
                ("y", dims.numel(), Dist::Nan),
            ]),
            Call::SoftmaxBackward { dims, .. } => operands([
                ("x", dims.numel(), Dist::Uniform(-4.0, 4.0)),
                ("y", dims.numel(), UNIT),
                ("dy", dims.numel(), UNIT),
                ("dx", dims.numel(), UNIT),
            ]),
            Call::CrossEntropy {
                rows,
                classes,
                bad_targets,
            } => operands([
                ("x", rows * classes, Dist::Uniform(-6.0, 6.0)),
                ("targets", rows, targets(classes, bad_targets)),
                ("loss", rows, Dist::Nan),
            ]),
            Call::CrossEntropyBackward {
                rows,
                classes,
                bad_targets,
            } => operands([
                ("x", rows * classes, Dist::Uniform(-6.0, 6.0)),
                ("targets", rows, targets(classes, bad_targets)),
                ("dloss", rows, Dist::SomeZeros(-1.0, 1.0)),
                ("dx", rows * classes, UNIT),
            ]),
            Call::Transpose {
                batch,
                rows,
                cols,
                acc,
            } => operands([
                ("x", batch * rows * cols, UNIT),
                ("y", batch * rows * cols, out(acc)),
            ]),
            Call::Window {
                kernel,
                window,
                dist,
            } => {
                let call = WindowCall {
                    kernel,
                    window,
                    x: Span::default(),
                    dy: Span::default(),
                    out: Span::default(),
                };
                let ([x, dy], y) = call.lens().unwrap_or(([0, 0], 0));
                match kernel {
                    WindowKernel::Unfold | WindowKernel::MaxPool => {
                        operands([("x", x, dist), ("out", y, Dist::Nan)])
                    }
                    WindowKernel::Fold => operands([("cols", x, dist), ("dx", y, UNIT)]),
                    WindowKernel::MaxPoolBackward => {
                        operands([("x", x, dist), ("dy", dy, UNIT), ("dx", y, UNIT)])
                    }
                }
            }
            // State in [0.3, 0.5): non-negative second moments, and RMSprop's
            // centred variance `s0 - s2²` stays positive.
            Call::Update { rule, len } => operands([
                ("param", len, UNIT),
                ("grad", len, UNIT),
                ("state", rule.state_planes() * len, Dist::Uniform(0.3, 0.5)),
            ]),
        }
    }

    /// Floats of buffer the case needs: its operands and the guards around them.
    pub fn footprint(&self) -> usize {
        let (ops, n) = self.operands();
        LEAD + ops[..n].iter().map(|o| o.len + PAD).sum::<usize>()
    }

    /// Derives inputs that must be consistent with others, on the reference
    /// buffer, before the data is uploaded to the backend under test.
    fn prepare(&self, host: &mut [f32], s: &[Span]) -> Result<(), Error> {
        match *self {
            Call::MaxBackward { dims, .. } => {
                Cpu.reduce(host, Reduce::Max, s[0], s[1], dims, Acc::Set)
            }
            Call::SoftmaxBackward { dims, log } => Cpu.softmax(host, s[0], s[1], dims, log),
            Call::ActBackward { f, .. } => Cpu.map(host, f, s[0], s[1]),
            _ => Ok(()),
        }
    }

    /// Runs the call on `be`, with its operands at `s` (in the order of the
    /// variant's operands: inputs, then outputs).
    pub fn run<B: Backend + ?Sized>(
        &self,
        be: &B,
        buf: &mut B::Buffer,
        s: &[Span],
    ) -> Result<(), Error> {
        match *self {
            Call::Fill { value, .. } => be.fill(buf, s[0], value),
            Call::Copy {
                blocks,
                block_len,
                src_stride,
                dst_stride,
                acc,
            } => be.copy(
                buf,
                &Blocks {
                    src: s[0],
                    src_stride,
                    dst: s[1],
                    dst_stride,
                    blocks,
                    block_len,
                    acc,
                },
            ),
            Call::Map { f, .. } => be.map(buf, f, s[0], s[1]),
            Call::MapBackward { f, .. } => be.map_backward(buf, f, s[0], s[1], s[2], s[3]),
            Call::BiasAct { f, .. } => be.bias_act(buf, f, s[0], s[1]),
            Call::ActBackward { f, .. } => be.act_backward(buf, f, s[1], s[2]),
            Call::Zip { f, .. } => be.zip(buf, f, s[0], s[1], s[2]),
            Call::ZipBackward { f, rhs, .. } => {
                be.zip_backward(buf, f, rhs, s[0], s[1], s[2], s[3])
            }
            Call::Gemm {
                batch,
                m,
                n,
                k,
                trans_a,
                trans_b,
                acc,
            } => be.gemm(
                buf,
                batch,
                &Gemm {
                    m,
                    n,
                    k,
                    a: s[0],
                    trans_a,
                    b: s[1],
                    trans_b,
                    c: s[2],
                    acc,
                },
            ),
            Call::Reduce { op, dims, acc, .. } => be.reduce(buf, op, s[0], s[1], dims, acc),
            Call::Expand { dims, acc } => be.expand(buf, s[0], s[1], dims, acc),
            Call::MaxBackward { dims, .. } => be.max_backward(buf, s[0], s[1], s[2], s[3], dims),
            Call::Softmax { dims, log } => be.softmax(buf, s[0], s[1], dims, log),
            Call::SoftmaxBackward { dims, log } => {
                be.softmax_backward(buf, s[1], s[2], s[3], dims, log)
            }
            Call::CrossEntropy { classes, .. } => be.cross_entropy(buf, s[0], s[1], s[2], classes),
            Call::CrossEntropyBackward { classes, .. } => {
                be.cross_entropy_backward(buf, s[0], s[1], s[2], s[3], classes)
            }
            Call::Transpose {
                batch,
                rows,
                cols,
                acc,
            } => be.transpose(buf, s[0], s[1], batch, rows, cols, acc),
            Call::Window { kernel, window, .. } => {
                let (x, dy, out) = match kernel {
                    WindowKernel::MaxPoolBackward => (s[0], s[1], s[2]),
                    _ => (s[0], Span::default(), s[1]),
                };
                be.window(
                    buf,
                    &WindowCall {
                        kernel,
                        window,
                        x,
                        dy,
                        out,
                    },
                )
            }
            Call::Update { rule, .. } => be.update(buf, &rule, s[0], s[1], s[2]),
        }
    }

    /// Whether results must match exactly (indices).
    fn exact(&self) -> bool {
        matches!(
            self,
            Call::Reduce {
                op: Reduce::ArgMax,
                ..
            }
        )
    }
}

/// Where a map's inputs are drawn from: its domain, and its kinks.
///
/// The match is exhaustive, so a new [`Map`] does not compile until it is
/// given a domain here; add it to [`MAPS`] as well.
pub fn map_domain(f: Map) -> Dist {
    match f {
        // Zeros: an infinite derivative, which a zero `dy` must not turn into NaN.
        Map::Ln | Map::Sqrt => Dist::SomeZeros(0.1, 3.0),
        Map::Recip => Dist::Uniform(0.25, 2.0),
        Map::Pow(p) => {
            if libm::truncf(p) == p {
                Dist::Uniform(-2.0, 2.0)
            } else {
                Dist::Uniform(0.1, 2.0)
            }
        }
        Map::Exp => Dist::Uniform(-5.0, 5.0),
        Map::Softplus => Dist::Uniform(-20.0, 20.0),
        // Integers land on the bounds of the clamps in `MAPS`.
        Map::Clamp(..) => Dist::Ints(-2.0, 2.0),
        Map::Abs | Map::Relu | Map::LeakyRelu(_) | Map::Elu(_) | Map::Selu => {
            Dist::SomeZeros(-3.0, 3.0)
        }
        Map::Neg
        | Map::AddScalar(_)
        | Map::MulScalar(_)
        | Map::Sin
        | Map::Cos
        | Map::Tanh
        | Map::Sigmoid
        | Map::Silu
        | Map::GeluTanh
        | Map::GeluErf
        | Map::Softsign => Dist::Uniform(-4.0, 4.0),
    }
}

/// Class indices as floats: in `[0, classes)`, or, with `bad`, from `-1` to
/// `classes` (so some are out of range).
fn targets(classes: usize, bad: bool) -> Dist {
    let hi = classes as f32;
    if bad {
        Dist::Ints(-1.0, hi)
    } else {
        Dist::Ints(0.0, (hi - 1.0).max(0.0))
    }
}

fn zip_rhs_domain(f: Zip) -> Dist {
    match f {
        Zip::Div => Dist::Uniform(0.5, 2.0),
        Zip::Add | Zip::Sub | Zip::Mul => Dist::Uniform(-2.0, 2.0),
    }
}

/// Every elementwise function of one tensor, with the parameters tried.
pub const MAPS: [Map; 30] = [
    Map::Neg,
    Map::AddScalar(0.5),
    Map::MulScalar(-1.5),
    Map::Pow(0.0),
    Map::Pow(1.0),
    Map::Pow(2.0),
    Map::Pow(3.0),
    Map::Pow(0.5),
    Map::Pow(-1.5),
    Map::Recip,
    Map::Exp,
    Map::Ln,
    Map::Sqrt,
    Map::Abs,
    Map::Sin,
    Map::Cos,
    Map::Tanh,
    Map::Sigmoid,
    Map::Relu,
    Map::LeakyRelu(0.01),
    Map::Elu(1.0),
    Map::Elu(0.5),
    Map::Selu,
    Map::Silu,
    Map::GeluTanh,
    Map::GeluErf,
    Map::Softsign,
    Map::Softplus,
    Map::Clamp(-1.0, 1.0),
    Map::Clamp(0.0, 0.5),
];

/// The activations that fuse into a linear layer ([`Map::fuses`]), with the
/// parameters tried: the [`Backend::bias_act`] and [`Backend::act_backward`] cases.
pub const FUSED_MAPS: [Map; 5] = [
    Map::Relu,
    Map::LeakyRelu(0.01),
    Map::LeakyRelu(0.0),
    Map::Sigmoid,
    Map::Tanh,
];

/// `(rows, cols)` of the [`Backend::bias_act`] cases: empty, one row, one
/// column, odd sizes, and a layer's output above any parallel threshold.
pub const BIAS_ROWS: [(usize, usize); 7] = [
    (0, 5),
    (1, 1),
    (1, 7),
    (9, 1),
    (13, 10),
    (256, 130),
    (700, 101),
];

/// `(rows, classes)` of the cross-entropy cases: empty, one class, typical
/// class counts, many rows, and a long row (1000 classes).
pub const CLASS_ROWS: [(usize, usize); 7] = [
    (0, 10),
    (1, 1),
    (3, 2),
    (17, 10),
    (4000, 10),
    (5, 1000),
    (64, 1000),
];

/// Every elementwise function of two tensors.
pub const ZIPS: [Zip; 4] = [Zip::Add, Zip::Sub, Zip::Mul, Zip::Div];

/// Every optimizer rule, with the flags that change its arithmetic.
pub const UPDATES: [Update; 11] = {
    const SGD: Update = Update::Sgd {
        lr: 0.1,
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
        weight_decay: 0.0,
        first: false,
    };
    const fn sgd(
        momentum: f32,
        dampening: f32,
        nesterov: bool,
        weight_decay: f32,
        first: bool,
    ) -> Update {
        Update::Sgd {
            lr: 0.05,
            momentum,
            dampening,
            nesterov,
            weight_decay,
            first,
        }
    }
    const fn adam(decoupled: bool, amsgrad: bool) -> Update {
        // Step 3 with the default betas: bias1 = 1 - 0.9³, bias2_sqrt = √(1 - 0.999³).
        Update::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decoupled,
            amsgrad,
            bias1: 0.271,
            bias2_sqrt: 0.054_745_8,
        }
    }
    const fn rmsprop(momentum: f32, centered: bool, weight_decay: f32) -> Update {
        Update::RmsProp {
            lr: 0.01,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay,
            momentum,
            centered,
        }
    }
    [
        SGD,
        sgd(0.9, 0.1, false, 0.01, true),
        sgd(0.9, 0.1, false, 0.01, false),
        sgd(0.9, 0.0, true, 0.0, false),
        adam(false, false),
        adam(true, false),
        rmsprop(0.0, false, 0.0),
        rmsprop(0.9, true, 0.01),
        Update::Adagrad {
            lr: 0.01,
            eps: 1e-10,
            weight_decay: 0.01,
        },
        Update::Adagrad {
            lr: 0.1,
            eps: 1e-10,
            weight_decay: 0.0,
        },
        adam(true, true),
    ]
};

/// Lengths of the elementwise cases (empty, tiny, odd, large).
pub const LENS: [usize; 5] = [0, 1, 7, 1000, LARGE];

const fn ax(outer: usize, len: usize, inner: usize) -> AxisDims {
    AxisDims { outer, len, inner }
}

/// The axis shapes of the reductions, expand, max's backward and softmax:
/// degenerate ones, small ones, and large ones with many rows, few rows, a
/// long axis, and a large inner size.
pub const AXES: [AxisDims; 12] = [
    ax(0, 3, 2),
    ax(1, 1, 1),
    ax(1, 5, 1),
    ax(2, 1, 4),
    ax(3, 5, 7),
    ax(4, 3, 1),
    ax(1, 4, 6),
    ax(4099, 10, 1),
    ax(10, 100, 41),
    ax(300, 7, 33),
    ax(1, LARGE, 1),
    ax(3, 1, 23_000),
];

/// GEMM sizes `(batch, m, n, k)`, each run with all four transpose
/// combinations, overwriting and accumulating: degenerate ones (`k = 0` must
/// still clear an overwritten `c`), batches, and products above 48·48·256
/// multiply-adds (where blocked libraries start threads) or with `k` above 256
/// (where they split the inner dimension).
pub const GEMMS: [(usize, usize, usize, usize); 12] = [
    (1, 1, 1, 1),
    (1, 3, 5, 7),
    (3, 4, 6, 5),
    (2, 1, 9, 4),
    (1, 7, 1, 3),
    (1, 3, 4, 0),
    (0, 3, 4, 5),
    (1, 67, 45, 30),
    (4, 33, 17, 65),
    (1, 96, 70, 100),
    (1, 64, 48, 300),
    (1, 150, 130, 120),
];
/// Transpose sizes `(batch, rows, cols)`.
pub const TRANSPOSES: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (1, 3, 5),
    (4, 7, 9),
    (2, 1, 6),
    (1, 300, 250),
    (50, 40, 33),
    (1, 1, LARGE),
];

/// Window geometries `(batch, channels, input, kernel, stride, dilation,
/// pad before, pad after)`: 1-D and 2-D, strides, dilations, asymmetric
/// padding (TFLite's SAME at stride 2), windows wider than the staging of
/// any backend, and a large one.
pub const WINDOWS: [WindowShape; 8] = [
    (1, 1, [1, 1], [1, 1], [1, 1], [1, 1], [0, 0], [0, 0]),
    (2, 3, [5, 6], [3, 3], [1, 1], [1, 1], [1, 1], [1, 1]),
    (1, 2, [1, 17], [1, 4], [1, 3], [1, 2], [0, 2], [0, 1]),
    (3, 2, [7, 8], [2, 3], [2, 2], [1, 1], [0, 1], [1, 1]),
    (2, 1, [9, 9], [3, 2], [2, 3], [2, 1], [1, 0], [2, 1]),
    (1, 4, [6, 5], [6, 5], [1, 1], [1, 1], [0, 0], [0, 0]),
    (2, 2, [4, 70], [1, 70], [1, 1], [1, 1], [0, 0], [0, 0]),
    (2, 4, [28, 28], [5, 5], [1, 1], [1, 1], [2, 2], [2, 2]),
];

/// The arguments of [`Window::new`], as [`WINDOWS`] lists them.
pub type WindowShape = (
    usize,
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 2],
);

fn window((n, c, input, kernel, stride, dilation, before, after): WindowShape) -> Option<Window> {
    Window::new(n, c, input, kernel, stride, dilation, before, after).ok()
}

/// Strided copies `(blocks, block_len, src_stride, dst_stride)`: source
/// blocks may overlap or repeat (stride 0); destination blocks never overlap,
/// as the order of overlapping writes is not part of the contract.
pub const COPIES: [(usize, usize, usize, usize); 11] = [
    (0, 5, 5, 5),
    (1, 1, 1, 1),
    (4, 6, 6, 6),
    (5, 3, 7, 4),
    (100, 10, 0, 10),
    (4000, 10, 0, 11),
    (3, 8, 2, 8),
    (3000, 13, 13, 20),
    (1000, 40, 50, 45),
    (7, 10_000, 10_003, 10_001),
    (1, LARGE, LARGE, LARGE),
];

const ACCS: [Acc; 2] = [Acc::Set, Acc::Add];
const BOOLS: [bool; 2] = [false, true];

/// Every case of the suite, in a fixed order.
pub fn cases() -> impl Iterator<Item = Call> + Clone {
    let fill = LENS
        .iter()
        .flat_map(|&len| [0.0, -1.5].map(|value| Call::Fill { len, value }));
    let copy = COPIES
        .iter()
        .flat_map(|&(blocks, block_len, src_stride, dst_stride)| {
            ACCS.map(|acc| Call::Copy {
                blocks,
                block_len,
                src_stride,
                dst_stride,
                acc,
            })
        });
    let map = MAPS.iter().flat_map(|&f| {
        LENS.iter()
            .flat_map(move |&len| [Call::Map { f, len }, Call::MapBackward { f, len }])
    });
    let fused = FUSED_MAPS.iter().flat_map(|&f| {
        let bias = BIAS_ROWS
            .iter()
            .map(move |&(rows, cols)| Call::BiasAct { f, rows, cols });
        let back = LENS.iter().map(move |&len| Call::ActBackward { f, len });
        bias.chain(back)
    });
    let cross_entropy = CLASS_ROWS.iter().flat_map(|&(rows, classes)| {
        BOOLS.iter().flat_map(move |&bad_targets| {
            [
                Call::CrossEntropy {
                    rows,
                    classes,
                    bad_targets,
                },
                Call::CrossEntropyBackward {
                    rows,
                    classes,
                    bad_targets,
                },
            ]
        })
    });
    let zip = ZIPS.iter().flat_map(|&f| {
        LENS.iter().flat_map(move |&len| {
            [
                Call::Zip { f, len },
                Call::ZipBackward { f, rhs: false, len },
                Call::ZipBackward { f, rhs: true, len },
            ]
        })
    });
    let gemm = GEMMS.iter().flat_map(|&(batch, m, n, k)| {
        BOOLS.iter().flat_map(move |&trans_a| {
            BOOLS.iter().flat_map(move |&trans_b| {
                ACCS.map(|acc| Call::Gemm {
                    batch,
                    m,
                    n,
                    k,
                    trans_a,
                    trans_b,
                    acc,
                })
            })
        })
    });
    let reduce = AXES.iter().flat_map(|&dims| {
        let plain = [Reduce::Sum, Reduce::Max, Reduce::ArgMax]
            .into_iter()
            .flat_map(move |op| {
                ACCS.map(|acc| Call::Reduce {
                    op,
                    dims,
                    acc,
                    dist: UNIT,
                })
            });
        let ties = [Reduce::Max, Reduce::ArgMax]
            .into_iter()
            .flat_map(move |op| {
                [Dist::Ints(-3.0, 3.0), Dist::SomeNans(-1.0, 1.0)].map(|dist| Call::Reduce {
                    op,
                    dims,
                    acc: Acc::Set,
                    dist,
                })
            });
        plain.chain(ties)
    });
    let axis = AXES.iter().flat_map(|&dims| {
        let expand = ACCS.map(|acc| Call::Expand { dims, acc });
        let max = [UNIT, Dist::Ints(-3.0, 3.0), Dist::SomeNans(-1.0, 1.0)]
            .map(|dist| Call::MaxBackward { dims, dist });
        let softmax = BOOLS.iter().flat_map(move |&log| {
            [
                Call::Softmax { dims, log },
                Call::SoftmaxBackward { dims, log },
            ]
        });
        expand.into_iter().chain(max).chain(softmax)
    });
    let transpose = TRANSPOSES.iter().flat_map(|&(batch, rows, cols)| {
        ACCS.map(|acc| Call::Transpose {
            batch,
            rows,
            cols,
            acc,
        })
    });
    let window = WINDOWS
        .iter()
        .filter_map(|w| window(*w))
        .flat_map(|window| {
            [
                WindowKernel::Unfold,
                WindowKernel::Fold,
                WindowKernel::MaxPool,
                WindowKernel::MaxPoolBackward,
            ]
            .into_iter()
            .flat_map(move |kernel| {
                [UNIT, Dist::Ints(-2.0, 2.0), Dist::SomeNans(-1.0, 1.0)].map(|dist| Call::Window {
                    kernel,
                    window,
                    dist,
                })
            })
        });
    let update = UPDATES
        .iter()
        .flat_map(|&rule| LENS.iter().map(move |&len| Call::Update { rule, len }));
    fill.chain(copy)
        .chain(map)
        .chain(fused)
        .chain(zip)
        .chain(gemm)
        .chain(reduce)
        .chain(axis)
        .chain(cross_entropy)
        .chain(transpose)
        .chain(window)
        .chain(update)
}

/// The names of the [`Backend`] kernels the cases run (upload, download and
/// `buffer_len` are run by [`check`] itself on every case).
pub const KERNELS: [&str; 19] = [
    "fill",
    "copy",
    "map",
    "map_backward",
    "bias_act",
    "act_backward",
    "zip",
    "zip_backward",
    "gemm",
    "reduce",
    "expand",
    "max_backward",
    "softmax",
    "softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "transpose",
    "window",
    "update",
];

/// What a passing run compared.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Report {
    /// Cases run.
    pub cases: usize,
    /// Floats compared.
    pub values: usize,
    /// The largest difference seen, relative to `max(1, |expected|)`.
    pub max_err: f32,
    /// The kernel where it was seen.
    pub worst: &'static str,
}

/// How a case failed.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// A float differs from the reference's.
    Value {
        /// The operand it belongs to (`"guard"` for the floats between operands).
        operand: &'static str,
        /// Its index in that operand.
        index: usize,
        /// The reference's value.
        expected: f32,
        /// The backend's value.
        found: f32,
    },
    /// The backend under test returned an error (from the kernel, or from
    /// `upload`/`download`).
    Backend(Error),
    /// The reference failed, or a buffer is too small for the case.
    Setup(Error),
}

/// The first case whose result differs from the reference.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Mismatch {
    /// The [`Backend`] method (see [`KERNELS`]).
    pub kernel: &'static str,
    /// The case's position in [`cases`].
    pub case: usize,
    /// The case.
    pub call: Call,
    /// What went wrong.
    pub failure: Failure,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (case {}: {:?}): ", self.kernel, self.case, self.call)?;
        match self.failure {
            Failure::Value {
                operand,
                index,
                expected,
                found,
            } => write!(f, "{operand}[{index}] is {found}, expected {expected}"),
            Failure::Backend(e) => write!(f, "the backend failed: {e}"),
            Failure::Setup(e) => write!(f, "setup failed: {e}"),
        }
    }
}

/// Whether `found` matches `expected` within `tol`, absolute below 1 and
/// relative above. NaNs match NaNs, infinities match themselves.
pub fn close(expected: f32, found: f32, tol: f32) -> bool {
    err(expected, found) <= tol
}

/// The difference between `expected` and `found`, relative to
/// `max(1, |expected|)`: 0 for equal values and for two NaNs, infinite when
/// only one is NaN or infinite.
fn err(expected: f32, found: f32) -> f32 {
    if expected == found || (expected.is_nan() && found.is_nan()) {
        0.0
    } else {
        let d = libm::fabsf(expected - found) / libm::fabsf(expected).max(1.0);
        if d.is_nan() {
            f32::INFINITY
        } else {
            d
        }
    }
}

/// Runs every case of [`cases`] on `be` and on the reference [`Cpu`] and
/// compares the results within `tol` (see [`close`]; index results must match
/// exactly).
///
/// `buf` (the backend under test's buffer) and `host` (the reference's) must
/// each hold [`BUF_LEN`] floats; their contents are overwritten. `seed` picks
/// the random data. Returns the first mismatch.
// A mismatch is rare and reported once; without an allocator it cannot be boxed.
#[allow(clippy::result_large_err)]
pub fn check<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    host: &mut [f32],
    seed: u64,
    tol: f32,
) -> Result<Report, Mismatch> {
    let mut report = Report {
        cases: 0,
        values: 0,
        max_err: 0.0,
        worst: "",
    };
    for (i, call) in cases().enumerate() {
        let (values, e) = check_case(be, buf, host, i, call, seed, tol)?;
        report.cases += 1;
        report.values += values;
        if e > report.max_err {
            report.max_err = e;
            report.worst = call.kernel();
        }
    }
    Ok(report)
}

/// Runs one case (the `case`-th of [`cases`], which seeds its data) on `be`
/// and on [`Cpu`], and compares them. Returns the floats compared and the
/// largest difference seen.
#[allow(clippy::result_large_err)]
pub fn check_case<B: Backend + ?Sized>(
    be: &B,
    buf: &mut B::Buffer,
    host: &mut [f32],
    case: usize,
    call: Call,
    seed: u64,
    tol: f32,
) -> Result<(usize, f32), Mismatch> {
    let fail = |failure| Mismatch {
        kernel: call.kernel(),
        case,
        call,
        failure,
    };
    let total = call.footprint();
    if total > host.len() || total > be.buffer_len(buf) {
        return Err(fail(Failure::Setup(Error::OutOfMemory {
            needed: total,
            available: host.len().min(be.buffer_len(buf)),
        })));
    }

    // Lay the operands out and fill them, and the guards, with random data.
    let (ops, n) = call.operands();
    let mut spans = [Span::default(); MAX_OPERANDS];
    let mut rng = Rng::new(seed ^ (case as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let fill = |dst: &mut [f32], dist: Dist, rng: &mut Rng| {
        for v in dst {
            *v = dist.sample(rng);
        }
    };
    fill(&mut host[..LEAD], UNIT, &mut rng);
    let mut at = LEAD;
    for (span, op) in spans.iter_mut().zip(&ops[..n]) {
        *span = Span::new(at, op.len);
        fill(&mut host[at..at + op.len], op.dist, &mut rng);
        at += op.len;
        fill(&mut host[at..at + PAD], UNIT, &mut rng);
        at += PAD;
    }
    debug_assert_eq!(at, total);
    let spans = &spans[..n];

    call.prepare(host, spans)
        .map_err(|e| fail(Failure::Setup(e)))?;
    be.upload(buf, Span::new(0, total), &host[..total])
        .map_err(|e| fail(Failure::Backend(e)))?;
    call.run(&Cpu, host, spans)
        .map_err(|e| fail(Failure::Setup(e)))?;
    call.run(be, buf, spans)
        .map_err(|e| fail(Failure::Backend(e)))?;

    // Download in chunks and compare.
    let tol = if call.exact() { 0.0 } else { tol };
    let mut chunk = [0.0f32; 1024];
    let mut max_err = 0.0f32;
    let mut start = 0;
    while start < total {
        let len = (total - start).min(chunk.len());
        be.download(buf, Span::new(start, len), &mut chunk[..len])
            .map_err(|e| fail(Failure::Backend(e)))?;
        for (j, (&found, &expected)) in chunk[..len]
            .iter()
            .zip(&host[start..start + len])
            .enumerate()
        {
            let e = err(expected, found);
            if e > tol {
                let pos = start + j;
                let (operand, index) = match spans
                    .iter()
                    .zip(&ops)
                    .find(|(s, _)| pos >= s.offset && pos < s.end())
                {
                    Some((s, o)) => (o.name, pos - s.offset),
                    None => ("guard", pos),
                };
                return Err(fail(Failure::Value {
                    operand,
                    index,
                    expected,
                    found,
                }));
            }
            max_err = max_err.max(e);
        }
        start += len;
    }
    Ok((total, max_err))
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn every_kernel_has_cases_and_every_case_fits() {
        for k in KERNELS {
            assert!(cases().any(|c| c.kernel() == k), "no case runs {k}");
        }
        for c in cases() {
            assert!(
                KERNELS.contains(&c.kernel()),
                "{} is not listed",
                c.kernel()
            );
            assert!(
                c.footprint() <= BUF_LEN,
                "{c:?} needs {} floats",
                c.footprint()
            );
        }
        // The large cases fill at least half the buffer: BUF_LEN is not wasteful.
        assert!(cases().map(|c| c.footprint()).max().unwrap() > BUF_LEN / 2);
    }

    #[test]
    fn cpu_conforms_to_itself() {
        let mut buf = vec![0.0f32; BUF_LEN];
        let mut host = vec![0.0f32; BUF_LEN];
        let report = check(&Cpu, &mut buf[..], &mut host, 1, 0.0).unwrap_or_else(|m| panic!("{m}"));
        assert_eq!(report.cases, cases().count());
        assert_eq!(report.max_err, 0.0);
    }

    /// A backend that gets one kernel wrong, to see that the suite notices.
    /// The CPU backend with a wrong `transpose` and no host memory.
    pub(crate) struct Broken;
    impl Backend for Broken {
        type Buffer = [f32];
        fn buffer_len(&self, buf: &[f32]) -> usize {
            buf.len()
        }
        fn upload(&self, buf: &mut [f32], dst: Span, src: &[f32]) -> crate::Result<()> {
            Cpu.upload(buf, dst, src)
        }
        fn download(&self, buf: &[f32], src: Span, dst: &mut [f32]) -> crate::Result<()> {
            Cpu.download(buf, src, dst)
        }
        fn fill(&self, buf: &mut [f32], dst: Span, value: f32) -> crate::Result<()> {
            Cpu.fill(buf, dst, value)
        }
        fn copy(&self, buf: &mut [f32], b: &Blocks) -> crate::Result<()> {
            Cpu.copy(buf, b)
        }
        fn map(&self, buf: &mut [f32], f: Map, x: Span, y: Span) -> crate::Result<()> {
            Cpu.map(buf, f, x, y)
        }
        fn map_backward(
            &self,
            buf: &mut [f32],
            f: Map,
            x: Span,
            y: Span,
            dy: Span,
            dx: Span,
        ) -> crate::Result<()> {
            Cpu.map_backward(buf, f, x, y, dy, dx)
        }
        fn bias_act(&self, buf: &mut [f32], f: Map, bias: Span, y: Span) -> crate::Result<()> {
            Cpu.bias_act(buf, f, bias, y)
        }
        fn act_backward(&self, buf: &mut [f32], f: Map, y: Span, dy: Span) -> crate::Result<()> {
            Cpu.act_backward(buf, f, y, dy)
        }
        fn zip(&self, buf: &mut [f32], f: Zip, a: Span, b: Span, y: Span) -> crate::Result<()> {
            Cpu.zip(buf, f, a, b, y)
        }
        fn zip_backward(
            &self,
            buf: &mut [f32],
            f: Zip,
            rhs: bool,
            a: Span,
            b: Span,
            dy: Span,
            d: Span,
        ) -> crate::Result<()> {
            Cpu.zip_backward(buf, f, rhs, a, b, dy, d)
        }
        fn gemm(&self, buf: &mut [f32], batch: usize, g: &Gemm) -> crate::Result<()> {
            Cpu.gemm(buf, batch, g)
        }
        fn reduce(
            &self,
            buf: &mut [f32],
            op: Reduce,
            x: Span,
            y: Span,
            d: AxisDims,
            acc: Acc,
        ) -> crate::Result<()> {
            Cpu.reduce(buf, op, x, y, d, acc)
        }
        fn expand(
            &self,
            buf: &mut [f32],
            x: Span,
            y: Span,
            d: AxisDims,
            acc: Acc,
        ) -> crate::Result<()> {
            Cpu.expand(buf, x, y, d, acc)
        }
        fn max_backward(
            &self,
            buf: &mut [f32],
            x: Span,
            y: Span,
            dy: Span,
            dx: Span,
            d: AxisDims,
        ) -> crate::Result<()> {
            Cpu.max_backward(buf, x, y, dy, dx, d)
        }
        fn softmax(
            &self,
            buf: &mut [f32],
            x: Span,
            y: Span,
            d: AxisDims,
            log: bool,
        ) -> crate::Result<()> {
            Cpu.softmax(buf, x, y, d, log)
        }
        fn softmax_backward(
            &self,
            buf: &mut [f32],
            y: Span,
            dy: Span,
            dx: Span,
            d: AxisDims,
            log: bool,
        ) -> crate::Result<()> {
            Cpu.softmax_backward(buf, y, dy, dx, d, log)
        }
        fn cross_entropy(
            &self,
            buf: &mut [f32],
            x: Span,
            t: Span,
            loss: Span,
            classes: usize,
        ) -> crate::Result<()> {
            Cpu.cross_entropy(buf, x, t, loss, classes)
        }
        fn cross_entropy_backward(
            &self,
            buf: &mut [f32],
            x: Span,
            t: Span,
            dloss: Span,
            dx: Span,
            classes: usize,
        ) -> crate::Result<()> {
            Cpu.cross_entropy_backward(buf, x, t, dloss, dx, classes)
        }
        fn transpose(
            &self,
            buf: &mut [f32],
            x: Span,
            y: Span,
            batch: usize,
            rows: usize,
            cols: usize,
            acc: Acc,
        ) -> crate::Result<()> {
            // Wrong: overwrites instead of accumulating when there are several matrices.
            let acc = if batch > 1 { Acc::Set } else { acc };
            Cpu.transpose(buf, x, y, batch, rows, cols, acc)
        }
        fn update(
            &self,
            buf: &mut [f32],
            rule: &Update,
            param: Span,
            grad: Span,
            state: Span,
        ) -> crate::Result<()> {
            Cpu.update(buf, rule, param, grad, state)
        }
    }

    #[test]
    fn a_wrong_kernel_is_reported() {
        let mut buf = vec![0.0f32; BUF_LEN];
        let mut host = vec![0.0f32; BUF_LEN];
        let m = check(&Broken, &mut buf[..], &mut host, 1, 1e-4).unwrap_err();
        assert_eq!(m.kernel, "transpose", "{m}");
        assert!(matches!(
            m.call,
            Call::Transpose {
                acc: Acc::Add,
                batch: 4,
                ..
            }
        ));
        assert!(
            matches!(m.failure, Failure::Value { operand: "y", .. }),
            "{m}"
        );
    }

    #[test]
    fn a_small_buffer_is_a_setup_failure() {
        let mut buf = [0.0f32; 64];
        let mut host = vec![0.0f32; BUF_LEN];
        let m = check(&Cpu, &mut buf[..], &mut host, 1, 1e-4).unwrap_err();
        assert!(
            matches!(m.failure, Failure::Setup(Error::OutOfMemory { .. })),
            "{m}"
        );
    }

    #[test]
    fn close_is_absolute_below_one_and_relative_above() {
        assert!(close(0.0, 1e-5, 1e-4));
        assert!(!close(0.0, 1e-3, 1e-4));
        assert!(close(1000.0, 1000.05, 1e-4));
        assert!(!close(1000.0, 1000.5, 1e-4));
        assert!(close(f32::NAN, f32::NAN, 0.0));
        assert!(!close(1.0, f32::NAN, 1e-4));
        assert!(close(f32::INFINITY, f32::INFINITY, 0.0));
        assert!(!close(f32::INFINITY, 1e30, 1e-4));
    }
}
