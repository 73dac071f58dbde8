//! cargo-fuzz target `rpc_wire`: see `harness/rpc_wire.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mw_fuzz::rpc_wire::run(data);
});
