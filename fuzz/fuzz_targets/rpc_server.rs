//! cargo-fuzz target `rpc_server`: see `harness/rpc_server.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mw_fuzz::rpc_server::run(data);
});
