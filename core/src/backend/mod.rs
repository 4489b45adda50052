//! The compute-backend abstraction.
//!
//! A backend owns no tensors. It provides a memory type ([`Backend::Buffer`]:
//! `[f32]` for CPU backends, a device allocation for a GPU backend) and a small
//! set of kernels that read and write [`Span`]s of one such buffer. The graph
//! decides where every tensor lives and which kernels run; the backend only
//! runs them. Layers, losses and optimizers are composed from these kernels, so
//! a new backend implements this trait and nothing else.
//!
//! Fourteen methods are required: memory (`buffer_len`, `upload`,
//! `download`), and the primitives `fill`, `copy`, `map`, `map_backward`,
//! `zip`, `zip_backward`, `gemm`, `reduce`, `expand`, `max_backward` and
//! `transpose`. The fused and op-specific kernels (`bias_act`,
//! `act_backward`, `softmax`, `softmax_backward`, `cross_entropy`,
//! `cross_entropy_backward`, `update`) have default bodies composed from the
//! primitives ([`composed`]), which work in the backend's
//! [`scratch`](Backend::scratch) region; a backend overrides them for speed.
//!
//! Every kernel that produces a gradient accumulates (`+=`) into its output, or
//! takes an [`Acc`] saying whether to overwrite or accumulate.

pub mod activation;
pub mod check;
pub mod composed;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod cpu;
pub mod host;
pub mod kernels;
pub mod map;
pub mod update;
pub mod window;
pub mod zip;

pub use cpu::Cpu;
pub use host::HostKernels;
pub use map::{Map, MapFn};
pub use update::Update;
pub use window::{Padding, Window, WindowCall, WindowKernel};
pub use zip::Zip;

use crate::Result;

/// A contiguous range of a backend buffer, in floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Span {
    /// First float.
    pub offset: usize,
    /// Number of floats.
    pub len: usize,
}

impl Span {
    /// A span of `len` floats at `offset`.
    pub const fn new(offset: usize, len: usize) -> Self {
        Span { offset, len }
    }
    /// One past the last float.
    pub const fn end(&self) -> usize {
        self.offset + self.len
    }
    /// Whether the two spans share a float.
    pub const fn overlaps(&self, other: &Span) -> bool {
        self.len != 0 && other.len != 0 && self.offset < other.end() && other.offset < self.end()
    }
    /// The sub-span `[start, start + len)` of this one.
    pub const fn sub(&self, start: usize, len: usize) -> Span {
        Span::new(self.offset + start, len)
    }
}

/// Whether a kernel overwrites its output or adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Acc {
    /// `out = result`.
    Set,
    /// `out += result`.
    Add,
}

/// A contiguous tensor seen around one axis: `[outer, len, inner]` in row-major order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AxisDims {
    /// Product of the dimensions before the axis.
    pub outer: usize,
    /// The axis' length.
    pub len: usize,
    /// Product of the dimensions after the axis.
    pub inner: usize,
}

impl AxisDims {
    /// Splits `dims` (of rank `rank`) around `axis`.
    pub fn around(dims: &[usize], axis: usize) -> Self {
        // Products in compact loops (`iter().product()` is unrolled twice).
        let product = |xs: &[usize]| {
            let mut p = 1;
            for &x in xs {
                compact_loop!();
                p *= x;
            }
            p
        };
        AxisDims {
            outer: product(&dims[..axis]),
            len: dims[axis],
            inner: product(&dims[axis + 1..]),
        }
    }
    /// Number of elements of the full tensor.
    pub const fn numel(&self) -> usize {
        self.outer * self.len * self.inner
    }
}

/// A row-major matrix product `c (+)= op(a) · op(b)`, batched over `batch`
/// independent products laid out one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Gemm {
    /// Rows of `op(a)` and `c`.
    pub m: usize,
    /// Columns of `op(b)` and `c`.
    pub n: usize,
    /// Columns of `op(a)`, rows of `op(b)`.
    pub k: usize,
    /// `a`, stored `[m, k]`, or `[k, m]` when `trans_a`.
    pub a: Span,
    /// Use `aᵀ`.
    pub trans_a: bool,
    /// `b`, stored `[k, n]`, or `[n, k]` when `trans_b`.
    pub b: Span,
    /// Use `bᵀ`.
    pub trans_b: bool,
    /// `c`, stored `[m, n]`.
    pub c: Span,
    /// Overwrite or accumulate into `c`.
    pub acc: Acc,
}

/// A strided block copy: `blocks` blocks of `block_len` floats, the i-th read at
/// `src.offset + i * src_stride` and written at `dst.offset + i * dst_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Blocks {
    /// Where the source blocks start (its `len` covers them all).
    pub src: Span,
    /// Distance between source blocks.
    pub src_stride: usize,
    /// Where the destination blocks start (its `len` covers them all).
    pub dst: Span,
    /// Distance between destination blocks.
    pub dst_stride: usize,
    /// Number of blocks.
    pub blocks: usize,
    /// Floats per block.
    pub block_len: usize,
    /// Overwrite or accumulate.
    pub acc: Acc,
}

/// A reduction along an axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reduce {
    /// Sum.
    Sum,
    /// Maximum (NaN wins, as in PyTorch).
    Max,
    /// Index of the first maximum, as a float.
    ArgMax,
}

/// A compute backend: memory plus the kernels that the graph runs on it.
///
/// Kernels take the whole buffer and [`Span`]s into it. The graph guarantees
/// that an output span never overlaps an input span; implementations may check
/// it, and must return an error rather than misbehave when a span lies outside
/// the buffer.
pub trait Backend {
    /// The memory tensors live in: `[f32]` on the CPU, device memory on a GPU.
    type Buffer: ?Sized;

    /// Floats in the buffer.
    fn buffer_len(&self, buf: &Self::Buffer) -> usize;
    /// The buffer as host memory, where it is host memory (the CPU
    /// backends): what custom operations (`ops::custom`) run on.
    /// `None`, the default, on a device whose memory the host cannot
    /// address; recording a custom operation there is an error.
    fn host_mut<'b>(&self, buf: &'b mut Self::Buffer) -> Option<&'b mut [f32]> {
        let _ = buf;
        None
    }
    /// A span of `buf` that no tensor is ever placed in, where the composed
    /// default kernels ([`composed`]) keep their intermediates: typically
    /// the end of the buffer, left out of [`buffer_len`](Backend::buffer_len).
    /// The default is empty, which suits a backend that overrides every
    /// fused kernel; with it, a composed kernel returns
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). Any size works:
    /// the composed kernels run in chunks of what fits.
    fn scratch(&self, buf: &Self::Buffer) -> Span {
        let _ = buf;
        Span::default()
    }
    /// Copies host floats into `dst`.
    fn upload(&self, buf: &mut Self::Buffer, dst: Span, src: &[f32]) -> Result<()>;
    /// Copies `src` to host floats.
    fn download(&self, buf: &Self::Buffer, src: Span, dst: &mut [f32]) -> Result<()>;
    /// Sets every float of `dst` to `value`.
    fn fill(&self, buf: &mut Self::Buffer, dst: Span, value: f32) -> Result<()>;
    /// Strided block copy (also plain copies, concatenation and its gradient).
    fn copy(&self, buf: &mut Self::Buffer, blocks: &Blocks) -> Result<()>;
    /// `y = f(x)` elementwise.
    fn map(&self, buf: &mut Self::Buffer, f: Map, x: Span, y: Span) -> Result<()>;
    /// `dx += f'(x) · dy` elementwise (`y = f(x)` is given for functions whose
    /// derivative is cheaper from the output). Where `dy` is exactly zero the
    /// contribution is zero, even if `f'(x)` is infinite.
    fn map_backward(
        &self,
        buf: &mut Self::Buffer,
        f: Map,
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
    ) -> Result<()>;
    /// The epilogue of a fused linear layer, in place:
    /// `y[r, c] = f(y[r, c] + bias[c])` for every row of `y` (`y.len` a
    /// multiple of `bias.len`). One pass instead of a broadcast and a map.
    fn bias_act(&self, buf: &mut Self::Buffer, f: Map, bias: Span, y: Span) -> Result<()> {
        composed::bias_act(self, buf, f, bias, y)
    }
    /// Backward through a fused activation, in place: `dy = f'(y) · dy`, with
    /// the derivative taken from the output `y` (`f` must be one that
    /// [`Map::fuses`]). Where `dy` is exactly zero it stays zero.
    fn act_backward(&self, buf: &mut Self::Buffer, f: Map, y: Span, dy: Span) -> Result<()> {
        composed::act_backward(self, buf, f, y, dy)
    }
    /// [`map`](Backend::map) for a function known at compile time (a
    /// [`MapFn`]): a backend with typed kernels (the CPU's) compiles the
    /// one function's loop, so that a program links only the functions it
    /// uses. The default runs [`map`](Backend::map) on `f.map()`.
    fn map_fn<F: MapFn>(&self, buf: &mut Self::Buffer, f: F, x: Span, y: Span) -> Result<()>
    where
        Self: Sized,
    {
        self.map(buf, f.map(), x, y)
    }
    /// [`map_backward`](Backend::map_backward) for a [`MapFn`] (see
    /// [`map_fn`](Backend::map_fn)).
    fn map_backward_fn<F: MapFn>(
        &self,
        buf: &mut Self::Buffer,
        f: F,
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
    ) -> Result<()>
    where
        Self: Sized,
    {
        self.map_backward(buf, f.map(), x, y, dy, dx)
    }
    /// [`bias_act`](Backend::bias_act) for a [`MapFn`] (see
    /// [`map_fn`](Backend::map_fn)).
    fn bias_act_fn<F: MapFn>(&self, buf: &mut Self::Buffer, f: F, bias: Span, y: Span) -> Result<()>
    where
        Self: Sized,
    {
        self.bias_act(buf, f.map(), bias, y)
    }
    /// [`act_backward`](Backend::act_backward) for a [`MapFn`] (see
    /// [`map_fn`](Backend::map_fn)).
    fn act_backward_fn<F: MapFn>(
        &self,
        buf: &mut Self::Buffer,
        f: F,
        y: Span,
        dy: Span,
    ) -> Result<()>
    where
        Self: Sized,
    {
        self.act_backward(buf, f.map(), y, dy)
    }
    /// `y = a ∘ b` elementwise.
    fn zip(&self, buf: &mut Self::Buffer, f: Zip, a: Span, b: Span, y: Span) -> Result<()>;
    /// `da += ∂(a ∘ b)/∂a · dy` (or `db`, when `rhs`).
    #[allow(clippy::too_many_arguments)]
    fn zip_backward(
        &self,
        buf: &mut Self::Buffer,
        f: Zip,
        rhs: bool,
        a: Span,
        b: Span,
        dy: Span,
        d: Span,
    ) -> Result<()>;
    /// Matrix product.
    fn gemm(&self, buf: &mut Self::Buffer, batch: usize, g: &Gemm) -> Result<()>;
    /// `y[o, i] (+)= reduce over l of x[o, l, i]`.
    fn reduce(
        &self,
        buf: &mut Self::Buffer,
        op: Reduce,
        x: Span,
        y: Span,
        dims: AxisDims,
        acc: Acc,
    ) -> Result<()>;
    /// `y[o, l, i] (+)= x[o, i]`: broadcast along an axis.
    fn expand(
        &self,
        buf: &mut Self::Buffer,
        x: Span,
        y: Span,
        dims: AxisDims,
        acc: Acc,
    ) -> Result<()>;
    /// Gradient of a max along an axis: `dx[o, l, i] += dy[o, i] / k` at each
    /// of the `k` positions `l` where `x[o, l, i] == y[o, i]` (or both are
    /// NaN): tied maxima share the gradient evenly, as in PyTorch.
    fn max_backward(
        &self,
        buf: &mut Self::Buffer,
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
        dims: AxisDims,
    ) -> Result<()>;
    /// Softmax (or log-softmax when `log`) along an axis.
    fn softmax(
        &self,
        buf: &mut Self::Buffer,
        x: Span,
        y: Span,
        dims: AxisDims,
        log: bool,
    ) -> Result<()> {
        composed::softmax(self, buf, x, y, dims, log)
    }
    /// Gradient of softmax (or log-softmax) from its output: `dx += J(y)ᵀ dy`.
    #[allow(clippy::too_many_arguments)]
    fn softmax_backward(
        &self,
        buf: &mut Self::Buffer,
        y: Span,
        dy: Span,
        dx: Span,
        dims: AxisDims,
        log: bool,
    ) -> Result<()> {
        composed::softmax_backward(self, buf, y, dy, dx, dims, log)
    }
    /// Softmax and cross-entropy fused, per row: for logits `x`
    /// `[rows, classes]` and class indices `targets` `[rows]` (as floats),
    /// `loss[r] = logsumexp(x[r]) − x[r, targets[r]]`, computed stably. A
    /// target that is not an integer in `[0, classes)` gives NaN (never an
    /// out-of-bounds read).
    fn cross_entropy(
        &self,
        buf: &mut Self::Buffer,
        x: Span,
        targets: Span,
        loss: Span,
        classes: usize,
    ) -> Result<()> {
        composed::cross_entropy(self, buf, x, targets, loss, classes)
    }
    /// The gradient of [`cross_entropy`](Backend::cross_entropy):
    /// `dx[r, c] += dloss[r] · (softmax(x[r])[c] − [c = targets[r]])`. Rows
    /// whose `dloss` is exactly zero get nothing.
    fn cross_entropy_backward(
        &self,
        buf: &mut Self::Buffer,
        x: Span,
        targets: Span,
        dloss: Span,
        dx: Span,
        classes: usize,
    ) -> Result<()> {
        composed::cross_entropy_backward(self, buf, x, targets, dloss, dx, classes)
    }
    /// `y[b] (+)= x[b]ᵀ` for `batch` matrices of `rows × cols`.
    #[allow(clippy::too_many_arguments)]
    fn transpose(
        &self,
        buf: &mut Self::Buffer,
        x: Span,
        y: Span,
        batch: usize,
        rows: usize,
        cols: usize,
        acc: Acc,
    ) -> Result<()>;
    /// A kernel over sliding windows ([`WindowKernel`]: convolution's
    /// im2col and its adjoint, max pooling and its backward). The default
    /// is composed from `fill`, `copy`, `download` and `upload`
    /// ([`window::composed`]).
    fn window(&self, buf: &mut Self::Buffer, call: &WindowCall) -> Result<()> {
        window::composed(self, buf, call)
    }
    /// One optimizer update of a parameter in place (see [`Update`]).
    fn update(
        &self,
        buf: &mut Self::Buffer,
        rule: &Update,
        param: Span,
        grad: Span,
        state: Span,
    ) -> Result<()> {
        composed::update(self, buf, rule, param, grad, state)
    }
}

/// A backend that can allocate its own memory (the host and GPU backends;
/// on a microcontroller the caller provides a `static` buffer instead).
pub trait Device: Backend {
    /// Owned memory of this device.
    type Storage: AsMut<Self::Buffer> + AsRef<Self::Buffer>;
    /// `floats` zeroed floats of device memory.
    fn alloc(&self, floats: usize) -> Result<Self::Storage>;
    /// A short name for messages (`"cpu"`, `"cuda:0 (NVIDIA H100)"`).
    fn name(&self) -> &str;
}

#[cfg(feature = "alloc")]
impl Device for Cpu {
    type Storage = alloc::vec::Vec<f32>;
    fn alloc(&self, floats: usize) -> Result<Self::Storage> {
        let mut v = alloc::vec::Vec::new();
        v.try_reserve_exact(floats)
            .map_err(|_| crate::Error::OutOfMemory {
                needed: floats,
                available: 0,
            })?;
        v.resize(floats, 0.0);
        Ok(v)
    }
    fn name(&self) -> &str {
        "cpu (single thread)"
    }
}
