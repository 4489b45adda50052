//! The path every machine without a GPU takes: `CudaBackend::new` returns a
//! typed error and does not panic. On a machine with a device the same calls
//! succeed, and an ordinal past the last device is the typed `NoDevice`.

use ember_nn_core::backend::Device;
use ember_nn_cuda::{CudaBackend, CudaError};
use std::panic::catch_unwind;

#[test]
fn new_is_a_typed_error_or_a_device_and_never_panics() {
    let result = catch_unwind(|| CudaBackend::new(0)).expect("CudaBackend::new panicked");
    match result {
        Ok(cuda) => {
            eprintln!("a CUDA device is present: {}", cuda.name());
            assert!(cuda.name().starts_with("cuda:0 ("), "{}", cuda.name());
        }
        Err(e) => {
            eprintln!("no CUDA device: {e}");
            assert!(
                matches!(e, CudaError::NoDriver | CudaError::NoDevice { .. }),
                "unexpected error: {e:?}"
            );
            // It converts to the core's error type with a readable message.
            let core: ember_nn_core::Error = e.into();
            assert!(
                matches!(core, ember_nn_core::Error::Backend { .. }),
                "{core:?}"
            );
            assert!(core.to_string().contains("cuda"), "{core}");
        }
    }
}

#[test]
fn device_count_agrees_with_new() {
    let count = catch_unwind(CudaBackend::device_count).expect("device_count panicked");
    match count {
        Err(e) => {
            assert_eq!(e, CudaError::NoDriver);
            assert_eq!(CudaBackend::new(0).unwrap_err(), CudaError::NoDriver);
        }
        Ok(n) => {
            eprintln!("{n} CUDA device(s)");
            assert!(matches!(
                CudaBackend::new(n),
                Err(CudaError::NoDevice { ordinal, count }) if ordinal == n && count == n
            ));
            assert_eq!(CudaBackend::new(0).is_ok(), n > 0);
        }
    }
}

#[test]
fn a_missing_driver_is_reported_as_such() {
    // With no libcuda on the loader's path (this is what CI has) the error
    // says so; elsewhere the test has nothing to check.
    if let Err(CudaError::NoDriver) = CudaBackend::new(0) {
        let msg = CudaError::NoDriver.to_string();
        assert!(msg.contains("driver"), "{msg}");
    } else {
        eprintln!("skipping: a CUDA driver is installed");
    }
}

#[test]
fn backend_and_buffer_can_be_shared_between_threads() {
    fn check<T: Send + Sync>() {}
    check::<CudaBackend>();
    check::<ember_nn_cuda::CudaBuffer>();
    check::<CudaError>();
}
