//! The tape: a graph of fixed capacity that records operations and walks them backward.
//!
//! A [`Graph`] borrows a [`Memory`] for as long as it lives. Every tensor made
//! while it lives is a node of the graph; its value (and, during or after
//! `backward`, its gradient) is a [`Span`] of the memory above the persistent
//! region. Dropping the graph (or calling [`Graph::reset`]) returns all of it.
//!
//! Nodes are stored in creation order, which is a topological order, so the
//! backward walk is a single reverse sweep with no allocation.

use crate::backend::{AxisDims, Reduce, Window, WindowKernel};
use crate::backend::{Backend, Span};
use crate::backend::{Map, Zip};
use crate::error::{Error, Result};
use crate::memory::Memory;
use crate::shape::Dims;
use core::cell::{Ref, RefCell, RefMut};

pub mod custom;

/// The id of "no node".
pub(crate) const NONE: u32 = u32::MAX;

/// Default node capacity of a [`Graph`].
pub const DEFAULT_NODES: usize = 128;

/// The running statistics of a batch norm and how it uses them (the
/// payload of [`Op::BatchNorm`]; `ops::batch_norm` runs it).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BatchNormStats {
    /// `running_mean`, `[channels]`.
    pub running_mean: Span,
    /// `running_var`, `[channels]`.
    pub running_var: Span,
    /// `num_batches_tracked`, one float.
    pub num_batches_tracked: Span,
    /// Added to the variance before its square root.
    pub eps: f32,
    /// Weight of a batch's statistics in the running ones.
    pub momentum: f32,
    /// Batch statistics (and running updates) rather than the running ones.
    pub training: bool,
}

/// A layer composed of several nodes, as its last node ([`Op::Layer`])
/// names it: the node ids of its input and parameters (`u32::MAX` where
/// absent) and of the window node that holds its geometry.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Composite {
    /// `f(conv2d(input, weight, bias))` ([`Tensor::conv2d_act`](crate::Tensor::conv2d_act)).
    Conv {
        /// The `[batch, in, h, w]` input.
        input: u32,
        /// The unfold of the input (its window: stride, padding, dilation, groups).
        unfold: u32,
        /// The `[out, in/groups, k_h, k_w]` weight.
        weight: u32,
        /// The `[out]` bias, or `u32::MAX` (none).
        bias: u32,
        /// The activation applied in the layer.
        act: Option<Map>,
    },
    /// Average pooling ([`Tensor::avg_pool2d`](crate::Tensor::avg_pool2d)).
    AvgPool {
        /// The `[batch, channels, h, w]` input.
        input: u32,
        /// The unfold of every plane (its window: kernel, stride, padding).
        unfold: u32,
    },
    /// Global average pooling ([`Tensor::global_avg_pool2d`](crate::Tensor::global_avg_pool2d)).
    GlobalAvgPool {
        /// The `[batch, channels, h, w]` input.
        input: u32,
    },
}

/// What produced a node, with what its backward pass needs to know.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Op {
    /// A tensor made from data.
    Leaf,
    /// A parameter that lives in the persistent part of [`Memory`].
    Param,
    /// A view of another tensor's value that gradients do not flow through.
    Detach,
    /// Elementwise function of one tensor.
    Map(Map),
    /// Elementwise function of two tensors.
    Zip(Zip),
    /// Batched matrix product `y = op(a) op(b)`.
    MatMul {
        /// Independent products.
        batch: usize,
        /// Rows of the result.
        m: usize,
        /// Columns of the result.
        n: usize,
        /// Inner dimension.
        k: usize,
        /// `a` is stored transposed.
        trans_a: bool,
        /// `b` is stored transposed.
        trans_b: bool,
    },
    /// Sum or maximum along an axis.
    Reduce {
        /// Which reduction.
        op: Reduce,
        /// The input seen around the axis.
        dims: AxisDims,
    },
    /// Broadcast along a new axis.
    Expand {
        /// The output seen around the new axis.
        dims: AxisDims,
    },
    /// Softmax or log-softmax along an axis.
    Softmax {
        /// The tensor seen around the axis.
        dims: AxisDims,
        /// Log-softmax.
        log: bool,
    },
    /// Swap of the last two dimensions.
    Transpose {
        /// Number of matrices.
        batch: usize,
        /// Rows of the input.
        rows: usize,
        /// Columns of the input.
        cols: usize,
    },
    /// Same data, another shape.
    Reshape,
    /// `x Wᵀ + b` (a fully connected layer's affine map).
    Linear {
        /// Rows.
        m: usize,
        /// Output features.
        n: usize,
        /// Input features.
        k: usize,
    },
    /// `f(x Wᵀ + b)`: a fully connected layer and its activation in one
    /// node (the activation is one that [`Map::fuses`]).
    LinearAct {
        /// Rows.
        m: usize,
        /// Output features.
        n: usize,
        /// Input features.
        k: usize,
        /// The activation.
        act: Map,
    },
    /// Per-row cross-entropy of logits `[rows, classes]` against class
    /// indices (softmax and negative log-likelihood fused).
    CrossEntropy {
        /// Rows.
        rows: usize,
        /// Classes.
        classes: usize,
    },
    /// A differentiable operation of the user's own ([`custom`]).
    Custom(custom::CustomRef),
    /// Batch normalisation per channel of an `[N, C, L…]` tensor
    /// ([`Tensor::batch_norm`](crate::Tensor::batch_norm)).
    BatchNorm {
        /// The input as `[outer, len, inner]`: samples `N`, channels `C`,
        /// and positions per channel `L` (the product of the spatial
        /// sizes; 1 for `[N, C]` input).
        dims: AxisDims,
        /// The running statistics and the mode.
        stats: BatchNormStats,
    },
    /// A kernel over sliding windows of a `[batch, channels, h, w]`
    /// tensor: im2col ([`WindowKernel::Unfold`]) or max pooling
    /// ([`WindowKernel::MaxPool`]).
    Window {
        /// The forward kernel.
        kernel: WindowKernel,
        /// The geometry.
        window: Window,
    },
    /// `[a, b, inner]` to `[b, a, inner]` (PyTorch's `transpose(0, 1)` of
    /// a rank-3 tensor).
    SwapAxes {
        /// The first axis.
        a: usize,
        /// The second axis.
        b: usize,
        /// Floats per `(a, b)` pair.
        inner: usize,
    },
    /// The last node of a layer that other nodes compose (a convolution is
    /// an unfold, a product and views): a view of the layer's output that
    /// names it and where its input and parameters are, so that export
    /// reads the layer off the pass ([`Composite`]). It costs a node and no
    /// floats; its backward is a view's.
    Layer(Composite),
    /// Concatenation of two tensors along an axis.
    Concat {
        /// Product of the dimensions before the axis.
        outer: usize,
        /// Floats per outer index taken from the first input.
        a_block: usize,
        /// Floats per outer index taken from the second input.
        b_block: usize,
    },
}

impl Op {
    /// The name of the node's backward function, as PyTorch's `grad_fn`
    /// prints it (`None` for leaves).
    pub fn name(&self) -> Option<&'static str> {
        Some(match self {
            Op::Leaf | Op::Param | Op::Detach => return None,
            Op::Map(m) => m.name(),
            Op::Zip(z) => z.name(),
            Op::MatMul { .. } => "MmBackward",
            Op::Linear { .. } => "AddmmBackward",
            Op::LinearAct { act, .. } => act.name(),
            Op::CrossEntropy { .. } => "NllLossBackward",
            Op::Reduce {
                op: Reduce::Sum, ..
            } => "SumBackward",
            Op::Reduce {
                op: Reduce::Max, ..
            } => "MaxBackward",
            Op::Reduce {
                op: Reduce::ArgMax, ..
            } => "ArgMax",
            Op::Expand { .. } => "ExpandBackward",
            Op::Softmax { log: false, .. } => "SoftmaxBackward",
            Op::Softmax { log: true, .. } => "LogSoftmaxBackward",
            Op::Transpose { .. } => "TransposeBackward",
            Op::Reshape => "ViewBackward",
            Op::Concat { .. } => "CatBackward",
            Op::Window {
                kernel: WindowKernel::MaxPool,
                ..
            } => "MaxPool2DWithIndicesBackward",
            Op::Window { .. } => "Im2ColBackward",
            Op::SwapAxes { .. } => "TransposeBackward",
            Op::Custom(c) => c.name(),
            Op::Layer(Composite::Conv { .. }) => "ConvolutionBackward",
            Op::Layer(Composite::AvgPool { .. }) => "AvgPool2DBackward",
            Op::Layer(Composite::GlobalAvgPool { .. }) => "MeanBackward",
            Op::BatchNorm { .. } => "NativeBatchNormBackward",
        })
    }
}

/// One recorded tensor.
pub(crate) struct Node<B: Backend> {
    pub op: Op,
    /// The op's backward, stored by the op's forward when it records the
    /// node: the walk calls it through this pointer, so only the backward
    /// passes of ops a program records are linked (a central `match` over
    /// [`Op`] would link every op's).
    pub backward: Backward<B>,
    pub dims: Dims,
    pub value: Span,
    pub grad: Option<Span>,
    pub requires_grad: bool,
    pub parents: [u32; 3],
    pub freed: bool,
    /// A backward walk has reached this node (a leaf's gradient reads as
    /// `None` until then, as in PyTorch).
    pub reached: bool,
}

// Not derived: a derive would ask `B: Copy`.
impl<B: Backend> Clone for Node<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Node<B> {}

impl<B: Backend> Node<B> {
    fn is_leaf(&self) -> bool {
        matches!(self.op, Op::Leaf | Op::Param | Op::Detach)
    }
}

/// The backward of a node that has none (leaves, parameters, detached
/// views and indices): nothing flows through it.
#[doc(hidden)]
pub fn no_backward<B: Backend>(
    _: &B,
    _: &mut B::Buffer,
    _: &Op,
    _: Span,
    _: Span,
    _: [Option<Input>; 3],
) -> Result<()> {
    Ok(())
}

/// What a node's backward pass sees of one of its inputs.
#[derive(Clone, Copy, Debug)]
#[doc(hidden)]
pub struct Input {
    pub value: Span,
    /// Where to accumulate the input's gradient; `None` when it needs none.
    pub grad: Option<Span>,
}

/// The seed of a backward walk.
#[derive(Clone, Copy, Debug)]
pub enum Seed<'a> {
    /// `1` for a one-element tensor.
    One,
    /// An external gradient from the host (a vector-Jacobian product).
    Host(&'a [f32]),
    /// An external gradient held by another tensor of the same graph.
    Tensor(u32),
}

/// The backward pass of one op, which the op's forward stores in the node it
/// records and a walk runs node by node (`dx += ...` into the inputs'
/// gradients, from the node's op, value `y` and gradient `dy`).
#[doc(hidden)]
pub type Backward<B> =
    fn(&B, &mut <B as Backend>::Buffer, &Op, Span, Span, [Option<Input>; 3]) -> Result<()>;

/// A kernel that fills a new node's value from its inputs' values.
pub type Kernel<'k, B> =
    &'k mut dyn FnMut(&B, &mut <B as Backend>::Buffer, Span, [Span; 3]) -> Result<()>;

/// The recording interface of a graph, object-safe so that tensors need not
/// carry the graph's capacity in their type. Users call the methods of
/// [`Graph`] and [`Tensor`](crate::Tensor); the methods of this trait are the
/// plumbing behind them.
pub trait Tape<B: Backend> {
    /// The backend the graph runs on.
    fn backend(&self) -> &B;
    /// Records a node whose value is `numel(dims)` new floats filled by
    /// `kernel`, and whose backward is `backward`.
    #[doc(hidden)]
    fn record(
        &self,
        op: Op,
        dims: Dims,
        parents: [u32; 3],
        backward: Backward<B>,
        kernel: Kernel<'_, B>,
    ) -> u32;
    /// Records a node that shares its value with `parent` (reshape, detach).
    #[doc(hidden)]
    fn record_alias(&self, op: Op, dims: Dims, parent: u32, backward: Backward<B>) -> u32;
    /// Records a parameter leaf over persistent memory.
    #[doc(hidden)]
    fn record_param(&self, dims: Dims, value: Span, grad: Span) -> u32;
    /// A node's value span, shape, gradient span and whether it requires a gradient.
    #[doc(hidden)]
    fn node(&self, id: u32) -> Result<(Span, Dims, Option<Span>, bool, Op)>;
    /// The nodes a node was computed from (`u32::MAX` where absent);
    /// recorded only for nodes that require a gradient (export traces a
    /// forward pass through them: `deploy::plan`).
    #[doc(hidden)]
    fn parents(&self, id: u32) -> Result<[u32; 3]>;
    /// Runs `f` on the backend and the graph's buffer.
    #[doc(hidden)]
    fn with_buffer(&self, f: &mut dyn FnMut(&B, &mut B::Buffer) -> Result<()>) -> Result<()>;
    /// Makes a leaf require a gradient (allocating it, zeroed).
    #[doc(hidden)]
    fn set_requires_grad(&self, id: u32) -> Result<()>;
    /// Overwrites `data.len()` values of the last recorded node, a leaf
    /// without a gradient, from `offset`.
    #[doc(hidden)]
    fn write_leaf(&self, id: u32, offset: usize, data: &[f32]) -> Result<()>;
    /// Walks the graph backward from `root`, running each node's backward.
    #[doc(hidden)]
    fn backward(&self, root: u32, seed: Seed<'_>, retain: bool) -> Result<()>;
    /// Records the first error; later operations return invalid tensors.
    fn fail(&self, e: Error);
    /// The first error recorded, if any.
    fn error(&self) -> Option<Error>;
    /// Whether operations are recorded for backward.
    fn is_grad_enabled(&self) -> bool;
    /// Turns recording on or off; returns the previous setting.
    fn set_grad_enabled(&self, on: bool) -> bool;
}

struct Inner<'m, B: Backend, const N: usize> {
    buf: &'m mut B::Buffer,
    /// First float the graph may use (the end of the persistent region).
    base: usize,
    /// First free float.
    top: usize,
    /// The highest `top` reached since the graph was made or reset.
    peak: usize,
    /// Floats in the buffer.
    cap: usize,
    nodes: heapless::Vec<Node<B>, N>,
    error: Option<Error>,
    grad_enabled: bool,
}

impl<B: Backend, const N: usize> Inner<'_, B, N> {
    fn alloc(&mut self, len: usize) -> Result<Span> {
        let available = self.cap - self.top;
        if len > available {
            return Err(Error::OutOfMemory {
                needed: len,
                available,
            });
        }
        let s = Span::new(self.top, len);
        self.top += len;
        self.peak = self.peak.max(self.top);
        Ok(s)
    }

    fn push(&mut self, node: Node<B>) -> Result<u32> {
        let id = self.nodes.len() as u32;
        self.nodes
            .push(node)
            .map_err(|_| Error::TooManyNodes { capacity: N })?;
        Ok(id)
    }

    fn get(&self, id: u32) -> Result<&Node<B>> {
        self.nodes.get(id as usize).ok_or(Error::InvalidTensor)
    }

    fn requires(&self, parents: &[u32; 3]) -> bool {
        self.grad_enabled
            && parents
                .iter()
                .any(|&p| p != NONE && self.nodes.get(p as usize).is_some_and(|n| n.requires_grad))
    }
}

/// A tape of at most `N` nodes over a [`Memory`].
///
/// ```
/// use ember_nn_core::prelude::*;
/// let mut buf = [0.0f32; 256];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let g: Graph<'_, Cpu> = Graph::new(&mut mem);
/// let x = g.tensor([1.0f32, 2.0, 3.0]).requires_grad();
/// let y = (x * x).sum();
/// y.backward().unwrap();
/// assert_eq!(x.grad().unwrap(), Some([2.0, 4.0, 6.0]));
/// ```
pub struct Graph<'m, B: Backend, const N: usize = DEFAULT_NODES> {
    backend: &'m B,
    inner: RefCell<Inner<'m, B, N>>,
}

impl<'m, B: Backend> Graph<'m, B, DEFAULT_NODES> {
    /// A graph of [`DEFAULT_NODES`] nodes that records into the free part of
    /// `mem` until it is dropped.
    pub fn new<'a>(mem: &'m mut Memory<'a, B>) -> Self
    where
        'a: 'm,
    {
        Self::with_capacity(mem)
    }
}

/// A graph's state borrowed while it was in use.
#[cold]
#[inline(never)]
fn state_in_use() -> ! {
    panic!("graph state already in use")
}

impl<'m, B: Backend, const N: usize> Graph<'m, B, N> {
    /// A graph of at most `N` nodes that records into the free part of `mem`
    /// until it is dropped: `Graph::<_, 32>::with_capacity(&mut mem)`.
    pub fn with_capacity<'a>(mem: &'m mut Memory<'a, B>) -> Self
    where
        'a: 'm,
    {
        let (backend, buf, base) = mem.split();
        let cap = backend.buffer_len(buf);
        Graph {
            backend,
            inner: RefCell::new(Inner {
                buf,
                base,
                top: base,
                peak: base,
                cap,
                nodes: heapless::Vec::new(),
                error: None,
                grad_enabled: true,
            }),
        }
    }

    /// Forgets every node and returns all graph memory. Tensors of the graph
    /// cannot outlive this call (the borrow checker sees to it).
    pub fn reset(&mut self) {
        let inner = self.inner.get_mut();
        inner.nodes.clear();
        inner.top = inner.base;
        inner.peak = inner.base;
        inner.error = None;
        inner.grad_enabled = true;
    }

    /// The graph's state, borrowed; a nested borrow (a bug) panics with a
    /// fixed message: `RefCell::borrow`'s own panic formats a `BorrowError`,
    /// which links `core::fmt`'s padding code into a microcontroller's
    /// program.
    #[inline]
    fn state(&self) -> Ref<'_, Inner<'m, B, N>> {
        match self.inner.try_borrow() {
            Ok(r) => r,
            Err(_) => state_in_use(),
        }
    }

    /// The graph's state, borrowed mutably (see [`state`](Self::state)).
    #[inline]
    fn state_mut(&self) -> RefMut<'_, Inner<'m, B, N>> {
        match self.inner.try_borrow_mut() {
            Ok(r) => r,
            Err(_) => state_in_use(),
        }
    }

    /// Floats used by the graph so far (values and gradients).
    pub fn used(&self) -> usize {
        let inner = self.state();
        inner.top - inner.base
    }

    /// The most floats the graph has used at once since it was made or
    /// [`reset`](Self::reset): the values of the forward pass plus the
    /// gradients a backward pass holds before it returns them. This is the
    /// figure to size an arena by ([`nn::train_budget`](crate::nn::train_budget)
    /// bounds it at compile time).
    pub fn peak(&self) -> usize {
        let inner = self.state();
        inner.peak - inner.base
    }

    /// Nodes recorded so far.
    pub fn len(&self) -> usize {
        self.state().nodes.len()
    }

    /// Whether no node was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first error recorded, as a `Result`.
    pub fn status(&self) -> Result<()> {
        match self.state().error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `f` with recording turned off (PyTorch's `torch.no_grad()`).
    pub fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        let prev = Tape::set_grad_enabled(self, false);
        let r = f();
        Tape::set_grad_enabled(self, prev);
        r
    }
}

impl<'m, B: Backend, const N: usize> core::ops::Deref for Graph<'m, B, N> {
    type Target = dyn Tape<B> + 'm;
    fn deref(&self) -> &Self::Target {
        self
    }
}

impl<B: Backend, const N: usize> Tape<B> for Graph<'_, B, N> {
    fn backend(&self) -> &B {
        self.backend
    }

    fn record(
        &self,
        op: Op,
        dims: Dims,
        parents: [u32; 3],
        backward: Backward<B>,
        kernel: Kernel<'_, B>,
    ) -> u32 {
        let mut guard = self.state_mut();
        let inner = &mut *guard;
        if inner.error.is_some() {
            return NONE;
        }
        let result = (|| {
            let mut ins = [Span::default(); 3];
            for (slot, &p) in ins.iter_mut().zip(parents.iter()) {
                compact_loop!();
                if p != NONE {
                    *slot = inner.get(p)?.value;
                }
            }
            let requires_grad = inner.requires(&parents);
            let mark = inner.top;
            let value = inner.alloc(dims.numel())?;
            if inner.nodes.is_full() {
                inner.top = mark;
                return Err(Error::TooManyNodes { capacity: N });
            }
            kernel(self.backend, inner.buf, value, ins)?;
            inner.push(Node {
                op,
                backward,
                dims,
                value,
                grad: None,
                requires_grad,
                parents: if requires_grad { parents } else { [NONE; 3] },
                freed: false,
                reached: false,
            })
        })();
        result.unwrap_or_else(|e| {
            inner.error = Some(e);
            NONE
        })
    }

    fn record_alias(&self, op: Op, dims: Dims, parent: u32, backward: Backward<B>) -> u32 {
        let mut guard = self.state_mut();
        let inner = &mut *guard;
        if inner.error.is_some() {
            return NONE;
        }
        let result = (|| {
            let value = inner.get(parent)?.value;
            let flows = !matches!(op, Op::Detach);
            let requires_grad = flows && inner.requires(&[parent, NONE, NONE]);
            inner.push(Node {
                op,
                backward,
                dims,
                value,
                grad: None,
                requires_grad,
                parents: if requires_grad {
                    [parent, NONE, NONE]
                } else {
                    [NONE; 3]
                },
                freed: false,
                reached: false,
            })
        })();
        result.unwrap_or_else(|e| {
            inner.error = Some(e);
            NONE
        })
    }

    fn record_param(&self, dims: Dims, value: Span, grad: Span) -> u32 {
        let mut guard = self.state_mut();
        let inner = &mut *guard;
        if inner.error.is_some() {
            return NONE;
        }
        if value.end() > inner.base || grad.end() > inner.base || value.len != dims.numel() {
            inner.error = Some(Error::InvalidTensor);
            return NONE;
        }
        let requires_grad = inner.grad_enabled;
        inner
            .push(Node {
                op: Op::Param,
                backward: no_backward::<B>,
                dims,
                value,
                grad: requires_grad.then_some(grad),
                requires_grad,
                parents: [NONE; 3],
                freed: false,
                reached: false,
            })
            .unwrap_or_else(|e| {
                inner.error = Some(e);
                NONE
            })
    }

    fn node(&self, id: u32) -> Result<(Span, Dims, Option<Span>, bool, Op)> {
        let inner = self.state();
        if let Some(e) = inner.error {
            return Err(e);
        }
        let n = inner.get(id)?;
        // A leaf that no backward reached has no gradient yet (PyTorch's
        // `None`), though its zeroed storage is there.
        let grad = if matches!(n.op, Op::Leaf) && !n.reached {
            None
        } else {
            n.grad
        };
        Ok((n.value, n.dims, grad, n.requires_grad, n.op))
    }

    fn parents(&self, id: u32) -> Result<[u32; 3]> {
        let inner = self.state();
        if let Some(e) = inner.error {
            return Err(e);
        }
        Ok(inner.get(id)?.parents)
    }

    fn with_buffer(&self, f: &mut dyn FnMut(&B, &mut B::Buffer) -> Result<()>) -> Result<()> {
        let mut inner = self.state_mut();
        f(self.backend, inner.buf)
    }

    fn set_requires_grad(&self, id: u32) -> Result<()> {
        let mut guard = self.state_mut();
        let inner = &mut *guard;
        if let Some(e) = inner.error {
            return Err(e);
        }
        let node = *inner.get(id)?;
        if !matches!(node.op, Op::Leaf) {
            return Err(Error::NotALeaf);
        }
        if node.grad.is_some() {
            return Ok(());
        }
        let grad = inner.alloc(node.value.len)?;
        self.backend.fill(inner.buf, grad, 0.0)?;
        let n = &mut inner.nodes[id as usize];
        n.grad = Some(grad);
        n.requires_grad = true;
        Ok(())
    }

    fn write_leaf(&self, id: u32, offset: usize, data: &[f32]) -> Result<()> {
        let mut guard = self.state_mut();
        let inner = &mut *guard;
        if let Some(e) = inner.error {
            return Err(e);
        }
        let node = *inner.get(id)?;
        // Only the newest node: nothing recorded yet has read its values.
        if !matches!(node.op, Op::Leaf)
            || node.requires_grad
            || id as usize + 1 != inner.nodes.len()
        {
            return Err(Error::InvalidArgument {
                what: "only the last recorded leaf, with no gradient, can be written in place",
            });
        }
        let end = offset
            .checked_add(data.len())
            .filter(|&e| e <= node.value.len);
        if end.is_none() {
            return Err(Error::Length {
                expected: node.value.len.saturating_sub(offset),
                found: data.len(),
            });
        }
        self.backend
            .upload(inner.buf, node.value.sub(offset, data.len()), data)
    }

    fn backward(&self, root: u32, seed: Seed<'_>, retain: bool) -> Result<()> {
        let mut guard = self.state_mut();
        let inner = &mut *guard;
        if let Some(e) = inner.error {
            return Err(e);
        }
        let root_node = *inner.get(root)?;
        if !root_node.requires_grad {
            return Err(Error::NoGradient);
        }
        let mark = inner.top;
        let result = walk_backward(self.backend, inner, root, &root_node, seed);
        // Intermediate gradients are scratch: return their memory.
        for n in inner.nodes.iter_mut().take(root as usize + 1) {
            compact_loop!();
            if !n.is_leaf() {
                if !retain && result.is_ok() && n.grad.is_some() {
                    n.freed = true;
                }
                n.grad = None;
            }
        }
        inner.top = mark;
        result
    }

    fn fail(&self, e: Error) {
        let mut inner = self.state_mut();
        if inner.error.is_none() {
            inner.error = Some(e);
        }
    }

    fn error(&self) -> Option<Error> {
        self.state().error
    }

    fn is_grad_enabled(&self) -> bool {
        self.state().grad_enabled
    }

    fn set_grad_enabled(&self, on: bool) -> bool {
        core::mem::replace(&mut self.state_mut().grad_enabled, on)
    }
}

fn walk_backward<B: Backend, const N: usize>(
    backend: &B,
    inner: &mut Inner<'_, B, N>,
    root: u32,
    root_node: &Node<B>,
    seed: Seed<'_>,
) -> Result<()> {
    // Seed the root's gradient.
    let root_grad = match root_node.grad {
        Some(g) => g,
        None => {
            let g = inner.alloc(root_node.value.len)?;
            backend.fill(inner.buf, g, 0.0)?;
            inner.nodes[root as usize].grad = Some(g);
            g
        }
    };
    inner.nodes[root as usize].reached = true;
    let numel = root_node.value.len;
    match seed {
        Seed::One => {
            if numel != 1 {
                return Err(Error::NotScalar { numel });
            }
            let seed_span = inner.alloc(1)?;
            backend.fill(inner.buf, seed_span, 1.0)?;
            add_into(backend, inner.buf, seed_span, root_grad)?;
        }
        Seed::Host(data) => {
            if data.len() != numel {
                return Err(Error::Length {
                    expected: numel,
                    found: data.len(),
                });
            }
            let seed_span = inner.alloc(numel)?;
            backend.upload(inner.buf, seed_span, data)?;
            add_into(backend, inner.buf, seed_span, root_grad)?;
        }
        Seed::Tensor(id) => {
            let src = inner.get(id)?;
            if src.dims != root_node.dims {
                return Err(Error::Shape {
                    op: "backward",
                    expected: root_node.dims,
                    found: src.dims,
                });
            }
            let s = src.value;
            add_into(backend, inner.buf, s, root_grad)?;
        }
    }

    for id in (0..=root as usize).rev() {
        compact_loop!();
        let node = inner.nodes[id];
        let Some(dy) = node.grad else { continue };
        if node.is_leaf() || !node.requires_grad {
            continue;
        }
        if node.freed {
            return Err(Error::GraphFreed);
        }
        let mut inputs = [None; 3];
        for (slot, &p) in inputs.iter_mut().zip(node.parents.iter()) {
            compact_loop!();
            if p == NONE {
                continue;
            }
            let pn = inner.nodes[p as usize];
            if pn.requires_grad {
                inner.nodes[p as usize].reached = true;
            }
            let grad = if pn.requires_grad {
                match pn.grad {
                    Some(g) => Some(g),
                    None => {
                        let g = inner.alloc(pn.value.len)?;
                        backend.fill(inner.buf, g, 0.0)?;
                        inner.nodes[p as usize].grad = Some(g);
                        Some(g)
                    }
                }
            } else {
                None
            };
            *slot = Some(Input {
                value: pn.value,
                grad,
            });
        }
        (node.backward)(backend, inner.buf, &node.op, node.value, dy, inputs)?;
    }
    Ok(())
}

/// `dst += src`.
pub(crate) fn add_into<B: Backend>(
    backend: &B,
    buf: &mut B::Buffer,
    src: Span,
    dst: Span,
) -> Result<()> {
    backend.copy(
        buf,
        &crate::backend::Blocks {
            src,
            src_stride: 0,
            dst,
            dst_stride: 0,
            blocks: 1,
            block_len: src.len,
            acc: crate::backend::Acc::Add,
        },
    )
}
