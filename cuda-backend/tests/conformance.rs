//! The backend conformance suite of ember-nn-core: every kernel of the CUDA
//! backend, on random data, against the CPU reference. Skipped (with a
//! message) where there is no CUDA device.

mod common;

use ember_nn_core::backend::conformance::{self, BUF_LEN};
use ember_nn_core::backend::Device;

/// Results may differ from the CPU by float rounding: transcendental
/// functions within a few ulp, and sums, softmax and GEMM (cuBLAS, blocked)
/// in a different order of additions.
const TOL: f32 = 1e-4;

#[test]
fn conformance() {
    let Some(cuda) = common::device() else {
        return;
    };
    let mut buf = cuda.alloc(BUF_LEN).expect("device buffer");
    let mut host = vec![0.0f32; BUF_LEN];
    for seed in [42, 7] {
        let report = conformance::check(&cuda, &mut buf, &mut host, seed, TOL)
            .unwrap_or_else(|m| panic!("{m}"));
        eprintln!(
            "{}: {} cases, {} floats compared, largest difference {:e} (in {})",
            cuda.name(),
            report.cases,
            report.values,
            report.max_err,
            report.worst
        );
        assert_eq!(report.cases, conformance::cases().count());
    }
    // The paths ember-nn-core's list does not reach (block-per-position axis
    // kernels, overlapping copy destinations).
    for (i, call) in ember_nn_cuda::extra_conformance_cases().enumerate() {
        conformance::check_case(&cuda, &mut buf, &mut host, 10_000 + i, call, 42, TOL)
            .unwrap_or_else(|m| panic!("{m}"));
    }
}
