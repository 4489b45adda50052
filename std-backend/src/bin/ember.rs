//! `ember`: train, evaluate, inspect, export, import and run MLPs on
//! FashionMNIST (or any IDX data set of the same layout).

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use ember_nn_core::deploy::{FormatError, GraphModel, Model};
use ember_nn_core::nn::{summary, Mlp};
use ember_nn_core::{Cpu, Memory, Rng};
use ember_nn_std::checkpoint::Checkpoint;
use ember_nn_std::config::{
    ActivationKind, LossKind, OptimizerKind, ScaleKind, SchedulerKind, TaskKind,
};
use ember_nn_std::data::scale::Scaler;
use ember_nn_std::data::split::stratified_split;
use ember_nn_std::data::table::{
    parse_csv_table, read_table, Classified, Column, CsvFormat, FileKind, Header, ReadOptions,
    Regressed, Table,
};
use ember_nn_std::data::transform::{
    Compose, GaussianNoise, RandomHorizontalFlip, RandomRotation, RandomShift,
};
use ember_nn_std::data::{Dataset, FashionMnist, Source, Split, TensorDataset};
use ember_nn_std::export::{
    evaluate_file, f32_file, int8_file, int8_file_with_step, outputs_file, write_deployables,
    AlignedBytes,
};
use ember_nn_std::train::{
    self, parse_widths, Checkpointing, EpochMetrics, ModelInfo, Progress, TrainConfig,
};
use ember_nn_std::{atomic::write_atomic, eval, image, report, state_dict, Parallel};
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
    Summary(Box<SummaryArgs>),
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
    /// whose metadata names its layers, it must agree or be left out. With
    /// a data file the ends may be `auto` (`auto-64-32-auto`): the feature
    /// columns and the classes or targets.
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

/// `summary`'s options: a model's layers, or a data file and the options
/// of `train` that shape its model (`--hidden`, `--target`, `--task`, ...).
#[derive(Args)]
struct SummaryArgs {
    #[command(flatten)]
    arch: ArchArgs,
    #[command(flatten)]
    table: TableArgs,
    /// A data file (as `train --data FILE`): the input and output widths
    /// come from its columns.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A preset model instead of an MLP: `cnn` (see `ember train --help`).
    #[arg(long, value_name = "PRESET", conflicts_with_all = ["layers", "activation", "data"])]
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
    /// 28×28 images. It writes the deployable graph files model.emb (f32) and
    /// model-int8.emb (int8, per channel), each checked on the test set; `ember eval`
    /// evaluates its checkpoint and runs the files.
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
    /// classify, regress or reconstruct (an autoencoder of the features)
    /// [default: inferred from the target column: numbers that are not all
    /// integers regress, names and integers classify].
    #[arg(long, value_parser = TaskKind::from_str)]
    task: Option<TaskKind>,
    /// The loss of regress and reconstruct: mse, l1 or huber (delta 1).
    #[arg(long, value_parser = LossKind::from_str)]
    loss: Option<LossKind>,
    /// The hidden layers' widths, comma-separated (the input and output
    /// widths come from the data) [default: 64,32].
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Feature scaling, fitted on the training split only and kept in the
    /// exported models, which take raw features (folded into the f32
    /// model's first layer; the int8 model's input step): standard, minmax
    /// or none [default: standard].
    #[arg(long, value_parser = ScaleKind::from_str)]
    scale: Option<ScaleKind>,
    /// reconstruct: the anomaly threshold is this quantile of the
    /// validation split's scores [default: 0.99].
    #[arg(long)]
    quantile: Option<f32>,
}

impl TableArgs {
    /// Whether any option for a data file was given.
    fn any(&self) -> bool {
        self.labels.is_some()
            || self.target.is_some()
            || self.features.is_some()
            || self.test.is_some()
            || self.test_labels.is_some()
            || self.task.is_some()
            || self.loss.is_some()
            || self.hidden.is_some()
            || self.scale.is_some()
            || self.quantile.is_some()
    }
}

impl TableArgs {
    /// What the options decide alone, checked before any data is read.
    fn check(&self) -> Res {
        if self.task == Some(TaskKind::Reconstruct) && self.target.is_some() {
            return Err(
                "--task reconstruct takes no --target: an autoencoder's target is its input (choose its columns with --features)"
                    .into(),
            );
        }
        if self.quantile.is_some_and(|q| !(q > 0.0 && q < 1.0)) {
            return Err("--quantile must be between 0 and 1".into());
        }
        if self.hidden.as_ref().is_some_and(|h| h.contains(&0)) {
            return Err("--hidden: every width must be positive".into());
        }
        Ok(())
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
            None => cmd_summary(&a),
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

/// A data file's training and test sets, its task, and the names of its
/// classes (classify) or targets (regress, reconstruct).
struct TableData {
    train: TensorDataset,
    test: TensorDataset,
    names: Vec<String>,
    features: usize,
    feature_names: Vec<String>,
    target_names: Vec<String>,
    task: TaskKind,
}

/// A data file's data set as its task made it.
enum Shaped {
    Classes(Classified),
    Values(Regressed),
}

impl Shaped {
    fn dataset(&self) -> &TensorDataset {
        match self {
            Shaped::Classes(c) => &c.dataset,
            Shaped::Values(r) => &r.dataset,
        }
    }

    fn feature_names(&self) -> &[String] {
        match self {
            Shaped::Classes(c) => &c.feature_names,
            Shaped::Values(r) => &r.feature_names,
        }
    }

    /// Another file (a test file) with the same columns.
    fn like(&self, t: &Table) -> Res<TensorDataset> {
        match self {
            Shaped::Classes(c) => t.classify_like(c),
            Shaped::Values(r) => t.regress_like(r),
        }
        .map_err(|e| e.to_string())
    }
}

/// The task: `--task`, or the one the target column suggests; printed
/// with the reason.
fn choose_task(table: &Table, t: &TableArgs, target: &Column) -> Res<TaskKind> {
    t.check()?;
    let (task, why) = match t.task {
        Some(task) => (task, "as --task says".to_string()),
        None => {
            let i = table.infer_task(target).map_err(|e| e.to_string())?;
            (i.task, i.reason)
        }
    };
    if t.quantile.is_some() && task != TaskKind::Reconstruct {
        return Err("--quantile is for --task reconstruct (the anomaly threshold)".into());
    }
    if t.loss.is_some() && task == TaskKind::Classify {
        return Err(
            "--loss is for --task regress or reconstruct (a classifier's loss is cross-entropy)"
                .into(),
        );
    }
    eprintln!("{task}: {why}");
    Ok(task)
}

fn load_table(file: &Path, t: &TableArgs) -> Res<TableData> {
    let opts = |labels: &Option<PathBuf>| ReadOptions {
        header: t.header,
        labels: labels.clone(),
        ..ReadOptions::new()
    };
    let table = read_table(file, &opts(&t.labels)).map_err(|e| e.to_string())?;
    // A regression's targets may be several: `--target a,b`.
    let targets: Vec<Column> = match &t.target {
        Some(s) => s.split(',').map(|c| Column::name(c.trim())).collect(),
        None => vec![Column::Last],
    };
    let features: Option<Vec<Column>> = t
        .features
        .as_ref()
        .map(|f| f.iter().map(|c| Column::name(c.trim())).collect());
    let task = choose_task(&table, t, &targets[0])?;
    let data = match task {
        TaskKind::Classify => {
            if targets.len() > 1 {
                return Err(format!(
                    "--target {}: a classifier has one target column (several are for --task regress)",
                    t.target.as_deref().unwrap_or_default()
                ));
            }
            let c = table
                .classify(&targets[0], features.as_deref())
                .map_err(|e| e.to_string())?;
            Shaped::Classes(c)
        }
        TaskKind::Regress => Shaped::Values(
            table
                .regress(&targets, features.as_deref())
                .map_err(|e| e.to_string())?,
        ),
        TaskKind::Reconstruct => Shaped::Values(
            table
                .reconstruct(features.as_deref())
                .map_err(|e| e.to_string())?,
        ),
    };
    let names = match &data {
        Shaped::Classes(c) => {
            let names = c.dataset.class_names().to_vec();
            eprintln!("  classes: {}", names.join(", "));
            names
        }
        Shaped::Values(r) => {
            if task == TaskKind::Regress {
                eprintln!(
                    "  targets: {} column(s): {}",
                    r.target_names.len(),
                    r.target_names.join(", ")
                );
            }
            r.target_names.clone()
        }
    };
    eprintln!(
        "  features: {} column(s): {}",
        data.feature_names().len(),
        data.feature_names().join(", ")
    );
    let (train, test) = match &t.test {
        Some(test_file) => {
            let tt = read_table(test_file, &opts(&t.test_labels)).map_err(|e| e.to_string())?;
            let test = data.like(&tt)?;
            let mut train = data.dataset().clone();
            // Shuffled, as a held-out split's training part is.
            let (shuffled, _) =
                stratified_split(&train, 0.0, t.split_seed).map_err(|e| e.to_string())?;
            train = shuffled;
            (train, test)
        }
        None => {
            let (train, test) = stratified_split(data.dataset(), t.test_fraction, t.split_seed)
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
            "test set held out ({} of the file, {}, --split-seed {})",
            t.test_fraction,
            if task == TaskKind::Classify {
                "stratified"
            } else {
                "shuffled"
            },
            t.split_seed
        ),
    };
    eprintln!(
        "data: {} training samples from {}; {} test samples, {held}",
        train.len(),
        file.display(),
        test.len()
    );
    Ok(TableData {
        features: data.feature_names().len(),
        feature_names: data.feature_names().to_vec(),
        target_names: match &data {
            Shaped::Classes(c) => vec![c.target_name.clone()],
            Shaped::Values(r) if task == TaskKind::Regress => r.target_names.clone(),
            Shaped::Values(_) => Vec::new(),
        },
        train,
        test,
        names,
        task,
    })
}

/// The MLP's widths for a data file of `features` columns and `classes`
/// classes (or outputs): --layers, which must agree (its ends may be
/// `auto`: these two), or N-H...-C with --hidden's widths (64,32 by
/// default).
fn table_widths(
    layers: Option<&str>,
    hidden: Option<&[usize]>,
    features: usize,
    classes: usize,
) -> Res<Vec<usize>> {
    let Some(given) = layers else {
        let hidden = hidden.unwrap_or(&TABLE_HIDDEN);
        if hidden.contains(&0) {
            return Err("--hidden: every width must be positive".into());
        }
        let mut w = vec![features];
        w.extend(hidden);
        w.push(classes);
        return Ok(w);
    };
    if hidden.is_some() {
        return Err("give --layers or --hidden, not both".into());
    }
    let parts: Vec<&str> = given.split('-').collect();
    let last = parts.len().saturating_sub(1);
    let mut resolved = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        resolved.push(match (p.trim(), i) {
            ("auto", 0) => features.to_string(),
            ("auto", i) if i == last => classes.to_string(),
            ("auto", _) => {
                return Err(format!(
                    "--layers {given}: `auto` stands for the data's widths, so only the first and the last width may be auto"
                ))
            }
            (p, _) => p.to_string(),
        });
    }
    let w = parse_widths(&resolved.join("-")).map_err(|e| format!("--layers {given}: {e}"))?;
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
        dropout: a.dropout,
        task: TaskKind::Classify,
        loss: LossKind::Mse,
        ..run_config(&a)
    };
    // Everything the arguments decide is checked before any data is read.
    cfg.validate().map_err(|e| e.to_string())?;
    check_run_args(&a, &cfg)?;
    train::check_memory(&cfg).map_err(|e| e.to_string())?;
    a.table.check()?;
    let table = match &table_file {
        Some(file) => {
            let t = load_table(file, &a.table)?;
            cfg.widths = table_widths(
                a.arch.layers.as_deref(),
                a.table.hidden.as_deref(),
                t.features,
                t.names.len(),
            )?;
            cfg.task = t.task;
            cfg.loss = a.table.loss.unwrap_or_default();
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

    let table_task = table.as_ref().map(|t| {
        (
            t.task,
            t.feature_names.clone(),
            t.target_names.clone(),
            t.names.clone(),
        )
    });
    if table_task
        .as_ref()
        .is_some_and(|t| t.0 == TaskKind::Reconstruct)
        && cfg.val_fraction == 0.0
    {
        return Err(
            "--task reconstruct chooses its anomaly threshold on validation data: give a --val-fraction above 0"
                .into(),
        );
    }
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
    // A data file's features are scaled for training, by a scaler fitted on
    // the training split alone; the exported model takes raw features (the
    // scaling folded into its first layer), so the test set, the int8
    // calibration data and the validation rows the threshold is chosen on
    // stay raw.
    let val_raw = val_set.clone();
    let (train_set, val_set, info) = match table_task {
        Some((task, features, targets, outputs)) => {
            let kind = a.table.scale.unwrap_or_default();
            let scaler = Scaler::fit(kind, &train_set);
            eprintln!(
                "scaling: {kind}, fitted on the {} training samples (kept in the exported models, which take raw features: folded into the f32 model's first layer, the int8 model's input step)",
                train_set.len()
            );
            let both = task == TaskKind::Reconstruct;
            // A regression's targets are standardized too (unless --scale
            // none), and given back in their units by the exported model.
            let target_scaler = (task == TaskKind::Regress && kind != ScaleKind::None).then(|| {
                Scaler::fit_rows(
                    ScaleKind::Standard,
                    train_set.targets(),
                    train_set.target_len(),
                )
            });
            let scale_targets = |mut d: TensorDataset| {
                if let Some(s) = &target_scaler {
                    s.apply(d.targets_mut());
                }
                d
            };
            let info = ModelInfo {
                targets,
                target_scaler: target_scaler.clone(),
                task,
                features,
                outputs,
                threshold: None,
                quantile: both.then(|| a.table.quantile.unwrap_or(0.99)),
                scaler: (kind != ScaleKind::None).then(|| scaler.clone()),
            };
            let v = val_set.map(|v| scale_targets(scaler.transform(v, both)));
            let t = scale_targets(scaler.transform(train_set, both));
            (t, v, Some(info))
        }
        None => (train_set, val_set, None),
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
                    info: info.as_ref(),
                    val_raw: val_raw.as_ref(),
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
        info: info.as_ref(),
        val_raw: val_raw.as_ref(),
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
    /// A data file's model: its task, names and scaling.
    info: Option<&'a ModelInfo>,
    /// The validation rows, raw (an autoencoder's threshold is chosen on them).
    val_raw: Option<&'a TensorDataset>,
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
        let outcome = train::train_with_info(
            device,
            cfg,
            train_set,
            val_set.as_ref(),
            augment,
            ckpt,
            self.info
                .map_or(serde_json::Value::Null, |i| json_of(i).unwrap_or_default()),
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
        let mut info = self.info.cloned();

        // Report on the test set and export, through the deployment kernels.
        let deployed = match &info {
            Some(i) => folded(Some(i), &params, &cfg.widths)?,
            None => params.clone(),
        };
        let f32_bytes =
            f32_file(&cfg.widths, cfg.activation, &deployed).map_err(|e| e.to_string())?;
        let idx_train;
        let calib = match self.calib {
            Some(c) => c,
            None => {
                idx_train = load_quiet(self.data, Split::Train)?;
                &idx_train
            }
        };
        // A scaled data file's int8 file standardizes raw features itself
        // (its input step), over the layers trained on standardized ones.
        let int8_bytes = match info.as_ref().and_then(|i| Some((i, i.input_step()?))) {
            Some((i, step)) => {
                let layers = cfg.widths.len().saturating_sub(1);
                let p = i.fold_outputs(&params, layers).map_err(|e| e.to_string())?;
                let standardized =
                    f32_file(&cfg.widths, cfg.activation, &p).map_err(|e| e.to_string())?;
                int8_file_with_step(&standardized, step, calib, 1000)
            }
            None => int8_file(&f32_bytes, calib, 1000),
        }
        .map_err(|e| e.to_string())?;
        let f32_model = Model::parse(f32_bytes.bytes()).map_err(|e| e.to_string())?;
        let int8_model = Model::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?;
        let out = self.out;
        let mut text = match cfg.task {
            TaskKind::Classify => {
                let (acc32, preds) = evaluate_file(&f32_model, test).map_err(|e| e.to_string())?;
                let (acc8, _) = evaluate_file(&int8_model, test).map_err(|e| e.to_string())?;
                let mut text = report::classification_report(test.labels(), &preds, self.names);
                text.push_str(&format!(
                    "\nint8 accuracy (host, deployment kernels): {acc8:.4} ({:+.2} points vs f32 {acc32:.4})\n",
                    100.0 * (acc8 - acc32),
                ));
                text
            }
            TaskKind::Reconstruct => {
                let i = info
                    .as_mut()
                    .ok_or("an autoencoder without its model information")?;
                let val = self
                    .val_raw
                    .ok_or("--task reconstruct needs a validation split")?;
                let score = |m: &Model<'_>, d: &TensorDataset| -> Res<Vec<f32>> {
                    Ok(i.scores(d.features(), &outputs_of(m, d.features())?))
                };
                let q = i.quantile.unwrap_or(0.99);
                let vs = score(&f32_model, val)?;
                let t = train::quantile(&vs, q).ok_or("no validation scores")?;
                let (s32, s8) = (score(&f32_model, test)?, score(&int8_model, test)?);
                i.threshold = Some(t);
                let mean = |s: &[f32]| {
                    s.iter().map(|&v| f64::from(v)).sum::<f64>() / s.len().max(1) as f64
                };
                let above = s32.iter().filter(|&&s| s > t).count();
                format!(
                    "anomaly score: a row's mean squared reconstruction error, in the scaled feature space\n\
                     threshold: {t:.6} (the {q} quantile of {} validation scores)\n\
                     test set ({} samples): mean score {:.6} (f32), {:.6} (int8); {above} above the threshold ({:.1}%)\n",
                    vs.len(),
                    test.len(),
                    mean(&s32),
                    mean(&s8),
                    100.0 * above as f64 / test.len().max(1) as f64
                )
            }
            TaskKind::Regress => {
                let figures = |m: &Model<'_>| {
                    let p = outputs_of(m, test.features())?;
                    eval::regression(p, test.targets(), test.target_len())
                        .map_err(|e| e.to_string())
                };
                let (r32, r8) = (figures(&f32_model)?, figures(&int8_model)?);
                report::plot_predictions(
                    &out.join("predictions.svg"),
                    &r32.predictions,
                    test.targets(),
                    self.names,
                )
                .map_err(|e| e.to_string())?;
                format!(
                    "test set ({} samples), f32 model (host, deployment kernels):\n{}\nint8 model:\n{}",
                    test.len(),
                    r32.report(self.names),
                    r8.report(self.names)
                )
            }
        };
        text.push_str(&format!(
            "training time: {:.1}s\n",
            started.elapsed().as_secs_f32()
        ));
        println!("\n{text}");
        write_atomic(&out.join("report.txt"), text.as_bytes()).map_err(|e| e.to_string())?;
        write_atomic(&out.join("model.emb"), f32_bytes.bytes()).map_err(|e| e.to_string())?;
        write_atomic(&out.join("model-int8.emb"), int8_bytes.bytes()).map_err(|e| e.to_string())?;
        save_safetensors(
            &out.join("model.safetensors"),
            &cfg.widths,
            cfg.activation,
            &params,
            info.as_ref(),
        )?;
        // The checkpoint keeps what the run found after training (an
        // autoencoder's threshold) with the rest of the model's information.
        if let (Some(i), Some(path)) = (&info, &ckpt.path) {
            let mut c = Checkpoint::load(path).map_err(|e| e.to_string())?;
            c.meta.model = json_of(i)?;
            c.save(path).map_err(|e| e.to_string())?;
        }
        eprintln!(
            "wrote {}: metrics.csv, curves.svg,{} checkpoint.safetensors, model.safetensors, model.emb ({} bytes), model-int8.emb ({} bytes), report.txt",
            out.display(),
            if cfg.task == TaskKind::Regress {
                " predictions.svg,"
            } else {
                ""
            },
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
    report::plot_curves(&out.join("curves.svg"), history).map_err(|e| e.to_string())
}

/// A weight file's outputs on rows of features ([`outputs_file`]).
fn outputs_of(model: &Model<'_>, features: &[f32]) -> Res<Vec<f32>> {
    outputs_file(model, features).map_err(|e| e.to_string())
}

/// A data file's model information as JSON.
fn json_of(info: &ModelInfo) -> Res<serde_json::Value> {
    serde_json::to_value(info).map_err(|e| e.to_string())
}

/// Writes a state_dict with the MLP's architecture and, for a data file's
/// model, its information ([`ModelInfo::KEY`]) in the metadata. The
/// parameters are the trained ones (a scaling is not folded in: the file
/// is for PyTorch and for training on, behind the same scaling).
fn save_safetensors(
    path: &Path,
    widths: &[usize],
    act: ActivationKind,
    params: &[state_dict::NamedTensor],
    info: Option<&ModelInfo>,
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
    if let Some(i) = info {
        md.insert(ModelInfo::KEY.into(), json_of(i)?.to_string());
    }
    let bytes = state_dict::to_bytes(params, Some(md)).map_err(|e| e.to_string())?;
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
        match Model::parse(b.bytes()) {
            Err(FormatError::GraphFile) => GraphModel::parse(b.bytes()).map(|_| ()),
            r => r.map(|_| ()),
        }
        .map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(b);
    }
    if let Ok(c) = Checkpoint::load(path) {
        if m.names.names.is_some() {
            return Err(not_a_state_dict());
        }
        let (widths, act) = mlp_of(path, &c)?;
        let info = info_of(path, &c.meta.model)?;
        return f32_file(widths, act, &folded(info.as_ref(), &c.params, widths)?)
            .map_err(|e| e.to_string());
    }
    // A safetensors state_dict: the architecture comes from --layers or the file's metadata.
    let (widths, act) = arch_of(path, &raw, &m.arch)?;
    let params = read_state_dict(path, &raw, &widths, act, &m.names)?;
    let info = safetensors_info(path, &raw)?;
    f32_file(&widths, act, &folded(info.as_ref(), &params, &widths)?).map_err(|e| e.to_string())
}

/// A data file's model information, as a checkpoint stores it (`null`:
/// none).
fn info_of(path: &Path, v: &serde_json::Value) -> Res<Option<ModelInfo>> {
    if v.is_null() {
        return Ok(None);
    }
    serde_json::from_value(v.clone())
        .map(Some)
        .map_err(|e| format!("{}: its model information: {e}", path.display()))
}

/// A safetensors file's model information (its `ember.model` metadata).
fn safetensors_info(path: &Path, raw: &[u8]) -> Res<Option<ModelInfo>> {
    let Ok((_, md)) = safetensors::SafeTensors::read_metadata(raw) else {
        return Ok(None);
    };
    match md.metadata().as_ref().and_then(|m| m.get(ModelInfo::KEY)) {
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("{}: its {}: {e}", path.display(), ModelInfo::KEY)),
        None => Ok(None),
    }
}

/// An MLP's parameters as its `.emb` file holds them: a data file's
/// scaling folded into its first (and a target scaling into its last)
/// layer, so that the model takes raw features.
fn folded(
    info: Option<&ModelInfo>,
    params: &[state_dict::NamedTensor],
    widths: &[usize],
) -> Res<Vec<state_dict::NamedTensor>> {
    match info {
        Some(i) => i
            .fold(params, widths.len().saturating_sub(1))
            .map_err(|e| e.to_string()),
        None => Ok(params.to_vec()),
    }
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

/// A model file's data-file information: a checkpoint's or a safetensors
/// file's (an `.emb` file holds none).
fn model_info_of(path: &Path) -> Res<Option<ModelInfo>> {
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if raw.starts_with(b"EMBR") {
        return Ok(None);
    }
    if let Ok(c) = Checkpoint::load(path) {
        return info_of(path, &c.meta.model);
    }
    safetensors_info(path, &raw)
}

/// The model's feature columns in `table`, by name, or an error naming
/// the file's columns and the model's.
fn feature_columns(info: &ModelInfo, table: &Table) -> Res<Vec<Column>> {
    let missing: Vec<&str> = info
        .features
        .iter()
        .filter(|f| table.resolve(&Column::name(f.as_str())).is_err())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{}: its columns ({}) lack the model's feature(s) {} (the model takes {})",
            table.path().display(),
            table.column_names().join(", "),
            missing.join(", "),
            info.features.join(", ")
        ));
    }
    Ok(info
        .features
        .iter()
        .map(|f| Column::name(f.as_str()))
        .collect())
}

/// A data file read for a model: `--data FILE`, or CSV text on stdin.
fn read_rows(file: Option<&Path>) -> Res<Table> {
    match file {
        Some(f) => read_table(f, &ReadOptions::new()).map_err(|e| e.to_string()),
        None => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .map_err(|e| format!("stdin: {e}"))?;
            parse_csv_table(Path::new("<stdin>"), &bytes, &CsvFormat::default())
                .map_err(|e| e.to_string())
        }
    }
}

/// `table`'s rows as the model's data set, with their labels or targets
/// ([`ModelInfo::rows`]), the model's columns checked first.
fn labelled_rows(info: &ModelInfo, table: &Table) -> Res<TensorDataset> {
    feature_columns(info, table)?;
    info.rows(table).map_err(|e| e.to_string())
}

/// `ember eval --model M --data FILE` for a model of a data file: the
/// task's figures on the file's rows (raw features, as the model takes them).
fn eval_table(m: &ModelArgs, info: &ModelInfo, file: &Path) -> Res {
    let bytes = model_bytes(m)?;
    let model = Model::parse(bytes.bytes()).map_err(|e| e.to_string())?;
    let data = labelled_rows(info, &read_rows(Some(file))?)?;
    check_inputs(&model, &data)?;
    println!(
        "{} model ({}, {} features), {} rows of {}\n",
        if model.is_int8() { "int8" } else { "f32" },
        info.task,
        info.features.len(),
        data.len(),
        file.display()
    );
    let outputs = outputs_of(&model, data.features())?;
    let text = match info.task {
        TaskKind::Classify => {
            let (_, preds) = evaluate_file(&model, &data).map_err(|e| e.to_string())?;
            report::classification_report(data.labels(), &preds, &info.outputs)
        }
        TaskKind::Regress => eval::regression(outputs, data.targets(), data.target_len())
            .map_err(|e| e.to_string())?
            .report(&info.targets),
        TaskKind::Reconstruct => {
            let scores = info.scores(data.features(), &outputs);
            let mean =
                scores.iter().map(|&s| f64::from(s)).sum::<f64>() / scores.len().max(1) as f64;
            match info.threshold {
                Some(t) => {
                    let above = scores.iter().filter(|&&s| s > t).count();
                    format!(
                        "mean anomaly score {mean:.6}; {above} of {} rows above the threshold {t:.6}\n",
                        scores.len()
                    )
                }
                None => format!("mean anomaly score {mean:.6}\n"),
            }
        }
    };
    print!("{text}");
    Ok(())
}

/// `ember predict --model M [--data FILE]` for a model of a data file: CSV
/// rows in (the file, or stdin), CSV out on stdout: the class and each
/// class's probability, the predicted values, or the anomaly score and
/// the verdict.
fn predict_rows(m: &ModelArgs, info: &ModelInfo) -> Res {
    let bytes = model_bytes(m)?;
    let model = Model::parse(bytes.bytes()).map_err(|e| e.to_string())?;
    let table = read_rows(m.data.data.as_deref())?;
    let cols = feature_columns(info, &table)?;
    let idx: Vec<usize> = cols
        .iter()
        .map(|c| table.resolve(c))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let x = table.features(&idx).map_err(|e| e.to_string())?;
    if model.input_features() != idx.len() {
        return Err(format!(
            "the model takes {} inputs, its information names {} features",
            model.input_features(),
            idx.len()
        ));
    }
    let outputs = outputs_of(&model, &x)?;
    let width = model.output_features().max(1);
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| e.to_string();
    match info.task {
        TaskKind::Classify => {
            let mut head = vec!["class".to_string()];
            head.extend(info.outputs.iter().map(|n| format!("p_{n}")));
            w.write_record(&head).map_err(csv_err)?;
            for logits in outputs.chunks(width) {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
                let sum: f32 = exps.iter().sum();
                let class = ember_nn_core::deploy::argmax(logits);
                let mut rec = vec![info
                    .outputs
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string())];
                rec.extend(exps.iter().map(|e| format!("{:.6}", e / sum)));
                w.write_record(&rec).map_err(csv_err)?;
            }
        }
        TaskKind::Regress => {
            w.write_record(&info.targets).map_err(csv_err)?;
            for row in outputs.chunks(width) {
                w.write_record(row.iter().map(|v| v.to_string()))
                    .map_err(csv_err)?;
            }
        }
        TaskKind::Reconstruct => {
            w.write_record(["score", "anomaly"]).map_err(csv_err)?;
            for s in info.scores(&x, &outputs) {
                let verdict = info
                    .threshold
                    .map_or(String::new(), |t| (s > t).to_string());
                w.write_record([s.to_string(), verdict]).map_err(csv_err)?;
            }
        }
    }
    let text = w.into_inner().map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut std::io::stdout(), &text).map_err(|e| format!("stdout: {e}"))
}

/// The settings of `train` that every model shares (optimizer, schedule,
/// epochs, batch, seed, validation, ...), the rest at their defaults.
fn run_config(a: &TrainArgs) -> TrainConfig {
    TrainConfig {
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
        ..TrainConfig::default()
    }
}

/// The checks of `train`'s options that the settings alone decide (device,
/// `--eval-test`, `--limit`, `--threads`, `--resume`), shared by every
/// model `train` builds.
fn check_run_args(a: &TrainArgs, cfg: &TrainConfig) -> Res {
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
    Ok(())
}

fn cmd_eval(m: &ModelArgs) -> Res {
    if let Some(c) = cnn_cli::preset_checkpoint(&m.model) {
        return cnn_cli::eval(m, &c);
    }
    if let Some(info) = model_info_of(&m.model)? {
        return match m.data.data.as_deref().filter(|p| p.is_file()) {
            Some(file) => eval_table(m, &info, file),
            None => Err(format!(
                "{}: a model of a data file: give the rows to evaluate with --data FILE",
                m.model.display()
            )),
        };
    }
    if m.data.data.as_deref().is_some_and(|p| p.is_file()) {
        return Err(format!(
            "{}: this model holds no data-file information (column names, scaling): give the checkpoint or model.safetensors `ember train --data` wrote",
            m.model.display()
        ));
    }
    let bytes = model_bytes(m)?;
    if let Ok(g) = GraphModel::parse(bytes.bytes()) {
        // A CNN's graph file.
        let test = load(&m.data, Split::Test)?;
        let preds = cnn_cli::graph_predictions(bytes.bytes(), &test)?;
        println!(
            "{} graph model, {} nodes, {} parameter bytes\n",
            if g.is_int8() { "int8" } else { "f32" },
            g.node_count(),
            g.parameter_bytes()
        );
        print!(
            "{}",
            report::classification_report(test.labels(), &preds, &class_names())
        );
        return Ok(());
    }
    let model = Model::parse(bytes.bytes()).map_err(|e| e.to_string())?;
    let test = load(&m.data, Split::Test)?;
    check_inputs(&model, &test)?;
    let (_, preds) = evaluate_file(&model, &test).map_err(|e| e.to_string())?;
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

fn cmd_summary(s: &SummaryArgs) -> Res {
    let a = &s.arch;
    let widths = match &s.data {
        Some(file) => {
            let t = load_table(file, &s.table)?;
            table_widths(
                a.layers.as_deref(),
                s.table.hidden.as_deref(),
                t.features,
                t.names.len(),
            )?
        }
        None if s.table.any() => {
            return Err(
                "--hidden, --target, --task, ... take their widths from a data file: give --data FILE (or --layers)"
                    .into(),
            )
        }
        None => parse_widths(a.layers()).map_err(|e| e.to_string())?,
    };
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
    let f32_bytes = f32_file(widths, act, params).map_err(|e| e.to_string())?;
    let calib = load_quiet(data, Split::Train)?;
    let int8_bytes = int8_file(&f32_bytes, &calib, 1000).map_err(|e| e.to_string())?;
    let f = Model::parse(f32_bytes.bytes()).map_err(|e| e.to_string())?;
    let q = Model::parse(int8_bytes.bytes()).map_err(|e| e.to_string())?;
    write_deployables(out, &f32_bytes, &int8_bytes).map_err(|e| e.to_string())?;
    save_safetensors(&out.join("model.safetensors"), widths, act, params, None)?;
    let test = load_quiet(data, Split::Test)?;
    if check_inputs(&f, &test).is_ok() {
        let (a32, _) = evaluate_file(&f, &test).map_err(|e| e.to_string())?;
        let (a8, _) = evaluate_file(&q, &test).map_err(|e| e.to_string())?;
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
        return cnn_cli::export(checkpoint, &c, out, data);
    }
    let (widths, act) = mlp_of(checkpoint, &c)?;
    let info = info_of(checkpoint, &c.meta.model)?;
    if info.is_some() {
        return Err(format!(
            "{}: a model of a data file: `ember train` exported it already (model.emb, model-int8.emb), calibrated on its data",
            checkpoint.display()
        ));
    }
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
    if cnn_cli::preset_checkpoint(&m.model).is_some() {
        return Err(format!(
            "{}: a checkpoint of the `cnn` preset: `ember predict` runs .emb files (`ember export --checkpoint` writes its model.emb); `ember eval --model` evaluates it",
            m.model.display()
        ));
    }
    if image_path.is_none() && index.is_none() {
        if let Some(info) = model_info_of(&m.model)? {
            return predict_rows(m, &info);
        }
    }
    let bytes = model_bytes(m)?;
    // A graph file (a CNN's) or a chain of dense layers.
    let graph = GraphModel::parse(bytes.bytes()).ok();
    let model = match graph {
        Some(_) => None,
        None => Some(Model::parse(bytes.bytes()).map_err(|e| e.to_string())?),
    };
    let (n_in, n_out) = match (&graph, &model) {
        (Some(g), _) => (g.input_features(), g.output_features()),
        (_, Some(m)) => (m.input_features(), m.output_features()),
        (None, None) => return Err("not an Ember model".into()),
    };
    let side = (n_in as f64).sqrt() as usize;
    let (input, truth) = match (image_path, index) {
        (Some(p), None) => {
            if side * side != n_in {
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
    if input.len() != n_in {
        return Err(format!(
            "the model takes {n_in} inputs, the input has {}",
            input.len()
        ));
    }
    let mut logits = vec![0.0f32; n_out];
    if let Some(g) = graph.filter(|g| g.is_int8()) {
        let mut s = vec![0i8; g.scratch_len()];
        let mut q = vec![0i8; n_in];
        g.infer_i8(&input, &mut q, &mut s, &mut logits)
            .map_err(|e| e.to_string())?;
    } else if let Some(g) = &graph {
        let mut s = vec![0.0f32; g.scratch_len()];
        logits.copy_from_slice(g.infer_f32(&input, &mut s).map_err(|e| e.to_string())?);
    } else if let Some(model) = model.filter(|m| m.is_int8()) {
        let mut s = vec![0i8; model.scratch_len()];
        let mut q = vec![0i8; model.input_features()];
        model
            .infer_i8(&input, &mut q, &mut s, &mut logits)
            .map_err(|e| e.to_string())?;
    } else if let Some(model) = model {
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
