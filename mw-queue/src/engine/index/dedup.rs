//! [`DedupWindow`]: producer-chosen message ids seen within the dedup window,
//! so a resend of a stored message is acknowledged without being stored twice.
//!
//! Ids are per queue: the same id sent to two queues is two messages. (A window for the
//! whole broker would let one producer's id silently cancel another's message on another
//! queue, and with logins, one user's on another user's queue.)
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

/// A producer-chosen id on its queue.
type Key = (Box<str>, u128);

fn key(queue: &str, id: u128) -> Key {
    (queue.into(), id)
}

/// Producer-chosen ids and when each leaves the window.
#[derive(Debug)]
pub(super) struct DedupWindow {
    window_ms: u64,
    entries: HashMap<Key, DedupEntry>,
    /// (until, key) in insertion order. Send times are read before the state lock
    /// is taken, so this is only roughly sorted by `until`: an entry may outlive
    /// its window until the ones before it expire.
    order: VecDeque<(u64, Key)>,
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
    pub(super) fn check(&mut self, queue: &str, id: u128, now: u64) -> Seen {
        self.expire(now);
        match self.entries.get_mut(&key(queue, id)) {
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
    pub(super) fn begin(&mut self, queue: &str, id: u128, sent_at_ms: u64) {
        let until = self.until(sent_at_ms);
        self.entries.insert(
            key(queue, id),
            DedupEntry {
                until_ms: until,
                waiters: Some(Vec::new()),
            },
        );
        self.order.push_back((until, key(queue, id)));
    }

    /// The first send of `id` is durable: waiting duplicates are acknowledged.
    pub(super) fn durable(&mut self, queue: &str, id: u128) {
        if let Some(e) = self.entries.get_mut(&key(queue, id)) {
            for w in e.waiters.take().into_iter().flatten() {
                let _ = w.send(true);
            }
        }
    }

    /// The first send of `id` failed: the id leaves the window and waiting
    /// duplicates are told to store the message themselves.
    pub(super) fn failed(&mut self, queue: &str, id: u128) {
        if let Some(e) = self.entries.remove(&key(queue, id)) {
            for w in e.waiters.into_iter().flatten() {
                let _ = w.send(false);
            }
        }
    }

    /// Replay found `id` stored at `sent_at_ms`: it is inside the window if the
    /// window has not ended by `now`.
    pub(super) fn replayed(&mut self, queue: &str, id: u128, sent_at_ms: u64, now: u64) {
        let until = self.until(sent_at_ms);
        if until > now {
            self.entries.insert(
                key(queue, id),
                DedupEntry {
                    until_ms: until,
                    waiters: None,
                },
            );
            self.order.push_back((until, key(queue, id)));
        }
    }

    /// Ids inside the window.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Estimated bytes held.
    pub(super) fn memory_bytes(&self) -> usize {
        // Each key's name is counted twice (entries and order), at a typical length.
        self.entries.capacity() * (64 + 32) + self.order.capacity() * (40 + 32)
    }

    fn expire(&mut self, now: u64) {
        while let Some((until, _)) = self.order.front() {
            if *until > now {
                break;
            }
            let Some((until, k)) = self.order.pop_front() else {
                break;
            };
            // A pending first send keeps its entry: its duplicates still wait on it.
            if self
                .entries
                .get(&k)
                .is_some_and(|e| e.until_ms == until && e.waiters.is_none())
            {
                self.entries.remove(&k);
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
        assert!(matches!(w.check("q", 7, 0), Seen::New));
        w.begin("q", 7, 0);
        w.durable("q", 7);
        assert!(matches!(w.check("q", 7, 999), Seen::Durable));
        assert!(matches!(w.check("q", 7, 1_000), Seen::New));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_duplicate_of_a_pending_send_learns_its_outcome() {
        let mut w = DedupWindow::new(1_000);
        w.begin("q", 1, 0);
        let Seen::Pending(mut ok) = w.check("q", 1, 10) else {
            panic!("first send still pending")
        };
        w.begin("q", 2, 0);
        let Seen::Pending(mut failed) = w.check("q", 2, 10) else {
            panic!("first send still pending")
        };
        w.durable("q", 1);
        w.failed("q", 2);
        assert_eq!(ok.try_recv(), Ok(true));
        assert_eq!(failed.try_recv(), Ok(false));
        assert!(
            matches!(w.check("q", 2, 10), Seen::New),
            "a failed send is forgotten"
        );
    }

    #[test]
    fn a_pending_send_outlives_its_window_until_it_ends() {
        let mut w = DedupWindow::new(100);
        w.begin("q", 1, 0);
        assert!(matches!(w.check("q", 1, 500), Seen::Pending(_)));
    }

    #[test]
    fn ids_are_per_queue() {
        let mut w = DedupWindow::new(1_000);
        w.begin("a", 7, 0);
        w.durable("a", 7);
        assert!(matches!(w.check("a", 7, 10), Seen::Durable));
        assert!(
            matches!(w.check("b", 7, 10), Seen::New),
            "the same id on another queue is another message"
        );
    }

    #[test]
    fn replay_keeps_only_ids_whose_window_has_not_ended() {
        let mut w = DedupWindow::new(1_000);
        w.replayed("q", 1, 0, 2_000);
        w.replayed("q", 2, 1_500, 2_000);
        assert!(matches!(w.check("q", 1, 2_000), Seen::New));
        assert!(matches!(w.check("q", 2, 2_000), Seen::Durable));
    }
}
