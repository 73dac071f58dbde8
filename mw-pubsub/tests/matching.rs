//! The trie against a naive matcher, over random topics and patterns drawn from a tiny alphabet so
//! that matches are common; and the trie's size after removals.

use mw_pubsub::trie::{SubscriptionId, Trie};
use mw_pubsub::{Pattern, Topic};
use proptest::prelude::*;

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
