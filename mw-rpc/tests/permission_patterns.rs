//! The permission patterns (`mw_rpc::auth::pattern`) against naive matchers written
//! another way: names as token lists, patterns as regular languages enumerated over a
//! small alphabet.

use mw_rpc::auth::pattern::{admits_queue, check, covers, matches};
use proptest::prelude::*;

/// Matching by recursion over token lists, the way the definition reads.
fn naive_matches(pattern: &[&str], name: &[&str]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((&">", [])), Some(_)) => true,
        (Some((&"*", p)), Some((_, n))) => naive_matches(p, n),
        (Some((lit, p)), Some((tok, n))) if lit == tok => naive_matches(p, n),
        _ => false,
    }
}

fn tokens(s: &str) -> Vec<&str> {
    s.split('.').collect()
}

/// Every name of 1..=max_len tokens over `alphabet`.
fn universe(alphabet: &[&'static str], max_len: usize) -> Vec<String> {
    let mut all: Vec<Vec<&str>> = vec![vec![]];
    let mut out = Vec::new();
    for _ in 0..max_len {
        let mut next = Vec::new();
        for prefix in &all {
            for t in alphabet {
                let mut n = prefix.clone();
                n.push(*t);
                out.push(n.join("."));
                next.push(n);
            }
        }
        all = next;
    }
    out
}

/// Token strategy for patterns: literals from a small alphabet (so that patterns and
/// names often meet) and the wildcards.
fn pattern_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "dlq", "xmit", "*"]),
            0..4,
        ),
        prop::sample::select(vec!["a", "b", "dlq", "xmit", "*", ">"]),
    )
        .prop_map(|(mut head, last)| {
            head.push(last);
            head.join(".")
        })
}

fn name_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "c", "dlq", "xmit", "durable"]),
        1..6,
    )
    .prop_map(|t| t.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matches_agrees_with_the_naive_matcher(p in pattern_strategy(), n in name_strategy()) {
        prop_assert!(check(&p).is_ok());
        prop_assert_eq!(matches(&p, &n), naive_matches(&tokens(&p), &tokens(&n)), "{} vs {}", p, n);
    }

    /// `covers(g, s)` exactly when every name `s` matches is matched by `g`, checked over
    /// every name of up to one token more than either pattern, with a token (`z`) no
    /// pattern uses standing in for whatever a wildcard may take.
    #[test]
    fn covers_is_inclusion_of_the_matched_names(g in pattern_strategy(), s in pattern_strategy()) {
        let len = tokens(&g).len().max(tokens(&s).len()) + 1;
        let included = universe(&["a", "b", "dlq", "xmit", "z"], len)
            .iter()
            .all(|n| !naive_matches(&tokens(&s), &tokens(n)) || naive_matches(&tokens(&g), &tokens(n)));
        prop_assert_eq!(covers(&g, &s), included, "grant {} subscription {}", g, s);
    }

    /// A queue grant admits a name only if it matches, and never an internal name
    /// (`xmit.*`, `durable.*`, `*.dlq`) through a wildcard standing where the marker is.
    #[test]
    fn queue_grants_admit_internal_names_only_literally(p in pattern_strategy(), n in name_strategy()) {
        let t = tokens(&n);
        let pt = tokens(&p);
        let internal_first = t.len() > 1 && (t[0] == "xmit" || t[0] == "durable");
        let internal_last = t.len() > 1 && t[t.len() - 1] == "dlq";
        let expected = naive_matches(&pt, &t)
            && (!internal_first || pt[0] == t[0])
            && (!internal_last || (pt.len() == t.len() && pt[pt.len() - 1] == "dlq"));
        prop_assert_eq!(admits_queue(&p, &n), expected, "{} vs {}", p, n);
    }
}
