//! Compiles every kernel source with NVRTC, to PTX and to machine code for
//! several GPU generations. Needs libnvrtc of CUDA 12 or 13 (no GPU, no
//! driver), which the backend finds by name on the library search path or by
//! full path in a directory listed in `EMBER_CUDA_LIB_DIR` (then also
//! `$CUDA_PATH/lib64`, `$CUDA_HOME/lib64`, `/usr/local/cuda/lib64`). With the
//! CUDA 13 wheel that PyTorch's cu130 builds install:
//!
//! ```sh
//! EMBER_CUDA_LIB_DIR=$(python -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))') \
//!     cargo test -p ember-nn-cuda --test nvrtc -- --ignored --nocapture
//! ```
//!
//! or with a CUDA 12 NVRTC by name:
//!
//! ```sh
//! pip download --no-deps nvidia-cuda-nvrtc-cu12 && unzip nvidia_cuda_nvrtc_cu12-*.whl -d nvrtc
//! LD_LIBRARY_PATH=$PWD/nvrtc/nvidia/cuda_nvrtc/lib \
//!     cargo test -p ember-nn-cuda --test nvrtc -- --ignored --nocapture
//! ```
//!
//! NVRTC loads `libnvrtc-builtins.so.<version>` from its own directory at the
//! first compile, so that file must stay next to libnvrtc (it does in the
//! toolkit and the wheels); nothing else needs to be on the search path.
//!
//! Ignored by default, as CI machines have no libnvrtc; without it the tests
//! fail with the typed `MissingLibrary` error (they do not skip, since they
//! only run when asked for).

use ember_nn_cuda::kernels::{self, SOURCES};
use ember_nn_cuda::{CudaError, Image, Target};

/// Targets every NVRTC of CUDA 12 and 13 compiles for: PTX for NVRTC's
/// default architecture and for Turing, CUBIN for Turing, Ampere, Ada and
/// Hopper (what the backend asks for on such a device).
const TARGETS: [Target; 7] = [
    Target::Ptx(None),
    Target::Ptx(Some((7, 5))),
    Target::Cubin(7, 5),
    Target::Cubin(8, 0),
    Target::Cubin(8, 6),
    Target::Cubin(8, 9),
    Target::Cubin(9, 0),
];

/// Targets compiled when this NVRTC knows them: Volta, dropped by CUDA 13,
/// and Blackwell, added in CUDA 12.8.
const IF_KNOWN: [Target; 4] = [
    Target::Ptx(Some((7, 0))),
    Target::Cubin(7, 0),
    Target::Cubin(10, 0),
    Target::Cubin(12, 0),
];

#[test]
#[ignore = "needs libnvrtc (see the file's docs)"]
fn nvrtc_compiles_all_kernels() {
    for src in &SOURCES {
        for (target, required) in TARGETS
            .iter()
            .map(|t| (*t, true))
            .chain(IF_KNOWN.iter().map(|t| (*t, false)))
        {
            let image = match kernels::compile(src, target) {
                Ok(image) => image,
                Err(CudaError::Compile { log, .. })
                    if !required && log.contains("invalid value for --gpu-architecture") =>
                {
                    println!("{:<13} {target:?}: not known to this NVRTC", src.file);
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
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
#[ignore = "needs libnvrtc (see the file's docs)"]
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
