//! Log record types and their payload encoding (the part inside a frame).
//!
//! See `FORMAT.md` (repository root), section 4, for the byte layout. Every payload
//! starts with a kind byte and the record's log sequence number (LSN); a
//! message is named inside the log by the LSN of its `ENQUEUE` record.

use bytes::{BufMut, Bytes};

use crate::name::QueueName;

/// Kind byte of an `ENQUEUE` record.
pub(crate) const KIND_ENQUEUE: u8 = 1;
/// Kind byte of a `DELIVER` record.
pub(crate) const KIND_DELIVER: u8 = 2;
/// Kind byte of a `SETTLE` record.
pub(crate) const KIND_SETTLE: u8 = 3;
/// Kind byte of a `NACK` record.
pub(crate) const KIND_NACK: u8 = 4;
/// Kind byte of a `MOVE` record.
pub(crate) const KIND_MOVE: u8 = 5;

/// Latest plausible `ENQUEUE` timestamp (the last millisecond of the year 9999). A
/// record whose CRC is valid but whose timestamp is later is corruption, reported with
/// file and offset, not arithmetic that overflows during recovery.
pub(crate) const MAX_TIMESTAMP_MS: u64 = 253_402_300_799_999;

/// Whether `kind` is the kind byte of a record this version writes.
pub(crate) fn is_known_kind(kind: u8) -> bool {
    (KIND_ENQUEUE..=KIND_MOVE).contains(&kind)
}

/// Flag bit in `ENQUEUE`: the id was chosen by the producer (so it enters the dedup window).
pub(crate) const FLAG_PRODUCER_ID: u8 = 1;

/// Fixed bytes of an `ENQUEUE` payload before the queue name.
pub(crate) const ENQUEUE_FIXED: usize = 1 + 8 + 1 + 16 + 8 + 8 + 8 + 1;

/// Why a message left the log for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SettleReason {
    /// A consumer acknowledged it.
    Acked = 0,
    /// Its TTL passed before it could be delivered.
    Expired = 1,
    /// Rejected (or dead-lettered) with no dead-letter queue configured.
    Dropped = 2,
}

/// The header fields of an enqueued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EnqueueHeader {
    /// Message id.
    pub id: u128,
    /// Whether the producer chose the id.
    pub producer_id: bool,
    /// Wall-clock send time, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Expiry time in ms since the epoch; 0 = never.
    pub expires_at_ms: u64,
    /// Not deliverable before this time (ms since the epoch); 0 = at once.
    pub not_before_ms: u64,
}

/// A message as its `ENQUEUE` record holds it: the header and the body. What the
/// engine keeps in its body cache, and what it reads back from a segment when the body
/// is no longer cached.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    /// The message's attributes.
    pub header: EnqueueHeader,
    /// The body.
    pub body: Bytes,
}

/// An owned record about to be appended.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    /// A message enters `queue`.
    Enqueue {
        queue: QueueName,
        header: EnqueueHeader,
        body: Bytes,
    },
    /// Message `target` was handed out for the `delivery`-th time.
    Deliver {
        queue: QueueName,
        target: u64,
        delivery: u32,
    },
    /// Message `target` is gone for good.
    Settle {
        queue: QueueName,
        target: u64,
        reason: SettleReason,
    },
    /// Message `target` was returned to the queue, deliverable from `not_before_ms`.
    Nack {
        queue: QueueName,
        target: u64,
        not_before_ms: u64,
    },
    /// Message `target` moves from `queue` to `to` (dead-lettering, redrive), with its
    /// delivery count reset.
    Move {
        queue: QueueName,
        target: u64,
        to: QueueName,
    },
}

impl Record {
    /// Length of the encoded payload.
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Record::Enqueue { queue, body, .. } => ENQUEUE_FIXED + queue.len() + body.len(),
            Record::Deliver { queue, .. } => 9 + 1 + queue.len() + 8 + 4,
            Record::Settle { queue, .. } => 9 + 1 + queue.len() + 8 + 1,
            Record::Nack { queue, .. } => 9 + 1 + queue.len() + 8 + 8,
            Record::Move { queue, to, .. } => 9 + 1 + queue.len() + 8 + 1 + to.len(),
        }
    }

    /// Appends the payload for LSN `seq` to `buf`.
    pub(crate) fn encode(&self, seq: u64, buf: &mut Vec<u8>) {
        match self {
            Record::Enqueue {
                queue,
                header,
                body,
            } => {
                buf.put_u8(KIND_ENQUEUE);
                buf.put_u64_le(seq);
                buf.put_u8(if header.producer_id {
                    FLAG_PRODUCER_ID
                } else {
                    0
                });
                buf.put_u128_le(header.id);
                buf.put_u64_le(header.timestamp_ms);
                buf.put_u64_le(header.expires_at_ms);
                buf.put_u64_le(header.not_before_ms);
                put_name(buf, queue);
                buf.put_slice(body);
            }
            Record::Deliver {
                queue,
                target,
                delivery,
            } => {
                buf.put_u8(KIND_DELIVER);
                buf.put_u64_le(seq);
                put_name(buf, queue);
                buf.put_u64_le(*target);
                buf.put_u32_le(*delivery);
            }
            Record::Settle {
                queue,
                target,
                reason,
            } => {
                buf.put_u8(KIND_SETTLE);
                buf.put_u64_le(seq);
                put_name(buf, queue);
                buf.put_u64_le(*target);
                buf.put_u8(*reason as u8);
            }
            Record::Nack {
                queue,
                target,
                not_before_ms,
            } => {
                buf.put_u8(KIND_NACK);
                buf.put_u64_le(seq);
                put_name(buf, queue);
                buf.put_u64_le(*target);
                buf.put_u64_le(*not_before_ms);
            }
            Record::Move { queue, target, to } => {
                buf.put_u8(KIND_MOVE);
                buf.put_u64_le(seq);
                put_name(buf, queue);
                buf.put_u64_le(*target);
                put_name(buf, to);
            }
        }
    }
}

fn put_name(buf: &mut Vec<u8>, name: &QueueName) {
    // A QueueName is 1..=255 bytes (`QueueName::with_suffix` stays within it).
    debug_assert!(!name.is_empty() && name.len() <= QueueName::MAX_LEN);
    buf.put_u8(name.len() as u8);
    buf.put_slice(name.as_bytes());
}

/// A record decoded from a payload, borrowing from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordView<'a> {
    Enqueue {
        queue: &'a str,
        header: EnqueueHeader,
        /// Offset of the body inside the payload.
        body_offset: usize,
        body: &'a [u8],
    },
    Deliver {
        queue: &'a str,
        target: u64,
        delivery: u32,
    },
    Settle {
        queue: &'a str,
        target: u64,
        reason: SettleReason,
    },
    Nack {
        queue: &'a str,
        target: u64,
        not_before_ms: u64,
    },
    Move {
        queue: &'a str,
        target: u64,
        to: &'a str,
    },
}

/// A little-endian cursor that reports "too short" as `None`.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u128(&mut self) -> Option<u128> {
        Some(u128::from_le_bytes(self.take(16)?.try_into().ok()?))
    }
    fn name(&mut self) -> Option<&'a str> {
        let n = self.u8()? as usize;
        if n == 0 {
            return None;
        }
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

/// Decodes a payload into `(seq, record)`; `Err` carries a reason for a corruption error.
pub(crate) fn decode(payload: &[u8]) -> Result<(u64, RecordView<'_>), &'static str> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let kind = c.u8().ok_or("empty payload")?;
    let seq = c.u64().ok_or("payload too short")?;
    let short = "payload too short";
    let view = match kind {
        KIND_ENQUEUE => {
            let flags = c.u8().ok_or(short)?;
            let id = c.u128().ok_or(short)?;
            let timestamp_ms = c.u64().ok_or(short)?;
            if timestamp_ms > MAX_TIMESTAMP_MS {
                // Written by `now`, so this can only be damage that kept a valid CRC.
                return Err("enqueue timestamp past the year 9999");
            }
            let expires_at_ms = c.u64().ok_or(short)?;
            let not_before_ms = c.u64().ok_or(short)?;
            let queue = c.name().ok_or("bad queue name")?;
            let body_offset = c.pos;
            RecordView::Enqueue {
                queue,
                header: EnqueueHeader {
                    id,
                    producer_id: flags & FLAG_PRODUCER_ID != 0,
                    timestamp_ms,
                    expires_at_ms,
                    not_before_ms,
                },
                body_offset,
                body: &payload[body_offset..],
            }
        }
        KIND_DELIVER => RecordView::Deliver {
            queue: c.name().ok_or("bad queue name")?,
            target: c.u64().ok_or(short)?,
            delivery: c.u32().ok_or(short)?,
        },
        KIND_SETTLE => {
            let queue = c.name().ok_or("bad queue name")?;
            let target = c.u64().ok_or(short)?;
            let reason = match c.u8().ok_or(short)? {
                0 => SettleReason::Acked,
                1 => SettleReason::Expired,
                2 => SettleReason::Dropped,
                _ => return Err("unknown settle reason"),
            };
            RecordView::Settle {
                queue,
                target,
                reason,
            }
        }
        KIND_NACK => RecordView::Nack {
            queue: c.name().ok_or("bad queue name")?,
            target: c.u64().ok_or(short)?,
            not_before_ms: c.u64().ok_or(short)?,
        },
        KIND_MOVE => RecordView::Move {
            queue: c.name().ok_or("bad queue name")?,
            target: c.u64().ok_or(short)?,
            to: c.name().ok_or("bad queue name")?,
        },
        _ => return Err("unknown record kind"),
    };
    if !matches!(view, RecordView::Enqueue { .. }) && !c.done() {
        return Err("trailing bytes in payload");
    }
    Ok((seq, view))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(rec: Record) {
        let mut buf = Vec::new();
        rec.encode(42, &mut buf);
        assert_eq!(buf.len(), rec.encoded_len());
        let (seq, view) = decode(&buf).unwrap();
        assert_eq!(seq, 42);
        match (rec, view) {
            (
                Record::Enqueue {
                    queue,
                    header,
                    body,
                },
                RecordView::Enqueue {
                    queue: q,
                    header: h,
                    body: b,
                    ..
                },
            ) => {
                assert_eq!((&*queue, header, &body[..]), (q, h, b));
            }
            (
                Record::Deliver {
                    target, delivery, ..
                },
                RecordView::Deliver {
                    target: t,
                    delivery: d,
                    ..
                },
            ) => {
                assert_eq!((target, delivery), (t, d))
            }
            (Record::Settle { reason, .. }, RecordView::Settle { reason: r, .. }) => {
                assert_eq!(reason, r)
            }
            (
                Record::Nack { not_before_ms, .. },
                RecordView::Nack {
                    not_before_ms: n, ..
                },
            ) => {
                assert_eq!(not_before_ms, n)
            }
            (Record::Move { to, .. }, RecordView::Move { to: t, .. }) => assert_eq!(&*to, t),
            (a, b) => panic!("mismatch {a:?} {b:?}"),
        }
    }

    #[test]
    fn every_record_kind_round_trips() {
        let q: QueueName = "orders".into();
        roundtrip(Record::Enqueue {
            queue: q.clone(),
            header: EnqueueHeader {
                id: u128::MAX - 7,
                producer_id: true,
                timestamp_ms: 1,
                expires_at_ms: 2,
                not_before_ms: 3,
            },
            body: Bytes::from_static(b"hello"),
        });
        roundtrip(Record::Deliver {
            queue: q.clone(),
            target: 9,
            delivery: 3,
        });
        roundtrip(Record::Settle {
            queue: q.clone(),
            target: 9,
            reason: SettleReason::Expired,
        });
        roundtrip(Record::Nack {
            queue: q.clone(),
            target: 9,
            not_before_ms: 77,
        });
        roundtrip(Record::Move {
            queue: q,
            target: 9,
            to: "orders.dlq".into(),
        });
    }

    #[test]
    fn unknown_kind_is_rejected() {
        assert_eq!(
            decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err("unknown record kind")
        );
        assert_eq!(decode(&[KIND_DELIVER, 1]), Err("payload too short"));
    }
}
