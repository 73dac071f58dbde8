//! Causal versions: dotted version vectors, siblings, and their merge.
//!
//! Every write made through the ring gets a *dot* `(node, counter)`, unique because only
//! `node` hands out its counters, and carries the *context* its writer had read (a
//! version vector). A sibling is obsolete once another sibling's context contains its
//! dot: that writer saw it and replaced it. Writes whose contexts do not contain each
//! other are concurrent and are all kept, as siblings, until a write that read them all
//! replaces them. Merging two replicas' states is a union followed by that rule, so it
//! is commutative, associative and idempotent: replicas converge whatever the order in
//! which they exchange states, and nothing acknowledged is silently dropped (no
//! last-write-wins).
//!
//! Two concurrent writes through the same coordinator with the same context get two
//! dots and stay siblings (the anomaly that plain per-node vector clocks have).

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Most siblings a key may have; a write that would add one more is refused until a
/// write that read them resolves them.
pub const MAX_SIBLINGS: usize = 16;

/// One write's identity: the node that coordinated it and that node's counter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The coordinating node.
    pub node: String,
    /// Its counter (strictly increasing per node).
    pub counter: u64,
}

impl fmt::Display for Dot {
    /// `node@epoch.sequence`: ring nodes count `epoch << 40 | sequence`, the epoch
    /// growing at every start so counters never repeat without a write per dot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}.{}",
            self.node,
            self.counter >> 40,
            self.counter & ((1 << 40) - 1)
        )
    }
}

/// A version vector: for each node, the highest counter seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector(pub BTreeMap<String, u64>);

impl VersionVector {
    /// Whether the write `dot` is included.
    pub fn contains(&self, dot: &Dot) -> bool {
        self.0.get(&dot.node).is_some_and(|&c| c >= dot.counter)
    }

    /// Adds `dot`.
    pub fn insert(&mut self, dot: &Dot) {
        let c = self.0.entry(dot.node.clone()).or_default();
        *c = (*c).max(dot.counter);
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VersionVector) {
        for (node, &c) in &other.0 {
            let e = self.0.entry(node.clone()).or_default();
            *e = (*e).max(c);
        }
    }

    /// Whether nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(n, c)| format!("{n}@{}.{}", c >> 40, c & ((1 << 40) - 1)))
            .collect();
        write!(f, "[{}]", parts.join(","))
    }
}

/// One write: a value (or a tombstone), its dot and the context its writer had read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    /// The write's identity.
    pub dot: Dot,
    /// What the writer had read when it wrote.
    pub context: VersionVector,
    /// The value; `None` is a tombstone (a delete).
    pub value: Option<Bytes>,
}

/// A key's state on one replica: the siblings no other sibling has replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiblingSet {
    /// Sorted by dot, no two with the same dot, none obsolete.
    pub siblings: Vec<Sibling>,
}

impl SiblingSet {
    /// A state holding just `s`.
    pub fn of(s: Sibling) -> SiblingSet {
        SiblingSet { siblings: vec![s] }
    }

    /// Merges `incoming` in; returns whether the state changed.
    pub fn merge(&mut self, incoming: impl IntoIterator<Item = Sibling>) -> bool {
        let before = self.siblings.clone();
        for s in incoming {
            if !self.siblings.iter().any(|t| t.dot == s.dot) {
                self.siblings.push(s);
            }
        }
        let all = std::mem::take(&mut self.siblings);
        let mut kept: Vec<Sibling> = all
            .iter()
            .filter(|s| !all.iter().any(|t| t.context.contains(&s.dot)))
            .cloned()
            .collect();
        kept.sort_by(|a, b| a.dot.cmp(&b.dot));
        self.siblings = kept;
        self.siblings != before
    }

    /// The context a reader hands back to replace everything it read: every dot and
    /// every context of the siblings.
    pub fn context(&self) -> VersionVector {
        let mut vv = VersionVector::default();
        for s in &self.siblings {
            vv.merge(&s.context);
            vv.insert(&s.dot);
        }
        vv
    }

    /// The live values (tombstones left out), in dot order.
    pub fn values(&self) -> Vec<Bytes> {
        self.siblings
            .iter()
            .filter_map(|s| s.value.clone())
            .collect()
    }

    /// Whether there is no sibling at all (the key was never written here).
    pub fn is_empty(&self) -> bool {
        self.siblings.is_empty()
    }

    /// Whether only tombstones remain (the key reads as absent).
    pub fn is_deleted(&self) -> bool {
        self.siblings.iter().all(|s| s.value.is_none())
    }

    /// A digest of the state (its dots), for comparing replicas cheaply.
    pub fn digest(&self) -> u64 {
        let mut buf = Vec::new();
        for s in &self.siblings {
            buf.extend_from_slice(s.dot.node.as_bytes());
            buf.push(0);
            buf.extend_from_slice(&s.dot.counter.to_le_bytes());
        }
        xxhash_rust::xxh3::xxh3_64(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dot(node: &str, counter: u64) -> Dot {
        Dot {
            node: node.into(),
            counter,
        }
    }

    fn write(node: &str, counter: u64, seen: &SiblingSet, v: &str) -> Sibling {
        Sibling {
            dot: dot(node, counter),
            context: seen.context(),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    #[test]
    fn a_write_that_read_the_state_replaces_it() {
        let mut s = SiblingSet::default();
        s.merge([write("a", 1, &SiblingSet::default(), "v1")]);
        let read = s.clone();
        s.merge([write("a", 2, &read, "v2")]);
        assert_eq!(s.values(), [Bytes::from("v2")]);
    }

    #[test]
    fn concurrent_writes_through_one_coordinator_stay_siblings() {
        let empty = SiblingSet::default();
        let mut s = SiblingSet::default();
        s.merge([write("a", 1, &empty, "x")]);
        s.merge([write("a", 2, &empty, "y")]); // same (empty) context: concurrent
        assert_eq!(s.values().len(), 2);
        let read = s.clone();
        s.merge([write("b", 1, &read, "resolved")]);
        assert_eq!(s.values(), [Bytes::from("resolved")]);
    }

    #[test]
    fn a_delete_is_a_tombstone_that_replaces_what_it_read() {
        let mut s = SiblingSet::default();
        s.merge([write("a", 1, &SiblingSet::default(), "v")]);
        let read = s.clone();
        s.merge([Sibling {
            dot: dot("b", 7),
            context: read.context(),
            value: None,
        }]);
        assert!(s.is_deleted() && !s.is_empty());
        // An old replica's copy of the deleted value cannot bring it back.
        let mut old = SiblingSet::default();
        old.merge([write("a", 1, &SiblingSet::default(), "v")]);
        s.merge(old.siblings);
        assert!(s.is_deleted(), "the delete wins over what it read");
    }

    fn arb_history() -> impl Strategy<Value = Vec<(usize, u8, bool)>> {
        // (replica that coordinates, how much of its state it read, delete?)
        prop::collection::vec((0usize..3, any::<u8>(), any::<bool>()), 1..25)
    }

    proptest! {
        /// Replicas that each apply a subset of writes converge to the same state once
        /// they exchange states, in any order; and no write that nobody replaced is lost.
        #[test]
        fn merge_converges_and_loses_nothing(history in arb_history(), order in any::<u64>()) {
            let mut replicas = vec![SiblingSet::default(); 3];
            let mut all: Vec<Sibling> = Vec::new();
            for (i, (r, _read, del)) in history.iter().enumerate() {
                let seen = replicas[*r].clone();
                let s = Sibling {
                    dot: dot(&format!("n{r}"), i as u64 + 1),
                    context: seen.context(),
                    value: (!del).then(|| Bytes::from(format!("v{i}"))),
                };
                replicas[*r].merge([s.clone()]);
                all.push(s);
            }
            // Exchange in an order chosen by `order`.
            let mut merged: Vec<SiblingSet> = replicas.clone();
            let perm = [(order % 3) as usize, ((order / 3) % 3) as usize, ((order / 9) % 3) as usize];
            for &a in &perm {
                for b in 0..3 {
                    let from = merged[a].siblings.clone();
                    merged[b].merge(from);
                }
            }
            for b in 0..3 {
                let from = merged[b].siblings.clone();
                for m in merged.iter_mut() {
                    m.merge(from.clone());
                }
            }
            prop_assert_eq!(&merged[0], &merged[1]);
            prop_assert_eq!(&merged[1], &merged[2]);
            // Every write whose dot no other write's context contains survives.
            for s in &all {
                let replaced = all.iter().any(|t| t.context.contains(&s.dot));
                let present = merged[0].siblings.iter().any(|t| t.dot == s.dot);
                prop_assert_eq!(present, !replaced, "{}", s.dot);
            }
        }
    }
}
