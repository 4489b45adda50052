//! The pairwise sums of ember-nn-core's reductions against the in-order loops
//! they replaced, on the shapes training uses (a bias gradient: a batch of
//! rows summed per column; a mean over a long vector), alternating in one
//! process so that the machine's noise hits both alike. Prints medians and
//! the ratio (pairwise time / in-order time; below 1 is faster).
//!
//! ```text
//! cargo run --release -p ember-nn-std --example bench_sum
//! ```

use ember_nn_core::backend::kernels;
use ember_nn_core::backend::{Acc, AxisDims, Reduce};
use std::hint::black_box;
use std::time::Instant;

/// The in-order column sums the kernel used before (a block of 64 columns at a time).
fn in_order(x: &[f32], y: &mut [f32], d: AxisDims) {
    if d.inner == 1 {
        for (o, y) in y.iter_mut().enumerate() {
            *y = x[o * d.len..(o + 1) * d.len].iter().sum();
        }
        return;
    }
    const BLOCK: usize = 64;
    let mut t = [0.0f32; BLOCK];
    for o in 0..d.outer {
        let mut i0 = 0;
        while i0 < d.inner {
            let w = (d.inner - i0).min(BLOCK);
            let t = &mut t[..w];
            t.fill(0.0);
            for l in 0..d.len {
                let row = &x[(o * d.len + l) * d.inner + i0..][..w];
                for (t, &v) in t.iter_mut().zip(row) {
                    *t += v;
                }
            }
            y[o * d.inner + i0..][..w].copy_from_slice(t);
            i0 += w;
        }
    }
}

fn time(f: &mut dyn FnMut(), reps: usize) -> f64 {
    let t0 = Instant::now();
    for _ in 0..reps {
        f();
    }
    t0.elapsed().as_secs_f64() / reps as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let cases = [
        (
            "bias grad 64x512",
            AxisDims {
                outer: 1,
                len: 64,
                inner: 512,
            },
        ),
        (
            "bias grad 256x512",
            AxisDims {
                outer: 1,
                len: 256,
                inner: 512,
            },
        ),
        (
            "bias grad 64x10",
            AxisDims {
                outer: 1,
                len: 64,
                inner: 10,
            },
        ),
        (
            "sum of 55,643",
            AxisDims {
                outer: 1,
                len: 55_643,
                inner: 1,
            },
        ),
        (
            "row sums 64x784",
            AxisDims {
                outer: 64,
                len: 784,
                inner: 1,
            },
        ),
    ];
    println!(
        "{:<22} {:>12} {:>12} {:>7}",
        "case", "pairwise µs", "in order µs", "ratio"
    );
    for (name, d) in cases {
        let x: Vec<f32> = (0..d.numel()).map(|i| (i % 97) as f32 * 0.01).collect();
        let mut y = vec![0.0f32; d.outer * d.inner];
        let reps = (2_000_000 / d.numel()).max(10);
        let (mut new, mut old) = (Vec::new(), Vec::new());
        for _ in 0..9 {
            new.push(time(
                &mut || kernels::reduce(Reduce::Sum, black_box(&x), &mut y, d, Acc::Set),
                reps,
            ));
            old.push(time(&mut || in_order(black_box(&x), &mut y, d), reps));
        }
        let (n, o) = (median(new) * 1e6, median(old) * 1e6);
        println!("{name:<22} {n:>12.2} {o:>12.2} {:>6.2}x", n / o);
    }
}
