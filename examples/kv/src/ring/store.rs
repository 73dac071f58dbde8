//! [`ReplicaStore`]: a node's replicas, kept in its local [`Kv`].
//!
//! Each key's [`SiblingSet`] is stored under `'r' ‖ position (8 bytes, big-endian) ‖
//! key`, so the local store is ordered like the ring: a range of the ring is a range of
//! local keys (anti-entropy and hand-off read ranges, not the whole store). Merges are
//! atomic read-modify-writes on the node's single writer ([`Kv::update`]), so concurrent
//! replications of one key never lose each other.

use std::sync::mpsc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{KvError, Result};
use crate::kv::Kv;
use crate::ring::dvv::{Sibling, SiblingSet, MAX_SIBLINGS};
use crate::ring::hash::key_position;
use crate::types::{Durability, Update};

/// Prefix of replica keys in the local store.
const REPLICA: u8 = b'r';
/// Bytes before the user key in a local key.
pub const LOCAL_OVERHEAD: usize = 9;

/// The local key of `key`.
pub fn local_key(key: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(LOCAL_OVERHEAD + key.len());
    b.put_u8(REPLICA);
    b.put_u64(key_position(key));
    b.put_slice(key);
    b.freeze()
}

fn decode(stored: Option<&crate::types::Versioned>) -> Result<SiblingSet> {
    match stored {
        None => Ok(SiblingSet::default()),
        Some(v) => {
            postcard::from_bytes(&v.value).map_err(|e| KvError::storage("decode siblings", e))
        }
    }
}

/// The replicas a node holds.
#[derive(Debug, Clone)]
pub struct ReplicaStore {
    kv: Kv,
}

impl ReplicaStore {
    /// Replicas kept in `kv`.
    pub fn new(kv: Kv) -> ReplicaStore {
        ReplicaStore { kv }
    }

    /// The local store.
    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// The state of `key` here (empty if never written here).
    ///
    /// # Errors
    ///
    /// A storage failure.
    pub async fn read(&self, key: &[u8]) -> Result<SiblingSet> {
        decode(self.kv.get(local_key(key)).await?.as_ref())
    }

    /// Merges `incoming` into the state of `key` and returns the merged state. A
    /// `new_write` that would leave more than [`MAX_SIBLINGS`] siblings is refused
    /// ([`KvError::TooManySiblings`]); replication and repair merges never are (they only
    /// bring replicas to the same state).
    ///
    /// # Errors
    ///
    /// [`KvError::TooManySiblings`]; a storage failure.
    pub async fn merge(
        &self,
        key: &[u8],
        incoming: Vec<Sibling>,
        durability: Durability,
        new_write: bool,
    ) -> Result<SiblingSet> {
        let (tx, rx) = mpsc::sync_channel::<Result<SiblingSet>>(1);
        self.kv
            .update(local_key(key), durability, move |cur| {
                let mut set = match decode(cur) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return Update::Unchanged;
                    }
                };
                let changed = set.merge(incoming);
                if new_write && changed && set.siblings.len() > MAX_SIBLINGS {
                    let _ = tx.send(Err(KvError::TooManySiblings {
                        count: set.siblings.len(),
                        limit: MAX_SIBLINGS,
                    }));
                    return Update::Unchanged;
                }
                let update = if changed {
                    match postcard::to_allocvec(&set) {
                        Ok(bytes) => Update::Put(Bytes::from(bytes)),
                        Err(e) => {
                            let _ = tx.send(Err(KvError::storage("encode siblings", e)));
                            return Update::Unchanged;
                        }
                    }
                } else {
                    Update::Unchanged
                };
                let _ = tx.send(Ok(set));
                update
            })
            .await?;
        rx.try_recv()
            .map_err(|_| KvError::storage("merge", "no result"))?
    }

    /// Merges a new write into the state of `key`: `make` builds the sibling (minting
    /// its dot) on the node's writer, in the same step as the merge, so dots are minted
    /// in the order their writes enter the local state. Returns the merged state and the
    /// new sibling's dot.
    ///
    /// # Errors
    ///
    /// [`KvError::TooManySiblings`] (nothing written); a storage failure.
    pub async fn merge_new(
        &self,
        key: &[u8],
        durability: Durability,
        make: impl FnOnce() -> Sibling + Send + 'static,
    ) -> Result<(SiblingSet, crate::ring::dvv::Dot)> {
        let (tx, rx) = mpsc::sync_channel::<Result<(SiblingSet, crate::ring::dvv::Dot)>>(1);
        self.kv
            .update(local_key(key), durability, move |cur| {
                let mut set = match decode(cur) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return Update::Unchanged;
                    }
                };
                let sibling = make();
                let dot = sibling.dot.clone();
                set.merge([sibling]);
                if set.siblings.len() > MAX_SIBLINGS {
                    let _ = tx.send(Err(KvError::TooManySiblings {
                        count: set.siblings.len(),
                        limit: MAX_SIBLINGS,
                    }));
                    return Update::Unchanged;
                }
                match postcard::to_allocvec(&set) {
                    Ok(bytes) => {
                        let _ = tx.send(Ok((set, dot)));
                        Update::Put(Bytes::from(bytes))
                    }
                    Err(e) => {
                        let _ = tx.send(Err(KvError::storage("encode siblings", e)));
                        Update::Unchanged
                    }
                }
            })
            .await?;
        rx.try_recv()
            .map_err(|_| KvError::storage("merge", "no result"))?
    }

    /// Removes `key` if its state is still `expected` (used to drop what was handed off,
    /// and tombstones every replica has).
    ///
    /// # Errors
    ///
    /// A storage failure.
    pub async fn remove_if(&self, key: &[u8], expected: u64) -> Result<bool> {
        let r = self
            .kv
            .update(local_key(key), Durability::Sync, move |cur| {
                match decode(cur) {
                    Ok(set) if set.digest() == expected && !set.is_empty() => Update::Delete,
                    _ => Update::Unchanged,
                }
            })
            .await?;
        Ok(r.changed)
    }

    /// Up to `limit` replicas with ring positions in `[from, to]`, after the key `after`
    /// (paging), in ring order: `(key, state)`.
    ///
    /// # Errors
    ///
    /// A storage failure.
    pub async fn range(
        &self,
        from: u64,
        to: u64,
        after: Option<Bytes>,
        limit: u32,
    ) -> Result<Vec<(Bytes, SiblingSet)>> {
        use futures::StreamExt;
        // Replica keys at position `from` are `'r' ‖ from ‖ key` with a non-empty key, so
        // they all sort just after the 9-byte `'r' ‖ from`; earlier positions sort before.
        let after = after.map(|k| local_key(&k)).unwrap_or_else(|| {
            let mut b = BytesMut::with_capacity(LOCAL_OVERHEAD);
            b.put_u8(REPLICA);
            b.put_u64(from);
            b.freeze()
        });
        let after = Some(after);
        let mut out = Vec::new();
        let mut s = self.kv.scan(Bytes::from_static(&[REPLICA]), after, limit)?;
        while let Some(item) = s.next().await {
            let e = item?;
            let pos = u64::from_be_bytes(e.key[1..9].try_into().expect("8 bytes"));
            if pos < from {
                continue;
            }
            if pos > to {
                break;
            }
            out.push((
                e.key.slice(LOCAL_OVERHEAD..),
                postcard::from_bytes(&e.value.value)
                    .map_err(|e| KvError::storage("decode siblings", e))?,
            ));
        }
        Ok(out)
    }
}
