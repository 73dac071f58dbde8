//! Who can reach whom: partitions and isolated endpoints.

use std::collections::BTreeSet;

/// The cuts in force on a simulated network. Reachability is symmetric, and an endpoint
/// always reaches itself.
#[derive(Debug, Default)]
pub(crate) struct Topology {
    /// Each cut separates every member of one side from every member of the other.
    cuts: Vec<(BTreeSet<String>, BTreeSet<String>)>,
    /// Endpoints cut off from every other endpoint.
    isolated: BTreeSet<String>,
}

impl Topology {
    pub fn partition(&mut self, side_a: &[&str], side_b: &[&str]) {
        let set = |s: &[&str]| s.iter().map(|e| e.to_string()).collect::<BTreeSet<_>>();
        self.cuts.push((set(side_a), set(side_b)));
    }

    pub fn isolate(&mut self, endpoint: &str) {
        self.isolated.insert(endpoint.to_string());
    }

    pub fn heal(&mut self) {
        self.cuts.clear();
        self.isolated.clear();
    }

    /// Why `to` cannot be reached from `from`, or `None` if it can.
    pub fn unreachable(&self, from: &str, to: &str) -> Option<String> {
        if from == to {
            return None;
        }
        for e in [from, to] {
            if self.isolated.contains(e) {
                return Some(format!(
                    "{} is unreachable from {}: {} is isolated",
                    show(to),
                    show(from),
                    show(e)
                ));
            }
        }
        for (a, b) in &self.cuts {
            if (a.contains(from) && b.contains(to)) || (b.contains(from) && a.contains(to)) {
                return Some(format!(
                    "{} is unreachable from {}: partitioned {} | {}",
                    show(to),
                    show(from),
                    list(a),
                    list(b)
                ));
            }
        }
        None
    }
}

/// An endpoint's name for messages; the anonymous client has none.
pub(crate) fn show(endpoint: &str) -> &str {
    if endpoint.is_empty() {
        "(anonymous client)"
    } else {
        endpoint
    }
}

fn list(side: &BTreeSet<String>) -> String {
    let names: Vec<&str> = side.iter().map(|s| show(s)).collect();
    format!("{{{}}}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_cuts_across_sides_only() {
        let mut t = Topology::default();
        t.partition(&["a", "b"], &["c"]);
        assert!(t.unreachable("a", "b").is_none());
        assert!(t.unreachable("a", "d").is_none());
        let why = t.unreachable("c", "a").unwrap();
        assert_eq!(why, "a is unreachable from c: partitioned {a, b} | {c}");
        assert!(t.unreachable("b", "c").is_some());
        t.heal();
        assert!(t.unreachable("b", "c").is_none());
    }

    #[test]
    fn isolation_cuts_everyone_but_itself() {
        let mut t = Topology::default();
        t.isolate("c");
        assert!(t.unreachable("c", "c").is_none());
        assert!(t.unreachable("a", "b").is_none());
        assert_eq!(
            t.unreachable("", "c").unwrap(),
            "c is unreachable from (anonymous client): c is isolated"
        );
        assert!(t.unreachable("c", "x").is_some());
    }
}
