//! The body of a message waiting in a transmission queue: the destination queue,
//! the absolute expiry and not-before times, and the original body.
//!
//! A transmission queue holds messages for many destination queues (every queue
//! a route sends to the same hop), so each message names its own. Times are
//! absolute (ms since the Unix epoch, system clock) so that the time spent
//! waiting for the hop counts against the message's TTL and delay; the
//! forwarder sends the *remaining* TTL and delay on.
//!
//! ```text
//!  0         1         2             2+n             10+n              18+n
//!  +---------+---------+-------------+---------------+-----------------+----------
//!  | ver = 1 | n u8    | queue (n B) | expires_at u64| not_before u64  | body ...
//!  +---------+---------+-------------+---------------+-----------------+----------
//!  expires_at 0 = never; not_before 0 = at once; integers little-endian
//! ```

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::Message;

const VERSION: u8 = 1;

/// Bytes an envelope adds to a message body for a destination queue of `queue_len` bytes.
pub(crate) fn overhead(queue_len: usize) -> usize {
    2 + queue_len + 16
}

/// Wraps `msg` for `queue`: the transmission-queue message keeps the id and TTL
/// (an expired message is never forwarded) but not the delay (the delay applies
/// at the destination, so it travels inside the envelope).
pub(crate) fn wrap(queue: &str, msg: Message, now: u64) -> Message {
    debug_assert!(!queue.is_empty() && queue.len() <= 255);
    let expires_at = msg.expires_at_ms(now);
    let not_before = msg.not_before_ms(now);
    let mut b = BytesMut::with_capacity(overhead(queue.len()) + msg.body.len());
    b.put_u8(VERSION);
    b.put_u8(queue.len() as u8);
    b.put_slice(queue.as_bytes());
    b.put_u64_le(expires_at);
    b.put_u64_le(not_before);
    b.put_slice(&msg.body);
    Message {
        body: b.freeze(),
        id: msg.id,
        ttl: msg.ttl,
        delay: None,
    }
}

/// What a transmission-queue message unwraps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unwrapped {
    pub queue: String,
    pub expires_at_ms: u64,
    pub not_before_ms: u64,
    pub body: Bytes,
}

impl Unwrapped {
    /// The message to send on at `now`, or `None` if it has expired.
    pub(crate) fn message(&self, id: crate::MessageId, now: u64) -> Option<Message> {
        let mut m = Message::new(self.body.clone()).with_id(id);
        if self.expires_at_ms != 0 {
            if self.expires_at_ms <= now {
                return None;
            }
            m = m.with_ttl(Duration::from_millis(self.expires_at_ms - now));
        }
        if self.not_before_ms > now {
            m = m.with_delay(Duration::from_millis(self.not_before_ms - now));
        }
        Some(m)
    }
}

/// Reads an envelope; `None` if `body` is not one.
pub(crate) fn unwrap(body: &Bytes) -> Option<Unwrapped> {
    if body.len() < 2 || body[0] != VERSION {
        return None;
    }
    let n = body[1] as usize;
    if n == 0 || body.len() < overhead(n) {
        return None;
    }
    let queue = std::str::from_utf8(&body[2..2 + n]).ok()?.to_string();
    let t = 2 + n;
    let expires_at_ms = u64::from_le_bytes(body[t..t + 8].try_into().ok()?);
    let not_before_ms = u64::from_le_bytes(body[t + 8..t + 16].try_into().ok()?);
    Some(Unwrapped {
        queue,
        expires_at_ms,
        not_before_ms,
        body: body.slice(overhead(n)..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageId;

    #[test]
    fn round_trip_keeps_queue_body_and_remaining_times() {
        let m = Message::new("payload")
            .with_id(9u128)
            .with_ttl(Duration::from_secs(10))
            .with_delay(Duration::from_secs(2));
        let w = wrap("orders.eu", m, 1_000);
        assert_eq!(w.id, Some(MessageId(9)));
        assert_eq!(w.delay, None);
        let u = unwrap(&w.body).unwrap();
        assert_eq!(u.queue, "orders.eu");
        assert_eq!(&u.body[..], b"payload");
        let out = u.message(MessageId(9), 4_000).unwrap();
        assert_eq!(out.ttl, Some(Duration::from_millis(7_000)));
        assert_eq!(out.delay, None);
        let early = u.message(MessageId(9), 2_000).unwrap();
        assert_eq!(early.delay, Some(Duration::from_millis(1_000)));
        assert!(u.message(MessageId(9), 11_000).is_none());
    }

    #[test]
    fn no_ttl_never_expires() {
        let w = wrap("q", Message::new(""), 5);
        let u = unwrap(&w.body).unwrap();
        let out = u.message(MessageId(1), u64::MAX).unwrap();
        assert_eq!((out.ttl, out.delay, out.body.len()), (None, None, 0));
    }

    #[test]
    fn garbage_is_not_an_envelope() {
        assert!(unwrap(&Bytes::from_static(b"")).is_none());
        assert!(unwrap(&Bytes::from_static(b"\x02\x01q")).is_none());
        assert!(unwrap(&Bytes::from_static(b"\x01\x05q")).is_none());
    }
}
