//! The backend conformance suite of `ember-nn-core`, run on `Parallel`.

use ember_nn_core::backend::conformance::{self, BUF_LEN};
use ember_nn_std::Parallel;

/// Differences allowed (relative above 1, absolute below): every kernel but
/// GEMM runs the reference's code and matches it exactly; the GEMM crate sums
/// in another order, with fused multiply-adds (about 5e-6 here at k = 300).
const TOL: f32 = 1e-4;

fn conforms(threads: usize, seed: u64) {
    let be = Parallel::new(threads);
    let mut buf = vec![0.0f32; BUF_LEN];
    let mut host = vec![0.0f32; BUF_LEN];
    let report = conformance::check(&be, &mut buf[..], &mut host, seed, TOL)
        .unwrap_or_else(|m| panic!("Parallel::new({threads}): {m}"));
    println!("Parallel::new({threads}), seed {seed}: {report:?}");
    assert_eq!(report.cases, conformance::cases().count());
}

#[test]
fn two_threads_conform() {
    conforms(2, 1);
}

#[test]
fn one_thread_conforms() {
    conforms(1, 2);
}

#[test]
fn more_threads_than_cores_conform() {
    conforms(5, 3);
}
