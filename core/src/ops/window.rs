//! The sliding-window nodes that convolution and pooling are built from,
//! forward and backward side by side: im2row ([`Tensor::unfold`], whose
//! backward adds the rows back into the image), max pooling ([`Tensor::max_pool`], whose backward
//! routes each output's gradient to its window's maximum), and the swap of
//! the two leading axes that takes a grouped convolution's `[groups, batch,
//! …]` product to `[batch, groups, …]` ([`Tensor::swap_axes01`]).

use crate::backend::{Acc, Backend, Blocks, Span, Window, WindowCall, WindowKernel};
use crate::error::{Error, Result};
use crate::graph::{Input, Op};
use crate::shape::{Dim, Shape};
use crate::tensor::{invalid, Tensor};

impl<'t, N: Dim, C: Dim, H: Dim, W: Dim, B: Backend> Tensor<'t, (N, C, H, W), B> {
    /// The rows of `window` over this `[batch, channels, h, w]` tensor
    /// (im2row): `[groups · batch · out_h · out_w, channels/groups · k_h ·
    /// k_w]`, one row per group and output position, zero where a tap reads
    /// the padding (see [`backend::window`](crate::backend::window)). With
    /// one group, PyTorch's `F.unfold(x).transpose(1, 2)` with the batch in
    /// the rows. The window must have been built for this tensor's shape.
    pub fn unfold(self, window: Window) -> Tensor<'t, (usize, usize), B> {
        let g = window.groups.max(1);
        let rows = g * window.batch * window.positions();
        let width = window.channels / g * window.taps();
        self.window_node(window, WindowKernel::Unfold, (rows, width), "unfold")
    }

    /// The maximum of each window per channel: `[batch, channels, out_h,
    /// out_w]` (PyTorch's `F.max_pool2d`: padding never wins, a NaN does,
    /// and the gradient goes to one position per window, the first
    /// maximum).
    pub fn max_pool(self, window: Window) -> Tensor<'t, (N, C, usize, usize), B> {
        let [oh, ow] = window.output;
        let out = (self.shape.0, self.shape.1, oh, ow);
        self.window_node(window, WindowKernel::MaxPool, out, "max_pool")
    }

    /// Records a window node after checking that `window` fits this tensor.
    fn window_node<S2: Shape>(
        self,
        window: Window,
        kernel: WindowKernel,
        out: S2,
        name: &'static str,
    ) -> Tensor<'t, S2, B> {
        let d = self.dims().dims;
        if [window.batch, window.channels] != [d[0], d[1]] || window.input != [d[2], d[3]] {
            let mut expected = self.dims();
            expected.dims = [
                window.batch,
                window.channels,
                window.input[0],
                window.input[1],
            ];
            return invalid(
                self.tape,
                out,
                Error::Shape {
                    op: name,
                    expected,
                    found: self.dims(),
                },
            );
        }
        self.unary_op(
            Op::Window { kernel, window },
            out,
            window_backward::<B>,
            move |be, buf, y, ins| {
                be.window(
                    buf,
                    &WindowCall {
                        kernel,
                        window,
                        x: ins[0],
                        dy: Span::default(),
                        out: y,
                    },
                )
            },
        )
    }
}

fn window_backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::Window { kernel, window } = *op else {
        return Ok(());
    };
    let Some(Input {
        value: x,
        grad: Some(dx),
    }) = inputs[0]
    else {
        return Ok(());
    };
    let call = match kernel {
        WindowKernel::Unfold => WindowCall {
            kernel: WindowKernel::Fold,
            window,
            x: dy,
            dy: Span::default(),
            out: dx,
        },
        _ => WindowCall {
            kernel: WindowKernel::MaxPoolBackward,
            window,
            x,
            dy,
            out: dx,
        },
    };
    be.window(buf, &call)
}

impl<'t, A: Dim, D: Dim, I: Dim, B: Backend> Tensor<'t, (A, D, I), B> {
    /// `[a, b, inner]` to `[b, a, inner]` (PyTorch's `x.transpose(0, 1)`,
    /// made contiguous): a copy of `a` strided blocks.
    pub fn swap_axes01(self) -> Tensor<'t, (D, A, I), B> {
        let (a, b, inner) = (
            self.shape.0.size(),
            self.shape.1.size(),
            self.shape.2.size(),
        );
        let out = (self.shape.1, self.shape.0, self.shape.2);
        self.unary_op(
            Op::SwapAxes { a, b, inner },
            out,
            swap_backward::<B>,
            move |be, buf, y, ins| swap(be, buf, (a, b, inner), ins[0], y, Acc::Set),
        )
    }
}

/// `y[j, i, :] (+)= x[i, j, :]` for `x` of `[a, b, inner]`.
fn swap<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    (a, b, inner): (usize, usize, usize),
    x: Span,
    y: Span,
    acc: Acc,
) -> Result<()> {
    for i in 0..a {
        compact_loop!();
        let len = b * inner;
        let extent = if b == 0 {
            0
        } else {
            (b - 1) * a * inner + inner
        };
        be.copy(
            buf,
            &Blocks {
                src: x.sub(i * len, len),
                src_stride: inner,
                dst: y.sub(i * inner, extent),
                dst_stride: a * inner,
                blocks: b,
                block_len: inner,
                acc,
            },
        )?;
    }
    Ok(())
}

fn swap_backward<B: Backend>(
    be: &B,
    buf: &mut B::Buffer,
    op: &Op,
    _: Span,
    dy: Span,
    inputs: [Option<Input>; 3],
) -> Result<()> {
    let Op::SwapAxes { a, b, inner } = *op else {
        return Ok(());
    };
    if let Some(Input { grad: Some(dx), .. }) = inputs[0] {
        // The output is `[b, a, inner]`: swapping it back is the gradient.
        swap(be, buf, (b, a, inner), dy, dx, Acc::Add)?;
    }
    Ok(())
}
