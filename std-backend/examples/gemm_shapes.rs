//! Times the matrix products of one training step of a 784-512-512-10 MLP at
//! batch 64, each shape on its own (a profiling aid).
use ember_nn_core::backend::{Acc, Backend, Gemm, Span};
use ember_nn_std::Parallel;
use std::time::Instant;

fn main() {
    let be = Parallel::new(2);
    let shapes = [
        ("fwd x·W1ᵀ", 64, 512, 784, false, true),
        ("dW1 = dYᵀ·X", 512, 784, 64, true, false),
        ("dX = dY·W1", 64, 784, 512, false, false),
        ("fwd h·W2ᵀ", 64, 512, 512, false, true),
        ("dW2", 512, 512, 64, true, false),
    ];
    for (name, m, n, k, ta, tb) in shapes {
        let mut buf = vec![0.5f32; m * k + k * n + m * n];
        for acc in [Acc::Set, Acc::Add] {
            let g = Gemm {
                m,
                n,
                k,
                a: Span::new(0, m * k),
                trans_a: ta,
                b: Span::new(m * k, k * n),
                trans_b: tb,
                c: Span::new(m * k + k * n, m * n),
                acc,
            };
            let t = Instant::now();
            let reps = 50;
            for _ in 0..reps {
                be.gemm(&mut buf[..], 1, &g).unwrap();
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{name:<14} {acc:?}: {:.3} ms, {:.1} GFLOP/s",
                s * 1e3,
                2.0 * (m * n * k) as f64 / s / 1e9
            );
        }
    }
}
