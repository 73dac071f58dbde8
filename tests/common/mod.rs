//! Helpers shared by the `rpc_*` integration tests: one way to start a server on each
//! transport, readiness signals for handlers (counters, gates, drop guards), bounded
//! waits, and raw connections for speaking bytes to a server.
//!
//! Each test file does `#[macro_use] mod common;` and uses what it needs.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mw::core::Stream;
use mw::rpc::{RunningServer, Server, ServerBuilder, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Upper bound for one whole scenario; a hang fails the test instead of stalling the run.
pub const SCENARIO_LIMIT: Duration = Duration::from_secs(30);
/// Upper bound for one awaited step (a reply, a readiness signal, an EOF).
pub const STEP_LIMIT: Duration = Duration::from_secs(10);

/// The three transports every scenario runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `127.0.0.1:0`.
    Tcp,
    /// `unix:<tempdir>/s.sock`.
    Unix,
    /// `inproc:0`.
    InProc,
}

/// Runs `scenario` for `t` under [`SCENARIO_LIMIT`].
pub async fn run<F, Fut>(scenario: F, t: Transport)
where
    F: FnOnce(Transport) -> Fut,
    Fut: Future<Output = ()>,
{
    if tokio::time::timeout(SCENARIO_LIMIT, scenario(t))
        .await
        .is_err()
    {
        panic!("scenario over {t:?} did not finish within {SCENARIO_LIMIT:?}");
    }
}

/// `per_transport!(a, b)` makes modules `a` and `b`, each with a `tcp`, `unix` and
/// `inproc` test that runs `async fn a(t: Transport)` (defined next to the macro call)
/// over that transport on a two-thread runtime.
macro_rules! per_transport {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use $crate::common::{run, Transport};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tcp() {
                run(super::$scenario, Transport::Tcp).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unix() {
                run(super::$scenario, Transport::Unix).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn inproc() {
                run(super::$scenario, Transport::InProc).await
            }
        }
    )*};
}

/// Where to bind: an address template, and the temp dir that holds a Unix socket.
///
/// Clone it (with [`TestServer::endpoint`]) to bind a second server at the same real
/// address after the first one stopped.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// What to pass to `Server::spawn` (`127.0.0.1:0`, `unix:..`, `inproc:0`, or a real
    /// address to bind again).
    pub addr: String,
    dir: Option<Arc<tempfile::TempDir>>,
}

impl Endpoint {
    /// A fresh endpoint on `t`.
    pub fn new(t: Transport) -> Endpoint {
        match t {
            Transport::Tcp => Endpoint {
                addr: "127.0.0.1:0".into(),
                dir: None,
            },
            Transport::Unix => {
                let dir = tempfile::tempdir().expect("temp dir");
                Endpoint {
                    addr: format!("unix:{}", dir.path().join("s.sock").display()),
                    dir: Some(Arc::new(dir)),
                }
            }
            Transport::InProc => Endpoint {
                addr: "inproc:0".into(),
                dir: None,
            },
        }
    }
}

/// A running server and the address clients use.
#[derive(Debug)]
pub struct TestServer {
    /// The real address (port or in-process name filled in).
    pub addr: String,
    running: Option<RunningServer>,
    dir: Option<Arc<tempfile::TempDir>>,
}

impl TestServer {
    /// The endpoint this server listens on, to bind it again later.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr.clone(),
            dir: self.dir.clone(),
        }
    }

    /// Graceful shutdown; returns when the drain is over.
    pub async fn shutdown(mut self) {
        let running = self.running.take().expect("running");
        running.shutdown().await;
    }

    /// Starts a graceful shutdown without waiting.
    pub fn begin_shutdown(&self) {
        self.running.as_ref().expect("running").begin_shutdown();
    }

    /// The address parsed, for raw connections.
    pub fn address(&self) -> mw::core::Address {
        self.addr.parse().expect("server address parses")
    }
}

/// Starts a server on a fresh endpoint of `t`; `services` adds the services.
pub async fn start_server(
    t: Transport,
    config: ServerConfig,
    services: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> TestServer {
    start_server_at(&Endpoint::new(t), config, services).await
}

/// Starts a server at `endpoint` (for restarting at the same address).
pub async fn start_server_at(
    endpoint: &Endpoint,
    config: ServerConfig,
    services: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> TestServer {
    let running = services(Server::builder().config(config))
        .build()
        .spawn(&endpoint.addr)
        .await
        .unwrap_or_else(|e| panic!("cannot start server on {}: {e}", endpoint.addr));
    TestServer {
        addr: running.local_addr().to_string(),
        running: Some(running),
        dir: endpoint.dir.clone(),
    }
}

/// Awaits `fut`, failing the test with `what` if it takes longer than [`STEP_LIMIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP_LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP_LIMIT:?} waiting for: {what}"),
    }
}

/// Waits (bounded by [`STEP_LIMIT`]) until `cond` holds, yielding between checks.
///
/// For state that has no readiness signal of its own (e.g. "the client has seen the
/// server's GoAway"); each check is cheap and the loop is bounded in time and count.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP_LIMIT;
    for _ in 0..10_000_000u64 {
        if cond() {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never became true within {STEP_LIMIT:?}: {what}");
}

/// A count that tasks can wait on: "n handlers started", "a guard was dropped".
#[derive(Debug, Default)]
pub struct Counter {
    n: AtomicUsize,
    changed: Notify,
}

impl Counter {
    /// A new zero counter, shared.
    pub fn new() -> Arc<Counter> {
        Arc::default()
    }

    /// Adds one and wakes waiters.
    pub fn incr(&self) {
        self.n.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// The current count.
    pub fn get(&self) -> usize {
        self.n.load(Ordering::SeqCst)
    }

    /// Waits until the count is at least `n` (unbounded; wrap in [`within`] or use
    /// [`Counter::reaches`]).
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.get() >= n {
                return;
            }
            notified.await;
        }
    }

    /// Waits, bounded by [`STEP_LIMIT`], until the count is at least `n`.
    pub async fn reaches(&self, n: usize, what: &str) {
        let current = || self.get();
        if tokio::time::timeout(STEP_LIMIT, self.wait_for(n))
            .await
            .is_err()
        {
            panic!(
                "{what}: count stayed at {} (< {n}) for {STEP_LIMIT:?}",
                current()
            );
        }
    }

    /// A guard that adds one to this counter when dropped.
    pub fn guard(self: &Arc<Self>) -> DropGuard {
        DropGuard(self.clone())
    }
}

/// Adds one to its counter when dropped: put one in a handler to observe that the
/// server dropped the handler's future (cancellation, deadline, shutdown).
#[derive(Debug)]
pub struct DropGuard(Arc<Counter>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.incr();
    }
}

/// A gate handlers wait at until the test opens it.
#[derive(Debug, Default)]
pub struct Gate(Counter);

impl Gate {
    /// A closed gate, shared.
    pub fn new() -> Arc<Gate> {
        Arc::default()
    }

    /// Opens the gate for every present and future waiter.
    pub fn open(&self) {
        self.0.incr();
    }

    /// Waits until the gate is open.
    pub async fn wait(&self) {
        self.0.wait_for(1).await;
    }
}

// ---------------------------------------------------------------------------
// Raw connections.

/// The client handshake offering protocol version 1 only.
pub const HELLO_V1: [u8; 8] = *b"mwrp\x00\x01\x00\x01";

/// Connects without any handshake.
pub async fn raw_connect(server: &TestServer) -> Stream {
    within("raw connect", mw::core::connect(&server.address()))
        .await
        .expect("raw connect")
}

/// Connects and completes the version-1 handshake by hand, checking the server's answer.
pub async fn raw_handshake(server: &TestServer) -> Stream {
    let mut s = raw_connect(server).await;
    s.write_all(&HELLO_V1).await.expect("send hello");
    let mut reply = [0u8; 8];
    within("handshake reply", s.read_exact(&mut reply))
        .await
        .expect("read handshake reply");
    assert_eq!(&reply, b"mwrp\x00\x01\x00\x00", "accepting handshake reply");
    s
}

/// How a raw connection ended.
#[derive(Debug)]
pub struct Closed {
    /// Bytes received before the end.
    pub received: Vec<u8>,
    /// `None` for an orderly EOF, the error kind for a reset.
    pub error: Option<std::io::ErrorKind>,
}

/// Reads until the server closes the connection (EOF or reset), bounded by
/// [`STEP_LIMIT`] and 1 MiB; fails the test if the connection stays open.
pub async fn read_until_closed(s: &mut Stream, what: &str) -> Closed {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => {
                    received.extend_from_slice(&buf[..n]);
                    assert!(
                        received.len() < 1 << 20,
                        "{what}: server keeps sending on a connection it should drop"
                    );
                }
                Err(e) => return Some(e.kind()),
            }
        }
    };
    let error = match tokio::time::timeout(STEP_LIMIT, read_all).await {
        Ok(e) => e,
        Err(_) => panic!("{what}: server did not close the connection within {STEP_LIMIT:?}"),
    };
    Closed { received, error }
}

/// Decodes every whole frame in `bytes` (the server's output on a raw connection).
pub fn decode_frames(bytes: &[u8]) -> Vec<mw::core::Frame> {
    use tokio_util::codec::Decoder;
    let mut codec = mw::core::FrameCodec::default();
    let mut buf = bytes::BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Ok(Some(f)) = codec.decode(&mut buf) {
        frames.push(f);
    }
    frames
}

/// The code and message of an `Error` frame body.
pub fn error_of(frame: &mw::core::Frame) -> (u16, String) {
    assert_eq!(frame.kind, mw::core::FrameKind::Error, "{frame:?}");
    let code = u16::from_be_bytes([frame.body[0], frame.body[1]]);
    (code, String::from_utf8_lossy(&frame.body[2..]).into_owned())
}

// ---------------------------------------------------------------------------
// A server that can die abruptly.

/// A server on its own runtime and thread, so that the test can kill it: dropping the
/// runtime drops every task at once, closing every connection without a GoAway and
/// dropping running handlers — what a crashed server process looks like to clients.
#[derive(Debug)]
pub struct IsolatedServer {
    /// The real address.
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    dead: Option<tokio::sync::oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: Option<Arc<tempfile::TempDir>>,
}

impl IsolatedServer {
    /// Starts a server at `endpoint` on a new thread with its own runtime.
    pub async fn start(
        endpoint: &Endpoint,
        config: ServerConfig,
        services: impl FnOnce(ServerBuilder) -> ServerBuilder + Send + 'static,
    ) -> IsolatedServer {
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (dead_tx, dead_rx) = tokio::sync::oneshot::channel();
        let bind = endpoint.addr.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let running = services(Server::builder().config(config))
                    .build()
                    .spawn(&bind)
                    .await;
                let running = match running {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = addr_tx.send(Ok(running.local_addr().to_string()));
                let _ = stop_rx.await;
                // No shutdown: the runtime's end stops the server.
                drop(running);
            });
            drop(rt);
            let _ = dead_tx.send(());
        });
        let addr = within("isolated server start", addr_rx)
            .await
            .expect("server thread alive")
            .unwrap_or_else(|e| panic!("cannot start server on {}: {e}", endpoint.addr));
        IsolatedServer {
            addr,
            stop: Some(stop_tx),
            dead: Some(dead_rx),
            thread: Some(thread),
            dir: endpoint.dir.clone(),
        }
    }

    /// The endpoint, to start another server at the same address.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr.clone(),
            dir: self.dir.clone(),
        }
    }

    /// Kills the server: its runtime is dropped with everything on it.
    pub async fn kill(mut self) {
        let _ = self.stop.take().expect("alive").send(());
        within("server runtime dropped", self.dead.take().expect("alive"))
            .await
            .expect("server thread ended normally");
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

impl Drop for IsolatedServer {
    fn drop(&mut self) {
        // Not killed explicitly (e.g. a failed assertion): stop it without waiting.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
