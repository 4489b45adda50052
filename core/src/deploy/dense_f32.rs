//! The f32 dense-layer kernel of inference: several output rows per pass
//! over the input, so that every input element loaded is used by all of
//! them, with one accumulator per row summed in the same order as the one-row
//! reference ([`dense_f32_row`]): the same bits whatever the block size.

use super::Activation;

/// Output rows an f32 kernel pass computes.
pub const ROWS_F32: usize = 8;

/// `y = act(W x + b)` for `W` stored `[y.len(), x.len()]`, [`ROWS_F32`] rows
/// per pass, the rest one by one; the same bits as [`dense_f32_row`] row by
/// row.
pub fn dense_f32(weight: &[f32], bias: &[f32], x: &[f32], y: &mut [f32], act: Activation) {
    let n = x.len().max(1);
    let blocks = weight
        .chunks_exact(ROWS_F32 * n)
        .zip(bias.chunks_exact(ROWS_F32))
        .zip(y.chunks_exact_mut(ROWS_F32));
    let mut done = 0;
    for ((w, b), yo) in blocks {
        let mut r = w.chunks_exact(n);
        let mut row = || r.next().unwrap_or(&[]);
        let (w0, w1, w2, w3) = (row(), row(), row(), row());
        let (w4, w5, w6, w7) = (row(), row(), row(), row());
        let mut s = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        let cols = w0
            .iter()
            .zip(w1)
            .zip(w2)
            .zip(w3)
            .zip(w4)
            .zip(w5)
            .zip(w6)
            .zip(w7)
            .zip(x);
        for ((((((((&a0, &a1), &a2), &a3), &a4), &a5), &a6), &a7), &xv) in cols {
            s[0] += a0 * xv;
            s[1] += a1 * xv;
            s[2] += a2 * xv;
            s[3] += a3 * xv;
            s[4] += a4 * xv;
            s[5] += a5 * xv;
            s[6] += a6 * xv;
            s[7] += a7 * xv;
        }
        for (o, v) in yo.iter_mut().zip(s) {
            *o = act.apply(v);
        }
        done += ROWS_F32;
    }
    let rows = weight
        .chunks_exact(n)
        .zip(bias)
        .zip(y.iter_mut())
        .skip(done);
    for ((row, &b), yo) in rows {
        *yo = act.apply(dense_f32_row(row, b, x));
    }
}

/// One f32 row: `b + Σ w·x`, summed left to right (the reference order).
#[inline]
pub fn dense_f32_row(row: &[f32], b: f32, x: &[f32]) -> f32 {
    let mut s = b;
    for (&w, &xv) in row.iter().zip(x) {
        s += w * xv;
    }
    s
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::{vec, vec::Vec};

    proptest! {
        /// The blocked f32 kernel gives the one-row loop's bits.
        #[test]
        fn f32_blocks_match_rows(rows in 1usize..11, n in 1usize..20, seed in any::<u64>()) {
            let mut r = crate::Rng::new(seed);
            let w: Vec<f32> = (0..rows * n).map(|_| r.uniform_in(-1.0, 1.0)).collect();
            let b: Vec<f32> = (0..rows).map(|_| r.uniform_in(-1.0, 1.0)).collect();
            let x: Vec<f32> = (0..n).map(|_| r.uniform_in(-1.0, 1.0)).collect();
            let mut y = vec![0.0; rows];
            dense_f32(&w, &b, &x, &mut y, Activation::Tanh);
            for o in 0..rows {
                let want = Activation::Tanh.apply(dense_f32_row(&w[o * n..(o + 1) * n], b[o], &x));
                prop_assert_eq!(y[o].to_bits(), want.to_bits());
            }
        }
    }
}
