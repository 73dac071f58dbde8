//! [`Space`]: the tuple space itself, embedded in the process (the broker serves one).
//!
//! # Life of a tuple
//!
//! ```text
//!  out ──▶ reserved ──(record durable)──▶ visible ──rd──▶ (copied; stays visible)
//!                                            │
//!                                    in / inp│ (or a blocked in, first in arrival order)
//!                                            ▼
//!                                          held ──commit (TAKE record durable)──▶ gone
//!                                            │
//!                    taker gone, hold expired│ (or the TAKE could not be written)
//!                                            ▼
//!                                         visible again, offered to waiters first
//! ```
//!
//! - A written tuple becomes visible only once its record is durable (as the fsync policy
//!   says), so nobody reads a tuple that a crash could undo.
//! - Taking is two steps. The match is *held* for one taker (invisible to everyone else);
//!   then the take is *committed* by logging it. An embedded `in` does both at once; a
//!   remote `in` commits only when the taker confirms it received the tuple (see
//!   [`remote`](crate::remote)). A hold whose taker disappears — its future dropped, its
//!   connection closed, its hold timed out — puts the tuple back, so a tuple is never lost
//!   to a taker that did not get it, and never given to two.
//! - Cancel safety: dropping an `in` future at any point never loses the tuple: before the
//!   commit it is put back; after the commit was queued, the writer finds nobody to hand
//!   it to and writes it back (a new `OUT` record with the same id).
//! - Blocked callers are served in arrival order (see `waiters`); an `in` never overtakes
//!   an earlier blocked `in` whose pattern matches the same tuple.
//! - Leases: a tuple written with [`Space::out_leased`] disappears when its lease runs out
//!   (expired tuples are never matched, and are dropped at the next operation).
//!
//! Locking: one `std::sync::Mutex` over the whole state, held for index work only (no I/O,
//! no awaits), as in mini-redis `db.rs`; log records are queued after it is released.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use mw_pubsub::{Bus, SubscribeOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::Config;
use crate::error::{Result, SpaceError};
use crate::index::{Entry, Index};
use crate::log::format::{self, Recovered};
use crate::log::{Append, Done, Effect, Log, LogStats};
use crate::notify::{self, Notifications};
use crate::pattern::Pattern;
use crate::value::{Tuple, TupleId};
use crate::waiters::{Delivery, Kind, Waiter, Waiters};
use mw_core::time::{millis, unix_ms};

/// How long `rd` / `in` wait for a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wait {
    /// Not at all (`rdp` / `inp`).
    No,
    /// Up to this long; `Ok(None)` after.
    For(Duration),
    /// Until a match arrives (or the space closes).
    Forever,
}

impl From<Duration> for Wait {
    fn from(d: Duration) -> Wait {
        Wait::For(d)
    }
}

/// What a space holds, from [`Space::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceStats {
    /// Tuples in the space: visible, held for a taker, or being written.
    pub tuples: u64,
    /// Tuples `rd` / `in` can match now.
    pub visible: u64,
    /// Tuples held for a taker whose take is not committed yet.
    pub held: u64,
    /// Callers blocked in `rd` / `in`.
    pub waiters: u64,
    /// The tuples' sizes added up.
    pub bytes: u64,
    /// The log's counters (`None` for a space in memory).
    pub log: Option<LogStats>,
}

/// A tuple space: `out` tuples, `rd` / `in` them by pattern, `notify` on writes.
///
/// Cheap to clone; clones share the space. Needs a tokio runtime.
///
/// ```
/// use std::time::Duration;
/// use mw_space::{pattern, tuple, Field, Space, Type};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> mw_space::Result<()> {
/// let space = Space::default();                            // in memory
/// space.out(tuple!("task", 1)).await?;
/// let p = pattern!("task", Type::Int);
/// assert_eq!(space.rdp(&p).await?, Some(tuple!("task", 1))); // a copy; still there
/// assert_eq!(space.inp(&p).await?, Some(tuple!("task", 1))); // taken
/// assert_eq!(space.in_(&p, Duration::from_millis(10)).await?, None); // timed out
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Space {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Space")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for Space {
    /// A space in memory with the default [`Config`] and a bus of its own.
    fn default() -> Space {
        Space::new(Config::default(), Bus::default())
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    config: Config,
    log: Option<Log>,
    bus: Bus,
    /// [`Config::max_pending_writes`].
    writes: Arc<Semaphore>,
}

struct Held {
    entry: Entry,
    /// Told when the take is committed (a remote taker's stream then ends).
    settled: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct State {
    index: Index,
    waiters: Waiters,
    held: HashMap<u64, Held>,
    /// Lease ends of visible (and held) tuples, soonest first.
    expiries: BTreeSet<(Instant, TupleId)>,
    /// Tuples counted against the limits: visible, held, being written or taken.
    tuples: usize,
    bytes: usize,
    next_id: u64,
    next_hold: u64,
    closed: bool,
}

impl State {
    /// Drops visible tuples whose lease has run out.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            if let Some(e) = self.index.remove(id) {
                self.forget(e.size);
            }
        }
    }

    fn forget(&mut self, size: usize) {
        self.tuples -= 1;
        self.bytes -= size;
    }

    fn reserve(&mut self, size: usize, config: &Config) -> Result<TupleId> {
        if self.tuples >= config.max_tuples {
            return Err(SpaceError::SpaceFull {
                limit: config.max_tuples,
            });
        }
        if self.bytes + size > config.max_bytes {
            return Err(SpaceError::SpaceBytesFull {
                limit: config.max_bytes,
            });
        }
        self.tuples += 1;
        self.bytes += size;
        let id = TupleId(self.next_id);
        self.next_id += 1;
        Ok(id)
    }

    fn hold(&mut self, entry: Entry) -> (u64, Tuple) {
        let id = self.next_hold;
        self.next_hold += 1;
        let tuple = entry.tuple.clone();
        self.held.insert(
            id,
            Held {
                entry,
                settled: None,
            },
        );
        (id, tuple)
    }

    /// Offers a tuple to the waiters in arrival order; returns it unless an `in` took it.
    fn offer(&mut self, entry: Entry) -> Option<Entry> {
        for seq in self.waiters.matching(&entry.tuple) {
            let Some(w) = self.waiters.remove(seq) else {
                continue;
            };
            if w.tx.is_closed() {
                continue;
            }
            match w.kind {
                Kind::Read => {
                    let _ = w.tx.send(Delivery::Read(entry.tuple.clone()));
                }
                Kind::Take => {
                    let hold = self.next_hold;
                    if w.tx.send(Delivery::Held(hold, entry.tuple.clone())).is_ok() {
                        self.next_hold += 1;
                        self.held.insert(
                            hold,
                            Held {
                                entry,
                                settled: None,
                            },
                        );
                        return None;
                    }
                }
            }
        }
        Some(entry)
    }

    /// Makes a durable (or returned) tuple matchable: to the first waiters, else the index.
    fn make_visible(&mut self, entry: Entry, now: Instant) {
        if entry.expired(now) {
            self.forget(entry.size);
            return;
        }
        if let Some(e) = self.offer(entry) {
            if let Some(at) = e.expires {
                self.expiries.insert((at, e.id));
            }
            self.index.insert(e);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Held only for index work that does not panic midway; a poisoned state is whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn write_permit(&self) -> Result<Option<OwnedSemaphorePermit>> {
        if self.log.is_none() {
            return Ok(None);
        }
        self.writes
            .clone()
            .acquire_owned()
            .await
            .map(Some)
            .map_err(|_| SpaceError::Closed)
    }

    /// Logs a record (or, in memory, completes at once). Call without the state lock.
    fn append(
        &self,
        frame: impl FnOnce() -> Vec<u8>,
        effect: Effect,
        done: Done,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        match &self.log {
            Some(log) => log.append(Append {
                frame: frame(),
                effect,
                done,
                permit,
            }),
            None => done(Ok(())),
        }
    }

    /// Completion of an `OUT`: the tuple becomes visible and is announced.
    fn written(
        self: &Arc<Self>,
        entry: Entry,
        result: Result<()>,
        tx: oneshot::Sender<Result<TupleId>>,
    ) {
        if let Err(e) = result {
            self.lock().forget(entry.size);
            let _ = tx.send(Err(e));
            return;
        }
        let id = entry.id;
        let topic = notify::topic(&entry.tuple);
        let payload = Bytes::from(entry.tuple.to_json());
        self.lock().make_visible(entry, Instant::now());
        // Notifications are transient: a bus without subscribers (or a closed one) is fine.
        let _ = self.bus.publish(topic.as_str(), payload);
        let _ = tx.send(Ok(id));
    }

    /// Ends a hold: the take is logged, then the tuple handed over.
    fn commit(
        self: &Arc<Self>,
        hold: u64,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<oneshot::Receiver<Result<Tuple>>> {
        let entry = {
            let mut st = self.lock();
            let held = st.held.remove(&hold).ok_or(SpaceError::UnknownHold(hold))?;
            if let Some(settled) = held.settled {
                let _ = settled.send(());
            }
            held.entry
        };
        let (tx, rx) = oneshot::channel();
        let id = entry.id.0;
        let shared = self.clone();
        let done: Done = Box::new(move |r| shared.taken(entry, r, tx));
        self.append(|| format::take_frame(id), Effect::Take { id }, done, permit);
        Ok(rx)
    }

    /// Completion of a `TAKE`.
    fn taken(
        self: &Arc<Self>,
        entry: Entry,
        result: Result<()>,
        tx: oneshot::Sender<Result<Tuple>>,
    ) {
        let Entry {
            id,
            tuple,
            expires,
            expires_ms,
            size,
        } = entry;
        if let Err(e) = result {
            // Not logged: the tuple is still live on disk; make it matchable again.
            let entry = Entry {
                id,
                tuple,
                expires,
                expires_ms,
                size,
            };
            self.lock().make_visible(entry, Instant::now());
            let _ = tx.send(Err(e));
            return;
        }
        match tx.send(Ok(tuple)) {
            Ok(()) => self.lock().forget(size),
            // The taker is gone (its future was dropped): undo the take.
            Err(Ok(tuple)) => self.restore(Entry {
                id,
                tuple,
                expires,
                expires_ms,
                size,
            }),
            Err(Err(_)) => {}
        }
    }

    /// Writes a taken tuple back (same id and lease) and makes it visible again.
    fn restore(self: &Arc<Self>, entry: Entry) {
        let shared = self.clone();
        let frame_entry = (entry.id.0, entry.expires_ms, entry.tuple.clone());
        let effect = Effect::Out {
            id: entry.id.0,
            expires_ms: entry.expires_ms,
        };
        let done: Done = Box::new(move |r| {
            if let Err(e) = r {
                tracing::error!(error = %e, id = entry.id.0, "cannot log a returned tuple; it is back in memory but a restart would lose it");
            }
            shared.lock().make_visible(entry, Instant::now());
        });
        // No permit: bounded by the tuples held for takers.
        self.append(
            move || format::out_frame(frame_entry.0, frame_entry.1, &frame_entry.2),
            effect,
            done,
            None,
        );
    }

    fn release(&self, hold: u64) {
        let mut st = self.lock();
        if let Some(h) = st.held.remove(&hold) {
            st.make_visible(h.entry, Instant::now());
        }
    }
}

/// A tuple held for one taker until the take is committed or the hold dropped.
#[must_use = "dropping a Hold puts the tuple back"]
pub(crate) struct Hold {
    shared: Arc<Shared>,
    id: u64,
    tuple: Tuple,
    armed: bool,
}

impl Hold {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn tuple(&self) -> &Tuple {
        &self.tuple
    }

    /// Completes when the take is committed (by [`Space::confirm`]).
    pub(crate) fn settled(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Some(h) = self.shared.lock().held.get_mut(&self.id) {
            h.settled = Some(tx);
        }
        rx
    }

    /// Commits the take and returns the tuple.
    async fn commit(mut self) -> Result<Tuple> {
        // While waiting for a slot the hold is still armed: dropped here, it puts back.
        let permit = self.shared.write_permit().await?;
        self.armed = false;
        let rx = self.shared.commit(self.id, permit)?;
        rx.await.unwrap_or(Err(SpaceError::Closed))
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.armed {
            self.shared.release(self.id);
        }
    }
}

/// Removes a waiter that stopped waiting and returns what it may have been sent meanwhile.
struct WaitGuard<'a> {
    shared: &'a Arc<Shared>,
    seq: u64,
    rx: Option<oneshot::Receiver<Delivery>>,
}

impl WaitGuard<'_> {
    /// Stops waiting; returns a delivery that arrived before the waiter was removed.
    fn finish(&mut self) -> Option<Delivery> {
        self.shared.lock().waiters.remove(self.seq);
        let mut rx = self.rx.take()?;
        rx.close();
        rx.try_recv().ok()
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if let Some(Delivery::Held(hold, _)) = self.finish() {
            self.shared.release(hold);
        }
    }
}

impl Space {
    /// A space in memory (nothing survives the process).
    pub fn new(config: Config, bus: Bus) -> Space {
        Space::from_parts(config, bus, None, Recovered::default())
    }

    /// Opens (creating if needed) a persistent space in `dir`: the tuples written before
    /// are back (minus those taken or expired), and every write is logged there as
    /// [`Config::fsync`] says. `bus` carries the [`notify`](Space::notify) events.
    ///
    /// # Errors
    /// [`SpaceError::Locked`] if another process has `dir` open;
    /// [`SpaceError::Corrupt`] for a damaged log (file and offset named);
    /// [`SpaceError::Storage`] for I/O errors.
    pub async fn open(dir: impl AsRef<Path>, config: Config, bus: Bus) -> Result<Space> {
        let dir = dir.as_ref().to_path_buf();
        let (policy, slack) = (config.fsync, config.compact_slack);
        let (log, recovered) = tokio::task::spawn_blocking(move || Log::open(&dir, policy, slack))
            .await
            .map_err(|e| SpaceError::Storage(format!("opening the log panicked: {e}")))??;
        Ok(Space::from_parts(config, bus, Some(log), recovered))
    }

    fn from_parts(config: Config, bus: Bus, log: Option<Log>, recovered: Recovered) -> Space {
        let now = Instant::now();
        let now_ms = unix_ms();
        let mut state = State {
            next_id: recovered.max_id + 1,
            ..State::default()
        };
        for (id, (loc, tuple)) in recovered.live {
            // A lease too long for the clock (`checked_add` fails) never runs out.
            let expires = (loc.expires_ms != 0)
                .then(|| {
                    now.checked_add(Duration::from_millis(loc.expires_ms.saturating_sub(now_ms)))
                })
                .flatten();
            let size = tuple.size();
            state.tuples += 1;
            state.bytes += size;
            if let Some(at) = expires {
                state.expiries.insert((at, TupleId(id)));
            }
            state.index.insert(Entry {
                id: TupleId(id),
                tuple,
                expires,
                expires_ms: loc.expires_ms,
                size,
            });
        }
        let writes = Arc::new(Semaphore::new(config.max_pending_writes.max(1)));
        Space {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                config,
                log,
                bus,
                writes,
            }),
        }
    }

    /// The limits and settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The bus [`notify`](Space::notify) events go to.
    pub fn bus(&self) -> &Bus {
        &self.shared.bus
    }

    /// Writes `tuple` (Linda's `out`, JavaSpaces' `write`); returns once it is durable and
    /// visible (a blocked `rd` / `in` waiting for it has it by then).
    ///
    /// # Errors
    /// A tuple over the limits ([`SpaceError::TooManyFields`], [`SpaceError::TooLarge`],
    /// [`SpaceError::NonFiniteFloat`]), a full space ([`SpaceError::SpaceFull`],
    /// [`SpaceError::SpaceBytesFull`]), a failed write ([`SpaceError::Storage`]),
    /// [`SpaceError::Closed`].
    ///
    /// # Cancel safety
    /// Once the record is queued, the tuple is written even if this future is dropped.
    pub async fn out(&self, tuple: Tuple) -> Result<TupleId> {
        self.write(tuple, None).await
    }

    /// Like [`out`](Space::out), but the tuple disappears once `lease` has passed
    /// (JavaSpaces' lease), whether or not anyone read it.
    ///
    /// # Errors
    /// As [`out`](Space::out), and [`SpaceError::ZeroLease`].
    pub async fn out_leased(&self, tuple: Tuple, lease: Duration) -> Result<TupleId> {
        if lease.is_zero() {
            return Err(SpaceError::ZeroLease);
        }
        self.write(tuple, Some(lease)).await
    }

    async fn write(&self, tuple: Tuple, lease: Option<Duration>) -> Result<TupleId> {
        let config = &self.shared.config;
        let size = config.check_tuple(&tuple)?;
        let permit = self.shared.write_permit().await?;
        let now = Instant::now();
        let (expires, expires_ms) = match lease {
            None => (None, 0),
            Some(d) => (
                now.checked_add(d),
                unix_ms().saturating_add(millis(d)).max(1),
            ),
        };
        let id = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(SpaceError::Closed);
            }
            st.expire(now);
            st.reserve(size, config)?
        };
        let entry = Entry {
            id,
            tuple,
            expires,
            expires_ms,
            size,
        };
        let frame = self
            .shared
            .log
            .as_ref()
            .map(|_| format::out_frame(id.0, expires_ms, &entry.tuple));
        let (tx, rx) = oneshot::channel();
        let shared = self.shared.clone();
        let done: Done = Box::new(move |r| shared.written(entry, r, tx));
        let effect = Effect::Out {
            id: id.0,
            expires_ms,
        };
        self.shared
            .append(|| frame.unwrap_or_default(), effect, done, permit);
        rx.await.unwrap_or(Err(SpaceError::Closed))
    }

    /// Returns a copy of a tuple matching `pattern` (Linda's `rd`), waiting as `wait` says
    /// for one to be written; `Ok(None)` if none came in time. The oldest match is chosen.
    ///
    /// # Errors
    /// A pattern over the limits, [`SpaceError::TooManyWaiters`], [`SpaceError::Closed`].
    ///
    /// # Cancel safety
    /// Safe: dropping the future stops waiting.
    pub async fn rd(&self, pattern: &Pattern, wait: impl Into<Wait>) -> Result<Option<Tuple>> {
        Ok(
            match self.wait_for(pattern, Kind::Read, wait.into()).await? {
                Some(Delivery::Read(t)) => Some(t),
                Some(Delivery::Held(hold, t)) => {
                    // Not produced for readers; handled anyway rather than trusted.
                    self.shared.release(hold);
                    Some(t)
                }
                None => None,
            },
        )
    }

    /// [`rd`](Space::rd) without waiting (Linda's `rdp`).
    ///
    /// # Errors
    /// As [`rd`](Space::rd).
    pub async fn rdp(&self, pattern: &Pattern) -> Result<Option<Tuple>> {
        self.rd(pattern, Wait::No).await
    }

    /// Removes and returns a tuple matching `pattern` (Linda's `in`), waiting as `wait`
    /// says; `Ok(None)` if none came in time. Each tuple is returned by exactly one `in`;
    /// blocked callers are served in arrival order.
    ///
    /// # Errors
    /// As [`rd`](Space::rd), and [`SpaceError::Storage`] if the take cannot be logged
    /// (the tuple then stays in the space).
    ///
    /// # Cancel safety
    /// Dropping the future never loses a tuple: a match not yet returned goes back into
    /// the space.
    pub async fn in_(&self, pattern: &Pattern, wait: impl Into<Wait>) -> Result<Option<Tuple>> {
        match self.hold(pattern, wait.into()).await? {
            Some(hold) => hold.commit().await.map(Some),
            None => Ok(None),
        }
    }

    /// [`in_`](Space::in_) without waiting (Linda's `inp`).
    ///
    /// # Errors
    /// As [`in_`](Space::in_).
    pub async fn inp(&self, pattern: &Pattern) -> Result<Option<Tuple>> {
        self.in_(pattern, Wait::No).await
    }

    /// Subscribes to the tuples written from now on that match `pattern` (JavaSpaces'
    /// `notify`), through the space's [`Bus`] (see [`notify`](crate::notify)).
    ///
    /// # Errors
    /// A pattern over the limits; [`SpaceError::Notify`] if the bus refuses.
    pub fn notify(&self, pattern: &Pattern, options: SubscribeOptions) -> Result<Notifications> {
        self.shared.config.check_pattern(pattern)?;
        let sub = self
            .shared
            .bus
            .subscribe(notify::topic_pattern(pattern).as_str(), options)?;
        Ok(Notifications::local(sub, pattern.clone()))
    }

    /// Counts of what the space holds.
    pub fn stats(&self) -> SpaceStats {
        let mut st = self.shared.lock();
        st.expire(Instant::now());
        SpaceStats {
            tuples: st.tuples as u64,
            visible: st.index.len() as u64,
            held: st.held.len() as u64,
            waiters: st.waiters.len() as u64,
            bytes: st.bytes as u64,
            log: self.shared.log.as_ref().map(Log::stats),
        }
    }

    /// Closes the space: blocked callers get [`SpaceError::Closed`], later calls too; the
    /// log is synced and its directory unlocked.
    ///
    /// # Errors
    /// [`SpaceError::Storage`] if the final sync fails.
    pub async fn close(&self) -> Result<()> {
        {
            let mut st = self.shared.lock();
            st.closed = true;
            // Dropping their senders wakes every blocked caller with `Closed`.
            st.waiters.clear();
        }
        match &self.shared.log {
            Some(log) => log.close().await,
            None => Ok(()),
        }
    }

    /// Finds or waits for a match; for a take, the match comes back held.
    async fn wait_for(
        &self,
        pattern: &Pattern,
        kind: Kind,
        wait: Wait,
    ) -> Result<Option<Delivery>> {
        self.shared.config.check_pattern(pattern)?;
        let now = Instant::now();
        let (seq, rx, deadline) = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(SpaceError::Closed);
            }
            st.expire(now);
            if let Some(id) = st.index.find(pattern, now) {
                return Ok(Some(match kind {
                    Kind::Read => Delivery::Read(
                        st.index
                            .get(id)
                            .map(|e| e.tuple.clone())
                            .unwrap_or_default(),
                    ),
                    Kind::Take => match st.index.remove(id) {
                        Some(e) => {
                            let (hold, t) = st.hold(e);
                            Delivery::Held(hold, t)
                        }
                        None => return Ok(None),
                    },
                }));
            }
            let deadline = match wait {
                Wait::No => return Ok(None),
                Wait::For(d) if d.is_zero() => return Ok(None),
                Wait::For(d) => now.checked_add(d),
                Wait::Forever => None,
            };
            let limit = self.shared.config.max_waiters;
            if st.waiters.len() >= limit {
                return Err(SpaceError::TooManyWaiters { limit });
            }
            let (tx, rx) = oneshot::channel();
            let seq = st.waiters.add(Waiter {
                pattern: pattern.clone(),
                kind,
                tx,
            });
            (seq, rx, deadline)
        };
        let mut guard = WaitGuard {
            shared: &self.shared,
            seq,
            rx: Some(rx),
        };
        let Some(rx) = guard.rx.as_mut() else {
            return Ok(None);
        };
        let got = match deadline {
            None => Some(rx.await),
            Some(at) => tokio::time::timeout_at(at, rx).await.ok(),
        };
        match got {
            Some(Ok(delivery)) => {
                guard.rx = None;
                Ok(Some(delivery))
            }
            // The sender was dropped: the space closed.
            Some(Err(_)) => Err(SpaceError::Closed),
            // Timed out; a match that raced in is still returned.
            None => Ok(guard.finish()),
        }
    }

    /// Finds or waits for a match and holds it for the caller (the first step of a take).
    pub(crate) async fn hold(&self, pattern: &Pattern, wait: Wait) -> Result<Option<Hold>> {
        Ok(match self.wait_for(pattern, Kind::Take, wait).await? {
            Some(Delivery::Held(id, tuple)) => Some(Hold {
                shared: self.shared.clone(),
                id,
                tuple,
                armed: true,
            }),
            Some(Delivery::Read(_)) | None => None,
        })
    }

    /// Commits the take of hold `hold` (the second step of a remote take).
    ///
    /// # Errors
    /// [`SpaceError::UnknownHold`] if the hold expired or never existed (the tuple is then
    /// back in the space); [`SpaceError::Storage`] if the take cannot be logged.
    pub(crate) async fn confirm(&self, hold: u64) -> Result<Tuple> {
        let permit = self.shared.write_permit().await?;
        let rx = self.shared.commit(hold, permit)?;
        rx.await.unwrap_or(Err(SpaceError::Closed))
    }
}
