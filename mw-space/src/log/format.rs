//! The log file's format, record encoding and recovery scan.
//!
//! ```text
//! space.log
//! +--------------------+---------+---------+-----+
//! | header (16 bytes)  | frame 0 | frame 1 | ... |
//! +--------------------+---------+---------+-----+
//!
//! header:  magic "MWSPACE\n" (8) | version u16 = 1 | 6 zero bytes
//! frame:   length u32 | crc32c u32 | payload (length bytes)
//!          crc32c over the 4 length bytes, then the payload
//! payload: kind 1 OUT  | id u64 | expires_at u64 | tuple (postcard)
//!          kind 2 TAKE | id u64
//! ```
//!
//! Integers are little-endian; `expires_at` is ms since the Unix epoch, 0 for no lease.
//! Replaying the records in order leaves the live tuples: an `OUT` makes `id` live, a
//! `TAKE` ends it (an `OUT` may follow a `TAKE` of the same id: a take whose taker was gone
//! is undone that way). Tuples whose lease has run out are skipped.
//!
//! Recovery: a frame cut short by the end of the file, or a bad frame after which no valid
//! frame follows, is a torn tail (a crash during the last write): the file is truncated
//! there. A bad frame followed by a valid one is corruption, reported with its offset.

use std::collections::BTreeMap;

use crate::error::SpaceError;
use crate::value::Tuple;

pub(crate) const MAGIC: &[u8; 8] = b"MWSPACE\n";
pub(crate) const VERSION: u16 = 1;
pub(crate) const HEADER_LEN: u64 = 16;
const FRAME_HEADER: usize = 8;
/// Shortest payload: a TAKE.
const MIN_PAYLOAD: usize = 9;
/// Longest payload accepted when reading (far above any tuple the limits let in).
const MAX_PAYLOAD: usize = 64 << 20;

const OUT: u8 = 1;
const TAKE: u8 = 2;

pub(crate) fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut crc = crc32c::crc32c(&len);
    crc = crc32c::crc32c_append(crc, payload);
    let mut f = Vec::with_capacity(FRAME_HEADER + payload.len());
    f.extend_from_slice(&len);
    f.extend_from_slice(&crc.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// The frame of an `OUT` record.
pub(crate) fn out_frame(id: u64, expires_ms: u64, tuple: &Tuple) -> Vec<u8> {
    let mut p = Vec::with_capacity(17 + tuple.size() + 2 * tuple.len());
    p.push(OUT);
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&expires_ms.to_le_bytes());
    // Encoding a tuple of plain values into a Vec cannot fail.
    p.extend_from_slice(&postcard::to_allocvec(tuple).unwrap_or_default());
    frame(&p)
}

/// The frame of a `TAKE` record.
pub(crate) fn take_frame(id: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(9);
    p.push(TAKE);
    p.extend_from_slice(&id.to_le_bytes());
    frame(&p)
}

/// Where a live tuple's `OUT` frame is, for compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) expires_ms: u64,
}

/// What a scan of the log found.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Live tuples by id, with their frames' places.
    pub(crate) live: BTreeMap<u64, (Loc, Tuple)>,
    /// Frames in the file.
    pub(crate) records: u64,
    /// Where the valid part of the file ends (the next append goes here).
    pub(crate) end: u64,
    /// Where a torn tail was cut off, if there was one.
    pub(crate) torn_at: Option<u64>,
    /// The largest id seen.
    pub(crate) max_id: u64,
}

enum Parsed {
    Out {
        id: u64,
        expires_ms: u64,
        tuple: Tuple,
    },
    Take {
        id: u64,
    },
}

/// Checks the frame at `pos`: `Ok((payload range end, payload))` or why it is bad.
fn frame_at(data: &[u8], pos: usize) -> Result<(usize, &[u8]), String> {
    let Some(head) = data.get(pos..pos + FRAME_HEADER) else {
        return Err("frame header cut short".into());
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Err(format!("impossible length {len}"));
    }
    let start = pos + FRAME_HEADER;
    let Some(payload) = data.get(start..start + len) else {
        return Err("frame cut short".into());
    };
    let actual = crc32c::crc32c_append(crc32c::crc32c(&head[..4]), payload);
    if actual != crc {
        return Err("checksum mismatch".into());
    }
    Ok((start + len, payload))
}

fn parse(payload: &[u8]) -> Result<Parsed, String> {
    let id = u64::from_le_bytes(payload[1..9].try_into().map_err(|_| "short id")?);
    match payload[0] {
        OUT => {
            let expires = payload.get(9..17).ok_or("OUT record without expiry")?;
            let expires_ms = u64::from_le_bytes(expires.try_into().map_err(|_| "short expiry")?);
            let tuple = postcard::from_bytes(&payload[17..])
                .map_err(|e| format!("tuple does not decode: {e}"))?;
            Ok(Parsed::Out {
                id,
                expires_ms,
                tuple,
            })
        }
        TAKE if payload.len() == MIN_PAYLOAD => Ok(Parsed::Take { id }),
        kind => Err(format!(
            "unknown record kind {kind} of {} bytes",
            payload.len()
        )),
    }
}

/// What the search for an intact record after a damaged one found.
#[derive(Debug, PartialEq, Eq)]
enum After {
    /// No intact record: the damage is a torn tail.
    Nothing,
    /// An intact record starts at this offset.
    Record(usize),
    /// More record-like candidates than the CRC budget lets us check; an intact record
    /// cannot be ruled out, so this is not treated as a torn tail.
    TooManyCandidates,
}

/// CRC bytes the search may check per byte searched, besides [`SEARCH_BUDGET_FLOOR`].
const SEARCH_BUDGET_PER_BYTE: u64 = 4;
/// CRC bytes the search may always check.
const SEARCH_BUDGET_FLOOR: u64 = 1 << 20;

/// Looks for an intact frame (plausible length, known kind, valid CRC) from `from` on.
///
/// Every offset is a candidate and a CRC check costs the claimed length, so an unbounded
/// search is quadratic on hostile bytes. Cheap checks come first and the CRC bytes checked
/// are capped per byte searched (as in mw-queue's recovery): the search is linear whatever
/// the bytes, and running out of budget refuses to open rather than truncating what might
/// be acknowledged records.
fn intact_after(data: &[u8], from: usize) -> After {
    let budget = SEARCH_BUDGET_FLOOR + SEARCH_BUDGET_PER_BYTE * (data.len() - from) as u64;
    let mut checked = 0u64;
    for at in from..data.len() {
        let Some(head) = data.get(at..at + FRAME_HEADER + 1) else {
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let plausible = (MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len)
            && at + FRAME_HEADER + len <= data.len()
            && matches!(head[FRAME_HEADER], OUT | TAKE);
        if !plausible {
            continue;
        }
        if checked + len as u64 > budget {
            return After::TooManyCandidates;
        }
        checked += len as u64;
        if frame_at(data, at).is_ok() {
            return After::Record(at);
        }
    }
    After::Nothing
}

/// Scans a whole log file's bytes.
///
/// # Errors
/// [`SpaceError::Corrupt`] for a bad header or a damaged record that is not a torn tail.
pub(crate) fn scan(file: &str, data: &[u8], now_ms: u64) -> Result<Recovered, SpaceError> {
    let corrupt = |offset: u64, reason: String| SpaceError::Corrupt {
        file: file.to_string(),
        offset,
        reason,
    };
    if data.len() < HEADER_LEN as usize {
        // A crash while the file was being created: start it afresh.
        return Ok(Recovered {
            end: 0,
            torn_at: (!data.is_empty()).then_some(0),
            ..Recovered::default()
        });
    }
    if &data[..8] != MAGIC {
        return Err(corrupt(0, "not a space log (bad magic)".into()));
    }
    let version = u16::from_le_bytes([data[8], data[9]]);
    if version != VERSION {
        return Err(corrupt(8, format!("unsupported version {version}")));
    }
    let mut r = Recovered::default();
    let mut pos = HEADER_LEN as usize;
    while pos < data.len() {
        let (next, payload) = match frame_at(data, pos) {
            Ok(x) => x,
            Err(reason) => match intact_after(data, pos + 1) {
                After::Nothing => {
                    r.torn_at = Some(pos as u64);
                    break;
                }
                After::Record(at) => {
                    return Err(corrupt(
                        pos as u64,
                        format!("{reason}, followed by an intact record at byte {at}"),
                    ))
                }
                After::TooManyCandidates => {
                    let why = "followed by bytes too record-like to rule out intact records";
                    return Err(corrupt(pos as u64, format!("{reason}, {why}")));
                }
            },
        };
        match parse(payload).map_err(|reason| corrupt(pos as u64, reason))? {
            Parsed::Out {
                id,
                expires_ms,
                tuple,
            } => {
                r.max_id = r.max_id.max(id);
                let loc = Loc {
                    offset: pos as u64,
                    len: (next - pos) as u32,
                    expires_ms,
                };
                if expires_ms == 0 || expires_ms > now_ms {
                    r.live.insert(id, (loc, tuple));
                } else {
                    r.live.remove(&id);
                }
            }
            Parsed::Take { id } => {
                r.live.remove(&id);
            }
        }
        r.records += 1;
        pos = next;
    }
    r.end = pos as u64;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::tuple;

    fn log(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut d = header().to_vec();
        for f in frames {
            d.extend_from_slice(f);
        }
        d
    }

    #[test]
    fn replay_keeps_what_was_not_taken_and_not_expired() {
        let data = log(&[
            out_frame(1, 0, &tuple!("a")),
            out_frame(2, 0, &tuple!("b")),
            take_frame(1),
            out_frame(3, 5, &tuple!("leased")),
            out_frame(1, 0, &tuple!("a")), // a take undone
        ]);
        let r = scan("t", &data, 10).unwrap();
        assert_eq!(r.live.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(r.records, 5);
        assert_eq!(r.max_id, 3);
        assert_eq!(r.end, data.len() as u64);
        assert!(r.torn_at.is_none());
    }

    #[test]
    fn a_cut_last_frame_is_a_torn_tail() {
        let mut data = log(&[out_frame(1, 0, &tuple!("a")), out_frame(2, 0, &tuple!("b"))]);
        let full = data.len();
        data.truncate(full - 3);
        let r = scan("t", &data, 0).unwrap();
        assert_eq!(r.live.len(), 1);
        let torn = r.torn_at.unwrap();
        assert_eq!(r.end, torn);
    }

    #[test]
    fn damage_before_a_valid_frame_is_corruption_with_its_offset() {
        let first = out_frame(1, 0, &tuple!("a"));
        let mut data = log(&[first.clone(), out_frame(2, 0, &tuple!("b"))]);
        let at = HEADER_LEN as usize + 10;
        data[at] ^= 0xff;
        match scan("space.log", &data, 0) {
            Err(SpaceError::Corrupt { offset, file, .. }) => {
                assert_eq!(offset, HEADER_LEN);
                assert_eq!(file, "space.log");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn search_after_damage_is_linear_on_record_like_bytes() {
        // Every fourth offset claims a long OUT record: the shape that makes a naive
        // search quadratic.
        let mut data = header().to_vec();
        data.extend([0x10u8, 0x00, 0x01, 0x00].iter().cycle().take(4 << 20));
        let started = std::time::Instant::now();
        let r = scan("t", &data, 0);
        assert!(
            matches!(&r, Err(SpaceError::Corrupt { reason, .. }) if reason.contains("too record-like")),
            "{r:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let data = b"something else entirely".to_vec();
        assert!(matches!(
            scan("x", &data, 0),
            Err(SpaceError::Corrupt { offset: 0, .. })
        ));
    }
}
