//! Segment files: naming, the file header and record framing.
//!
//! A segment is named after the first log sequence number (LSN) it may hold,
//! zero-padded so that a directory listing sorts in log order
//! (`00000000000000000001.seg`). See `FORMAT.md` (repository root), sections 2
//! and 3, for the byte layout; `tests/format_doc.rs` checks it against these
//! constants, which are the single source of truth for it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::storage::record::Record;

/// First eight bytes of every segment.
pub(crate) const MAGIC: [u8; 8] = *b"MWQSEG\r\n";
/// Format version written into new segments; recovery refuses other versions.
pub(crate) const VERSION: u16 = 1;
/// Size of the segment header.
pub(crate) const HEADER_LEN: u64 = 24;
/// Size of a frame header (length + CRC).
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Smallest possible payload: kind byte + LSN.
pub(crate) const MIN_PAYLOAD: u32 = 9;
/// Largest payload the format allows (64 MiB); anything longer is an impossible length.
pub(crate) const MAX_PAYLOAD: u32 = 64 << 20;
/// File extension of segments.
pub(crate) const EXTENSION: &str = "seg";

/// The file name of the segment whose first LSN is `first_seq`.
pub(crate) fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.{EXTENSION}")
}

/// The path of segment `first_seq` inside `dir`.
pub(crate) fn path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(file_name(first_seq))
}

/// Parses a segment file name back into its first LSN; `None` for other files.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The 24-byte header of a new segment.
pub(crate) fn encode_header(first_seq: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    // 10..16: flags and reserved, zero in version 1.
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    h
}

/// Checks a full header read from `file`, returning its first LSN.
pub(crate) fn check_header(file: &Path, h: &[u8]) -> Result<u64> {
    if h.len() < HEADER_LEN as usize || h[..8] != MAGIC {
        return Err(Error::corrupt(file, 0, "bad segment magic"));
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != VERSION {
        return Err(Error::corrupt(
            file,
            8,
            format!("unsupported segment version {version}"),
        ));
    }
    Ok(u64::from_le_bytes(h[16..24].try_into().expect("8 bytes")))
}

/// CRC32C of a frame: over the 4 length bytes, then the payload.
pub(crate) fn frame_crc(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload)
}

/// Appends one framed record (length, CRC32C, payload) to `buf`; returns the frame length.
pub(crate) fn encode_frame(record: &Record, seq: u64, buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    let len = record.encoded_len();
    buf.reserve(FRAME_HEADER_LEN + len);
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    record.encode(seq, buf);
    debug_assert_eq!(buf.len() - start - FRAME_HEADER_LEN, len);
    let len_bytes = (len as u32).to_le_bytes();
    let crc = frame_crc(len_bytes, &buf[start + FRAME_HEADER_LEN..]);
    buf[start..start + 4].copy_from_slice(&len_bytes);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    FRAME_HEADER_LEN + len
}

/// What is found at a position where a frame should start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A valid frame of `frame_len` bytes carrying `payload`.
    Valid { payload: &'a [u8], frame_len: usize },
    /// The buffer ends before the frame does (header or payload cut short).
    Incomplete,
    /// The length field is outside `MIN_PAYLOAD..=MAX_PAYLOAD` (zero included).
    BadLength(u32),
    /// The frame fits but its CRC does not match; `frame_len` is what the length claims.
    BadCrc { frame_len: usize },
}

/// Parses the frame at the start of `buf` (which runs to the end of the file).
pub(crate) fn parse_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < FRAME_HEADER_LEN {
        return Frame::Incomplete;
    }
    let len_bytes: [u8; 4] = buf[..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes);
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Frame::BadLength(len);
    }
    let frame_len = FRAME_HEADER_LEN + len as usize;
    if buf.len() < frame_len {
        return Frame::Incomplete;
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let payload = &buf[FRAME_HEADER_LEN..frame_len];
    if frame_crc(len_bytes, payload) != crc {
        return Frame::BadCrc { frame_len };
    }
    Frame::Valid { payload, frame_len }
}

/// The claimed frame length of a record that *could* start at `buf[0]`, judged without
/// a CRC: the length is in range and fits, the payload starts with a known record kind
/// and a sequence number above `last_seq`. `None` rules the position out cheaply.
pub(crate) fn candidate_frame(buf: &[u8], last_seq: Option<u64>) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let frame_len = FRAME_HEADER_LEN + len as usize;
    let payload = buf.get(FRAME_HEADER_LEN..frame_len)?;
    if !crate::storage::record::is_known_kind(payload[0]) {
        return None;
    }
    let seq = u64::from_le_bytes(payload[1..9].try_into().ok()?);
    last_seq.is_none_or(|prev| seq > prev).then_some(frame_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::SettleReason;

    fn sample() -> Record {
        Record::Settle {
            queue: "q".into(),
            target: 5,
            reason: SettleReason::Acked,
        }
    }

    #[test]
    fn file_names_sort_and_parse() {
        assert_eq!(file_name(7), "00000000000000000007.seg");
        assert_eq!(parse_file_name(&file_name(123_456)), Some(123_456));
        assert_eq!(parse_file_name("LOCK"), None);
        assert_eq!(parse_file_name("0007.seg"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn header_round_trips_and_rejects_bad_magic() {
        let h = encode_header(99);
        assert_eq!(check_header(Path::new("x"), &h).unwrap(), 99);
        let mut bad = h;
        bad[0] = b'X';
        assert!(matches!(
            check_header(Path::new("x"), &bad),
            Err(Error::Corrupt { offset: 0, .. })
        ));
    }

    #[test]
    fn frame_round_trips() {
        let mut buf = Vec::new();
        let n = encode_frame(&sample(), 3, &mut buf);
        assert_eq!(n, buf.len());
        match parse_frame(&buf) {
            Frame::Valid { frame_len, payload } => {
                assert_eq!(frame_len, n);
                assert_eq!(crate::storage::record::decode(payload).unwrap().0, 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn read_incomplete_frame() {
        let mut buf = Vec::new();
        encode_frame(&sample(), 3, &mut buf);
        for cut in 0..buf.len() {
            assert_eq!(parse_frame(&buf[..cut]), Frame::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn flipped_bit_fails_crc_and_zero_length_is_impossible() {
        let mut buf = Vec::new();
        let n = encode_frame(&sample(), 3, &mut buf);
        buf[n - 1] ^= 1;
        assert_eq!(parse_frame(&buf), Frame::BadCrc { frame_len: n });
        assert_eq!(parse_frame(&[0u8; 16]), Frame::BadLength(0));
    }
}
