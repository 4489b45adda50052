//! An int8 model that standardizes its raw inputs (`deploy::InputStep`):
//! features of very different magnitudes keep their precision, which a
//! scaling folded into the first layer and one input quantization step
//! lose; the file's step is validated like every other byte; and every path
//! that reads or rewrites a file keeps it.

use ember_nn_core::deploy::{
    self, Calibration, FormatError, InferError, InputStep, LayerHeader, LayerWeights, Model,
};
use ember_nn_core::nn::{Build, Forward, Linear, ReLU};
use ember_nn_core::prelude::*;
use proptest::prelude::{any, proptest, ProptestConfig};

type Net = (Linear<3, 8>, ReLU, Linear<8, 2>);

/// Rows of three raw features of very different magnitudes, as a sensor
/// table has them: a fraction, a reading near 1,500 with a spread of a
/// few hundred, and a small signed one.
fn raw_rows() -> Vec<[f32; 3]> {
    (0..64)
        .map(|i| {
            let t = i as f32;
            [
                (t * 0.37).sin().abs(),
                1500.0 + 300.0 * (t * 0.11).cos(),
                0.02 * (t * 0.73).sin(),
            ]
        })
        .collect()
}

/// The training split's mean and population standard deviation.
fn fitted(rows: &[[f32; 3]]) -> ([f32; 3], [f32; 3]) {
    let n = rows.len() as f32;
    let mut mean = [0.0; 3];
    let mut sd = [0.0; 3];
    for j in 0..3 {
        mean[j] = rows.iter().map(|r| r[j]).sum::<f32>() / n;
        let var = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f32>() / n;
        sd[j] = var.sqrt();
    }
    (mean, sd)
}

/// 16-byte aligned bytes, as `Aligned` or a file read into words.
fn aligned(bytes: &[u8]) -> Vec<u128> {
    let mut words = vec![0u128; bytes.len().div_ceil(16)];
    as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

fn as_bytes(words: &[u128]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirements; the slice covers
    // exactly the words' bytes and borrows them.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 16) }
}

fn as_bytes_mut(words: &mut [u128]) -> &mut [u8] {
    // SAFETY: as above, mutably.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 16) }
}

/// The f32 file of `Net` (seed 3), trained on standardized features.
fn f32_file() -> Vec<u8> {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(3)).unwrap();
    let mut out = vec![0u8; 4096];
    let mut scratch = vec![0.0f32; 4096];
    let n = deploy::export_f32(
        &net,
        &mut mem,
        |p| net.forward(p.input((p.rows(), Const::<3>))),
        &mut out,
        &mut scratch,
    )
    .unwrap();
    out.truncate(n);
    out
}

/// The f32 model's layers with `(x − mean) / sd` folded into the first.
fn folded(model: &Model<'_>, mean: &[f32; 3], sd: &[f32; 3]) -> Vec<(Vec<f32>, Vec<f32>)> {
    model
        .layers()
        .enumerate()
        .map(|(i, (h, w))| {
            let LayerWeights::F32 { weight, bias } = w else {
                unreachable!("an f32 file")
            };
            let (mut w, mut b) = (weight.to_vec(), bias.to_vec());
            if i == 0 {
                for (row, bo) in w.chunks_mut(h.in_features).zip(&mut b) {
                    for j in 0..3 {
                        *bo -= row[j] * mean[j] / sd[j];
                        row[j] /= sd[j];
                    }
                }
            }
            (w, b)
        })
        .collect()
}

/// What a test compares: the standardized f32 model, its int8 file with the
/// step, and the int8 file of the scaling folded into the first layer.
struct Files {
    f32: Vec<u128>,
    f32_len: usize,
    step: Vec<u128>,
    step_len: usize,
    folded: Vec<u128>,
    folded_len: usize,
    mean: [f32; 3],
    sd: [f32; 3],
}

fn files() -> Files {
    let rows = raw_rows();
    let (mean, sd) = fitted(&rows);
    let f32_bytes = f32_file();
    let f32_words = aligned(&f32_bytes);
    let model = Model::parse(&as_bytes(&f32_words)[..f32_bytes.len()]).unwrap();
    let step = InputStep {
        offset: &mean,
        scale: &sd,
    };

    // With the step: calibrated on the standardized rows.
    let mut calib = Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    for r in &rows {
        let z: Vec<f32> = (0..3).map(|j| step.apply(j, r[j])).collect();
        calib.observe(&model, &z, &mut scratch).unwrap();
    }
    let len = deploy::quantized_len(&model) + InputStep::file_len(3);
    let mut out = vec![0u8; len];
    let n = deploy::quantize_with_input_step(&model, &calib, step, &mut out).unwrap();
    assert_eq!(n, len);

    // Folded: the raw-feature f32 model, calibrated on the raw rows.
    let layers = folded(&model, &mean, &sd);
    let tables: Vec<(LayerHeader, LayerWeights<'_>)> = model
        .layers()
        .zip(&layers)
        .map(|((h, _), (w, b))| (h, LayerWeights::F32 { weight: w, bias: b }))
        .collect();
    let raw_model = Model::from_layers(&tables).unwrap();
    let mut calib = Calibration::new();
    for r in &rows {
        calib.observe(&raw_model, r, &mut scratch).unwrap();
    }
    let mut folded_out = vec![0u8; deploy::quantized_len(&raw_model)];
    let fn_ = deploy::quantize(&raw_model, &calib, &mut folded_out).unwrap();

    Files {
        f32: f32_words,
        f32_len: f32_bytes.len(),
        step: aligned(&out),
        step_len: n,
        folded: aligned(&folded_out[..fn_]),
        folded_len: fn_,
        mean,
        sd,
    }
}

/// The int8 outputs of `model` on a raw row.
fn int8_outputs(model: &Model<'_>, row: &[f32; 3]) -> [f32; 2] {
    let mut q = [0i8; 3];
    let mut scratch = vec![0i8; model.scratch_len()];
    let mut out = [0.0f32; 2];
    model.infer_i8(row, &mut q, &mut scratch, &mut out).unwrap();
    out
}

#[test]
fn the_step_keeps_small_features_that_one_input_scale_loses() {
    let f = files();
    let f32_model = Model::parse(&as_bytes(&f.f32)[..f.f32_len]).unwrap();
    let step = Model::parse(&as_bytes(&f.step)[..f.step_len]).unwrap();
    let folded = Model::parse(&as_bytes(&f.folded)[..f.folded_len]).unwrap();
    assert!(step.is_int8() && step.input_step().is_some());
    assert!(folded.input_step().is_none());
    assert_eq!(step.input_step().unwrap().offset, &f.mean[..]);
    assert_eq!(step.input_step().unwrap().scale, &f.sd[..]);

    let (mut worst_step, mut worst_folded, mut range) = (0.0f32, 0.0f32, 0.0f32);
    let mut scratch = vec![0.0f32; f32_model.scratch_len()];
    for r in raw_rows() {
        let z: Vec<f32> = (0..3).map(|j| (r[j] - f.mean[j]) / f.sd[j]).collect();
        let want = f32_model.infer_f32(&z, &mut scratch).unwrap().to_vec();
        let (s, d) = (int8_outputs(&step, &r), int8_outputs(&folded, &r));
        for k in 0..2 {
            worst_step = worst_step.max((s[k] - want[k]).abs());
            worst_folded = worst_folded.max((d[k] - want[k]).abs());
            range = range.max(want[k].abs());
        }
    }
    // With the step, int8 is within a few percent of the outputs' range;
    // folded, the third feature (±0.02 beside 1,500) is rounded away.
    assert!(worst_step < 0.05 * range, "step: {worst_step} of {range}");
    assert!(
        worst_folded > 4.0 * worst_step,
        "folded {worst_folded}, step {worst_step}"
    );
}

#[test]
fn the_step_is_the_standardization_then_the_plain_quantization() {
    // The same layers quantized without a step, fed rows standardized by
    // the same arithmetic, give the very same bytes.
    let f = files();
    let step = Model::parse(&as_bytes(&f.step)[..f.step_len]).unwrap();
    let s = step.input_step().unwrap();
    let mut layers = Vec::new();
    for (h, w) in step.layers() {
        layers.push((h, w));
    }
    let plain = Model::from_layers(&layers).unwrap();
    let again = plain.with_input_step(s).unwrap();
    for r in raw_rows() {
        let z: [f32; 3] = std::array::from_fn(|j| s.apply(j, r[j]));
        let (mut q1, mut q2) = ([0i8; 3], [0i8; 3]);
        step.quantize_input(&r, &mut q1).unwrap();
        plain.quantize_input(&z, &mut q2).unwrap();
        assert_eq!(q1, q2);
        assert_eq!(int8_outputs(&step, &r), int8_outputs(&again, &r));
    }
    assert!(plain.input_step().is_none());
}

#[test]
fn bytes_are_refused_by_a_model_that_standardizes() {
    let f = files();
    let step = Model::parse(&as_bytes(&f.step)[..f.step_len]).unwrap();
    let mut scratch = vec![0i8; step.scratch_len()];
    assert_eq!(
        step.infer_u8(&[0, 1, 2], &mut scratch),
        Err(InferError::StandardizedInput)
    );
    assert_eq!(
        step.features_u8(&[0, 1, 2], 1, &mut scratch),
        Err(InferError::StandardizedInput)
    );
    // An f32 model, or a step of the wrong width, cannot be given one.
    let f32_model = Model::parse(&as_bytes(&f.f32)[..f.f32_len]).unwrap();
    let s = step.input_step().unwrap();
    assert_eq!(
        f32_model.with_input_step(s).err(),
        Some(FormatError::BadInputStep)
    );
    let short = InputStep {
        offset: &s.offset[..2],
        scale: &s.scale[..2],
    };
    let layers: Vec<_> = step.layers().collect();
    let plain = Model::from_layers(&layers).unwrap();
    assert_eq!(
        plain.with_input_step(short).err(),
        Some(FormatError::BadInputStep)
    );
    let zero = [1.0, 0.0, 1.0];
    let bad = InputStep {
        offset: s.offset,
        scale: &zero,
    };
    assert_eq!(
        plain.with_input_step(bad).err(),
        Some(FormatError::BadInputStep)
    );
}

/// Applies `edit` to a copy of `f`'s step file, re-stamps the CRC, parses.
fn parse_edited(f: &Files, edit: impl FnOnce(&mut [u8])) -> Result<(), FormatError> {
    let mut words = f.step.clone();
    let b = &mut as_bytes_mut(&mut words)[..f.step_len];
    edit(b);
    restamp(b);
    Model::parse(b).map(|_| ())
}

fn restamp(b: &mut [u8]) {
    let rd = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
    let end = rd(8) + rd(12);
    if end + 4 <= b.len() {
        let crc = deploy::crc32(0, &b[..end]);
        b[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

#[test]
fn the_step_in_a_file_is_validated() {
    let f = files();
    let header = u32::from_le_bytes(as_bytes(&f.step)[8..12].try_into().unwrap()) as usize;
    assert_eq!(as_bytes(&f.step)[24], 1, "flag bit 0");
    assert!(parse_edited(&f, |_| {}).is_ok());
    // A scale of zero, a negative one, a NaN offset.
    let at_scale = header + 16; // three offsets padded to 16 bytes
    for (at, v) in [
        (at_scale, 0.0f32),
        (at_scale + 4, -1.0),
        (header, f32::NAN),
        (header + 8, f32::INFINITY),
    ] {
        let r = parse_edited(&f, |b| b[at..at + 4].copy_from_slice(&v.to_le_bytes()));
        assert_eq!(r, Err(FormatError::BadInputStep), "{v} at {at}");
    }
    // Padding after the offsets or the scales, and unknown flag bits.
    for at in [header + 12, at_scale + 15] {
        let r = parse_edited(&f, |b| b[at] = 1);
        assert_eq!(r, Err(FormatError::Reserved { layer: None }), "byte {at}");
    }
    let r = parse_edited(&f, |b| b[24] = 3);
    assert_eq!(r, Err(FormatError::Reserved { layer: None }));
    // Without the flag, the step's bytes are where layer 0's data must be.
    let r = parse_edited(&f, |b| b[24] = 0);
    assert!(r.is_err(), "{r:?}");
    // The flag on an f32 file.
    let mut f32_words = f.f32.clone();
    let b = &mut as_bytes_mut(&mut f32_words)[..f.f32_len];
    b[24] = 1;
    restamp(b);
    assert!(Model::parse(b).is_err());
}

#[test]
fn a_retrained_head_and_the_rust_source_keep_the_step() {
    let f = files();
    let model = Model::parse(&as_bytes(&f.step)[..f.step_len]).unwrap();
    let last = model.layer_count() - 1;
    let (h, _) = model.layer(last).unwrap();
    let (mut w, mut b) = (vec![0.0; h.in_features * h.out_features], vec![0.0; 2]);
    model.dequantize_layer(last, &mut w, &mut b).unwrap();
    let mut scratch = vec![0u8; deploy::int8_layer_len(h.in_features, h.out_features)];
    let mut file = Vec::new();
    let qout = deploy::QuantParams::from_range(-2.0, 2.0);
    let n = deploy::write_with_last_layer(&model, &w, &b, qout, &mut scratch, &mut |p| {
        file.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    let words = aligned(&file);
    let written = Model::parse(&as_bytes(&words)[..n]).unwrap();
    assert_eq!(written.input_step(), model.input_step());

    let mut src = String::new();
    deploy::write_rust_source(&model, &mut src).unwrap();
    assert!(src.contains("static INPUT_OFFSET: [f32; 3]"), "{src}");
    assert!(src.contains("pub static INPUT_STEP: InputStep<'static>"));
    assert!(src.contains("with_input_step(INPUT_STEP)"));
    assert_eq!(
        model.parameter_bytes(),
        Model::from_layers(&model.layers().collect::<Vec<_>>())
            .unwrap()
            .parameter_bytes()
            + 24
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_mutated_step_file_never_panics(
        edits in proptest::collection::vec((0usize..512, any::<u8>()), 1..6),
        fix_crc in any::<bool>(),
    ) {
        let f = files();
        let mut words = f.step.clone();
        let b = &mut as_bytes_mut(&mut words)[..f.step_len];
        for (at, v) in edits {
            b[at % f.step_len] = v;
        }
        if fix_crc {
            restamp(b);
        }
        if let Ok(model) = Model::parse(b) {
            let mut q = vec![0i8; model.input_features()];
            let mut scratch = vec![0i8; model.scratch_len()];
            let mut out = vec![0.0f32; model.output_features()];
            let x = vec![1500.0f32; model.input_features()];
            let _ = model.infer_i8(&x, &mut q, &mut scratch, &mut out);
        }
    }
}
