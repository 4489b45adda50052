//! Sets the `ember_dsp` cfg on targets with the Armv7E-M DSP extension
//! (`SXTB16`, `SMLAD`: Cortex-M4 and M7, `thumbv7em-*`), whose int8 kernels use
//! it, and `ember_thumb1` on Armv6-M (Cortex-M0/M0+, `thumbv6m-*`). Stable
//! Rust does not expose `target_feature = "dsp"` to `cfg`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ember_dsp)");
    println!("cargo::rustc-check-cfg=cfg(ember_thumb1)");
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") {
        println!("cargo:rustc-cfg=ember_dsp");
    }
    // Armv6-M (Cortex-M0/M0+): only the low registers for most
    // instructions; the two-row int8 loop is written in assembly there.
    if target.starts_with("thumbv6m") {
        println!("cargo:rustc-cfg=ember_thumb1");
    }
}
