//! [`PendingRecords`]: records the index has decided on and numbered, waiting to
//! be handed to the log writer.
//!
//! Every state change that must reach the disk pushes its record here while the
//! state lock is held, taking the next LSN; the caller hands the whole batch to
//! the log before releasing the lock. So LSN order, log order and the order of
//! the state changes are one order, and replay rebuilds the same state.

use tokio::sync::oneshot;

use crate::error::Result;
use crate::storage::log::{Append, Log};
use crate::storage::record::Record;

/// Records numbered but not yet handed to the log, in LSN order.
#[derive(Debug)]
pub(super) struct PendingRecords {
    /// The LSN the next record gets; LSNs strictly increase.
    next_lsn: u64,
    records: Vec<Append>,
}

impl PendingRecords {
    /// Empty, numbering from LSN 1 (a fresh log).
    pub(super) fn new() -> Self {
        PendingRecords {
            next_lsn: 1,
            records: Vec::new(),
        }
    }

    /// Continues numbering after a recovered log.
    pub(super) fn set_next_lsn(&mut self, lsn: u64) {
        self.next_lsn = lsn;
    }

    /// Numbers `record` and queues it. With `waiter`, returns a receiver completed
    /// once the record is durable (or failed to be written); without, nobody waits
    /// and the record rides along with the next batch.
    pub(super) fn push(
        &mut self,
        record: Record,
        waiter: bool,
    ) -> Option<oneshot::Receiver<Result<()>>> {
        let (done, rx) = if waiter {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        self.records.push(Append { lsn, record, done });
        rx
    }

    /// Hands everything queued to the log. Called with the state lock held, so log
    /// order is state-change order.
    pub(super) fn hand_to(&mut self, log: &Log) {
        if !self.records.is_empty() {
            log.append(self.records.drain(..));
        }
    }

    /// Takes everything queued, as the log would (tests drive the index without one).
    #[cfg(test)]
    pub(super) fn take(&mut self) -> Vec<Append> {
        std::mem::take(&mut self.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::SettleReason;

    fn settle(target: u64) -> Record {
        Record::Settle {
            queue: "q".into(),
            target,
            reason: SettleReason::Acked,
        }
    }

    #[test]
    fn records_are_numbered_in_push_order_from_the_next_lsn() {
        let mut p = PendingRecords::new();
        p.set_next_lsn(41);
        assert!(p.push(settle(1), false).is_none());
        assert!(p.push(settle(2), true).is_some());
        let lsns: Vec<u64> = p.take().iter().map(|a| a.lsn).collect();
        assert_eq!(lsns, [41, 42]);
        p.push(settle(3), false);
        assert_eq!(p.take()[0].lsn, 43, "numbering continues after a take");
    }

    #[test]
    fn only_a_record_pushed_with_a_waiter_carries_a_completion() {
        let mut p = PendingRecords::new();
        p.push(settle(1), false);
        let mut rx = p.push(settle(2), true).expect("asked for a waiter");
        let mut taken = p.take();
        assert!(taken[0].done.is_none());
        let done = taken[1].done.take().expect("waiter");
        done.send(Ok(())).unwrap();
        assert!(matches!(rx.try_recv(), Ok(Ok(()))));
    }
}
