//! Shape errors between compile-time dimensions must fail the build.
//!
//! Each case in `tests/ui` is a minimal program with one shape error; its
//! `.stderr` file pins the error rustc reports, so a case that starts failing
//! for an unrelated reason (a renamed import, an inference failure) is caught.
//! Regenerate with `TRYBUILD=overwrite cargo test -p ember-tests --test compile_fail`
//! and read the diff.
//!
//! Reshape, concatenation, flatten and squeeze are checked by constant
//! evaluation when the generic code is instantiated (post-monomorphisation),
//! which `cargo check` does not reach. trybuild only runs `cargo check` when
//! every case is compile-fail, so the well-shaped `ui/pass` case makes it run
//! `cargo build` for all of them.

#[test]
fn shape_errors_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/*.rs");
}
