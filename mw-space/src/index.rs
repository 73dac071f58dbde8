//! The index of visible tuples: how `rd` / `in` find a match without scanning the space.
//!
//! Every tuple is entered in three kinds of bucket, each an ordered set of [`TupleId`]s
//! (oldest first):
//!
//! | bucket key | holds the tuples | used by pattern fields that are |
//! |---|---|---|
//! | `(arity, position, hash of the value)` | with that value at that position | actuals |
//! | `(arity, position, type)` | with a value of that type at that position | typed formals |
//! | `arity` | of that arity | (only when every field is `null`) |
//!
//! A lookup takes, over the pattern's constrained fields (actuals and typed formals),
//! the smallest of their buckets, and walks it oldest first, testing the whole pattern on
//! each tuple until one matches. An actual or typed formal whose bucket does not exist ends
//! the lookup at once: no tuple has that field. So a pattern with one selective field
//! costs a hash lookup and a short walk however large the space is; the walk is long only
//! when every constrained field is common and the combination is rare. Hashes may
//! collide; the full test on each candidate keeps the answer exact.
//!
//! Memory: per tuple, two set entries per field plus one, besides the tuple itself.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;

use tokio::time::Instant;

use crate::pattern::{Field, Pattern};
use crate::value::{Tuple, TupleId, Type};

/// A tuple in the space, with what the space needs to manage it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) id: TupleId,
    pub(crate) tuple: Tuple,
    /// When its lease runs out (`None`: never).
    pub(crate) expires: Option<Instant>,
    /// The same moment in ms since the Unix epoch, as the log stores it (0: never).
    pub(crate) expires_ms: u64,
    /// [`Tuple::size`].
    pub(crate) size: usize,
}

impl Entry {
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

type Bucket = BTreeSet<TupleId>;

/// Visible tuples and their buckets.
#[derive(Debug, Default)]
pub(crate) struct Index {
    tuples: HashMap<TupleId, Entry>,
    by_arity: HashMap<usize, Bucket>,
    by_value: HashMap<(usize, usize, u64), Bucket>,
    by_type: HashMap<(usize, usize, Type), Bucket>,
    hasher: RandomState,
}

fn remove_from<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Bucket>, key: K, id: TupleId) {
    if let Some(b) = map.get_mut(&key) {
        b.remove(&id);
        if b.is_empty() {
            map.remove(&key);
        }
    }
}

impl Index {
    pub(crate) fn len(&self) -> usize {
        self.tuples.len()
    }

    pub(crate) fn get(&self, id: TupleId) -> Option<&Entry> {
        self.tuples.get(&id)
    }

    pub(crate) fn insert(&mut self, entry: Entry) {
        let id = entry.id;
        let n = entry.tuple.len();
        self.by_arity.entry(n).or_default().insert(id);
        for (pos, v) in entry.tuple.fields().iter().enumerate() {
            let h = self.hasher.hash_one(v);
            self.by_value.entry((n, pos, h)).or_default().insert(id);
            self.by_type
                .entry((n, pos, v.type_of()))
                .or_default()
                .insert(id);
        }
        self.tuples.insert(id, entry);
    }

    pub(crate) fn remove(&mut self, id: TupleId) -> Option<Entry> {
        let entry = self.tuples.remove(&id)?;
        let n = entry.tuple.len();
        remove_from(&mut self.by_arity, n, id);
        for (pos, v) in entry.tuple.fields().iter().enumerate() {
            let h = self.hasher.hash_one(v);
            remove_from(&mut self.by_value, (n, pos, h), id);
            remove_from(&mut self.by_type, (n, pos, v.type_of()), id);
        }
        Some(entry)
    }

    /// The bucket a lookup for `pattern` walks, or `None` when no tuple can match.
    fn candidates(&self, pattern: &Pattern) -> Option<&Bucket> {
        let n = pattern.len();
        let mut best: Option<&Bucket> = None;
        for (pos, f) in pattern.fields().iter().enumerate() {
            let bucket = match f {
                Field::Value(v) => self.by_value.get(&(n, pos, self.hasher.hash_one(v)))?,
                Field::Typed(t) => self.by_type.get(&(n, pos, *t))?,
                Field::Any => continue,
            };
            if best.is_none_or(|b| bucket.len() < b.len()) {
                best = Some(bucket);
            }
        }
        best.or_else(|| self.by_arity.get(&n))
    }

    /// The oldest unexpired tuple matching `pattern`.
    pub(crate) fn find(&self, pattern: &Pattern, now: Instant) -> Option<TupleId> {
        self.candidates(pattern)?.iter().copied().find(|id| {
            let e = &self.tuples[id];
            !e.expired(now) && pattern.matches(&e.tuple)
        })
    }

    /// How many tuples a lookup for `pattern` would walk at most (for tests of the index).
    #[cfg(test)]
    pub(crate) fn walk_len(&self, pattern: &Pattern) -> usize {
        self.candidates(pattern).map_or(0, |b| b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;
    use crate::value::tuple;

    fn entry(id: u64, tuple: Tuple) -> Entry {
        Entry {
            id: TupleId(id),
            size: tuple.size(),
            tuple,
            expires: None,
            expires_ms: 0,
        }
    }

    #[test]
    fn a_selective_field_keeps_the_walk_short() {
        let mut index = Index::default();
        for i in 0..1000 {
            index.insert(entry(i, tuple!("task", i as i64)));
        }
        index.insert(entry(5000, tuple!("result", 7)));
        let now = Instant::now();
        let p = pattern!("task", 500);
        assert_eq!(index.walk_len(&p), 1, "the value bucket of 500 is chosen");
        assert_eq!(index.find(&p, now), Some(TupleId(500)));
        assert_eq!(index.walk_len(&pattern!("result", Type::Int)), 1);
        assert_eq!(index.walk_len(&pattern!("nothing", Field::Any)), 0);
        assert_eq!(index.find(&pattern!(Type::String, Type::String), now), None);
        assert_eq!(index.walk_len(&pattern!(Field::Any, Field::Any)), 1001);
    }

    #[test]
    fn oldest_match_first_and_removal_prunes_buckets() {
        let mut index = Index::default();
        index.insert(entry(2, tuple!("a")));
        index.insert(entry(1, tuple!("a")));
        let now = Instant::now();
        assert_eq!(index.find(&pattern!("a"), now), Some(TupleId(1)));
        index.remove(TupleId(1));
        index.remove(TupleId(2));
        assert_eq!(index.len(), 0);
        assert!(index.by_arity.is_empty() && index.by_value.is_empty() && index.by_type.is_empty());
    }
}
