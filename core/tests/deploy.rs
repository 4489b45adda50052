//! The deployable weight format: round trips, validation that never panics,
//! signature checks, int8 quantization accuracy, and Rust source export.

use ember_nn_core::deploy::{self, Aligned, Calibration, FormatError, Model};
use ember_nn_core::nn::{Build, Forward, Linear, ReLU, Sigmoid, Tanh};
use ember_nn_core::prelude::*;
use proptest::prelude::{any, proptest, ProptestConfig};

type Net = (Linear<6, 16>, ReLU, Linear<16, 8>, Tanh, Linear<8, 4>);
type Other = (Linear<6, 16>, ReLU, Linear<16, 8>, Sigmoid, Linear<8, 4>);

/// Builds `Net` with seed `seed`, exports it, and returns the bytes (aligned).
fn exported(seed: u64) -> (Vec<u32>, usize, Vec<f32>) {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(seed)).unwrap();
    let len = deploy::plan(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<6>)))
    })
    .unwrap()
    .file_len();
    // A Vec<u32> gives 4-byte alignment.
    let mut words = vec![0u32; len.div_ceil(4)];
    let bytes = bytes_mut(&mut words);
    let n = export(&net, &mut mem, bytes);
    assert_eq!(n, len);
    // Reference outputs from the training graph for 8 inputs.
    let g = Graph::new(&mut mem);
    let x = g.from_fn((8usize, Const::<6>), input);
    let y = g.no_grad(|| net.forward(x));
    let mut out = vec![0.0; 32];
    y.read(&mut out).unwrap();
    (words, n, out)
}

/// Exports a model that takes `(rows, Const<IN>)`, through its forward pass.
fn export<M, const IN: usize, const OUT: usize>(
    net: &M,
    mem: &mut Memory<'_, Cpu>,
    out: &mut [u8],
) -> usize
where
    M: ember_nn_core::nn::Module
        + for<'t> Forward<Tensor<'t, (usize, Const<IN>)>, Output = Tensor<'t, (usize, Const<OUT>)>>,
{
    let mut scratch = vec![0.0f32; 4096];
    deploy::export_f32(
        net,
        mem,
        |p| net.forward(p.input((p.rows(), Const::<IN>))),
        out,
        &mut scratch,
    )
    .unwrap()
}

fn input(i: usize) -> f32 {
    ((i * 37 % 23) as f32 / 11.0 - 1.0) * 1.5
}

fn bytes_mut(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirements; the slice covers
    // exactly the words' bytes and borrows them mutably.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) }
}

fn bytes(words: &[u32]) -> &[u8] {
    // SAFETY: as above, shared.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 4) }
}

#[test]
fn f32_round_trip_matches_the_training_graph() {
    let (words, n, reference) = exported(1);
    let model = Model::load::<Net>(&bytes(&words)[..n]).unwrap();
    assert_eq!(
        (
            model.input_features(),
            model.output_features(),
            model.layer_count()
        ),
        (6, 4, 3)
    );
    assert_eq!(model.scratch_len(), 32);
    let mut scratch = [0.0f32; 32];
    for s in 0..8 {
        let x: Vec<f32> = (0..6).map(|j| input(s * 6 + j)).collect();
        let out = model.infer_f32(&x, &mut scratch).unwrap();
        for (a, b) in out.iter().zip(&reference[s * 4..s * 4 + 4]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
    // Wrong calls are typed errors.
    assert!(model.infer_f32(&[0.0; 5], &mut scratch).is_err());
    assert!(model.infer_f32(&[0.0; 6], &mut scratch[..10]).is_err());
    assert!(model
        .infer_i8(&[0.0; 6], &mut [0i8; 6], &mut [0i8; 32], &mut [0.0; 4])
        .is_err());
}

#[test]
fn wrong_model_type_is_a_signature_mismatch() {
    let (words, n, _) = exported(2);
    let b = &bytes(&words)[..n];
    let err = Model::load::<Other>(b).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::SignatureMismatch {
                layer: 1,
                file: Some(_),
                expected: Some(_)
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        Model::load::<(Linear<6, 16>, ReLU, Linear<16, 4>)>(b),
        Err(FormatError::SignatureMismatch { .. })
    ));
    assert!(matches!(
        Model::load::<(
            Linear<6, 16>,
            ReLU,
            Linear<16, 8>,
            Tanh,
            Linear<8, 4>,
            ReLU,
            Linear<4, 2>
        )>(b),
        Err(FormatError::SignatureMismatch { .. })
    ));
}

#[test]
fn every_truncation_and_single_byte_corruption_is_rejected() {
    let (words, n, _) = exported(3);
    let good = &bytes(&words)[..n];
    for len in 0..n {
        assert!(
            Model::parse(&good[..len]).is_err(),
            "truncated to {len} accepted"
        );
    }
    let mut copy = words.clone();
    for i in 0..n {
        let b = bytes_mut(&mut copy);
        b[i] ^= 0x5A;
        assert!(
            Model::parse(&b[..n]).is_err(),
            "corruption at byte {i} accepted"
        );
        b[i] ^= 0x5A;
    }
    assert!(Model::parse(&bytes(&copy)[..n]).is_ok());
    // Misaligned input is refused, not read unaligned.
    let mut shifted = vec![0u32; n.div_ceil(4) + 1];
    let sb = bytes_mut(&mut shifted);
    sb[1..n + 1].copy_from_slice(good);
    assert!(matches!(
        Model::parse(&sb[1..n + 1]),
        Err(FormatError::Misaligned)
    ));
}

/// Re-stamps the CRC so that mutations reach the validation behind it.
fn restamp(b: &mut [u8]) {
    if b.len() >= 36 {
        let h = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        let d = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
        if let Some(end) = h.checked_add(d) {
            if end + 4 <= b.len() {
                let crc = deploy::crc32(0, &b[..end]);
                b[end..end + 4].copy_from_slice(&crc.to_le_bytes());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u32>(), 0..200)) {
        let b = bytes(&data);
        let _ = Model::parse(b);
        let mut copy = data.clone();
        let m = bytes_mut(&mut copy);
        if m.len() >= 8 {
            m[0..4].copy_from_slice(b"EMBR");
            m[4] = 1;
            m[5] = 0;
        }
        restamp(m);
        let _ = Model::parse(m);
    }

    #[test]
    fn parse_never_panics_on_mutated_files(
        seed in 0u64..4,
        edits in proptest::collection::vec((0usize..2000, any::<u8>()), 1..8),
        fix_crc in any::<bool>(),
    ) {
        let (mut words, n, _) = exported(seed);
        let b = bytes_mut(&mut words);
        for (at, v) in edits {
            let at = at % n;
            b[at] = v;
        }
        if fix_crc {
            restamp(&mut b[..n]);
        }
        if let Ok(model) = Model::parse(&b[..n]) {
            // Whatever was accepted must also run without panicking.
            let mut scratch = vec![0.0f32; model.scratch_len()];
            let x = vec![0.5f32; model.input_features()];
            let _ = model.infer_f32(&x, &mut scratch);
        };
    }
}

#[test]
fn int8_quantization_tracks_f32() {
    let (words, n, _) = exported(4);
    let model = Model::parse(&bytes(&words)[..n]).unwrap();
    let mut rng = Rng::new(9);
    let mut calib = Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    let samples: Vec<Vec<f32>> = (0..256)
        .map(|_| (0..6).map(|_| rng.normal()).collect())
        .collect();
    for s in &samples[..128] {
        calib.observe(&model, s, &mut scratch).unwrap();
    }
    let mut qbuf = vec![0u32; deploy::quantized_len(&model).div_ceil(4)];
    let qn = deploy::quantize(&model, &calib, bytes_mut(&mut qbuf)).unwrap();
    let q = Model::load::<Net>(&bytes(&qbuf)[..qn]).unwrap();
    assert!(q.is_int8());
    assert!(q.parameter_bytes() < model.parameter_bytes());
    let mut qs = vec![0i8; q.scratch_len()];
    let mut qi = vec![0i8; q.input_features()];
    let (mut agree, mut max_err, mut max_out) = (0, 0.0f32, 0.0f32);
    for s in &samples[128..] {
        let f = model.infer_f32(s, &mut scratch).unwrap().to_vec();
        let mut o = [0.0f32; 4];
        q.infer_i8(s, &mut qi, &mut qs, &mut o).unwrap();
        agree += usize::from(deploy::argmax(&f) == deploy::argmax(&o));
        for (a, b) in f.iter().zip(&o) {
            max_err = max_err.max((a - b).abs());
            max_out = max_out.max(a.abs());
        }
    }
    assert!(agree >= 120, "int8 and f32 agree on {agree}/128 argmaxes");
    assert!(
        max_err < 0.1 * max_out,
        "max error {max_err} for outputs up to {max_out}"
    );
}

#[test]
fn int8_export_of_odd_widths_parses() {
    // Widths whose byte sizes are not multiples of the 16-byte alignment.
    type Odd = (Linear<7, 5>, ReLU, Linear<5, 3>);
    let mut buf = vec![0.0f32; 1024];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Odd::build(&mut mem, &mut Rng::new(6)).unwrap();
    let mut f = Aligned([0u8; 2048]);
    let n = export(&net, &mut mem, &mut f.0);
    let model = Model::load::<Odd>(&f.0[..n]).unwrap();
    let mut calib = Calibration::new();
    let mut scratch = [0.0f32; 16];
    calib
        .observe(&model, &[0.5, -0.5, 1.0, 0.0, 0.2, 0.9, -1.0], &mut scratch)
        .unwrap();
    let mut q = Aligned([0u8; 2048]);
    let qn = deploy::quantize(&model, &calib, &mut q.0).unwrap();
    assert_eq!(qn, deploy::quantized_len(&model));
    Model::load::<Odd>(&q.0[..qn]).unwrap();
}

#[test]
fn rust_source_export_matches_the_golden_file_and_runs() {
    // A small fixed model (seed 5) exported to Rust source. The golden file is
    // compiled into this test below, so a change in the generator shows up
    // both as a text difference and, if it breaks the code, as a build error.
    let mut buf = vec![0.0f32; 512];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = <(Linear<3, 4>, ReLU, Linear<4, 2>)>::build(&mut mem, &mut Rng::new(5)).unwrap();
    let mut bytes_buf = Aligned([0u8; 512]);
    let n = export(&net, &mut mem, &mut bytes_buf.0);
    let model = Model::parse(&bytes_buf.0[..n]).unwrap();
    let mut src = String::new();
    deploy::write_rust_source(&model, &mut src).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny_model.rs");
    if std::env::var_os("EMBER_BLESS").is_some() {
        std::fs::write(path, &src).unwrap();
    }
    let golden = std::fs::read_to_string(path).unwrap();
    assert_eq!(src, golden, "regenerate with EMBER_BLESS=1");

    mod golden {
        include!("data/tiny_model.rs");
    }
    let from_src = Model::from_layers(&golden::LAYERS).unwrap();
    let mut s1 = [0.0f32; 8];
    let mut s2 = [0.0f32; 8];
    let x = [0.3, -0.7, 1.2];
    assert_eq!(
        model.infer_f32(&x, &mut s1).unwrap(),
        from_src.infer_f32(&x, &mut s2).unwrap()
    );
}

/// `Net` exported with seed `seed` and quantized to int8 (calibrated on
/// the reference inputs); the bytes, 4-byte aligned.
fn quantized(seed: u64) -> (Vec<u32>, usize) {
    quantized_on(seed, input)
}

/// As [`quantized`], calibrated on the inputs `x`.
fn quantized_on(seed: u64, x: fn(usize) -> f32) -> (Vec<u32>, usize) {
    let (words, n, _) = exported(seed);
    let model = Model::parse(&bytes(&words)[..n]).unwrap();
    let mut calib = Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    for s in 0..8 {
        let x: Vec<f32> = (0..6).map(|j| x(s * 6 + j)).collect();
        calib.observe(&model, &x, &mut scratch).unwrap();
    }
    let mut q = vec![0u32; deploy::quantized_len(&model).div_ceil(4)];
    let qn = deploy::quantize(&model, &calib, bytes_mut(&mut q)).unwrap();
    (q, qn)
}

fn rd(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Applies `edit` to a copy of the file, restamps the CRC and parses it.
fn parse_edited(words: &[u32], n: usize, edit: impl FnOnce(&mut [u8])) -> Result<(), FormatError> {
    let mut copy = words.to_vec();
    let b = &mut bytes_mut(&mut copy)[..n];
    edit(b);
    restamp(b);
    Model::parse(b).map(|_| ())
}

/// The byte positions that only the layout decides (reserved header bytes,
/// record reserved bytes and data offsets, padding in the data): changing
/// any of them must be rejected, even with a valid CRC.
fn structural_bytes(b: &[u8]) -> Vec<usize> {
    let layers = usize::from(b[7]);
    let header = rd(b, 8) as usize;
    let int8 = b[6] == 1;
    let mut at: Vec<usize> = (24..32).collect();
    at.extend(32 + 48 * layers..header);
    for l in 0..layers {
        let r = 32 + 48 * l;
        at.extend(r + 9..r + 12);
        at.extend(r + 16..r + 32);
        if !int8 {
            at.extend(r + 32..r + 48);
        }
        // Padding after each part: from its end to its 16-byte boundary.
        let (inf, outf) = (rd(b, r) as usize, rd(b, r + 4) as usize);
        let sizes = if int8 {
            [inf * outf, 4 * outf, 4 * outf, 8 * outf]
        } else {
            [4 * inf * outf, 4 * outf, 0, 0]
        };
        for (k, size) in sizes.into_iter().enumerate().filter(|&(_, s)| s > 0) {
            let off = header + rd(b, r + 16 + 4 * k) as usize;
            at.extend(off + size..off + size.next_multiple_of(16));
        }
    }
    at
}

#[test]
fn only_the_canonical_layout_is_accepted() {
    for (words, n) in [
        {
            let (w, n, _) = exported(5);
            (w, n)
        },
        quantized(5),
    ] {
        let good = &bytes(&words)[..n];
        assert!(Model::parse(good).is_ok());
        let int8 = good[6] == 1;
        // A weight offset moved by one byte (int8 views stay aligned) or by
        // a whole 16-byte step, with the CRC re-stamped.
        for delta in [1u32, 16] {
            let moved = parse_edited(&words, n, |b| {
                let v = rd(b, 32 + 16) + delta;
                b[48..52].copy_from_slice(&v.to_le_bytes());
            });
            assert!(
                matches!(moved, Err(FormatError::BadOffset { layer: 0 })),
                "int8 {int8}, +{delta}: {moved:?}"
            );
        }
        // Layer 1's bias where layer 0's weights are (overlap).
        let overlap = parse_edited(&words, n, |b| {
            let w0 = rd(b, 48);
            b[32 + 48 + 20..32 + 48 + 24].copy_from_slice(&w0.to_le_bytes());
        });
        assert!(
            matches!(overlap, Err(FormatError::BadOffset { layer: 1 })),
            "{overlap:?}"
        );
        // Reserved bytes.
        let reserved = parse_edited(&words, n, |b| b[27] = 1);
        assert_eq!(reserved, Err(FormatError::Reserved { layer: None }));
        let record = parse_edited(&words, n, |b| b[32 + 48 + 10] = 7);
        assert_eq!(record, Err(FormatError::Reserved { layer: Some(1) }));
        // A parameter for an activation without one (layer 0 is ReLU).
        let param = parse_edited(&words, n, |b| {
            b[32 + 12..32 + 16].copy_from_slice(&0.5f32.to_le_bytes())
        });
        assert_eq!(param, Err(FormatError::Reserved { layer: Some(0) }));
        for at in structural_bytes(good) {
            let r = parse_edited(&words, n, |b| b[at] ^= 0x21);
            assert!(r.is_err(), "int8 {int8}: byte {at} changed and accepted");
        }
    }
}

#[test]
fn int8_quantization_must_chain() {
    let (words, n) = quantized(6);
    // Layer 1's input scale differs from layer 0's output scale.
    let r = parse_edited(&words, n, |b| {
        let s = f32::from_bits(rd(b, 32 + 48 + 32)) * 1.5;
        b[32 + 48 + 32..32 + 48 + 36].copy_from_slice(&s.to_le_bytes());
    });
    assert_eq!(r, Err(FormatError::QuantizationChain { layer: 1 }));
    // Its zero point.
    let r = parse_edited(&words, n, |b| {
        let z = rd(b, 32 + 48 + 36) as i32 + 1;
        b[32 + 48 + 36..32 + 48 + 40].copy_from_slice(&z.to_le_bytes());
    });
    assert_eq!(r, Err(FormatError::QuantizationChain { layer: 1 }));
}

#[test]
fn magic_and_versions() {
    let (words, n, _) = exported(7);
    let not_ember = parse_edited(&words, n, |b| b[0..4].copy_from_slice(b"GGUF"));
    assert_eq!(not_ember, Err(FormatError::BadMagic));
    assert_eq!(
        FormatError::BadMagic.to_string(),
        "not an Ember model (bad magic)"
    );
    // A safetensors file starts with its header length, then JSON.
    let mut st = 16u64.to_le_bytes().to_vec();
    st.extend_from_slice(br#"{"__metadata__":{}}"#);
    st.resize(64, b' ');
    assert_eq!(Model::parse(&st).err(), Some(FormatError::BadMagic));
    assert_eq!(Model::parse(b"GG").err(), Some(FormatError::BadMagic));
    assert_eq!(Model::parse(b"EMB").err(), Some(FormatError::TooShort));
    // Version 1: f32 files still load; int8 ones (another layout) do not.
    assert!(parse_edited(&words, n, |b| b[4] = 1).is_ok());
    let (q, qn) = quantized(7);
    assert_eq!(
        parse_edited(&q, qn, |b| b[4] = 1),
        Err(FormatError::UnsupportedVersion(1))
    );
    // Version 3 is a graph file, which `GraphModel` reads.
    assert_eq!(
        parse_edited(&words, n, |b| b[4] = 3),
        Err(FormatError::GraphFile)
    );
    assert_eq!(
        parse_edited(&words, n, |b| b[4] = 4),
        Err(FormatError::UnsupportedVersion(4))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The canonical-layout rules under random edits: changing any byte
    /// that only the layout decides is rejected, whatever the new value,
    /// even with a valid CRC; any file accepted runs without panicking.
    #[test]
    fn layout_bytes_are_checked(seed in 0u64..3, pick in any::<usize>(), v in 1u8..=255, int8 in any::<bool>()) {
        let (words, n) = if int8 { quantized(seed) } else { let (w, n, _) = exported(seed); (w, n) };
        let good = &bytes(&words)[..n];
        let at = structural_bytes(good);
        let i = at[pick % at.len()];
        let r = parse_edited(&words, n, |b| b[i] ^= v);
        proptest::prop_assert!(r.is_err(), "byte {} ^ {:#x} accepted", i, v);
    }
}

#[test]
fn model_type_source_names_the_layers() {
    let (words, n, _) = exported(8);
    let model = Model::load::<Net>(&bytes(&words)[..n]).unwrap();
    let mut src = String::new();
    deploy::write_model_type(&model, &mut src).unwrap();
    assert!(
        src.contains("pub type Net = (Linear<6, 16>, ReLU, Linear<16, 8>, Tanh, Linear<8, 4>);"),
        "{src}"
    );
    for line in [
        "pub const INPUTS: usize = 6;",
        "pub const OUTPUTS: usize = 4;",
        "pub const WIDEST: usize = 16;",
        "pub const LAST_INPUTS: usize = 8;",
        "pub const ARCHITECTURE: &str = \"6-16-8-4 (ReLU, Tanh)\";",
    ] {
        assert!(src.contains(line), "{line} missing from {src}");
    }
}

#[test]
fn dequantized_layers_are_the_f32_layers_within_a_step() {
    let (words, n, _) = exported(9);
    let f = Model::parse(&bytes(&words)[..n]).unwrap();
    let (q, qn) = quantized(9);
    let q = Model::parse(&bytes(&q)[..qn]).unwrap();
    for l in 0..f.layer_count() {
        let (h, _) = f.layer(l).unwrap();
        let (rows, cols) = (h.out_features, h.in_features);
        let (mut wf, mut bf) = (vec![0.0; rows * cols], vec![0.0; rows]);
        let (mut wq, mut bq) = (vec![0.0; rows * cols], vec![0.0; rows]);
        f.dequantize_layer(l, &mut wf, &mut bf).unwrap();
        q.dequantize_layer(l, &mut wq, &mut bq).unwrap();
        let (qh, deploy::LayerWeights::Int8 { scales, .. }) = q.layer(l).unwrap() else {
            panic!("int8");
        };
        for o in 0..rows {
            let ws = scales[o];
            for j in 0..cols {
                let d = (wf[o * cols + j] - wq[o * cols + j]).abs();
                assert!(
                    d <= ws / 2.0 + 1e-6,
                    "layer {l} w[{o},{j}]: {d} vs step {ws}"
                );
            }
            let step = qh.in_scale * ws;
            assert!(
                (bf[o] - bq[o]).abs() <= step / 2.0 + 1e-6,
                "layer {l} b[{o}]"
            );
        }
    }
    let mut small = [0.0f32; 3];
    assert!(q.dequantize_layer(0, &mut small, &mut [0.0; 16]).is_err());
    assert!(q.dequantize_layer(9, &mut small, &mut [0.0; 16]).is_err());
}

#[test]
fn features_are_the_first_layers_of_inference() {
    // Inputs in [0, 1.5]: the input zero point is -128, so bytes can go in.
    let (q, qn) = quantized_on(10, |i| input(i).abs());
    let q = Model::parse(&bytes(&q)[..qn]).unwrap();
    let mut scratch = vec![0i8; q.scratch_len()];
    let x: Vec<i8> = (0..6).map(|j| (j * 37 % 200) as i8).collect();
    let all = q.infer_q8(&x, &mut scratch).unwrap().to_vec();
    // All layers through `features` is the whole inference, as bytes.
    let xu: Vec<u8> = x.iter().map(|&v| (v as u8) ^ 0x80).collect();
    assert_eq!(q.features_u8(&xu, 3, &mut scratch).unwrap(), &all[..]);
    // The first layer alone, dequantized, tracks the f32 layer's ReLU output.
    let f1 = q.features_u8(&xu, 1, &mut scratch).unwrap().to_vec();
    assert_eq!(f1.len(), 16);
    let mut real = vec![0.0; 16];
    q.dequantize_output_of(0, &f1, &mut real).unwrap();
    assert!(real.iter().all(|&v| v >= 0.0), "ReLU outputs: {real:?}");
    assert!(q.features_u8(&xu, 0, &mut scratch).is_err());
    assert!(q.features_u8(&xu, 4, &mut scratch).is_err());
}

/// A head trained on the device goes back into the int8 file: the file
/// written in pieces parses, keeps every other byte, and its last layer is
/// the new head within half a quantization step; bad requests are typed
/// errors that emit nothing.
#[test]
fn a_retrained_last_layer_is_written_into_the_int8_file() {
    let (q, qn) = quantized(11);
    let original = &bytes(&q)[..qn];
    let model = Model::parse(original).unwrap();
    let last = model.layer_count() - 1;
    let (h, _) = model.layer(last).unwrap();
    let (rows, cols) = (h.out_features, h.in_features);
    // A different head: the deployed one negated and shifted.
    let (mut w, mut b) = (vec![0.0; rows * cols], vec![0.0; rows]);
    model.dequantize_layer(last, &mut w, &mut b).unwrap();
    w.iter_mut().for_each(|v| *v = 0.5 - *v);
    b.iter_mut().for_each(|v| *v = -*v);
    let qout = deploy::QuantParams::from_range(-3.0, 4.0);
    let mut scratch = vec![0u8; deploy::int8_layer_len(cols, rows)];
    let mut file = Vec::new();
    let n = deploy::write_with_last_layer(&model, &w, &b, qout, &mut scratch, &mut |p| {
        file.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    assert_eq!((n, file.len()), (qn, qn));
    let mut words = vec![0u32; n.div_ceil(4)];
    bytes_mut(&mut words)[..n].copy_from_slice(&file);
    let written = Model::parse(&bytes(&words)[..n]).expect("the written file parses");
    let (wh, _) = written.layer(last).unwrap();
    assert_eq!((wh.out_scale, wh.out_zero), (qout.scale, qout.zero));
    assert_eq!((wh.in_scale, wh.in_zero), (h.in_scale, h.in_zero));
    // Every layer before the last, and the input side, is unchanged.
    let (_, deploy::LayerWeights::Int8 { weight, .. }) = model.layer(last).unwrap() else {
        panic!("int8");
    };
    let start = weight.as_ptr() as usize - original.as_ptr() as usize;
    let record = 32 + 48 * last;
    assert_eq!(file[..record + 40], original[..record + 40]);
    assert_eq!(file[record + 48..start], original[record + 48..start]);
    // The new last layer is the head within half a step.
    let (mut wq, mut bq) = (vec![0.0; rows * cols], vec![0.0; rows]);
    written.dequantize_layer(last, &mut wq, &mut bq).unwrap();
    let (_, deploy::LayerWeights::Int8 { scales, .. }) = written.layer(last).unwrap() else {
        panic!("int8");
    };
    for o in 0..rows {
        for j in 0..cols {
            let d = (w[o * cols + j] - wq[o * cols + j]).abs();
            assert!(d <= scales[o] / 2.0 + 1e-6, "w[{o},{j}] off by {d}");
        }
        assert!((b[o] - bq[o]).abs() <= h.in_scale * scales[o] / 2.0 + 1e-6);
    }

    // Errors: nothing is emitted.
    let mut emitted = 0;
    let mut count = |p: &[u8]| {
        emitted += p.len();
        Ok(())
    };
    let short = &w[..w.len() - 1];
    assert_eq!(
        deploy::write_with_last_layer(&model, short, &b, qout, &mut scratch, &mut count),
        Err(FormatError::BadShape { layer: last })
    );
    let bad_q = deploy::QuantParams {
        scale: 0.0,
        zero: 0,
    };
    assert_eq!(
        deploy::write_with_last_layer(&model, &w, &b, bad_q, &mut scratch, &mut count),
        Err(FormatError::BadQuantization { layer: last })
    );
    let mut tiny = [0u8; 8];
    assert!(matches!(
        deploy::write_with_last_layer(&model, &w, &b, qout, &mut tiny, &mut count),
        Err(FormatError::BufferTooSmall { .. })
    ));
    let (f, fnn, _) = exported(11);
    let f32_model = Model::parse(&bytes(&f)[..fnn]).unwrap();
    assert_eq!(
        deploy::write_with_last_layer(&f32_model, &w, &b, qout, &mut scratch, &mut count),
        Err(FormatError::Unsupported)
    );
    assert_eq!(emitted, 0);
    // A destination that refuses is reported as such.
    assert_eq!(
        deploy::write_with_last_layer(&model, &w, &b, qout, &mut scratch, &mut |_| {
            Err(FormatError::Output)
        }),
        Err(FormatError::Output)
    );
}

/// The mismatch names the layer and both sides of it, as PyTorch prints
/// the modules: what to fix is in the message.
#[test]
fn a_signature_mismatch_says_what_differs() {
    let (words, n, _) = exported(2);
    let b = &bytes(&words)[..n];
    let message = |r: Result<Model<'_>, FormatError>| r.unwrap_err().to_string();
    assert_eq!(
        message(Model::load::<Other>(b)),
        "the file describes a different model: layer 1 is Linear(16, 8) + Tanh() in the file, \
         Linear(16, 8) + Sigmoid() in the type"
    );
    assert_eq!(
        message(Model::load::<(Linear<6, 16>, ReLU, Linear<16, 4>)>(b)),
        "the file describes a different model: layer 1 is Linear(16, 8) + Tanh() in the file, \
         Linear(16, 4) in the type"
    );
    assert_eq!(
        message(Model::load::<(Linear<6, 16>, ReLU, Linear<16, 8>, Tanh)>(b)),
        "the file describes a different model: layer 2 is Linear(8, 4) in the file, no layer in the type"
    );
}

/// An int8 model's arena is the largest layer input and output side by side
/// (16 + 8 here; the first layer's `i8` input flipped beside its output,
/// 6 + 16, fits too), less than two buffers of the widest layer (32), and
/// the outputs do not depend on what else the scratch holds or how long it
/// is.
#[test]
fn int8_arena_is_the_largest_adjacent_pair() {
    let (words, n) = quantized(3);
    let q = Model::load::<Net>(&bytes(&words)[..n]).unwrap();
    assert_eq!(q.scratch_len(), 16 + 8);
    for s in 0..8 {
        let x: Vec<f32> = (0..6).map(|j| input(s * 6 + j)).collect();
        let mut qi = vec![0i8; 6];
        let (mut tight, mut wide) = (vec![0i8; q.scratch_len()], vec![0x55i8; 64]);
        let (mut a, mut b) = ([0.0f32; 4], [0.0f32; 4]);
        q.infer_i8(&x, &mut qi, &mut tight, &mut a).unwrap();
        q.infer_i8(&x, &mut qi, &mut wide, &mut b).unwrap();
        assert_eq!(a, b);
        let t = q.infer_q8(&qi, &mut tight).unwrap().to_vec();
        assert_eq!(t, q.infer_q8(&qi, &mut wide).unwrap());
    }
    let mut short = vec![0i8; q.scratch_len() - 1];
    assert!(matches!(
        q.infer_q8(&[0i8; 6], &mut short),
        Err(deploy::InferError::ScratchTooSmall { needed: 24 })
    ));
}
