//! Rebuilding the index from the log on open: each recovered record is applied
//! in log order, as its state change was when it was written.
//!
//! Replay makes the same decisions the live transitions made (where a message
//! waits, whether it spills), so a reopened index holds what the closed one
//! held, except that deliveries in flight at the crash are waiting again, with
//! their delivery counts kept.

use super::queue_state::{Meta, QueueState};
use super::State;
use crate::engine::backlog::{self, Slot};
use crate::error::Result;
use crate::name::QueueName;
use crate::storage::reader::SegmentReader;
use crate::storage::record::RecordView;
use crate::storage::recovery::Location;

impl State {
    /// The queue named in a replayed record, created on first use.
    fn replayed_queue(&mut self, name: &str) -> QueueName {
        match self.queues.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => {
                let k = QueueName::decoded(name);
                self.queues.insert(k.clone(), QueueState::new());
                k
            }
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
            let read = backlog::read_runs(reader, &job);
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
                let dedup_until = header
                    .producer_id
                    .then(|| self.dedup.until(header.timestamp_ms));
                self.segments.enqueued(loc.segment, dedup_until);
                if header.producer_id {
                    self.dedup
                        .replayed(queue, header.id, header.timestamp_ms, now);
                }
                let head = self.limits.ready_head;
                let name = self.replayed_queue(queue);
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
                    self.segments.settled(target);
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
                    let to = self.replayed_queue(to);
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
        self.segments.watermark(now);
        self.segments.live()
    }
}
