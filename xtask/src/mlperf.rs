//! `cargo xtask mlperf`: an MLPerf Tiny model (ad, kws, ic, vww) for the firmware's `mlperf`
//! feature (`firmware-example/src/mlperf.rs`).
//!
//! Written to `--out DIR`:
//! - `mlperf-NAME.emb` and `mlperf-NAME-int8.emb`: the f32 file read off the
//!   model's forward pass (`traced_f32`) and its int8 quantization
//!   (`export::int8_file`, calibrated on [`CALIBRATION`] random inputs and
//!   checked against the f32 file);
//! - `mlperf-inputs.bin`: `--count` random inputs, uniform in `[-1, 1)`,
//!   quantized with the int8 file's input quantization (`quantize_input`),
//!   one `i8` per input feature;
//! - `mlperf-expected.bin`: the host's int8 outputs for them (`infer_q8`),
//!   one `i8` per output;
//! - `mlperf.txt`: `name`, `macs`, `inputs`, `outputs` and `scratch` (the
//!   int8 file's scratch bytes), one `key value` a line, which the
//!   firmware's build script reads.
//!
//! The weights are random (seeded): the convolutions' and linear layers'
//! initialization, the batch norms' γ in `[0.5, 1.5)`, β in `[-0.3, 0.3)`,
//! running means in `[-0.2, 0.2)` and variances in `[0.5, 2)`, in
//! evaluation mode. MLPerf Tiny's data sets are not here, and the
//! instruction count of an int8 inference does not depend on the values
//! (except at ReLU branches and saturation).

use clap::ValueEnum;
use ember_nn_core::deploy::{GraphModel, Model, Probe};
use ember_nn_core::nn::zoo::{DeepAutoEncoder, KwsDsCnn, MobileNetV1Vww, ResNet8};
use ember_nn_core::nn::{Build, Forward, Module};
use ember_nn_core::prelude::*;
use ember_nn_std::atomic::write_atomic;
use ember_nn_std::data::TensorDataset;
use ember_nn_std::export::{int8_file, traced_f32, AlignedBytes};
use std::path::Path;

/// Random inputs the int8 file is calibrated on.
const CALIBRATION: usize = 32;

/// An MLPerf Tiny model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MlperfModel {
    /// Anomaly detection: the Deep AutoEncoder, 640 → 640.
    Ad,
    /// Keyword spotting: the DS-CNN on 49×10 MFCCs, 12 classes.
    Kws,
    /// Image classification: ResNet-8 on 32×32×3, 10 classes.
    Ic,
    /// Visual wake words: MobileNetV1 ×0.25 on 96×96×3, 2 classes.
    Vww,
}

impl MlperfModel {
    /// Its name in the files and the firmware's output.
    pub fn name(self) -> &'static str {
        match self {
            MlperfModel::Ad => "ad",
            MlperfModel::Kws => "kws",
            MlperfModel::Ic => "ic",
            MlperfModel::Vww => "vww",
        }
    }

    /// Multiply-adds of one inference (MLPerf Tiny's count).
    pub fn macs(self) -> usize {
        match self {
            MlperfModel::Ad => DeepAutoEncoder::MACS,
            MlperfModel::Kws => KwsDsCnn::MACS,
            MlperfModel::Ic => ResNet8::MACS,
            MlperfModel::Vww => MobileNetV1Vww::MACS,
        }
    }
}

/// Draws the batch norms' parameters and running statistics (a parameter
/// or buffer of a layer named `bn…`).
fn randomize_norms<M: Module>(model: &M, mem: &mut Memory<'_, Cpu>, rng: &mut Rng) {
    let is_norm = |name: &str| {
        name.rsplit('.')
            .nth(1)
            .is_some_and(|layer| layer.starts_with("bn"))
    };
    let mut spans = Vec::new();
    model.named_parameters(&mut |p| {
        if is_norm(p.name) {
            let (lo, hi) = if p.name.ends_with("weight") {
                (0.5, 1.5)
            } else {
                (-0.3, 0.3)
            };
            spans.push((p.param.value, lo, hi));
        }
    });
    model.named_buffers(&mut |b| {
        if b.name.ends_with("running_mean") {
            spans.push((b.value, -0.2, 0.2));
        } else if b.name.ends_with("running_var") {
            spans.push((b.value, 0.5, 2.0));
        }
    });
    for (s, lo, hi) in spans {
        let v: Vec<f32> = (0..s.len).map(|_| rng.uniform_in(lo, hi)).collect();
        mem.write(s, &v).expect("a span of the model");
    }
}

/// Builds `M` with `seed`, draws its batch norms, puts it in evaluation
/// mode and exports it through `forward`.
fn f32_file<M, S, F>(
    mem: &mut Memory<'_, Cpu>,
    seed: u64,
    forward: F,
) -> Result<AlignedBytes, String>
where
    M: Module + Build,
    S: Shape,
    F: for<'t> Fn(&M, &Probe<'t, Cpu>) -> Tensor<'t, S, Cpu>,
{
    let mut rng = Rng::new(seed);
    let mut model = M::build(mem, &mut rng).map_err(|e| e.to_string())?;
    randomize_norms(&model, mem, &mut rng);
    model.eval();
    traced_f32(&model, mem, |p| forward(&model, p)).map_err(|e| e.to_string())
}

/// The int8 file's input quantization and `infer_q8`, dense or graph.
enum Int8<'a> {
    Dense(Model<'a>),
    Graph(GraphModel<'a>),
}

impl Int8<'_> {
    fn scratch_len(&self) -> usize {
        match self {
            Int8::Dense(m) => m.scratch_len(),
            Int8::Graph(g) => g.scratch_len(),
        }
    }
    fn outputs(&self) -> usize {
        match self {
            Int8::Dense(m) => m.output_features(),
            Int8::Graph(g) => g.output_features(),
        }
    }
    fn quantize_input(&self, x: &[f32], q: &mut [i8]) -> Result<(), String> {
        match self {
            Int8::Dense(m) => m.quantize_input(x, q),
            Int8::Graph(g) => g.quantize_input(x, q),
        }
        .map_err(|e| e.to_string())
    }
    fn infer_q8<'s>(&self, q: &[i8], scratch: &'s mut [i8]) -> Result<&'s [i8], String> {
        match self {
            Int8::Dense(m) => m.infer_q8(q, scratch),
            Int8::Graph(g) => g.infer_q8(q, scratch),
        }
        .map_err(|e| e.to_string())
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_atomic(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `model`'s files to `dir` (see the module's documentation).
pub fn run(model: MlperfModel, dir: &Path, count: usize, seed: u64) -> Result<(), String> {
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    let mut buf = vec![0.0f32; 1 << 25];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let f32_bytes = match model {
        MlperfModel::Ad => f32_file::<DeepAutoEncoder, _, _>(&mut mem, seed, |m, p| {
            m.forward(p.input((p.rows(), Const::<640>)))
        }),
        MlperfModel::Kws => f32_file::<KwsDsCnn, _, _>(&mut mem, seed, |m, p| {
            m.forward(p.input((p.rows(), Const::<1>, 49usize, 10usize)))
        }),
        MlperfModel::Ic => f32_file::<ResNet8, _, _>(&mut mem, seed, |m, p| {
            m.forward(p.input((p.rows(), Const::<3>, 32usize, 32usize)))
        }),
        MlperfModel::Vww => f32_file::<MobileNetV1Vww, _, _>(&mut mem, seed, |m, p| {
            m.forward(p.input((p.rows(), Const::<3>, 96usize, 96usize)))
        }),
    }?;
    let graph = GraphModel::parse(f32_bytes.bytes()).is_ok();
    let inputs = if graph {
        GraphModel::parse(f32_bytes.bytes()).map(|g| g.input_features())
    } else {
        Model::parse(f32_bytes.bytes()).map(|m| m.input_features())
    }
    .map_err(|e| e.to_string())?;

    let mut rng = Rng::new(seed ^ 0x6d6c_7065_7266);
    let random = |n: usize, rng: &mut Rng| -> Vec<f32> {
        (0..n * inputs).map(|_| rng.uniform_in(-1.0, 1.0)).collect()
    };
    let calibration = TensorDataset::new(
        random(CALIBRATION, &mut rng),
        vec![0; CALIBRATION],
        inputs,
        1,
    )
    .map_err(|e| e.to_string())?;
    let int8_bytes = int8_file(&f32_bytes, &calibration, CALIBRATION).map_err(|e| e.to_string())?;
    let q = if graph {
        Int8::Graph(GraphModel::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?)
    } else {
        Int8::Dense(Model::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?)
    };

    let xs = random(count, &mut rng);
    let mut scratch = vec![0i8; q.scratch_len()];
    let mut qin = vec![0i8; inputs];
    let (mut quantized, mut expected) = (Vec::new(), Vec::new());
    for x in xs.chunks_exact(inputs) {
        q.quantize_input(x, &mut qin)?;
        quantized.extend(qin.iter().map(|&v| v as u8));
        let out = q.infer_q8(&qin, &mut scratch)?;
        expected.extend(out.iter().map(|&v| v as u8));
    }

    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // One model per directory: the firmware's build script takes the one.
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "emb") {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let name = model.name();
    write(&dir.join(format!("mlperf-{name}.emb")), f32_bytes.bytes())?;
    write(
        &dir.join(format!("mlperf-{name}-int8.emb")),
        int8_bytes.bytes(),
    )?;
    write(&dir.join("mlperf-inputs.bin"), &quantized)?;
    write(&dir.join("mlperf-expected.bin"), &expected)?;
    let outputs = q.outputs();
    let meta = format!(
        "name {name}\nmacs {}\ninputs {inputs}\noutputs {outputs}\nscratch {}\n",
        model.macs(),
        q.scratch_len()
    );
    write(&dir.join("mlperf.txt"), meta.as_bytes())?;
    println!(
        "mlperf-{name}: {} file, f32 {} bytes, int8 {} bytes (calibrated on {CALIBRATION} random inputs), {} multiply-adds; {count} test inputs of {inputs} features, {outputs} int8 outputs each, int8 scratch {} bytes; wrote {}",
        if graph { "graph (version 3)" } else { "dense (version 2)" },
        f32_bytes.bytes().len(),
        int8_bytes.bytes().len(),
        model.macs(),
        q.scratch_len(),
        dir.display()
    );
    Ok(())
}
