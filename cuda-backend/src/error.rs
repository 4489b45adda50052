//! The error type of the CUDA backend.

use core::fmt;

/// What went wrong talking to CUDA.
///
/// [`CudaBackend::new`](crate::CudaBackend::new) and
/// [`warm_up`](crate::CudaBackend::warm_up) return it directly. A kernel that
/// fails inside a [`Backend`](ember_nn_core::Backend) method returns it as
/// [`ember_nn_core::Error::Backend`]: [`code`](Self::code) and the message,
/// inline (cut to [`ember_nn_core::Message::CAPACITY`] bytes).
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
    /// The number [`ember_nn_core::Error::Backend`] carries for this error:
    /// which kind it is (1 no driver, 2 no device, 3 missing library, 4 out
    /// of memory, 5 driver call, 6 cuBLAS call, 7 compile, 8 panic, 9 too
    /// large).
    pub fn code(&self) -> i32 {
        match self {
            CudaError::NoDriver => 1,
            CudaError::NoDevice { .. } => 2,
            CudaError::MissingLibrary { .. } => 3,
            CudaError::OutOfMemory { .. } => 4,
            CudaError::Driver { .. } => 5,
            CudaError::Cublas { .. } => 6,
            CudaError::Compile { .. } => 7,
            CudaError::Panicked { .. } => 8,
            CudaError::TooLarge { .. } => 9,
        }
    }
}

impl From<CudaError> for ember_nn_core::Error {
    fn from(e: CudaError) -> Self {
        match e {
            CudaError::OutOfMemory { floats } => ember_nn_core::Error::OutOfMemory {
                needed: floats,
                available: 0,
            },
            _ => ember_nn_core::Error::Backend {
                code: e.code(),
                message: ember_nn_core::Message::format(format_args!("{e}")),
            },
        }
    }
}
