//! [`RemoteError`]: why a call of the `mw.pubsub` client ([`RemoteBus`](super::RemoteBus)
//! and its subscriptions) failed. The same shape as `mw_queue::RemoteError`: refused by
//! the broker, the call failed on the way, connecting failed, plus what only this
//! client does.

use mw_rpc::RpcError;

use crate::error::{Error, PubSubError};

/// Why a [`RemoteBus`](super::RemoteBus) operation failed: the broker refused it, the call
/// itself failed, or it failed on this side before or after the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// Connecting to the broker failed (bad address, unreachable, authentication).
    #[error("cannot connect to broker at {addr}")]
    Connect {
        /// The address given.
        addr: String,
        /// Why.
        #[source]
        source: RpcError,
    },
    /// The broker refused the request (bad name, limit reached, unknown durable
    /// subscription, ...), or ended a subscription ([`PubSubError::SlowConsumer`],
    /// [`PubSubError::Closed`]). Only this request failed.
    #[error("broker refused the request: {0}")]
    Refused(PubSubError),
    /// The call failed on the way: disconnected, timed out, protocol mismatch. The
    /// broker's refusals are [`RemoteError::Refused`], never this.
    #[error("broker call failed")]
    Rpc(#[source] RpcError),
    /// Failed on this side, without asking the broker: a malformed topic or pattern, an
    /// event no frame can carry, a buffer size no broker accepts, or (typed calls) a
    /// value that does not encode or a payload that does not decode as the type.
    #[error(transparent)]
    Local(#[from] Error),
}

impl RemoteError {
    /// The broker's refusal, if that is what this is.
    pub fn refusal(&self) -> Option<&PubSubError> {
        match self {
            RemoteError::Refused(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RpcError<PubSubError>> for RemoteError {
    fn from(e: RpcError<PubSubError>) -> Self {
        match e.into_application() {
            Ok(refusal) => RemoteError::Refused(refusal),
            Err(plain) => RemoteError::Rpc(plain),
        }
    }
}

impl From<RpcError> for RemoteError {
    fn from(e: RpcError) -> Self {
        RemoteError::Rpc(e)
    }
}

/// `Result` with [`RemoteError`].
pub type RemoteResult<T> = std::result::Result<T, RemoteError>;
