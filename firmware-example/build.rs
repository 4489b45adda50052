//! Chooses what the firmware embeds, and for bare-metal builds the memory map.
//!
//! Models: the cfgs `model_f32` and `model_int8` are set from the features
//! `f32-model` and `int8-model`, except that Cortex-M0 (`thumbv6m-none-eabi`,
//! QEMU's micro:bit with 256 KiB of flash) never gets the f32 model: its
//! 437,732 bytes do not fit. With a model, the test data of `models/` is
//! copied into `OUT_DIR` for `include_bytes!`: all of it, or on Cortex-M0 the
//! first [`M0_IMAGES`] images, so that the int8 model, the images and the XOR
//! training fit the micro:bit's flash together.
//!
//! Bare metal: puts the chosen `memory.x` on the linker's search path and
//! links the binary with `cortex-m-rt`'s `link.x` and defmt's `defmt.x`. The
//! link arguments apply to this package's binary and nothing else, so other
//! crates built for the same target are unaffected. Memory maps:
//! `boards/stm32f411/memory.x` with the `stm32f411` feature; otherwise QEMU's
//! machines, `memory.x` (mps2-an386, Cortex-M4F) or, for Cortex-M0,
//! `boards/microbit/memory.x`, which also sets the `cortex_m0` cfg.

use std::{env, fs, path::Path, path::PathBuf};

/// Test images a Cortex-M0 build embeds (784 bytes each).
const M0_IMAGES: usize = 80;
/// Bytes per image (28 × 28 pixels).
const PIXELS: usize = 784;
/// Classes: the int8 logits per image in `expected-int8.bin`.
const CLASSES: usize = 10;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(cortex_m0)");
    println!("cargo::rustc-check-cfg=cfg(model_f32)");
    println!("cargo::rustc-check-cfg=cfg(model_int8)");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bare_metal = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none");
    let m0 = bare_metal && env::var("TARGET").is_ok_and(|t| t.starts_with("thumbv6m"));

    let f32_model = env::var_os("CARGO_FEATURE_F32_MODEL").is_some() && !m0;
    let int8_model = env::var_os("CARGO_FEATURE_INT8_MODEL").is_some();
    if f32_model {
        println!("cargo:rustc-cfg=model_f32");
    }
    if int8_model {
        println!("cargo:rustc-cfg=model_int8");
    }
    if f32_model || int8_model {
        test_data(&out, if m0 { Some(M0_IMAGES) } else { None });
    }

    if !bare_metal {
        return;
    }
    if m0 {
        println!("cargo:rustc-cfg=cortex_m0");
    }
    let memory = if env::var_os("CARGO_FEATURE_STM32F411").is_some() {
        "boards/stm32f411/memory.x"
    } else if m0 {
        "boards/microbit/memory.x"
    } else {
        "memory.x"
    };
    println!("cargo:rerun-if-changed={memory}");
    fs::copy(memory, out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}

/// Copies the first `limit` (default: all) test images, their labels and the
/// host's expected outputs from `models/` to `out`, checking that the files
/// agree on the number of images.
fn test_data(out: &Path, limit: Option<usize>) {
    let read = |name: &str| {
        let path = Path::new("models").join(name);
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
        "models/test-images.bin must hold whole 28x28 images"
    );
    let count = images.len() / PIXELS;
    let keep = limit.map_or(count, |l| l.min(count));
    fs::write(out.join("test-images.bin"), &images[..keep * PIXELS]).expect("write images");
    // Bytes per image: a class, or the int8 model's CLASSES logits.
    for (name, per) in [
        ("test-labels.bin", 1),
        ("expected-f32.bin", 1),
        ("expected-int8.bin", CLASSES),
    ] {
        let bytes = read(name);
        assert_eq!(
            bytes.len(),
            count * per,
            "models/{name} has {} bytes for {count} images ({per} each); regenerate with `cargo xtask test-images`",
            bytes.len()
        );
        fs::write(out.join(name), &bytes[..keep * per]).expect("write test data");
    }
}
