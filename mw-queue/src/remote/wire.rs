//! What travels between a remote client and the broker's queue service: messages,
//! deliveries, queue counters and [`QueueError`].
//!
//! Every type here is part of the `mw.queue` v1 wire interface (postcard-encoded inside
//! mw-rpc frames). Enum variants and struct fields are only ever appended, never
//! reordered, so the encoding stays stable within a service version.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::engine::index::{MemoryStats, QueueStats};
use crate::error::Error;
use crate::message::{DeliveryTag, Message, MessageId};
use crate::storage::log::LogStats;

/// A [`Message`] as sent to the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMessage {
    /// The producer-chosen id (`None`: the broker generates one). A producer-chosen id
    /// already stored within the broker's dedup window is acknowledged but stored once.
    pub id: Option<u128>,
    /// Time-to-live in milliseconds from when the broker stores it.
    pub ttl_ms: Option<u64>,
    /// Delay in milliseconds before it may be delivered.
    pub delay_ms: Option<u64>,
    /// The body.
    #[serde(with = "bytes_serde")]
    pub body: Bytes,
}

impl From<Message> for WireMessage {
    fn from(m: Message) -> Self {
        WireMessage {
            id: m.id.map(|i| i.0),
            ttl_ms: m.ttl.map(|d| d.as_millis().min(u64::MAX as u128) as u64),
            delay_ms: m.delay.map(|d| d.as_millis().min(u64::MAX as u128) as u64),
            body: m.body,
        }
    }
}

impl From<WireMessage> for Message {
    fn from(w: WireMessage) -> Self {
        Message {
            body: w.body,
            id: w.id.map(MessageId),
            ttl: w.ttl_ms.map(Duration::from_millis),
            delay: w.delay_ms.map(Duration::from_millis),
        }
    }
}

/// One message handed to a remote consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireDelivery {
    /// The message id.
    pub id: u128,
    /// Names this delivery for ack/nack/reject/extend.
    pub tag: DeliveryTag,
    /// When the message was sent, in ms since the Unix epoch (broker clock).
    pub sent_at_ms: u64,
    /// The body.
    #[serde(with = "bytes_serde")]
    pub body: Bytes,
}

/// A message waiting in a queue, as `peek` shows it (nothing is delivered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePeeked {
    /// The message id.
    pub id: u128,
    /// When it was sent, in ms since the Unix epoch (broker clock).
    pub sent_at_ms: u64,
    /// Deliveries so far in this queue.
    pub deliveries: u32,
    /// Where it waits: [`WireWaiting`].
    pub waiting: WireWaiting,
    /// The body.
    #[serde(with = "bytes_serde")]
    pub body: Bytes,
}

/// [`Waiting`](crate::Waiting) on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireWaiting {
    /// Never delivered, in line.
    Ready,
    /// Delivered before and returned, in line.
    Returned,
    /// Deliverable from `due_ms` (ms since the Unix epoch).
    Delayed {
        /// When.
        due_ms: u64,
    },
}

impl From<crate::Peeked> for WirePeeked {
    fn from(p: crate::Peeked) -> Self {
        WirePeeked {
            id: p.id.0,
            sent_at_ms: p.sent_at_ms,
            deliveries: p.deliveries,
            waiting: match p.waiting {
                crate::Waiting::Ready => WireWaiting::Ready,
                crate::Waiting::Returned => WireWaiting::Returned,
                crate::Waiting::Delayed { due_ms } => WireWaiting::Delayed { due_ms },
            },
            body: p.body,
        }
    }
}

/// A consumer attached at the broker, as `consumers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireConsumer {
    /// The queue it reads.
    pub queue: String,
    /// Its number (for `close_consumer`).
    pub id: u64,
    /// Deliveries it holds unsettled.
    pub unacked: u64,
}

/// One queue and its counters, as listed by the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// The queue's name (dead-letter queues are listed too).
    pub name: String,
    /// Messages waiting to be delivered (ready, returned or delayed).
    pub depth: u64,
    /// Of `depth`, messages delayed.
    pub delayed: u64,
    /// Messages delivered and not yet settled or timed out.
    pub in_flight: u64,
    /// Consumers attached (each remote consumer is one).
    pub consumers: u64,
    /// Messages in this queue's dead-letter queue.
    pub dead_letters: u64,
}

impl QueueInfo {
    pub(crate) fn new(name: String, s: QueueStats) -> Self {
        QueueInfo {
            name,
            depth: s.depth,
            delayed: s.delayed,
            in_flight: s.in_flight,
            consumers: s.consumers,
            dead_letters: s.dead_letters,
        }
    }
}

/// The broker's storage counters since it started, as answered by `stats`
/// ([`RemoteQueues::stats`](super::RemoteQueues::stats)): its log writer's
/// ([`LogStats`](crate::LogStats)) and its index's memory
/// ([`MemoryStats`](crate::MemoryStats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerStats {
    /// Log records appended (written successfully).
    pub appends: u64,
    /// Write calls (one per batch chunk).
    pub writes: u64,
    /// Bytes written to segments.
    pub bytes_written: u64,
    /// `fdatasync` calls on segment files.
    pub fsyncs: u64,
    /// Records made durable by those fsyncs (sum over all fsyncs).
    pub synced_records: u64,
    /// The most records a single fsync covered.
    pub max_records_per_fsync: u64,
    /// Segment files created.
    pub segments_created: u64,
    /// Segment files deleted because nothing in them was live.
    pub segments_deleted: u64,
    /// Messages known to the index (every state, every queue).
    pub messages: u64,
    /// Estimated bytes of index structures (excluding the body cache).
    pub index_bytes: u64,
    /// Bytes charged to the body cache.
    pub cache_bytes: u64,
    /// Producer-chosen ids inside the dedup window.
    pub dedup_entries: u64,
    /// Never-delivered messages held in memory as ready slots.
    pub ready_slots: u64,
    /// Never-delivered messages spilled to their segments (not in memory).
    pub spilled_messages: u64,
    /// Runs describing the spilled messages.
    pub spilled_runs: u64,
}

impl BrokerStats {
    pub(crate) fn new(log: LogStats, mem: MemoryStats) -> Self {
        BrokerStats {
            appends: log.appends,
            writes: log.writes,
            bytes_written: log.bytes_written,
            fsyncs: log.fsyncs,
            synced_records: log.synced_records,
            max_records_per_fsync: log.max_records_per_fsync,
            segments_created: log.segments_created,
            segments_deleted: log.segments_deleted,
            messages: mem.messages,
            index_bytes: mem.index_bytes,
            cache_bytes: mem.cache_bytes,
            dedup_entries: mem.dedup_entries,
            ready_slots: mem.ready_slots,
            spilled_messages: mem.spilled_messages,
            spilled_runs: mem.spilled_runs,
        }
    }

    /// Mean number of records covered by one fsync (0 if none happened).
    pub fn records_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 {
            0.0
        } else {
            self.synced_records as f64 / self.fsyncs as f64
        }
    }
}

/// Why the broker refused a queue operation: [`crate::Error`] in a form that crosses the
/// network (causes become text). Remote clients see it as
/// [`RemoteError::Refused`](super::RemoteError::Refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue holds the broker's `max_queue_len` messages; retry later.
    #[error("queue {queue} is full ({limit} messages)")]
    QueueFull {
        /// The queue.
        queue: String,
        /// The configured limit.
        limit: u64,
    },
    /// The broker's disk is full; nothing of the failed request was stored.
    #[error("broker disk full: {0}")]
    DiskFull(String),
    /// The body exceeds the broker's `max_message_size`.
    #[error("message of {size} bytes exceeds the broker's max message size of {limit} bytes")]
    MessageTooLarge {
        /// Body size in bytes.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The name is empty, longer than 255 bytes, or contains whitespace or control
    /// characters.
    #[error("invalid queue name {0:?}")]
    InvalidQueueName(String),
    /// The delivery is no longer in flight (settled already, or its visibility timeout
    /// expired and the message will be redelivered).
    #[error("delivery {tag} on queue {queue} is not in flight")]
    DeliveryNotFound {
        /// The queue.
        queue: String,
        /// The stale tag.
        tag: DeliveryTag,
    },
    /// The broker found corrupt storage (the text names file and offset).
    #[error("broker storage corrupt: {0}")]
    Corrupt(String),
    /// An earlier storage failure left the broker's log unusable until it restarts.
    #[error("broker storage failed earlier; the broker must be restarted")]
    Poisoned,
    /// Any other storage failure at the broker.
    #[error("broker i/o error: {0}")]
    Io(String),
    /// The broker's queue manager is shutting down.
    #[error("broker queue manager is closed")]
    Closed,
    /// The request itself is unacceptable (for instance a batch over the size limit).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The broker has no queue by that name: nothing was ever sent to it (since the
    /// broker started, or since it was deleted). Queues are created by sending to them;
    /// receiving, inspecting or administering a name creates nothing.
    #[error("no queue named {0:?} on the broker")]
    UnknownQueue(String),
    /// The queue cannot be deleted while consumers are attached.
    #[error("queue {queue} is in use ({consumers} consumers attached); stop them first")]
    QueueInUse {
        /// The queue.
        queue: String,
        /// Consumers attached.
        consumers: u64,
    },
    /// The consumer was closed by an administrator (`mw consumer close`).
    #[error("consumer {consumer} was closed by an administrator")]
    ConsumerClosed {
        /// The consumer's number.
        consumer: u64,
    },
    /// The logged-in user may not do this to this queue (the broker's `--auth` file);
    /// nothing was done, and the connection stays usable for what is allowed.
    #[error("permission denied: {0}")]
    PermissionDenied(mw_rpc::auth::Denied),
}

impl From<mw_rpc::auth::Denied> for QueueError {
    fn from(d: mw_rpc::auth::Denied) -> Self {
        QueueError::PermissionDenied(d)
    }
}

impl QueueError {
    /// Whether sending the same request again can never succeed (as opposed to a full
    /// queue or disk, which may clear).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            QueueError::MessageTooLarge { .. }
                | QueueError::InvalidQueueName(_)
                | QueueError::DeliveryNotFound { .. }
                | QueueError::BadRequest(_)
                | QueueError::UnknownQueue(_)
                | QueueError::PermissionDenied(_)
        )
    }
}

impl From<Error> for QueueError {
    fn from(e: Error) -> Self {
        match e {
            Error::QueueFull { queue, limit } => QueueError::QueueFull { queue, limit },
            Error::DiskFull { .. } => QueueError::DiskFull(crate_chain(&e)),
            Error::MessageTooLarge { size, limit } => QueueError::MessageTooLarge {
                size: size as u64,
                limit: limit as u64,
            },
            Error::InvalidQueueName(n) => QueueError::InvalidQueueName(n),
            Error::DeliveryNotFound { queue, tag } => QueueError::DeliveryNotFound { queue, tag },
            Error::Corrupt { .. } => QueueError::Corrupt(e.to_string()),
            Error::Poisoned => QueueError::Poisoned,
            Error::Closed => QueueError::Closed,
            Error::UnknownQueue(n) => QueueError::UnknownQueue(n),
            Error::QueueInUse { queue, consumers } => QueueError::QueueInUse { queue, consumers },
            Error::ConsumerClosed { consumer } => QueueError::ConsumerClosed { consumer },
            // Io, Locked and future variants.
            other => QueueError::Io(crate_chain(&other)),
        }
    }
}

/// `e` and its sources on one line.
fn crate_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// `Bytes` as a postcard byte string (length + raw bytes) rather than a sequence of
/// individually encoded `u8`s.
mod bytes_serde {
    use bytes::Bytes;
    use serde::{de, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes::copy_from_slice(v))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes::from(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                // Bounded by what the decoder already holds: a seq cannot claim more
                // elements than the frame has bytes.
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Bytes::from(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_through_postcard() {
        let m = Message::new("hello")
            .with_id(7u128)
            .with_ttl(Duration::from_secs(3))
            .with_delay(Duration::from_millis(5));
        let w = WireMessage::from(m);
        let bytes = postcard::to_allocvec(&w).unwrap();
        // 1 + 1 (id tag + varint 7) ... the body is raw: "hello" appears verbatim.
        assert!(bytes.windows(5).any(|x| x == b"hello"));
        let back: WireMessage = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, w);
        let m = Message::from(back);
        assert_eq!(m.id(), Some(MessageId(7)));
        assert_eq!(m.ttl, Some(Duration::from_secs(3)));
    }

    #[test]
    fn queue_errors_map_plainly() {
        let e = QueueError::from(Error::QueueFull {
            queue: "q".into(),
            limit: 3,
        });
        assert_eq!(e.to_string(), "queue q is full (3 messages)");
        let disk = Error::io(
            "write",
            "/data/1.seg",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let e = QueueError::from(disk);
        assert!(matches!(e, QueueError::DiskFull(_)));
        assert!(e.to_string().starts_with("broker disk full"), "{e}");
        assert!(!e.is_permanent());
    }
}
