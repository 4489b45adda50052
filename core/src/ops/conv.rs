//! Convolutions: PyTorch's `F.conv2d` and `F.conv1d` (stride, zero
//! padding, dilation, groups), composed from nodes whose backward passes
//! already exist, so that a convolution's gradient is the chain rule over
//! them and nothing new:
//!
//! 1. [`unfold`](Tensor::unfold) (im2row) of the input: one row per output
//!    position of the whole batch, `[batch · L, in · k_h · k_w]`;
//! 2. with one group, a fully connected layer over those rows
//!    ([`linear`](Tensor::linear): `rows · Wᵀ + b`, the bias, and with
//!    [`conv2d_act`](Tensor::conv2d_act) the activation, fused into the
//!    product's epilogue), `[batch, L, out]`, and the transpose of its last
//!    two axes to `[batch, out, L]`;
//! 3. with `g` groups, one product per group ([`bmm`](Tensor::bmm) of the
//!    rows `[g, batch · L, in/g · k_h · k_w]` by the weight transposed),
//!    then the axes moved to `[batch, out, L]` and the bias added.
//!
//! One product over the whole batch is what a GEMM backend runs fastest;
//! the rows cost `in · k_h · k_w · batch · L` floats of graph memory, which
//! the memory planners count like any other node.

use crate::backend::{Backend, Map, Padding, Window};
use crate::error::Error;
use crate::graph::Composite;
use crate::shape::{Dim, Dims, Shape};
use crate::tensor::{invalid, Tensor};

/// A convolution's hyper-parameters beyond its weight's shape: PyTorch's
/// `stride`, `padding`, `dilation` and `groups`, `[height, width]` per axis
/// (a 1-D convolution uses the width entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConvOptions {
    /// Step between windows, `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// Zero padding.
    pub padding: Padding,
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels are split into `groups`
    /// blocks convolved separately (`groups = in_channels` is a depthwise
    /// convolution).
    pub groups: usize,
}

impl Default for ConvOptions {
    /// PyTorch's defaults: stride 1, no padding, dilation 1, one group.
    fn default() -> Self {
        ConvOptions {
            stride: [1, 1],
            padding: Padding::Valid,
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl ConvOptions {
    /// The options of a 1-D convolution (or pooling) over the width:
    /// `stride`, `dilation` and the padding's width entries, with the height
    /// left alone (stride and dilation 1, no padding).
    pub fn along_width(self) -> ConvOptions {
        let padding = self.padding.along_width();
        ConvOptions {
            stride: [1, self.stride[1]],
            padding,
            dilation: [1, self.dilation[1]],
            groups: self.groups,
        }
    }
}

const GROUPS: &str =
    "conv: the weight must be [out, in/groups, k_h, k_w], with in and out divisible by groups";

impl<'t, N: Dim, C: Dim, H: Dim, W: Dim, B: Backend> Tensor<'t, (N, C, H, W), B> {
    /// A 2-D convolution of this `[batch, in, h, w]` input with `weight`
    /// `[out, in/groups, k_h, k_w]` and an optional `bias` `[out]`, as
    /// PyTorch's `F.conv2d(x, weight, bias, stride, padding, dilation,
    /// groups)`: `[batch, out, out_h, out_w]`. A weight that does not fit
    /// the input or the groups, or a kernel larger than the padded input,
    /// is an error recorded on the graph.
    pub fn conv2d<O: Dim, CG: Dim, KH: Dim, KW: Dim>(
        self,
        weight: Tensor<'t, (O, CG, KH, KW), B>,
        bias: Option<Tensor<'t, (O,), B>>,
        options: ConvOptions,
    ) -> Tensor<'t, (N, O, usize, usize), B> {
        self.conv2d_act(weight, bias, options, None)
    }

    /// `f(conv2d(x, weight, bias))`: with one group, the bias and an
    /// activation that [`Map::fuses`] are applied in the product's epilogue
    /// (one node, no pre-activation copy); otherwise the convolution, then
    /// the activation. `None` is no activation.
    pub fn conv2d_act<O: Dim, CG: Dim, KH: Dim, KW: Dim>(
        self,
        weight: Tensor<'t, (O, CG, KH, KW), B>,
        bias: Option<Tensor<'t, (O,), B>>,
        options: ConvOptions,
        f: Option<Map>,
    ) -> Tensor<'t, (N, O, usize, usize), B> {
        let [n, c, h, w] = self.shape.dims();
        let [o, cg, kh, kw] = weight.shape.dims();
        let g = options.groups;
        let shape_of = |oh, ow| (self.shape.0, weight.shape.0, oh, ow);
        if g == 0 || cg.checked_mul(g) != Some(c) || o % g != 0 {
            let found = weight.dims();
            return invalid(
                self.tape,
                shape_of(0, 0),
                Error::Shape {
                    op: GROUPS,
                    expected: Dims {
                        dims: [o, c / g.max(1), kh, kw],
                        rank: 4,
                    },
                    found,
                },
            );
        }
        let window = Window::padded(
            n,
            c,
            [h, w],
            [kh, kw],
            options.stride,
            options.dilation,
            options.padding,
        )
        .and_then(|w| w.grouped(g));
        let window = match window {
            Ok(window) => window,
            Err(e) => return invalid(self.tape, shape_of(0, 0), e),
        };
        let [oh, ow] = window.output;
        let (l, ck) = (window.positions(), cg * kh * kw);
        let input = self.id;
        let (weight_id, bias_id) = (weight.id, bias.map_or(crate::graph::NONE, |b| b.id));
        let rows = self.unfold(window);
        let unfold = rows.id;
        let out_dim = weight.shape.0;
        let y = if g == 1 {
            // `[batch · L, out]`: a fully connected layer over the rows.
            let wt = weight.reshape_to((out_dim, ck));
            let y = match (bias, f) {
                (Some(b), None) => rows.linear(wt, b),
                (Some(b), Some(f)) => rows.linear_act(wt, b, f),
                (None, None) => rows.matmul_t(wt),
                (None, Some(f)) => rows.matmul_t(wt).map(f),
            };
            y.reshape_to((n, l, out_dim)).t()
        } else {
            // `[g, batch · L, out/g]`, then `[batch, g, out/g · L]`.
            let y = rows
                .reshape_to((g, n * l, ck))
                .bmm_t(weight.reshape_to((g, o / g, ck)))
                .reshape_to((g * n, l, o / g))
                .t()
                .reshape_to((g, n, o / g * l))
                .swap_axes01()
                .reshape_to((n, out_dim, l));
            let y = match bias {
                Some(b) => y + b.broadcast_axis::<1, _>((out_dim, l)),
                None => y,
            };
            match f {
                Some(f) => y.map(f),
                None => y,
            }
        };
        let layer = Composite::Conv {
            input,
            unfold,
            weight: weight_id,
            bias: bias_id,
            act: f,
        };
        y.mark_layer(shape_of(oh, ow), layer)
    }
}

impl<'t, N: Dim, C: Dim, L: Dim, B: Backend> Tensor<'t, (N, C, L), B> {
    /// A 1-D convolution of this `[batch, in, length]` input with `weight`
    /// `[out, in/groups, k]` and an optional `bias` `[out]`, as PyTorch's
    /// `F.conv1d`: `[batch, out, out_length]`. `options` is read along the
    /// width ([`ConvOptions::along_width`]).
    pub fn conv1d<O: Dim, CG: Dim, K: Dim>(
        self,
        weight: Tensor<'t, (O, CG, K), B>,
        bias: Option<Tensor<'t, (O,), B>>,
        options: ConvOptions,
    ) -> Tensor<'t, (N, O, usize), B> {
        let (n, c, l) = self.shape;
        let (o, cg, k) = weight.shape;
        let y = self.reshape_to((n, c, 1usize, l.size())).conv2d(
            weight.reshape_to((o, cg, 1usize, k.size())),
            bias,
            options.along_width(),
        );
        let out = y.shape.3;
        y.reshape_to((n, o, out))
    }
}
