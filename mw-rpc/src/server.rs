//! The server side: accept loop, per-connection dispatch, graceful shutdown.
//!
//! Each connection is served by one task that reads frames, decodes calls, runs up to
//! [`ServerConfig::max_in_flight`] of them concurrently (as futures polled by that task,
//! not spawned tasks: no cross-thread hand-off on the hot path) and writes replies into
//! the connection's batching write buffer. Requests beyond that wait in a bounded per-connection
//! queue of [`ServerConfig::max_queued`]; calls arriving while it is full are refused with
//! `OVERLOADED` (a default [`crate::Channel`] never sends that many). While the client does
//! not read its replies (the write buffer is over its high-water mark) the task stops reading,
//! and TCP pushes back on the client. A handler that blocks the thread blocks its connection:
//! use `spawn_blocking` for blocking work.
//!
//! One-way calls asking for a receipt are acknowledged when they enter that queue (the
//! middleware has accepted them); those asking for delivery when their handler starts.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use mw_core::{
    flags, Address, CoreError, Frame, FrameKind, Listener, Stream, TransportConfig, WriteBuffer,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connections::Connections;
use crate::error::{RpcError, ServerError};
use crate::metrics::{CallLabels, ServerMetrics};
use crate::service::{Handler, Service};
use crate::wire::{self, code};

/// How calls are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutionMode {
    /// Calls run concurrently, up to `max_in_flight` per connection (the default).
    #[default]
    Concurrent,
    /// One call at a time across the whole server, in arrival order per connection: the
    /// lectures' iterative server, for comparison.
    Iterative,
}

/// Server tunables.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Frame size, write buffer bound and handshake timeout.
    pub transport: TransportConfig,
    /// Calls (and streams) running at once per connection. Default 256: enough to keep
    /// a pipelining client busy; each costs one future's memory.
    pub max_in_flight: usize,
    /// Accepted calls waiting for a slot, per connection. Default 1024. When full, further
    /// calls are refused with [`RpcError::Overloaded`] rather than buffered.
    pub max_queued: usize,
    /// Concurrent connections. Default 10,000; a further connection completes the
    /// handshake, is told `server busy: connection limit N reached; try again later`
    /// (`OVERLOADED`) and is closed, while admitted ones keep being served.
    pub max_connections: usize,
    /// Concurrent TCP connections from one client IP address. Default 1,024; a further
    /// one is refused like one over `max_connections` (`server busy: N connections from
    /// ADDR already; try again later`). Unix-socket and in-process connections are not
    /// counted.
    pub max_connections_per_ip: usize,
    /// Close a connection that has held no call, stream or subscription for this long
    /// (it is sent `GoAway` first). Default `None`: never. Connections of consumers and
    /// subscribers are never idle: their stream is open.
    pub idle_timeout: Option<Duration>,
    /// Scheduling of calls. Default concurrent.
    pub mode: ExecutionMode,
    /// How long a graceful shutdown lets in-flight calls finish before abandoning them.
    /// Default 10 s.
    pub drain_timeout: Duration,
    /// Where to serve Prometheus metrics as text on `GET /metrics` (a TCP `HOST:PORT`;
    /// port 0 picks one, see [`RunningServer::metrics_addr`]); see [`crate::metrics`].
    /// Default `None`: no endpoint, and calls are not measured.
    pub metrics_addr: Option<String>,
    /// TLS on TCP connections (certificate, key, optional client CA). Default `None`:
    /// plaintext. With it, a plaintext client is refused with a message saying TLS is
    /// required; Unix-socket and in-process connections stay plaintext.
    pub tls: Option<mw_core::tls::TlsServer>,
    /// Require every connection to log in ([`crate::auth`]) and check which services
    /// each user may call. Default `None`: anyone connected may call everything.
    pub auth: Option<std::sync::Arc<dyn crate::auth::Authenticator>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            transport: TransportConfig::default(),
            max_in_flight: 256,
            max_queued: 1024,
            max_connections: 10_000,
            max_connections_per_ip: 1024,
            idle_timeout: None,
            mode: ExecutionMode::Concurrent,
            drain_timeout: Duration::from_secs(10),
            metrics_addr: None,
            tls: None,
            auth: None,
        }
    }
}

/// The services a server hosts, by name and then version. Not the service registry
/// ([`crate::registry`]), which maps names to the addresses of other servers.
#[derive(Default)]
struct ServiceTable {
    by_name: HashMap<String, Vec<Arc<dyn Service>>>,
}

impl ServiceTable {
    fn find(&self, name: &str, version: u32) -> Result<&Arc<dyn Service>, (u16, String)> {
        let Some(versions) = self.by_name.get(name) else {
            return Err((
                code::UNKNOWN_SERVICE,
                format!("no service named {name:?} on this server"),
            ));
        };
        versions
            .iter()
            .find(|s| s.id().version == version)
            .ok_or_else(|| {
                let have: Vec<String> = versions
                    .iter()
                    .map(|s| s.id().version.to_string())
                    .collect();
                (
                    code::VERSION_MISMATCH,
                    format!(
                        "service {name:?}: client wants version {version}, server has version {}",
                        have.join(", ")
                    ),
                )
            })
    }
}

/// Builds a [`Server`] from services and a configuration.
#[derive(Default)]
pub struct ServerBuilder {
    services: ServiceTable,
    config: ServerConfig,
    connections: Connections,
    metrics: prometheus_client::registry::Registry,
    /// Whether [`ServerBuilder::metrics_registry`] was asked for: then calls are
    /// measured even without an endpoint.
    metrics_wanted: bool,
}

impl ServerBuilder {
    /// Adds a service (for example `IncrementServer::new(MyImpl)`). Several versions of
    /// one service name may be added side by side.
    ///
    /// # Panics
    /// If the same name and version is added twice, or the name is longer than 255 bytes.
    // A builder verb, not arithmetic: `std::ops::Add` would not fit a by-value builder.
    #[allow(clippy::should_implement_trait)]
    pub fn add<S: Service>(mut self, service: S) -> Self {
        let id = service.id();
        assert!(
            id.name.len() <= 255,
            "service name {:?} is longer than 255 bytes",
            id.name
        );
        let versions = self
            .services
            .by_name
            .entry(id.name.to_string())
            .or_default();
        assert!(
            versions.iter().all(|s| s.id().version != id.version),
            "service {id} added twice"
        );
        versions.push(Arc::new(service));
        self
    }

    /// The table of the connections the server will have open: available before
    /// [`build`](Self::build) so that a service (an administration service) can list and
    /// close them.
    pub fn connections(&self) -> Connections {
        self.connections.clone()
    }

    /// The registry the server's metrics go to, for an application to add its own
    /// (metrics, or collectors read at each scrape). Asking for it turns the server's
    /// call measurements on.
    pub fn metrics_registry(&mut self) -> &mut prometheus_client::registry::Registry {
        self.metrics_wanted = true;
        &mut self.metrics
    }

    /// Replaces the configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Finishes building.
    pub fn build(mut self) -> Server {
        let iterative =
            (self.config.mode == ExecutionMode::Iterative).then(|| Arc::new(Semaphore::new(1)));
        let measured = self.metrics_wanted || self.config.metrics_addr.is_some();
        let metrics =
            measured.then(|| ServerMetrics::register(&mut self.metrics, &self.connections));
        Server {
            shared: Arc::new(Shared {
                services: self.services,
                config: self.config,
                iterative,
                connections: self.connections,
                metrics,
                metrics_registry: Arc::new(self.metrics),
                login_failures: std::sync::Mutex::default(),
            }),
        }
    }
}

struct Shared {
    services: ServiceTable,
    config: ServerConfig,
    iterative: Option<Arc<Semaphore>>,
    connections: Connections,
    /// `Some` when calls are measured.
    metrics: Option<ServerMetrics>,
    metrics_registry: Arc<prometheus_client::registry::Registry>,
    /// Failed logins per client address and when the last one was: later attempts from
    /// there are answered more slowly.
    login_failures: std::sync::Mutex<HashMap<String, (u32, std::time::Instant)>>,
}

/// A set of services ready to serve connections.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.shared.services.by_name.keys().collect();
        f.debug_struct("Server").field("services", &names).finish()
    }
}

impl Server {
    /// Starts building a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Its open connections (list them, close one).
    pub fn connections(&self) -> Connections {
        self.shared.connections.clone()
    }

    /// The metrics as Prometheus text, as `GET /metrics` serves them.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.shared.metrics_registry);
        out
    }

    /// Binds the metrics endpoint of [`ServerConfig::metrics_addr`], if any, and serves
    /// it until `stop`.
    fn start_metrics(
        &self,
        stop: &CancellationToken,
    ) -> Result<Option<std::net::SocketAddr>, RpcError> {
        let Some(addr) = &self.shared.config.metrics_addr else {
            return Ok(None);
        };
        let bind_err = |e: std::io::Error| {
            RpcError::Transport(CoreError::Bind {
                addr: addr.clone(),
                source: e,
            })
        };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        tracing::info!(addr = %local, "serving metrics on /metrics");
        tokio::spawn(crate::metrics::serve_metrics(
            listener,
            self.shared.metrics_registry.clone(),
            stop.clone(),
        ));
        Ok(Some(local))
    }

    /// Serves `listener` until `shutdown` completes, then drains: stops accepting, tells
    /// clients (`GoAway`), lets in-flight and queued calls finish within
    /// [`ServerConfig::drain_timeout`], and returns.
    ///
    /// Errors on one connection (garbage, oversized frames, wrong versions) end that
    /// connection only.
    ///
    /// # Cancel safety
    /// Dropping the future abandons every connection at once; prefer `shutdown`.
    pub async fn serve(self, mut listener: Listener, shutdown: impl Future<Output = ()>) {
        let graceful = CancellationToken::new();
        let hard = CancellationToken::new();
        let tracker = TaskTracker::new();
        let max = self.shared.config.max_connections;
        let limit = Arc::new(Semaphore::new(max));
        let per_ip = PerIp::new(self.shared.config.max_connections_per_ip);
        let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
        let mut refused_total: u64 = 0;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let admitted = match limit.clone().try_acquire_owned() {
                            Ok(permit) => per_ip.admit(&peer).map(|ip| (permit, ip)),
                            Err(_) => Err(format!("server busy: connection limit {max} reached; try again later")),
                        };
                        let (permit, ip_slot) = match admitted {
                            Ok(a) => {
                                if max >= 10 && limit.available_permits() == max / 10 {
                                    tracing::warn!(open = max - max / 10, limit = max, "connections at 90% of the limit: raise max_connections (and the open-file limit) or add servers");
                                }
                                a
                            }
                            Err(why) => {
                                refused_total += 1;
                                // One line per refused connection would flood the log.
                                if refused_total.is_power_of_two() {
                                    tracing::warn!(%peer, reason = %why, refused_total, "refusing new connections");
                                }
                                // Tell the client why before closing, off the accept loop,
                                // unless too many refusals are in progress already.
                                if let Ok(slot) = refusing.clone().try_acquire_owned() {
                                    let config = self.shared.config.transport.clone();
                                    let tls = self.shared.config.tls.clone();
                                    tracker.spawn(async move {
                                        refuse_connection(stream, config, tls, why).await;
                                        drop(slot);
                                    });
                                }
                                continue;
                            }
                        };
                        let shared = self.shared.clone();
                        let graceful = graceful.clone();
                        // Closed by a hard shutdown or by an administrator.
                        let reg = shared.connections.register(&peer, &hard);
                        tracing::info!(%peer, conn = reg.id, "connection opened");
                        tracker.spawn(async move {
                            let opened = std::time::Instant::now();
                            let identity: Arc<std::sync::OnceLock<Arc<crate::auth::Identity>>> = Arc::default();
                            let result =
                                serve_connection(stream, shared, graceful, reg.close.clone(), reg.calls.clone(), &peer, identity.clone()).await;
                            let calls = reg.calls.load(std::sync::atomic::Ordering::Relaxed);
                            // The logged-in user, on servers that require logins.
                            let user = identity.get().map_or("-", |i| i.user.as_str());
                            let secs = opened.elapsed().as_secs_f64();
                            let conn = reg.id;
                            match result {
                                Ok(ConnEnd::PeerClosed) => tracing::info!(%peer, conn, calls, secs, user = %user, reason = "closed by the peer", "connection closed"),
                                Ok(ConnEnd::Drained) => tracing::info!(%peer, conn, calls, secs, user = %user, reason = "server shutdown", "connection closed"),
                                Ok(ConnEnd::Closed) => tracing::info!(%peer, conn, calls, secs, user = %user, reason = "closed by the server (shutdown timeout or administrator)", "connection closed"),
                                Ok(ConnEnd::Idle) => tracing::info!(%peer, conn, calls, secs, user = %user, reason = "idle", "connection closed"),
                                Err(e) => tracing::info!(%peer, conn, calls, secs, user = %user, reason = %e, "connection closed"),
                            }
                            drop(reg);
                            drop(ip_slot);
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // Usually EMFILE: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        graceful.cancel();
        tracker.close();
        if tokio::time::timeout(self.shared.config.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout passed; abandoning calls still running");
            hard.cancel();
            tracker.wait().await;
        }
    }

    /// Binds `addr` and serves it on a background task.
    ///
    /// # Errors
    /// A bad address or a failed bind.
    pub async fn spawn(self, addr: &str) -> Result<RunningServer, RpcError> {
        let listener = Listener::bind(&addr.parse()?).await?;
        let token = CancellationToken::new();
        let metrics_addr = self.start_metrics(&token)?;
        Ok(self.spawn_with(listener, token, metrics_addr))
    }

    /// Serves an already bound listener on a background task (and the metrics endpoint
    /// of [`ServerConfig::metrics_addr`]; one that cannot be bound is logged and left
    /// out: use [`spawn`](Self::spawn) to be told).
    pub fn spawn_on(self, listener: Listener) -> RunningServer {
        let token = CancellationToken::new();
        let metrics_addr = self.start_metrics(&token).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serve metrics");
            None
        });
        self.spawn_with(listener, token, metrics_addr)
    }

    fn spawn_with(
        self,
        listener: Listener,
        token: CancellationToken,
        metrics_addr: Option<std::net::SocketAddr>,
    ) -> RunningServer {
        let addr = listener.local_addr().clone();
        let stop = token.clone();
        let task = tokio::spawn(self.serve(listener, async move { stop.cancelled().await }));
        RunningServer {
            addr,
            token,
            task,
            metrics_addr,
        }
    }
}

/// A server running on a background task.
#[must_use = "dropping a RunningServer leaves it running until the runtime stops; call shutdown"]
#[derive(Debug)]
pub struct RunningServer {
    addr: Address,
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    metrics_addr: Option<std::net::SocketAddr>,
}

impl RunningServer {
    /// The address clients connect to (with the real port if bound to port 0).
    pub fn local_addr(&self) -> &Address {
        &self.addr
    }

    /// Where the metrics endpoint listens (with the real port if bound to port 0), if
    /// [`ServerConfig::metrics_addr`] was set.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// Shuts down gracefully and waits until the drain is over.
    pub async fn shutdown(self) {
        self.token.cancel();
        let _ = self.task.await;
    }

    /// Starts a graceful shutdown without waiting.
    pub fn begin_shutdown(&self) {
        self.token.cancel();
    }
}

enum Outcome {
    Reply(Result<Bytes, ServerError>),
    /// One-way call finished, or a stream ended (its frames are already written).
    Quiet,
    Aborted,
    DeadlineExceeded,
    /// A stream ended because the server began shutting down while it waited for its
    /// next item.
    ShuttingDown,
}

struct Queued {
    id: u64,
    kind: FrameKind,
    frame_flags: u8,
    deadline: Option<tokio::time::Instant>,
    handler: Handler,
}

/// What the connection knows about one accepted call, from acceptance to its last frame.
#[derive(Default)]
struct CallState {
    /// Set once the call runs; aborting drops the handler future.
    abort: Option<AbortHandle>,
    /// Stream calls only: items the client has granted.
    credits: Option<Arc<Semaphore>>,
    /// Whether the caller waits for a result (a `Request`): only such calls are told
    /// when they are abandoned. One-way calls never get an `Error` after acceptance.
    awaits_result: bool,
    /// Service and method, and when it arrived: for metrics (`None` when unmeasured).
    measured: Option<(CallLabels, std::time::Instant)>,
}

type InFlight = FuturesUnordered<BoxFuture<'static, (u64, Outcome)>>;

struct ConnState {
    shared: Arc<Shared>,
    write_buf: WriteBuffer,
    inflight: InFlight,
    queued: VecDeque<Queued>,
    /// Every accepted call not yet finished (queued or running), by id.
    calls: HashMap<u64, CallState>,
    draining: bool,
    /// Cancelled when the graceful shutdown begins: streams waiting for their next item
    /// end then, instead of holding the drain until its timeout.
    shutdown: CancellationToken,
    /// Calls started on this connection (shared with its [`Connections`] entry).
    started: Arc<std::sync::atomic::AtomicU64>,
    /// Who logged in on this connection (servers with [`ServerConfig::auth`]).
    identity: Arc<std::sync::OnceLock<Arc<crate::auth::Identity>>>,
    /// The client's address without the port (failed logins are counted per address).
    peer_host: String,
}

/// How long a refused connection is read from, after the refusal, for the client to
/// close first; and how long its handshake may take.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Refused connections being told why at once; beyond this, a refused connection is
/// closed without a word, so that a flood cannot hold more descriptors than this.
const MAX_REFUSING: usize = 64;

/// Connections open per client IP address, bounded ([`ServerConfig::max_connections_per_ip`]).
struct PerIp {
    max: usize,
    open: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
}

/// One admitted connection's place in its address's count; released on drop.
struct IpSlot {
    ip: std::net::IpAddr,
    open: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
}

impl PerIp {
    fn new(max: usize) -> PerIp {
        PerIp {
            max,
            open: Arc::default(),
        }
    }

    /// Counts a connection from `peer` (a socket address; anything else is not
    /// counted), or says why it is refused.
    fn admit(&self, peer: &str) -> Result<Option<IpSlot>, String> {
        let Ok(addr) = peer.parse::<std::net::SocketAddr>() else {
            return Ok(None);
        };
        let ip = addr.ip();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return Err(format!(
                "server busy: {} connections from {ip} already; try again later",
                self.max
            ));
        }
        *n += 1;
        Ok(Some(IpSlot {
            ip,
            open: self.open.clone(),
        }))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Completes the handshake with a client over a connection limit, tells it why with an
/// `Error` frame (id 0, `OVERLOADED`) and closes.
async fn refuse_connection(
    stream: Stream,
    mut config: TransportConfig,
    tls: Option<mw_core::tls::TlsServer>,
    why: String,
) {
    // A refused client gets a short handshake: it holds a descriptor meanwhile.
    config.handshake_timeout = config.handshake_timeout.min(REFUSAL_LINGER);
    let Ok(stream) = secure(stream, &config, tls.as_ref()).await else {
        return;
    };
    if let Ok((mut reader, write_buf, writer)) = mw_core::server_connection(stream, &config).await {
        let _ = write_buf.push_with(FrameKind::Error, 0, 0, |b| {
            wire::error_body(b, code::OVERLOADED, &why);
            Ok::<_, CoreError>(())
        });
        write_buf.close();
        let _ = writer.await;
        // Read what the client sent until it closes (briefly): closing with its request
        // unread would reset the connection, and the client could lose the refusal.
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            while let Some(Ok(_)) = reader.next().await {}
        })
        .await;
    }
}

/// Runs the server side of TLS when the server has it, within the handshake timeout.
async fn secure(
    stream: Stream,
    config: &TransportConfig,
    tls: Option<&mw_core::tls::TlsServer>,
) -> Result<Stream, CoreError> {
    match tls {
        Some(tls) => tokio::time::timeout(config.handshake_timeout, tls.accept(stream))
            .await
            .map_err(|_| CoreError::HandshakeTimeout)?,
        None => Ok(stream),
    }
}

/// How a connection ended without an error.
enum ConnEnd {
    /// The peer closed it (after its calls were answered).
    PeerClosed,
    /// A graceful shutdown drained it.
    Drained,
    /// A hard shutdown or an administrator closed it.
    Closed,
    /// It held no call for [`ServerConfig::idle_timeout`].
    Idle,
}

async fn serve_connection(
    stream: Stream,
    shared: Arc<Shared>,
    graceful: CancellationToken,
    hard: CancellationToken,
    calls: Arc<std::sync::atomic::AtomicU64>,
    peer: &str,
    identity: Arc<std::sync::OnceLock<Arc<crate::auth::Identity>>>,
) -> Result<ConnEnd, CoreError> {
    let stream = secure(stream, &shared.config.transport, shared.config.tls.as_ref()).await?;
    if let Some(auth) = &shared.config.auth {
        if let Some(name) = mw_core::tls::peer_common_name(&stream) {
            if let Some(who) = auth.authenticate_certificate(&name) {
                tracing::info!(user = %who.user, %peer, "logged in by client certificate");
                let _ = identity.set(Arc::new(who));
            }
        }
    }
    let (mut reader, write_buf, writer) =
        mw_core::server_connection(stream, &shared.config.transport).await?;
    let high_water = shared.config.transport.write_buffer_high_water;
    let mut st = ConnState {
        shared,
        write_buf,
        inflight: FuturesUnordered::new(),
        queued: VecDeque::new(),
        calls: HashMap::new(),
        draining: false,
        shutdown: graceful.clone(),
        started: calls,
        identity,
        peer_host: peer
            .parse::<std::net::SocketAddr>()
            .map_or_else(|_| peer.to_string(), |a| a.ip().to_string()),
    };
    let mut reading = true;
    let mut result = Ok(ConnEnd::PeerClosed);
    // Armed once, not per loop iteration: each arming takes a lock to register a waiter,
    // which cost about a quarter of the server's CPU when done per call.
    let hard_cancelled = hard.cancelled();
    tokio::pin!(hard_cancelled);
    let graceful_cancelled = graceful.cancelled();
    tokio::pin!(graceful_cancelled);
    // Idle detection costs nothing unless configured: frames only stamp `last_active`,
    // and the timer, when it fires early, re-arms at the stamp plus the timeout.
    let idle_timeout = st.shared.config.idle_timeout;
    let mut last_active = tokio::time::Instant::now();
    let idle = tokio::time::sleep(idle_timeout.unwrap_or(Duration::from_secs(3600)));
    tokio::pin!(idle);
    loop {
        if (st.draining || !reading) && st.inflight.is_empty() && st.queued.is_empty() {
            if st.draining && reading {
                result = Ok(ConnEnd::Drained);
            }
            break;
        }
        // Control frames (Cancel, Credit, Ping) must keep flowing while calls wait, so the
        // connection is read even when the call queue is full (new calls are then refused
        // with OVERLOADED) and while draining (new calls get SHUTTING_DOWN). Reading pauses
        // only while the client is not reading our replies: that is its own backpressure.
        let room = st.write_buf.queued_bytes() < high_water;
        st.write_buf
            .set_in_flight(st.inflight.len() + st.queued.len());
        tokio::select! {
            biased;
            _ = &mut hard_cancelled => {
                for (id, call) in &st.calls {
                    if call.awaits_result {
                        st.error(*id, code::CANCELLED, "server shut down before the call finished");
                    }
                }
                result = Ok(ConnEnd::Closed);
                break;
            }
            _ = &mut graceful_cancelled, if !st.draining => {
                st.draining = true;
                let _ = st.write_buf.push(FrameKind::GoAway, 0, 0, &[]);
            }
            () = &mut idle, if idle_timeout.is_some() && reading && !st.draining => {
                let timeout = idle_timeout.unwrap_or_default();
                let due = last_active + timeout;
                if st.calls.is_empty() && due <= tokio::time::Instant::now() {
                    let _ = st.write_buf.push(FrameKind::GoAway, 0, 0, &[]);
                    result = Ok(ConnEnd::Idle);
                    break;
                }
                // Busy, or active since: look again one timeout after the last frame.
                let next = if st.calls.is_empty() { due } else { tokio::time::Instant::now() + timeout };
                idle.as_mut().reset(next);
            }
            Some((id, outcome)) = st.inflight.next(), if !st.inflight.is_empty() => {
                if idle_timeout.is_some() {
                    last_active = tokio::time::Instant::now();
                }
                st.finish(id, outcome);
                st.start_queued();
            }
            ready = st.write_buf.ready(), if reading && !room => {
                if ready.is_err() {
                    // The writer failed (peer gone): nothing more can be sent, and the
                    // reader may never be polled again; end the connection.
                    break;
                }
            }
            next = reader.next(), if reading && room => match next {
                Some(Ok(frame)) => {
                    if idle_timeout.is_some() {
                        last_active = tokio::time::Instant::now();
                    }
                    st.on_frame(frame)
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "closing connection after bad frame");
                    st.error(0, code::PROTOCOL, &e.to_string());
                    result = Err(CoreError::Frame(e));
                    break;
                }
                None => {
                    reading = false;
                    // Nobody will grant credit or read items any more: end the streams now,
                    // or a stream waiting for credit (a subscription) would hold its
                    // resources, and this task, forever. Unary calls still run to the end.
                    st.abort_streams();
                }
            },
        }
    }
    for (_, call) in st.calls.drain() {
        if let Some(h) = call.abort {
            h.abort();
        }
        if let (Some(m), Some(_)) = (&st.shared.metrics, call.measured) {
            m.abandoned();
        }
    }
    if let Some(m) = &st.shared.metrics {
        m.queued(-(st.queued.len() as i64));
    }
    st.write_buf.close();
    // Flush what is queued, but never wait past the hard deadline for a peer that does
    // not read (or has gone silent): then the writer is abandoned.
    tokio::pin!(writer);
    tokio::select! {
        biased;
        _ = &mut writer => {}
        _ = &mut hard_cancelled => {
            // A short grace so that errors just queued (CANCELLED) can still leave.
            if tokio::time::timeout(Duration::from_millis(100), &mut writer).await.is_err() {
                writer.abort();
            }
        }
    }
    result
}

impl ConnState {
    fn abort_streams(&mut self) {
        let streams: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.credits.is_some())
            .map(|(id, _)| *id)
            .collect();
        // As if the client had cancelled each (see `FrameKind::Cancel` below).
        for id in streams {
            if let Some(call) = self.calls.remove(&id) {
                match call.abort {
                    Some(h) => h.abort(),
                    None => self.queued.retain(|q| q.id != id),
                }
            }
        }
    }

    fn error(&self, id: u64, code: u16, message: &str) {
        let _ = self.write_buf.push_with(FrameKind::Error, 0, id, |b| {
            wire::error_body(b, code, message);
            Ok::<_, CoreError>(())
        });
    }

    fn on_frame(&mut self, frame: Frame) {
        match frame.kind {
            FrameKind::Request | FrameKind::Oneway => self.on_call(frame),
            FrameKind::Cancel => {
                if let Some(call) = self.calls.remove(&frame.id) {
                    match call.abort {
                        Some(h) => h.abort(),
                        None => self.queued.retain(|q| q.id != frame.id),
                    }
                }
            }
            FrameKind::Credit => {
                if frame.body.len() == 4 {
                    let n = u32::from_be_bytes([
                        frame.body[0],
                        frame.body[1],
                        frame.body[2],
                        frame.body[3],
                    ]);
                    if let Some(sem) = self.calls.get(&frame.id).and_then(|c| c.credits.as_ref()) {
                        // Capped so a hostile client cannot overflow the semaphore.
                        let cap = Semaphore::MAX_PERMITS / 2 - sem.available_permits();
                        sem.add_permits((n as usize).min(cap));
                    }
                }
            }
            FrameKind::Ping => {
                let _ = self.write_buf.push(FrameKind::Pong, 0, frame.id, &[]);
            }
            FrameKind::Pong | FrameKind::GoAway => {}
            other => self.error(
                frame.id,
                code::PROTOCOL,
                &format!("a client may not send {other:?} frames"),
            ),
        }
    }

    fn on_call(&mut self, frame: Frame) {
        let ack_receipt = frame.flags & flags::ACK_RECEIPT != 0;
        let ack_delivery = frame.flags & flags::ACK_DELIVERY != 0;
        let wants_reply = frame.kind == FrameKind::Request || ack_receipt || ack_delivery;
        let refuse = |st: &Self, code: u16, msg: &str| {
            if wants_reply {
                st.error(frame.id, code, msg);
            } else {
                tracing::debug!(
                    id = frame.id,
                    code,
                    msg,
                    "one-way call refused (the caller asked for no reply)"
                );
            }
        };
        if frame.id == 0 {
            return refuse(self, code::PROTOCOL, "call id 0 is reserved");
        }
        if self.calls.contains_key(&frame.id) {
            return refuse(
                self,
                code::PROTOCOL,
                &format!("call id {} is already in use on this connection", frame.id),
            );
        }
        if self.draining {
            return refuse(
                self,
                code::SHUTTING_DOWN,
                "server is shutting down; the call was not run",
            );
        }
        if self.queued.len() >= self.shared.config.max_queued {
            let msg = format!(
                "{} calls running and {} queued on this connection; the call was not run",
                self.inflight.len(),
                self.queued.len()
            );
            return refuse(self, code::OVERLOADED, &msg);
        }
        let (header, args) = match wire::parse_call(frame.body) {
            Ok(x) => x,
            Err(msg) => return refuse(self, code::BAD_REQUEST, &msg),
        };
        if let Some(auth) = &self.shared.config.auth {
            if header.service.as_str() == crate::auth::AUTH_SERVICE {
                if frame.kind != FrameKind::Request {
                    return refuse(self, code::BAD_REQUEST, "login must be a request");
                }
                return self.login(frame.id, args, auth.clone());
            }
            match self.identity.get() {
                None => {
                    return refuse(
                        self,
                        code::UNAUTHENTICATED,
                        "authentication required: this server admits logged-in users only \
                         (the CLI's --user and --password, or --token)",
                    )
                }
                Some(who) if !who.may_call(&header.service) => {
                    let msg = format!(
                        "user {:?} may not call service {}",
                        who.user, header.service
                    );
                    return refuse(self, code::PERMISSION_DENIED, &msg);
                }
                Some(_) => {}
            }
        }
        let service = match self.shared.services.find(&header.service, header.version) {
            Ok(s) => s,
            Err((c, msg)) => return refuse(self, c, &msg),
        };
        let handler = match service.call(header.method, args) {
            Ok(h) => h,
            Err(e) => {
                let (c, msg) = match &e {
                    ServerError::UnknownMethod(m) => (
                        code::UNKNOWN_METHOD,
                        format!("service {} has no method number {m}", service.id()),
                    ),
                    ServerError::BadArguments(_) => (code::BAD_REQUEST, e.to_string()),
                    _ => (code::INTERNAL, e.to_string()),
                };
                return refuse(self, c, &msg);
            }
        };
        // A logged-in user's calls run with their identity at hand, for the service's
        // own permission checks (`auth::check`).
        let handler = match self.identity.get() {
            None => handler,
            Some(who) => {
                let who = who.clone();
                match handler {
                    Handler::Unary(fut) => Handler::Unary(Box::pin(crate::auth::scope(who, fut))),
                    Handler::Stream(stream) => {
                        Handler::Stream(Box::pin(crate::auth::ScopedStream { who, stream }))
                    }
                }
            }
        };
        let is_stream = frame.flags & flags::STREAM != 0 && frame.kind == FrameKind::Request;
        if is_stream != matches!(handler, Handler::Stream(_)) {
            let msg = if is_stream {
                "method is not a streaming method"
            } else {
                "method is a streaming method; call it with the STREAM flag"
            };
            return refuse(self, code::PROTOCOL, msg);
        }
        // Delivery implies receipt: one acknowledgement, at the later point.
        if frame.kind == FrameKind::Oneway && ack_receipt && !ack_delivery {
            let _ = self.write_buf.push(FrameKind::Ack, 0, frame.id, &[]);
        }
        let credits = is_stream.then(|| Arc::new(Semaphore::new(0)));
        let measured = self.shared.metrics.as_ref().map(|m| {
            m.accepted();
            let method = service
                .methods()
                .iter()
                .find(|m| m.id == header.method)
                .map_or("?", |m| m.name);
            let labels: CallLabels = [("service", service.id().name), ("method", method)];
            (labels, std::time::Instant::now())
        });
        self.calls.insert(
            frame.id,
            CallState {
                abort: None,
                credits,
                awaits_result: frame.kind == FrameKind::Request,
                measured,
            },
        );
        // The deadline runs from arrival: time spent queued counts against it. A one-way
        // call's deadline bounds only the caller's wait for its acknowledgement; once
        // acknowledged nobody waits, so the handler is not stopped by it (a caller that
        // gives up before the acknowledgement sends a Cancel instead).
        let deadline = (header.deadline_ms > 0 && frame.kind == FrameKind::Request).then(|| {
            tokio::time::Instant::now() + Duration::from_millis(header.deadline_ms as u64)
        });
        self.queued.push_back(Queued {
            id: frame.id,
            kind: frame.kind,
            frame_flags: frame.flags,
            deadline,
            handler,
        });
        if let Some(m) = &self.shared.metrics {
            m.queued(1);
        }
        self.start_queued();
    }

    fn start_queued(&mut self) {
        while self.inflight.len() < self.shared.config.max_in_flight {
            let Some(q) = self.queued.pop_front() else {
                break;
            };
            if let Some(m) = &self.shared.metrics {
                m.queued(-1);
            }
            self.start(q);
        }
    }

    fn start(&mut self, q: Queued) {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Queued {
            id,
            kind,
            frame_flags,
            deadline,
            mut handler,
        } = q;
        // A call whose deadline passed while it waited in the queue is not run at all: the
        // caller has given up, and running it would only waste the slot.
        if deadline.is_some_and(|at| tokio::time::Instant::now() >= at) {
            self.finish(id, Outcome::DeadlineExceeded);
            return;
        }
        let mut ack_delivery = kind == FrameKind::Oneway && frame_flags & flags::ACK_DELIVERY != 0;
        // Fast path: most handlers finish on their first poll (no I/O, no waiting). Run it
        // now and answer at once, sparing the abort handle, the in-flight slot, the
        // deadline timer and their allocations. A handler still pending after this poll
        // takes the general path below, which polls it again with a real waker (the noop
        // waker registered here is replaced then).
        if self.shared.iterative.is_none() {
            if let Handler::Unary(fut) = &mut handler {
                if ack_delivery {
                    let _ = self.write_buf.push(FrameKind::Ack, 0, id, &[]);
                    ack_delivery = false;
                }
                let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
                let polled =
                    std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
                let outcome = match polled {
                    Ok(std::task::Poll::Pending) => None,
                    Ok(std::task::Poll::Ready(r)) if kind == FrameKind::Request => {
                        Some(Outcome::Reply(r))
                    }
                    Ok(std::task::Poll::Ready(_)) => Some(Outcome::Quiet),
                    Err(p) if kind == FrameKind::Request => Some(Outcome::Reply(Err(
                        ServerError::Panicked(panic_message(&p)),
                    ))),
                    Err(p) => {
                        tracing::warn!(id, panic = %panic_message(&p), "one-way handler panicked");
                        Some(Outcome::Quiet)
                    }
                };
                if let Some(outcome) = outcome {
                    self.finish(id, outcome);
                    return;
                }
            }
        }
        let write_buf = self.write_buf.clone();
        let iterative = self.shared.iterative.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let credits = call.credits.clone();
        let shutdown = self.shutdown.clone();
        let run = async move {
            // Held for the whole call in iterative mode: one call at a time, server-wide.
            let _turn = match &iterative {
                Some(sem) => Some(sem.acquire().await),
                None => None,
            };
            if ack_delivery {
                let _ = write_buf.push(FrameKind::Ack, 0, id, &[]);
            }
            match handler {
                Handler::Unary(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(r) if kind == FrameKind::Request => Outcome::Reply(r),
                    Ok(_) => Outcome::Quiet,
                    Err(p) if kind == FrameKind::Request => {
                        Outcome::Reply(Err(ServerError::Panicked(panic_message(&p))))
                    }
                    Err(p) => {
                        tracing::warn!(id, panic = %panic_message(&p), "one-way handler panicked");
                        Outcome::Quiet
                    }
                },
                Handler::Stream(items) => {
                    run_stream(id, items, credits, &write_buf, shutdown).await
                }
            }
        };
        let (abort, reg) = AbortHandle::new_pair();
        call.abort = Some(abort);
        let run = Abortable::new(run, reg);
        let fut: BoxFuture<'static, (u64, Outcome)> = match deadline {
            Some(at) => async move {
                match tokio::time::timeout_at(at, run).await {
                    Ok(Ok(o)) => (id, o),
                    Ok(Err(_)) => (id, Outcome::Aborted),
                    Err(_) => (id, Outcome::DeadlineExceeded),
                }
            }
            .boxed(),
            None => run
                .map(move |r| (id, r.unwrap_or(Outcome::Aborted)))
                .boxed(),
        };
        self.inflight.push(fut);
    }

    /// Runs a login: checks the credentials on the blocking pool, remembers the identity
    /// on success; a failure is answered after a delay that doubles with each recent
    /// failure from the same address (up to 5 s).
    fn login(&mut self, id: u64, args: Bytes, auth: Arc<dyn crate::auth::Authenticator>) {
        self.calls.insert(
            id,
            CallState {
                awaits_result: true,
                ..CallState::default()
            },
        );
        let identity = self.identity.clone();
        let shared = self.shared.clone();
        let host = self.peer_host.clone();
        let fut = async move {
            let outcome = match postcard::from_bytes::<crate::auth::Credentials>(&args) {
                Err(e) => Outcome::Reply(Err(ServerError::BadArguments(e.to_string()))),
                // Logged in already (by a client certificate): another user is not let in
                // over it (the same user's credentials are still checked, below).
                Ok(creds) if identity.get().is_some_and(|who| who.user != creds.user()) => {
                    let who = identity.get().map(|w| w.user.clone()).unwrap_or_default();
                    Outcome::Reply(Err(ServerError::Unauthenticated(format!(
                        "this connection is logged in as {who:?} by its client certificate; \
                         it cannot log in as {:?}",
                        creds.user()
                    ))))
                }
                Ok(creds) => {
                    let user = creds.user().to_string();
                    let checked =
                        tokio::task::spawn_blocking(move || auth.authenticate(&creds)).await;
                    match checked {
                        Ok(Ok(who)) => {
                            let body = postcard::to_allocvec(&who.user).unwrap_or_default();
                            tracing::info!(user = %who.user, peer = %host, "logged in");
                            let _ = identity.set(Arc::new(who));
                            Outcome::Reply(Ok(Bytes::from(body)))
                        }
                        other => {
                            let why = match other {
                                Ok(Err(why)) => why,
                                _ => format!("authentication failed for user {user:?}"),
                            };
                            let failures = {
                                let mut f = shared
                                    .login_failures
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner());
                                let now = std::time::Instant::now();
                                let e = f.entry(host.clone()).or_insert((0, now));
                                // Failures older than a minute are forgiven.
                                if now.duration_since(e.1) > Duration::from_secs(60) {
                                    e.0 = 0;
                                }
                                e.0 += 1;
                                e.1 = now;
                                e.0
                            };
                            tracing::warn!(user = %user, peer = %host, failures, "login failed");
                            let delay = Duration::from_millis(100)
                                .saturating_mul(1 << failures.saturating_sub(1).min(6))
                                .min(Duration::from_secs(5));
                            tokio::time::sleep(delay).await;
                            Outcome::Reply(Err(ServerError::Unauthenticated(why)))
                        }
                    }
                }
            };
            (id, outcome)
        };
        self.inflight.push(fut.boxed());
    }

    fn finish(&mut self, id: u64, outcome: Outcome) {
        let call = self.calls.remove(&id);
        if let (Some(m), Some((labels, arrived))) =
            (&self.shared.metrics, call.and_then(|c| c.measured))
        {
            let label = match &outcome {
                Outcome::Reply(Ok(_)) | Outcome::Quiet => "ok",
                Outcome::Reply(Err(_)) => "failed",
                Outcome::DeadlineExceeded => "deadline_exceeded",
                Outcome::Aborted | Outcome::ShuttingDown => "cancelled",
            };
            m.finished(labels, label, arrived.elapsed());
        }
        match outcome {
            Outcome::Reply(Ok(body)) => {
                if let Err(e) = self.write_buf.push(FrameKind::Response, 0, id, &body) {
                    // Too large for a frame: the caller must hear why, not time out.
                    self.error(id, code::INTERNAL, &format!("result cannot be sent: {e}"));
                }
            }
            Outcome::Reply(Err(e)) => {
                let c = match e {
                    ServerError::BadArguments(_) => code::BAD_REQUEST,
                    ServerError::UnknownMethod(_) => code::UNKNOWN_METHOD,
                    ServerError::Unauthenticated(_) => code::UNAUTHENTICATED,
                    _ => code::INTERNAL,
                };
                self.error(id, c, &e.to_string());
            }
            Outcome::DeadlineExceeded => self.error(
                id,
                code::DEADLINE_EXCEEDED,
                "deadline exceeded on the server",
            ),
            Outcome::ShuttingDown => self.error(
                id,
                code::SHUTTING_DOWN,
                "server is shutting down; the stream was ended",
            ),
            // Cancelled by the client (it no longer listens) or already answered.
            Outcome::Aborted | Outcome::Quiet => {}
        }
    }
}

/// Drives a server stream: each item waits for one unit of credit; the end does not.
///
/// Once `shutdown` is cancelled, a stream that has to wait for its next item (an idle
/// subscription or consumer) ends with [`Outcome::ShuttingDown`]: it could hold the
/// drain until its timeout otherwise. A stream whose items are ready keeps going (its
/// reader grants credit as it reads), so a finite result still arrives whole.
async fn run_stream(
    id: u64,
    mut items: futures::stream::BoxStream<'static, Result<Bytes, ServerError>>,
    credits: Option<Arc<Semaphore>>,
    write_buf: &WriteBuffer,
    shutdown: CancellationToken,
) -> Outcome {
    let Some(credits) = credits else {
        return Outcome::Reply(Err(ServerError::Encode(
            "stream call without credit state".into(),
        )));
    };
    // Armed once for the whole stream, not per item (each arming takes a lock).
    let stopping = shutdown.cancelled();
    tokio::pin!(stopping);
    loop {
        let next = tokio::select! {
            biased;
            next = AssertUnwindSafe(items.next()).catch_unwind() => next,
            () = &mut stopping => return Outcome::ShuttingDown,
        };
        let item = match next {
            Ok(Some(Ok(item))) => item,
            Ok(Some(Err(e))) => return Outcome::Reply(Err(e)),
            Ok(None) => {
                let _ = write_buf.push(FrameKind::StreamEnd, 0, id, &[]);
                return Outcome::Quiet;
            }
            Err(p) => return Outcome::Reply(Err(ServerError::Panicked(panic_message(&p)))),
        };
        match credits.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => return Outcome::Aborted,
        }
        if write_buf.ready().await.is_err() {
            return Outcome::Aborted;
        }
        match write_buf.push(FrameKind::StreamItem, 0, id, &item) {
            Ok(()) => {}
            Err(CoreError::Closed) => return Outcome::Aborted,
            Err(e) => {
                return Outcome::Reply(Err(ServerError::Encode(format!(
                    "stream item cannot be sent: {e}"
                ))))
            }
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}
