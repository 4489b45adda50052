//! The `.emb` weight format: `Model::parse`, `Model::load::<Net>`,
//! `GraphModel::parse` (graph files, version 3), and what a
//! parsed model admits (inference of every kind, dequantization,
//! post-training quantization, head replacement, source export) must never
//! panic, whatever the bytes; what the writers make of a parsed model must
//! parse again.
//!
//! Each input is parsed as given (which exercises the checks up to the CRC),
//! then with its data length and CRC fields repaired, so that the mutations
//! reach the layer validation and inference behind the checksum.
#![no_main]

use ember_fuzz::{aligned, bytes, bytes_mut};
use ember_nn_core::deploy::{
    self, crc32, write_model_type, write_rust_source, ActivationTable, Calibration,
    GraphCalibration, GraphModel, InputStep, LayerWeights, Model, QuantParams,
};
use ember_nn_core::nn::{Linear, ReLU, Tanh};
use libfuzzer_sys::fuzz_target;

/// The seeds' architectures (fuzz/corpus/emb), for `Model::load`.
type Small = (Linear<4, 8>, ReLU, Linear<8, 3>);
type Deep = (Linear<5, 6>, Tanh, Linear<6, 6>, ReLU, Linear<6, 2>);

/// Byte offsets in the fixed header: header length, data length.
const HEADER_LEN_AT: usize = 8;
const DATA_LEN_AT: usize = 12;

fuzz_target!(|data: &[u8]| {
    let words = aligned(data);
    let raw = &bytes(&words)[..data.len()];
    if let Ok(model) = Model::parse(raw) {
        exercise(raw, &model);
        return;
    }
    if let Ok(graph) = GraphModel::parse(raw) {
        exercise_graph(&graph);
        return;
    }
    if let Some(fixed) = repaired(data) {
        let b = &bytes(&fixed)[..data.len()];
        if let Ok(model) = Model::parse(b) {
            exercise(b, &model);
        }
        if let Ok(graph) = GraphModel::parse(b) {
            exercise_graph(&graph);
        }
    }
});

/// A graph file (version 3): its nodes, inference in exactly its scratch
/// (f32, or int8 on quantized input), and for an f32 file calibration and
/// quantization (whose result must parse and run), must not panic; the
/// output is as long as it says.
fn exercise_graph(graph: &GraphModel<'_>) {
    let _ = graph.parameter_bytes();
    let weights = |w: LayerWeights<'_>| match w {
        LayerWeights::F32 { weight, .. } => weight.len(),
        LayerWeights::Int8 { weight, .. } => weight.len(),
    };
    // Large but valid graphs would make each run slow: bound the work.
    let work: usize = graph
        .nodes()
        .map(|(h, w)| {
            let taps = 1 + weights(w) / h.out_shape[0].max(1);
            h.out_len().saturating_mul(taps)
        })
        .fold(0usize, |a, b| a.saturating_add(b));
    if work > 1 << 22 {
        return;
    }
    let x: Vec<f32> = (0..graph.input_features())
        .map(|i| (i % 7) as f32 * 0.375 - 1.0)
        .collect();
    if graph.is_int8() {
        let mut q = vec![0i8; graph.input_features()];
        let mut scratch = vec![0i8; graph.scratch_len()];
        let mut out = vec![0.0f32; graph.output_features()];
        graph
            .infer_i8(&x, &mut q, &mut scratch, &mut out)
            .expect("a valid int8 graph runs");
        return;
    }
    let mut scratch = vec![0.0f32; graph.scratch_len()];
    let y = graph.infer_f32(&x, &mut scratch).expect("a valid graph runs");
    assert_eq!(y.len(), graph.output_features());
    let mut calib = GraphCalibration::new();
    if calib.observe(graph, &x, &mut scratch).is_err() {
        return;
    }
    let len = deploy::graph_quantized_len(graph);
    let mut words = vec![0u32; len.div_ceil(4)];
    if let Ok(n) = deploy::quantize_graph(graph, &calib, bytes_mut(&mut words)) {
        let q = GraphModel::parse(&bytes(&words)[..n]).expect("a quantized graph parses");
        exercise_graph(&q);
    }
}

/// `data` with the data length field set to what its length and header
/// length imply, and the CRC recomputed; `None` when too short for that.
fn repaired(data: &[u8]) -> Option<Vec<u32>> {
    let n = data.len();
    if n < 36 {
        return None;
    }
    let mut words = aligned(data);
    let b = &mut bytes_mut(&mut words)[..n];
    let header_len = u32::from_le_bytes(b[HEADER_LEN_AT..HEADER_LEN_AT + 4].try_into().ok()?);
    if let Some(data_len) = (n - 4).checked_sub(header_len as usize) {
        b[DATA_LEN_AT..DATA_LEN_AT + 4].copy_from_slice(&(data_len as u32).to_le_bytes());
    }
    let crc = crc32(0, &b[..n - 4]);
    b[n - 4..].copy_from_slice(&crc.to_le_bytes());
    Some(words)
}

fn exercise(file: &[u8], model: &Model<'_>) {
    // `load` is `parse` and a signature check: it agrees with them.
    for (loaded, checked) in [
        (Model::load::<Small>(file), model.check_signature::<Small>()),
        (Model::load::<Deep>(file), model.check_signature::<Deep>()),
    ] {
        assert_eq!(loaded.is_ok(), checked.is_ok());
    }
    let _ = model.parameter_bytes();
    let (n_in, n_out) = (model.input_features(), model.output_features());
    for (h, _) in model.layers() {
        let _ = (h.in_features, h.out_features);
    }
    let x: Vec<f32> = (0..n_in).map(|i| (i % 7) as f32 * 0.375 - 1.0).collect();
    let mut text = String::new();
    let _ = write_rust_source(model, &mut text);
    text.clear();
    let _ = write_model_type(model, &mut text);

    if model.is_int8() {
        let mut scratch = vec![0i8; model.scratch_len()];
        let mut q = vec![0i8; n_in];
        let mut out = vec![0.0f32; n_out];
        let _ = model.infer_i8(&x, &mut q, &mut scratch, &mut out);
        let _ = model.infer_q8(&q, &mut scratch);
        let pixels: Vec<u8> = (0..n_in).map(|i| (i * 37) as u8).collect();
        if let Ok(y) = model.infer_u8(&pixels, &mut scratch) {
            let y = y.to_vec();
            let _ = deploy::argmax_i8(&y);
            let mut real = vec![0.0f32; y.len()];
            let _ = model.dequantize_output(&y, &mut real);
        }
        for layers in 0..=model.layer_count() + 1 {
            if let Ok(f) = model.features_u8(&pixels, layers, &mut scratch) {
                let f = f.to_vec();
                let mut real = vec![0.0f32; f.len()];
                let _ = model.dequantize_output_of(layers - 1, &f, &mut real);
            }
        }
        for l in 0..model.layer_count() {
            if let Some((h, _)) = model.layer(l) {
                let mut w = vec![0.0f32; h.in_features * h.out_features];
                let mut b = vec![0.0f32; h.out_features];
                let _ = model.dequantize_layer(l, &mut w, &mut b);
            }
        }
        head_replaced(model);
    } else {
        let mut scratch = vec![0.0f32; model.scratch_len()];
        if let Ok(y) = model.infer_f32(&x, &mut scratch) {
            let _ = deploy::argmax(y);
        }
        quantized(model, &x);
    }
}

/// Post-training quantization of a parsed f32 model: an error or a file that
/// parses.
fn quantized(model: &Model<'_>, x: &[f32]) {
    let mut calib = Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    if calib.observe(model, x, &mut scratch).is_err() {
        return;
    }
    let len = deploy::quantized_len(model);
    let mut words = vec![0u32; len.div_ceil(4)];
    let out = bytes_mut(&mut words);
    if let Ok(n) = deploy::quantize(model, &calib, out) {
        let q = Model::parse(&bytes(&words)[..n]);
        assert!(
            q.is_ok(),
            "quantize wrote a file that does not parse: {q:?}"
        );
        // A table exactly for the activations other than ReLU and the
        // identity, and the file runs.
        if let Ok(q) = q {
            for (h, w) in q.layers() {
                let has = matches!(w, LayerWeights::Int8 { table: Some(_), .. });
                assert_eq!(has, ActivationTable::needed(h.activation), "{h:?}");
            }
            let mut scratch = vec![0i8; q.scratch_len()];
            let mut qx = vec![0i8; x.len()];
            let mut out = vec![0.0f32; q.output_features()];
            assert!(q.infer_i8(x, &mut qx, &mut scratch, &mut out).is_ok());
            let mut text = String::new();
            assert!(write_rust_source(&q, &mut text).is_ok());
        }
    }
    // With an input step: the file parses and keeps it.
    let offset: Vec<f32> = x.iter().map(|v| v * 3.0).collect();
    let scale: Vec<f32> = x.iter().map(|v| 1.0 + v.abs()).collect();
    let step = InputStep {
        offset: &offset,
        scale: &scale,
    };
    let len = len + InputStep::file_len(x.len());
    let mut words = vec![0u32; len.div_ceil(4)];
    let out = bytes_mut(&mut words);
    if let Ok(n) = deploy::quantize_with_input_step(model, &calib, step, out) {
        let q = Model::parse(&bytes(&words)[..n]);
        assert!(
            q.is_ok_and(|m| m.input_step() == Some(step)),
            "quantize_with_input_step wrote a file that does not parse or lost its step"
        );
    }
}

/// `write_with_last_layer` on a parsed int8 model: an error or a file that
/// parses.
fn head_replaced(model: &Model<'_>) {
    let Some((h, _)) = model.layer(model.layer_count().saturating_sub(1)) else {
        return;
    };
    let weight: Vec<f32> = (0..h.in_features * h.out_features)
        .map(|i| (i % 5) as f32 * 0.1 - 0.2)
        .collect();
    let bias = vec![0.05f32; h.out_features];
    let mut scratch = vec![0u8; deploy::int8_layer_len(h.in_features, h.out_features)];
    let mut file = Vec::new();
    let qout = QuantParams::from_range(-1.0, 1.0);
    let r = deploy::write_with_last_layer(model, &weight, &bias, qout, &mut scratch, &mut |b| {
        file.extend_from_slice(b);
        Ok(())
    });
    if let Ok(n) = r {
        assert_eq!(n, file.len());
        let words = aligned(&file);
        let q = Model::parse(&bytes(&words)[..n]);
        assert!(
            q.is_ok(),
            "write_with_last_layer wrote a file that does not parse: {q:?}"
        );
    }
}
