//! The streams a node hands out: [`ScanState`] pages through the engine in key order;
//! [`WatchState`] replays retained history, then follows the bus, and falls back to the
//! history whenever the bus dropped batches for it (so it never skips a revision).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use mw::pubsub::Subscription;

use crate::error::{KvError, Result};
use crate::state::{live, Clock, Shared};
use crate::storage::Storage;
use crate::types::{Entry, Event};

/// Retained events read per storage call when a watcher catches up.
const HISTORY_PAGE: usize = 256;
/// Entries read per storage call by a scan.
const SCAN_PAGE: usize = 256;

/// Decrements the watcher count when a watch stream is dropped.
pub(crate) struct WatcherCount(pub(crate) Arc<Shared>);

impl Drop for WatcherCount {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) struct ScanState {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) clock: Clock,
    pub(crate) prefix: Bytes,
    pub(crate) after: Option<Bytes>,
    pub(crate) left: usize,
    pub(crate) page: VecDeque<Entry>,
    pub(crate) done: bool,
}

impl ScanState {
    pub(crate) async fn next(mut self) -> Option<(Result<Entry>, ScanState)> {
        loop {
            if self.left == 0 {
                return None;
            }
            if let Some(e) = self.page.pop_front() {
                self.left -= 1;
                return Some((Ok(e), self));
            }
            if self.done {
                return None;
            }
            let page = self
                .storage
                .scan(&self.prefix, self.after.as_deref(), SCAN_PAGE);
            match page {
                Err(e) => {
                    self.done = true;
                    self.left = 0;
                    return Some((Err(e), self));
                }
                Ok(entries) => {
                    if entries.len() < SCAN_PAGE {
                        self.done = true;
                    }
                    self.after = entries.last().map(|e| e.key.clone());
                    let now = self.clock.now_ms();
                    self.page
                        .extend(entries.into_iter().filter(|e| live(&e.value, now)));
                }
            }
        }
    }
}

pub(crate) struct WatchState {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) prefix: Bytes,
    pub(crate) sub: Option<Subscription>,
    /// The next revision this watcher has not looked at.
    pub(crate) next: u64,
    /// Reading retained history (at the start, and after the bus dropped batches).
    pub(crate) catching_up: bool,
    pub(crate) ready: VecDeque<Event>,
    pub(crate) done: bool,
    pub(crate) _count: WatcherCount,
}

impl WatchState {
    fn take(&mut self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            if e.revision < self.next {
                continue;
            }
            self.next = e.revision + 1;
            if e.key.starts_with(&self.prefix) {
                self.ready.push_back(e);
            }
        }
    }

    pub(crate) async fn next(mut self) -> Option<(Result<Event>, WatchState)> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some((Ok(e), self));
            }
            if self.done {
                return None;
            }
            if self.catching_up {
                let oldest = self.shared.oldest_event.load(Ordering::SeqCst);
                if self.next < oldest {
                    self.done = true;
                    let err = KvError::Compacted {
                        requested: self.next,
                        oldest,
                    };
                    return Some((Err(err), self));
                }
                let committed = self.shared.revision.load(Ordering::SeqCst);
                if self.next > committed {
                    self.catching_up = false;
                    continue;
                }
                match self.storage.events(self.next, HISTORY_PAGE) {
                    Ok(events) => {
                        let before = self.next;
                        self.take(events);
                        if self.next == before {
                            // Nothing retained at `next` although it is committed: it
                            // was compacted between the check and the read.
                            let oldest = self.shared.oldest_event.load(Ordering::SeqCst);
                            self.done = true;
                            let err = KvError::Compacted {
                                requested: self.next,
                                oldest,
                            };
                            return Some((Err(err), self));
                        }
                    }
                    Err(e) => {
                        self.done = true;
                        return Some((Err(e), self));
                    }
                }
                continue;
            }
            let sub = self.sub.as_mut()?;
            let event = match sub.recv().await {
                Ok(ev) => ev,
                Err(_) => return None, // the store closed
            };
            match postcard::from_bytes::<Vec<Event>>(&event.payload) {
                Ok(events) => {
                    if event.dropped_before > 0
                        || events.first().is_some_and(|e| e.revision > self.next)
                    {
                        // The bus dropped batches this watcher was too slow for. They
                        // are committed, so the retained history has them: re-read.
                        self.catching_up = true;
                        continue;
                    }
                    self.take(events);
                }
                Err(e) => {
                    self.done = true;
                    return Some((Err(KvError::storage("decode event batch", e)), self));
                }
            }
        }
    }
}
