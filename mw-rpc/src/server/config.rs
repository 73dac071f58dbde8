//! [`ServerConfig`] and [`ExecutionMode`]: the server's tunables and their defaults.

use std::time::Duration;

use mw_core::TransportConfig;

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
    /// calls are refused with [`RpcError::Overloaded`](crate::RpcError::Overloaded) rather than buffered.
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
    /// port 0 picks one, see [`RunningServer::metrics_addr`](super::RunningServer::metrics_addr)); see [`crate::metrics`].
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
