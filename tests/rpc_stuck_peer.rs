//! A peer that stops reading must not hold the server hostage: shutdown still completes
//! within the drain timeout (plus a short grace), and the server stays usable until then.

#[macro_use]
mod common;

use std::time::Duration;

use common::{raw_handshake, start_server, within, Transport};
use mw::core::{frame, FrameKind};
use mw::demo::{IncrementClient, IncrementImpl, IncrementServer};
use mw::rpc::ServerConfig;
use tokio::io::AsyncWriteExt;

/// One `inc(1)` request frame, built with mw's own encoders.
fn inc_request(id: u64) -> bytes::BytesMut {
    let mut b = bytes::BytesMut::new();
    frame::encode_with(&mut b, FrameKind::Request, 0, id, 1 << 20, |b| {
        mw::rpc::wire::put_call_header(b, 0, "increment", 1, 1);
        b.extend_from_slice(&[1]);
        Ok::<_, mw::core::FrameError>(())
    })
    .unwrap();
    b
}

async fn shutdown_completes_with_a_peer_that_never_reads(t: Transport) {
    let config = ServerConfig {
        drain_timeout: Duration::from_millis(100),
        transport: mw::core::TransportConfig {
            write_buffer_high_water: 4096,
            ..Default::default()
        },
        ..Default::default()
    };
    let server = start_server(t, config, |b| b.add(IncrementServer::new(IncrementImpl))).await;
    let mut stuck = raw_handshake(&server).await;
    // Pipeline requests without ever reading replies, until the server stops reading us
    // (a write that does not complete in time): its replies to us are now stuck.
    let mut id = 1u64;
    let mut blocked = false;
    for _ in 0..10_000 {
        let mut batch = bytes::BytesMut::new();
        for _ in 0..256 {
            batch.extend_from_slice(&inc_request(id));
            id += 1;
        }
        if tokio::time::timeout(Duration::from_millis(200), stuck.write_all(&batch))
            .await
            .is_err()
        {
            blocked = true;
            break;
        }
    }
    assert!(
        blocked,
        "the server kept reading a peer that never reads its replies"
    );
    // Other clients are still served.
    let client = IncrementClient::connect(&server.addr).await.unwrap();
    assert_eq!(within("a healthy call", client.inc(41)).await.unwrap(), 42);
    // Shutdown must not wait forever to flush replies nobody reads.
    within(
        "shutdown despite a peer that never reads",
        server.shutdown(),
    )
    .await;
    drop(stuck);
}

per_transport!(shutdown_completes_with_a_peer_that_never_reads);
