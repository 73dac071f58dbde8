//! The in-memory index: what the queue manager keeps per message, and every
//! state transition (send, deliver, ack, nack, reject, timeout, redrive,
//! replay). Nothing here does I/O; records for the log are queued as pending
//! records that the caller hands to the log while still holding the state lock,
//! so log order always matches the order of state changes.
//!
//! [`State`] holds the queues ([`QueueState`](queue_state::QueueState), one
//! per name) and one part per concern that spans them: segment liveness (which
//! segments may be deleted), the dedup window, the body cache, the timer
//! task's wake-ups and the pending records. Each part is a small type in its
//! own file with its own tests; `State` composes them into the transitions,
//! whose tests (`tests.rs`) drive the index as the manager does, without a log.
//! This file holds a message's life (send, take, settle, nack, reject, timers,
//! commits); `replay.rs` rebuilds the index from the log, and `admin.rs` holds
//! counters, browsing, purge, delete and consumer administration.
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
//! join a run: delayed ones wait in the delayed map, and one already
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
//! they reach a consumer. A refilled slot whose body is still cached is
//! delivered from the cache.
//!
//! Bodies are not kept, except in a bounded cache of recently sent messages
//! ([`Config::body_cache_bytes`](crate::Config::body_cache_bytes)); a delivery
//! whose body is not cached reads it back from its segment. A producer-chosen
//! message id costs about 56 bytes while it is inside the dedup window.

mod admin;
mod body_cache;
mod dedup;
mod liveness;
mod pending;
mod queue_state;
mod replay;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

use self::body_cache::BodyCache;
use self::dedup::{DedupWindow, Seen};
use self::liveness::SegmentLiveness;
use self::pending::PendingRecords;
pub(crate) use self::queue_state::Meta;
pub use self::queue_state::Waiting;
use self::queue_state::{ConsumerState, QueueState};
use self::timers::TimerWake;
use crate::engine::backlog::{RefillJob, RefillRead, Slot};
use crate::error::{Error, Result};
use crate::message::DeliveryTag;
use crate::name::QueueName;
use crate::storage::log::{Append, Log};
use crate::storage::record::{EnqueueHeader, Record, SettleReason, StoredMessage};
use crate::storage::recovery::Location;

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
///
/// Serialized as it is in the broker's `stats` answer
/// ([`BrokerStats::memory`](crate::remote::BrokerStats::memory)); fields are only
/// appended (postcard has no field names, so their order is the wire format).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    pub cached: Option<StoredMessage>,
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

/// A waiting message found by [`State::browse`].
#[derive(Debug)]
pub(crate) struct Browsed {
    pub lsn: u64,
    pub meta: Meta,
    pub waiting: Waiting,
    pub cached: Option<StoredMessage>,
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

/// Everything the queue manager knows in memory: the queues, and beside them
/// one part per concern that spans queues.
pub(crate) struct State {
    queues: HashMap<QueueName, QueueState>,
    /// Which segments still hold something that matters (for deletion).
    segments: SegmentLiveness,
    /// Producer-chosen ids inside the dedup window.
    dedup: DedupWindow,
    /// Bodies of recently sent messages.
    cache: BodyCache,
    /// Records decided on and not yet handed to the log.
    pending: PendingRecords,
    /// The timer task's wake-ups.
    timers: TimerWake,
    next_consumer: u64,
    pub closed: bool,
    limits: Limits,
}

impl State {
    /// An empty index; `timer_task` is woken when something falls due earlier than
    /// it sleeps.
    pub(crate) fn new(limits: Limits, timer_task: Arc<Notify>) -> Self {
        State {
            queues: HashMap::new(),
            segments: SegmentLiveness::default(),
            dedup: DedupWindow::new(limits.dedup_window_ms),
            cache: BodyCache::new(limits.cache_budget),
            pending: PendingRecords::new(),
            timers: TimerWake::new(timer_task),
            next_consumer: 1,
            closed: false,
            limits,
        }
    }

    /// Continues LSNs after the recovered log.
    pub(crate) fn set_next_lsn(&mut self, lsn: u64) {
        self.pending.set_next_lsn(lsn);
    }

    /// The queue, created on first use. Every path that stores into a queue comes
    /// through here, so the queue is no longer [`unused`](QueueState::unused).
    fn queue_mut(&mut self, name: &QueueName) -> &mut QueueState {
        if !self.queues.contains_key(&**name) {
            self.queues.insert(name.clone(), QueueState::new());
        }
        let q = self.queues.get_mut(&**name).expect("inserted above");
        q.unused = false;
        q
    }

    /// The dead-letter queue of `queue`, if it has one: a dead-letter queue has none,
    /// and neither has a queue whose name leaves no room for the suffix (the log stores
    /// at most [`QueueName::MAX_LEN`] bytes of name).
    pub(crate) fn dlq_name(&self, queue: &QueueName) -> Option<QueueName> {
        let suffix = self.limits.dlq_suffix.as_deref()?;
        if queue.ends_with(suffix) || queue.len() + suffix.len() > QueueName::MAX_LEN {
            return None;
        }
        Some(queue.with_suffix(suffix))
    }

    fn record(&mut self, record: Record, waiter: bool) -> Option<oneshot::Receiver<Result<()>>> {
        self.pending.push(record, waiter)
    }

    /// Hands the records queued by the state changes so far to the log. Called with
    /// the state lock held, so log order is state-change order.
    pub(crate) fn flush(&mut self, log: &Log) {
        self.pending.hand_to(log);
    }

    /// Starts a send. The caller flushes the pending records to the log.
    pub(crate) fn send(
        &mut self,
        queue: &QueueName,
        header: EnqueueHeader,
        body: Bytes,
        now: u64,
    ) -> Result<SendOutcome> {
        if self.closed {
            return Err(Error::Closed);
        }
        if header.producer_id {
            match self.dedup.check(queue, header.id, now) {
                Seen::New => {}
                Seen::Durable => return Ok(SendOutcome::Duplicate),
                Seen::Pending(rx) => return Ok(SendOutcome::WaitDuplicate(rx)),
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
            self.dedup.begin(queue, header.id, header.timestamp_ms);
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

    pub(crate) fn add_consumer(&mut self, queue: &QueueName) -> (u64, Arc<Notify>) {
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
        queue: &QueueName,
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
        let in_order = vis == default_vis;
        while (taken.len() as u32) < credit {
            let Some((lsn, meta)) = q.deliver_next(consumer, deadline, in_order) else {
                break;
            };
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
            t.cached = self.cache.take(t.tag.lsn);
        }
        for r in records {
            // Delivery counts are persisted so that max_attempts survives a crash; nobody
            // waits for these records, they ride along with the next batch.
            self.record(r, false);
        }
        if !taken.is_empty() {
            self.timers.wake_for(deadline);
        }
        Ok(taken)
    }

    /// Starts a refill of `queue`'s head from its runs if it is low (or, with `want`,
    /// of that many messages whatever the head holds). The caller runs the job and
    /// hands the result to [`apply_refill`](State::apply_refill).
    pub(crate) fn refill_job(
        &mut self,
        queue: &QueueName,
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
    fn end_delivery(&mut self, queue: &QueueName, tag: DeliveryTag) -> Result<Meta> {
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
        queue: &QueueName,
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
        queue: &QueueName,
        lsn: u64,
        meta: Meta,
        waiter: bool,
    ) -> Option<oneshot::Receiver<Result<()>>> {
        match self.dlq_name(queue) {
            Some(dlq) => {
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
        // A queue whose name has no room for a DLQ name is retried forever too: with a
        // suffix configured, exhausted messages are meant to be kept, not dropped.
        let kept_forever = self
            .limits
            .dlq_suffix
            .as_deref()
            .is_some_and(|s| queue.ends_with(s) || queue.len() + s.len() > QueueName::MAX_LEN);
        !kept_forever
            && self
                .limits
                .max_attempts
                .is_some_and(|max| meta.deliveries >= max)
    }

    /// Returns a delivery to its queue (after `delay_ms`), or dead-letters it when
    /// it has used up its attempts.
    pub(crate) fn nack(
        &mut self,
        queue: &QueueName,
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
                self.timers.wake_for(due);
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
        queue: &QueueName,
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
        queue: &QueueName,
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
                q.deadlines.push_other(deadline, tag.lsn);
                q.trim_timeouts();
                self.timers.wake_for(deadline);
                Ok(())
            }
            _ => Err(Self::not_in_flight(queue, tag)),
        }
    }

    /// Moves every waiting message of `queue`'s dead-letter queue back to `queue`.
    pub(crate) fn redrive(
        &mut self,
        queue: &QueueName,
    ) -> (u64, Option<oneshot::Receiver<Result<()>>>) {
        let Some(dlq) = self.dlq_name(queue) else {
            return (0, None);
        };
        let Some((dlq, _)) = self.queues.get_key_value(&dlq) else {
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

    /// Fires due visibility timeouts and delays. Returns the next time anything is due.
    pub(crate) fn run_timers(&mut self, now: u64) -> Option<u64> {
        let names: Vec<QueueName> = self.queues.keys().cloned().collect();
        let mut next: Option<u64> = None;
        for name in names {
            let q = self.queues.get_mut(&*name).expect("listed");
            let (expired, due) = q.fire_timers(now);
            if let Some(t) = due {
                next = Some(next.map_or(t, |n| n.min(t)));
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
        self.timers.sleeping_until(next);
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
                    let dedup_until = header
                        .producer_id
                        .then(|| self.dedup.until(header.timestamp_ms));
                    self.segments.enqueued(loc.segment, dedup_until);
                    if header.producer_id {
                        self.dedup.durable(queue, header.id);
                    }
                    self.cache.insert(
                        a.lsn,
                        StoredMessage {
                            header: *header,
                            body: body.clone(),
                        },
                    );
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
                        self.timers.wake_for(header.not_before_ms);
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
                Record::Settle { target, .. } => self.segments.settled(*target),
                Record::Deliver { .. } | Record::Nack { .. } | Record::Move { .. } => {}
            }
        }
        for n in touched {
            n.notify_waiters();
        }
        self.segments.watermark(now)
    }

    /// Undoes the bookkeeping of records that could not be written.
    pub(crate) fn failed(&mut self, appends: &[Append]) {
        for a in appends {
            if let Record::Enqueue { queue, header, .. } = &a.record {
                if let Some(q) = self.queues.get_mut(&**queue) {
                    q.pending_sends = q.pending_sends.saturating_sub(1);
                }
                if header.producer_id {
                    self.dedup.failed(queue, header.id);
                }
            }
            // Acks, nacks and moves that failed were already applied in memory; the
            // log still has the message as delivered, so after a restart it is
            // delivered again (at-least-once).
        }
    }

    /// Wakes every waiting consumer (on close).
    pub(crate) fn wake_all(&self) {
        for q in self.queues.values() {
            q.notify.notify_waiters();
        }
    }
}
