//! [`Kv`]: one node's store, embedded. Reads go straight to the engine; every change
//! goes through one writer task that applies a group of operations in order and
//! commits them as one batch (group commit), then fans the batch's events out to
//! watchers through an mw-pubsub [`Bus`].
//!
//! Invariants:
//! - Revisions increase by one per change, in commit order; a key's [`Version`](crate::Version) is the
//!   revision of its last change. Only the writer assigns them, so compare-and-set and
//!   `incr` are atomic without locks.
//! - A write is acknowledged only after the batch holding it is committed (and, for a
//!   `Sync` write under `--fsync always`, fsynced). A failed commit fails every write in
//!   it and changes nothing.
//! - Events are published after their batch is committed, so a watcher that subscribes
//!   to the bus first and then reads the retained history misses nothing; it skips
//!   revisions it has already seen.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use mw::pubsub::{Bus, SlowConsumerPolicy, SubscribeOptions};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, Engine, FsyncPolicy};
use crate::error::{KvError, Result};
use crate::fjall_engine::FjallStorage;
use crate::redb_engine::RedbStorage;
use crate::state::{live, Clock, Shared, EVENTS_TOPIC};
use crate::storage::{MemoryStorage, Storage};
use crate::streams::{ScanState, WatchState, WatcherCount};
use crate::types::{BatchOp, BatchReply, Durability, Update, UpdateResult};
use crate::types::{
    DeleteOptions, DeleteResult, Entry, Event, PutOptions, Status, Versioned, WriteResult,
};
use crate::writer::{Op, Writer};

/// Expired keys reclaimed per reaper pass.
const REAP_PAGE: usize = 1024;
/// Batches buffered per watcher on the bus before it falls back to the history.
const WATCH_BUFFER: usize = 1024;

/// Where the writer's answer to one operation arrives.
type Reply<T> = oneshot::Receiver<Result<T>>;
/// A checked write, ready for the writer, and where its answer will arrive.
type Queued<T> = (Op, Reply<T>);

/// A batch's write handed to the writer, awaiting its answer.
enum Waiting {
    Put(Reply<WriteResult>),
    Delete(Reply<DeleteResult>),
    Incr(Reply<i64>),
}

impl Waiting {
    async fn reply(self) -> Result<BatchReply> {
        let closed = |_| KvError::Closed;
        match self {
            Waiting::Put(rx) => rx.await.map_err(closed)?.map(BatchReply::Put),
            Waiting::Delete(rx) => rx.await.map_err(closed)?.map(BatchReply::Delete),
            Waiting::Incr(rx) => rx.await.map_err(closed)?.map(BatchReply::Incr),
        }
    }
}

/// Collects the answers of the writes in `queued` into their slots of `replies`.
async fn settle(queued: &mut Vec<(usize, Waiting)>, replies: &mut [Result<BatchReply>]) {
    for (slot, waiting) in queued.drain(..) {
        replies[slot] = waiting.reply().await;
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) storage: Arc<dyn Storage>,
    ops: mpsc::Sender<Op>,
    pub(crate) shared: Arc<Shared>,
    bus: Bus,
    pub(crate) clock: Clock,
    config: Config,
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for dyn Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.name())
    }
}

/// One node's key-value store, in-process. Cheap to clone (clones share the store).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mw_kv::KvError> {
/// use mw_kv::{Kv, PutOptions, Version};
/// let kv = Kv::memory(mw_kv::Config::default());
/// let w = kv.put("greeting", "hello", PutOptions::default()).await?;
/// let got = kv.get("greeting").await?.expect("stored");
/// assert_eq!((&got.value[..], got.version), (&b"hello"[..], w.version));
/// // Compare-and-set against a stale version fails, typed, with the current one.
/// let stale = PutOptions { if_version: Some(Version(w.version.0 - 1)), ..Default::default() };
/// assert!(matches!(
///     kv.put("greeting", "bye", stale).await,
///     Err(mw_kv::KvError::VersionConflict { current: Some(v), .. }) if v == w.version
/// ));
/// assert_eq!(kv.incr("hits", 5).await?, 5);
/// kv.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Kv {
    pub(crate) inner: Arc<Inner>,
}

impl Kv {
    /// Opens (or creates) the on-disk store in `dir`: with the engine it already has, or
    /// `config.engine` for a new directory ([`Engine::Memory`] keeps nothing there).
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`KvError::DataDir`] for a foreign, damaged, locked or other-format directory:
    /// it is refused, never reset.
    pub async fn open(dir: impl AsRef<Path>, config: Config) -> Result<Kv> {
        let dir = dir.as_ref().to_path_buf();
        // An existing store keeps its engine; a new directory gets `config.engine`.
        let engine = if dir.join(crate::redb_engine::DB_FILE).exists() {
            Engine::Redb
        } else if dir.join(crate::fjall_engine::STORE_DIR).exists() {
            Engine::Fjall
        } else {
            config.engine
        };
        let storage = tokio::task::spawn_blocking(move || -> Result<Arc<dyn Storage>> {
            Ok(match engine {
                Engine::Redb => Arc::new(RedbStorage::open(&dir)?),
                Engine::Fjall => Arc::new(FjallStorage::open(&dir)?),
                Engine::Memory => {
                    tracing::warn!(
                        "engine memory: nothing is stored in {}; every key is lost when the node stops",
                        dir.display()
                    );
                    Arc::new(MemoryStorage::new())
                }
            })
        })
        .await
        .map_err(|e| KvError::storage("open", e))??;
        Kv::with_storage(storage, config)
    }

    /// A store kept only in memory (lost when the last clone is dropped).
    pub fn memory(config: Config) -> Kv {
        Kv::with_storage(Arc::new(MemoryStorage::new()), config).expect("memory storage")
    }

    /// A store over any [`Storage`] engine. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// Reading the engine's metadata failed.
    pub fn with_storage(storage: Arc<dyn Storage>, config: Config) -> Result<Kv> {
        let meta = storage.meta()?;
        let shared = Arc::new(Shared {
            revision: AtomicU64::new(meta.revision),
            oldest_event: AtomicU64::new(meta.oldest_event),
            watchers: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let bus = Bus::default();
        let clock = Clock::new();
        let writer = Writer {
            storage: storage.clone(),
            shared: shared.clone(),
            bus: bus.clone(),
            clock,
            config: config.clone(),
            dirty: false,
            known: std::collections::HashMap::new(),
        };
        let handle = tokio::spawn(writer.run(rx));
        let inner = Arc::new(Inner {
            storage,
            ops: tx,
            shared,
            bus,
            clock,
            config,
            writer: std::sync::Mutex::new(Some(handle)),
        });
        spawn_reaper(Arc::downgrade(&inner));
        if let FsyncPolicy::Interval(every) = inner.config.fsync {
            spawn_syncer(Arc::downgrade(&inner), every);
        }
        Ok(Kv { inner })
    }

    /// The settings the store was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let limit = self.inner.config.limits.max_key;
        if key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        if key.len() > limit {
            return Err(KvError::KeyTooLarge {
                size: key.len(),
                limit,
            });
        }
        Ok(())
    }

    async fn submit<T>(&self, op: Op, rx: Reply<T>) -> Result<T> {
        self.inner.ops.send(op).await.map_err(|_| KvError::Closed)?;
        rx.await.map_err(|_| KvError::Closed)?
    }

    /// The value of `key`, or `None` if it does not exist or has expired.
    ///
    /// # Errors
    ///
    /// An invalid key; a storage failure.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Versioned>> {
        let key = key.as_ref();
        self.check_key(key)?;
        let now = self.inner.clock.now_ms();
        Ok(self.inner.storage.get(key)?.filter(|v| live(v, now)))
    }

    /// Stores `value` under `key`. Cancel-safe only in the sense that a dropped call may
    /// or may not have been applied (as with any remote write).
    ///
    /// # Errors
    ///
    /// Size limits; [`KvError::VersionConflict`] when `options.if_version` does not
    /// match; [`KvError::InvalidTtl`]; a storage failure (nothing applied).
    pub async fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        options: PutOptions,
    ) -> Result<WriteResult> {
        let (op, rx) = self.put_op(key.into(), value.into(), options)?;
        self.submit(op, rx).await
    }

    /// Checks a put and makes the writer's operation for it.
    fn put_op(&self, key: Bytes, value: Bytes, options: PutOptions) -> Result<Queued<WriteResult>> {
        self.check_key(&key)?;
        let limit = self.inner.config.limits.max_value;
        if value.len() > limit {
            return Err(KvError::ValueTooLarge {
                size: value.len(),
                limit,
            });
        }
        if options.ttl == Some(Duration::ZERO) {
            return Err(KvError::InvalidTtl("a ttl must be positive".into()));
        }
        let (reply, rx) = oneshot::channel();
        Ok((
            Op::Put {
                key,
                value,
                options,
                reply,
            },
            rx,
        ))
    }

    /// Removes `key`. Deleting a key that does not exist changes nothing and reports
    /// `deleted: None`.
    ///
    /// # Errors
    ///
    /// An invalid key; [`KvError::VersionConflict`]; a storage failure.
    pub async fn delete(
        &self,
        key: impl Into<Bytes>,
        options: DeleteOptions,
    ) -> Result<DeleteResult> {
        let (op, rx) = self.delete_op(key.into(), options)?;
        self.submit(op, rx).await
    }

    fn delete_op(&self, key: Bytes, options: DeleteOptions) -> Result<Queued<DeleteResult>> {
        self.check_key(&key)?;
        let (reply, rx) = oneshot::channel();
        Ok((
            Op::Delete {
                key,
                options,
                reply,
            },
            rx,
        ))
    }

    /// Adds `delta` to the decimal integer stored under `key` (a missing key counts as
    /// 0) and returns the new value, stored as decimal text. Durable as a `Sync` put.
    ///
    /// # Errors
    ///
    /// [`KvError::NotAnInteger`], [`KvError::Overflow`], an invalid key, a storage failure.
    pub async fn incr(&self, key: impl Into<Bytes>, delta: i64) -> Result<i64> {
        let (op, rx) = self.incr_op(key.into(), delta)?;
        self.submit(op, rx).await
    }

    fn incr_op(&self, key: Bytes, delta: i64) -> Result<Queued<i64>> {
        self.check_key(&key)?;
        let (reply, rx) = oneshot::channel();
        Ok((Op::Incr { key, delta, reply }, rx))
    }

    /// Runs `ops` in order, each with its own result, as a redis client's pipeline
    /// does: one call (one round trip for a [`KvClient`](crate::KvClient)) for many
    /// operations. A read sees every write before it in the batch; one operation failing
    /// (a compare-and-set conflict, a value too large) does not stop the others. Not a
    /// transaction: other clients' writes may come between two operations, and the
    /// writes of one batch may be committed in more than one group commit.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), mw_kv::KvError> {
    /// use bytes::Bytes;
    /// use mw_kv::{BatchOp, BatchReply, Kv, PutOptions};
    /// let kv = Kv::memory(mw_kv::Config::default());
    /// let key = Bytes::from("k");
    /// let replies = kv
    ///     .batch(vec![
    ///         BatchOp::Put { key: key.clone(), value: "v".into(), options: PutOptions::default() },
    ///         BatchOp::Get { key: key.clone() },
    ///         BatchOp::Incr { key, delta: 1 },
    ///     ])
    ///     .await?;
    /// assert!(matches!(&replies[1], Ok(BatchReply::Get(Some(v))) if v.value == "v"));
    /// assert!(matches!(replies[2], Err(mw_kv::KvError::NotAnInteger)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`KvError::BatchTooLarge`] (nothing applied) for more than
    /// [`Limits::max_batch_ops`](crate::Limits::max_batch_ops) operations; every other
    /// failure is the failing operation's own result.
    pub async fn batch(&self, ops: Vec<BatchOp>) -> Result<Vec<Result<BatchReply>>> {
        let limit = self.inner.config.limits.max_batch_ops;
        if ops.len() > limit {
            return Err(KvError::BatchTooLarge {
                ops: ops.len(),
                limit,
            });
        }
        let mut replies: Vec<Result<BatchReply>> = Vec::with_capacity(ops.len());
        // Writes handed to the writer whose replies have not been collected yet.
        let mut queued: Vec<(usize, Waiting)> = Vec::new();
        for op in ops {
            let slot = replies.len();
            let prepared = match op {
                BatchOp::Get { key } => {
                    settle(&mut queued, &mut replies).await;
                    replies.push(self.get(key).await.map(BatchReply::Get));
                    continue;
                }
                BatchOp::Put {
                    key,
                    value,
                    options,
                } => self
                    .put_op(key, value, options)
                    .map(|(op, rx)| (op, Waiting::Put(rx))),
                BatchOp::Delete { key, options } => self
                    .delete_op(key, options)
                    .map(|(op, rx)| (op, Waiting::Delete(rx))),
                BatchOp::Incr { key, delta } => self
                    .incr_op(key, delta)
                    .map(|(op, rx)| (op, Waiting::Incr(rx))),
            };
            match prepared {
                Ok((op, waiting)) => match self.inner.ops.send(op).await {
                    Ok(()) => {
                        replies.push(Err(KvError::Closed)); // replaced by `settle`
                        queued.push((slot, waiting));
                    }
                    Err(_) => replies.push(Err(KvError::Closed)),
                },
                Err(e) => replies.push(Err(e)),
            }
        }
        settle(&mut queued, &mut replies).await;
        Ok(replies)
    }

    /// Reads, modifies and writes `key` atomically: `f` gets the live value (or `None`)
    /// and decides; no other change to the store comes between. It runs on the
    /// node's writer, so it must be quick and must not block. `incr` is one such
    /// update; a ring node merges replicated versions with it.
    ///
    /// # Errors
    ///
    /// An invalid key; a storage failure (nothing applied); [`KvError::Closed`].
    pub async fn update(
        &self,
        key: impl Into<Bytes>,
        durability: Durability,
        f: impl FnOnce(Option<&Versioned>) -> Update + Send + 'static,
    ) -> Result<UpdateResult> {
        let key = key.into();
        self.check_key(&key)?;
        let (reply, rx) = oneshot::channel();
        // Not checked against `max_value`: an update's value is the caller's own
        // encoding (a ring replica's siblings), bounded by the caller.
        let f: crate::writer::UpdateFn = Box::new(f);
        self.submit(
            Op::Update {
                key,
                f,
                durability,
                reply,
            },
            rx,
        )
        .await
    }

    /// Live entries whose keys start with `prefix`, after `start_after`, in key order,
    /// at most `limit` of them. To page, pass the last key seen as `start_after`.
    ///
    /// # Errors
    ///
    /// [`KvError::ScanTooLarge`] at once; storage failures arrive as the stream's last item.
    pub fn scan(
        &self,
        prefix: impl Into<Bytes>,
        start_after: Option<Bytes>,
        limit: u32,
    ) -> Result<BoxStream<'static, Result<Entry>>> {
        let max = self.inner.config.limits.max_scan;
        if limit > max {
            return Err(KvError::ScanTooLarge {
                requested: limit,
                limit: max,
            });
        }
        let state = ScanState {
            storage: self.inner.storage.clone(),
            clock: self.inner.clock,
            prefix: prefix.into(),
            after: start_after,
            left: limit as usize,
            page: VecDeque::new(),
            done: false,
        };
        Ok(futures::stream::unfold(state, ScanState::next).boxed())
    }

    /// Changes to keys starting with `prefix`, in revision order: from `from_revision`
    /// (inclusive) if given, else from the next change on. The stream never ends while
    /// the store is open. A watcher that reconnects with `from_revision` = last seen + 1
    /// misses nothing and sees nothing twice.
    ///
    /// # Errors
    ///
    /// [`KvError::Compacted`] (as the first item, then the stream ends) when
    /// `from_revision` is older than the retained history.
    pub fn watch(
        &self,
        prefix: impl Into<Bytes>,
        from_revision: Option<u64>,
    ) -> BoxStream<'static, Result<Event>> {
        let inner = &self.inner;
        // Count first, subscribe second, read the revision third: see the module docs.
        inner.shared.watchers.fetch_add(1, Ordering::SeqCst);
        let sub = inner.bus.subscribe(
            EVENTS_TOPIC,
            SubscribeOptions {
                buffer: WATCH_BUFFER,
                policy: SlowConsumerPolicy::DropOldest,
            },
        );
        let next = from_revision
            .unwrap_or_else(|| inner.shared.revision.load(Ordering::SeqCst) + 1)
            .max(1);
        let state = WatchState {
            storage: inner.storage.clone(),
            shared: inner.shared.clone(),
            prefix: prefix.into(),
            sub: sub.ok(),
            next,
            catching_up: true,
            ready: VecDeque::new(),
            done: false,
            _count: WatcherCount(inner.shared.clone()),
        };
        futures::stream::unfold(state, WatchState::next).boxed()
    }

    /// The node's revision, oldest watchable revision, engine and fsync policy.
    pub fn status(&self) -> Status {
        Status {
            revision: self.inner.shared.revision.load(Ordering::SeqCst),
            oldest_revision: self.inner.shared.oldest_event.load(Ordering::SeqCst),
            engine: self.inner.storage.name().to_string(),
            fsync: self.inner.config.fsync.to_string(),
        }
    }

    /// Reclaims every key expired by now (the background reaper does this every
    /// `reap_interval`); returns how many were found.
    ///
    /// # Errors
    ///
    /// A storage failure.
    pub async fn reap_expired(&self) -> Result<usize> {
        let keys = self
            .inner
            .storage
            .expired(self.inner.clock.now_ms(), REAP_PAGE)?;
        let n = keys.len();
        if n > 0 {
            self.inner
                .ops
                .send(Op::Reap { keys })
                .await
                .map_err(|_| KvError::Closed)?;
        }
        self.sync_now().await?;
        Ok(n)
    }

    /// Makes every acknowledged write durable (whatever its durability), then returns.
    ///
    /// # Errors
    ///
    /// A storage failure; [`KvError::Closed`].
    pub async fn sync_now(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.submit(Op::Sync { reply: Some(reply) }, rx).await
    }

    /// Ends every watch stream (they return `None`), for a node that is shutting down:
    /// a server drains its calls, and a watch never finishes by itself.
    pub fn end_watches(&self) {
        self.inner.bus.close();
    }

    /// Syncs everything acknowledged, stops the writer and ends every watch. Other
    /// clones then get [`KvError::Closed`] for writes.
    ///
    /// # Errors
    ///
    /// The final sync failed.
    pub async fn close(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let synced = match self.submit(Op::Close { reply }, rx).await {
            Err(KvError::Closed) => Ok(()), // closed before
            other => other,
        };
        self.inner.bus.close();
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        synced
    }
}

fn spawn_reaper(inner: Weak<Inner>) {
    let every = match inner.upgrade() {
        Some(i) => i.config.reap_interval.max(Duration::from_millis(1)),
        None => return,
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            if inner.ops.is_closed() {
                return;
            }
            let now = inner.clock.now_ms();
            match inner.storage.expired(now, REAP_PAGE) {
                Ok(keys) if !keys.is_empty() => {
                    if inner.ops.send(Op::Reap { keys }).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reaper cannot read expired keys"),
            }
        }
    });
}

fn spawn_syncer(inner: Weak<Inner>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            if inner.ops.send(Op::Sync { reply: None }).await.is_err() {
                return;
            }
        }
    });
}
