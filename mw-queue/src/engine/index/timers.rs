//! Timers: each queue's visibility deadlines ([`Deadlines`]) and the wake-up of
//! the manager's timer task ([`TimerWake`]).
//!
//! Deadlines are not removed when a delivery is settled or extended (that would
//! cost a search per ack); an entry is stale when the delivery it names is no
//! longer in flight with that deadline, and stale entries are dropped when they
//! reach the front.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use tokio::sync::Notify;

/// The next deadline of a queue, as [`Deadlines::next`] finds it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// The delivery of this LSN timed out (its entry was removed).
    Due(u64),
    /// Nothing is due before this time.
    Later(u64),
    /// No deadline is pending.
    None,
}

/// Visibility deadlines of one queue's deliveries, as (deadline, LSN).
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    /// Deadlines of deliveries with the default visibility timeout: taken in time
    /// order, so non-decreasing, and a deque suffices.
    in_order: VecDeque<(u64, u64)>,
    /// Deadlines that break that order (extended, or a consumer-specific timeout).
    other: BinaryHeap<Reverse<(u64, u64)>>,
}

impl Deadlines {
    /// A deadline of the default visibility timeout, not before any pushed so far.
    pub(super) fn push_in_order(&mut self, deadline_ms: u64, lsn: u64) {
        self.in_order.push_back((deadline_ms, lsn));
    }

    /// Any other deadline.
    pub(super) fn push_other(&mut self, deadline_ms: u64, lsn: u64) {
        self.other.push(Reverse((deadline_ms, lsn)));
    }

    /// Drops stale entries from the front, so the deadlines stay about as many as
    /// the deliveries in flight (acks mostly arrive in delivery order).
    pub(super) fn trim(&mut self, valid: impl Fn(u64, u64) -> bool) {
        while let Some(&(d, l)) = self.in_order.front() {
            if valid(d, l) {
                break;
            }
            self.in_order.pop_front();
        }
        while let Some(&Reverse((d, l))) = self.other.peek() {
            if valid(d, l) {
                break;
            }
            self.other.pop();
        }
    }

    /// The earliest deadline still `valid`: removed and returned as [`Next::Due`] if
    /// it is not after `now`. Stale entries met on the way are dropped.
    pub(super) fn next(&mut self, now: u64, valid: impl Fn(u64, u64) -> bool) -> Next {
        loop {
            let front = self.in_order.front().copied();
            let other = self.other.peek().map(|r| r.0);
            let ((d, lsn), from_deque) = match (front, other) {
                (None, None) => return Next::None,
                (Some(a), None) => (a, true),
                (None, Some(b)) => (b, false),
                (Some(a), Some(b)) => {
                    if a <= b {
                        (a, true)
                    } else {
                        (b, false)
                    }
                }
            };
            let is_valid = valid(d, lsn);
            if is_valid && d > now {
                return Next::Later(d);
            }
            if from_deque {
                self.in_order.pop_front();
            } else {
                self.other.pop();
            }
            if is_valid {
                return Next::Due(lsn);
            }
        }
    }

    /// Estimated bytes held.
    pub(super) fn memory_bytes(&self) -> usize {
        self.in_order.capacity() * 16 + self.other.capacity() * 16
    }
}

/// Wakes the manager's timer task when something falls due earlier than the
/// time it sleeps until.
#[derive(Debug)]
pub(super) struct TimerWake {
    /// The earliest time the timer task is known to wake at (0: unknown).
    next_wake_ms: u64,
    task: Arc<Notify>,
}

impl TimerWake {
    /// Wakes `task` when needed.
    pub(super) fn new(task: Arc<Notify>) -> Self {
        TimerWake {
            next_wake_ms: 0,
            task,
        }
    }

    /// Something falls due at `at_ms`: wakes the task if it would sleep past it.
    pub(super) fn wake_for(&mut self, at_ms: u64) {
        if at_ms < self.next_wake_ms || self.next_wake_ms == 0 {
            self.next_wake_ms = at_ms;
            self.task.notify_one();
        }
    }

    /// The task ran and will next wake at `next` (never for `None`).
    pub(super) fn sleeping_until(&mut self, next: Option<u64>) {
        self.next_wake_ms = next.unwrap_or(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_fall_due_in_time_order_across_both_kinds() {
        let mut d = Deadlines::default();
        d.push_in_order(10, 1);
        d.push_in_order(30, 2);
        d.push_other(20, 3);
        let all = |_, _| true;
        assert_eq!(d.next(5, all), Next::Later(10));
        assert_eq!(d.next(100, all), Next::Due(1));
        assert_eq!(d.next(100, all), Next::Due(3));
        assert_eq!(d.next(100, all), Next::Due(2));
        assert_eq!(d.next(100, all), Next::None);
    }

    #[test]
    fn stale_deadlines_never_fall_due() {
        let mut d = Deadlines::default();
        d.push_in_order(10, 1); // settled since
        d.push_in_order(20, 2);
        let valid = |_, lsn| lsn != 1;
        assert_eq!(
            d.next(5, valid),
            Next::Later(20),
            "the stale one is skipped"
        );
        assert_eq!(d.next(25, valid), Next::Due(2));
    }

    #[test]
    fn trim_drops_stale_entries_at_the_front_only() {
        let mut d = Deadlines::default();
        d.push_in_order(10, 1);
        d.push_in_order(20, 2);
        d.push_in_order(30, 3);
        d.trim(|_, lsn| lsn == 2);
        assert_eq!(
            d.in_order.len(),
            2,
            "entry 3 waits behind the valid entry 2"
        );
    }

    #[tokio::test]
    async fn the_timer_task_is_woken_only_for_something_earlier() {
        let task = Arc::new(Notify::new());
        let mut w = TimerWake::new(task.clone());
        w.sleeping_until(Some(100));
        w.wake_for(200);
        let woken = task.notified();
        tokio::pin!(woken);
        assert!(
            futures::poll!(woken.as_mut()).is_pending(),
            "sleeps until 100 anyway"
        );
        w.wake_for(50);
        assert!(futures::poll!(woken.as_mut()).is_ready());
    }
}
