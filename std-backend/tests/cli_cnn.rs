//! `ember train|summary|eval|export --model cnn`: the convolutional preset
//! end to end on the built-in subset.

use std::process::Command;

/// The built-in subset's files, named as a user would name a data directory.
const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");

fn ember(args: &[&str]) -> (bool, Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), out.status.code(), text)
}

/// The `accuracy: 0.xxxx` of a report.
fn accuracy(text: &str) -> f32 {
    text.lines()
        .find_map(|l| l.strip_prefix("accuracy: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {text}"))
}

#[test]
fn cnn_trains_evaluates_summarises_and_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let (ok, _, text) = ember(&[
        "train",
        "--model",
        "cnn",
        "--epochs",
        "1",
        "--limit",
        "2000",
        "--val-fraction",
        "0",
        "--eval-test",
        // A constant rate, so that the resumed epoch below learns too.
        "--scheduler",
        "none",
        "--data",
        SUBSET,
        "--out",
        run_s,
        "--threads",
        "2",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("model cnn (20490 parameters)"), "{text}");
    for f in [
        "metrics.csv",
        "curves.svg",
        "checkpoint.safetensors",
        "model.safetensors",
        "model.emb",
        "model-int8.emb",
        "report.txt",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    // The deployable file, run through the deployment kernels on every
    // test image, classifies each as the trained model does.
    let line = text
        .lines()
        .find(|l| l.starts_with("model.emb (f32 graph): test accuracy "))
        .unwrap_or_else(|| panic!("no file report in {text}"));
    let agree = line.rsplit("class on ").next().unwrap();
    let (same, all) = agree.split_once('/').unwrap();
    let all = all.split_whitespace().next().unwrap();
    assert_eq!(same, all, "{line}");
    // The int8 file: close to the f32 file's accuracy, and mostly its classes.
    let f32_acc: f32 = line
        .strip_prefix("model.emb (f32 graph): test accuracy ")
        .and_then(|l| l.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("model-int8.emb (int8 graph): test accuracy "))
        .unwrap_or_else(|| panic!("no int8 report in {text}"));
    let int8_acc: f32 = line
        .strip_prefix("model-int8.emb (int8 graph): test accuracy ")
        .and_then(|l| l.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((int8_acc - f32_acc).abs() <= 0.02, "{line}");
    // One epoch on 2,000 images lifts the test accuracy from chance (0.1)
    // well above it, and the training loss below chance's ln 10.
    let trained = accuracy(&text);
    assert!(trained > 0.6, "{text}");
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let epoch1 = csv.lines().nth(1).unwrap();
    let loss: f32 = epoch1.split(',').nth(1).unwrap().parse().unwrap();
    assert!(loss < 2.0, "{csv}");
    let val_acc: f32 = epoch1.split(',').nth(4).unwrap().parse().unwrap();
    assert!((val_acc - trained).abs() < 2e-3, "{val_acc} vs {trained}");

    // The checkpoint evaluates to the same accuracy.
    let ckpt = run.join("checkpoint.safetensors");
    let ckpt_s = ckpt.to_str().unwrap();
    let (ok, _, text) = ember(&["eval", "--model", ckpt_s, "--data", SUBSET]);
    assert!(ok && text.starts_with("cnn preset"), "{text}");
    assert!((accuracy(&text) - trained).abs() < 1e-4, "{text}");

    // A resumed second epoch: the accuracy keeps rising.
    let (ok, _, text) = ember(&[
        "train",
        "--model",
        "cnn",
        "--epochs",
        "2",
        "--limit",
        "2000",
        "--val-fraction",
        "0",
        "--eval-test",
        // A constant rate, so that the resumed epoch below learns too.
        "--scheduler",
        "none",
        "--data",
        SUBSET,
        "--out",
        run_s,
        "--threads",
        "2",
        "--resume",
        ckpt_s,
    ]);
    assert!(ok, "{text}");
    assert!(accuracy(&text) > trained, "{trained} -> {text}");

    // Export: the f32 graph file, checked on the test set; predict runs it.
    let out = dir.path().join("export");
    let out_s = out.to_str().unwrap();
    let (ok, _, text) = ember(&[
        "export",
        "--checkpoint",
        ckpt_s,
        "--out",
        out_s,
        "--data",
        SUBSET,
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("model.emb (f32 graph): test accuracy"),
        "{text}"
    );
    let emb = out.join("model.emb");
    let (ok, _, text) = ember(&[
        "predict",
        "--model",
        emb.to_str().unwrap(),
        "--index",
        "0",
        "--data",
        SUBSET,
    ]);
    assert!(ok && text.starts_with("1. "), "{text}");

    // Predict on the checkpoint: one line that says what to use instead.
    let (ok, code, text) = ember(&["predict", "--model", ckpt_s, "--index", "0"]);
    assert!(!ok && code == Some(1), "{text}");
    assert!(
        text.trim().starts_with("error: ") && text.contains("`ember eval --model`"),
        "{text}"
    );

    let (ok, _, text) = ember(&["summary", "--model", "cnn"]);
    assert!(ok, "{text}");
    for s in [
        "Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))",
        "MaxPool2d(",
        "[1, 32, 7, 7]",
        "[1, 10]",
        "Total params: 20,490",
        "Training memory (Adam)",
    ] {
        assert!(text.contains(s), "{s} in {text}");
    }
}

#[test]
fn cnn_refuses_what_does_not_apply() {
    for (args, says) in [
        (&["--model", "resnet"][..], "unknown model preset `resnet`"),
        (
            &["--model", "cnn", "--layers", "784-10"][..],
            "are for MLPs",
        ),
        (&["--model", "cnn", "--dropout", "0.5"][..], "are for MLPs"),
    ] {
        let (ok, code, text) = ember(&[&["train"][..], args].concat());
        assert!(!ok && code == Some(1), "{text}");
        assert!(text.contains(says) && text.lines().count() == 1, "{text}");
    }
    let (ok, _, text) = ember(&["summary", "--model", "mlp"]);
    assert!(!ok && text.contains("unknown model preset `mlp`"), "{text}");
}
