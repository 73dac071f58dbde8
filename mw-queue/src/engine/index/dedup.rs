//! [`DedupWindow`]: producer-chosen message ids seen within the dedup window,
//! so a resend of a stored message is acknowledged without being stored twice.
//!
//! An id enters the window when its first send starts, not when it is durable:
//! a duplicate arriving while the first send is still being written waits for
//! that send's outcome ([`Seen::Pending`]) instead of being stored a second
//! time. If the first send fails, the id leaves the window and the waiting
//! duplicates are told so, so one of them can store the message.

use std::collections::{HashMap, VecDeque};

use tokio::sync::oneshot;

#[derive(Debug)]
struct DedupEntry {
    until_ms: u64,
    /// `Some` while the first send is not yet durable: duplicates wait here.
    waiters: Option<Vec<oneshot::Sender<bool>>>,
}

/// What the window knows about an id a producer sends again.
#[derive(Debug)]
pub(super) enum Seen {
    /// Not inside the window: store the message.
    New,
    /// Stored and durable: acknowledge without storing.
    Durable,
    /// Its first send is still being written: `true` once durable, `false` if it failed.
    Pending(oneshot::Receiver<bool>),
}

/// Producer-chosen ids and when each leaves the window.
#[derive(Debug)]
pub(super) struct DedupWindow {
    window_ms: u64,
    entries: HashMap<u128, DedupEntry>,
    /// (until, id) in insertion order. Send times are read before the state lock
    /// is taken, so this is only roughly sorted by `until`: an entry may outlive
    /// its window until the ones before it expire.
    order: VecDeque<(u64, u128)>,
}

impl DedupWindow {
    /// An empty window `window_ms` long.
    pub(super) fn new(window_ms: u64) -> Self {
        DedupWindow {
            window_ms,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// When an id sent at `sent_at_ms` leaves the window.
    pub(super) fn until(&self, sent_at_ms: u64) -> u64 {
        sent_at_ms.saturating_add(self.window_ms)
    }

    /// Whether `id` is inside the window at `now` (expired entries are dropped
    /// first). A pending first send registers the caller as a waiter.
    pub(super) fn check(&mut self, id: u128, now: u64) -> Seen {
        self.expire(now);
        match self.entries.get_mut(&id) {
            None => Seen::New,
            Some(DedupEntry { waiters: None, .. }) => Seen::Durable,
            Some(DedupEntry {
                waiters: Some(w), ..
            }) => {
                let (tx, rx) = oneshot::channel();
                w.push(tx);
                Seen::Pending(rx)
            }
        }
    }

    /// The first send of `id` (sent at `sent_at_ms`) starts: duplicates wait for it.
    pub(super) fn begin(&mut self, id: u128, sent_at_ms: u64) {
        let until = self.until(sent_at_ms);
        self.entries.insert(
            id,
            DedupEntry {
                until_ms: until,
                waiters: Some(Vec::new()),
            },
        );
        self.order.push_back((until, id));
    }

    /// The first send of `id` is durable: waiting duplicates are acknowledged.
    pub(super) fn durable(&mut self, id: u128) {
        if let Some(e) = self.entries.get_mut(&id) {
            for w in e.waiters.take().into_iter().flatten() {
                let _ = w.send(true);
            }
        }
    }

    /// The first send of `id` failed: the id leaves the window and waiting
    /// duplicates are told to store the message themselves.
    pub(super) fn failed(&mut self, id: u128) {
        if let Some(e) = self.entries.remove(&id) {
            for w in e.waiters.into_iter().flatten() {
                let _ = w.send(false);
            }
        }
    }

    /// Replay found `id` stored at `sent_at_ms`: it is inside the window if the
    /// window has not ended by `now`.
    pub(super) fn replayed(&mut self, id: u128, sent_at_ms: u64, now: u64) {
        let until = self.until(sent_at_ms);
        if until > now {
            self.entries.insert(
                id,
                DedupEntry {
                    until_ms: until,
                    waiters: None,
                },
            );
            self.order.push_back((until, id));
        }
    }

    /// Ids inside the window.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Estimated bytes held.
    pub(super) fn memory_bytes(&self) -> usize {
        self.entries.capacity() * 48 + self.order.capacity() * 24
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(until, id)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            // A pending first send keeps its entry: its duplicates still wait on it.
            if self
                .entries
                .get(&id)
                .is_some_and(|e| e.until_ms == until && e.waiters.is_none())
            {
                self.entries.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_a_duplicate_inside_the_window_and_new_after_it() {
        let mut w = DedupWindow::new(1_000);
        assert!(matches!(w.check(7, 0), Seen::New));
        w.begin(7, 0);
        w.durable(7);
        assert!(matches!(w.check(7, 999), Seen::Durable));
        assert!(matches!(w.check(7, 1_000), Seen::New));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_duplicate_of_a_pending_send_learns_its_outcome() {
        let mut w = DedupWindow::new(1_000);
        w.begin(1, 0);
        let Seen::Pending(mut ok) = w.check(1, 10) else {
            panic!("first send still pending")
        };
        w.begin(2, 0);
        let Seen::Pending(mut failed) = w.check(2, 10) else {
            panic!("first send still pending")
        };
        w.durable(1);
        w.failed(2);
        assert_eq!(ok.try_recv(), Ok(true));
        assert_eq!(failed.try_recv(), Ok(false));
        assert!(
            matches!(w.check(2, 10), Seen::New),
            "a failed send is forgotten"
        );
    }

    #[test]
    fn a_pending_send_outlives_its_window_until_it_ends() {
        let mut w = DedupWindow::new(100);
        w.begin(1, 0);
        assert!(matches!(w.check(1, 500), Seen::Pending(_)));
    }

    #[test]
    fn replay_keeps_only_ids_whose_window_has_not_ended() {
        let mut w = DedupWindow::new(1_000);
        w.replayed(1, 0, 2_000);
        w.replayed(2, 1_500, 2_000);
        assert!(matches!(w.check(1, 2_000), Seen::New));
        assert!(matches!(w.check(2, 2_000), Seen::Durable));
    }
}
