//! cargo-fuzz target `frame_codec`: see `harness/frame_codec.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mw_fuzz::frame_codec::run(data);
});
