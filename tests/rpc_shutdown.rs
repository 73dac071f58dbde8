//! Graceful shutdown: calls and streams in flight when it starts still complete, new
//! connections are refused, the shutdown future completes, a caller that gives up
//! during the drain still cancels its call, and a handler that never finishes is
//! abandoned after the drain timeout (its caller sees `Cancelled`, not a hang).

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, start_server, within, Counter, Gate, Transport};
use futures::StreamExt;
use mw::core::FrameKind;
use mw::rpc::wire::{code, put_call_header};
use mw::rpc::{Channel, ClientConfig, RpcError, ServerConfig, Streaming};

#[mw::service(name = "drain", version = 1)]
pub trait Drain {
    /// Waits at the gate, then answers `n * 2`.
    async fn slow(&self, n: u64) -> u64;
    /// Never answers.
    async fn hang(&self) -> u64;
    /// `0..n`.
    async fn count(&self, n: u64) -> Streaming<u64>;
    /// A stream that never yields (like an idle subscription).
    async fn idle(&self) -> Streaming<u64>;
}

#[derive(Default)]
struct Probe {
    gate: Arc<Gate>,
    started: Arc<Counter>,
    dropped: Arc<Counter>,
}

struct DrainImpl(Arc<Probe>);

impl Drain for DrainImpl {
    async fn slow(&self, n: u64) -> u64 {
        self.0.started.incr();
        self.0.gate.wait().await;
        n * 2
    }
    async fn hang(&self) -> u64 {
        let _guard = self.0.dropped.guard();
        self.0.started.incr();
        std::future::pending::<()>().await;
        unreachable!()
    }
    async fn count(&self, n: u64) -> Streaming<u64> {
        Box::pin(futures::stream::iter(0..n))
    }
    async fn idle(&self) -> Streaming<u64> {
        Box::pin(futures::stream::pending())
    }
}

async fn setup(t: Transport, drain_timeout: Duration) -> (common::TestServer, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let config = ServerConfig {
        drain_timeout,
        ..Default::default()
    };
    let server = start_server(t, config, move |b| b.add(DrainServer::new(DrainImpl(p)))).await;
    (server, probe)
}

/// Long enough never to end a drain in these tests unless something is stuck.
const PATIENT: Duration = Duration::from_secs(60);

async fn connect(addr: &str, window: u32) -> DrainClient {
    let config = ClientConfig {
        stream_window: window,
        ..Default::default()
    };
    DrainClient::new(Channel::connect_with(addr, config).await.expect("connect"))
}

/// Waits until the client has seen the server's GoAway (the shutdown has begun).
async fn wait_for_goaway(c: &DrainClient) {
    eventually("client sees GoAway", || c.channel().is_closed()).await;
}

async fn shutdown_answers_calls_in_flight_and_refuses_new_connections(t: Transport) {
    let (server, probe) = setup(t, PATIENT).await;
    let addr = server.addr.clone();
    let c = connect(&addr, 64).await;
    let other = connect(&addr, 64).await;
    let handles = [
        c.start_slow(1).await.unwrap(),
        c.start_slow(2).await.unwrap(),
        other.start_slow(3).await.unwrap(),
    ];
    probe.started.reaches(3, "three calls running").await;

    let shutdown = tokio::spawn(server.shutdown());
    wait_for_goaway(&c).await;
    wait_for_goaway(&other).await;
    // The listener is gone before GoAway is sent: no new connections.
    match within("connect during drain", Channel::connect(&addr)).await {
        Err(RpcError::Transport(_)) => {}
        other => panic!("expected a refused connection, got {other:?}"),
    }
    // No new calls on the draining connection either.
    assert!(
        c.slow(4).await.is_err(),
        "new call accepted during the drain"
    );
    assert!(
        !shutdown.is_finished(),
        "drain finished with calls in flight"
    );

    probe.gate.open();
    for (h, n) in handles.into_iter().zip([1u64, 2, 3]) {
        assert_eq!(within("call in flight", h).await.unwrap(), n * 2);
    }
    within("shutdown completes", shutdown).await.unwrap();
    assert!(matches!(
        within("connect after shutdown", Channel::connect(&addr)).await,
        Err(RpcError::Transport(_))
    ));
}

async fn stream_in_flight_at_shutdown_is_drained_to_its_end(t: Transport) {
    // Drain timeout short enough that a stalled drain fails this test quickly.
    let (server, _probe) = setup(t, Duration::from_secs(3)).await;
    let c = connect(&server.addr, 8).await;
    let mut s = c.count(100).await.unwrap();
    for i in 0..3 {
        assert_eq!(within("item", s.next()).await.unwrap().unwrap(), i);
    }
    server.begin_shutdown();
    wait_for_goaway(&c).await;
    // The remaining 97 items need credit the client sends during the drain.
    let rest: Vec<u64> = within(
        "rest of the stream",
        s.map(|r| r.expect("stream item during drain")).collect(),
    )
    .await;
    assert_eq!(rest, (3..100).collect::<Vec<_>>());
    within("shutdown completes", server.shutdown()).await;
}

/// A stream waiting for its next item (an idle subscription or
/// consumer) does not hold the drain until its timeout: it ends as soon as the shutdown
/// begins, and its reader hears `ShuttingDown`.
async fn idle_stream_at_shutdown_ends_at_once_as_shutting_down(t: Transport) {
    let (server, _probe) = setup(t, PATIENT).await;
    let c = connect(&server.addr, 8).await;
    let mut s = c.idle().await.unwrap();
    // The call is accepted and running before the shutdown starts.
    assert_eq!(c.count(1).await.unwrap().next().await.unwrap().unwrap(), 0);
    server.begin_shutdown();
    match within("idle stream ends", s.next()).await {
        Some(Err(RpcError::ShuttingDown)) => {}
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    within("shutdown completes", server.shutdown()).await;
}

async fn call_dropped_during_drain_is_cancelled_on_the_server(t: Transport) {
    let (server, probe) = setup(t, PATIENT).await;
    let c = connect(&server.addr, 64).await;
    let h = c.start_hang().await.unwrap();
    probe.started.reaches(1, "handler started").await;
    server.begin_shutdown();
    wait_for_goaway(&c).await;
    drop(h);
    probe
        .dropped
        .reaches(1, "server dropped the handler whose caller gave up")
        .await;
    within("shutdown completes", server.shutdown()).await;
}

async fn stuck_handler_is_abandoned_after_drain_timeout(t: Transport) {
    let (server, probe) = setup(t, Duration::from_millis(100)).await;
    let c = connect(&server.addr, 64).await;
    let call = tokio::spawn({
        let c = c.clone();
        async move { c.hang().await }
    });
    probe.started.reaches(1, "handler started").await;
    within("shutdown completes", server.shutdown()).await;
    probe.dropped.reaches(1, "abandoned handler dropped").await;
    match within("call in flight when the server went away", call)
        .await
        .unwrap()
    {
        // The server says it abandoned the call (not a hang, not a bare disconnect).
        Err(RpcError::Cancelled) => {}
        other => panic!("expected Cancelled, got {other:?}"),
    }
}

/// A call that crossed the server's GoAway on the wire is refused with "shutting down"
/// (the caller learns at once that it did not run), while the call in flight finishes.
async fn call_arriving_during_drain_is_refused_as_shutting_down(t: Transport) {
    let (server, probe) = setup(t, PATIENT).await;
    let stream = common::raw_connect(&server).await;
    let (mut reader, write_buf, _writer) =
        mw::core::client_connection(stream, &mw::core::TransportConfig::default())
            .await
            .expect("handshake");
    let call = |id: u64, method: u32, arg: u8| {
        write_buf
            .push_with(FrameKind::Request, 0, id, |b| {
                put_call_header(b, 0, "drain", 1, method);
                b.extend_from_slice(&[arg]);
                Ok::<_, mw::core::CoreError>(())
            })
            .unwrap()
    };
    call(1, 1, 5); // slow(5): runs until the gate opens
    probe.started.reaches(1, "slow call running").await;
    server.begin_shutdown();
    let goaway = within("GoAway", reader.next()).await.unwrap().unwrap();
    assert_eq!(goaway.kind, FrameKind::GoAway);
    call(2, 1, 6); // sent after the GoAway arrived
    let refusal = within("refusal", reader.next()).await.unwrap().unwrap();
    assert_eq!(refusal.id, 2);
    let (c, msg) = common::error_of(&refusal);
    assert_eq!(c, code::SHUTTING_DOWN, "{msg}");
    assert_eq!(probe.started.get(), 1, "the refused call did not run");
    probe.gate.open();
    let reply = within("reply in flight", reader.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (reply.kind, reply.id, &reply.body[..]),
        (FrameKind::Response, 1, &[10u8][..])
    );
    assert!(within("close after drain", reader.next()).await.is_none());
    within("shutdown completes", server.shutdown()).await;
}

per_transport!(
    call_arriving_during_drain_is_refused_as_shutting_down,
    shutdown_answers_calls_in_flight_and_refuses_new_connections,
    stream_in_flight_at_shutdown_is_drained_to_its_end,
    idle_stream_at_shutdown_ends_at_once_as_shutting_down,
    call_dropped_during_drain_is_cancelled_on_the_server,
    stuck_handler_is_abandoned_after_drain_timeout,
);
