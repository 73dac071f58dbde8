//! Recovery: scanning the segment files on open.
//!
//! Every segment is read front to back and each valid record is handed to a
//! visitor in log order. What happens at a bad frame depends on where it is:
//!
//! * In the **last** segment, a frame that runs past the end of the file, a
//!   zero/impossible length followed only by zero bytes, or a CRC mismatch that
//!   is *not* followed by another valid frame is a **torn tail**: the file is
//!   truncated at the bad frame and [`RecoveryReport::torn_tail`] says so. This
//!   is what a crash in the middle of a batch write leaves behind, and such a
//!   batch was never acknowledged (acknowledgement waits for the write, and for
//!   `FsyncPolicy::Always` for the fsync).
//! * Anywhere else (a non-last segment, or a bad frame followed by a valid
//!   one), it is corruption: [`Error::Corrupt`] names the file and offset and
//!   nothing is skipped.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::storage::record::{self, RecordView};
use crate::storage::segment::{self, Frame, HEADER_LEN};

/// Where a record lives: segment, byte offset of its frame and frame length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// First LSN of the segment (its name).
    pub segment: u64,
    /// Byte offset of the frame inside the segment.
    pub offset: u32,
    /// Frame length in bytes (header + payload).
    pub len: u32,
}

/// A torn record found (and cut off) at the tail of the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file that was truncated.
    pub file: PathBuf,
    /// The file length after truncation (where the torn record started).
    pub offset: u64,
    /// How many bytes were discarded.
    pub discarded_bytes: u64,
}

/// What recovery found when the queue manager opened its directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segment files scanned.
    pub segments: usize,
    /// Valid records replayed.
    pub records: u64,
    /// Messages still live (not acknowledged, expired or dropped) after replay.
    pub live_messages: u64,
    /// `Some` if an incomplete record at the tail of the last segment was truncated.
    pub torn_tail: Option<TornTail>,
}

/// A segment as recovery left it.
#[derive(Debug, Clone)]
pub(crate) struct RecoveredSegment {
    pub first_seq: u64,
    pub path: PathBuf,
    /// Length of the valid prefix (the file length after any truncation).
    pub len: u64,
}

/// The result of a scan.
#[derive(Debug)]
pub(crate) struct Scan {
    pub segments: Vec<RecoveredSegment>,
    /// The LSN to give the next record.
    pub next_seq: u64,
    pub report: RecoveryReport,
}

/// Lists the segment files of `dir` in log order.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read_dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read_dir", dir, e))?;
        if let Some(first) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_file_name)
        {
            out.push((first, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(first, _)| *first);
    Ok(out)
}

/// Scans every segment of `dir`, calling `visit(seq, record, location)` for each valid
/// record in log order, and truncates a torn tail of the last segment.
pub(crate) fn scan(
    dir: &Path,
    mut visit: impl FnMut(u64, RecordView<'_>, Location),
) -> Result<Scan> {
    let files = list_segments(dir)?;
    let mut report = RecoveryReport {
        segments: files.len(),
        ..RecoveryReport::default()
    };
    let mut segments = Vec::with_capacity(files.len());
    let mut last_seq: Option<u64> = None;
    let count = files.len();
    for (i, (first_seq, path)) in files.into_iter().enumerate() {
        let is_last = i + 1 == count;
        if let Some(prev) = last_seq {
            if first_seq <= prev {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!("segment starts at {first_seq} but the previous one reached {prev}"),
                ));
            }
        }
        let buf = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        if (buf.len() as u64) < HEADER_LEN {
            if !is_last {
                return Err(Error::corrupt(&path, 0, "truncated segment header"));
            }
            // A crash while creating the segment: rewrite its header.
            rewrite_header(&path, first_seq)?;
            report.torn_tail = Some(TornTail {
                file: path.clone(),
                offset: 0,
                discarded_bytes: buf.len() as u64,
            });
            segments.push(RecoveredSegment {
                first_seq,
                path,
                len: HEADER_LEN,
            });
            continue;
        }
        let header_seq = segment::check_header(&path, &buf)?;
        if header_seq != first_seq {
            return Err(Error::corrupt(
                &path,
                16,
                format!("header says first sequence {header_seq}, file name says {first_seq}"),
            ));
        }
        let segment = SegmentFile {
            path: &path,
            first_seq,
            is_last,
        };
        let pos = scan_records(&segment, &buf, &mut last_seq, &mut report, &mut visit)?;
        let len = (pos as u64).min(buf.len() as u64);
        segments.push(RecoveredSegment {
            first_seq,
            path,
            len,
        });
    }
    let next_seq = match (last_seq, segments.last()) {
        (Some(s), Some(seg)) => (s + 1).max(seg.first_seq),
        (None, Some(seg)) => seg.first_seq,
        (Some(s), None) => s + 1,
        (None, None) => 1,
    };
    Ok(Scan {
        segments,
        next_seq,
        report,
    })
}

/// One segment file being scanned.
struct SegmentFile<'a> {
    path: &'a Path,
    first_seq: u64,
    /// The newest segment: the only one whose tail may be torn.
    is_last: bool,
}

/// Visits the records of one segment's bytes `buf` (header already checked) in order,
/// checking that sequence numbers grow across the log (`last_seq`); truncates a torn
/// tail of the last segment. Returns the length of the valid prefix.
fn scan_records(
    segment: &SegmentFile<'_>,
    buf: &[u8],
    last_seq: &mut Option<u64>,
    report: &mut RecoveryReport,
    visit: &mut impl FnMut(u64, RecordView<'_>, Location),
) -> Result<usize> {
    let path = segment.path;
    let mut pos = HEADER_LEN as usize;
    while pos < buf.len() {
        match segment::parse_frame(&buf[pos..]) {
            Frame::Valid { payload, frame_len } => {
                let (seq, view) = record::decode(payload)
                    .map_err(|reason| Error::corrupt(path, pos as u64, reason))?;
                if seq < segment.first_seq || last_seq.is_some_and(|prev| seq <= prev) {
                    return Err(Error::corrupt(
                        path,
                        pos as u64,
                        format!("sequence number {seq} out of order"),
                    ));
                }
                *last_seq = Some(seq);
                report.records += 1;
                visit(
                    seq,
                    view,
                    Location {
                        segment: segment.first_seq,
                        offset: pos as u32,
                        len: frame_len as u32,
                    },
                );
                pos += frame_len;
            }
            bad => {
                let rest = &buf[pos..];
                match torn_tail_or_corruption(&bad, rest, pos, *last_seq) {
                    Err(reason) => return Err(Error::corrupt(path, pos as u64, reason)),
                    Ok(()) if !segment.is_last => {
                        return Err(Error::corrupt(
                            path,
                            pos as u64,
                            format!("{} in a segment that is not the last", describe(&bad)),
                        ))
                    }
                    Ok(()) => {
                        truncate(path, pos as u64)?;
                        tracing::warn!(
                            file = %path.display(),
                            offset = pos,
                            discarded = rest.len(),
                            "truncated torn record at the tail of the log"
                        );
                        report.torn_tail = Some(TornTail {
                            file: path.to_path_buf(),
                            offset: pos as u64,
                            discarded_bytes: rest.len() as u64,
                        });
                        break;
                    }
                }
            }
        }
    }
    Ok(pos)
}

/// Whether the bad frame `bad` at the start of `rest` (at `pos` in its segment) may
/// be a torn tail: `Ok` when it is cut off, zeros, or a CRC mismatch, and no intact
/// newer record follows; `Err` with the reason when it can only be corruption.
fn torn_tail_or_corruption(
    bad: &Frame<'_>,
    rest: &[u8],
    pos: usize,
    last_seq: Option<u64>,
) -> std::result::Result<(), String> {
    match bad {
        Frame::Incomplete => {}
        Frame::BadLength(_) if rest.iter().all(|b| *b == 0) => {}
        Frame::BadLength(len) => return Err(format!("impossible record length {len}")),
        Frame::BadCrc { frame_len } => {
            let after = &rest[*frame_len..];
            if matches!(segment::parse_frame(after), Frame::Valid { .. }) {
                return Err("crc mismatch followed by valid records".to_string());
            }
        }
        Frame::Valid { .. } => unreachable!("only bad frames are judged"),
    }
    // A damaged length can make a record in the middle look like a torn tail. A
    // torn tail is the end of the log: if any intact, newer record follows, what we
    // found is corruption, and truncating would silently drop acknowledged records.
    match newer_record_after(&rest[1..], last_seq) {
        After::Record(at) => Err(format!(
            "{} followed by an intact record at offset {}",
            describe(bad),
            pos + 1 + at
        )),
        After::TooManyCandidates => Err(format!(
            "{} followed by {} bytes too record-like to rule out intact records",
            describe(bad),
            rest.len() - 1
        )),
        After::Nothing => Ok(()),
    }
}

fn describe(frame: &Frame<'_>) -> String {
    match frame {
        Frame::Incomplete => "truncated record".into(),
        Frame::BadLength(len) => format!("impossible record length {len}"),
        Frame::BadCrc { .. } => "crc mismatch".into(),
        Frame::Valid { .. } => "valid record".into(),
    }
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    f.set_len(len).map_err(|e| Error::io("truncate", path, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", path, e))
}

fn rewrite_header(path: &Path, first_seq: u64) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    f.write_all(&segment::encode_header(first_seq))
        .map_err(|e| Error::io("write", path, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", path, e))
}

/// What the search for an intact record after a damaged one found.
#[derive(Debug, PartialEq, Eq)]
enum After {
    /// No intact, newer record: the damage is a torn tail.
    Nothing,
    /// An intact record with a newer sequence number starts at this offset.
    Record(usize),
    /// The bytes after the damage hold more record-like candidates than the CRC budget
    /// lets us verify; we cannot rule out an intact record, so it is not a torn tail.
    TooManyCandidates,
}

/// CRC bytes the search may check per byte searched (plus [`SEARCH_BUDGET_FLOOR`]).
const SEARCH_BUDGET_PER_BYTE: u64 = 4;
/// CRC bytes the search may always check, however short the data.
const SEARCH_BUDGET_FLOOR: u64 = 1 << 20;

/// Looks in `bytes` for an intact record (valid length and CRC, decodable) whose
/// sequence number is above `last_seq`. Used only on the error path of recovery.
///
/// Every offset is a candidate, and checking a candidate's CRC costs its claimed
/// length, so an unbounded search is quadratic in the worst case (a segment of
/// repeating length-like bytes). Cheap checks come first (length in range, a known
/// record kind, a newer sequence number), and the CRC bytes checked in all are capped
/// at `SEARCH_BUDGET_PER_BYTE` per byte searched: the search is linear in the data
/// whatever the bytes. Running out of budget answers [`After::TooManyCandidates`],
/// which recovery treats as corruption: refusing to open is safe, truncating what might
/// be acknowledged records is not.
fn newer_record_after(bytes: &[u8], last_seq: Option<u64>) -> After {
    search(bytes, last_seq).0
}

/// [`newer_record_after`], also returning how many bytes it ran a CRC over.
fn search(bytes: &[u8], last_seq: Option<u64>) -> (After, u64) {
    let budget = SEARCH_BUDGET_FLOOR + SEARCH_BUDGET_PER_BYTE * bytes.len() as u64;
    let mut checked = 0u64;
    for at in 0..bytes.len() {
        let Some(frame_len) = segment::candidate_frame(&bytes[at..], last_seq) else {
            continue;
        };
        if checked + frame_len as u64 > budget {
            return (After::TooManyCandidates, checked);
        }
        checked += frame_len as u64;
        if let Frame::Valid { payload, .. } = segment::parse_frame(&bytes[at..]) {
            if let Ok((seq, _)) = record::decode(payload) {
                if last_seq.is_none_or(|prev| seq > prev) {
                    return (After::Record(at), checked);
                }
            }
        }
    }
    (After::Nothing, checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::{Record, SettleReason};

    fn write_segment(dir: &Path, first: u64, seqs: std::ops::Range<u64>) -> (PathBuf, Vec<usize>) {
        let mut buf = segment::encode_header(first).to_vec();
        let mut offsets = Vec::new();
        for s in seqs {
            offsets.push(buf.len());
            segment::encode_frame(
                &Record::Settle {
                    queue: "q".into(),
                    target: s,
                    reason: SettleReason::Acked,
                },
                s,
                &mut buf,
            );
        }
        let p = segment::path(dir, first);
        std::fs::write(&p, &buf).unwrap();
        (p, offsets)
    }

    fn count(dir: &Path) -> Result<(u64, Scan)> {
        let mut n = 0;
        let scan = scan(dir, |_, _, _| n += 1)?;
        Ok((n, scan))
    }

    /// A valid header followed by `mib` MiB of the bytes `10 00 02 00` repeated: every
    /// fourth offset claims a long record with a known kind, the shape that made the
    /// search quadratic.
    fn length_like_segment(dir: &Path, mib: usize) -> PathBuf {
        let mut buf = segment::encode_header(1).to_vec();
        buf.extend([0x10u8, 0x00, 0x02, 0x00].iter().cycle().take(mib << 20));
        let p = segment::path(dir, 1);
        std::fs::write(&p, &buf).unwrap();
        p
    }

    #[test]
    fn search_after_damage_checks_a_bounded_number_of_bytes() {
        for mib in [1, 4, 16] {
            let data: Vec<u8> = [0x10u8, 0x00, 0x02, 0x00]
                .iter()
                .cycle()
                .take(mib << 20)
                .copied()
                .collect();
            let (_, checked) = search(&data[1..], None);
            let bound = SEARCH_BUDGET_FLOOR + SEARCH_BUDGET_PER_BYTE * data.len() as u64;
            assert!(
                checked <= bound,
                "{mib} MiB: {checked} CRC bytes checked, bound {bound}"
            );
        }
    }

    #[test]
    fn length_like_garbage_after_a_header_is_a_torn_tail_or_corruption_never_a_hang() {
        // 1 MiB: no candidate fits, so the garbage is a torn tail, cut and reported.
        let dir = tempfile::tempdir().unwrap();
        let p = length_like_segment(dir.path(), 1);
        let (n, s) = count(dir.path()).unwrap();
        assert_eq!(n, 0);
        let torn = s.report.torn_tail.expect("reported");
        assert_eq!((torn.file, torn.offset), (p.clone(), HEADER_LEN));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), HEADER_LEN);
        // 4 MiB: candidates that claim 1 MiB each exhaust the budget; refusing to open
        // (naming file and offset) is the safe answer, and it comes at once.
        let dir = tempfile::tempdir().unwrap();
        let p = length_like_segment(dir.path(), 4);
        let err = count(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { file, offset, .. } if *file == p && *offset == HEADER_LEN),
            "{err}"
        );
        assert!(err.to_string().contains("too record-like"), "{err}");
    }

    #[test]
    fn an_intact_record_after_length_like_garbage_is_still_found() {
        let mut data: Vec<u8> = [0x10u8, 0x00, 0x02, 0x00]
            .iter()
            .cycle()
            .take(64 << 10)
            .copied()
            .collect();
        let at = data.len();
        segment::encode_frame(
            &Record::Settle {
                queue: "q".into(),
                target: 1,
                reason: SettleReason::Acked,
            },
            9,
            &mut data,
        );
        assert_eq!(newer_record_after(&data, Some(3)), After::Record(at));
        assert_eq!(newer_record_after(&data, Some(9)), After::Nothing);
    }

    #[test]
    fn an_enqueue_record_with_an_absurd_timestamp_is_corruption() {
        use crate::storage::record::EnqueueHeader;
        let dir = tempfile::tempdir().unwrap();
        let (p, _) = write_segment(dir.path(), 1, 1..3);
        let mut buf = std::fs::read(&p).unwrap();
        let offset = buf.len() as u64;
        segment::encode_frame(
            &Record::Enqueue {
                queue: "q".into(),
                header: EnqueueHeader {
                    id: 7,
                    producer_id: true,
                    timestamp_ms: u64::MAX,
                    expires_at_ms: 0,
                    not_before_ms: 0,
                },
                body: bytes::Bytes::from_static(b"x"),
            },
            3,
            &mut buf,
        );
        std::fs::write(&p, &buf).unwrap();
        let err = count(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { file, offset: o, .. } if *file == p && *o == offset),
            "{err}"
        );
        assert!(err.to_string().contains("timestamp"), "{err}");
    }

    #[test]
    fn empty_directory_starts_at_one() {
        let dir = tempfile::tempdir().unwrap();
        let (n, s) = count(dir.path()).unwrap();
        assert_eq!((n, s.next_seq, s.segments.len()), (0, 1, 0));
    }

    #[test]
    fn torn_tail_is_truncated_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, 1..4);
        let (p, _) = write_segment(dir.path(), 4, 4..8);
        let full = std::fs::metadata(&p).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2]).unwrap(); // half a frame
        drop(f);
        let (n, s) = count(dir.path()).unwrap();
        assert_eq!(n, 7);
        assert_eq!(s.next_seq, 8);
        let torn = s.report.torn_tail.unwrap();
        assert_eq!((torn.offset, torn.discarded_bytes), (full, 6));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), full);
        // A second open finds a clean log.
        assert!(count(dir.path()).unwrap().1.report.torn_tail.is_none());
    }

    #[test]
    fn trailing_zeros_are_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (p, _) = write_segment(dir.path(), 1, 1..3);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        drop(f);
        let (n, s) = count(dir.path()).unwrap();
        assert_eq!(n, 2);
        assert_eq!(s.report.torn_tail.unwrap().discarded_bytes, 4096);
    }

    #[test]
    fn crc_mismatch_followed_by_valid_record_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (p, offsets) = write_segment(dir.path(), 1, 1..5);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[offsets[1] + 10] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        match count(dir.path()) {
            Err(Error::Corrupt { file, offset, .. }) => {
                assert_eq!(file, p);
                assert_eq!(offset, offsets[1] as u64);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn bad_record_in_non_last_segment_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (p, offsets) = write_segment(dir.path(), 1, 1..3);
        write_segment(dir.path(), 3, 3..5);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = *offsets.last().unwrap();
        bytes[last + 9] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let err = count(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { file, offset, .. } if *file == p && *offset == last as u64),
            "{err}"
        );
        assert!(err.to_string().contains("00000000000000000001.seg"));
    }

    #[test]
    fn torn_segment_header_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, 1..3);
        std::fs::write(segment::path(dir.path(), 3), b"MWQ").unwrap();
        let (n, s) = count(dir.path()).unwrap();
        assert_eq!(n, 2);
        assert_eq!(s.next_seq, 3);
        assert_eq!(s.report.torn_tail.unwrap().offset, 0);
    }
}
