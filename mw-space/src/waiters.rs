//! Callers blocked in `rd` / `in`, served in arrival order.
//!
//! Each waiter gets a sequence number when it starts waiting and is filed under one key
//! taken from its pattern's arity and first field: `(arity, that value's hash)` for an
//! actual, `(arity, type)` for a typed formal, `(arity, any)` for `null` (and for arity 0).
//! A new tuple can only satisfy waiters under three keys — its first value, its first
//! value's type, and any — so a write looks at those three lists, tests each waiter's whole
//! pattern, and serves the matching ones in sequence order: every `rd` waiter before the
//! first `in` waiter gets a copy, and that `in` waiter gets the tuple (the others keep
//! waiting). Waiters of other arities or other first fields are never looked at.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use tokio::sync::oneshot;

use crate::pattern::{Field, Pattern};
use crate::value::{Tuple, Type};

/// What a waiter wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A copy (`rd`).
    Read,
    /// The tuple itself (`in`).
    Take,
}

/// What a waiter is sent.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// A copy of a tuple (`rd`).
    Read(Tuple),
    /// A tuple now held for this waiter under the hold id (`in`): if the waiter is gone by
    /// the time it looks, the hold must be released.
    Held(u64, Tuple),
}

#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) pattern: Pattern,
    pub(crate) kind: Kind,
    pub(crate) tx: oneshot::Sender<Delivery>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Any(usize),
    Typed(usize, Type),
    Value(usize, u64),
}

/// Blocked callers by key, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    by_key: HashMap<Key, BTreeMap<u64, Waiter>>,
    key_of: HashMap<u64, Key>,
    next_seq: u64,
    hasher: RandomState,
}

impl Waiters {
    pub(crate) fn len(&self) -> usize {
        self.key_of.len()
    }

    /// Files a waiter; returns its sequence number.
    pub(crate) fn add(&mut self, waiter: Waiter) -> u64 {
        let n = waiter.pattern.len();
        let key = match waiter.pattern.fields().first() {
            Some(Field::Value(v)) => Key::Value(n, self.hasher.hash_one(v)),
            Some(Field::Typed(t)) => Key::Typed(n, *t),
            Some(Field::Any) | None => Key::Any(n),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_key.entry(key).or_default().insert(seq, waiter);
        self.key_of.insert(seq, key);
        seq
    }

    /// Removes a waiter (it was served, gave up or went away).
    pub(crate) fn remove(&mut self, seq: u64) -> Option<Waiter> {
        let key = self.key_of.remove(&seq)?;
        let list = self.by_key.get_mut(&key)?;
        let w = list.remove(&seq);
        if list.is_empty() {
            self.by_key.remove(&key);
        }
        w
    }

    /// The waiters whose patterns match `tuple`, in arrival order.
    pub(crate) fn matching(&self, tuple: &Tuple) -> Vec<u64> {
        let n = tuple.len();
        let keys = match tuple.fields().first() {
            None => vec![Key::Any(0)],
            Some(v) => vec![
                Key::Any(n),
                Key::Typed(n, v.type_of()),
                Key::Value(n, self.hasher.hash_one(v)),
            ],
        };
        let mut seqs: Vec<u64> = keys
            .iter()
            .filter_map(|k| self.by_key.get(k))
            .flat_map(|list| list.iter())
            .filter(|(_, w)| w.pattern.matches(tuple))
            .map(|(seq, _)| *seq)
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// Removes every waiter (the space is closing); their callers see the space closed.
    pub(crate) fn clear(&mut self) {
        self.by_key.clear();
        self.key_of.clear();
    }
}
