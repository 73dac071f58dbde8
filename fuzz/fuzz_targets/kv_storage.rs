//! cargo-fuzz target `kv_storage`: see `harness/kv_storage.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mw_fuzz::kv_storage::run(data);
});
