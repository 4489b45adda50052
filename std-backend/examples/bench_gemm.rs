//! GEMM throughput of `Parallel` against the portable `Cpu` backend.
//!
//! ```text
//! cargo run --release -p ember-nn-std --example bench_gemm [threads]
//! ```
//!
//! `threads` (default 0: one per core) sizes the `Parallel` backend; a
//! one-thread `Parallel` is measured too. Each size runs with every
//! combination of transposed operands.

use ember_nn_core::backend::{Acc, Backend, Gemm, Span};
use ember_nn_core::Cpu;
use ember_nn_std::Parallel;
use std::time::{Duration, Instant};

/// GFLOP/s of `c = op(a) · op(b)` for `s × s` matrices on `be`: the best of
/// five windows of `budget / 5` each (after a warm-up run), so that other
/// processes on the machine disturb the figure less.
fn gflops<B: Backend<Buffer = [f32]>>(
    be: &B,
    buf: &mut [f32],
    s: usize,
    ta: bool,
    tb: bool,
    budget: Duration,
) -> f64 {
    let n = s * s;
    let g = Gemm {
        m: s,
        n: s,
        k: s,
        a: Span::new(0, n),
        trans_a: ta,
        b: Span::new(n, n),
        trans_b: tb,
        c: Span::new(2 * n, n),
        acc: Acc::Set,
    };
    be.gemm(buf, 1, &g).expect("gemm");
    let mut best = 0.0f64;
    for _ in 0..5 {
        let (start, mut reps) = (Instant::now(), 0u32);
        while reps == 0 || start.elapsed() < budget / 5 {
            be.gemm(buf, 1, &g).expect("gemm");
            reps += 1;
        }
        let rate = 2.0 * (s * s * s) as f64 * f64::from(reps) / start.elapsed().as_secs_f64() / 1e9;
        best = best.max(rate);
    }
    best
}

fn main() {
    let threads = std::env::args()
        .nth(1)
        .map_or(0, |t| t.parse().expect("threads: a number"));
    let par = Parallel::new(threads);
    let one = Parallel::new(1);
    let budget = Duration::from_millis(300);
    println!(
        "GFLOP/s, c = op(a)·op(b), square f32 matrices; Parallel has {} threads",
        par.threads()
    );
    println!(
        "{:>5} {:>3} {:>3} {:>9} {:>13} {:>13} {:>9} {:>9}",
        "size",
        "tA",
        "tB",
        "Cpu",
        "Parallel(1)",
        format!("Parallel({})", par.threads()),
        "P(1)/Cpu",
        "P(n)/Cpu"
    );
    for s in [256usize, 512] {
        let mut buf: Vec<f32> = (0..3 * s * s)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let cpu = gflops(&Cpu, &mut buf, s, ta, tb, budget);
            let p1 = gflops(&one, &mut buf, s, ta, tb, budget);
            let pn = gflops(&par, &mut buf, s, ta, tb, budget);
            println!(
                "{s:>5} {:>3} {:>3} {cpu:>9.2} {p1:>13.2} {pn:>13.2} {:>8.1}x {:>8.1}x",
                u8::from(ta),
                u8::from(tb),
                p1 / cpu,
                pn / cpu
            );
        }
    }
}
