//! [`ClientStream`]: the items of a server stream, flow-controlled by credit.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use mw_core::FrameKind;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::codec::decode_exact;
use super::pending::StreamMsg;
use super::reply::CallGuard;
use crate::error::RpcError;

/// Items of a server stream, flow-controlled by credit. Dropping it cancels the stream.
#[must_use = "streams do nothing unless polled"]
pub struct ClientStream<T> {
    pub(super) guard: CallGuard,
    pub(super) rx: mpsc::Receiver<StreamMsg>,
    pub(super) window: u32,
    pub(super) consumed: u32,
    pub(super) _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ClientStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStream")
            .field("id", &self.guard.id)
            .finish()
    }
}

impl<T> ClientStream<T> {
    /// Counts one consumed item and returns credit in batches of half a window: fewer
    /// frames, never a stall.
    fn consumed_one(&mut self) {
        self.consumed += 1;
        if self.consumed >= self.window.div_ceil(2) {
            let _ = self.guard.conn.write_buf.push(
                FrameKind::Credit,
                0,
                self.guard.id,
                &self.consumed.to_be_bytes(),
            );
            self.consumed = 0;
        }
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
                this.consumed_one();
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
