//! MLPerf Tiny on the board (feature `mlperf`): one int8 model of `cargo
//! xtask mlperf` (anomaly detection's autoencoder as a dense file, keyword
//! spotting's DS-CNN and image classification's ResNet-8 as graph files;
//! random weights, calibrated on random inputs), run from flash on its test
//! inputs, every output byte checked against the host's.
//!
//! Each test input (already quantized by the host with the file's input
//! quantization, [`INPUTS`] bytes) is read in place from flash, as the
//! MNIST firmware reads its images (a sensor's buffer would be read the same
//! way, where the sensor's driver put it), by `infer_q8` with [`SCRATCH`]
//! bytes of scratch, the file's arena: only that call is timed. Dense files are
//! parsed with `Model::parse`, graph files (cfg `mlperf_graph`, set by
//! build.rs) with `GraphModel::parse`; both check the header and the CRC
//! once, before the timing.

#[cfg(mlperf_graph)]
use ember_nn_core::deploy::GraphModel;
#[cfg(not(mlperf_graph))]
use ember_nn_core::deploy::Model;
use ember_nn_core::deploy::{Aligned, FormatError, InferError};

/// What build.rs writes from `mlperf.txt` and the int8 file: `NAME`,
/// `MACS`, `INPUTS`, `OUTPUTS`, `SCRATCH` and `ARCHITECTURE`.
#[allow(dead_code)] // which of its items a build uses depends on the platform
pub mod meta {
    include!(concat!(env!("OUT_DIR"), "/mlperf.rs"));
}
pub use meta::{INPUTS, MACS, NAME, OUTPUTS, SCRATCH};

/// The int8 weight file, read in place from flash.
pub static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/mlperf-int8.emb"
)));
/// Test inputs, [`INPUTS`] quantized bytes (`i8`) each.
static TEST_INPUTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mlperf-inputs.bin"));

/// Bytes read as the `i8` values they hold.
fn as_i8(x: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size and alignment and every bit
    // pattern is valid for both; the slice borrows `x`.
    unsafe { core::slice::from_raw_parts(x.as_ptr().cast::<i8>(), x.len()) }
}
/// The host's int8 outputs for them, [`OUTPUTS`] bytes each.
static EXPECTED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mlperf-expected.bin"));
/// Mismatches logged one by one.
const LOG_MISMATCHES: usize = 4;

/// The file type this build runs.
#[cfg(mlperf_graph)]
type Loaded = GraphModel<'static>;
#[cfg(not(mlperf_graph))]
type Loaded = Model<'static>;

fn open(bytes: &'static [u8]) -> Result<Loaded, FormatError> {
    Loaded::parse(bytes)
}

/// Number of embedded test inputs.
pub fn inputs() -> usize {
    TEST_INPUTS.len() / INPUTS
}

/// What the run measured; [`Report::passed`] is the verdict.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// Inputs run.
    pub inputs: usize,
    /// Inputs whose outputs are the host's byte for byte.
    pub matches: usize,
    /// Clock ticks spent in `infer_q8`, all inputs.
    pub ticks: u64,
    /// Clock ticks the file's parse (header, CRC) took.
    pub load_ticks: u64,
}

impl Report {
    /// Every input ran and gave the host's outputs.
    pub fn passed(&self) -> bool {
        self.inputs > 0 && self.inputs == inputs() && self.matches == self.inputs
    }
}

/// Parses the model from flash and runs every test input, read in place
/// from flash, with `infer_q8` and `scratch` ([`SCRATCH`] bytes), timed with
/// `clock`. `None` if the file is refused or an inference fails (logged).
pub fn run(scratch: &mut [i8], clock: &dyn Fn() -> u64) -> Option<Report> {
    let start = clock();
    let model = match open(&MODEL.0) {
        Ok(m) => m,
        Err(e) => {
            say!("mlperf-{}: model rejected: {}", NAME, e);
            return None;
        }
    };
    let load_ticks = clock().wrapping_sub(start);
    say!(
        "mlperf-{}: int8 {}: a {}-byte file and {}-byte inputs read in place from flash; scratch {} bytes",
        NAME,
        meta::ARCHITECTURE,
        MODEL.0.len(),
        INPUTS,
        scratch.len()
    );
    let mut r = Report {
        inputs: 0,
        matches: 0,
        ticks: 0,
        load_ticks,
    };
    if EXPECTED.len() != inputs() * OUTPUTS {
        say!(
            "mlperf-{}: buffers or expected outputs of the wrong size",
            NAME
        );
        return None;
    }
    for (i, (x, want)) in TEST_INPUTS
        .chunks_exact(INPUTS)
        .zip(EXPECTED.chunks_exact(OUTPUTS))
        .enumerate()
    {
        let start = clock();
        let out: Result<&[i8], InferError> = model.infer_q8(as_i8(x), scratch);
        r.ticks += clock().wrapping_sub(start);
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                say!("mlperf-{} input {}: inference failed: {}", NAME, i, e);
                return None;
            }
        };
        r.inputs += 1;
        if out.len() == want.len() && out.iter().zip(want).all(|(&v, &w)| v as u8 == w) {
            r.matches += 1;
        } else if i - r.matches < LOG_MISMATCHES {
            say!(
                "mlperf-{} input {}: outputs differ from the host's",
                NAME,
                i
            );
        }
    }
    Some(r)
}

/// Times each node of one inference of the first test input, read in
/// place from flash (`crate::profile`'s lines, named `mlperf-NAME int8`):
/// where the instructions of [`run`] go.
#[cfg(all(mlperf_graph, target_os = "none"))]
pub fn profile(scratch: &mut [i8], clock: &dyn Fn() -> u64, cost: &crate::profile::Cost) {
    let (Ok(model), Some(x)) = (open(&MODEL.0), TEST_INPUTS.get(..INPUTS)) else {
        return;
    };
    let mut name = [0u8; 24];
    let label = label(&mut name);
    crate::profile::graph_int8(label, &model, as_i8(x), scratch, clock, cost);
}

/// `mlperf-NAME int8` in `buf`.
#[cfg(all(mlperf_graph, target_os = "none"))]
fn label(buf: &mut [u8; 24]) -> &str {
    let mut n = 0;
    for part in ["mlperf-", NAME, " int8"] {
        for &b in part.as_bytes() {
            if n < buf.len() {
                buf[n] = b;
                n += 1;
            }
        }
    }
    core::str::from_utf8(&buf[..n]).unwrap_or("mlperf")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The firmware's code on the host gives the host's expected outputs.
    #[test]
    fn host_outputs_match_the_expected_file() {
        let mut scratch = vec![0i8; SCRATCH];
        let r = run(&mut scratch, &|| 0).expect("the model runs");
        assert!(r.passed(), "{r:?}");
    }
}
