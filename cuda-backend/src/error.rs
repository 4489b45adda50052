//! The error type of the CUDA backend.

use core::fmt;

/// What went wrong talking to CUDA.
///
/// [`CudaBackend::new`](crate::CudaBackend::new) returns it directly. A kernel
/// that fails inside a [`Backend`](ember_core::Backend) method returns
/// [`ember_core::Error::Backend`] (whose message must be `'static`) and keeps
/// the full error for [`CudaBackend::last_error`](crate::CudaBackend::last_error).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CudaError {
    /// The CUDA driver library (`libcuda.so` / `nvcuda.dll`) could not be
    /// loaded: no NVIDIA driver is installed, or it is not on the loader's
    /// search path.
    NoDriver,
    /// The driver is there but the requested device is not.
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// Devices the driver reports.
        count: usize,
    },
    /// A CUDA library other than the driver (NVRTC, cuBLAS) could not be
    /// loaded. The backend needs it at the first kernel of its kind.
    MissingLibrary {
        /// The library's name (`"nvrtc"`, `"cublas"`).
        library: &'static str,
        /// Where it is looked for.
        hint: &'static str,
    },
    /// The device has no room for an allocation.
    OutOfMemory {
        /// Floats requested.
        floats: usize,
    },
    /// A driver API call failed.
    Driver {
        /// The call, or what it was for.
        call: &'static str,
        /// The driver's code and message.
        message: String,
    },
    /// A cuBLAS call failed.
    Cublas {
        /// The call.
        call: &'static str,
        /// cuBLAS's status.
        message: String,
    },
    /// NVRTC failed to compile a kernel source.
    Compile {
        /// The source file (`"map.cu"`).
        file: &'static str,
        /// NVRTC's status and log.
        log: String,
    },
    /// A call into a CUDA library panicked (cudarc panics when a library or
    /// one of its symbols cannot be loaded); the panic was caught.
    Panicked {
        /// The call.
        call: &'static str,
        /// The panic's message.
        message: String,
    },
    /// A size does not fit the 32-bit integers of a CUDA API (cuBLAS'
    /// dimensions, grid sizes).
    TooLarge {
        /// Which size.
        what: &'static str,
    },
}

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaError::NoDriver => write!(
                f,
                "the CUDA driver library (libcuda) could not be loaded: no NVIDIA driver is \
                 installed, or it is not on the library search path"
            ),
            CudaError::NoDevice { ordinal, count } => write!(
                f,
                "no CUDA device {ordinal}: the driver reports {count} device(s)"
            ),
            CudaError::MissingLibrary { library, hint } => {
                write!(f, "the CUDA library {library} could not be loaded ({hint})")
            }
            CudaError::OutOfMemory { floats } => {
                write!(f, "out of device memory allocating {floats} floats")
            }
            CudaError::Driver { call, message } => write!(f, "{call} failed: {message}"),
            CudaError::Cublas { call, message } => write!(f, "{call} failed: {message}"),
            CudaError::Compile { file, log } => {
                write!(f, "NVRTC could not compile {file}: {log}")
            }
            CudaError::Panicked { call, message } => {
                write!(f, "{call} panicked inside cudarc: {message}")
            }
            CudaError::TooLarge { what } => {
                write!(f, "{what} is too large for a CUDA API's 32-bit size")
            }
        }
    }
}

impl std::error::Error for CudaError {}

impl CudaError {
    /// A `'static` summary, for [`ember_core::Error::Backend`].
    pub fn summary(&self) -> &'static str {
        match self {
            CudaError::NoDriver => "cuda: no driver",
            CudaError::NoDevice { .. } => "cuda: no such device",
            CudaError::MissingLibrary {
                library: "nvrtc", ..
            } => "cuda: libnvrtc could not be loaded (see CudaBackend::last_error)",
            CudaError::MissingLibrary { .. } => {
                "cuda: a CUDA library could not be loaded (see CudaBackend::last_error)"
            }
            CudaError::OutOfMemory { .. } => "cuda: out of device memory",
            CudaError::Driver { .. } => "cuda: a driver call failed (see CudaBackend::last_error)",
            CudaError::Cublas { .. } => "cuda: a cuBLAS call failed (see CudaBackend::last_error)",
            CudaError::Compile { .. } => {
                "cuda: NVRTC could not compile a kernel (see CudaBackend::last_error)"
            }
            CudaError::Panicked { .. } => {
                "cuda: a CUDA library call panicked (see CudaBackend::last_error)"
            }
            CudaError::TooLarge { .. } => "cuda: a size is too large for a CUDA API",
        }
    }
}

impl From<CudaError> for ember_core::Error {
    fn from(e: CudaError) -> Self {
        match e {
            CudaError::OutOfMemory { floats } => ember_core::Error::OutOfMemory {
                needed: floats,
                available: 0,
            },
            _ => ember_core::Error::Backend { what: e.summary() },
        }
    }
}
