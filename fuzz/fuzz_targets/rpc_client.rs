//! cargo-fuzz target `rpc_client`: see `harness/rpc_client.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mw_fuzz::rpc_client::run(data);
});
