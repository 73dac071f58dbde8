//! The values the store speaks in: versions, revisions, stored values, options, events.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A key's version: the revision of the key's last change (as etcd's `mod_revision`).
///
/// It only grows and is never reused, not even after a delete and a re-create, so a
/// compare-and-set that names it cannot succeed on a different incarnation of the key
/// (no ABA). [`Version::ABSENT`] (0) names "the key does not exist" in
/// [`PutOptions::if_version`]. On a ring of nodes this is the seam where a causal
/// version (a vector clock per node) replaces the single counter.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Version(pub u64);

impl Version {
    /// "No such key": `if_version: Some(Version::ABSENT)` creates only.
    pub const ABSENT: Version = Version(0);
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A stored value with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// The value's bytes.
    pub value: Bytes,
    /// The key's version (the revision of its last change).
    pub version: Version,
    /// The revision at which this incarnation of the key was created.
    pub create_revision: u64,
    /// Changes since creation (1 for a new key).
    pub changes: u64,
    /// When the key expires, in milliseconds since the Unix epoch (`None`: never).
    pub expires_at_ms: Option<u64>,
}

/// A key with its value, as a scan returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: Bytes,
    /// Its value and metadata.
    pub value: Versioned,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Durability {
    /// On disk (fsynced, in a group commit shared with concurrent writes) before the
    /// reply, when the node's fsync policy is `always`. The default.
    #[default]
    Sync,
    /// Applied and visible before the reply; on disk with the next sync (the next `Sync`
    /// write's group commit, or the node's fsync interval). Lost by a crash before then.
    Buffered,
}

/// Options of [`put`](crate::Kv::put).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOptions {
    /// Compare-and-set: write only if the key's version is this one
    /// ([`Version::ABSENT`]: only if the key does not exist); otherwise fail with
    /// [`KvError::VersionConflict`](crate::KvError::VersionConflict).
    pub if_version: Option<Version>,
    /// Expire the key this long after the write (`None`: never). Expired keys are never
    /// returned and are reclaimed in the background, with an `Expire` watch event.
    pub ttl: Option<Duration>,
    /// When the reply is sent.
    pub durability: Durability,
}

/// Options of [`delete`](crate::Kv::delete).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteOptions {
    /// Delete only if the key's version is this one.
    pub if_version: Option<Version>,
    /// When the reply is sent.
    pub durability: Durability,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResult {
    /// The key's new version (for a delete: the revision of the delete).
    pub version: Version,
    /// The node's revision after the write.
    pub revision: u64,
    /// Whether the write was on disk when acknowledged (a `Sync` write on a node whose
    /// fsync policy is `always`). The reply reports the level reached, never more.
    pub durable: bool,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResult {
    /// The version the key had (`None`: it did not exist, and nothing changed).
    pub deleted: Option<Version>,
    /// The node's revision after the delete.
    pub revision: u64,
    /// As [`WriteResult::durable`].
    pub durable: bool,
}

/// What an [`update`](crate::Kv::update) function decides for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Leave the key as it is.
    Unchanged,
    /// Store this value (keeping the key's expiry time, if any).
    Put(Bytes),
    /// Remove the key.
    Delete,
}

/// What an [`update`](crate::Kv::update) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateResult {
    /// Whether the key changed.
    pub changed: bool,
    /// The key's version afterwards (`None`: absent).
    pub version: Option<Version>,
    /// The node's revision after the update.
    pub revision: u64,
    /// As [`WriteResult::durable`].
    pub durable: bool,
}

/// One operation of a [`batch`](crate::Kv::batch): what a client pipelines in one call,
/// as a redis client's `pipe()` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchOp {
    /// [`get`](crate::Kv::get).
    Get {
        /// The key.
        key: Bytes,
    },
    /// [`put`](crate::Kv::put).
    Put {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// Compare-and-set, TTL and durability.
        options: PutOptions,
    },
    /// [`delete`](crate::Kv::delete).
    Delete {
        /// The key.
        key: Bytes,
        /// Compare-and-set and durability.
        options: DeleteOptions,
    },
    /// [`incr`](crate::Kv::incr).
    Incr {
        /// The key.
        key: Bytes,
        /// What to add.
        delta: i64,
    },
}

impl BatchOp {
    /// The key the operation reads or writes.
    pub fn key(&self) -> &Bytes {
        match self {
            BatchOp::Get { key }
            | BatchOp::Put { key, .. }
            | BatchOp::Delete { key, .. }
            | BatchOp::Incr { key, .. } => key,
        }
    }

    /// Whether the operation changes the store.
    pub fn writes(&self) -> bool {
        !matches!(self, BatchOp::Get { .. })
    }
}

/// What one [`BatchOp`] returned: the reply its single-operation call gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchReply {
    /// The reply of a [`BatchOp::Get`].
    Get(Option<Versioned>),
    /// The reply of a [`BatchOp::Put`].
    Put(WriteResult),
    /// The reply of a [`BatchOp::Delete`].
    Delete(DeleteResult),
    /// The reply of a [`BatchOp::Incr`].
    Incr(i64),
}

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A put (or incr) stored a value.
    Put,
    /// A delete removed the key.
    Delete,
    /// The key's TTL passed and it was reclaimed.
    Expire,
}

/// One change, as `watch` streams it. Revisions increase by one per change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The node's revision of this change.
    pub revision: u64,
    /// What happened.
    pub kind: EventKind,
    /// The key.
    pub key: Bytes,
    /// The value stored (for `Put`).
    pub value: Option<Bytes>,
    /// The key's version after a put; the version removed by a delete or expiry.
    pub version: Version,
}

/// A node's state, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The revision of the last change.
    pub revision: u64,
    /// The oldest revision a watch can start from.
    pub oldest_revision: u64,
    /// The storage engine.
    pub engine: String,
    /// The node's fsync policy.
    pub fsync: String,
}
