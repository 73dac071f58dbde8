//! The client side: a multiplexed [`Channel`] to one server.
//!
//! A channel is one connection shared by every clone and every task. Each call gets a
//! correlation id and a slot in the pending table; one reader task routes replies to
//! their slots. Every call has a deadline (the channel's default, overridable per call
//! with [`Channel::with_timeout`]) that also travels to the server. Dropping a call's
//! future, or its [`ReplyHandle`], sends a `Cancel` so the server stops the work.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use mw_core::{
    flags, Address, CoreError, FrameError, FrameKind, FrameReader, TransportConfig, WriteBuffer,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::RpcError;
use crate::service::{Ack, ServiceId};
use crate::wire;

/// Client tunables.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Frame size, write buffer bound and handshake timeout.
    pub transport: TransportConfig,
    /// Deadline of a call when none is given with [`Channel::with_timeout`]. Default 30 s:
    /// long enough for slow work, short enough that a hung server is noticed.
    pub default_timeout: Duration,
    /// Stream items the server may send ahead of the consumer (credit window). Default 64:
    /// enough to hide a round trip, small enough that a slow reader holds little memory.
    pub stream_window: u32,
    /// Reconnect on the next call after the connection broke. Default off: calls in
    /// flight when it broke still fail with [`RpcError::Disconnected`] either way, since
    /// mw cannot know whether they ran.
    pub reconnect: bool,
    /// Calls and streams outstanding at once on the connection; further calls wait for a
    /// slot. Default 1024, within what a default server accepts per connection (256
    /// running + 1024 queued), so a default client is never refused as overloaded.
    pub max_in_flight: usize,
    /// Liveness pings: every this often the client pings the server; a server that does
    /// not answer within the same interval is declared gone and every outstanding call
    /// fails with [`RpcError::Disconnected`]. Default off (`None`): deadlines alone bound
    /// each call; turn it on for long-lived connections and streams (subscriptions).
    pub keepalive: Option<Duration>,
    /// TLS on TCP connections: the CAs to trust and, for servers that require one, a
    /// client certificate. Default `None`: plaintext.
    pub tls: Option<mw_core::tls::TlsClient>,
    /// Log in with these on every connection (servers that require it,
    /// [`crate::auth`]). Default `None`.
    pub credentials: Option<crate::auth::Credentials>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            transport: TransportConfig::default(),
            default_timeout: Duration::from_secs(30),
            stream_window: 64,
            reconnect: false,
            max_in_flight: 1024,
            keepalive: None,
            tls: None,
            credentials: None,
        }
    }
}

enum Slot {
    Reply(oneshot::Sender<Result<(FrameKind, Bytes), RpcError>>),
    Stream(mpsc::Sender<StreamMsg>),
}

/// Places of a stream's channel beyond its credit window, kept for its final message
/// (end or error), so that it always fits.
const STREAM_FINAL_ROOM: usize = 2;

enum StreamMsg {
    Item(Bytes),
    End,
    Err(RpcError),
}

struct Conn {
    write_buf: WriteBuffer,
    pending: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    /// Set once the reader ended or the server said GoAway: no new calls on this connection.
    dead: AtomicBool,
    /// Why it died, when the server said (an `Error` frame with id 0: over a connection
    /// limit, a protocol error): later calls get that instead of a bare `Disconnected`.
    why: Mutex<Option<RpcError>>,
    /// Slots for outstanding calls ([`ClientConfig::max_in_flight`]).
    slots: Arc<Semaphore>,
}

impl Drop for Conn {
    /// The last channel clone is gone: close the connection (the writer flushes, shuts the
    /// socket down; the server sees end-of-stream and the reader task ends).
    fn drop(&mut self) {
        self.write_buf.close();
    }
}

impl Conn {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        // Only inserts and removes happen under this lock; a poisoned map is still whole.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error a call on this dead connection gets: the server's reason if it gave
    /// one, else [`RpcError::Disconnected`].
    fn death(&self) -> RpcError {
        match &*self.why.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(RpcError::Protocol(m)) => RpcError::Protocol(m.clone()),
            Some(RpcError::Overloaded(m)) => RpcError::Overloaded(m.clone()),
            _ => RpcError::Disconnected,
        }
    }

    /// Marks the connection dead, closes it and fails every outstanding call and stream.
    fn fail_all(&self, failure: &RpcError) {
        if matches!(failure, RpcError::Protocol(_) | RpcError::Overloaded(_)) {
            let mut why = self.why.lock().unwrap_or_else(|e| e.into_inner());
            if why.is_none() {
                *why = Some(match failure {
                    RpcError::Protocol(m) => RpcError::Protocol(m.clone()),
                    RpcError::Overloaded(m) => RpcError::Overloaded(m.clone()),
                    _ => RpcError::Disconnected,
                });
            }
        }
        self.dead.store(true, Ordering::Release);
        self.write_buf.close();
        let slots: Vec<Slot> = self.pending().drain().map(|(_, s)| s).collect();
        let err = || match failure {
            RpcError::Protocol(m) => RpcError::Protocol(m.clone()),
            RpcError::Overloaded(m) => RpcError::Overloaded(m.clone()),
            _ => RpcError::Disconnected,
        };
        for slot in slots {
            match slot {
                Slot::Reply(tx) => {
                    let _ = tx.send(Err(err()));
                }
                Slot::Stream(tx) => {
                    let _ = tx.try_send(StreamMsg::Err(err()));
                }
            }
        }
    }

    /// No new calls can use this connection: the reader ended, the server said GoAway, or
    /// the writer failed (a peer that half-closed may not have been noticed by the reader).
    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire) || self.write_buf.is_closed()
    }

    /// Removes a call's slot (keeping the writer's in-flight hint current).
    fn take(&self, id: u64) -> Option<Slot> {
        let (slot, n) = {
            let mut p = self.pending();
            (p.remove(&id), p.len())
        };
        self.write_buf.set_in_flight(n);
        slot
    }

    fn forget(&self, id: u64) -> bool {
        self.take(id).is_some()
    }

    fn cancel(&self, id: u64) {
        if self.forget(id) {
            // A cancel is a few bytes and must not wait: past the high-water mark on purpose.
            let _ = self.write_buf.push(FrameKind::Cancel, 0, id, &[]);
        }
    }
}

struct Shared {
    addr: Address,
    config: ClientConfig,
    conn: Mutex<Arc<Conn>>,
    reconnecting: tokio::sync::Mutex<()>,
}

/// A connection to a server, shared by all clones. Cheap to clone and use from many tasks.
#[derive(Clone)]
pub struct Channel {
    shared: Arc<Shared>,
    timeout: Duration,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("addr", &self.shared.addr)
            .field("timeout", &self.timeout)
            .finish()
    }
}

async fn open(addr: &Address, config: &ClientConfig) -> Result<Arc<Conn>, RpcError> {
    let mut stream = mw_core::connect(addr).await?;
    if let Some(tls) = &config.tls {
        stream = tokio::time::timeout(
            config.transport.handshake_timeout,
            tls.connect(stream, addr),
        )
        .await
        .map_err(|_| mw_core::CoreError::HandshakeTimeout)??;
    }
    let (reader, write_buf, _writer) =
        mw_core::client_connection(stream, &config.transport).await?;
    let conn = Arc::new(Conn {
        write_buf,
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        dead: AtomicBool::new(false),
        why: Mutex::new(None),
        slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
    });
    tokio::spawn(read_loop(reader, Arc::downgrade(&conn)));
    if let Some(creds) = &config.credentials {
        login(&conn, creds).await?;
    }
    if let Some(every) = config.keepalive {
        tokio::spawn(keepalive(
            Arc::downgrade(&conn),
            every.max(Duration::from_millis(10)),
        ));
    }
    Ok(conn)
}

/// Routes replies to pending calls until the connection ends, then fails what is left.
/// Holds only a `Weak`: once every channel clone is gone, the connection closes.
async fn read_loop(mut reader: FrameReader, conn: std::sync::Weak<Conn>) {
    let mut failure: RpcError = RpcError::Disconnected;
    while let Some(next) = reader.next().await {
        let Some(conn) = conn.upgrade() else { return };
        let frame = match next {
            Ok(f) => f,
            // The transport failed (e.g. reset by the peer): the connection is lost, which
            // callers see as `Disconnected`, not as a protocol violation.
            Err(FrameError::Io(e)) => {
                tracing::debug!(error = %e, "connection to server lost");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "dropping connection after bad frame from server");
                failure = RpcError::Protocol(e.to_string());
                break;
            }
        };
        match frame.kind {
            // Id 0 is the connection itself: the server says why it is about to close.
            FrameKind::Error if frame.id == 0 => {
                let e = wire::decode_error(frame.body);
                tracing::warn!(error = %e, "server reported a connection error");
                failure = e;
            }
            FrameKind::Response | FrameKind::Error | FrameKind::Ack | FrameKind::Pong => {
                match conn.take(frame.id) {
                    Some(Slot::Reply(tx)) => {
                        let _ = tx.send(Ok((frame.kind, frame.body)));
                    }
                    Some(Slot::Stream(tx)) => {
                        let msg = if frame.kind == FrameKind::Error {
                            StreamMsg::Err(wire::decode_error(frame.body))
                        } else {
                            StreamMsg::Err(RpcError::Protocol(format!(
                                "{:?} frame on a stream",
                                frame.kind
                            )))
                        };
                        let _ = tx.try_send(msg);
                    }
                    // A reply to a call that was cancelled or timed out: nobody waits for it.
                    None => {}
                }
            }
            FrameKind::StreamItem => {
                let mut pending = conn.pending();
                if let Some(Slot::Stream(tx)) = pending.get(&frame.id) {
                    // Credit keeps a correct server within the window, which leaves the
                    // channel's last places for the stream's final message. An item that
                    // would take one is beyond the server's credit: refuse it while there
                    // is still room to say so (on a full channel the error would be lost
                    // and the reader would see `Disconnected` instead).
                    let beyond_credit = tx.capacity() <= STREAM_FINAL_ROOM;
                    if beyond_credit || tx.try_send(StreamMsg::Item(frame.body)).is_err() {
                        if let Some(Slot::Stream(tx)) = pending.remove(&frame.id) {
                            // Stop the server's side too: nobody will grant it credit.
                            let _ = conn.write_buf.push(FrameKind::Cancel, 0, frame.id, &[]);
                            let _ = tx.try_send(StreamMsg::Err(RpcError::Protocol(
                                "server sent stream items beyond its credit".into(),
                            )));
                        }
                    }
                }
            }
            FrameKind::StreamEnd => match conn.take(frame.id) {
                Some(Slot::Stream(tx)) => {
                    let _ = tx.try_send(StreamMsg::End);
                }
                // Not a stream: the call fails as a protocol error ("unexpected StreamEnd
                // reply"), not as a lost connection.
                Some(Slot::Reply(tx)) => {
                    let _ = tx.send(Ok((frame.kind, frame.body)));
                }
                None => {}
            },
            FrameKind::GoAway => conn.dead.store(true, Ordering::Release),
            FrameKind::Ping => {
                let _ = conn.write_buf.push(FrameKind::Pong, 0, frame.id, &[]);
            }
            other => {
                tracing::warn!(kind = ?other, "unexpected frame from server");
            }
        }
    }
    if let Some(conn) = conn.upgrade() {
        conn.fail_all(&failure);
    }
}

/// Pings every `every`; if a pong does not come back within `every`, the connection is
/// declared dead and every outstanding call fails with [`RpcError::Disconnected`] at once,
/// instead of each waiting out its own deadline on a peer that went silent.
async fn keepalive(conn: std::sync::Weak<Conn>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(c) = conn.upgrade() else { return };
        if c.dead.load(Ordering::Acquire) {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let id = c.next_id.fetch_add(1, Ordering::Relaxed);
        c.pending().insert(id, Slot::Reply(tx));
        if c.write_buf.push(FrameKind::Ping, 0, id, &[]).is_err() {
            return;
        }
        // Do not keep the connection alive ourselves while waiting.
        drop(c);
        let answered = matches!(
            tokio::time::timeout(every, rx).await,
            Ok(Ok(Ok((FrameKind::Pong, _))))
        );
        let Some(c) = conn.upgrade() else { return };
        if !answered {
            c.forget(id);
            tracing::warn!(
                ?every,
                "no answer to keepalive ping; connection declared dead"
            );
            c.fail_all(&RpcError::Disconnected);
            return;
        }
    }
}

/// Logs in on a fresh connection (the `mw.auth` exchange, [`crate::auth`]), waiting at
/// most 30 s (a server slows down repeated failures).
async fn login(conn: &Arc<Conn>, creds: &crate::auth::Credentials) -> Result<(), RpcError> {
    use crate::auth::{AUTH_SERVICE, AUTH_VERSION, LOGIN_METHOD};
    const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
    let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    conn.pending().insert(id, Slot::Reply(tx));
    conn.write_buf
        .push_with(FrameKind::Request, 0, id, |b| {
            wire::put_call_header(
                b,
                LOGIN_TIMEOUT.as_millis() as u32,
                AUTH_SERVICE,
                AUTH_VERSION,
                LOGIN_METHOD,
            );
            encode_args(b, creds)
        })
        .map_err(|_| conn.death())?;
    match tokio::time::timeout(LOGIN_TIMEOUT, rx).await {
        Ok(Ok(Ok((FrameKind::Response, _)))) => Ok(()),
        Ok(Ok(Ok((FrameKind::Error, body)))) => Err(wire::decode_error(body)),
        Ok(Ok(Ok((kind, _)))) => Err(RpcError::Protocol(format!(
            "login answered with a {kind:?} frame"
        ))),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err(conn.death()),
        Err(_) => Err(RpcError::Timeout(LOGIN_TIMEOUT)),
    }
}

fn encode_args<A: Serialize + ?Sized>(dst: &mut BytesMut, args: &A) -> Result<(), RpcError> {
    struct Sink<'a>(&'a mut BytesMut);
    impl Extend<u8> for Sink<'_> {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
            for b in iter {
                self.0.put_u8(b);
            }
        }
    }
    postcard::to_extend(args, Sink(dst))
        .map(|_| ())
        .map_err(|e| RpcError::BadArguments(format!("cannot encode arguments: {e}")))
}

impl From<FrameError> for RpcError {
    fn from(e: FrameError) -> Self {
        RpcError::Transport(CoreError::Frame(e))
    }
}

impl Channel {
    /// Connects to `addr` (`HOST:PORT`, `unix:PATH` or `inproc:NAME`) with default settings.
    ///
    /// # Errors
    /// [`RpcError::Transport`] for a bad address, a refused connection or a failed handshake.
    pub async fn connect(addr: &str) -> Result<Channel, RpcError> {
        Channel::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects with explicit settings.
    ///
    /// # Errors
    /// As [`Channel::connect`].
    pub async fn connect_with(addr: &str, config: ClientConfig) -> Result<Channel, RpcError> {
        let addr: Address = addr.parse()?;
        let conn = open(&addr, &config).await?;
        let timeout = config.default_timeout;
        Ok(Channel {
            shared: Arc::new(Shared {
                addr,
                config,
                conn: Mutex::new(conn),
                reconnecting: tokio::sync::Mutex::new(()),
            }),
            timeout,
        })
    }

    /// The server's address.
    pub fn addr(&self) -> &Address {
        &self.shared.addr
    }

    /// A handle on the same connection whose calls use `timeout` as their deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Channel {
        Channel {
            shared: self.shared.clone(),
            timeout,
        }
    }

    /// The deadline calls on this handle get.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the connection is known to be broken (or the server said it is going away).
    pub fn is_closed(&self) -> bool {
        self.current().is_dead()
    }

    fn current(&self) -> Arc<Conn> {
        self.shared
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn conn(&self) -> Result<Arc<Conn>, RpcError> {
        let conn = self.current();
        if !conn.is_dead() {
            return Ok(conn);
        }
        if !self.shared.config.reconnect {
            return Err(conn.death());
        }
        let _one_at_a_time = self.shared.reconnecting.lock().await;
        let conn = self.current();
        if !conn.is_dead() {
            return Ok(conn);
        }
        let fresh = open(&self.shared.addr, &self.shared.config).await?;
        *self.shared.conn.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Sends a call frame and registers `slot` for its replies; returns the connection and id.
    // Private plumbing shared by every call kind; a struct for the arguments would only be
    // built and taken apart again on the hot path.
    #[allow(clippy::too_many_arguments)]
    async fn send<A: Serialize + ?Sized>(
        &self,
        kind: FrameKind,
        frame_flags: u8,
        svc: ServiceId,
        method: u32,
        args: &A,
        deadline_ms: u32,
        slot: Option<Slot>,
    ) -> Result<(Arc<Conn>, u64, Option<OwnedSemaphorePermit>), RpcError> {
        if svc.name.len() > 255 {
            return Err(RpcError::BadArguments(format!(
                "service name {:?} is longer than 255 bytes",
                svc.name
            )));
        }
        let conn = self.conn().await?;
        // Only calls that await something hold a slot; fire-and-forget ones finish at once.
        let permit = match slot {
            Some(_) => Some(
                conn.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| RpcError::Disconnected)?,
            ),
            None => None,
        };
        conn.write_buf.ready().await.map_err(|_| conn.death())?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = slot {
            let n = {
                let mut p = conn.pending();
                p.insert(id, slot);
                p.len()
            };
            conn.write_buf.set_in_flight(n);
        }
        let pushed = conn.write_buf.push_with(kind, frame_flags, id, |b| {
            wire::put_call_header(b, deadline_ms, svc.name, svc.version, method);
            encode_args(b, args)
        });
        if let Err(e) = pushed {
            conn.forget(id);
            return Err(match e {
                RpcError::Transport(CoreError::Closed) => conn.death(),
                e => e,
            });
        }
        Ok((conn, id, permit))
    }

    fn deadline_ms(&self) -> u32 {
        self.timeout.as_millis().clamp(1, u32::MAX as u128) as u32
    }

    /// Starts a call and returns once the request is queued for sending; the handle
    /// resolves to the result (deferred synchronous communication).
    ///
    /// # Errors
    /// Encoding failures and a broken connection.
    ///
    /// # Cancel safety
    /// If cancelled before it returns, the request may or may not have been sent; any
    /// reply is ignored.
    pub async fn start_call<A: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        svc: ServiceId,
        method: u32,
        args: &A,
    ) -> Result<ReplyHandle<T>, RpcError> {
        self.start(svc, method, args, decode_plain::<T>).await
    }

    /// Like [`Channel::start_call`] for a method returning `Result<T, E>`.
    ///
    /// # Errors
    /// As [`Channel::start_call`].
    pub async fn start_call_fallible<
        A: Serialize + ?Sized,
        T: DeserializeOwned,
        E: DeserializeOwned,
    >(
        &self,
        svc: ServiceId,
        method: u32,
        args: &A,
    ) -> Result<ReplyHandle<T, E>, RpcError<E>> {
        self.start(svc, method, args, decode_fallible::<T, E>)
            .await
            .map_err(RpcError::widen)
    }

    async fn start<A: Serialize + ?Sized, T, E>(
        &self,
        svc: ServiceId,
        method: u32,
        args: &A,
        decode: fn(Bytes) -> Result<T, RpcError<E>>,
    ) -> Result<ReplyHandle<T, E>, RpcError> {
        self.awaiting(FrameKind::Request, 0, svc, method, args, decode)
            .await
    }

    /// Sends a call whose answer is awaited (a `Request`, or a `Oneway` asking for an
    /// acknowledgement) and returns the handle that awaits it under the deadline.
    async fn awaiting<A: Serialize + ?Sized, T, E>(
        &self,
        kind: FrameKind,
        frame_flags: u8,
        svc: ServiceId,
        method: u32,
        args: &A,
        decode: fn(Bytes) -> Result<T, RpcError<E>>,
    ) -> Result<ReplyHandle<T, E>, RpcError> {
        let (tx, rx) = oneshot::channel();
        let timeout = self.timeout;
        let sleep = tokio::time::sleep(timeout);
        let (conn, id, slot) = self
            .send(
                kind,
                frame_flags,
                svc,
                method,
                args,
                self.deadline_ms(),
                Some(Slot::Reply(tx)),
            )
            .await?;
        Ok(ReplyHandle {
            guard: CallGuard {
                conn,
                id,
                done: false,
                _slot: slot,
            },
            rx,
            sleep: Box::pin(sleep),
            timeout,
            expect: if kind == FrameKind::Request {
                FrameKind::Response
            } else {
                FrameKind::Ack
            },
            decode,
        })
    }

    /// Calls a unary method and waits for its result (response-based synchronous).
    ///
    /// # Errors
    /// Any [`RpcError`] except `Application`.
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call on the server.
    pub async fn call<A: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        svc: ServiceId,
        method: u32,
        args: &A,
    ) -> Result<T, RpcError> {
        self.start_call(svc, method, args).await?.await
    }

    /// Calls a method returning `Result<T, E>`; its `Err` arrives as [`RpcError::Application`].
    ///
    /// # Errors
    /// Any [`RpcError`].
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call on the server.
    pub async fn call_fallible<A: Serialize + ?Sized, T: DeserializeOwned, E: DeserializeOwned>(
        &self,
        svc: ServiceId,
        method: u32,
        args: &A,
    ) -> Result<T, RpcError<E>> {
        self.start_call_fallible(svc, method, args).await?.await
    }

    /// Sends a one-way call. With [`Ack::None`] it returns once the request is queued
    /// (transient asynchronous); with [`Ack::Receipt`] once the server's middleware accepted
    /// it; with [`Ack::Delivery`] once it was handed to the implementation.
    ///
    /// # Errors
    /// [`RpcError::Disconnected`] if the connection is down (the message was not sent);
    /// with an acknowledgement, also every error the server can report and
    /// [`RpcError::Timeout`].
    ///
    /// # Cancel safety
    /// Dropping the future while waiting for the acknowledgement does not unsend the request.
    pub async fn oneway<A: Serialize + ?Sized>(
        &self,
        svc: ServiceId,
        method: u32,
        args: &A,
        ack: Ack,
    ) -> Result<(), RpcError> {
        let frame_flags = match ack {
            Ack::None => 0,
            Ack::Receipt => flags::ACK_RECEIPT,
            Ack::Delivery => flags::ACK_DELIVERY,
        };
        if ack == Ack::None {
            self.send(FrameKind::Oneway, 0, svc, method, args, 0, None)
                .await?;
            return Ok(());
        }
        let handle: ReplyHandle<(), Infallible> = self
            .awaiting(
                FrameKind::Oneway,
                frame_flags,
                svc,
                method,
                args,
                |_| Ok(()),
            )
            .await?;
        handle.await
    }

    /// Opens a server stream. Items arrive as the consumer asks for them: the server may
    /// run at most [`ClientConfig::stream_window`] items ahead. Streams have no deadline;
    /// errors from the server (unknown method, …) arrive as the stream's first item.
    ///
    /// # Errors
    /// Encoding failures and a broken connection.
    pub async fn call_stream<A: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        svc: ServiceId,
        method: u32,
        args: &A,
    ) -> Result<ClientStream<T>, RpcError> {
        let window = self.shared.config.stream_window.max(1);
        // Capacity: the credit window plus room for the terminal message.
        let (tx, rx) = mpsc::channel(window as usize + STREAM_FINAL_ROOM);
        let (conn, id, slot) = self
            .send(
                FrameKind::Request,
                flags::STREAM,
                svc,
                method,
                args,
                0,
                Some(Slot::Stream(tx)),
            )
            .await?;
        let _ = conn
            .write_buf
            .push(FrameKind::Credit, 0, id, &window.to_be_bytes());
        Ok(ClientStream {
            guard: CallGuard {
                conn,
                id,
                done: false,
                _slot: slot,
            },
            rx,
            window,
            consumed: 0,
            _item: PhantomData,
        })
    }

    /// Measures one round trip with a `Ping` frame.
    ///
    /// # Errors
    /// [`RpcError::Disconnected`] or [`RpcError::Timeout`].
    pub async fn ping(&self) -> Result<Duration, RpcError> {
        let conn = self.conn().await?;
        let (tx, rx) = oneshot::channel();
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        conn.pending().insert(id, Slot::Reply(tx));
        let start = tokio::time::Instant::now();
        if conn.write_buf.push(FrameKind::Ping, 0, id, &[]).is_err() {
            conn.forget(id);
            return Err(RpcError::Disconnected);
        }
        let mut guard = CallGuard {
            conn,
            id,
            done: false,
            _slot: None,
        };
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok((FrameKind::Pong, _)))) => {
                guard.done = true;
                Ok(start.elapsed())
            }
            Ok(Ok(Ok((kind, _)))) => {
                guard.done = true;
                Err(RpcError::Protocol(format!("{kind:?} in answer to a ping")))
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(RpcError::Disconnected),
            Err(_) => Err(RpcError::Timeout(self.timeout)),
        }
    }
}

/// Decodes a value that must use every byte (as the server does for arguments).
fn decode_exact<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, RpcError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(RpcError::Protocol(format!(
            "{what} has {} unexpected trailing bytes",
            rest.len()
        ))),
        Err(e) => Err(RpcError::Protocol(format!("{what} does not decode: {e}"))),
    }
}

fn decode_plain<T: DeserializeOwned>(body: Bytes) -> Result<T, RpcError> {
    decode_exact(&body, "reply")
}

fn decode_fallible<T: DeserializeOwned, E: DeserializeOwned>(
    body: Bytes,
) -> Result<T, RpcError<E>> {
    match decode_exact::<Result<T, E>>(&body, "reply").map_err(RpcError::widen) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RpcError::Application(e)),
        Err(e) => Err(e),
    }
}

/// Cancels the call on the server if dropped before the reply arrived.
struct CallGuard {
    conn: Arc<Conn>,
    id: u64,
    done: bool,
    /// The call's share of [`ClientConfig::max_in_flight`], released with the guard.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.done {
            self.conn.cancel(self.id);
        }
    }
}

/// The pending result of a call started with `start_*` (deferred synchronous).
///
/// Await it for the result. Dropping it cancels the call on the server.
#[must_use = "dropping a ReplyHandle cancels the call"]
pub struct ReplyHandle<T, E = Infallible> {
    guard: CallGuard,
    rx: oneshot::Receiver<Result<(FrameKind, Bytes), RpcError>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    /// The frame kind a success arrives as: `Response` for calls, `Ack` for one-way calls.
    expect: FrameKind,
    decode: fn(Bytes) -> Result<T, RpcError<E>>,
}

impl<T, E> std::fmt::Debug for ReplyHandle<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyHandle")
            .field("id", &self.guard.id)
            .finish()
    }
}

impl<T, E> ReplyHandle<T, E> {
    /// The call's correlation id on the connection.
    pub fn id(&self) -> u64 {
        self.guard.id
    }
}

impl<T, E> Future for ReplyHandle<T, E> {
    type Output = Result<T, RpcError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.guard.done {
            return Poll::Ready(Err(RpcError::Protocol(
                "reply handle polled after completion".into(),
            )));
        }
        match Pin::new(&mut this.rx).poll(cx) {
            Poll::Ready(reply) => {
                this.guard.done = true;
                return Poll::Ready(match reply {
                    Ok(Ok((kind, body))) if kind == this.expect => (this.decode)(body),
                    Ok(Ok((FrameKind::Error, body))) => Err(match wire::decode_error(body) {
                        RpcError::Timeout(_) => RpcError::Timeout(this.timeout),
                        e => e.widen(),
                    }),
                    Ok(Ok((kind, _))) => {
                        Err(RpcError::Protocol(format!("unexpected {kind:?} reply")))
                    }
                    Ok(Err(e)) => Err(e.widen()),
                    Err(_) => Err(RpcError::Disconnected),
                });
            }
            Poll::Pending => {}
        }
        match this.sleep.as_mut().poll(cx) {
            // The guard is still armed: dropping it tells the server to stop.
            Poll::Ready(()) => {
                this.guard.conn.cancel(this.guard.id);
                this.guard.done = true;
                Poll::Ready(Err(RpcError::Timeout(this.timeout)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Items of a server stream, flow-controlled by credit. Dropping it cancels the stream.
#[must_use = "streams do nothing unless polled"]
pub struct ClientStream<T> {
    guard: CallGuard,
    rx: mpsc::Receiver<StreamMsg>,
    window: u32,
    consumed: u32,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ClientStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStream")
            .field("id", &self.guard.id)
            .finish()
    }
}

impl<T: DeserializeOwned> Stream for ClientStream<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.guard.done {
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(StreamMsg::Item(body))) => {
                this.consumed += 1;
                // Return credit in batches of half a window: fewer frames, never a stall.
                if this.consumed >= this.window.div_ceil(2) {
                    let _ = this.guard.conn.write_buf.push(
                        FrameKind::Credit,
                        0,
                        this.guard.id,
                        &this.consumed.to_be_bytes(),
                    );
                    this.consumed = 0;
                }
                Poll::Ready(Some(decode_exact(&body, "stream item")))
            }
            Poll::Ready(Some(StreamMsg::End)) => {
                this.guard.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(StreamMsg::Err(e))) => {
                this.guard.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.guard.done = true;
                Poll::Ready(Some(Err(RpcError::Disconnected)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mw_core::{server_connection, Listener};

    const SVC: ServiceId = ServiceId {
        name: "scripted",
        version: 1,
    };

    /// A hand-played server on `inproc:0`: for the first call it receives, it writes the
    /// frames `script` returns (given the call's id), then waits for the client to leave.
    async fn scripted_server(
        script: impl FnOnce(u64) -> Vec<(FrameKind, Vec<u8>)> + Send + 'static,
    ) -> String {
        let mut l = Listener::bind(&"inproc:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().to_string();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (mut frames, out, _w) = server_connection(s, &TransportConfig::default())
                .await
                .unwrap();
            let call = frames.next().await.unwrap().unwrap();
            for (kind, body) in script(call.id) {
                out.push(kind, 0, call.id, &body).unwrap();
            }
            while frames.next().await.is_some() {}
        });
        addr
    }

    async fn client(addr: &str, window: u32) -> Channel {
        let config = ClientConfig {
            stream_window: window,
            ..ClientConfig::default()
        };
        Channel::connect_with(addr, config).await.unwrap()
    }

    #[tokio::test]
    async fn stream_items_beyond_credit_are_a_protocol_error_not_a_disconnect() {
        // Window 4, and the server sends 7 items at once without waiting for credit,
        // before the reader looks: the reader gets the 4 it granted, then the error.
        let addr = scripted_server(|_| {
            let mut frames: Vec<_> = (0..7u64)
                .map(|i| (FrameKind::StreamItem, postcard::to_stdvec(&i).unwrap()))
                .collect();
            frames.push((FrameKind::StreamEnd, vec![]));
            frames
        })
        .await;
        let channel = client(&addr, 4).await;
        let mut stream = channel.call_stream::<_, u64>(SVC, 1, &()).await.unwrap();
        // Let every frame reach the client's reader before the first poll.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 0..4u64 {
            assert_eq!(stream.next().await.unwrap().unwrap(), i);
        }
        match stream.next().await {
            Some(Err(RpcError::Protocol(m))) => assert!(m.contains("beyond its credit"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert!(stream.next().await.is_none());
        assert!(!channel.is_closed(), "only the stream failed");
    }

    #[tokio::test]
    async fn stream_end_in_answer_to_a_unary_call_is_a_protocol_error() {
        let addr = scripted_server(|_| vec![(FrameKind::StreamEnd, vec![])]).await;
        let channel = client(&addr, 4).await;
        match channel.call::<_, u64>(SVC, 1, &()).await {
            Err(RpcError::Protocol(m)) => assert!(m.contains("StreamEnd"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert!(!channel.is_closed());
    }
}
