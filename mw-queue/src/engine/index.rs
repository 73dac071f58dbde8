//! The in-memory index: what the queue manager keeps per message, and every
//! state transition (send, deliver, ack, nack, reject, timeout, redrive,
//! replay). Nothing here does I/O; records for the log are queued in an
//! outbox that the caller hands to the log while still holding the state lock,
//! so log order always matches the order of state changes.
//!
//! # Memory per message
//!
//! | where the message is | kept in memory | bytes |
//! |---|---|---|
//! | ready, never delivered, in the head (the first [`Config::ready_head`](crate::Config::ready_head) of a queue) | `Slot { lsn: u64, offset: u32, len: u32 }` in a `VecDeque` | 16 (up to 32 while the deque has spare capacity) |
//! | ready, never delivered, beyond the head (spilled) | nothing per message: a `Run { segment, offset, count }` per queue per segment | 24 per run (0 per message) |
//! | returned for redelivery (nacked, timed out, redriven, in flight at a crash) | LSN -> `Meta` in a `BTreeMap` | about 40 |
//! | delayed | (due, LSN) -> `Meta` in a `BTreeMap` plus LSN -> due | about 70 |
//! | in flight | LSN -> `InFlight` in a `HashMap` plus a timeout entry | about 60 |
//! | per segment | live count and dedup horizon | 40 per segment |
//!
//! So a backlog costs at most `ready_head` x 32 bytes plus about 64 bytes per
//! segment it spans, whatever its length (200 000 messages in 68 segments with a
//! head of 1 024: 22 KiB, against 4 MiB with one slot per message).
//!
//! # The spilled backlog
//!
//! A queue keeps at most `ready_head` never-delivered messages as slots. Once
//! the head is full (or while runs exist), each committed `ENQUEUE` of the queue
//! without a not-before time extends the queue's last run if it is in the same
//! segment, or starts a new run at its offset; so runs hold strictly newer
//! messages than the head and FIFO order is kept. A run's members are exactly
//! the queue's `ENQUEUE` records with `not_before == 0` from its offset on, up to
//! its count (see the `backlog` module). Messages with a not-before time never
//! join a run: delayed ones wait in the delayed map as before, and one already
//! due while the queue is spilling waits with the returned messages (ordered by
//! LSN, taken in the same order).
//!
//! When a consumer's take leaves the head below half of `ready_head`, it starts a
//! refill (at most one per queue at a time): a blocking-pool task scans the front
//! runs from their offsets, pushes up to `ready_head - head` slots, advances the
//! runs and wakes the queue's consumers (who registered for the wake-up before
//! looking, so none is lost). While the head is empty and runs remain, a returned
//! message is taken only if it is older than the first run's segment (else the
//! consumer waits for the refill, which keeps send order). A failed refill (an I/O
//! error, or corruption) is reported to the next taker, whose take starts the
//! next attempt. A spilled message
//! is unsettled, so the per-segment live counts keep its segment on disk.
//!
//! Replay applies the same rule, so reopening a large backlog builds runs, not
//! slots. The first record that touches a never-delivered message (a `DELIVER`,
//! or a redrive's `MOVE`) always touches its queue's oldest one, so a replayed
//! record whose target is spilled is served by refilling the head in the middle of
//! the scan (see `State::take_replayed`). Redriving a dead-letter queue that has
//! spilled messages (only possible by sending to it directly) reads them back
//! first, since each needs its own `MOVE`.
//!
//! Expired messages inside runs are read back like any other and discarded when
//! they reach a consumer, as before. The body cache is unchanged: a refilled slot
//! whose body is still cached is delivered from the cache.
//!
//! Bodies are not kept, except in a bounded cache of recently sent messages
//! ([`Config::body_cache_bytes`](crate::Config::body_cache_bytes)); a delivery
//! whose body is not cached reads it back from its segment. A producer-chosen
//! message id costs about 56 bytes while it is inside the dedup window.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

use crate::engine::backlog::{RefillJob, RefillRead, RunSnapshot, Slot};
use crate::error::{Error, Result};
use crate::message::DeliveryTag;
use crate::storage::log::{Append, Log};
use crate::storage::reader::SegmentReader;
use crate::storage::record::{EnqueueHeader, Record, RecordView, SettleReason};
use crate::storage::recovery::Location;

/// A stretch of a queue's spilled backlog: its never-delivered messages in one
/// segment, from `offset` on (see the `backlog` module for what counts).
#[derive(Debug, Clone, Copy)]
struct Run {
    /// First LSN of the segment (its name). Every message of the run has a larger LSN.
    segment: u64,
    /// Where to resume scanning.
    offset: u32,
    /// Messages of the queue left in the run.
    count: u64,
}

/// A message outside the ready deque.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub offset: u32,
    pub len: u32,
    /// Deliveries so far in the current queue.
    pub deliveries: u32,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    meta: Meta,
    deadline_ms: u64,
    consumer: u64,
}

/// A body kept from the send so that delivery need not read the disk.
#[derive(Debug, Clone)]
pub(crate) struct CachedBody {
    pub id: u128,
    pub timestamp_ms: u64,
    pub expires_at_ms: u64,
    pub body: Bytes,
}

/// Rough per-entry overhead charged to the cache budget (map entry + `Bytes`).
const CACHE_ENTRY_OVERHEAD: usize = 80;

#[derive(Debug, Default)]
struct ConsumerState {
    outstanding: u32,
    /// Closed by an administrator: its next fetch fails with `ConsumerClosed`.
    closed: bool,
}

/// Per-segment bookkeeping for deletion.
#[derive(Debug, Default, Clone, Copy)]
struct SegStat {
    live: u64,
    /// Producer-chosen ids in this segment stay relevant for dedup until then.
    dedup_until_ms: u64,
}

#[derive(Debug)]
struct DedupEntry {
    until_ms: u64,
    /// `Some` while the first send is not yet durable: duplicates wait here.
    waiters: Option<Vec<oneshot::Sender<bool>>>,
}

/// One named queue.
#[derive(Debug)]
pub(crate) struct QueueState {
    /// The in-memory head of the never-delivered backlog, in LSN order.
    ready: VecDeque<Slot>,
    /// The rest of it, spilled: every message here is newer than every one in `ready`.
    runs: VecDeque<Run>,
    /// Messages in `runs`.
    spilled: u64,
    /// A refill of `ready` from `runs` is under way (at most one per queue).
    refilling: bool,
    /// A failed refill, reported to the next taker.
    refill_error: Option<Error>,
    retry: BTreeMap<u64, Meta>,
    delayed: BTreeMap<(u64, u64), Meta>,
    delayed_due: HashMap<u64, u64>,
    in_flight: HashMap<u64, InFlight>,
    /// Deadlines of deliveries with the default visibility timeout: non-decreasing.
    timeouts: VecDeque<(u64, u64)>,
    /// Deadlines that break that order (extended, or a consumer-specific timeout).
    other_timeouts: BinaryHeap<Reverse<(u64, u64)>>,
    pending_sends: u64,
    consumers: HashMap<u64, ConsumerState>,
    /// Created only because a consumer attached, and nothing stored in it since: such a
    /// queue is forgotten when its last consumer leaves, so receiving from a mistyped
    /// name leaves no queue behind (issue 11, bug 7).
    unused: bool,
    pub notify: Arc<Notify>,
}

impl QueueState {
    fn new() -> Self {
        QueueState {
            ready: VecDeque::new(),
            runs: VecDeque::new(),
            spilled: 0,
            refilling: false,
            refill_error: None,
            retry: BTreeMap::new(),
            delayed: BTreeMap::new(),
            delayed_due: HashMap::new(),
            in_flight: HashMap::new(),
            timeouts: VecDeque::new(),
            other_timeouts: BinaryHeap::new(),
            pending_sends: 0,
            consumers: HashMap::new(),
            unused: false,
            notify: Arc::new(Notify::new()),
        }
    }

    /// Messages not in flight (ready, returned and delayed).
    fn depth(&self) -> u64 {
        (self.ready.len() + self.retry.len() + self.delayed.len()) as u64 + self.spilled
    }

    /// Whether new never-delivered messages go to the runs instead of `ready`.
    fn spilling(&self, head: usize) -> bool {
        !self.runs.is_empty() || self.ready.len() >= head
    }

    /// Adds a never-delivered, not delayed message: to the head, or spilled.
    fn push_ready(&mut self, slot: Slot, segment: u64, head: usize) {
        if !self.spilling(head) {
            self.ready.push_back(slot);
            return;
        }
        self.spilled += 1;
        match self.runs.back_mut() {
            Some(r) if r.segment == segment => r.count += 1,
            _ => self.runs.push_back(Run {
                segment,
                offset: slot.offset,
                count: 1,
            }),
        }
    }

    /// Adds a message whose enqueue record carries a not-before time that has
    /// passed. Such messages never join a run (a run could not tell them from ones
    /// that were delayed when sent), so while spilling they wait with the returned ones.
    fn push_due(&mut self, slot: Slot, segment: u64, head: usize) {
        if self.spilling(head) {
            self.retry.insert(
                slot.lsn,
                Meta {
                    offset: slot.offset,
                    len: slot.len,
                    deliveries: 0,
                },
            );
        } else {
            self.push_ready(slot, segment, head);
        }
    }

    /// Starts a refill if the head is low and runs remain: marks it under way and
    /// returns what to read (`want` messages, at least one).
    fn refill_job(
        &mut self,
        name: &Arc<str>,
        head: usize,
        want: Option<usize>,
    ) -> Option<RefillJob> {
        let low = (head / 2).max(1);
        if self.refilling || self.runs.is_empty() || (want.is_none() && self.ready.len() >= low) {
            return None;
        }
        let want = want.unwrap_or(head.saturating_sub(self.ready.len())).max(1);
        let mut runs = Vec::new();
        let mut n = 0u64;
        for r in &self.runs {
            runs.push(RunSnapshot {
                segment: r.segment,
                offset: r.offset,
                count: r.count,
            });
            n += r.count;
            if n >= want as u64 {
                break;
            }
        }
        self.refilling = true;
        Some(RefillJob {
            queue: name.clone(),
            runs,
            want,
        })
    }

    /// Applies a finished refill and wakes the consumers.
    fn apply_refill(&mut self, read: Result<RefillRead>) {
        self.refilling = false;
        match read {
            Ok(read) => {
                let mut j = 0;
                for (taken, offset) in read.progress {
                    let r = &mut self.runs[j];
                    r.count -= taken;
                    r.offset = offset;
                    if r.count == 0 {
                        self.runs.remove(j);
                    } else {
                        j += 1;
                    }
                }
                self.spilled -= read.slots.len() as u64;
                debug_assert!(match (self.ready.back(), read.slots.first()) {
                    (Some(b), Some(f)) => b.lsn < f.lsn,
                    _ => true,
                });
                self.ready.extend(read.slots);
            }
            Err(e) => self.refill_error = Some(e),
        }
        self.notify.notify_waiters();
    }

    fn len(&self) -> u64 {
        self.depth() + self.in_flight.len() as u64
    }

    /// Removes `lsn` from wherever it waits (not in flight).
    fn take_waiting(&mut self, lsn: u64) -> Option<Meta> {
        if let Ok(i) = self.ready.binary_search_by_key(&lsn, |s| s.lsn) {
            let s = self.ready.remove(i).expect("index from binary search");
            return Some(Meta {
                offset: s.offset,
                len: s.len,
                deliveries: 0,
            });
        }
        if let Some(m) = self.retry.remove(&lsn) {
            return Some(m);
        }
        let due = self.delayed_due.remove(&lsn)?;
        self.delayed.remove(&(due, lsn))
    }

    /// Takes every waiting message (ready, returned, delayed) out, in no particular
    /// order. The caller has read spilled messages back first (`runs` is empty).
    fn drain_waiting(&mut self) -> Vec<(u64, Meta)> {
        debug_assert!(
            self.runs.is_empty(),
            "the caller reads spilled messages back first"
        );
        let mut out: Vec<(u64, Meta)> = self
            .ready
            .drain(..)
            .map(|s| {
                (
                    s.lsn,
                    Meta {
                        offset: s.offset,
                        len: s.len,
                        deliveries: 0,
                    },
                )
            })
            .collect();
        out.extend(std::mem::take(&mut self.retry));
        out.extend(
            std::mem::take(&mut self.delayed)
                .into_iter()
                .map(|((_, l), m)| (l, m)),
        );
        self.delayed_due.clear();
        out
    }

    /// Up to `max` waiting messages in the order they would be delivered (the in-memory
    /// head and returned messages merged by position, then delayed ones by due time),
    /// with their state. Spilled messages are not listed.
    fn browse(&self, max: usize) -> Vec<(u64, Meta, Waiting)> {
        let mut out = Vec::new();
        let mut ready = self.ready.iter().peekable();
        let mut retry = self.retry.iter().peekable();
        while out.len() < max {
            let take_ready = match (ready.peek(), retry.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(s), Some((k, _))) => s.lsn < **k,
            };
            if take_ready {
                let s = ready.next().expect("peeked");
                let meta = Meta {
                    offset: s.offset,
                    len: s.len,
                    deliveries: 0,
                };
                out.push((s.lsn, meta, Waiting::Ready));
            } else {
                let (k, m) = retry.next().expect("peeked");
                out.push((*k, *m, Waiting::Returned));
            }
        }
        for (&(due, lsn), m) in self.delayed.iter() {
            if out.len() >= max {
                break;
            }
            out.push((lsn, *m, Waiting::Delayed { due_ms: due }));
        }
        out
    }

    fn insert_delayed(&mut self, lsn: u64, due: u64, meta: Meta) {
        self.delayed.insert((due, lsn), meta);
        self.delayed_due.insert(lsn, due);
    }

    fn timeout_valid(&self, deadline: u64, lsn: u64) -> bool {
        self.in_flight
            .get(&lsn)
            .is_some_and(|f| f.deadline_ms == deadline)
    }

    /// Drops stale timeout entries from the front so the deques stay about as
    /// long as the in-flight set (acks mostly arrive in delivery order).
    fn trim_timeouts(&mut self) {
        while let Some(&(d, l)) = self.timeouts.front() {
            if self.timeout_valid(d, l) {
                break;
            }
            self.timeouts.pop_front();
        }
        while let Some(&Reverse((d, l))) = self.other_timeouts.peek() {
            if self.timeout_valid(d, l) {
                break;
            }
            self.other_timeouts.pop();
        }
    }

    /// Takes the in-flight entry for `tag`, freeing the consumer's credit.
    fn take_in_flight(&mut self, tag: DeliveryTag) -> Option<Meta> {
        match self.in_flight.get(&tag.lsn) {
            Some(f) if f.meta.deliveries == tag.delivery => {}
            _ => return None,
        }
        let f = self.in_flight.remove(&tag.lsn).expect("checked above");
        if let Some(c) = self.consumers.get_mut(&f.consumer) {
            c.outstanding = c.outstanding.saturating_sub(1);
        }
        self.trim_timeouts();
        Some(f.meta)
    }

    fn memory_bytes(&self) -> usize {
        self.ready.capacity() * std::mem::size_of::<Slot>()
            + self.runs.capacity() * std::mem::size_of::<Run>()
            + self.retry.len() * 40
            + self.delayed.len() * 48
            + self.delayed_due.capacity() * 17
            + self.in_flight.capacity() * (8 + std::mem::size_of::<InFlight>() + 1)
            + self.timeouts.capacity() * 16
            + self.other_timeouts.capacity() * 16
    }
}

/// Counters for one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Messages waiting to be delivered (ready, returned for redelivery, or delayed).
    /// Expired messages count until they reach the head of the queue and are discarded.
    pub depth: u64,
    /// Of `depth`, messages delayed (not deliverable yet).
    pub delayed: u64,
    /// Messages delivered and not yet acked, nacked or timed out.
    pub in_flight: u64,
    /// Consumers attached.
    pub consumers: u64,
    /// Messages in this queue's dead-letter queue (any state).
    pub dead_letters: u64,
}

/// Memory held by the index, for monitoring and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStats {
    /// Messages known to the index (every state, every queue).
    pub messages: u64,
    /// Estimated bytes of index structures (excluding the body cache).
    pub index_bytes: u64,
    /// Bytes charged to the body cache.
    pub cache_bytes: u64,
    /// Producer-chosen ids inside the dedup window.
    pub dedup_entries: u64,
    /// Never-delivered messages held in memory as ready slots (every queue's head).
    pub ready_slots: u64,
    /// Never-delivered messages spilled: not in memory, read back from their segments.
    pub spilled_messages: u64,
    /// Runs describing the spilled messages (about one per queue per segment).
    pub spilled_runs: u64,
}

/// Fixed limits the state needs.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub visibility_ms: u64,
    pub max_attempts: Option<u32>,
    pub dlq_suffix: Option<String>,
    pub dedup_window_ms: u64,
    pub max_queue_len: Option<u64>,
    pub cache_budget: usize,
    /// `Config::ready_head`, at least 1.
    pub ready_head: usize,
}

/// A message handed to a consumer by [`State::take`].
#[derive(Debug)]
pub(crate) struct Taken {
    pub tag: DeliveryTag,
    pub offset: u32,
    pub len: u32,
    pub cached: Option<CachedBody>,
}

/// An attached consumer, as [`QueueManager::consumers`](crate::QueueManager::consumers)
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// The queue it reads.
    pub queue: String,
    /// Its number, unique in the manager (for closing it).
    pub id: u64,
    /// Deliveries it holds unsettled (prefetched or handed out, not yet acked).
    pub unacked: u64,
}

/// Where a waiting message is, as browsing reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Never delivered, in line.
    Ready,
    /// Delivered before and returned (nacked, timed out, moved here), in line.
    Returned,
    /// Not deliverable before `due_ms` (ms since the Unix epoch).
    Delayed {
        /// When it becomes deliverable.
        due_ms: u64,
    },
}

/// A waiting message found by [`State::browse`].
#[derive(Debug)]
pub(crate) struct Browsed {
    pub lsn: u64,
    pub meta: Meta,
    pub waiting: Waiting,
    pub cached: Option<CachedBody>,
}

/// What a send turned into.
pub(crate) enum SendOutcome {
    /// Appended; durable when the receiver says so.
    Appended(oneshot::Receiver<Result<()>>),
    /// A duplicate of a durable message.
    Duplicate,
    /// A duplicate of a send still in progress: `true` once it is durable, `false` if it failed.
    WaitDuplicate(oneshot::Receiver<bool>),
}

/// Everything the queue manager knows in memory.
pub(crate) struct State {
    next_lsn: u64,
    queues: HashMap<Arc<str>, QueueState>,
    segs: BTreeMap<u64, SegStat>,
    dedup: HashMap<u128, DedupEntry>,
    dedup_order: VecDeque<(u64, u128)>,
    cache: HashMap<u64, CachedBody>,
    cache_bytes: usize,
    next_consumer: u64,
    pub closed: bool,
    /// The earliest time the scheduler is known to wake at.
    next_wake_ms: u64,
    scheduler: Arc<Notify>,
    limits: Limits,
    outbox: Vec<Append>,
}

impl State {
    pub(crate) fn new(limits: Limits, scheduler: Arc<Notify>) -> Self {
        State {
            next_lsn: 1,
            queues: HashMap::new(),
            segs: BTreeMap::new(),
            dedup: HashMap::new(),
            dedup_order: VecDeque::new(),
            cache: HashMap::new(),
            cache_bytes: 0,
            next_consumer: 1,
            closed: false,
            next_wake_ms: 0,
            scheduler,
            limits,
            outbox: Vec::new(),
        }
    }

    pub(crate) fn set_next_lsn(&mut self, lsn: u64) {
        self.next_lsn = lsn;
    }

    /// The queue, created on first use. Every path that stores into a queue comes
    /// through here, so the queue is no longer [`unused`](QueueState::unused).
    pub(crate) fn queue_mut(&mut self, name: &Arc<str>) -> &mut QueueState {
        if !self.queues.contains_key(&**name) {
            self.queues.insert(name.clone(), QueueState::new());
        }
        let q = self.queues.get_mut(&**name).expect("inserted above");
        q.unused = false;
        q
    }

    fn queue_name(&mut self, name: &str) -> Arc<str> {
        match self.queues.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = name.into();
                self.queues.insert(k.clone(), QueueState::new());
                k
            }
        }
    }

    /// The dead-letter queue of `queue`, if it has one.
    pub(crate) fn dlq_name(&self, queue: &str) -> Option<String> {
        let suffix = self.limits.dlq_suffix.as_deref()?;
        if queue.ends_with(suffix) {
            return None;
        }
        Some(format!("{queue}{suffix}"))
    }

    fn record(&mut self, record: Record, waiter: bool) -> Option<oneshot::Receiver<Result<()>>> {
        let (done, rx) = if waiter {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        self.outbox.push(Append { lsn, record, done });
        rx
    }

    /// Hands the outbox to the log. Called with the state lock held, so log order is
    /// state-change order.
    pub(crate) fn flush(&mut self, log: &Log) {
        if !self.outbox.is_empty() {
            log.append(self.outbox.drain(..));
        }
    }

    fn wake_scheduler_for(&mut self, at_ms: u64) {
        if at_ms < self.next_wake_ms || self.next_wake_ms == 0 {
            self.next_wake_ms = at_ms;
            self.scheduler.notify_one();
        }
    }

    fn purge_dedup(&mut self, now: u64) {
        while let Some(&(until, id)) = self.dedup_order.front() {
            if until > now {
                break;
            }
            self.dedup_order.pop_front();
            if self
                .dedup
                .get(&id)
                .is_some_and(|e| e.until_ms == until && e.waiters.is_none())
            {
                self.dedup.remove(&id);
            }
        }
    }

    /// Starts a send. The caller flushes the outbox.
    pub(crate) fn send(
        &mut self,
        queue: &Arc<str>,
        header: EnqueueHeader,
        body: Bytes,
        now: u64,
    ) -> Result<SendOutcome> {
        if self.closed {
            return Err(Error::Closed);
        }
        if header.producer_id {
            self.purge_dedup(now);
            if let Some(e) = self.dedup.get_mut(&header.id) {
                return Ok(match &mut e.waiters {
                    None => SendOutcome::Duplicate,
                    Some(w) => {
                        let (tx, rx) = oneshot::channel();
                        w.push(tx);
                        SendOutcome::WaitDuplicate(rx)
                    }
                });
            }
        }
        let limit = self.limits.max_queue_len;
        let q = self.queue_mut(queue);
        if let Some(limit) = limit {
            if q.len() + q.pending_sends >= limit {
                return Err(Error::QueueFull {
                    queue: queue.to_string(),
                    limit,
                });
            }
        }
        q.pending_sends += 1;
        if header.producer_id {
            let until = header
                .timestamp_ms
                .saturating_add(self.limits.dedup_window_ms);
            self.dedup.insert(
                header.id,
                DedupEntry {
                    until_ms: until,
                    waiters: Some(Vec::new()),
                },
            );
            self.dedup_order.push_back((until, header.id));
        }
        let rx = self.record(
            Record::Enqueue {
                queue: queue.clone(),
                header,
                body,
            },
            true,
        );
        Ok(SendOutcome::Appended(rx.expect("asked for a waiter")))
    }

    pub(crate) fn add_consumer(&mut self, queue: &Arc<str>) -> (u64, Arc<Notify>) {
        let id = self.next_consumer;
        self.next_consumer += 1;
        let q = match self.queues.get_mut(&**queue) {
            Some(q) => q,
            None => {
                let mut q = QueueState::new();
                q.unused = true;
                self.queues.entry(queue.clone()).or_insert(q)
            }
        };
        q.consumers.insert(id, ConsumerState::default());
        (id, q.notify.clone())
    }

    /// Detaches a consumer and returns its undelivered (buffered) messages to the
    /// queue without counting the attempt.
    pub(crate) fn remove_consumer(&mut self, queue: &str, consumer: u64, buffered: &[DeliveryTag]) {
        self.release(queue, consumer, buffered);
        if let Some(q) = self.queues.get_mut(queue) {
            q.consumers.remove(&consumer);
            if q.unused && q.consumers.is_empty() && q.len() == 0 && q.pending_sends == 0 {
                self.queues.remove(queue);
            }
        }
    }

    /// Returns taken-but-never-handed-out messages to the queue, undoing the
    /// delivery count.
    pub(crate) fn release(&mut self, queue: &str, _consumer: u64, tags: &[DeliveryTag]) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        let mut any = false;
        for tag in tags {
            if let Some(mut meta) = q.take_in_flight(*tag) {
                meta.deliveries = meta.deliveries.saturating_sub(1);
                q.retry.insert(tag.lsn, meta);
                any = true;
            }
        }
        if any {
            q.notify.notify_waiters();
        }
    }

    /// Hands up to `prefetch - outstanding` messages to `consumer`.
    pub(crate) fn take(
        &mut self,
        queue: &Arc<str>,
        consumer: u64,
        prefetch: u32,
        visibility_ms: Option<u64>,
        now: u64,
    ) -> Result<Vec<Taken>> {
        if self.closed {
            return Err(Error::Closed);
        }
        let default_vis = self.limits.visibility_ms;
        let vis = visibility_ms.unwrap_or(default_vis);
        let deadline = now.saturating_add(vis);
        let q = self
            .queues
            .get_mut(&**queue)
            .expect("consumer's queue exists");
        if let Some(e) = q.refill_error.take() {
            return Err(e);
        }
        if q.consumers.get(&consumer).is_some_and(|c| c.closed) {
            return Err(Error::ConsumerClosed { consumer });
        }
        let outstanding = q.consumers.get(&consumer).map_or(0, |c| c.outstanding);
        let credit = prefetch.saturating_sub(outstanding);
        let mut taken = Vec::new();
        let mut records = Vec::new();
        while (taken.len() as u32) < credit {
            // With the head empty and runs left, a returned message goes first only if
            // it is older than every spilled one; otherwise wait for the refill.
            let bound = match (q.ready.is_empty(), q.runs.front()) {
                (true, Some(r)) => r.segment,
                _ => u64::MAX,
            };
            let retry = q.retry.first_key_value().filter(|(k, _)| **k < bound);
            let from_ready = match (q.ready.front(), retry) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(s), Some((k, _))) => s.lsn < *k,
            };
            let (lsn, mut meta) = if from_ready {
                let s = q.ready.pop_front().expect("checked");
                (
                    s.lsn,
                    Meta {
                        offset: s.offset,
                        len: s.len,
                        deliveries: 0,
                    },
                )
            } else {
                q.retry.pop_first().expect("checked")
            };
            meta.deliveries += 1;
            q.in_flight.insert(
                lsn,
                InFlight {
                    meta,
                    deadline_ms: deadline,
                    consumer,
                },
            );
            if vis == default_vis {
                q.timeouts.push_back((deadline, lsn));
            } else {
                q.other_timeouts.push(Reverse((deadline, lsn)));
            }
            let tag = DeliveryTag::new(lsn, meta.deliveries);
            records.push(Record::Deliver {
                queue: queue.clone(),
                target: lsn,
                delivery: meta.deliveries,
            });
            taken.push(Taken {
                tag,
                offset: meta.offset,
                len: meta.len,
                cached: None,
            });
        }
        if let Some(c) = q.consumers.get_mut(&consumer) {
            c.outstanding += taken.len() as u32;
        }
        for t in &mut taken {
            if let Some(c) = self.cache.remove(&t.tag.lsn) {
                self.cache_bytes -= c.body.len() + CACHE_ENTRY_OVERHEAD;
                t.cached = Some(c);
            }
        }
        for r in records {
            // Delivery counts are persisted so that max_attempts survives a crash; nobody
            // waits for these records, they ride along with the next batch.
            self.record(r, false);
        }
        if !taken.is_empty() {
            self.wake_scheduler_for(deadline);
        }
        Ok(taken)
    }

    /// Starts a refill of `queue`'s head from its runs if it is low (or, with `want`,
    /// of that many messages whatever the head holds). The caller runs the job and
    /// hands the result to [`apply_refill`](State::apply_refill).
    pub(crate) fn refill_job(
        &mut self,
        queue: &Arc<str>,
        want: Option<usize>,
    ) -> Option<RefillJob> {
        let head = self.limits.ready_head;
        self.queues.get_mut(&**queue)?.refill_job(queue, head, want)
    }

    /// Applies a refill started by [`refill_job`](State::refill_job).
    pub(crate) fn apply_refill(&mut self, queue: &str, read: Result<RefillRead>) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.apply_refill(read);
        }
    }

    /// The notifier of `queue`'s consumers, if the queue exists.
    pub(crate) fn notify_of(&self, queue: &str) -> Option<Arc<Notify>> {
        self.queues.get(queue).map(|q| q.notify.clone())
    }

    /// Whether `queue` has spilled messages, and whether a refill is under way.
    pub(crate) fn runs_of(&self, queue: &str) -> (bool, bool) {
        self.queues
            .get(queue)
            .map_or((false, false), |q| (!q.runs.is_empty(), q.refilling))
    }

    fn not_in_flight(queue: &str, tag: DeliveryTag) -> Error {
        Error::DeliveryNotFound {
            queue: queue.to_string(),
            tag,
        }
    }

    /// Takes the delivery named by `tag` out of flight (its consumer's credit is freed and
    /// waiting consumers are woken); a stale or unknown tag is `DeliveryNotFound`.
    fn end_delivery(&mut self, queue: &Arc<str>, tag: DeliveryTag) -> Result<Meta> {
        let q = self
            .queues
            .get_mut(&**queue)
            .ok_or_else(|| Self::not_in_flight(queue, tag))?;
        let meta = q
            .take_in_flight(tag)
            .ok_or_else(|| Self::not_in_flight(queue, tag))?;
        q.notify.notify_waiters();
        Ok(meta)
    }

    /// Settles an in-flight delivery for good (ack, or expiry found at delivery).
    pub(crate) fn settle(
        &mut self,
        queue: &Arc<str>,
        tag: DeliveryTag,
        reason: SettleReason,
    ) -> Result<oneshot::Receiver<Result<()>>> {
        self.end_delivery(queue, tag)?;
        let rx = self.record(
            Record::Settle {
                queue: queue.clone(),
                target: tag.lsn,
                reason,
            },
            true,
        );
        Ok(rx.expect("asked for a waiter"))
    }

    /// Moves a message out of `queue` after it failed for good: to the dead-letter
    /// queue if there is one, else dropped.
    fn dead_letter(
        &mut self,
        queue: &Arc<str>,
        lsn: u64,
        meta: Meta,
        waiter: bool,
    ) -> Option<oneshot::Receiver<Result<()>>> {
        match self.dlq_name(queue) {
            Some(dlq) => {
                let dlq = self.queue_name(&dlq);
                let d = self.queue_mut(&dlq);
                d.retry.insert(
                    lsn,
                    Meta {
                        deliveries: 0,
                        ..meta
                    },
                );
                d.notify.notify_waiters();
                self.record(
                    Record::Move {
                        queue: queue.clone(),
                        target: lsn,
                        to: dlq,
                    },
                    waiter,
                )
            }
            None => self.record(
                Record::Settle {
                    queue: queue.clone(),
                    target: lsn,
                    reason: SettleReason::Dropped,
                },
                waiter,
            ),
        }
    }

    /// Whether a failed delivery of `meta` in `queue` ends its retries. Messages in a
    /// dead-letter queue are retried forever (dropping them would lose the very
    /// messages the DLQ exists to keep).
    fn exhausted(&self, queue: &str, meta: &Meta) -> bool {
        let in_dlq = self
            .limits
            .dlq_suffix
            .as_deref()
            .is_some_and(|s| queue.ends_with(s));
        !in_dlq
            && self
                .limits
                .max_attempts
                .is_some_and(|max| meta.deliveries >= max)
    }

    /// Returns a delivery to its queue (after `delay_ms`), or dead-letters it when
    /// it has used up its attempts.
    pub(crate) fn nack(
        &mut self,
        queue: &Arc<str>,
        tag: DeliveryTag,
        delay_ms: Option<u64>,
        now: u64,
    ) -> Result<oneshot::Receiver<Result<()>>> {
        let meta = self.end_delivery(queue, tag)?;
        if self.exhausted(queue, &meta) {
            return Ok(self
                .dead_letter(queue, tag.lsn, meta, true)
                .expect("waiter"));
        }
        let q = self.queues.get_mut(&**queue).expect("exists");
        let not_before = match delay_ms {
            Some(d) if d > 0 => {
                let due = now.saturating_add(d);
                q.insert_delayed(tag.lsn, due, meta);
                self.wake_scheduler_for(due);
                due
            }
            _ => {
                q.retry.insert(tag.lsn, meta);
                0
            }
        };
        let rx = self.record(
            Record::Nack {
                queue: queue.clone(),
                target: tag.lsn,
                not_before_ms: not_before,
            },
            true,
        );
        Ok(rx.expect("asked for a waiter"))
    }

    /// Dead-letters (or drops) a delivery at once.
    pub(crate) fn reject(
        &mut self,
        queue: &Arc<str>,
        tag: DeliveryTag,
    ) -> Result<oneshot::Receiver<Result<()>>> {
        let meta = self.end_delivery(queue, tag)?;
        Ok(self
            .dead_letter(queue, tag.lsn, meta, true)
            .expect("waiter"))
    }

    /// Pushes a delivery's visibility deadline to `now + by_ms`.
    pub(crate) fn extend(
        &mut self,
        queue: &Arc<str>,
        tag: DeliveryTag,
        by_ms: u64,
        now: u64,
    ) -> Result<()> {
        let q = self
            .queues
            .get_mut(&**queue)
            .ok_or_else(|| Self::not_in_flight(queue, tag))?;
        match q.in_flight.get_mut(&tag.lsn) {
            Some(f) if f.meta.deliveries == tag.delivery => {
                let deadline = now.saturating_add(by_ms);
                f.deadline_ms = deadline;
                q.other_timeouts.push(Reverse((deadline, tag.lsn)));
                q.trim_timeouts();
                self.wake_scheduler_for(deadline);
                Ok(())
            }
            _ => Err(Self::not_in_flight(queue, tag)),
        }
    }

    /// Moves every waiting message of `queue`'s dead-letter queue back to `queue`.
    pub(crate) fn redrive(
        &mut self,
        queue: &Arc<str>,
    ) -> (u64, Option<oneshot::Receiver<Result<()>>>) {
        let Some(dlq) = self.dlq_name(queue) else {
            return (0, None);
        };
        let Some((dlq, _)) = self.queues.get_key_value(dlq.as_str()) else {
            return (0, None);
        };
        let dlq = dlq.clone();
        let moved = self.queues.get_mut(&*dlq).expect("exists").drain_waiting();
        let n = moved.len() as u64;
        if n == 0 {
            return (0, None);
        }
        let q = self.queue_mut(queue);
        for (lsn, meta) in &moved {
            q.retry.insert(
                *lsn,
                Meta {
                    deliveries: 0,
                    ..*meta
                },
            );
        }
        q.notify.notify_waiters();
        let mut rx = None;
        let last = moved.len() - 1;
        for (i, (lsn, _)) in moved.into_iter().enumerate() {
            rx = self.record(
                Record::Move {
                    queue: dlq.clone(),
                    target: lsn,
                    to: queue.clone(),
                },
                i == last,
            );
        }
        (n, rx)
    }

    /// Every attached consumer: queue, id, deliveries it holds unsettled.
    pub(crate) fn consumers(&self) -> Vec<ConsumerInfo> {
        let mut v: Vec<ConsumerInfo> = self
            .queues
            .iter()
            .flat_map(|(name, q)| {
                q.consumers.iter().map(move |(id, c)| ConsumerInfo {
                    queue: name.to_string(),
                    id: *id,
                    unacked: u64::from(c.outstanding),
                })
            })
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Marks consumer `id` closed and wakes it; whether it was attached.
    pub(crate) fn close_consumer(&mut self, id: u64) -> bool {
        for q in self.queues.values_mut() {
            if let Some(c) = q.consumers.get_mut(&id) {
                c.closed = true;
                q.notify.notify_waiters();
                return true;
            }
        }
        false
    }

    /// Whether `queue` is known: it holds or held messages since the manager opened
    /// (not only waiting consumers), or it is the dead-letter queue of such a queue.
    pub(crate) fn exists(&self, queue: &str) -> bool {
        let known = |name: &str| self.queues.get(name).is_some_and(|q| !q.unused);
        if known(queue) {
            return true;
        }
        match self.limits.dlq_suffix.as_deref() {
            Some(suffix) => queue.strip_suffix(suffix).is_some_and(known),
            None => false,
        }
    }

    /// Drops every waiting message of `queue` (ready, returned, delayed; not those in
    /// flight). Spilled messages must have been read back first.
    pub(crate) fn purge(
        &mut self,
        queue: &Arc<str>,
    ) -> Result<(u64, Option<oneshot::Receiver<Result<()>>>)> {
        if !self.exists(queue) {
            return Err(Error::UnknownQueue(queue.to_string()));
        }
        let Some(q) = self.queues.get_mut(&**queue) else {
            // A dead-letter queue that never held a message.
            return Ok((0, None));
        };
        let dropped = q.drain_waiting();
        Ok(self.settle_dropped(queue, dropped))
    }

    /// Drops every message of `queue`, in flight too, and forgets the queue. Refused
    /// while consumers are attached (their deliveries would vanish under them).
    pub(crate) fn delete(
        &mut self,
        queue: &Arc<str>,
    ) -> Result<(u64, Option<oneshot::Receiver<Result<()>>>)> {
        if !self.exists(queue) {
            return Err(Error::UnknownQueue(queue.to_string()));
        }
        let Some(q) = self.queues.get_mut(&**queue) else {
            return Ok((0, None));
        };
        if !q.consumers.is_empty() {
            return Err(Error::QueueInUse {
                queue: queue.to_string(),
                consumers: q.consumers.len() as u64,
            });
        }
        if q.pending_sends > 0 {
            return Err(Error::QueueInUse {
                queue: queue.to_string(),
                consumers: 0,
            });
        }
        let mut dropped = q.drain_waiting();
        dropped.extend(q.in_flight.drain().map(|(lsn, f)| (lsn, f.meta)));
        let r = self.settle_dropped(queue, dropped);
        self.queues.remove(&**queue);
        Ok(r)
    }

    /// Writes a `Settle` (dropped) for each message and forgets its cached body.
    fn settle_dropped(
        &mut self,
        queue: &Arc<str>,
        dropped: Vec<(u64, Meta)>,
    ) -> (u64, Option<oneshot::Receiver<Result<()>>>) {
        let n = dropped.len() as u64;
        let mut rx = None;
        let last = dropped.len().saturating_sub(1);
        for (i, (lsn, _)) in dropped.into_iter().enumerate() {
            if let Some(c) = self.cache.remove(&lsn) {
                self.cache_bytes -= c.body.len() + CACHE_ENTRY_OVERHEAD;
            }
            rx = self.record(
                Record::Settle {
                    queue: queue.clone(),
                    target: lsn,
                    reason: SettleReason::Dropped,
                },
                i == last,
            );
        }
        (n, rx)
    }

    /// The oldest message waiting in `queue` (ready, returned or delayed; the smallest
    /// log position is the earliest send), with its cached body if the cache has it.
    pub(crate) fn oldest_waiting(&self, queue: &str) -> Option<Browsed> {
        let q = self.queues.get(queue)?;
        let ready = q.ready.front().map(|s| {
            let meta = Meta {
                offset: s.offset,
                len: s.len,
                deliveries: 0,
            };
            (s.lsn, meta, Waiting::Ready)
        });
        let retry = q
            .retry
            .first_key_value()
            .map(|(k, m)| (*k, *m, Waiting::Returned));
        let delayed = q
            .delayed
            .iter()
            .min_by_key(|((_, lsn), _)| *lsn)
            .map(|(&(due, lsn), m)| (lsn, *m, Waiting::Delayed { due_ms: due }));
        let (lsn, meta, waiting) = [ready, retry, delayed]
            .into_iter()
            .flatten()
            .min_by_key(|(lsn, _, _)| *lsn)?;
        Some(Browsed {
            lsn,
            meta,
            waiting,
            cached: self.cache.get(&lsn).cloned(),
        })
    }

    /// Up to `max` waiting messages of `queue` in delivery order, with cached bodies
    /// where the cache has them.
    pub(crate) fn browse(&self, queue: &str, max: usize) -> Result<Vec<Browsed>> {
        if !self.exists(queue) {
            return Err(Error::UnknownQueue(queue.to_string()));
        }
        let Some(q) = self.queues.get(queue) else {
            return Ok(Vec::new());
        };
        Ok(q.browse(max)
            .into_iter()
            .map(|(lsn, meta, waiting)| Browsed {
                lsn,
                meta,
                waiting,
                cached: self.cache.get(&lsn).cloned(),
            })
            .collect())
    }

    /// Fires due visibility timeouts and delays. Returns the next time anything is due.
    pub(crate) fn run_timers(&mut self, now: u64) -> Option<u64> {
        let names: Vec<Arc<str>> = self.queues.keys().cloned().collect();
        let mut next: Option<u64> = None;
        let mut min = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        for name in names {
            let mut expired: Vec<(u64, Meta)> = Vec::new();
            let q = self.queues.get_mut(&*name).expect("listed");
            loop {
                let front = q.timeouts.front().copied();
                let other = q.other_timeouts.peek().map(|r| r.0);
                let (d, lsn, from_deque) = match (front, other) {
                    (None, None) => break,
                    (Some((d, l)), None) => (d, l, true),
                    (None, Some((d, l))) => (d, l, false),
                    (Some(a), Some(b)) => {
                        if a <= b {
                            (a.0, a.1, true)
                        } else {
                            (b.0, b.1, false)
                        }
                    }
                };
                if !q.timeout_valid(d, lsn) {
                    if from_deque {
                        q.timeouts.pop_front();
                    } else {
                        q.other_timeouts.pop();
                    }
                    continue;
                }
                if d > now {
                    min(d);
                    break;
                }
                if from_deque {
                    q.timeouts.pop_front();
                } else {
                    q.other_timeouts.pop();
                }
                let f = q.in_flight.remove(&lsn).expect("valid timeout");
                if let Some(c) = q.consumers.get_mut(&f.consumer) {
                    c.outstanding = c.outstanding.saturating_sub(1);
                }
                expired.push((lsn, f.meta));
            }
            while let Some((&(due, lsn), _)) = q.delayed.first_key_value() {
                if due > now {
                    min(due);
                    break;
                }
                let meta = q.delayed.remove(&(due, lsn)).expect("first");
                q.delayed_due.remove(&lsn);
                q.retry.insert(lsn, meta);
                q.notify.notify_waiters();
            }
            if !expired.is_empty() {
                q.notify.notify_waiters();
            }
            for (lsn, meta) in expired {
                if self.exhausted(&name, &meta) {
                    self.dead_letter(&name, lsn, meta, false);
                } else {
                    self.queues
                        .get_mut(&*name)
                        .expect("listed")
                        .retry
                        .insert(lsn, meta);
                }
            }
        }
        self.next_wake_ms = next.unwrap_or(u64::MAX);
        next
    }

    /// Applies records that reached the disk. Returns the deletion watermark.
    pub(crate) fn committed(
        &mut self,
        appends: &[Append],
        locations: &[Location],
        now: u64,
    ) -> u64 {
        let mut touched: Vec<Arc<Notify>> = Vec::new();
        for (a, loc) in appends.iter().zip(locations) {
            match &a.record {
                Record::Enqueue {
                    queue,
                    header,
                    body,
                } => {
                    let seg = self.segs.entry(loc.segment).or_default();
                    seg.live += 1;
                    if header.producer_id {
                        seg.dedup_until_ms = seg.dedup_until_ms.max(
                            header
                                .timestamp_ms
                                .saturating_add(self.limits.dedup_window_ms),
                        );
                        if let Some(e) = self.dedup.get_mut(&header.id) {
                            for w in e.waiters.take().into_iter().flatten() {
                                let _ = w.send(true);
                            }
                        }
                    }
                    let cost = body.len() + CACHE_ENTRY_OVERHEAD;
                    if self.cache_bytes + cost <= self.limits.cache_budget {
                        self.cache_bytes += cost;
                        self.cache.insert(
                            a.lsn,
                            CachedBody {
                                id: header.id,
                                timestamp_ms: header.timestamp_ms,
                                expires_at_ms: header.expires_at_ms,
                                body: body.clone(),
                            },
                        );
                    }
                    let head = self.limits.ready_head;
                    let q = self.queue_mut(queue);
                    q.pending_sends = q.pending_sends.saturating_sub(1);
                    let slot = Slot {
                        lsn: a.lsn,
                        offset: loc.offset,
                        len: loc.len,
                    };
                    if header.not_before_ms > now {
                        q.insert_delayed(
                            a.lsn,
                            header.not_before_ms,
                            Meta {
                                offset: slot.offset,
                                len: slot.len,
                                deliveries: 0,
                            },
                        );
                        self.wake_scheduler_for(header.not_before_ms);
                    } else {
                        if header.not_before_ms == 0 {
                            q.push_ready(slot, loc.segment, head);
                        } else {
                            q.push_due(slot, loc.segment, head);
                        }
                        // One wake-up per queue per batch, not per message.
                        if !touched.last().is_some_and(|n| Arc::ptr_eq(n, &q.notify)) {
                            touched.push(q.notify.clone());
                        }
                    }
                }
                Record::Settle { target, .. } => self.settled_on_disk(*target),
                Record::Deliver { .. } | Record::Nack { .. } | Record::Move { .. } => {}
            }
        }
        for n in touched {
            n.notify_waiters();
        }
        self.watermark(now)
    }

    fn settled_on_disk(&mut self, lsn: u64) {
        if let Some((_, seg)) = self.segs.range_mut(..=lsn).next_back() {
            seg.live = seg.live.saturating_sub(1);
        }
    }

    fn watermark(&mut self, now: u64) -> u64 {
        while let Some((_, s)) = self.segs.first_key_value() {
            if s.live > 0 || s.dedup_until_ms > now {
                break;
            }
            self.segs.pop_first();
        }
        self.segs.first_key_value().map_or(u64::MAX, |(k, _)| *k)
    }

    /// Undoes the bookkeeping of records that could not be written.
    pub(crate) fn failed(&mut self, appends: &[Append]) {
        for a in appends {
            if let Record::Enqueue { queue, header, .. } = &a.record {
                if let Some(q) = self.queues.get_mut(&**queue) {
                    q.pending_sends = q.pending_sends.saturating_sub(1);
                }
                if header.producer_id {
                    if let Some(e) = self.dedup.remove(&header.id) {
                        for w in e.waiters.into_iter().flatten() {
                            let _ = w.send(false);
                        }
                    }
                }
            }
            // Acks, nacks and moves that failed were already applied in memory; the
            // log still has the message as delivered, so after a restart it is
            // delivered again (at-least-once).
        }
    }

    /// Takes `target` out of `queue` during replay, reading spilled messages back
    /// first if it is one of them.
    ///
    /// The first record after its `ENQUEUE` that touches a never-delivered message
    /// (a `DELIVER`, or a `MOVE` by redrive) touches the oldest one of its queue:
    /// the head is taken in order and refilled from the runs in order, and messages
    /// with a not-before time (which may go out of order) never join a run. So a
    /// target found nowhere else is the first spilled message, and one refill of
    /// the head (which happens in the middle of the scan, on the blocking pool)
    /// brings it in.
    fn take_replayed(
        &mut self,
        queue: &str,
        target: u64,
        reader: &dyn SegmentReader,
    ) -> Result<Option<Meta>> {
        let head = self.limits.ready_head;
        let Some((name, _)) = self.queues.get_key_value(queue) else {
            return Ok(None);
        };
        let name = name.clone();
        let q = self.queues.get_mut(queue).expect("just found");
        loop {
            if let Some(meta) = q.take_waiting(target) {
                return Ok(Some(meta));
            }
            let spilled = q.runs.front().is_some_and(|r| target >= r.segment)
                && q.ready.back().is_none_or(|b| b.lsn < target);
            if !spilled {
                return Ok(None);
            }
            let job = q
                .refill_job(&name, head, Some(head.saturating_sub(q.ready.len())))
                .expect("runs left and no refill under way");
            let read = crate::engine::backlog::read_runs(reader, &job);
            let failed = read.as_ref().err().cloned();
            q.apply_refill(read);
            if let Some(e) = failed {
                q.refill_error = None;
                return Err(e);
            }
        }
    }

    /// Replays one recovered record. `reader` reads spilled messages back when a
    /// record refers to one.
    ///
    /// # Errors
    ///
    /// Reading spilled messages back failed.
    pub(crate) fn replay(
        &mut self,
        lsn: u64,
        view: RecordView<'_>,
        loc: Location,
        now: u64,
        reader: &dyn SegmentReader,
    ) -> Result<()> {
        match view {
            RecordView::Enqueue { queue, header, .. } => {
                let seg = self.segs.entry(loc.segment).or_default();
                seg.live += 1;
                if header.producer_id {
                    let until = header
                        .timestamp_ms
                        .saturating_add(self.limits.dedup_window_ms);
                    seg.dedup_until_ms = seg.dedup_until_ms.max(until);
                    if until > now {
                        self.dedup.insert(
                            header.id,
                            DedupEntry {
                                until_ms: until,
                                waiters: None,
                            },
                        );
                        self.dedup_order.push_back((until, header.id));
                    }
                }
                let head = self.limits.ready_head;
                let name = self.queue_name(queue);
                let q = self.queue_mut(&name);
                let slot = Slot {
                    lsn,
                    offset: loc.offset,
                    len: loc.len,
                };
                if header.not_before_ms > now {
                    q.insert_delayed(
                        lsn,
                        header.not_before_ms,
                        Meta {
                            offset: loc.offset,
                            len: loc.len,
                            deliveries: 0,
                        },
                    );
                } else if header.not_before_ms == 0 {
                    q.push_ready(slot, loc.segment, head);
                } else {
                    q.push_due(slot, loc.segment, head);
                }
            }
            RecordView::Deliver {
                queue,
                target,
                delivery,
            } => {
                if let Some(mut meta) = self.take_replayed(queue, target, reader)? {
                    meta.deliveries = meta.deliveries.max(delivery);
                    let q = self.queues.get_mut(queue).expect("taken from it");
                    q.retry.insert(target, meta);
                }
            }
            RecordView::Settle { queue, target, .. } => {
                if self.take_replayed(queue, target, reader)?.is_some() {
                    self.settled_on_disk(target);
                }
            }
            RecordView::Nack {
                queue,
                target,
                not_before_ms,
            } => {
                if let Some(meta) = self.take_replayed(queue, target, reader)? {
                    let q = self.queues.get_mut(queue).expect("taken from it");
                    if not_before_ms > now {
                        q.insert_delayed(target, not_before_ms, meta);
                    } else {
                        q.retry.insert(target, meta);
                    }
                }
            }
            RecordView::Move { queue, target, to } => {
                if let Some(meta) = self.take_replayed(queue, target, reader)? {
                    let to = self.queue_name(to);
                    self.queue_mut(&to).retry.insert(
                        target,
                        Meta {
                            deliveries: 0,
                            ..meta
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// After replay: drops segments that hold nothing live; returns the live count.
    pub(crate) fn finish_replay(&mut self, now: u64) -> u64 {
        self.watermark(now);
        self.segs.values().map(|s| s.live).sum()
    }

    pub(crate) fn stats(&self, queue: &str) -> QueueStats {
        let Some(q) = self.queues.get(queue) else {
            return QueueStats::default();
        };
        let dead_letters = self
            .dlq_name(queue)
            .and_then(|d| self.queues.get(d.as_str()))
            .map_or(0, |d| d.len());
        QueueStats {
            depth: q.depth(),
            delayed: q.delayed.len() as u64,
            in_flight: q.in_flight.len() as u64,
            consumers: q.consumers.len() as u64,
            dead_letters,
        }
    }

    /// Wakes every waiting consumer (on close).
    pub(crate) fn wake_all(&self) {
        for q in self.queues.values() {
            q.notify.notify_waiters();
        }
    }

    pub(crate) fn queue_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.queues.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    pub(crate) fn memory(&self) -> MemoryStats {
        let mut m = MemoryStats {
            cache_bytes: self.cache_bytes as u64,
            dedup_entries: self.dedup.len() as u64,
            ..MemoryStats::default()
        };
        let mut bytes =
            self.dedup.capacity() * 48 + self.dedup_order.capacity() * 24 + self.segs.len() * 40;
        for q in self.queues.values() {
            m.messages += q.len();
            m.ready_slots += q.ready.len() as u64;
            m.spilled_messages += q.spilled;
            m.spilled_runs += q.runs.len() as u64;
            bytes += q.memory_bytes();
        }
        m.index_bytes = bytes as u64;
        m
    }
}
