//! The `mw.kv` RPC service: the node's operations on the wire, and [`KvNode`], which
//! serves them from a [`Kv`].
//!
//! [`KvNode`] is the coordinator seam: on one node it applies every operation to its own
//! store; a ring node answers the same service by coordinating replicas instead.

use bytes::Bytes;
use mw::rpc::auth::{check_key, check_prefix, Action};
use mw::rpc::Streaming;

use crate::error::KvError;
use crate::kv::Kv;
use crate::types::{
    BatchOp, BatchReply, DeleteOptions, DeleteResult, Entry, Event, PutOptions, Status, Versioned,
    WriteResult,
};

/// The key-value service, version 1. `#[mw::service]` generates [`KvServiceClient`] (the
/// typed client; also exported as [`KvClient`](crate::KvClient)) and
/// [`KvServiceServer`] (the dispatcher a `Server` hosts).
#[mw::service(name = "mw.kv", version = 1)]
pub trait KvService {
    /// The live value of `key`, or `None`.
    async fn get(&self, key: Bytes) -> Result<Option<Versioned>, KvError>;
    /// Stores `value` under `key` (compare-and-set, TTL and durability in `options`).
    async fn put(
        &self,
        key: Bytes,
        value: Bytes,
        options: PutOptions,
    ) -> Result<WriteResult, KvError>;
    /// Removes `key`.
    async fn delete(&self, key: Bytes, options: DeleteOptions) -> Result<DeleteResult, KvError>;
    /// Adds `delta` to the decimal integer under `key`; returns the new value.
    async fn incr(&self, key: Bytes, delta: i64) -> Result<i64, KvError>;
    /// Live entries under `prefix` after `start_after`, in key order, at most `limit`.
    async fn scan(
        &self,
        prefix: Bytes,
        start_after: Option<Bytes>,
        limit: u32,
    ) -> Streaming<Result<Entry, KvError>>;
    /// Changes under `prefix` from `from_revision` (inclusive; `None`: from now on).
    async fn watch(
        &self,
        prefix: Bytes,
        from_revision: Option<u64>,
    ) -> Streaming<Result<Event, KvError>>;
    /// The node's revision, oldest watchable revision, engine and fsync policy.
    async fn status(&self) -> Status;
    /// Several operations in one call, in order, each with its own result (see
    /// [`Kv::batch`]): how a client pipelines.
    async fn batch(&self, ops: Vec<BatchOp>) -> Result<Vec<Result<BatchReply, KvError>>, KvError>;
}

/// Serves [`KvService`] from one node's [`Kv`].
#[derive(Debug, Clone)]
pub struct KvNode {
    kv: Kv,
}

impl KvNode {
    /// A node serving `kv`.
    pub fn new(kv: Kv) -> KvNode {
        KvNode { kv }
    }

    /// The store behind the node.
    pub fn kv(&self) -> &Kv {
        &self.kv
    }
}

impl KvService for KvNode {
    async fn get(&self, key: Bytes) -> Result<Option<Versioned>, KvError> {
        check_key(Action::KvRead, &key)?;
        self.kv.get(key).await
    }

    async fn put(
        &self,
        key: Bytes,
        value: Bytes,
        options: PutOptions,
    ) -> Result<WriteResult, KvError> {
        check_key(Action::KvWrite, &key)?;
        self.kv.put(key, value, options).await
    }

    async fn delete(&self, key: Bytes, options: DeleteOptions) -> Result<DeleteResult, KvError> {
        check_key(Action::KvWrite, &key)?;
        self.kv.delete(key, options).await
    }

    async fn incr(&self, key: Bytes, delta: i64) -> Result<i64, KvError> {
        check_key(Action::KvWrite, &key)?;
        self.kv.incr(key, delta).await
    }

    async fn scan(
        &self,
        prefix: Bytes,
        start_after: Option<Bytes>,
        limit: u32,
    ) -> Streaming<Result<Entry, KvError>> {
        if let Err(denied) = check_prefix(Action::KvRead, &prefix) {
            return Box::pin(futures::stream::iter([Err(denied.into())]));
        }
        match self.kv.scan(prefix, start_after, limit) {
            Ok(s) => s,
            Err(e) => Box::pin(futures::stream::iter([Err(e)])),
        }
    }

    async fn watch(
        &self,
        prefix: Bytes,
        from_revision: Option<u64>,
    ) -> Streaming<Result<Event, KvError>> {
        if let Err(denied) = check_prefix(Action::KvRead, &prefix) {
            return Box::pin(futures::stream::iter([Err(denied.into())]));
        }
        self.kv.watch(prefix, from_revision)
    }

    async fn status(&self) -> Status {
        self.kv.status()
    }

    async fn batch(&self, ops: Vec<BatchOp>) -> Result<Vec<Result<BatchReply, KvError>>, KvError> {
        let limit = self.kv.config().limits.max_batch_ops;
        if ops.len() > limit {
            return Err(KvError::BatchTooLarge {
                ops: ops.len(),
                limit,
            });
        }
        // An operation the caller may not do is refused on its own; the rest run.
        let denied: Vec<Option<KvError>> = ops
            .iter()
            .map(|op| {
                let action = if op.writes() {
                    Action::KvWrite
                } else {
                    Action::KvRead
                };
                check_key(action, op.key()).err().map(KvError::from)
            })
            .collect();
        if denied.iter().all(Option::is_none) {
            return self.kv.batch(ops).await;
        }
        let allowed = ops
            .into_iter()
            .zip(&denied)
            .filter(|(_, d)| d.is_none())
            .map(|(op, _)| op)
            .collect();
        let mut results = self.kv.batch(allowed).await?.into_iter();
        Ok(denied
            .into_iter()
            .map(|d| match d {
                Some(e) => Err(e),
                None => results.next().unwrap_or(Err(KvError::Closed)),
            })
            .collect())
    }
}
