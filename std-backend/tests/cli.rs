//! The `ember` command line end to end, on the built-in data subset.

use std::path::Path;
use std::process::Command;

/// The built-in subset's files, named as a user would name a data directory.
const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");

fn ember(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn train_eval_predict_export_import_summary() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    // The data directory named: read from there, and said so.
    let (ok, text) = ember(&[
        "train",
        "--layers",
        "784-32-10",
        "--epochs",
        "2",
        "--limit",
        "600",
        "--data",
        SUBSET,
        "--out",
        run_s,
        "--threads",
        "2",
        "--augment",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("from ") && text.contains("fashion-mnist-subset"),
        "{text}"
    );
    assert!(
        text.contains("confusion matrix") && text.contains("int8 accuracy"),
        "{text}"
    );
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
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );

    let emb = run.join("model.emb");
    let (ok, text) = ember(&["eval", "--model", emb.to_str().unwrap(), "--data", SUBSET]);
    assert!(ok && text.contains("per class"), "{text}");
    let (ok, text) = ember(&[
        "eval",
        "--model",
        run.join("model-int8.emb").to_str().unwrap(),
        "--data",
        SUBSET,
    ]);
    assert!(ok && text.starts_with("int8 model"), "{text}");

    let (ok, text) = ember(&[
        "predict",
        "--model",
        emb.to_str().unwrap(),
        "--index",
        "3",
        "--data",
        SUBSET,
    ]);
    assert!(
        ok && text.contains("1. ") && text.contains("3. ") && text.contains("true class"),
        "{text}"
    );
    // An image file: write test sample 3 as PGM and classify it.
    let pgm = dir.path().join("x.pgm");
    let set = ember_nn_std::data::FashionMnist::builtin(ember_nn_std::data::Split::Test).unwrap();
    let s = ember_nn_std::data::Dataset::get(set.dataset(), 3).unwrap();
    let img = ember_nn_std::image::Grey {
        width: 28,
        height: 28,
        pixels: s.features.to_vec(),
    };
    std::fs::write(&pgm, ember_nn_std::image::write_pgm(&img)).unwrap();
    let (ok, text2) = ember(&[
        "predict",
        "--model",
        emb.to_str().unwrap(),
        pgm.to_str().unwrap(),
    ]);
    assert!(ok, "{text2}");
    assert_eq!(
        text.lines().next(),
        text2.lines().next(),
        "index and image disagree"
    );

    let exp = dir.path().join("exp");
    let ck = run.join("checkpoint.safetensors");
    let (ok, text) = ember(&[
        "export",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        exp.to_str().unwrap(),
        "--data",
        SUBSET,
    ]);
    assert!(ok && text.contains("test accuracy"), "{text}");
    for f in [
        "model.emb",
        "model-int8.emb",
        "model.rs",
        "model_int8.rs",
        "model_type.rs",
        "model.safetensors",
    ] {
        assert!(exp.join(f).is_file(), "missing {f}");
    }
    let net = std::fs::read_to_string(exp.join("model_type.rs")).unwrap();
    assert!(
        net.contains("pub type Net = (Linear<784, 32>, ReLU, Linear<32, 10>);"),
        "{net}"
    );
    let (ok, text) = ember(&[
        "import",
        "--safetensors",
        run.join("model.safetensors").to_str().unwrap(),
        "--layers",
        "784-32-10",
        "--out",
        dir.path().join("imp").to_str().unwrap(),
        "--data",
        SUBSET,
    ]);
    assert!(ok, "{text}");
    assert_eq!(
        std::fs::read(dir.path().join("imp/model.emb")).unwrap(),
        std::fs::read(&emb).unwrap()
    );

    // Wrong architecture and bad files are clear errors.
    let (ok, text) = ember(&[
        "import",
        "--safetensors",
        run.join("checkpoint.safetensors").to_str().unwrap(),
        "--layers",
        "784-64-10",
        "--out",
        dir.path().join("bad").to_str().unwrap(),
        "--data",
        SUBSET,
    ]);
    assert!(!ok && text.contains("error:"), "{text}");
    let junk = dir.path().join("junk.emb");
    std::fs::write(&junk, b"EMBR\x01\x00").unwrap();
    let (ok, text) = ember(&["eval", "--model", junk.to_str().unwrap(), "--data", SUBSET]);
    assert!(!ok && text.contains("junk.emb"), "{text}");

    // Without a usable GPU, --device cuda says so and trains on the CPU.
    let (ok, text) = ember(&[
        "train",
        "--device",
        "cuda",
        "--layers",
        "784-8-10",
        "--epochs",
        "1",
        "--limit",
        "200",
        "--data",
        SUBSET,
        "--out",
        dir.path().join("cuda").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("training on") && (text.contains("CPU instead") || text.contains("cuda:")),
        "{text}"
    );

    let (ok, text) = ember(&["summary", "--layers", "784-512-512-10"]);
    assert!(ok && text.contains("Total params: 669,706"), "{text}");
    assert!(Path::new(env!("CARGO_BIN_EXE_ember")).exists());
}

/// `--eval-test` puts the test set's accuracy in the validation columns each
/// epoch (what a time-to-accuracy figure reads); the last epoch's equals the
/// final report's. It refuses to run beside a validation split.
#[test]
fn eval_test_tracks_test_accuracy_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let common = [
        "train",
        "--layers",
        "784-16-10",
        "--epochs",
        "2",
        "--limit",
        "300",
        "--data",
        SUBSET,
        "--threads",
        "2",
        "--eval-test",
        "--out",
        run.to_str().unwrap(),
    ];
    let (ok, text) = ember(&common);
    assert!(
        !ok && text.contains("--eval-test needs --val-fraction 0"),
        "{text}"
    );
    let (ok, text) = ember(&[&common[..], &["--val-fraction", "0"]].concat());
    assert!(ok, "{text}");
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let last = csv.lines().last().unwrap();
    let val_acc: f32 = last.split(',').nth(4).unwrap().parse().unwrap();
    let reported = text
        .lines()
        .find_map(|l| l.strip_prefix("int8 accuracy"))
        .and_then(|l| l.split("vs f32 ").nth(1))
        .and_then(|v| v.trim_end_matches(')').parse::<f32>().ok())
        .unwrap_or_else(|| panic!("no f32 accuracy in {text}"));
    assert!((val_acc - reported).abs() < 2e-3, "{val_acc} vs {reported}");
}

#[test]
fn a_file_that_is_no_model_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"GGUF and other things, not a model at all").unwrap();
    let (ok, text) = ember(&["eval", "--model", path.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(text.contains("not an Ember model (bad magic)"), "{text}");
    // An .emb whose magic is right but whose bytes are not: the format's error.
    std::fs::write(&path, b"EMBR\x02\x00\x00\x01").unwrap();
    let (ok, text) = ember(&["eval", "--model", path.to_str().unwrap()]);
    assert!(!ok && text.contains("too short"), "{text}");
}

/// Bad arguments and bad input are one-line errors with exit status 1,
/// found before any data is read: a data directory that is not there, a
/// model larger than the machine, settings out of range.
#[test]
fn bad_arguments_fail_fast_with_one_line() {
    let one_line_error = |args: &[&str], expected: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("samples from"),
            "{args:?} loaded data: {stderr}"
        );
    };
    one_line_error(
        &["train", "--data", "/no/such/dir"],
        "/no/such/dir: no such directory",
    );
    let empty = tempfile::tempdir().unwrap();
    one_line_error(
        &["train", "--data", empty.path().to_str().unwrap()],
        "missing train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte",
    );
    one_line_error(
        &["eval", "--model", "x.emb", "--data", "/no/such/dir"],
        "x.emb",
    );
    one_line_error(
        &["train", "--layers", "784-100000000-10"],
        "this model (784-100000000-10) needs 2464.7 GiB for training at batch 64;",
    );
    one_line_error(
        &["train", "--layers", "784-100000000-10"],
        "GiB are available",
    );
    // Settings are checked before the data: even with a data directory
    // that is not there, the setting is what is reported.
    for (args, expected) in [
        (&["--batch", "0"][..], "batch and epochs must be positive"),
        (&["--epochs", "0"], "batch and epochs must be positive"),
        (&["--lr=-1"], "the learning rate must be positive"),
        (&["--optimizer", "adamx"], "unknown optimizer `adamx`"),
        (&["--scheduler", "linear"], "unknown scheduler `linear`"),
        (&["--activation", "swish"], "unknown activation `swish`"),
        (&["--layers", "784-0-10"], "layer sizes must look like"),
        (&["--val-fraction", "0.95"], "validation fraction"),
        (
            &["--dropout", "1"],
            "the dropout probability must be in [0, 1), got 1",
        ),
        (
            &["--dropout=-0.1"],
            "the dropout probability must be in [0, 1), got -0.1",
        ),
        (&["--device", "tpu"], "unknown device `tpu`"),
        (&["--eval-test"], "--eval-test needs --val-fraction 0"),
        (&["--limit", "0"], "--limit must be positive"),
        (&["--threads", "100000"], "--threads must be at most"),
        (
            &["--resume", "/no/such/checkpoint"],
            "no such checkpoint file",
        ),
    ] {
        let mut all = vec!["train", "--data", "/no/such/dir"];
        all.extend_from_slice(args);
        one_line_error(&all, expected);
    }
}

/// What a file says of itself wins over nothing, and loses to nothing: a
/// resume with other settings than the checkpoint's (but for `--epochs`),
/// and `--layers` or `--activation` that contradict a model file's metadata,
/// are refused with the difference named, instead of silently mixing the two.
#[test]
fn settings_that_contradict_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let ckpt = run.join("checkpoint.safetensors");
    let ckpt_s = ckpt.to_str().unwrap();
    let train = |epochs: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--layers",
            "784-8-10",
            "--epochs",
            epochs,
            "--limit",
            "300",
            "--data",
            SUBSET,
            "--out",
            run_s,
            "--threads",
            "1",
        ];
        args.extend_from_slice(extra);
        ember(&args)
    };
    let (ok, text) = train("2", &["--stop-after", "1"]);
    assert!(ok, "{text}");
    let before = std::fs::read(&ckpt).unwrap();

    let (ok, text) = train("2", &["--resume", ckpt_s, "--lr", "0.1"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("other settings (lr: 0.001 in the checkpoint, 0.1 now)"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        before,
        "a refused resume wrote"
    );

    // Dropout is a setting of the run too.
    let (ok, text) = train("2", &["--resume", ckpt_s, "--dropout", "0.2"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("other settings (dropout: not set in the checkpoint, 0.2 now)"),
        "{text}"
    );

    // Only the epoch count changes: the run goes on to epoch 3.
    let (ok, text) = train("3", &["--resume", ckpt_s]);
    assert!(ok, "{text}");
    assert!(text.contains("epoch   3"), "{text}");

    // model.safetensors names its architecture in its metadata.
    let model = run.join("model.safetensors");
    let model_s = model.to_str().unwrap();
    let out = dir.path().join("imp");
    let import = |extra: &[&str]| {
        let mut args = vec![
            "import",
            "--safetensors",
            model_s,
            "--out",
            out.to_str().unwrap(),
            "--data",
            SUBSET,
        ];
        args.extend_from_slice(extra);
        ember(&args)
    };
    let (ok, text) = import(&["--layers", "784-64-10"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("the file holds a 784-8-10 model (its metadata), --layers says 784-64-10"),
        "{text}"
    );
    let (ok, text) = import(&["--activation", "tanh"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("the file's model uses relu (its metadata), --activation says tanh"),
        "{text}"
    );
    let (ok, text) = import(&["--layers", "784-8-10", "--activation", "relu"]);
    assert!(ok, "{text}");
    let (ok, text) = import(&[]);
    assert!(ok, "{text}");
}

/// `--dropout P` trains with dropout after each hidden activation, says so,
/// records it (a resume with another dropout is refused, one with the same
/// goes on), and exports the same inference model as any run: dropout is
/// the identity at inference.
#[test]
fn dropout_trains_is_recorded_and_exports_the_plain_model() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let ckpt = run.join("checkpoint.safetensors");
    let train = |epochs: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--layers",
            "784-16-16-10",
            "--epochs",
            epochs,
            "--limit",
            "300",
            "--data",
            SUBSET,
            "--out",
            run.to_str().unwrap(),
            "--threads",
            "1",
        ];
        args.extend_from_slice(extra);
        ember(&args)
    };
    let (ok, text) = train("2", &["--dropout", "0.25", "--stop-after", "1"]);
    assert!(ok, "{text}");
    assert!(text.contains("(relu activation, dropout 0.25)"), "{text}");
    let (ok, text) = train(
        "2",
        &["--dropout", "0.5", "--resume", ckpt.to_str().unwrap()],
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("other settings (dropout: 0.25 in the checkpoint, 0.5 now)"),
        "{text}"
    );
    let (ok, text) = train("2", &["--resume", ckpt.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("(dropout: 0.25 in the checkpoint, not set now)"),
        "{text}"
    );
    let (ok, text) = train(
        "2",
        &["--dropout", "0.25", "--resume", ckpt.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    assert!(text.contains("epoch   2"), "{text}");
    // The exported model is the plain MLP: its type has no dropout, and it
    // evaluates.
    let (ok, text) = ember(&[
        "export",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        dir.path().join("exp").to_str().unwrap(),
        "--data",
        SUBSET,
    ]);
    assert!(ok && text.contains("test accuracy"), "{text}");
    let net = std::fs::read_to_string(dir.path().join("exp/model_type.rs")).unwrap();
    assert!(
        net.contains(
            "pub type Net = (Linear<784, 16>, ReLU, Linear<16, 16>, ReLU, Linear<16, 10>);"
        ),
        "{net}"
    );
}

/// A PyTorch class's state_dict, its layers named `fc1`, `fc2`, `head`
/// instead of `0`, `2`, `4`: `eval`, `predict` and `import` map them by
/// position and say so on stderr, with the results of the same weights
/// under Ember's names; `--names` gives the order explicitly; names that
/// differ with shapes that do not fit are refused as such, not as "a
/// different architecture".
#[test]
fn pytorch_layer_names_map_by_position() {
    use ember_nn_std::state_dict::{to_bytes, NamedTensor};
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ember_nn_core::Rng::new(3);
    let mut state = Vec::new();
    for (name, out, inp) in [("fc1", 32, 784), ("fc2", 16, 32), ("head", 10, 16)] {
        let bound = 1.0 / (inp as f32).sqrt();
        for (kind, shape) in [("weight", vec![out, inp]), ("bias", vec![out])] {
            state.push(NamedTensor {
                name: format!("{name}.{kind}"),
                data: (0..shape.iter().product::<usize>())
                    .map(|_| rng.uniform_in(-bound, bound))
                    .collect(),
                shape,
            });
        }
    }
    let torch = dir.path().join("torch.safetensors");
    std::fs::write(&torch, to_bytes(&state, None).unwrap()).unwrap();
    let mut ours = state.clone();
    for (t, name) in ours.iter_mut().zip(["0", "0", "2", "2", "4", "4"]) {
        t.name = t.name.replace(t.name.split('.').next().unwrap(), name);
    }
    let ember_named = dir.path().join("ember.safetensors");
    std::fs::write(&ember_named, to_bytes(&ours, None).unwrap()).unwrap();
    let (torch_s, ember_s) = (torch.to_str().unwrap(), ember_named.to_str().unwrap());

    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let note = "note: the file's layer names (fc1, fc2, head) are not the model's (0, 2, 4); mapped by position and shape: fc1 -> 0, fc2 -> 2, head -> 4";
    let layers = ["--layers", "784-32-16-10", "--data", SUBSET];
    let (ok, reference, err) = run(&[&["eval", "--model", ember_s][..], &layers].concat());
    assert!(ok && !err.contains("note:"), "{err}");
    let (ok, report, err) = run(&[&["eval", "--model", torch_s][..], &layers].concat());
    assert!(ok, "{err}");
    assert!(
        err.contains(&note.replace("note: ", &format!("note: {torch_s}: "))),
        "{err}"
    );
    assert_eq!(report, reference);
    let (ok, top3, err) = run(&[
        &["predict", "--model", torch_s, "--index", "5"][..],
        &layers,
    ]
    .concat());
    assert!(ok && err.contains("mapped by position"), "{err}");
    let (_, want, _) = run(&[
        &["predict", "--model", ember_s, "--index", "5"][..],
        &layers,
    ]
    .concat());
    assert_eq!(top3, want);

    let import = |file: &str, out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec![
            "import",
            "--safetensors",
            file,
            "--layers",
            "784-32-16-10",
            "--out",
            out.to_str().unwrap(),
            "--data",
            SUBSET,
        ];
        args.extend_from_slice(extra);
        let r = run(&args);
        (r, out.join("model.emb"))
    };
    let ((ok, _, err), torch_emb) = import(torch_s, "imp-torch", &[]);
    assert!(ok && err.contains("mapped by position"), "{err}");
    let ((ok, _, err), ember_emb) = import(ember_s, "imp-ember", &[]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(torch_emb).unwrap(),
        std::fs::read(&ember_emb).unwrap()
    );
    // The order given: the right one works and says so; a wrong one is a
    // shape error naming the tensor.
    let ((ok, _, err), _) = import(torch_s, "imp-names", &["--names", "fc1,fc2,head"]);
    assert!(ok && err.contains("mapped as given: fc1 -> 0"), "{err}");
    let ((ok, _, err), _) = import(torch_s, "imp-bad", &["--names", "head,fc1,fc2"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("tensor `head.weight` has shape [10, 16], the model expects [32, 784]"),
        "{err}"
    );
    // --names is for a state_dict only.
    let (ok, _, err) = run(&[
        "eval",
        "--model",
        ember_emb.to_str().unwrap(),
        "--names",
        "fc1,fc2,head",
        "--data",
        SUBSET,
    ]);
    assert!(
        !ok && err.contains("--names is for a safetensors state_dict"),
        "{err}"
    );

    // Names that differ and shapes that do not fit: the names are the news.
    let (ok, _, err) = run(&[
        "eval",
        "--model",
        torch_s,
        "--layers",
        "784-64-10",
        "--data",
        SUBSET,
    ]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("the file's layers are named fc1, fc2, head, not 0, 2 as the model's")
            && err.contains("--names")
            && !err.contains("different architecture"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
