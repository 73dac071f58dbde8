//! The ring's two services: `mw.kv.ring` for clients (quorum reads and writes through
//! any node: recursive routing) and `mw.kv.replica` between nodes (and for clients that
//! route iteratively, contacting replicas themselves).

use bytes::Bytes;

use crate::error::KvError;
use crate::ring::dvv::{Sibling, SiblingSet};
use crate::ring::types::{
    GcProbe, Located, Membership, Quorum, RingRead, RingView, RingWrite, RingWriteOptions,
};

/// What a ring node offers clients. Any node coordinates any request.
#[mw::service(name = "mw.kv.ring", version = 1)]
pub trait RingKv {
    /// Reads `key` from its replicas, waiting for `r` replies (default: the cluster's R).
    async fn get(&self, key: Bytes, r: Option<Quorum>) -> Result<RingRead, KvError>;
    /// Writes `value`, replacing what `options.context` names; waits for W acknowledgements.
    async fn put(
        &self,
        key: Bytes,
        value: Bytes,
        options: RingWriteOptions,
    ) -> Result<RingWrite, KvError>;
    /// Writes a tombstone replacing what `options.context` names.
    async fn delete(&self, key: Bytes, options: RingWriteOptions) -> Result<RingWrite, KvError>;
    /// The ring as this node sees it.
    async fn ring(&self) -> RingView;
    /// The position and preference list of `key`.
    async fn locate(&self, key: Bytes) -> Located;
    /// Hands this node's ranges to their new owners, leaves the ring, then stops serving.
    async fn leave(&self) -> Result<(), KvError>;
}

/// What ring nodes ask each other (and iterative clients ask replicas).
#[mw::service(name = "mw.kv.replica", version = 1)]
pub trait Replica {
    /// Merges `siblings` into this replica's state of `key`; returns the merged state's
    /// digest. A `new_write` may be refused with `TooManySiblings`.
    async fn store(
        &self,
        key: Bytes,
        siblings: Vec<Sibling>,
        new_write: bool,
    ) -> Result<u64, KvError>;
    /// Coordinates a write of `key` as one of its replicas (mints the dot, merges it
    /// locally, replicates the merged state): what a node that is not a replica of the
    /// key, or an iteratively routing client, asks a replica to do.
    async fn coordinate(
        &self,
        key: Bytes,
        value: Option<Bytes>,
        options: RingWriteOptions,
    ) -> Result<RingWrite, KvError>;
    /// This replica's state of `key`.
    async fn fetch(&self, key: Bytes) -> Result<SiblingSet, KvError>;
    /// Keeps `siblings` of `key` for `target`, which is down, in a persistent queue, and
    /// delivers them when it is back (hinted handoff).
    async fn hint(&self, target: String, key: Bytes, siblings: Vec<Sibling>)
        -> Result<(), KvError>;
    /// Liveness; answers the membership version.
    async fn ping(&self) -> u64;
    /// Exchanges membership views: merges `view`, answers the merged one.
    async fn gossip(&self, view: Membership) -> Membership;
    /// Adds `node` to the ring; answers the membership with it.
    async fn join(&self, node: String) -> Result<Membership, KvError>;
    /// Up to `limit` replicas with positions in `[from, to]` after key `after`.
    async fn range(
        &self,
        from: u64,
        to: u64,
        after: Option<Bytes>,
        limit: u32,
    ) -> Result<Vec<(Bytes, SiblingSet)>, KvError>;
    /// Anti-entropy: the Merkle tree of `range` (heap order, see
    /// [`MerkleTree`](crate::ring::anti_entropy::MerkleTree)) over the keys both this
    /// replica and `with` replicate; `None` when this replica's ring fingerprint is not
    /// `ring` or its ring is not settled.
    async fn merkle(
        &self,
        range: u32,
        with: String,
        ring: u64,
    ) -> Result<Option<Vec<u64>>, KvError>;
    /// Anti-entropy: `(key, digest)` of the keys of leaf `leaf` of `range` that both
    /// this replica and `with` replicate; `None` as for `merkle`.
    async fn keys_in(
        &self,
        range: u32,
        leaf: u32,
        with: String,
        ring: u64,
    ) -> Result<Option<Vec<(Bytes, u64)>>, KvError>;
    /// Tombstone GC: the hints this replica holds and its digest of each key; `None`
    /// as for `merkle`.
    async fn gc_probe(&self, keys: Vec<Bytes>, ring: u64) -> Result<Option<GcProbe>, KvError>;
    /// Tombstone GC: removes each key whose state is still tombstones only with the
    /// digest given; answers how many were removed.
    async fn forget(&self, keys: Vec<(Bytes, u64)>) -> Result<u64, KvError>;
}
