//! Pooling, as PyTorch's `F.max_pool2d`, `F.avg_pool2d` (with its default
//! `count_include_pad=True`), their 1-D forms and global average pooling
//! (`F.adaptive_avg_pool2d(x, 1)`). Max pooling is its own node
//! ([`Tensor::max_pool`]); average pooling is the mean of each window's
//! columns ([`Tensor::unfold`] over every plane as its own sample, a sum
//! and a scale), so its gradient needs nothing new.

use crate::backend::{Backend, Padding, Window};
use crate::error::Error;
use crate::graph::Composite;
use crate::shape::{Dim, Shape};
use crate::tensor::{invalid, Tensor};

/// A pooling window: PyTorch's `kernel_size`, `stride` (default: the
/// kernel), `padding` and `dilation`, `[height, width]` per axis (a 1-D
/// pooling uses the width entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PoolOptions {
    /// Window size.
    pub kernel: [usize; 2],
    /// Step between windows; `None` is the kernel, as in PyTorch.
    pub stride: Option<[usize; 2]>,
    /// Padding: ignored by max pooling, zeros counted by average pooling.
    /// PyTorch allows at most half the (dilated) window per side.
    pub padding: Padding,
    /// Spacing between window taps (max pooling only, as in PyTorch).
    pub dilation: [usize; 2],
}

impl PoolOptions {
    /// A `kernel` window with stride `kernel`, no padding, no dilation
    /// (PyTorch's `MaxPool2d(kernel)`).
    pub const fn new(kernel: [usize; 2]) -> Self {
        PoolOptions {
            kernel,
            stride: None,
            padding: Padding::Valid,
            dilation: [1, 1],
        }
    }

    /// The same window with another stride.
    pub const fn stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = Some(stride);
        self
    }

    /// The same window with padding.
    pub const fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// The 1-D window over the width: kernel, stride, dilation and padding
    /// of the width, a height of 1.
    pub fn along_width(self) -> PoolOptions {
        let k = self.kernel[1];
        let padding = self.padding.along_width();
        PoolOptions {
            kernel: [1, k],
            stride: Some([1, self.stride.map_or(k, |s| s[1])]),
            padding,
            dilation: [1, self.dilation[1]],
        }
    }

    /// The window over `[batch, channels, input]`, with PyTorch's check
    /// that no side is padded by more than half the dilated window.
    fn window(&self, batch: usize, channels: usize, input: [usize; 2]) -> crate::Result<Window> {
        let stride = self.stride.unwrap_or(self.kernel);
        let (before, after) = self
            .padding
            .resolve(input, self.kernel, stride, self.dilation);
        for a in 0..2 {
            compact_loop!();
            let span = self.kernel[a].saturating_sub(1) * self.dilation[a] + 1;
            if before[a].max(after[a]) > span / 2 {
                return Err(Error::InvalidArgument {
                    what: "pool: padding should be at most half of the effective kernel size",
                });
            }
        }
        Window::new(
            batch,
            channels,
            input,
            self.kernel,
            stride,
            self.dilation,
            before,
            after,
        )
    }
}

impl<'t, N: Dim, C: Dim, H: Dim, W: Dim, B: Backend> Tensor<'t, (N, C, H, W), B> {
    /// Max pooling (PyTorch's `F.max_pool2d`): `[batch, channels, out_h,
    /// out_w]`; the gradient goes to the first maximum of each window.
    pub fn max_pool2d(self, options: PoolOptions) -> Tensor<'t, (N, C, usize, usize), B> {
        let [n, c, h, w] = self.shape.dims();
        match options.window(n, c, [h, w]) {
            Ok(window) => self.max_pool(window),
            Err(e) => invalid(self.tape, (self.shape.0, self.shape.1, 0, 0), e),
        }
    }

    /// Average pooling (PyTorch's `F.avg_pool2d`, counting the padding's
    /// zeros): `[batch, channels, out_h, out_w]`. Dilation is not one of
    /// its arguments in PyTorch and must be 1 here.
    pub fn avg_pool2d(self, options: PoolOptions) -> Tensor<'t, (N, C, usize, usize), B> {
        let [n, c, h, w] = self.shape.dims();
        let fail = |t: &Self, e| invalid(t.tape, (t.shape.0, t.shape.1, 0, 0), e);
        if options.dilation != [1, 1] {
            let what = "avg_pool: dilation must be 1";
            return fail(&self, Error::InvalidArgument { what });
        }
        // Every plane its own sample of one channel: the rows are
        // `[planes · positions, taps]`, and the mean of each is the pool.
        let window = match options.window(n * c, 1, [h, w]) {
            Ok(window) => window,
            Err(e) => return fail(&self, e),
        };
        let [oh, ow] = window.output;
        let taps = window.taps();
        let input = self.id;
        let rows = self.reshape_to((n * c, 1usize, h, w)).unfold(window);
        let unfold = rows.id;
        rows.sum_axis::<1>()
            .mul_scalar(1.0 / taps as f32)
            .mark_layer(
                (self.shape.0, self.shape.1, oh, ow),
                Composite::AvgPool { input, unfold },
            )
    }

    /// Global average pooling (PyTorch's `F.adaptive_avg_pool2d(x, 1)`,
    /// flattened): the mean of each channel, `[batch, channels]`.
    pub fn global_avg_pool2d(self) -> Tensor<'t, (N, C), B> {
        let [_, _, h, w] = self.shape.dims();
        let input = self.id;
        let mean = self
            .reshape_to((self.shape.0, self.shape.1, h * w))
            .mean_axis::<2>();
        mean.mark_layer(mean.shape, Composite::GlobalAvgPool { input })
    }
}

impl<'t, N: Dim, C: Dim, L: Dim, B: Backend> Tensor<'t, (N, C, L), B> {
    /// 1-D max pooling (PyTorch's `F.max_pool1d`), `options` read along the
    /// width ([`PoolOptions::along_width`]).
    pub fn max_pool1d(self, options: PoolOptions) -> Tensor<'t, (N, C, usize), B> {
        let (n, c, l) = self.shape;
        let y = self
            .reshape_to((n, c, 1usize, l.size()))
            .max_pool2d(options.along_width());
        let out = y.shape.3;
        y.reshape_to((n, c, out))
    }

    /// 1-D average pooling (PyTorch's `F.avg_pool1d`), `options` read
    /// along the width.
    pub fn avg_pool1d(self, options: PoolOptions) -> Tensor<'t, (N, C, usize), B> {
        let (n, c, l) = self.shape;
        let y = self
            .reshape_to((n, c, 1usize, l.size()))
            .avg_pool2d(options.along_width());
        let out = y.shape.3;
        y.reshape_to((n, c, out))
    }

    /// Global average pooling over the length (PyTorch's
    /// `F.adaptive_avg_pool1d(x, 1)`, flattened): `[batch, channels]`.
    pub fn global_avg_pool1d(self) -> Tensor<'t, (N, C), B> {
        self.mean_axis::<2>()
    }
}
