//! The name patterns of permissions.
//!
//! Queue and topic names are dot-separated tokens (`orders.eu.new`). A pattern token is a
//! literal, `*` (exactly one token) or, as the last token only, `>` (one or more
//! tokens) — the subscription wildcards of mw-pubsub, which NATS also uses. Key
//! patterns of the kv store are plain prefixes.
//!
//! Internal queue names — transmission queues `xmit.*`, durable-subscription queues
//! `durable.*` and dead-letter queues `*.dlq` — match a pattern only where the pattern
//! names them with a literal token in that place (`xmit.>`, `durable.billing`,
//! `orders.dlq`, `*.dlq`): a wildcard never grants them by accident.

/// Whether `pattern` matches the name `name` (both dot-separated tokens).
///
/// ```
/// use mw_rpc::auth::pattern::matches;
/// assert!(matches("orders.*", "orders.new"));
/// assert!(!matches("orders.*", "orders.eu.new"));
/// assert!(matches("orders.>", "orders.eu.new"));
/// assert!(!matches("orders.>", "orders"));
/// ```
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut names = name.split('.');
    for p in pattern.split('.') {
        match (p, names.next()) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(_)) => {}
            (lit, Some(n)) if lit == n => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

/// Whether every name `pattern` matches is also matched by `grant`: a subscription
/// `sensors.*.temp` is covered by the grant `sensors.>`, the subscription `>` by no grant
/// but `>`.
///
/// ```
/// use mw_rpc::auth::pattern::covers;
/// assert!(covers("sensors.>", "sensors.*.temp"));
/// assert!(covers("sensors.*", "sensors.a"));
/// assert!(!covers("sensors.*", "sensors.>"));
/// assert!(!covers("sensors.a", "sensors.*"));
/// ```
pub fn covers(grant: &str, pattern: &str) -> bool {
    let mut pats = pattern.split('.');
    for g in grant.split('.') {
        match (g, pats.next()) {
            // `>` stands for one or more tokens, whatever the rest of the pattern is.
            (">", Some(_)) => return true,
            (_, None) => return false,
            // `*` covers one token: a literal or `*`, never `>` (one or more).
            ("*", Some(p)) if p != ">" => {}
            (lit, Some(p)) if lit == p && p != "*" && p != ">" => {}
            _ => return false,
        }
    }
    pats.next().is_none()
}

/// Whether `name` is an internal queue name: `xmit.*`, `durable.*` or `*.dlq` (any
/// number of tokens before `dlq`).
pub fn is_internal_queue(name: &str) -> bool {
    let first = name.split('.').next().unwrap_or("");
    let last = name.rsplit('.').next().unwrap_or("");
    let dotted = name.contains('.');
    dotted && (first == "xmit" || first == "durable" || last == "dlq")
}

/// Whether `pattern` names, with literal tokens, every internal part of `name`: the first
/// token of a `xmit.`/`durable.` name, the last token of a `.dlq` name. `name` must be
/// matched by `pattern` for this to mean anything.
fn names_internal_parts(pattern: &str, name: &str) -> bool {
    let first = name.split('.').next().unwrap_or("");
    if (first == "xmit" || first == "durable") && pattern.split('.').next() != Some(first) {
        return false;
    }
    if name.contains('.') && name.rsplit('.').next() == Some("dlq") {
        // The pattern must end in a literal `dlq` matched against the name's last token.
        let tokens = pattern.split('.').count();
        if pattern.rsplit('.').next() != Some("dlq") || tokens != name.split('.').count() {
            return false;
        }
    }
    true
}

/// Whether the grant `pattern` admits the queue `name`: it matches, and if the name is
/// internal the pattern names its internal parts literally.
///
/// ```
/// use mw_rpc::auth::pattern::admits_queue;
/// assert!(admits_queue("orders.*", "orders.new"));
/// assert!(!admits_queue(">", "xmit.qm2"));
/// assert!(admits_queue("xmit.>", "xmit.qm2"));
/// assert!(!admits_queue("orders.>", "orders.new.dlq"));
/// assert!(admits_queue("orders.*.dlq", "orders.new.dlq"));
/// ```
pub fn admits_queue(pattern: &str, name: &str) -> bool {
    matches(pattern, name) && (!is_internal_queue(name) || names_internal_parts(pattern, name))
}

/// Why a pattern cannot be used in a grant, if it cannot: empty, an empty token, `>`
/// before the last token, or a token mixing a wildcard with other characters.
pub fn check(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("a pattern cannot be empty".into());
    }
    let tokens: Vec<&str> = pattern.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(format!("pattern {pattern:?} has an empty token"));
        }
        if *t == ">" && i + 1 != tokens.len() {
            return Err(format!(
                "pattern {pattern:?}: `>` may only be the last token"
            ));
        }
        if t.len() > 1 && (t.contains('*') || t.contains('>')) {
            return Err(format!(
                "pattern {pattern:?}: `*` and `>` must be whole tokens (like `orders.*`)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_tokens() {
        assert!(matches("a", "a"));
        assert!(!matches("a", "a.b"));
        assert!(!matches("a.b", "a"));
        assert!(matches("*", "a"));
        assert!(!matches("*", "a.b"));
        assert!(matches(">", "a.b.c"));
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*.c", "a.b.d"));
    }

    #[test]
    fn internal_names_need_literal_grants() {
        for internal in ["xmit.qm2", "durable.billing", "orders.dlq", "a.b.dlq"] {
            assert!(is_internal_queue(internal), "{internal}");
            assert!(!admits_queue(">", internal), "{internal}");
        }
        assert!(!is_internal_queue("dlq"));
        assert!(!is_internal_queue("xmit"));
        assert!(!is_internal_queue("orders.dlq2"));
        assert!(admits_queue("durable.>", "durable.billing"));
        assert!(!admits_queue("*.billing", "durable.billing"));
        assert!(admits_queue("*.dlq", "orders.dlq"));
        assert!(!admits_queue("orders.*", "orders.dlq"));
        assert!(admits_queue("xmit.*", "xmit.qm2"));
        // Both markers: both must be literal.
        assert!(!admits_queue("xmit.*", "xmit.dlq"));
        assert!(admits_queue("xmit.dlq", "xmit.dlq"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a..b", ".a", "a.", ">.a", "a*", "a.b>", "**"] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "*", ">", "a.*.c", "a.>", "orders.*.dlq"] {
            assert!(check(good).is_ok(), "{good:?}");
        }
    }
}
