//! cargo-fuzz target `pubsub_batch`: see `harness/pubsub_batch.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mw_fuzz::pubsub_batch::run(data);
});
