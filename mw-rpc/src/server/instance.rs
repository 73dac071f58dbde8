//! A built [`Server`]: the services and configuration every connection shares, serving
//! on a listener ([`Server::serve`], in `accept`) or on a background task
//! ([`RunningServer`]), and the metrics endpoint.

use std::sync::Arc;

use mw_core::{Address, CoreError, Listener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::config::ServerConfig;
use super::login_failures::LoginFailures;
use super::services::ServiceTable;
use crate::connections::Connections;
use crate::error::RpcError;
use crate::metrics::ServerMetrics;

pub(super) struct Shared {
    pub(super) services: ServiceTable,
    pub(super) config: ServerConfig,
    /// `Some` in [`ExecutionMode::Iterative`]: the one turn every call waits for.
    pub(super) iterative: Option<Arc<Semaphore>>,
    pub(super) connections: Connections,
    /// `Some` when calls are measured.
    pub(super) metrics: Option<ServerMetrics>,
    pub(super) metrics_registry: Arc<prometheus_client::registry::Registry>,
    /// Recent failed logins per client address: later attempts from there are answered
    /// more slowly.
    pub(super) login_failures: LoginFailures,
}

/// A set of services ready to serve connections.
#[derive(Clone)]
pub struct Server {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.shared.services.by_name.keys().collect();
        f.debug_struct("Server").field("services", &names).finish()
    }
}

impl Server {
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
