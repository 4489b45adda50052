//! A small image task for the convolution tests: 8×8 samples with a bright
//! 3×3 square in one of four quadrants (a little noise elsewhere), labelled
//! by the quadrant.

use ember_nn_core::Rng;

/// `n` samples (`n · 64` floats) and their labels.
pub fn quadrants(n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<usize>) {
    let mut xs = vec![0.0f32; n * 64];
    let mut ys = Vec::new();
    for i in 0..n {
        let q = rng.below(4) as usize;
        let (r0, c0) = (
            (q / 2) * 4 + rng.below(2) as usize,
            (q % 2) * 4 + rng.below(2) as usize,
        );
        for r in 0..3 {
            for c in 0..3 {
                xs[i * 64 + (r0 + r) * 8 + c0 + c] = 1.0;
            }
        }
        for v in &mut xs[i * 64..(i + 1) * 64] {
            *v += 0.1 * rng.uniform_in(-1.0, 1.0);
        }
        ys.push(q);
    }
    (xs, ys)
}
