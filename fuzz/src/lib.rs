//! The harnesses behind mw's fuzz targets.
//!
//! Each module under `harness/` exposes `run(data: &[u8])`: the fuzz target of the same
//! name calls it, and the main workspace's `tests/fuzz_corpus.rs` includes the same files
//! (`#[path]`) to replay every committed corpus and regression input through it. A
//! harness panics only when it found a bug; malformed input must come back as a typed
//! error from the code under test.
#![deny(missing_docs)]

#[path = "../harness/common.rs"]
pub mod common;
#[path = "../harness/frame_codec.rs"]
pub mod frame_codec;
#[path = "../harness/handshake.rs"]
pub mod handshake;
#[path = "../harness/kv_requests.rs"]
pub mod kv_requests;
#[path = "../harness/kv_storage.rs"]
pub mod kv_storage;
#[path = "../harness/pubsub_batch.rs"]
pub mod pubsub_batch;
#[path = "../harness/queue_api.rs"]
pub mod queue_api;
#[path = "../harness/queue_recovery.rs"]
pub mod queue_recovery;
#[path = "../harness/rpc_client.rs"]
pub mod rpc_client;
#[path = "../harness/rpc_server.rs"]
pub mod rpc_server;
#[path = "../harness/rpc_wire.rs"]
pub mod rpc_wire;
#[path = "../harness/seeds.rs"]
pub mod seeds;
