//! [`KvError`]: every refusal of the store, typed, the same embedded and over the wire.

use serde::{Deserialize, Serialize};

use crate::types::Version;

/// Why an operation of the key-value store failed.
///
/// Serializable: a node sends it to its clients as the application error of an `mw.kv`
/// call (`RpcError::Application(KvError)`), so callers match on the same variants whether
/// they use [`Kv`](crate::Kv) in-process or a [`KvClient`](crate::KvClient).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// Keys must have at least one byte.
    #[error("empty key")]
    EmptyKey,
    /// The key is longer than [`Limits::max_key`](crate::Limits::max_key).
    #[error("key of {size} bytes exceeds the limit of {limit} bytes")]
    KeyTooLarge {
        /// Size of the key sent.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The value is longer than [`Limits::max_value`](crate::Limits::max_value).
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge {
        /// Size of the value sent.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A scan asked for more entries than [`Limits::max_scan`](crate::Limits::max_scan).
    #[error("scan limit {requested} exceeds the maximum of {limit}")]
    ScanTooLarge {
        /// The limit asked for.
        requested: u32,
        /// The maximum in force.
        limit: u32,
    },
    /// Compare-and-set failed: the key's version is not the one the caller named.
    /// `current` is the version now stored (`None`: the key does not exist).
    #[error(
        "version conflict: expected {expected}, current {}",
        fmt_version(current)
    )]
    VersionConflict {
        /// The version the caller required.
        expected: Version,
        /// The version stored now, if the key exists.
        current: Option<Version>,
    },
    /// `incr` on a value that is not a decimal 64-bit integer.
    #[error("value is not a 64-bit decimal integer")]
    NotAnInteger,
    /// `incr` would leave the 64-bit range.
    #[error("increment would overflow a 64-bit integer")]
    Overflow,
    /// A watch asked for revisions that were compacted away; `oldest` is the oldest
    /// revision still available (watch from it, or from now, and re-read the state).
    #[error("revision {requested} is compacted; the oldest available is {oldest}")]
    Compacted {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision still retained.
        oldest: u64,
    },
    /// A TTL of zero, or too long to represent.
    #[error("invalid ttl: {0}")]
    InvalidTtl(String),
    /// The storage engine failed; the message names the operation and the cause.
    #[error("storage: {0}")]
    Storage(String),
    /// The data directory cannot be used (foreign, corrupt, locked, or of another
    /// format version). Never silently reset.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A write would leave a key with more concurrent versions (siblings) than the
    /// limit: read the key and write with its context to resolve them first.
    #[error("too many siblings: {count} (limit {limit}); read the key and write with its context to resolve them")]
    TooManySiblings {
        /// Siblings the write would leave.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Fewer replicas answered than the quorum needs.
    #[error("quorum not reached: {acks} of {needed} replicas answered ({detail})")]
    QuorumFailed {
        /// Replies or acknowledgements needed.
        needed: usize,
        /// Those that came.
        acks: usize,
        /// Which replicas failed and why.
        detail: String,
    },
    /// The operation needs one order of writes (compare-and-set, `incr`, scan, watch),
    /// which a ring of replicas with sloppy quorums does not give.
    #[error("{op} is not available on a ring node (it needs a single order of writes; use a single node)")]
    NotOnRing {
        /// The operation refused.
        op: String,
    },
    /// The store is shutting down or closed.
    #[error("the store is closed")]
    Closed,
    /// The logged-in user may not read or write this key (the node's `--auth` file);
    /// nothing was done.
    #[error("permission denied: {0}")]
    PermissionDenied(mw::rpc::auth::Denied),
    /// A batch held more operations than
    /// [`Limits::max_batch_ops`](crate::Limits::max_batch_ops); none was applied.
    #[error("batch of {ops} operations exceeds the limit of {limit}")]
    BatchTooLarge {
        /// Operations sent.
        ops: usize,
        /// The limit in force.
        limit: usize,
    },
}

fn fmt_version(v: &Option<Version>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "absent".to_string(),
    }
}

impl KvError {
    pub(crate) fn storage(op: &str, e: impl std::fmt::Display) -> KvError {
        KvError::Storage(format!("{op}: {e}"))
    }
}

/// `Result` with [`KvError`].
pub type Result<T, E = KvError> = std::result::Result<T, E>;

impl From<mw::rpc::auth::Denied> for KvError {
    fn from(d: mw::rpc::auth::Denied) -> Self {
        KvError::PermissionDenied(d)
    }
}
