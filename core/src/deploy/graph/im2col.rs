//! The int8 convolution kernels of the microcontrollers: im2col of two
//! output columns (output positions) at a time into a small fixed buffer on
//! the stack, then two output channels × two columns per inner step, as
//! CMSIS-NN's `arm_nn_mat_mult_kernel_s8_s16`.
//!
//! The buffer holds `x − z_in` (0 at the padding) for up to [`Im2col::CHUNK`]
//! taps of the two columns, in the order (input channel, kernel row, kernel
//! column): the order of a weight row in PyTorch's layout, so the weights
//! are read as they are in the file. A layer with more taps is done a chunk
//! at a time, the accumulators of up to [`BATCH`] output channels kept
//! across chunks, so the memory is known at compile time and the file
//! format is unchanged. Where the buffer puts a tap is the target's choice
//! ([`Im2col::slot`]), so that its inner loop reads it with no shuffling:
//! - Armv7E-M ([`Dsp`], cfg `ember_dsp`): halfwords; in each group of four
//!   taps, column A's taps (0, 2) then (1, 3), then column B's, so that one
//!   weight word's `SXTB16` and `SXTB16 ROR #8` meet their inputs in one
//!   `SMLAD` each. 18 instructions for 16 multiply-adds ([`Dsp::conv_step`]).
//! - Armv6-M ([`Thumb1`], cfg `ember_thumb1`): words, the two columns' tap
//!   side by side; one output channel and both columns a pass, in assembly
//!   (34 instructions for 8 multiply-adds).
//!
//! A column whose taps all fall on the input is filled through a table of
//! the taps' offsets in the input ([`offsets`], up to [`TABLE`] taps, made
//! once per layer); the others (the border) tap by tap with the bounds.
//! On the stack: the buffer (576 bytes on Armv7E-M, 512 on Armv6-M), the table (512)
//! and the batch's accumulators (256).
//!
//! Depthwise layers have a kernel of their own (`depthwise`); this one
//! takes those it leaves.
//!
//! Taps past the last group of four, a last output channel without a
//! partner and a last column without a partner are done by the same steps
//! with zeros or a duplicate channel, or in portable code; the epilogue is
//! the caller's (`Epilogue`), the same as the portable kernel's, so every
//! kernel gives the same bytes.
//!
//! A layer of one chunk whose epilogue has the fast form (the usual case)
//! fills the buffer once per pair of columns and sums and stores each pair
//! of channels at once ([`pairs_stored`]); the others keep a batch's
//! accumulators across the chunks.

use super::conv::Int8Conv;
use super::epilogue::Epilogue;
use super::NodeHeader;
#[cfg(any(ember_dsp, test))]
use crate::deploy::int8::dsp::Dsp;

/// Output channels whose accumulators are kept across the chunks of taps.
pub(super) const BATCH: usize = 32;

/// A target's im2col layout and inner step.
pub(super) trait Im2col {
    /// Taps per chunk: a multiple of four.
    const CHUNK: usize;
    /// Whether a layer of one chunk runs its last, partial group of four
    /// taps as a whole one (the buffer's slots past the taps are zero)
    /// rather than tap by tap: what costs less on the target.
    const WHOLE_GROUPS: bool;
    /// An element of the buffer.
    type Elem: Copy + Into<i32>;
    /// The buffer: `2 · CHUNK` elements, aligned for the inner step.
    type Buf: AsMut<[Self::Elem]> + AsRef<[Self::Elem]>;
    /// A zeroed buffer.
    fn buffer() -> Self::Buf;
    /// `v` (|v| ≤ 255) as an element.
    fn elem(v: i32) -> Self::Elem;
    /// Where tap `i` of column `c` (0 or 1) of a chunk is stored.
    fn slot(i: usize, c: usize) -> usize;
    /// Adds to `acc` (output channel a's columns 0 and 1, then channel b's)
    /// the products of the first `4 · groups` taps of the buffer with
    /// weight rows `wa` and `wb` (at least that long).
    fn step(acc: &mut [i32; 4], wa: &[i8], wb: &[i8], buf: &Self::Buf, groups: usize);
    /// Fills taps `0..n` (`n ≤ CHUNK`) of columns `p` and `p + 1` of a
    /// pointwise layer (a 1×1 kernel at unit stride, no padding: tap `t`
    /// of column `c` is `xg[t · plane + p + c]`, both columns on the
    /// input), if the target has a path of its own for it; `false` (the
    /// buffer untouched) if not.
    fn fill_pointwise(
        _buf: &mut Self::Buf,
        _xg: &[i8],
        _plane: usize,
        _p: usize,
        _z_in: i32,
        _n: usize,
    ) -> bool {
        false
    }
}

/// The int8 convolution (see the module documentation) with target `K`:
/// per output the bias, plus `w · (x − z_in)` over the taps on the input,
/// stored by `ep`.
pub(super) fn conv2d_i8<K: Im2col>(l: &Int8Conv<'_>, y: &mut [i8], ep: &impl Epilogue) {
    let Int8Conv {
        h,
        z_in,
        weight,
        bias,
        x,
    } = *l;
    let [c, ih, iw] = h.in_shape;
    let [o, oh, ow] = h.out_shape;
    let groups = h.geometry.groups.max(1);
    let (cg, og) = (c / groups, o / groups);
    let [kh, kw] = h.geometry.kernel;
    let taps = cg * kh * kw;
    let pixels = oh * ow;
    if taps == 0 || pixels == 0 || weight.len() < o * taps || bias.len() < o {
        return;
    }
    let mut table = [0u16; TABLE];
    let table = offsets(h, &mut table);
    let mut buf = K::buffer();
    // One chunk and the usual epilogue: the buffer is filled once per pair
    // of columns, and each pair of channels is summed and stored at once.
    // Other layers (more taps, an activation table, a rescale off the fast
    // path) take the chunked path, which holds every case (one copy of the
    // per-pair code in flash).
    if let (true, Some(fast)) = (taps <= K::CHUNK, ep.fast()) {
        let g = h.geometry;
        let pointwise = g.kernel == [1, 1] && g.stride == [1, 1] && g.pad == [0; 4];
        for g in 0..groups {
            let xg = &x[g * cg * ih * iw..(g + 1) * cg * ih * iw];
            let rows = &weight[g * og * taps..(g + 1) * og * taps];
            let mut p = 0;
            while p < pixels {
                let cols = [Some(p), Some(p + 1).filter(|&q| q < pixels)];
                if !(pointwise
                    && cols[1].is_some()
                    && K::fill_pointwise(&mut buf, xg, ih * iw, p, z_in, taps))
                {
                    fill::<K>(&mut buf, h, xg, z_in, cols, 0, taps, table);
                }
                let at = Columns {
                    first: g * og,
                    pixels,
                    p,
                    two: cols[1].is_some(),
                };
                let bias = &bias[g * og..(g + 1) * og];
                pairs_stored::<K>(rows, bias, taps, &buf, y, at, &fast);
                p += 2;
            }
        }
        return;
    }
    let mut acc = [[0i32; 4]; BATCH / 2];
    for g in 0..groups {
        let xg = &x[g * cg * ih * iw..(g + 1) * cg * ih * iw];
        let mut p = 0;
        while p < pixels {
            let cols = [Some(p), Some(p + 1).filter(|&q| q < pixels)];
            let mut b0 = 0;
            while b0 < og {
                let nb = BATCH.min(og - b0);
                let first = g * og + b0;
                let rows = &weight[first * taps..(first + nb) * taps];
                // Per pair of channels a and b: a's columns, then b's. A
                // last channel without a partner is its own (b's sums are
                // not stored).
                let pairs = nb.div_ceil(2);
                for (a, bs) in acc.iter_mut().zip(bias[first..first + nb].chunks(2)) {
                    let (ba, bb) = (bs[0], bs[bs.len() - 1]);
                    *a = [ba, ba, bb, bb];
                }
                let mut t0 = 0;
                while t0 < taps {
                    let n = K::CHUNK.min(taps - t0);
                    fill::<K>(&mut buf, h, xg, z_in, cols, t0, n, table);
                    channel_pairs::<K>(&mut acc[..pairs], rows, taps, t0, n, &buf);
                    t0 += n;
                }
                for (j, a) in acc[..pairs].iter().enumerate() {
                    for (r, k) in [(0, 2 * j), (2, 2 * j + 1)] {
                        if k < nb {
                            let ch = first + k;
                            let m = ep.channel(ch);
                            let at = ch * pixels + p;
                            y[at] = ep.apply(m, a[r]);
                            if cols[1].is_some() {
                                y[at + 1] = ep.apply(m, a[r + 1]);
                            }
                        }
                    }
                }
                b0 += nb;
            }
            p += 2;
        }
    }
}

/// Where [`pairs_stored`] stores: the group's first output channel, the
/// output's plane (`pixels`), the first column `p`, and whether the
/// second column exists.
#[derive(Clone, Copy)]
struct Columns {
    first: usize,
    pixels: usize,
    p: usize,
    two: bool,
}

/// A layer of one chunk: for each pair of a group's output channels
/// (`rows`, `taps` weights each; a last channel without a partner is its
/// own), the bias plus the buffer's products, then the epilogue and the
/// stores of both columns, with no accumulators kept. The buffer's slots
/// past the taps (to the next multiple of four) must be zero.
#[inline(never)]
fn pairs_stored<K: Im2col>(
    rows: &[i8],
    bias: &[i32],
    taps: usize,
    buf: &K::Buf,
    y: &mut [i8],
    at: Columns,
    ep: &impl Epilogue,
) {
    let mut ws = rows.chunks_exact(taps).zip(bias);
    let (mut ch, mut i) = (at.first, at.first * at.pixels + at.p);
    let cols = if at.two { 2 } else { 1 };
    // Taps rounded up to whole groups: the buffer's slots past the taps
    // hold zeros (it starts zeroed and no fill of the layer writes them),
    // so a row read on into the next row's first weights adds nothing.
    let whole = taps.next_multiple_of(4);
    while let Some((wa, &ba)) = ws.next() {
        let partner = ws.next();
        let (wb, bb) = partner.map_or((wa, ba), |(w, &b)| (w, b));
        let mut a = [ba, ba, bb, bb];
        if whole == taps {
            K::step(&mut a, wa, wb, buf, taps / 4);
        } else {
            let b = ch + usize::from(partner.is_some()) - at.first;
            let (ra, rb) = ((ch - at.first) * taps, b * taps);
            match (rows.get(ra..ra + whole), rows.get(rb..rb + whole)) {
                (Some(wa), Some(wb)) if K::WHOLE_GROUPS => K::step(&mut a, wa, wb, buf, whole / 4),
                _ => {
                    K::step(&mut a, wa, wb, buf, taps / 4);
                    tail::<K>(&mut a, wa, wb, buf, taps);
                }
            }
        }
        let outs = if partner.is_some() { 2 } else { 1 };
        for (r, o) in [(0, 0), (2, 1)].into_iter().take(outs) {
            let m = ep.channel(ch + o);
            if let Some(out) = y
                .get_mut(i + o * at.pixels..)
                .and_then(|v| v.get_mut(..cols))
            {
                for (v, &acc) in out.iter_mut().zip(&a[r..r + 2]) {
                    *v = ep.apply(m, acc);
                }
            }
        }
        ch += 2;
        i += 2 * at.pixels;
    }
}

/// Adds to each pair of channels' accumulators in `acc` the products of
/// taps `t0..t0 + n` of their weight rows (`rows`, `taps` long each) with
/// the buffer. Out of line: the inner step's assembly takes thirteen
/// registers, and a small loop around it keeps the rest of the kernel's
/// state out of the way (fewer spills per step).
#[inline(never)]
fn channel_pairs<K: Im2col>(
    acc: &mut [[i32; 4]],
    rows: &[i8],
    taps: usize,
    t0: usize,
    n: usize,
    buf: &K::Buf,
) {
    let mut w = rows.chunks_exact(taps);
    for a in acc {
        let (Some(wa), wb) = (w.next(), w.next()) else {
            break;
        };
        let (wa, wb) = (&wa[t0..t0 + n], &wb.unwrap_or(wa)[t0..t0 + n]);
        K::step(a, wa, wb, buf, n / 4);
        if !n.is_multiple_of(4) {
            tail::<K>(a, wa, wb, buf, n);
        }
    }
}

/// Adds to `acc` (as [`Im2col::step`]) the products of a chunk's taps
/// past its last group of four, `n` taps in all.
#[inline(never)]
fn tail<K: Im2col>(acc: &mut [i32; 4], wa: &[i8], wb: &[i8], buf: &K::Buf, n: usize) {
    let b = buf.as_ref();
    for i in 4 * (n / 4)..n {
        let (u, v) = (b[K::slot(i, 0)].into(), b[K::slot(i, 1)].into());
        let (s, t) = (i32::from(wa[i]), i32::from(wb[i]));
        acc[0] = acc[0].wrapping_add(s * u);
        acc[1] = acc[1].wrapping_add(s * v);
        acc[2] = acc[2].wrapping_add(t * u);
        acc[3] = acc[3].wrapping_add(t * v);
    }
}

/// Taps whose input offsets [`offsets`] tables.
const TABLE: usize = 256;

/// Fills `table` with the offset of each tap's input from tap 0's, in a
/// group's input, for a layer of at most [`TABLE`] taps whose offsets fit
/// in 16 bits: the same at every output position whose taps are all on the
/// input (the fast path of [`fill`]). `None` for other layers.
fn offsets<'t>(h: &NodeHeader, table: &'t mut [u16; TABLE]) -> Option<&'t [u16]> {
    let [c, ih, iw] = h.in_shape;
    let g = h.geometry;
    let [kh, kw] = g.kernel;
    let cg = c / g.groups.max(1);
    let taps = cg * kh * kw;
    if taps > TABLE {
        return None;
    }
    let mut at = 0;
    for ci in 0..cg {
        for ky in 0..kh {
            for kx in 0..kw {
                let off = (ci * ih + ky * g.dilation[0]) * iw + kx * g.dilation[1];
                table[at] = u16::try_from(off).ok()?;
                at += 1;
            }
        }
    }
    Some(&table[..taps])
}

/// Writes taps `t0..t0 + n` of columns `cols` (output positions, row-major;
/// `None`: zeros) of the group's input `xg` into the buffer, as
/// `x − z_in`, 0 at the padding; `table` the layer's tap offsets, if
/// [`offsets`] gave them.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn fill<K: Im2col>(
    buf: &mut K::Buf,
    h: &NodeHeader,
    xg: &[i8],
    z_in: i32,
    cols: [Option<usize>; 2],
    t0: usize,
    n: usize,
    table: Option<&[u16]>,
) {
    let buf = buf.as_mut();
    column::<K, 0>(buf, h, xg, z_in, cols[0], t0, n, table);
    column::<K, 1>(buf, h, xg, z_in, cols[1], t0, n, table);
}

/// [`fill`]'s column `C`: through the table when all its taps are on the
/// input, else tap by tap with the bounds.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn column<K: Im2col, const C: usize>(
    buf: &mut [K::Elem],
    h: &NodeHeader,
    xg: &[i8],
    z_in: i32,
    col: Option<usize>,
    t0: usize,
    n: usize,
    table: Option<&[u16]>,
) {
    let [_, ih, iw] = h.in_shape;
    let ow = h.out_shape[2];
    let gm = h.geometry;
    let [kh, kw] = gm.kernel;
    let zero = K::elem(0);
    let Some(q) = col else {
        for i in 0..n {
            buf[K::slot(i, C)] = zero;
        }
        return;
    };
    // The input position of tap (0, 0), which may be in the padding.
    let y0 = ((q / ow) * gm.stride[0]) as isize - gm.pad[0] as isize;
    let x0 = ((q % ow) * gm.stride[1]) as isize - gm.pad[1] as isize;
    let (dh, dw) = (gm.dilation[0] as isize, gm.dilation[1] as isize);
    let inside = y0 >= 0
        && x0 >= 0
        && ((y0 + (kh as isize - 1) * dh) as usize) < ih
        && ((x0 + (kw as isize - 1) * dw) as usize) < iw;
    if let (true, Some(offs)) = (inside, table.and_then(|t| t.get(t0..t0 + n))) {
        let base = y0 as usize * iw + x0 as usize;
        // The offsets grow with the tap: the last is the largest.
        if offs
            .last()
            .is_some_and(|&m| base + usize::from(m) < xg.len())
        {
            let xs = &xg[base..];
            let at = |o: u16| {
                // SAFETY: o ≤ the chunk's last offset, and base + that
                // offset < xg.len() (checked above), so o < xs.len().
                K::elem(i32::from(unsafe { *xs.get_unchecked(usize::from(o)) }) - z_in)
            };
            // Tap 4g + r of a chunk is at 8g + slot(r) in both layouts.
            let quads = offs.chunks_exact(4);
            let rest = quads.remainder();
            for (o, b) in quads.zip(buf.chunks_exact_mut(8)) {
                b[K::slot(0, C)] = at(o[0]);
                b[K::slot(1, C)] = at(o[1]);
                b[K::slot(2, C)] = at(o[2]);
                b[K::slot(3, C)] = at(o[3]);
            }
            let done = n - rest.len();
            for (i, &o) in rest.iter().enumerate() {
                buf[K::slot(done + i, C)] = at(o);
            }
            return;
        }
    }
    let plane = kh * kw;
    let (mut ci, mut ky, mut kx) = (t0 / plane, t0 % plane / kw, t0 % kw);
    let mut i = 0;
    while i < n {
        let seg = (kw - kx).min(n - i);
        let iy = y0 + ky as isize * dh;
        if iy >= 0 && (iy as usize) < ih {
            let row = &xg[(ci * ih + iy as usize) * iw..][..iw];
            let mut ix = x0 + kx as isize * dw;
            for j in i..i + seg {
                let v = if ix >= 0 && (ix as usize) < iw {
                    i32::from(row[ix as usize]) - z_in
                } else {
                    0
                };
                buf[K::slot(j, C)] = K::elem(v);
                ix += dw;
            }
        } else {
            for j in i..i + seg {
                buf[K::slot(j, C)] = zero;
            }
        }
        i += seg;
        kx += seg;
        if kx == kw {
            kx = 0;
            ky += 1;
            if ky == kh {
                ky = 0;
                ci += 1;
            }
        }
    }
}

/// Halfwords aligned for word loads (`LDRD`).
#[cfg(any(ember_dsp, test))]
#[repr(C, align(8))]
pub(super) struct Halves<const N: usize>(pub(super) [i16; N]);

#[cfg(any(ember_dsp, test))]
impl<const N: usize> AsRef<[i16]> for Halves<N> {
    fn as_ref(&self) -> &[i16] {
        &self.0
    }
}

#[cfg(any(ember_dsp, test))]
impl<const N: usize> AsMut<[i16]> for Halves<N> {
    fn as_mut(&mut self) -> &mut [i16] {
        &mut self.0
    }
}

/// The Armv7E-M layout and step, the instructions from `D` (the assembly,
/// or their emulation on the host).
#[cfg(any(ember_dsp, test))]
pub(super) struct DspConv<D>(core::marker::PhantomData<D>);

/// Taps per chunk on Armv7E-M: a 576-byte buffer. 144 taps are a 3×3
/// kernel over 16 input channels (ResNet's first stack): such a layer takes
/// the one-chunk path, and 32 and 64 channels are two and four chunks.
#[cfg(any(ember_dsp, test))]
const DSP_CHUNK: usize = 144;

#[cfg(any(ember_dsp, test))]
impl<D: Dsp> Im2col for DspConv<D> {
    const CHUNK: usize = DSP_CHUNK;
    const WHOLE_GROUPS: bool = true;
    type Elem = i16;
    type Buf = Halves<{ 2 * DSP_CHUNK }>;
    fn buffer() -> Self::Buf {
        Halves([0; 2 * DSP_CHUNK])
    }
    #[inline(always)]
    fn elem(v: i32) -> i16 {
        v as i16
    }
    #[inline(always)]
    fn slot(i: usize, c: usize) -> usize {
        // Taps 0, 2, 1, 3 of a group: SXTB16's pairs.
        const ORDER: [usize; 4] = [0, 2, 1, 3];
        8 * (i / 4) + 4 * c + ORDER[i % 4]
    }
    #[inline(always)]
    fn step(acc: &mut [i32; 4], wa: &[i8], wb: &[i8], buf: &Self::Buf, groups: usize) {
        D::conv_step(acc, wa, wb, &buf.0, groups);
    }
    /// The two columns are adjacent bytes of each input plane: per group of
    /// four taps, four halfword loads hold both columns, two words of them
    /// give each column's pairs through `SXTB16` and `SXTB16 ROR #8`, and
    /// `SSUB16` takes the zero point off two at a time.
    fn fill_pointwise(
        buf: &mut Self::Buf,
        xg: &[i8],
        plane: usize,
        p: usize,
        z_in: i32,
        n: usize,
    ) -> bool {
        if n == 0 || n > DSP_CHUNK || p + 1 >= plane || (n - 1) * plane + p + 1 >= xg.len() {
            return false;
        }
        // Bytes (column 0, column 1) of tap t, as a halfword.
        let pair = |t: usize| {
            let i = t * plane + p;
            // SAFETY: t < n, so i + 1 ≤ (n − 1) · plane + p + 1 < xg.len()
            // (checked above).
            let (a, b) = unsafe { (*xg.get_unchecked(i), *xg.get_unchecked(i + 1)) };
            u32::from(a as u8) | u32::from(b as u8) << 8
        };
        let zz = u32::from(z_in as u16) * 0x0001_0001;
        let word = |lo: u32, hi: u32| [lo as i16, (lo >> 16) as i16, hi as i16, (hi >> 16) as i16];
        for (g, out) in buf.0.chunks_exact_mut(8).take(n / 4).enumerate() {
            let t = 4 * g;
            // Bytes: column 0's taps t and t + 2, column 1's between.
            let u = pair(t) | pair(t + 2) << 16;
            let v = pair(t + 1) | pair(t + 3) << 16;
            let (a02, b02) = (D::sxtb16(u), D::sxtb16_ror8(u));
            let (a13, b13) = (D::sxtb16(v), D::sxtb16_ror8(v));
            let (a02, a13) = (D::ssub16(a02, zz), D::ssub16(a13, zz));
            let (b02, b13) = (D::ssub16(b02, zz), D::ssub16(b13, zz));
            out[..4].copy_from_slice(&word(a02, a13));
            out[4..].copy_from_slice(&word(b02, b13));
        }
        for t in 4 * (n / 4)..n {
            let v = pair(t);
            buf.0[Self::slot(t, 0)] = (i32::from(v as u8 as i8) - z_in) as i16;
            buf.0[Self::slot(t, 1)] = (i32::from((v >> 8) as u8 as i8) - z_in) as i16;
        }
        true
    }
}

/// Words aligned as words.
#[cfg(any(ember_thumb1, test))]
pub(super) struct Words<const N: usize>(pub(super) [i32; N]);

#[cfg(any(ember_thumb1, test))]
impl<const N: usize> AsRef<[i32]> for Words<N> {
    fn as_ref(&self) -> &[i32] {
        &self.0
    }
}

#[cfg(any(ember_thumb1, test))]
impl<const N: usize> AsMut<[i32]> for Words<N> {
    fn as_mut(&mut self) -> &mut [i32] {
        &mut self.0
    }
}

/// The Armv6-M layout (words, tap by tap, the two columns side by side) and
/// step: one output channel and both columns a pass (in assembly on the
/// target, in portable code on the host).
#[cfg(any(ember_thumb1, test))]
pub(super) struct Thumb1;

/// Taps per chunk on Armv6-M: a 512-byte buffer.
#[cfg(any(ember_thumb1, test))]
const THUMB1_CHUNK: usize = 64;

#[cfg(any(ember_thumb1, test))]
impl Im2col for Thumb1 {
    const CHUNK: usize = THUMB1_CHUNK;
    // A padding tap costs the Armv6-M step as much as a tap of the tail
    // loop: measured, the whole groups cost 3 % more on a 9-tap layer.
    const WHOLE_GROUPS: bool = false;
    type Elem = i32;
    type Buf = Words<{ 2 * THUMB1_CHUNK }>;
    fn buffer() -> Self::Buf {
        Words([0; 2 * THUMB1_CHUNK])
    }
    #[inline(always)]
    fn elem(v: i32) -> i32 {
        v
    }
    #[inline(always)]
    fn slot(i: usize, c: usize) -> usize {
        2 * i + c
    }
    #[inline(always)]
    fn step(acc: &mut [i32; 4], wa: &[i8], wb: &[i8], buf: &Self::Buf, groups: usize) {
        let [a0, a1, a2, a3] = acc;
        column_pair(a0, a1, wa, &buf.0, groups);
        column_pair(a2, a3, wb, &buf.0, groups);
    }
}

/// One output channel's two columns over `4 · groups` taps of the Armv6-M
/// layout: the assembly on the target.
#[cfg(ember_thumb1)]
#[inline(always)]
fn column_pair(a0: &mut i32, a1: &mut i32, w: &[i8], buf: &[i32], groups: usize) {
    crate::deploy::int8::thumb1::conv_pair(a0, a1, w, buf, groups);
}

/// One output channel's two columns over `4 · groups` taps of the Armv6-M
/// layout: what the assembly computes, on the host.
#[cfg(all(test, not(ember_thumb1)))]
fn column_pair(a0: &mut i32, a1: &mut i32, w: &[i8], buf: &[i32], groups: usize) {
    for (&wv, x) in w[..4 * groups].iter().zip(buf.chunks_exact(2)) {
        *a0 = a0.wrapping_add(i32::from(wv).wrapping_mul(x[0]));
        *a1 = a1.wrapping_add(i32::from(wv).wrapping_mul(x[1]));
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::{agrees_with_portable, node, portable, random_layer, Kernel};
    use super::super::epilogue::Requant;
    use super::*;
    use crate::deploy::int8::dsp::Emulated;
    use proptest::prelude::*;
    extern crate std;
    use std::vec::Vec;

    /// `K` gives the portable kernel's bytes on layer `h`.
    fn agree<K: Im2col>(h: &NodeHeader, seed: u64, z: i32) -> Result<(), TestCaseError> {
        let run: &Kernel<'_> = &|w, b, x, y, out| {
            let l = Int8Conv {
                h,
                z_in: z,
                weight: w,
                bias: b,
                x,
            };
            conv2d_i8::<K>(&l, y, &out);
            true
        };
        agrees_with_portable(h, seed, z, run)?;
        // Through a node's own epilogue too: its fast form takes the
        // one-chunk path that closures (which have none) do not.
        let l = random_layer(h, seed);
        let at = NodeHeader { out_zero: 3, ..*h };
        let ep = Requant::new(&at, &l.pairs, None);
        prop_assert!(ep.fast().is_some());
        let want = portable(h, &l, z, &|a, o| ep.apply(ep.channel(o), a));
        let mut got = std::vec![0i8; h.out_len()];
        let conv = Int8Conv {
            h,
            z_in: z,
            weight: &l.w,
            bias: &l.b,
            x: &l.x,
        };
        conv2d_i8::<K>(&conv, &mut got, &ep);
        prop_assert_eq!(got, want);
        Ok(())
    }

    proptest! {
        /// On random layers (groups, channels past a batch, taps past a
        /// chunk, kernels, strides, dilations, asymmetric padding, odd
        /// output counts, zero points), the Armv7E-M kernel (its
        /// instructions emulated) and the Armv6-M one (its step in portable
        /// code) give the portable kernel's bytes.
        #[test]
        fn kernels_are_the_portable_kernel(
            p in (1usize..4, 1usize..20, 1usize..40, 1usize..4, 1usize..5,
                  proptest::array::uniform2(1usize..4), proptest::array::uniform2(1usize..3),
                  proptest::array::uniform4(0usize..3), 1usize..8, 1usize..12),
            seed in any::<u64>(),
            z in -128i32..128,
        ) {
            let Some(h) = node(p) else { return Ok(()) };
            agree::<DspConv<Emulated>>(&h, seed, z)?;
            agree::<Thumb1>(&h, seed, z)?;
        }

        /// The same on depthwise layers (as many groups as channels, one
        /// output channel each) and on pointwise ones.
        #[test]
        fn depthwise_and_pointwise(
            c in 1usize..70,
            k in 1usize..4,
            s in 1usize..3,
            d in 1usize..3,
            pad in proptest::array::uniform4(0usize..2),
            ih in 1usize..9,
            iw in 1usize..9,
            seed in any::<u64>(),
            z in -128i32..128,
        ) {
            let depthwise = (c, 1, 1, k, k, [s, s], [d, d], pad, ih, iw);
            if let Some(h) = node(depthwise) {
                agree::<DspConv<Emulated>>(&h, seed, z)?;
                agree::<Thumb1>(&h, seed, z)?;
            }
            let pointwise = (1, c, c, 1, 1, [1, 1], [1, 1], [0; 4], ih, iw);
            if let Some(h) = node(pointwise) {
                agree::<DspConv<Emulated>>(&h, seed, z)?;
                agree::<Thumb1>(&h, seed, z)?;
            }
        }
    }

    proptest! {
        /// The Armv7E-M pointwise fill writes the general fill's buffer.
        #[test]
        fn pointwise_fill_is_the_fill(
            c in 1usize..=DSP_CHUNK,
            ih in 1usize..5,
            iw in 1usize..7,
            p in 0usize..30,
            seed in any::<u64>(),
            z in -128i32..128,
        ) {
            let h = node((1, c, 1, 1, 1, [1, 1], [1, 1], [0; 4], ih, iw)).unwrap();
            let plane = ih * iw;
            prop_assume!(p + 1 < plane);
            let mut rng = crate::Rng::new(seed);
            let x: Vec<i8> = (0..h.in_len()).map(|_| rng.next_u32() as i8).collect();
            type K = DspConv<Emulated>;
            let mut want = K::buffer();
            let mut table = [0u16; TABLE];
            let table = offsets(&h, &mut table);
            fill::<K>(&mut want, &h, &x, z, [Some(p), Some(p + 1)], 0, c, table);
            let mut got = K::buffer();
            prop_assert!(K::fill_pointwise(&mut got, &x, plane, p, z, c));
            prop_assert_eq!(&got.0[..2 * c.next_multiple_of(4)], &want.0[..2 * c.next_multiple_of(4)]);
        }
    }

    #[test]
    fn dsp_slots_are_a_permutation() {
        let mut seen = [false; 2 * DSP_CHUNK];
        for i in 0..DSP_CHUNK {
            for c in 0..2 {
                let s = DspConv::<Emulated>::slot(i, c);
                assert!(!seen[s]);
                seen[s] = true;
            }
        }
    }
}
