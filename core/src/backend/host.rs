//! The checked layer of the host backends: [`HostKernels`] are kernels on
//! slices of host memory whose operands were already checked, and every
//! `HostKernels` type is a [`Backend`] through one implementation here,
//! which makes the checks ([`check`](super::check)) and splits the buffer
//! once. The portable [`Cpu`](super::Cpu) is `HostKernels` with every
//! default; the multi-threaded backend of `ember-std` overrides the kernels
//! it runs in parallel. A backend whose memory is not host memory (a GPU)
//! implements [`Backend`] itself and calls the same checks.

use super::check::{
    blocks_extent, check_axis, check_cross_entropy, check_gemm, check_rows, same_len, split,
    OUT_OF_BOUNDS,
};
use super::{kernels, Acc, AxisDims, Backend, Blocks, Gemm, Map, Reduce, Span, Update, Zip};
use crate::error::{Error, Result};

/// Kernels on checked slices of one host buffer: inputs `&[f32]`, outputs
/// `&mut [f32]` that overlap nothing else, with the lengths that the
/// matching [`Backend`] method documents. The defaults are the portable
/// scalar kernels of [`kernels`], the reference for every backend; a faster
/// host backend overrides the ones it speeds up.
///
/// The methods share [`Backend`]'s names: with both traits in scope, call
/// the checked ones as `Backend::map(&be, …)`. Code that runs models needs
/// only [`Backend`].
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
    /// [`Backend::update`]: `planes` are the rule's state planes, each the
    /// parameter's length (the unused ones empty).
    #[inline]
    fn update(&self, rule: &Update, param: &mut [f32], grad: &[f32], planes: [&mut [f32]; 3]) {
        kernels::update(rule, param, grad, planes);
    }
}

/// `a · b · c`, or an error when it overflows.
#[inline]
fn product(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or(OUT_OF_BOUNDS)
}

/// Every [`HostKernels`] is a [`Backend`] over a `[f32]`: each method checks
/// its operands once, here, and hands the kernel its slices.
impl<K: HostKernels + ?Sized> Backend for K {
    type Buffer = [f32];

    fn buffer_len(&self, buf: &[f32]) -> usize {
        buf.len()
    }

    fn host_mut<'b>(&self, buf: &'b mut [f32]) -> Option<&'b mut [f32]> {
        Some(buf)
    }

    fn upload(&self, buf: &mut [f32], dst: Span, src: &[f32]) -> Result<()> {
        same_len(&[dst, Span::new(0, src.len())])?;
        let ([], [d]) = split(buf, [], [dst])?;
        d.copy_from_slice(src);
        Ok(())
    }

    fn download(&self, buf: &[f32], src: Span, dst: &mut [f32]) -> Result<()> {
        same_len(&[src, Span::new(0, dst.len())])?;
        let end = src.offset.checked_add(src.len).ok_or(OUT_OF_BOUNDS)?;
        let s = buf.get(src.offset..end).ok_or(OUT_OF_BOUNDS)?;
        dst.copy_from_slice(s);
        Ok(())
    }

    fn fill(&self, buf: &mut [f32], dst: Span, value: f32) -> Result<()> {
        let ([], [d]) = split(buf, [], [dst])?;
        HostKernels::fill(self, d, value);
        Ok(())
    }

    fn copy(&self, buf: &mut [f32], b: &Blocks) -> Result<()> {
        let src = blocks_extent(b.src, b.src_stride, b.blocks, b.block_len)?;
        let dst = blocks_extent(b.dst, b.dst_stride, b.blocks, b.block_len)?;
        let ([s], [d]) = split(buf, [src], [dst])?;
        HostKernels::copy(self, s, d, b);
        Ok(())
    }

    fn map(&self, buf: &mut [f32], f: Map, x: Span, y: Span) -> Result<()> {
        same_len(&[x, y])?;
        let ([x], [y]) = split(buf, [x], [y])?;
        HostKernels::map(self, f, x, y);
        Ok(())
    }

    fn map_backward(
        &self,
        buf: &mut [f32],
        f: Map,
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
    ) -> Result<()> {
        same_len(&[x, y, dy, dx])?;
        let ([x, y, dy], [dx]) = split(buf, [x, y, dy], [dx])?;
        HostKernels::map_backward(self, f, x, y, dy, dx);
        Ok(())
    }

    fn bias_act(&self, buf: &mut [f32], f: Map, bias: Span, y: Span) -> Result<()> {
        check_rows(y, bias.len)?;
        let ([bias], [y]) = split(buf, [bias], [y])?;
        HostKernels::bias_act(self, f, bias, y);
        Ok(())
    }

    fn act_backward(&self, buf: &mut [f32], f: Map, y: Span, dy: Span) -> Result<()> {
        same_len(&[y, dy])?;
        let ([y], [dy]) = split(buf, [y], [dy])?;
        HostKernels::act_backward(self, f, y, dy);
        Ok(())
    }

    fn zip(&self, buf: &mut [f32], f: Zip, a: Span, b: Span, y: Span) -> Result<()> {
        same_len(&[a, b, y])?;
        let ([a, b], [y]) = split(buf, [a, b], [y])?;
        HostKernels::zip(self, f, a, b, y);
        Ok(())
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
    ) -> Result<()> {
        same_len(&[a, b, dy, d])?;
        let ([a, b, dy], [d]) = split(buf, [a, b, dy], [d])?;
        HostKernels::zip_backward(self, f, rhs, a, b, dy, d);
        Ok(())
    }

    fn gemm(&self, buf: &mut [f32], batch: usize, g: &Gemm) -> Result<()> {
        check_gemm(batch, g)?;
        let ([a, b], [c]) = split(buf, [g.a, g.b], [g.c])?;
        HostKernels::gemm(self, batch, g, a, b, c);
        Ok(())
    }

    fn reduce(
        &self,
        buf: &mut [f32],
        op: Reduce,
        x: Span,
        y: Span,
        d: AxisDims,
        acc: Acc,
    ) -> Result<()> {
        check_axis(x, y, d)?;
        let ([x], [y]) = split(buf, [x], [y])?;
        HostKernels::reduce(self, op, x, y, d, acc);
        Ok(())
    }

    fn expand(&self, buf: &mut [f32], x: Span, y: Span, d: AxisDims, acc: Acc) -> Result<()> {
        check_axis(y, x, d)?;
        let ([x], [y]) = split(buf, [x], [y])?;
        HostKernels::expand(self, x, y, d, acc);
        Ok(())
    }

    fn max_backward(
        &self,
        buf: &mut [f32],
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
        d: AxisDims,
    ) -> Result<()> {
        check_axis(x, y, d)?;
        same_len(&[x, dx])?;
        same_len(&[y, dy])?;
        let ([x, y, dy], [dx]) = split(buf, [x, y, dy], [dx])?;
        HostKernels::max_backward(self, x, y, dy, dx, d);
        Ok(())
    }

    fn softmax(&self, buf: &mut [f32], x: Span, y: Span, d: AxisDims, log: bool) -> Result<()> {
        same_len(&[x, y, Span::new(0, product(&[d.outer, d.len, d.inner])?)])?;
        let ([x], [y]) = split(buf, [x], [y])?;
        HostKernels::softmax(self, x, y, d, log);
        Ok(())
    }

    fn softmax_backward(
        &self,
        buf: &mut [f32],
        y: Span,
        dy: Span,
        dx: Span,
        d: AxisDims,
        log: bool,
    ) -> Result<()> {
        same_len(&[
            y,
            dy,
            dx,
            Span::new(0, product(&[d.outer, d.len, d.inner])?),
        ])?;
        let ([y, dy], [dx]) = split(buf, [y, dy], [dx])?;
        HostKernels::softmax_backward(self, y, dy, dx, d, log);
        Ok(())
    }

    fn cross_entropy(
        &self,
        buf: &mut [f32],
        x: Span,
        targets: Span,
        loss: Span,
        classes: usize,
    ) -> Result<()> {
        check_cross_entropy(x, targets, loss, None, classes)?;
        let ([x, t], [loss]) = split(buf, [x, targets], [loss])?;
        HostKernels::cross_entropy(self, x, t, loss, classes);
        Ok(())
    }

    fn cross_entropy_backward(
        &self,
        buf: &mut [f32],
        x: Span,
        targets: Span,
        dloss: Span,
        dx: Span,
        classes: usize,
    ) -> Result<()> {
        check_cross_entropy(x, targets, dloss, Some(dx), classes)?;
        let ([x, t, dl], [dx]) = split(buf, [x, targets, dloss], [dx])?;
        HostKernels::cross_entropy_backward(self, x, t, dl, dx, classes);
        Ok(())
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
    ) -> Result<()> {
        same_len(&[x, y, Span::new(0, product(&[batch, rows, cols])?)])?;
        let ([x], [y]) = split(buf, [x], [y])?;
        HostKernels::transpose(self, x, y, batch, rows, cols, acc);
        Ok(())
    }

    fn update(
        &self,
        buf: &mut [f32],
        rule: &Update,
        param: Span,
        grad: Span,
        state: Span,
    ) -> Result<()> {
        same_len(&[param, grad])?;
        let planes = rule.state_planes();
        if state.len < product(&[planes, param.len])? {
            return Err(Error::InvalidArgument {
                what: "optimizer state smaller than the parameter",
            });
        }
        let ([g], [p, s]) = split(buf, [grad], [param, state])?;
        let planes = kernels::state_planes(s, param.len, planes);
        HostKernels::update(self, rule, p, g, planes);
        Ok(())
    }
}
