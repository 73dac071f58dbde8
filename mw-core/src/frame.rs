//! The wire form of one message: a length prefix, a fixed header and a body.
//!
//! ```text
//!  0               4       5       6                              14
//!  +---------------+-------+-------+-------------------------------+----------------+
//!  | length: u32 BE| kind  | flags | id: u64 BE                    | body ...       |
//!  +---------------+-------+-------+-------------------------------+----------------+
//!                  |<------------------- length bytes -------------------------------->|
//! ```
//!
//! `length` counts every byte after itself (the 10-byte header plus the body), so
//! an empty-bodied frame has `length == 10`. A decoder rejects a length above its
//! configured maximum *before* reserving any memory for the frame, and a length
//! below 10 as malformed. PROTOCOL.md at the repository root is the normative
//! specification; this module is its implementation.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::FrameError;

/// Bytes taken by the length prefix.
pub const LENGTH_LEN: usize = 4;
/// Bytes of the fixed header that follows the length prefix: kind, flags, id.
pub const HEADER_LEN: usize = 10;
/// Most memory reserved ahead of data still to arrive for a partial frame.
const MAX_RESERVE_AHEAD: usize = 64 * 1024;
/// Default limit on `length` (header + body): 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// What a frame is for. The numeric values are the wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A call that expects a reply (`Response`, `Error`, or a stream of `StreamItem`s).
    Request = 1,
    /// The successful result of a `Request`.
    Response = 2,
    /// A failure of the exchange named by the id; body = u16 code + UTF-8 message.
    Error = 3,
    /// A call that expects no result; flags select whether and when it is acknowledged.
    Oneway = 4,
    /// Acknowledges a `Oneway` frame (receipt or delivery, as its flags asked).
    Ack = 5,
    /// The sender no longer wants the result of the exchange named by the id.
    Cancel = 6,
    /// One item of a stream or a server push.
    StreamItem = 7,
    /// The stream named by the id ended normally.
    StreamEnd = 8,
    /// Grants the peer permission to send more stream items; body = u32 BE count.
    Credit = 9,
    /// Liveness probe; the peer answers with `Pong` carrying the same id.
    Ping = 10,
    /// Answer to `Ping`.
    Pong = 11,
    /// The peer is shutting down: it accepts no new exchanges on this connection.
    GoAway = 12,
}

impl FrameKind {
    /// The kind for a wire value, or `None` if the value names no kind.
    pub fn from_u8(v: u8) -> Option<Self> {
        use FrameKind::*;
        Some(match v {
            1 => Request,
            2 => Response,
            3 => Error,
            4 => Oneway,
            5 => Ack,
            6 => Cancel,
            7 => StreamItem,
            8 => StreamEnd,
            9 => Credit,
            10 => Ping,
            11 => Pong,
            12 => GoAway,
            _ => return None,
        })
    }
}

/// Flag bits. Their meaning depends on the frame kind (see PROTOCOL.md).
pub mod flags {
    /// `Request`: the reply is a stream of `StreamItem` frames ended by `StreamEnd` or `Error`.
    pub const STREAM: u8 = 0x01;
    /// `Oneway`: acknowledge once the receiving middleware has accepted the frame.
    pub const ACK_RECEIPT: u8 = 0x02;
    /// `Oneway`: acknowledge once the frame has been handed to the application.
    pub const ACK_DELIVERY: u8 = 0x04;
}

/// One decoded frame. The body is a zero-copy slice of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is for.
    pub kind: FrameKind,
    /// Kind-specific flag bits.
    pub flags: u8,
    /// Correlation id: ties requests, replies, stream items and cancellations together.
    pub id: u64,
    /// The body, interpreted according to `kind`.
    pub body: Bytes,
}

impl Frame {
    /// A frame with no flags.
    pub fn new(kind: FrameKind, id: u64, body: Bytes) -> Self {
        Frame {
            kind,
            flags: 0,
            id,
            body,
        }
    }

    /// Encoded size on the wire, length prefix included.
    pub fn wire_len(&self) -> usize {
        LENGTH_LEN + HEADER_LEN + self.body.len()
    }
}

/// Appends one frame to `dst`, letting `body` write the body in place (no intermediate buffer).
///
/// The length prefix is patched after `body` returns, so any amount may be written.
///
/// # Errors
/// Returns [`FrameError::TooLarge`] (and leaves `dst` as it was) if the frame would exceed
/// `max_frame_len`, or the error `body` returned.
pub fn encode_with<E>(
    dst: &mut BytesMut,
    kind: FrameKind,
    flags: u8,
    id: u64,
    max_frame_len: usize,
    body: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<FrameError>,
{
    let start = dst.len();
    dst.reserve(LENGTH_LEN + HEADER_LEN + 32);
    dst.put_u32(0);
    dst.put_u8(kind as u8);
    dst.put_u8(flags);
    dst.put_u64(id);
    // A panicking body (a user's `Serialize`) must not leave a half-written frame in a
    // buffer other producers share: roll back, then let the panic continue.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(dst))) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            dst.truncate(start);
            return Err(e);
        }
        Err(panic) => {
            dst.truncate(start);
            std::panic::resume_unwind(panic);
        }
    }
    let len = dst.len() - start - LENGTH_LEN;
    if len > max_frame_len || len > u32::MAX as usize {
        dst.truncate(start);
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_len,
        }
        .into());
    }
    dst[start..start + LENGTH_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// A [`Decoder`]/[`Encoder`] for frames with a maximum frame length.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame_len: usize,
}

impl FrameCodec {
    /// A codec that refuses frames whose `length` exceeds `max_frame_len`.
    pub fn new(max_frame_len: usize) -> Self {
        FrameCodec { max_frame_len }
    }

    /// The configured maximum `length`.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < LENGTH_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        // Checked before reserving: an attacker's length never becomes an allocation.
        if len > self.max_frame_len {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        if len < HEADER_LEN {
            return Err(FrameError::Malformed(format!(
                "frame length {len} is shorter than the {HEADER_LEN}-byte header"
            )));
        }
        if src.len() < LENGTH_LEN + len {
            // Grow with the data that actually arrives, not with the claimed length: a
            // peer that sends 4 bytes must not make us reserve megabytes.
            src.reserve((LENGTH_LEN + len - src.len()).min(MAX_RESERVE_AHEAD));
            return Ok(None);
        }
        let kind_byte = src[LENGTH_LEN];
        let Some(kind) = FrameKind::from_u8(kind_byte) else {
            return Err(FrameError::UnknownKind(kind_byte));
        };
        src.advance(LENGTH_LEN);
        let mut frame = src.split_to(len);
        frame.advance(1);
        let flags = frame.get_u8();
        let id = frame.get_u64();
        Ok(Some(Frame {
            kind,
            flags,
            id,
            body: frame.freeze(),
        }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_with(
            dst,
            item.kind,
            item.flags,
            item.id,
            self.max_frame_len,
            |b| {
                b.extend_from_slice(&item.body);
                Ok::<_, FrameError>(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(kind: FrameKind, flags: u8, id: u64, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        FrameCodec::default()
            .encode(
                Frame {
                    kind,
                    flags,
                    id,
                    body: Bytes::copy_from_slice(body),
                },
                &mut b,
            )
            .unwrap();
        b
    }

    #[test]
    fn encode_layout_matches_spec() {
        let b = encoded(FrameKind::Request, 0, 7, &[0xAA, 0xBB]);
        assert_eq!(
            &b[..],
            &[0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0xAA, 0xBB]
        );
    }

    #[test]
    fn round_trip_many_frames_in_one_buffer() {
        let mut b = BytesMut::new();
        for i in 0..100u64 {
            b.extend_from_slice(&encoded(FrameKind::Response, 1, i, &i.to_le_bytes()));
        }
        let mut c = FrameCodec::default();
        for i in 0..100u64 {
            let f = c.decode(&mut b).unwrap().unwrap();
            assert_eq!((f.kind, f.flags, f.id), (FrameKind::Response, 1, i));
            assert_eq!(&f.body[..], &i.to_le_bytes());
        }
        assert!(c.decode(&mut b).unwrap().is_none());
    }

    #[test]
    fn split_reads_at_every_byte_boundary() {
        let whole = encoded(FrameKind::StreamItem, 0, 42, b"hello world");
        for cut in 0..whole.len() {
            let mut c = FrameCodec::default();
            let mut b = BytesMut::from(&whole[..cut]);
            assert!(c.decode(&mut b).unwrap().is_none(), "cut at {cut}");
            b.extend_from_slice(&whole[cut..]);
            let f = c.decode(&mut b).unwrap().unwrap();
            assert_eq!(f.id, 42);
            assert_eq!(&f.body[..], b"hello world");
            assert!(b.is_empty());
        }
    }

    #[test]
    fn oversized_length_rejected_before_allocation() {
        let mut c = FrameCodec::new(1024);
        let mut b = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xF0][..]);
        let cap = b.capacity();
        match c.decode(&mut b) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!((len, max), (0xFFFF_FFF0, 1024))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(
            b.capacity(),
            cap,
            "no memory reserved for the claimed length"
        );
    }

    #[test]
    fn short_length_and_unknown_kind_are_malformed() {
        let mut c = FrameCodec::default();
        let mut b = BytesMut::from(&[0, 0, 0, 3, 1, 0, 0][..]);
        assert!(matches!(c.decode(&mut b), Err(FrameError::Malformed(_))));
        let mut b = BytesMut::from(&[0, 0, 0, 10, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(matches!(c.decode(&mut b), Err(FrameError::UnknownKind(99))));
    }

    #[test]
    fn panicking_body_leaves_buffer_untouched() {
        let mut b = BytesMut::from(&b"prefix"[..]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = encode_with(&mut b, FrameKind::Request, 0, 1, 1024, |b| {
                b.extend_from_slice(b"half");
                panic!("user Serialize panicked");
                #[allow(unreachable_code)]
                Ok::<_, FrameError>(())
            });
        }));
        assert!(r.is_err());
        assert_eq!(&b[..], b"prefix");
    }

    #[test]
    fn encode_refuses_oversized_body_and_leaves_buffer_untouched() {
        let mut b = BytesMut::from(&b"prefix"[..]);
        let r = encode_with(&mut b, FrameKind::Response, 0, 1, 16, |b| {
            b.extend_from_slice(&[0u8; 64]);
            Ok::<_, FrameError>(())
        });
        assert!(matches!(r, Err(FrameError::TooLarge { .. })));
        assert_eq!(&b[..], b"prefix");
    }
}
