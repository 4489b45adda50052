//! `cargo xtask`: project automation that needs the host (the data set, the
//! file system) and is no part of the libraries.
//!
//! `cargo xtask test-images` writes the data the firmware checks itself
//! against, so that building and running the firmware needs no data set:
//! the first `--count` FashionMNIST test images (u8 pixels), their labels, and
//! what the host computes for them with the deployed kernels, the code the
//! firmware runs: the f32 model's class (`Model::infer_f32` + `argmax`) and the
//! int8 model's whole output vector (`Model::infer_u8` on the pixels); for
//! a CNN's graph files (format version 3), `GraphModel::infer_f32` and
//! `GraphModel::quantize_input` of `p / 255` + `GraphModel::infer_q8`. The
//! firmware passes only if it predicts the same f32 class and the same int8
//! logits, byte for byte, for every image.
//!
//! `cargo xtask test-rows` does the same for a model trained on a data file
//! (`ember train --data FILE.csv`): held-out rows of raw features
//! (little-endian `f32`), for a classifier their labels, and the host's
//! outputs: the f32 model's (`Model::infer_f32`, little-endian `f32`) and
//! the int8 model's (`Model::quantize_input` + `Model::infer_q8`, bytes).
//! The rows are read with the checkpoint's model information (its feature
//! columns, task and classes: `ModelInfo::rows`, what `ember eval --data`
//! reads), and are either a test file's or the test split `ember train`
//! held out of the data file (`--test-fraction` and `--split-seed` as given
//! to it: the same split, made by the same function).
//!
//! `cargo xtask mlperf --model ad|kws|ic|vww --out DIR` writes an MLPerf Tiny
//! model (`ember_nn_core::nn::zoo`) for the firmware's `mlperf` mode:
//! seeded random weights, batch norms in evaluation mode with random
//! running statistics (so that folding them is exercised), exported in f32
//! (anomaly detection's autoencoder as a dense file, format version 2; the
//! DS-CNN, ResNet-8 and MobileNetV1 as graph files, version 3), quantized to int8 on
//! random inputs (no data set: the instruction count does not depend on
//! the values, except at ReLU branches), a few random test inputs
//! quantized with the int8 file's input quantization, and the host's int8
//! outputs for them (`infer_q8`, the code the firmware runs).

use clap::{Parser, Subcommand};
use ember_nn_core::deploy::{argmax, argmax_i8, write_model_type, FormatError, GraphModel, Model};
use ember_nn_std::atomic::write_atomic;
use ember_nn_std::checkpoint::Checkpoint;
use ember_nn_std::config::TaskKind;
use ember_nn_std::data::split::stratified_split;
use ember_nn_std::data::table::{read_table, Header, ReadOptions};
use ember_nn_std::data::{Dataset, FashionMnist, Split, TensorDataset};
use ember_nn_std::export::AlignedBytes;
use ember_nn_std::train::ModelInfo;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod layers;
mod mlperf;
use mlperf::MlperfModel;

/// Pixels per image.
const PIXELS: usize = 784;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Ember's project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the firmware's test images, their labels and the host's
    /// predictions (f32 and int8) next to the models.
    TestImages {
        /// Directory of the models; the outputs go there too.
        #[arg(long, default_value = "firmware-example/models")]
        models: PathBuf,
        /// Model base name: NAME.emb (f32) and NAME-int8.emb.
        #[arg(long, default_value = "fashion-784-128-64-10")]
        name: String,
        /// Number of test images (the first ones of the test set).
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// FashionMNIST directory (default /usr/share/datasets/fashion-mnist/;
        /// the built-in subset, the first 1,000 test images, when absent).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Write graph files (f32 and int8, untrained) that put KWS DS-CNN's
    /// stem, depthwise and pointwise layers in the firmware, behind an
    /// adapter from its 28×28 test images (see xtask/src/layers.rs): their
    /// per-node instruction counts beside CMSIS-NN's
    /// (scripts/cmsis-nn-layers.sh).
    KwsLayers {
        /// Output directory (the firmware's EMBER_FIRMWARE_MODELS).
        #[arg(long)]
        models: PathBuf,
        /// Model base name: NAME.emb (f32) and NAME-int8.emb.
        #[arg(long, default_value = "kws-layers")]
        name: String,
        /// FashionMNIST directory for calibration (default as test-images).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Seed of the weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write an MLPerf Tiny model (random weights, int8 calibrated on
    /// random inputs), test inputs and the host's int8 outputs for the
    /// firmware's `mlperf` feature.
    Mlperf {
        /// Which model: ad (Deep AutoEncoder), kws (DS-CNN), ic (ResNet-8) or
        /// vww (MobileNetV1 ×0.25).
        #[arg(long, value_enum)]
        model: MlperfModel,
        /// Directory the files go to (created; its earlier model files are
        /// removed).
        #[arg(long)]
        out: PathBuf,
        /// Test inputs the firmware checks.
        #[arg(long, default_value_t = 3)]
        count: usize,
        /// Seed of the weights and the inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write the firmware's held-out rows of a data file's model (raw
    /// features), their labels (a classifier) and the host's outputs (f32
    /// and int8) next to the models.
    TestRows {
        /// Directory of the models; the outputs go there too.
        #[arg(long)]
        models: PathBuf,
        /// Model base name: NAME.emb (f32) and NAME-int8.emb.
        #[arg(long)]
        name: String,
        /// The checkpoint of `ember train --data` the models were exported
        /// from: its model information names the columns, task and classes.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The data file whose rows are embedded: the training file (with
        /// --test-fraction) or a test file (all its rows).
        #[arg(long)]
        data: PathBuf,
        /// The fraction `ember train` held out of --data as its test set
        /// (with the same --split-seed): those rows. Without it, every row
        /// of --data.
        #[arg(long)]
        test_fraction: Option<f32>,
        /// The seed of `ember train`'s split.
        #[arg(long, default_value_t = 0)]
        split_seed: u64,
        /// Whether the file's first line is a header: auto, yes or no.
        #[arg(long, default_value = "auto", value_parser = parse_header)]
        header: Header,
        /// At most this many rows (the first ones).
        #[arg(long, default_value_t = 200)]
        count: usize,
    },
}

fn parse_header(s: &str) -> Result<Header, String> {
    match s {
        "auto" => Ok(Header::Auto),
        "yes" => Ok(Header::Yes),
        "no" => Ok(Header::No),
        _ => Err(format!("`{s}`: auto, yes or no")),
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Mlperf {
            model,
            out,
            count,
            seed,
        } => mlperf::run(model, &workspace_path(&out), count, seed),
        Command::TestImages {
            models,
            name,
            count,
            data,
        } => test_images(&workspace_path(&models), &name, count, data.as_deref()),
        Command::KwsLayers {
            models,
            name,
            data,
            seed,
        } => layers::kws_layers(&workspace_path(&models), &name, data.as_deref(), seed),
        Command::TestRows {
            models,
            name,
            checkpoint,
            data,
            test_fraction,
            split_seed,
            header,
            count,
        } => test_rows(
            &workspace_path(&models),
            &name,
            &checkpoint,
            &RowSource {
                file: &data,
                test_fraction,
                split_seed,
                header,
            },
            count,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A relative path is taken from the workspace root, wherever cargo runs.
fn workspace_path(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
        xtask.parent().unwrap_or(xtask).join(p)
    }
}

fn read_model(path: &Path) -> Result<AlignedBytes, String> {
    let bytes = read_any_model(path)?;
    let model = Model::parse(bytes.bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    if model.input_features() != PIXELS {
        return Err(format!(
            "{}: the model takes {} inputs; the firmware's test images have {PIXELS} pixels",
            path.display(),
            model.input_features()
        ));
    }
    Ok(bytes)
}

/// A weight file of any input width, checked to parse.
fn read_any_model(path: &Path) -> Result<AlignedBytes, String> {
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = AlignedBytes::new(&raw);
    Model::parse(bytes.bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}

/// The f32 and int8 weight files NAME.emb and NAME-int8.emb in `dir`,
/// checked to be one model in the two data types.
fn model_pair(
    dir: &Path,
    name: &str,
    read: fn(&Path) -> Result<AlignedBytes, String>,
) -> Result<(AlignedBytes, AlignedBytes), String> {
    let f32_path = dir.join(format!("{name}.emb"));
    let int8_path = dir.join(format!("{name}-int8.emb"));
    let (f32_bytes, int8_bytes) = (read(&f32_path)?, read(&int8_path)?);
    let f32_model = Model::parse(f32_bytes.bytes()).map_err(|e| e.to_string())?;
    let int8_model = Model::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?;
    if f32_model.is_int8() || !int8_model.is_int8() {
        return Err(format!(
            "{} must be the f32 model and {} the int8 one",
            f32_path.display(),
            int8_path.display()
        ));
    }
    if model_type(&f32_model) != model_type(&int8_model) {
        return Err(format!(
            "{} and {} describe different models",
            f32_path.display(),
            int8_path.display()
        ));
    }
    Ok((f32_bytes, int8_bytes))
}

/// The model's type as the firmware's build script writes it.
fn model_type(model: &Model<'_>) -> String {
    let mut s = String::new();
    // Formatting into a String cannot fail.
    let _ = write_model_type(model, &mut s);
    s
}

/// Images of the fine-tuning stream, after the `count` test images.
const FINETUNE_TRAIN: usize = 240;
/// Held-out images for its accuracy, after those.
const FINETUNE_EVAL: usize = 200;

/// The shifted data the firmware fine-tunes its head on: test images the
/// model has never seen, colour-inverted (`255 − p`), a stream to learn from
/// and a held-out set, with their labels.
fn finetune_data(dir: &Path, test: &TensorDataset, count: usize) -> Result<(), String> {
    let need = count + FINETUNE_TRAIN + FINETUNE_EVAL;
    if test.len() < need {
        return Err(format!(
            "fine-tuning needs {need} test images, the data has {}",
            test.len()
        ));
    }
    let inverted = |range: std::ops::Range<usize>| -> (Vec<u8>, Vec<u8>) {
        let mut images = Vec::with_capacity(range.len() * PIXELS);
        let mut labels = Vec::with_capacity(range.len());
        for i in range {
            let row = &test.features()[i * PIXELS..(i + 1) * PIXELS];
            images.extend(row.iter().map(|&x| 255 - (x * 255.0).round() as u8));
            labels.push(test.labels()[i] as u8);
        }
        (images, labels)
    };
    let (ti, tl) = inverted(count..count + FINETUNE_TRAIN);
    let (ei, el) = inverted(count + FINETUNE_TRAIN..need);
    write(&dir.join("finetune-train-images.bin"), &ti)?;
    write(&dir.join("finetune-train-labels.bin"), &tl)?;
    write(&dir.join("finetune-eval-images.bin"), &ei)?;
    write(&dir.join("finetune-eval-labels.bin"), &el)?;
    println!(
        "fine-tuning: {FINETUNE_TRAIN} colour-inverted test images to learn from, {FINETUNE_EVAL} held out (test images {count}..{need})"
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_atomic(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether the file at `path` is a graph file (format version 3: a CNN),
/// which `Model::parse` sends to `GraphModel::parse`.
fn is_graph_file(path: &Path) -> Result<bool, String> {
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = AlignedBytes::new(&raw);
    Ok(matches!(
        Model::parse(bytes.bytes()),
        Err(FormatError::GraphFile)
    ))
}

/// The f32 and int8 graph files NAME.emb and NAME-int8.emb in `dir`,
/// checked to be one graph (the same nodes and shapes) in the two data
/// types, with the firmware's 784 inputs.
fn graph_pair(dir: &Path, name: &str) -> Result<(AlignedBytes, AlignedBytes), String> {
    let f32_path = dir.join(format!("{name}.emb"));
    let int8_path = dir.join(format!("{name}-int8.emb"));
    let read = |path: &Path| -> Result<AlignedBytes, String> {
        let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes = AlignedBytes::new(&raw);
        let g = GraphModel::parse(bytes.bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        if g.input_features() != PIXELS {
            return Err(format!(
                "{}: the model takes {} inputs; the firmware's test images have {PIXELS} pixels",
                path.display(),
                g.input_features()
            ));
        }
        Ok(bytes)
    };
    let (f32_bytes, int8_bytes) = (read(&f32_path)?, read(&int8_path)?);
    let f = GraphModel::parse(f32_bytes.bytes()).map_err(|e| e.to_string())?;
    let q = GraphModel::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?;
    if f.is_int8() || !q.is_int8() {
        return Err(format!(
            "{} must be the f32 graph and {} the int8 one",
            f32_path.display(),
            int8_path.display()
        ));
    }
    let shape = |g: &GraphModel<'_>| {
        g.nodes()
            .map(|(h, _)| (h.op, h.inputs, h.in_shape, h.out_shape, h.geometry))
            .collect::<Vec<_>>()
    };
    if shape(&f) != shape(&q) {
        return Err(format!(
            "{} and {} describe different graphs",
            f32_path.display(),
            int8_path.display()
        ));
    }
    Ok((f32_bytes, int8_bytes))
}

/// The host's outputs for one image, with the deployed kernels, as the
/// firmware computes them.
trait HostRun {
    /// The f32 file's class of `input` (the pixels as floats).
    fn f32_class(&mut self, input: &[f32]) -> Result<u8, String>;
    /// The int8 file's logits for the image (`pixels`, and as floats `input`).
    fn int8_logits(&mut self, pixels: &[u8], input: &[f32]) -> Result<Vec<i8>, String>;
    /// The int8 file's outputs.
    fn outputs(&self) -> usize;
}

/// Dense files (version 2): `Model::infer_f32`, and `Model::infer_u8` on
/// the pixels, read in place as the firmware does.
struct DenseRun<'a> {
    f32_model: Model<'a>,
    int8_model: Model<'a>,
    fs: Vec<f32>,
    is: Vec<i8>,
}

impl HostRun for DenseRun<'_> {
    fn f32_class(&mut self, input: &[f32]) -> Result<u8, String> {
        let logits = self
            .f32_model
            .infer_f32(input, &mut self.fs)
            .map_err(|e| e.to_string())?;
        Ok(argmax(logits) as u8)
    }
    fn int8_logits(&mut self, pixels: &[u8], _input: &[f32]) -> Result<Vec<i8>, String> {
        // The firmware's call: the pixels themselves, read in place.
        let q = self
            .int8_model
            .infer_u8(pixels, &mut self.is)
            .map_err(|e| e.to_string())?;
        Ok(q.to_vec())
    }
    fn outputs(&self) -> usize {
        self.int8_model.output_features()
    }
}

/// Graph files (version 3): `GraphModel::infer_f32`, and for int8
/// `GraphModel::quantize_input` of the floats then `GraphModel::infer_q8`
/// (the firmware quantizes each pixel the same way).
struct GraphRun<'a> {
    f32_model: GraphModel<'a>,
    int8_model: GraphModel<'a>,
    fs: Vec<f32>,
    qin: Vec<i8>,
    is: Vec<i8>,
}

impl HostRun for GraphRun<'_> {
    fn f32_class(&mut self, input: &[f32]) -> Result<u8, String> {
        let logits = self
            .f32_model
            .infer_f32(input, &mut self.fs)
            .map_err(|e| e.to_string())?;
        Ok(argmax(logits) as u8)
    }
    fn int8_logits(&mut self, _pixels: &[u8], input: &[f32]) -> Result<Vec<i8>, String> {
        self.int8_model
            .quantize_input(input, &mut self.qin)
            .map_err(|e| e.to_string())?;
        let q = self
            .int8_model
            .infer_q8(&self.qin, &mut self.is)
            .map_err(|e| e.to_string())?;
        Ok(q.to_vec())
    }
    fn outputs(&self) -> usize {
        self.int8_model.output_features()
    }
}

fn test_images(dir: &Path, name: &str, count: usize, data: Option<&Path>) -> Result<(), String> {
    let graph = is_graph_file(&dir.join(format!("{name}.emb")))?;
    let (f32_bytes, int8_bytes) = if graph {
        graph_pair(dir, name)?
    } else {
        model_pair(dir, name, read_model)?
    };
    let mut run: Box<dyn HostRun> = if graph {
        let f32_model = GraphModel::parse(f32_bytes.bytes()).map_err(|e| e.to_string())?;
        let int8_model = GraphModel::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?;
        Box::new(GraphRun {
            fs: vec![0.0; f32_model.scratch_len()],
            qin: vec![0; int8_model.input_features()],
            is: vec![0; int8_model.scratch_len()],
            f32_model,
            int8_model,
        })
    } else {
        let f32_model = Model::parse(f32_bytes.bytes()).map_err(|e| e.to_string())?;
        let int8_model = Model::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?;
        Box::new(DenseRun {
            fs: vec![0.0; f32_model.scratch_len()],
            is: vec![0; int8_model.scratch_len()],
            f32_model,
            int8_model,
        })
    };

    let (test, source) =
        FashionMnist::load_or_builtin(data, Split::Test).map_err(|e| e.to_string())?;
    let test = test.into_dataset();
    if count == 0 || count > test.len() {
        return Err(format!(
            "--count must be 1 to {} ({source} has {} test images)",
            test.len(),
            test.len()
        ));
    }

    let mut images = Vec::with_capacity(count * PIXELS);
    let (mut labels, mut pred_f32, mut pred_int8) = (Vec::new(), Vec::new(), Vec::new());
    let mut logits_int8 = Vec::new();
    for (i, row) in test.features().chunks_exact(PIXELS).take(count).enumerate() {
        // The loader scales pixels to [0, 1] with `p / 255`; recover the
        // bytes, and check that the firmware's `f32::from(p) / 255.0` gives
        // the very same floats back.
        let pixels: Vec<u8> = row.iter().map(|&x| (x * 255.0).round() as u8).collect();
        let input: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
        if input != row {
            return Err(format!("test image {i}: pixels are not multiples of 1/255"));
        }
        images.extend_from_slice(&pixels);
        labels.push(test.labels()[i] as u8);
        pred_f32.push(run.f32_class(&input)?);
        let q = run.int8_logits(&pixels, &input)?;
        pred_int8.push(argmax_i8(&q) as u8);
        logits_int8.extend(q.iter().map(|&v| v as u8));
    }

    // A data file's rows left from an earlier run would make the firmware
    // embed them instead of the images.
    remove(&dir.join(ROWS_FILE))?;
    write(&dir.join("test-images.bin"), &images)?;
    write(&dir.join("test-labels.bin"), &labels)?;
    write(&dir.join("expected-f32.bin"), &pred_f32)?;
    write(&dir.join("expected-int8.bin"), &logits_int8)?;
    // The firmware fine-tunes the committed dense model's head, and a
    // graph's (its last node, a dense layer).
    finetune_data(dir, &test, count)?;

    let correct = |p: &[u8]| p.iter().zip(&labels).filter(|(a, b)| a == b).count();
    println!("{source}: the first {count} test images");
    println!(
        "host, deployment kernels: f32 {}/{count} right, int8 {}/{count} right; f32 and int8 disagree on {}",
        correct(&pred_f32),
        correct(&pred_int8),
        pred_f32.iter().zip(&pred_int8).filter(|(a, b)| a != b).count()
    );
    println!(
        "wrote {}: test-images.bin ({} bytes), test-labels.bin and expected-f32.bin ({count} bytes each), expected-int8.bin ({} int8 logits per image)",
        dir.display(),
        images.len(),
        run.outputs()
    );
    Ok(())
}

/// The test data of a data file's model: its rows (the firmware's build
/// script embeds them instead of images when the file is there).
const ROWS_FILE: &str = "test-rows.bin";

/// Removes a file, if it is there.
fn remove(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Where the held-out rows come from.
struct RowSource<'a> {
    /// The data file.
    file: &'a Path,
    /// `ember train`'s test fraction of it, or `None` for all its rows.
    test_fraction: Option<f32>,
    /// `ember train`'s split seed.
    split_seed: u64,
    /// Whether the file has a header.
    header: Header,
}

/// A data file's checkpoint's model information.
fn model_info(path: &Path) -> Result<ModelInfo, String> {
    let c = Checkpoint::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if c.meta.model.is_null() {
        return Err(format!(
            "{}: not a data file's model (no model information): `cargo xtask test-images` is for FashionMNIST models",
            path.display()
        ));
    }
    serde_json::from_value(c.meta.model.clone())
        .map_err(|e| format!("{}: its model information: {e}", path.display()))
}

fn test_rows(
    dir: &Path,
    name: &str,
    checkpoint: &Path,
    source: &RowSource<'_>,
    count: usize,
) -> Result<(), String> {
    let (f32_bytes, int8_bytes) = model_pair(dir, name, read_any_model)?;
    let f32_model = Model::parse(f32_bytes.bytes()).map_err(|e| e.to_string())?;
    let int8_model = Model::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?;
    let info = model_info(checkpoint)?;
    let (inputs, outputs) = (f32_model.input_features(), f32_model.output_features());
    if inputs != info.features.len() || outputs != info.outputs.len() {
        return Err(format!(
            "{name}.emb takes {inputs} inputs and gives {outputs} outputs, but {} describes {} features and {} outputs",
            checkpoint.display(),
            info.features.len(),
            info.outputs.len()
        ));
    }
    let opts = ReadOptions {
        header: source.header,
        ..ReadOptions::new()
    };
    let table = read_table(source.file, &opts).map_err(|e| e.to_string())?;
    let all = info.rows(&table).map_err(|e| e.to_string())?;
    let (test, what) = match source.test_fraction {
        Some(f) => {
            let (_, held) =
                stratified_split(&all, f, source.split_seed).map_err(|e| e.to_string())?;
            (
                held,
                format!(
                    "the test split ember train held out ({f} of the file, --split-seed {})",
                    source.split_seed
                ),
            )
        }
        None => (all, "its rows".to_string()),
    };
    if test.is_empty() {
        return Err(format!("{}: no held-out rows", source.file.display()));
    }
    let n = count.min(test.len());
    if n == 0 {
        return Err("--count must be at least 1".into());
    }
    let classify = info.task == TaskKind::Classify;
    if classify && outputs > 256 {
        return Err(format!(
            "{outputs} classes: the firmware's labels are bytes (at most 256 classes)"
        ));
    }

    let mut rows = Vec::with_capacity(n * inputs * 4);
    let mut expected_f32 = Vec::with_capacity(n * outputs * 4);
    let mut expected_int8 = Vec::with_capacity(n * outputs);
    let mut labels = Vec::with_capacity(n);
    let (mut right_f32, mut right_int8, mut disagree) = (0, 0, 0);
    // How far the int8 outputs are from the f32 ones, in output steps.
    let mut worst_steps = 0.0f32;
    let mut fs = vec![0.0f32; f32_model.scratch_len()];
    let mut is = vec![0i8; int8_model.scratch_len()];
    let mut q = vec![0i8; inputs];
    let mut real = vec![0.0f32; outputs];
    let step = {
        let mut one = vec![0.0f32; outputs];
        let mut two = vec![0.0f32; outputs];
        int8_model
            .dequantize_output(&vec![0i8; outputs], &mut one)
            .and_then(|()| int8_model.dequantize_output(&vec![1i8; outputs], &mut two))
            .map_err(|e| e.to_string())?;
        (two[0] - one[0]).abs()
    };
    for (i, x) in test.features().chunks_exact(inputs).take(n).enumerate() {
        rows.extend(x.iter().flat_map(|v| v.to_le_bytes()));
        let y = f32_model.infer_f32(x, &mut fs).map_err(|e| e.to_string())?;
        expected_f32.extend(y.iter().flat_map(|v| v.to_le_bytes()));
        // The firmware's calls: the model's own input quantization, then
        // the int8 layers.
        int8_model
            .quantize_input(x, &mut q)
            .map_err(|e| e.to_string())?;
        let out = int8_model
            .infer_q8(&q, &mut is)
            .map_err(|e| e.to_string())?;
        expected_int8.extend(out.iter().map(|&v| v as u8));
        int8_model
            .dequantize_output(out, &mut real)
            .map_err(|e| e.to_string())?;
        for (a, b) in y.iter().zip(&real) {
            worst_steps = worst_steps.max((a - b).abs() / step.max(f32::MIN_POSITIVE));
        }
        if classify {
            let label = test.labels()[i];
            labels.push(label as u8);
            let (cf, ci) = (argmax(y), argmax_i8(out));
            right_f32 += usize::from(cf == label);
            right_int8 += usize::from(ci == label);
            disagree += usize::from(cf != ci);
        }
    }

    remove(&dir.join("test-images.bin"))?;
    write(&dir.join(ROWS_FILE), &rows)?;
    write(&dir.join("expected-f32.bin"), &expected_f32)?;
    write(&dir.join("expected-int8.bin"), &expected_int8)?;
    if classify {
        write(&dir.join("test-labels.bin"), &labels)?;
    } else {
        remove(&dir.join("test-labels.bin"))?;
    }

    println!(
        "{}: the first {n} of {} ({} held-out rows), {} task, {inputs} features, {outputs} outputs",
        source.file.display(),
        what,
        test.len(),
        info.task
    );
    if classify {
        println!(
            "host, deployment kernels: f32 {right_f32}/{n} right, int8 {right_int8}/{n} right; f32 and int8 disagree on {disagree}"
        );
    }
    println!(
        "host: the int8 outputs are at most {worst_steps:.1} output steps ({step}) from the f32 ones"
    );
    println!(
        "wrote {}: {ROWS_FILE} ({} bytes, {inputs} f32 per row), expected-f32.bin ({outputs} f32 per row), expected-int8.bin ({outputs} bytes per row){}",
        dir.display(),
        rows.len(),
        if classify {
            ", test-labels.bin (a byte per row)"
        } else {
            ""
        }
    );
    Ok(())
}
