//! cargo-fuzz target `queue_recovery`: see `harness/queue_recovery.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mw_fuzz::queue_recovery::run(data);
});
