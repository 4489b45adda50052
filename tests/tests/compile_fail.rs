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
//! `cargo build` for all of them. Every case must report exactly one error.

#[test]
fn shape_errors_do_not_compile() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/*.rs");
}

/// Each shape error is reported once: a pinned `.stderr` with a second error
/// (the same mismatch reported again at another span, or a follow-on check
/// failing too) would pass `shape_errors_do_not_compile` once regenerated.
#[test]
fn each_shape_error_is_reported_once() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/ui is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "stderr") {
            let text = std::fs::read_to_string(&path).expect("a readable .stderr");
            let errors = text.lines().filter(|l| l.starts_with("error")).count();
            assert_eq!(errors, 1, "{} reports {errors} errors", path.display());
            cases += 1;
        }
    }
    assert!(
        cases >= 9,
        "only {cases} pinned cases found in {}",
        dir.display()
    );
}
