//! [`QueueName`]: a queue name, checked once where it enters the crate.
//!
//! The log stores a name's length in one byte, so a name is 1 to
//! [`MAX_LEN`](QueueName::MAX_LEN) bytes of UTF-8. Names a network client may use
//! are stricter ([`QueueName::new_remote`]): they show up in logs, metrics and
//! command lines, where whitespace and control characters would mislead. Past
//! the public API (which takes `&str`), the engine and the log only handle
//! `QueueName`s, so none of them checks a name again.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A valid queue name: 1 to 255 bytes of UTF-8. Cheap to clone.
///
/// Hashes and compares as the `str` it holds, so maps keyed by it can be
/// looked up with a `&str`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct QueueName(Arc<str>);

impl QueueName {
    /// Longest name in bytes: the log stores the length in one byte.
    pub(crate) const MAX_LEN: usize = 255;

    /// Checks `name`: 1 to [`MAX_LEN`](Self::MAX_LEN) bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`] naming `name`.
    pub(crate) fn new(name: &str) -> Result<QueueName> {
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(Error::InvalidQueueName(name.to_string()));
        }
        Ok(QueueName(name.into()))
    }

    /// Checks a name a network client sent: as [`new`](Self::new), and no
    /// whitespace or control characters.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQueueName`] naming `name`.
    pub(crate) fn new_remote(name: &str) -> Result<QueueName> {
        if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::InvalidQueueName(name.to_string()));
        }
        Self::new(name)
    }

    /// A name decoded from a log record, which can only hold valid names (a length
    /// byte of 1 to 255, then UTF-8, both checked by the decoder).
    pub(crate) fn decoded(name: &str) -> QueueName {
        debug_assert!(Self::new(name).is_ok(), "the decoder checked {name:?}");
        QueueName(name.into())
    }

    /// The name of the dead-letter queue of `self`: the name followed by `suffix`.
    ///
    /// The caller keeps the result within [`MAX_LEN`](Self::MAX_LEN): a name within
    /// `suffix.len()` bytes of it has no dead-letter queue (`Index::dlq_name`), since
    /// the log could not store the longer name.
    pub(crate) fn with_suffix(&self, suffix: &str) -> QueueName {
        QueueName(format!("{self}{suffix}").into())
    }
}

impl Deref for QueueName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for QueueName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for QueueName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Test shorthand: `"q".into()`. Panics on an invalid name.
#[cfg(test)]
impl From<&str> for QueueName {
    fn from(name: &str) -> QueueName {
        QueueName::new(name).expect("a valid name in a test")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_1_to_255_bytes() {
        assert!(QueueName::new("orders").is_ok());
        assert!(QueueName::new(&"é".repeat(127)).is_ok(), "254 bytes");
        assert!(QueueName::new(&"x".repeat(255)).is_ok());
        let long = "x".repeat(256);
        assert_eq!(
            QueueName::new(&long).unwrap_err().to_string(),
            format!("invalid queue name {long:?}")
        );
        assert_eq!(
            QueueName::new("").unwrap_err().to_string(),
            "invalid queue name \"\""
        );
        assert!(
            QueueName::new("a b").is_ok(),
            "embedded queues allow spaces"
        );
    }

    #[test]
    fn a_remote_name_also_refuses_whitespace_and_control_characters() {
        assert!(QueueName::new_remote("orders.dlq").is_ok());
        assert!(QueueName::new_remote("ünïcode-ok_1").is_ok());
        for bad in ["a b", "a\nb", "bell\u{7}", "", &"x".repeat(256)] {
            assert!(QueueName::new_remote(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_name_is_looked_up_by_its_str() {
        let mut m = std::collections::HashMap::new();
        m.insert(QueueName::new("q").unwrap(), 1);
        assert_eq!(m.get("q"), Some(&1));
        assert_eq!(format!("{:?}", QueueName::new("q").unwrap()), "\"q\"");
    }
}
