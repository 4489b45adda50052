//! Reading (zero-copy, validated) and writing the deployable weight format.

use super::{crc32, Activation, QuantParams};
use crate::nn::{Layer, LayerKind, Module, Signature};

/// The format version this crate writes. It reads it, and version 1 f32
/// files (the same layout); version 1 int8 files (weights row-major, biases
/// folded for `i8` input) must be exported again.
pub const VERSION: u16 = 2;
/// Most dense layers a file may hold.
pub const MAX_LAYERS: usize = 16;
pub(crate) const MAGIC: [u8; 4] = *b"EMBR";
pub(crate) const FIXED: usize = 32;
pub(crate) const RECORD: usize = 48;
pub(crate) const ALIGN: usize = 16;
pub(crate) const DTYPE_F32: u8 = 0;
pub(crate) const DTYPE_I8: u8 = 1;
/// The flags byte (offset 24): bit 0, an int8 file standardizes its real
/// inputs ([`InputStep`]) before quantizing them; bit 1, an int8 file's
/// layers whose activation is neither ReLU nor the identity have an
/// activation table ([`ActivationTable`]); the other bits are zero.
pub(crate) const FLAGS: usize = 24;
pub(crate) const FLAG_INPUT_STEP: u8 = 1;
pub(crate) const FLAG_TABLES: u8 = 2;

/// Why a weight file was rejected.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FormatError {
    /// Fewer bytes than a header.
    TooShort,
    /// The first four bytes are not `EMBR`.
    BadMagic,
    /// A version this build does not read.
    UnsupportedVersion(u16),
    /// An unknown data type code.
    BadDtype(u8),
    /// No layers, or more than [`MAX_LAYERS`].
    BadLayerCount(u8),
    /// The header length is not what the layer count implies.
    BadHeaderLength,
    /// The file's length differs from what its header says.
    LengthMismatch {
        /// Bytes the header implies.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// The checksum does not match: the file is corrupt.
    Crc {
        /// Stored CRC.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// A layer has an unknown activation code.
    BadActivation {
        /// Which layer.
        layer: usize,
    },
    /// A layer's data lies outside the file, overlaps the header, or is misaligned.
    BadOffset {
        /// Which layer.
        layer: usize,
    },
    /// A layer's input width differs from the previous layer's output width, or is zero.
    BadShape {
        /// Which layer.
        layer: usize,
    },
    /// A layer's quantization parameters are not finite and positive.
    BadQuantization {
        /// Which layer.
        layer: usize,
    },
    /// The bytes do not start at a 4-byte boundary (embed them in [`Aligned`](super::Aligned)).
    Misaligned,
    /// This target is big-endian; the format is little-endian and read in place.
    BigEndian,
    /// The file describes a different model than the type it is loaded for.
    SignatureMismatch {
        /// First layer that differs.
        layer: usize,
        /// That layer in the file (`None`: the file has fewer layers).
        file: Option<DenseSignature>,
        /// That layer in the type (`None`: the type has fewer layers, or
        /// an activation there follows no dense layer).
        expected: Option<DenseSignature>,
    },
    /// The model cannot be stored in this format (e.g. an activation with no dense layer before it).
    Unsupported,
    /// The output buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// A reserved or padding byte is not zero, or an activation without a
    /// parameter has a non-zero one (`None`: in the fixed header).
    Reserved {
        /// Which layer's record or data.
        layer: Option<usize>,
    },
    /// An int8 layer's input quantization differs from the previous layer's
    /// output quantization.
    QuantizationChain {
        /// Which layer.
        layer: usize,
    },
    /// An int8 layer's activation is neither ReLU nor the identity and the
    /// layer has no activation table ([`ActivationTable`]): a file written
    /// before int8 activations were tables (they went through f32 then).
    /// Quantize the model again.
    MissingActivationTable {
        /// Which layer.
        layer: usize,
    },
    /// The input standardization ([`InputStep`]) has an offset that is not
    /// finite or a scale that is not finite and positive, or is in a file
    /// that is not int8.
    BadInputStep,
    /// A graph file's node reads a node that is not before it, reads the
    /// wrong number of nodes, is read by none (and is not the output), or
    /// is an input anywhere but first (`layer`: the node).
    BadGraph {
        /// Which node.
        layer: usize,
    },
    /// A convolution's or a pooling's window does not fit its input and
    /// output, or a node has a window it does not use.
    BadGeometry {
        /// Which node.
        layer: usize,
    },
    /// A node's output lies outside the arena, over a buffer still to be
    /// read, or the arena is longer than the plan needs.
    BadArena {
        /// Which node.
        layer: usize,
    },
    /// A graph file (version 3: convolutions, pooling, residual
    /// additions) given to [`Model::parse`], which reads chains of dense
    /// layers: read it with [`GraphModel::parse`](super::GraphModel::parse).
    GraphFile,
    /// Reading parameters from memory failed.
    Memory(crate::Error),
    /// The destination of a streamed write refused the bytes.
    Output,
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FormatError::TooShort => write!(f, "too short to be an Ember weight file"),
            FormatError::BadMagic => write!(f, "not an Ember model (bad magic)"),
            FormatError::UnsupportedVersion(v) => write!(
                f,
                "format version {v} is not supported (this build reads {VERSION}, and 1 for f32; export the model again)"
            ),
            FormatError::BadDtype(d) => write!(f, "unknown data type code {d}"),
            FormatError::BadLayerCount(n) => write!(f, "bad layer count {n} (1 to {MAX_LAYERS})"),
            FormatError::BadHeaderLength => {
                write!(f, "header length does not match the layer count")
            }
            FormatError::LengthMismatch { expected, found } => {
                write!(
                    f,
                    "truncated or padded: header implies {expected} bytes, found {found}"
                )
            }
            FormatError::Crc { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt")
            }
            FormatError::BadActivation { layer } => write!(f, "layer {layer}: unknown activation"),
            FormatError::BadOffset { layer } => write!(
                f,
                "layer {layer}: data not where the format puts it (out of bounds, misaligned, overlapping or with gaps)"
            ),
            FormatError::BadShape { layer } => write!(
                f,
                "layer {layer}: input width does not match the previous layer"
            ),
            FormatError::BadQuantization { layer } => {
                write!(f, "layer {layer}: invalid quantization parameters")
            }
            FormatError::Misaligned => write!(f, "weight bytes are not 4-byte aligned"),
            FormatError::BigEndian => {
                write!(f, "big-endian targets cannot read the format in place")
            }
            FormatError::SignatureMismatch {
                layer,
                file,
                expected,
            } => {
                let side = |f: &mut core::fmt::Formatter<'_>, s: &Option<DenseSignature>| match s
                {
                    Some(s) => write!(f, "{s}"),
                    None => f.write_str("no layer"),
                };
                write!(f, "the file describes a different model: layer {layer} is ")?;
                side(f, file)?;
                f.write_str(" in the file, ")?;
                side(f, expected)?;
                f.write_str(" in the type")
            }
            FormatError::Unsupported => write!(f, "this model cannot be stored in the format"),
            FormatError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small ({needed} bytes needed)")
            }
            FormatError::Reserved { layer: None } => {
                write!(f, "a reserved header byte is not zero")
            }
            FormatError::Reserved { layer: Some(l) } => {
                write!(f, "layer {l}: a reserved or padding byte is not zero")
            }
            FormatError::QuantizationChain { layer } => write!(
                f,
                "layer {layer}: input quantization differs from the previous layer's output"
            ),
            FormatError::MissingActivationTable { layer } => write!(
                f,
                "layer {layer}: this int8 activation has no lookup table (the file predates int8 activation tables): quantize the model again (`ember export`)"
            ),
            FormatError::BadInputStep => write!(
                f,
                "the input standardization is invalid (an offset not finite, a scale not finite and positive, or an f32 file)"
            ),
            FormatError::BadGraph { layer } => write!(
                f,
                "node {layer}: reads a node that is not before it, or is read by none"
            ),
            FormatError::BadGeometry { layer } => write!(
                f,
                "node {layer}: its window (kernel, stride, padding, dilation, groups) does not fit its shapes"
            ),
            FormatError::BadArena { layer } => write!(
                f,
                "node {layer}: its output is outside the arena or over a buffer still to be read"
            ),
            FormatError::GraphFile => write!(
                f,
                "a graph file (format version 3: convolutions, pooling, residual additions): read it with GraphModel::parse"
            ),
            FormatError::Memory(e) => write!(f, "reading parameters: {e}"),
            FormatError::Output => write!(f, "the destination refused the bytes"),
        }
    }
}

impl core::error::Error for FormatError {}

impl From<crate::Error> for FormatError {
    fn from(e: crate::Error) -> Self {
        FormatError::Memory(e)
    }
}

/// A dense layer's record in the header.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LayerHeader {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Activation applied to the output.
    pub activation: Activation,
    /// int8: scale of the input.
    pub in_scale: f32,
    /// int8: zero point of the input.
    pub in_zero: i32,
    /// int8: scale of the output.
    pub out_scale: f32,
    /// int8: zero point of the output.
    pub out_zero: i32,
}

/// A dense layer as a model's signature describes it: its widths and the
/// activation after it (what [`Model::load`] compares).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DenseSignature {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Activation applied to the output.
    pub activation: Activation,
}

impl From<LayerHeader> for DenseSignature {
    fn from(h: LayerHeader) -> Self {
        DenseSignature {
            in_features: h.in_features,
            out_features: h.out_features,
            activation: h.activation,
        }
    }
}

/// On a device the activation goes out as the format's code (0 identity,
/// 1 ReLU, 2 sigmoid, 3 tanh, ...: [`Activation::encode`]), which costs a
/// few bytes of flash where the activations' names would cost a few
/// hundred; the host's `Display` names it.
#[cfg(feature = "defmt")]
impl defmt::Format for DenseSignature {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Linear({=usize}, {=usize}) + activation {=u8}",
            self.in_features,
            self.out_features,
            self.activation.encode().0
        )
    }
}

impl core::fmt::Display for DenseSignature {
    /// `Linear(784, 128) + ReLU()`, as PyTorch prints the modules.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Linear({}, {})", self.in_features, self.out_features)?;
        match self.activation {
            Activation::Identity => Ok(()),
            a => write!(f, " + {}", a.module_name()),
        }
    }
}

/// A dense layer's parameters, pointing into the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerWeights<'a> {
    /// f32 weight `[out, in]` and bias `[out]`.
    F32 {
        /// Weight, row-major `[out, in]`.
        weight: &'a [f32],
        /// Bias.
        bias: &'a [f32],
    },
    /// int8 weight `[out, in]` (symmetric, per output channel), i32 bias
    /// (with the input zero point folded in), per-channel weight scales, and
    /// per-channel requantization (multiplier, shift) pairs.
    Int8 {
        /// Weight, row-major `[out, in]`.
        weight: &'a [i8],
        /// Bias in accumulator units, minus `in_zero · Σ w`.
        bias: &'a [i32],
        /// Weight scale per output channel.
        scales: &'a [f32],
        /// `[multiplier, shift]` per output channel: to the output
        /// quantization, or for a layer with an activation table to its
        /// pre-activation quantization.
        requant: &'a [i32],
        /// The activation as a table, for an activation other than ReLU
        /// and the identity (and only then).
        table: Option<&'a ActivationTable>,
    },
}

/// An int8 layer's activation as a lookup table, computed when the model
/// is quantized (as TFLite Micro does): the accumulator is requantized to
/// an int8 pre-activation `q` (quantization [`pre`](Self::pre)), and the
/// output is `values[q + 128]`. Entry `i` is
/// `saturate(round(f(pre_scale · (i − 128 − pre_zero)) / out_scale) + out_zero)`
/// ([`activation_table`](super::activation_table)); a device only looks it
/// up, so every target gives the same bytes.
///
/// In a file: one more part after the layer's requantization pairs, at
/// the next 16-byte boundary, laid out as this type is
/// ([`FILE_LEN`](Self::FILE_LEN) bytes, read in place): the pre-activation
/// scale (`f32`) and zero point (`i32`), 8 zero bytes, the 256 entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActivationTable {
    /// The pre-activation's scale (finite, positive).
    pub pre_scale: f32,
    /// The pre-activation's zero point (`-128..=127`).
    pub pre_zero: i32,
    reserved: [u8; 8],
    /// The outputs, indexed by the pre-activation `q + 128`.
    pub values: [i8; 256],
}

const _: () = assert!(core::mem::size_of::<ActivationTable>() == ActivationTable::FILE_LEN);

impl ActivationTable {
    /// Bytes of a table's part in a file (the size of this type).
    pub const FILE_LEN: usize = 272;

    /// A table of `values` for a pre-activation quantized by `pre`.
    pub const fn new(pre: QuantParams, values: [i8; 256]) -> Self {
        ActivationTable {
            pre_scale: pre.scale,
            pre_zero: pre.zero,
            reserved: [0; 8],
            values,
        }
    }

    /// The pre-activation's quantization.
    pub fn pre(&self) -> QuantParams {
        QuantParams {
            scale: self.pre_scale,
            zero: self.pre_zero,
        }
    }

    /// Whether an int8 layer with `activation` has a table: every
    /// activation but ReLU and the identity (which the kernels compute in
    /// integers).
    pub const fn needed(activation: Activation) -> bool {
        !matches!(activation, Activation::Identity | Activation::Relu)
    }

    /// The output for the requantized accumulator `q` (before the
    /// pre-activation zero point is added).
    #[inline(always)]
    pub(crate) fn lookup(values: &[i8; 256], pre_zero: i32, q: i32) -> i8 {
        values[(q.saturating_add(pre_zero).clamp(-128, 127) + 128) as usize]
    }

    /// Whether the pre-activation quantization is valid.
    pub(crate) fn valid(&self) -> bool {
        self.pre_scale.is_finite() && self.pre_scale > 0.0 && (-128..=127).contains(&self.pre_zero)
    }

    /// Whether the reserved bytes are zero.
    pub(crate) fn reserved_zero(&self) -> bool {
        self.reserved == [0; 8]
    }
}

/// The standardization an int8 model applies to its real inputs before it
/// quantizes them: feature `j` becomes `(x[j] − offset[j]) / scale[j]`, the
/// scaling the model was trained behind (fitted on its training data), so
/// that the device takes raw features as the host's f32 model does.
///
/// An f32 file folds such a scaling into its first layer's weights, which
/// is exact up to rounding; an int8 one cannot: its input has one
/// quantization step for every feature, and raw features of different
/// magnitudes (a sensor's 0.1 and 1,600) would lose the small ones to it.
/// So the int8 file keeps the step (format flag bit 0, two `f32` arrays
/// before the first layer's data) and its first layer sees standardized
/// features, quantized with one step as they were calibrated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputStep<'a> {
    /// Subtracted from each feature.
    pub offset: &'a [f32],
    /// Each feature's difference is divided by it (finite, positive).
    pub scale: &'a [f32],
}

impl InputStep<'_> {
    /// Bytes the step over `features` inputs takes in a file: the offsets,
    /// then the scales, each padded to the format's alignment.
    pub const fn file_len(features: usize) -> usize {
        2 * padded(4 * features)
    }

    /// Features it standardizes.
    pub fn features(&self) -> usize {
        self.offset.len()
    }

    /// Feature `j` of `x` standardized: `(x − offset[j]) / scale[j]`.
    #[inline]
    pub fn apply(&self, j: usize, x: f32) -> f32 {
        (x - self.offset[j]) / self.scale[j]
    }

    /// Whether it is well-formed for `features` inputs: both arrays that
    /// long, offsets finite, scales finite and positive.
    pub(crate) fn valid(&self, features: usize) -> bool {
        self.offset.len() == features
            && self.scale.len() == features
            && self.offset.iter().all(|o| o.is_finite())
            && self.scale.iter().all(|&s| s.is_finite() && s > 0.0)
    }
}

/// A parsed, validated model whose weights point into the bytes it came from.
///
/// Small (a few words): the layer records are decoded from the bytes when
/// used, so a model costs no RAM for a layer table on a microcontroller.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    pub(crate) int8: bool,
    source: Source<'a>,
    count: usize,
    /// The widest activation a layer produces (the input is read in place).
    pub(crate) max_width: usize,
    /// An int8 model's arena ([`int8_arena`]); 0 for an f32 model.
    pub(crate) arena: usize,
    /// Every int8 layer's requantization pairs take the 32-bit path
    /// (`quant::requant_is_fast`): the DSP kernel's own epilogue may run.
    pub(crate) fast_requant: bool,
    input: usize,
    output: usize,
    /// An int8 model's input standardization, if it has one.
    step: Option<InputStep<'a>>,
}

/// An int8 model's arena (see [`Model::scratch_len`]): the largest
/// `in + out` of the layers after the first (`pairs`), the first layer's
/// output, and beside it the first layer's `i8` input flipped (`in0`), when
/// it is no wider than the widest activation (as with two buffers of that
/// width, the plan before). 0 for an f32 model.
fn int8_arena(int8: bool, in0: usize, out0: usize, pairs: usize, max_width: usize) -> usize {
    if !int8 {
        return 0;
    }
    let first = if in0 <= max_width {
        in0.saturating_add(out0)
    } else {
        out0
    };
    pairs.max(first)
}

/// Where a model's layers are.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    /// A validated file: its header and data parts.
    File { header: &'a [u8], data: &'a [u8] },
    /// Layer tables in memory ([`Model::from_layers`]).
    Tables(&'a [(LayerHeader, LayerWeights<'a>)]),
}

/// The layers of a [`Model`], in order.
#[derive(Clone, Debug)]
pub struct Layers<'m, 'a> {
    model: &'m Model<'a>,
    next: usize,
}

impl<'a> Iterator for Layers<'_, 'a> {
    type Item = (LayerHeader, LayerWeights<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let l = self.model.layer(self.next)?;
        self.next += 1;
        Some(l)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.model.count.saturating_sub(self.next);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Layers<'_, '_> {}

pub(crate) fn rd_u32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}
pub(crate) fn rd_f32(b: &[u8], at: usize) -> f32 {
    f32::from_bits(rd_u32(b, at))
}
fn rd_i32(b: &[u8], at: usize) -> i32 {
    rd_u32(b, at) as i32
}

/// Reinterprets `len` elements at `data[off..]` in place.
pub(crate) fn view<T: Pod>(
    data: &[u8],
    off: usize,
    len: usize,
    layer: usize,
) -> Result<&[T], FormatError> {
    let size = core::mem::size_of::<T>();
    let bytes = len
        .checked_mul(size)
        .ok_or(FormatError::BadOffset { layer })?;
    let end = off
        .checked_add(bytes)
        .ok_or(FormatError::BadOffset { layer })?;
    let slice = data.get(off..end).ok_or(FormatError::BadOffset { layer })?;
    if !(slice.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>()) {
        return Err(FormatError::BadOffset { layer });
    }
    // SAFETY: `slice` is in bounds (checked by `get`), aligned for `T`
    // (checked above) and exactly `len * size_of::<T>()` bytes long; `T` is
    // one of i8, i32, f32, for which every bit pattern is a valid value; the
    // returned slice borrows `data`, so the bytes outlive it.
    Ok(unsafe { core::slice::from_raw_parts(slice.as_ptr().cast::<T>(), len) })
}

/// Types that any bit pattern is a valid value of.
pub(crate) trait Pod: Copy {}
impl Pod for i8 {}
impl Pod for i32 {}
impl Pod for f32 {}
// SAFETY (for `view`): `repr(C)` of f32, i32, [u8; 8] and [i8; 256], no
// padding (its size is the sum, asserted above), alignment 4; any bit
// pattern is a valid value of each field.
impl Pod for ActivationTable {}

/// The data parts of a layer as the writer lays them out, `(offset, bytes)`
/// each, from `at` (relative to the data): weight, bias, and for int8 the
/// scales, the requantization pairs and, with `table`, the activation
/// table ([`ActivationTable`]; size 0 without). Every part starts on a
/// 16-byte boundary and is zero-padded to the next one.
pub(crate) fn layer_parts(
    int8: bool,
    table: bool,
    in_features: usize,
    out_features: usize,
    at: usize,
) -> Option<([(usize, usize); 5], usize)> {
    let w = in_features.checked_mul(out_features)?;
    let t = if int8 && table {
        ActivationTable::FILE_LEN
    } else {
        0
    };
    let sizes = if int8 {
        [w, 4 * out_features, 4 * out_features, 8 * out_features, t]
    } else {
        [w.checked_mul(4)?, 4 * out_features, 0, 0, 0]
    };
    let mut parts = [(0, 0); 5];
    let mut at = at;
    for (p, &size) in parts.iter_mut().zip(&sizes) {
        *p = (at, size);
        at = at.checked_add(size.checked_next_multiple_of(ALIGN)?)?;
    }
    Some((parts, at))
}

/// Decodes layer `l`'s record and views of its data (no validation beyond
/// bounds and alignment: [`Model::parse`] does that once).
fn decode_layer<'a>(
    header: &'a [u8],
    data: &'a [u8],
    l: usize,
    int8: bool,
) -> Result<(LayerHeader, LayerWeights<'a>), FormatError> {
    let r = FIXED + RECORD * l;
    let (inf, outf) = (rd_u32(header, r) as usize, rd_u32(header, r + 4) as usize);
    let activation = Activation::decode(header[r + 8], rd_f32(header, r + 12))
        .ok_or(FormatError::BadActivation { layer: l })?;
    let off = |k: usize| rd_u32(header, r + 16 + 4 * k) as usize;
    let h = LayerHeader {
        in_features: inf,
        out_features: outf,
        activation,
        in_scale: rd_f32(header, r + 32),
        in_zero: rd_i32(header, r + 36),
        out_scale: rd_f32(header, r + 40),
        out_zero: rd_i32(header, r + 44),
    };
    let wlen = inf
        .checked_mul(outf)
        .ok_or(FormatError::BadShape { layer: l })?;
    let weights = if int8 {
        let table = if header[FLAGS] & FLAG_TABLES != 0 && ActivationTable::needed(activation) {
            // Right after the requantization pairs (the canonical layout).
            let at = outf
                .checked_mul(8)
                .and_then(|b| b.checked_next_multiple_of(ALIGN))
                .and_then(|b| b.checked_add(off(3)))
                .ok_or(FormatError::BadOffset { layer: l })?;
            let part = view::<ActivationTable>(data, at, 1, l)?;
            Some(part.first().ok_or(FormatError::BadOffset { layer: l })?)
        } else {
            None
        };
        LayerWeights::Int8 {
            weight: view(data, off(0), wlen, l)?,
            bias: view(data, off(1), outf, l)?,
            scales: view(data, off(2), outf, l)?,
            requant: view(data, off(3), 2 * outf, l)?,
            table,
        }
    } else {
        LayerWeights::F32 {
            weight: view(data, off(0), wlen, l)?,
            bias: view(data, off(1), outf, l)?,
        }
    };
    Ok((h, weights))
}

impl<'a> Model<'a> {
    /// Validates `bytes` completely and returns a view of the model in them.
    /// Never panics, whatever `bytes` holds.
    ///
    /// Only the canonical layout is accepted, the one the writers produce:
    /// every data part where the writer puts it (in order, 16-byte aligned,
    /// no gap, no overlap), padding and reserved bytes zero, activation
    /// parameters zero where the activation has none, and for int8 each
    /// layer's input quantization equal to the previous layer's output
    /// quantization.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let Envelope {
            header,
            data,
            int8,
            count: n,
        } = envelope(bytes, RECORD, 1..=MAX_LAYERS, |version, int8| {
            if version == super::GRAPH_VERSION {
                Err(FormatError::GraphFile)
            } else if version == VERSION || version == 1 && !int8 {
                Ok(())
            } else {
                Err(FormatError::UnsupportedVersion(version))
            }
        })?;
        let data_len = data.len();
        // Reserved: bytes 25..32, the flags but bit 0, and the header's
        // padding after the records.
        let flags = header[FLAGS];
        if flags & !(FLAG_INPUT_STEP | FLAG_TABLES) != 0
            || (flags & FLAG_TABLES != 0 && !int8)
            || !zero(&header[FLAGS + 1..FIXED])
            || !zero(&header[FIXED + RECORD * n..])
        {
            return Err(FormatError::Reserved { layer: None });
        }
        let model_in = rd_u32(bytes, 16) as usize;
        let mut at = 0;
        let step = if flags & FLAG_INPUT_STEP != 0 {
            let step = input_step(data, model_in, int8)?;
            at = InputStep::file_len(model_in);
            Some(step)
        } else {
            None
        };
        let tables = flags & FLAG_TABLES != 0;
        let mut any_table = false;
        let mut prev_out = model_in;
        let mut prev_q = None;
        let mut max_width = 0;
        let (mut first_out, mut pairs) = (0, 0);
        let mut fast_requant = true;
        for l in 0..n {
            let (h, w) = decode_layer(header, data, l, int8)?;
            if h.in_features == 0 || h.out_features == 0 || h.in_features != prev_out {
                return Err(FormatError::BadShape { layer: l });
            }
            prev_out = h.out_features;
            max_width = max_width.max(h.out_features);
            if l == 0 {
                first_out = h.out_features;
            } else {
                pairs = pairs.max(h.in_features.saturating_add(h.out_features));
            }
            let r = FIXED + RECORD * l;
            let (_, param) = h.activation.encode();
            if !zero(&header[r + 9..r + 12]) || rd_f32(header, r + 12).to_bits() != param.to_bits()
            {
                return Err(FormatError::Reserved { layer: Some(l) });
            }
            // The canonical layout: each part where the writer puts it.
            let table = int8 && ActivationTable::needed(h.activation);
            if table && !tables {
                return Err(FormatError::MissingActivationTable { layer: l });
            }
            any_table |= table;
            let (parts, end) = layer_parts(int8, table, h.in_features, h.out_features, at)
                .ok_or(FormatError::BadShape { layer: l })?;
            for (k, &(off, size)) in parts.iter().enumerate() {
                let used = if k == 4 {
                    if size == 0 {
                        continue;
                    }
                    // The table's part: its offset is implied; 8 zero bytes
                    // after the pre-activation quantization.
                    if let LayerWeights::Int8 { table: Some(t), .. } = w {
                        if !t.reserved_zero() {
                            return Err(FormatError::Reserved { layer: Some(l) });
                        }
                    }
                    off + size
                } else if int8 || k < 2 {
                    if rd_u32(header, r + 16 + 4 * k) as usize != off {
                        return Err(FormatError::BadOffset { layer: l });
                    }
                    off + size
                } else {
                    if rd_u32(header, r + 16 + 4 * k) != 0 {
                        return Err(FormatError::Reserved { layer: Some(l) });
                    }
                    continue;
                };
                let pad_end = used.next_multiple_of(ALIGN);
                if !zero(
                    data.get(used..pad_end)
                        .ok_or(FormatError::BadOffset { layer: l })?,
                ) {
                    return Err(FormatError::Reserved { layer: Some(l) });
                }
            }
            at = end;
            match w {
                LayerWeights::Int8 {
                    scales,
                    requant,
                    table,
                    ..
                } => {
                    let ok = |s: f32| s.is_finite() && s > 0.0;
                    let zero_ok = |z: i32| (-128..=127).contains(&z);
                    if !ok(h.in_scale)
                        || !ok(h.out_scale)
                        || !zero_ok(h.in_zero)
                        || !zero_ok(h.out_zero)
                        || !scales.iter().all(|&s| s.is_finite() && s >= 0.0)
                        || !requant_ok(requant)
                        || table.is_some_and(|t| !t.valid())
                    {
                        return Err(FormatError::BadQuantization { layer: l });
                    }
                    let q = (h.in_scale.to_bits(), h.in_zero);
                    if prev_q.is_some_and(|p| p != q) {
                        return Err(FormatError::QuantizationChain { layer: l });
                    }
                    prev_q = Some((h.out_scale.to_bits(), h.out_zero));
                    fast_requant &= super::quant::all_fast(requant);
                }
                LayerWeights::F32 { .. } => {
                    if !zero(&header[r + 32..r + RECORD]) {
                        return Err(FormatError::Reserved { layer: Some(l) });
                    }
                }
            }
        }
        if at != data_len {
            return Err(FormatError::BadOffset { layer: n - 1 });
        }
        // The flag only where some layer has a table.
        if tables && !any_table {
            return Err(FormatError::Reserved { layer: None });
        }
        if rd_u32(bytes, 20) as usize != prev_out {
            return Err(FormatError::BadShape { layer: n });
        }
        Ok(Model {
            int8,
            source: Source::File { header, data },
            count: n,
            max_width,
            arena: int8_arena(int8, model_in, first_out, pairs, max_width),
            fast_requant: int8 && fast_requant,
            input: model_in,
            output: prev_out,
            step,
        })
    }

    /// A model from layer tables in memory (e.g. the `LAYERS` static that
    /// [`write_rust_source`](super::write_rust_source) generates), validated
    /// like a file.
    pub fn from_layers(layers: &'a [(LayerHeader, LayerWeights<'a>)]) -> Result<Self, FormatError> {
        let n = layers.len();
        if n == 0 || n > MAX_LAYERS {
            return Err(FormatError::BadLayerCount(n.min(255) as u8));
        }
        let int8 = matches!(layers[0].1, LayerWeights::Int8 { .. });
        let mut prev = layers[0].0.in_features;
        let mut max_width = 0;
        let mut pairs = 0;
        let mut fast_requant = int8;
        for (l, &(h, w)) in layers.iter().enumerate() {
            if h.in_features == 0 || h.out_features == 0 || h.in_features != prev {
                return Err(FormatError::BadShape { layer: l });
            }
            prev = h.out_features;
            max_width = max_width.max(prev);
            if l > 0 {
                pairs = pairs.max(h.in_features.saturating_add(h.out_features));
            }
            let wlen = h
                .in_features
                .checked_mul(h.out_features)
                .ok_or(FormatError::BadShape { layer: l })?;
            let ok = match w {
                LayerWeights::F32 { weight, bias } => {
                    !int8 && weight.len() == wlen && bias.len() == h.out_features
                }
                LayerWeights::Int8 {
                    weight,
                    bias,
                    scales,
                    requant,
                    table,
                } => {
                    match (table, ActivationTable::needed(h.activation)) {
                        (None, true) => {
                            return Err(FormatError::MissingActivationTable { layer: l })
                        }
                        (Some(t), needed) if !needed || !t.valid() => {
                            return Err(FormatError::BadQuantization { layer: l })
                        }
                        _ => {}
                    }
                    fast_requant &= super::quant::all_fast(requant);
                    int8 && weight.len() == wlen
                        && bias.len() == h.out_features
                        && scales.len() == h.out_features
                        && requant.len() == 2 * h.out_features
                }
            };
            if !ok {
                return Err(FormatError::BadOffset { layer: l });
            }
        }
        let (model_in, first_out) = (layers[0].0.in_features, layers[0].0.out_features);
        Ok(Model {
            int8,
            source: Source::Tables(layers),
            count: n,
            max_width,
            arena: int8_arena(int8, model_in, first_out, pairs, max_width),
            fast_requant,
            input: layers[0].0.in_features,
            output: prev,
            step: None,
        })
    }

    /// This model (an int8 one, e.g. from [`from_layers`](Self::from_layers))
    /// standardizing its real inputs with `step` first, as a file with an
    /// input step does: the `INPUT_STEP` that
    /// [`write_rust_source`](super::write_rust_source) generates for one.
    pub fn with_input_step(mut self, step: InputStep<'a>) -> Result<Self, FormatError> {
        if !self.int8 || !step.valid(self.input) {
            return Err(FormatError::BadInputStep);
        }
        self.step = Some(step);
        Ok(self)
    }

    /// An int8 model's input standardization ([`InputStep`]), if it has one.
    pub fn input_step(&self) -> Option<InputStep<'a>> {
        self.step
    }

    /// The header and data parts of a model parsed from a file (`None` for
    /// layer tables).
    pub(crate) fn file_parts(&self) -> Option<(&'a [u8], &'a [u8])> {
        match self.source {
            Source::File { header, data } => Some((header, data)),
            Source::Tables(_) => None,
        }
    }

    /// Layer `i`, if there is one.
    // Inlined: a layer is 68 bytes, which a call would return through a
    // copy (`memcpy`, linked for it alone on a microcontroller); inlined,
    // its callers read the fields they use.
    #[inline]
    pub fn layer(&self, i: usize) -> Option<(LayerHeader, LayerWeights<'a>)> {
        if i >= self.count {
            return None;
        }
        match self.source {
            Source::File { header, data } => decode_layer(header, data, i, self.int8).ok(),
            Source::Tables(t) => t.get(i).copied(),
        }
    }

    /// Number of dense layers.
    pub fn layer_count(&self) -> usize {
        self.count
    }

    /// [`parse`](Self::parse), then checks that the file describes the model type `M`.
    pub fn load<M: Signature>(bytes: &'a [u8]) -> Result<Self, FormatError> {
        // Checked in place and returned as parsed: a `Model` is about 1 KiB on
        // a 32-bit target, and moving it out of the `Result` and back costs
        // that much stack per copy on a microcontroller.
        let parsed = Self::parse(bytes);
        if let Ok(m) = &parsed {
            m.check_signature::<M>()?;
        }
        parsed
    }

    /// Checks that the layers match those of `M` (widths and activation kinds).
    // Out of line: its locals are not part of the caller's frame, which on a
    // microcontroller stays on the stack through the inference that follows.
    #[inline(never)]
    pub fn check_signature<M: Signature>(&self) -> Result<(), FormatError> {
        // The first difference: the layer, and the type's side of it. The
        // error itself is made once, at the end, out of line.
        type Bad = Option<(usize, Option<(usize, usize, Activation)>)>;
        let mut i = 0usize;
        let mut bad: Bad = None;
        let mut pending: Option<(usize, usize, Activation)> = None;
        let compare = |d: (usize, usize, Activation), i: &mut usize, bad: &mut Bad| {
            if bad.is_some() {
                return;
            }
            match self.layer(*i) {
                Some((h, _))
                    if h.in_features == d.0
                        && h.out_features == d.1
                        && core::mem::discriminant(&h.activation)
                            == core::mem::discriminant(&d.2) => {}
                _ => *bad = Some((*i, Some(d))),
            }
            *i += 1;
        };
        M::signature(&mut |layer| match layer {
            LayerKind::Dense {
                in_features,
                out_features,
            } => {
                if let Some(p) = pending.take() {
                    compare(p, &mut i, &mut bad);
                }
                pending = Some((in_features, out_features, Activation::Identity));
            }
            LayerKind::Activation(a) => match pending.as_mut() {
                Some(p) if p.2 == Activation::Identity => p.2 = a,
                _ => bad = bad.or(Some((i, None))),
            },
        });
        if let Some(p) = pending.take() {
            compare(p, &mut i, &mut bad);
        }
        if bad.is_none() && i != self.count {
            bad = Some((i, None));
        }
        match bad {
            Some((layer, expected)) => self.mismatch(layer, expected),
            None => Ok(()),
        }
    }

    /// Checks that the layers match those of a model value (for models whose
    /// widths are chosen at run time, such as [`Mlp`](crate::nn::Mlp)).
    pub fn check_module<M: Module>(&self, model: &M) -> Result<(), FormatError> {
        let layers = dense_layers(model)?;
        for i in 0..layers.len().max(self.count) {
            let expected = match layers.get(i) {
                Some((
                    Layer::Dense {
                        in_features,
                        out_features,
                        ..
                    },
                    a,
                )) => Some((*in_features, *out_features, *a)),
                _ => None,
            };
            let file = self
                .layer(i)
                .map(|(h, _)| (h.in_features, h.out_features, h.activation));
            if expected.is_none() || expected != file {
                return self.mismatch(i, expected);
            }
        }
        Ok(())
    }

    /// The mismatch at layer `i`: the file's layer there, and the type's
    /// (`expected`: widths and activation). Out of line and cold, so that a
    /// load that succeeds keeps the stack it had before errors said this much.
    #[cold]
    #[inline(never)]
    fn mismatch(
        &self,
        layer: usize,
        expected: Option<(usize, usize, Activation)>,
    ) -> Result<(), FormatError> {
        let sig = |(in_features, out_features, activation)| DenseSignature {
            in_features,
            out_features,
            activation,
        };
        Err(FormatError::SignatureMismatch {
            layer,
            file: self.layer(layer).map(|(h, _)| h.into()),
            expected: expected.map(sig),
        })
    }

    /// Whether the weights are int8.
    pub fn is_int8(&self) -> bool {
        self.int8
    }

    /// The dense layers, in order.
    pub fn layers(&self) -> Layers<'_, 'a> {
        Layers {
            model: self,
            next: 0,
        }
    }

    /// Input features.
    pub fn input_features(&self) -> usize {
        self.input
    }

    /// Output features.
    pub fn output_features(&self) -> usize {
        self.output
    }

    /// Scratch elements inference needs (the input is read in place). An
    /// f32 model: two activation buffers of the widest activation a layer
    /// produces. An int8 model: the largest input and output of one layer
    /// side by side (each layer writes at the other end of the arena from
    /// its input), and room for a first layer's `i8` input flipped next to
    /// its output where two buffers of the widest activation had it.
    pub fn scratch_len(&self) -> usize {
        if self.int8 {
            self.arena
        } else {
            2 * self.max_width
        }
    }

    /// Bytes of parameters (weights, biases, quantization tables).
    pub fn parameter_bytes(&self) -> usize {
        self.layers()
            .map(|(_, w)| match w {
                LayerWeights::F32 { weight, bias } => 4 * (weight.len() + bias.len()),
                LayerWeights::Int8 {
                    weight,
                    bias,
                    scales,
                    requant,
                    table,
                } => {
                    weight.len()
                        + 4 * (bias.len() + scales.len() + requant.len())
                        + table.map_or(0, |t| 8 + t.values.len())
                }
            })
            .sum::<usize>()
            + self.step.map_or(0, |s| 8 * s.features())
    }
}

/// What both file layouts share, validated: the magic, the version (by
/// `version`, given it and whether the file is int8), the data type, the
/// record count (in `counts`), the header length it implies (`record` bytes
/// a record), the file's length, the CRC and the alignment.
pub(crate) struct Envelope<'a> {
    /// Bytes `[0, H)`: the fixed header and the records.
    pub header: &'a [u8],
    /// Bytes `[H, H + D)`.
    pub data: &'a [u8],
    /// dtype 1.
    pub int8: bool,
    /// Records.
    pub count: usize,
}

/// Checks a file's [`Envelope`]; never panics, whatever `bytes` holds.
pub(crate) fn envelope(
    bytes: &[u8],
    record: usize,
    counts: core::ops::RangeInclusive<usize>,
    version: impl Fn(u16, bool) -> Result<(), FormatError>,
) -> Result<Envelope<'_>, FormatError> {
    if cfg!(target_endian = "big") {
        return Err(FormatError::BigEndian);
    }
    // Whatever the length: a file that starts otherwise is not ours.
    if bytes.iter().zip(MAGIC).any(|(&a, b)| a != b) {
        return Err(FormatError::BadMagic);
    }
    if bytes.len() < FIXED + 4 {
        return Err(FormatError::TooShort);
    }
    let int8 = match bytes[6] {
        DTYPE_F32 => false,
        DTYPE_I8 => true,
        d => return Err(FormatError::BadDtype(d)),
    };
    version(u16::from_le_bytes([bytes[4], bytes[5]]), int8)?;
    let n = bytes[7];
    if !counts.contains(&(n as usize)) {
        return Err(FormatError::BadLayerCount(n));
    }
    let n = n as usize;
    let header_len = rd_u32(bytes, 8) as usize;
    if header_len != padded(FIXED + record * n) {
        return Err(FormatError::BadHeaderLength);
    }
    let data_len = rd_u32(bytes, 12) as usize;
    let expected = header_len
        .checked_add(data_len)
        .and_then(|v| v.checked_add(4))
        .ok_or(FormatError::BadHeaderLength)?;
    if bytes.len() != expected {
        return Err(FormatError::LengthMismatch {
            expected,
            found: bytes.len(),
        });
    }
    let stored = rd_u32(bytes, header_len + data_len);
    let computed = crc32(0, &bytes[..header_len + data_len]);
    if stored != computed {
        return Err(FormatError::Crc { stored, computed });
    }
    if !(bytes.as_ptr() as usize).is_multiple_of(4) {
        return Err(FormatError::Misaligned);
    }
    Ok(Envelope {
        header: &bytes[..header_len],
        data: &bytes[header_len..header_len + data_len],
        int8,
        count: n,
    })
}

pub(crate) const fn padded(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Dense layers with their activations folded in, from a model's layer list.
pub(crate) fn dense_layers<M: Module>(
    model: &M,
) -> Result<heapless::Vec<(Layer, Activation), MAX_LAYERS>, FormatError> {
    let mut out: heapless::Vec<(Layer, Activation), MAX_LAYERS> = heapless::Vec::new();
    let mut err = None;
    model.layers(&mut |l| match l {
        Layer::Dense { .. } => {
            if out.push((l, Activation::Identity)).is_err() {
                err = Some(FormatError::BadLayerCount(u8::MAX));
            }
        }
        Layer::Activation(a) => match out.last_mut() {
            Some(last) if last.1 == Activation::Identity => last.1 = a,
            _ => err = Some(FormatError::Unsupported),
        },
    });
    match err {
        Some(e) => Err(e),
        None if out.is_empty() => Err(FormatError::Unsupported),
        None => Ok(out),
    }
}

/// Writes header fields common to both data types; returns the header length.
pub(crate) fn write_header(
    out: &mut [u8],
    int8: bool,
    layers: &[(usize, usize, Activation)],
    data_len: usize,
) -> usize {
    let header_len = padded(FIXED + RECORD * layers.len());
    out[..header_len].fill(0);
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[6] = if int8 { DTYPE_I8 } else { DTYPE_F32 };
    out[7] = layers.len() as u8;
    out[8..12].copy_from_slice(&(header_len as u32).to_le_bytes());
    out[12..16].copy_from_slice(&(data_len as u32).to_le_bytes());
    let first_in = layers.first().map_or(0, |l| l.0);
    let last_out = layers.last().map_or(0, |l| l.1);
    out[16..20].copy_from_slice(&(first_in as u32).to_le_bytes());
    out[20..24].copy_from_slice(&(last_out as u32).to_le_bytes());
    for (i, &(inf, outf, act)) in layers.iter().enumerate() {
        let r = FIXED + RECORD * i;
        out[r..r + 4].copy_from_slice(&(inf as u32).to_le_bytes());
        out[r + 4..r + 8].copy_from_slice(&(outf as u32).to_le_bytes());
        let (code, param) = act.encode();
        out[r + 8] = code;
        out[r + 12..r + 16].copy_from_slice(&param.to_le_bytes());
    }
    header_len
}

/// Sets a layer record's field (byte offset within the record) to `v`.
pub(crate) fn set_field(out: &mut [u8], layer: usize, field: usize, v: [u8; 4]) {
    let at = FIXED + RECORD * layer + field;
    out[at..at + 4].copy_from_slice(&v);
}

/// Appends the CRC after `len` bytes; returns the total length.
pub(crate) fn finish(out: &mut [u8], len: usize) -> usize {
    let crc = crc32(0, &out[..len]);
    out[len..len + 4].copy_from_slice(&crc.to_le_bytes());
    len + 4
}

/// The input step at the start of a file's data, validated (canonical
/// layout: offsets, then scales, each zero-padded to the alignment).
fn input_step(data: &[u8], features: usize, int8: bool) -> Result<InputStep<'_>, FormatError> {
    let part = padded(4 * features);
    if !int8 || features == 0 || data.len() < 2 * part {
        return Err(FormatError::BadInputStep);
    }
    let bad = |_| FormatError::BadInputStep;
    let step = InputStep {
        offset: view(data, 0, features, 0).map_err(bad)?,
        scale: view(data, part, features, 0).map_err(bad)?,
    };
    let used = 4 * features;
    if !zero(&data[used..part]) || !zero(&data[part + used..2 * part]) {
        return Err(FormatError::Reserved { layer: None });
    }
    if step.valid(features) {
        Ok(step)
    } else {
        Err(FormatError::BadInputStep)
    }
}

/// Whether every `(multiplier, shift)` pair is in range: a non-negative
/// multiplier, a shift in `-31..=30`.
pub(crate) fn requant_ok(requant: &[i32]) -> bool {
    for p in requant.chunks_exact(2) {
        if p[0] < 0 || !(-31..=30).contains(&p[1]) {
            return false;
        }
    }
    true
}

/// Whether every byte is zero.
#[inline(never)]
pub(crate) fn zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}
