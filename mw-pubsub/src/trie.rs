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
///
/// ```
/// use mw_pubsub::trie::{SubscriptionId, Trie};
/// use mw_pubsub::{Pattern, Topic};
///
/// let mut trie = Trie::new();
/// let p = Pattern::new("sensors.*.temp")?;
/// trie.insert(&p, SubscriptionId(1), "kitchen watcher");
/// trie.insert(&Pattern::new("sensors.>")?, SubscriptionId(2), "logger");
///
/// let mut hits = trie.matches(&Topic::new("sensors.kitchen.temp")?);
/// hits.sort();
/// assert_eq!(hits, [SubscriptionId(1), SubscriptionId(2)]);
///
/// assert_eq!(trie.remove(&p, SubscriptionId(1)), Some("kitchen watcher"));
/// assert_eq!(trie.len(), 1);
/// # Ok::<(), mw_pubsub::PubSubError>(())
/// ```
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

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of nodes including the root: 1 for an empty trie. Lets tests check that removal
    /// leaves no garbage.
    pub fn node_count(&self) -> usize {
        self.root.count_nodes()
    }
}
