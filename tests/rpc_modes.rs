//! Execution modes: an iterative server runs one call at a time across all its
//! connections (a second connection's call waits while the first runs), a concurrent
//! server overlaps them.

#[macro_use]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{start_server, within, Counter, Gate, Transport};
use mw::rpc::{ExecutionMode, ServerConfig};

#[mw::service(name = "modes", version = 1)]
pub trait Modes {
    /// Waits at the gate.
    async fn gated(&self, n: u64) -> u64;
    /// Yields a few times.
    async fn busy(&self, n: u64) -> u64;
}

#[derive(Default)]
struct Probe {
    gate: Arc<Gate>,
    started: Arc<Counter>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Probe {
    fn enter(&self) -> Running<'_> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.started.incr();
        Running(self)
    }
    fn max(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }
}

/// Counts a handler as running until dropped.
struct Running<'a>(&'a Probe);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

struct ModesImpl(Arc<Probe>);

impl Modes for ModesImpl {
    async fn gated(&self, n: u64) -> u64 {
        let _running = self.0.enter();
        self.0.gate.wait().await;
        n
    }
    async fn busy(&self, n: u64) -> u64 {
        let _running = self.0.enter();
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        n
    }
}

async fn setup(t: Transport, mode: ExecutionMode) -> (common::TestServer, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let config = ServerConfig {
        mode,
        ..Default::default()
    };
    let server = start_server(t, config, move |b| b.add(ModesServer::new(ModesImpl(p)))).await;
    (server, probe)
}

/// Two connections with a gated call on each; returns both handles and the second client.
/// (The second call has been sent, not necessarily received, when this returns.)
async fn two_calls_on_two_connections(
    server: &common::TestServer,
) -> (
    mw::rpc::ReplyHandle<u64>,
    mw::rpc::ReplyHandle<u64>,
    ModesClient,
) {
    let a = ModesClient::connect(&server.addr).await.unwrap();
    let b = ModesClient::connect(&server.addr).await.unwrap();
    let first = a.start_gated(1).await.unwrap();
    (first, b.start_gated(2).await.unwrap(), b)
}

async fn iterative_server_never_overlaps_calls(t: Transport) {
    let (server, probe) = setup(t, ExecutionMode::Iterative).await;
    let (first, second, b) = two_calls_on_two_connections(&server).await;
    probe.started.reaches(1, "first call running").await;
    // The server handles a connection's frames in order and polls a dispatched call
    // before reading the next frame: once pings sent after the second call are answered,
    // that call has had every chance to start, which only the iterative turn prevents.
    for _ in 0..3 {
        within("ping", b.channel().ping()).await.unwrap();
    }
    assert_eq!(
        probe.started.get(),
        1,
        "second connection's call started while the first ran"
    );
    probe.gate.open();
    assert_eq!(within("first", first).await.unwrap(), 1);
    assert_eq!(within("second", second).await.unwrap(), 2);
    // Many calls from several connections at once: still one at a time.
    let clients = futures::future::join_all((0..4).map(|_| ModesClient::connect(&server.addr)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    let calls = clients.iter().enumerate().flat_map(|(c, client)| {
        (0..25u64).map(move |i| {
            let client = client.clone();
            async move { (c as u64 * 100 + i, client.busy(c as u64 * 100 + i).await) }
        })
    });
    for (n, r) in within("100 calls", futures::future::join_all(calls)).await {
        assert_eq!(r.unwrap(), n);
    }
    assert_eq!(probe.max(), 1, "iterative server ran calls concurrently");
    server.shutdown().await;
}

async fn concurrent_server_overlaps_calls(t: Transport) {
    let (server, probe) = setup(t, ExecutionMode::Concurrent).await;
    let (first, second, _b) = two_calls_on_two_connections(&server).await;
    probe.started.reaches(2, "both calls running at once").await;
    assert_eq!(probe.max(), 2);
    probe.gate.open();
    assert_eq!(within("first", first).await.unwrap(), 1);
    assert_eq!(within("second", second).await.unwrap(), 2);
    server.shutdown().await;
}

per_transport!(
    iterative_server_never_overlaps_calls,
    concurrent_server_overlaps_calls,
);
