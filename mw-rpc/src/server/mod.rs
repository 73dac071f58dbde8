//! The server side: accept loop, per-connection dispatch, graceful shutdown.
//!
//! Each connection is served by one task that reads frames, decodes calls, runs up to
//! [`ServerConfig::max_in_flight`] of them concurrently (as futures polled by that task,
//! not spawned tasks: no cross-thread hand-off on the hot path) and writes replies into
//! the connection's batching write buffer. Requests beyond that wait in a bounded
//! per-connection queue of [`ServerConfig::max_queued`]; calls arriving while it is full
//! are refused with `OVERLOADED` (a default [`crate::Channel`] never sends that many).
//! While the client does not read its replies (the write buffer is over its high-water
//! mark) the task stops reading, and TCP pushes back on the client. A handler that blocks
//! the thread blocks its connection: use `spawn_blocking` for blocking work.
//!
//! One-way calls asking for a receipt are acknowledged when they enter that queue (the
//! middleware has accepted them); those asking for delivery when their handler starts.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | `config` | [`ServerConfig`], [`ExecutionMode`] |
//! | `services` | the table of hosted services, by name and version |
//! | `builder` | [`ServerBuilder`] |
//! | `accept` | [`Server::serve`]: the accept loop, admission and refusal, the drain |
//! | `limits` | connections per client address |
//! | `connection` | one connection's task: its state, its event loop, its end |
//! | `call` | one call: admission, dispatch, running, its answer |
//! | `login` | the `mw.auth` login call |
//! | `stream` | server streams under credit |

mod accept;
mod builder;
mod call;
mod config;
mod connection;
mod limits;
mod login;
mod services;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;

use mw_core::{Address, CoreError, Listener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use builder::ServerBuilder;
pub use config::{ExecutionMode, ServerConfig};

use crate::connections::Connections;
use crate::error::RpcError;
use crate::metrics::ServerMetrics;
use services::ServiceTable;

struct Shared {
    services: ServiceTable,
    config: ServerConfig,
    /// `Some` in [`ExecutionMode::Iterative`]: the one turn every call waits for.
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
