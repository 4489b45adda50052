//! A small, seedable pseudo-random generator that needs neither `std` nor an
//! allocator: xoshiro128++ seeded through SplitMix64. Its whole state is four
//! `u32`s, so it can be saved in a checkpoint and restored exactly.

use crate::sqrt::sqrtf;
use libm::logf;

/// xoshiro128++ (Blackman and Vigna): fast, 128 bits of state, good
/// statistical quality for initialisation, shuffling and dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rng {
    s: [u32; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded from a 64-bit seed.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let a = splitmix64(&mut sm);
        let b = splitmix64(&mut sm);
        let mut s = [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32];
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s }
    }

    /// The generator's state, for checkpoints.
    pub fn state(&self) -> [u32; 4] {
        self.s
    }

    /// A generator from a saved state (an all-zero state, which xoshiro
    /// cannot leave, is replaced by a fixed non-zero one).
    pub fn from_state(s: [u32; 4]) -> Self {
        if s == [0; 4] {
            Rng { s: [1, 0, 0, 0] }
        } else {
            Rng { s }
        }
    }

    /// The next 32 random bits.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(7).wrapping_add(s[0]);
        let t = s[1] << 9;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(11);
        result
    }

    /// Uniform in `[0, 1)`, with 24 bits of precision.
    #[inline]
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[lo, hi)`.
    #[inline]
    pub fn uniform_in(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal, by Marsaglia's polar method: a point drawn
    /// uniformly in the square `[-1, 1)²` until it falls inside the unit
    /// circle (π/4 of the time), then `u·√(−2 ln s / s)`, `s = u² + v²`.
    /// Only a logarithm and a square root: no sine or cosine, whose
    /// large-argument reduction (and `f64` arithmetic) cost a
    /// microcontroller about 10 KB of flash. The second normal of the pair
    /// is not kept, so the generator's whole state stays its four words.
    pub fn normal(&mut self) -> f32 {
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            // s > 0: the logarithm is finite; s < 1: inside the circle.
            if s > 0.0 && s < 1.0 {
                return u * sqrtf(-2.0 * logf(s) / s);
            }
        }
    }

    /// Uniform integer in `[0, n)` (0 when `n` is 0), without modulo bias.
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift with rejection.
        let mut m = u64::from(self.next_u32()) * u64::from(n);
        if (m as u32) < n {
            let t = n.wrapping_neg() % n;
            while (m as u32) < t {
                m = u64::from(self.next_u32()) * u64::from(n);
            }
        }
        (m >> 32) as u32
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_state_round_trips() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u32(), b.next_u32());
        }
        let mut c = Rng::from_state(a.state());
        assert_eq!(a.next_u32(), c.next_u32());
        assert_ne!(Rng::new(1).next_u32(), Rng::new(2).next_u32());
    }

    #[test]
    fn uniform_and_normal_moments() {
        let mut r = Rng::new(7);
        let n = 20_000;
        let (mut su, mut sn, mut sn2) = (0.0f64, 0.0f64, 0.0f64);
        for _ in 0..n {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            su += f64::from(u);
            let z = f64::from(r.normal());
            sn += z;
            sn2 += z * z;
        }
        let n = f64::from(n);
        assert!((su / n - 0.5).abs() < 0.01);
        assert!((sn / n).abs() < 0.03);
        assert!((sn2 / n - 1.0).abs() < 0.05);
    }

    #[test]
    fn below_is_in_range_and_shuffle_permutes() {
        let mut r = Rng::new(3);
        for n in 1..50 {
            assert!(r.below(n) < n);
        }
        let mut v = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        r.shuffle(&mut v);
        let mut sorted = v;
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_ne!(v, sorted);
    }
}
