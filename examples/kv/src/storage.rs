//! The storage seam: what the node needs from an engine, and an in-memory engine.
//!
//! The node keeps one writer (see [`crate::kv`]) that turns a group of operations into
//! one [`Batch`] and hands it to [`Storage::commit`]: the values written or removed, the
//! watch events of those changes, the node's new revision and the compaction watermark,
//! all applied atomically. Reads ([`get`](Storage::get), [`scan`](Storage::scan),
//! [`events`](Storage::events)) run concurrently with the writer. Engines:
//! [`MemoryStorage`] (tests, and nodes that need no persistence) and
//! [`RedbStorage`](crate::redb_engine::RedbStorage) (the on-disk default; the README
//! says why redb).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Mutex;

use bytes::Bytes;

use crate::error::Result;
use crate::types::{Entry, Event, Versioned};

/// One key's change inside a [`Batch`].
#[derive(Debug, Clone)]
pub struct Write {
    /// The key.
    pub key: Bytes,
    /// The expiry time of the value being replaced, if it had one (so the engine can
    /// drop it from its expiry index).
    pub old_expiry: Option<u64>,
    /// The new value (`None`: remove the key).
    pub new: Option<Versioned>,
}

/// Everything one group commit changes, applied atomically by [`Storage::commit`].
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Key changes, in order (a key may appear more than once; the last one wins).
    pub writes: Vec<Write>,
    /// The watch events of these changes, in revision order.
    pub events: Vec<Event>,
    /// The node's revision after the batch.
    pub revision: u64,
    /// Remove retained events with revisions below this one (0: keep all).
    pub compact_below: u64,
}

/// Persistent state of a node besides its keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    /// The revision of the last committed change (0 for a new store).
    pub revision: u64,
    /// Events below this revision were compacted away (1: none were).
    pub oldest_event: u64,
}

/// A storage engine under one node.
///
/// Implementations are internally synchronized: reads may run on any thread while one
/// writer commits. Calls may block on I/O; [`blocking`](Storage::blocking) tells the node
/// whether to run commits off the async workers.
pub trait Storage: Send + Sync + 'static {
    /// The engine's name, as `status` reports it.
    fn name(&self) -> &'static str;
    /// Whether calls may block on I/O (the node then runs commits on the blocking pool).
    fn blocking(&self) -> bool;
    /// The stored value of `key`, expired or not.
    fn get(&self, key: &[u8]) -> Result<Option<Versioned>>;
    /// Up to `limit` entries whose keys start with `prefix` and sort after `start_after`,
    /// in key order (expired ones included; the node filters them).
    fn scan(&self, prefix: &[u8], start_after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>>;
    /// Up to `limit` retained events with revision `>= from`, in revision order.
    fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>>;
    /// Up to `limit` keys whose expiry time is `<= now_ms`, earliest first.
    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Bytes>>;
    /// The revision and compaction watermark.
    fn meta(&self) -> Result<Meta>;
    /// Applies `batch` atomically; with `sync`, it is on stable storage when this returns.
    fn commit(&self, batch: &Batch, sync: bool) -> Result<()>;
    /// Makes every earlier commit durable.
    fn sync(&self) -> Result<()>;
}

/// The upper end of the key range that starts with `prefix` (`None`: unbounded).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// An engine that keeps everything in memory: for tests and throwaway nodes. Commits
/// never block, so it also runs under tokio's paused test time.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    state: Mutex<MemState>,
}

#[derive(Debug, Default)]
struct MemState {
    data: BTreeMap<Bytes, Versioned>,
    events: BTreeMap<u64, Event>,
    expiry: BTreeSet<(u64, Bytes)>,
    meta: Meta,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        // A panic while holding this lock is a bug in this file; the state is still
        // consistent (each method mutates only after its checks), so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn blocking(&self) -> bool {
        false
    }

    fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        Ok(self.lock().data.get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], start_after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        let st = self.lock();
        let lower = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(Bytes::copy_from_slice(s)),
            _ => Bound::Included(Bytes::copy_from_slice(prefix)),
        };
        Ok(st
            .data
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| Entry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect())
    }

    fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self
            .lock()
            .events
            .range(from..)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Bytes>> {
        Ok(self
            .lock()
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(limit)
            .map(|(_, k)| k.clone())
            .collect())
    }

    fn meta(&self) -> Result<Meta> {
        let m = self.lock().meta;
        Ok(Meta {
            oldest_event: m.oldest_event.max(1),
            ..m
        })
    }

    fn commit(&self, batch: &Batch, _sync: bool) -> Result<()> {
        let mut st = self.lock();
        for w in &batch.writes {
            if let Some(at) = w.old_expiry {
                st.expiry.remove(&(at, w.key.clone()));
            }
            match &w.new {
                Some(v) => {
                    if let Some(at) = v.expires_at_ms {
                        st.expiry.insert((at, w.key.clone()));
                    }
                    st.data.insert(w.key.clone(), v.clone());
                }
                None => {
                    st.data.remove(&w.key);
                }
            }
        }
        for e in &batch.events {
            st.events.insert(e.revision, e.clone());
        }
        if batch.compact_below > st.meta.oldest_event {
            let keep = st.events.split_off(&batch.compact_below);
            st.events = keep;
            st.meta.oldest_event = batch.compact_below;
        }
        st.meta.revision = batch.revision;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
