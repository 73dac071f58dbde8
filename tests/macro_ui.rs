//! Compile-fail tests of `#[mw::service]`: one mistake per file in `tests/ui/`, each
//! with its expected diagnostics in the `.stderr` next to it (regenerate with
//! `TRYBUILD=overwrite cargo test -p mw --test macro_ui` and review the diff: every
//! error must point at the offending tokens).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
