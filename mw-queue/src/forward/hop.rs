//! The next hop of a forwarder: the [`NextHop`] trait, its [`HopError`], and the
//! [`Connect`] factory a [`Router`](super::Router) uses to reach a hop by address.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::engine::manager::QueueManager;
use crate::error::Error;
use crate::message::Message;

/// Why a next hop did not confirm a send.
///
/// The forwarder decides what to do from the variant alone: retry later
/// ([`Unavailable`](HopError::Unavailable)) or take the message out of the way
/// ([`Refused`](HopError::Refused)). Not part of the crate's [`Error`]: it is
/// the contract between the forwarder and whoever implements [`NextHop`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HopError {
    /// The hop could not be reached, timed out, or could not store the messages
    /// right now (disk full, queue full, shutting down). Some of them may have
    /// been stored: a resend with the same ids is stored once.
    #[error("next hop unavailable: {0}")]
    Unavailable(String),
    /// The hop refused the messages for good (too large, invalid queue name):
    /// resending cannot help.
    #[error("next hop refused the message: {0}")]
    Refused(String),
}

impl HopError {
    /// Classifies a queue manager's error as a hop would see it.
    pub fn from_queue_error(e: &Error) -> HopError {
        match e {
            Error::MessageTooLarge { .. } | Error::InvalidQueueName(_) => {
                HopError::Refused(e.to_string())
            }
            _ => HopError::Unavailable(e.to_string()),
        }
    }
}

/// Where a [`Forwarder`](super::Forwarder) sends messages: the next queue
/// manager on the way to the destination queue.
///
/// `send` stores `msgs`, in order, in queue `queue` at the hop and returns `Ok`
/// only once **every one of them is durable there**. The messages carry their
/// ids ([`Message::with_id`]); the hop must store a message whose id it has
/// already stored (within its dedup window) only once, so that a resend after a
/// crash or a lost confirmation is harmless. mw-queue's own queue managers do
/// this; so does the broker's `mw.queue` service.
///
/// Implementations connect lazily and reconnect after a failure; the forwarder
/// only calls `send` and retries with backoff while it returns
/// [`HopError::Unavailable`]. Every call should be bounded in time (use a
/// deadline): a call that never returns stalls its transmission queue.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use futures::future::{BoxFuture, FutureExt};
/// use mw_queue::forward::{HopError, NextHop};
/// use mw_queue::Message;
///
/// /// Remembers what it was sent (a test double).
/// #[derive(Default)]
/// struct Recorder(Mutex<Vec<(String, Message)>>);
///
/// impl NextHop for Recorder {
///     fn send<'a>(&'a self, queue: &'a str, msgs: Vec<Message>) -> BoxFuture<'a, Result<(), HopError>> {
///         async move {
///             let mut v = self.0.lock().unwrap();
///             v.extend(msgs.into_iter().map(|m| (queue.to_string(), m)));
///             Ok(())
///         }
///         .boxed()
///     }
/// }
/// # let _hop: Arc<dyn NextHop> = Arc::new(Recorder::default());
/// ```
pub trait NextHop: Send + Sync + 'static {
    /// Stores `msgs` (in order) in queue `queue` at the hop; `Ok` once all are durable.
    ///
    /// # Errors
    ///
    /// [`HopError::Unavailable`] to be retried later, [`HopError::Refused`] when
    /// retrying cannot help.
    fn send<'a>(
        &'a self,
        queue: &'a str,
        msgs: Vec<Message>,
    ) -> BoxFuture<'a, Result<(), HopError>>;
}

impl<T: NextHop + ?Sized> NextHop for Arc<T> {
    fn send<'a>(
        &'a self,
        queue: &'a str,
        msgs: Vec<Message>,
    ) -> BoxFuture<'a, Result<(), HopError>> {
        (**self).send(queue, msgs)
    }
}

/// An embedded queue manager as a next hop (in-process relays and tests):
/// sends into its queue `queue` directly.
impl NextHop for QueueManager {
    fn send<'a>(
        &'a self,
        queue: &'a str,
        msgs: Vec<Message>,
    ) -> BoxFuture<'a, Result<(), HopError>> {
        Box::pin(async move {
            let q = self.queue(queue);
            for m in msgs {
                q.send(m)
                    .await
                    .map_err(|e| HopError::from_queue_error(&e))?;
            }
            Ok(())
        })
    }
}

/// Makes the [`NextHop`] for a hop address (as written in a
/// [`RoutingTable`](super::RoutingTable)). Called once per hop when a
/// [`Router`](super::Router) starts; the hop it returns connects lazily.
///
/// Any `Fn(&str) -> Arc<dyn NextHop>` is a `Connect`.
pub trait Connect: Send + Sync + 'static {
    /// The next hop at `addr`. Must not block or fail: connecting happens in
    /// [`NextHop::send`].
    fn connect(&self, addr: &str) -> Arc<dyn NextHop>;
}

impl<F> Connect for F
where
    F: Fn(&str) -> Arc<dyn NextHop> + Send + Sync + 'static,
{
    fn connect(&self, addr: &str) -> Arc<dyn NextHop> {
        self(addr)
    }
}
