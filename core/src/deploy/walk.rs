//! The walk from a traced forward pass's output back to its input: every
//! node on the way must be a layer the format stores, and becomes one node
//! of a graph ([`PlannedNode`]) in an order that runs.

use super::graph::{Geometry, NodeHeader, NodeOp, MAX_NODES};
use super::trace::{activation_of, ExportError, FoldedNorm, PlannedLayer};
use super::{Activation, FormatError};
use crate::backend::{Backend, Span, Window, WindowKernel, Zip};
use crate::graph::{Composite, Op, Tape, NONE};
use crate::nn::Module;

/// Tape nodes a traced forward pass may record: MLPerf Tiny's MobileNetV1
/// (27 convolutions, each with its batch norm and ReLU) records more than
/// 256.
pub(crate) const TRACE_NODES: usize = 512;

/// One node of the graph a forward pass computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedNode {
    /// What it computes, its shapes and where its output goes (the arena
    /// offset is set when the plan is made).
    pub header: NodeHeader,
    /// A dense layer's or a convolution's parameters, as a `[out, in]`
    /// matrix (a convolution's `in` is `in/groups · k_h · k_w`), with the
    /// batch norm folded into them, if any.
    pub params: Option<PlannedLayer>,
}

pub(crate) struct Walk<'g, B: Backend, M: ?Sized> {
    g: &'g dyn Tape<B>,
    model: &'g M,
    input: u32,
    pub(crate) nodes: heapless::Vec<PlannedNode, MAX_NODES>,
    /// Tape node → graph node, for values read twice (a residual's input):
    /// one entry per tape node walked (a layer's batch norm and activation
    /// too), so as many as a trace records.
    memo: heapless::Vec<(u32, usize), TRACE_NODES>,
    /// How many tape nodes read each tape node.
    uses: [u16; TRACE_NODES],
}

/// `[C, H, W]` of a tensor of `dims` per sample (its first axis the batch).
fn sample_shape(dims: &[usize]) -> [usize; 3] {
    match *dims {
        [_, f] => [f, 1, 1],
        [_, c, l] => [c, 1, l],
        [_, c, h, w] => [c, h, w],
        _ => {
            let rows = dims.first().copied().unwrap_or(1).max(1);
            [dims.iter().product::<usize>() / rows, 1, 1]
        }
    }
}

/// The geometry of a window, with the padding after the input that its
/// output needs (the window stores the padding before).
fn geometry(w: &Window) -> Geometry {
    let mut pad = [w.pad[0], w.pad[1], 0, 0];
    for a in 0..2 {
        let span = (w.kernel[a] - 1) * w.dilation[a] + 1;
        let reach = (w.output[a] - 1) * w.stride[a] + span;
        pad[a + 2] = reach.saturating_sub(w.input[a] + w.pad[a]);
    }
    Geometry {
        kernel: w.kernel,
        stride: w.stride,
        dilation: w.dilation,
        pad,
        groups: w.groups.max(1),
    }
}

fn numel(s: [usize; 3]) -> usize {
    s[0] * s[1] * s[2]
}

impl<'g, B: Backend, M: Module + ?Sized> Walk<'g, B, M> {
    pub(crate) fn new(
        g: &'g dyn Tape<B>,
        model: &'g M,
        output: u32,
        input: u32,
    ) -> Result<Self, ExportError> {
        let mut uses = [0u16; TRACE_NODES];
        for id in 0..=output {
            for p in g.parents(id)? {
                if let Some(u) = uses.get_mut(p as usize) {
                    *u = u.saturating_add(1);
                }
            }
        }
        let (_, in_dims, ..) = g.node(input)?;
        let shape = sample_shape(in_dims.as_slice());
        let mut nodes = heapless::Vec::new();
        let _ = nodes.push(PlannedNode {
            header: NodeHeader {
                op: NodeOp::Input,
                inputs: [0; 2],
                in_shape: shape,
                out_shape: shape,
                geometry: Geometry::default(),
                activation: Activation::Identity,
                arena: 0,
                out_scale: 0.0,
                out_zero: 0,
            },
            params: None,
        });
        Ok(Walk {
            g,
            model,
            input,
            nodes,
            memo: heapless::Vec::new(),
            uses,
        })
    }

    /// The graph node computing tape node `id`, made (with those it reads)
    /// if it is not yet; `depth` layers lie between it and the output.
    pub(crate) fn resolve(&mut self, id: u32, depth: usize) -> Result<usize, ExportError> {
        if id == self.input {
            return Ok(0);
        }
        if let Some(&(_, k)) = self.memo.iter().find(|(t, _)| *t == id) {
            return Ok(k);
        }
        let g = self.g;
        let (_, dims, _, requires_grad, op) = g.node(id)?;
        let parents = g.parents(id)?;
        let unsupported = |why: &'static str| ExportError::Unsupported {
            op: op.name().unwrap_or(match op {
                Op::Param => "a parameter",
                Op::Detach => "detach",
                _ => "a tensor made inside the forward pass",
            }),
            from_output: depth,
            why,
        };
        if !requires_grad || (parents[0] == NONE && !matches!(op, Op::Param)) {
            // Nodes that do not depend on the input or a parameter carry no
            // parents: a constant, or a detached value.
            return Err(if matches!(op, Op::Leaf) {
                ExportError::NoInput
            } else {
                unsupported("it does not depend on the input")
            });
        }
        let out_shape = sample_shape(dims.as_slice());
        let made = match op {
            Op::Reshape => {
                let (_, pdims, ..) = g.node(parents[0])?;
                let rows = |d: crate::shape::Dims| d.as_slice().first().copied();
                if dims.rank < 2 || rows(dims) != rows(pdims) {
                    return Err(unsupported("a reshape that mixes the rows of a batch"));
                }
                return self.resolve(parents[0], depth);
            }
            Op::Linear { n, k, .. } | Op::LinearAct { n, k, .. } => {
                let weight = self.param(parents[1], &[n, k], depth)?;
                let bias = self.param(parents[2], &[n], depth)?;
                let activation = match op {
                    Op::LinearAct { act, .. } => {
                        activation_of(act).ok_or(unsupported("an unknown activation"))?
                    }
                    _ => Activation::Identity,
                };
                let src = self.resolve(parents[0], depth + 1)?;
                self.dense(src, k, n, weight, false, Some(bias), activation)?
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
                        (self.param(w, &[n, k], depth)?, false)
                    }
                    _ if trans_b => (self.param(parents[1], &[n, k], depth)?, false),
                    _ => (self.param(parents[1], &[k, n], depth)?, true),
                };
                let src = self.resolve(parents[0], depth + 1)?;
                self.dense(src, k, n, weight, transposed, None, Activation::Identity)?
            }
            Op::Zip(Zip::Add) => {
                let last = dims.as_slice().last().copied().unwrap_or(0);
                let bias = match (
                    self.bias_of(parents[1], last)?,
                    self.bias_of(parents[0], last)?,
                ) {
                    (Some(b), _) => Some((b, parents[0])),
                    (None, Some(b)) => Some((b, parents[1])),
                    (None, None) => None,
                };
                if let Some((bias, other)) = bias {
                    if !owned(self.model, bias) {
                        return Err(ExportError::ForeignParameter);
                    }
                    // A bias: the other side must be a product without one,
                    // through no more than the view broadcasting records.
                    let mut at = other;
                    loop {
                        let (_, d, .., o) = g.node(at)?;
                        if o == Op::Reshape && g.node(g.parents(at)?[0])?.1 == d {
                            at = g.parents(at)?[0];
                        } else {
                            break;
                        }
                    }
                    let not_product = unsupported_bias(depth);
                    let (.., o) = g.node(at)?;
                    if !matches!(o, Op::MatMul { .. }) || !self.foldable(other) {
                        return Err(not_product);
                    }
                    let k = self.resolve(other, depth)?;
                    match self.nodes.get_mut(k) {
                        Some(PlannedNode {
                            params: Some(p), ..
                        }) if p.bias.is_none() && p.norm.is_none() => p.bias = Some(bias),
                        _ => return Err(not_product),
                    }
                    k
                } else {
                    // A residual connection: two paths of the same size.
                    let a = self.resolve(parents[0], depth)?;
                    let b = self.resolve(parents[1], depth)?;
                    let shape = self.nodes[a].header.out_shape;
                    if numel(shape) != numel(self.nodes[b].header.out_shape)
                        || numel(shape) != numel(out_shape)
                    {
                        return Err(unsupported("an addition of tensors of different sizes"));
                    }
                    self.push(NodeOp::Add, [a, b], shape, shape, Geometry::default(), None)?
                }
            }
            Op::BatchNorm { dims: bn, stats } => {
                if stats.training {
                    return Err(unsupported(
                        "a batch norm in training mode normalises by the batch: export the model in eval() mode",
                    ));
                }
                let n = bn.len;
                let weight = self.param(parents[1], &[n], depth)?;
                let bias = self.param(parents[2], &[n], depth)?;
                let not_after = ExportError::Unsupported {
                    op: "NativeBatchNormBackward",
                    from_output: depth,
                    why: "a batch norm is exported folded into a Linear layer or a convolution directly before it",
                };
                if !self.foldable(parents[0]) {
                    return Err(not_after);
                }
                let k = self.resolve(parents[0], depth)?;
                let node = &mut self.nodes[k];
                let h = node.header;
                let fits = match h.op {
                    NodeOp::Dense => bn.inner == 1 && h.out_shape[0] == n,
                    NodeOp::Conv => {
                        h.out_shape[0] == n && bn.inner == h.out_shape[1] * h.out_shape[2]
                    }
                    _ => false,
                };
                if h.op == NodeOp::Dense && bn.inner != 1 {
                    return Err(unsupported(
                        "a batch norm over spatial positions ([N, C, L] input) after a Linear layer: its channels are not the layer's outputs",
                    ));
                }
                match &mut node.params {
                    Some(p) if fits && p.norm.is_none() && h.activation == Activation::Identity => {
                        p.norm = Some(FoldedNorm {
                            weight,
                            bias,
                            running_mean: stats.running_mean,
                            running_var: stats.running_var,
                            eps: stats.eps,
                        });
                    }
                    _ => return Err(not_after),
                }
                k
            }
            Op::Map(m) => {
                let a =
                    activation_of(m).ok_or(unsupported("not an activation the format stores"))?;
                let foldable = self.foldable(parents[0]);
                let k = self.resolve(parents[0], depth)?;
                if k == 0 {
                    return Err(unsupported("an activation before the first dense layer"));
                }
                let h = &mut self.nodes[k].header;
                if h.activation != Activation::Identity {
                    return Err(unsupported("a second activation after a dense layer"));
                }
                if !foldable {
                    return Err(unsupported(
                        "an activation of a value that is also read without it",
                    ));
                }
                h.activation = a;
                k
            }
            Op::Layer(Composite::Conv {
                input,
                unfold,
                weight,
                bias,
                act,
            }) => {
                let (.., uop) = g.node(unfold)?;
                let Op::Window { window: w, .. } = uop else {
                    return Err(unsupported("a convolution without its window"));
                };
                let geometry = geometry(&w);
                let o = out_shape[0];
                let per = w.channels / geometry.groups * w.kernel[0] * w.kernel[1];
                let weight = self.param_through_views(weight, o * per, depth)?;
                let bias = match bias {
                    NONE => None,
                    b => Some(self.param_through_views(b, o, depth)?),
                };
                let activation = match act {
                    Some(m) => activation_of(m).ok_or(unsupported("an unknown activation"))?,
                    None => Activation::Identity,
                };
                let in_shape = [w.channels, w.input[0], w.input[1]];
                let src = self.resolve(input, depth + 1)?;
                self.check_len(src, numel(in_shape), depth)?;
                let params = PlannedLayer {
                    in_features: per,
                    out_features: o,
                    weight,
                    transposed: false,
                    bias,
                    activation,
                    norm: None,
                };
                let k = self.push(
                    NodeOp::Conv,
                    [src, 0],
                    in_shape,
                    out_shape,
                    geometry,
                    Some(params),
                )?;
                self.nodes[k].header.activation = activation;
                k
            }
            Op::Layer(Composite::AvgPool { input, unfold }) => {
                let (.., uop) = g.node(unfold)?;
                let Op::Window { window: w, .. } = uop else {
                    return Err(unsupported("a pooling without its window"));
                };
                let c = out_shape[0];
                let in_shape = [c, w.input[0], w.input[1]];
                let src = self.resolve(input, depth + 1)?;
                self.check_len(src, numel(in_shape), depth)?;
                self.push(
                    NodeOp::AvgPool,
                    [src, 0],
                    in_shape,
                    out_shape,
                    geometry(&w),
                    None,
                )?
            }
            Op::Layer(Composite::GlobalAvgPool { input }) => {
                let (_, in_dims, ..) = g.node(input)?;
                let in_shape = sample_shape(in_dims.as_slice());
                let src = self.resolve(input, depth + 1)?;
                self.check_len(src, numel(in_shape), depth)?;
                let out = [in_shape[0], 1, 1];
                self.push(
                    NodeOp::GlobalAvgPool,
                    [src, 0],
                    in_shape,
                    out,
                    Geometry::default(),
                    None,
                )?
            }
            Op::Window {
                kernel: WindowKernel::MaxPool,
                window: w,
            } => {
                let in_shape = [w.channels, w.input[0], w.input[1]];
                let src = self.resolve(parents[0], depth + 1)?;
                self.check_len(src, numel(in_shape), depth)?;
                self.push(
                    NodeOp::MaxPool,
                    [src, 0],
                    in_shape,
                    out_shape,
                    geometry(&w),
                    None,
                )?
            }
            Op::Window { .. } => {
                return Err(unsupported(
                    "an unfold (im2col) that is not part of a convolution or a pooling",
                ))
            }
            _ => return Err(unsupported("not a layer the format stores")),
        };
        self.memo
            .push((id, made))
            .map_err(|_| ExportError::TooManyLayers)?;
        Ok(made)
    }

    /// Whether an op on tape node `id` may be folded into the layer that
    /// computes it: nothing else reads it, or any view between.
    fn foldable(&self, mut id: u32) -> bool {
        loop {
            if self.uses.get(id as usize).copied().unwrap_or(u16::MAX) != 1 {
                return false;
            }
            match self.g.node(id) {
                Ok((.., Op::Reshape)) => match self.g.parents(id) {
                    Ok(p) => id = p[0],
                    Err(_) => return false,
                },
                Ok(_) => return !self.memo.iter().any(|(t, _)| *t == id),
                Err(_) => return false,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dense(
        &mut self,
        src: usize,
        k: usize,
        n: usize,
        weight: Span,
        transposed: bool,
        bias: Option<Span>,
        activation: Activation,
    ) -> Result<usize, ExportError> {
        if numel(self.nodes[src].header.out_shape) != k {
            return Err(FormatError::BadShape {
                layer: self.nodes.len(),
            }
            .into());
        }
        let params = PlannedLayer {
            in_features: k,
            out_features: n,
            weight,
            transposed,
            bias,
            activation,
            norm: None,
        };
        let i = self.push(
            NodeOp::Dense,
            [src, 0],
            [k, 1, 1],
            [n, 1, 1],
            Geometry::default(),
            Some(params),
        )?;
        self.nodes[i].header.activation = activation;
        Ok(i)
    }

    fn check_len(&self, src: usize, len: usize, depth: usize) -> Result<(), ExportError> {
        if numel(self.nodes[src].header.out_shape) == len {
            Ok(())
        } else {
            Err(ExportError::Unsupported {
                op: "ViewBackward",
                from_output: depth,
                why: "a layer's input has another size than the layer before gives",
            })
        }
    }

    fn push(
        &mut self,
        op: NodeOp,
        inputs: [usize; 2],
        in_shape: [usize; 3],
        out_shape: [usize; 3],
        geometry: Geometry,
        params: Option<PlannedLayer>,
    ) -> Result<usize, ExportError> {
        let node = PlannedNode {
            header: NodeHeader {
                op,
                inputs,
                in_shape,
                out_shape,
                geometry,
                activation: Activation::Identity,
                arena: 0,
                out_scale: 0.0,
                out_zero: 0,
            },
            params,
        };
        self.nodes
            .push(node)
            .map_err(|_| ExportError::TooManyLayers)?;
        Ok(self.nodes.len() - 1)
    }

    /// A broadcast parameter of `[n]` added to the path, if `id` is one.
    fn bias_of(&self, id: u32, n: usize) -> Result<Option<Span>, ExportError> {
        let (.., o) = self.g.node(id)?;
        if !matches!(o, Op::Expand { .. } | Op::Reshape) {
            return Ok(None);
        }
        let p = self.g.parents(id)?[0];
        if p == NONE {
            return Ok(None);
        }
        let (v, d, _, _, po) = self.g.node(p)?;
        Ok((po == Op::Param && d.as_slice() == [n]).then_some(v))
    }

    /// The value of parameter node `id`, which must be one of the model's, of `dims`.
    fn param(&self, id: u32, dims: &[usize], depth: usize) -> Result<Span, ExportError> {
        let (value, d, _, _, op) = self.g.node(id)?;
        if op != Op::Param {
            return Err(ExportError::Unsupported {
                op: op.name().unwrap_or("a tensor made inside the forward pass"),
                from_output: depth,
                why: "a layer's weight or bias must be a parameter of the model",
            });
        }
        if d.as_slice() != dims || !owned(self.model, value) {
            return Err(ExportError::ForeignParameter);
        }
        Ok(value)
    }

    /// The value of a parameter of `len` floats seen through views (a
    /// 1-D convolution's weight is reshaped to 2-D).
    fn param_through_views(
        &self,
        mut id: u32,
        len: usize,
        depth: usize,
    ) -> Result<Span, ExportError> {
        while let (.., Op::Reshape) = self.g.node(id)? {
            id = self.g.parents(id)?[0];
        }
        let (_, d, ..) = self.g.node(id)?;
        let dims: heapless::Vec<usize, 8> = d.as_slice().iter().copied().collect();
        if dims.iter().product::<usize>() != len {
            return Err(ExportError::ForeignParameter);
        }
        self.param(id, &dims, depth)
    }
}

fn unsupported_bias(depth: usize) -> ExportError {
    ExportError::Unsupported {
        op: "AddBackward",
        from_output: depth,
        why: "a parameter added to something that is not a matrix product",
    }
}

/// Whether `span` is the value of one of `model`'s parameters.
pub(crate) fn owned<M: Module + ?Sized>(model: &M, span: Span) -> bool {
    let mut found = false;
    model.named_parameters(&mut |p| found |= p.param.value == span);
    found
}
