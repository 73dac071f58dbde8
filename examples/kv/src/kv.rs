//! [`Kv`]: one node's store, embedded. Reads go straight to the engine; every change
//! goes through one writer task that applies a group of operations in order and
//! commits them as one batch (group commit), then fans the batch's events out to
//! watchers through an mw-pubsub [`Bus`].
//!
//! Invariants:
//! - Revisions increase by one per change, in commit order; a key's [`Version`] is the
//!   revision of its last change. Only the writer assigns them, so compare-and-set and
//!   `incr` are atomic without locks.
//! - A write is acknowledged only after the batch holding it is committed (and, for a
//!   `Sync` write under `--fsync always`, fsynced). A failed commit fails every write in
//!   it and changes nothing.
//! - Events are published after their batch is committed, so a watcher that subscribes
//!   to the bus first and then reads the retained history misses nothing; it skips
//!   revisions it has already seen.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use mw::pubsub::{Bus, SlowConsumerPolicy, SubscribeOptions, Subscription};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, FsyncPolicy};
use crate::error::{KvError, Result};
use crate::redb_engine::RedbStorage;
use crate::storage::{Batch, MemoryStorage, Storage, Write};
use crate::types::{
    DeleteOptions, DeleteResult, Durability, Entry, Event, EventKind, PutOptions, Status, Version,
    Versioned, WriteResult,
};

/// The bus topic a node publishes each committed batch of events on.
const EVENTS_TOPIC: &str = "kv.events";
/// Retained events read per storage call when a watcher catches up.
const HISTORY_PAGE: usize = 256;
/// Entries read per storage call by a scan.
const SCAN_PAGE: usize = 256;
/// Expired keys reclaimed per reaper pass.
const REAP_PAGE: usize = 1024;
/// Most events compacted per batch, so one commit stays short.
const COMPACT_STEP: u64 = 4096;
/// Batches buffered per watcher on the bus before it falls back to the history.
const WATCH_BUFFER: usize = 1024;

/// Wall-clock milliseconds, anchored to tokio's clock when the node opens: TTLs are
/// stored as wall-clock times (they must mean the same after a restart), and tests can
/// move time with `tokio::time::pause`/`advance`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    base_ms: u64,
    base: tokio::time::Instant,
}

impl Clock {
    fn new() -> Clock {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| millis(d));
        Clock {
            base_ms: wall,
            base: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base_ms.saturating_add(millis(self.base.elapsed()))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A change waiting for the writer.
enum Op {
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
    /// Reclaim these keys if they are still expired.
    Reap { keys: Vec<Bytes> },
    /// Make every earlier commit durable.
    Sync {
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// Sync, then stop: later operations get [`KvError::Closed`].
    Close { reply: oneshot::Sender<Result<()>> },
}

/// Committed state shared by the writer and readers.
#[derive(Debug)]
struct Shared {
    revision: AtomicU64,
    oldest_event: AtomicU64,
    watchers: AtomicUsize,
}

#[derive(Debug)]
struct Inner {
    storage: Arc<dyn Storage>,
    ops: mpsc::Sender<Op>,
    shared: Arc<Shared>,
    bus: Bus,
    clock: Clock,
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
    inner: Arc<Inner>,
}

impl Kv {
    /// Opens (or creates) the on-disk store in `dir` (redb). Must be called inside a
    /// tokio runtime.
    ///
    /// # Errors
    ///
    /// [`KvError::DataDir`] for a foreign, damaged, locked or other-format directory:
    /// it is refused, never reset.
    pub async fn open(dir: impl AsRef<Path>, config: Config) -> Result<Kv> {
        let dir = dir.as_ref().to_path_buf();
        let storage = tokio::task::spawn_blocking(move || RedbStorage::open(&dir))
            .await
            .map_err(|e| KvError::storage("open", e))??;
        Kv::with_storage(Arc::new(storage), config)
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

    async fn submit<T>(&self, op: Op, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
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
        let (key, value) = (key.into(), value.into());
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
        self.submit(
            Op::Put {
                key,
                value,
                options,
                reply,
            },
            rx,
        )
        .await
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
        let key = key.into();
        self.check_key(&key)?;
        let (reply, rx) = oneshot::channel();
        self.submit(
            Op::Delete {
                key,
                options,
                reply,
            },
            rx,
        )
        .await
    }

    /// Adds `delta` to the decimal integer stored under `key` (a missing key counts as
    /// 0) and returns the new value, stored as decimal text. Durable as a `Sync` put.
    ///
    /// # Errors
    ///
    /// [`KvError::NotAnInteger`], [`KvError::Overflow`], an invalid key, a storage failure.
    pub async fn incr(&self, key: impl Into<Bytes>, delta: i64) -> Result<i64> {
        let key = key.into();
        self.check_key(&key)?;
        let (reply, rx) = oneshot::channel();
        self.submit(Op::Incr { key, delta, reply }, rx).await
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
    ) -> Result<impl Stream<Item = Result<Entry>> + Send + 'static> {
        let max = self.inner.config.limits.max_scan;
        if limit > max {
            return Err(KvError::ScanTooLarge {
                requested: limit,
                limit: max,
            });
        }
        let state = ScanState {
            kv: self.clone(),
            prefix: prefix.into(),
            after: start_after,
            left: limit as usize,
            page: VecDeque::new(),
            done: false,
        };
        Ok(futures::stream::unfold(state, ScanState::next))
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
    ) -> impl Stream<Item = Result<Event>> + Send + 'static {
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
            kv: self.clone(),
            prefix: prefix.into(),
            sub: sub.ok(),
            next,
            catching_up: true,
            ready: VecDeque::new(),
            done: false,
            _count: WatcherCount(inner.shared.clone()),
        };
        futures::stream::unfold(state, WatchState::next)
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

fn live(v: &Versioned, now: u64) -> bool {
    v.expires_at_ms.is_none_or(|at| at > now)
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

/// Decrements the watcher count when a watch stream is dropped.
struct WatcherCount(Arc<Shared>);

impl Drop for WatcherCount {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

struct ScanState {
    kv: Kv,
    prefix: Bytes,
    after: Option<Bytes>,
    left: usize,
    page: VecDeque<Entry>,
    done: bool,
}

impl ScanState {
    async fn next(mut self) -> Option<(Result<Entry>, ScanState)> {
        loop {
            if self.left == 0 {
                return None;
            }
            if let Some(e) = self.page.pop_front() {
                self.left -= 1;
                return Some((Ok(e), self));
            }
            if self.done {
                return None;
            }
            let storage = self.kv.inner.storage.clone();
            let page = storage.scan(&self.prefix, self.after.as_deref(), SCAN_PAGE);
            match page {
                Err(e) => {
                    self.done = true;
                    self.left = 0;
                    return Some((Err(e), self));
                }
                Ok(entries) => {
                    if entries.len() < SCAN_PAGE {
                        self.done = true;
                    }
                    self.after = entries.last().map(|e| e.key.clone());
                    let now = self.kv.inner.clock.now_ms();
                    self.page
                        .extend(entries.into_iter().filter(|e| live(&e.value, now)));
                }
            }
        }
    }
}

struct WatchState {
    kv: Kv,
    prefix: Bytes,
    sub: Option<Subscription>,
    /// The next revision this watcher has not looked at.
    next: u64,
    /// Reading retained history (at the start, and after the bus dropped batches).
    catching_up: bool,
    ready: VecDeque<Event>,
    done: bool,
    _count: WatcherCount,
}

impl WatchState {
    fn take(&mut self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            if e.revision < self.next {
                continue;
            }
            self.next = e.revision + 1;
            if e.key.starts_with(&self.prefix) {
                self.ready.push_back(e);
            }
        }
    }

    async fn next(mut self) -> Option<(Result<Event>, WatchState)> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some((Ok(e), self));
            }
            if self.done {
                return None;
            }
            let inner = self.kv.inner.clone();
            if self.catching_up {
                let oldest = inner.shared.oldest_event.load(Ordering::SeqCst);
                if self.next < oldest {
                    self.done = true;
                    let err = KvError::Compacted {
                        requested: self.next,
                        oldest,
                    };
                    return Some((Err(err), self));
                }
                let committed = inner.shared.revision.load(Ordering::SeqCst);
                if self.next > committed {
                    self.catching_up = false;
                    continue;
                }
                match inner.storage.events(self.next, HISTORY_PAGE) {
                    Ok(events) => {
                        let before = self.next;
                        self.take(events);
                        if self.next == before {
                            // Nothing retained at `next` although it is committed: it
                            // was compacted between the check and the read.
                            let oldest = inner.shared.oldest_event.load(Ordering::SeqCst);
                            self.done = true;
                            let err = KvError::Compacted {
                                requested: self.next,
                                oldest,
                            };
                            return Some((Err(err), self));
                        }
                    }
                    Err(e) => {
                        self.done = true;
                        return Some((Err(e), self));
                    }
                }
                continue;
            }
            let Some(sub) = self.sub.as_mut() else {
                return None;
            };
            let event = match sub.recv().await {
                Ok(ev) => ev,
                Err(_) => return None, // the store closed
            };
            match postcard::from_bytes::<Vec<Event>>(&event.payload) {
                Ok(events) => {
                    if event.dropped_before > 0
                        || events.first().is_some_and(|e| e.revision > self.next)
                    {
                        // The bus dropped batches this watcher was too slow for. They
                        // are committed, so the retained history has them: re-read.
                        self.catching_up = true;
                        continue;
                    }
                    self.take(events);
                }
                Err(e) => {
                    self.done = true;
                    return Some((Err(KvError::storage("decode event batch", e)), self));
                }
            }
        }
    }
}

/// Answers an operation that arrived after a close.
fn refuse(op: Op) {
    match op {
        Op::Put { reply, .. } => drop(reply.send(Err(KvError::Closed))),
        Op::Delete { reply, .. } => drop(reply.send(Err(KvError::Closed))),
        Op::Incr { reply, .. } => drop(reply.send(Err(KvError::Closed))),
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
            Pending::Sync(tx) => {
                let _ = tx.send(outcome.clone().map(|_| ()));
            }
        }
    }
}

/// The single writer: owns revision assignment and group commit.
struct Writer {
    storage: Arc<dyn Storage>,
    shared: Arc<Shared>,
    bus: Bus,
    clock: Clock,
    config: Config,
    /// Something was committed without an fsync since the last one.
    dirty: bool,
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
    async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
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

    /// The live value of `key`; an expired one is reclaimed first (with its `Expire`
    /// event), so watchers see the expiry before what replaces it.
    fn current(&self, b: &mut Building, key: &Bytes, now: u64) -> Result<Option<Versioned>> {
        let raw = self.raw(b, key)?;
        match raw {
            Some(v) if !live(&v, now) => {
                self.remove(b, key, &v, EventKind::Expire);
                Ok(None)
            }
            other => Ok(other),
        }
    }

    fn remove(&self, b: &mut Building, key: &Bytes, old: &Versioned, kind: EventKind) -> u64 {
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
        b.revision
    }

    fn store(
        &self,
        b: &mut Building,
        key: &Bytes,
        old: Option<&Versioned>,
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

    fn check_version(expected: Option<Version>, current: Option<&Versioned>) -> Result<()> {
        match expected {
            None => Ok(()),
            Some(v) if current.map_or(Version::ABSENT, |c| c.version) == v => Ok(()),
            Some(v) => Err(KvError::VersionConflict {
                expected: v,
                current: current.map(|c| c.version),
            }),
        }
    }

    fn apply_one(&self, b: &mut Building, op: Op, now: u64) {
        match op {
            Op::Put {
                key,
                value,
                options,
                reply,
            } => {
                let r = self.current(b, &key, now).and_then(|cur| {
                    Self::check_version(options.if_version, cur.as_ref())?;
                    let expires = options.ttl.map(|t| now.saturating_add(millis(t).max(1)));
                    Ok(self.store(b, &key, cur.as_ref(), value, expires))
                });
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
                let r = self.current(b, &key, now).and_then(|cur| {
                    Self::check_version(options.if_version, cur.as_ref())?;
                    Ok(match cur {
                        Some(old) => {
                            let revision = self.remove(b, &key, &old, EventKind::Delete);
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
                });
                if r.is_ok() && options.durability == Durability::Sync {
                    b.wants_sync = true;
                }
                b.pending.push(Pending::Delete(reply, r));
            }
            Op::Incr { key, delta, reply } => {
                let r = self.current(b, &key, now).and_then(|cur| {
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
                    self.store(b, &key, cur.as_ref(), text, expires);
                    Ok(new)
                });
                if r.is_ok() {
                    b.wants_sync = true;
                }
                b.pending.push(Pending::Incr(reply, r));
            }
            Op::Reap { keys } => {
                for key in keys {
                    if let Err(e) = self.current(b, &key, now) {
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
}
