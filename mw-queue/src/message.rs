//! What a producer sends: [`Message`] and its [`MessageId`].

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// A 128-bit message id, chosen by the producer or generated on send.
///
/// ```
/// let id = mw_queue::MessageId::from(0xabcu128);
/// assert_eq!(id.to_string(), "00000000000000000000000000000abc");
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct MessageId(pub u128);

impl From<u128> for MessageId {
    fn from(v: u128) -> Self {
        MessageId(v)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A message to send: a body plus optional id, time-to-live and delay.
///
/// ```
/// use std::time::Duration;
/// use mw_queue::{Message, MessageId};
/// let m = Message::new("hello")
///     .with_id(MessageId(7))
///     .with_ttl(Duration::from_secs(60))
///     .with_delay(Duration::from_secs(5));
/// assert_eq!(&m.body()[..], b"hello");
/// assert_eq!(m.id(), Some(MessageId(7)));
/// ```
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) body: Bytes,
    pub(crate) id: Option<MessageId>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) delay: Option<Duration>,
}

impl Message {
    /// A message with this body, a generated id, no TTL and no delay.
    pub fn new(body: impl Into<Bytes>) -> Message {
        Message {
            body: body.into(),
            id: None,
            ttl: None,
            delay: None,
        }
    }

    /// Uses a producer-chosen id. A resend with the same id within the dedup window
    /// is acknowledged but stored once.
    pub fn with_id(mut self, id: impl Into<MessageId>) -> Message {
        self.id = Some(id.into());
        self
    }

    /// The message expires this long after it is sent; expired messages are never
    /// delivered.
    pub fn with_ttl(mut self, ttl: Duration) -> Message {
        self.ttl = Some(ttl);
        self
    }

    /// The message is not delivered before this long after it is sent.
    pub fn with_delay(mut self, delay: Duration) -> Message {
        self.delay = Some(delay);
        self
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The producer-chosen id, if any.
    pub fn id(&self) -> Option<MessageId> {
        self.id
    }
}
