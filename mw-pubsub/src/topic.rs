//! Topic names and subscription patterns.
//!
//! A **topic** is a dot-separated list of non-empty tokens, `sensors.kitchen.temp`. A token is one
//! or more printable ASCII characters (`!` to `~`) other than `.`, `*` and `>`; whitespace, control
//! characters and non-ASCII are rejected so the same names work from any language on the wire.
//! A name is at most [`MAX_NAME_LEN`] bytes.
//!
//! A **pattern** is a topic in which whole tokens may be wildcards, as in NATS:
//!
//! | token | matches | example | matches | does not match |
//! |---|---|---|---|---|
//! | `*` | exactly one token | `sensors.*.temp` | `sensors.kitchen.temp` | `sensors.temp`, `sensors.a.b.temp` |
//! | `>` | one or more tokens; last position only | `sensors.>` | `sensors.a`, `sensors.a.b` | `sensors` |
//!
//! Every topic is also a valid pattern (matching only itself).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Longest topic or pattern accepted, in bytes.
///
/// Bounds the work of matching and the depth of the subscription trie (at most 128 levels).
pub const MAX_NAME_LEN: usize = 255;

/// Storage for a validated name: a static string costs no allocation, anything else is shared.
#[derive(Clone)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Shared(s) => s,
        }
    }
}

/// Checks `name` against the syntax in the module docs. `wildcards` allows `*` and `>` tokens.
fn validate(name: &str, wildcards: bool) -> Result<()> {
    if name.is_empty() {
        return Err(Error::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::NameTooLong {
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    let levels = name.split('.').count();
    let mut offset = 0;
    for (level, token) in name.split('.').enumerate() {
        if token.is_empty() {
            return Err(Error::EmptyToken {
                name: name.to_owned(),
                level,
            });
        }
        if token == "*" || token == ">" {
            if !wildcards {
                return Err(Error::WildcardInTopic {
                    name: name.to_owned(),
                    wildcard: token.chars().next().unwrap_or('*'),
                    level,
                });
            }
            if token == ">" && level + 1 != levels {
                return Err(Error::FullWildcardNotLast {
                    name: name.to_owned(),
                    level,
                });
            }
        } else {
            for (i, ch) in token.char_indices() {
                if ch == '*' || ch == '>' {
                    return Err(Error::PartialWildcard {
                        name: name.to_owned(),
                        level,
                    });
                }
                if !ch.is_ascii_graphic() {
                    return Err(Error::InvalidChar {
                        name: name.to_owned(),
                        ch,
                        offset: offset + i,
                    });
                }
            }
        }
        offset += token.len() + 1;
    }
    Ok(())
}

macro_rules! name_type {
    ($ty:ident, $wildcards:expr, $what:literal) => {
        impl $ty {
            #[doc = concat!("Validates `name` and makes a ", $what, " from it (one allocation).")]
            ///
            /// # Errors
            ///
            /// A [`Error`] naming the first syntax problem found, see the module docs.
            pub fn new(name: impl AsRef<str>) -> Result<Self> {
                let name = name.as_ref();
                validate(name, $wildcards)?;
                Ok(Self(Name::Shared(Arc::from(name))))
            }

            #[doc = concat!("Validates a static `name` and makes a ", $what, " from it without allocating.")]
            ///
            /// # Errors
            ///
            /// A [`Error`] naming the first syntax problem found, see the module docs.
            pub fn from_static(name: &'static str) -> Result<Self> {
                validate(name, $wildcards)?;
                Ok(Self(Name::Static(name)))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The dot-separated tokens, first to last.
            pub fn tokens(&self) -> std::str::Split<'_, char> {
                self.as_str().split('.')
            }

            /// Number of tokens (levels).
            pub fn depth(&self) -> usize {
                self.tokens().count()
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({:?})"), self.as_str())
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Eq for $ty {}

        impl PartialOrd for $ty {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $ty {
            fn cmp(&self, other: &Self) -> Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        // Hash, Eq and Ord agree with `str`, so `Borrow<str>` is sound for map lookups.
        impl Hash for $ty {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                validate(&s, $wildcards)?;
                Ok(Self(Name::Shared(Arc::from(s))))
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A concrete, validated topic name that events are published to, such as `sensors.kitchen.temp`.
///
/// Cloning is cheap (a reference count, or nothing for [`Topic::from_static`]), so the bus hands
/// the same `Topic` to every subscriber of an event.
///
/// ```
/// use mw_pubsub::{Error, Topic};
///
/// let t = Topic::new("sensors.kitchen.temp")?;
/// assert_eq!(t.depth(), 3);
/// assert!(matches!(Topic::new("sensors.*.temp"), Err(Error::WildcardInTopic { .. })));
/// assert!(matches!(Topic::new("sensors..temp"), Err(Error::EmptyToken { level: 1, .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone)]
pub struct Topic(Name);

name_type!(Topic, false, "topic");

/// A validated subscription pattern: a topic whose tokens may be `*` (one level) or, last, `>`
/// (one or more levels).
///
/// ```
/// use mw_pubsub::{Pattern, Error, Topic};
///
/// let p = Pattern::new("sensors.*.temp")?;
/// assert!(p.matches(&Topic::new("sensors.kitchen.temp")?));
/// assert!(!p.matches(&Topic::new("sensors.kitchen.humidity")?));
/// assert!(Pattern::new("sensors.>")?.matches(&Topic::new("sensors.a.b")?));
/// assert!(matches!(Pattern::new("a.>.b"), Err(Error::FullWildcardNotLast { level: 1, .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone)]
pub struct Pattern(Name);

name_type!(Pattern, true, "pattern");

impl Pattern {
    /// Whether `topic` matches this pattern, by comparing token by token.
    ///
    /// This is the direct definition; the [`Bus`](crate::Bus) indexes subscriptions in a trie instead, so its
    /// cost does not grow with the number of subscriptions.
    pub fn matches(&self, topic: &Topic) -> bool {
        // One definition of the wildcards for subscriptions and permission grants.
        mw_rpc::auth::pattern::matches(self.as_str(), topic.as_str())
    }

    /// Whether the pattern has no wildcard, so it matches exactly one topic.
    pub fn is_literal(&self) -> bool {
        self.tokens().all(|t| t != "*" && t != ">")
    }

    /// The text before the first wildcard token, including its trailing dot (`"a.b."` for
    /// `a.b.*`), or the whole name for a literal pattern. Every matching topic starts with it.
    pub fn literal_prefix(&self) -> &str {
        let s = self.as_str();
        let mut end = 0;
        for token in s.split('.') {
            if token == "*" || token == ">" {
                return &s[..end];
            }
            end += token.len() + 1;
        }
        s
    }
}

impl From<Topic> for Pattern {
    fn from(t: Topic) -> Self {
        Pattern(t.0)
    }
}

/// Anything a topic can be made from: [`Topic`], `&Topic`, `&str`, `String`.
///
/// Lets [`Bus::publish`](crate::Bus::publish) take `"a.b"` for convenience and a pre-validated
/// `&Topic` on hot paths (no validation, no allocation).
pub trait IntoTopic {
    /// Converts, validating if needed.
    ///
    /// # Errors
    ///
    /// Any syntax error of [`Topic::new`].
    fn into_topic(self) -> Result<Topic>;
}

impl IntoTopic for Topic {
    fn into_topic(self) -> Result<Topic> {
        Ok(self)
    }
}

impl IntoTopic for &Topic {
    fn into_topic(self) -> Result<Topic> {
        Ok(self.clone())
    }
}

impl IntoTopic for &str {
    fn into_topic(self) -> Result<Topic> {
        Topic::new(self)
    }
}

impl IntoTopic for String {
    fn into_topic(self) -> Result<Topic> {
        Topic::try_from(self)
    }
}

impl IntoTopic for &String {
    fn into_topic(self) -> Result<Topic> {
        Topic::new(self)
    }
}

/// Anything a pattern can be made from: [`Pattern`], `&Pattern`, [`Topic`], `&str`, `String`.
pub trait IntoPattern {
    /// Converts, validating if needed.
    ///
    /// # Errors
    ///
    /// Any syntax error of [`Pattern::new`].
    fn into_pattern(self) -> Result<Pattern>;
}

impl IntoPattern for Pattern {
    fn into_pattern(self) -> Result<Pattern> {
        Ok(self)
    }
}

impl IntoPattern for &Pattern {
    fn into_pattern(self) -> Result<Pattern> {
        Ok(self.clone())
    }
}

impl IntoPattern for Topic {
    fn into_pattern(self) -> Result<Pattern> {
        Ok(self.into())
    }
}

impl IntoPattern for &Topic {
    fn into_pattern(self) -> Result<Pattern> {
        Ok(self.clone().into())
    }
}

impl IntoPattern for &str {
    fn into_pattern(self) -> Result<Pattern> {
        Pattern::new(self)
    }
}

impl IntoPattern for String {
    fn into_pattern(self) -> Result<Pattern> {
        Pattern::try_from(self)
    }
}

impl IntoPattern for &String {
    fn into_pattern(self) -> Result<Pattern> {
        Pattern::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefix_stops_at_first_wildcard() {
        assert_eq!(Pattern::new("a.b.*").unwrap().literal_prefix(), "a.b.");
        assert_eq!(Pattern::new("a.*.c").unwrap().literal_prefix(), "a.");
        assert_eq!(Pattern::new(">").unwrap().literal_prefix(), "");
        assert_eq!(Pattern::new("a.b").unwrap().literal_prefix(), "a.b");
    }

    #[test]
    fn invalid_char_reports_byte_offset() {
        match Topic::new("ab.c d") {
            Err(Error::InvalidChar {
                ch: ' ', offset: 4, ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn static_and_shared_names_compare_equal() {
        assert_eq!(
            Topic::from_static("a.b").unwrap(),
            Topic::new("a.b").unwrap()
        );
    }
}
