//! The retained-message store: the last retained payload per topic, bounded in topic count.
//!
//! Kept sorted by topic so that a new subscription's replay is in a stable order and so a pattern
//! with a literal prefix (`sensors.kitchen.*`) only scans the topics sharing that prefix.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::topic::{Pattern, Topic};

pub(crate) struct Retained {
    map: BTreeMap<Topic, Bytes>,
    limit: usize,
}

impl Retained {
    pub(crate) fn new(limit: usize) -> Self {
        Retained {
            map: BTreeMap::new(),
            limit,
        }
    }

    /// Stores `payload` as `topic`'s retained message, replacing any older one.
    ///
    /// Fails without storing if `topic` is new and the store already holds `limit` topics.
    pub(crate) fn store(&mut self, topic: &Topic, payload: &Bytes) -> Result<()> {
        if let Some(slot) = self.map.get_mut(topic.as_str()) {
            *slot = payload.clone();
            return Ok(());
        }
        if self.map.len() >= self.limit {
            return Err(Error::RetainedFull { limit: self.limit });
        }
        self.map.insert(topic.clone(), payload.clone());
        Ok(())
    }

    /// Forgets `topic`'s retained message; whether there was one.
    pub(crate) fn clear(&mut self, topic: &Topic) -> bool {
        self.map.remove(topic.as_str()).is_some()
    }

    pub(crate) fn clear_all(&mut self) {
        self.map.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Calls `f` for each retained message whose topic matches `pattern`, in topic order.
    pub(crate) fn for_each_matching(&self, pattern: &Pattern, mut f: impl FnMut(&Topic, &Bytes)) {
        if pattern.is_literal() {
            if let Some((topic, payload)) = self.map.get_key_value(pattern.as_str()) {
                f(topic, payload);
            }
            return;
        }
        let prefix = pattern.literal_prefix();
        let range = self
            .map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded));
        for (topic, payload) in range {
            if !topic.as_str().starts_with(prefix) {
                break;
            }
            if pattern.matches(topic) {
                f(topic, payload);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics_matching(r: &Retained, pattern: &str) -> Vec<String> {
        let mut out = Vec::new();
        r.for_each_matching(&Pattern::new(pattern).unwrap(), |t, _| {
            out.push(t.to_string())
        });
        out
    }

    #[test]
    fn prefix_scan_finds_exactly_the_matches() {
        let mut r = Retained::new(10);
        for t in ["a", "a.b", "a.b.c", "a.c", "ab.c", "b.b"] {
            r.store(&Topic::new(t).unwrap(), &Bytes::new()).unwrap();
        }
        assert_eq!(topics_matching(&r, "a.*"), ["a.b", "a.c"]);
        assert_eq!(topics_matching(&r, "a.>"), ["a.b", "a.b.c", "a.c"]);
        assert_eq!(topics_matching(&r, "*.b"), ["a.b", "b.b"]);
        assert_eq!(topics_matching(&r, "ab.c"), ["ab.c"]);
        assert_eq!(topics_matching(&r, ">").len(), 6);
    }

    #[test]
    fn full_store_still_replaces_existing_topics() {
        let mut r = Retained::new(1);
        let a = Topic::new("a").unwrap();
        r.store(&a, &Bytes::from_static(b"1")).unwrap();
        assert!(matches!(
            r.store(&Topic::new("b").unwrap(), &Bytes::new()),
            Err(Error::RetainedFull { limit: 1 })
        ));
        r.store(&a, &Bytes::from_static(b"2")).unwrap();
        assert_eq!(r.len(), 1);
    }
}
