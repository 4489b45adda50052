//! The checked layer of the host backends: [`HostKernels`] are kernels on
//! slices of host memory whose operands were already checked, and
//! [`host_backend!`](crate::host_backend) makes such a type a [`Backend`]
//! through the functions of [`checked`], which make the checks
//! ([`check`](super::check)) and split the buffer. The portable
//! [`Cpu`](super::Cpu) is `HostKernels` with every default; the multi-threaded backend of `ember-nn-std` overrides the kernels
//! it runs in parallel. A backend whose memory is not host memory (a GPU)
//! implements [`Backend`] itself and calls the same checks.

use super::check::{
    blocks_extent, check_axis, check_cross_entropy, check_gemm, check_max_backward, check_rows,
    check_softmax, check_transpose, check_update, same_len, split, OUT_OF_BOUNDS,
};
#[cfg(doc)]
use super::Backend;
use super::{
    kernels, window, Acc, AxisDims, Blocks, Gemm, Map, MapFn, Reduce, Span, Update, WindowCall, Zip,
};
use crate::error::Result;

/// Kernels on checked slices of one host buffer: inputs `&[f32]`, outputs
/// `&mut [f32]` that overlap nothing else, with the lengths that the
/// matching [`Backend`] method documents. The defaults are the portable
/// scalar kernels of [`kernels`], the reference for every backend; a faster
/// host backend overrides the ones it speeds up.
///
/// The methods share [`Backend`]'s names: with both traits in scope, call
/// the checked ones as `Backend::map(&be, …)`. Code that runs models needs
/// only [`Backend`].
///
/// ```
/// use ember_nn_core::backend::HostKernels;
/// use ember_nn_core::prelude::*;
///
/// /// The portable kernels, under another name.
/// struct Mine;
/// impl HostKernels for Mine {}
/// ember_nn_core::host_backend!(Mine);
///
/// let mut buf = [0.0f32; 64];
/// let mut mem = Memory::new(&Mine, &mut buf[..]);
/// let g = Graph::new(&mut mem);
/// let y = (g.tensor([1.0f32, -2.0]).relu() * 3.0).sum();
/// assert_eq!(y.item()?, 3.0);
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
pub trait HostKernels {
    /// [`Backend::fill`].
    #[inline]
    fn fill(&self, dst: &mut [f32], value: f32) {
        dst.fill(value);
    }
    /// [`Backend::copy`]: `src` and `dst` start at the first block of each
    /// and end at the end of the last.
    #[inline]
    fn copy(&self, src: &[f32], dst: &mut [f32], b: &Blocks) {
        kernels::copy_blocks(
            src,
            b.src_stride,
            dst,
            b.dst_stride,
            b.blocks,
            b.block_len,
            b.acc,
        );
    }
    /// [`Backend::map`].
    #[inline]
    fn map(&self, f: Map, x: &[f32], y: &mut [f32]) {
        kernels::map(f, x, y);
    }
    /// [`Backend::map_backward`].
    #[inline]
    fn map_backward(&self, f: Map, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        kernels::map_backward(f, x, y, dy, dx);
    }
    /// [`Backend::bias_act`].
    #[inline]
    fn bias_act(&self, f: Map, bias: &[f32], y: &mut [f32]) {
        kernels::bias_act(f, bias, y);
    }
    /// [`Backend::act_backward`].
    #[inline]
    fn act_backward(&self, f: Map, y: &[f32], dy: &mut [f32]) {
        kernels::act_backward(f, y, dy);
    }
    /// [`Backend::map_fn`]. The default runs [`map`](Self::map) on
    /// `f.map()`; the portable [`Cpu`](super::Cpu) runs the function's own
    /// loop.
    #[inline]
    fn map_fn<F: MapFn>(&self, f: F, x: &[f32], y: &mut [f32])
    where
        Self: Sized,
    {
        self.map(f.map(), x, y);
    }
    /// [`Backend::map_backward_fn`] (defaults as [`map_fn`](Self::map_fn)).
    #[inline]
    fn map_backward_fn<F: MapFn>(&self, f: F, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32])
    where
        Self: Sized,
    {
        self.map_backward(f.map(), x, y, dy, dx);
    }
    /// [`Backend::bias_act_fn`] (defaults as [`map_fn`](Self::map_fn)).
    #[inline]
    fn bias_act_fn<F: MapFn>(&self, f: F, bias: &[f32], y: &mut [f32])
    where
        Self: Sized,
    {
        self.bias_act(f.map(), bias, y);
    }
    /// [`Backend::act_backward_fn`] (defaults as [`map_fn`](Self::map_fn)).
    #[inline]
    fn act_backward_fn<F: MapFn>(&self, f: F, y: &[f32], dy: &mut [f32])
    where
        Self: Sized,
    {
        self.act_backward(f.map(), y, dy);
    }
    /// [`Backend::zip`].
    #[inline]
    fn zip(&self, f: Zip, a: &[f32], b: &[f32], y: &mut [f32]) {
        kernels::zip(f, a, b, y);
    }
    /// [`Backend::zip_backward`].
    #[inline]
    fn zip_backward(&self, f: Zip, rhs: bool, a: &[f32], b: &[f32], dy: &[f32], d: &mut [f32]) {
        kernels::zip_backward(f, rhs, a, b, dy, d);
    }
    /// [`Backend::gemm`]: `a`, `b` and `c` hold at least `batch` products'
    /// operands (`g`'s spans are where they came from).
    #[inline]
    fn gemm(&self, batch: usize, g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (sa, sb, sc) = (g.m * g.k, g.k * g.n, g.m * g.n);
        for i in 0..batch {
            kernels::gemm(
                g.m,
                g.n,
                g.k,
                &a[i * sa..][..sa],
                g.trans_a,
                &b[i * sb..][..sb],
                g.trans_b,
                &mut c[i * sc..][..sc],
                g.acc,
            );
        }
    }
    /// [`Backend::reduce`].
    #[inline]
    fn reduce(&self, op: Reduce, x: &[f32], y: &mut [f32], d: AxisDims, acc: Acc) {
        kernels::reduce(op, x, y, d, acc);
    }
    /// [`Backend::expand`].
    #[inline]
    fn expand(&self, x: &[f32], y: &mut [f32], d: AxisDims, acc: Acc) {
        kernels::expand(x, y, d, acc);
    }
    /// [`Backend::max_backward`].
    #[inline]
    fn max_backward(&self, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32], d: AxisDims) {
        kernels::max_backward(x, y, dy, dx, d);
    }
    /// [`Backend::softmax`].
    #[inline]
    fn softmax(&self, x: &[f32], y: &mut [f32], d: AxisDims, log: bool) {
        kernels::softmax(x, y, d, log);
    }
    /// [`Backend::softmax_backward`].
    #[inline]
    fn softmax_backward(&self, y: &[f32], dy: &[f32], dx: &mut [f32], d: AxisDims, log: bool) {
        kernels::softmax_backward(y, dy, dx, d, log);
    }
    /// [`Backend::cross_entropy`].
    #[inline]
    fn cross_entropy(&self, x: &[f32], t: &[f32], loss: &mut [f32], classes: usize) {
        kernels::cross_entropy(x, t, loss, classes);
    }
    /// [`Backend::cross_entropy_backward`].
    #[inline]
    fn cross_entropy_backward(
        &self,
        x: &[f32],
        t: &[f32],
        dloss: &[f32],
        dx: &mut [f32],
        classes: usize,
    ) {
        kernels::cross_entropy_backward(x, t, dloss, dx, classes);
    }
    /// [`Backend::transpose`].
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn transpose(
        &self,
        x: &[f32],
        y: &mut [f32],
        batch: usize,
        rows: usize,
        cols: usize,
        acc: Acc,
    ) {
        kernels::transpose(x, y, batch, rows, cols, acc);
    }
    /// [`Backend::window`]: `x`, `dy` and `out` have the lengths of
    /// [`WindowCall::lens`].
    #[inline]
    fn window(&self, call: &WindowCall, x: &[f32], dy: &[f32], out: &mut [f32]) {
        window::run(call, x, dy, out);
    }
    /// [`Backend::update`]: `planes` are the rule's state planes, each the
    /// parameter's length (the unused ones empty).
    #[inline]
    fn update(&self, rule: &Update, param: &mut [f32], grad: &[f32], planes: [&mut [f32]; 3]) {
        kernels::update(rule, param, grad, planes);
    }
}

/// Implements [`Backend`] over a `[f32]` for a [`HostKernels`] type: each
/// method checks its operands through [`checked`] and hands the kernels
/// their slices. `host_backend!(MyBackend);` next to the type, in its own
/// crate, so that the checked functions are compiled there once (a blanket
/// impl would instantiate them in every crate that trains, which cost the
/// Cortex-M0 firmware 4.6 KB of flash it does not have).
#[macro_export]
macro_rules! host_backend {
    ($backend:ty) => {
        impl $crate::backend::Backend for $backend {
            type Buffer = [f32];

            fn buffer_len(&self, buf: &[f32]) -> usize {
                buf.len()
            }

            fn host_mut<'b>(&self, buf: &'b mut [f32]) -> Option<&'b mut [f32]> {
                Some(buf)
            }

            fn upload(
                &self,
                buf: &mut [f32],
                dst: $crate::backend::Span,
                src: &[f32],
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::upload(self, buf, dst, src)
            }

            fn download(
                &self,
                buf: &[f32],
                src: $crate::backend::Span,
                dst: &mut [f32],
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::download(self, buf, src, dst)
            }

            fn fill(
                &self,
                buf: &mut [f32],
                dst: $crate::backend::Span,
                value: f32,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::fill(self, buf, dst, value)
            }

            fn copy(&self, buf: &mut [f32], b: &$crate::backend::Blocks) -> $crate::Result<()> {
                $crate::backend::host::checked::copy(self, buf, b)
            }

            fn map(
                &self,
                buf: &mut [f32],
                f: $crate::backend::Map,
                x: $crate::backend::Span,
                y: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::map(self, buf, f, x, y)
            }

            fn map_backward(
                &self,
                buf: &mut [f32],
                f: $crate::backend::Map,
                x: $crate::backend::Span,
                y: $crate::backend::Span,
                dy: $crate::backend::Span,
                dx: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::map_backward(self, buf, f, x, y, dy, dx)
            }

            fn bias_act(
                &self,
                buf: &mut [f32],
                f: $crate::backend::Map,
                bias: $crate::backend::Span,
                y: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::bias_act(self, buf, f, bias, y)
            }

            fn act_backward(
                &self,
                buf: &mut [f32],
                f: $crate::backend::Map,
                y: $crate::backend::Span,
                dy: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::act_backward(self, buf, f, y, dy)
            }

            fn map_fn<F: $crate::backend::MapFn>(
                &self,
                buf: &mut [f32],
                f: F,
                x: $crate::backend::Span,
                y: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::map_fn(self, buf, f, x, y)
            }

            fn map_backward_fn<F: $crate::backend::MapFn>(
                &self,
                buf: &mut [f32],
                f: F,
                x: $crate::backend::Span,
                y: $crate::backend::Span,
                dy: $crate::backend::Span,
                dx: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::map_backward_fn(self, buf, f, x, y, dy, dx)
            }

            fn bias_act_fn<F: $crate::backend::MapFn>(
                &self,
                buf: &mut [f32],
                f: F,
                bias: $crate::backend::Span,
                y: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::bias_act_fn(self, buf, f, bias, y)
            }

            fn act_backward_fn<F: $crate::backend::MapFn>(
                &self,
                buf: &mut [f32],
                f: F,
                y: $crate::backend::Span,
                dy: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::act_backward_fn(self, buf, f, y, dy)
            }

            fn zip(
                &self,
                buf: &mut [f32],
                f: $crate::backend::Zip,
                a: $crate::backend::Span,
                b: $crate::backend::Span,
                y: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::zip(self, buf, f, a, b, y)
            }

            fn zip_backward(
                &self,
                buf: &mut [f32],
                f: $crate::backend::Zip,
                rhs: bool,
                a: $crate::backend::Span,
                b: $crate::backend::Span,
                dy: $crate::backend::Span,
                d: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::zip_backward(self, buf, f, rhs, a, b, dy, d)
            }

            fn gemm(
                &self,
                buf: &mut [f32],
                batch: usize,
                g: &$crate::backend::Gemm,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::gemm(self, buf, batch, g)
            }

            fn reduce(
                &self,
                buf: &mut [f32],
                op: $crate::backend::Reduce,
                x: $crate::backend::Span,
                y: $crate::backend::Span,
                d: $crate::backend::AxisDims,
                acc: $crate::backend::Acc,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::reduce(self, buf, op, x, y, d, acc)
            }

            fn expand(
                &self,
                buf: &mut [f32],
                x: $crate::backend::Span,
                y: $crate::backend::Span,
                d: $crate::backend::AxisDims,
                acc: $crate::backend::Acc,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::expand(self, buf, x, y, d, acc)
            }

            fn max_backward(
                &self,
                buf: &mut [f32],
                x: $crate::backend::Span,
                y: $crate::backend::Span,
                dy: $crate::backend::Span,
                dx: $crate::backend::Span,
                d: $crate::backend::AxisDims,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::max_backward(self, buf, x, y, dy, dx, d)
            }

            fn softmax(
                &self,
                buf: &mut [f32],
                x: $crate::backend::Span,
                y: $crate::backend::Span,
                d: $crate::backend::AxisDims,
                log: bool,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::softmax(self, buf, x, y, d, log)
            }

            fn softmax_backward(
                &self,
                buf: &mut [f32],
                y: $crate::backend::Span,
                dy: $crate::backend::Span,
                dx: $crate::backend::Span,
                d: $crate::backend::AxisDims,
                log: bool,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::softmax_backward(self, buf, y, dy, dx, d, log)
            }

            fn cross_entropy(
                &self,
                buf: &mut [f32],
                x: $crate::backend::Span,
                targets: $crate::backend::Span,
                loss: $crate::backend::Span,
                classes: usize,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::cross_entropy(self, buf, x, targets, loss, classes)
            }

            fn cross_entropy_backward(
                &self,
                buf: &mut [f32],
                x: $crate::backend::Span,
                targets: $crate::backend::Span,
                dloss: $crate::backend::Span,
                dx: $crate::backend::Span,
                classes: usize,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::cross_entropy_backward(
                    self, buf, x, targets, dloss, dx, classes,
                )
            }

            fn transpose(
                &self,
                buf: &mut [f32],
                x: $crate::backend::Span,
                y: $crate::backend::Span,
                batch: usize,
                rows: usize,
                cols: usize,
                acc: $crate::backend::Acc,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::transpose(self, buf, x, y, batch, rows, cols, acc)
            }

            fn window(
                &self,
                buf: &mut [f32],
                call: &$crate::backend::WindowCall,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::window(self, buf, call)
            }

            fn update(
                &self,
                buf: &mut [f32],
                rule: &$crate::backend::Update,
                param: $crate::backend::Span,
                grad: $crate::backend::Span,
                state: $crate::backend::Span,
            ) -> $crate::Result<()> {
                $crate::backend::host::checked::update(self, buf, rule, param, grad, state)
            }
        }
    };
}

/// The checked layer: one function per kernel, which checks the operands
/// (overflow-checked), splits the buffer and runs the backend's kernel on
/// the slices. [`host_backend!`](crate::host_backend) calls them.
pub mod checked {
    use super::*;

    /// [`Backend::upload`], checked.
    #[inline]
    pub fn upload<K: HostKernels + ?Sized>(
        _: &K,
        buf: &mut [f32],
        dst: Span,
        src: &[f32],
    ) -> Result<()> {
        same_len(&[dst, Span::new(0, src.len())])?;
        let ([], [d]) = split(buf, [], [dst])?;
        d.copy_from_slice(src);
        Ok(())
    }

    /// [`Backend::download`], checked.
    #[inline]
    pub fn download<K: HostKernels + ?Sized>(
        _: &K,
        buf: &[f32],
        src: Span,
        dst: &mut [f32],
    ) -> Result<()> {
        same_len(&[src, Span::new(0, dst.len())])?;
        let end = src.offset.checked_add(src.len).ok_or(OUT_OF_BOUNDS)?;
        let s = buf.get(src.offset..end).ok_or(OUT_OF_BOUNDS)?;
        dst.copy_from_slice(s);
        Ok(())
    }

    /// [`Backend::fill`], checked.
    #[inline]
    pub fn fill<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        dst: Span,
        value: f32,
    ) -> Result<()> {
        let ([], [d]) = split(buf, [], [dst])?;
        k.fill(d, value);
        Ok(())
    }

    /// [`Backend::copy`], checked.
    #[inline]
    pub fn copy<K: HostKernels + ?Sized>(k: &K, buf: &mut [f32], b: &Blocks) -> Result<()> {
        let src = blocks_extent(b.src, b.src_stride, b.blocks, b.block_len)?;
        let dst = blocks_extent(b.dst, b.dst_stride, b.blocks, b.block_len)?;
        let ([s], [d]) = split(buf, [src], [dst])?;
        k.copy(s, d, b);
        Ok(())
    }

    /// [`Backend::map`], checked.
    #[inline]
    pub fn map<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        f: Map,
        x: Span,
        y: Span,
    ) -> Result<()> {
        same_len(&[x, y])?;
        let ([x], [y]) = split(buf, [x], [y])?;
        k.map(f, x, y);
        Ok(())
    }

    /// [`Backend::map_backward`], checked.
    #[inline]
    pub fn map_backward<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        f: Map,
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
    ) -> Result<()> {
        same_len(&[x, y, dy, dx])?;
        let ([x, y, dy], [dx]) = split(buf, [x, y, dy], [dx])?;
        k.map_backward(f, x, y, dy, dx);
        Ok(())
    }

    /// [`Backend::bias_act`], checked.
    #[inline]
    pub fn bias_act<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        f: Map,
        bias: Span,
        y: Span,
    ) -> Result<()> {
        check_rows(y, bias.len)?;
        let ([bias], [y]) = split(buf, [bias], [y])?;
        k.bias_act(f, bias, y);
        Ok(())
    }

    /// [`Backend::act_backward`], checked.
    #[inline]
    pub fn act_backward<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        f: Map,
        y: Span,
        dy: Span,
    ) -> Result<()> {
        same_len(&[y, dy])?;
        let ([y], [dy]) = split(buf, [y], [dy])?;
        k.act_backward(f, y, dy);
        Ok(())
    }

    /// [`Backend::map_fn`], checked.
    #[inline]
    pub fn map_fn<K: HostKernels, F: MapFn>(
        k: &K,
        buf: &mut [f32],
        f: F,
        x: Span,
        y: Span,
    ) -> Result<()> {
        same_len(&[x, y])?;
        let ([x], [y]) = split(buf, [x], [y])?;
        k.map_fn(f, x, y);
        Ok(())
    }

    /// [`Backend::map_backward_fn`], checked.
    #[inline]
    pub fn map_backward_fn<K: HostKernels, F: MapFn>(
        k: &K,
        buf: &mut [f32],
        f: F,
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
    ) -> Result<()> {
        same_len(&[x, y, dy, dx])?;
        let ([x, y, dy], [dx]) = split(buf, [x, y, dy], [dx])?;
        k.map_backward_fn(f, x, y, dy, dx);
        Ok(())
    }

    /// [`Backend::bias_act_fn`], checked.
    #[inline]
    pub fn bias_act_fn<K: HostKernels, F: MapFn>(
        k: &K,
        buf: &mut [f32],
        f: F,
        bias: Span,
        y: Span,
    ) -> Result<()> {
        check_rows(y, bias.len)?;
        let ([bias], [y]) = split(buf, [bias], [y])?;
        k.bias_act_fn(f, bias, y);
        Ok(())
    }

    /// [`Backend::act_backward_fn`], checked.
    #[inline]
    pub fn act_backward_fn<K: HostKernels, F: MapFn>(
        k: &K,
        buf: &mut [f32],
        f: F,
        y: Span,
        dy: Span,
    ) -> Result<()> {
        same_len(&[y, dy])?;
        let ([y], [dy]) = split(buf, [y], [dy])?;
        k.act_backward_fn(f, y, dy);
        Ok(())
    }

    /// [`Backend::zip`], checked.
    #[inline]
    pub fn zip<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        f: Zip,
        a: Span,
        b: Span,
        y: Span,
    ) -> Result<()> {
        same_len(&[a, b, y])?;
        let ([a, b], [y]) = split(buf, [a, b], [y])?;
        k.zip(f, a, b, y);
        Ok(())
    }

    /// [`Backend::zip_backward`], checked.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn zip_backward<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        f: Zip,
        rhs: bool,
        a: Span,
        b: Span,
        dy: Span,
        d: Span,
    ) -> Result<()> {
        same_len(&[a, b, dy, d])?;
        let ([a, b, dy], [d]) = split(buf, [a, b, dy], [d])?;
        k.zip_backward(f, rhs, a, b, dy, d);
        Ok(())
    }

    /// [`Backend::gemm`], checked.
    #[inline]
    pub fn gemm<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        batch: usize,
        g: &Gemm,
    ) -> Result<()> {
        check_gemm(batch, g)?;
        let ([a, b], [c]) = split(buf, [g.a, g.b], [g.c])?;
        k.gemm(batch, g, a, b, c);
        Ok(())
    }

    /// [`Backend::reduce`], checked.
    #[inline]
    pub fn reduce<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        op: Reduce,
        x: Span,
        y: Span,
        d: AxisDims,
        acc: Acc,
    ) -> Result<()> {
        check_axis(x, y, d)?;
        let ([x], [y]) = split(buf, [x], [y])?;
        k.reduce(op, x, y, d, acc);
        Ok(())
    }

    /// [`Backend::expand`], checked.
    #[inline]
    pub fn expand<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        x: Span,
        y: Span,
        d: AxisDims,
        acc: Acc,
    ) -> Result<()> {
        check_axis(y, x, d)?;
        let ([x], [y]) = split(buf, [x], [y])?;
        k.expand(x, y, d, acc);
        Ok(())
    }

    /// [`Backend::max_backward`], checked.
    #[inline]
    pub fn max_backward<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
        d: AxisDims,
    ) -> Result<()> {
        check_max_backward(x, y, dy, dx, d)?;
        let ([x, y, dy], [dx]) = split(buf, [x, y, dy], [dx])?;
        k.max_backward(x, y, dy, dx, d);
        Ok(())
    }

    /// [`Backend::softmax`], checked.
    #[inline]
    pub fn softmax<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        x: Span,
        y: Span,
        d: AxisDims,
        log: bool,
    ) -> Result<()> {
        check_softmax(&[x, y], d)?;
        let ([x], [y]) = split(buf, [x], [y])?;
        k.softmax(x, y, d, log);
        Ok(())
    }

    /// [`Backend::softmax_backward`], checked.
    #[inline]
    pub fn softmax_backward<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        y: Span,
        dy: Span,
        dx: Span,
        d: AxisDims,
        log: bool,
    ) -> Result<()> {
        check_softmax(&[y, dy, dx], d)?;
        let ([y, dy], [dx]) = split(buf, [y, dy], [dx])?;
        k.softmax_backward(y, dy, dx, d, log);
        Ok(())
    }

    /// [`Backend::cross_entropy`], checked.
    #[inline]
    pub fn cross_entropy<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        x: Span,
        targets: Span,
        loss: Span,
        classes: usize,
    ) -> Result<()> {
        check_cross_entropy(x, targets, loss, None, classes)?;
        let ([x, t], [loss]) = split(buf, [x, targets], [loss])?;
        k.cross_entropy(x, t, loss, classes);
        Ok(())
    }

    /// [`Backend::cross_entropy_backward`], checked.
    #[inline]
    pub fn cross_entropy_backward<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        x: Span,
        targets: Span,
        dloss: Span,
        dx: Span,
        classes: usize,
    ) -> Result<()> {
        check_cross_entropy(x, targets, dloss, Some(dx), classes)?;
        let ([x, t, dl], [dx]) = split(buf, [x, targets, dloss], [dx])?;
        k.cross_entropy_backward(x, t, dl, dx, classes);
        Ok(())
    }

    /// [`Backend::transpose`], checked.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn transpose<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        x: Span,
        y: Span,
        batch: usize,
        rows: usize,
        cols: usize,
        acc: Acc,
    ) -> Result<()> {
        check_transpose(x, y, batch, rows, cols)?;
        let ([x], [y]) = split(buf, [x], [y])?;
        k.transpose(x, y, batch, rows, cols, acc);
        Ok(())
    }

    /// [`Backend::window`], checked.
    #[inline]
    pub fn window<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        call: &WindowCall,
    ) -> Result<()> {
        call.check()?;
        let ([x, dy], [out]) = split(buf, [call.x, call.dy], [call.out])?;
        k.window(call, x, dy, out);
        Ok(())
    }

    /// [`Backend::update`], checked.
    #[inline]
    pub fn update<K: HostKernels + ?Sized>(
        k: &K,
        buf: &mut [f32],
        rule: &Update,
        param: Span,
        grad: Span,
        state: Span,
    ) -> Result<()> {
        check_update(rule, param, grad, state)?;
        let ([g], [p, s]) = split(buf, [grad], [param, state])?;
        let planes = kernels::state_planes(s, param.len, rule.state_planes());
        k.update(rule, p, g, planes);
        Ok(())
    }
}
