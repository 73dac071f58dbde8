//! Deadlines and cancellation reach the server: a call that times out, a dropped call
//! future and a dropped `ReplyHandle` each make the server drop the handler (observed
//! with a drop guard inside it), and a deadline alone (no cancel from the client) ends
//! the handler on the server with a deadline-exceeded error.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{start_server, within, Counter, Transport};
use futures::StreamExt;
use mw::core::{FrameKind, TransportConfig};
use mw::rpc::wire::{code, put_call_header};
use mw::rpc::{RpcError, ServerConfig};

#[mw::service(name = "slow", version = 1)]
pub trait Slow {
    /// Never answers: waits on something that never completes.
    async fn hang(&self) -> u64;
    async fn ping(&self, n: u64) -> u64;
}

#[derive(Default)]
struct Probe {
    started: Arc<Counter>,
    dropped: Arc<Counter>,
}

struct SlowImpl(Arc<Probe>);

impl Slow for SlowImpl {
    async fn hang(&self) -> u64 {
        let _guard = self.0.dropped.guard();
        self.0.started.incr();
        std::future::pending::<()>().await;
        unreachable!("pending never completes")
    }
    async fn ping(&self, n: u64) -> u64 {
        n
    }
}

async fn setup(t: Transport) -> (common::TestServer, SlowClient, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let server = start_server(t, ServerConfig::default(), move |b| {
        b.add(SlowServer::new(SlowImpl(p)))
    })
    .await;
    let client = SlowClient::connect(&server.addr).await.expect("connect");
    (server, client, probe)
}

async fn expired_deadline_is_timeout_and_drops_server_handler(t: Transport) {
    let (server, c, probe) = setup(t).await;
    let short = c.with_timeout(Duration::from_millis(100));
    match within("call with a 100 ms deadline", short.hang()).await {
        Err(RpcError::Timeout(d)) => assert_eq!(d, Duration::from_millis(100)),
        other => panic!("expected Timeout(100ms), got {other:?}"),
    }
    probe.started.reaches(1, "handler started").await;
    probe
        .dropped
        .reaches(1, "server dropped the handler after the deadline")
        .await;
    // The connection and the client's default deadline are unaffected.
    assert_eq!(c.channel().timeout(), Duration::from_secs(30));
    assert_eq!(c.ping(5).await.unwrap(), 5);
    server.shutdown().await;
}

async fn dropped_call_future_cancels_server_handler(t: Transport) {
    let (server, c, probe) = setup(t).await;
    let mut call = Box::pin(c.hang());
    tokio::select! {
        r = &mut call => panic!("hang returned {r:?}"),
        _ = within("handler start", probe.started.wait_for(1)) => {}
    }
    assert_eq!(probe.dropped.get(), 0, "handler still running");
    drop(call);
    probe
        .dropped
        .reaches(1, "server dropped the handler after the cancel")
        .await;
    assert_eq!(c.ping(6).await.unwrap(), 6);
    server.shutdown().await;
}

async fn dropped_reply_handle_cancels_server_handler(t: Transport) {
    let (server, c, probe) = setup(t).await;
    let handle = c.start_hang().await.unwrap();
    probe.started.reaches(1, "handler started").await;
    drop(handle);
    probe
        .dropped
        .reaches(1, "server dropped the handler after the cancel")
        .await;
    // A call aborted as a spawned task is cancelled the same way.
    let task = tokio::spawn({
        let c = c.clone();
        async move { c.hang().await }
    });
    probe.started.reaches(2, "second handler started").await;
    task.abort();
    probe
        .dropped
        .reaches(2, "server dropped the aborted task's handler")
        .await;
    assert_eq!(c.ping(7).await.unwrap(), 7);
    server.shutdown().await;
}

/// Without any cancel from the client, the deadline carried in the request makes the
/// server stop the handler and answer "deadline exceeded".
async fn deadline_in_request_alone_stops_handler_on_server(t: Transport) {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let server = start_server(t, ServerConfig::default(), move |b| {
        b.add(SlowServer::new(SlowImpl(p)))
    })
    .await;
    let stream = common::raw_connect(&server).await;
    let (mut reader, write_buf, _writer) =
        mw::core::client_connection(stream, &TransportConfig::default())
            .await
            .expect("handshake");
    // Method 1 (`hang`) takes no arguments: the body is the call header alone.
    write_buf
        .push_with(FrameKind::Request, 0, 42, |b| {
            put_call_header(b, 50, "slow", 1, 1);
            Ok::<_, mw::core::CoreError>(())
        })
        .unwrap();
    let reply = within("reply to a call with a 50 ms deadline", reader.next())
        .await
        .expect("a frame")
        .expect("a valid frame");
    assert_eq!((reply.kind, reply.id), (FrameKind::Error, 42));
    let (c, msg) = common::error_of(&reply);
    assert_eq!(c, code::DEADLINE_EXCEEDED, "{msg}");
    probe
        .dropped
        .reaches(1, "handler dropped at the deadline")
        .await;
    // A deadline of 0 means none: a quick call with deadline 0 still gets its answer.
    write_buf
        .push_with(FrameKind::Request, 0, 43, |b| {
            put_call_header(b, 0, "slow", 1, 2);
            b.extend_from_slice(&[9]); // postcard u64 9
            Ok::<_, mw::core::CoreError>(())
        })
        .unwrap();
    let reply = within("reply to ping", reader.next())
        .await
        .expect("a frame")
        .expect("a valid frame");
    assert_eq!(
        (reply.kind, reply.id, reply.body),
        (FrameKind::Response, 43, Bytes::from_static(&[9]))
    );
    server.shutdown().await;
}

per_transport!(
    expired_deadline_is_timeout_and_drops_server_handler,
    dropped_call_future_cancels_server_handler,
    dropped_reply_handle_cancels_server_handler,
    deadline_in_request_alone_stops_handler_on_server,
);
