//! A real `#[mw::service]` over the simulated network of `mw::core::fault`: the server
//! and the client are unchanged, only their addresses say `sim:`.
//!
//! What each test shows (the lectures' "transparency is dangerous"):
//! - a lost request or reply is a `Timeout`, and a timeout does not say whether the call
//!   ran: some calls that timed out did change the server;
//! - the same seed gives the same faults and the same outcomes, call for call;
//! - a partition makes a new connection fail at once (`Unreachable`) while calls on a
//!   connection already open wait out their deadline (or keepalive notices);
//! - a killed endpoint fails its calls with `Disconnected` and comes back when restarted;
//! - duplicated replies are ignored; a duplicated request runs the handler again
//!   (at-least-once) or, if the first copy is still running, fails the call;
//! - reordered and delayed frames cost time, not correctness.
//!
//! Every test runs on paused time: deadlines and delays are exact, and the runs repeat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mw::core::fault::{Direction, Fault, FaultEvent, FaultNet, Faults};
use mw::core::{CoreError, FrameKind};
use mw::rpc::{ClientConfig, RpcError, RunningServer, Server};
use tokio::time::Instant;

#[mw::service(name = "fault.counter", version = 1)]
pub trait Counter {
    /// Adds `n` to the total and returns the new total.
    async fn add(&self, n: u64) -> u64;
    /// The same, after 100 ms of work.
    async fn slow_add(&self, n: u64) -> u64;
}

#[derive(Clone, Default)]
struct Total {
    total: Arc<AtomicU64>,
    /// How many times a handler ran.
    runs: Arc<AtomicU64>,
}

impl Total {
    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

impl Counter for Total {
    async fn add(&self, n: u64) -> u64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.total.fetch_add(n, Ordering::SeqCst) + n
    }

    async fn slow_add(&self, n: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Counter::add(self, n).await
    }
}

async fn serve(net: &FaultNet, endpoint: &str, total: &Total) -> RunningServer {
    Server::builder()
        .add(CounterServer::new(total.clone()))
        .build()
        .spawn(&net.addr(endpoint))
        .await
        .expect("a server listens on a sim: address like on any other")
}

async fn client(net: &FaultNet, from: &str, to: &str) -> CounterClient {
    CounterClient::connect(&net.link_addr(from, to))
        .await
        .expect("connect")
}

/// Whether the log says frame `kind` with `id` was lost going `direction`.
fn lost(log: &[FaultEvent], direction: Direction, kind: FrameKind, id: u64) -> bool {
    log.iter().any(|e| {
        e.direction == direction
            && e.kind == kind
            && e.id == id
            && matches!(e.fault, Fault::Dropped | Fault::Blocked)
    })
}

/// 60 sequential calls with a 1 s deadline over a link that loses 30% of frames each
/// way; returns each call's outcome (`Some(total)` or `None` for a timeout), the log and
/// the number of handler runs.
async fn lossy_run(net_name: &str, seed: u64) -> (Vec<Option<u64>>, Vec<FaultEvent>, u64) {
    let net = FaultNet::new(net_name, seed).unwrap();
    let total = Total::default();
    let server = serve(&net, "counter", &total).await;
    let c = client(&net, "client", "counter")
        .await
        .with_timeout(Duration::from_secs(1));
    net.set_faults(Faults::default().with_drop(0.3));
    let mut outcomes = Vec::new();
    for _ in 0..60 {
        let started = Instant::now();
        match c.add(1).await {
            Ok(t) => outcomes.push(Some(t)),
            Err(RpcError::Timeout(d)) => {
                assert_eq!(d, Duration::from_secs(1));
                assert_eq!(
                    started.elapsed(),
                    d,
                    "a lost frame costs the whole deadline"
                );
                outcomes.push(None);
            }
            Err(e) => panic!("a lossy link gives Ok or Timeout, not {e:?}"),
        }
    }
    net.clear_faults();
    server.shutdown().await;
    (outcomes, net.log(), total.runs())
}

#[tokio::test(start_paused = true)]
async fn lossy_link_calls_time_out_or_succeed_and_a_timeout_may_have_run() {
    let (outcomes, log, runs) = lossy_run("rpc-lossy", 2024).await;
    let timeouts = outcomes.iter().filter(|o| o.is_none()).count();
    assert!(timeouts > 5 && timeouts < 55, "{timeouts} timeouts of 60");
    // Call k (id k on the connection) times out exactly when its request or its reply
    // was lost; it ran exactly when its request arrived.
    let mut ran_but_timed_out = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        let id = i as u64 + 1;
        let request_lost = lost(&log, Direction::Forward, FrameKind::Request, id);
        let reply_lost = lost(&log, Direction::Backward, FrameKind::Response, id);
        assert_eq!(outcome.is_none(), request_lost || reply_lost, "call {id}");
        if !request_lost && reply_lost {
            ran_but_timed_out += 1;
        }
    }
    let requests_arrived = (1..=60u64)
        .filter(|id| !lost(&log, Direction::Forward, FrameKind::Request, *id))
        .count() as u64;
    assert_eq!(runs, requests_arrived);
    assert!(
        ran_but_timed_out > 0,
        "the lesson: some calls reported as timed out did run on the server"
    );
    // The totals the client saw count every run, including the ones it never heard of.
    let seen: Vec<u64> = outcomes.iter().flatten().copied().collect();
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert!(seen.last().copied().unwrap_or(0) <= runs);
}

#[tokio::test(start_paused = true)]
async fn same_seed_same_faults_same_outcomes_over_rpc() {
    let (a, log_a, runs_a) = lossy_run("rpc-seed-a", 77).await;
    let (b, log_b, runs_b) = lossy_run("rpc-seed-b", 77).await;
    assert_eq!(log_a, log_b);
    assert_eq!(a, b);
    assert_eq!(runs_a, runs_b);
    let (c, log_c, _) = lossy_run("rpc-seed-c", 78).await;
    assert_ne!((log_a, a), (log_c, c), "another seed, another run");
}

#[tokio::test(start_paused = true)]
async fn partition_fails_new_connections_fast_and_open_calls_wait_until_heal() {
    let net = FaultNet::new("rpc-partition", 1).unwrap();
    let total = Total::default();
    let server = serve(&net, "kv", &total).await;
    let open = client(&net, "client", "kv")
        .await
        .with_timeout(Duration::from_secs(2));
    assert_eq!(open.add(1).await.unwrap(), 1);

    net.partition(&["client"], &["kv"]);
    let started = Instant::now();
    match CounterClient::connect(&net.link_addr("client", "kv")).await {
        Err(RpcError::Transport(CoreError::Unreachable { reason, .. })) => {
            assert_eq!(
                reason,
                "kv is unreachable from client: partitioned {client} | {kv}"
            )
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "refused at once, no handshake wait"
    );
    // Another endpoint on the same side of nothing is not affected.
    let other = client(&net, "other", "kv").await;
    assert_eq!(other.add(1).await.unwrap(), 2);

    // The open connection does not know: its call waits out the deadline.
    assert!(matches!(open.add(1).await, Err(RpcError::Timeout(_))));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(total.runs(), 2, "the request never arrived");

    net.heal();
    assert_eq!(
        open.add(1).await.unwrap(),
        3,
        "same connection, working again"
    );
    assert_eq!(client(&net, "client", "kv").await.add(1).await.unwrap(), 4);
    assert_eq!(net.stats().refused, 1);
    assert!(net.stats().blocked >= 1);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn keepalive_notices_a_partition_before_the_deadline() {
    let net = FaultNet::new("rpc-keepalive", 1).unwrap();
    let total = Total::default();
    let server = serve(&net, "kv", &total).await;
    let config = ClientConfig {
        keepalive: Some(Duration::from_secs(1)),
        ..ClientConfig::default()
    };
    let channel = mw::rpc::Channel::connect_with(&net.link_addr("client", "kv"), config)
        .await
        .unwrap();
    let c = CounterClient::new(channel);
    assert_eq!(c.add(1).await.unwrap(), 1);
    net.isolate("kv");
    let started = Instant::now();
    assert!(matches!(c.add(1).await, Err(RpcError::Disconnected)));
    assert!(
        started.elapsed() <= Duration::from_secs(2),
        "not the 30 s deadline"
    );
    net.heal();
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn killed_endpoint_fails_calls_at_once_and_a_restarted_server_serves_again() {
    let net = FaultNet::new("rpc-kill", 1).unwrap();
    let total = Total::default();
    let server = serve(&net, "kv", &total).await;
    let c = client(&net, "client", "kv").await;
    let slow = tokio::spawn({
        let c = c.clone();
        async move { c.slow_add(1).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    assert_eq!(net.kill_endpoint("kv"), 1);
    assert!(matches!(slow.await.unwrap(), Err(RpcError::Disconnected)));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(matches!(
        CounterClient::connect(&net.link_addr("client", "kv")).await,
        Err(RpcError::Transport(CoreError::Connect { .. }))
    ));
    // The name is free at once for a restarted server.
    let restarted = serve(&net, "kv", &total).await;
    assert_eq!(client(&net, "client", "kv").await.add(5).await.unwrap(), 5);
    // The network crashed, not the process: the old server's handler still finishes
    // (stopping the process is the caller's business), and nobody hears its reply.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(total.total.load(Ordering::SeqCst), 6);
    server.shutdown().await;
    restarted.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn duplicated_replies_are_ignored() {
    let net = FaultNet::new("rpc-dup-replies", 3).unwrap();
    let total = Total::default();
    let server = serve(&net, "kv", &total).await;
    net.set_link_faults("kv", "client", Faults::default().with_duplicate(1.0));
    let c = client(&net, "client", "kv").await;
    for i in 1..=20 {
        assert_eq!(c.add(1).await.unwrap(), 2 * i - 1);
        assert_eq!(c.slow_add(1).await.unwrap(), 2 * i);
    }
    assert_eq!(total.runs(), 40, "every call ran once");
    let concurrent: Vec<_> = (0..32).map(|_| c.add(0)).collect();
    for r in futures::future::join_all(concurrent).await {
        r.unwrap();
    }
    assert!(c.channel().ping().await.is_ok());
    assert!(net.stats().duplicated >= 40 + 32);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn duplicated_requests_run_again_or_fail_the_call_while_the_first_runs() {
    let net = FaultNet::new("rpc-dup-requests", 3).unwrap();
    let total = Total::default();
    let server = serve(&net, "kv", &total).await;
    net.set_link_faults("client", "kv", Faults::default().with_duplicate(1.0));
    let c = client(&net, "client", "kv").await;

    // A handler that finishes at once is done before the copy arrives: the copy runs it
    // again. Nothing in RPC says "exactly once"; the caller sees one reply.
    assert_eq!(c.add(1).await.unwrap(), 1);
    assert_eq!(total.runs(), 2);
    assert_eq!(total.total.load(Ordering::SeqCst), 2, "added twice");

    // A handler still running when the copy arrives: the server refuses the copy as a
    // reused id (PROTOCOL.md §3.5), and that refusal is all the caller hears.
    match c.slow_add(1).await {
        Err(RpcError::Protocol(m)) => {
            assert!(m.contains("already in use"), "{m}")
        }
        other => panic!("expected the duplicate-id refusal, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(total.runs(), 3, "the first copy still ran");
    // The connection is still fine.
    net.clear_faults();
    assert_eq!(c.add(0).await.unwrap(), 3);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reordered_and_delayed_frames_cost_time_not_correctness() {
    let net = FaultNet::new("rpc-reorder", 9).unwrap();
    let total = Total::default();
    let server = serve(&net, "kv", &total).await;
    net.set_faults(
        Faults::default()
            .with_reorder(0.3)
            .with_delay(0.3, Duration::from_millis(1)..=Duration::from_millis(50)),
    );
    let c = client(&net, "client", "kv").await;
    for round in 0..10u64 {
        let calls: Vec<_> = (0..16).map(|_| c.add(1)).collect();
        let mut totals: Vec<u64> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.expect("no frame is lost, so every call succeeds"))
            .collect();
        totals.sort_unstable();
        let first = round * 16 + 1;
        assert_eq!(totals, (first..first + 16).collect::<Vec<_>>());
    }
    assert_eq!(total.runs(), 160);
    let stats = net.stats();
    assert!(stats.reordered > 0 && stats.delayed > 0, "{stats}");
    assert_eq!(stats.dropped + stats.blocked, 0);
    server.shutdown().await;
}

#[mw::service(name = "fault.chaos", version = 1)]
pub trait Chaos {
    async fn add(&self, n: u64) -> u64;
    async fn slow_add(&self, n: u64) -> u64;
    #[oneway]
    async fn note(&self, n: u64);
    #[oneway(receipt)]
    async fn note_receipt(&self, n: u64);
    #[oneway(delivery)]
    async fn note_delivery(&self, n: u64);
    async fn count(&self, n: u64) -> mw::rpc::Streaming<u64>;
}

impl Chaos for Total {
    async fn add(&self, n: u64) -> u64 {
        Counter::add(self, n).await
    }
    async fn slow_add(&self, n: u64) -> u64 {
        Counter::slow_add(self, n).await
    }
    async fn note(&self, n: u64) {
        Counter::add(self, n).await;
    }
    async fn note_receipt(&self, n: u64) {
        Counter::add(self, n).await;
    }
    async fn note_delivery(&self, n: u64) {
        Counter::add(self, n).await;
    }
    async fn count(&self, n: u64) -> mw::rpc::Streaming<u64> {
        Box::pin(futures::stream::iter(0..n))
    }
}

/// Runs every kind of call (unary, one-way with each acknowledgement, stream, ping) from
/// four clients at once under heavy faults; returns each failure seen.
async fn chaos_run(seed: u64) -> Vec<RpcError> {
    use futures::StreamExt;
    let net = FaultNet::new(&format!("rpc-chaos-{seed}"), seed).unwrap();
    let total = Total::default();
    let server = Server::builder()
        .add(ChaosServer::new(total.clone()))
        .build()
        .spawn(&net.addr("kv"))
        .await
        .unwrap();
    net.set_faults(
        Faults::default()
            .with_drop(0.1)
            .with_duplicate(0.2)
            .with_reorder(0.2)
            .with_delay(0.2, Duration::ZERO..=Duration::from_millis(20)),
    );
    let config = ClientConfig {
        default_timeout: Duration::from_millis(500),
        stream_window: 4,
        ..ClientConfig::default()
    };
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let addr = net.link_addr(&format!("client{t}"), "kv");
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let channel = mw::rpc::Channel::connect_with(&addr, config).await.unwrap();
            let c = ChaosClient::new(channel);
            let mut errors = Vec::new();
            for i in 0..40u64 {
                let r: Result<(), RpcError> = match (i + t) % 7 {
                    0 => c.add(1).await.map(drop),
                    1 => c.slow_add(1).await.map(drop),
                    2 => c.note(1).await,
                    3 => c.note_receipt(1).await,
                    4 => c.note_delivery(1).await,
                    // Streams have no deadline: a lost credit or end stalls them, so the
                    // reader gives up after a second of silence.
                    5 => match c.count(10).await {
                        Ok(mut s) => loop {
                            match tokio::time::timeout(Duration::from_secs(1), s.next()).await {
                                Ok(Some(Ok(_))) => {}
                                Ok(Some(Err(e))) => break Err(e),
                                Ok(None) | Err(_) => break Ok(()),
                            }
                        },
                        Err(e) => Err(e),
                    },
                    _ => c.channel().ping().await.map(drop),
                };
                if let Err(e) = r {
                    errors.push(e);
                }
            }
            assert!(
                !c.channel().is_closed(),
                "faults never break the connection"
            );
            errors
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(t.await.expect("no client task panics"));
    }
    net.clear_faults();
    let fresh = ChaosClient::connect(&net.addr("kv")).await.unwrap();
    fresh.add(0).await.expect("the server survives");
    server.shutdown().await;
    errors
}

#[tokio::test(start_paused = true)]
async fn heavy_faults_on_every_kind_of_call_fail_calls_cleanly_never_the_connection() {
    for seed in 0..10 {
        let errors = chaos_run(seed).await;
        assert!(!errors.is_empty(), "seed {seed}: faults were felt");
        for e in errors {
            match &e {
                RpcError::Timeout(_) => {}
                // A duplicated request while its first copy runs (PROTOCOL.md §3.5).
                RpcError::Protocol(m) if m.contains("already in use") => {}
                // Duplicated stream items or credits: more items than the reader granted.
                RpcError::Protocol(m) if m.contains("beyond its credit") => {}
                _ => panic!("seed {seed}: unexpected failure {e:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_work_on_a_multi_thread_runtime_in_real_time() {
    let net = FaultNet::new("rpc-real-time", 5).unwrap();
    let total = Total::default();
    let server = serve(&net, "kv", &total).await;
    net.set_faults(
        Faults::default()
            .with_drop(0.2)
            .with_duplicate(0.1)
            .with_reorder(0.2)
            .with_delay(0.2, Duration::ZERO..=Duration::from_millis(5)),
    );
    let c = client(&net, "client", "kv")
        .await
        .with_timeout(Duration::from_secs(1));
    let calls: Vec<_> = (0..64).map(|_| c.add(1)).collect();
    let mut ok = 0;
    for r in futures::future::join_all(calls).await {
        match r {
            Ok(_) => ok += 1,
            Err(RpcError::Timeout(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(ok > 0 && ok < 64, "{ok} of 64 succeeded");
    assert!(total.runs() >= ok);
    net.clear_faults();
    assert!(c.add(0).await.is_ok());
    server.shutdown().await;
}
