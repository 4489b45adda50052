//! `ember train --data FILE`: CSV and NumPy files end to end, and every bad
//! input one line on stderr, exit status 1, and nothing written.

use std::path::{Path, PathBuf};
use std::process::Command;

const IRIS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tables/iris.csv");
const WINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tables/wine.csv");
const DIABETES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/tables/diabetes.csv"
);

fn ember(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A NumPy `.npy` file (format 1.0).
fn npy(descr: &str, shape: &str, data: Vec<u8>) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend(data);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn trains_on_iris_csv_and_reports_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, stdout, stderr) = ember(&[
        "train",
        "--data",
        IRIS,
        "--target",
        "species",
        "--epochs",
        "40",
        "--lr",
        "0.01",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("classify: target column `species` holds 3 distinct strings"),
        "{stderr}"
    );
    assert!(stderr.contains("model 4-64-32-3"), "{stderr}");
    assert!(
        stderr.contains("120 training samples") && stderr.contains("30 test samples"),
        "{stderr}"
    );
    for name in ["setosa", "versicolor", "virginica"] {
        assert!(stdout.contains(name), "{stdout}");
    }
    // Stratified: 10 of each class in the test set.
    assert!(
        stdout.contains("(10/10)") || stdout.contains("/10)"),
        "{stdout}"
    );
    let acc: f32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("accuracy: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("an accuracy line");
    assert!(acc >= 0.8, "{stdout}");
    for f in [
        "model.emb",
        "model-int8.emb",
        "report.txt",
        "checkpoint.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

#[test]
fn trains_on_npy_with_labels_and_a_test_file() {
    let dir = tempfile::tempdir().unwrap();
    // Two classes, one feature: x < 0 or x > 0, as f32 features and i64 labels.
    let xs: Vec<f32> = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                -1.0 - i as f32 / 40.0
            } else {
                1.0 + i as f32 / 40.0
            }
        })
        .collect();
    let ys: Vec<i64> = (0..40).map(|i| i % 2).collect();
    let x = write(
        dir.path(),
        "x.npy",
        &npy(
            "<f4",
            "(40, 1)",
            xs.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    );
    let y = write(
        dir.path(),
        "y.npy",
        &npy(
            "<i8",
            "(40,)",
            ys.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    );
    let out = dir.path().join("run");
    let (code, stdout, stderr) = ember(&[
        "train",
        "--data",
        x.to_str().unwrap(),
        "--labels",
        y.to_str().unwrap(),
        "--test",
        x.to_str().unwrap(),
        "--test-labels",
        y.to_str().unwrap(),
        "--epochs",
        "5",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("classify: target column `label` holds 2 distinct integers"),
        "{stderr}"
    );
    assert!(stdout.contains("accuracy"), "{stdout}");
}

/// The R² of each target in the f32 model's table of a regression's report.
fn r2s(stdout: &str) -> Vec<f32> {
    stdout
        .split("int8 model:")
        .next()
        .unwrap_or("")
        .lines()
        .skip_while(|l| !l.starts_with("target "))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect()
}

/// scikit-learn's diabetes (442 patients, 10 measurements, a disease
/// progression score in whole units): inferred as regression (214
/// distinct integers), an MLP of `--hidden 32` reaches R² around 0.45 on
/// the held-out fifth; writes the predicted-against-true plot.
#[test]
fn regresses_on_diabetes_csv() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, stdout, stderr) = ember(&[
        "train",
        "--data",
        DIABETES,
        "--hidden",
        "32",
        "--loss",
        "huber",
        "--epochs",
        "60",
        "--lr",
        "0.01",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("regress: target column `target` holds 214 distinct integers in 442 rows"),
        "{stderr}"
    );
    assert!(stderr.contains("model 10-32-1"), "{stderr}");
    let r2 = r2s(&stdout);
    assert_eq!(r2.len(), 1, "{stdout}");
    assert!(r2[0] > 0.3, "{stdout}");
    let svg = std::fs::read_to_string(out.join("predictions.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("predicted"), "{svg}");
}

/// The model information `ember train` keeps of a data file's model: in
/// the checkpoint's metadata and in model.safetensors's (`ember.model`).
fn model_info(out: &Path) -> (serde_json::Value, serde_json::Value) {
    let c =
        ember_nn_std::checkpoint::Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let raw = std::fs::read(out.join("model.safetensors")).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&raw).unwrap();
    let text = md.metadata().as_ref().unwrap()["ember.model"].clone();
    (c.meta.model, serde_json::from_str(&text).unwrap())
}

/// scikit-learn's wine (178 wines, 13 measurements of very different
/// ranges, sorted by class): standardized features (fitted on the
/// training split, stored with the model) reach an accuracy above 0.9 in
/// 30 epochs; unscaled (`--scale none`), the same run reaches 0.44.
#[test]
fn classifies_wine_csv_behind_its_scaling() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, stdout, stderr) = ember(&[
        "train",
        "--data",
        WINE,
        "--epochs",
        "30",
        "--lr",
        "0.01",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("classify: target column `class` holds 3 distinct integers"),
        "{stderr}"
    );
    assert!(
        stderr.contains("scaling: standard, fitted on the 127 training samples"),
        "{stderr}"
    );
    let acc: f32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("accuracy: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 0.9, "{stdout}");
    // The int8 model standardizes its raw inputs itself (an input step, the
    // format's flag bit 0): with one quantization step over raw features
    // (proline near 750 beside hue near 1) it scored 0.39 here.
    let acc8: f32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("int8 accuracy (host, deployment kernels): "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc8 >= acc - 0.03, "{stdout}");
    let int8 = std::fs::read(out.join("model-int8.emb")).unwrap();
    assert_eq!(int8[24], 1, "the int8 file's input step flag");
    let f32_file = std::fs::read(out.join("model.emb")).unwrap();
    assert_eq!(f32_file[24], 0, "the f32 file folds the scaling in");
    let (ckpt, st) = model_info(&out);
    assert_eq!(ckpt, st);
    assert_eq!(ckpt["task"], "classify");
    assert_eq!(ckpt["outputs"], serde_json::json!(["0", "1", "2"]));
    assert_eq!(ckpt["features"][12], "proline");
    assert_eq!(ckpt["scaler"]["kind"], "standard");
    // Proline's mean, around 750, and its standard deviation, around 300.
    let (m, s) = (
        ckpt["scaler"]["offset"][12].as_f64().unwrap(),
        ckpt["scaler"]["scale"][12].as_f64().unwrap(),
    );
    assert!(
        (600.0..900.0).contains(&m) && (200.0..400.0).contains(&s),
        "{m} {s}"
    );
}

/// An autoencoder of wine's measurements: the threshold chosen on the
/// validation split at `--quantile`, kept in the checkpoint and in the
/// safetensors metadata; a constant column is no NaN.
#[test]
fn reconstructs_with_a_threshold_kept_in_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(WINE).unwrap();
    let mut csv = String::new();
    for (i, line) in text.lines().enumerate() {
        csv.push_str(line);
        csv.push_str(if i == 0 { ",constant\n" } else { ",7\n" });
    }
    let data = write(dir.path(), "wine-constant.csv", csv.as_bytes());
    let out = dir.path().join("run");
    let (code, stdout, stderr) = ember(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--task",
        "reconstruct",
        "--features",
        "alcohol,malic_acid,ash,magnesium,flavanoids,hue,proline,constant",
        "--hidden",
        "4",
        "--quantile",
        "0.9",
        "--val-fraction",
        "0.25",
        "--epochs",
        "30",
        "--lr",
        "0.01",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("reconstruct: as --task says"), "{stderr}");
    assert!(stderr.contains("model 8-4-8"), "{stderr}");
    assert!(
        stdout.contains("the 0.9 quantile of 36 validation scores"),
        "{stdout}"
    );
    let (ckpt, st) = model_info(&out);
    assert_eq!(ckpt, st);
    assert_eq!(ckpt["task"], "reconstruct");
    assert_eq!(ckpt["quantile"].as_f64(), Some(0.9f32 as f64));
    let t = ckpt["threshold"].as_f64().unwrap();
    assert!(t.is_finite() && t > 0.0, "{ckpt}");
    assert!(stdout.contains(&format!("threshold: {t:.6}")), "{stdout}");
    // The constant column: offset 7, scale 1.
    assert_eq!(ckpt["scaler"]["offset"][7], 7.0);
    assert_eq!(ckpt["scaler"]["scale"][7], 1.0);
    let mean: f64 = stdout
        .lines()
        .find_map(|l| l.split("mean score ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(mean.is_finite() && mean < 1.0, "{stdout}");
}

/// `ember eval` and `ember predict` on a data file's model: raw rows in
/// (a file, or CSV on stdin), the task's figures or CSV out; rows of
/// other columns refused naming both.
#[test]
fn evaluates_and_predicts_rows_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, args: &[&str]| {
        let out = dir.path().join(name);
        let mut all = vec![
            "train",
            "--threads",
            "1",
            "--lr",
            "0.01",
            "--out",
            out.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let (code, _, stderr) = ember(&all);
        assert_eq!(code, Some(0), "{stderr}");
        out
    };
    let predict = |model: &Path, stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(["predict", "--model", model.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A classifier: the checkpoint and model.safetensors both serve.
    let wine = run("wine", &["--data", WINE, "--epochs", "30"]);
    for file in ["checkpoint.safetensors", "model.safetensors"] {
        let m = wine.join(file);
        let (code, stdout, stderr) =
            ember(&["eval", "--model", m.to_str().unwrap(), "--data", WINE]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            stdout.contains("f32 model (classify, 13 features), 178 rows"),
            "{stdout}"
        );
        let acc: f32 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("accuracy: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(acc > 0.9, "{stdout}");
    }
    let text = std::fs::read_to_string(WINE).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    // The first rows (class 0) and the last (class 2), the class column left out.
    let no_class = |l: &str| l.rsplit_once(',').unwrap().0.to_string();
    let input = [rows[0], rows[1], rows[177]].map(no_class).join("\n");
    let (code, stdout, stderr) = predict(&wine.join("checkpoint.safetensors"), &input);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "class,p_0,p_1,p_2");
    assert!(
        lines[1].starts_with("0,") && lines[2].starts_with("2,"),
        "{stdout}"
    );
    let p: f32 = lines[1]
        .split(',')
        .skip(1)
        .map(|v| v.parse::<f32>().unwrap())
        .sum();
    assert!((p - 1.0).abs() < 1e-3, "{stdout}");
    // Other columns: both named.
    let iris = std::fs::read_to_string(IRIS).unwrap();
    let (code, _, stderr) = predict(&wine.join("model.safetensors"), &iris);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("sepal_length, sepal_width")
            && stderr.contains("(the model takes alcohol, malic_acid"),
        "{stderr}"
    );
    // A regression: the values, in the target's units.
    let diabetes = run(
        "diabetes",
        &["--data", DIABETES, "--hidden", "32", "--epochs", "30"],
    );
    let m = diabetes.join("checkpoint.safetensors");
    let (code, stdout, stderr) =
        ember(&["eval", "--model", m.to_str().unwrap(), "--data", DIABETES]);
    assert_eq!(code, Some(0), "{stderr}");
    let r2 = r2s(&stdout);
    assert!(r2.len() == 1 && r2[0] > 0.3, "{stdout}");
    let d = std::fs::read_to_string(DIABETES).unwrap();
    let (code, stdout, stderr) = ember(&[
        "predict",
        "--model",
        m.to_str().unwrap(),
        "--data",
        DIABETES,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), d.lines().count(), "{stdout}");
    assert_eq!(stdout.lines().next(), Some("target"));
    let mean = stdout
        .lines()
        .skip(1)
        .map(|v| v.parse::<f64>().unwrap())
        .sum::<f64>()
        / 442.0;
    assert!((100.0..200.0).contains(&mean), "{mean}");
    // An autoencoder: each row's score and verdict.
    let ae = run(
        "ae",
        &[
            "--data",
            WINE,
            "--task",
            "reconstruct",
            "--features",
            "alcohol,ash,hue",
            "--hidden",
            "2",
            "--epochs",
            "20",
        ],
    );
    let m = ae.join("model.safetensors");
    let (code, stdout, stderr) = ember(&["eval", "--model", m.to_str().unwrap(), "--data", WINE]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("mean anomaly score") && stdout.contains("above the threshold"),
        "{stdout}"
    );
    let (code, stdout, stderr) = predict(&m, "hue,alcohol,ash\n1.0,13.0,2.3\n1.0,30.0,9.0\n");
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "score,anomaly");
    assert!(
        lines[1].ends_with(",false") && lines[2].ends_with(",true"),
        "{stdout}"
    );
    // An .emb file holds no column names.
    let (code, _, stderr) = ember(&[
        "eval",
        "--model",
        ae.join("model.emb").to_str().unwrap(),
        "--data",
        WINE,
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no data-file information"), "{stderr}");
}

/// `ember summary` takes a data file and `--hidden` as `train` does.
#[test]
fn summary_takes_its_widths_from_a_data_file() {
    let (code, stdout, stderr) = ember(&["summary", "--data", WINE, "--hidden", "16,8"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("Linear(in_features=13, out_features=16"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Linear(in_features=8, out_features=3"),
        "{stdout}"
    );
    assert!(stdout.contains("Total params: 387"), "{stdout}");
    // `--layers` with `auto` ends: the data's widths.
    let (code, auto, stderr) = ember(&["summary", "--data", WINE, "--layers", "auto-16-8-auto"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(auto, stdout);
    for (layers, needle) in [
        ("13-auto-3", "only the first and the last width may be auto"),
        ("auto-16-4", "has 4 outputs, but the target has 3 classes"),
        ("auto-x-auto", "--layers auto-x-auto:"),
    ] {
        let (code, _, stderr) = ember(&["summary", "--data", WINE, "--layers", layers]);
        assert_eq!(code, Some(1), "{layers}");
        assert!(stderr.contains(needle), "{layers}: {stderr}");
    }
    let (code, _, stderr) = ember(&["summary", "--hidden", "16"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("give --data FILE"), "{stderr}");
}

/// Two target columns at once, named with `--target a,b`.
#[test]
fn regresses_on_several_targets() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("x0,x1,sum,diff\n");
    for i in 0..200 {
        let (a, b) = (
            (i * 37 % 23) as f32 / 11.5 - 1.0,
            (i * 11 % 19) as f32 / 9.5 - 1.0,
        );
        csv.push_str(&format!("{a},{b},{},{}\n", a + b, a - b));
    }
    let data = write(dir.path(), "two.csv", csv.as_bytes());
    let out = dir.path().join("run");
    let (code, stdout, stderr) = ember(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--target",
        "sum,diff",
        "--epochs",
        "60",
        "--lr",
        "0.01",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("regress: target column `sum` holds numbers that are not integers"),
        "{stderr}"
    );
    assert!(
        stderr.contains("targets: 2 column(s): sum, diff"),
        "{stderr}"
    );
    assert!(stderr.contains("model 2-64-32-2"), "{stderr}");
    let r2 = r2s(&stdout);
    assert_eq!(r2.len(), 2, "{stdout}");
    assert!(r2.iter().all(|&r| r > 0.95), "{stdout}");
}

/// `ember train` on `args` fails with status 1, the last line of stderr
/// the only error line, containing each of `needles`, and writes nothing.
fn fails(args: &[&str], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut all = vec!["train", "--threads", "1", "--epochs", "1"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let (code, _, stderr) = ember(&all);
    assert_eq!(code, Some(1), "{args:?}: {stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("error: "), "{args:?}: {stderr}");
    let errors = stderr.lines().filter(|l| l.starts_with("error")).count();
    assert_eq!(errors, 1, "{args:?}: {stderr}");
    for n in needles {
        assert!(last.contains(n), "{args:?}: `{n}` not in {last}");
    }
    assert!(!out.exists(), "{args:?}: the run directory was written");
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str, text: &[u8]| write(dir.path(), name, text).to_str().unwrap().to_string();
    let ok = d(
        "ok.csv",
        b"a,b,y\n1,2,x\n3,4,z\n5,6,x\n7,8,z\n9,1,x\n2,3,z\n",
    );
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec![d("ragged.csv", b"a,b,y\n1,2,x\n3,4\n")],
            vec!["ragged.csv:3", "ragged row"],
        ),
        (
            vec![d("cell.csv", b"a,b,y\n1,2,x\n3,four,z\n")],
            vec!["cell.csv:3", "column 2", "\"b\"", "\"four\""],
        ),
        (vec![d("empty.csv", b"")], vec!["empty.csv", "empty"]),
        (
            vec![ok.clone(), "--target".into(), "species".into()],
            vec!["no column \"species\"", "a, b, y"],
        ),
        (
            vec![d("one.csv", b"a,y\n1,x\n2,x\n")],
            vec!["one class only"],
        ),
        (
            vec![d("nan.csv", b"a,y\n1,x\nnan,z\n")],
            vec!["nan.csv:3", "finite"],
        ),
        (
            vec![
                ok.clone(),
                "--test".into(),
                d("unseen.csv", b"a,b,y\n1,2,x\n3,4,w\n"),
            ],
            vec!["unseen.csv", "\"w\"", "x, z"],
        ),
        (
            vec![ok.clone(), "--layers".into(), "784-16-10".into()],
            vec!["784 inputs", "2 feature columns"],
        ),
        (vec![ok.clone(), "--augment".into()], vec!["--augment"]),
        (
            vec![d("s.npy", &npy("<U1", "(1,)", b"abcd".to_vec()))],
            vec!["unsupported NumPy dtype"],
        ),
        (
            vec![
                d("x.npy", &npy("|u1", "(3,)", vec![1, 2, 3])),
                "--labels".into(),
                d("y.npy", &npy("|u1", "(2,)", vec![0, 1])),
            ],
            vec!["holds 3 rows", "2 labels"],
        ),
        (vec!["--target".into(), "a".into()], vec!["for a data file"]),
        (
            vec![
                d("word.csv", b"a,y\n1,0.5\n2,1.5\n3,big\n"),
                "--task".into(),
                "regress".into(),
            ],
            vec!["word.csv:4", "column 2", "\"y\"", "\"big\"", "not a number"],
        ),
        (
            vec![
                ok.clone(),
                "--task".into(),
                "reconstruct".into(),
                "--target".into(),
                "y".into(),
            ],
            vec!["--task reconstruct takes no --target"],
        ),
        (
            vec![ok.clone(), "--loss".into(), "huber".into()],
            vec!["--loss is for --task regress or reconstruct"],
        ),
        (
            vec![ok.clone(), "--loss".into(), "cubic".into()],
            vec!["cubic", "mse, l1, huber"],
        ),
        (
            vec![
                ok.clone(),
                "--hidden".into(),
                "8".into(),
                "--layers".into(),
                "2-8-2".into(),
            ],
            vec!["--layers or --hidden"],
        ),
        (
            vec![
                d("nanr.csv", b"a,y\n1,0.5\nnan,1.5\n"),
                "--task".into(),
                "regress".into(),
            ],
            vec!["nanr.csv:3", "finite"],
        ),
        (
            vec![ok.clone(), "--quantile".into(), "0.9".into()],
            vec!["--quantile is for --task reconstruct"],
        ),
        (
            vec![
                ok.clone(),
                "--task".into(),
                "reconstruct".into(),
                "--features".into(),
                "a,b".into(),
                "--val-fraction".into(),
                "0".into(),
            ],
            vec!["validation data", "--val-fraction"],
        ),
        (
            vec![ok.clone(), "--scale".into(), "log".into()],
            vec!["log", "standard, minmax, none"],
        ),
        (
            vec![
                ok.clone(),
                "--task".into(),
                "reconstruct".into(),
                "--quantile".into(),
                "1.5".into(),
            ],
            vec!["--quantile must be between 0 and 1"],
        ),
        (
            vec![ok.clone(), "--hidden".into(), "8,0".into()],
            vec!["--hidden: every width must be positive"],
        ),
    ];
    for (args, needles) in cases {
        let args: Vec<&str> = std::iter::once("--data")
            .filter(|_| !args[0].starts_with("--"))
            .chain(args.iter().map(String::as_str))
            .collect();
        fails(&args, &needles);
    }
    // A file far larger than the memory available, refused before reading
    // (a sparse file; skipped where the file system refuses one).
    if let Some(available) = ember_nn_std::train::available_memory() {
        let p = dir.path().join("huge.csv");
        if std::fs::File::create(&p)
            .unwrap()
            .set_len(available)
            .is_ok()
        {
            fails(&["--data", p.to_str().unwrap()], &["too large for memory"]);
        }
    }
}
