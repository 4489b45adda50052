//! Inputs that `scripts/fuzz.sh` (fuzz/fuzz_targets/emb.rs) found to crash or
//! to break a property, kept as regression tests. Each file under
//! tests/data/fuzz/ is the input as the target saw it (with the data length
//! and CRC repaired, as the target repairs them).

use ember_nn_core::deploy::{self, Calibration, Model};

/// Copies `bytes` into 4-byte aligned storage (the format is read in place).
fn aligned(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_ne_bytes(w)
        })
        .collect()
}

fn as_bytes(words: &[u32]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirements; the slice covers
    // exactly the words' bytes.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 4) }
}

fn as_bytes_mut(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: as above, borrowed mutably.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) }
}

/// An f32 model whose second hidden layer's outputs span [0, 1.35e-43]: the
/// calibrated step `range / 255` underflowed to 0, `quantize` wrote output
/// scale 0, and `Model::parse` refused the int8 file it had just written
/// (`BadQuantization { layer: 1 }`). `QuantParams::from_range` now falls
/// back to scale 1 when the step is not a normal float.
#[test]
fn quantize_of_a_tiny_activation_range_writes_a_file_that_parses() {
    let file = include_bytes!("data/fuzz/emb-quantize-scale-underflow.emb");
    let words = aligned(file);
    let model = Model::parse(&as_bytes(&words)[..file.len()]).expect("the input parses");
    let x: Vec<f32> = (0..model.input_features())
        .map(|i| (i % 7) as f32 * 0.375 - 1.0)
        .collect();
    let mut calib = Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    calib.observe(&model, &x, &mut scratch).unwrap();
    let len = deploy::quantized_len(&model);
    let mut out = vec![0u32; len.div_ceil(4)];
    let n = deploy::quantize(&model, &calib, as_bytes_mut(&mut out)).unwrap();
    let q = Model::parse(&as_bytes(&out)[..n]);
    assert!(q.is_ok(), "{q:?}");
}

/// A graph file (version 3) whose int8 form requantized an accumulator to
/// `i32::MAX` (the requantization saturates) and then added the output's
/// zero point: an overflow (a panic with overflow checks). The zero point
/// is now added saturating, and the clamp to `i8` gives 127.
#[test]
fn an_int8_graph_whose_requantization_saturates_runs() {
    use deploy::{GraphCalibration, GraphModel};
    let file = include_bytes!("data/fuzz/emb-graph-requant-saturates.emb");
    let words = aligned(file);
    let graph = GraphModel::parse(&as_bytes(&words)[..file.len()]).expect("the input parses");
    let x: Vec<f32> = (0..graph.input_features())
        .map(|i| (i % 7) as f32 * 0.375 - 1.0)
        .collect();
    let run_int8 = |g: &GraphModel<'_>| {
        let mut q = vec![0i8; g.input_features()];
        let mut scratch = vec![0i8; g.scratch_len()];
        let mut out = vec![0.0f32; g.output_features()];
        g.infer_i8(&x, &mut q, &mut scratch, &mut out)
            .expect("runs");
    };
    if graph.is_int8() {
        run_int8(&graph);
        return;
    }
    let mut scratch = vec![0.0f32; graph.scratch_len()];
    let mut calib = GraphCalibration::new();
    calib.observe(&graph, &x, &mut scratch).expect("runs");
    let mut words = vec![0u32; deploy::graph_quantized_len(&graph).div_ceil(4)];
    let n = deploy::quantize_graph(&graph, &calib, as_bytes_mut(&mut words)).expect("quantizes");
    let q = GraphModel::parse(&as_bytes(&words)[..n]).expect("parses");
    run_int8(&q);
}
