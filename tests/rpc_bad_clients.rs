//! Misbehaving peers on raw connections — garbage instead of the handshake, an
//! oversized length prefix, half a frame then close, an unknown frame kind, silence, a
//! wrong protocol version — are each dropped (their socket sees the end) while a
//! well-behaved client on the same server keeps getting correct answers before, during
//! and after. Lesser mistakes (a reply-only frame kind, a truncated call header) are
//! answered with an error and the connection stays usable.

#[macro_use]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    decode_frames, error_of, raw_connect, raw_handshake, read_until_closed, start_server, within,
    Transport,
};
use mw::core::{CoreError, FrameKind, TransportConfig};
use mw::rpc::wire::code;
use mw::rpc::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[mw::service(name = "echo", version = 1)]
pub trait Echo {
    async fn echo(&self, n: u64) -> u64;
}

struct EchoImpl;

impl Echo for EchoImpl {
    async fn echo(&self, n: u64) -> u64 {
        n
    }
}

async fn setup(t: Transport, config: ServerConfig) -> (common::TestServer, EchoClient) {
    let server = start_server(t, config, |b| b.add(EchoServer::new(EchoImpl))).await;
    let client = EchoClient::connect(&server.addr).await.expect("connect");
    (server, client)
}

/// One encoded frame: length prefix, kind, flags, id, body.
fn frame(kind: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
    f.push(kind);
    f.push(0);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// A complete `echo(5)` request frame with id 1.
fn echo_request() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&30_000u32.to_be_bytes());
    body.extend_from_slice(&1u32.to_be_bytes());
    body.extend_from_slice(&1u32.to_be_bytes());
    body.push(4);
    body.extend_from_slice(b"echo");
    body.push(5);
    frame(FrameKind::Request as u8, 1, &body)
}

/// The connection-level error frame (id 0, code PROTOCOL) the server sent before closing.
fn assert_protocol_error(received: &[u8], mentions: &str) {
    let frames = decode_frames(received);
    assert_eq!(frames.len(), 1, "one error frame, got {frames:?}");
    assert_eq!(frames[0].id, 0);
    let (c, msg) = error_of(&frames[0]);
    assert_eq!(c, code::PROTOCOL, "{msg}");
    assert!(
        msg.contains(mentions),
        "{msg:?} should mention {mentions:?}"
    );
}

async fn bad_clients_are_dropped_while_a_good_client_keeps_working(t: Transport) {
    let (server, good) = setup(t, ServerConfig::default()).await;
    assert_eq!(good.echo(1).await.unwrap(), 1);

    // A well-behaved client calling all along, on its own task (bounded in count).
    let stop = Arc::new(AtomicBool::new(false));
    let background = tokio::spawn({
        let (good, stop) = (good.clone(), stop.clone());
        async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) && n < 1_000_000 {
                assert_eq!(good.echo(n).await.unwrap(), n);
                n += 1;
            }
            n
        }
    });

    // 1. Not the handshake at all.
    let mut garbage = raw_connect(&server).await;
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: mw\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(good.echo(2).await.unwrap(), 2);
    let closed = read_until_closed(&mut garbage, "garbage instead of handshake").await;
    assert!(closed.received.is_empty(), "{:?}", closed.received);

    // 2. A valid handshake, then a length prefix of 4 GiB.
    let mut oversized = raw_handshake(&server).await;
    oversized.write_all(&[0xFF; 4]).await.unwrap();
    assert_eq!(good.echo(3).await.unwrap(), 3);
    let closed = read_until_closed(&mut oversized, "oversized length prefix").await;
    assert_protocol_error(&closed.received, "exceeds the maximum");

    // 3. Half a frame, then the client closes its sending side.
    let mut half = raw_handshake(&server).await;
    let request = echo_request();
    half.write_all(&request[..request.len() / 2]).await.unwrap();
    half.shutdown().await.unwrap();
    assert_eq!(good.echo(4).await.unwrap(), 4);
    let closed = read_until_closed(&mut half, "half a frame then close").await;
    assert!(
        decode_frames(&closed.received)
            .iter()
            .all(|f| f.kind == FrameKind::Error && f.id == 0),
        "the half request must not be answered: {:?}",
        decode_frames(&closed.received)
    );

    // 4. A frame of a kind that does not exist.
    let mut unknown = raw_handshake(&server).await;
    unknown.write_all(&frame(99, 7, &[])).await.unwrap();
    assert_eq!(good.echo(5).await.unwrap(), 5);
    let closed = read_until_closed(&mut unknown, "unknown frame kind").await;
    assert_protocol_error(&closed.received, "unknown frame kind 99");

    stop.store(true, Ordering::SeqCst);
    let calls = within("background caller", background).await.unwrap();
    assert!(calls > 0);
    // After: many concurrent calls, all answered correctly.
    let answers = (0..100u64).map(|i| {
        let good = good.clone();
        async move { (i, good.echo(i).await.unwrap()) }
    });
    for (i, r) in within("calls after", futures::future::join_all(answers)).await {
        assert_eq!(r, i);
    }
    server.shutdown().await;
}

async fn silent_client_is_dropped_after_the_handshake_timeout(t: Transport) {
    let config = ServerConfig {
        transport: TransportConfig {
            handshake_timeout: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    };
    let (server, good) = setup(t, config).await;
    let mut silent = raw_connect(&server).await;
    silent.write_all(b"mwr").await.unwrap(); // three of the eight bytes, then nothing
    let closed = read_until_closed(&mut silent, "silent client").await;
    assert!(closed.received.is_empty());
    assert_eq!(good.echo(8).await.unwrap(), 8);
    server.shutdown().await;
}

async fn wrong_protocol_version_gets_a_readable_refusal(t: Transport) {
    let (server, good) = setup(t, ServerConfig::default()).await;
    let mut s = raw_connect(&server).await;
    let err = within(
        "handshake",
        mw::core::handshake::client_handshake(&mut s, 2, 2),
    )
    .await
    .unwrap_err();
    match err {
        CoreError::VersionRefused { reason } => {
            assert!(
                reason.contains("1..=1") && reason.contains("2..=2"),
                "refusal should name both ranges: {reason}"
            );
        }
        other => panic!("expected VersionRefused, got {other:?}"),
    }
    read_until_closed(&mut s, "refused client").await;
    // Overlapping ranges agree on version 1.
    let mut s = raw_connect(&server).await;
    let v = within(
        "handshake",
        mw::core::handshake::client_handshake(&mut s, 1, 5),
    )
    .await
    .unwrap();
    assert_eq!(v, 1);
    assert_eq!(good.echo(9).await.unwrap(), 9);
    server.shutdown().await;
}

async fn lesser_mistakes_get_an_error_and_keep_the_connection(t: Transport) {
    let (server, _good) = setup(t, ServerConfig::default()).await;
    let mut s = raw_handshake(&server).await;
    // A kind only servers send.
    s.write_all(&frame(FrameKind::Response as u8, 5, b"x"))
        .await
        .unwrap();
    // A call whose header is cut short.
    s.write_all(&frame(FrameKind::Request as u8, 6, &[0, 0, 1]))
        .await
        .unwrap();
    // Then a proper call and a ping.
    s.write_all(&echo_request()).await.unwrap();
    s.write_all(&frame(FrameKind::Ping as u8, 9, &[]))
        .await
        .unwrap();
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    while frames.len() < 4 {
        let mut chunk = [0u8; 1024];
        let n = within("replies", s.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "connection closed; got {frames:?}");
        buf.extend_from_slice(&chunk[..n]);
        frames = decode_frames(&buf);
    }
    let by_id = |id| frames.iter().find(|f| f.id == id).expect("reply for id");
    assert_eq!(error_of(by_id(5)).0, code::PROTOCOL);
    assert_eq!(error_of(by_id(6)).0, code::BAD_REQUEST);
    assert_eq!(
        (by_id(1).kind, &by_id(1).body[..]),
        (FrameKind::Response, &[5u8][..])
    );
    assert_eq!(by_id(9).kind, FrameKind::Pong);
    drop(s);
    server.shutdown().await;
}

per_transport!(
    bad_clients_are_dropped_while_a_good_client_keeps_working,
    silent_client_is_dropped_after_the_handshake_timeout,
    wrong_protocol_version_gets_a_readable_refusal,
    lesser_mistakes_get_an_error_and_keep_the_connection,
);
