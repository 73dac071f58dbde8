//! [`BodyCache`]: bodies of recently sent messages, kept so that a consumer that
//! keeps up is served without reading the segment back.
//!
//! Bounded by bytes ([`Config::body_cache_bytes`](crate::Config::body_cache_bytes)):
//! a body that does not fit is simply not cached (its delivery reads the disk).
//! A body leaves the cache when its message is delivered, so each is served from
//! memory at most once.

use std::collections::HashMap;

use crate::storage::record::StoredMessage;

/// Rough per-entry overhead charged to the cache budget (map entry + `Bytes`).
const ENTRY_OVERHEAD: usize = 80;

/// Cached bodies by the LSN of their message's enqueue record.
#[derive(Debug)]
pub(super) struct BodyCache {
    bodies: HashMap<u64, StoredMessage>,
    /// Bytes charged: body lengths plus [`ENTRY_OVERHEAD`] each. Never above `budget`.
    bytes: usize,
    budget: usize,
}

impl BodyCache {
    /// An empty cache of at most `budget` bytes.
    pub(super) fn new(budget: usize) -> Self {
        BodyCache {
            bodies: HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// Keeps `body` for message `lsn` if it fits in what is left of the budget.
    pub(super) fn insert(&mut self, lsn: u64, body: StoredMessage) -> bool {
        let cost = body.body.len() + ENTRY_OVERHEAD;
        if self.bytes + cost > self.budget {
            return false;
        }
        self.bytes += cost;
        if let Some(old) = self.bodies.insert(lsn, body) {
            self.bytes -= old.body.len() + ENTRY_OVERHEAD;
        }
        true
    }

    /// Takes the body of `lsn` out (it is being delivered, or its message dropped).
    pub(super) fn take(&mut self, lsn: u64) -> Option<StoredMessage> {
        let c = self.bodies.remove(&lsn)?;
        self.bytes -= c.body.len() + ENTRY_OVERHEAD;
        Some(c)
    }

    /// The body of `lsn`, left in place (browsing does not deliver).
    pub(super) fn get(&self, lsn: u64) -> Option<&StoredMessage> {
        self.bodies.get(&lsn)
    }

    /// Bytes charged to the budget.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::storage::record::EnqueueHeader;

    fn body(n: usize) -> StoredMessage {
        StoredMessage {
            header: EnqueueHeader {
                id: 1,
                producer_id: false,
                timestamp_ms: 0,
                expires_at_ms: 0,
                not_before_ms: 0,
            },
            body: Bytes::from(vec![0u8; n]),
        }
    }

    #[test]
    fn a_body_beyond_the_budget_is_not_cached() {
        let mut c = BodyCache::new(2 * (100 + ENTRY_OVERHEAD));
        assert!(c.insert(1, body(100)));
        assert!(c.insert(2, body(100)));
        assert!(!c.insert(3, body(1)), "the budget is spent");
        assert_eq!(c.bytes(), 2 * (100 + ENTRY_OVERHEAD));
        assert!(c.get(3).is_none());
    }

    #[test]
    fn taking_a_body_gives_its_bytes_back() {
        let mut c = BodyCache::new(100 + ENTRY_OVERHEAD);
        assert!(c.insert(1, body(100)));
        assert_eq!(c.take(1).map(|b| b.body.len()), Some(100));
        assert_eq!(c.take(1).map(|b| b.body.len()), None, "served once");
        assert_eq!(c.bytes(), 0);
        assert!(c.insert(2, body(100)), "the budget is free again");
    }
}
