//! The message vocabulary every layer shares: what a producer sends ([`Message`],
//! [`MessageId`]) and what names one delivery of it ([`DeliveryTag`]).

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
/// Serialized as it is in the `mw.queue` service's `send` and `send_batch` calls
/// (postcard): the fields in declaration order, which is the wire format (postcard has no
/// field names): the id (`Option<u128>`), the TTL and the delay (`Option<u64>`, whole
/// milliseconds, saturating), then the body as a byte string.
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// The producer-chosen id (`None`: generated on send). A producer-chosen id already
    /// stored within the dedup window is acknowledged but stored once.
    pub(crate) id: Option<MessageId>,
    /// Time-to-live from when it is stored.
    #[serde(with = "optional_millis")]
    pub(crate) ttl: Option<Duration>,
    /// Delay before it may be delivered.
    #[serde(with = "optional_millis")]
    pub(crate) delay: Option<Duration>,
    pub(crate) body: Bytes,
}

/// `Option<Duration>` as `Option<u64>` whole milliseconds, saturating at `u64::MAX`
/// ("never"; see `mw_core::time::millis`).
mod optional_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(mw_core::time::millis).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
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

    /// When the message expires if sent at `now` (ms since the Unix epoch), 0 for
    /// never. At least 1 ms after `now`, so a TTL shorter than a millisecond still
    /// means "expires", never "never".
    pub(crate) fn expires_at_ms(&self, now: u64) -> u64 {
        self.ttl
            .map_or(0, |t| now.saturating_add(mw_core::time::millis(t).max(1)))
    }

    /// When the message may first be delivered if sent at `now` (ms since the Unix
    /// epoch), 0 for at once.
    pub(crate) fn not_before_ms(&self, now: u64) -> u64 {
        self.delay
            .map_or(0, |d| now.saturating_add(mw_core::time::millis(d)))
    }
}

/// Names one delivery of one message: the message's log sequence number and which
/// delivery of it this is. A tag goes stale when the delivery is settled or its
/// visibility timeout expires, so a late ack cannot settle a redelivery held by
/// another consumer.
///
/// Tags are plain data (serde-serializable), so a network broker can send them to a
/// remote consumer and settle with [`Queue::ack`](crate::Queue::ack) and friends.
///
/// ```
/// let tag = mw_queue::DeliveryTag::new(42, 1);
/// assert_eq!((tag.lsn(), tag.delivery()), (42, 1));
/// assert_eq!(tag.to_string(), "42.1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct DeliveryTag {
    pub(crate) lsn: u64,
    pub(crate) delivery: u32,
}

impl DeliveryTag {
    /// A tag from its parts (as received back from a remote consumer).
    pub fn new(lsn: u64, delivery: u32) -> Self {
        DeliveryTag { lsn, delivery }
    }

    /// Log sequence number of the message's enqueue record.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Which delivery of the message this is (1 for the first).
    pub fn delivery(&self) -> u32 {
        self.delivery
    }
}

impl fmt::Display for DeliveryTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.lsn, self.delivery)
    }
}
