//! Sliding windows over `[batch, channels, height, width]` tensors: the
//! geometry that convolution and pooling share ([`Window`]), the one
//! backend kernel that runs over them ([`Backend::window`]) and its portable
//! reference loops.
//!
//! A one-dimensional window (`Conv1d`, `MaxPool1d`) is a two-dimensional
//! one of height 1. Every kernel of the family is a [`WindowKernel`]: adding
//! one is a variant, its operand lengths ([`WindowCall::lens`]) and its loop
//! here, and nothing else (the backends, the checked host layer and the
//! conformance suite take every variant through one method).
//!
//! The layouts, with `L = out_h · out_w` output positions per plane and
//! `g` channel groups of `cg = channels / g` channels:
//! - input `x`: `[batch, channels, in_h, in_w]`;
//! - rows (im2row over the whole batch): `[g, batch · L, cg · k_h · k_w]`:
//!   one row per group and output position `n · L + oh · out_w + ow`, its
//!   column `(c · k_h + i) · k_w + j` the tap `(i, j)` of the group's
//!   channel `c`. With one group this is PyTorch's `F.unfold` transposed
//!   with the batch in the rows, so that a convolution is a fully connected
//!   layer over the rows (`rows · Wᵀ + b`, bias and activation fused), and
//!   per group a batched product;
//! - pooled output: `[batch, channels, out_h, out_w]`.

use super::{Acc, Backend, Blocks, Span};
use crate::error::{Error, Result};

/// The geometry of a sliding window: input planes, kernel, stride,
/// dilation and zero padding, and the output size they give. Built by
/// [`Window::new`], which checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Window {
    /// Samples.
    pub batch: usize,
    /// Channels per sample.
    pub channels: usize,
    /// Input `[height, width]`.
    pub input: [usize; 2],
    /// Kernel `[height, width]`.
    pub kernel: [usize; 2],
    /// Stride `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// Dilation `[vertical, horizontal]`.
    pub dilation: [usize; 2],
    /// Zero padding before the input: `[top, left]`. The padding after it
    /// (bottom, right) is whatever [`output`](Self::output) leaves.
    pub pad: [usize; 2],
    /// Output `[height, width]`.
    pub output: [usize; 2],
    /// Channel groups of the unfolded rows (1 unless set by
    /// [`grouped`](Window::grouped)).
    pub groups: usize,
}

const BAD_WINDOW: Error = Error::InvalidArgument {
    what: "window: kernel, stride and dilation must be at least 1, and the padded input at least the dilated kernel",
};
const TOO_LARGE: Error = Error::InvalidArgument {
    what: "window: sizes overflow",
};

impl Window {
    /// The window of `kernel` over `[batch, channels, input]` with `stride`,
    /// `dilation` and zero padding `pad_before` (top, left) and `pad_after`
    /// (bottom, right): the output is PyTorch's
    /// `⌊(in + before + after − dilation · (kernel − 1) − 1) / stride⌋ + 1`
    /// per axis. An [`Error::InvalidArgument`] when a kernel, stride or
    /// dilation is 0, the dilated kernel is larger than the padded input, or
    /// a size overflows.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        channels: usize,
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
        pad_before: [usize; 2],
        pad_after: [usize; 2],
    ) -> Result<Window> {
        let mut output = [0; 2];
        for a in 0..2 {
            if kernel[a] == 0 || stride[a] == 0 || dilation[a] == 0 {
                return Err(BAD_WINDOW);
            }
            let span = (kernel[a] - 1)
                .checked_mul(dilation[a])
                .and_then(|s| s.checked_add(1))
                .ok_or(TOO_LARGE)?;
            let padded = input[a]
                .checked_add(pad_before[a])
                .and_then(|p| p.checked_add(pad_after[a]))
                .ok_or(TOO_LARGE)?;
            if padded < span {
                return Err(BAD_WINDOW);
            }
            output[a] = (padded - span) / stride[a] + 1;
        }
        let w = Window {
            batch,
            channels,
            input,
            kernel,
            stride,
            dilation,
            pad: pad_before,
            output,
            groups: 1,
        };
        w.unfolded_len()?;
        w.input_len()?;
        Ok(w)
    }

    /// The same window with its channels unfolded in `groups` groups (a
    /// grouped or depthwise convolution). An [`Error::InvalidArgument`]
    /// when `groups` is 0 or does not divide the channels.
    pub fn grouped(mut self, groups: usize) -> Result<Window> {
        if groups == 0 || !self.channels.is_multiple_of(groups) {
            return Err(Error::InvalidArgument {
                what: "window: the groups must divide the channels",
            });
        }
        self.groups = groups;
        Ok(self)
    }

    /// [`Window::new`] with the padding given as a [`Padding`].
    pub fn padded(
        batch: usize,
        channels: usize,
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
        padding: Padding,
    ) -> Result<Window> {
        let (before, after) = padding.resolve(input, kernel, stride, dilation);
        Window::new(
            batch, channels, input, kernel, stride, dilation, before, after,
        )
    }

    /// Output positions per plane (`out_h · out_w`).
    pub const fn positions(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// Taps of the kernel (`k_h · k_w`).
    pub const fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Floats of the input, `batch · channels · in_h · in_w`.
    pub fn input_len(&self) -> Result<usize> {
        mul(&[self.batch, self.channels, self.input[0], self.input[1]])
    }

    /// Floats of a pooled output, `batch · channels · out_h · out_w`.
    pub fn pooled_len(&self) -> Result<usize> {
        mul(&[self.batch, self.channels, self.output[0], self.output[1]])
    }

    /// Floats of the unfolded rows, `channels · k_h · k_w · batch · out_h · out_w`.
    pub fn unfolded_len(&self) -> Result<usize> {
        mul(&[
            self.channels,
            self.kernel[0],
            self.kernel[1],
            self.batch,
            self.output[0],
            self.output[1],
        ])
    }

    /// The input index along axis `a` that output `o` reads at tap `k`, or
    /// `None` where it falls in the padding.
    #[inline]
    fn source(&self, a: usize, o: usize, k: usize) -> Option<usize> {
        (o * self.stride[a] + k * self.dilation[a])
            .checked_sub(self.pad[a])
            .filter(|&i| i < self.input[a])
    }

    /// The outputs `ow` of one row whose tap `j` falls inside the input:
    /// a range, and the input column that its first reads.
    fn valid_columns(&self, j: usize) -> (usize, usize, usize) {
        let (s, off, len) = (self.stride[1], j * self.dilation[1], self.input[1]);
        // ow · s + off − pad ∈ [0, len)
        let lo = self.pad[1].saturating_sub(off).div_ceil(s);
        let hi = if len + self.pad[1] > off {
            ((len - 1 + self.pad[1] - off) / s + 1).min(self.output[1])
        } else {
            0
        };
        let lo = lo.min(hi);
        (lo, hi, (lo * s + off).saturating_sub(self.pad[1]))
    }

    /// Calls `run(x_offset, x_stride, rows_offset, rows_stride, count)` for
    /// every run of an output row that reads the input: `count` floats of
    /// the rows, every `rows_stride`-th from `rows_offset`, read every
    /// `x_stride`-th input float from `x_offset` (offsets from the start of
    /// each tensor). Floats of the rows that no run names read the padding.
    /// The one walk of the geometry that the kernels share.
    fn runs(
        &self,
        mut run: impl FnMut(usize, usize, usize, usize, usize) -> Result<()>,
    ) -> Result<()> {
        let [ih, iw] = self.input;
        let [kh, kw] = self.kernel;
        let (l, ow) = (self.positions(), self.output[1]);
        let nl = self.batch * l;
        let cg = self.channels / self.groups.max(1);
        let width = cg * kh * kw;
        // One sample at a time, so that the rows it writes stay in cache
        // (the columns of a whole batch's rows do not). Each float of the
        // input still takes its runs in the same order: (tap, row, column).
        for n in 0..self.batch {
            for c in 0..self.channels {
                let (g, cl) = (c / cg.max(1), c % cg.max(1));
                let plane = (n * self.channels + c) * ih * iw;
                for i in 0..kh {
                    for j in 0..kw {
                        let column = (cl * kh + i) * kw + j;
                        let (lo, hi, x0) = self.valid_columns(j);
                        if lo == hi {
                            continue;
                        }
                        for oh in 0..self.output[0] {
                            if let Some(y) = self.source(0, oh, i) {
                                let row = g * nl + n * l + oh * ow + lo;
                                run(
                                    plane + y * iw + x0,
                                    self.stride[1],
                                    row * width + column,
                                    width,
                                    hi - lo,
                                )?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The flat index, inside its plane, of the maximum of the window of
    /// output `(oh, ow)`, and the maximum, reading the plane through
    /// `read(index)`, as PyTorch's CPU max pooling finds it: the first
    /// strictly greater value wins and a NaN always wins (so the last NaN).
    /// `None` for a window wholly in padding. The one statement of the tie
    /// rule, for the forward and the backward.
    #[inline]
    fn window_max(
        &self,
        oh: usize,
        ow: usize,
        mut read: impl FnMut(usize) -> Result<f32>,
    ) -> Result<Option<(usize, f32)>> {
        let mut best: Option<(usize, f32)> = None;
        let (rows, cols) = (self.taps_inside(0, oh), self.taps_inside(1, ow));
        for i in rows {
            let y = oh * self.stride[0] + i * self.dilation[0] - self.pad[0];
            for j in cols.clone() {
                let x = ow * self.stride[1] + j * self.dilation[1] - self.pad[1];
                let at = y * self.input[1] + x;
                let v = read(at)?;
                match best {
                    Some((_, m)) if !wins(v, m) => {}
                    _ => best = Some((at, v)),
                }
            }
        }
        Ok(best)
    }

    /// Whether every window lies wholly inside the input (no padding is
    /// read): then [`run`]'s pooling takes its direct loop.
    fn inside(&self) -> bool {
        self.pad == [0, 0]
            && (0..2).all(|a| {
                self.output[a] == 0
                    || (self.output[a] - 1) * self.stride[a]
                        + (self.kernel[a] - 1) * self.dilation[a]
                        < self.input[a]
            })
    }

    /// [`window_max`](Self::window_max) where every window lies inside the
    /// input ([`inside`](Self::inside)), over one plane `x`: the same taps
    /// in the same order and the same tie rule, without a closure, a
    /// `Result` or a padding test per tap. Calls `each(output index, index
    /// of the maximum, maximum)` for every output of the plane.
    #[inline]
    fn plane_max(&self, x: &[f32], mut each: impl FnMut(usize, usize, f32)) {
        let ([oh, ow], iw) = (self.output, self.input[1]);
        let ([kh, kw], [sh, sw], [dh, dw]) = (self.kernel, self.stride, self.dilation);
        for r in 0..oh {
            for c in 0..ow {
                let base = r * sh * iw + c * sw;
                let (mut at, mut m) = (base, x[base]);
                for i in 0..kh {
                    let row = base + i * dh * iw;
                    for j in 0..kw {
                        let k = row + j * dw;
                        let v = x[k];
                        // The first tap starts the maximum (taking its own
                        // place again changes nothing, NaN or not).
                        let win = wins(v, m);
                        at = if win { k } else { at };
                        m = if win { v } else { m };
                    }
                }
                each(r * ow + c, at, m);
            }
        }
    }

    /// The taps `k` along axis `a` whose input `o · stride + k · dilation −
    /// pad` output `o` reads inside the input: a range, worked out once per
    /// output rather than tested per tap.
    #[inline]
    fn taps_inside(&self, a: usize, o: usize) -> core::ops::Range<usize> {
        let (start, d, p) = (o * self.stride[a], self.dilation[a], self.pad[a]);
        let (lo, hi) = (
            p.saturating_sub(start),
            (self.input[a] + p).saturating_sub(start),
        );
        // Without dilation (the usual case) no division.
        let (lo, hi) = if d == 1 {
            (lo, hi)
        } else {
            (lo.div_ceil(d), hi.div_ceil(d))
        };
        let hi = hi.min(self.kernel[a]);
        lo.min(hi)..hi
    }

    /// Runs `each(plane, output index, window max)` over every output of
    /// a pooling, reading plane `p` through `read(p, index)`.
    fn pool(
        &self,
        mut read: impl FnMut(usize, usize) -> Result<f32>,
        mut each: impl FnMut(usize, usize, Option<(usize, f32)>) -> Result<()>,
    ) -> Result<()> {
        let [oh, ow] = self.output;
        for p in 0..self.batch * self.channels {
            for r in 0..oh {
                for c in 0..ow {
                    let best = self.window_max(r, c, |at| read(p, at))?;
                    each(p, (p * oh + r) * ow + c, best)?;
                }
            }
        }
        Ok(())
    }
}

/// Zero padding of a convolution or a pooling window, per spatial axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Padding {
    /// None (PyTorch's `padding=0` or `'valid'`).
    #[default]
    Valid,
    /// `[height, width]` zeros on both sides of each axis (PyTorch's
    /// `padding=(h, w)`).
    Symmetric([usize; 2]),
    /// The output is `⌈in / stride⌉` (TensorFlow's and TFLite's `SAME`):
    /// the padding the dilated kernel needs, half before and the odd one
    /// after, so at stride 2 one more row and column at the bottom and
    /// right. At stride 1 this is PyTorch's `padding='same'`.
    Same,
    /// Zeros `[top, bottom, left, right]` (PyTorch's `ZeroPad2d((left,
    /// right, top, bottom))` takes them in another order).
    Explicit {
        /// Rows above.
        top: usize,
        /// Rows below.
        bottom: usize,
        /// Columns on the left.
        left: usize,
        /// Columns on the right.
        right: usize,
    },
}

impl Padding {
    /// The padding of a 1-D window over the width: the width's entries,
    /// none along the height.
    pub const fn along_width(self) -> Padding {
        match self {
            Padding::Symmetric([_, w]) => Padding::Symmetric([0, w]),
            Padding::Explicit { left, right, .. } => Padding::Explicit {
                top: 0,
                bottom: 0,
                left,
                right,
            },
            p => p,
        }
    }

    /// The zeros `(before, after)` per axis for `kernel` over `input` with
    /// `stride` and `dilation`.
    pub fn resolve(
        self,
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> ([usize; 2], [usize; 2]) {
        match self {
            Padding::Valid => ([0; 2], [0; 2]),
            Padding::Symmetric(p) => (p, p),
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => ([top, left], [bottom, right]),
            Padding::Same => {
                let (mut before, mut after) = ([0; 2], [0; 2]);
                for a in 0..2 {
                    let s = stride[a].max(1);
                    let out = input[a].div_ceil(s);
                    let span = kernel[a].saturating_sub(1).saturating_mul(dilation[a]) + 1;
                    let need = (out.saturating_sub(1))
                        .saturating_mul(s)
                        .saturating_add(span)
                        .saturating_sub(input[a]);
                    before[a] = need / 2;
                    after[a] = need - need / 2;
                }
                (before, after)
            }
        }
    }
}

/// Max pooling's tie rule, PyTorch's on the CPU: a tap's value `v` takes
/// the place of the maximum `m` so far when strictly greater or NaN (so
/// the first of equal maxima wins, and the last NaN).
#[inline(always)]
fn wins(v: f32, m: f32) -> bool {
    v > m || v.is_nan()
}

fn mul(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or(TOO_LARGE)
}

/// The kernels over a [`Window`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WindowKernel {
    /// im2row: `out = rows(x)` (overwrites; padding reads 0). Operands:
    /// `x` the input, `out` the rows.
    Unfold,
    /// row2im, the adjoint of `Unfold`: `out += fold(x)`, every float of
    /// the rows added back where it was read. Operands: `x` the rows (a
    /// gradient), `out` the input's gradient.
    Fold,
    /// Max pooling: `out` the maximum of each window of `x` per plane
    /// (overwrites; padding never wins).
    MaxPool,
    /// Max pooling's backward: `out[argmax] += dy` for each window, the
    /// argmax as [`MaxPool`](Self::MaxPool) finds it (one position, even
    /// among ties, as in PyTorch). Operands: `x` the input, `dy` the
    /// output's gradient, `out` the input's gradient.
    MaxPoolBackward,
}

impl WindowKernel {
    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            WindowKernel::Unfold => "unfold",
            WindowKernel::Fold => "fold",
            WindowKernel::MaxPool => "max_pool",
            WindowKernel::MaxPoolBackward => "max_pool_backward",
        }
    }
}

/// One call of a [`WindowKernel`]: the kernel, its geometry and operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WindowCall {
    /// Which kernel.
    pub kernel: WindowKernel,
    /// The geometry.
    pub window: Window,
    /// The first input.
    pub x: Span,
    /// The output's gradient (`MaxPoolBackward`; empty otherwise).
    pub dy: Span,
    /// The output.
    pub out: Span,
}

impl WindowCall {
    /// The lengths `[x, dy]` and `out` must have.
    pub fn lens(&self) -> Result<([usize; 2], usize)> {
        let w = &self.window;
        Ok(match self.kernel {
            WindowKernel::Unfold => ([w.input_len()?, 0], w.unfolded_len()?),
            WindowKernel::Fold => ([w.unfolded_len()?, 0], w.input_len()?),
            WindowKernel::MaxPool => ([w.input_len()?, 0], w.pooled_len()?),
            WindowKernel::MaxPoolBackward => ([w.input_len()?, w.pooled_len()?], w.input_len()?),
        })
    }

    /// Floats per sample of `[x, dy, out]`, where the call on a batch is
    /// the same call on each sample's slices in turn (each operand holds
    /// its samples one after another): so for every kernel but the
    /// unfolding of several channel groups, whose rows are group-major.
    /// A backend splits the batch with it ([`with_batch`](Self::with_batch)
    /// gives the call on a run of samples).
    pub fn per_sample(&self) -> Option<[usize; 3]> {
        let w = &self.window;
        let grouped = w.groups > 1;
        if grouped && matches!(self.kernel, WindowKernel::Unfold | WindowKernel::Fold) {
            return None;
        }
        let one = WindowCall {
            window: Window { batch: 1, ..*w },
            ..*self
        };
        let ([x, dy], out) = one.lens().ok()?;
        Some([x, dy, out])
    }

    /// The same call on `batch` samples (its spans are left as they are:
    /// a host backend runs it on slices of its own).
    pub fn with_batch(&self, batch: usize) -> WindowCall {
        WindowCall {
            window: Window {
                batch,
                ..self.window
            },
            ..*self
        }
    }

    /// Checks the operand lengths (not where they lie: see
    /// [`check::split`](super::check::split)).
    pub fn check(&self) -> Result<()> {
        let ([x, dy], out) = self.lens()?;
        if self.x.len == x && self.dy.len == dy && self.out.len == out {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                what: "window kernel: an operand's length does not fit the window",
            })
        }
    }
}

/// The portable reference: runs `call` on checked slices (`x`, `dy`, `out`
/// with the lengths of [`WindowCall::lens`]).
pub fn run(call: &WindowCall, x: &[f32], dy: &[f32], out: &mut [f32]) {
    let w = &call.window;
    match call.kernel {
        WindowKernel::Unfold => {
            out.fill(0.0);
            let _ = w.runs(|xo, xs, ro, rs, n| {
                let rows = out[ro..].iter_mut().step_by(rs);
                for (r, v) in rows.zip(x[xo..].iter().step_by(xs)).take(n) {
                    *r = *v;
                }
                Ok(())
            });
        }
        WindowKernel::Fold => {
            let _ = w.runs(|xo, xs, ro, rs, n| {
                let input = out[xo..].iter_mut().step_by(xs);
                for (d, r) in input.zip(x[ro..].iter().step_by(rs)).take(n) {
                    *d += *r;
                }
                Ok(())
            });
        }
        WindowKernel::MaxPool | WindowKernel::MaxPoolBackward => {
            let plane = w.input[0] * w.input[1];
            let max = call.kernel == WindowKernel::MaxPool;
            if w.inside() && plane > 0 {
                // The common case (no padding read): a direct loop per plane.
                let pooled = w.positions();
                for p in 0..w.batch * w.channels {
                    let xp = &x[p * plane..][..plane];
                    if max {
                        let op = &mut out[p * pooled..][..pooled];
                        w.plane_max(xp, |o, _, m| op[o] = m);
                    } else {
                        let (op, dyp) =
                            (&mut out[p * plane..][..plane], &dy[p * pooled..][..pooled]);
                        w.plane_max(xp, |o, at, _| op[at] += dyp[o]);
                    }
                }
                return;
            }
            pool_general(call, x, dy, out);
        }
    }
}

/// [`run`]'s pooling for any window (padding, partial windows), through
/// [`Window::window_max`].
fn pool_general(call: &WindowCall, x: &[f32], dy: &[f32], out: &mut [f32]) {
    let w = &call.window;
    let plane = w.input[0] * w.input[1];
    let max = call.kernel == WindowKernel::MaxPool;
    let _ = w.pool(
        |p, at| Ok(x[p * plane + at]),
        |p, o, best| {
            if max {
                out[o] = best.map_or(f32::NEG_INFINITY, |(_, v)| v);
            } else if let Some((at, _)) = best {
                out[p * plane + at] += dy[o];
            }
            Ok(())
        },
    );
}

/// The default body of [`Backend::window`], composed from the primitives:
/// `Unfold` and `Fold` as one strided [`Backend::copy`] per run of outputs
/// (after a [`Backend::fill`] for `Unfold`); the pooling kernels through
/// [`Backend::download`] and [`Backend::upload`] of one plane's row of
/// windows at a time, on the stack. Correct on any backend, and slow on a
/// device: a GPU backend overrides it.
pub fn composed<B: Backend + ?Sized>(be: &B, buf: &mut B::Buffer, call: &WindowCall) -> Result<()> {
    call.check()?;
    super::check::disjoint(be.buffer_len(buf), &[call.x, call.dy], &[call.out])?;
    let w = &call.window;
    match call.kernel {
        WindowKernel::Unfold | WindowKernel::Fold => {
            let unfold = call.kernel == WindowKernel::Unfold;
            if unfold {
                be.fill(buf, call.out, 0.0)?;
            }
            w.runs(|xo, xs, ro, rs, n| {
                let input = Span::new(call_offset(call, true, xo), (n - 1) * xs + 1);
                let rows = Span::new(call_offset(call, false, ro), (n - 1) * rs + 1);
                let (src, dst, src_stride, dst_stride) = if unfold {
                    (input, rows, xs, rs)
                } else {
                    (rows, input, rs, xs)
                };
                be.copy(
                    buf,
                    &Blocks {
                        src,
                        src_stride,
                        dst,
                        dst_stride,
                        blocks: n,
                        block_len: 1,
                        acc: if unfold { Acc::Set } else { Acc::Add },
                    },
                )
            })
        }
        WindowKernel::MaxPool | WindowKernel::MaxPoolBackward => pool_staged(be, buf, call),
    }
}

/// The buffer offset of a run's start: in the input (`input`) or in the
/// rows, whichever operand of `call` holds it.
fn call_offset(call: &WindowCall, input: bool, at: usize) -> usize {
    let unfold = call.kernel == WindowKernel::Unfold;
    // Unfold reads the input (x) and writes the rows (out); Fold reads
    // the rows (x) and writes the input's gradient (out).
    if input == unfold {
        call.x.offset + at
    } else {
        call.out.offset + at
    }
}

/// The pooling kernels through download/upload, one float at a time.
fn pool_staged<B: Backend + ?Sized>(be: &B, buf: &mut B::Buffer, call: &WindowCall) -> Result<()> {
    let w = &call.window;
    let plane = w.input[0] * w.input[1];
    let max = call.kernel == WindowKernel::MaxPool;
    let get = |buf: &B::Buffer, s: Span| -> Result<f32> {
        let mut v = [0.0];
        be.download(buf, s, &mut v)?;
        Ok(v[0])
    };
    // Not `Window::pool`: its reads borrow the buffer that its writes need.
    let [oh, ow] = w.output;
    for p in 0..w.batch * w.channels {
        for r in 0..oh {
            for c in 0..ow {
                let o = (p * oh + r) * ow + c;
                let found = w.window_max(r, c, |at| get(buf, call.x.sub(p * plane + at, 1)))?;
                if max {
                    let v = found.map_or(f32::NEG_INFINITY, |(_, v)| v);
                    be.upload(buf, call.out.sub(o, 1), &[v])?;
                } else if let Some((at, _)) = found {
                    let g = get(buf, call.dy.sub(o, 1))?;
                    let dst = call.out.sub(p * plane + at, 1);
                    let d = get(buf, dst)?;
                    be.upload(buf, dst, &[d + g])?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    /// Small integers (many ties), now and then a NaN or an infinity.
    fn values(state: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                match *state % 23 {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    2 => -0.0,
                    r => (r % 4) as f32 - 1.0,
                }
            })
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    /// Windows of every small geometry, with padding after (partial
    /// windows) and without.
    fn windows() -> Vec<Window> {
        let mut all = Vec::new();
        for (ih, iw) in [(1, 1), (2, 3), (4, 4), (5, 7), (7, 6)] {
            for (kh, kw) in [(1, 1), (2, 2), (3, 2), (1, 3), (3, 3)] {
                for s in [1, 2, 3] {
                    for d in [1, 2] {
                        for (before, after) in [(0, 0), (0, 1), (1, 1)] {
                            if let Ok(w) = Window::new(
                                2,
                                3,
                                [ih, iw],
                                [kh, kw],
                                [s, s.max(2) - 1],
                                [d, 1],
                                [before; 2],
                                [after; 2],
                            ) {
                                all.push(w);
                            }
                        }
                    }
                }
            }
        }
        all
    }

    /// The direct pooling loop against the general one, bit for bit,
    /// forward and backward, on inputs with ties and NaNs.
    #[test]
    fn pooling_inside_matches_general() {
        let (mut state, mut inside) = (0x9e37_79b9_7f4a_7c15u64, 0);
        for w in windows() {
            inside += usize::from(w.inside());
            let (xn, on) = (w.input_len().unwrap(), w.pooled_len().unwrap());
            let (x, dy, base) = (
                values(&mut state, xn),
                values(&mut state, on),
                values(&mut state, xn),
            );
            for kernel in [WindowKernel::MaxPool, WindowKernel::MaxPoolBackward] {
                let backward = kernel == WindowKernel::MaxPoolBackward;
                let call = WindowCall {
                    kernel,
                    window: w,
                    x: Span::new(0, xn),
                    dy: Span::new(0, if backward { on } else { 0 }),
                    out: Span::new(0, if backward { xn } else { on }),
                };
                let dy = if backward { &dy[..] } else { &[][..] };
                let start = if backward {
                    base.clone()
                } else {
                    vec![7.0; on]
                };
                let (mut fast, mut general) = (start.clone(), start);
                run(&call, &x, dy, &mut fast);
                pool_general(&call, &x, dy, &mut general);
                assert_eq!(bits(&fast), bits(&general), "{kernel:?} {w:?}");
            }
        }
        assert!(inside > 50, "only {inside} windows inside");
    }

    /// Unfold and Fold against their definition, tap by tap, summing in
    /// the order (tap, row, column) of each input float: bit for bit.
    #[test]
    fn unfold_fold_match_definition() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for w in windows() {
            for groups in [1, 3] {
                let w = w.grouped(groups).unwrap();
                let (xn, rn) = (w.input_len().unwrap(), w.unfolded_len().unwrap());
                let (x, rows, base) = (
                    values(&mut state, xn),
                    values(&mut state, rn),
                    values(&mut state, xn),
                );
                let ([ih, iw], [kh, kw], [oh, ow]) = (w.input, w.kernel, w.output);
                let cg = w.channels / groups;
                let width = cg * kh * kw;
                let (mut unfolded, mut folded) = (vec![0.0; rn], base.clone());
                for c in 0..w.channels {
                    let (g, cl) = (c / cg, c % cg);
                    for i in 0..kh {
                        for j in 0..kw {
                            for n in 0..w.batch {
                                for r in 0..oh {
                                    for q in 0..ow {
                                        let row = g * w.batch * oh * ow + (n * oh + r) * ow + q;
                                        let at = row * width + (cl * kh + i) * kw + j;
                                        if let (Some(y), Some(xx)) =
                                            (w.source(0, r, i), w.source(1, q, j))
                                        {
                                            let src = ((n * w.channels + c) * ih + y) * iw + xx;
                                            unfolded[at] = x[src];
                                            folded[src] += rows[at];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                let call = |kernel, xn, on| WindowCall {
                    kernel,
                    window: w,
                    x: Span::new(0, xn),
                    dy: Span::new(0, 0),
                    out: Span::new(0, on),
                };
                let mut out = vec![5.0; rn];
                run(&call(WindowKernel::Unfold, xn, rn), &x, &[], &mut out);
                assert_eq!(bits(&out), bits(&unfolded), "unfold {w:?}");
                let mut out = base.clone();
                run(&call(WindowKernel::Fold, rn, xn), &rows, &[], &mut out);
                assert_eq!(bits(&out), bits(&folded), "fold {w:?}");
            }
        }
    }
}
