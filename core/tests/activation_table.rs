//! int8 activations other than ReLU and the identity as tables
//! ([`ActivationTable`]): what the quantizer writes, what the parser refuses,
//! the lookup against the f32 activation, files without tables unchanged,
//! the Rust source of a model with tables.

use ember_nn_core::deploy::{
    self, activation_table, Activation, ActivationTable, Calibration, FormatError, LayerHeader,
    LayerWeights, Model, QuantParams,
};
use ember_nn_core::nn::{Build, Forward, Linear, ReLU, Tanh};
use ember_nn_core::prelude::*;
use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest, ProptestConfig};

/// Layer 1 (Tanh) has a table; layers 0 (ReLU) and 2 (identity) do not.
type Net = (Linear<6, 16>, ReLU, Linear<16, 8>, Tanh, Linear<8, 4>);
type Plain = (Linear<6, 16>, ReLU, Linear<16, 4>);

fn bytes_mut(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirements; the slice covers
    // exactly the words' bytes and borrows them mutably.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) }
}

fn bytes(words: &[u32]) -> &[u8] {
    // SAFETY: as above, shared.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 4) }
}

fn rd(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn input(i: usize) -> f32 {
    ((i * 37 % 23) as f32 / 11.0 - 1.0) * 1.5
}

/// `M` built with `seed`, exported in f32 and quantized (calibrated on 16
/// inputs): (f32 words, length, int8 words, length).
fn files<M, const OUT: usize>(seed: u64) -> (Vec<u32>, usize, Vec<u32>, usize)
where
    M: Build
        + ember_nn_core::nn::Module
        + for<'t> Forward<Tensor<'t, (usize, Const<6>)>, Output = Tensor<'t, (usize, Const<OUT>)>>,
{
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = M::build(&mut mem, &mut Rng::new(seed)).unwrap();
    let len = deploy::plan(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<6>)))
    })
    .unwrap()
    .file_len();
    let mut words = vec![0u32; len.div_ceil(4)];
    let mut scratch = vec![0.0f32; 4096];
    let n = deploy::export_f32(
        &net,
        &mut mem,
        |p| net.forward(p.input((p.rows(), Const::<6>))),
        bytes_mut(&mut words),
        &mut scratch,
    )
    .unwrap();
    let model = Model::parse(&bytes(&words)[..n]).unwrap();
    let mut calib = Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    for s in 0..16 {
        let x: Vec<f32> = (0..6).map(|j| input(s * 6 + j)).collect();
        calib.observe(&model, &x, &mut scratch).unwrap();
    }
    let mut q = vec![0u32; deploy::quantized_len(&model).div_ceil(4)];
    let qn = deploy::quantize(&model, &calib, bytes_mut(&mut q)).unwrap();
    (words, n, q, qn)
}

/// Re-stamps the CRC.
fn restamp(b: &mut [u8]) {
    let end = rd(b, 8) as usize + rd(b, 12) as usize;
    let crc = deploy::crc32(0, &b[..end]);
    b[end..end + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Applies `edit` to a copy of the file, restamps the CRC and parses it.
fn parse_edited(words: &[u32], n: usize, edit: impl FnOnce(&mut [u8])) -> Result<(), FormatError> {
    let mut copy = words.to_vec();
    let b = &mut bytes_mut(&mut copy)[..n];
    edit(b);
    restamp(b);
    Model::parse(b).map(|_| ())
}

/// Where layer 1's table part starts in the file (bytes).
fn table_at(b: &[u8]) -> usize {
    let header = rd(b, 8) as usize;
    let r = 32 + 48;
    header + rd(b, r + 28) as usize + (8 * 8usize).next_multiple_of(16)
}

#[test]
fn quantize_writes_a_table_exactly_for_the_other_activations() {
    let (_, _, q, qn) = files::<Net, 4>(3);
    let b = &bytes(&q)[..qn];
    assert_eq!(b[24], 2, "flag bit 1, and only it");
    let model = Model::load::<Net>(b).unwrap();
    let tables: Vec<bool> = model
        .layers()
        .map(|(_, w)| matches!(w, LayerWeights::Int8 { table: Some(_), .. }))
        .collect();
    assert_eq!(tables, [false, true, false]);
    let (
        h,
        LayerWeights::Int8 {
            table: Some(t),
            requant,
            ..
        },
    ) = model.layer(1).unwrap()
    else {
        panic!("layer 1 has no table");
    };
    // The table is the function of its quantization, stored after the
    // pairs, 16-byte aligned, with 8 zero bytes before its entries.
    let out = QuantParams {
        scale: h.out_scale,
        zero: h.out_zero,
    };
    assert_eq!(t.values, activation_table(Activation::Tanh, t.pre(), out));
    let at = table_at(b);
    assert_eq!(at % 16, 0);
    assert_eq!(f32::from_bits(rd(b, at)), t.pre_scale);
    assert_eq!(rd(b, at + 4) as i32, t.pre_zero);
    assert!(b[at + 8..at + 16].iter().all(|&x| x == 0));
    assert_eq!(requant.len(), 16);
    // Tanh over the calibrated pre-activation range: increasing, in range.
    assert!(t.values.windows(2).all(|w| w[0] <= w[1]));
    assert!(model.parameter_bytes() > 256);
    // A model without such layers has no flag and no table.
    let (_, _, p, pn) = files::<Plain, 4>(3);
    let pb = &bytes(&p)[..pn];
    assert_eq!(pb[24], 0);
    assert!(Model::load::<Plain>(pb)
        .unwrap()
        .layers()
        .all(|(_, w)| matches!(w, LayerWeights::Int8 { table: None, .. })));
}

/// The int8 file of a model without tables is the one this version wrote
/// before tables existed, byte for byte (its CRC, computed then).
#[test]
fn files_without_tables_are_unchanged() {
    let (_, _, p, pn) = files::<Plain, 4>(11);
    let b = &bytes(&p)[..pn];
    assert_eq!(pn, 612);
    assert_eq!(rd(b, pn - 4), PLAIN_CRC, "{:#010x}", rd(b, pn - 4));
}

/// The CRC of `files::<Plain, 4>(11)`'s int8 file, computed with the
/// commit before activation tables (6780b66).
const PLAIN_CRC: u32 = 0x9f75_b76a;

#[test]
fn the_parser_refuses_what_the_writer_would_not_write() {
    let (f, fnb, q, qn) = files::<Net, 4>(5);
    assert!(Model::parse(&bytes(&q)[..qn]).is_ok());
    // The flag in an f32 file.
    let r = parse_edited(&f, fnb, |b| b[24] |= 2);
    assert_eq!(r, Err(FormatError::Reserved { layer: None }));
    // The flag on an int8 file without such layers.
    let (_, _, p, pn) = files::<Plain, 4>(5);
    let r = parse_edited(&p, pn, |b| b[24] |= 2);
    assert_eq!(r, Err(FormatError::Reserved { layer: None }));
    // No flag: a table is expected and missing.
    let r = parse_edited(&q, qn, |b| b[24] &= !2);
    assert_eq!(r, Err(FormatError::MissingActivationTable { layer: 1 }));
    // The reserved bytes of the table's part.
    for k in 8..16 {
        let r = parse_edited(&q, qn, |b| b[table_at(b) + k] = 1);
        assert_eq!(r, Err(FormatError::Reserved { layer: Some(1) }), "byte {k}");
    }
    // The pre-activation scale: finite and positive.
    for s in [0.0f32, -0.5, f32::NAN, f32::INFINITY, -0.0] {
        let r = parse_edited(&q, qn, |b| {
            let at = table_at(b);
            b[at..at + 4].copy_from_slice(&s.to_le_bytes());
        });
        assert_eq!(r, Err(FormatError::BadQuantization { layer: 1 }), "{s}");
    }
    // Its zero point: in -128..=127.
    for z in [128i32, -129, i32::MIN, 1000] {
        let r = parse_edited(&q, qn, |b| {
            let at = table_at(b);
            b[at + 4..at + 8].copy_from_slice(&z.to_le_bytes());
        });
        assert_eq!(r, Err(FormatError::BadQuantization { layer: 1 }), "{z}");
    }
    // Any entry is a valid output: a changed one parses (and runs).
    assert!(parse_edited(&q, qn, |b| b[table_at(b) + 16 + 7] ^= 0x55).is_ok());
}

/// A file as this format was written before activation tables (the same
/// layout without the table's part, no flag) is refused with the error
/// that says to quantize again.
#[test]
fn a_file_from_before_tables_is_refused_with_what_to_do() {
    let (_, _, q, qn) = files::<Net, 4>(7);
    let b = &bytes(&q)[..qn];
    let at = table_at(b);
    let mut old: Vec<u8> = [&b[..at], &b[at + ActivationTable::FILE_LEN..]].concat();
    old[24] = 0;
    let d = rd(&old, 12) - ActivationTable::FILE_LEN as u32;
    old[12..16].copy_from_slice(&d.to_le_bytes());
    let r2 = 32 + 2 * 48;
    for k in 0..4 {
        let v = rd(&old, r2 + 16 + 4 * k) - ActivationTable::FILE_LEN as u32;
        old[r2 + 16 + 4 * k..r2 + 20 + 4 * k].copy_from_slice(&v.to_le_bytes());
    }
    let n = old.len();
    let mut words = vec![0u32; n.div_ceil(4)];
    bytes_mut(&mut words)[..n].copy_from_slice(&old);
    let file = &mut bytes_mut(&mut words)[..n];
    restamp(file);
    let e = Model::parse(file).unwrap_err();
    assert_eq!(e, FormatError::MissingActivationTable { layer: 1 });
    let text = e.to_string();
    assert!(text.contains("quantize the model again"), "{text}");
}

fn header(act: Activation) -> LayerHeader {
    LayerHeader {
        in_features: 2,
        out_features: 1,
        activation: act,
        in_scale: 0.01,
        in_zero: -128,
        out_scale: 1.0 / 128.0,
        out_zero: 0,
    }
}

#[test]
fn layer_tables_are_validated() {
    static W: [i8; 2] = [3, -4];
    static B: [i32; 1] = [5];
    static S: [f32; 1] = [0.02];
    static R: [i32; 2] = [1 << 30, -3];
    let tables: Vec<ActivationTable> =
        [(0.05, 3), (0.0, 0), (f32::NAN, 0), (0.1, 128), (0.1, -129)]
            .into_iter()
            .map(|(scale, zero)| ActivationTable::new(QuantParams { scale, zero }, [0; 256]))
            .collect();
    let table = |scale: f32, zero: i32| {
        tables
            .iter()
            .find(|t| t.pre_scale.to_bits() == scale.to_bits() && t.pre_zero == zero)
    };
    let layer = |act, table| {
        [(
            header(act),
            LayerWeights::Int8 {
                weight: &W,
                bias: &B,
                scales: &S,
                requant: &R,
                table,
            },
        )]
    };
    let ok = layer(Activation::Tanh, table(0.05, 3));
    assert!(Model::from_layers(&ok).is_ok());
    let missing = layer(Activation::Sigmoid, None);
    assert_eq!(
        Model::from_layers(&missing).err(),
        Some(FormatError::MissingActivationTable { layer: 0 })
    );
    let extra = layer(Activation::Relu, table(0.05, 3));
    assert_eq!(
        Model::from_layers(&extra).err(),
        Some(FormatError::BadQuantization { layer: 0 })
    );
    for (s, z) in [(0.0, 0), (f32::NAN, 0), (0.1, 128), (0.1, -129)] {
        let bad = layer(Activation::Tanh, table(s, z));
        assert_eq!(
            Model::from_layers(&bad).err(),
            Some(FormatError::BadQuantization { layer: 0 }),
            "{s} {z}"
        );
    }
    let plain = layer(Activation::Identity, None);
    assert!(Model::from_layers(&plain).is_ok());
}

#[test]
fn the_table_is_the_activation_of_each_pre_activation() {
    let pre = QuantParams {
        scale: 0.04,
        zero: -3,
    };
    let out = QuantParams::from_range(-1.0, 1.0);
    for act in [
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Gelu,
        Activation::LeakyRelu(0.1),
        Activation::Elu(1.0),
        Activation::Softplus,
    ] {
        let t = activation_table(act, pre, out);
        for (i, &v) in t.iter().enumerate() {
            let x = pre.scale * (i as i32 - 128 - pre.zero) as f32;
            let want = ((act.apply(x) / out.scale).round() as i32 + out.zero).clamp(-128, 127);
            assert_eq!(i32::from(v), want, "{act:?} entry {i}");
        }
    }
}

/// The f32 path that tables replaced: the accumulator's real value through
/// the activation, rounded to the output quantization.
fn float_reference(act: Activation, real: f32, out: QuantParams) -> i32 {
    ((act.apply(real) / out.scale).round() as i32 + out.zero).clamp(-128, 127)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// On random layers, quantized with a pre-activation calibrated on the
    /// inputs they run on: each output is within one step of the f32 path
    /// plus what the pre-activation's rounding can move it (the slope times
    /// half a pre-activation step, in output steps), and exactly the
    /// activation of the rounded pre-activation.
    #[test]
    fn lookups_track_the_float_activation(
        rows in 1usize..10,
        n in 1usize..24,
        seed in any::<u64>(),
        which in 0usize..4,
    ) {
        let (act, slope) = [
            (Activation::Tanh, 1.0f32),
            (Activation::Sigmoid, 0.25),
            (Activation::GeluTanh, 1.13),
            (Activation::Softsign, 1.0),
        ][which];
        let mut rng = Rng::new(seed);
        let w: Vec<f32> = (0..rows * n).map(|_| rng.uniform_in(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..rows).map(|_| rng.uniform_in(-0.5, 0.5)).collect();
        let qin = QuantParams { scale: 1.0 / 255.0, zero: -128 };
        let xs: Vec<Vec<u8>> = (0..8)
            .map(|_| (0..n).map(|_| (rng.uniform_in(0.0, 255.99)) as u8).collect())
            .collect();
        // The pre-activation's range on these inputs, and the output's.
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        let (mut olo, mut ohi) = (f32::INFINITY, f32::NEG_INFINITY);
        for x in &xs {
            for o in 0..rows {
                let mut s = b[o];
                for j in 0..n {
                    s += w[o * n + j] * f32::from(x[j]) / 255.0;
                }
                lo = lo.min(s);
                hi = hi.max(s);
                olo = olo.min(act.apply(s));
                ohi = ohi.max(act.apply(s));
            }
        }
        let pre = QuantParams::from_range(lo, hi);
        let out = QuantParams::from_range(olo, ohi);
        let len = deploy::int8_layer_len(n, rows) + ActivationTable::FILE_LEN;
        let mut words = vec![0u32; len.div_ceil(4)];
        let data = bytes_mut(&mut words);
        deploy::quantize_layer(&w, &b, n, rows, qin, out, Some((act, pre)), data).unwrap();
        // The parts, as a file lays them out.
        let at = |k: usize| -> usize {
            let p = [n * rows, 4 * rows, 4 * rows, 8 * rows];
            p[..k].iter().map(|s| s.next_multiple_of(16)).sum()
        };
        let view_i32 = |off: usize, len: usize| -> Vec<i32> {
            (0..len).map(|i| rd(data, off + 4 * i) as i32).collect()
        };
        let weight: Vec<i8> = data[..n * rows].iter().map(|&v| v as i8).collect();
        let bias = view_i32(at(1), rows);
        let scales: Vec<f32> = view_i32(at(2), rows).into_iter().map(|v| f32::from_bits(v as u32)).collect();
        let requant = view_i32(at(3), 2 * rows);
        let t = at(4);
        prop_assert_eq!(f32::from_bits(rd(data, t)), pre.scale);
        prop_assert_eq!(rd(data, t + 4) as i32, pre.zero);
        let values: [i8; 256] = core::array::from_fn(|i| data[t + 16 + i] as i8);
        prop_assert_eq!(values, activation_table(act, pre, out));
        let table = ActivationTable::new(pre, values);
        let h = LayerHeader {
            in_features: n,
            out_features: rows,
            activation: act,
            in_scale: qin.scale,
            in_zero: qin.zero,
            out_scale: out.scale,
            out_zero: out.zero,
        };
        let tolerance = 1.0 + slope * pre.scale / (2.0 * out.scale) + 1e-3;
        for x in &xs {
            let mut y = vec![0i8; rows];
            deploy::dense_i8(&weight, &bias, &requant, Some(&table), x, &mut y, &h);
            for o in 0..rows {
                // The accumulator in the kernels' units, from the file's data.
                let mut acc = bias[o];
                for j in 0..n {
                    let wq = weight[deploy::int8_weight_offset(o, j, rows, n)];
                    acc += i32::from(wq) * i32::from(x[j]);
                }
                let real = acc as f32 * qin.scale * scales[o];
                let want = float_reference(act, real, out);
                let got = i32::from(y[o]);
                prop_assert!(
                    ((got - want) as f32).abs() <= tolerance,
                    "{:?} row {}: table {} vs f32 {} (tolerance {})", act, o, got, want, tolerance
                );
                // Exactly the table at the requantized pre-activation.
                let q = deploy::requantize(acc, requant[2 * o], requant[2 * o + 1]);
                let idx = (q + pre.zero).clamp(-128, 127) + 128;
                prop_assert_eq!(y[o], values[idx as usize]);
            }
        }
    }
}

mod golden {
    include!("data/tiny_int8_tanh_model.rs");
}

/// The Rust source of an int8 model with a table: the golden file, which
/// compiles (included above) and runs as the file does, byte for byte.
#[test]
fn rust_source_keeps_the_tables() {
    let (_, _, q, qn) = files::<Net, 4>(2);
    let model = Model::load::<Net>(&bytes(&q)[..qn]).unwrap();
    let mut src = String::new();
    deploy::write_rust_source(&model, &mut src).unwrap();
    assert!(src.contains("static L1_TABLE: ActivationTable = ActivationTable::new("));
    assert!(src.contains("table: None"));
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tiny_int8_tanh_model.rs"
    );
    if std::env::var_os("EMBER_BLESS").is_some() {
        std::fs::write(path, &src).unwrap();
    }
    let golden = std::fs::read_to_string(path).unwrap();
    assert_eq!(src, golden, "regenerate with EMBER_BLESS=1");
    let from_src = Model::from_layers(&golden::LAYERS).unwrap();
    from_src.check_signature::<Net>().unwrap();
    for (a, b) in model.layers().zip(from_src.layers()) {
        assert_eq!(a, b);
    }
    let (mut s1, mut s2) = (vec![0i8; 32], vec![0i8; 32]);
    let (mut q1, mut q2) = ([0i8; 6], [0i8; 6]);
    let (mut o1, mut o2) = ([0.0f32; 4], [0.0f32; 4]);
    for s in 0..8 {
        let x: Vec<f32> = (0..6).map(|j| input(s * 6 + j + 3)).collect();
        model.infer_i8(&x, &mut q1, &mut s1, &mut o1).unwrap();
        from_src.infer_i8(&x, &mut q2, &mut s2, &mut o2).unwrap();
        assert_eq!(o1.map(f32::to_bits), o2.map(f32::to_bits));
    }
}

type TanhHead = (Linear<6, 16>, ReLU, Linear<16, 4>, Tanh);

/// The write-back of a fine-tuned head whose activation is a table keeps
/// the table and the quantization it was made for; the new weights lead to
/// its pre-activation.
#[test]
fn a_retrained_head_keeps_its_table() {
    let (_, _, q, qn) = files::<TanhHead, 4>(8);
    let model = Model::load::<TanhHead>(&bytes(&q)[..qn]).unwrap();
    let (h, w) = model.layer(1).unwrap();
    let LayerWeights::Int8 { table: Some(t), .. } = w else {
        panic!("no table");
    };
    let mut wf = vec![0.0f32; 64];
    let mut bf = vec![0.0f32; 4];
    model.dequantize_layer(1, &mut wf, &mut bf).unwrap();
    let mut scratch = vec![0u8; deploy::int8_layer_len(16, 4)];
    let mut file = Vec::new();
    // `qout` is not used for a layer with a table (still checked).
    let qout = QuantParams::from_range(-3.0, 3.0);
    let n = deploy::write_with_last_layer(&model, &wf, &bf, qout, &mut scratch, &mut |p| {
        file.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    assert_eq!(n, qn);
    let mut words = vec![0u32; n.div_ceil(4)];
    bytes_mut(&mut words)[..n].copy_from_slice(&file);
    let written = Model::load::<TanhHead>(&bytes(&words)[..n]).unwrap();
    let (h2, w2) = written.layer(1).unwrap();
    assert_eq!((h2.out_scale, h2.out_zero), (h.out_scale, h.out_zero));
    let LayerWeights::Int8 {
        table: Some(t2), ..
    } = w2
    else {
        panic!("the table is lost");
    };
    assert_eq!(t2, t);
    // The same layer written back: the same outputs (within a step).
    let (mut s1, mut s2) = (vec![0i8; 32], vec![0i8; 32]);
    let (mut q1, mut q2) = ([0i8; 6], [0i8; 6]);
    let (mut o1, mut o2) = ([0.0f32; 4], [0.0f32; 4]);
    for s in 0..8 {
        let x: Vec<f32> = (0..6).map(|j| input(s * 6 + j + 1)).collect();
        model.infer_i8(&x, &mut q1, &mut s1, &mut o1).unwrap();
        written.infer_i8(&x, &mut q2, &mut s2, &mut o2).unwrap();
        for (a, b) in o1.iter().zip(&o2) {
            assert!((a - b).abs() <= 1.01 * h.out_scale, "{a} vs {b}");
        }
    }
    // A bad `qout` is still refused.
    let bad = QuantParams {
        scale: 0.0,
        zero: 0,
    };
    let r = deploy::write_with_last_layer(&model, &wf, &bf, bad, &mut scratch, &mut |_| Ok(()));
    assert_eq!(r, Err(FormatError::BadQuantization { layer: 1 }));
}

/// With an input step, the file keeps both the step and the table.
#[test]
fn an_input_step_and_a_table_go_together() {
    let (f, fnb, q, qn) = files::<Net, 4>(9);
    let model = Model::parse(&bytes(&f)[..fnb]).unwrap();
    let mut calib = Calibration::new();
    let mut scratch = vec![0.0f32; model.scratch_len()];
    for s in 0..16 {
        let x: Vec<f32> = (0..6).map(|j| input(s * 6 + j)).collect();
        calib.observe(&model, &x, &mut scratch).unwrap();
    }
    let offset = [0.5f32, -1.0, 0.0, 2.0, 0.25, -0.5];
    let scale = [1.0f32, 2.0, 0.5, 4.0, 1.5, 3.0];
    let step = deploy::InputStep {
        offset: &offset,
        scale: &scale,
    };
    let len = deploy::quantized_len(&model) + deploy::InputStep::file_len(6);
    let mut words = vec![0u32; len.div_ceil(4)];
    let n = deploy::quantize_with_input_step(&model, &calib, step, bytes_mut(&mut words)).unwrap();
    let b = &bytes(&words)[..n];
    assert_eq!(b[24], 3, "both flags");
    let stepped = Model::load::<Net>(b).unwrap();
    assert_eq!(stepped.input_step(), Some(step));
    // The same layers as without the step (the step only precedes them).
    let plain = Model::load::<Net>(&bytes(&q)[..qn]).unwrap();
    for (a, p) in stepped.layers().zip(plain.layers()) {
        assert_eq!(a, p);
    }
}
