//! `notify`: tuples as they are written, through mw-pubsub (JavaSpaces' `notify`).
//!
//! Every `out` publishes the tuple, after it became visible, on the space's [`Bus`](mw_pubsub::Bus)
//! (the broker's bus, for a broker's space) under a topic naming its arity and field types:
//!
//! ```text
//! ["task", 7, 2.5]    →  mw.space.3.string.int.float      payload: ["task",7,2.5] (JSON)
//! []                  →  mw.space.0
//! ```
//!
//! A notification pattern becomes a topic pattern the bus's trie can filter on — a field's
//! type for actuals and typed formals, `*` for `null` — and the subscriber tests the full
//! pattern on each event: `["task", {"?": "int"}, null]` subscribes to
//! `mw.space.3.string.int.*` and keeps the events whose first field is `"task"`. Anyone can
//! watch the raw events too: `mw sub 'mw.space.>'` prints every write.
//!
//! Notifications are transient events, as in JavaSpaces: only tuples written while the
//! subscription exists are seen, and a subscriber that falls behind its buffer loses
//! events as its slow-consumer policy says ([`Notifications::missed`] counts them).

use mw_pubsub::{RemoteBus, RemoteSubscription, Subscription};

use crate::error::Result;
use crate::pattern::{Field, Pattern};
use crate::value::Tuple;

/// The topic prefix of notification events.
pub const TOPIC_PREFIX: &str = "mw.space";

/// The topic `tuple` is announced on.
pub fn topic(tuple: &Tuple) -> String {
    let mut t = format!("{TOPIC_PREFIX}.{}", tuple.len());
    for v in tuple.fields() {
        t.push('.');
        t.push_str(v.type_of().name());
    }
    t
}

/// The topic pattern covering every tuple `pattern` can match.
pub fn topic_pattern(pattern: &Pattern) -> String {
    let mut t = format!("{TOPIC_PREFIX}.{}", pattern.len());
    for f in pattern.fields() {
        t.push('.');
        t.push_str(match f {
            Field::Value(v) => v.type_of().name(),
            Field::Typed(ty) => ty.name(),
            Field::Any => "*",
        });
    }
    t
}

enum Source {
    Local(Subscription),
    Remote {
        // Held only to keep the connection open.
        _bus: RemoteBus,
        sub: RemoteSubscription,
    },
}

/// A stream of written tuples matching a pattern, from [`Space::notify`](crate::Space::notify)
/// or [`RemoteSpace::notify`](crate::RemoteSpace::notify). Dropping it unsubscribes.
#[must_use = "notifications arrive only while the subscription is kept and read"]
pub struct Notifications {
    source: Source,
    pattern: Pattern,
    missed: u64,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications")
            .field("pattern", &self.pattern)
            .field("missed", &self.missed)
            .finish_non_exhaustive()
    }
}

impl Notifications {
    pub(crate) fn local(sub: Subscription, pattern: Pattern) -> Notifications {
        Notifications {
            source: Source::Local(sub),
            pattern,
            missed: 0,
        }
    }

    pub(crate) fn remote(
        bus: RemoteBus,
        sub: RemoteSubscription,
        pattern: Pattern,
    ) -> Notifications {
        Notifications {
            source: Source::Remote { _bus: bus, sub },
            pattern,
            missed: 0,
        }
    }

    /// The next tuple written that matches the pattern.
    ///
    /// # Errors
    /// [`SpaceError::Notify`](crate::SpaceError::Notify) when the subscription ends (the bus
    /// closed, the broker went away, or a `Disconnect` slow-consumer policy cut it off).
    ///
    /// # Cancel safety
    /// Safe: an event is consumed only when it is returned or skipped as not matching.
    pub async fn next(&mut self) -> Result<Tuple> {
        loop {
            let event = match &mut self.source {
                Source::Local(s) => s.recv().await?,
                Source::Remote { sub, .. } => sub.recv().await?,
            };
            self.missed += event.dropped_before;
            // Someone else's event on our topic (not a tuple): not ours to report.
            let Ok(text) = std::str::from_utf8(&event.payload) else {
                continue;
            };
            let Ok(tuple) = Tuple::from_json(text) else {
                continue;
            };
            if self.pattern.matches(&tuple) {
                return Ok(tuple);
            }
        }
    }

    /// Events lost so far to the subscription's slow-consumer policy (counted on the topic
    /// pattern, so some may not have matched the full pattern).
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;
    use crate::value::{tuple, Type};

    #[test]
    fn topics_name_arity_and_types() {
        assert_eq!(
            topic(&tuple!("task", 7, 2.5)),
            "mw.space.3.string.int.float"
        );
        assert_eq!(topic(&tuple!()), "mw.space.0");
        assert_eq!(
            topic_pattern(&pattern!("task", Type::Bytes, Field::Any)),
            "mw.space.3.string.bytes.*"
        );
        let p = mw_pubsub::Pattern::new(topic_pattern(&pattern!(Field::Any, true))).unwrap();
        assert!(p.matches(&mw_pubsub::Topic::new(topic(&tuple!(1, false))).unwrap()));
    }
}
