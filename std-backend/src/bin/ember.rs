//! `ember`: train, evaluate, inspect, export, import and run MLPs on
//! FashionMNIST (or any IDX data set of the same layout).

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use ember_nn_core::deploy::Model;
use ember_nn_core::nn::{summary, Mlp};
use ember_nn_core::{Cpu, Memory, Rng};
use ember_nn_std::checkpoint::Checkpoint;
use ember_nn_std::config::{ActivationKind, OptimizerKind, SchedulerKind};
use ember_nn_std::data::split::stratified_split;
use ember_nn_std::data::table::{read_table, Classified, Column, FileKind, Header, ReadOptions};
use ember_nn_std::data::transform::{
    Compose, GaussianNoise, RandomHorizontalFlip, RandomRotation, RandomShift,
};
use ember_nn_std::data::{Dataset, FashionMnist, Source, Split, TensorDataset};
use ember_nn_std::export::{evaluate_file, f32_file, int8_file, write_deployables, AlignedBytes};
use ember_nn_std::train::{self, parse_widths, Checkpointing, EpochMetrics, Progress, TrainConfig};
use ember_nn_std::{atomic::write_atomic, image, report, state_dict, Parallel};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

#[derive(Parser)]
#[command(
    name = "ember",
    version,
    about = "Train small neural networks and deploy them to microcontrollers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an MLP, report on the test set, and export it (the main job).
    Train(Box<TrainArgs>),
    /// Accuracy, per-class accuracy and confusion matrix of a model on the test set.
    Eval(ModelArgs),
    /// Print a model's layers and parameter count.
    Summary(SummaryArgs),
    /// Write a checkpoint's model as .emb (f32 and int8), safetensors and Rust source.
    Export {
        /// Checkpoint to export.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "runs/export")]
        out: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Read a PyTorch state_dict (safetensors) and write it in Ember's formats.
    Import {
        /// The safetensors file (`0.weight` [out, in], `0.bias`, ...; other
        /// layer names are mapped by position, see --names).
        #[arg(long)]
        safetensors: PathBuf,
        #[command(flatten)]
        arch: ArchArgs,
        #[command(flatten)]
        names: NamesArg,
        /// Output directory.
        #[arg(long, default_value = "runs/import")]
        out: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Classify an image (PNG or PGM) or a test-set sample; print the top 3 classes.
    Predict {
        #[command(flatten)]
        model: ModelArgs,
        /// Image file.
        image: Option<PathBuf>,
        /// Index into the test set instead of an image.
        #[arg(long)]
        index: Option<usize>,
    },
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Directory of FashionMNIST IDX files, which must hold them. Without it:
    /// /usr/share/datasets/fashion-mnist/, or a built-in subset when that
    /// directory lacks the files. `train` also takes a data file: .csv,
    /// .tsv, .csv.gz, .npy (with --labels) or .npz.
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ArchArgs {
    /// Layer sizes, input first [default: 784-256-128-10]. For a model file
    /// whose metadata names its layers, it must agree or be left out.
    #[arg(long)]
    layers: Option<String>,
    /// Hidden activation: relu, tanh, sigmoid, leaky_relu, elu, selu, silu,
    /// gelu, gelu_tanh, softsign or softplus [default: relu].
    #[arg(long, value_parser = ActivationKind::from_str)]
    activation: Option<ActivationKind>,
}

impl ArchArgs {
    const DEFAULT_LAYERS: &'static str = "784-256-128-10";

    /// `--layers`, or the default.
    fn layers(&self) -> &str {
        self.layers.as_deref().unwrap_or(Self::DEFAULT_LAYERS)
    }

    /// `--activation`, or the default.
    fn activation(&self) -> ActivationKind {
        self.activation.unwrap_or_default()
    }
}

/// `summary`'s options: an MLP's layers, or a preset.
#[derive(Args, Clone)]
struct SummaryArgs {
    #[command(flatten)]
    arch: ArchArgs,
    /// A preset model instead of an MLP: `cnn` (see `ember train --help`).
    #[arg(long, value_name = "PRESET", conflicts_with_all = ["layers", "activation"])]
    model: Option<String>,
}

#[derive(Args, Clone)]
struct NamesArg {
    /// A safetensors state_dict's layer names in the model's order
    /// (`fc1,fc2,head` for `fc1.weight`, `fc1.bias`, ...). Without it, a
    /// file whose names are not Ember's (`0`, `2`, ...) is mapped by
    /// position and shape, and says so.
    #[arg(long, value_delimiter = ',')]
    names: Option<Vec<String>>,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A model: .emb (f32 or int8), a checkpoint, or a safetensors state_dict (with --layers).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    arch: ArchArgs,
    #[command(flatten)]
    names: NamesArg,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args)]
struct TrainArgs {
    /// A preset model instead of an MLP: `cnn` (Conv2d(1,16,3,pad 1)-ReLU-MaxPool2d(2)-
    /// Conv2d(16,32,3,pad 1)-ReLU-MaxPool2d(2)-Linear(1568,10), 20,490 parameters) on
    /// 28×28 images. Its checkpoint is evaluated by `ember eval`; it is not exported
    /// (convolutions are not in the deployable format yet).
    #[arg(long, value_name = "PRESET")]
    model: Option<String>,
    #[command(flatten)]
    arch: ArchArgs,
    /// sgd, adam, adamw, rmsprop or adagrad.
    #[arg(long, default_value = "adam", value_parser = OptimizerKind::from_str)]
    optimizer: OptimizerKind,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Momentum (SGD, RMSprop).
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// none, step, exponential, cosine or plateau.
    #[arg(long, default_value = "cosine", value_parser = SchedulerKind::from_str)]
    scheduler: SchedulerKind,
    /// StepLR period in epochs.
    #[arg(long, default_value_t = 5)]
    step_size: usize,
    /// Decay factor of step, exponential and plateau schedules.
    #[arg(long, default_value_t = 0.5)]
    gamma: f32,
    /// Epochs of linear warmup.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Epochs.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Augment training images: shifts, rotations (±15°), flips and noise.
    #[arg(long)]
    augment: bool,
    /// Worker threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Fraction of the training set held out for validation.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f32,
    /// Evaluate the test set after every epoch, in the validation columns of
    /// metrics.csv (with --val-fraction 0): for time-to-accuracy benchmarks,
    /// not for choosing a model.
    #[arg(long)]
    eval_test: bool,
    /// Stop after this many epochs without a better validation loss.
    #[arg(long)]
    patience: Option<usize>,
    /// Clip gradients to this global norm.
    #[arg(long)]
    clip: Option<f32>,
    /// Dropout probability after each hidden activation, in [0, 1), in
    /// training only (the exported model has none: dropout is the identity
    /// at inference).
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Use at most this many training samples (quick runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Continue from this checkpoint (bit-identical to an uninterrupted run).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop after this epoch (the run can be resumed from its checkpoint).
    #[arg(long)]
    stop_after: Option<usize>,
    #[command(flatten)]
    table: TableArgs,
    /// cpu or cuda (cuda falls back to the CPU when no GPU is usable).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Output directory: metrics.csv, curves.svg, checkpoint, model files, report.
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

/// Options of `train` on a data file (`--data FILE`).
#[derive(Args)]
struct TableArgs {
    /// With --data FILE.npy: the labels, a .npy of one value per row.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// The target column of a data file: a header name or a 0-based index
    /// [default: the last column].
    #[arg(long)]
    target: Option<String>,
    /// The feature columns of a data file, comma-separated names or 0-based
    /// indices [default: every column but the target].
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// A test file of the same columns and classes as the data file. Without
    /// it, --test-fraction of the data file is held out.
    #[arg(long)]
    test: Option<PathBuf>,
    /// With --test FILE.npy: the test labels.
    #[arg(long)]
    test_labels: Option<PathBuf>,
    /// Fraction of a data file held out as the test set (stratified by
    /// class, shuffled with --split-seed) when no --test is given.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f32,
    /// Seed of a data file's test and validation splits (apart from --seed,
    /// so runs of different seeds share their test set).
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// Whether a CSV file's first line is a header: auto, yes or no.
    #[arg(long, default_value = "auto", value_parser = parse_header)]
    header: Header,
}

impl TableArgs {
    /// Whether any option for a data file was given.
    fn any(&self) -> bool {
        self.labels.is_some()
            || self.target.is_some()
            || self.features.is_some()
            || self.test.is_some()
            || self.test_labels.is_some()
    }
}

fn parse_header(s: &str) -> Result<Header, String> {
    match s {
        "auto" => Ok(Header::Auto),
        "yes" => Ok(Header::Yes),
        "no" => Ok(Header::No),
        _ => Err(format!("`{s}`: auto, yes or no")),
    }
}

/// The hidden layers of `train`'s MLP on a data file when --layers is not
/// given: N-64-32-C for N features and C classes.
const TABLE_HIDDEN: [usize; 2] = [64, 32];

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A value the command line refuses is one line and status 1, as
        // every other setting the run checks.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            ) =>
        {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid value");
            eprintln!("error: {}", first.trim_start_matches("error: "));
            return ExitCode::FAILURE;
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Train(a) => cmd_train(*a),
        Command::Eval(m) => cmd_eval(&m),
        Command::Summary(a) => match &a.model {
            Some(preset) => cnn_cli::summary(preset),
            None => cmd_summary(&a.arch),
        },
        Command::Export {
            checkpoint,
            out,
            data,
        } => cmd_export(&checkpoint, &out, &data),
        Command::Import {
            safetensors,
            arch,
            names,
            out,
            data,
        } => cmd_import(&safetensors, &arch, &names, &out, &data),
        Command::Predict {
            model,
            image,
            index,
        } => cmd_predict(&model, image.as_deref(), index),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T = ()> = Result<T, String>;

#[path = "ember/cnn_cli.rs"]
mod cnn_cli;

/// The most worker threads `--threads` may ask for.
const MAX_THREADS: usize = 1024;

fn load(data: &DataArgs, split: Split) -> Res<TensorDataset> {
    let (set, source) =
        FashionMnist::load_or_builtin(data.data.as_deref(), split).map_err(|e| e.to_string())?;
    let which = if split == Split::Train {
        "training"
    } else {
        "test"
    };
    eprintln!("{which} set: {} samples from {source}", set.dataset().len());
    if source == Source::Builtin && split == Split::Train {
        eprintln!(
            "  (the full set: `apt-get install dataset-fashion-mnist` puts it in /usr/share/datasets/fashion-mnist/; or give a directory with --data)"
        );
    }
    Ok(set.into_dataset())
}

struct Bar {
    bar: Option<ProgressBar>,
}

impl Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, batches: usize) {
        let bar = ProgressBar::new(batches as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(epoch.to_string());
        self.bar = Some(bar);
    }
    fn batch(&mut self, done: usize, loss: f32, acc: Option<f32>, sps: f32) {
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
            if done.is_multiple_of(10) {
                let acc = acc.map_or(String::new(), |a| format!(" acc {:.1}%", a * 100.0));
                b.set_message(format!("loss {loss:.4}{acc} {sps:.0} samples/s"));
            }
        }
    }
    fn epoch_end(&mut self, m: &EpochMetrics) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let val = match (m.val_loss, m.val_acc) {
            (Some(l), Some(a)) => format!("  val loss {l:.4} acc {:.2}%", a * 100.0),
            _ => String::new(),
        };
        let acc = m
            .train_acc
            .map_or(String::new(), |a| format!("  acc {:.2}%", a * 100.0));
        eprintln!(
            "epoch {:>3}  loss {:.4}{acc}{val}  lr {:.2e}  {:.0} samples/s  {:.1}s",
            m.epoch, m.train_loss, m.lr, m.samples_per_sec, m.seconds
        );
    }
    fn note(&mut self, text: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("note: {text}")),
            None => eprintln!("note: {text}"),
        }
    }
}

/// A data file's training and test sets, and its classes' names.
struct TableData {
    train: TensorDataset,
    test: TensorDataset,
    names: Vec<String>,
    features: usize,
}

fn load_table(file: &Path, t: &TableArgs) -> Res<TableData> {
    let opts = |labels: &Option<PathBuf>| ReadOptions {
        header: t.header,
        labels: labels.clone(),
        ..ReadOptions::new()
    };
    let table = read_table(file, &opts(&t.labels)).map_err(|e| e.to_string())?;
    let target = t.target.as_deref().map_or(Column::Last, Column::name);
    let features: Option<Vec<Column>> = t
        .features
        .as_ref()
        .map(|f| f.iter().map(|c| Column::name(c.trim())).collect());
    let data: Classified = table
        .classify(&target, features.as_deref())
        .map_err(|e| e.to_string())?;
    eprintln!("{}", data.task());
    let names = data.dataset.class_names().to_vec();
    eprintln!("  classes: {}", names.join(", "));
    eprintln!(
        "  features: {} column(s): {}",
        data.feature_names.len(),
        data.feature_names.join(", ")
    );
    let (train, test) = match &t.test {
        Some(test_file) => {
            let tt = read_table(test_file, &opts(&t.test_labels)).map_err(|e| e.to_string())?;
            let test = tt.classify_like(&data).map_err(|e| e.to_string())?;
            let mut train = data.dataset.clone();
            // Shuffled, as a held-out split's training part is.
            let (shuffled, _) =
                stratified_split(&train, 0.0, t.split_seed).map_err(|e| e.to_string())?;
            train = shuffled;
            (train, test)
        }
        None => {
            let (train, test) = stratified_split(&data.dataset, t.test_fraction, t.split_seed)
                .map_err(|e| e.to_string())?;
            if test.is_empty() {
                return Err(
                    "no test set: give --test FILE, or a --test-fraction that holds out samples"
                        .into(),
                );
            }
            (train, test)
        }
    };
    let held = match &t.test {
        Some(p) => format!("test set {}", p.display()),
        None => format!(
            "test set held out ({} of the file, stratified, --split-seed {})",
            t.test_fraction, t.split_seed
        ),
    };
    eprintln!(
        "data: {} training samples from {}; {} test samples, {held}",
        train.len(),
        file.display(),
        test.len()
    );
    Ok(TableData {
        features: data.feature_names.len(),
        train,
        test,
        names,
    })
}

/// The MLP's widths for a data file of `features` columns and `classes`
/// classes: --layers, which must agree, or N-64-32-C.
fn table_widths(layers: Option<&str>, features: usize, classes: usize) -> Res<Vec<usize>> {
    let Some(given) = layers else {
        let mut w = vec![features];
        w.extend(TABLE_HIDDEN);
        w.push(classes);
        return Ok(w);
    };
    let w = parse_widths(given).map_err(|e| e.to_string())?;
    if w[0] != features {
        return Err(format!(
            "--layers {given} takes {} inputs, but the data has {features} feature columns (leave --layers out for {features}-64-32-{classes})",
            w[0]
        ));
    }
    if w[w.len() - 1] != classes {
        return Err(format!(
            "--layers {given} has {} outputs, but the target has {classes} classes (leave --layers out for {features}-64-32-{classes})",
            w[w.len() - 1]
        ));
    }
    Ok(w)
}

fn cmd_train(a: TrainArgs) -> Res {
    if a.model.is_some() {
        return cnn_cli::train(&a);
    }
    let table_file = a
        .data
        .data
        .clone()
        .filter(|p| p.is_file() || FileKind::of(p).is_some());
    if table_file.is_none() && a.table.any() {
        return Err(
            "--labels, --target, --features and --test are for a data file (--data FILE.csv, .csv.gz, .npy or .npz)"
                .into(),
        );
    }
    if table_file.is_some() && a.augment {
        return Err("--augment is for images (IDX data sets), not for a data file".into());
    }
    let mut cfg = TrainConfig {
        widths: parse_widths(a.arch.layers()).map_err(|e| e.to_string())?,
        activation: a.arch.activation(),
        optimizer: a.optimizer,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        scheduler: a.scheduler,
        step_size: a.step_size,
        gamma: a.gamma,
        warmup: a.warmup,
        epochs: a.epochs,
        batch: a.batch,
        seed: a.seed,
        augment: a.augment,
        val_fraction: a.val_fraction,
        patience: a.patience,
        clip: a.clip,
        dropout: a.dropout,
    };
    // Everything the arguments decide is checked before any data is read.
    cfg.validate().map_err(|e| e.to_string())?;
    if a.device != "cpu" && a.device != "cuda" {
        return Err(format!("unknown device `{}` (cpu or cuda)", a.device));
    }
    if a.eval_test && cfg.val_fraction > 0.0 {
        return Err("--eval-test needs --val-fraction 0".into());
    }
    if a.limit == Some(0) {
        return Err("--limit must be positive".into());
    }
    if a.threads > MAX_THREADS {
        return Err(format!(
            "--threads must be at most {MAX_THREADS} (0: one per core)"
        ));
    }
    if let Some(p) = &a.resume {
        if !p.is_file() {
            return Err(format!("--resume {}: no such checkpoint file", p.display()));
        }
    }
    train::check_memory(&cfg).map_err(|e| e.to_string())?;
    let table = match &table_file {
        Some(file) => {
            let t = load_table(file, &a.table)?;
            cfg.widths = table_widths(a.arch.layers.as_deref(), t.features, t.names.len())?;
            cfg.validate().map_err(|e| e.to_string())?;
            train::check_memory(&cfg).map_err(|e| e.to_string())?;
            Some(t)
        }
        None => {
            if let Some(dir) = &a.data.data {
                FashionMnist::check_dir(dir, &[Split::Train, Split::Test])
                    .map_err(|e| e.to_string())?;
            }
            None
        }
    };

    let (mut train_all, test, names, calib) = match table {
        Some(t) => {
            let calib = t.train.clone();
            (t.train, t.test, t.names, Some(calib))
        }
        None => (
            load(&a.data, Split::Train)?,
            load(&a.data, Split::Test)?,
            class_names(),
            None,
        ),
    };
    if let Some(n) = a.limit {
        if n < train_all.len() {
            train_all = train_all.split_at(n).0;
        }
    }
    let (train_set, val_set) = if calib.is_some() {
        // A data file's validation set: stratified and shuffled as its test set.
        let (t, v) = stratified_split(&train_all, cfg.val_fraction, a.table.split_seed ^ 1)
            .map_err(|e| e.to_string())?;
        (t, (!v.is_empty()).then_some(v))
    } else {
        train::split_validation(train_all, cfg.val_fraction)
    };
    let val_set = if a.eval_test {
        Some(test.clone())
    } else {
        val_set
    };
    let augment = cfg.augment.then(|| {
        Compose::new()
            .then(RandomShift::new(2))
            .then(RandomRotation::new(15.0))
            .then(RandomHorizontalFlip::new(0.5))
            .then(GaussianNoise::new(0.02))
    });
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let ckpt = Checkpointing {
        path: Some(a.out.join("checkpoint.safetensors")),
        resume: a.resume.clone(),
        stop_after: a.stop_after,
    };
    #[cfg(feature = "cuda")]
    if a.device == "cuda" {
        match ember_nn_cuda::CudaBackend::new(0) {
            Ok(gpu) => {
                eprintln!("training on {}", ember_nn_core::backend::Device::name(&gpu));
                let run = TrainRun {
                    cfg: &cfg,
                    out: &a.out,
                    data: &a.data,
                    test: &test,
                    names: &names,
                    calib: calib.as_ref(),
                };
                return run.go(&gpu, train_set, val_set, augment, &ckpt);
            }
            Err(e) => eprintln!("--device cuda: no usable GPU ({e}); training on the CPU instead"),
        }
    }
    #[cfg(not(feature = "cuda"))]
    if a.device == "cuda" {
        eprintln!("--device cuda: this build has no CUDA support (feature `cuda`); training on the CPU instead");
    }
    let backend = Parallel::try_new(a.threads).map_err(|e| e.to_string())?;
    eprintln!(
        "training on {} with {} thread(s)",
        ember_nn_core::backend::Device::name(&backend),
        backend.threads()
    );
    let run = TrainRun {
        cfg: &cfg,
        out: &a.out,
        data: &a.data,
        test: &test,
        names: &names,
        calib: calib.as_ref(),
    };
    run.go(&backend, train_set, val_set, augment, &ckpt)
}

/// The part of `train` that is the same on every device.
struct TrainRun<'a> {
    cfg: &'a TrainConfig,
    out: &'a Path,
    data: &'a DataArgs,
    test: &'a TensorDataset,
    /// The classes' names, for the report.
    names: &'a [String],
    /// Calibration data for the int8 model; `None` for the IDX training set.
    calib: Option<&'a TensorDataset>,
}

impl TrainRun<'_> {
    fn go<D: ember_nn_core::backend::Device>(
        &self,
        device: &D,
        train_set: TensorDataset,
        val_set: Option<TensorDataset>,
        augment: Option<Compose>,
        ckpt: &Checkpointing,
    ) -> Res {
        let (cfg, test) = (self.cfg, self.test);
        let dropout = if cfg.dropout > 0.0 {
            format!(", dropout {}", cfg.dropout)
        } else {
            String::new()
        };
        eprintln!(
            "model {} ({} activation{dropout}), {} optimizer: {} training, {} validation samples",
            cfg.layers(),
            cfg.activation,
            cfg.optimizer,
            train_set.len(),
            val_set.as_ref().map_or(0, |v| v.len())
        );
        let mut bar = Bar { bar: None };
        let started = std::time::Instant::now();
        let outcome = train::train(
            device,
            cfg,
            train_set,
            val_set.as_ref(),
            augment,
            ckpt,
            &mut bar,
        );
        let trained = outcome.map_err(|e| e.to_string())?;
        if trained.stopped_early {
            eprintln!(
                "early stopping: no better validation loss for {} epochs",
                cfg.patience.unwrap_or(0)
            );
        }
        write_reports(self.out, &trained.history)?;
        let params = trained.params().map_err(|e| e.to_string())?;

        // Report on the test set and export, through the deployment kernels.
        let f32_bytes = f32_file(&cfg.widths, cfg.activation, &params)?;
        let int8_bytes = match self.calib {
            Some(c) => int8_file(&f32_bytes, c, 1000)?,
            None => int8_file(&f32_bytes, &load_quiet(self.data, Split::Train)?, 1000)?,
        };
        let f32_model = Model::parse(f32_bytes.bytes()).map_err(|e| e.to_string())?;
        let int8_model = Model::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?;
        let (acc32, preds) = evaluate_file(&f32_model, test)?;
        let (acc8, _) = evaluate_file(&int8_model, test)?;
        let mut text = report::classification_report(test.labels(), &preds, self.names);
        text.push_str(&format!(
            "\nint8 accuracy (host, deployment kernels): {acc8:.4} ({:+.2} points vs f32 {acc32:.4})\n\
             training time: {:.1}s\n",
            100.0 * (acc8 - acc32),
            started.elapsed().as_secs_f32()
        ));
        println!("\n{text}");
        let out = self.out;
        write_atomic(&out.join("report.txt"), text.as_bytes()).map_err(|e| e.to_string())?;
        write_atomic(&out.join("model.emb"), f32_bytes.bytes()).map_err(|e| e.to_string())?;
        write_atomic(&out.join("model-int8.emb"), int8_bytes.bytes()).map_err(|e| e.to_string())?;
        save_safetensors(
            &out.join("model.safetensors"),
            &cfg.widths,
            cfg.activation,
            &params,
        )?;
        eprintln!(
            "wrote {}: metrics.csv, curves.svg, checkpoint.safetensors, model.safetensors, model.emb ({} bytes), model-int8.emb ({} bytes), report.txt",
            out.display(),
            f32_bytes.bytes().len(),
            int8_bytes.bytes().len()
        );
        Ok(())
    }
}

fn load_quiet(data: &DataArgs, split: Split) -> Res<TensorDataset> {
    FashionMnist::load_or_builtin(data.data.as_deref(), split)
        .map(|(s, _)| s.into_dataset())
        .map_err(|e| e.to_string())
}

fn class_names() -> Vec<String> {
    FashionMnist::CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn write_reports(out: &Path, history: &[EpochMetrics]) -> Res {
    report::write_metrics(&out.join("metrics.csv"), history).map_err(|e| e.to_string())?;
    report::plot_curves(&out.join("curves.svg"), history)
}

fn save_safetensors(
    path: &Path,
    widths: &[usize],
    act: ActivationKind,
    params: &[state_dict::NamedTensor],
) -> Res {
    let mut md = std::collections::HashMap::new();
    md.insert(
        "ember.layers".into(),
        widths
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("-"),
    );
    md.insert("ember.activation".into(), act.to_string());
    let bytes = state_dict::to_bytes(params, Some(md))?;
    write_atomic(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Any model file as weight-file bytes.
fn model_bytes(m: &ModelArgs) -> Res<AlignedBytes> {
    let path = &m.model;
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let not_a_state_dict = || {
        format!(
            "{}: --names is for a safetensors state_dict, and this is an Ember model or checkpoint",
            path.display()
        )
    };
    if raw.starts_with(b"EMBR") {
        if m.names.names.is_some() {
            return Err(not_a_state_dict());
        }
        let b = AlignedBytes::new(&raw);
        Model::parse(b.bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(b);
    }
    if let Ok(c) = Checkpoint::load(path) {
        if m.names.names.is_some() {
            return Err(not_a_state_dict());
        }
        let (widths, act) = mlp_of(path, &c)?;
        return f32_file(widths, act, &c.params);
    }
    // A safetensors state_dict: the architecture comes from --layers or the file's metadata.
    let (widths, act) = arch_of(path, &raw, &m.arch)?;
    let params = read_state_dict(path, &raw, &widths, act, &m.names)?;
    f32_file(&widths, act, &params)
}

/// A checkpoint's MLP architecture (checkpoints of other models have none).
fn mlp_of<'c>(path: &Path, c: &'c Checkpoint) -> Res<(&'c [usize], ActivationKind)> {
    match c.meta.activation {
        Some(act) if !c.meta.widths.is_empty() => Ok((&c.meta.widths, act)),
        _ => Err(format!(
            "{}: this checkpoint records no MLP architecture: eval, export and predict take the checkpoints of `ember train` (a Learner run of another model is loaded by its own program)",
            path.display()
        )),
    }
}

fn arch_of(path: &Path, raw: &[u8], arch: &ArchArgs) -> Res<(Vec<usize>, ActivationKind)> {
    let md = safetensors::SafeTensors::read_metadata(raw)
        .map_err(|e| {
            format!(
                "{}: not an Ember model (bad magic), nor an Ember checkpoint or a safetensors state_dict ({e})",
                path.display()
            )
        })?
        .1
        .metadata()
        .clone()
        .unwrap_or_default();
    // The file's metadata names its architecture; an explicit option that
    // says otherwise is an error, not silently overridden.
    let layers = match (md.get("ember.layers"), &arch.layers) {
        (Some(file), Some(given)) if parse_widths(file).ok() != parse_widths(given).ok() => {
            return Err(format!(
                "{}: the file holds a {file} model (its metadata), --layers says {given}",
                path.display()
            ))
        }
        (Some(file), _) => file.as_str(),
        (None, _) => arch.layers(),
    };
    let act = match md.get("ember.activation") {
        Some(name) => {
            let file = name
                .parse::<ActivationKind>()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            match arch.activation {
                Some(given) if given != file => {
                    return Err(format!(
                    "{}: the file's model uses {file} (its metadata), --activation says {given}",
                    path.display()
                ))
                }
                _ => file,
            }
        }
        None => arch.activation(),
    };
    Ok((parse_widths(layers).map_err(|e| e.to_string())?, act))
}

/// The MLP's parameters from a safetensors state_dict (`raw`, read from
/// `path`): by name, or under other layer names mapped by position (or as
/// `--names` lists them), which a note on stderr says.
fn read_state_dict(
    path: &Path,
    raw: &[u8],
    widths: &[usize],
    act: ActivationKind,
    names: &NamesArg,
) -> Res<Vec<state_dict::NamedTensor>> {
    let a = act.activation();
    let mut buf = vec![0.0f32; Mlp::param_floats(widths) + 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Mlp::new(&mut mem, &mut Rng::new(0), widths, a).map_err(|e| e.to_string())?;
    let matched = state_dict::load_layers(path, raw, &model, &mut mem, names.names.as_deref())
        .map_err(|e| match e {
            state_dict::StateDictError::Names { .. } => format!(
                "{e} (to map them anyway, list the file's layers in the model's order with --names A,B,...)"
            ),
            e => e.to_string(),
        })?;
    if let Some(note) = matched.note() {
        eprintln!("note: {}: {note}", path.display());
    }
    state_dict::named_tensors(&model, &mem).map_err(|e| e.to_string())
}

fn cmd_eval(m: &ModelArgs) -> Res {
    if let Some(c) = cnn_cli::preset_checkpoint(&m.model) {
        return cnn_cli::eval(m, &c);
    }
    let bytes = model_bytes(m)?;
    let model = Model::parse(bytes.bytes()).map_err(|e| e.to_string())?;
    let test = load(&m.data, Split::Test)?;
    check_inputs(&model, &test)?;
    let (_, preds) = evaluate_file(&model, &test)?;
    println!(
        "{} model, {} layers, {} parameter bytes\n",
        if model.is_int8() { "int8" } else { "f32" },
        model.layer_count(),
        model.parameter_bytes()
    );
    print!(
        "{}",
        report::classification_report(test.labels(), &preds, &class_names())
    );
    Ok(())
}

fn check_inputs(model: &Model<'_>, data: &TensorDataset) -> Res {
    if model.input_features() != data.feature_len() {
        return Err(format!(
            "the model takes {} inputs but the data has {} features",
            model.input_features(),
            data.feature_len()
        ));
    }
    Ok(())
}

fn cmd_summary(a: &ArchArgs) -> Res {
    let widths = parse_widths(a.layers()).map_err(|e| e.to_string())?;
    let act = a.activation().activation();
    let mut buf = vec![0.0f32; Mlp::param_floats(&widths) + 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Mlp::new(&mut mem, &mut Rng::new(0), &widths, act).map_err(|e| e.to_string())?;
    print!("{}", summary(&model));
    let per = |b: usize| model.train_floats(b, 2) * 4;
    println!(
        "Training memory (Adam): {:.1} MiB at batch 64, {:.1} MiB at batch 256",
        per(64) as f64 / (1 << 20) as f64,
        per(256) as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn export_all(
    widths: &[usize],
    act: ActivationKind,
    params: &[state_dict::NamedTensor],
    out: &Path,
    data: &DataArgs,
) -> Res {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let f32_bytes = f32_file(widths, act, params)?;
    let calib = load_quiet(data, Split::Train)?;
    let int8_bytes = int8_file(&f32_bytes, &calib, 1000)?;
    let f = Model::parse(f32_bytes.bytes()).map_err(|e| e.to_string())?;
    let q = Model::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?;
    write_deployables(out, &f32_bytes, &int8_bytes)?;
    save_safetensors(&out.join("model.safetensors"), widths, act, params)?;
    let test = load_quiet(data, Split::Test)?;
    if check_inputs(&f, &test).is_ok() {
        let (a32, _) = evaluate_file(&f, &test)?;
        let (a8, _) = evaluate_file(&q, &test)?;
        println!("test accuracy: f32 {a32:.4}, int8 {a8:.4}");
    }
    println!(
        "wrote {}: model.emb, model-int8.emb, model.rs, model_int8.rs, model_type.rs, model.safetensors",
        out.display()
    );
    Ok(())
}

fn cmd_export(checkpoint: &Path, out: &Path, data: &DataArgs) -> Res {
    let c = Checkpoint::load(checkpoint).map_err(|e| e.to_string())?;
    if ember_nn_std::cnn::is_preset(&c) {
        return Err(cnn_cli::NOT_DEPLOYABLE.into());
    }
    let (widths, act) = mlp_of(checkpoint, &c)?;
    export_all(widths, act, &c.params, out, data)
}

fn cmd_import(path: &Path, arch: &ArchArgs, names: &NamesArg, out: &Path, data: &DataArgs) -> Res {
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (widths, act) = arch_of(path, &raw, arch)?;
    let params = read_state_dict(path, &raw, &widths, act, names)?;
    println!("read {} tensors from {}", params.len(), path.display());
    export_all(&widths, act, &params, out, data)
}

fn cmd_predict(m: &ModelArgs, image_path: Option<&Path>, index: Option<usize>) -> Res {
    let bytes = model_bytes(m)?;
    let model = Model::parse(bytes.bytes()).map_err(|e| e.to_string())?;
    let side = (model.input_features() as f64).sqrt() as usize;
    let (input, truth) = match (image_path, index) {
        (Some(p), None) => {
            if side * side != model.input_features() {
                return Err("the model's input is not a square image".into());
            }
            let img = image::read(p)
                .map_err(|e| e.to_string())?
                .resize(side, side);
            (img.pixels, None)
        }
        (None, Some(i)) => {
            let test = load(&m.data, Split::Test)?;
            let s = test.get(i).ok_or_else(|| {
                format!("index {i} is outside the test set ({} samples)", test.len())
            })?;
            (s.features.to_vec(), Some(s.label))
        }
        _ => return Err("give either an image file or --index".into()),
    };
    if input.len() != model.input_features() {
        return Err(format!(
            "the model takes {} inputs, the input has {}",
            model.input_features(),
            input.len()
        ));
    }
    let mut logits = vec![0.0f32; model.output_features()];
    if model.is_int8() {
        let mut s = vec![0i8; model.scratch_len()];
        let mut q = vec![0i8; model.input_features()];
        model
            .infer_i8(&input, &mut q, &mut s, &mut logits)
            .map_err(|e| e.to_string())?;
    } else {
        let mut s = vec![0.0f32; model.scratch_len()];
        logits.copy_from_slice(model.infer_f32(&input, &mut s).map_err(|e| e.to_string())?);
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    let mut ranked: Vec<(usize, f32)> = exps.iter().map(|&e| e / sum).enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let names = class_names();
    for (rank, (c, p)) in ranked.iter().take(3).enumerate() {
        println!(
            "{}. {:<12} {:.4}",
            rank + 1,
            names.get(*c).map_or("?", |s| s.as_str()),
            p
        );
    }
    if let Some(t) = truth {
        println!("true class: {}", names.get(t).map_or("?", |s| s.as_str()));
    }
    Ok(())
}
