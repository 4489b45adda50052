//! Tuples of modules run in sequence, like PyTorch's `nn.Sequential`.
//!
//! Tuples are flat (not nested pairs), so a 12-layer model is one impl
//! instantiation per trait rather than a tower of nested types, which keeps
//! compile times linear in the depth.

use super::{Build, Footprint, Forward, LayerKind, Module, Name, ParamInfo, Signature};
use crate::backend::Backend;
use crate::error::Result;
use crate::memory::Memory;
use crate::rng::Rng;
use core::fmt;

/// The names of tuple positions, for parameter paths.
const INDEX: [&str; 16] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
];

/// Scratch per sample as an affine function of the input width, composed
/// through a sequence: `(fixed, per_feature, out_features)`.
const fn compose(
    a: (usize, usize, Option<usize>),
    b_fixed: usize,
    b_per: usize,
    b_out: Option<usize>,
) -> (usize, usize, Option<usize>) {
    let out = match b_out {
        Some(o) => Some(o),
        None => a.2,
    };
    // Saturating: a layer whose scratch its type cannot tell
    // ([`SCRATCH_UNKNOWN`](super::SCRATCH_UNKNOWN)) makes the sequence's
    // unknown too, which `train_budget` refuses.
    match a.2 {
        // b sees a fixed width o.
        Some(o) => (
            a.0.saturating_add(b_fixed)
                .saturating_add(b_per.saturating_mul(o)),
            a.1,
            out,
        ),
        // b sees the sequence's input width.
        None => (a.0.saturating_add(b_fixed), a.1.saturating_add(b_per), out),
    }
}

const fn first_some(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match a {
        Some(x) => Some(x),
        None => b,
    }
}

macro_rules! sequential {
    ($($m:ident $i:tt),+) => {
        impl<$($m: Footprint),+> Footprint for ($($m,)+) {
            const PARAMS: usize = 0 $(+ $m::PARAMS)+;
            const BUFFERS: usize = 0 $(+ $m::BUFFERS)+;
            const NODES: usize = 0 $(+ $m::NODES)+;
            const IN_FEATURES: Option<usize> = {
                let mut r = None;
                // The input width is fixed by the first module that fixes one,
                // provided no earlier module changed the width.
                let mut changed = false;
                $(
                    if !changed {
                        r = first_some(r, $m::IN_FEATURES);
                        if $m::OUT_FEATURES.is_some() {
                            changed = true;
                        }
                    }
                )+
                let _ = changed;
                r
            };
            const OUT_FEATURES: Option<usize> = {
                let mut r = None;
                $( if let Some(o) = $m::OUT_FEATURES { r = Some(o); } )+
                r
            };
            const SCRATCH_FIXED: usize = {
                let mut acc = (0, 0, None);
                $( acc = compose(acc, $m::SCRATCH_FIXED, $m::SCRATCH_PER_FEATURE, $m::OUT_FEATURES); )+
                acc.0
            };
            const SCRATCH_PER_FEATURE: usize = {
                let mut acc = (0, 0, None);
                $( acc = compose(acc, $m::SCRATCH_FIXED, $m::SCRATCH_PER_FEATURE, $m::OUT_FEATURES); )+
                acc.1
            };
        }

        impl<$($m: Module),+> Module for ($($m,)+) {
            fn visit(&self, name: &mut Name, f: &mut dyn FnMut(&ParamInfo<'_>)) {
                $( name.with(INDEX[$i], |n| self.$i.visit(n, f)); )+
            }

            fn visit_buffers(&self, name: &mut Name, f: &mut dyn FnMut(&super::BufferInfo<'_>)) {
                $( name.with(INDEX[$i], |n| self.$i.visit_buffers(n, f)); )+
            }

            fn set_training(&mut self, training: bool) {
                $( self.$i.set_training(training); )+
            }

            fn layers(&self, f: &mut dyn FnMut(super::Layer)) {
                $( self.$i.layers(f); )+
            }

            fn fmt_module(&self, f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result {
                f.write_str("Sequential(\n")?;
                $(
                    for _ in 0..=indent {
                        compact_loop!();
                        f.write_str("  ")?;
                    }
                    write!(f, "({}): ", $i)?;
                    self.$i.fmt_module(f, indent + 1)?;
                    f.write_str("\n")?;
                )+
                for _ in 0..indent {
                    compact_loop!();
                    f.write_str("  ")?;
                }
                f.write_str(")")
            }
        }

        impl<$($m: Signature),+> Signature for ($($m,)+) {
            fn signature(f: &mut dyn FnMut(LayerKind)) {
                $( $m::signature(f); )+
            }
        }

        impl<$($m: Build),+> Build for ($($m,)+) {
            fn build<Be: Backend>(mem: &mut Memory<'_, Be>, rng: &mut Rng) -> Result<Self> {
                Ok(($($m::build(mem, rng)?,)+))
            }
        }
    };
}

sequential!(M0 0);
sequential!(M0 0, M1 1);
sequential!(M0 0, M1 1, M2 2);
sequential!(M0 0, M1 1, M2 2, M3 3);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5, M6 6);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5, M6 6, M7 7);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5, M6 6, M7 7, M8 8);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5, M6 6, M7 7, M8 8, M9 9);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5, M6 6, M7 7, M8 8, M9 9, M10 10);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5, M6 6, M7 7, M8 8, M9 9, M10 10, M11 11);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5, M6 6, M7 7, M8 8, M9 9, M10 10, M11 11, M12 12);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5, M6 6, M7 7, M8 8, M9 9, M10 10, M11 11, M12 12, M13 13);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5, M6 6, M7 7, M8 8, M9 9, M10 10, M11 11, M12 12, M13 13, M14 14);
sequential!(M0 0, M1 1, M2 2, M3 3, M4 4, M5 5, M6 6, M7 7, M8 8, M9 9, M10 10, M11 11, M12 12, M13 13, M14 14, M15 15);

macro_rules! forward_seq {
    ($m0:ident 0 $(, $prev:ident $m:ident $i:tt)*) => {
        impl<X, $m0: Forward<X> $(, $m: Forward<$prev::Output>)*> Forward<X> for ($m0, $($m,)*) {
            type Output = forward_seq!(@last $m0 $(, $m)*);
            fn forward(&self, x: X) -> Self::Output {
                let y = self.0.forward(x);
                $( let y = self.$i.forward(y); )*
                y
            }
        }
    };
    (@last $m:ident) => { $m::Output };
    (@last $m:ident, $($rest:ident),+) => { forward_seq!(@last $($rest),+) };
}

forward_seq!(M0 0);
forward_seq!(M0 0, M0 M1 1);
forward_seq!(M0 0, M0 M1 1, M1 M2 2);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5, M5 M6 6);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5, M5 M6 6, M6 M7 7);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5, M5 M6 6, M6 M7 7, M7 M8 8);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5, M5 M6 6, M6 M7 7, M7 M8 8, M8 M9 9);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5, M5 M6 6, M6 M7 7, M7 M8 8, M8 M9 9, M9 M10 10);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5, M5 M6 6, M6 M7 7, M7 M8 8, M8 M9 9, M9 M10 10, M10 M11 11);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5, M5 M6 6, M6 M7 7, M7 M8 8, M8 M9 9, M9 M10 10, M10 M11 11, M11 M12 12);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5, M5 M6 6, M6 M7 7, M7 M8 8, M8 M9 9, M9 M10 10, M10 M11 11, M11 M12 12, M12 M13 13);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5, M5 M6 6, M6 M7 7, M7 M8 8, M8 M9 9, M9 M10 10, M10 M11 11, M11 M12 12, M12 M13 13, M13 M14 14);
forward_seq!(M0 0, M0 M1 1, M1 M2 2, M2 M3 3, M3 M4 4, M4 M5 5, M5 M6 6, M6 M7 7, M7 M8 8, M8 M9 9, M9 M10 10, M10 M11 11, M11 M12 12, M12 M13 13, M13 M14 14, M14 M15 15);
