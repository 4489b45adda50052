//! Chooses what the firmware embeds, and for bare-metal builds the memory map.
//!
//! Models: the cfgs `model_f32` and `model_int8` are set from the features
//! `f32-model` and `int8-model`, except that Cortex-M0 (`thumbv6m-none-eabi`,
//! QEMU's micro:bit with 256 KiB of flash) never gets the f32 model of
//! images: the committed one's 437,732 bytes do not fit (a data file's
//! small model is the exception, below). The models come from the
//! directory `EMBER_FIRMWARE_MODELS` (default `models/`): one `NAME.emb` (f32)
//! and `NAME-int8.emb` pair of the same architecture, whatever it is. Their
//! header gives the model type, which is written to `OUT_DIR/model.rs`
//! (`ember_nn_core::deploy::write_model_type`: `Net`, `INPUTS`, `OUTPUTS`,
//! `WIDEST`, `ARCHITECTURE`); the firmware checks the files against it with
//! `Model::load::<Net>`. The files and the directory's test data are copied
//! into `OUT_DIR` for `include_bytes!`: all the images, or on Cortex-M0 the
//! first [`M0_IMAGES`], so that the int8 model, the images and the XOR
//! training fit the micro:bit's flash together.
//!
//! A CNN's graph files (format version 3, `scripts/model-to-firmware.sh
//! --model cnn`): `Model::parse` answers `FormatError::GraphFile`, so they
//! are parsed with `GraphModel::parse`; a graph has no model type, so
//! `model.rs` holds `INPUTS`, `OUTPUTS`, the two files' arenas
//! (`GRAPH_SCRATCH_F32`, `GRAPH_SCRATCH_I8`, each `scratch_len()` from its
//! header, which the firmware sizes its scratch with at compile time),
//! `LAST_INPUTS` (the head's input features) and `ARCHITECTURE`, and the
//! cfg `model_graph` is set. A graph whose directory holds the fine-tuning
//! images (`cargo xtask test-images`) has its head (its last node, a dense
//! layer) fine-tuned on the device as the committed MLP's is (cfg
//! `finetune`); no held-out rows go with a graph; a Cortex-M0
//! build gets the int8 graph only (whether it fits the micro:bit's 16 KiB of
//! RAM is the linker's to say: the preset's does not, and runs on QEMU's
//! mps2-an385 instead, `EMBER_FIRMWARE_MACHINE` below).
//!
//! A data file's model (`scripts/model-to-firmware.sh --data FILE.csv`):
//! when the directory holds `test-rows.bin` (`cargo xtask test-rows`), the
//! test data are held-out rows of raw features, little-endian `f32`, with
//! the host's f32 and int8 outputs (and, for a classifier, the rows'
//! labels in `test-labels.bin`, which sets the cfg `rows_classify`); the
//! cfg `test_rows` builds `src/rows.rs` in place of `src/inference.rs`.
//! Such a model is small: a Cortex-M0 build gets its f32 model too when the
//! file is at most [`M0_F32_BYTES`], and as many rows as [`M0_ROW_BYTES`]
//! hold.
//!
//! Bare metal: puts the chosen `memory.x` on the linker's search path and
//! links the binary with the runtime's `link.x` (`cortex-m-rt`'s, or
//! `riscv-rt`'s with its feature `memory`, which includes `memory.x` as
//! `cortex-m-rt`'s does) and defmt's `defmt.x`. The link arguments apply to
//! this package's binary and nothing else, so other crates built for the
//! same target are unaffected. Memory maps: `boards/stm32f411/memory.x` with
//! the `stm32f411` feature; otherwise QEMU's machines, `memory.x`
//! (mps2-an386, Cortex-M4F), for Cortex-M0 `boards/microbit/memory.x`, which
//! also sets the `cortex_m0` cfg, and for RISC-V (`riscv32imc`, QEMU's
//! virt) `boards/riscv-virt/memory.x`. RISC-V builds leave fine-tuning out.
//! `EMBER_FIRMWARE_MACHINE=mps2-an385` gives a Cortex-M0 build `memory.x`
//! (the mps2 map, 4 MiB of RAM) and the cfg `mps2_m0`, to run the M0's code
//! on QEMU's mps2-an385 (a Cortex-M3, which executes ARMv6-M code as is):
//! the M0's instruction counts for models larger than the micro:bit holds.
//!
//! MLPerf Tiny (feature `mlperf`, [`mlperf`]): the directory
//! `EMBER_FIRMWARE_MODELS` as `cargo xtask mlperf` writes it, one int8
//! model (`mlperf-NAME-int8.emb`, dense or graph; cfg `mlperf_graph` for a
//! graph), quantized test inputs and the host's int8 outputs, and
//! `mlperf.txt`; `OUT_DIR/mlperf.rs` gets `NAME`, `MACS`, `INPUTS`,
//! `OUTPUTS`, `SCRATCH` and `ARCHITECTURE`.

use ember_nn_core::deploy::{write_model_type, FormatError, GraphModel, Model, NodeOp};
use std::{env, fs, path::Path, path::PathBuf};

/// Test images a Cortex-M0 build embeds (784 bytes each).
const M0_IMAGES: usize = 72;
/// Bytes per image (28 × 28 pixels).
const PIXELS: usize = 784;
/// The largest f32 model a Cortex-M0 build of a data file's model embeds.
const M0_F32_BYTES: u64 = 64 * 1024;
/// Bytes of held-out rows a Cortex-M0 build embeds at most (as many as its
/// test images).
const M0_ROW_BYTES: usize = M0_IMAGES * PIXELS;
/// The test data of a data file's model: its rows.
const ROWS_FILE: &str = "test-rows.bin";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(cortex_m0)");
    println!("cargo::rustc-check-cfg=cfg(model_f32)");
    println!("cargo::rustc-check-cfg=cfg(model_int8)");
    println!("cargo::rustc-check-cfg=cfg(finetune)");
    println!("cargo::rustc-check-cfg=cfg(test_rows)");
    println!("cargo::rustc-check-cfg=cfg(rows_classify)");
    println!("cargo::rustc-check-cfg=cfg(model_graph)");
    println!("cargo::rustc-check-cfg=cfg(mps2_m0)");
    println!("cargo::rustc-check-cfg=cfg(mlperf_graph)");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bare_metal = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none");
    let m0 = bare_metal && env::var("TARGET").is_ok_and(|t| t.starts_with("thumbv6m"));
    let riscv = bare_metal && env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("riscv32");

    let f32_feature = env::var_os("CARGO_FEATURE_F32_MODEL").is_some();
    let int8_model = env::var_os("CARGO_FEATURE_INT8_MODEL").is_some();
    if int8_model {
        println!("cargo:rustc-cfg=model_int8");
    }
    if f32_feature || int8_model {
        println!("cargo:rerun-if-env-changed=EMBER_FIRMWARE_MODELS");
        let dir = env::var_os("EMBER_FIRMWARE_MODELS")
            .map_or_else(|| PathBuf::from("models"), PathBuf::from);
        let Models {
            inputs,
            outputs,
            f32_bytes,
            graph,
            head,
        } = models(&dir, &out);
        if graph {
            println!("cargo:rustc-cfg=model_graph");
        }
        let rows = dir.join(ROWS_FILE).is_file();
        // Cortex-M0: the f32 model only for a data file's (small) model.
        let f32_model = f32_feature && (!m0 || (rows && !graph && f32_bytes <= M0_F32_BYTES));
        if f32_model {
            println!("cargo:rustc-cfg=model_f32");
        }
        if rows {
            assert!(
                !graph,
                "{}: held-out rows ({ROWS_FILE}) go with a dense model; a graph file runs on images",
                dir.display()
            );
            println!("cargo:rustc-cfg=test_rows");
            test_rows(
                &dir,
                &out,
                inputs,
                outputs,
                if m0 { Some(M0_ROW_BYTES) } else { None },
            );
        } else {
            test_data(&dir, &out, outputs, if m0 { Some(M0_IMAGES) } else { None });
        }
        // Fine-tuning on the device (src/finetune.rs): Cortex-M4F and host
        // builds (the M0's flash holds no more images; RISC-V has no Arm
        // semihosting to send the adapted model back with), with the
        // committed model, or a graph whose directory holds the
        // fine-tuning images (`cargo xtask test-images`; its head is its
        // last node, a dense layer).
        // A directory of the user's gets it when it holds the images and
        // the host's CRCs, or when the host test that writes the CRCs
        // builds it (`EMBER_UPDATE_FINETUNE`).
        println!("cargo:rerun-if-env-changed=EMBER_UPDATE_FINETUNE");
        let committed = env::var_os("EMBER_FIRMWARE_MODELS").is_none();
        let pinning = env::var_os("EMBER_UPDATE_FINETUNE").is_some();
        let has_data = FINETUNE_DATA.iter().all(|f| dir.join(f).is_file())
            && (pinning || FINETUNE_CRCS.iter().all(|f| dir.join(f).is_file()));
        if int8_model
            && !rows
            && (!graph || head > 0)
            && !m0
            && !riscv
            && (committed || (graph && has_data))
            && env::var_os("CARGO_FEATURE_FINETUNE").is_some()
        {
            println!("cargo:rustc-cfg=finetune");
            finetune_data(&dir, &out);
            finetuned_path();
        }
    }

    if env::var_os("CARGO_FEATURE_MLPERF").is_some() {
        mlperf(&out);
    }

    if !bare_metal {
        return;
    }
    if m0 {
        println!("cargo:rustc-cfg=cortex_m0");
    }
    // A Cortex-M0 build on QEMU's mps2-an385 (a Cortex-M3, which runs the
    // M0's ARMv6-M code unchanged; 4 MiB of RAM where the micro:bit has
    // 16 KiB): the M0's instruction counts for a model whose buffers do not
    // fit the micro:bit, such as a CNN's int8 arena.
    println!("cargo:rerun-if-env-changed=EMBER_FIRMWARE_MACHINE");
    let mps2_m0 = m0 && env::var("EMBER_FIRMWARE_MACHINE").as_deref() == Ok("mps2-an385");
    if mps2_m0 {
        println!("cargo:rustc-cfg=mps2_m0");
    }
    let memory = if env::var_os("CARGO_FEATURE_STM32F411").is_some() {
        "boards/stm32f411/memory.x"
    } else if m0 && !mps2_m0 {
        "boards/microbit/memory.x"
    } else if riscv {
        "boards/riscv-virt/memory.x"
    } else {
        "memory.x"
    };
    println!("cargo:rerun-if-changed={memory}");
    fs::copy(memory, out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}

/// What [`models`] found.
struct Models {
    /// The model's input features.
    inputs: usize,
    /// Its output features.
    outputs: usize,
    /// The f32 file's size in bytes.
    f32_bytes: u64,
    /// Whether the files are graph files (format version 3, a CNN).
    graph: bool,
    /// A graph's head input features (its last node's, a dense layer's;
    /// 0 for a graph whose last node is not dense, or a dense file).
    head: usize,
}

/// Finds the model pair in `dir`, checks that both files describe the same
/// model, copies them to `out` (`model-f32.emb`, `model-int8.emb`) and
/// writes `out/model.rs`: for dense files (format version 2) the model type
/// (`write_model_type`), for graph files (version 3, which have no model
/// type) the constants the firmware sizes its buffers with, read from the
/// header: `INPUTS`, `OUTPUTS`, `GRAPH_SCRATCH_F32` and `GRAPH_SCRATCH_I8`
/// (each file's `GraphModel::scratch_len`, its arena) and `ARCHITECTURE`.
fn models(dir: &Path, out: &Path) -> Models {
    println!("cargo:rerun-if-changed={}", dir.display());
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut int8: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-int8.emb"))
        .collect();
    int8.sort();
    let [int8] = &int8[..] else {
        panic!(
            "{} must hold exactly one NAME.emb and NAME-int8.emb pair (found {} -int8.emb files); `scripts/model-to-firmware.sh` writes them",
            dir.display(),
            int8.len()
        )
    };
    let name = int8.to_string_lossy().replace("-int8.emb", ".emb");
    let f32 = PathBuf::from(name);
    // Per file: its type (dense) or its graph's description, inputs,
    // outputs, scratch, whether it is a graph.
    let mut arch = Vec::new();
    let mut head = 0;
    for (path, copy) in [(&f32, "model-f32.emb"), (int8, "model-int8.emb")] {
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Parsed from 4-byte-aligned storage, as the firmware reads it.
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        let aligned = bytemuck_bytes(&mut words);
        aligned[..bytes.len()].copy_from_slice(&bytes);
        let aligned = &aligned[..bytes.len()];
        match Model::parse(aligned) {
            Ok(model) => {
                let mut src = String::new();
                write_model_type(&model, &mut src).expect("formatting to a String");
                let io = (model.input_features(), model.output_features());
                arch.push((src, io.0, io.1, 0, false));
            }
            Err(FormatError::GraphFile) => {
                let g = GraphModel::parse(aligned)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let io = (g.input_features(), g.output_features());
                head = g.head_shape().map_or(0, |(i, _)| i);
                arch.push((describe_graph(&g), io.0, io.1, g.scratch_len(), true));
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
        fs::write(out.join(copy), &bytes).expect("copy the model");
    }
    assert_eq!(
        (&arch[0].0, arch[0].4),
        (&arch[1].0, arch[1].4),
        "{} and {} describe different models",
        f32.display(),
        int8.display()
    );
    let (src, inputs, outputs, _, graph) = arch[0].clone();
    let src = if graph {
        format!(
            "// Generated by firmware-example/build.rs from the graph files' headers. Do not edit.\n\
             /// Input features.\npub const INPUTS: usize = {inputs};\n\
             /// Output features.\npub const OUTPUTS: usize = {outputs};\n\
             /// Elements of scratch the f32 graph needs (`GraphModel::scratch_len`).\n\
             pub const GRAPH_SCRATCH_F32: usize = {};\n\
             /// Bytes of scratch the int8 graph needs (`GraphModel::scratch_len`).\n\
             pub const GRAPH_SCRATCH_I8: usize = {};\n\
             /// The head's input features (its last node's, a dense layer's; 0 if none).\n\
             pub const LAST_INPUTS: usize = {head};\n\
             /// The graph's nodes.\npub const ARCHITECTURE: &str = {src:?};\n",
            arch[0].3, arch[1].3
        )
    } else {
        src
    };
    fs::write(out.join("model.rs"), src).expect("write model.rs");
    let f32_bytes = fs::metadata(&f32).map_or(u64::MAX, |m| m.len());
    Models {
        inputs,
        outputs,
        f32_bytes,
        graph,
        head,
    }
}

/// A graph's nodes in a line, e.g. `conv 1-16 3x3, maxpool 2x2, dense
/// 1568-10` (the input left out).
fn describe_graph(g: &GraphModel<'_>) -> String {
    let mut parts = Vec::new();
    for (h, _) in g.nodes().skip(1) {
        let [kh, kw] = h.geometry.kernel;
        parts.push(match h.op {
            NodeOp::Conv => format!("conv {}-{} {kh}x{kw}", h.in_shape[0], h.out_shape[0]),
            NodeOp::Dense => format!("dense {}-{}", h.in_shape[0], h.out_shape[0]),
            NodeOp::MaxPool => format!("maxpool {kh}x{kw}"),
            NodeOp::AvgPool => format!("avgpool {kh}x{kw}"),
            NodeOp::GlobalAvgPool => "global avgpool".to_string(),
            NodeOp::Add => format!("add {}+{}", h.inputs[0], h.inputs[1]),
            NodeOp::Input => "input".to_string(),
        });
    }
    parts.join(", ")
}

/// The fine-tuning images and labels (`cargo xtask test-images`).
const FINETUNE_DATA: [&str; 4] = [
    "finetune-train-images.bin",
    "finetune-train-labels.bin",
    "finetune-eval-images.bin",
    "finetune-eval-labels.bin",
];
/// The host's CRCs of the fine-tuned head and model
/// (`EMBER_UPDATE_FINETUNE=1 cargo test -p ember-firmware host_finetuning`).
const FINETUNE_CRCS: [&str; 2] = ["finetune-head.crc32", "finetune-model.crc32"];

/// Copies the fine-tuning data of the model set in `dir` and the host's
/// CRCs to `out`, and tells the host test where the CRCs go
/// (`EMBER_FIRMWARE_MODELS_DIR`). A missing CRC is copied as an empty file:
/// the host test that writes it runs this build (`EMBER_UPDATE_FINETUNE`).
fn finetune_data(dir: &Path, out: &Path) {
    for name in FINETUNE_DATA.iter().chain(&FINETUNE_CRCS) {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(_) if FINETUNE_CRCS.contains(name) => Vec::new(),
            Err(e) => panic!(
                "{}: {e}; `cargo xtask test-images` writes the images and `EMBER_UPDATE_FINETUNE=1 cargo test -p ember-firmware` the CRCs",
                path.display()
            ),
        };
        fs::write(out.join(name), bytes).expect("write fine-tuning data");
    }
    let dir = fs::canonicalize(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    println!(
        "cargo:rustc-env=EMBER_FIRMWARE_MODELS_DIR={}",
        dir.display()
    );
}

/// Where the fine-tuned model goes back to on the host (through semihosting
/// under QEMU, an ordinary file in a host build): `EMBER_FINETUNED_OUT`, by
/// default `target/ember-finetuned.emb` in the workspace. Its directory is
/// made here, so that the firmware only has to open the file.
fn finetuned_path() {
    println!("cargo:rerun-if-env-changed=EMBER_FINETUNED_OUT");
    let path = match env::var_os("EMBER_FINETUNED_OUT") {
        Some(p) => PathBuf::from(p),
        None => {
            let manifest =
                env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
            let manifest = Path::new(&manifest);
            manifest
                .parent()
                .unwrap_or(manifest)
                .join("target/ember-finetuned.emb")
        }
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    let path = path.to_str().expect("EMBER_FINETUNED_OUT must be UTF-8");
    assert!(
        !path.contains('\0'),
        "EMBER_FINETUNED_OUT must not hold a NUL byte"
    );
    println!("cargo:rustc-env=EMBER_FINETUNED_PATH={path}");
}

/// The bytes of `u32` words.
fn bytemuck_bytes(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirements; the slice covers
    // exactly the words' bytes and borrows them uniquely.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 4 * words.len()) }
}

/// Copies the first `limit` (default: all) test images, their labels and the
/// host's expected outputs (a class per image for f32, `outputs` int8 logits
/// per image for int8) from `dir` to `out`, checking that the files agree on
/// the number of images.
fn test_data(dir: &Path, out: &Path, outputs: usize, limit: Option<usize>) {
    let read = |name: &str| {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; generate it with `cargo xtask test-images`",
                path.display()
            )
        })
    };
    let images = read("test-images.bin");
    assert!(
        !images.is_empty() && images.len() % PIXELS == 0,
        "test-images.bin must hold whole 28x28 images"
    );
    let count = images.len() / PIXELS;
    let keep = limit.map_or(count, |l| l.min(count));
    fs::write(out.join("test-images.bin"), &images[..keep * PIXELS]).expect("write images");
    for (name, per) in [
        ("test-labels.bin", 1),
        ("expected-f32.bin", 1),
        ("expected-int8.bin", outputs),
    ] {
        let bytes = read(name);
        assert_eq!(
            bytes.len(),
            count * per,
            "{name} has {} bytes for {count} images ({per} each); regenerate with `cargo xtask test-images`",
            bytes.len()
        );
        fs::write(out.join(name), &bytes[..keep * per]).expect("write test data");
    }
}

/// Copies a data file's model's held-out rows (little-endian `f32`,
/// `inputs` per row), the host's outputs (`outputs` f32 and `outputs` int8
/// bytes per row) and, for a classifier, the rows' labels from `dir` to
/// `out`: all of them, or as many rows as `limit` bytes hold. Checks that
/// the files agree on the number of rows.
fn test_rows(dir: &Path, out: &Path, inputs: usize, outputs: usize, limit: Option<usize>) {
    let read = |name: &str| {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; generate it with `cargo xtask test-rows`",
                path.display()
            )
        })
    };
    let rows = read(ROWS_FILE);
    let row_bytes = 4 * inputs;
    assert!(
        !rows.is_empty() && rows.len() % row_bytes == 0,
        "{ROWS_FILE} must hold whole rows of {inputs} f32 features ({row_bytes} bytes)"
    );
    let count = rows.len() / row_bytes;
    let keep = limit.map_or(count, |l| (l / row_bytes).clamp(1, count));
    fs::write(out.join(ROWS_FILE), &rows[..keep * row_bytes]).expect("write rows");
    let classify = dir.join("test-labels.bin").is_file();
    if classify {
        println!("cargo:rustc-cfg=rows_classify");
    }
    let mut files = vec![
        ("expected-f32.bin", 4 * outputs),
        ("expected-int8.bin", outputs),
    ];
    if classify {
        files.push(("test-labels.bin", 1));
    }
    for (name, per) in files {
        let bytes = read(name);
        assert_eq!(
            bytes.len(),
            count * per,
            "{name} has {} bytes for {count} rows ({per} each); regenerate with `cargo xtask test-rows`",
            bytes.len()
        );
        fs::write(out.join(name), &bytes[..keep * per]).expect("write test data");
    }
}

/// The MLPerf Tiny mode's files (feature `mlperf`): from the directory
/// `EMBER_FIRMWARE_MODELS` (`cargo xtask mlperf --out DIR` writes it), the
/// one `mlperf-NAME-int8.emb`, checked to parse and to agree with
/// `mlperf.txt`, copied to `out` as `mlperf-int8.emb` with
/// `mlperf-inputs.bin` and `mlperf-expected.bin`; `out/mlperf.rs` holds
/// the constants the firmware sizes its buffers with. A graph file sets
/// the cfg `mlperf_graph`.
fn mlperf(out: &Path) {
    println!("cargo:rerun-if-env-changed=EMBER_FIRMWARE_MODELS");
    let Some(dir) = env::var_os("EMBER_FIRMWARE_MODELS").map(PathBuf::from) else {
        panic!("the feature `mlperf` runs the model in EMBER_FIRMWARE_MODELS: set it to the directory `cargo xtask mlperf --model ad|kws|ic --out DIR` wrote")
    };
    println!("cargo:rerun-if-changed={}", dir.display());
    let read = |name: &str| {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; `cargo xtask mlperf --out {}` writes it",
                path.display(),
                dir.display()
            )
        })
    };
    let meta = String::from_utf8(read("mlperf.txt")).expect("mlperf.txt is UTF-8");
    let field = |key: &str| {
        meta.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("mlperf.txt has no `{key}` line"))
            .trim()
            .to_string()
    };
    let name = field("name");
    let number = |key: &str| {
        field(key)
            .parse::<usize>()
            .unwrap_or_else(|e| panic!("mlperf.txt: {key}: {e}"))
    };
    let (macs, inputs, outputs) = (number("macs"), number("inputs"), number("outputs"));
    let file = format!("mlperf-{name}-int8.emb");
    let bytes = read(&file);
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    let aligned = bytemuck_bytes(&mut words);
    aligned[..bytes.len()].copy_from_slice(&bytes);
    let aligned = &aligned[..bytes.len()];
    let (arch, io, scratch, graph) = match Model::parse(aligned) {
        Ok(m) => {
            let layers: Vec<String> = m
                .layers()
                .map(|(h, _)| format!("dense {}-{}", h.in_features, h.out_features))
                .collect();
            assert!(m.is_int8(), "{file}: not an int8 file");
            (
                layers.join(", "),
                (m.input_features(), m.output_features()),
                m.scratch_len(),
                false,
            )
        }
        Err(FormatError::GraphFile) => {
            let g = GraphModel::parse(aligned).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(g.is_int8(), "{file}: not an int8 file");
            (
                describe_graph(&g),
                (g.input_features(), g.output_features()),
                g.scratch_len(),
                true,
            )
        }
        Err(e) => panic!("{file}: {e}"),
    };
    assert_eq!(
        io,
        (inputs, outputs),
        "{file} and mlperf.txt disagree on the inputs and outputs"
    );
    let test_inputs = read("mlperf-inputs.bin");
    let expected = read("mlperf-expected.bin");
    let count = test_inputs.len() / inputs;
    assert!(
        count > 0 && test_inputs.len() == count * inputs && expected.len() == count * outputs,
        "mlperf-inputs.bin ({} bytes) and mlperf-expected.bin ({} bytes) must hold the same number of inputs of {inputs} and outputs of {outputs} bytes",
        test_inputs.len(),
        expected.len()
    );
    if graph {
        println!("cargo:rustc-cfg=mlperf_graph");
    }
    fs::write(out.join("mlperf-int8.emb"), &bytes).expect("copy the model");
    fs::write(out.join("mlperf-inputs.bin"), &test_inputs).expect("copy the inputs");
    fs::write(out.join("mlperf-expected.bin"), &expected).expect("copy the outputs");
    assert!(
        name.bytes().all(|b| b.is_ascii_lowercase()),
        "mlperf.txt: name `{name}`"
    );
    let src = format!(
        "// Generated by firmware-example/build.rs from mlperf.txt and the int8 file. Do not edit.\n\
         /// The model's name (`ad`, `kws`, `ic`).\npub const NAME: &str = {name:?};\n\
         /// Multiply-adds of one inference.\npub const MACS: usize = {macs};\n\
         /// Input features (int8 bytes per test input).\npub const INPUTS: usize = {inputs};\n\
         /// Outputs (int8 bytes per test input).\npub const OUTPUTS: usize = {outputs};\n\
         /// Scratch bytes of an int8 inference (the file's `scratch_len`).\npub const SCRATCH: usize = {scratch};\n\
         /// The layers.\npub const ARCHITECTURE: &str = {arch:?};\n"
    );
    fs::write(out.join("mlperf.rs"), src).expect("write mlperf.rs");
}
