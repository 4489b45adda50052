//! Inference from flash: the FashionMNIST classifier trained by `ember
//! train` (`models/`, by default the committed 784-128-64-10 ReLU model; any
//! MLP with 784 inputs), f32 and int8, on embedded test images.
//!
//! The weight files are embedded with `include_bytes!` inside
//! [`Aligned`], so [`Model::load`] validates them (header, CRC, and the
//! layer signature of [`Net`]) and reads the weights in place, from flash:
//! nothing is copied. Inference needs [`Model::scratch_len`] elements of
//! scratch (two activation buffers of the widest layer output, here 128; the
//! input is read in place): int8 reads the image's pixels themselves
//! ([`Model::infer_u8`]), f32 the pixels as floats, in a buffer of the caller.
//!
//! Each image's f32 class, and its int8 output vector byte for byte, are
//! compared with what the host computed with the same kernels (`cargo xtask
//! test-images`): the run passes only if they agree for every image.
//! Accuracy against the true labels is reported too. No `std`, no allocator; on the host the same code runs as
//! part of an ordinary program.

#[cfg(model_f32)]
use ember_nn_core::deploy::argmax;
use ember_nn_core::deploy::{argmax_i8, Aligned, InferError, Model};
/// The model type the files describe, written by build.rs from their
/// header (`ember_nn_core::deploy::write_model_type`): `Net`, `INPUTS`,
/// `OUTPUTS`, `WIDEST` and `ARCHITECTURE`. [`Model::load`] checks the files
/// against `Net`.
#[allow(dead_code)] // which of its items a build uses depends on the features
pub mod model {
    #[allow(unused_imports)]
    use ember_nn_core::nn::*;
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}
pub use model::Net;

/// Pixels per image (28 × 28), the model's input features.
pub const PIXELS: usize = 784;
const _: () = assert!(
    model::INPUTS == PIXELS,
    "the firmware's test images are 28x28: the model must take 784 inputs"
);
/// The model's outputs (the int8 logits compared per image).
pub const CLASSES: usize = model::OUTPUTS;
/// Scratch elements inference needs: `Model::scratch_len()` of [`Net`], two
/// buffers of the widest layer output.
pub const SCRATCH: usize = 2 * model::WIDEST;
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

/// Number of embedded test images.
pub fn images() -> usize {
    IMAGES.len() / PIXELS
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
    let loaded = Model::load::<Net>(&F32_MODEL.0);
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
        let class = argmax(model.infer_f32(&input[..], scratch)?);
        Ok(Some(class).filter(|&c| usize::from(want[0]) == c))
    });
    Some(Report { load_ticks, ..r })
}

/// Loads the int8 model from flash and checks it on every image, the
/// pixels read in place from flash. `scratch` must hold [`SCRATCH`] bytes.
#[cfg(model_int8)]
pub fn run_int8(scratch: &mut [i8], clock: &dyn Fn() -> u64) -> Option<Report> {
    let start = clock();
    let loaded = Model::load::<Net>(&INT8_MODEL.0);
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
        let logits = model.infer_u8(image, scratch)?;
        let same = logits.iter().zip(want).all(|(&q, &w)| q as u8 == w);
        Ok(Some(argmax_i8(logits)).filter(|_| same && logits.len() == want.len()))
    });
    Some(Report { load_ticks, ..r })
}

fn describe(name: &str, file_bytes: usize, model: &Model<'_>, scratch: usize, elem: usize) {
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
    use ember_nn_core::deploy::FormatError;
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
            let mut scratch = vec![0i8; SCRATCH];
            let r = run_int8(&mut scratch, &clock).expect("the int8 model loads");
            assert!(r.passed(), "{r:?}");
            assert_eq!(r.correct, r.host_correct);
        }
    }

    /// `Model::load` checks the file against the model type, and the CRC.
    #[cfg(model_int8)]
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

    /// The bytes of a `u32` buffer (4-byte aligned).
    #[cfg(model_int8)]
    fn as_bytes_mut(words: &mut [u32]) -> &mut [u8] {
        // SAFETY: u8 has no alignment or validity requirements; the slice
        // covers exactly the words' bytes and borrows them uniquely.
        unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 4 * words.len()) }
    }
}
