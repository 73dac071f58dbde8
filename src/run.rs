//! Plumbing shared by the `mw` binary and the examples: serve until Ctrl-C, register with
//! a registry, find a server by address or by name.

use std::time::Duration;

use mw_rpc::registry::LeaseKeeper;
use mw_rpc::{Channel, RpcError, Server, ServiceId};

pub use mw_core::error::chain;

/// Lease length servers ask the registry for. Renewed every third of it.
pub const REGISTRY_TTL: Duration = Duration::from_secs(10);

/// Errors of the run helpers, phrased for a person at a terminal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Binding or serving failed.
    #[error("cannot serve on {addr}")]
    Serve {
        /// The address given.
        addr: String,
        /// Why.
        #[source]
        source: RpcError,
    },
    /// The registry refused or could not be reached.
    #[error("cannot register {service} with the registry at {registry}: {reason}")]
    Register {
        /// The service.
        service: String,
        /// The registry address.
        registry: String,
        /// Why.
        reason: String,
    },
    /// Neither `--addr` nor `--registry` was given.
    #[error("give the server's address with --addr ADDR or a registry with --registry ADDR")]
    NoTarget,
    /// Connecting failed.
    #[error("cannot reach {target}")]
    Connect {
        /// What we tried to reach.
        target: String,
        /// Why.
        #[source]
        source: RpcError,
    },
}

/// Binds `addr`, prints `listening on <addr>` (the readiness line scripts and tests wait
/// for), registers each of `services` with `registry` if given, and serves until Ctrl-C
/// or SIGTERM; then shuts down gracefully.
///
/// # Errors
/// A failed bind or registration.
pub async fn serve(
    server: Server,
    addr: &str,
    registry: Option<&str>,
    services: &[ServiceId],
) -> Result<(), RunError> {
    serve_with(server, addr, registry, services, async {}).await
}

/// [`serve`], running `on_signal` when Ctrl-C or SIGTERM arrives, before the graceful
/// shutdown drains the calls in flight: the place to end calls that would otherwise hold
/// the drain until its timeout (the broker wakes callers blocked in the tuple space;
/// idle streams such as subscriptions end by themselves when the drain begins). A
/// second Ctrl-C or SIGTERM during the drain returns at once, without waiting for the
/// calls still running.
///
/// # Errors
/// A failed bind or registration.
pub async fn serve_with(
    server: Server,
    addr: &str,
    registry: Option<&str>,
    services: &[ServiceId],
    on_signal: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let running = server.spawn(addr).await.map_err(|source| RunError::Serve {
        addr: addr.into(),
        source,
    })?;
    let local = running.local_addr().to_string();
    let mut leases = Vec::new();
    if let Some(registry) = registry {
        for s in services {
            let lease = LeaseKeeper::register(registry, s.name, s.version, &local, REGISTRY_TTL)
                .await
                .map_err(|e| RunError::Register {
                    service: s.to_string(),
                    registry: registry.into(),
                    reason: e.to_string(),
                })?;
            leases.push(lease);
        }
    }
    // Listening from here on, once: a second signal arriving while the first is being
    // handled is kept for the second wait, not lost between two registrations.
    let mut signals = Signals::new();
    tracing::info!(addr = %local, "listening");
    println!("listening on {local}");
    signals.next().await;
    tracing::info!("signal received: shutting down, draining calls in flight");
    // Also the readiness line for tests that send a second signal.
    eprintln!("shutting down: draining calls in flight (Ctrl-C again to stop at once)");
    on_signal.await;
    for lease in leases {
        let _ = lease.withdraw().await;
    }
    // A second signal stops waiting for the drain: the caller then closes what it owns
    // (the broker syncs its log), and the calls still running are abandoned with the
    // process.
    tokio::select! {
        () = running.shutdown() => {}
        () = signals.next() => {
            tracing::warn!("second signal: not waiting for calls in flight");
            eprintln!("second signal: stopping without waiting for calls in flight");
        }
    }
    Ok(())
}

/// Ctrl-C and (on Unix) SIGTERM, listened for from creation on: signals that arrive
/// between two [`next`](Signals::next) calls are not lost.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(i), Ok(t)) => Some((i, t)),
                _ => None,
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next Ctrl-C or SIGTERM (never, if they cannot be listened for).
    async fn next(&mut self) {
        #[cfg(unix)]
        match &mut self.streams {
            Some((int, term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            None => std::future::pending().await,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Waits for Ctrl-C or (on Unix) SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Connects to `addr` if given, else looks `service` up in `registry`.
///
/// # Errors
/// [`RunError::NoTarget`] when neither is given; [`RunError::Connect`] otherwise.
pub async fn connect(
    addr: Option<&str>,
    registry: Option<&str>,
    service: ServiceId,
) -> Result<Channel, RunError> {
    match (addr, registry) {
        (Some(a), _) => Channel::connect_with(a, crate::cli_tls::client_config())
            .await
            .map_err(|source| RunError::Connect {
                target: a.into(),
                source,
            }),
        (None, Some(r)) => Channel::connect_by_name(r, service.name, service.version)
            .await
            .map_err(|source| RunError::Connect {
                target: format!("{service} via registry {r}"),
                source,
            }),
        (None, None) => Err(RunError::NoTarget),
    }
}

/// Prints `error` with its whole cause chain on one line (`prog: a: b: c`) to stderr and
/// returns the failure exit code; returns success for `Ok`. For `main` functions.
pub fn exit<E: std::error::Error>(program: &str, result: Result<(), E>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {}", chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// A boxed error for binaries and examples.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Like [`exit`] for boxed errors.
pub fn exit_boxed(program: &str, result: Result<(), BoxError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {}", chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
