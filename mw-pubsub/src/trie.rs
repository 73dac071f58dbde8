//! The subscription trie: which subscriptions does a topic match?
//!
//! Each node is one level of a pattern. A node has a child per literal token, one `*` child, and
//! two lists of subscriptions: those whose pattern ends at this node, and those whose pattern
//! continues with a final `>` here. For `a.*.c`, `a.>` and `a.b.c`:
//!
//! ```text
//! root
//!  └─ "a" ── rest: [a.>]
//!      ├─ "b" ── "c" ── here: [a.b.c]
//!      └─ *   ── "c" ── here: [a.*.c]
//! ```
//!
//! Matching `a.b.c` walks the literal child and the `*` child at each level and collects every
//! `rest` list on the way, so a lookup costs in proportion to the topic's depth times the number of
//! wildcard branches that actually match, independent of how many subscriptions there are. Removing
//! the last subscription of a node prunes it and any ancestors left empty, so the trie's size
//! depends only on the live subscriptions.

use std::collections::HashMap;
use std::fmt;

use crate::topic::{Pattern, Topic};

/// Identifies one subscription or attached sink on a bus; unique for the bus's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub-{}", self.0)
    }
}

struct Node<V> {
    /// Children by literal token.
    children: HashMap<Box<str>, Node<V>>,
    /// The `*` child.
    star: Option<Box<Node<V>>>,
    /// Subscriptions whose pattern ends at this node.
    here: Vec<(SubscriptionId, V)>,
    /// Subscriptions whose pattern is this node's path followed by `>`.
    rest: Vec<(SubscriptionId, V)>,
}

impl<V> Node<V> {
    fn new() -> Self {
        Node {
            children: HashMap::new(),
            star: None,
            here: Vec::new(),
            rest: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.star.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }

    fn count_nodes(&self) -> usize {
        1 + self.children.values().map(Node::count_nodes).sum::<usize>()
            + self.star.as_ref().map_or(0, |s| s.count_nodes())
    }

    /// Visits matches of `rest_of_topic` (non-empty, tokens below this node).
    fn visit<'a>(&'a self, rest_of_topic: &str, f: &mut impl FnMut(SubscriptionId, &'a V)) {
        for (id, v) in &self.rest {
            f(*id, v);
        }
        let (head, tail) = match rest_of_topic.split_once('.') {
            Some((head, tail)) => (head, Some(tail)),
            None => (rest_of_topic, None),
        };
        if let Some(child) = self.children.get(head) {
            child.step(tail, f);
        }
        if let Some(star) = &self.star {
            star.step(tail, f);
        }
    }

    /// Having consumed one token to reach this node: finish here or descend.
    fn step<'a>(&'a self, tail: Option<&str>, f: &mut impl FnMut(SubscriptionId, &'a V)) {
        match tail {
            None => {
                for (id, v) in &self.here {
                    f(*id, v);
                }
            }
            Some(tail) => self.visit(tail, f),
        }
    }

    fn for_each<'a>(&'a self, f: &mut impl FnMut(SubscriptionId, &'a V)) {
        for (id, v) in self.here.iter().chain(&self.rest) {
            f(*id, v);
        }
        for child in self.children.values() {
            child.for_each(f);
        }
        if let Some(star) = &self.star {
            star.for_each(f);
        }
    }

    fn remove<'p>(
        &mut self,
        mut tokens: impl Iterator<Item = &'p str>,
        id: SubscriptionId,
    ) -> Option<V> {
        match tokens.next() {
            None => take_entry(&mut self.here, id),
            Some(">") => take_entry(&mut self.rest, id),
            Some("*") => {
                let star = self.star.as_mut()?;
                let v = star.remove(tokens, id)?;
                if star.is_empty() {
                    self.star = None;
                }
                Some(v)
            }
            Some(token) => {
                let child = self.children.get_mut(token)?;
                let v = child.remove(tokens, id)?;
                if child.is_empty() {
                    self.children.remove(token);
                    // A map that once held many children keeps its table; give it back.
                    if self.children.capacity() > 4 * self.children.len().max(1) {
                        self.children.shrink_to_fit();
                    }
                }
                Some(v)
            }
        }
    }
}

fn take_entry<V>(list: &mut Vec<(SubscriptionId, V)>, id: SubscriptionId) -> Option<V> {
    let at = list.iter().position(|(i, _)| *i == id)?;
    let (_, v) = list.swap_remove(at);
    if list.is_empty() {
        *list = Vec::new();
    }
    Some(v)
}

/// Subscriptions indexed by pattern, for matching topics against all of them at once.
///
/// `V` is whatever the owner wants back for a match; the [`Bus`](crate::Bus) stores its delivery
/// targets. A trie has no locking of its own.
pub struct Trie<V> {
    root: Node<V>,
    len: usize,
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for Trie<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trie")
            .field("len", &self.len)
            .field("nodes", &self.node_count())
            .finish()
    }
}

impl<V> Trie<V> {
    /// An empty trie (one root node).
    pub fn new() -> Self {
        Trie {
            root: Node::new(),
            len: 0,
        }
    }

    /// Files `value` under `pattern` with `id`.
    ///
    /// The caller keeps ids unique; inserting an id twice stores two entries.
    pub fn insert(&mut self, pattern: &Pattern, id: SubscriptionId, value: V) {
        let mut node = &mut self.root;
        for token in pattern.tokens() {
            node = match token {
                ">" => {
                    // Validation guarantees `>` is last.
                    node.rest.push((id, value));
                    self.len += 1;
                    return;
                }
                "*" => node.star.get_or_insert_with(|| Box::new(Node::new())),
                token => {
                    if !node.children.contains_key(token) {
                        node.children.insert(token.into(), Node::new());
                    }
                    // Just ensured present; `entry` would allocate the key on every insert.
                    node.children.get_mut(token).expect("child present")
                }
            };
        }
        node.here.push((id, value));
        self.len += 1;
    }

    /// Removes the entry `id` filed under `pattern`, pruning nodes left empty. `None` if absent.
    pub fn remove(&mut self, pattern: &Pattern, id: SubscriptionId) -> Option<V> {
        let v = self.root.remove(pattern.tokens(), id)?;
        self.len -= 1;
        Some(v)
    }

    /// Calls `f` once for every entry whose pattern matches `topic`, in no particular order.
    ///
    /// Cost: proportional to the topic's depth times the matching wildcard branches, plus the
    /// number of matches.
    pub fn for_each_match<'a>(&'a self, topic: &Topic, mut f: impl FnMut(SubscriptionId, &'a V)) {
        self.root.visit(topic.as_str(), &mut f);
    }

    /// The ids of every entry matching `topic`, in no particular order.
    #[cfg(test)]
    pub fn matches(&self, topic: &Topic) -> Vec<SubscriptionId> {
        let mut ids = Vec::new();
        self.for_each_match(topic, |id, _| ids.push(id));
        ids
    }

    /// Calls `f` for every entry.
    pub fn for_each<'a>(&'a self, mut f: impl FnMut(SubscriptionId, &'a V)) {
        self.root.for_each(&mut f);
    }

    /// Removes every entry, leaving only the root.
    pub fn clear(&mut self) {
        self.root = Node::new();
        self.len = 0;
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Number of nodes including the root: 1 for an empty trie. Lets tests check that removal
    /// leaves no garbage.
    pub fn node_count(&self) -> usize {
        self.root.count_nodes()
    }
}

#[cfg(test)]
mod tests {
    //! The trie against a naive matcher, over random topics and patterns drawn from a tiny
    //! alphabet so that matches are common; and the trie's size after removals.

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_finds_wildcard_and_literal_subscriptions_and_remove_returns_the_value() {
        let mut trie = Trie::new();
        let p = Pattern::new("sensors.*.temp").unwrap();
        trie.insert(&p, SubscriptionId(1), "kitchen watcher");
        trie.insert(
            &Pattern::new("sensors.>").unwrap(),
            SubscriptionId(2),
            "logger",
        );

        let mut hits = trie.matches(&Topic::new("sensors.kitchen.temp").unwrap());
        hits.sort();
        assert_eq!(hits, [SubscriptionId(1), SubscriptionId(2)]);

        assert_eq!(trie.remove(&p, SubscriptionId(1)), Some("kitchen watcher"));
        assert_eq!(trie.len(), 1);
    }

    /// The definition of matching, token by token, written independently of the crate.
    fn naive(pattern: &[String], topic: &[String]) -> bool {
        match (pattern.split_first(), topic.split_first()) {
            (None, None) => true,
            (Some((p, _)), Some(_)) if p == ">" => true,
            (Some((p, prest)), Some((t, trest))) if p == "*" || p == t => naive(prest, trest),
            _ => false,
        }
    }

    fn topic_tokens() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            prop::sample::select(&["a", "b", "c"][..]).prop_map(String::from),
            1..=4,
        )
    }

    fn pattern_tokens() -> impl Strategy<Value = Vec<String>> {
        (
            prop::collection::vec(
                prop::sample::select(&["a", "b", "c", "*"][..]).prop_map(String::from),
                1..=4,
            ),
            prop::bool::weighted(0.3),
        )
            .prop_map(|(mut tokens, full)| {
                if full {
                    *tokens.last_mut().expect("non-empty") = ">".to_owned();
                }
                tokens
            })
    }

    fn pattern(tokens: &[String]) -> Pattern {
        Pattern::new(tokens.join(".")).unwrap()
    }

    fn topic(tokens: &[String]) -> Topic {
        Topic::new(tokens.join(".")).unwrap()
    }

    proptest! {
        #[test]
        fn trie_matches_exactly_what_naive_matcher_matches(
            patterns in prop::collection::vec(pattern_tokens(), 0..40),
            topics in prop::collection::vec(topic_tokens(), 1..20),
        ) {
            let mut trie = Trie::new();
            for (i, p) in patterns.iter().enumerate() {
                trie.insert(&pattern(p), SubscriptionId(i as u64), i);
            }
            for t in &topics {
                let mut got: Vec<u64> = Vec::new();
                trie.for_each_match(&topic(t), |id, &i| {
                    assert_eq!(id.0, i as u64);
                    got.push(id.0);
                });
                got.sort_unstable();
                let want: Vec<u64> = patterns
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| naive(p, t))
                    .map(|(i, _)| i as u64)
                    .collect();
                prop_assert_eq!(&got, &want, "topic {}", t.join("."));
                for (i, p) in patterns.iter().enumerate() {
                    prop_assert_eq!(pattern(p).matches(&topic(t)), want.contains(&(i as u64)));
                }
            }
        }

        #[test]
        fn removal_leaves_the_trie_as_if_only_survivors_were_inserted(
            entries in prop::collection::vec((pattern_tokens(), any::<bool>()), 0..40),
        ) {
            let mut trie = Trie::new();
            for (i, (p, _)) in entries.iter().enumerate() {
                trie.insert(&pattern(p), SubscriptionId(i as u64), ());
            }
            let mut fresh = Trie::new();
            for (i, (p, keep)) in entries.iter().enumerate() {
                if *keep {
                    fresh.insert(&pattern(p), SubscriptionId(i as u64), ());
                } else {
                    prop_assert_eq!(trie.remove(&pattern(p), SubscriptionId(i as u64)), Some(()));
                }
            }
            prop_assert_eq!(trie.len(), fresh.len());
            prop_assert_eq!(trie.node_count(), fresh.node_count());

            for (i, (p, keep)) in entries.iter().enumerate() {
                let removed = trie.remove(&pattern(p), SubscriptionId(i as u64));
                prop_assert_eq!(removed.is_some(), *keep);
            }
            prop_assert_eq!(trie.len(), 0);
            prop_assert_eq!(trie.node_count(), 1);
        }
    }

    #[test]
    fn removing_an_unknown_id_or_pattern_changes_nothing() {
        let mut trie = Trie::new();
        let p = Pattern::new("a.*.c").unwrap();
        trie.insert(&p, SubscriptionId(1), ());
        let nodes = trie.node_count();
        assert_eq!(trie.remove(&p, SubscriptionId(2)), None);
        assert_eq!(
            trie.remove(&Pattern::new("a.b.c").unwrap(), SubscriptionId(1)),
            None
        );
        assert_eq!(
            trie.remove(&Pattern::new("a.>").unwrap(), SubscriptionId(1)),
            None
        );
        assert_eq!((trie.len(), trie.node_count()), (1, nodes));
    }

    #[test]
    fn same_pattern_many_ids_share_one_path() {
        let mut trie = Trie::new();
        let p = Pattern::new("x.y").unwrap();
        for i in 0..100 {
            trie.insert(&p, SubscriptionId(i), i);
        }
        assert_eq!(trie.node_count(), 3);
        assert_eq!(trie.matches(&Topic::new("x.y").unwrap()).len(), 100);
        for i in 0..100 {
            assert_eq!(trie.remove(&p, SubscriptionId(i)), Some(i));
        }
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn full_wildcard_needs_at_least_one_level() {
        let mut trie = Trie::new();
        trie.insert(&Pattern::new("a.>").unwrap(), SubscriptionId(1), ());
        trie.insert(&Pattern::new(">").unwrap(), SubscriptionId(2), ());
        assert_eq!(trie.matches(&Topic::new("a").unwrap()), [SubscriptionId(2)]);
        let mut deep = trie.matches(&Topic::new("a.b.c.d").unwrap());
        deep.sort();
        assert_eq!(deep, [SubscriptionId(1), SubscriptionId(2)]);
    }
}
