//! The int8 epilogue of a node: an output channel's accumulator to its
//! output byte (requantization, the output's zero point, ReLU's floor, the
//! activation table), with what depends only on the channel computed once
//! per channel ([`Epilogue::channel`]) and applied to each of its outputs
//! ([`Epilogue::apply`]).

use crate::deploy::quant::Multiplier;
use crate::deploy::{Activation, ActivationTable, NodeHeader};

/// Takes an accumulator of output channel `o` to the output byte, in two
/// steps so that a kernel prepares a channel once for all its outputs.
pub(super) trait Epilogue {
    /// What [`channel`](Self::channel) prepares.
    type Channel: Copy;
    /// Output channel `o`'s constants.
    fn channel(&self, o: usize) -> Self::Channel;
    /// The output byte of accumulator `acc` of a channel.
    fn apply(&self, c: Self::Channel, acc: i32) -> i8;
    /// The same epilogue without a test per output, where it has one (see
    /// [`FastRequant`]).
    #[cfg(any(ember_dsp, ember_thumb1, test))]
    #[inline(always)]
    fn fast(&self) -> Option<FastRequant<'_>> {
        None
    }
    /// [`apply`](Self::apply) to each of a channel's accumulators `accs`
    /// into `out` (as long).
    #[cfg(any(ember_dsp, ember_thumb1, test))]
    #[inline(always)]
    fn store(&self, c: Self::Channel, accs: &[i32], out: &mut [i8]) {
        for (o, &a) in out.iter_mut().zip(accs) {
            *o = self.apply(c, a);
        }
    }
}

/// Any `Fn(accumulator, channel) -> byte` is an epilogue (the tests' probes).
impl<F: Fn(i32, usize) -> i8> Epilogue for F {
    type Channel = usize;
    #[inline(always)]
    fn channel(&self, o: usize) -> usize {
        o
    }
    #[inline(always)]
    fn apply(&self, c: usize, acc: i32) -> i8 {
        self(acc, c)
    }
}

/// A node's requantization: per output channel the file's `(multiplier,
/// shift)` pair to the output's quantization (or, with an activation
/// table, to the pre-activation's), then the zero point, ReLU's floor and
/// the table.
#[derive(Clone, Copy)]
pub(super) struct Requant<'a> {
    /// `[multiplier, shift]` per output channel.
    pairs: &'a [i32],
    /// The zero point added after the rescale.
    zero: i32,
    /// The smallest output before the table (ReLU: the output's zero).
    floor: i32,
    /// The activation's outputs indexed by the pre-activation `q + 128`.
    table: Option<&'a [i8; 256]>,
}

impl<'a> Requant<'a> {
    /// The epilogue of node `h` with its pairs and table.
    pub(super) fn new(
        h: &NodeHeader,
        pairs: &'a [i32],
        table: Option<&'a ActivationTable>,
    ) -> Self {
        Requant {
            pairs,
            zero: table.map_or(h.out_zero, |t| t.pre_zero),
            floor: match h.activation {
                Activation::Relu => h.out_zero,
                _ => -128,
            },
            table: table.map(|t| &t.values),
        }
    }

    /// The smallest output before the table: ReLU's floor (the output's
    /// zero point), else −128.
    pub(super) fn floor(&self) -> i32 {
        self.floor
    }

    /// The zero point added after the rescale.
    pub(super) fn zero(&self) -> i32 {
        self.zero
    }

    /// The output byte of a value already at the output's (or the table's
    /// pre-activation) scale, before its zero point: what follows the
    /// rescale.
    #[inline(always)]
    pub(super) fn finish(&self, v: i32) -> i8 {
        // `max` then `min`, not `clamp`: the floor is at most 127 in a
        // valid file, and clamp's check of that costs a test per output.
        self.lookup(v.saturating_add(self.zero).max(self.floor).min(127))
    }

    /// The table's entry for `q` (`-128..=127`), or `q` itself.
    #[inline(always)]
    pub(super) fn lookup(&self, q: i32) -> i8 {
        match self.table {
            Some(t) => t[(q + 128) as usize & 0xff],
            None => q as i8,
        }
    }

    /// The rescale of pair `i` (as [`crate::deploy::requantize`]).
    #[inline(always)]
    pub(super) fn multiplier(&self, i: usize) -> Multiplier {
        Multiplier::new(self.pairs[2 * i], self.pairs[2 * i + 1])
    }
}

/// A node's requantization where every channel's pair takes the fast
/// rescale and there is no table (the usual case, checked once per node by
/// [`Epilogue::fast`]): per output a multiply-high, an add, a shift, the
/// zero point and the clamp, with no test.
#[cfg(any(ember_dsp, ember_thumb1, test))]
#[derive(Clone, Copy)]
pub(super) struct FastRequant<'a> {
    pairs: &'a [i32],
    zero: i32,
    floor: i32,
}

#[cfg(any(ember_dsp, ember_thumb1, test))]
impl Epilogue for FastRequant<'_> {
    type Channel = Multiplier;
    #[inline(always)]
    fn channel(&self, o: usize) -> Multiplier {
        Multiplier::new_fast(self.pairs[2 * o], self.pairs[2 * o + 1])
    }
    #[inline(always)]
    fn apply(&self, m: Multiplier, acc: i32) -> i8 {
        // |apply_fast| < 2^30: adding a zero point cannot overflow.
        (m.apply_fast(acc) + self.zero).max(self.floor).min(127) as i8
    }
}

impl Epilogue for Requant<'_> {
    type Channel = Multiplier;
    #[cfg(any(ember_dsp, ember_thumb1, test))]
    fn fast(&self) -> Option<FastRequant<'_>> {
        let all = self
            .pairs
            .chunks_exact(2)
            .all(|p| Multiplier::new(p[0], p[1]).fast());
        (all && self.table.is_none()).then_some(FastRequant {
            pairs: self.pairs,
            zero: self.zero,
            floor: self.floor,
        })
    }
    #[inline(always)]
    fn channel(&self, o: usize) -> Multiplier {
        self.multiplier(o)
    }
    #[inline(always)]
    fn apply(&self, m: Multiplier, acc: i32) -> i8 {
        self.finish(m.apply(acc))
    }
    /// The usual case (the fast rescale, no table) as a loop of its own,
    /// its constants in registers.
    #[cfg(any(ember_dsp, ember_thumb1, test))]
    #[inline(always)]
    fn store(&self, m: Multiplier, accs: &[i32], out: &mut [i8]) {
        if m.fast() && self.table.is_none() {
            let (zero, floor) = (self.zero, self.floor);
            for (o, &a) in out.iter_mut().zip(accs) {
                // Not unrolled: the runs are short (a row of a small map),
                // and an unrolled loop's set-up and remainder cost more
                // than it saves.
                compact_loop!();
                // |apply_fast| < 2^30: adding a zero point cannot overflow.
                *o = (m.apply_fast(a) + zero).max(floor).min(127) as i8;
            }
        } else {
            for (o, &a) in out.iter_mut().zip(accs) {
                *o = self.apply(m, a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::node;
    use super::*;
    use crate::deploy::{requantize, QuantParams};
    use proptest::prelude::*;
    extern crate std;

    proptest! {
        /// Per channel, the prepared epilogue and its loop give the file's
        /// formula, `lookup(clamp(requantize(acc) + zero, floor, 127))`, on
        /// every shift (the fast and the 64-bit rescale), with ReLU's floor
        /// or a table.
        #[test]
        fn store_and_apply_are_the_formula(
            mult in 0i32..=i32::MAX,
            shift in -40i32..40,
            zero in -128i32..128,
            relu in any::<bool>(),
            tabled in any::<bool>(),
            accs in proptest::collection::vec(any::<i32>(), 0..40),
        ) {
            let mut h = node((1, 1, 1, 1, 1, [1, 1], [1, 1], [0; 4], 1, 1)).unwrap();
            h.out_zero = zero;
            h.activation = if relu { Activation::Relu } else { Activation::Tanh };
            let mut values = [0i8; 256];
            for (i, v) in values.iter_mut().enumerate() {
                *v = (i as u8).wrapping_mul(37) as i8;
            }
            let t = ActivationTable::new(QuantParams { scale: 1.0, zero: zero / 2 }, values);
            let table = (tabled && !relu).then_some(&t);
            let pairs = [mult, shift];
            let ep = Requant::new(&h, &pairs, table);
            let (z, floor) = match table {
                Some(t) => (t.pre_zero, -128),
                None if relu => (zero, zero),
                None => (zero, -128),
            };
            let want: std::vec::Vec<i8> = accs
                .iter()
                .map(|&a| {
                    let q = requantize(a, mult, shift).saturating_add(z).clamp(floor, 127);
                    table.map_or(q as i8, |t| t.values[(q + 128) as usize])
                })
                .collect();
            let m = ep.channel(0);
            for &a in &accs {
                prop_assert_eq!(m.apply_inline(a), requantize(a, mult, shift));
            }
            let each: std::vec::Vec<i8> = accs.iter().map(|&a| ep.apply(m, a)).collect();
            prop_assert_eq!(&each, &want);
            let mut stored = std::vec![0i8; accs.len()];
            ep.store(m, &accs, &mut stored);
            prop_assert_eq!(&stored, &want);
            match ep.fast() {
                Some(f) => {
                    prop_assert!(table.is_none() && (-31..=-2).contains(&shift));
                    let c = f.channel(0);
                    let fast: std::vec::Vec<i8> = accs.iter().map(|&a| f.apply(c, a)).collect();
                    prop_assert_eq!(&fast, &want);
                }
                None => prop_assert!(table.is_some() || !(-31..=-2).contains(&shift)),
            }
        }
    }
}
