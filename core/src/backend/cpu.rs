//! The portable scalar CPU backend: no threads, no SIMD intrinsics, no
//! allocation. It runs on a Cortex-M0 and is the reference for every other backend.

use super::check::{
    blocks_extent, check_axis, check_cross_entropy, check_gemm, check_rows, same_len, split,
    OUT_OF_BOUNDS,
};
use super::map::Map;
use super::update::Update;
use super::zip::Zip;
use super::{kernels, Acc, AxisDims, Backend, Blocks, Gemm, Reduce, Span};
use crate::error::{Error, Result};

/// The portable single-threaded CPU backend; tensors live in a `[f32]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu;

impl Backend for Cpu {
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
        let s = buf.get(src.offset..src.end()).ok_or(OUT_OF_BOUNDS)?;
        dst.copy_from_slice(s);
        Ok(())
    }

    fn fill(&self, buf: &mut [f32], dst: Span, value: f32) -> Result<()> {
        let ([], [d]) = split(buf, [], [dst])?;
        d.fill(value);
        Ok(())
    }

    fn copy(&self, buf: &mut [f32], b: &Blocks) -> Result<()> {
        let src = blocks_extent(b.src, b.src_stride, b.blocks, b.block_len)?;
        let dst = blocks_extent(b.dst, b.dst_stride, b.blocks, b.block_len)?;
        let ([s], [d]) = split(buf, [src], [dst])?;
        kernels::copy_blocks(
            s,
            b.src_stride,
            d,
            b.dst_stride,
            b.blocks,
            b.block_len,
            b.acc,
        );
        Ok(())
    }

    fn map(&self, buf: &mut [f32], f: Map, x: Span, y: Span) -> Result<()> {
        same_len(&[x, y])?;
        let ([x], [y]) = split(buf, [x], [y])?;
        kernels::map(f, x, y);
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
        kernels::map_backward(f, x, y, dy, dx);
        Ok(())
    }

    fn bias_act(&self, buf: &mut [f32], f: Map, bias: Span, y: Span) -> Result<()> {
        check_rows(y, bias.len)?;
        let ([bias], [y]) = split(buf, [bias], [y])?;
        kernels::bias_act(f, bias, y);
        Ok(())
    }

    fn act_backward(&self, buf: &mut [f32], f: Map, y: Span, dy: Span) -> Result<()> {
        same_len(&[y, dy])?;
        let ([y], [dy]) = split(buf, [y], [dy])?;
        kernels::act_backward(f, y, dy);
        Ok(())
    }

    fn zip(&self, buf: &mut [f32], f: Zip, a: Span, b: Span, y: Span) -> Result<()> {
        same_len(&[a, b, y])?;
        let ([a, b], [y]) = split(buf, [a, b], [y])?;
        kernels::zip(f, a, b, y);
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
        kernels::zip_backward(f, rhs, a, b, dy, d);
        Ok(())
    }

    fn gemm(&self, buf: &mut [f32], batch: usize, g: &Gemm) -> Result<()> {
        check_gemm(batch, g)?;
        let ([a, b], [c]) = split(buf, [g.a, g.b], [g.c])?;
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
        kernels::reduce(op, x, y, d, acc);
        Ok(())
    }

    fn expand(&self, buf: &mut [f32], x: Span, y: Span, d: AxisDims, acc: Acc) -> Result<()> {
        check_axis(y, x, d)?;
        let ([x], [y]) = split(buf, [x], [y])?;
        kernels::expand(x, y, d, acc);
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
        kernels::max_backward(x, y, dy, dx, d);
        Ok(())
    }

    fn softmax(&self, buf: &mut [f32], x: Span, y: Span, d: AxisDims, log: bool) -> Result<()> {
        same_len(&[x, y, Span::new(0, d.numel())])?;
        let ([x], [y]) = split(buf, [x], [y])?;
        kernels::softmax(x, y, d, log);
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
        same_len(&[y, dy, dx, Span::new(0, d.numel())])?;
        let ([y, dy], [dx]) = split(buf, [y, dy], [dx])?;
        kernels::softmax_backward(y, dy, dx, d, log);
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
        kernels::cross_entropy(x, t, loss, classes);
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
        kernels::cross_entropy_backward(x, t, dl, dx, classes);
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
        same_len(&[x, y, Span::new(0, batch * rows * cols)])?;
        let ([x], [y]) = split(buf, [x], [y])?;
        kernels::transpose(x, y, batch, rows, cols, acc);
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
        if state.len < rule.state_planes() * param.len {
            return Err(Error::InvalidArgument {
                what: "optimizer state smaller than the parameter",
            });
        }
        let ([g], [p, s]) = split(buf, [grad], [param, state])?;
        kernels::update(
            rule,
            p,
            g,
            kernels::state_planes(s, param.len, rule.state_planes()),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rejects_overlap_and_out_of_bounds() {
        let mut buf = [0.0f32; 8];
        assert!(split(&mut buf, [Span::new(0, 4)], [Span::new(2, 4)]).is_err());
        assert!(split(&mut buf, [Span::new(0, 4)], [Span::new(6, 4)]).is_err());
        assert!(split(&mut buf, [], [Span::new(0, 4), Span::new(3, 2)]).is_err());
        let ([a, b], [c]) = split(
            &mut buf,
            [Span::new(0, 4), Span::new(2, 2)],
            [Span::new(4, 4)],
        )
        .unwrap();
        assert_eq!((a.len(), b.len(), c.len()), (4, 2, 4));
    }

    #[test]
    fn gemm_all_transpose_combinations_agree() {
        // a = [[1,2,3],[4,5,6]] (2x3), b = [[1,0],[0,1],[1,1]] (3x2) -> [[4,5],[10,11]]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let at = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let bt = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut c = [0.0; 4];
            let aa: &[f32] = if ta { &at } else { &a };
            let bb: &[f32] = if tb { &bt } else { &b };
            kernels::gemm(2, 2, 3, aa, ta, bb, tb, &mut c, Acc::Set);
            assert_eq!(c, [4.0, 5.0, 10.0, 11.0], "ta={ta} tb={tb}");
        }
    }
}
