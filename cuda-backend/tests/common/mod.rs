//! Shared by the integration tests: the device, or a skip.

use ember_nn_cuda::CudaBackend;

/// CUDA device 0, or `None` after printing why the test is skipped (no
/// driver, no device: the case on CI machines).
pub fn device() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(cuda) => Some(cuda),
        Err(e) => {
            eprintln!("skipping: no CUDA device: {e}");
            None
        }
    }
}
