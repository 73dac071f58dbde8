//! [`ReplyHandle`], the pending result of one call, and [`CallGuard`], which cancels the
//! call on the server when its waiter goes away.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use mw_core::FrameKind;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::conn::Conn;
use crate::error::RpcError;
use crate::wire;

/// Cancels the call on the server if dropped before the reply arrived.
pub(super) struct CallGuard {
    pub(super) conn: Arc<Conn>,
    pub(super) id: u64,
    pub(super) done: bool,
    /// The call's share of [`ClientConfig::max_in_flight`](super::ClientConfig::max_in_flight),
    /// released with the guard.
    pub(super) _slot: Option<OwnedSemaphorePermit>,
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
    pub(super) guard: CallGuard,
    pub(super) rx: oneshot::Receiver<Result<(FrameKind, Bytes), RpcError>>,
    pub(super) sleep: Pin<Box<tokio::time::Sleep>>,
    pub(super) timeout: Duration,
    /// The frame kind a success arrives as: `Response` for calls, `Ack` for one-way calls.
    pub(super) expect: FrameKind,
    pub(super) decode: fn(Bytes) -> Result<T, RpcError<E>>,
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

    /// The call's result from the frame that answered it (or the reader's error).
    fn outcome(
        &self,
        reply: Result<Result<(FrameKind, Bytes), RpcError>, oneshot::error::RecvError>,
    ) -> Result<T, RpcError<E>> {
        match reply {
            Ok(Ok((kind, body))) if kind == self.expect => (self.decode)(body),
            Ok(Ok((FrameKind::Error, body))) => Err(match wire::decode_error(body) {
                RpcError::Timeout(_) => RpcError::Timeout(self.timeout),
                e => e.widen(),
            }),
            Ok(Ok((kind, _))) => Err(RpcError::Protocol(format!("unexpected {kind:?} reply"))),
            Ok(Err(e)) => Err(e.widen()),
            Err(_) => Err(RpcError::Disconnected),
        }
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
        if let Poll::Ready(reply) = Pin::new(&mut this.rx).poll(cx) {
            this.guard.done = true;
            return Poll::Ready(this.outcome(reply));
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
