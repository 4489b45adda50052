//! Post-training quantization: symmetric per-output-channel int8 weights,
//! asymmetric int8 activations calibrated on sample inputs, and fixed-point
//! requantization (a Q31 multiplier and a shift per channel, as in
//! gemmlowp, TFLite Micro and CMSIS-NN).

use super::dense_f32::dense_f32;
use super::format::{
    finish, layer_parts, padded, rd_u32, set_field, write_header, ActivationTable, FormatError,
    InputStep, LayerWeights, Model, FIXED, FLAGS, FLAG_INPUT_STEP, FLAG_TABLES, MAX_LAYERS, RECORD,
};
use super::int8::int8_weight_offset;
use super::Activation;

/// An affine int8 quantization: `real = scale · (q − zero)`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QuantParams {
    /// Real units per step.
    pub scale: f32,
    /// The integer that represents 0.
    pub zero: i32,
}

impl QuantParams {
    /// Parameters covering `[min, max]` (widened to include 0) with 256 levels.
    pub fn from_range(min: f32, max: f32) -> Self {
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        let range = hi - lo;
        if !range.is_finite() || range <= 0.0 {
            return QuantParams {
                scale: 1.0,
                zero: 0,
            };
        }
        let scale = range / 255.0;
        if !scale.is_normal() {
            // A range so narrow that its step underflows (to zero or a
            // subnormal, which a file refuses or whose reciprocal is
            // infinite): as for an empty range.
            return QuantParams {
                scale: 1.0,
                zero: 0,
            };
        }
        let zero = (libm::roundf(-128.0 - lo / scale) as i32).clamp(-128, 127);
        QuantParams { scale, zero }
    }
}

/// `round(acc · multiplier · 2^(shift − 31))` (halves rounded up), saturated
/// to i32: the fixed-point rescale of an i32 accumulator by a real factor.
///
/// For a non-negative multiplier and a factor below 1/4 (`shift ≤ −2`, the
/// usual case between layers) it takes the high word of the 64-bit product
/// and rounds with one 32-bit add and shift: exactly the same result
/// (checked against the 64-bit formula by a test), in a few instructions
/// on a Cortex-M.
#[inline]
pub fn requantize(acc: i32, multiplier: i32, shift: i32) -> i32 {
    let prod = i64::from(acc) * i64::from(multiplier);
    if requant_is_fast(multiplier, shift) {
        // With s = 31 − shift = 32 + k, k in 1..=30: |prod| ≤ 2^62, so
        // |hi| ≤ 2^30 and hi + 2^(k−1) fits in i32, and
        // floor((hi·2^32 + lo + 2^(s−1)) / 2^s) = (hi + 2^(k−1)) >> k,
        // as lo < 2^32 cannot carry past the k-bit shift.
        let hi = (prod >> 32) as i32;
        let k = -1 - shift;
        return (hi + (1 << (k - 1))) >> k;
    }
    requantize_wide(prod, 31 - shift.clamp(-31, 30))
}

/// A `(multiplier, shift)` pair ready for [`requantize`]'s arithmetic,
/// its fast path decided and its rounding constant computed once: a
/// kernel makes one per output channel and applies it to each of the
/// channel's accumulators (the graph files' epilogue; the same results as
/// [`requantize`], which the dense kernels call per output, proptested).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Multiplier {
    multiplier: i32,
    shift: i32,
    /// The right shift of the product's high word (1..=30) on the fast
    /// path; 0 for the 64-bit path.
    k: i32,
    /// `2^(k − 1)`: rounds the fast path's shift half up.
    round: i32,
}

impl Multiplier {
    /// The pair `(multiplier, shift)` of a file.
    #[inline(always)]
    pub(crate) fn new(multiplier: i32, shift: i32) -> Self {
        let (k, round) = if (-31..=-2).contains(&shift) && multiplier >= 0 {
            let k = -1 - shift;
            (k, 1 << (k - 1))
        } else {
            (0, 0)
        };
        Multiplier {
            multiplier,
            shift,
            k,
            round,
        }
    }

    /// The pair `(multiplier, shift)` of a file where [`fast`](Self::fast)
    /// holds (else a pair whose results are wrong, never a panic): no test.
    #[cfg(any(ember_dsp, ember_thumb1, test))]
    #[inline(always)]
    pub(crate) fn new_fast(multiplier: i32, shift: i32) -> Self {
        let k = (-1 - shift) & 31;
        Multiplier {
            multiplier,
            shift,
            k,
            round: (1 << k) >> 1,
        }
    }

    /// Whether [`apply_fast`](Self::apply_fast) is [`apply`](Self::apply).
    #[cfg(any(ember_dsp, ember_thumb1, test))]
    #[inline(always)]
    pub(crate) fn fast(self) -> bool {
        self.k > 0
    }

    /// [`apply`](Self::apply) where [`fast`](Self::fast) holds (else a
    /// wrong result, never a panic): the high word of the product, one add
    /// and one shift.
    #[cfg(any(ember_dsp, ember_thumb1, test))]
    #[inline(always)]
    pub(crate) fn apply_fast(self, acc: i32) -> i32 {
        let hi = ((i64::from(acc) * i64::from(self.multiplier)) >> 32) as i32;
        hi.wrapping_add(self.round) >> (self.k & 31)
    }

    /// [`apply`](Self::apply) with the 64-bit path inline too (no call): a
    /// loop whose pairs take that path (an addition's, whose factors are
    /// above 1) pays for the code.
    #[inline(always)]
    pub(crate) fn apply_inline(self, acc: i32) -> i32 {
        let prod = i64::from(acc) * i64::from(self.multiplier);
        if self.k > 0 {
            let hi = (prod >> 32) as i32;
            return (hi + self.round) >> self.k;
        }
        let s = 31 - self.shift.clamp(-31, 30);
        let r = (prod + (1i64 << (s - 1))) >> s;
        r.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
    }

    /// This pair's rescale of inputs of at most 255 in magnitude (an int8
    /// value less a zero point) in 32-bit arithmetic, where the factor is
    /// between 2^−13 and 2^13 (`shift` in 9..=22, an addition's pairs):
    /// `None` for other pairs.
    #[inline(always)]
    pub(crate) fn small(self) -> Option<SmallRescale> {
        if !(9..=22).contains(&self.shift) || self.multiplier < 0 {
            return None;
        }
        let s = 31 - self.shift;
        Some(SmallRescale {
            hi: self.multiplier >> s,
            lo: self.multiplier & ((1 << s) - 1),
            s,
            round: 1 << (s - 1),
        })
    }

    /// [`requantize`] of `acc` by this pair.
    #[inline(always)]
    pub(crate) fn apply(self, acc: i32) -> i32 {
        let prod = i64::from(acc) * i64::from(self.multiplier);
        if self.k > 0 {
            // As in `requantize`.
            let hi = (prod >> 32) as i32;
            return (hi + self.round) >> self.k;
        }
        requantize_wide(prod, 31 - self.shift.clamp(-31, 30))
    }
}

/// [`Multiplier::small`]: the multiplier split at the shift, `m = hi ·
/// 2^s + lo`, so that for |x| ≤ 255, `round(x · m / 2^s) = x · hi +
/// ((x · lo + 2^(s−1)) >> s)` exactly, every term below 2^30 (as s is in
/// 9..=22 and m < 2^31).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SmallRescale {
    hi: i32,
    lo: i32,
    s: i32,
    round: i32,
}

impl SmallRescale {
    /// [`requantize`] of `x` (|x| ≤ 255; a larger `x` gives a wrong
    /// result, never a panic), in magnitude at most 2^30.
    #[inline(always)]
    pub(crate) fn apply(self, x: i32) -> i32 {
        x.wrapping_mul(self.hi)
            .wrapping_add(x.wrapping_mul(self.lo).wrapping_add(self.round) >> (self.s & 31))
    }
}

/// Whether [`requantize`] takes its 32-bit path for this pair (a
/// non-negative multiplier, `shift` in −31..=−2): the Cortex-M4 int8
/// kernel's epilogue computes only that case in its own instructions.
#[inline]
pub(crate) fn requant_is_fast(multiplier: i32, shift: i32) -> bool {
    (-31..=-2).contains(&shift) && multiplier >= 0
}

/// Whether every pair of `requant` (`[multiplier, shift]` per output) is
/// [`requant_is_fast`].
pub(crate) fn all_fast(requant: &[i32]) -> bool {
    requant.chunks_exact(2).all(|p| requant_is_fast(p[0], p[1]))
}

/// The 64-bit rounding shift of [`requantize`], saturated to i32.
#[inline(never)]
fn requantize_wide(prod: i64, s: i32) -> i32 {
    let r = (prod + (1i64 << (s - 1))) >> s;
    r.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// The Q31 multiplier and shift with `multiplier · 2^(shift − 31) ≈ real`
/// (the reference for [`multiplier_of`], which gives the same pairs without
/// `f64`).
#[cfg(test)]
pub(crate) fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real <= 0.0 || !real.is_finite() {
        return (0, 0);
    }
    let (m, e) = libm::frexp(real);
    let mut q = libm::round(m * (1u64 << 31) as f64) as i64;
    let mut shift = e;
    if q == 1i64 << 31 {
        q /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    if shift > 30 {
        return (i32::MAX, 30);
    }
    (q as i32, shift)
}

// The write-back's arithmetic in integers: the same bits as the `f64`
// formulas it replaced (`f64` products of two `f32` are exact, and an `f64`
// quotient is the exact one rounded to 53 bits, to nearest even), without
// linking soft `f64` code (about 4 KB) into a microcontroller's program.

/// The magnitude of a finite `x` as `m · 2^e`, `m < 2^24` an integer.
fn f32_parts(x: f32) -> (u64, i32) {
    let bits = x.to_bits() & 0x7fff_ffff;
    let (exp, frac) = ((bits >> 23) as i32, u64::from(bits & 0x7f_ffff));
    if exp == 0 {
        (frac, -149)
    } else {
        (frac | 1 << 23, exp - 150)
    }
}

/// `n / d` for integers `0 < n < 2^62`, `0 < d < 2^50`, rounded to 53
/// significant bits (to nearest, ties to even) as an `f64` division rounds
/// it: `(q, e)` with `2^52 ≤ q < 2^53` and `n / d ≈ q · 2^e`.
fn div53(n: u64, d: u64) -> (u64, i32) {
    // Bit by bit (a `u64` division would link a 0.9 KB routine on a 32-bit
    // chip): `q = ⌊n / d⌋`, `r = n mod d`.
    let (mut q, mut r) = (0u64, 0u64);
    for i in (0..64 - n.leading_zeros()).rev() {
        compact_loop!();
        r = r << 1 | (n >> i & 1);
        q <<= 1;
        if r >= d {
            r -= d;
            q |= 1;
        }
    }
    let mut e = 0;
    // `cmp`: the discarded part against half a unit of the last place.
    let cmp = if q >= 1 << 53 {
        let sh = 64 - q.leading_zeros() as i32 - 53;
        let low = q & ((1u64 << sh) - 1);
        let half = 1u64 << (sh - 1);
        q >>= sh;
        e = sh;
        if low != half {
            low.cmp(&half)
        } else if r != 0 {
            core::cmp::Ordering::Greater
        } else {
            core::cmp::Ordering::Equal
        }
    } else {
        while q < 1 << 52 {
            compact_loop!();
            r <<= 1;
            q <<= 1;
            if r >= d {
                r -= d;
                q |= 1;
            }
            e -= 1;
        }
        (2 * r).cmp(&d)
    };
    if cmp == core::cmp::Ordering::Greater || (cmp == core::cmp::Ordering::Equal && q & 1 == 1) {
        q += 1;
        if q == 1 << 53 {
            q >>= 1;
            e += 1;
        }
    }
    (q, e)
}

/// `x` rounded to 53 significant bits (to nearest, ties to even), as a
/// conversion to `f64` rounds it: `(q, e)` with `2^52 ≤ q < 2^53` and
/// `x ≈ q · 2^e`, for `x > 0`.
fn round53(x: u64) -> (u64, i32) {
    let len = 64 - x.leading_zeros() as i32;
    if len <= 53 {
        return (x << (53 - len), len - 53);
    }
    let sh = len - 53;
    let (low, half) = (x & ((1u64 << sh) - 1), 1u64 << (sh - 1));
    let q = x >> sh;
    round_up(q, sh, low.cmp(&half))
}

/// `q`, of 53 bits, plus one unit if the discarded part (`cmp` against half
/// a unit) says so, ties to even; `e` its exponent, renormalised.
fn round_up(q: u64, e: i32, cmp: core::cmp::Ordering) -> (u64, i32) {
    use core::cmp::Ordering::{Equal, Greater};
    if cmp == Greater || (cmp == Equal && q & 1 == 1) {
        let q = q + 1;
        if q == 1 << 53 {
            return (q >> 1, e + 1);
        }
        return (q, e);
    }
    (q, e)
}

/// `a · b` rounded to 53 bits as an `f64` product is, for `a < 2^53` and
/// `0 < b < 2^25`: `(q, e)` as [`round53`] gives them.
#[inline(never)]
fn mul53(a: u64, b: u64) -> (u64, i32) {
    // a · b = top · 2^32 + bottom, top < 2^46.
    let (lo, hi) = ((a & 0xffff_ffff) * b, (a >> 32) * b);
    let (top, bottom) = (hi + (lo >> 32), lo & 0xffff_ffff);
    if top >> 21 == 0 {
        return round53(top << 32 | bottom);
    }
    let sh = 64 - top.leading_zeros() as i32 + 32 - 53;
    let q = top << (32 - sh) | bottom >> sh;
    let (low, half) = (bottom & ((1u64 << sh) - 1), 1u64 << (sh - 1));
    round_up(q, sh, low.cmp(&half))
}

/// `(unfolded as f64 · in_scale as f64 · ws as f64) as f32`, the same bits,
/// computed without `f64` (an int8 layer's bias, dequantized). Out of line:
/// it runs once per row, when a model is unpacked.
#[inline(never)]
pub(crate) fn dequantize_bias(unfolded: i64, in_scale: f32, ws: f32) -> f32 {
    let ((mi, ei), (mw, ew)) = (f32_parts(in_scale), f32_parts(ws));
    let neg = (unfolded < 0) ^ in_scale.is_sign_negative() ^ ws.is_sign_negative();
    let sign = u32::from(neg) << 31;
    let zero = unfolded == 0 || in_scale == 0.0 || ws == 0.0;
    if in_scale.is_nan() || ws.is_nan() || (zero && (in_scale.is_infinite() || ws.is_infinite())) {
        return f32::NAN;
    }
    if in_scale.is_infinite() || ws.is_infinite() {
        return f32::from_bits(0x7f80_0000 | sign);
    }
    if zero {
        return f32::from_bits(sign);
    }
    let (q0, e0) = round53(unfolded.unsigned_abs());
    let (q1, e1) = mul53(q0, mi);
    let (q2, e2) = mul53(q1, mw);
    let e = e0 + e1 + e2 + ei + ew;
    // To `f32`: `q2 · 2^e` with `2^52 ≤ q2 < 2^53`.
    let x = e + 52;
    let bits = if x >= -126 {
        let (q, x) = match round_up(q2 >> 29, 0, (q2 & ((1 << 29) - 1)).cmp(&(1 << 28))) {
            (q, _) if q == 1 << 24 => (q >> 1, x + 1),
            (q, _) => (q, x),
        };
        if x > 127 {
            0x7f80_0000
        } else {
            ((x + 127) as u32) << 23 | (q as u32 & 0x7f_ffff)
        }
    } else {
        // Subnormal: `round(q2 · 2^(e + 149))`, which may reach 2^23 (the
        // least normal number, the same bits).
        let sh = -(e + 149);
        if sh >= 64 {
            0
        } else {
            let (low, half) = (q2 & ((1u64 << sh) - 1), 1u64 << (sh - 1));
            let q = q2 >> sh;
            let up = low > half || (low == half && q & 1 == 1);
            (q + u64::from(up)) as u32
        }
    };
    f32::from_bits(bits | sign)
}

/// [`quantize_multiplier`] of `in_scale · ws / out_scale` computed in
/// `f64`, for positive finite `f32` scales.
pub(crate) fn multiplier_of(in_scale: f32, ws: f32, out_scale: f32) -> (i32, i32) {
    let ((mi, ei), (mw, ew), (mo, eo)) = (f32_parts(in_scale), f32_parts(ws), f32_parts(out_scale));
    if mi == 0 || mw == 0 || mo == 0 {
        return (0, 0);
    }
    let (q, e) = div53(mi * mw, mo);
    // frexp: `q · 2^e = (q / 2^53) · 2^(e + 53)`; the mantissa times 2^31,
    // rounded half away from zero, is `q / 2^22` so rounded.
    let mut m = (q + (1 << 21)) >> 22;
    let mut shift = e + ei + ew - eo + 53;
    if m == 1 << 31 {
        m /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    if shift > 30 {
        return (i32::MAX, 30);
    }
    (m as i32, shift)
}

/// `round(b / (in_scale · ws))` computed in `f64` (half away from zero),
/// clamped to `[−2^30, 2^30 − 1]`; NaN gives 0; for finite positive scales
/// (a zero product as `f64` division by zero would).
pub(crate) fn bias_of(b: f32, in_scale: f32, ws: f32) -> i32 {
    const HI: u64 = (i32::MAX / 2) as u64;
    const LO: u64 = 1 << 30;
    let ((mi, ei), (mw, ew)) = (f32_parts(in_scale), f32_parts(ws));
    let neg = b.is_sign_negative();
    let r = if b.is_nan() {
        return 0;
    } else if b == 0.0 {
        if mi == 0 || mw == 0 {
            return 0;
        }
        0
    } else if b.is_infinite() || mi == 0 || mw == 0 {
        u64::MAX
    } else {
        let (mb, eb) = f32_parts(b);
        let (q, e) = div53(mb, mi * mw);
        let e = e + eb - ei - ew;
        if e >= 0 {
            u64::MAX
        } else if e <= -54 {
            0
        } else {
            (q + (1 << (-e - 1))) >> -e
        }
    };
    if neg {
        -(r.min(LO) as i64) as i32
    } else {
        r.min(HI) as i32
    }
}

/// Value ranges seen at each layer boundary while running calibration samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// `(min, max)` of the model input and of each layer's output.
    pub ranges: [(f32, f32); MAX_LAYERS + 1],
    /// `(min, max)` of each layer's pre-activation (its output before the
    /// activation): the input of an int8 layer's activation table
    /// ([`ActivationTable`]).
    pub pre_ranges: [(f32, f32); MAX_LAYERS],
    /// Samples observed.
    pub samples: usize,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            ranges: [(f32::INFINITY, f32::NEG_INFINITY); MAX_LAYERS + 1],
            pre_ranges: [(f32::INFINITY, f32::NEG_INFINITY); MAX_LAYERS],
            samples: 0,
        }
    }
}

impl Calibration {
    /// No samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the f32 `model` on `input`, widening the ranges; `scratch` must hold
    /// [`Model::scratch_len`] floats.
    pub fn observe(
        &mut self,
        model: &Model<'_>,
        input: &[f32],
        scratch: &mut [f32],
    ) -> Result<(), super::InferError> {
        if model.is_int8() {
            return Err(super::InferError::WrongDtype);
        }
        if input.len() != model.input_features() {
            return Err(super::InferError::InputLength {
                expected: model.input_features(),
                found: input.len(),
            });
        }
        let w = model.max_width;
        if scratch.len() < 2 * w {
            return Err(super::InferError::ScratchTooSmall { needed: 2 * w });
        }
        widen(&mut self.ranges[0], input);
        let (a, b) = scratch.split_at_mut(w);
        let mut cur_in_a = false;
        for (i, (h, lw)) in model.layers().enumerate() {
            let LayerWeights::F32 { weight, bias } = lw else {
                return Err(super::InferError::WrongDtype);
            };
            let (src, dst): (&[f32], &mut [f32]) = if i == 0 {
                (input, &mut a[..h.out_features])
            } else if cur_in_a {
                (&a[..h.in_features], &mut b[..h.out_features])
            } else {
                (&b[..h.in_features], &mut a[..h.out_features])
            };
            // The pre-activation, then the activation in place: the same
            // bits as `dense_f32` with the activation.
            dense_f32(weight, bias, src, dst, Activation::Identity);
            widen(&mut self.pre_ranges[i], dst);
            if h.activation != Activation::Identity {
                for v in dst.iter_mut() {
                    *v = h.activation.apply(*v);
                }
            }
            widen(&mut self.ranges[i + 1], dst);
            cur_in_a = i == 0 || !cur_in_a;
        }
        self.samples += 1;
        Ok(())
    }
}

fn widen(r: &mut (f32, f32), xs: &[f32]) {
    for &x in xs {
        if x.is_finite() {
            r.0 = r.0.min(x);
            r.1 = r.1.max(x);
        }
    }
}

/// Bytes [`quantize`] writes for `model`.
pub fn quantized_len(model: &Model<'_>) -> usize {
    // Weight, bias, scales and requantization pairs, laid out as `quantize`
    // (and `Model::parse`) lay them out.
    let data: usize = model
        .layers()
        .map(|(h, _)| {
            let table = ActivationTable::needed(h.activation);
            layer_parts(true, table, h.in_features, h.out_features, 0)
                .map_or(usize::MAX, |(_, end)| end)
        })
        .fold(0, usize::saturating_add);
    padded(FIXED + RECORD * model.layer_count()) + data + 4
}

/// Quantizes an f32 model to the int8 format using calibrated ranges; returns
/// the number of bytes written to `out`.
pub fn quantize(
    model: &Model<'_>,
    calib: &Calibration,
    out: &mut [u8],
) -> Result<usize, FormatError> {
    quantize_into(model, calib, None, out)
}

/// [`quantize`] for a model trained on standardized features: the int8
/// file keeps `step` and applies it to the real inputs it is given
/// ([`Model::quantize_input`]), so that it takes raw features. `model` is
/// the f32 model of the standardized features (no scaling folded into its
/// first layer) and `calib` observed it on standardized rows. `out` must
/// hold [`quantized_len`] plus [`InputStep::file_len`] of its inputs.
pub fn quantize_with_input_step(
    model: &Model<'_>,
    calib: &Calibration,
    step: InputStep<'_>,
    out: &mut [u8],
) -> Result<usize, FormatError> {
    quantize_into(model, calib, Some(step), out)
}

fn quantize_into(
    model: &Model<'_>,
    calib: &Calibration,
    step: Option<InputStep<'_>>,
    out: &mut [u8],
) -> Result<usize, FormatError> {
    if model.is_int8() || calib.samples == 0 {
        return Err(FormatError::Unsupported);
    }
    let features = model.input_features();
    let step_len = step.map_or(0, |_| InputStep::file_len(features));
    let needed = quantized_len(model) + step_len;
    if out.len() < needed {
        return Err(FormatError::BufferTooSmall { needed });
    }
    let mut shapes: heapless::Vec<(usize, usize, Activation), MAX_LAYERS> = heapless::Vec::new();
    for (h, _) in model.layers() {
        let _ = shapes.push((h.in_features, h.out_features, h.activation));
    }
    let header_len = padded(FIXED + RECORD * shapes.len());
    let data_len = needed - 4 - header_len;
    write_header(out, true, &shapes, data_len);
    out[header_len..header_len + data_len].fill(0);
    if let Some(s) = step {
        if !s.valid(features) {
            return Err(FormatError::BadInputStep);
        }
        out[FLAGS] = FLAG_INPUT_STEP;
        let part = step_len / 2;
        for (j, (o, v)) in s.offset.iter().zip(s.scale).enumerate() {
            let at = header_len + 4 * j;
            out[at..at + 4].copy_from_slice(&o.to_le_bytes());
            out[at + part..at + part + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    if shapes.iter().any(|s| ActivationTable::needed(s.2)) {
        out[FLAGS] |= FLAG_TABLES;
    }
    let mut at = header_len + step_len;
    for (i, (h, lw)) in model.layers().enumerate() {
        let LayerWeights::F32 { weight, bias } = lw else {
            return Err(FormatError::Unsupported);
        };
        let range = |(lo, hi): (f32, f32)| QuantParams::from_range(lo, hi);
        let qin = range(calib.ranges[i]);
        let qout = range(calib.ranges[i + 1]);
        set_field(out, i, 32, qin.scale.to_le_bytes());
        set_field(out, i, 36, qin.zero.to_le_bytes());
        set_field(out, i, 40, qout.scale.to_le_bytes());
        set_field(out, i, 44, qout.zero.to_le_bytes());
        let (n_in, n_out) = (h.in_features, h.out_features);
        let table = ActivationTable::needed(h.activation)
            .then(|| (h.activation, range(calib.pre_ranges[i])));
        let ([(w_off, _), (b_off, _), (s_off, _), (r_off, _), _], end) =
            layer_parts(true, table.is_some(), n_in, n_out, at).ok_or(FormatError::Unsupported)?;
        for (field, off) in [(16, w_off), (20, b_off), (24, s_off), (28, r_off)] {
            set_field(out, i, field, ((off - header_len) as u32).to_le_bytes());
        }
        quantize_layer(
            weight,
            bias,
            n_in,
            n_out,
            qin,
            qout,
            table,
            &mut out[at..end],
        )?;
        at = end;
    }
    Ok(finish(out, at))
}

/// Bytes of one int8 layer's data in a file: its weights, biases, weight
/// scales and requantization pairs, each padded to the format's alignment.
pub const fn int8_layer_len(in_features: usize, out_features: usize) -> usize {
    padded(in_features * out_features) + 2 * padded(4 * out_features) + padded(8 * out_features)
}

/// The activation table ([`ActivationTable`]) of `activation` for a
/// pre-activation quantized by `pre` and an output quantized by `out`:
/// entry `i` is `saturate(round(f(pre.scale · (i − 128 − pre.zero)) / out.scale) + out.zero)`
/// (halves away from zero; NaN gives `out.zero`), computed in `f32`.
pub fn activation_table(activation: Activation, pre: QuantParams, out: QuantParams) -> [i8; 256] {
    core::array::from_fn(|i| {
        let x = pre.scale * (i as i32 - 128 - pre.zero) as f32;
        let v = activation.apply(x) / out.scale;
        // NaN becomes 0 through `as`; out-of-range values saturate.
        (libm::roundf(v) as i32)
            .saturating_add(out.zero)
            .clamp(-128, 127) as i8
    })
}

/// Quantizes one f32 dense layer (`weight` `[out, in]` row-major, `bias`
/// `[out]`) into `out`, its int8 data as a file holds it, for an input
/// quantized by `qin` and an output quantized by `qout`: symmetric per-row
/// weights, biases in accumulator units folded for the kernels' unsigned
/// input, Q31 requantization pairs ([`int8_layer_len`] bytes). With `table`,
/// `(activation, pre)` for an activation other than ReLU and the identity,
/// the pairs lead to the pre-activation quantization `pre` instead and the
/// activation table ([`activation_table`]) follows
/// ([`ActivationTable::FILE_LEN`] bytes more).
#[allow(clippy::too_many_arguments)]
pub fn quantize_layer(
    weight: &[f32],
    bias: &[f32],
    in_features: usize,
    out_features: usize,
    qin: QuantParams,
    qout: QuantParams,
    table: Option<(Activation, QuantParams)>,
    out: &mut [u8],
) -> Result<(), FormatError> {
    let (n_in, n_out) = (in_features, out_features);
    let ([_, _, _, _, (t_off, _)], end) = layer_parts(true, table.is_some(), n_in, n_out, 0)
        .ok_or(FormatError::BadShape { layer: 0 })?;
    let out = out
        .get_mut(..end)
        .ok_or(FormatError::BufferTooSmall { needed: end })?;
    let Some((activation, pre)) = table else {
        return quantize_parts(weight, bias, n_in, n_out, qin, qout, out);
    };
    if !(pre.scale.is_finite() && pre.scale > 0.0 && (-128..=127).contains(&pre.zero)) {
        return Err(FormatError::BadQuantization { layer: 0 });
    }
    // The pairs lead to the table's pre-activation.
    let (parts, table_part) = out.split_at_mut(t_off);
    quantize_parts(weight, bias, n_in, n_out, qin, pre, parts)?;
    table_part.fill(0);
    table_part[..4].copy_from_slice(&pre.scale.to_le_bytes());
    table_part[4..8].copy_from_slice(&pre.zero.to_le_bytes());
    for (b, v) in table_part[16..]
        .iter_mut()
        .zip(activation_table(activation, pre, qout))
    {
        *b = v as u8;
    }
    Ok(())
}

/// The first four parts of [`quantize_layer`] ([`int8_layer_len`] bytes,
/// at the start of `out`), the pairs leading to `qreq`. (No activation math:
/// the write-back on a device links this.)
fn quantize_parts(
    weight: &[f32],
    bias: &[f32],
    n_in: usize,
    n_out: usize,
    qin: QuantParams,
    qreq: QuantParams,
    out: &mut [u8],
) -> Result<(), FormatError> {
    let ([(w_off, _), (b_off, _), (s_off, _), (r_off, _), _], end) =
        layer_parts(true, false, n_in, n_out, 0).ok_or(FormatError::BadShape { layer: 0 })?;
    if n_in == 0 || weight.len() != n_in * n_out || bias.len() != n_out {
        return Err(FormatError::BadShape { layer: 0 });
    }
    let out = out
        .get_mut(..end)
        .ok_or(FormatError::BufferTooSmall { needed: end })?;
    out.fill(0);
    for (o, (row, &b)) in weight.chunks_exact(n_in).zip(bias).enumerate() {
        let max = row.iter().fold(0.0f32, |m, &w| m.max(w.abs()));
        let ws = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            1.0
        };
        let mut wsum = 0i32;
        for (j, &w) in row.iter().enumerate() {
            let q = (libm::roundf(w / ws) as i32).clamp(-127, 127);
            wsum += q;
            out[w_off + int8_weight_offset(o, j, n_out, n_in)] = q as i8 as u8;
        }
        let bq = bias_of(b, qin.scale, ws);
        // Folded for the kernels' unsigned input `q + 128`.
        let folded = bq.saturating_sub((qin.zero + 128).saturating_mul(wsum));
        out[b_off + 4 * o..b_off + 4 * o + 4].copy_from_slice(&folded.to_le_bytes());
        out[s_off + 4 * o..s_off + 4 * o + 4].copy_from_slice(&ws.to_le_bytes());
        let (m, s) = multiplier_of(qin.scale, ws, qreq.scale);
        out[r_off + 8 * o..r_off + 8 * o + 4].copy_from_slice(&m.to_le_bytes());
        out[r_off + 8 * o + 4..r_off + 8 * o + 8].copy_from_slice(&s.to_le_bytes());
    }
    Ok(())
}

/// Writes `model`, an int8 model read from a file, with its last layer
/// replaced by the f32 `weight` and `bias` (a head trained on the device),
/// quantized for the input quantization the file gives that layer and the
/// output quantization `qout` (from the range of the new head's outputs,
/// [`QuantParams::from_range`]). The file goes to `emit` in pieces as it is
/// made, its CRC last, so no copy of the model is needed: the other layers'
/// bytes are passed on from where the model lies (flash). `scratch` holds
/// the new layer's data ([`int8_layer_len`] bytes). Returns the file's length.
///
/// A last layer with an activation table ([`ActivationTable`]: an activation
/// other than ReLU and the identity) keeps it, with the pre-activation and
/// output quantization it was made for (a device does not evaluate
/// activation functions): the new weights are requantized to that
/// pre-activation, and `qout`, still checked, is not used.
///
/// The result is a valid file of the same architecture, which
/// [`Model::parse`] accepts and `ember eval` evaluates.
pub fn write_with_last_layer(
    model: &Model<'_>,
    weight: &[f32],
    bias: &[f32],
    qout: QuantParams,
    scratch: &mut [u8],
    emit: &mut dyn FnMut(&[u8]) -> Result<(), FormatError>,
) -> Result<usize, FormatError> {
    let (header, data) = match model.file_parts() {
        Some(parts) if model.is_int8() => parts,
        _ => return Err(FormatError::Unsupported),
    };
    let last = model.layer_count() - 1;
    let (h, w) = model
        .layer(last)
        .ok_or(FormatError::BadShape { layer: last })?;
    if !(qout.scale.is_finite() && qout.scale > 0.0 && (-128..=127).contains(&qout.zero)) {
        return Err(FormatError::BadQuantization { layer: last });
    }
    let table = match w {
        LayerWeights::Int8 { table, .. } => table,
        LayerWeights::F32 { .. } => None,
    };
    let len = int8_layer_len(h.in_features, h.out_features);
    let qin = QuantParams {
        scale: h.in_scale,
        zero: h.in_zero,
    };
    // With a table, the output quantization stays the file's.
    let qout = match table {
        Some(_) => QuantParams {
            scale: h.out_scale,
            zero: h.out_zero,
        },
        None => qout,
    };
    let qreq = table.map_or(qout, |t| t.pre());
    quantize_parts(
        weight,
        bias,
        h.in_features,
        h.out_features,
        qin,
        qreq,
        scratch,
    )
    .map_err(|e| match e {
        FormatError::BadShape { .. } => FormatError::BadShape { layer: last },
        e => e,
    })?;
    // The last layer's data ends the file's data (the format is canonical),
    // its table part (if any) last.
    let record = FIXED + RECORD * last;
    let start = rd_u32(header, record + 16) as usize;
    let table_len = if table.is_some() {
        ActivationTable::FILE_LEN
    } else {
        0
    };
    if start + len + table_len != data.len() {
        return Err(FormatError::BadOffset { layer: last });
    }
    let mut crc = 0;
    let mut total = 0;
    let mut put = |bytes: &[u8]| -> Result<(), FormatError> {
        crc = super::crc32(crc, bytes);
        total += bytes.len();
        emit(bytes)
    };
    // The header, with the last layer's output quantization replaced.
    put(&header[..record + 40])?;
    put(&qout.scale.to_le_bytes())?;
    put(&qout.zero.to_le_bytes())?;
    put(&header[record + 48..])?;
    put(&data[..start])?;
    put(&scratch[..len])?;
    put(&data[start + len..])?;
    let crc = crc.to_le_bytes();
    emit(&crc)?;
    Ok(total + crc.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 32-bit rescale of small inputs is `requantize`'s, on every
    /// shift it takes, every input, and multipliers from 0 to 2^31 − 1.
    #[test]
    fn small_rescale_is_requantize() {
        let mut rng = crate::Rng::new(29);
        for shift in -40..40 {
            for i in 0..200 {
                let m = match i {
                    0 => 0,
                    1 => i32::MAX,
                    2 => 1 << 30,
                    _ => (rng.next_u32() >> 1) as i32,
                };
                let Some(r) = Multiplier::new(m, shift).small() else {
                    assert!(!(9..=22).contains(&shift));
                    continue;
                };
                for x in -255..=255 {
                    assert_eq!(r.apply(x), requantize(x, m, shift), "{x} {m} {shift}");
                }
            }
        }
    }

    #[test]
    fn multiplier_round_trips() {
        for &real in &[0.5, 0.25, 0.001234, 0.9999, 1.5, 3.0e-5] {
            let (m, s) = quantize_multiplier(real);
            let back = f64::from(m) * 2f64.powi(s - 31);
            assert!((back / real - 1.0).abs() < 1e-8, "{real} -> {m} {s}");
            for acc in [-100_000, -7, 0, 3, 12_345, 1 << 20] {
                let want = (f64::from(acc) * real).round();
                let got = f64::from(requantize(acc, m, s));
                assert!((got - want).abs() <= 1.0, "{acc} * {real}: {got} vs {want}");
            }
        }
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        assert_eq!(requantize(i32::MAX, i32::MAX, 30), i32::MAX);
    }

    proptest::proptest! {
        /// The fast path gives the 64-bit formula's results.
        #[test]
        fn requantize_matches_the_wide_formula(
            acc in proptest::prelude::any::<i32>(),
            m in 0i32..=i32::MAX,
            shift in -31i32..=30,
        ) {
            let s = 31 - shift;
            let want = ((i64::from(acc) * i64::from(m) + (1i64 << (s - 1))) >> s)
                .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
            proptest::prop_assert_eq!(requantize(acc, m, shift), want);
        }
    }

    /// The `f64` formulas that [`multiplier_of`] and [`bias_of`] replace.
    fn reference(b: f32, qin: f32, ws: f32, qout: f32) -> ((i32, i32), i32) {
        let acc_scale = f64::from(qin) * f64::from(ws);
        let bq = libm::round(f64::from(b) / acc_scale)
            .clamp(i32::MIN as f64 / 2.0, i32::MAX as f64 / 2.0) as i32;
        (quantize_multiplier(acc_scale / f64::from(qout)), bq)
    }

    fn check_exact(b: f32, qin: f32, ws: f32, qout: f32) {
        let (m, bq) = reference(b, qin, ws, qout);
        assert_eq!(
            multiplier_of(qin, ws, qout),
            m,
            "multiplier {qin:e} {ws:e} {qout:e}"
        );
        assert_eq!(bias_of(b, qin, ws), bq, "bias {b:e} / ({qin:e} · {ws:e})");
    }

    #[test]
    fn integer_write_back_arithmetic_is_the_f64_one_at_the_edges() {
        let scales = [
            1.0,
            0.5,
            1.0 / 255.0,
            6.0 / 255.0,
            0.007_874_016,
            3.0e-5,
            1.0e-30,
            f32::MIN_POSITIVE,
            1.4e-45,
            1.0e-42,
            1.0e30,
            f32::MAX,
            0.0,
        ];
        let biases = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            1.0e-3,
            -7.25,
            1.0e9,
            -1.0e9,
            3.0e38,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1.4e-45,
        ];
        for &qin in &scales {
            for &ws in &scales {
                for &qout in scales.iter().filter(|&&s| s > 0.0) {
                    for &b in &biases {
                        check_exact(b, qin, ws, qout);
                    }
                }
            }
        }
        // Quotients exactly halfway for the bias: 2.5 = 5 / 2 and 0.5.
        check_exact(5.0, 2.0, 1.0, 1.0);
        check_exact(-5.0, 2.0, 1.0, 1.0);
        check_exact(1.0, 2.0, 1.0, 1.0);
        check_exact(3.0, 2.0, 1.0, 1.0);
    }

    proptest::proptest! {
        /// Bit for bit the `f64` formulas, for any finite positive scales
        /// and any bias.
        #[test]
        fn integer_write_back_arithmetic_is_the_f64_one(
            b in proptest::prelude::any::<f32>(),
            qin_bits in 1u32..0x7f80_0000,
            ws_bits in 1u32..0x7f80_0000,
            qout_bits in 1u32..0x7f80_0000,
            near in proptest::prelude::any::<bool>(),
        ) {
            let (qin, ws, qout) = (
                f32::from_bits(qin_bits),
                f32::from_bits(ws_bits),
                f32::from_bits(qout_bits),
            );
            check_exact(b, qin, ws, qout);
            // Scales as a model's are (near 1/127 and 1/255), and biases near them.
            if near {
                let (qin, ws, qout) = (
                    f32::from_bits(0x3c00_0000 | (qin_bits & 0x7f_ffff)),
                    f32::from_bits(0x3c00_0000 | (ws_bits & 0x7f_ffff)),
                    f32::from_bits(0x3b80_0000 | (qout_bits & 0x7f_ffff)),
                );
                let b = (b % 64.0) * qin * ws;
                check_exact(b, qin, ws, qout);
                check_exact(b.round(), 1.0, 1.0, qout);
            }
        }
    }

    fn check_dequantized(u: i64, qin: f32, ws: f32) {
        let want = (u as f64 * f64::from(qin) * f64::from(ws)) as f32;
        let got = dequantize_bias(u, qin, ws);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{u} · {qin:e} · {ws:e}: {got:e} vs {want:e}"
        );
    }

    #[test]
    fn integer_dequantized_bias_is_the_f64_one_at_the_edges() {
        let scales = [
            1.0,
            -1.0,
            0.007_874_016,
            1.0e-30,
            f32::MIN_POSITIVE,
            1.4e-45,
            1.0e-42,
            1.0e30,
            f32::MAX,
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NAN,
        ];
        let us = [
            0,
            1,
            -1,
            3,
            -12_345,
            1 << 40,
            (1 << 53) + 1,
            (1 << 54) + 3,
            i64::MAX,
            i64::MIN,
            -(1 << 31) - 7,
        ];
        for &qin in &scales {
            for &ws in &scales {
                for &u in &us {
                    check_dequantized(u, qin, ws);
                }
            }
        }
    }

    proptest::proptest! {
        /// Bit for bit the `f64` formula, for any finite scales.
        #[test]
        fn integer_dequantized_bias_is_the_f64_one(
            u in proptest::prelude::any::<i64>(),
            small in -(1i64 << 40)..(1i64 << 40),
            qin_bits in proptest::prelude::any::<u32>(),
            ws_bits in proptest::prelude::any::<u32>(),
        ) {
            let (qin, ws) = (f32::from_bits(qin_bits), f32::from_bits(ws_bits));
            check_dequantized(u, qin, ws);
            check_dequantized(small, qin, ws);
            // Scales as a model's are, near 1/255 and 1/127.
            let (qin, ws) = (
                f32::from_bits(0x3b80_0000 | (qin_bits & 0x7f_ffff)),
                f32::from_bits(0x3c00_0000 | (ws_bits & 0x7f_ffff)),
            );
            check_dequantized(small, qin, ws);
        }
    }

    #[test]
    fn int8_layer_len_is_the_layout_of_a_file() {
        for (i, o) in [(1, 1), (6, 16), (64, 10), (784, 128), (3, 5), (17, 33)] {
            let (_, end) = layer_parts(true, false, i, o, 0).unwrap();
            assert_eq!(int8_layer_len(i, o), end, "{i}x{o}");
        }
    }

    #[test]
    fn range_params_cover_zero() {
        let q = QuantParams::from_range(0.0, 6.0);
        assert_eq!(q.zero, -128);
        assert!((q.scale - 6.0 / 255.0).abs() < 1e-7);
        let q = QuantParams::from_range(-1.0, 1.0);
        assert!(q.zero == 0 || q.zero == -1);
        assert_eq!(QuantParams::from_range(f32::NAN, f32::NAN).scale, 1.0);
        assert_eq!(QuantParams::from_range(f32::NEG_INFINITY, 1.0).scale, 1.0);
        // Found by fuzzing (fuzz/fuzz_targets/emb.rs): a range whose step
        // underflows gave scale 0, which `quantize` wrote and `parse` refused.
        for max in [1.35e-43, f32::MIN_POSITIVE, 1e-36] {
            let q = QuantParams::from_range(0.0, max);
            assert!(q.scale.is_normal() && q.scale > 0.0, "{max}: {q:?}");
        }
    }
}
