//! cargo-fuzz target `kv_requests`: see `harness/kv_requests.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mw_fuzz::kv_requests::run(data);
});
