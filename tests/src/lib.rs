//! Integration tests of `ember-nn-core`; the tests live in `tests/`:
//!
//! - `gradients.rs`: every differentiable operation against finite
//!   differences (proptest, random run-time shapes);
//! - `reference.rs`: autograd semantics, activations and losses against the
//!   numbers PyTorch gives, and errors (out of memory, full tape, run-time
//!   shape mismatches) that must never panic;
//! - `compile_fail.rs`: shape errors between compile-time dimensions that must
//!   not build (trybuild, cases in `tests/ui`);
//! - `no_alloc.rs`: a training step performs no heap allocation.
//!
//! The README's Rust example is compiled as a doctest here, so it cannot drift
//! from the API.

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The Rust examples of the crates' own READMEs (what crates.io shows).
#[doc = include_str!("../../core/README.md")]
#[cfg(doctest)]
pub struct CoreReadmeDoctests;

#[doc = include_str!("../../derive/README.md")]
#[cfg(doctest)]
pub struct DeriveReadmeDoctests;
