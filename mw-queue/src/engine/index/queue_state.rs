//! [`QueueState`]: one named queue in memory: its never-delivered head and
//! spilled runs, returned and delayed messages, deliveries in flight with their
//! deadlines, and attached consumers.
//!
//! Invariants: a message is in exactly one of `ready`, `runs`, `retry`,
//! `delayed` and `in_flight`; every message in `runs` is newer than every one
//! in `ready`; `ready` is in LSN order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::Notify;

use super::timers::{Deadlines, Next};
use crate::engine::backlog::{RefillJob, RefillRead, RunSnapshot, Slot};
use crate::error::{Error, Result};
use crate::message::DeliveryTag;
use crate::name::QueueName;

/// A stretch of a queue's spilled backlog: its never-delivered messages in one
/// segment, from `offset` on (see the `backlog` module for what counts).
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    /// First LSN of the segment (its name). Every message of the run has a larger LSN.
    pub(super) segment: u64,
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

/// A delivery in flight.
#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight {
    pub(super) meta: Meta,
    /// When it becomes visible again if not settled.
    pub(super) deadline_ms: u64,
    /// The consumer holding it (whose credit it uses).
    pub(super) consumer: u64,
}

/// An attached consumer.
#[derive(Debug, Default)]
pub(super) struct ConsumerState {
    /// Deliveries it holds unsettled; at most its prefetch.
    pub(super) outstanding: u32,
    /// Closed by an administrator: its next fetch fails with `ConsumerClosed`.
    pub(super) closed: bool,
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

/// One named queue.
#[derive(Debug)]
pub(super) struct QueueState {
    /// The in-memory head of the never-delivered backlog, in LSN order.
    pub(super) ready: VecDeque<Slot>,
    /// The rest of it, spilled: every message here is newer than every one in `ready`.
    pub(super) runs: VecDeque<Run>,
    /// Messages in `runs`.
    pub(super) spilled: u64,
    /// A refill of `ready` from `runs` is under way (at most one per queue).
    pub(super) refilling: bool,
    /// A failed refill, reported to the next taker.
    pub(super) refill_error: Option<Error>,
    /// Returned for redelivery (nacked, timed out, moved here, in flight at a crash),
    /// by LSN: delivered before newer ones.
    pub(super) retry: BTreeMap<u64, Meta>,
    /// Not deliverable before their due time, by (due, LSN).
    pub(super) delayed: BTreeMap<(u64, u64), Meta>,
    /// The due time of each delayed LSN (to find it in `delayed`).
    pub(super) delayed_due: HashMap<u64, u64>,
    /// Delivered and not settled, by LSN.
    pub(super) in_flight: HashMap<u64, InFlight>,
    /// Visibility deadlines of `in_flight`.
    pub(super) deadlines: Deadlines,
    /// Sends accepted and not yet durable (they count against the length limit).
    pub(super) pending_sends: u64,
    pub(super) consumers: HashMap<u64, ConsumerState>,
    /// Created only because a consumer attached, and nothing stored in it since: such a
    /// queue is forgotten when its last consumer leaves, so receiving from a mistyped
    /// name leaves no queue behind.
    pub(super) unused: bool,
    pub notify: Arc<Notify>,
}

impl QueueState {
    pub(super) fn new() -> Self {
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
            deadlines: Deadlines::default(),
            pending_sends: 0,
            consumers: HashMap::new(),
            unused: false,
            notify: Arc::new(Notify::new()),
        }
    }

    /// Messages not in flight (ready, returned and delayed).
    pub(super) fn depth(&self) -> u64 {
        (self.ready.len() + self.retry.len() + self.delayed.len()) as u64 + self.spilled
    }

    /// Whether new never-delivered messages go to the runs instead of `ready`.
    pub(super) fn spilling(&self, head: usize) -> bool {
        !self.runs.is_empty() || self.ready.len() >= head
    }

    /// Adds a never-delivered, not delayed message: to the head, or spilled.
    pub(super) fn push_ready(&mut self, slot: Slot, segment: u64, head: usize) {
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
    pub(super) fn push_due(&mut self, slot: Slot, segment: u64, head: usize) {
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
    pub(super) fn refill_job(
        &mut self,
        name: &QueueName,
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
    pub(super) fn apply_refill(&mut self, read: Result<RefillRead>) {
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

    pub(super) fn len(&self) -> u64 {
        self.depth() + self.in_flight.len() as u64
    }

    /// Puts the next message to deliver in flight for `consumer` until `deadline_ms`
    /// and returns it with its delivery count raised; `None` when nothing may go now.
    ///
    /// The next message is the older of the head's first and the first returned
    /// one. With the head empty and runs left, a returned message goes only if it is
    /// older than every spilled one; otherwise nothing goes until the refill, which
    /// keeps send order. `in_order` says the deadline is not before any taken so far
    /// (the default visibility timeout).
    pub(super) fn deliver_next(
        &mut self,
        consumer: u64,
        deadline_ms: u64,
        in_order: bool,
    ) -> Option<(u64, Meta)> {
        let bound = match (self.ready.is_empty(), self.runs.front()) {
            (true, Some(r)) => r.segment,
            _ => u64::MAX,
        };
        let retry = self.retry.first_key_value().filter(|(k, _)| **k < bound);
        let from_ready = match (self.ready.front(), retry) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(s), Some((k, _))) => s.lsn < *k,
        };
        let (lsn, mut meta) = if from_ready {
            let s = self.ready.pop_front().expect("checked");
            (
                s.lsn,
                Meta {
                    offset: s.offset,
                    len: s.len,
                    deliveries: 0,
                },
            )
        } else {
            self.retry.pop_first().expect("checked")
        };
        meta.deliveries += 1;
        self.in_flight.insert(
            lsn,
            InFlight {
                meta,
                deadline_ms,
                consumer,
            },
        );
        if in_order {
            self.deadlines.push_in_order(deadline_ms, lsn);
        } else {
            self.deadlines.push_other(deadline_ms, lsn);
        }
        Some((lsn, meta))
    }

    /// Removes `lsn` from wherever it waits (not in flight).
    pub(super) fn take_waiting(&mut self, lsn: u64) -> Option<Meta> {
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
    pub(super) fn drain_waiting(&mut self) -> Vec<(u64, Meta)> {
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
    pub(super) fn browse(&self, max: usize) -> Vec<(u64, Meta, Waiting)> {
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

    pub(super) fn insert_delayed(&mut self, lsn: u64, due: u64, meta: Meta) {
        self.delayed.insert((due, lsn), meta);
        self.delayed_due.insert(lsn, due);
    }

    /// Drops stale deadlines from the front (see [`Deadlines::trim`]).
    pub(super) fn trim_timeouts(&mut self) {
        let in_flight = &self.in_flight;
        self.deadlines
            .trim(|d, lsn| in_flight.get(&lsn).is_some_and(|f| f.deadline_ms == d));
    }

    /// Fires what is due at `now`: delayed messages become returned ones, and
    /// deliveries whose visibility timeout passed leave flight (their consumers'
    /// credit is freed). Returns those deliveries, for the caller to return or
    /// dead-letter, and the next time anything is due.
    pub(super) fn fire_timers(&mut self, now: u64) -> (Vec<(u64, Meta)>, Option<u64>) {
        let mut expired = Vec::new();
        let mut next: Option<u64> = None;
        loop {
            let in_flight = &self.in_flight;
            let valid = |d, lsn| {
                in_flight
                    .get(&lsn)
                    .is_some_and(|f: &InFlight| f.deadline_ms == d)
            };
            match self.deadlines.next(now, valid) {
                Next::None => break,
                Next::Later(d) => {
                    next = Some(d);
                    break;
                }
                Next::Due(lsn) => {
                    let f = self.in_flight.remove(&lsn).expect("valid deadline");
                    if let Some(c) = self.consumers.get_mut(&f.consumer) {
                        c.outstanding = c.outstanding.saturating_sub(1);
                    }
                    expired.push((lsn, f.meta));
                }
            }
        }
        while let Some((&(due, lsn), _)) = self.delayed.first_key_value() {
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
                break;
            }
            let meta = self.delayed.remove(&(due, lsn)).expect("first");
            self.delayed_due.remove(&lsn);
            self.retry.insert(lsn, meta);
            self.notify.notify_waiters();
        }
        if !expired.is_empty() {
            self.notify.notify_waiters();
        }
        (expired, next)
    }

    /// Takes the in-flight entry for `tag`, freeing the consumer's credit.
    pub(super) fn take_in_flight(&mut self, tag: DeliveryTag) -> Option<Meta> {
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

    pub(super) fn memory_bytes(&self) -> usize {
        self.ready.capacity() * std::mem::size_of::<Slot>()
            + self.runs.capacity() * std::mem::size_of::<Run>()
            + self.retry.len() * 40
            + self.delayed.len() * 48
            + self.delayed_due.capacity() * 17
            + self.in_flight.capacity() * (8 + std::mem::size_of::<InFlight>() + 1)
            + self.deadlines.memory_bytes()
    }
}
