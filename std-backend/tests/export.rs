//! Exports that check themselves: an f32 file read off any model's forward
//! pass (`export::traced_f32`), and an int8 file checked against the f32
//! model it came from within the quantization's error bound
//! (`export::check_int8`).

use ember_nn_core::deploy::Model;
use ember_nn_core::nn::{Build, Forward, Linear, Module, ReLU, Tanh};
use ember_nn_core::prelude::*;
use ember_nn_std::config::ActivationKind;
use ember_nn_std::data::TensorDataset;
use ember_nn_std::export::{
    check_int8, export_files, f32_file, int8_file, traced_f32, DeployError,
};
use ember_nn_std::state_dict::named_tensors;

#[derive(Module)]
struct Net {
    a: Linear<12, 16>,
    b: Linear<16, 8>,
    c: Linear<8, 3>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<12>), B>> for Net {
    type Output = Tensor<'t, (usize, Const<3>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<12>), B>) -> Self::Output {
        self.c
            .forward(self.b.forward(self.a.forward(x).relu()).tanh())
    }
}

fn data(rows: usize, width: usize, seed: u64) -> TensorDataset {
    let mut rng = Rng::new(seed);
    let xs = (0..rows * width).map(|_| rng.uniform()).collect();
    TensorDataset::new(xs, vec![0; rows], width, 1).unwrap()
}

#[test]
fn a_derived_models_files_check_themselves() {
    let mut buf = vec![0.0f32; 8192];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(1)).unwrap();
    let f32_bytes = traced_f32(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<12>)))
    })
    .unwrap();
    Model::load::<(Linear<12, 16>, ReLU, Linear<16, 8>, Tanh, Linear<8, 3>)>(f32_bytes.bytes())
        .unwrap();
    let calib = data(200, 12, 2);
    let int8 = int8_file(&f32_bytes, &calib, 200).unwrap();
    let (f, q) = (
        Model::parse(f32_bytes.bytes()).unwrap(),
        Model::parse(int8.bytes()).unwrap(),
    );
    // On other rows than the calibration's: the bound holds there too, and
    // it is not vacuous (outputs here are a few tenths).
    let test = data(50, 12, 3);
    let rows: Vec<&[f32]> = test.features().chunks(12).collect();
    let c = check_int8(&f, &q, &rows).unwrap();
    assert!(c.max_diff > 0.0 && c.max_diff <= c.bound, "{c:?}");
    println!("{c:?}");
    assert!(c.bound < 0.1, "{c:?}");
}

#[test]
fn an_int8_file_of_another_model_is_refused_with_the_difference() {
    let widths = [12, 16, 3];
    let file = |seed| {
        let mut buf = vec![0.0f32; 4096];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let m = ember_nn_core::nn::Mlp::new(
            &mut mem,
            &mut Rng::new(seed),
            &widths,
            ember_nn_core::deploy::Activation::Relu,
        )
        .unwrap();
        f32_file(
            &widths,
            ActivationKind::Relu,
            &named_tensors(&m, &mem).unwrap(),
        )
        .unwrap()
    };
    let (a, b) = (file(4), file(5));
    let calib = data(100, 12, 6);
    let qa = int8_file(&a, &calib, 100).unwrap();
    let rows: Vec<&[f32]> = calib.features().chunks(12).take(8).collect();
    let err = check_int8(
        &Model::parse(b.bytes()).unwrap(),
        &Model::parse(qa.bytes()).unwrap(),
        &rows,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DeployError::NotQuantized {
                layer: 0,
                row: 0,
                col: Some(0),
                ..
            }
        ),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains("not a quantization of the f32 model: weight (0, 0) of layer 0"),
        "{err}"
    );
}

#[test]
fn an_int8_file_that_computes_otherwise_is_refused_with_the_difference() {
    // A valid int8 file of the model, but for the last layer's rescale,
    // halved (and the CRC made right): every weight is a rounding of the
    // f32 one, the outputs are not.
    let mut buf = vec![0.0f32; 8192];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(7)).unwrap();
    let f32_bytes = traced_f32(&net, &mut mem, |p| {
        net.forward(p.input((p.rows(), Const::<12>)))
    })
    .unwrap();
    let calib = data(100, 12, 8);
    let good = int8_file(&f32_bytes, &calib, 100).unwrap();
    let mut bad = good.bytes().to_vec();
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let header_len = u32_at(&bad, 8);
    let requant = header_len + u32_at(&bad, 32 + 48 * 2 + 28);
    for o in 0..3 {
        let at = requant + 8 * o;
        let m = i32::from_le_bytes(bad[at..at + 4].try_into().unwrap());
        bad[at..at + 4].copy_from_slice(&(m / 2).to_le_bytes());
    }
    let end = bad.len() - 4;
    let crc = ember_nn_core::deploy::crc32(0, &bad[..end]);
    bad[end..].copy_from_slice(&crc.to_le_bytes());
    let bad = ember_nn_std::export::AlignedBytes::new(&bad);
    let rows: Vec<&[f32]> = calib.features().chunks(12).take(16).collect();
    let err = check_int8(
        &Model::parse(f32_bytes.bytes()).unwrap(),
        &Model::parse(bad.bytes()).unwrap(),
        &rows,
    )
    .unwrap_err();
    assert!(matches!(err, DeployError::Drift { .. }), "{err:?}");
    let err = err.to_string();
    assert!(
        err.contains("computes another model") && err.contains("beyond the quantization bound"),
        "{err}"
    );
}

#[test]
fn one_call_exports_every_file_of_a_trained_model() {
    let mut buf = vec![0.0f32; 8192];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(9)).unwrap();
    let dir = std::env::temp_dir().join(format!("ember-export-{}", std::process::id()));
    let calib = data(64, 12, 10);
    let report = export_files(
        &dir,
        &net,
        &mut mem,
        |p| net.forward(p.input((p.rows(), Const::<12>))),
        &calib,
        64,
    )
    .unwrap();
    assert_eq!(
        report.layers,
        "Linear<12, 16>, ReLU, Linear<16, 8>, Tanh, Linear<8, 3>"
    );
    assert!(report.int8_check.max_diff <= report.int8_check.bound);
    for name in [
        "model.emb",
        "model-int8.emb",
        "model.rs",
        "model_int8.rs",
        "model_type.rs",
        "model.safetensors",
    ] {
        assert!(dir.join(name).is_file(), "{name}");
    }
    let int8 = ember_nn_std::export::AlignedBytes::new(
        &std::fs::read(dir.join("model-int8.emb")).unwrap(),
    );
    assert_eq!(int8.bytes().len(), report.int8_len);
    Model::load::<(Linear<12, 16>, ReLU, Linear<16, 8>, Tanh, Linear<8, 3>)>(int8.bytes()).unwrap();
    // The state_dict loads back by name into a fresh model.
    let mut buf2 = vec![0.0f32; 8192];
    let mut mem2 = Memory::new(&Cpu, &mut buf2[..]);
    let back = Net::build(&mut mem2, &mut Rng::new(99)).unwrap();
    ember_nn_std::state_dict::load(&dir.join("model.safetensors"), &back, &mut mem2).unwrap();
    assert_eq!(
        mem2.value(&back.c.weight).unwrap(),
        mem.value(&net.c.weight).unwrap()
    );
    // Calibration data of another width is refused before anything is written.
    let other = dir.join("other");
    let err = export_files(
        &other,
        &net,
        &mut mem,
        |p| net.forward(p.input((p.rows(), Const::<12>))),
        &data(8, 5, 1),
        8,
    )
    .unwrap_err();
    assert!(
        matches!(err, DeployError::Features { data: 5, model: 12 }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("5 features, the model takes 12"),
        "{err}"
    );
    assert!(!other.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_model_trained_by_the_learner_exports_in_one_call() {
    use ember_nn_core::nn::loss::{cross_entropy, Reduction};
    use ember_nn_core::nn::Rule;
    use ember_nn_std::learner::{Arena, Learner, StepOutput};
    use ember_nn_std::train::Quiet;
    let mut rng = Rng::new(12);
    let xs: Vec<f32> = (0..128 * 12).map(|_| rng.uniform()).collect();
    let ys: Vec<usize> = xs
        .chunks(12)
        .map(|r| usize::from(r[0] > r[1]) + usize::from(r[2] > 0.5))
        .collect();
    let train = TensorDataset::new(xs, ys, 12, 3).unwrap();
    let calib = train.clone();
    // Net's activations are inline (not fields), which `Arena::of` does not
    // count: a measured size.
    let mut trained = Learner::new(Rule::adam(), 0.01, Arena::floats(8192))
        .epochs(2)
        .batch(16)
        .fit(
            &Cpu,
            Net::build,
            |net: &Net, g, b| {
                let logits = net.forward(g.from_slice((b.len(), Const::<12>), &b.features));
                let loss = cross_entropy(logits, &b.labels, Reduction::Mean);
                Ok(StepOutput::classified(loss, logits))
            },
            train,
            None,
            &mut Quiet,
        )
        .unwrap();
    let dir = std::env::temp_dir().join(format!("ember-trained-export-{}", std::process::id()));
    let report = trained
        .export(&dir, &calib, 128, |net, p| {
            net.forward(p.input((p.rows(), Const::<12>)))
        })
        .unwrap();
    assert_eq!(
        report.layers,
        "Linear<12, 16>, ReLU, Linear<16, 8>, Tanh, Linear<8, 3>"
    );
    // The file holds the trained parameters: its outputs are the model's.
    let f32_bytes =
        ember_nn_std::export::AlignedBytes::new(&std::fs::read(dir.join("model.emb")).unwrap());
    let file = Model::parse(f32_bytes.bytes()).unwrap();
    let (net, mut mem) = trained.parts().unwrap();
    let x: Vec<f32> = calib.features()[..12].to_vec();
    let g = Graph::new(&mut mem);
    let mut want = [0.0f32; 3];
    net.forward(g.from_slice((1, Const::<12>), &x))
        .read(&mut want)
        .unwrap();
    let mut scratch = vec![0.0f32; file.scratch_len()];
    let got = file.infer_f32(&x, &mut scratch).unwrap();
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{got:?} vs {want:?}");
    }
    drop(g);
    std::fs::remove_dir_all(&dir).unwrap();
}
