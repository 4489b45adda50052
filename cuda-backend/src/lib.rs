//! # ember-nn-cuda
//!
//! An [`ember_nn_core::Backend`] whose memory is an NVIDIA GPU's: the same model
//! types, layers, losses, optimizers and training loop as on the CPU, with
//! every tensor, gradient and optimizer state in device memory.
//!
//! ```no_run
//! use ember_nn_core::backend::Device;
//! use ember_nn_core::prelude::*;
//! use ember_nn_cuda::CudaBackend;
//!
//! let cuda = CudaBackend::new(0)?; // a typed error, never a panic, without a GPU
//! let mut buf = cuda.alloc(1 << 20)?; // 1 Mi floats of zeroed device memory
//! let mut mem = Memory::new(&cuda, &mut buf);
//! let g = Graph::new(&mut mem);
//! let a = g.tensor([2.0f32, 3.0]).requires_grad();
//! let q = a.pow(3.0) * 3.0;
//! q.backward_with(&[1.0, 1.0])?;
//! assert_eq!(a.grad()?, Some([36.0, 81.0]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## How it works
//!
//! - **Memory.** A [`CudaBuffer`] is one device allocation of floats
//!   ([`Device::alloc`]); ember-nn-core's
//!   [`Memory`](ember_nn_core::Memory) carves parameters and graph scratch out of
//!   it as [`Span`]s, exactly as it does a host slice.
//! - **Kernels.** Each [`Backend`] method family is a CUDA C kernel in
//!   `cuda-backend/kernels/*.cu` ([`kernels::SOURCES`]), embedded in the
//!   library and compiled by NVRTC the first time it runs (for the device's
//!   own architecture, so the driver loads machine code without JIT), then
//!   cached for the backend's life. The formulas are ember-nn-core's
//!   ([`Map`], [`Zip`], [`Update`]), so results match the CPU reference within
//!   float rounding; the conformance suite
//!   (`ember_nn_core::backend::conformance`, feature `conformance`) checks every kernel.
//! - **GEMM** is cuBLAS' `cublasSgemmStridedBatched` (see
//!   [`CudaBackend::gemm`](Backend::gemm) for the row-major derivation).
//!   cuBLAS' default math mode is kept: full FP32, no TF32, unless the
//!   environment sets `NVIDIA_TF32_OVERRIDE=1`.
//! - **Fused kernels.** A hidden layer and its activation
//!   ([`Tensor::linear_act`](ember_nn_core::Tensor::linear_act), which `Mlp`
//!   uses) is one cuBLAS GEMM and one epilogue kernel that adds the bias and
//!   applies the activation in place ([`Backend::bias_act`]); its backward
//!   turns the output gradient into the pre-activation gradient in place
//!   ([`Backend::act_backward`]). Softmax and cross-entropy are one kernel
//!   each way ([`Backend::cross_entropy`], one thread or, from 256 classes,
//!   one block per row). Each optimizer update (SGD with momentum, Adam,
//!   AdamW, RMSprop, Adagrad) is one kernel per parameter that reads and
//!   writes every element's parameter, gradient and state once.
//! - **Ordering.** All work of a backend goes to one CUDA stream, in order.
//!   Kernels are asynchronous; [`Backend::download`] waits for the stream, so
//!   whatever a host reads reflects every kernel queued before.
//! - **Uploads.** [`Backend::upload`] copies the host data into one of three
//!   pinned (page-locked) staging buffers of 4 MiB, allocated as uploads
//!   first need them, queues an asynchronous copy from there on the stream
//!   and records an event after it; larger uploads go through the buffers in
//!   4 MiB chunks, round-robin. The call returns once the data is staged:
//!   the caller may reuse its slice at once, and the copy runs on the device
//!   after the kernels queued before it while the host goes on. It blocks
//!   only when the buffer it needs next still has a copy in flight (that
//!   buffer's event is waited for first). Uploads under 16 KiB are queued
//!   straight from the caller's memory, which the driver stages itself
//!   without blocking. Downloads wait for the stream anyway and copy into the
//!   caller's memory directly.
//! - **Errors.** [`CudaBackend::new`] returns a [`CudaError`] when the driver
//!   library is missing, no device exists, or the device cannot be opened. A
//!   failing kernel returns [`ember_nn_core::Error::Backend`] (or
//!   [`OutOfMemory`](ember_nn_core::Error::OutOfMemory)), whose code and message
//!   are the CUDA error's (the message cut to
//!   [`Message::CAPACITY`](ember_nn_core::Message::CAPACITY) bytes; no side
//!   channel). [`CudaBackend::warm_up`] returns the whole [`CudaError`] of a
//!   missing library or a compile error, with NVRTC's log.
//!
//! ## Run-time requirements
//! Nothing CUDA is needed to build (cudarc's `dynamic-loading`, bindings of
//! the CUDA 13.0 API). To run: an NVIDIA driver (libcuda), NVRTC and cuBLAS
//! of CUDA 13 (`libnvrtc.so.13`, `libcublas.so.13` with `libcublasLt.so.13`)
//! or CUDA 12 (`.so.12`). The two libraries are opened on first use, so a
//! program that never runs a GEMM does not need cuBLAS. Each is looked for:
//!
//! 1. by name, on the library search path (`LD_LIBRARY_PATH`, the loader's
//!    cache): `libnvrtc.so`, `libnvrtc.so.13`, `libnvrtc.so.12`, older ones;
//! 2. failing that, by full path, as `libnvrtc.so.13`, `.so.12` or `.so`, in
//!    each directory listed in the `EMBER_CUDA_LIB_DIR` environment variable
//!    (colon-separated), then `$CUDA_PATH/lib64`, `$CUDA_HOME/lib64`,
//!    `/usr/local/cuda/lib64` and `/usr/local/cuda/targets/<arch>-linux/lib`.
//!    The file found is loaded and kept loaded (with the libraries beside it
//!    that it needs: NVRTC's `libnvrtc-builtins.so.*`, cuBLAS' libcublasLt),
//!    so no search path needs setting. For PyTorch's CUDA 13 wheels, that is
//!    `EMBER_CUDA_LIB_DIR=<site-packages>/nvidia/cu13/lib`.
//!
//! A library found nowhere is [`CudaError::MissingLibrary`], with these
//! places in its hint. Code compiled by NVRTC 13 is meant for a CUDA 13
//! driver (R580 or newer); with an older driver, use CUDA 12's NVRTC. CUDA 13
//! no longer compiles for Volta (`sm_70`): such GPUs need CUDA 12 too.
//!
//! ## Not yet
//! - The bias + activation epilogue is a kernel of its own after the GEMM,
//!   not a cuBLASLt epilogue inside it; a training step is still about
//!   twenty launches (no CUDA graphs), which dominates at small batches.
//! - Reductions along a non-contiguous axis use one thread or one block per
//!   output position; a tiled two-dimensional reduction would read memory
//!   better for long axes with a large inner size.
//! - One device per backend; no CUDA graphs, no TF32 or half precision.
//!
//! ## Testing without a GPU
//! `cargo test` runs everywhere. Without a device, the tests that need one
//! print `skipping: no CUDA device: …` and pass, and `CudaBackend::new` is
//! checked to return [`CudaError::NoDriver`] or [`CudaError::NoDevice`]. The
//! kernels themselves are still exercised: the unit tests compile
//! `kernels/*.cu` as host C++ (with `emulator/cuda_host.hpp` standing in for
//! CUDA's device environment, and a reference SGEMM with cuBLAS' argument
//! rules) and run ember-nn-core's conformance suite and a training run through
//! this backend's own launch code. `tests/nvrtc.rs` (ignored by default)
//! compiles every source with NVRTC when libnvrtc is available.
//!
//! All cudarc calls go through one private module (`sys`), so that cudarc's
//! API changes touch one file.

#![deny(missing_docs)]

#[cfg(test)]
mod emulator;
mod error;
pub mod kernels;
mod sys;

use std::sync::OnceLock;

use ember_nn_core::backend::check::{
    blocks_extent, check_axis, check_cross_entropy, check_gemm, check_max_backward, check_rows,
    check_softmax, check_transpose, check_update, disjoint, numel, same_len,
};
#[cfg(any(test, feature = "conformance"))]
use ember_nn_core::backend::conformance::Call;
use ember_nn_core::backend::Map;
use ember_nn_core::backend::Update;
use ember_nn_core::backend::Zip;
use ember_nn_core::backend::{Acc, AxisDims, Backend, Blocks, Device, Gemm, Reduce, Span};
use ember_nn_core::backend::{WindowCall, WindowKernel};
use ember_nn_core::{Error, Result};

pub use error::CudaError;
pub use sys::{Image, Target};

use kernels::{File, UpdateParams, WindowParams, BLOCK, SOURCES};
use sys::{Arg, ColumnMajorGemm, DeviceFloats, Dims, Gpu, Module};

/// Device memory of one [`CudaBackend`]: a wrapper around cudarc's
/// `CudaSlice<f32>`, the [`Backend::Buffer`] that tensors live in.
///
/// Create it with [`Device::alloc`]; it is freed when dropped (after the work
/// queued on its stream).
pub struct CudaBuffer {
    mem: Mem,
    len: usize,
}

/// The memory behind a [`CudaBuffer`].
enum Mem {
    Device(DeviceFloats),
    /// Host memory of the test-only emulator.
    #[cfg(test)]
    Host(Vec<f32>),
}

/// Where a backend's work runs.
enum Exec {
    Gpu(Gpu),
    /// The kernels compiled for the host by a C++ compiler, so that the
    /// tests of machines without a GPU run them too (see `emulator`).
    #[cfg(test)]
    Emulator(emulator::Emulator),
}

impl Exec {
    fn gpu(&self) -> Option<&Gpu> {
        match self {
            Exec::Gpu(gpu) => Some(gpu),
            #[cfg(test)]
            Exec::Emulator(_) => None,
        }
    }
}

impl CudaBuffer {
    /// Floats in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the buffer holds no floats.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Debug for CudaBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CudaBuffer")
            .field("len", &self.len)
            .finish()
    }
}

impl AsRef<CudaBuffer> for CudaBuffer {
    fn as_ref(&self) -> &CudaBuffer {
        self
    }
}

impl AsMut<CudaBuffer> for CudaBuffer {
    fn as_mut(&mut self) -> &mut CudaBuffer {
        self
    }
}

/// The CUDA backend: one GPU, one stream, the kernels compiled for it.
///
/// Implements [`Backend`] (the kernels) and [`Device`] (allocating device
/// memory). A [`CudaBuffer`] works only with the backend that allocated it.
pub struct CudaBackend {
    exec: Exec,
    grid: GridLimits,
    ordinal: usize,
    name: String,
    /// One compiled module per kernel source, built on first use.
    modules: [OnceLock<core::result::Result<Module, CudaError>>; SOURCES.len()],
    /// The cuBLAS handle, created at the first GEMM.
    blas: OnceLock<core::result::Result<sys::Blas, CudaError>>,
}

impl core::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("name", &self.name)
            .field("capability", &self.compute_capability())
            .finish_non_exhaustive()
    }
}

const FOREIGN_BUFFER: Error = Error::InvalidArgument {
    what: "the buffer was allocated by another CUDA backend",
};

fn acc_code(acc: Acc) -> Arg {
    Arg::I32(match acc {
        Acc::Set => 0,
        Acc::Add => 1,
    })
}

/// A map's function code and its two parameters, the last arguments of
/// every `map.cu` kernel.
fn map_fn(f: Map) -> [Arg; 3] {
    let (code, p0, p1) = kernels::map_code(f);
    [Arg::I32(code), Arg::F32(p0), Arg::F32(p1)]
}

fn off(s: Span) -> Arg {
    Arg::U64(s.offset as u64)
}

fn size(n: usize) -> Arg {
    Arg::U64(n as u64)
}

/// The most blocks a launch asks for along each grid dimension; every kernel
/// loops over the work beyond its grid, so these are tuning knobs, bounded by
/// the hardware's limits (2³¹ − 1 along x, 65 535 along y and z).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GridLimits {
    /// Along x.
    x: usize,
    /// Along y and z.
    yz: usize,
}

impl GridLimits {
    /// What a GPU gets: far more blocks than it runs at once, so that a
    /// launch fills the device, within every dimension's limit.
    const GPU: GridLimits = GridLimits {
        x: 65_535,
        yz: 65_535,
    };

    /// A one-dimensional launch over `n` items: `BLOCK` threads per block,
    /// and enough blocks to give each item a thread, up to the limit.
    fn dims_1d(self, n: usize) -> Dims {
        Dims {
            grid: (n.div_ceil(BLOCK as usize).clamp(1, self.x) as u32, 1, 1),
            block: (BLOCK, 1, 1),
        }
    }

    /// One block per output position, up to the limit.
    fn dims_per_position(self, positions: usize) -> Dims {
        Dims {
            grid: (positions.clamp(1, self.x) as u32, 1, 1),
            block: (BLOCK, 1, 1),
        }
    }

    /// 32 × 8 threads per 32 × 32 tile: tile columns along x, tile rows
    /// along y, matrices along z.
    fn dims_tiles(self, batch: usize, rows: usize, cols: usize) -> Dims {
        Dims {
            grid: (
                cols.div_ceil(32).clamp(1, self.x) as u32,
                rows.div_ceil(32).clamp(1, self.yz) as u32,
                batch.clamp(1, self.yz) as u32,
            ),
            block: (32, 8, 1),
        }
    }
}

/// Whether an axis kernel should give each output position a whole block
/// (long axes with few positions, or a contiguous axis, where one thread per
/// position would read memory with a stride) rather than one thread.
fn block_per_position(d: AxisDims) -> bool {
    d.len >= BLOCK as usize && (d.inner == 1 || d.outer * d.inner < 8192)
}

/// `rows` rows of `classes` floats, seen as an axis kernel's dimensions.
fn rows_of(rows: usize, classes: usize) -> AxisDims {
    AxisDims {
        outer: rows,
        len: classes,
        inner: 1,
    }
}

fn to_i32(v: usize, what: &'static str) -> core::result::Result<i32, CudaError> {
    i32::try_from(v).map_err(|_| CudaError::TooLarge { what })
}

impl CudaBackend {
    /// The kernel (`first`: one thread per output position, `first + 1`:
    /// one block per position, for long axes) and launch dimensions of an
    /// axis kernel.
    fn axis_launch(&self, d: AxisDims, first: usize) -> (usize, Dims) {
        let positions = d.outer * d.inner;
        if block_per_position(d) {
            (first + 1, self.grid.dims_per_position(positions))
        } else {
            (first, self.grid.dims_1d(positions))
        }
    }

    /// Opens CUDA device `ordinal`.
    ///
    /// Fails with a [`CudaError`], and never panics, when the driver library
    /// cannot be loaded ([`CudaError::NoDriver`]), when there is no such
    /// device ([`CudaError::NoDevice`]), or when the driver refuses. NVRTC
    /// and cuBLAS are loaded later, at the first kernel that needs them; call
    /// [`warm_up`](Self::warm_up) to load and compile everything now.
    pub fn new(ordinal: usize) -> core::result::Result<Self, CudaError> {
        let gpu = Gpu::open(ordinal)?;
        let name = format!("cuda:{ordinal} ({})", gpu.name);
        Ok(Self::with(Exec::Gpu(gpu), GridLimits::GPU, ordinal, name))
    }

    fn with(exec: Exec, grid: GridLimits, ordinal: usize, name: String) -> Self {
        CudaBackend {
            exec,
            grid,
            ordinal,
            name,
            modules: Default::default(),
            blas: OnceLock::new(),
        }
    }

    /// A backend whose kernels run on the host, compiled from the same CUDA
    /// C by a C++ compiler (`None`, with a message, without one). With
    /// `small_grids`, launches get at most 3 blocks along x and 2 along y
    /// and z, so that every kernel's loops over the work beyond its grid run.
    #[cfg(test)]
    pub(crate) fn emulated(small_grids: bool) -> Option<Self> {
        let grid = if small_grids {
            GridLimits { x: 3, yz: 2 }
        } else {
            GridLimits::GPU
        };
        match emulator::Emulator::build() {
            Ok(e) => Some(Self::with(
                Exec::Emulator(e),
                grid,
                0,
                "emulated cuda (host)".into(),
            )),
            Err(emulator::BuildError::NoCompiler(e)) => {
                eprintln!("skipping: no C++ compiler for the kernel emulator: {e}");
                None
            }
            Err(emulator::BuildError::Failed(e)) => panic!("the kernel emulator: {e}"),
        }
    }

    /// Number of CUDA devices; [`CudaError::NoDriver`] without a driver.
    pub fn device_count() -> core::result::Result<usize, CudaError> {
        sys::device_count()
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The device's compute capability, `(major, minor)`.
    pub fn compute_capability(&self) -> (u32, u32) {
        match &self.exec {
            Exec::Gpu(g) => g.capability,
            #[cfg(test)]
            Exec::Emulator(_) => (0, 0),
        }
    }

    /// Compiles every kernel and creates the cuBLAS handle now, rather than
    /// at first use, so that a missing library or a compile error shows up
    /// here.
    pub fn warm_up(&self) -> core::result::Result<(), CudaError> {
        let Some(gpu) = self.exec.gpu() else {
            return Ok(()); // the emulator compiles nothing at run time
        };
        for file in File::ALL {
            self.module(gpu, file)?;
        }
        self.blas(gpu)?;
        Ok(())
    }

    /// Waits until every queued kernel and copy has finished; reports a
    /// fault of an earlier kernel.
    pub fn synchronize(&self) -> core::result::Result<(), CudaError> {
        match &self.exec {
            Exec::Gpu(g) => g.synchronize(),
            #[cfg(test)]
            Exec::Emulator(_) => Ok(()),
        }
    }

    /// Converts a CUDA error for a `Backend` method's result.
    fn fail(&self, e: CudaError) -> Error {
        Error::from(e)
    }

    /// The compiled module of `file`, compiling and loading it on first use.
    fn module(&self, gpu: &Gpu, file: File) -> core::result::Result<&Module, CudaError> {
        let slot = &self.modules[file as usize];
        slot.get_or_init(|| self.build(gpu, file))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Compiles `file` for this device and loads it. Machine code for the
    /// device's own architecture is tried first: it needs no JIT, and works
    /// with a driver older than NVRTC (PTX from a newer NVRTC would not load).
    /// If NVRTC does not know the architecture (a GPU newer than NVRTC), PTX
    /// is tried, for the architecture and then for NVRTC's default, and the
    /// driver compiles it.
    fn build(&self, gpu: &Gpu, file: File) -> core::result::Result<Module, CudaError> {
        let src = &SOURCES[file as usize];
        let (major, minor) = gpu.capability;
        let mut first_err = None;
        for target in [
            Target::Cubin(major, minor),
            Target::Ptx(Some((major, minor))),
            Target::Ptx(None),
        ] {
            let loaded = sys::compile(src.file, src.source, target)
                .and_then(|image| gpu.load(&image, src.kernels));
            match loaded {
                Ok(m) => return Ok(m),
                // Without NVRTC no target will do.
                Err(e @ CudaError::MissingLibrary { .. }) => return Err(e),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.expect("at least one target was tried"))
    }

    fn blas(&self, gpu: &Gpu) -> core::result::Result<&sys::Blas, CudaError> {
        self.blas
            .get_or_init(|| gpu.blas())
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Checks that `buf` is this backend's, that every span lies in it, and
    /// that no output overlaps an input or another output (inputs may
    /// overlap each other): core's check, which the host backends make too.
    fn check(&self, buf: &CudaBuffer, ins: &[Span], outs: &[Span]) -> Result<()> {
        let ours = match (&self.exec, &buf.mem) {
            (Exec::Gpu(g), Mem::Device(d)) => g.owns(d),
            #[cfg(test)]
            (Exec::Emulator(_), Mem::Host(_)) => true,
            #[cfg(test)]
            _ => false,
        };
        if !ours {
            return Err(FOREIGN_BUFFER);
        }
        disjoint(buf.len, ins, outs)
    }

    /// Launches kernel `kernel` of `file`'s list with the buffer and `args`.
    fn launch(
        &self,
        buf: &mut CudaBuffer,
        file: File,
        kernel: usize,
        dims: Dims,
        args: &[Arg],
    ) -> Result<()> {
        let done = match (&self.exec, &mut buf.mem) {
            (Exec::Gpu(gpu), Mem::Device(mem)) => {
                let module = self.module(gpu, file).map_err(|e| self.fail(e))?;
                gpu.launch(module.function(kernel), dims, mem, args)
            }
            #[cfg(test)]
            (Exec::Emulator(e), Mem::Host(mem)) => {
                e.launch(SOURCES[file as usize].kernels[kernel], dims, mem, args)
            }
            #[cfg(test)]
            _ => return Err(FOREIGN_BUFFER),
        };
        done.map_err(|e| self.fail(e))
    }

    /// Sets `len` floats at `offset` to `+0.0` (a memset, no kernel).
    fn zero(&self, buf: &mut CudaBuffer, offset: usize, len: usize) -> Result<()> {
        let done = match (&self.exec, &mut buf.mem) {
            (Exec::Gpu(gpu), Mem::Device(mem)) => gpu.zero(mem, offset, len),
            #[cfg(test)]
            (Exec::Emulator(_), Mem::Host(mem)) => {
                mem[offset..offset + len].fill(0.0);
                Ok(())
            }
            #[cfg(test)]
            _ => return Err(FOREIGN_BUFFER),
        };
        done.map_err(|e| self.fail(e))
    }

    /// Runs a column-major strided batched SGEMM (cuBLAS on a GPU).
    fn sgemm(&self, buf: &mut CudaBuffer, g: &ColumnMajorGemm) -> Result<()> {
        let done = match (&self.exec, &mut buf.mem) {
            (Exec::Gpu(gpu), Mem::Device(mem)) => {
                let blas = self.blas(gpu).map_err(|e| self.fail(e))?;
                gpu.sgemm(blas, mem, g)
            }
            #[cfg(test)]
            (Exec::Emulator(e), Mem::Host(mem)) => e.sgemm(mem, g),
            #[cfg(test)]
            _ => return Err(FOREIGN_BUFFER),
        };
        done.map_err(|e| self.fail(e))
    }
}

/// Conformance cases beyond ember-nn-core's list
/// ([`conformance::cases`](ember_nn_core::backend::conformance::cases)) that
/// reach this backend's other code paths: the block-per-position forms of
/// the axis kernels (long axes, with and without an inner dimension, and an
/// empty axis) and copies whose destination blocks overlap (the serial
/// kernel). Run each with
/// [`conformance::check_case`](ember_nn_core::backend::conformance::check_case).
#[cfg(any(test, feature = "conformance"))]
pub fn extra_conformance_cases() -> impl Iterator<Item = Call> {
    use ember_nn_core::backend::conformance::Dist;
    let ax = |outer, len, inner| AxisDims { outer, len, inner };
    let axes = [ax(3, 300, 5), ax(2, 1000, 1), ax(40, 256, 1), ax(2, 0, 3)];
    let dists = [
        Dist::Uniform(-1.0, 1.0),
        Dist::Ints(-3.0, 3.0),
        Dist::SomeNans(-1.0, 1.0),
    ];
    let axis = axes.into_iter().flat_map(move |dims| {
        let reduce = [Reduce::Sum, Reduce::Max, Reduce::ArgMax]
            .into_iter()
            .flat_map(move |op| {
                [Acc::Set, Acc::Add].into_iter().flat_map(move |acc| {
                    dists.into_iter().map(move |dist| Call::Reduce {
                        op,
                        dims,
                        acc,
                        dist,
                    })
                })
            });
        let max = dists
            .into_iter()
            .map(move |dist| Call::MaxBackward { dims, dist });
        let softmax = [false, true].into_iter().flat_map(move |log| {
            [
                Call::Softmax { dims, log },
                Call::SoftmaxBackward { dims, log },
            ]
        });
        reduce.chain(max).chain(softmax)
    });
    let copy = [(5, 4, 4, 2), (6, 3, 1, 0), (3, 5, 0, 1)]
        .into_iter()
        .flat_map(|(blocks, block_len, src_stride, dst_stride)| {
            [Acc::Set, Acc::Add].map(|acc| Call::Copy {
                blocks,
                block_len,
                src_stride,
                dst_stride,
                acc,
            })
        });
    axis.chain(copy)
}

impl Drop for CudaBackend {
    /// Waits for the queued work before the compiled modules are unloaded.
    fn drop(&mut self) {
        let _ = self.synchronize();
    }
}

impl File {
    const ALL: [File; SOURCES.len()] = [
        File::Fill,
        File::Copy,
        File::Map,
        File::Zip,
        File::Reduce,
        File::Expand,
        File::Softmax,
        File::Transpose,
        File::Update,
        File::Window,
    ];
}

impl Device for CudaBackend {
    type Storage = CudaBuffer;

    /// `floats` zeroed floats of device memory; a device out of memory is
    /// [`Error::OutOfMemory`].
    fn alloc(&self, floats: usize) -> Result<CudaBuffer> {
        numel(&[floats, 4])?;
        let mem = match &self.exec {
            Exec::Gpu(gpu) => Mem::Device(gpu.alloc_zeros(floats).map_err(|e| self.fail(e))?),
            #[cfg(test)]
            Exec::Emulator(_) => Mem::Host(vec![0.0; floats]),
        };
        Ok(CudaBuffer { mem, len: floats })
    }

    /// `"cuda:<ordinal> (<device name>)"`.
    fn name(&self) -> &str {
        &self.name
    }
}

impl Backend for CudaBackend {
    type Buffer = CudaBuffer;

    fn buffer_len(&self, buf: &CudaBuffer) -> usize {
        buf.len
    }

    fn upload(&self, buf: &mut CudaBuffer, dst: Span, src: &[f32]) -> Result<()> {
        same_len(&[dst, Span::new(0, src.len())])?;
        self.check(buf, &[], &[dst])?;
        let done = match (&self.exec, &mut buf.mem) {
            (Exec::Gpu(gpu), Mem::Device(mem)) => gpu.upload(mem, dst.offset, src),
            #[cfg(test)]
            (Exec::Emulator(_), Mem::Host(mem)) => {
                mem[dst.offset..dst.end()].copy_from_slice(src);
                Ok(())
            }
            #[cfg(test)]
            _ => return Err(FOREIGN_BUFFER),
        };
        done.map_err(|e| self.fail(e))
    }

    fn download(&self, buf: &CudaBuffer, src: Span, dst: &mut [f32]) -> Result<()> {
        same_len(&[src, Span::new(0, dst.len())])?;
        self.check(buf, &[src], &[])?;
        let done = match (&self.exec, &buf.mem) {
            (Exec::Gpu(gpu), Mem::Device(mem)) => gpu.download(mem, src.offset, dst),
            #[cfg(test)]
            (Exec::Emulator(_), Mem::Host(mem)) => {
                dst.copy_from_slice(&mem[src.offset..src.end()]);
                Ok(())
            }
            #[cfg(test)]
            _ => return Err(FOREIGN_BUFFER),
        };
        done.map_err(|e| self.fail(e))
    }

    fn fill(&self, buf: &mut CudaBuffer, dst: Span, value: f32) -> Result<()> {
        self.check(buf, &[], &[dst])?;
        if dst.len == 0 {
            return Ok(());
        }
        if value.to_bits() == 0 {
            // +0.0 is all zero bits: a memset, no kernel (and no NVRTC).
            return self.zero(buf, dst.offset, dst.len);
        }
        self.launch(
            buf,
            File::Fill,
            0,
            self.grid.dims_1d(dst.len),
            &[off(dst), size(dst.len), Arg::F32(value)],
        )
    }

    fn copy(&self, buf: &mut CudaBuffer, b: &Blocks) -> Result<()> {
        let src = blocks_extent(b.src, b.src_stride, b.blocks, b.block_len)?;
        let dst = blocks_extent(b.dst, b.dst_stride, b.blocks, b.block_len)?;
        self.check(buf, &[src], &[dst])?;
        let n = numel(&[b.blocks, b.block_len])?;
        if n == 0 {
            return Ok(());
        }
        // Destination blocks that overlap each other are copied in order by
        // one thread; the graph never asks for that.
        let serial = b.blocks > 1 && b.dst_stride < b.block_len;
        let (kernel, dims) = if serial {
            (
                1,
                Dims {
                    grid: (1, 1, 1),
                    block: (1, 1, 1),
                },
            )
        } else {
            (0, self.grid.dims_1d(n))
        };
        self.launch(
            buf,
            File::Copy,
            kernel,
            dims,
            &[
                off(src),
                size(b.src_stride),
                off(dst),
                size(b.dst_stride),
                size(b.blocks),
                size(b.block_len),
                acc_code(b.acc),
            ],
        )
    }

    fn map(&self, buf: &mut CudaBuffer, f: Map, x: Span, y: Span) -> Result<()> {
        same_len(&[x, y])?;
        self.check(buf, &[x], &[y])?;
        if x.len == 0 {
            return Ok(());
        }
        let [code, p0, p1] = map_fn(f);
        self.launch(
            buf,
            File::Map,
            0,
            self.grid.dims_1d(x.len),
            &[off(x), off(y), size(x.len), code, p0, p1],
        )
    }

    fn map_backward(
        &self,
        buf: &mut CudaBuffer,
        f: Map,
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
    ) -> Result<()> {
        same_len(&[x, y, dy, dx])?;
        self.check(buf, &[x, y, dy], &[dx])?;
        if x.len == 0 {
            return Ok(());
        }
        let [code, p0, p1] = map_fn(f);
        self.launch(
            buf,
            File::Map,
            1,
            self.grid.dims_1d(x.len),
            &[off(x), off(y), off(dy), off(dx), size(x.len), code, p0, p1],
        )
    }

    /// The epilogue of a fused linear layer: one pass over the GEMM's output.
    fn bias_act(&self, buf: &mut CudaBuffer, f: Map, bias: Span, y: Span) -> Result<()> {
        check_rows(y, bias.len)?;
        self.check(buf, &[bias], &[y])?;
        if y.len == 0 {
            return Ok(());
        }
        let [code, p0, p1] = map_fn(f);
        self.launch(
            buf,
            File::Map,
            2,
            self.grid.dims_1d(y.len),
            &[off(bias), off(y), size(y.len), size(bias.len), code, p0, p1],
        )
    }

    fn act_backward(&self, buf: &mut CudaBuffer, f: Map, y: Span, dy: Span) -> Result<()> {
        same_len(&[y, dy])?;
        self.check(buf, &[y], &[dy])?;
        if y.len == 0 {
            return Ok(());
        }
        let [code, p0, p1] = map_fn(f);
        self.launch(
            buf,
            File::Map,
            3,
            self.grid.dims_1d(y.len),
            &[off(y), off(dy), size(y.len), code, p0, p1],
        )
    }

    fn zip(&self, buf: &mut CudaBuffer, f: Zip, a: Span, b: Span, y: Span) -> Result<()> {
        same_len(&[a, b, y])?;
        self.check(buf, &[a, b], &[y])?;
        if a.len == 0 {
            return Ok(());
        }
        self.launch(
            buf,
            File::Zip,
            0,
            self.grid.dims_1d(a.len),
            &[
                off(a),
                off(b),
                off(y),
                size(a.len),
                Arg::I32(kernels::zip_code(f)),
            ],
        )
    }

    fn zip_backward(
        &self,
        buf: &mut CudaBuffer,
        f: Zip,
        rhs: bool,
        a: Span,
        b: Span,
        dy: Span,
        d: Span,
    ) -> Result<()> {
        same_len(&[a, b, dy, d])?;
        self.check(buf, &[a, b, dy], &[d])?;
        if a.len == 0 {
            return Ok(());
        }
        self.launch(
            buf,
            File::Zip,
            1,
            self.grid.dims_1d(a.len),
            &[
                off(a),
                off(b),
                off(dy),
                off(d),
                size(a.len),
                Arg::I32(kernels::zip_code(f)),
                Arg::I32(rhs as i32),
            ],
        )
    }

    /// `c (+)= op(a) · op(b)` for `batch` row-major products, with one
    /// `cublasSgemmStridedBatched`.
    ///
    /// cuBLAS is column-major. A row-major `r × c` matrix (leading dimension
    /// `c`) read column-major is its transpose, `c × r`, with the same
    /// leading dimension. So the row-major product `C = op(A)·op(B)` (`m × n`)
    /// is, column-major, `Cᵀ = op(B)ᵀ·op(A)ᵀ` (`n × m`, leading dimension
    /// `n`): cuBLAS gets `B` as its first operand and `A` as its second, and
    /// computes an `n × m × k` product:
    ///
    /// - `B` stored `[k, n]` reads as `Bᵀ = op(B)ᵀ` (`n × k`): no transpose,
    ///   leading dimension `n`. Stored `[n, k]` (`trans_b`, `op(B)` = storedᵀ)
    ///   it reads as `op(B)` (`k × n`), so cuBLAS transposes it: leading
    ///   dimension `k`.
    /// - `A` stored `[m, k]` reads as `Aᵀ = op(A)ᵀ` (`k × m`): no transpose,
    ///   leading dimension `k`. Stored `[k, m]` (`trans_a`) it reads as
    ///   `op(A)` (`m × k`), so cuBLAS transposes it: leading dimension `m`.
    ///
    /// Products are `m·k`, `k·n` and `m·n` floats apart. [`Acc::Set`] is
    /// `beta = 0` (cuBLAS then never reads `c`, so stale NaNs do not leak)
    /// and [`Acc::Add`] is `beta = 1`. With `k = 0` the product is zero: `c`
    /// is cleared (`Set`) or left alone (`Add`) without calling cuBLAS.
    fn gemm(&self, buf: &mut CudaBuffer, batch: usize, g: &Gemm) -> Result<()> {
        check_gemm(batch, g)?;
        self.check(buf, &[g.a, g.b], &[g.c])?;
        if batch == 0 || g.m == 0 || g.n == 0 {
            return Ok(());
        }
        if g.k == 0 {
            return match g.acc {
                Acc::Set => self.zero(buf, g.c.offset, batch * g.m * g.n),
                Acc::Add => Ok(()),
            };
        }
        let args = (|| {
            Ok::<_, CudaError>(ColumnMajorGemm {
                trans_a: g.trans_b,
                trans_b: g.trans_a,
                m: to_i32(g.n, "gemm n")?,
                n: to_i32(g.m, "gemm m")?,
                k: to_i32(g.k, "gemm k")?,
                a: g.b.offset,
                lda: if g.trans_b { g.k as i32 } else { g.n as i32 },
                stride_a: (g.k * g.n) as i64,
                b: g.a.offset,
                ldb: if g.trans_a { g.m as i32 } else { g.k as i32 },
                stride_b: (g.m * g.k) as i64,
                beta: match g.acc {
                    Acc::Set => 0.0,
                    Acc::Add => 1.0,
                },
                c: g.c.offset,
                ldc: g.n as i32,
                stride_c: (g.m * g.n) as i64,
                batch: to_i32(batch, "gemm batch")?,
            })
        })()
        .map_err(|e| self.fail(e))?;
        self.sgemm(buf, &args)
    }

    fn reduce(
        &self,
        buf: &mut CudaBuffer,
        op: Reduce,
        x: Span,
        y: Span,
        d: AxisDims,
        acc: Acc,
    ) -> Result<()> {
        check_axis(x, y, d)?;
        self.check(buf, &[x], &[y])?;
        let positions = d.outer * d.inner;
        if positions == 0 {
            return Ok(());
        }
        let (kernel, dims) = self.axis_launch(d, 0);
        self.launch(
            buf,
            File::Reduce,
            kernel,
            dims,
            &[
                off(x),
                off(y),
                size(d.outer),
                size(d.len),
                size(d.inner),
                Arg::I32(kernels::reduce_code(op)),
                acc_code(acc),
            ],
        )
    }

    fn expand(&self, buf: &mut CudaBuffer, x: Span, y: Span, d: AxisDims, acc: Acc) -> Result<()> {
        check_axis(y, x, d)?;
        self.check(buf, &[x], &[y])?;
        if y.len == 0 {
            return Ok(());
        }
        self.launch(
            buf,
            File::Expand,
            0,
            self.grid.dims_1d(y.len),
            &[
                off(x),
                off(y),
                size(d.outer),
                size(d.len),
                size(d.inner),
                acc_code(acc),
            ],
        )
    }

    fn max_backward(
        &self,
        buf: &mut CudaBuffer,
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
        d: AxisDims,
    ) -> Result<()> {
        check_max_backward(x, y, dy, dx, d)?;
        self.check(buf, &[x, y, dy], &[dx])?;
        let positions = d.outer * d.inner;
        if positions == 0 {
            return Ok(());
        }
        let (kernel, dims) = self.axis_launch(d, 2);
        self.launch(
            buf,
            File::Reduce,
            kernel,
            dims,
            &[
                off(x),
                off(y),
                off(dy),
                off(dx),
                size(d.outer),
                size(d.len),
                size(d.inner),
            ],
        )
    }

    fn softmax(
        &self,
        buf: &mut CudaBuffer,
        x: Span,
        y: Span,
        d: AxisDims,
        log: bool,
    ) -> Result<()> {
        check_softmax(&[x, y], d)?;
        let numel = x.len;
        self.check(buf, &[x], &[y])?;
        if numel == 0 {
            return Ok(());
        }
        let (kernel, dims) = self.axis_launch(d, 0);
        self.launch(
            buf,
            File::Softmax,
            kernel,
            dims,
            &[
                off(x),
                off(y),
                size(d.outer),
                size(d.len),
                size(d.inner),
                Arg::I32(log as i32),
            ],
        )
    }

    fn softmax_backward(
        &self,
        buf: &mut CudaBuffer,
        y: Span,
        dy: Span,
        dx: Span,
        d: AxisDims,
        log: bool,
    ) -> Result<()> {
        check_softmax(&[y, dy, dx], d)?;
        let numel = y.len;
        self.check(buf, &[y, dy], &[dx])?;
        if numel == 0 {
            return Ok(());
        }
        let (kernel, dims) = self.axis_launch(d, 2);
        self.launch(
            buf,
            File::Softmax,
            kernel,
            dims,
            &[
                off(y),
                off(dy),
                off(dx),
                size(d.outer),
                size(d.len),
                size(d.inner),
                Arg::I32(log as i32),
            ],
        )
    }

    /// One thread per row, or one block per row for 256 classes or more.
    fn cross_entropy(
        &self,
        buf: &mut CudaBuffer,
        x: Span,
        targets: Span,
        loss: Span,
        classes: usize,
    ) -> Result<()> {
        check_cross_entropy(x, targets, loss, None, classes)?;
        self.check(buf, &[x, targets], &[loss])?;
        if loss.len == 0 {
            return Ok(());
        }
        let (kernel, dims) = self.axis_launch(rows_of(loss.len, classes), 4);
        self.launch(
            buf,
            File::Softmax,
            kernel,
            dims,
            &[
                off(x),
                off(targets),
                off(loss),
                size(loss.len),
                size(classes),
            ],
        )
    }

    fn cross_entropy_backward(
        &self,
        buf: &mut CudaBuffer,
        x: Span,
        targets: Span,
        dloss: Span,
        dx: Span,
        classes: usize,
    ) -> Result<()> {
        check_cross_entropy(x, targets, dloss, Some(dx), classes)?;
        self.check(buf, &[x, targets, dloss], &[dx])?;
        if dloss.len == 0 || classes == 0 {
            return Ok(());
        }
        let (kernel, dims) = self.axis_launch(rows_of(dloss.len, classes), 6);
        self.launch(
            buf,
            File::Softmax,
            kernel,
            dims,
            &[
                off(x),
                off(targets),
                off(dloss),
                off(dx),
                size(dloss.len),
                size(classes),
            ],
        )
    }

    fn transpose(
        &self,
        buf: &mut CudaBuffer,
        x: Span,
        y: Span,
        batch: usize,
        rows: usize,
        cols: usize,
        acc: Acc,
    ) -> Result<()> {
        check_transpose(x, y, batch, rows, cols)?;
        let n = batch * rows * cols;
        self.check(buf, &[x], &[y])?;
        if n == 0 {
            return Ok(());
        }
        let dims = self.grid.dims_tiles(batch, rows, cols);
        self.launch(
            buf,
            File::Transpose,
            0,
            dims,
            &[
                off(x),
                off(y),
                size(batch),
                size(rows),
                size(cols),
                acc_code(acc),
            ],
        )
    }

    /// One gather kernel per call (`window.cu`): a thread per output float
    /// loops over what lands there, so no atomics and no order of threads
    /// in the result.
    fn window(&self, buf: &mut CudaBuffer, call: &WindowCall) -> Result<()> {
        call.check()?;
        self.check(buf, &[call.x, call.dy], &[call.out])?;
        if call.out.len == 0 {
            return Ok(());
        }
        let params = Arg::Window(WindowParams::of(&call.window));
        let (kernel, args) = match call.kernel {
            WindowKernel::Unfold => (0, vec![off(call.x), off(call.out), params]),
            WindowKernel::Fold => (1, vec![off(call.x), off(call.out), params]),
            WindowKernel::MaxPool => (2, vec![off(call.x), off(call.out), params]),
            WindowKernel::MaxPoolBackward => {
                (3, vec![off(call.x), off(call.dy), off(call.out), params])
            }
        };
        let dims = self.grid.dims_1d(call.out.len);
        self.launch(buf, File::Window, kernel, dims, &args)
    }

    /// One fused kernel per parameter: each element's parameter, gradient
    /// and state are read once and written once.
    fn update(
        &self,
        buf: &mut CudaBuffer,
        rule: &Update,
        param: Span,
        grad: Span,
        state: Span,
    ) -> Result<()> {
        check_update(rule, param, grad, state)?;
        self.check(buf, &[grad], &[param, state])?;
        if param.len == 0 {
            return Ok(());
        }
        self.launch(
            buf,
            File::Update,
            0,
            self.grid.dims_1d(param.len),
            &[
                off(param),
                off(grad),
                off(state),
                size(param.len),
                Arg::Update(UpdateParams::from_rule(rule)),
            ],
        )
    }
}
