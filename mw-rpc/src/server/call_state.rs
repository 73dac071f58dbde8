//! What the connection keeps about its calls: the queued ones, the state of each accepted
//! one, and how each ended. Shared by the connection's loop and the call steps; depends on
//! neither.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::{AbortHandle, BoxFuture};
use futures::stream::FuturesUnordered;
use mw_core::FrameKind;
use tokio::sync::Semaphore;

use crate::error::ServerError;
use crate::metrics::CallLabels;
use crate::service::Handler;

/// How a call ended, as the connection answers it.
pub(super) enum Outcome {
    Reply(Result<Bytes, ServerError>),
    /// One-way call finished, or a stream ended (its frames are already written).
    Quiet,
    Aborted,
    DeadlineExceeded,
    /// A stream ended because the server began shutting down while it waited for its
    /// next item.
    ShuttingDown,
}

/// An accepted call waiting for a slot to run in.
pub(super) struct Queued {
    pub(super) id: u64,
    pub(super) kind: FrameKind,
    pub(super) frame_flags: u8,
    pub(super) deadline: Option<tokio::time::Instant>,
    pub(super) handler: Handler,
}

/// What the connection knows about one accepted call, from acceptance to its last frame.
#[derive(Default)]
pub(super) struct CallState {
    /// Set once the call runs; aborting drops the handler future.
    pub(super) abort: Option<AbortHandle>,
    /// Stream calls only: items the client has granted.
    pub(super) credits: Option<Arc<Semaphore>>,
    /// Whether the caller waits for a result (a `Request`): only such calls are told
    /// when they are abandoned. One-way calls never get an `Error` after acceptance.
    pub(super) awaits_result: bool,
    /// Service and method, and when it arrived: for metrics (`None` when unmeasured).
    pub(super) measured: Option<(CallLabels, std::time::Instant)>,
}

/// The calls running on a connection, polled by its task.
pub(super) type InFlight = FuturesUnordered<BoxFuture<'static, (u64, Outcome)>>;

pub(super) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}
