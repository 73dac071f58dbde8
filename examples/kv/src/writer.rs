//! The single writer of a node: applies a group of operations in order, assigns
//! revisions and versions, and commits the group as one batch (group commit).
//!
//! Only the writer changes the store, so compare-and-set and `incr` are atomic without
//! locks. A failed commit fails every write in its batch and changes nothing.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use mw::pubsub::Bus;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, FsyncPolicy};
use crate::error::{KvError, Result};
use crate::state::{live, millis, Clock, Shared, EVENTS_TOPIC};
use crate::storage::{Batch, Storage, Write};
use crate::types::{
    DeleteOptions, DeleteResult, Durability, Event, EventKind, PutOptions, Update, UpdateResult,
    Version, Versioned, WriteResult,
};

/// The function of an [`Op::Update`].
pub(crate) type UpdateFn = Box<dyn FnOnce(Option<&Versioned>) -> Update + Send>;

/// Most events compacted per batch, so one commit stays short.
const COMPACT_STEP: u64 = 4096;

/// A change waiting for the writer.
pub(crate) enum Op {
    Put {
        key: Bytes,
        value: Bytes,
        options: PutOptions,
        reply: oneshot::Sender<Result<WriteResult>>,
    },
    Delete {
        key: Bytes,
        options: DeleteOptions,
        reply: oneshot::Sender<Result<DeleteResult>>,
    },
    Incr {
        key: Bytes,
        delta: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    /// Read-modify-write of one key, atomically: `f` sees the live value.
    Update {
        key: Bytes,
        f: UpdateFn,
        durability: Durability,
        reply: oneshot::Sender<Result<UpdateResult>>,
    },
    /// Reclaim these keys if they are still expired.
    Reap { keys: Vec<Bytes> },
    /// Make every earlier commit durable.
    Sync {
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// Sync, then stop: later operations get [`KvError::Closed`].
    Close { reply: oneshot::Sender<Result<()>> },
}

/// Answers an operation that arrived after a close.
fn refuse(op: Op) {
    match op {
        Op::Put { reply, .. } => drop(reply.send(Err(KvError::Closed))),
        Op::Delete { reply, .. } => drop(reply.send(Err(KvError::Closed))),
        Op::Incr { reply, .. } => drop(reply.send(Err(KvError::Closed))),
        Op::Update { reply, .. } => drop(reply.send(Err(KvError::Closed))),
        Op::Sync { reply } => {
            if let Some(r) = reply {
                let _ = r.send(Err(KvError::Closed));
            }
        }
        Op::Close { reply } => drop(reply.send(Ok(()))),
        Op::Reap { .. } => {}
    }
}

/// A reply the writer sends after the batch commits.
enum Pending {
    Put(oneshot::Sender<Result<WriteResult>>, Result<WriteResult>),
    Delete(oneshot::Sender<Result<DeleteResult>>, Result<DeleteResult>),
    Incr(oneshot::Sender<Result<i64>>, Result<i64>),
    Update(oneshot::Sender<Result<UpdateResult>>, Result<UpdateResult>),
    Sync(oneshot::Sender<Result<()>>),
}

impl Pending {
    fn finish(self, outcome: &Result<bool>) {
        let fail = |e: &KvError| e.clone();
        match self {
            Pending::Put(tx, r) => {
                let _ = tx.send(match outcome {
                    Ok(durable) => r.map(|w| WriteResult {
                        durable: *durable,
                        ..w
                    }),
                    Err(e) => r.and(Err(fail(e))),
                });
            }
            Pending::Delete(tx, r) => {
                let _ = tx.send(match outcome {
                    Ok(durable) => r.map(|d| DeleteResult {
                        durable: *durable,
                        ..d
                    }),
                    Err(e) => r.and(Err(fail(e))),
                });
            }
            Pending::Incr(tx, r) => {
                let _ = tx.send(match outcome {
                    Ok(_) => r,
                    Err(e) => r.and(Err(fail(e))),
                });
            }
            Pending::Update(tx, r) => {
                let _ = tx.send(match outcome {
                    Ok(durable) => r.map(|u| UpdateResult {
                        durable: *durable,
                        ..u
                    }),
                    Err(e) => r.and(Err(fail(e))),
                });
            }
            Pending::Sync(tx) => {
                let _ = tx.send(outcome.clone().map(|_| ()));
            }
        }
    }
}

/// What the writer needs to know of a key's current value to change it: everything
/// but the value's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyMeta {
    version: Version,
    create_revision: u64,
    changes: u64,
    expires_at_ms: Option<u64>,
}

impl KeyMeta {
    fn of(v: &Versioned) -> KeyMeta {
        KeyMeta {
            version: v.version,
            create_revision: v.create_revision,
            changes: v.changes,
            expires_at_ms: v.expires_at_ms,
        }
    }
}

/// The single writer: owns revision assignment and group commit.
pub(crate) struct Writer {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) bus: Bus,
    pub(crate) clock: Clock,
    pub(crate) config: Config,
    /// Something was committed without an fsync since the last one.
    pub(crate) dirty: bool,
    /// The committed (or, while a batch is built, about to be committed) metadata of
    /// recently written or read keys (`None`: absent), at most `config.key_cache`;
    /// cleared when full and when a commit fails.
    pub(crate) known: HashMap<Bytes, Option<KeyMeta>>,
}

/// One batch being built: the view of keys changed so far in it, and what to commit.
struct Building {
    overlay: HashMap<Bytes, Option<Versioned>>,
    batch: Batch,
    revision: u64,
    pending: Vec<Pending>,
    /// A `Sync` write is in the batch (fsynced if the policy is `always`).
    wants_sync: bool,
    /// An explicit sync or close is in the batch (fsynced whatever the policy).
    force_sync: bool,
    /// A close is in the batch: stop after it.
    close: bool,
}

impl Writer {
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut ops = Vec::with_capacity(self.config.max_batch);
        loop {
            ops.clear();
            if rx.recv_many(&mut ops, self.config.max_batch.max(1)).await == 0 {
                return; // every handle dropped
            }
            // Operations after a close in the same receive are refused, not applied.
            let close_at = ops.iter().position(|op| matches!(op, Op::Close { .. }));
            let rest = close_at.map(|i| ops.split_off(i + 1));
            let closing = self.apply(ops.drain(..)).await;
            if closing || rest.is_some() {
                rx.close();
                for op in rest.into_iter().flatten() {
                    refuse(op);
                }
                while let Ok(op) = rx.try_recv() {
                    refuse(op);
                }
                return;
            }
        }
    }

    /// Applies and commits one group; returns whether it held a close.
    async fn apply(&mut self, ops: impl Iterator<Item = Op>) -> bool {
        let now = self.clock.now_ms();
        let mut b = Building {
            overlay: HashMap::new(),
            batch: Batch::default(),
            revision: self.shared.revision.load(Ordering::SeqCst),
            pending: Vec::new(),
            wants_sync: false,
            force_sync: false,
            close: false,
        };
        for op in ops {
            self.apply_one(&mut b, op, now);
        }
        let changed = !b.batch.events.is_empty();
        let sync = (b.force_sync && (changed || self.dirty))
            || (changed && b.wants_sync && self.config.fsync == FsyncPolicy::Always);
        if !changed && !sync {
            for p in b.pending {
                p.finish(&Ok(b.force_sync));
            }
            return b.close;
        }
        // Compaction: keep at most `retain_events`, a bounded step per batch.
        let oldest = self.shared.oldest_event.load(Ordering::SeqCst);
        let keep_from = (b.revision + 1).saturating_sub(self.config.retain_events.max(1));
        if keep_from > oldest {
            b.batch.compact_below = keep_from.min(oldest + COMPACT_STEP);
        }
        b.batch.revision = b.revision;
        let outcome = self.commit(b.batch, changed, sync).await;
        let outcome = match outcome {
            Ok(batch) => {
                self.shared.revision.store(batch.revision, Ordering::SeqCst);
                if batch.compact_below > oldest {
                    self.shared
                        .oldest_event
                        .store(batch.compact_below, Ordering::SeqCst);
                }
                self.publish(&batch.events);
                self.dirty = !sync;
                Ok(sync)
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the batch's writes are refused");
                self.known.clear();
                Err(e)
            }
        };
        for p in b.pending {
            p.finish(&outcome);
        }
        b.close
    }

    async fn commit(&self, batch: Batch, changed: bool, sync: bool) -> Result<Batch> {
        let storage = self.storage.clone();
        let work = move || -> Result<Batch> {
            if changed {
                storage.commit(&batch, sync)?;
            } else if sync {
                storage.sync()?;
            }
            Ok(batch)
        };
        if self.storage.blocking() {
            tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| KvError::storage("commit", e))?
        } else {
            work()
        }
    }

    fn publish(&self, events: &[Event]) {
        if events.is_empty() || self.shared.watchers.load(Ordering::SeqCst) == 0 {
            return;
        }
        match postcard::to_allocvec(events) {
            Ok(bytes) => {
                let _ = self.bus.publish(EVENTS_TOPIC, Bytes::from(bytes));
            }
            Err(e) => tracing::error!(error = %e, "cannot encode events for watchers"),
        }
    }

    /// The stored value of `key` as this batch sees it, expired or not.
    fn raw(&self, b: &Building, key: &Bytes) -> Result<Option<Versioned>> {
        match b.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.storage.get(key),
        }
    }

    /// Remembers `key`'s metadata for later batches.
    fn remember(&mut self, key: &Bytes, meta: Option<KeyMeta>) {
        if self.config.key_cache == 0 {
            return;
        }
        if self.known.len() >= self.config.key_cache && !self.known.contains_key(key) {
            self.known.clear();
        }
        self.known.insert(key.clone(), meta);
    }

    /// The metadata of `key`'s stored value as this batch sees it, expired or not:
    /// from the batch, the cache, or the engine.
    fn raw_meta(&mut self, b: &Building, key: &Bytes) -> Result<Option<KeyMeta>> {
        if let Some(v) = b.overlay.get(key) {
            return Ok(v.as_ref().map(KeyMeta::of));
        }
        if let Some(m) = self.known.get(key) {
            return Ok(*m);
        }
        let meta = self.storage.get(key)?.as_ref().map(KeyMeta::of);
        self.remember(key, meta);
        Ok(meta)
    }

    /// The live metadata of `key`; an expired value is reclaimed first (with its
    /// `Expire` event), so watchers see the expiry before what replaces it.
    fn current_meta(&mut self, b: &mut Building, key: &Bytes, now: u64) -> Result<Option<KeyMeta>> {
        match self.raw_meta(b, key)? {
            Some(m) if m.expires_at_ms.is_some_and(|at| at <= now) => {
                self.remove(b, key, m, EventKind::Expire);
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// The live value of `key` (for operations that need its bytes); an expired one
    /// is reclaimed first.
    fn current(&mut self, b: &mut Building, key: &Bytes, now: u64) -> Result<Option<Versioned>> {
        let raw = self.raw(b, key)?;
        match raw {
            Some(v) if !live(&v, now) => {
                self.remove(b, key, KeyMeta::of(&v), EventKind::Expire);
                Ok(None)
            }
            other => Ok(other),
        }
    }

    fn remove(&mut self, b: &mut Building, key: &Bytes, old: KeyMeta, kind: EventKind) -> u64 {
        b.revision += 1;
        b.batch.writes.push(Write {
            key: key.clone(),
            old_expiry: old.expires_at_ms,
            new: None,
        });
        b.batch.events.push(Event {
            revision: b.revision,
            kind,
            key: key.clone(),
            value: None,
            version: old.version,
        });
        b.overlay.insert(key.clone(), None);
        self.remember(key, None);
        b.revision
    }

    fn store(
        &mut self,
        b: &mut Building,
        key: &Bytes,
        old: Option<KeyMeta>,
        value: Bytes,
        expires_at_ms: Option<u64>,
    ) -> WriteResult {
        b.revision += 1;
        let version = Version(b.revision);
        let new = Versioned {
            value: value.clone(),
            version,
            create_revision: old.map_or(b.revision, |o| o.create_revision),
            changes: old.map_or(1, |o| o.changes + 1),
            expires_at_ms,
        };
        self.remember(key, Some(KeyMeta::of(&new)));
        b.batch.writes.push(Write {
            key: key.clone(),
            old_expiry: old.and_then(|o| o.expires_at_ms),
            new: Some(new.clone()),
        });
        b.batch.events.push(Event {
            revision: b.revision,
            kind: EventKind::Put,
            key: key.clone(),
            value: Some(value),
            version,
        });
        b.overlay.insert(key.clone(), Some(new));
        WriteResult {
            version,
            revision: b.revision,
            durable: false,
        }
    }

    fn check_version(expected: Option<Version>, current: Option<KeyMeta>) -> Result<()> {
        match expected {
            None => Ok(()),
            Some(v) if current.map_or(Version::ABSENT, |c| c.version) == v => Ok(()),
            Some(v) => Err(KvError::VersionConflict {
                expected: v,
                current: current.map(|c| c.version),
            }),
        }
    }

    fn apply_one(&mut self, b: &mut Building, op: Op, now: u64) {
        match op {
            Op::Put {
                key,
                value,
                options,
                reply,
            } => {
                let r = self.put(b, &key, value, &options, now);
                if r.is_ok() && options.durability == Durability::Sync {
                    b.wants_sync = true;
                }
                b.pending.push(Pending::Put(reply, r));
            }
            Op::Delete {
                key,
                options,
                reply,
            } => {
                let r = self.delete(b, &key, options.if_version, now);
                if r.is_ok() && options.durability == Durability::Sync {
                    b.wants_sync = true;
                }
                b.pending.push(Pending::Delete(reply, r));
            }
            Op::Incr { key, delta, reply } => {
                let r = self.incr(b, &key, delta, now);
                if r.is_ok() {
                    b.wants_sync = true;
                }
                b.pending.push(Pending::Incr(reply, r));
            }
            Op::Update {
                key,
                f,
                durability,
                reply,
            } => {
                let r = self.update(b, &key, f, now);
                if r.as_ref().is_ok_and(|u| u.changed) && durability == Durability::Sync {
                    b.wants_sync = true;
                }
                b.pending.push(Pending::Update(reply, r));
            }
            Op::Reap { keys } => {
                for key in keys {
                    if let Err(e) = self.current_meta(b, &key, now) {
                        tracing::warn!(error = %e, "reaper cannot read a key");
                    }
                }
            }
            Op::Sync { reply } => {
                b.force_sync = true;
                if let Some(tx) = reply {
                    b.pending.push(Pending::Sync(tx));
                }
            }
            Op::Close { reply } => {
                b.force_sync = true;
                b.close = true;
                b.pending.push(Pending::Sync(reply));
            }
        }
    }

    fn put(
        &mut self,
        b: &mut Building,
        key: &Bytes,
        value: Bytes,
        options: &PutOptions,
        now: u64,
    ) -> Result<WriteResult> {
        let cur = self.current_meta(b, key, now)?;
        Self::check_version(options.if_version, cur)?;
        let expires = options.ttl.map(|t| now.saturating_add(millis(t).max(1)));
        Ok(self.store(b, key, cur, value, expires))
    }

    fn delete(
        &mut self,
        b: &mut Building,
        key: &Bytes,
        if_version: Option<Version>,
        now: u64,
    ) -> Result<DeleteResult> {
        let cur = self.current_meta(b, key, now)?;
        Self::check_version(if_version, cur)?;
        Ok(match cur {
            Some(old) => {
                let revision = self.remove(b, key, old, EventKind::Delete);
                DeleteResult {
                    deleted: Some(old.version),
                    revision,
                    durable: false,
                }
            }
            None => DeleteResult {
                deleted: None,
                revision: b.revision,
                durable: false,
            },
        })
    }

    fn incr(&mut self, b: &mut Building, key: &Bytes, delta: i64, now: u64) -> Result<i64> {
        let cur = self.current(b, key, now)?;
        let old = match &cur {
            None => 0i64,
            Some(v) => std::str::from_utf8(&v.value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or(KvError::NotAnInteger)?,
        };
        let new = old.checked_add(delta).ok_or(KvError::Overflow)?;
        let expires = cur.as_ref().and_then(|c| c.expires_at_ms);
        let text = Bytes::from(new.to_string());
        self.store(b, key, cur.as_ref().map(KeyMeta::of), text, expires);
        Ok(new)
    }

    fn update(
        &mut self,
        b: &mut Building,
        key: &Bytes,
        f: UpdateFn,
        now: u64,
    ) -> Result<UpdateResult> {
        let cur = self.current(b, key, now)?;
        let (changed, version) = match f(cur.as_ref()) {
            Update::Unchanged => (false, cur.as_ref().map(|c| c.version)),
            Update::Put(value) => {
                let expires = cur.as_ref().and_then(|c| c.expires_at_ms);
                let w = self.store(b, key, cur.as_ref().map(KeyMeta::of), value, expires);
                (true, Some(w.version))
            }
            Update::Delete => match &cur {
                Some(old) => {
                    self.remove(b, key, KeyMeta::of(old), EventKind::Delete);
                    (true, None)
                }
                None => (false, None),
            },
        };
        Ok(UpdateResult {
            changed,
            version,
            revision: b.revision,
            durable: false,
        })
    }
}
