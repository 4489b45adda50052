//! Inference from flash on held-out rows of a data file: a model trained by
//! `ember train --data FILE.csv` (any input width; classification,
//! regression or an autoencoder's scores), f32 and int8, on embedded rows of
//! raw features (the model's scaling is folded into the f32 model's first
//! layer and is the int8 model's input step).
//! Built instead of `inference.rs` when the model directory holds
//! `test-rows.bin` (`cargo xtask test-rows` writes it; build.rs sets the
//! cfg `test_rows`), under the same module name, so that `main.rs` runs
//! either the same way.
//!
//! The rows are little-endian `f32`, [`INPUTS`] per row. Each is copied
//! into an `f32` buffer (the file's bytes are not aligned for `f32`) and
//! run through the model as the host ran it: f32 with
//! [`Model::infer_f32`], int8 with [`Model::quantize_input`] and
//! [`Model::infer_q8`] (the model's own input quantization, the code the
//! host runs). The host's outputs (`cargo xtask test-rows`) are what the
//! device must give:
//!
//! - classification (cfg `rows_classify`, when the directory holds the
//!   rows' labels): the f32 class, and the int8 outputs byte for byte;
//! - regression and scores: the f32 outputs bit for bit, and the int8
//!   outputs byte for byte.
//!
//! The run passes only if every row does. Accuracy against the labels is
//! reported for a classifier; for any task, how many rows' f32 outputs are
//! bit-identical to the host's.

#[cfg(model_f32)]
use ember_nn_core::deploy::argmax;
#[cfg(model_int8)]
use ember_nn_core::deploy::argmax_i8;
use ember_nn_core::deploy::{Aligned, InferError, Model};

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

/// The model's input features: `f32` values per row.
pub const INPUTS: usize = model::INPUTS;
/// The model's outputs (compared per row).
pub const OUTPUTS: usize = model::OUTPUTS;
/// Scratch elements inference needs: `Model::scratch_len()` of [`Net`], two
/// buffers of the widest layer output.
pub const SCRATCH: usize = 2 * model::WIDEST;
/// Scratch bytes int8 inference needs (as many as f32's elements).
pub const SCRATCH_I8: usize = SCRATCH;
/// Bytes per embedded row.
const ROW_BYTES: usize = 4 * INPUTS;
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

/// Held-out rows, [`INPUTS`] little-endian `f32` each (build.rs copies them
/// from the model directory).
static ROWS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test-rows.bin"));
/// A classifier's rows' true classes.
#[cfg(rows_classify)]
static LABELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test-labels.bin"));
/// The host's f32 outputs, [`OUTPUTS`] little-endian `f32` per row.
#[cfg(model_f32)]
static EXPECTED_F32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/expected-f32.bin"));
/// The host's int8 outputs, [`OUTPUTS`] bytes per row.
#[cfg(model_int8)]
static EXPECTED_INT8: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/expected-int8.bin"));

/// Number of embedded rows.
pub fn rows() -> usize {
    ROWS.len() / ROW_BYTES
}

/// What one model's run measured; [`Report::passed`] is the verdict.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// `"f32"` or `"int8"`.
    pub name: &'static str,
    /// Rows run (`images`, as the image build names it, for `main.rs`).
    pub images: usize,
    /// Rows whose result is the host's (the class for f32 classification,
    /// otherwise every output bit for bit or byte for byte).
    pub matches: usize,
    /// Rows whose outputs are the host's bit for bit (f32) or byte for
    /// byte (int8).
    pub identical: usize,
    /// Predictions equal to the true label (a classifier).
    pub correct: usize,
    /// The host's predictions equal to the true label (a classifier).
    pub host_correct: usize,
    /// Clock ticks spent in inference (the row's conversion, for int8 its
    /// quantization, and the model), all rows.
    pub ticks: u64,
    /// Clock ticks `Model::load` took (validation, CRC, signature check).
    pub load_ticks: u64,
}

impl Report {
    /// Every row ran and every result is the host's.
    pub fn passed(&self) -> bool {
        self.images > 0 && self.images == rows() && self.matches == self.images
    }
}

/// One row's result: the predicted class (a classifier's), whether the
/// outputs are the host's exactly, and the ticks its inference took.
struct Outcome {
    class: usize,
    identical: bool,
    ticks: u64,
}

/// The row's features as floats.
fn features(row: &[u8], x: &mut [f32; INPUTS]) {
    for (v, b) in x.iter_mut().zip(row.chunks_exact(4)) {
        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Runs `infer` (one row's bytes and the host's expected bytes in, its
/// [`Outcome`] out) on every embedded row. `per_row` is the number of
/// expected bytes per row; `host_class` gives the host's class from them.
/// A row matches when its outputs are identical, or for a classifier's
/// f32 run (`class_only`) when its class is the host's.
fn check(
    name: &'static str,
    expected: &[u8],
    per_row: usize,
    class_only: bool,
    host_class: impl Fn(&[u8]) -> usize,
    mut infer: impl FnMut(&[u8], &[u8]) -> Result<Outcome, InferError>,
) -> Report {
    let mut r = Report {
        name,
        images: 0,
        matches: 0,
        identical: 0,
        correct: 0,
        host_correct: 0,
        ticks: 0,
        load_ticks: 0,
    };
    let n = rows();
    #[cfg(rows_classify)]
    let labels_ok = LABELS.len() == n;
    #[cfg(not(rows_classify))]
    let labels_ok = true;
    if per_row == 0 || expected.len() != n * per_row || !labels_ok {
        say!(
            "{}: {} expected bytes ({} per row) for {} rows",
            name,
            expected.len(),
            per_row,
            n
        );
        return r;
    }
    for (i, (row, want)) in ROWS
        .chunks_exact(ROW_BYTES)
        .zip(expected.chunks_exact(per_row))
        .enumerate()
    {
        let o = match infer(row, want) {
            Ok(o) => o,
            Err(e) => {
                say!("{} row {}: inference failed: {}", name, i, e);
                return r;
            }
        };
        r.ticks += o.ticks;
        r.images += 1;
        let host = host_class(want);
        #[cfg(rows_classify)]
        {
            let label = usize::from(LABELS[i]);
            r.host_correct += usize::from(host == label);
            r.correct += usize::from(o.class == label);
        }
        r.identical += usize::from(o.identical);
        let ok = o.identical || (class_only && o.class == host);
        if ok {
            r.matches += 1;
        } else if i - r.matches < LOG_MISMATCHES {
            say!(
                "{} row {}: outputs differ from the host's (class {}, host {})",
                name,
                i,
                o.class,
                host
            );
        }
    }
    r
}

/// Loads the f32 model from flash and checks it on every row: each row's
/// features go into `input` as floats, read in place by the first layer.
/// `scratch` must hold [`SCRATCH`] floats.
#[cfg(model_f32)]
pub fn run_f32(
    input: &mut [f32; INPUTS],
    scratch: &mut [f32],
    clock: &dyn Fn() -> u64,
) -> Option<Report> {
    let start = clock();
    let loaded = Model::load::<Net>(&F32_MODEL.0);
    let load_ticks = clock().wrapping_sub(start);
    let model = match &loaded {
        Ok(m) => m,
        Err(e) => {
            say!("f32 model rejected: {}", e);
            return None;
        }
    };
    describe("f32", F32_MODEL.0.len(), model, scratch.len(), 4);
    let host_class = |want: &[u8]| {
        let mut v = [0.0f32; OUTPUTS];
        for (d, b) in v.iter_mut().zip(want.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        argmax(&v)
    };
    let r = check(
        "f32",
        EXPECTED_F32,
        4 * OUTPUTS,
        cfg!(rows_classify),
        host_class,
        |row, want| {
            let start = clock();
            features(row, input);
            let out = model.infer_f32(&input[..], scratch)?;
            let class = argmax(out);
            let ticks = clock().wrapping_sub(start);
            let identical = 4 * out.len() == want.len()
                && out
                    .iter()
                    .zip(want.chunks_exact(4))
                    .all(|(v, b)| v.to_bits() == u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            Ok(Outcome {
                class,
                identical,
                ticks,
            })
        },
    );
    Some(Report { load_ticks, ..r })
}

/// Loads the int8 model from flash and checks it on every row: the
/// features quantized with the model's input quantization
/// ([`Model::quantize_input`]), then [`Model::infer_q8`]. `scratch` must
/// hold [`SCRATCH`] bytes.
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
    let mut x = [0.0f32; INPUTS];
    let mut q = [0i8; INPUTS];
    let host_class = |want: &[u8]| {
        let mut v = [0i8; OUTPUTS];
        for (d, &b) in v.iter_mut().zip(want) {
            *d = b as i8;
        }
        argmax_i8(&v)
    };
    let r = check(
        "int8",
        EXPECTED_INT8,
        OUTPUTS,
        false,
        host_class,
        |row, want| {
            let start = clock();
            features(row, &mut x);
            model.quantize_input(&x, &mut q)?;
            let out = model.infer_q8(&q, scratch)?;
            let class = argmax_i8(out);
            let ticks = clock().wrapping_sub(start);
            let identical =
                out.len() == want.len() && out.iter().zip(want).all(|(&v, &w)| v as u8 == w);
            Ok(Outcome {
                class,
                identical,
                ticks,
            })
        },
    );
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
    if cfg!(rows_classify) {
        // Per mille, in integers: a float division would link soft-float
        // code on a Cortex-M0.
        let permille = (1000 * r.correct + r.images / 2) / r.images.max(1);
        say!(
            "{}: {} of {} predictions match the host ({} of the rows' outputs identical); accuracy {}/{} = {}.{}% (host {}/{})",
            r.name,
            r.matches,
            rows(),
            r.identical,
            r.correct,
            r.images,
            permille / 10,
            permille % 10,
            r.host_correct,
            r.images
        );
    } else {
        say!(
            "{}: {} of {} rows' outputs match the host's, {}",
            r.name,
            r.matches,
            rows(),
            if r.name == "f32" {
                "bit for bit"
            } else {
                "byte for byte"
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The models, run on the host by the firmware's code, give the host's
    /// expected outputs (what the firmware checks itself against).
    #[test]
    fn host_outputs_match_the_expected_files() {
        let clock = || 0u64;
        #[cfg(model_f32)]
        {
            let mut input = [0.0f32; INPUTS];
            let mut scratch = vec![0.0f32; SCRATCH];
            let r = run_f32(&mut input, &mut scratch, &clock).expect("the f32 model loads");
            assert!(r.passed(), "{r:?}");
            assert_eq!(r.identical, r.images, "{r:?}");
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
}
