//! Turns the model file into Rust, on the host, before the firmware compiles.
//!
//! - `EMBER_MODEL` (default `model/model.emb`): the `.emb` file `ember
//!   export` wrote, f32 or int8. Its header gives the model's type, written
//!   to `OUT_DIR/model.rs` (`Net`, `INPUTS`, `OUTPUTS`, `WIDEST`,
//!   `ARCHITECTURE`, by `ember_nn_core::deploy::write_model_type`), with
//!   `INT8`, the sample `INPUT` and `EXPECTED`: what the same kernels compute
//!   for it here, which the firmware checks its own output against.
//! - `EMBER_INPUT` (default `model/input.txt`): the sample input, `INPUTS`
//!   numbers separated by spaces, commas or newlines; `#` starts a comment.
//! - Bare-metal builds link with the runtime's `link.x` and defmt's
//!   `defmt.x`. `link.x` includes `memory.x`, copied here to the linker's
//!   path from `board/memory.x`, or with the feature `qemu` from
//!   `qemu/memory.x`. (Not from this directory: the linker would take a
//!   `memory.x` here before any other.)

use ember_nn_core::deploy::Model;
use std::fmt::Write as _;
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let model_path = path_from_env("EMBER_MODEL", "model/model.emb");
    let input_path = path_from_env("EMBER_INPUT", "model/input.txt");

    // The file, 4-byte aligned as the firmware reads it, parsed and checked
    // (CRC, layout) by the same code. An int8 model written before int8
    // activations were tables (tanh, sigmoid, ... layers) is refused here:
    // the error says to quantize it again.
    let bytes = fs::read(&model_path).unwrap_or_else(|e| fail(&model_path, e));
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    // SAFETY: the words' bytes, borrowed uniquely; u8 has no alignment or validity rules.
    let aligned =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 4 * words.len()) };
    aligned[..bytes.len()].copy_from_slice(&bytes);
    let model = Model::parse(&aligned[..bytes.len()]).unwrap_or_else(|e| fail(&model_path, e));

    let text = fs::read_to_string(&input_path).unwrap_or_else(|e| fail(&input_path, e));
    let input: Vec<f32> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|e| fail(&input_path, format!("{s:?}: {e}")))
        })
        .collect();
    if input.len() != model.input_features() {
        fail(
            &input_path,
            format!(
                "{} numbers, the model takes {}",
                input.len(),
                model.input_features()
            ),
        );
    }

    // The output the firmware must reproduce: the same kernels, the same
    // IEEE arithmetic, so the same bits.
    let mut expected = vec![0.0f32; model.output_features()];
    let result = if model.is_int8() {
        let mut quantized = vec![0i8; input.len()];
        let mut scratch = vec![0i8; model.scratch_len()];
        model.infer_i8(&input, &mut quantized, &mut scratch, &mut expected)
    } else {
        let mut scratch = vec![0.0f32; model.scratch_len()];
        model
            .infer_f32(&input, &mut scratch)
            .map(|y| expected.copy_from_slice(y))
    };
    result.unwrap_or_else(|e| fail(&model_path, e));

    let mut src = String::new();
    ember_nn_core::deploy::write_model_type(&model, &mut src).unwrap();
    writeln!(src, "/// Whether the weights are int8 (else f32).").unwrap();
    writeln!(src, "pub const INT8: bool = {};", model.is_int8()).unwrap();
    writeln!(src, "/// The sample input ({}).", input_path.display()).unwrap();
    writeln!(src, "pub const INPUT: [f32; INPUTS] = {};", floats(&input)).unwrap();
    writeln!(src, "/// The host's output for `INPUT`.").unwrap();
    writeln!(
        src,
        "pub const EXPECTED: [f32; OUTPUTS] = {};",
        floats(&expected)
    )
    .unwrap();
    fs::write(out.join("model.rs"), src).unwrap();
    // For `include_bytes!` in src/main.rs.
    println!("cargo:rustc-env=EMBER_MODEL_FILE={}", model_path.display());

    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let memory = match env::var_os("CARGO_FEATURE_QEMU") {
            Some(_) => "qemu/memory.x",
            None => "board/memory.x",
        };
        fs::copy(memory, out.join("memory.x")).unwrap();
        println!("cargo:rerun-if-changed={memory}");
        println!("cargo:rustc-link-search={}", out.display());
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
}

/// The path in the environment variable `var`, or `default`, made absolute
/// (relative paths are relative to this crate's directory).
fn path_from_env(var: &str, default: &str) -> PathBuf {
    println!("cargo:rerun-if-env-changed={var}");
    let path = env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    let path = fs::canonicalize(&path).unwrap_or_else(|e| fail(&path, e));
    println!("cargo:rerun-if-changed={}", path.display());
    path
}

/// `[a, b, ...]` with every value written so that it parses back to the same bits.
fn floats(values: &[f32]) -> String {
    let items: Vec<String> = values
        .iter()
        .map(|v| match v.is_finite() {
            true => format!("{v:?}"),
            false => format!("f32::from_bits({:#x})", v.to_bits()),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn fail(path: &std::path::Path, why: impl std::fmt::Display) -> ! {
    panic!("{}: {why}", path.display())
}
