//! Bare-metal builds only: puts the chosen `memory.x` on the linker's search
//! path and links the binary with `cortex-m-rt`'s `link.x` and defmt's
//! `defmt.x`. The link arguments apply to this package's binary and nothing
//! else, so other crates built for the same target are unaffected.
//!
//! Memory maps: `boards/stm32f411/memory.x` with the `stm32f411` feature;
//! otherwise QEMU's machines, `memory.x` (mps2-an386, Cortex-M4F) or, for
//! Cortex-M0 (`thumbv6m-none-eabi`), `boards/microbit/memory.x`, which also
//! sets the `cortex_m0` cfg.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(cortex_m0)");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let m0 = env::var("TARGET").is_ok_and(|t| t.starts_with("thumbv6m"));
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
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy(memory, out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
}
