//! Test-only: the kernels of `kernels/*.cu`, compiled as host C++ (with
//! `emulator/cuda_host.hpp` standing in for CUDA's device environment) and
//! run on the CPU, so that machines without a GPU still run the real kernel
//! sources, the host code that launches them, and the conformance suite.
//!
//! What it checks: every kernel's indexing, bounds, barriers and formulas;
//! the argument lists the host passes (through a `void**` array, as
//! `cuLaunchKernel` takes them, so the `UpdateParams` layout is exercised);
//! the launch dimensions; and the row-major to column-major GEMM mapping, run
//! on a reference SGEMM with cuBLAS' argument rules. What it cannot check:
//! the GPU's own math library, real concurrency between blocks, cudarc and
//! cuBLAS themselves.
//!
//! The C++ compiler is `$CXX`, or `c++`. The tests that use the emulator skip
//! with a message when there is none, and fail if the kernels do not compile.

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::fmt::Write as _;
use std::process::Command;
use std::sync::OnceLock;

use crate::error::CudaError;
use crate::kernels::SOURCES;
use crate::sys::{Arg, ColumnMajorGemm, Dims};

type LaunchFn = unsafe extern "C" fn(
    name: *const c_char,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    args: *mut *mut c_void,
) -> c_int;

/// The compiled kernels, loaded into this process.
pub(crate) struct Emulator {
    launch: LaunchFn,
}

/// Kernels that call `__syncthreads()` and need their threads run as fibers.
fn uses_barriers(kernel: &str) -> bool {
    kernel.ends_with("_block") || kernel == "ember_transpose"
}

/// The C++ translation unit: the prelude, each source in its own namespace
/// (their helpers share names), and a launcher that finds a kernel by name.
fn translation_unit() -> String {
    let mut tu = String::from(include_str!("../emulator/cuda_host.hpp"));
    for (i, src) in SOURCES.iter().enumerate() {
        let _ = write!(
            tu,
            "\nnamespace src{i} {{\n#line 1 \"{}\"\n{}\n}}\n",
            src.file, src.source
        );
    }
    tu.push_str(
        "\nextern \"C\" int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz,\n\
         unsigned bx, unsigned by, unsigned bz, void** args) {\n\
         emu_dim3 grid = {gx, gy, gz}, block = {bx, by, bz};\n",
    );
    for (i, src) in SOURCES.iter().enumerate() {
        for k in src.kernels {
            let _ = writeln!(
                tu,
                "    if (!strcmp(name, \"{k}\")) return emu::run_grid(grid, block, \
                 emu::bind(&src{i}::{k}, args), {});",
                uses_barriers(k)
            );
        }
    }
    tu.push_str("    return emu::UNKNOWN_KERNEL;\n}\n");
    tu
}

/// Why the emulator could not be built.
#[derive(Clone, Debug)]
pub(crate) enum BuildError {
    /// There is no C++ compiler: the tests skip.
    NoCompiler(String),
    /// The kernels did not compile or load as host code: the tests fail.
    Failed(String),
}

/// Compiles and loads the library once per process.
fn library() -> Result<&'static libloading::Library, BuildError> {
    static LIB: OnceLock<Result<libloading::Library, BuildError>> = OnceLock::new();
    LIB.get_or_init(|| {
        let failed = |e: &dyn std::fmt::Display| BuildError::Failed(e.to_string());
        let dir =
            std::env::temp_dir().join(format!("ember-nn-cuda-emulator-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| failed(&e))?;
        let cpp = dir.join("kernels.cpp");
        let so = dir.join("libkernels.so");
        std::fs::write(&cpp, translation_unit()).map_err(|e| failed(&e))?;
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let out = Command::new(&cxx)
            .args(["-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC"])
            .args(["-Wall", "-Wno-unused-function", "-o"])
            .arg(&so)
            .arg(&cpp)
            .output()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                BuildError::NoCompiler(format!("{cxx}: {e}"))
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(BuildError::Failed(format!(
                "{cxx} failed on {}:\n{stderr}",
                cpp.display()
            )));
        }
        if !stderr.trim().is_empty() {
            eprintln!("{cxx} warned about the emulated kernels:\n{stderr}");
        }
        // SAFETY: a library just built from our own sources; its only
        // initialisers are those of its static variables.
        let lib = unsafe { libloading::Library::new(&so) }.map_err(|e| failed(&e))?;
        // Loaded: the files are no longer needed.
        let _ = std::fs::remove_dir_all(&dir);
        Ok(lib)
    })
    .as_ref()
    .map_err(Clone::clone)
}

impl Emulator {
    /// Builds the kernels for the host (once per process).
    pub(crate) fn build() -> Result<Emulator, BuildError> {
        let lib = library()?;
        // SAFETY: `emu_launch` is defined by the translation unit with this signature.
        let launch = unsafe { lib.get::<LaunchFn>(b"emu_launch") }
            .map_err(|e| BuildError::Failed(e.to_string()))?;
        Ok(Emulator { launch: *launch })
    }

    /// Runs `kernel` over the grid with `mem` as its buffer and `args` after it.
    pub(crate) fn launch(
        &self,
        kernel: &str,
        dims: Dims,
        mem: &mut [f32],
        args: &[Arg],
    ) -> Result<(), CudaError> {
        // The emulator's state is global: one launch at a time.
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let name = CString::new(kernel).expect("kernel names have no NUL");
        let mut base = mem.as_mut_ptr();
        let mut ptrs: Vec<*mut c_void> = vec![(&mut base as *mut *mut f32).cast()];
        for a in args {
            ptrs.push(match a {
                Arg::U64(v) => (v as *const u64).cast_mut().cast(),
                Arg::I32(v) => (v as *const i32).cast_mut().cast(),
                Arg::F32(v) => (v as *const f32).cast_mut().cast(),
                Arg::Update(v) => (v as *const crate::kernels::UpdateParams).cast_mut().cast(),
                Arg::Window(v) => (v as *const crate::kernels::WindowParams).cast_mut().cast(),
            });
        }
        let (g, b) = (dims.grid, dims.block);
        // SAFETY: each pointer points at a live value of the type the
        // kernel's parameter has (the same contract as cuLaunchKernel); the
        // host checked every span against `mem` before launching.
        let rc = unsafe {
            (self.launch)(
                name.as_ptr(),
                g.0,
                g.1,
                g.2,
                b.0,
                b.1,
                b.2,
                ptrs.as_mut_ptr(),
            )
        };
        let message = match rc {
            0 => return Ok(()),
            -1 => "no such kernel",
            -2 => "divergent __syncthreads (some threads returned while others waited)",
            -3 => "__syncthreads in a kernel run without fibers (add it to uses_barriers)",
            _ => "unknown failure",
        };
        Err(CudaError::Driver {
            call: "emulated launch",
            message: format!("{kernel}: {message}"),
        })
    }

    /// `cublasSgemmStridedBatched` on the host, following cuBLAS' rules:
    /// column-major operands, `op` per transpose flag, leading dimensions at
    /// least the stored rows (else `CUBLAS_STATUS_INVALID_VALUE`), and `c`
    /// not read when `beta == 0`.
    pub(crate) fn sgemm(&self, mem: &mut [f32], g: &ColumnMajorGemm) -> Result<(), CudaError> {
        let invalid = |what: &str| CudaError::Cublas {
            call: "emulated sgemm",
            message: format!("CUBLAS_STATUS_INVALID_VALUE: {what}"),
        };
        let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
        if g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0 {
            return Err(invalid("negative size"));
        }
        let rows_a = if g.trans_a { k } else { m };
        let rows_b = if g.trans_b { n } else { k };
        if (g.lda as usize) < rows_a.max(1) {
            return Err(invalid("lda"));
        }
        if (g.ldb as usize) < rows_b.max(1) {
            return Err(invalid("ldb"));
        }
        if (g.ldc as usize) < m.max(1) {
            return Err(invalid("ldc"));
        }
        let (lda, ldb, ldc) = (g.lda as usize, g.ldb as usize, g.ldc as usize);
        for p in 0..g.batch as usize {
            let a = g.a + p * g.stride_a as usize;
            let b = g.b + p * g.stride_b as usize;
            let c = g.c + p * g.stride_c as usize;
            for j in 0..n {
                for i in 0..m {
                    let mut sum = 0.0f32;
                    for l in 0..k {
                        let av = if g.trans_a {
                            mem[a + l + i * lda]
                        } else {
                            mem[a + i + l * lda]
                        };
                        let bv = if g.trans_b {
                            mem[b + j + l * ldb]
                        } else {
                            mem[b + l + j * ldb]
                        };
                        sum += av * bv;
                    }
                    let out = &mut mem[c + i + j * ldc];
                    *out = if g.beta == 0.0 {
                        sum
                    } else {
                        sum + g.beta * *out
                    };
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::CudaBackend;
    use ember_nn_core::backend::conformance::{self, BUF_LEN};
    use ember_nn_core::backend::Device;

    /// Tolerance of the emulated conformance runs (as on a GPU).
    const TOL: f32 = 1e-4;

    /// ember-nn-core's conformance suite on the emulated kernels: every kernel
    /// source, with the host code that launches it, against the CPU
    /// reference. The tolerance is the GPU test's: a sum of 70,001 floats in
    /// the kernels' tree order differs from the reference's sequential f32
    /// sum by a few parts in 1e5 (both are rounded; neither is exact).
    #[test]
    fn emulated_kernels_conform() {
        let Some(emu) = CudaBackend::emulated(false) else {
            return;
        };
        let mut buf = emu.alloc(BUF_LEN).unwrap();
        let mut host = vec![0.0f32; BUF_LEN];
        let report = conformance::check(&emu, &mut buf, &mut host, 42, TOL)
            .unwrap_or_else(|m| panic!("{m}"));
        eprintln!(
            "emulated: {} cases, {} floats, largest difference {:e} (in {})",
            report.cases, report.values, report.max_err, report.worst
        );
    }

    /// The same, and the backend's extra cases, with grids of at most 3
    /// blocks along x and 2 along y and z, so that every kernel runs the
    /// loops that cover work beyond its grid (on a GPU, past 65 535 blocks).
    #[test]
    fn emulated_kernels_conform_with_small_grids() {
        let Some(emu) = CudaBackend::emulated(true) else {
            return;
        };
        let mut buf = emu.alloc(BUF_LEN).unwrap();
        let mut host = vec![0.0f32; BUF_LEN];
        conformance::check(&emu, &mut buf, &mut host, 43, TOL).unwrap_or_else(|m| panic!("{m}"));
        for (i, call) in crate::extra_conformance_cases().enumerate() {
            conformance::check_case(&emu, &mut buf, &mut host, 10_000 + i, call, 42, TOL)
                .unwrap_or_else(|m| panic!("{m}"));
        }
    }

    /// End to end on the emulated kernels: an MLP from `ember_nn_core::nn`
    /// trained with Adam follows the same run on the CPU reference.
    #[test]
    fn emulated_training_follows_the_cpu() {
        use ember_nn_core::backend::Backend;
        use ember_nn_core::nn::loss::{cross_entropy, Reduction};
        use ember_nn_core::nn::{self, Build, Forward, Linear, Optimizer, ReLU, Rule, Tanh};
        use ember_nn_core::prelude::*;

        type Model = (Linear<2, 16>, Tanh, Linear<16, 16>, ReLU, Linear<16, 3>);
        const N: usize = 30;
        const FLOATS: usize =
            nn::train_floats::<Model>(N, nn::loss::Loss::CrossEntropy, nn::Rule::adam());
        fn train<B: Backend>(mem: &mut Memory<'_, B>, xs: &[f32], ys: &[usize]) -> Vec<f32> {
            let mut rng = Rng::new(5);
            let model = Model::build(mem, &mut rng).unwrap();
            let mut opt: Optimizer = Optimizer::new(mem, &model, Rule::adam(), 0.03).unwrap();
            (0..60)
                .map(|_| {
                    opt.zero_grad(mem).unwrap();
                    let loss = {
                        let g = Graph::new(mem);
                        let x = g.from_slice((N, Const::<2>), xs);
                        let loss = cross_entropy(model.forward(x), ys, Reduction::Mean);
                        loss.backward().unwrap();
                        loss.item().unwrap()
                    };
                    opt.step(mem).unwrap();
                    loss
                })
                .collect()
        }

        let Some(emu) = CudaBackend::emulated(false) else {
            return;
        };
        // Three blobs.
        let mut rng = Rng::new(9);
        let ys: Vec<usize> = (0..N).map(|i| i % 3).collect();
        let xs: Vec<f32> = ys
            .iter()
            .flat_map(|&c| {
                let (cx, cy) = [(0.0, 1.0), (-1.0, -0.5), (1.0, -0.5)][c];
                [cx + 0.3 * rng.normal(), cy + 0.3 * rng.normal()]
            })
            .collect();
        let mut dbuf = emu.alloc(FLOATS).unwrap();
        let emulated = train(&mut Memory::new(&emu, &mut dbuf), &xs, &ys);
        let mut hbuf = vec![0.0f32; FLOATS];
        let cpu = train(
            &mut Memory::new(&ember_nn_core::Cpu, &mut hbuf[..]),
            &xs,
            &ys,
        );
        for (i, (e, c)) in emulated.iter().zip(&cpu).enumerate() {
            assert!((e - c).abs() < 1e-4, "step {i}: {e} vs {c}");
        }
        assert!(emulated[59] < 0.3 * emulated[0], "{emulated:?}");
    }

    /// The host-side checks (shared with the GPU path): a span outside the
    /// buffer, an output overlapping an input, mismatched lengths and
    /// overflowing sizes are errors, and nothing is launched.
    #[test]
    fn emulated_backend_rejects_bad_spans() {
        use ember_nn_core::backend::Map;
        use ember_nn_core::backend::{Acc, AxisDims, Backend, Blocks};
        use ember_nn_core::{Error, Span};

        let Some(emu) = CudaBackend::emulated(false) else {
            return;
        };
        let mut buf = emu.alloc(64).unwrap();
        emu.upload(&mut buf, Span::new(0, 8), &[1.0; 8]).unwrap();
        let invalid = |r: ember_nn_core::Result<()>| {
            assert!(
                matches!(r, Err(Error::InvalidArgument { .. })),
                "expected InvalidArgument, got {r:?}"
            )
        };
        invalid(emu.upload(&mut buf, Span::new(60, 8), &[0.0; 8]));
        invalid(emu.upload(&mut buf, Span::new(usize::MAX, 2), &[0.0; 2]));
        invalid(emu.map(&mut buf, Map::Exp, Span::new(0, 8), Span::new(60, 8)));
        invalid(emu.map(&mut buf, Map::Exp, Span::new(0, 8), Span::new(4, 8)));
        invalid(emu.map(&mut buf, Map::Exp, Span::new(0, 8), Span::new(8, 4)));
        let huge = AxisDims {
            outer: usize::MAX,
            len: 2,
            inner: 2,
        };
        invalid(emu.softmax(&mut buf, Span::new(0, 8), Span::new(8, 8), huge, false));
        // An empty axis with an overflowing number of positions.
        let empty = AxisDims {
            outer: usize::MAX,
            len: 0,
            inner: 2,
        };
        invalid(emu.reduce(
            &mut buf,
            ember_nn_core::backend::Reduce::Sum,
            Span::new(0, 0),
            Span::new(8, 8),
            empty,
            Acc::Set,
        ));
        invalid(emu.transpose(
            &mut buf,
            Span::new(0, 8),
            Span::new(8, 8),
            usize::MAX,
            2,
            2,
            Acc::Set,
        ));
        // A copy whose last block runs past its span.
        invalid(emu.copy(
            &mut buf,
            &Blocks {
                src: Span::new(0, 8),
                src_stride: 4,
                dst: Span::new(16, 32),
                dst_stride: 4,
                blocks: 3,
                block_len: 4,
                acc: Acc::Set,
            },
        ));
        // Nothing was written.
        let mut out = [0.0f32; 64];
        emu.download(&buf, Span::new(0, 64), &mut out).unwrap();
        assert_eq!(&out[..8], &[1.0; 8]);
        assert!(out[8..].iter().all(|&v| v == 0.0));
        // And the buffer still works.
        emu.map(&mut buf, Map::Exp, Span::new(8, 8), Span::new(16, 8))
            .unwrap();
        emu.download(&buf, Span::new(16, 8), &mut out[..8]).unwrap();
        assert_eq!(&out[..8], &[1.0; 8]);
    }

    /// Weights trained through this backend export to the same deployable
    /// bytes as the same weights on the CPU (the export reads them back from
    /// device memory), and the exported file, run by the deployment
    /// kernels, gives the outputs of the graph that trained it. The model
    /// is an `Mlp`, whose hidden layers are fused `linear_act` nodes, trained
    /// with the fused cross-entropy.
    #[test]
    fn emulated_training_exports_deployable_weights() {
        use ember_nn_core::backend::Backend;
        use ember_nn_core::deploy::{self, Activation, Model};
        use ember_nn_core::nn::loss::{cross_entropy, Reduction};
        use ember_nn_core::nn::{Forward, Mlp, Optimizer, Rule};
        use ember_nn_core::prelude::*;

        const N: usize = 24;
        let widths = [6, 16, 12, 4];
        let mut rng = Rng::new(3);
        let xs: Vec<f32> = (0..N * widths[0]).map(|_| rng.normal()).collect();
        let ys: Vec<usize> = (0..N).map(|i| i % 4).collect();

        /// Trains `steps` steps of SGD with momentum; the model, the bytes
        /// it exports to and the graph's logits for `xs` after training.
        fn run<B: Backend>(
            mem: &mut Memory<'_, B>,
            widths: &[usize],
            xs: &[f32],
            ys: &[usize],
            steps: usize,
        ) -> (Vec<u32>, usize, Vec<f32>) {
            let model = Mlp::new(mem, &mut Rng::new(11), widths, Activation::Relu).unwrap();
            let mut opt: Optimizer =
                Optimizer::new(mem, &model, Rule::sgd_momentum(0.9), 0.05).unwrap();
            for _ in 0..steps {
                opt.zero_grad(mem).unwrap();
                {
                    let g = Graph::new(mem);
                    let x = g.from_slice((N, widths[0]), xs);
                    let loss = cross_entropy(model.forward(x), ys, Reduction::Mean);
                    loss.backward().unwrap();
                }
                opt.step(mem).unwrap();
            }
            let in_features = widths[0];
            let len = deploy::plan(&model, mem, |p| {
                model.forward(p.input((p.rows(), in_features)))
            })
            .unwrap()
            .file_len();
            // A Vec<u32> gives the 4-byte alignment `Model::parse` needs.
            let mut words = vec![0u32; len.div_ceil(4)];
            let n = {
                // SAFETY: u8 has no alignment or validity requirements, and
                // the slice covers exactly the vector's own bytes.
                let bytes = unsafe {
                    core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 4)
                };
                let mut scratch = vec![0.0f32; 4096];
                deploy::export_f32(
                    &model,
                    mem,
                    |p| model.forward(p.input((p.rows(), in_features))),
                    bytes,
                    &mut scratch,
                )
                .unwrap()
            };
            let g = Graph::new(mem);
            let logits = model.forward(g.from_slice((N, widths[0]), xs));
            let mut out = vec![0.0; N * widths[widths.len() - 1]];
            logits.read(&mut out).unwrap();
            (words, n, out)
        }
        fn bytes(words: &[u32], n: usize) -> &[u8] {
            // SAFETY: as above, a view of the slice's own bytes.
            let all = unsafe {
                core::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 4)
            };
            &all[..n]
        }

        let Some(emu) = CudaBackend::emulated(false) else {
            return;
        };
        let floats = Mlp::param_floats(&widths) * 2 + N * 400 + 4096;
        let mut dbuf = emu.alloc(floats).unwrap();
        let mut hbuf = vec![0.0f32; floats];

        // Untrained: the same weights, so the same bytes.
        let (dev, dn, _) = run(&mut Memory::new(&emu, &mut dbuf), &widths, &xs, &ys, 0);
        let (host, hn, _) = run(&mut Memory::new(&Cpu, &mut hbuf[..]), &widths, &xs, &ys, 0);
        assert_eq!(bytes(&dev, dn), bytes(&host, hn));

        // Trained on the backend: the file parses with the layer signature,
        // and the deployment kernels reproduce the graph's logits.
        let (dev, dn, logits) = run(&mut Memory::new(&emu, &mut dbuf), &widths, &xs, &ys, 20);
        let model = Model::parse(bytes(&dev, dn)).unwrap();
        let mut scratch = vec![0.0f32; model.scratch_len()];
        for (i, row) in xs.chunks(widths[0]).enumerate() {
            let out = model.infer_f32(row, &mut scratch).unwrap();
            for (a, b) in out.iter().zip(&logits[i * 4..(i + 1) * 4]) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{out:?} vs {logits:?}"
                );
            }
        }
    }
}
