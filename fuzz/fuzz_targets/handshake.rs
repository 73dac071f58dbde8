//! cargo-fuzz target `handshake`: see `harness/handshake.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mw_fuzz::handshake::run(data);
});
