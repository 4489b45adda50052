//! Inference from flash: the FashionMNIST classifier trained by `ember
//! train` (`models/`, by default the committed 784-128-64-10 ReLU model; any
//! MLP with 784 inputs, or a CNN's graph files), f32 and int8, on embedded
//! test images.
//!
//! The weight files are embedded with `include_bytes!` inside
//! [`Aligned`], so they are validated in place and their weights read from
//! flash: nothing is copied. Two kinds of files run through the same code
//! ([`Deployed`], one image at a time):
//!
//! - dense files (format version 2): [`Model::load`] checks the header, the
//!   CRC and the layer signature of [`Net`] (the type build.rs writes from
//!   the header). Inference needs [`Model::scratch_len`] elements of
//!   scratch (two activation buffers of the widest layer output, here 128;
//!   the input is read in place): int8 reads the image's pixels themselves
//!   ([`Model::infer_u8`]), f32 the pixels as floats, in a buffer of the
//!   caller.
//! - graph files (format version 3, a CNN; cfg `model_graph`, set by
//!   build.rs): `GraphModel::parse` checks the header, the CRC, every
//!   node's shapes and the arena plan; inference runs in exactly
//!   `GraphModel::scratch_len` elements, read from the header at compile
//!   time (`GRAPH_SCRATCH_F32`, `GRAPH_SCRATCH_I8`). The int8 graph reads
//!   its input quantized: each pixel `p` becomes `p / 255` quantized with
//!   the file's input quantization, as `GraphModel::quantize_input` does on
//!   the host, into a [`PIXELS`]-byte buffer at the start of the int8
//!   scratch ([`SCRATCH_I8`]); that step is timed with the inference.
//!
//! Each image's f32 class, and its int8 output vector byte for byte, are
//! compared with what the host computed with the same kernels (`cargo xtask
//! test-images`): the run passes only if they agree for every image.
//! Accuracy against the true labels is reported too. No `std`, no allocator; on the host the same code runs as
//! part of an ordinary program.

#[cfg(model_f32)]
use ember_nn_core::deploy::argmax;
#[cfg(model_graph)]
use ember_nn_core::deploy::GraphModel;
#[cfg(not(model_graph))]
use ember_nn_core::deploy::Model;
use ember_nn_core::deploy::{argmax_i8, Aligned, FormatError, InferError};
/// What build.rs writes from the files' header: for dense files the model
/// type (`ember_nn_core::deploy::write_model_type`: `Net`, `INPUTS`,
/// `OUTPUTS`, `WIDEST` and `ARCHITECTURE`; [`Model::load`] checks the files
/// against `Net`), for graph files `INPUTS`, `OUTPUTS`, `GRAPH_SCRATCH_F32`,
/// `GRAPH_SCRATCH_I8` and `ARCHITECTURE`.
#[allow(dead_code)] // which of its items a build uses depends on the features
pub mod model {
    #[allow(unused_imports)]
    use ember_nn_core::nn::*;
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}
#[cfg(not(model_graph))]
pub use model::Net;

/// Pixels per image (28 × 28), the model's input features.
pub const PIXELS: usize = 784;
const _: () = assert!(
    model::INPUTS == PIXELS,
    "the firmware's test images are 28x28: the model must take 784 inputs"
);
/// The model's outputs (the int8 logits compared per image).
pub const CLASSES: usize = model::OUTPUTS;
/// Scratch elements f32 inference needs: `Model::scratch_len()` of [`Net`],
/// two buffers of the widest layer output.
#[cfg(not(model_graph))]
pub const SCRATCH: usize = 2 * model::WIDEST;
/// Scratch elements f32 inference needs: the f32 graph's arena
/// (`GraphModel::scratch_len`, from its header).
#[cfg(model_graph)]
pub const SCRATCH: usize = model::GRAPH_SCRATCH_F32;
/// Bytes of the quantized input image at the start of a graph's int8
/// scratch (a dense file reads the pixels in place).
#[cfg(model_graph)]
const INT8_INPUT: usize = PIXELS;
/// Scratch bytes int8 inference needs: [`SCRATCH`] for a dense file; for a
/// graph, the quantized image and the int8 graph's arena.
#[cfg(not(model_graph))]
pub const SCRATCH_I8: usize = SCRATCH;
#[cfg(model_graph)]
pub const SCRATCH_I8: usize = INT8_INPUT + model::GRAPH_SCRATCH_I8;
/// Mismatches logged one by one (the rest are only counted).
const LOG_MISMATCHES: usize = 10;

/// The f32 weight file, read in place from flash.
#[cfg(model_f32)]
pub static F32_MODEL: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model-f32.emb")));
/// The int8 weight file, read in place from flash.
#[cfg(model_int8)]
pub static INT8_MODEL: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model-int8.emb")));

/// Test images, `PIXELS` bytes each (build.rs copies them from `models/`).
static IMAGES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test-images.bin"));
/// Their true classes.
static LABELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test-labels.bin"));
/// The classes the host's f32 inference gives them.
#[cfg(model_f32)]
static EXPECTED_F32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/expected-f32.bin"));
/// The int8 logits the host's inference gives them, [`CLASSES`] per image.
#[cfg(model_int8)]
static EXPECTED_INT8: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/expected-int8.bin"));

/// A weight file as the firmware runs it, one image at a time: a dense
/// [`Model`] checked against [`Net`], or a graph. One code path checks
/// either ([`run_f32`], [`run_int8`]).
pub trait Deployed<'a>: Sized {
    /// Validates the file in place.
    fn open(bytes: &'a [u8]) -> Result<Self, FormatError>;
    /// The f32 outputs of `input` (the pixels as floats).
    #[cfg(model_f32)]
    fn logits_f32<'s>(
        &self,
        input: &[f32],
        scratch: &'s mut [f32],
    ) -> Result<&'s [f32], InferError>;
    /// The int8 outputs of an image's `pixels`; for a graph, `scratch`
    /// holds the quantized image ([`PIXELS`] bytes), then the arena.
    #[cfg(model_int8)]
    fn logits_i8<'s>(&self, pixels: &[u8], scratch: &'s mut [i8]) -> Result<&'s [i8], InferError>;
    /// The frozen part's output for an image (the head's input), real, into
    /// `out` ([`model::LAST_INPUTS`] long); `scratch` as for
    /// [`logits_i8`](Self::logits_i8).
    #[cfg(finetune)]
    fn head_features(
        &self,
        pixels: &[u8],
        scratch: &mut [i8],
        out: &mut [f32],
    ) -> Result<(), InferError>;
    /// The head's parameters as real numbers (weight `[out, in]`, bias).
    #[cfg(finetune)]
    fn head_parameters(&self, weight: &mut [f32], bias: &mut [f32]) -> Result<(), InferError>;
    /// The file with the head replaced (`deploy::write_with_last_layer`,
    /// `deploy::write_graph_with_head`), streamed to `emit`.
    #[cfg(finetune)]
    fn write_with_head(
        &self,
        weight: &[f32],
        bias: &[f32],
        qout: ember_nn_core::deploy::QuantParams,
        scratch: &mut [u8],
        emit: &mut dyn FnMut(&[u8]) -> Result<(), FormatError>,
    ) -> Result<usize, FormatError>;
}

#[cfg(not(model_graph))]
impl<'a> Deployed<'a> for Model<'a> {
    fn open(bytes: &'a [u8]) -> Result<Self, FormatError> {
        Model::load::<Net>(bytes)
    }
    #[cfg(model_f32)]
    fn logits_f32<'s>(
        &self,
        input: &[f32],
        scratch: &'s mut [f32],
    ) -> Result<&'s [f32], InferError> {
        self.infer_f32(input, scratch)
    }
    #[cfg(model_int8)]
    fn logits_i8<'s>(&self, pixels: &[u8], scratch: &'s mut [i8]) -> Result<&'s [i8], InferError> {
        self.infer_u8(pixels, scratch)
    }
    #[cfg(finetune)]
    fn head_features(
        &self,
        pixels: &[u8],
        scratch: &mut [i8],
        out: &mut [f32],
    ) -> Result<(), InferError> {
        let frozen = self.layer_count() - 1;
        let q = self.features_u8(pixels, frozen, scratch)?;
        self.dequantize_output_of(frozen - 1, q, out)
    }
    #[cfg(finetune)]
    fn head_parameters(&self, weight: &mut [f32], bias: &mut [f32]) -> Result<(), InferError> {
        self.dequantize_layer(self.layer_count() - 1, weight, bias)
    }
    #[cfg(finetune)]
    fn write_with_head(
        &self,
        weight: &[f32],
        bias: &[f32],
        qout: ember_nn_core::deploy::QuantParams,
        scratch: &mut [u8],
        emit: &mut dyn FnMut(&[u8]) -> Result<(), FormatError>,
    ) -> Result<usize, FormatError> {
        ember_nn_core::deploy::write_with_last_layer(self, weight, bias, qout, scratch, emit)
    }
}

#[cfg(model_graph)]
impl<'a> Deployed<'a> for GraphModel<'a> {
    fn open(bytes: &'a [u8]) -> Result<Self, FormatError> {
        GraphModel::parse(bytes)
    }
    #[cfg(model_f32)]
    fn logits_f32<'s>(
        &self,
        input: &[f32],
        scratch: &'s mut [f32],
    ) -> Result<&'s [f32], InferError> {
        self.infer_f32(input, scratch)
    }
    #[cfg(model_int8)]
    fn logits_i8<'s>(&self, pixels: &[u8], scratch: &'s mut [i8]) -> Result<&'s [i8], InferError> {
        if scratch.len() < INT8_INPUT {
            return Err(InferError::ScratchTooSmall {
                needed: INT8_INPUT + self.scratch_len(),
            });
        }
        let (input, arena) = quantized_image(self, pixels, scratch);
        self.infer_q8(input, arena)
    }
    #[cfg(finetune)]
    fn head_features(
        &self,
        pixels: &[u8],
        scratch: &mut [i8],
        out: &mut [f32],
    ) -> Result<(), InferError> {
        if scratch.len() < INT8_INPUT {
            return Err(InferError::ScratchTooSmall {
                needed: INT8_INPUT + self.scratch_len(),
            });
        }
        let (input, arena) = quantized_image(self, pixels, scratch);
        let q = self.head_features_q8(input, arena)?;
        let p = self.head_input_quantization()?;
        if out.len() != q.len() {
            return Err(InferError::OutputLength { expected: q.len() });
        }
        for (o, &v) in out.iter_mut().zip(q) {
            *o = (i32::from(v) - p.zero) as f32 * p.scale;
        }
        Ok(())
    }
    #[cfg(finetune)]
    fn head_parameters(&self, weight: &mut [f32], bias: &mut [f32]) -> Result<(), InferError> {
        GraphModel::dequantize_head(self, weight, bias)
    }
    #[cfg(finetune)]
    fn write_with_head(
        &self,
        weight: &[f32],
        bias: &[f32],
        qout: ember_nn_core::deploy::QuantParams,
        scratch: &mut [u8],
        emit: &mut dyn FnMut(&[u8]) -> Result<(), FormatError>,
    ) -> Result<usize, FormatError> {
        ember_nn_core::deploy::write_graph_with_head(self, weight, bias, qout, scratch, emit)
    }
}

/// An image's pixels quantized at the start of `scratch` (at least
/// [`INT8_INPUT`] bytes) as the int8 graph's input: `GraphModel::quantize_input`
/// of `p / 255`, the host's input (the same operations, so the same bytes),
/// without a buffer of floats. Returns the input and the rest of `scratch`.
#[cfg(all(model_graph, model_int8))]
fn quantized_image<'s>(
    model: &GraphModel<'_>,
    pixels: &[u8],
    scratch: &'s mut [i8],
) -> (&'s [i8], &'s mut [i8]) {
    let (input, arena) = scratch.split_at_mut(INT8_INPUT);
    let q = model.input_quantization();
    for (o, &p) in input.iter_mut().zip(pixels) {
        let v = f32::from(p) / 255.0;
        *o = (libm::roundf(v / q.scale) as i32 + q.zero).clamp(-128, 127) as i8;
    }
    let n = pixels.len().min(INT8_INPUT);
    (&input[..n], arena)
}

/// The file type this build runs.
#[cfg(not(model_graph))]
pub type Loaded = Model<'static>;
#[cfg(model_graph)]
pub type Loaded = GraphModel<'static>;

/// Number of embedded test images.
pub fn images() -> usize {
    IMAGES.len() / PIXELS
}

/// The first embedded test image's pixels (what `profile` times).
#[cfg(model_graph)]
pub fn first_image() -> &'static [u8] {
    &IMAGES[..PIXELS.min(IMAGES.len())]
}

/// What one model's run measured; [`Report::passed`] is the verdict.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// `"f32"` or `"int8"`.
    pub name: &'static str,
    /// Images run.
    pub images: usize,
    /// Predictions equal to the host's.
    pub matches: usize,
    /// Predictions equal to the true label.
    pub correct: usize,
    /// The host's predictions equal to the true label.
    pub host_correct: usize,
    /// Clock ticks spent in the inference calls (and `argmax`), all images.
    pub ticks: u64,
    /// Clock ticks `Model::load` took (validation, CRC, signature check).
    pub load_ticks: u64,
}

impl Report {
    /// Every image ran and every prediction is the host's.
    pub fn passed(&self) -> bool {
        self.images > 0 && self.images == images() && self.matches == self.images
    }
}

/// Runs `infer` (one image's pixels in, the predicted class out, or
/// `Err(None)` when its outputs differ from the host's `expected` ones) on
/// every embedded image. `per_image` is the number of expected bytes per
/// image. `clock` times the calls.
fn check(
    name: &'static str,
    expected: &[u8],
    per_image: usize,
    clock: &dyn Fn() -> u64,
    mut infer: impl FnMut(&[u8], &[u8]) -> Result<Option<usize>, InferError>,
) -> Report {
    let mut r = Report {
        name,
        images: 0,
        matches: 0,
        correct: 0,
        host_correct: 0,
        ticks: 0,
        load_ticks: 0,
    };
    let n = images();
    if expected.len() != n * per_image || LABELS.len() != n {
        say!(
            "{}: {} expected classes and {} labels for {} images",
            name,
            expected.len(),
            LABELS.len(),
            n
        );
        return r;
    }
    let per_image = per_image.max(1);
    for (i, (image, want)) in IMAGES
        .chunks_exact(PIXELS)
        .zip(expected.chunks_exact(per_image))
        .enumerate()
    {
        let start = clock();
        let class = infer(image, want);
        r.ticks += clock().wrapping_sub(start);
        let class = match class {
            Ok(c) => c,
            Err(e) => {
                say!("{} image {}: inference failed: {}", name, i, e);
                return r;
            }
        };
        let host = if per_image == 1 {
            usize::from(want[0])
        } else {
            argmax_i8_bytes(want)
        };
        let label = usize::from(LABELS[i]);
        r.images += 1;
        r.host_correct += usize::from(host == label);
        match class {
            Some(c) if c == host || per_image > 1 => {
                r.matches += 1;
                r.correct += usize::from(c == label);
            }
            other => {
                r.correct += usize::from(other == Some(label));
                if i - r.matches < LOG_MISMATCHES {
                    say!(
                        "{} image {}: outputs differ from the host's (host class {}, label {})",
                        name,
                        i,
                        host,
                        label
                    );
                }
            }
        }
    }
    r
}

/// The host's int8 class from its logits (bytes holding `i8`).
fn argmax_i8_bytes(logits: &[u8]) -> usize {
    let mut q = [0i8; CLASSES];
    for (d, &b) in q.iter_mut().zip(logits) {
        *d = b as i8;
    }
    argmax_i8(&q[..logits.len().min(CLASSES)])
}

/// Loads the f32 model from flash and checks it on every image: the
/// pixels go into `input` as floats scaled to [0, 1] (as the data loader
/// does), read in place by the first layer. `scratch` must hold [`SCRATCH`]
/// floats.
#[cfg(model_f32)]
pub fn run_f32(
    input: &mut [f32; PIXELS],
    scratch: &mut [f32],
    clock: &dyn Fn() -> u64,
) -> Option<Report> {
    let start = clock();
    let loaded = Loaded::open(&F32_MODEL.0);
    let load_ticks = clock().wrapping_sub(start);
    // Borrowed in place: the model (about 1 KiB of layer table) is not moved.
    let model = match &loaded {
        Ok(m) => m,
        Err(e) => {
            say!("f32 model rejected: {}", e);
            return None;
        }
    };
    describe("f32", F32_MODEL.0.len(), model, scratch.len(), 4);
    let r = check("f32", EXPECTED_F32, 1, clock, |image, want| {
        for (x, &p) in input.iter_mut().zip(image) {
            *x = f32::from(p) / 255.0;
        }
        let class = argmax(model.logits_f32(&input[..], scratch)?);
        Ok(Some(class).filter(|&c| usize::from(want[0]) == c))
    });
    Some(Report { load_ticks, ..r })
}

/// Loads the int8 model from flash and checks it on every image, the
/// pixels read in place from flash (a graph's quantized at the start of
/// `scratch`). `scratch` must hold [`SCRATCH_I8`] bytes.
#[cfg(model_int8)]
pub fn run_int8(scratch: &mut [i8], clock: &dyn Fn() -> u64) -> Option<Report> {
    let start = clock();
    let loaded = Loaded::open(&INT8_MODEL.0);
    let load_ticks = clock().wrapping_sub(start);
    let model = match &loaded {
        Ok(m) => m,
        Err(e) => {
            say!("int8 model rejected: {}", e);
            return None;
        }
    };
    describe("int8", INT8_MODEL.0.len(), model, scratch.len(), 1);
    let r = check("int8", EXPECTED_INT8, CLASSES, clock, |image, want| {
        let logits = model.logits_i8(image, scratch)?;
        let same = logits.iter().zip(want).all(|(&q, &w)| q as u8 == w);
        Ok(Some(argmax_i8(logits)).filter(|_| same && logits.len() == want.len()))
    });
    Some(Report { load_ticks, ..r })
}

fn describe(name: &str, file_bytes: usize, model: &Loaded, scratch: usize, elem: usize) {
    say!(
        "{} model {}: a {}-byte file, read in place; scratch {} of {} elements ({} bytes)",
        name,
        model::ARCHITECTURE,
        file_bytes,
        model.scratch_len(),
        scratch,
        scratch * elem
    );
}

/// Logs a report's outcome.
pub fn summary(r: &Report) {
    // Per mille, in integers: a float division would link soft-float code
    // on a Cortex-M0.
    let permille = (1000 * r.correct + r.images / 2) / r.images.max(1);
    say!(
        "{}: {} of {} predictions match the host; accuracy {}/{} = {}.{}% (host {}/{})",
        r.name,
        r.matches,
        images(),
        r.correct,
        r.images,
        permille / 10,
        permille % 10,
        r.host_correct,
        r.images
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(model_int8, not(model_graph)))]
    use ember_nn_core::nn::{Linear, ReLU};

    /// The committed models, run on the host, give the committed expected
    /// classes (what the firmware checks itself against).
    #[test]
    fn host_predictions_match_the_expected_files() {
        let clock = || 0u64;
        #[cfg(model_f32)]
        {
            let mut input = [0.0f32; PIXELS];
            let mut scratch = vec![0.0f32; SCRATCH];
            let r = run_f32(&mut input, &mut scratch, &clock).expect("the f32 model loads");
            assert!(r.passed(), "{r:?}");
            assert_eq!(r.correct, r.host_correct);
        }
        #[cfg(model_int8)]
        {
            let mut scratch = vec![0i8; SCRATCH_I8];
            let r = run_int8(&mut scratch, &clock).expect("the int8 model loads");
            assert!(r.passed(), "{r:?}");
            assert_eq!(r.correct, r.host_correct);
        }
    }

    /// `Model::load` checks the file against the model type, and the CRC.
    #[cfg(all(model_int8, not(model_graph)))]
    #[test]
    fn load_checks_signature_and_checksum() {
        let bytes = &INT8_MODEL.0;
        assert!(Model::load::<Net>(bytes).is_ok());
        // No model in models/ has a first layer of 784 → 3.
        type Other = (Linear<784, 3>, ReLU, Linear<3, 2>);
        assert!(matches!(
            Model::load::<Other>(bytes).err(),
            Some(FormatError::SignatureMismatch { layer: 0, .. })
        ));
        // A flipped bit in the weights: the copy must stay 4-byte aligned.
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        let copy: &mut [u8] = &mut as_bytes_mut(&mut words)[..bytes.len()];
        copy.copy_from_slice(bytes);
        copy[bytes.len() / 2] ^= 1;
        assert!(matches!(
            Model::load::<Net>(copy),
            Err(FormatError::Crc { .. })
        ));
    }

    /// Graph files: `Model::parse` sends them to `GraphModel::parse`, which
    /// checks the CRC; the scratch sizes build.rs read from the headers are
    /// the files' own, and the run fails cleanly (no panic) in less.
    #[cfg(all(model_int8, model_graph))]
    #[test]
    fn graph_files_parse_in_place_with_their_scratch() {
        use ember_nn_core::deploy::Model;
        let bytes = &INT8_MODEL.0;
        assert!(matches!(Model::parse(bytes), Err(FormatError::GraphFile)));
        let g = GraphModel::parse(bytes).expect("the int8 graph parses");
        assert!(g.is_int8());
        assert_eq!(g.scratch_len(), model::GRAPH_SCRATCH_I8);
        assert_eq!(SCRATCH_I8, PIXELS + g.scratch_len());
        #[cfg(model_f32)]
        {
            let f = GraphModel::parse(&F32_MODEL.0).expect("the f32 graph parses");
            assert_eq!(f.scratch_len(), SCRATCH);
        }
        // One byte short of the arena, or of the quantized image: an error.
        let mut scratch = vec![0i8; SCRATCH_I8 - 1];
        let image = &IMAGES[..PIXELS];
        assert!(matches!(
            g.logits_i8(image, &mut scratch),
            Err(InferError::ScratchTooSmall { .. })
        ));
        assert!(g.logits_i8(image, &mut scratch[..10]).is_err());
        // The device's quantization of the pixels is the host's.
        let mut q_host = vec![0i8; PIXELS];
        let x: Vec<f32> = image.iter().map(|&p| f32::from(p) / 255.0).collect();
        g.quantize_input(&x, &mut q_host).expect("784 inputs");
        let mut scratch = vec![0i8; SCRATCH_I8];
        g.logits_i8(image, &mut scratch).expect("runs");
        assert_eq!(&scratch[..PIXELS], &q_host[..]);
        // A flipped bit in the weights: the copy must stay 4-byte aligned.
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        let copy: &mut [u8] = &mut as_bytes_mut(&mut words)[..bytes.len()];
        copy.copy_from_slice(bytes);
        copy[bytes.len() / 2] ^= 1;
        assert!(matches!(
            GraphModel::parse(copy),
            Err(FormatError::Crc { .. })
        ));
    }

    /// The bytes of a `u32` buffer (4-byte aligned).
    #[cfg(model_int8)]
    fn as_bytes_mut(words: &mut [u32]) -> &mut [u8] {
        // SAFETY: u8 has no alignment or validity requirements; the slice
        // covers exactly the words' bytes and borrows them uniquely.
        unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 4 * words.len()) }
    }
}
