//! The accept loop: admits connections within the limits, tells refused ones why, runs
//! one task per admitted connection, and drains them all on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mw_core::{CoreError, FrameKind, Listener, Stream, TransportConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{secure, serve_connection, Identity};
use super::instance::{Server, Shared};
use super::limits::{IpSlot, PerIp};
use crate::wire::{self, code};

/// How long a refused connection is read from, after the refusal, for the client to
/// close first; and how long its handshake may take.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Refused connections being told why at once; beyond this, a refused connection is
/// closed without a word, so that a flood cannot hold more descriptors than this.
const MAX_REFUSING: usize = 64;

/// An admitted connection's places in the limits, released when it closes.
struct Admitted {
    _permit: OwnedSemaphorePermit,
    _ip_slot: Option<IpSlot>,
}

/// The connection limits ([`ServerConfig::max_connections`] and
/// [`ServerConfig::max_connections_per_ip`]) and the refusals they cause.
///
/// [`ServerConfig::max_connections`]: super::ServerConfig::max_connections
/// [`ServerConfig::max_connections_per_ip`]: super::ServerConfig::max_connections_per_ip
struct Admission {
    max: usize,
    open: Arc<Semaphore>,
    per_ip: PerIp,
    /// Refusals being told to their client right now ([`MAX_REFUSING`]).
    refusing: Arc<Semaphore>,
    refused_total: u64,
}

impl Admission {
    fn new(shared: &Shared) -> Self {
        let max = shared.config.max_connections;
        Admission {
            max,
            open: Arc::new(Semaphore::new(max)),
            per_ip: PerIp::new(shared.config.max_connections_per_ip),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            refused_total: 0,
        }
    }

    /// Takes a place for a connection from `peer`, or says why there is none.
    fn admit(&self, peer: &str) -> Result<Admitted, String> {
        let max = self.max;
        let permit =
            self.open.clone().try_acquire_owned().map_err(|_| {
                format!("server busy: connection limit {max} reached; try again later")
            })?;
        let ip_slot = self.per_ip.admit(peer)?;
        if max >= 10 && self.open.available_permits() == max / 10 {
            tracing::warn!(
                open = max - max / 10,
                limit = max,
                "connections at 90% of the limit: raise max_connections (and the open-file limit) or add servers"
            );
        }
        Ok(Admitted {
            _permit: permit,
            _ip_slot: ip_slot,
        })
    }

    /// Logs a refusal (sparingly) and tells the client why before closing, off the accept
    /// loop, unless too many refusals are in progress already.
    fn refuse(
        &mut self,
        stream: Stream,
        peer: &str,
        why: String,
        shared: &Shared,
        tracker: &TaskTracker,
    ) {
        self.refused_total += 1;
        let refused_total = self.refused_total;
        // One line per refused connection would flood the log.
        if refused_total.is_power_of_two() {
            tracing::warn!(%peer, reason = %why, refused_total, "refusing new connections");
        }
        if let Ok(slot) = self.refusing.clone().try_acquire_owned() {
            let config = shared.config.transport.clone();
            let tls = shared.config.tls.clone();
            tracker.spawn(async move {
                refuse_connection(stream, config, tls, why).await;
                drop(slot);
            });
        }
    }
}

impl Server {
    /// Serves `listener` until `shutdown` completes, then drains: stops accepting, tells
    /// clients (`GoAway`), lets in-flight and queued calls finish within
    /// [`ServerConfig::drain_timeout`](super::ServerConfig::drain_timeout), and returns.
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
        let mut admission = Admission::new(&self.shared);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match admission.admit(&peer) {
                        Ok(admitted) => {
                            self.spawn_connection(stream, peer, admitted, &graceful, &hard, &tracker)
                        }
                        Err(why) => admission.refuse(stream, &peer, why, &self.shared, &tracker),
                    },
                    Err(e) => {
                        // Usually EMFILE: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        self.drain(graceful, hard, tracker).await;
    }

    /// Runs an admitted connection on its own task until it ends, then logs how it ended.
    fn spawn_connection(
        &self,
        stream: Stream,
        peer: String,
        admitted: Admitted,
        graceful: &CancellationToken,
        hard: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        let shared = self.shared.clone();
        let graceful = graceful.clone();
        // Closed by a hard shutdown or by an administrator.
        let reg = shared.connections.register(&peer, hard);
        tracing::info!(%peer, conn = reg.id, "connection opened");
        tracker.spawn(async move {
            let opened = std::time::Instant::now();
            let identity = Identity::default();
            let result = serve_connection(
                stream,
                shared,
                graceful,
                reg.close.clone(),
                reg.calls.clone(),
                &peer,
                identity.clone(),
            )
            .await;
            let calls = reg.calls.load(std::sync::atomic::Ordering::Relaxed);
            // The logged-in user, on servers that require logins.
            let user = identity.get().map_or("-", |i| i.user.as_str());
            let secs = opened.elapsed().as_secs_f64();
            let conn = reg.id;
            match &result {
                Ok(end) => tracing::info!(%peer, conn, calls, secs, user = %user, reason = end.reason(), "connection closed"),
                Err(e) => tracing::info!(%peer, conn, calls, secs, user = %user, reason = %e, "connection closed"),
            }
            drop(reg);
            drop(admitted);
        });
    }

    /// Tells every connection to drain, and waits for them within the drain timeout; past
    /// it, abandons the calls still running.
    async fn drain(
        &self,
        graceful: CancellationToken,
        hard: CancellationToken,
        tracker: TaskTracker,
    ) {
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
