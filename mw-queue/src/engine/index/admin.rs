//! What administrators and monitoring see and do: counters, listings,
//! browsing without delivering, purging and deleting queues, closing consumers.

use tokio::sync::oneshot;

use super::queue_state::{Meta, QueueState, Waiting};
use super::{Browsed, ConsumerInfo, MemoryStats, QueueStats, State};
use crate::error::{Error, Result};
use crate::name::QueueName;
use crate::storage::record::{Record, SettleReason};

impl State {
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

    /// The state of `queue` for an administrative change: `UnknownQueue` unless it
    /// [`exists`](State::exists); `None` for a dead-letter queue that never held a
    /// message (and so has no state).
    fn known_queue_mut(&mut self, queue: &QueueName) -> Result<Option<&mut QueueState>> {
        if !self.exists(queue) {
            return Err(Error::UnknownQueue(queue.to_string()));
        }
        Ok(self.queues.get_mut(&**queue))
    }

    /// Drops every waiting message of `queue` (ready, returned, delayed; not those in
    /// flight). Spilled messages must have been read back first.
    pub(crate) fn purge(
        &mut self,
        queue: &QueueName,
    ) -> Result<(u64, Option<oneshot::Receiver<Result<()>>>)> {
        let Some(q) = self.known_queue_mut(queue)? else {
            return Ok((0, None));
        };
        let dropped = q.drain_waiting();
        Ok(self.settle_dropped(queue, dropped))
    }

    /// Drops every message of `queue`, in flight too, and forgets the queue. Refused
    /// while consumers are attached (their deliveries would vanish under them).
    pub(crate) fn delete(
        &mut self,
        queue: &QueueName,
    ) -> Result<(u64, Option<oneshot::Receiver<Result<()>>>)> {
        let Some(q) = self.known_queue_mut(queue)? else {
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
        queue: &QueueName,
        dropped: Vec<(u64, Meta)>,
    ) -> (u64, Option<oneshot::Receiver<Result<()>>>) {
        let n = dropped.len() as u64;
        let mut rx = None;
        let last = dropped.len().saturating_sub(1);
        for (i, (lsn, _)) in dropped.into_iter().enumerate() {
            self.cache.take(lsn);
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
            cached: self.cache.get(lsn).cloned(),
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
                cached: self.cache.get(lsn).cloned(),
            })
            .collect())
    }

    pub(crate) fn stats(&self, queue: &str) -> QueueStats {
        let Some(q) = self.queues.get(queue) else {
            return QueueStats::default();
        };
        let dead_letters = self
            .limits
            .dlq_suffix
            .as_deref()
            .filter(|suffix| !queue.ends_with(suffix))
            .and_then(|suffix| self.queues.get(format!("{queue}{suffix}").as_str()))
            .map_or(0, |d| d.len());
        QueueStats {
            depth: q.depth(),
            delayed: q.delayed.len() as u64,
            in_flight: q.in_flight.len() as u64,
            consumers: q.consumers.len() as u64,
            dead_letters,
        }
    }

    pub(crate) fn queue_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.queues.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    pub(crate) fn memory(&self) -> MemoryStats {
        let mut m = MemoryStats {
            cache_bytes: self.cache.bytes() as u64,
            dedup_entries: self.dedup.len() as u64,
            ..MemoryStats::default()
        };
        let mut bytes = self.dedup.memory_bytes() + self.segments.len() * 40;
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
