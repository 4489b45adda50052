//! The one module that calls cudarc.
//!
//! cudarc's API changes between minor versions (0.x); everything the backend
//! needs from it goes through the few functions here, so an upgrade touches
//! this file only. Everything here returns [`CudaError`] and never panics:
//!
//! - cudarc opens libcuda, libnvrtc and libcublas on first use
//!   (`dynamic-loading`) and *panics* when one is missing. Each library's
//!   presence is checked first (`is_culib_present`), and every call is also
//!   wrapped in [`guard`], which catches a panic (a missing symbol in an old
//!   driver, say) and returns [`CudaError::Panicked`]. This needs the default
//!   `panic = "unwind"`; with `panic = "abort"` such a panic would abort.
//! - NVRTC and cuBLAS not found by name are looked for by full path in a few
//!   directories ([`find_library`]) and, when found, loaded before cudarc
//!   looks for them, so that cudarc's own lookup by name finds them loaded.
//! - cudarc's multi-stream event tracking is switched off: a backend uses one
//!   stream, on which every copy, kernel and cuBLAS call is ordered.
//! - Uploads go through a small ring of pinned host buffers ([`Ring`]), each
//!   with an event (its fence) recorded after the copies queued from it.

use std::any::Any;
use std::ffi::{c_char, CString, OsString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cudarc::cublas::{self, CudaBlas};
use cudarc::driver::{
    self, CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtrMut, DeviceRepr,
    LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use cudarc::nvrtc;

use crate::error::CudaError;
use crate::kernels::{UpdateParams, WindowParams};

// SAFETY: `UpdateParams` is `#[repr(C)]`, `Copy`, and made of `i32`s and
// `f32`s only, so its bytes are exactly update.cu's `struct UpdateParams`,
// which the kernel takes by value.
unsafe impl DeviceRepr for UpdateParams {}

// SAFETY: `WindowParams` is `#[repr(C)]`, `Copy`, and sixteen `u64`s, so its
// bytes are exactly window.cu's `struct WindowParams`, taken by value.
unsafe impl DeviceRepr for WindowParams {}

/// Device memory of floats.
pub(crate) type DeviceFloats = CudaSlice<f32>;

/// Runs `f`, turning a panic inside it into [`CudaError::Panicked`].
pub(crate) fn guard<T>(
    call: &'static str,
    f: impl FnOnce() -> Result<T, CudaError>,
) -> Result<T, CudaError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(CudaError::Panicked {
            call,
            message: panic_message(payload.as_ref()),
        }),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic)".to_owned()
    }
}

fn driver_err(call: &'static str) -> impl FnOnce(driver::DriverError) -> CudaError {
    move |e| CudaError::Driver {
        call,
        message: e.to_string(),
    }
}

fn cublas_err(call: &'static str) -> impl FnOnce(cublas::result::CublasError) -> CudaError {
    move |e| CudaError::Cublas {
        call,
        message: e.to_string(),
    }
}

const NVRTC_HINT: &str = "libnvrtc.so.13 or libnvrtc.so.12 (CUDA 13 or 12), by name on \
    the library search path (LD_LIBRARY_PATH), or by full path in a directory listed in \
    EMBER_CUDA_LIB_DIR (colon-separated), $CUDA_PATH/lib64, $CUDA_HOME/lib64, \
    /usr/local/cuda/lib64 or /usr/local/cuda/targets/<arch>-linux/lib; the pip wheels ship it \
    in site-packages/nvidia/cu13/lib (CUDA 13) or nvidia/cuda_nvrtc/lib (CUDA 12)";
const CUBLAS_HINT: &str = "libcublas.so.13 or libcublas.so.12 (CUDA 13 or 12) with its \
    libcublasLt, by name on the library search path (LD_LIBRARY_PATH), or by full path in a \
    directory listed in EMBER_CUDA_LIB_DIR (colon-separated), $CUDA_PATH/lib64, \
    $CUDA_HOME/lib64, /usr/local/cuda/lib64 or /usr/local/cuda/targets/<arch>-linux/lib; the \
    pip wheels ship it in site-packages/nvidia/cu13/lib (CUDA 13) or nvidia/cublas/lib (CUDA 12)";

/// A CUDA library, other than the driver, that cudarc opens by name at its
/// first call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CudaLib {
    Nvrtc = 0,
    Cublas = 1,
}

impl CudaLib {
    /// The name between `lib` and `.so`.
    fn stem(self) -> &'static str {
        match self {
            CudaLib::Nvrtc => "nvrtc",
            CudaLib::Cublas => "cublas",
        }
    }

    /// Libraries that it opens, or needs, by name and that are opened first,
    /// by full path, from its directory `dir` (for the file name `suffix`),
    /// so that they are found even if its run path would not find them:
    /// NVRTC opens `libnvrtc-builtins.so.13.x` at its first compile, cuBLAS
    /// needs libcublasLt. (The CUDA 13 wheel's libraries have `RUNPATH
    /// $ORIGIN`, which finds them anyway; a libnvrtc without it fails to
    /// compile with "failed to open libnvrtc-builtins.so.13.x" unless they
    /// are loaded first.)
    #[cfg(unix)]
    fn companions(self, dir: &Path, suffix: &str) -> Vec<PathBuf> {
        match self {
            CudaLib::Nvrtc => {
                // `libnvrtc-builtins.so.13.2` for `.so.13`; any version for `.so`.
                let prefix = format!("libnvrtc-builtins{suffix}.");
                let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect();
                found.sort();
                found
            }
            CudaLib::Cublas => vec![dir.join(format!("libcublasLt{suffix}"))],
        }
    }

    fn hint(self) -> &'static str {
        match self {
            CudaLib::Nvrtc => NVRTC_HINT,
            CudaLib::Cublas => CUBLAS_HINT,
        }
    }

    /// Whether cudarc's lookup by name finds the library: with the
    /// `cuda-13000` feature it tries `libX.so`, `libX.so.13`, `libX.so.12`
    /// and older (`cudarc::get_lib_name_candidates`).
    fn found_by_name(self) -> bool {
        // SAFETY (both): opens the library by cudarc's candidate names, which
        // runs its initialisers, and closes it again; nothing is called.
        match self {
            CudaLib::Nvrtc => unsafe { nvrtc::sys::is_culib_present() },
            CudaLib::Cublas => unsafe { cublas::sys::is_culib_present() },
        }
    }
}

/// The environment variable naming extra directories (colon-separated) that
/// NVRTC and cuBLAS are looked for in, first, when not found by name.
pub(crate) const LIB_DIR_VAR: &str = "EMBER_CUDA_LIB_DIR";

/// The file names tried in each directory, newest first.
#[cfg(unix)]
const SUFFIXES: [&str; 3] = [".so.13", ".so.12", ".so"];

/// The directories searched, in order, when a library is not found by name:
/// each entry of `EMBER_CUDA_LIB_DIR`, `$CUDA_PATH/lib64`, `$CUDA_HOME/lib64`,
/// `/usr/local/cuda/lib64` and `/usr/local/cuda/targets/<arch>-linux/lib`.
/// `var` reads an environment variable.
fn search_dirs(var: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(list) = var(LIB_DIR_VAR) {
        dirs.extend(std::env::split_paths(&list).filter(|d| !d.as_os_str().is_empty()));
    }
    for root in ["CUDA_PATH", "CUDA_HOME"] {
        if let Some(root) = var(root).filter(|r| !r.is_empty()) {
            dirs.push(Path::new(&root).join("lib64"));
        }
    }
    dirs.push("/usr/local/cuda/lib64".into());
    let arch = if cfg!(target_arch = "aarch64") {
        "sbsa-linux"
    } else {
        "x86_64-linux"
    };
    dirs.push(format!("/usr/local/cuda/targets/{arch}/lib").into());
    dirs
}

/// Checks that cudarc will find `lib`, loading it by full path from one of
/// [`search_dirs`] when it is not found by name; [`CudaError::MissingLibrary`]
/// when it is nowhere. Decided once per process.
///
/// The library is opened with `RTLD_NOW | RTLD_GLOBAL` and kept loaded for
/// the rest of the process. cudarc then opens it by name (`libnvrtc.so.13`),
/// and glibc's `dlopen` of a name without a slash first compares it with the
/// `DT_SONAME` of the objects already loaded, so it finds this one without a
/// search path. What the library itself opens later is found through its own
/// run path or, failing that, as a library loaded earlier: NVRTC opens
/// `libnvrtc-builtins.so.13.x` by name at the first compile, which the
/// wheels' `RUNPATH $ORIGIN` finds next to libnvrtc; the builtins are loaded
/// from there first all the same ([`CudaLib::companions`]), in case a
/// libnvrtc has no such run path.
pub(crate) fn find_library(lib: CudaLib) -> Result<(), CudaError> {
    static FOUND: [OnceLock<bool>; 2] = [OnceLock::new(), OnceLock::new()];
    let found = *FOUND[lib as usize].get_or_init(|| {
        lib.found_by_name() || load_by_path(lib, &search_dirs(|v| std::env::var_os(v))).is_some()
    });
    if found {
        Ok(())
    } else {
        Err(CudaError::MissingLibrary {
            library: lib.stem(),
            hint: lib.hint(),
        })
    }
}

/// Loads `lib` from the first of `dirs` that has it under one of
/// [`SUFFIXES`]' names and keeps it loaded; returns the file loaded. A file
/// that fails to open, or that cudarc would still not find by name (its
/// `SONAME` none of cudarc's names), is passed over.
#[cfg(unix)]
fn load_by_path(lib: CudaLib, dirs: &[PathBuf]) -> Option<PathBuf> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

    /// Every library this module loaded: never closed.
    static KEPT: Mutex<Vec<Library>> = Mutex::new(Vec::new());

    let open = |path: &Path| {
        // SAFETY: opens a shared library, which runs its initialisers: the
        // CUDA library by its own file name, in a directory the user's
        // configuration names, as cudarc would by name from the search path.
        unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }.ok()
    };
    for dir in dirs {
        for suffix in SUFFIXES {
            let path = dir.join(format!("lib{}{suffix}", lib.stem()));
            if !path.is_file() {
                continue;
            }
            let companions: Vec<Library> = lib
                .companions(dir, suffix)
                .iter()
                .filter_map(|c| open(c))
                .collect();
            let Some(library) = open(&path) else {
                continue;
            };
            if lib.found_by_name() {
                let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
                kept.extend(companions);
                kept.push(library);
                return Some(path);
            }
        }
    }
    None
}

/// Loading by full path needs `dlopen`'s `SONAME` matching; elsewhere the
/// library must be found by name.
#[cfg(not(unix))]
fn load_by_path(_lib: CudaLib, _dirs: &[PathBuf]) -> Option<PathBuf> {
    None
}

/// Whether the driver library can be loaded.
pub(crate) fn driver_present() -> bool {
    // SAFETY: tries to open the library by its usual names and closes it again.
    unsafe { driver::sys::is_culib_present() }
}

/// Number of CUDA devices: an error when there is no driver, 0 when the
/// driver finds no device.
pub(crate) fn device_count() -> Result<usize, CudaError> {
    if !driver_present() {
        return Err(CudaError::NoDriver);
    }
    guard("cuDeviceGetCount", || match CudaContext::device_count() {
        Ok(n) => Ok(usize::try_from(n).unwrap_or(0)),
        Err(e) if e.0 == driver::sys::CUresult::CUDA_ERROR_NO_DEVICE => Ok(0),
        // The toolkit's link stub (stubs/libcuda.so) found instead of a driver.
        Err(e) if e.0 == driver::sys::CUresult::CUDA_ERROR_STUB_LIBRARY => Err(CudaError::NoDriver),
        Err(e) => Err(driver_err("cuInit")(e)),
    })
}

/// One device and the stream all of a backend's work is ordered on.
#[derive(Debug)]
pub(crate) struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Pinned host buffers that uploads are copied in from (allocated at the
    /// first upload that uses them). Each waits for its own copies when
    /// dropped, so it may be dropped before or after the stream.
    staging: Mutex<Ring<PinnedSlot>>,
    /// The device's name (`"NVIDIA H100 80GB HBM3"`).
    pub name: String,
    /// Compute capability `(major, minor)`.
    pub capability: (u32, u32),
}

impl Gpu {
    /// Opens device `ordinal` (its primary context) and creates a stream.
    pub(crate) fn open(ordinal: usize) -> Result<Gpu, CudaError> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        guard("CudaContext::new", || {
            let ctx = CudaContext::new(ordinal).map_err(driver_err("cuDevicePrimaryCtxRetain"))?;
            // SAFETY: the backend uses this one stream for everything, so no
            // cross-stream ordering is needed (which is what the events do).
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream().map_err(driver_err("cuStreamCreate"))?;
            let name = ctx.name().map_err(driver_err("cuDeviceGetName"))?;
            let (major, minor) = ctx
                .compute_capability()
                .map_err(driver_err("cuDeviceGetAttribute"))?;
            Ok(Gpu {
                ctx,
                stream,
                staging: Mutex::new(Ring::new(STAGING_SLOTS)),
                name,
                capability: (major.max(0) as u32, minor.max(0) as u32),
            })
        })
    }

    /// Whether `mem` was allocated on this backend's stream.
    pub(crate) fn owns(&self, mem: &DeviceFloats) -> bool {
        Arc::ptr_eq(mem.stream(), &self.stream)
    }

    /// `len` zeroed floats (at least one is allocated, so that an empty
    /// buffer is still a valid allocation).
    pub(crate) fn alloc_zeros(&self, len: usize) -> Result<DeviceFloats, CudaError> {
        guard("cuMemAlloc", || {
            self.stream
                .alloc_zeros::<f32>(len.max(1))
                .map_err(|e| match e.0 {
                    driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                        CudaError::OutOfMemory { floats: len }
                    }
                    _ => driver_err("cuMemAlloc")(e),
                })
        })
    }

    /// Copies host floats to `mem[offset..]`. The copy is queued on the
    /// stream and `src` may be reused at once.
    ///
    /// From [`SMALL_UPLOAD`] floats up, `src` is copied into pinned staging
    /// buffers ([`Ring`]: [`STAGING_SLOTS`] of [`STAGING_FLOATS`] floats,
    /// chunk by chunk) and each chunk's device copy is queued from there, a
    /// truly asynchronous DMA that does not wait for the kernels queued
    /// before it. The call waits only when it needs a buffer whose earlier
    /// copy has not finished yet. Smaller uploads are queued from `src`
    /// itself: the driver stages such small pageable copies on its own and
    /// returns at once (the CUDA programming guide lists host-to-device
    /// copies of 64 KiB or less among the asynchronous operations), so our
    /// staging would only add a host copy and an event. If no pinned memory
    /// can be had at all, uploads take that pageable path too.
    pub(crate) fn upload(
        &self,
        mem: &mut DeviceFloats,
        offset: usize,
        src: &[f32],
    ) -> Result<(), CudaError> {
        if src.is_empty() {
            return Ok(());
        }
        if src.len() >= SMALL_UPLOAD {
            let staged = guard("pinned upload", || {
                // A panic while the lock was held leaves the ring consistent:
                // a slot counts as busy from its wait until its fence is
                // recorded (see `PinnedSlot`).
                let mut ring = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
                let sent = ring.send(
                    src,
                    || PinnedSlot::new(&self.ctx, &self.stream, STAGING_FLOATS),
                    |slot, chunk, at| {
                        let staged = slot.stage(chunk)?;
                        let start = offset + at;
                        let mut dst = mem.slice_mut(start..start + chunk.len());
                        self.stream
                            .memcpy_htod(staged, &mut dst)
                            .map_err(driver_err("cuMemcpyHtoDAsync"))
                    },
                );
                Ok((sent, ring.is_empty()))
            })?;
            match staged {
                (Ok(()), _) => return Ok(()),
                // No staging buffer could be allocated, so nothing was queued
                // from one: the pageable path below does the whole upload.
                (Err(_), true) => {}
                (Err(e), false) => return Err(e),
            }
        }
        guard("cuMemcpyHtoDAsync", || {
            let mut dst = mem.slice_mut(offset..offset + src.len());
            self.stream
                .memcpy_htod(src, &mut dst)
                .map_err(driver_err("cuMemcpyHtoDAsync"))
        })
    }

    /// Copies `mem[offset..]` to host floats and waits for the stream, so
    /// that `dst` holds the result of every kernel queued before.
    pub(crate) fn download(
        &self,
        mem: &DeviceFloats,
        offset: usize,
        dst: &mut [f32],
    ) -> Result<(), CudaError> {
        if dst.is_empty() {
            return self.synchronize();
        }
        guard("cuMemcpyDtoHAsync", || {
            let src = mem.slice(offset..offset + dst.len());
            self.stream
                .memcpy_dtoh(&src, dst)
                .map_err(driver_err("cuMemcpyDtoHAsync"))?;
            self.stream
                .synchronize()
                .map_err(driver_err("cuStreamSynchronize"))
        })
    }

    /// Sets `mem[offset..offset + len]` to zero bits (`0.0`) with a memset.
    pub(crate) fn zero(
        &self,
        mem: &mut DeviceFloats,
        offset: usize,
        len: usize,
    ) -> Result<(), CudaError> {
        if len == 0 {
            return Ok(());
        }
        guard("cuMemsetD8Async", || {
            let mut dst = mem.slice_mut(offset..offset + len);
            self.stream
                .memset_zeros(&mut dst)
                .map_err(driver_err("cuMemsetD8Async"))
        })
    }

    /// Waits for everything queued on the stream. Errors of earlier kernels
    /// (an illegal address, say) surface here.
    pub(crate) fn synchronize(&self) -> Result<(), CudaError> {
        guard("cuStreamSynchronize", || {
            self.stream
                .synchronize()
                .map_err(driver_err("cuStreamSynchronize"))
        })
    }

    /// Loads a compiled module and looks up its kernels, in the order of `names`.
    pub(crate) fn load(&self, image: &Image, names: &[&str]) -> Result<Module, CudaError> {
        guard("cuModuleLoadData", || {
            let ptx = match image {
                Image::Cubin(bytes) => nvrtc::Ptx::from_binary(bytes.clone()),
                Image::Ptx(text) => nvrtc::Ptx::from_src(text.clone()),
            };
            let module = self
                .ctx
                .load_module(ptx)
                .map_err(driver_err("cuModuleLoadData"))?;
            let functions = names
                .iter()
                .map(|n| {
                    module
                        .load_function(n)
                        .map_err(driver_err("cuModuleGetFunction"))
                })
                .collect::<Result<_, _>>()?;
            Ok(Module { functions })
        })
    }

    /// Queues `f` on the stream with the buffer as its first argument and
    /// `args` after it. Launch errors are reported here; faults inside the
    /// kernel surface at the next synchronisation.
    pub(crate) fn launch(
        &self,
        f: &CudaFunction,
        dims: Dims,
        mem: &mut DeviceFloats,
        args: &[Arg],
    ) -> Result<(), CudaError> {
        guard("cuLaunchKernel", || {
            let mut launch = self.stream.launch_builder(f);
            launch.arg(mem);
            for a in args {
                match a {
                    Arg::U64(v) => launch.arg(v),
                    Arg::I32(v) => launch.arg(v),
                    Arg::F32(v) => launch.arg(v),
                    Arg::Update(v) => launch.arg(v),
                    Arg::Window(v) => launch.arg(v),
                };
            }
            let cfg = LaunchConfig {
                grid_dim: dims.grid,
                block_dim: dims.block,
                shared_mem_bytes: 0,
            };
            // SAFETY: the argument list matches the kernel's parameters (each
            // caller passes the buffer then the values its kernel declares,
            // in order and of the same types), and the host checked that every
            // offset the kernel will touch lies inside the buffer.
            unsafe { launch.launch(cfg) }
                .map(drop)
                .map_err(driver_err("cuLaunchKernel"))
        })
    }

    /// A cuBLAS handle bound to this stream.
    pub(crate) fn blas(&self) -> Result<Blas, CudaError> {
        find_library(CudaLib::Cublas)?;
        guard("cublasCreate", || {
            CudaBlas::new(self.stream.clone())
                .map(Blas)
                .map_err(cublas_err("cublasCreate"))
        })
    }

    /// `cublasSgemmStridedBatched` with cuBLAS' own (column-major) meaning
    /// of every argument; the operands are offsets into `mem`.
    pub(crate) fn sgemm(
        &self,
        blas: &Blas,
        mem: &mut DeviceFloats,
        g: &ColumnMajorGemm,
    ) -> Result<(), CudaError> {
        guard("cublasSgemmStridedBatched", || {
            self.ctx
                .bind_to_thread()
                .map_err(driver_err("cuCtxSetCurrent"))?;
            let (base, _record) = mem.device_ptr_mut(&self.stream);
            let at = |offset: usize| (base + (offset * size_of::<f32>()) as u64) as *mut f32;
            let op = |t: bool| {
                if t {
                    cublas::sys::cublasOperation_t::CUBLAS_OP_T
                } else {
                    cublas::sys::cublasOperation_t::CUBLAS_OP_N
                }
            };
            let alpha = 1.0f32;
            // SAFETY: the handle is live and bound to this stream; the host
            // checked that every product's operands lie inside `mem` for these
            // dimensions, leading dimensions and strides; alpha and beta are
            // host values (the handle's default pointer mode).
            unsafe {
                cublas::result::sgemm_strided_batched(
                    *blas.0.handle(),
                    op(g.trans_a),
                    op(g.trans_b),
                    g.m,
                    g.n,
                    g.k,
                    &alpha,
                    at(g.a),
                    g.lda,
                    g.stride_a,
                    at(g.b),
                    g.ldb,
                    g.stride_b,
                    &g.beta,
                    at(g.c),
                    g.ldc,
                    g.stride_c,
                    g.batch,
                )
            }
            .map_err(cublas_err("cublasSgemmStridedBatched"))
        })
    }
}

/// Uploads of fewer floats (16 KiB) are queued from the caller's memory.
pub(crate) const SMALL_UPLOAD: usize = 4 * 1024;
/// Floats in one pinned staging buffer: 1 Mi floats, 4 MiB. Copying 4 MiB
/// takes well over 100 µs on PCIe 4 or 5, so the per-chunk cost of a copy and
/// an event record (a few µs) is small, while the buffers stay small.
pub(crate) const STAGING_FLOATS: usize = 1 << 20;
/// Staging buffers per backend, so that up to three chunks (12 MiB) can be
/// waiting on the stream while the host fills the next: 12 MiB of pinned
/// host memory at most, allocated one buffer at a time as uploads first
/// need them.
pub(crate) const STAGING_SLOTS: usize = 3;

/// A staging buffer with a fence: host memory that device copies are queued
/// from, and a marker on the stream after the last of them.
pub(crate) trait Fenced {
    /// Floats the buffer holds.
    fn capacity(&self) -> usize;
    /// Blocks until every copy queued from the buffer has finished, so that
    /// it may be overwritten.
    fn wait(&mut self) -> Result<(), CudaError>;
    /// Marks the stream after the copy just queued from the buffer; the next
    /// [`wait`](Fenced::wait) waits for it.
    fn record(&mut self) -> Result<(), CudaError>;
}

/// A ring of staging buffers: which buffer each chunk of an upload goes
/// through, and when to wait. Pure logic; [`Gpu::upload`] supplies the
/// buffers and the copies.
#[derive(Debug)]
pub(crate) struct Ring<S> {
    /// The buffers created so far (at most `most`).
    slots: Vec<S>,
    most: usize,
    /// The buffer the next chunk goes through.
    next: usize,
}

impl<S: Fenced> Ring<S> {
    /// An empty ring of at most `most` (at least one) buffers.
    pub(crate) const fn new(most: usize) -> Self {
        Ring {
            slots: Vec::new(),
            most: if most == 0 { 1 } else { most },
            next: 0,
        }
    }

    /// Whether no buffer has been created yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sends `src` through the buffers, round-robin, in chunks of a buffer's
    /// capacity: for each chunk, waits for the buffer's fence, calls
    /// `copy(buffer, chunk, at)`, which must copy `chunk` into the buffer and
    /// queue its copy to the device at offset `at` of the upload, then
    /// records the fence. A buffer is created with `create` the first time
    /// the ring reaches it; if that fails, the ring keeps to the buffers it
    /// has (and fails when it has none). Stops at the first error.
    pub(crate) fn send(
        &mut self,
        src: &[f32],
        mut create: impl FnMut() -> Result<S, CudaError>,
        mut copy: impl FnMut(&mut S, &[f32], usize) -> Result<(), CudaError>,
    ) -> Result<(), CudaError> {
        let mut at = 0;
        while at < src.len() {
            let mut i = self.next;
            if i == self.slots.len() {
                match create() {
                    Ok(slot) => self.slots.push(slot),
                    // Fewer buffers than hoped for: go round those there are.
                    Err(_) if !self.slots.is_empty() => {
                        self.most = self.slots.len();
                        i = 0;
                    }
                    Err(e) => return Err(e),
                }
            }
            let slot = &mut self.slots[i];
            let n = slot.capacity().min(src.len() - at);
            if n == 0 {
                return Err(CudaError::Driver {
                    call: "pinned upload",
                    message: "a staging buffer of no capacity".into(),
                });
            }
            self.next = (i + 1) % self.most;
            slot.wait()?;
            copy(slot, &src[at..at + n], at)?;
            slot.record()?;
            at += n;
        }
        Ok(())
    }
}

/// One pinned staging buffer and the event recorded after its last copy.
///
/// cudarc's `PinnedHostSlice` has an event of its own, but it records it
/// only when it manages multi-stream synchronisation, which the backend
/// switches off, and its `memcpy_htod` asserts that the destination is at
/// least the whole buffer long. So chunks are copied from a plain slice of
/// the pinned memory (the driver sees page-locked memory all the same), and
/// the fence is this event, recorded here.
#[derive(Debug)]
struct PinnedSlot {
    host: PinnedHostSlice<f32>,
    done: CudaEvent,
    stream: Arc<CudaStream>,
    fence: Fence,
}

/// What is known about a [`PinnedSlot`]'s copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fence {
    /// Nothing was ever queued from it.
    Idle,
    /// `done` was recorded after the last copy.
    Recorded,
    /// Waited for, then possibly used without a record after it (an error or
    /// a panic between the two): only the whole stream's end is known to be
    /// after its copies.
    Unknown,
}

impl PinnedSlot {
    /// `floats` floats of pinned, write-combined host memory (the host only
    /// ever writes it, sequentially, and the device reads it; write-combined
    /// memory suits that and is slow only for host reads), zeroed.
    fn new(
        ctx: &Arc<CudaContext>,
        stream: &Arc<CudaStream>,
        floats: usize,
    ) -> Result<PinnedSlot, CudaError> {
        // SAFETY: the memory is uninitialised; it is zeroed below before any
        // slice of it is made.
        let mut host =
            unsafe { ctx.alloc_pinned::<f32>(floats) }.map_err(driver_err("cuMemHostAlloc"))?;
        // (This synchronises the slice's own event, never recorded: no wait.)
        let ptr = host
            .as_mut_ptr()
            .map_err(driver_err("cuEventSynchronize"))?;
        // SAFETY: `ptr` is the start of the `floats` floats just allocated,
        // aligned (cudarc checks it), and nothing else refers to them yet.
        unsafe { ptr.write_bytes(0, floats) };
        let done = ctx.new_event(None).map_err(driver_err("cuEventCreate"))?;
        Ok(PinnedSlot {
            host,
            done,
            stream: stream.clone(),
            fence: Fence::Idle,
        })
    }

    /// Copies `chunk` to the start of the buffer and returns that part of
    /// it. Call it only after [`Fenced::wait`].
    fn stage(&mut self, chunk: &[f32]) -> Result<&[f32], CudaError> {
        let host = self
            .host
            .as_mut_slice()
            .map_err(driver_err("cuEventSynchronize"))?;
        let staged = host
            .get_mut(..chunk.len())
            .ok_or_else(|| CudaError::Driver {
                call: "pinned upload",
                message: "a chunk larger than its staging buffer".into(),
            })?;
        staged.copy_from_slice(chunk);
        Ok(staged)
    }
}

impl Fenced for PinnedSlot {
    fn capacity(&self) -> usize {
        self.host.len()
    }

    fn wait(&mut self) -> Result<(), CudaError> {
        match self.fence {
            Fence::Idle => {}
            Fence::Recorded => self
                .done
                .synchronize()
                .map_err(driver_err("cuEventSynchronize"))?,
            Fence::Unknown => self
                .stream
                .synchronize()
                .map_err(driver_err("cuStreamSynchronize"))?,
        }
        self.fence = Fence::Unknown;
        Ok(())
    }

    fn record(&mut self) -> Result<(), CudaError> {
        self.done
            .record(&self.stream)
            .map_err(driver_err("cuEventRecord"))?;
        self.fence = Fence::Recorded;
        Ok(())
    }
}

impl Drop for PinnedSlot {
    /// Waits for the copies still reading the buffer before it is freed. An
    /// error cannot be reported here; after one the context is broken and
    /// runs nothing more.
    fn drop(&mut self) {
        let _ = guard("cuEventSynchronize", || self.wait());
    }
}

/// A cuBLAS handle.
#[derive(Debug)]
pub(crate) struct Blas(CudaBlas);

/// A strided batched SGEMM in cuBLAS' terms: `C = op(A) op(B) + beta C`,
/// column-major, `op(A)` of `m × k`; `a`, `b`, `c` are offsets in floats.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColumnMajorGemm {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub a: usize,
    pub lda: i32,
    pub stride_a: i64,
    pub b: usize,
    pub ldb: i32,
    pub stride_b: i64,
    pub beta: f32,
    pub c: usize,
    pub ldc: i32,
    pub stride_c: i64,
    pub batch: i32,
}

/// A loaded module's kernels.
#[derive(Debug)]
pub(crate) struct Module {
    functions: Vec<CudaFunction>,
}

impl Module {
    /// The `i`-th kernel of the list it was loaded with.
    pub(crate) fn function(&self, i: usize) -> &CudaFunction {
        &self.functions[i]
    }
}

/// A kernel argument after the buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    U64(u64),
    I32(i32),
    F32(f32),
    Update(UpdateParams),
    Window(WindowParams),
}

/// Grid and block dimensions of a launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
}

/// What NVRTC produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Image {
    /// Machine code for one GPU architecture (`sm_XY`), loaded without JIT.
    Cubin(Vec<u8>),
    /// PTX text, compiled by the driver's JIT when loaded.
    Ptx(String),
}

/// What to ask NVRTC for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// CUBIN for compute capability `(major, minor)` (`-arch=sm_XY`).
    Cubin(u32, u32),
    /// PTX for a virtual architecture (`-arch=compute_XY`), or NVRTC's default.
    Ptx(Option<(u32, u32)>),
}

/// Compiles CUDA C with NVRTC. Needs libnvrtc only, no device.
///
/// Options: `--fmad=false`, so that `a * b + c` rounds twice as on the CPU
/// reference rather than fusing into one FMA; IEEE division and square
/// root are NVRTC's defaults.
pub(crate) fn compile(
    file: &'static str,
    source: &str,
    target: Target,
) -> Result<Image, CudaError> {
    find_library(CudaLib::Nvrtc)?;
    let compile_err = |log: String| CudaError::Compile { file, log };
    let src = CString::new(source).map_err(|_| compile_err("the source contains a NUL".into()))?;
    let name = CString::new(file).map_err(|_| compile_err("the name contains a NUL".into()))?;
    guard("nvrtcCompileProgram", || {
        let prog = nvrtc::result::create_program(&src, Some(&name))
            .map_err(|e| compile_err(format!("nvrtcCreateProgram: {e}")))?;
        let mut options = vec!["--fmad=false".to_owned()];
        match target {
            Target::Cubin(major, minor) => {
                options.push(format!("--gpu-architecture=sm_{major}{minor}"))
            }
            Target::Ptx(Some((major, minor))) => {
                options.push(format!("--gpu-architecture=compute_{major}{minor}"))
            }
            Target::Ptx(None) => {}
        }
        // SAFETY (all blocks below): `prog` was created above and is
        // destroyed once, at the end; the buffers passed to NVRTC are sized
        // by its own size queries.
        let result = match unsafe { nvrtc::result::compile_program(prog, &options) } {
            Err(e) => {
                let log = unsafe { nvrtc::result::get_program_log(prog) }
                    .map(|l| c_chars_to_string(&l))
                    .unwrap_or_default();
                Err(compile_err(format!("{e} ({}):\n{log}", options.join(" "))))
            }
            Ok(()) => match target {
                Target::Cubin(..) => unsafe { cubin(prog) }
                    .map(Image::Cubin)
                    .map_err(|e| compile_err(format!("nvrtcGetCUBIN: {e}"))),
                Target::Ptx(_) => unsafe { nvrtc::result::get_ptx(prog) }
                    .map(|p| Image::Ptx(c_chars_to_string(&p)))
                    .map_err(|e| compile_err(format!("nvrtcGetPTX: {e}"))),
            },
        };
        let _ = unsafe { nvrtc::result::destroy_program(prog) };
        result
    })
}

/// The CUBIN of a compiled program (cudarc wraps only the PTX getter).
///
/// # Safety
/// `prog` must be a live, successfully compiled program.
unsafe fn cubin(prog: nvrtc::sys::nvrtcProgram) -> Result<Vec<u8>, nvrtc::result::NvrtcError> {
    let mut size = 0usize;
    // SAFETY: per this function's contract; `size` is a valid out pointer.
    unsafe { nvrtc::sys::nvrtcGetCUBINSize(prog, &mut size) }.result()?;
    let mut bytes = vec![0u8; size];
    // SAFETY: `bytes` holds the `size` bytes NVRTC reported.
    unsafe { nvrtc::sys::nvrtcGetCUBIN(prog, bytes.as_mut_ptr() as *mut c_char) }.result()?;
    Ok(bytes)
}

/// NVRTC's NUL-terminated text as a `String`.
fn c_chars_to_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_a_panic_into_an_error() {
        let r: Result<(), _> = guard("test call", || panic!("library not found"));
        assert_eq!(
            r,
            Err(CudaError::Panicked {
                call: "test call",
                message: "library not found".into()
            })
        );
        let r: Result<(), _> = guard("test call", || panic!("{} symbol", "missing"));
        assert!(
            matches!(r, Err(CudaError::Panicked { message, .. }) if message == "missing symbol")
        );
        assert_eq!(guard("ok", || Ok(3)), Ok(3));
    }

    /// What a [`FakeSlot`] saw, in order.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Call {
        Create(usize),
        Wait(usize),
        /// Slot, offset in the upload, length.
        Copy(usize, usize, usize),
        Record(usize),
    }

    type Log = std::rc::Rc<std::cell::RefCell<Vec<Call>>>;

    /// A staging buffer that logs its calls and checks the protocol: it is
    /// never written while a copy queued from it may still be running.
    struct FakeSlot {
        id: usize,
        capacity: usize,
        /// A copy was queued and not waited for since.
        busy: bool,
        /// Waited for and not recorded since (may be written).
        writable: bool,
        /// What the buffer holds.
        data: Vec<f32>,
        log: Log,
        fail_record: bool,
    }

    impl Fenced for FakeSlot {
        fn capacity(&self) -> usize {
            self.capacity
        }
        fn wait(&mut self) -> Result<(), CudaError> {
            self.log.borrow_mut().push(Call::Wait(self.id));
            self.busy = false;
            self.writable = true;
            Ok(())
        }
        fn record(&mut self) -> Result<(), CudaError> {
            self.log.borrow_mut().push(Call::Record(self.id));
            assert!(
                self.busy,
                "slot {}: a fence with no copy before it",
                self.id
            );
            self.writable = false;
            if self.fail_record {
                return Err(CudaError::Driver {
                    call: "cuEventRecord",
                    message: "test".into(),
                });
            }
            Ok(())
        }
    }

    /// A ring of at most `most` fake slots of `capacity` floats each (the
    /// first `limit` of which can be created), sending `src` to `device`.
    fn run(
        ring: &mut Ring<FakeSlot>,
        log: &Log,
        capacity: usize,
        limit: usize,
        src: &[f32],
        device: &mut [f32],
    ) -> Result<(), CudaError> {
        ring.send(
            src,
            || {
                let id = log
                    .borrow()
                    .iter()
                    .filter(|c| matches!(c, Call::Create(_)))
                    .count();
                if id >= limit {
                    return Err(CudaError::OutOfMemory { floats: capacity });
                }
                log.borrow_mut().push(Call::Create(id));
                Ok(FakeSlot {
                    id,
                    capacity,
                    busy: false,
                    writable: false,
                    data: vec![0.0; capacity],
                    log: log.clone(),
                    fail_record: false,
                })
            },
            |slot, chunk, at| {
                assert!(
                    slot.writable && !slot.busy,
                    "slot {} written before its fence was waited on",
                    slot.id
                );
                assert!(chunk.len() <= slot.capacity);
                slot.data[..chunk.len()].copy_from_slice(chunk);
                // The "device copy", done at once.
                device[at..at + chunk.len()].copy_from_slice(&slot.data[..chunk.len()]);
                slot.busy = true;
                log.borrow_mut().push(Call::Copy(slot.id, at, chunk.len()));
                Ok(())
            },
        )
    }

    fn floats(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32).collect()
    }

    #[test]
    fn an_upload_is_split_into_chunks_of_a_slot() {
        let log = Log::default();
        let mut ring = Ring::new(3);
        let src = floats(25); // 2.5 slots of 10
        let mut device = vec![-1.0; 25];
        run(&mut ring, &log, 10, 3, &src, &mut device).unwrap();
        assert_eq!(device, src);
        use Call::*;
        assert_eq!(
            *log.borrow(),
            [
                Create(0),
                Wait(0),
                Copy(0, 0, 10),
                Record(0),
                Create(1),
                Wait(1),
                Copy(1, 10, 10),
                Record(1),
                Create(2),
                Wait(2),
                Copy(2, 20, 5),
                Record(2),
            ]
        );
    }

    #[test]
    fn slots_are_reused_round_robin_after_their_fence() {
        let log = Log::default();
        let mut ring = Ring::new(2);
        let mut device = [0.0; 40];
        // Three uploads of 7, 12 and 9 floats through two slots of 5.
        let src = floats(28);
        let mut at = 0;
        for n in [7, 12, 9] {
            run(
                &mut ring,
                &log,
                5,
                2,
                &src[at..at + n],
                &mut device[at..at + n],
            )
            .unwrap();
            at += n;
        }
        assert_eq!(device[..28], src[..]);
        let log = log.borrow();
        // Two slots only, used alternately, each waited on before every
        // copy from it (the fake also asserts it at each copy).
        assert_eq!(
            log.iter().filter(|c| matches!(c, Call::Create(_))).count(),
            2
        );
        let copies: Vec<_> = log
            .iter()
            .filter_map(|c| match c {
                Call::Copy(slot, at, n) => Some((*slot, *at, *n)),
                _ => None,
            })
            .collect();
        assert_eq!(
            copies,
            [
                (0, 0, 5),
                (1, 5, 2),
                (0, 0, 5),
                (1, 5, 5),
                (0, 10, 2),
                (1, 0, 5),
                (0, 5, 4)
            ]
        );
        for (k, call) in log.iter().enumerate() {
            if let Call::Copy(slot, ..) = call {
                assert_eq!(log[k - 1], Call::Wait(*slot));
                assert_eq!(log[k + 1], Call::Record(*slot));
            }
        }
    }

    #[test]
    fn an_empty_upload_does_nothing() {
        let log = Log::default();
        let mut ring = Ring::new(3);
        run(&mut ring, &log, 10, 3, &[], &mut []).unwrap();
        assert!(log.borrow().is_empty());
        assert!(ring.is_empty());
    }

    #[test]
    fn a_ring_keeps_to_the_slots_it_could_create() {
        let log = Log::default();
        let mut ring = Ring::new(3);
        let src = floats(35);
        let mut device = vec![0.0; 35];
        // Only one slot of 10 can be allocated: every chunk goes through it.
        run(&mut ring, &log, 10, 1, &src, &mut device).unwrap();
        assert_eq!(device, src);
        let log = log.borrow();
        assert_eq!(
            log.iter().filter(|c| matches!(c, Call::Create(_))).count(),
            1
        );
        assert_eq!(log.iter().filter(|c| **c == Call::Wait(0)).count(), 4);

        // With no slot at all, the allocation's error comes back.
        let log = Log::default();
        let mut ring = Ring::new(3);
        let r = run(&mut ring, &log, 10, 0, &src, &mut device);
        assert_eq!(r, Err(CudaError::OutOfMemory { floats: 10 }));
        assert!(ring.is_empty());
    }

    #[test]
    fn errors_stop_an_upload() {
        let log = Log::default();
        let mut ring = Ring::new(2);
        let src = floats(30);
        let mut device = vec![0.0; 30];
        run(&mut ring, &log, 10, 2, &src[..20], &mut device[..20]).unwrap();
        ring.slots[1].fail_record = true;
        let r = run(&mut ring, &log, 10, 2, &src, &mut device);
        assert!(matches!(
            r,
            Err(CudaError::Driver {
                call: "cuEventRecord",
                ..
            })
        ));
        // The second chunk's record failed: the third was not sent.
        let log = log.borrow();
        use Call::*;
        assert_eq!(
            log[log.len() - 6..],
            [
                Wait(0),
                Copy(0, 0, 10),
                Record(0),
                Wait(1),
                Copy(1, 10, 10),
                Record(1)
            ][..]
        );
        // A slot of no capacity is an error, not an endless loop.
        let mut ring = Ring::new(1);
        let r = run(&mut ring, &Log::default(), 0, 1, &src, &mut device);
        assert!(matches!(
            r,
            Err(CudaError::Driver {
                call: "pinned upload",
                ..
            })
        ));
    }

    #[test]
    fn library_directories_come_in_order() {
        let env = |name: &str| -> Option<OsString> {
            match name {
                "EMBER_CUDA_LIB_DIR" => Some("/a/lib::/b/lib".into()),
                "CUDA_PATH" => Some("/opt/cuda".into()),
                "CUDA_HOME" => Some("".into()),
                _ => None,
            }
        };
        let dirs = search_dirs(env);
        let arch = if cfg!(target_arch = "aarch64") {
            "sbsa-linux"
        } else {
            "x86_64-linux"
        };
        assert_eq!(
            dirs,
            [
                PathBuf::from("/a/lib"),
                "/b/lib".into(),
                "/opt/cuda/lib64".into(),
                "/usr/local/cuda/lib64".into(),
                format!("/usr/local/cuda/targets/{arch}/lib").into(),
            ]
        );
        assert_eq!(search_dirs(|_| None).len(), 2);
    }

    #[test]
    fn no_library_in_the_directories_is_none_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("ember-nn-cuda-libs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Files by the right names that are not shared libraries.
        std::fs::write(dir.join("libnvrtc.so.13"), b"not an ELF file").unwrap();
        std::fs::write(dir.join("libcublas.so"), b"").unwrap();
        let dirs = [dir.join("missing"), dir.clone()];
        assert_eq!(load_by_path(CudaLib::Nvrtc, &dirs), None);
        assert_eq!(load_by_path(CudaLib::Cublas, &dirs), None);
        std::fs::remove_dir_all(&dir).unwrap();
        let err = CudaError::MissingLibrary {
            library: CudaLib::Nvrtc.stem(),
            hint: CudaLib::Nvrtc.hint(),
        };
        assert!(err.to_string().contains(LIB_DIR_VAR), "{err}");
    }

    /// Loads NVRTC and cuBLAS through the fallback (no GPU needed), e.g.
    /// `EMBER_CUDA_LIB_DIR=.../site-packages/nvidia/cu13/lib cargo test -p
    /// ember-nn-cuda --lib -- --ignored libraries_load`, without LD_LIBRARY_PATH.
    #[test]
    #[ignore = "needs NVRTC and cuBLAS in a directory of EMBER_CUDA_LIB_DIR"]
    fn libraries_load_from_ember_cuda_lib_dir() {
        for lib in [CudaLib::Nvrtc, CudaLib::Cublas] {
            let by_name = lib.found_by_name();
            assert_eq!(find_library(lib), Ok(()));
            assert!(lib.found_by_name());
            eprintln!("{}: found by name before: {by_name}", lib.stem());
        }
    }

    #[test]
    fn nvrtc_text_stops_at_the_nul() {
        let chars: Vec<c_char> = b"ptx\0junk".iter().map(|&b| b as c_char).collect();
        assert_eq!(c_chars_to_string(&chars), "ptx");
    }
}
