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

/// What the preset's export leaves out, for now.
const NO_INT8: &str = "int8 for convolutional models: not yet";

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
    let file = cnn::f32_file(&params).map_err(|e| e.to_string())?;
    write_atomic(&out.join("model.emb"), file.bytes()).map_err(|e| e.to_string())?;
    report_file(file.bytes(), &test, Some(&preds))?;
    eprintln!(
        "wrote {}: metrics.csv, curves.svg, checkpoint.safetensors, model.safetensors, model.emb, report.txt ({NO_INT8})",
        out.display()
    );
    Ok(())
}

/// `ember export --checkpoint` of a preset's run: the f32 graph file.
pub(crate) fn export(checkpoint: &Path, c: &Checkpoint, out: &Path, data: &super::DataArgs) -> Res {
    let file = cnn::f32_file(&c.params).map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    write_atomic(&out.join("model.emb"), file.bytes()).map_err(|e| e.to_string())?;
    let test = super::load_quiet(data, Split::Test)?;
    report_file(file.bytes(), &test, None)?;
    println!("wrote {}: model.emb ({NO_INT8})", out.display());
    Ok(())
}

/// Runs a graph file on every test image (as a device would, through the
/// deployment kernels) and prints its accuracy, and with the trained
/// model's predictions, on how many images the two agree.
fn report_file(bytes: &[u8], test: &TensorDataset, trained: Option<&[usize]>) -> Res {
    let preds = graph_predictions(bytes, test)?;
    let right = preds
        .iter()
        .zip(test.labels())
        .filter(|(p, l)| p == l)
        .count();
    let n = preds.len().max(1);
    print!(
        "model.emb (f32 graph): test accuracy {:.4}",
        right as f64 / n as f64
    );
    if let Some(t) = trained {
        let same = preds.iter().zip(t).filter(|(a, b)| a == b).count();
        print!(
            ", the trained model's class on {same}/{} test images",
            preds.len()
        );
    }
    println!();
    Ok(())
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
    (0..data.len())
        .into_par_iter()
        .map_init(
            || vec![0.0f32; g.scratch_len()],
            |scratch, i| {
                let s = data.get(i).ok_or("a sample outside the data")?;
                let y = g
                    .infer_f32(&s.features, scratch)
                    .map_err(|e| e.to_string())?;
                Ok(deploy::argmax(y))
            },
        )
        .collect()
}
