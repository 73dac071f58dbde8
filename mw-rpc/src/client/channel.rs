//! [`Channel`]: a connection shared by every clone, and the calls made on it.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mw_core::{flags, Address, ConnectionReader, CoreError, FrameKind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::codec::{decode_fallible, decode_plain, encode_args};
use super::config::ClientConfig;
use super::conn::Conn;
use super::keepalive::keepalive;
use super::login::login;
use super::pending::{Slot, STREAM_FINAL_ROOM};
use super::reader::read_loop;
use super::reply::{CallGuard, ReplyHandle};
use super::stream::ClientStream;
use crate::error::RpcError;
use crate::service::{Ack, ServiceId};

/// Times a reconnecting channel sends one call again after the server went away
/// without reading it ([`RpcError::NotRun`]): a server that keeps closing connections
/// this way is not retried forever.
const NOT_RUN_RESENDS: usize = 2;
use crate::wire;

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
        let id = conn.pending.next_id();
        if let Some(slot) = slot {
            let n = conn.pending.insert(id, slot);
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
        self.answered(FrameKind::Request, 0, svc, method, args, decode_plain::<T>)
            .await
    }

    /// Sends a call and awaits its answer. A call the server never read
    /// ([`RpcError::NotRun`]) is sent again on a reconnecting channel, at most
    /// [`NOT_RUN_RESENDS`] times.
    async fn answered<A: Serialize + ?Sized, T, E>(
        &self,
        kind: FrameKind,
        frame_flags: u8,
        svc: ServiceId,
        method: u32,
        args: &A,
        decode: fn(Bytes) -> Result<T, RpcError<E>>,
    ) -> Result<T, RpcError<E>> {
        let mut resent = 0;
        loop {
            let handle = self
                .awaiting(kind, frame_flags, svc, method, args, decode)
                .await
                .map_err(RpcError::widen)?;
            match handle.await {
                Err(RpcError::NotRun)
                    if self.shared.config.reconnect && resent < NOT_RUN_RESENDS =>
                {
                    resent += 1;
                    tracing::debug!(
                        resent,
                        "the server went away before reading a call; sending it again"
                    );
                }
                result => return result,
            }
        }
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
        self.answered(
            FrameKind::Request,
            0,
            svc,
            method,
            args,
            decode_fallible::<T, E>,
        )
        .await
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
        self.answered(
            FrameKind::Oneway,
            frame_flags,
            svc,
            method,
            args,
            |_| Ok(()),
        )
        .await
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
        let id = conn.pending.next_id();
        conn.pending.insert(id, Slot::Reply(tx));
        let start = tokio::time::Instant::now();
        if conn.write_buf.ping(id).is_err() {
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

/// Connects to `addr`, runs TLS and the handshake, starts the reader, logs in when
/// `config` has credentials, and starts keepalive pings when it asks for them.
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
    let (frames, write_buf, _writer) =
        mw_core::client_connection(stream, &config.transport).await?;
    let reader = ConnectionReader::new(frames, write_buf.clone());
    let conn = Arc::new(Conn::new(write_buf, config.max_in_flight));
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
