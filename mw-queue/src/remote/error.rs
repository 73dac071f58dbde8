//! [`RemoteError`]: why an operation of the `mw.queue` client failed, shared by
//! the client and its coalescing layer.
//!
//! The crate's three error types, and the same three in `mw-pubsub`:
//! [`Error`](crate::Error) is what the in-process [`QueueManager`](crate::QueueManager)
//! reports; [`QueueError`] is the broker's typed refusal as it travels on the wire;
//! [`RemoteError`] is what a client call reports: [`Refused`](RemoteError::Refused) by
//! the broker, the call itself [`Rpc`](RemoteError::Rpc) failed, or
//! [`Connect`](RemoteError::Connect)ing failed.

use mw_rpc::RpcError;

use super::wire::QueueError;

/// Why a remote queue operation failed: the broker refused it, or the call itself failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// Connecting to the broker failed.
    #[error("cannot connect to broker at {addr}")]
    Connect {
        /// The address given.
        addr: String,
        /// Why.
        #[source]
        source: RpcError,
    },
    /// The broker refused the operation (queue full, disk full, invalid name, ...).
    #[error(transparent)]
    Refused(QueueError),
    /// The call failed on the way (disconnected, deadline passed, broker shutting
    /// down, ...). For a send, the message may or may not have been stored: resend it
    /// with the same producer-chosen id to be sure it is stored once. The broker's
    /// refusals are [`RemoteError::Refused`], never this.
    #[error("call to the broker failed")]
    Rpc(#[source] RpcError),
    /// A consumer made with [`RemoteQueue::consumer_with_limit`](super::RemoteQueue::consumer_with_limit) has received all the
    /// deliveries it asked for.
    #[error("consumer has received the {0} deliveries it asked for")]
    LimitReached(u64),
}

impl RemoteError {
    /// Whether retrying the same request can never succeed: the broker refused it for
    /// what it is (too large, invalid name, stale tag), or the broker does not speak
    /// this interface. Disconnects, timeouts and full queues or disks are not
    /// permanent.
    pub fn is_permanent(&self) -> bool {
        match self {
            RemoteError::Refused(e) => e.is_permanent(),
            RemoteError::Rpc(e) => matches!(
                e,
                RpcError::UnknownService(_)
                    | RpcError::UnknownMethod(_)
                    | RpcError::VersionMismatch(_)
                    | RpcError::BadArguments(_)
            ),
            RemoteError::Connect { .. } | RemoteError::LimitReached(_) => false,
        }
    }

    /// The broker's refusal, if that is what this is.
    pub fn refusal(&self) -> Option<&QueueError> {
        match self {
            RemoteError::Refused(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RpcError<QueueError>> for RemoteError {
    fn from(e: RpcError<QueueError>) -> Self {
        match e.into_application() {
            Ok(q) => RemoteError::Refused(q),
            Err(other) => RemoteError::Rpc(other),
        }
    }
}

impl From<RpcError> for RemoteError {
    fn from(e: RpcError) -> Self {
        RemoteError::Rpc(e)
    }
}

/// `Result` with [`RemoteError`].
pub type RemoteResult<T> = Result<T, RemoteError>;
