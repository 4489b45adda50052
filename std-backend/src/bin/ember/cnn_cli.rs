//! `ember train|summary|eval --model cnn`: the command line of the
//! convolutional preset ([`ember_nn_std::cnn`]), apart from the MLP's.

use super::{class_names, load, write_reports, Bar, ModelArgs, Res, TrainArgs};
use ember_nn_core::deploy::{self, GraphModel};
use ember_nn_std::checkpoint::Checkpoint;
use ember_nn_std::cnn;
use ember_nn_std::data::transform::{
    Compose, GaussianNoise, RandomHorizontalFlip, RandomRotation, RandomShift,
};
use ember_nn_std::data::{Dataset, FashionMnist, Split, TensorDataset};
use ember_nn_std::train::{self, Checkpointing};
use ember_nn_std::{atomic::write_atomic, report, state_dict, Parallel};
use std::path::Path;

/// Training rows the int8 file is calibrated on.
const CALIBRATION: usize = 1000;

/// Batch of `eval`.
const EVAL_BATCH: usize = 256;

fn check_preset(name: &str) -> Res {
    if cnn::PRESETS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown model preset `{name}` (presets: {})",
            cnn::PRESETS.join(", ")
        ))
    }
}

/// `ember summary --model cnn`.
pub(crate) fn summary(preset: &str) -> Res {
    check_preset(preset)?;
    print!("{}", cnn::summary_text(1).map_err(|e| e.to_string())?);
    Ok(())
}

/// The checkpoint at `path`, if it is one of a preset's run.
pub(crate) fn preset_checkpoint(path: &Path) -> Option<Checkpoint> {
    Checkpoint::load(path).ok().filter(cnn::is_preset)
}

/// `ember eval --model CHECKPOINT` of a preset's run.
pub(crate) fn eval(m: &ModelArgs, c: &Checkpoint) -> Res {
    if m.arch.layers.is_some() || m.arch.activation.is_some() || m.names.names.is_some() {
        return Err(format!(
            "{}: a checkpoint of the cnn preset; --layers, --activation and --names are for MLPs",
            m.model.display()
        ));
    }
    let test = load(&m.data, Split::Test)?;
    let device = Parallel::try_new(0).map_err(|e| e.to_string())?;
    let e = cnn::evaluate_checkpoint(&device, &m.model, c, &test, EVAL_BATCH)
        .map_err(|e| e.to_string())?;
    let preds = e
        .classification
        .map(|c| c.predictions)
        .ok_or("the cnn preset's evaluation classified nothing")?;
    println!(
        "cnn preset (checkpoint, epoch {}), {} parameters, test loss {:.4}\n",
        c.meta.epoch,
        cnn::PARAMS,
        e.loss
    );
    print!(
        "{}",
        report::classification_report(test.labels(), &preds, &class_names())
    );
    Ok(())
}

/// `ember train --model cnn`: the MLP's options that apply (optimizer,
/// schedule, epochs, batch, seed, validation, checkpoints, augmentation),
/// on an IDX data set of 28×28 images.
pub(crate) fn train(a: &TrainArgs) -> Res {
    let preset = a.model.as_deref().unwrap_or(cnn::PRESET);
    check_preset(preset)?;
    if a.arch.layers.is_some() || a.arch.activation.is_some() || a.dropout != 0.0 {
        return Err(format!(
            "--layers, --activation and --dropout are for MLPs; --model {preset} is fixed"
        ));
    }
    if a.table.any() || a.data.data.as_deref().is_some_and(Path::is_file) {
        return Err(format!(
            "--model {preset} trains on 28×28 images: --data takes an IDX directory, not a data file"
        ));
    }
    let cfg = super::run_config(a);
    cfg.validate().map_err(|e| e.to_string())?;
    super::check_run_args(a, &cfg)?;
    if let Some(dir) = &a.data.data {
        FashionMnist::check_dir(dir, &[Split::Train, Split::Test]).map_err(|e| e.to_string())?;
    }
    let mut train_all = load(&a.data, Split::Train)?;
    let test = load(&a.data, Split::Test)?;
    if let Some(n) = a.limit {
        if n < train_all.len() {
            train_all = train_all.split_at(n).0;
        }
    }
    let (train_set, val_set) = train::split_validation(train_all, cfg.val_fraction);
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
    if a.device == "cuda" {
        eprintln!("--device cuda: the cnn preset trains on the CPU for now");
    }
    let device = Parallel::try_new(a.threads).map_err(|e| e.to_string())?;
    eprintln!(
        "training on {} with {} thread(s)",
        ember_nn_core::backend::Device::name(&device),
        device.threads()
    );
    eprintln!(
        "model {preset} ({} parameters), {} optimizer: {} training, {} validation samples",
        cnn::PARAMS,
        cfg.optimizer,
        train_set.len(),
        val_set.as_ref().map_or(0, |v| v.len())
    );
    let started = std::time::Instant::now();
    let trained = cnn::train(
        &device,
        &cfg,
        train_set,
        val_set.as_ref(),
        Some(test.clone()),
        augment,
        &ckpt,
        &mut Bar { bar: None },
    )
    .map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f32();
    if trained.stopped_early {
        eprintln!(
            "early stopping: no better validation loss for {} epochs",
            cfg.patience.unwrap_or(0)
        );
    }
    write_reports(&a.out, &trained.history)?;
    let preds = trained
        .test
        .as_ref()
        .and_then(|e| e.classification.as_ref())
        .map(|c| c.predictions.clone())
        .ok_or("the test set was not evaluated")?;
    let mut text = report::classification_report(test.labels(), &preds, &class_names());
    text.push_str(&format!("training time: {secs:.1}s\n"));
    println!("\n{text}");
    let out = &a.out;
    write_atomic(&out.join("report.txt"), text.as_bytes()).map_err(|e| e.to_string())?;
    let params = trained.params().map_err(|e| e.to_string())?;
    let mut md = std::collections::HashMap::new();
    md.insert("ember.model".to_string(), preset.to_string());
    let bytes = state_dict::to_bytes(&params, Some(md)).map_err(|e| e.to_string())?;
    write_atomic(&out.join("model.safetensors"), &bytes).map_err(|e| e.to_string())?;
    let calib = train_calibration(&a.data)?;
    deploy_files(out, &params, &calib, &test, Some(&preds))?;
    eprintln!(
        "wrote {}: metrics.csv, curves.svg, checkpoint.safetensors, model.safetensors, model.emb, model-int8.emb, report.txt",
        out.display()
    );
    Ok(())
}

/// The first training rows, to calibrate the int8 file on.
fn train_calibration(data: &super::DataArgs) -> Res<TensorDataset> {
    let train = super::load_quiet(data, Split::Train)?;
    let n = train.len().min(CALIBRATION);
    Ok(train.split_at(n).0)
}

/// Writes the preset's f32 and int8 graph files (`model.emb`,
/// `model-int8.emb`) to `out`, after running each on every test image.
fn deploy_files(
    out: &Path,
    params: &[ember_nn_std::state_dict::NamedTensor],
    calib: &TensorDataset,
    test: &TensorDataset,
    trained: Option<&[usize]>,
) -> Res {
    let f32_file = cnn::f32_file(params).map_err(|e| e.to_string())?;
    let int8_file = ember_nn_std::export::int8_file(&f32_file, calib, CALIBRATION)
        .map_err(|e| e.to_string())?;
    let f32_preds = report_file("model.emb (f32 graph)", f32_file.bytes(), test, trained)?;
    report_file(
        "model-int8.emb (int8 graph)",
        int8_file.bytes(),
        test,
        Some(&f32_preds),
    )?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    write_atomic(&out.join("model.emb"), f32_file.bytes()).map_err(|e| e.to_string())?;
    write_atomic(&out.join("model-int8.emb"), int8_file.bytes()).map_err(|e| e.to_string())?;
    Ok(())
}

/// `ember export --checkpoint` of a preset's run: the f32 and int8 graph
/// files.
pub(crate) fn export(checkpoint: &Path, c: &Checkpoint, out: &Path, data: &super::DataArgs) -> Res {
    let calib = train_calibration(data)?;
    let test = super::load_quiet(data, Split::Test)?;
    deploy_files(out, &c.params, &calib, &test, None)
        .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    println!("wrote {}: model.emb, model-int8.emb", out.display());
    Ok(())
}

/// Runs a graph file on every test image (as a device would, through the
/// deployment kernels), prints its accuracy and, given another model's
/// predictions, on how many images the two agree; returns its predictions.
fn report_file(
    name: &str,
    bytes: &[u8],
    test: &TensorDataset,
    other: Option<&[usize]>,
) -> Res<Vec<usize>> {
    let preds = graph_predictions(bytes, test)?;
    let right = preds
        .iter()
        .zip(test.labels())
        .filter(|(p, l)| p == l)
        .count();
    let n = preds.len().max(1);
    print!("{name}: test accuracy {:.4}", right as f64 / n as f64);
    if let Some(t) = other {
        let same = preds.iter().zip(t).filter(|(a, b)| a == b).count();
        let whose = if name.contains("int8") {
            "the f32 file's"
        } else {
            "the trained model's"
        };
        print!(", {whose} class on {same}/{} test images", preds.len());
    }
    println!();
    Ok(preds)
}

/// The class a graph file gives each sample of `data`.
pub(crate) fn graph_predictions(bytes: &[u8], data: &TensorDataset) -> Res<Vec<usize>> {
    use rayon::prelude::*;
    let g = GraphModel::parse(bytes).map_err(|e| e.to_string())?;
    if data.feature_len() != g.input_features() {
        return Err(format!(
            "the model takes {} inputs, the data has {}",
            g.input_features(),
            data.feature_len()
        ));
    }
    let (scratch, q) = (g.scratch_len(), g.input_features());
    (0..data.len())
        .into_par_iter()
        .map_init(
            || (vec![0.0f32; scratch], vec![0i8; scratch], vec![0i8; q]),
            |(fs, qs, qin), i| {
                let s = data.get(i).ok_or("a sample outside the data")?;
                if g.is_int8() {
                    g.quantize_input(s.features, qin)
                        .map_err(|e| e.to_string())?;
                    let y = g.infer_q8(qin, qs).map_err(|e| e.to_string())?;
                    Ok(deploy::argmax_i8(y))
                } else {
                    let y = g.infer_f32(s.features, fs).map_err(|e| e.to_string())?;
                    Ok(deploy::argmax(y))
                }
            },
        )
        .collect()
}
