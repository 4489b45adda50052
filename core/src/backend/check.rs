//! Operand checks that every backend makes: spans inside the buffer,
//! outputs overlapping nothing, and operand lengths that fit the kernel's
//! dimensions (overflow-checked, so absurd dimensions are an error, not a
//! wrap-around). Written once here; the CPU, rayon and CUDA backends call them.

use super::{AxisDims, Gemm, Span, Update};
use crate::error::{Error, Result};

pub(crate) const OUT_OF_BOUNDS: Error = Error::InvalidArgument {
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
#[inline]
pub fn split<const I: usize, const O: usize>(
    buf: &mut [f32],
    ins: [Span; I],
    outs: [Span; O],
) -> Result<Parts<'_, I, O>> {
    disjoint(buf.len(), &ins, &outs)?;
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

/// Checks that every span lies in a buffer of `len` floats, and that outputs
/// overlap neither each other nor any input (inputs may overlap each other):
/// what [`split`] checks, for a buffer that is not host memory.
#[inline]
pub fn disjoint(len: usize, ins: &[Span], outs: &[Span]) -> Result<()> {
    if ins
        .iter()
        .chain(outs.iter())
        .any(|s| s.offset.checked_add(s.len).is_none_or(|end| end > len))
    {
        return Err(OUT_OF_BOUNDS);
    }
    for (j, o) in outs.iter().enumerate() {
        if ins.iter().any(|i| i.overlaps(o)) || outs[j + 1..].iter().any(|p| p.overlaps(o)) {
            return Err(ALIASED);
        }
    }
    Ok(())
}

/// The span a strided block copy touches, from its first block to the end of its last.
#[inline]
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
#[inline]
pub fn check_gemm(batch: usize, g: &Gemm) -> Result<()> {
    let fits = |rows: usize, cols: usize, span: Span| {
        numel(&[batch, rows, cols]).is_ok_and(|n| n <= span.len)
    };
    let ok = fits(g.m, g.k, g.a) && fits(g.k, g.n, g.b) && fits(g.m, g.n, g.c);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "gemm operand smaller than its dimensions",
        })
    }
}

/// Checks that elementwise operands have one length.
#[inline]
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
#[inline]
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
#[inline]
pub fn check_cross_entropy(
    x: Span,
    targets: Span,
    per_row: Span,
    dx: Option<Span>,
    classes: usize,
) -> Result<()> {
    if numel(&[targets.len, classes]).ok() != Some(x.len) {
        return Err(Error::InvalidArgument {
            what: "logits are not [rows, classes] for the targets",
        });
    }
    same_len(&[targets, per_row])?;
    dx.map_or(Ok(()), |dx| same_len(&[x, dx]))
}

/// Checks that `x` is the full tensor and `y` the tensor without the axis
/// (with overflow-checked sizes, so absurd dimensions are an error).
#[inline]
pub fn check_axis(x: Span, y: Span, d: AxisDims) -> Result<()> {
    if numel(&[d.outer, d.len, d.inner]).ok() == Some(x.len)
        && numel(&[d.outer, d.inner]).ok() == Some(y.len)
    {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "axis dimensions do not match the operands",
        })
    }
}

const TOO_LARGE: Error = Error::InvalidArgument {
    what: "a size overflows",
};

/// The product of `dims` (a tensor's elements, a size in bytes), or an error
/// when it overflows.
#[inline]
pub fn numel(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or(TOO_LARGE)
}

/// Checks the operands of a softmax or its backward: each is the whole
/// `[outer, len, inner]` tensor.
#[inline]
pub fn check_softmax(spans: &[Span], d: AxisDims) -> Result<()> {
    let n = numel(&[d.outer, d.len, d.inner])?;
    same_len(spans)?;
    spans
        .first()
        .map_or(Ok(()), |&s| same_len(&[s, Span::new(0, n)]))
}

/// Checks the operands of max's backward: `x` and `dx` the whole tensor,
/// `y` and `dy` the tensor without the axis.
#[inline]
pub fn check_max_backward(x: Span, y: Span, dy: Span, dx: Span, d: AxisDims) -> Result<()> {
    check_axis(x, y, d)?;
    same_len(&[x, dx])?;
    same_len(&[y, dy])
}

/// Checks the operands of a batched transpose: `batch` matrices of
/// `rows × cols` in and out.
#[inline]
pub fn check_transpose(x: Span, y: Span, batch: usize, rows: usize, cols: usize) -> Result<()> {
    let n = numel(&[batch, rows, cols])?;
    same_len(&[x, y, Span::new(0, n)])
}

/// Checks the operands of an optimizer update: the gradient is the
/// parameter's length, and the state holds the rule's planes of it.
#[inline]
pub fn check_update(rule: &Update, param: Span, grad: Span, state: Span) -> Result<()> {
    same_len(&[param, grad])?;
    if !numel(&[rule.state_planes(), param.len]).is_ok_and(|need| state.len >= need) {
        return Err(Error::InvalidArgument {
            what: "optimizer state smaller than the parameter",
        });
    }
    Ok(())
}
