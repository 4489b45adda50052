//! Compiles every kernel source with NVRTC, to PTX and to machine code for
//! several GPU generations. Needs libnvrtc (no GPU, no driver):
//!
//! ```sh
//! pip download --no-deps nvidia-cuda-nvrtc-cu12 && unzip nvidia_cuda_nvrtc_cu12-*.whl -d nvrtc
//! LD_LIBRARY_PATH=$PWD/nvrtc/nvidia/cuda_nvrtc/lib \
//!     cargo test -p ember-cuda --test nvrtc -- --ignored --nocapture
//! ```
//!
//! Ignored by default, as CI machines have no libnvrtc; without it the test
//! fails with the typed `MissingLibrary` error (it does not skip, since it
//! only runs when asked for).

use ember_cuda::kernels::{self, SOURCES};
use ember_cuda::{CudaError, Image, Target};

#[test]
#[ignore = "needs libnvrtc on the library search path"]
fn nvrtc_compiles_all_kernels() {
    // PTX for NVRTC's default architecture, then CUBIN for Volta, Ampere,
    // Ada and Hopper (what the backend asks for on such a device).
    let targets = [
        Target::Ptx(None),
        Target::Ptx(Some((7, 0))),
        Target::Cubin(7, 0),
        Target::Cubin(8, 0),
        Target::Cubin(8, 6),
        Target::Cubin(8, 9),
        Target::Cubin(9, 0),
    ];
    for src in &SOURCES {
        for target in targets {
            let image = kernels::compile(src, target).unwrap_or_else(|e| panic!("{e}"));
            match &image {
                Image::Ptx(ptx) => {
                    for k in src.kernels {
                        assert!(
                            ptx.contains(&format!(".entry {k}(")),
                            "{}: no entry {k} in the PTX",
                            src.file
                        );
                    }
                    println!("{:<13} {target:?}: {} bytes of PTX", src.file, ptx.len());
                }
                Image::Cubin(bin) => {
                    assert_eq!(&bin[..4], b"\x7fELF", "{}: not an ELF cubin", src.file);
                    for k in src.kernels {
                        assert!(
                            bin.windows(k.len()).any(|w| w == k.as_bytes()),
                            "{}: no symbol {k} in the cubin",
                            src.file
                        );
                    }
                    println!("{:<13} {target:?}: {} bytes of CUBIN", src.file, bin.len());
                }
            }
        }
    }
}

/// A compile error comes back as `CudaError::Compile` with NVRTC's log.
#[test]
#[ignore = "needs libnvrtc on the library search path"]
fn nvrtc_reports_compile_errors() {
    let broken = kernels::KernelSource {
        file: "broken.cu",
        source: "extern \"C\" __global__ void k(float* p) { p[0] = undefined_name; }",
        kernels: &["k"],
    };
    match kernels::compile(&broken, Target::Ptx(None)) {
        Err(CudaError::Compile { file, log }) => {
            assert_eq!(file, "broken.cu");
            assert!(log.contains("undefined_name"), "{log}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}
