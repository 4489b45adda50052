//! The portable scalar CPU backend: no threads, no SIMD intrinsics, no
//! allocation. It runs on a Cortex-M0 and is the reference for every other backend.

use super::{kernels, Acc, AxisDims, Backend, Blocks, Gemm, Reduce, Span};
use crate::error::{Error, Result};
use crate::ops::map::Map;
use crate::ops::optim::Update;
use crate::ops::zip::Zip;

/// The portable single-threaded CPU backend; tensors live in a `[f32]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu;

const OUT_OF_BOUNDS: Error = Error::InvalidArgument {
    what: "span outside the buffer",
};
const ALIASED: Error = Error::InvalidArgument {
    what: "a kernel's output overlaps another of its operands",
};

/// Shared input slices and mutable output slices of one buffer.
pub type Parts<'a, const I: usize, const O: usize> = ([&'a [f32]; I], [&'a mut [f32]; O]);

/// Splits `buf` into shared slices for `ins` and mutable slices for `outs`,
/// after checking that every span lies in the buffer, that outputs overlap
/// neither each other nor any input. Inputs may overlap each other.
pub fn split<const I: usize, const O: usize>(
    buf: &mut [f32],
    ins: [Span; I],
    outs: [Span; O],
) -> Result<Parts<'_, I, O>> {
    let len = buf.len();
    if ins.iter().chain(outs.iter()).any(|s| s.end() > len) {
        return Err(OUT_OF_BOUNDS);
    }
    for (j, o) in outs.iter().enumerate() {
        if ins.iter().any(|i| i.overlaps(o)) || outs[j + 1..].iter().any(|p| p.overlaps(o)) {
            return Err(ALIASED);
        }
    }
    let ptr = buf.as_mut_ptr();
    // SAFETY: every span lies inside `buf` (checked above), so each pointer
    // range is valid for the lifetime of the borrow of `buf`. Each mutable
    // slice overlaps no other slice handed out (checked above), so no memory
    // is reachable through a `&mut` and any other reference at once. Shared
    // slices may overlap each other, which is allowed.
    unsafe {
        let ins = ins.map(|s| core::slice::from_raw_parts(ptr.add(s.offset) as *const f32, s.len));
        let outs = outs.map(|s| core::slice::from_raw_parts_mut(ptr.add(s.offset), s.len));
        Ok((ins, outs))
    }
}

/// The span a strided block copy touches, from its first block to the end of its last.
pub fn blocks_extent(start: Span, stride: usize, blocks: usize, block_len: usize) -> Result<Span> {
    if blocks == 0 {
        return Ok(Span::new(start.offset, 0));
    }
    let len = (blocks - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(block_len))
        .ok_or(OUT_OF_BOUNDS)?;
    if len > start.len {
        return Err(OUT_OF_BOUNDS);
    }
    Ok(Span::new(start.offset, len))
}

/// Checks that a gemm's operand spans are large enough.
pub fn check_gemm(batch: usize, g: &Gemm) -> Result<()> {
    let need = |rows: usize, cols: usize| rows.checked_mul(cols).and_then(|v| v.checked_mul(batch));
    let ok = need(g.m, g.k).is_some_and(|n| n <= g.a.len)
        && need(g.k, g.n).is_some_and(|n| n <= g.b.len)
        && need(g.m, g.n).is_some_and(|n| n <= g.c.len);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "gemm operand smaller than its dimensions",
        })
    }
}

/// Checks that elementwise operands have one length.
pub fn same_len(spans: &[Span]) -> Result<()> {
    if spans.windows(2).all(|w| w[0].len == w[1].len) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "elementwise operands differ in length",
        })
    }
}

/// Checks that `y` is whole rows of `cols` floats (no floats when `cols` is 0).
pub fn check_rows(y: Span, cols: usize) -> Result<()> {
    // `n.is_multiple_of(0)` holds for `n = 0` only.
    if y.len.is_multiple_of(cols) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "the output is not whole rows of the bias",
        })
    }
}

/// Checks the operands of a cross-entropy kernel: logits `x` are
/// `[rows, classes]` (overflow-checked) for `targets` of `rows`, `per_row`
/// (the losses, or their gradient) has one float per row, and `dx`, when
/// given, is the logits' shape.
pub fn check_cross_entropy(
    x: Span,
    targets: Span,
    per_row: Span,
    dx: Option<Span>,
    classes: usize,
) -> Result<()> {
    if targets.len.checked_mul(classes) != Some(x.len) {
        return Err(Error::InvalidArgument {
            what: "logits are not [rows, classes] for the targets",
        });
    }
    same_len(&[targets, per_row])?;
    dx.map_or(Ok(()), |dx| same_len(&[x, dx]))
}

/// Checks that `x` is the full tensor and `y` the tensor without the axis
/// (with overflow-checked sizes, so absurd dimensions are an error).
pub fn check_axis(x: Span, y: Span, d: AxisDims) -> Result<()> {
    let numel = d
        .outer
        .checked_mul(d.len)
        .and_then(|v| v.checked_mul(d.inner));
    if Some(x.len) == numel && Some(y.len) == d.outer.checked_mul(d.inner) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "axis dimensions do not match the operands",
        })
    }
}

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
