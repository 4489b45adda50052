//! `cargo xtask`: project automation that needs the host (the data set, the
//! file system) and is no part of the libraries.
//!
//! `cargo xtask test-images` writes the data the firmware checks itself
//! against, so that building and running the firmware needs no data set:
//! the first `--count` FashionMNIST test images (u8 pixels), their labels, and
//! what the host computes for them with the deployed kernels, the code the
//! firmware runs: the f32 model's class (`Model::infer_f32` + `argmax`) and the
//! int8 model's whole output vector (`Model::infer_u8` on the pixels). The
//! firmware passes only if it predicts the same f32 class and the same int8
//! logits, byte for byte, for every image.

use clap::{Parser, Subcommand};
use ember_nn_core::deploy::{argmax, argmax_i8, write_model_type, Model};
use ember_nn_std::atomic::write_atomic;
use ember_nn_std::data::{Dataset, FashionMnist, Split, TensorDataset};
use ember_nn_std::export::AlignedBytes;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::TestImages {
            models,
            name,
            count,
            data,
        } => test_images(&workspace_path(&models), &name, count, data.as_deref()),
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
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = AlignedBytes::new(&raw);
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

fn test_images(dir: &Path, name: &str, count: usize, data: Option<&Path>) -> Result<(), String> {
    let f32_path = dir.join(format!("{name}.emb"));
    let int8_path = dir.join(format!("{name}-int8.emb"));
    let (f32_bytes, int8_bytes) = (read_model(&f32_path)?, read_model(&int8_path)?);
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
    let mut fs = vec![0.0f32; f32_model.scratch_len()];
    let mut is = vec![0i8; int8_model.scratch_len()];
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
        let logits = f32_model
            .infer_f32(&input, &mut fs)
            .map_err(|e| e.to_string())?;
        pred_f32.push(argmax(logits) as u8);
        // The firmware's call: the pixels themselves, read in place.
        let q = int8_model
            .infer_u8(&pixels, &mut is)
            .map_err(|e| e.to_string())?;
        pred_int8.push(argmax_i8(q) as u8);
        logits_int8.extend(q.iter().map(|&v| v as u8));
    }

    write(&dir.join("test-images.bin"), &images)?;
    write(&dir.join("test-labels.bin"), &labels)?;
    write(&dir.join("expected-f32.bin"), &pred_f32)?;
    write(&dir.join("expected-int8.bin"), &logits_int8)?;
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
        int8_model.output_features()
    );
    Ok(())
}
