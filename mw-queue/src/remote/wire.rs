//! What travels between a remote client and the broker's queue service: deliveries,
//! queue counters and [`QueueError`] (a message to send travels as the crate's
//! [`Message`](crate::Message), serialized as it is).
//!
//! Every type here is part of the `mw.queue` v1 wire interface (postcard-encoded inside
//! mw-rpc frames). Enum variants and struct fields are only ever appended, never
//! reordered, so the encoding stays stable within a service version.

use bytes::Bytes;
use mw_core::error::chain;
use serde::{Deserialize, Serialize};

use crate::engine::index::{MemoryStats, QueueStats};
use crate::error::Error;
use crate::message::DeliveryTag;
use crate::storage::log::LogStats;

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
/// ([`RemoteQueues::stats`](super::RemoteQueues::stats)): its log writer's and its
/// index's memory, each serialized as it is (the same bytes as their fields inlined in
/// this order: postcard has no framing around a nested struct).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerStats {
    /// The log writer's counters (appends, writes, fsyncs, segments). Its fsync
    /// histogram does not travel and reads as zeros.
    pub log: LogStats,
    /// The index's memory (messages, index and cache bytes, spilled messages).
    pub memory: MemoryStats,
}

impl BrokerStats {
    /// Mean number of records covered by one fsync (0 if none happened).
    pub fn records_per_fsync(&self) -> f64 {
        self.log.records_per_fsync()
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
            Error::DiskFull { .. } => QueueError::DiskFull(chain(&e)),
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
            other => QueueError::Io(chain(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Message;

    /// `Message` serializes as it is, with the bytes `mw.queue` v1 gives a message: id,
    /// TTL and delay in ms (options), then the body as a byte string.
    #[test]
    fn message_bytes_are_id_ttl_delay_body() {
        let m = Message::new("hello")
            .with_id(7u128)
            .with_ttl(Duration::from_secs(3))
            .with_delay(Duration::from_millis(5));
        let bytes = postcard::to_allocvec(&m).unwrap();
        let fields = (
            Some(7u128),
            Some(3_000u64),
            Some(5u64),
            Bytes::from("hello"),
        );
        assert_eq!(bytes, postcard::to_allocvec(&fields).unwrap());
        assert!(bytes.windows(5).any(|x| x == b"hello"), "the body is raw");
        let back: Message = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, m);
        let never = Message::new("").with_ttl(Duration::MAX);
        let fields = (None::<u128>, Some(u64::MAX), None::<u64>, Bytes::new());
        assert_eq!(
            postcard::to_allocvec(&never).unwrap(),
            postcard::to_allocvec(&fields).unwrap()
        );
    }

    /// `BrokerStats` serializes its two stats structs as they are, which is the same
    /// bytes as the fifteen counters it used to declare one by one (`mw.queue` v1).
    #[test]
    fn broker_stats_bytes_are_the_counters_in_order() {
        let mut log = LogStats::default();
        (log.appends, log.writes, log.bytes_written, log.fsyncs) = (1, 2, 300, 4);
        (log.synced_records, log.max_records_per_fsync) = (5, 6);
        (log.segments_created, log.segments_deleted) = (7, 8);
        log.fsync_nanos = 999; // not on the wire
        let mut memory = MemoryStats::default();
        (memory.messages, memory.index_bytes, memory.cache_bytes) = (9, 10, 11);
        (memory.dedup_entries, memory.ready_slots) = (12, 13);
        (memory.spilled_messages, memory.spilled_runs) = (14, 200);
        let bytes = postcard::to_allocvec(&BrokerStats { log, memory }).unwrap();
        let counters: [u64; 15] = [1, 2, 300, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 200];
        let mut expected = Vec::new();
        for c in counters {
            expected.extend(postcard::to_allocvec(&c).unwrap());
        }
        assert_eq!(bytes, expected);
        let back: BrokerStats = postcard::from_bytes(&bytes).unwrap();
        assert_eq!((back.log.appends, back.log.fsync_nanos), (1, 0));
        assert_eq!(back.memory, memory);
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
