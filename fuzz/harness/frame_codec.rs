//! mw-core's frame codec fed in small chunks (split reads), with a re-encode round trip.
//!
//! Input: byte 0 seeds the chunk sizes, byte 1 picks the maximum frame length, the rest is
//! the byte stream a peer sent. Checked:
//! * feeding the stream in chunks of 1..=17 bytes decodes exactly the frames (and the same
//!   error) as feeding it in one piece;
//! * every decoded frame re-encodes to the very bytes it was decoded from, and decodes back
//!   to itself;
//! * errors are the documented ones: `TooLarge` only above the maximum, `Malformed` only
//!   below the 10-byte header, `UnknownKind` only for a kind byte outside 1..=12.

use bytes::BytesMut;
use mw_core::frame::{Frame, FrameCodec, FrameKind, DEFAULT_MAX_FRAME_LEN, HEADER_LEN, LENGTH_LEN};
use mw_core::FrameError;
use tokio_util::codec::{Decoder, Encoder};

use crate::common::Cursor;

/// The outcome of decoding a whole stream: the frames, then the error that stopped it.
type Outcome = (Vec<Frame>, Option<String>);

fn check_error(e: &FrameError, stream: &[u8], max: usize) -> String {
    let len = u32::from_be_bytes(stream[..4].try_into().expect("4 bytes")) as usize;
    match e {
        FrameError::TooLarge { len: l, max: m } => {
            assert_eq!(
                (*l, *m),
                (len, max),
                "TooLarge must report the claimed length"
            );
            assert!(len > max, "TooLarge for a length within the maximum");
        }
        FrameError::Malformed(_) => assert!(len < HEADER_LEN, "Malformed for length {len}"),
        FrameError::UnknownKind(k) => {
            assert_eq!(*k, stream[LENGTH_LEN]);
            assert!(
                FrameKind::from_u8(*k).is_none(),
                "UnknownKind for a known kind {k}"
            );
        }
        other => panic!("unexpected decode error {other:?}"),
    }
    format!("{e:?}")
}

fn decode_stream(data: &[u8], max: usize, mut chunk: impl FnMut() -> usize) -> Outcome {
    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    // Offset in `data` of the first byte still in `buf`.
    let mut consumed = 0;
    loop {
        loop {
            let before = buf.len();
            let cap_before = buf.capacity();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let used = before - buf.len();
                    assert_eq!(used, frame.wire_len(), "consumed bytes != wire_len");
                    assert!(used - LENGTH_LEN <= max, "frame above the maximum decoded");
                    round_trip(&frame, &data[consumed..consumed + used], max);
                    consumed += used;
                    frames.push(frame);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) must not consume input");
                    // The decoder may reserve ahead, but never more than 64 KiB plus what
                    // already arrived, whatever length the peer claims.
                    assert!(
                        buf.capacity() <= (2 * cap_before).max(before + 64 * 1024) + 64,
                        "reserved {} bytes for {before} buffered",
                        buf.capacity()
                    );
                    break;
                }
                Err(e) => return (frames, Some(check_error(&e, &data[consumed..], max))),
            }
        }
        if fed == data.len() {
            return (frames, None);
        }
        let n = chunk().min(data.len() - fed);
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
    }
}

fn round_trip(frame: &Frame, wire: &[u8], max: usize) {
    let mut codec = FrameCodec::new(max);
    let mut out = BytesMut::new();
    codec
        .encode(frame.clone(), &mut out)
        .expect("a decoded frame re-encodes");
    assert_eq!(&out[..], wire, "re-encoding differs from the bytes decoded");
    let back = codec
        .decode(&mut out)
        .expect("re-encoded frame decodes")
        .expect("re-encoded frame is complete");
    assert_eq!(&back, frame);
    assert!(out.is_empty());
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let mut seed = u32::from(c.u8()) | 0x100;
    let max = match c.u8() % 4 {
        0 => DEFAULT_MAX_FRAME_LEN,
        1 => HEADER_LEN,
        2 => 64,
        _ => 1024,
    };
    let stream = c.rest();
    let whole = decode_stream(stream, max, || usize::MAX);
    let split = decode_stream(stream, max, || {
        // xorshift: chunk sizes 1..=17 from the seed.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        1 + (seed % 17) as usize
    });
    assert_eq!(whole, split, "split reads decode differently from one read");
}
