//! cargo-fuzz target `queue_api`: see `harness/queue_api.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mw_fuzz::queue_api::run(data);
});
