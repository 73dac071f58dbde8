//! One-way calls and their three synchronisation points: none (returns once sent, even
//! while the handler is blocked), receipt (returns once the server's middleware queued
//! it, even while every handler slot is busy) and delivery (returns only once the
//! handler was started). Also: an acknowledged one-way call runs to completion even
//! after the caller's deadline has passed.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{start_server, within, Counter, Gate, Transport};
use mw::rpc::{RpcError, ServerConfig};

#[mw::service(name = "oneway", version = 1)]
pub trait Oneway {
    /// Occupies a handler slot until the gate opens.
    async fn hold(&self) -> u64;
    /// Waits at the gate, then logs `n`.
    #[oneway]
    async fn fire(&self, n: u64);
    /// Logs `n`.
    #[oneway(receipt)]
    async fn note(&self, n: u64);
    /// Logs `n`.
    #[oneway(delivery)]
    async fn deliver(&self, n: u64);
    /// Waits at the gate (with a drop guard), then logs `n`.
    #[oneway(receipt)]
    async fn slow_note(&self, n: u64);
    /// Waits at the gate (with a drop guard), then logs `n`.
    #[oneway(delivery)]
    async fn slow_deliver(&self, n: u64);
    /// Never answers (with a drop guard).
    async fn hang(&self);
}

#[derive(Default)]
struct Probe {
    gate: Arc<Gate>,
    held: Arc<Counter>,
    started: Arc<Counter>,
    /// Handlers that finished (logged their argument).
    ran: Arc<Counter>,
    log: Mutex<Vec<u64>>,
    slow_dropped: Arc<Counter>,
    hang_dropped: Arc<Counter>,
}

impl Probe {
    fn record(&self, n: u64) {
        self.log.lock().unwrap().push(n);
        self.ran.incr();
    }
    fn log(&self) -> Vec<u64> {
        self.log.lock().unwrap().clone()
    }
}

struct OnewayImpl(Arc<Probe>);

impl Oneway for OnewayImpl {
    async fn hold(&self) -> u64 {
        self.0.held.incr();
        self.0.gate.wait().await;
        99
    }
    async fn fire(&self, n: u64) {
        self.0.started.incr();
        self.0.gate.wait().await;
        self.0.record(n);
    }
    async fn note(&self, n: u64) {
        self.0.record(n);
    }
    async fn deliver(&self, n: u64) {
        self.0.record(n);
    }
    async fn slow_note(&self, n: u64) {
        let guard = self.0.slow_dropped.guard();
        self.0.started.incr();
        self.0.gate.wait().await;
        self.0.record(n);
        std::mem::forget(guard);
    }
    async fn slow_deliver(&self, n: u64) {
        let guard = self.0.slow_dropped.guard();
        self.0.started.incr();
        self.0.gate.wait().await;
        self.0.record(n);
        std::mem::forget(guard);
    }
    async fn hang(&self) {
        let _guard = self.0.hang_dropped.guard();
        std::future::pending::<()>().await;
    }
}

async fn setup(
    t: Transport,
    config: ServerConfig,
) -> (common::TestServer, OnewayClient, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let server = start_server(t, config, move |b| b.add(OnewayServer::new(OnewayImpl(p)))).await;
    let client = OnewayClient::connect(&server.addr).await.expect("connect");
    (server, client, probe)
}

async fn unacknowledged_oneway_returns_while_its_handler_is_blocked(t: Transport) {
    let (server, c, probe) = setup(t, ServerConfig::default()).await;
    within("fire 1", c.fire(1)).await.unwrap();
    probe.started.reaches(1, "first fire handler started").await;
    // The first handler is blocked at the gate; sending more does not wait for it.
    within("fire 2", c.fire(2)).await.unwrap();
    probe
        .started
        .reaches(2, "second fire handler started")
        .await;
    assert_eq!(probe.ran.get(), 0, "both handlers are blocked at the gate");
    probe.gate.open();
    probe.ran.reaches(2, "both fire handlers finished").await;
    let mut log = probe.log();
    log.sort_unstable();
    assert_eq!(log, [1, 2]);
    server.shutdown().await;
}

async fn receipt_returns_while_slot_busy_but_delivery_waits_for_the_handler(t: Transport) {
    let config = ServerConfig {
        max_in_flight: 1,
        ..Default::default()
    };
    let (server, c, probe) = setup(t, config).await;
    // Occupy the connection's only handler slot.
    let held = c.start_hold().await.unwrap();
    probe.held.reaches(1, "hold started").await;

    within("fire while the slot is busy", c.fire(1))
        .await
        .unwrap();
    let mut deliver = Box::pin(c.deliver(3));
    // The first poll sends the request; the call then waits for the delivery ack.
    assert!(futures::poll!(deliver.as_mut()).is_pending());
    // The receipt is acknowledged although no handler can run yet. The server handles a
    // connection's frames in order, so it has also queued `deliver` by now.
    within("receipt while the slot is busy", c.note(2))
        .await
        .unwrap();
    assert_eq!(probe.ran.get(), 0, "no one-way handler has run yet");
    assert!(
        futures::poll!(deliver.as_mut()).is_pending(),
        "delivery acknowledged while the only handler slot was busy"
    );

    probe.gate.open();
    assert_eq!(within("hold", held).await.unwrap(), 99);
    within("delivery ack after the slot freed", deliver)
        .await
        .unwrap();
    probe.ran.reaches(3, "all one-way handlers ran").await;
    // Queued calls ran in arrival order.
    assert_eq!(probe.log(), [1, 3, 2]);
    server.shutdown().await;
}

/// The caller's deadline bounds its wait for the acknowledgement, not the handler: once
/// acknowledged, the call runs to the end however long the caller's deadline was.
async fn acknowledged_oneway_outlives_the_callers_deadline(t: Transport) {
    let (server, c, probe) = setup(t, ServerConfig::default()).await;
    let short = c.with_timeout(Duration::from_millis(50));
    within("receipt", short.slow_note(7)).await.unwrap();
    within("delivery", short.slow_deliver(8)).await.unwrap();
    probe.started.reaches(2, "both handlers started").await;
    // A witness call started after both, with a longer deadline: once the server dropped
    // its handler, both 50 ms deadlines have long passed on the server too.
    let witness = c.with_timeout(Duration::from_millis(150));
    assert!(matches!(
        within("witness", witness.hang()).await,
        Err(RpcError::Timeout(_))
    ));
    probe
        .hang_dropped
        .reaches(1, "witness handler dropped")
        .await;
    assert_eq!(
        probe.slow_dropped.get(),
        0,
        "an acknowledged one-way handler was dropped at the caller's deadline"
    );
    probe.gate.open();
    probe.ran.reaches(2, "acknowledged handlers finished").await;
    let mut log = probe.log();
    log.sort_unstable();
    assert_eq!(log, [7, 8]);
    server.shutdown().await;
}

per_transport!(
    unacknowledged_oneway_returns_while_its_handler_is_blocked,
    receipt_returns_while_slot_busy_but_delivery_waits_for_the_handler,
    acknowledged_oneway_outlives_the_callers_deadline,
);
