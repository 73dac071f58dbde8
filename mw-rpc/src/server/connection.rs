//! One connection's task: its state ([`ConnState`]), the event loop that reads frames,
//! finishes calls and watches the shutdown and idle timers, and how it ends.
//!
//! Connection-level frames are sorted out by mw-core's [`ConnectionReader`], which also
//! answers the client's pings; a client's `Pong` or `GoAway` means nothing to a server
//! (PROTOCOL.md §4.5.8, §4.5.9) and is ignored here.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use mw_core::{
    ConnectionReader, CoreError, Frame, FrameError, FrameKind, Incoming, Stream, TransportConfig,
    WriteBuffer,
};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::call_state::{CallState, InFlight, Queued};
use super::instance::Shared;
use crate::wire::{self, code};

/// Who logged in on a connection (servers with
/// [`ServerConfig::auth`](super::ServerConfig::auth)), shared with the accept loop, which
/// names the user when the connection closes.
pub(super) type Identity = Arc<OnceLock<Arc<crate::auth::Identity>>>;

/// How a connection ended without an error.
pub(super) enum ConnEnd {
    /// The peer closed it (after its calls were answered).
    PeerClosed,
    /// A graceful shutdown drained it.
    Drained,
    /// A hard shutdown or an administrator closed it.
    Closed,
    /// It held no call for [`ServerConfig::idle_timeout`](super::ServerConfig::idle_timeout).
    Idle,
}

impl ConnEnd {
    /// The reason the connection-closed log line gives.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            ConnEnd::PeerClosed => "closed by the peer",
            ConnEnd::Drained => "server shutdown",
            ConnEnd::Closed => "closed by the server (shutdown timeout or administrator)",
            ConnEnd::Idle => "idle",
        }
    }
}

pub(super) struct ConnState {
    pub(super) shared: Arc<Shared>,
    pub(super) write_buf: WriteBuffer,
    pub(super) inflight: InFlight,
    pub(super) queued: VecDeque<Queued>,
    /// Every accepted call not yet finished (queued or running), by id.
    pub(super) calls: HashMap<u64, CallState>,
    pub(super) draining: bool,
    /// Cancelled when the graceful shutdown begins: streams waiting for their next item
    /// end then, instead of holding the drain until its timeout.
    pub(super) shutdown: CancellationToken,
    /// Calls started on this connection (shared with its [`Connections`] entry).
    ///
    /// [`Connections`]: crate::Connections
    pub(super) started: Arc<AtomicU64>,
    /// Who logged in on this connection (servers with a login).
    pub(super) identity: Identity,
    /// The client's address without the port (failed logins are counted per address).
    pub(super) peer_host: String,
}

/// Idle detection ([`ServerConfig::idle_timeout`](super::ServerConfig::idle_timeout)).
///
/// Costs nothing unless configured: frames only stamp `last_active`, and the timer, when it
/// fires early, re-arms at the stamp plus the timeout.
struct IdleTimer {
    timeout: Option<Duration>,
    last_active: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl IdleTimer {
    fn new(timeout: Option<Duration>) -> Self {
        IdleTimer {
            timeout,
            last_active: Instant::now(),
            sleep: Box::pin(tokio::time::sleep(
                timeout.unwrap_or(Duration::from_secs(3600)),
            )),
        }
    }

    /// Something happened on the connection.
    fn touch(&mut self) {
        if self.timeout.is_some() {
            self.last_active = Instant::now();
        }
    }

    /// The timer fired: whether the connection has been idle (no call held, no frame) for
    /// the whole timeout. If not, re-arms one timeout after the last frame (or from now,
    /// while calls are held).
    fn expired(&mut self, holds_calls: bool) -> bool {
        let timeout = self.timeout.unwrap_or_default();
        let due = self.last_active + timeout;
        if !holds_calls && due <= Instant::now() {
            return true;
        }
        let next = if holds_calls {
            Instant::now() + timeout
        } else {
            due
        };
        self.sleep.as_mut().reset(next);
        false
    }
}

/// What the event loop goes on with after one event.
enum Step {
    Continue,
    End(Result<ConnEnd, CoreError>),
}

/// Serves one connection from TLS and handshake to its last frame.
pub(super) async fn serve_connection(
    stream: Stream,
    shared: Arc<Shared>,
    graceful: CancellationToken,
    hard: CancellationToken,
    calls: Arc<AtomicU64>,
    peer: &str,
    identity: Identity,
) -> Result<ConnEnd, CoreError> {
    let stream = secure(stream, &shared.config.transport, shared.config.tls.as_ref()).await?;
    login_by_certificate(&shared, &stream, peer, &identity);
    let (frames, write_buf, writer) =
        mw_core::server_connection(stream, &shared.config.transport).await?;
    let mut reader = ConnectionReader::new(frames, write_buf.clone());
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
    // Armed once, not per loop iteration: each arming takes a lock to register a waiter,
    // which cost about a quarter of the server's CPU when done per call.
    let hard_cancelled = hard.cancelled();
    tokio::pin!(hard_cancelled);
    let result = st
        .run(&mut reader, hard_cancelled.as_mut(), &graceful)
        .await;
    st.abandon_calls();
    st.write_buf.close();
    flush(writer, hard_cancelled).await;
    result
}

/// On a server with logins, a TLS client whose certificate names a user is logged in as
/// that user from the start.
fn login_by_certificate(shared: &Shared, stream: &Stream, peer: &str, identity: &Identity) {
    let Some(auth) = &shared.config.auth else {
        return;
    };
    let Some(name) = mw_core::tls::peer_common_name(stream) else {
        return;
    };
    if let Some(who) = auth.authenticate_certificate(&name) {
        tracing::info!(user = %who.user, %peer, "logged in by client certificate");
        let _ = identity.set(Arc::new(who));
    }
}

/// Flushes what is queued, but never waits past the hard deadline for a peer that does
/// not read (or has gone silent): then the writer is abandoned.
async fn flush(
    writer: JoinHandle<Result<(), CoreError>>,
    hard_cancelled: Pin<&mut impl std::future::Future<Output = ()>>,
) {
    tokio::pin!(writer);
    tokio::select! {
        biased;
        _ = &mut writer => {}
        _ = hard_cancelled => {
            // A short grace so that errors just queued (CANCELLED) can still leave.
            if tokio::time::timeout(Duration::from_millis(100), &mut writer).await.is_err() {
                writer.abort();
            }
        }
    }
}

impl ConnState {
    /// The event loop: until the peer is gone and every call answered, the drain is over,
    /// a hard shutdown, an idle timeout, or a bad frame.
    async fn run(
        &mut self,
        reader: &mut ConnectionReader,
        mut hard_cancelled: Pin<&mut impl std::future::Future<Output = ()>>,
        graceful: &CancellationToken,
    ) -> Result<ConnEnd, CoreError> {
        let high_water = self.shared.config.transport.write_buffer_high_water;
        let graceful_cancelled = graceful.cancelled();
        tokio::pin!(graceful_cancelled);
        let mut idle = IdleTimer::new(self.shared.config.idle_timeout);
        let mut reading = true;
        loop {
            if (self.draining || !reading) && self.inflight.is_empty() && self.queued.is_empty() {
                return Ok(if self.draining && reading {
                    ConnEnd::Drained
                } else {
                    ConnEnd::PeerClosed
                });
            }
            // Control frames (Cancel, Credit, Ping) must keep flowing while calls wait, so
            // the connection is read even when the call queue is full (new calls are then
            // refused with OVERLOADED) and while draining (new calls get SHUTTING_DOWN).
            // Reading pauses only while the client is not reading our replies: that is its
            // own backpressure.
            let room = self.write_buf.queued_bytes() < high_water;
            self.write_buf
                .set_in_flight(self.inflight.len() + self.queued.len());
            let step = tokio::select! {
                biased;
                _ = &mut hard_cancelled => self.on_hard_shutdown(),
                _ = &mut graceful_cancelled, if !self.draining => self.on_graceful_shutdown(),
                () = &mut idle.sleep, if idle.timeout.is_some() && reading && !self.draining => {
                    self.on_idle_timer(&mut idle)
                }
                Some((id, outcome)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    idle.touch();
                    self.finish(id, outcome);
                    self.start_queued();
                    Step::Continue
                }
                ready = self.write_buf.ready(), if reading && !room => match ready {
                    Ok(()) => Step::Continue,
                    // The writer failed (peer gone): nothing more can be sent, and the
                    // reader may never be polled again; end the connection.
                    Err(_) => Step::End(Ok(ConnEnd::PeerClosed)),
                },
                next = reader.next(), if reading && room => match next {
                    Some(incoming) => {
                        idle.touch();
                        self.on_incoming(incoming)
                    }
                    None => {
                        reading = false;
                        // Nobody will grant credit or read items any more: end the streams
                        // now, or a stream waiting for credit (a subscription) would hold
                        // its resources, and this task, forever. Unary calls still run to
                        // the end.
                        self.abort_streams();
                        Step::Continue
                    }
                },
            };
            if let Step::End(end) = step {
                return end;
            }
        }
    }

    /// The drain timeout passed (or an administrator closed the connection): every caller
    /// still waiting is told its call was abandoned.
    fn on_hard_shutdown(&self) -> Step {
        for (id, call) in &self.calls {
            if call.awaits_result {
                self.error(
                    *id,
                    code::CANCELLED,
                    "server shut down before the call finished",
                );
            }
        }
        Step::End(Ok(ConnEnd::Closed))
    }

    /// The server began shutting down: tell the client, refuse new calls from now on.
    fn on_graceful_shutdown(&mut self) -> Step {
        self.draining = true;
        let _ = self.write_buf.go_away();
        Step::Continue
    }

    fn on_idle_timer(&mut self, idle: &mut IdleTimer) -> Step {
        if idle.expired(!self.calls.is_empty()) {
            let _ = self.write_buf.go_away();
            return Step::End(Ok(ConnEnd::Idle));
        }
        Step::Continue
    }

    fn on_incoming(&mut self, incoming: Result<Incoming, FrameError>) -> Step {
        match incoming {
            Ok(Incoming::Exchange(frame)) => self.on_frame(frame),
            // Answered by the reader; a server never pings, and a client's GoAway means
            // nothing to it.
            Ok(Incoming::Pinged(_) | Incoming::Pong(_) | Incoming::GoAway) => {}
            Err(e) => {
                tracing::warn!(error = %e, "closing connection after bad frame");
                self.error(0, code::PROTOCOL, &e.to_string());
                return Step::End(Err(CoreError::Frame(e)));
            }
        }
        Step::Continue
    }

    /// The connection is over: every call still held is dropped (and counted abandoned).
    fn abandon_calls(&mut self) {
        for (_, call) in self.calls.drain() {
            if let Some(h) = call.abort {
                h.abort();
            }
            if let (Some(m), Some(_)) = (&self.shared.metrics, call.measured) {
                m.abandoned();
            }
        }
        if let Some(m) = &self.shared.metrics {
            m.queued(-(self.queued.len() as i64));
        }
    }

    fn abort_streams(&mut self) {
        let streams: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.credits.is_some())
            .map(|(id, _)| *id)
            .collect();
        // As if the client had cancelled each (see `FrameKind::Cancel` below).
        for id in streams {
            self.cancel(id);
        }
    }

    /// Stops call `id`: drops its handler if it runs, takes it out of the queue if not.
    fn cancel(&mut self, id: u64) {
        if let Some(call) = self.calls.remove(&id) {
            match call.abort {
                Some(h) => h.abort(),
                None => self.queued.retain(|q| q.id != id),
            }
        }
    }

    pub(super) fn error(&self, id: u64, code: u16, message: &str) {
        let _ = self.write_buf.push_with(FrameKind::Error, 0, id, |b| {
            wire::error_body(b, code, message);
            Ok::<_, CoreError>(())
        });
    }

    fn on_frame(&mut self, frame: Frame) {
        match frame.kind {
            FrameKind::Request | FrameKind::Oneway => self.on_call(frame),
            FrameKind::Cancel => self.cancel(frame.id),
            FrameKind::Credit => self.on_credit(&frame),
            kind @ (FrameKind::Response
            | FrameKind::Error
            | FrameKind::Ack
            | FrameKind::StreamItem
            | FrameKind::StreamEnd) => self.error(
                frame.id,
                code::PROTOCOL,
                &format!("a client may not send {kind:?} frames"),
            ),
            // `ConnectionReader` never passes these on as exchange frames.
            FrameKind::Ping | FrameKind::Pong | FrameKind::GoAway => {}
        }
    }

    /// The client grants a stream more items; a body that is not 4 bytes, or an id that
    /// is not a stream, is ignored (PROTOCOL.md §3.6).
    fn on_credit(&mut self, frame: &Frame) {
        let Ok(n) = <[u8; 4]>::try_from(&frame.body[..]) else {
            return;
        };
        let n = u32::from_be_bytes(n);
        if let Some(sem) = self.calls.get(&frame.id).and_then(|c| c.credits.as_ref()) {
            // Capped so a hostile client cannot overflow the semaphore.
            let cap = Semaphore::MAX_PERMITS / 2 - sem.available_permits();
            sem.add_permits((n as usize).min(cap));
        }
    }
}

/// Runs the server side of TLS when the server has it, within the handshake timeout.
pub(super) async fn secure(
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
