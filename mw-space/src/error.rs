//! The crate's single error type, [`SpaceError`].
//!
//! It is also the `mw.space` service's application error: every variant but
//! [`SpaceError::Rpc`] and [`SpaceError::Notify`] travels over the wire as it is, so a
//! remote caller sees the same typed refusal as an embedded one.

use serde::{Deserialize, Serialize};

/// Whether a problem is with a tuple or with a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum What {
    /// A tuple (`out`).
    Tuple,
    /// A pattern (`rd`, `in`, `rdp`, `inp`, `notify`).
    Pattern,
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            What::Tuple => "tuple",
            What::Pattern => "pattern",
        })
    }
}

/// Everything that can go wrong in `mw-space`.
///
/// Expected outcomes are not errors: `rd`/`in` finding nothing before their timeout (and
/// `rdp`/`inp` finding nothing at all) return `Ok(None)`.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SpaceError {
    /// The JSON text of a tuple or pattern is malformed; the reason names the field.
    #[error("invalid {what}: {reason}")]
    InvalidJson {
        /// Tuple or pattern.
        what: What,
        /// What is wrong, and where.
        reason: String,
    },
    /// More fields than [`Config::max_arity`](crate::Config::max_arity).
    #[error("{what} has {arity} fields; the limit is {limit}")]
    TooManyFields {
        /// Tuple or pattern.
        what: What,
        /// Its number of fields.
        arity: usize,
        /// The limit.
        limit: usize,
    },
    /// Bigger than [`Config::max_tuple_bytes`](crate::Config::max_tuple_bytes) (sizes as
    /// [`Tuple::size`](crate::Tuple::size) counts them).
    #[error("{what} is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Tuple or pattern.
        what: What,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A float field that is NaN or infinite.
    #[error("{what} field {index} is not a finite float")]
    NonFiniteFloat {
        /// Tuple or pattern.
        what: What,
        /// The field's position, from 0.
        index: usize,
    },
    /// A lease of zero (a tuple that would never be visible).
    #[error("a lease must be longer than zero")]
    ZeroLease,
    /// The space holds [`Config::max_tuples`](crate::Config::max_tuples) tuples.
    #[error("space is full: it holds {limit} tuples, the limit")]
    SpaceFull {
        /// The limit.
        limit: usize,
    },
    /// The space's tuples add up to [`Config::max_bytes`](crate::Config::max_bytes).
    #[error("space is full: its tuples would exceed {limit} bytes")]
    SpaceBytesFull {
        /// The limit.
        limit: usize,
    },
    /// [`Config::max_waiters`](crate::Config::max_waiters) callers are already blocked.
    #[error("too many blocked callers: the limit is {limit}")]
    TooManyWaiters {
        /// The limit.
        limit: usize,
    },
    /// A confirmation for a taken tuple that is no longer held for the caller: its hold
    /// expired ([`Config::hold_timeout`](crate::Config::hold_timeout)) and the tuple went
    /// back into the space, or the hold never existed.
    #[error("hold {0} is unknown or expired; the tuple went back into the space")]
    UnknownHold(u64),
    /// The data directory is in use by another process.
    #[error("space directory {0} is locked by another process")]
    Locked(String),
    /// Reading or writing the space's log failed (disk full, I/O error, a failed fsync).
    #[error("space storage: {0}")]
    Storage(String),
    /// The log holds a damaged record that is not a torn tail.
    #[error("space log {file} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The log file.
        file: String,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The space was closed (the broker is shutting down).
    #[error("space is closed")]
    Closed,
    /// Subscribing for notifications failed (mw-pubsub's error, as text).
    #[error("notify: {0}")]
    Notify(String),
    /// The call to a remote space failed (connection, timeout, protocol).
    #[error("cannot reach the space: {0}")]
    #[serde(skip)]
    Rpc(#[source] mw_rpc::RpcError),
}

impl SpaceError {
    pub(crate) fn storage(what: &str, path: &std::path::Path, e: std::io::Error) -> SpaceError {
        SpaceError::Storage(format!("cannot {what} {}: {e}", path.display()))
    }
}

impl From<mw_rpc::RpcError<SpaceError>> for SpaceError {
    fn from(e: mw_rpc::RpcError<SpaceError>) -> Self {
        match e.into_application() {
            Ok(app) => app,
            Err(plain) => SpaceError::Rpc(plain),
        }
    }
}

impl From<mw_rpc::RpcError> for SpaceError {
    fn from(e: mw_rpc::RpcError) -> Self {
        SpaceError::Rpc(e)
    }
}

impl From<mw_pubsub::Error> for SpaceError {
    fn from(e: mw_pubsub::Error) -> Self {
        SpaceError::Notify(e.to_string())
    }
}

impl From<mw_pubsub::RemoteError> for SpaceError {
    fn from(e: mw_pubsub::RemoteError) -> Self {
        SpaceError::Notify(e.to_string())
    }
}

/// A `Result` with [`SpaceError`].
pub type Result<T, E = SpaceError> = std::result::Result<T, E>;
