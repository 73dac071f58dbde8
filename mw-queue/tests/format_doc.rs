//! Keeps FORMAT.md (the on-disk format at the repository root) honest.
//!
//! Every ```` ```hex NAME ```` block of the document is a byte string. The blocks of
//! the example segment, concatenated in order, must be exactly the segment file a
//! real [`QueueManager`] writes for the example's scenario (a manual clock and a
//! producer-chosen id make it deterministic), and prefixes of it, written to a fresh
//! directory, must replay into the state the document describes. Each frame's length
//! and CRC are also checked against the document's definition (CRC-32C over the four
//! length bytes, then the payload), independently of the code, and the tables marked
//! `<!-- check:NAME -->` are compared with the constants of the implementation in
//! both directions. In a hex block, `#` starts a comment; everything else must be
//! pairs of hex digits.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mw_queue::{Clock, Config, ConsumerOptions, FsyncPolicy, Message, MessageId, QueueManager};

const DOC: &str = include_str!("../../FORMAT.md");
const RECORD_RS: &str = include_str!("../src/storage/record.rs");
const SEGMENT_RS: &str = include_str!("../src/storage/segment.rs");

/// The example's clock: 2023-11-14T22:13:20Z in ms since the Unix epoch.
const T: u64 = 1_700_000_000_000;
/// The example message's producer-chosen id.
const ID: u128 = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeff;
/// The example's frames, in log order, after `segment-header`.
const FRAMES: [&str; 8] = [
    "enqueue",
    "deliver-1",
    "nack",
    "deliver-2",
    "move-to-dlq",
    "move-redrive",
    "deliver-3",
    "settle",
];

// ---------------------------------------------------------------------------------------
// Reading the document
// ---------------------------------------------------------------------------------------

/// Every ```` ```hex NAME ```` block, by name.
fn hex_blocks() -> BTreeMap<String, Vec<u8>> {
    let mut blocks = BTreeMap::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```hex") else {
            continue;
        };
        let name = name.trim().to_string();
        assert!(!name.is_empty(), "a ```hex block in FORMAT.md has no name");
        let mut bytes = Vec::new();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("```hex {name} is not closed"));
            if line.trim() == "```" {
                break;
            }
            let data = line.split('#').next().unwrap();
            for token in data.split_whitespace() {
                assert!(
                    token.len() % 2 == 0 && token.chars().all(|c| c.is_ascii_hexdigit()),
                    "```hex {name}: {token:?} is not hex bytes (comments start with #)"
                );
                for i in (0..token.len()).step_by(2) {
                    bytes.push(u8::from_str_radix(&token[i..i + 2], 16).unwrap());
                }
            }
        }
        assert!(
            blocks.insert(name.clone(), bytes).is_none(),
            "two ```hex blocks named {name}"
        );
    }
    blocks
}

fn block(name: &str) -> Vec<u8> {
    hex_blocks()
        .remove(name)
        .unwrap_or_else(|| panic!("FORMAT.md has no ```hex {name} block"))
}

/// The header block followed by the first `n` frames of the example.
fn example_prefix(n: usize) -> Vec<u8> {
    let mut bytes = block("segment-header");
    for name in &FRAMES[..n] {
        bytes.extend(block(name));
    }
    bytes
}

/// The rows of the table after `<!-- check:NAME -->`: its cells, header and rule
/// rows left out.
fn table(name: &str) -> Vec<Vec<String>> {
    let marker = format!("<!-- check:{name} -->");
    let start = DOC
        .find(&marker)
        .unwrap_or_else(|| panic!("FORMAT.md has no {marker}"));
    DOC[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.trim_start().starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// The example, written by the real code
// ---------------------------------------------------------------------------------------

fn config(clock: &Clock) -> Config {
    Config {
        fsync: FsyncPolicy::Never,
        clock: clock.clone(),
        ..Config::default()
    }
}

/// Runs the example's scenario in `dir` and returns the one segment file it leaves.
async fn write_example(dir: &Path) -> Vec<u8> {
    let clock = Clock::manual(T);
    let qm = QueueManager::open(dir, config(&clock)).await.unwrap();
    let q = qm.queue("q");
    q.send(
        Message::new("hi")
            .with_id(ID)
            .with_ttl(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let mut c = q.consumer(ConsumerOptions {
        prefetch: 1,
        ..ConsumerOptions::default()
    });
    c.recv().await.unwrap().nack(None).await.unwrap();
    c.recv().await.unwrap().reject().await.unwrap();
    assert_eq!(qm.redrive("q").await.unwrap(), 1);
    c.recv().await.unwrap().ack().await.unwrap();
    drop(c);
    drop(q);
    qm.close().await.unwrap();
    drop(qm);
    let segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(
        segments[0].file_name().unwrap(),
        "00000000000000000001.seg",
        "named after its first LSN, 20 digits"
    );
    std::fs::read(&segments[0]).unwrap()
}

/// Splits a segment into its header and frames (by their length fields).
fn split_frames(file: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (header, mut rest) = file.split_at(24);
    let mut frames = Vec::new();
    while rest.len() >= 8 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let (frame, tail) = rest.split_at((8 + len).min(rest.len()));
        frames.push(frame.to_vec());
        rest = tail;
    }
    (header.to_vec(), frames)
}

#[tokio::test]
async fn the_example_segment_is_byte_for_byte_what_the_code_writes() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_example(dir.path()).await;
    let documented = example_prefix(FRAMES.len());
    if written != documented {
        let (header, frames) = split_frames(&written);
        let mut actual = format!("segment-header: {}\n", hex(&header));
        for (i, f) in frames.iter().enumerate() {
            let name = FRAMES.get(i).unwrap_or(&"(extra)");
            actual += &format!("{name}: {}\n", hex(f));
        }
        panic!("FORMAT.md's example segment differs from what the code writes:\n{actual}");
    }
}

// ---------------------------------------------------------------------------------------
// The document's definitions, applied to its own bytes
// ---------------------------------------------------------------------------------------

#[test]
fn the_header_block_follows_the_header_layout() {
    let h = block("segment-header");
    assert_eq!(h.len(), 24);
    assert_eq!(&h[..8], b"MWQSEG\r\n");
    assert_eq!(u16::from_le_bytes([h[8], h[9]]), 1, "version");
    assert_eq!(&h[10..16], &[0; 6], "flags and reserved");
    assert_eq!(u64::from_le_bytes(h[16..24].try_into().unwrap()), 1);
}

#[test]
fn every_example_frame_carries_its_length_and_crc32c() {
    for name in FRAMES {
        let f = block(name);
        let len = u32::from_le_bytes(f[..4].try_into().unwrap());
        assert_eq!(len as usize, f.len() - 8, "{name}: length field");
        let crc = u32::from_le_bytes(f[4..8].try_into().unwrap());
        let expect = crc32c::crc32c_append(crc32c::crc32c(&f[..4]), &f[8..]);
        assert_eq!(
            crc, expect,
            "{name}: CRC-32C over the length bytes, then the payload"
        );
    }
}

/// Reads a payload as the document's record table lays it out.
struct Payload<'a> {
    b: &'a [u8],
}

impl<'a> Payload<'a> {
    fn of(frame: &'a [u8]) -> Self {
        Payload { b: &frame[8..] }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn u128(&mut self) -> u128 {
        u128::from_le_bytes(self.take(16).try_into().unwrap())
    }
    fn name(&mut self) -> &'a str {
        let n = self.u8() as usize;
        std::str::from_utf8(self.take(n)).unwrap()
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(self.b.len())
    }
}

#[test]
fn the_example_records_say_what_the_document_says_they_say() {
    let enqueue = block("enqueue");
    let mut p = Payload::of(&enqueue);
    assert_eq!((p.u8(), p.u64(), p.u8()), (1, 1, 1), "kind, lsn, flags");
    assert_eq!(p.u128(), ID);
    assert_eq!((p.u64(), p.u64(), p.u64()), (T, T + 60_000, 0));
    assert_eq!((p.name(), p.rest()), ("q", &b"hi"[..]));

    // Checks kind, lsn, queue and target; returns the kind's last field.
    let rest = |name: &str, kind: u8, lsn: u64, queue: &str| {
        let f = block(name);
        let mut p = Payload::of(&f);
        assert_eq!(p.u8(), kind, "{name}: kind");
        assert_eq!(p.u64(), lsn, "{name}: lsn");
        assert_eq!(p.name(), queue, "{name}: queue");
        assert_eq!(p.u64(), 1, "{name}: target is the enqueue's LSN");
        p.rest().to_vec()
    };
    assert_eq!(rest("deliver-1", 2, 2, "q"), 1u32.to_le_bytes());
    assert_eq!(rest("nack", 4, 3, "q"), 0u64.to_le_bytes());
    assert_eq!(rest("deliver-2", 2, 4, "q"), 2u32.to_le_bytes());
    assert_eq!(rest("move-to-dlq", 5, 5, "q"), b"\x05q.dlq");
    assert_eq!(rest("move-redrive", 5, 6, "q.dlq"), b"\x01q");
    assert_eq!(rest("deliver-3", 2, 7, "q"), 1u32.to_le_bytes());
    assert_eq!(rest("settle", 3, 8, "q"), [0], "acked");
}

// ---------------------------------------------------------------------------------------
// The document's bytes, read by the real code
// ---------------------------------------------------------------------------------------

/// Opens a manager on a directory holding `segment` as its only segment file.
async fn open_with(segment: &[u8]) -> (tempfile::TempDir, QueueManager) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000001.seg"), segment).unwrap();
    let qm = QueueManager::open(dir.path(), config(&Clock::manual(T)))
        .await
        .unwrap();
    (dir, qm)
}

fn one() -> ConsumerOptions {
    ConsumerOptions {
        prefetch: 1,
        ..ConsumerOptions::default()
    }
}

#[tokio::test]
async fn an_enqueue_replays_as_a_waiting_message() {
    let (_dir, qm) = open_with(&example_prefix(1)).await;
    let r = qm.recovery_report();
    assert_eq!((r.segments, r.records, r.live_messages), (1, 1, 1));
    let d = qm.queue("q").consumer(one()).recv().await.unwrap();
    assert_eq!(
        (d.id(), &d.body()[..], d.attempt()),
        (MessageId(ID), &b"hi"[..], 1)
    );
    assert_eq!(d.sent_at_ms(), T);
}

#[tokio::test]
async fn a_delivery_unsettled_at_a_crash_is_visible_again_with_its_count() {
    for frames in [2, 3] {
        // deliver-1 (in flight at the crash), then nack: either way waiting again.
        let (_dir, qm) = open_with(&example_prefix(frames)).await;
        assert_eq!(qm.stats("q").depth, 1);
        let d = qm.queue("q").consumer(one()).recv().await.unwrap();
        assert_eq!(d.attempt(), 2, "after {}", FRAMES[frames - 1]);
    }
}

#[tokio::test]
async fn a_move_makes_the_message_belong_to_the_other_queue() {
    let (_dir, qm) = open_with(&example_prefix(5)).await;
    assert_eq!(qm.stats("q").depth, 0);
    assert_eq!(qm.stats("q").dead_letters, 1);
    let peeked = qm.peek("q.dlq", 10).await.unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(
        &peeked[0].body[..],
        b"hi",
        "the body is read from the enqueue"
    );
    assert_eq!(peeked[0].deliveries, 0, "a move resets the delivery count");

    let (_dir, qm) = open_with(&example_prefix(6)).await;
    assert_eq!((qm.stats("q").depth, qm.stats("q.dlq").depth), (1, 0));
}

#[tokio::test]
async fn a_settle_ends_the_message() {
    let (_dir, qm) = open_with(&example_prefix(FRAMES.len())).await;
    let r = qm.recovery_report();
    assert_eq!((r.records, r.live_messages), (8, 0));
    assert_eq!(qm.stats("q").depth + qm.stats("q").in_flight, 0);
}

#[tokio::test]
async fn a_frame_cut_off_by_the_end_of_the_file_is_a_torn_tail() {
    let mut bytes = example_prefix(1);
    let complete = bytes.len() as u64;
    bytes.extend(&block("deliver-1")[..5]);
    let (dir, qm) = open_with(&bytes).await;
    let torn = qm.recovery_report().torn_tail.clone().expect("a torn tail");
    assert_eq!((torn.offset, torn.discarded_bytes), (complete, 5));
    assert_eq!(qm.stats("q").depth, 1, "the records before it stand");
    drop(qm);
    let len = std::fs::metadata(dir.path().join("00000000000000000001.seg"))
        .unwrap()
        .len();
    assert_eq!(len, complete, "truncated where the torn frame started");
}

#[tokio::test]
async fn a_bad_frame_followed_by_a_valid_one_is_corruption_naming_the_offset() {
    let mut bytes = example_prefix(3);
    let at = 24 + block("enqueue").len();
    bytes[at + 8] ^= 0xff; // deliver-1's kind byte: its CRC no longer matches
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000001.seg"), &bytes).unwrap();
    let err = QueueManager::open(dir.path(), config(&Clock::manual(T)))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("corrupt segment "), "{msg}");
    assert!(msg.ends_with(&format!("at offset {at}")), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Tables against the implementation's constants
// ---------------------------------------------------------------------------------------

/// `const NAME: TYPE = VALUE;` items of a source file whose name starts with `prefix`.
fn consts(source: &str, prefix: &str) -> BTreeMap<String, String> {
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub(crate) const "))
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            let (name, rest) = l.split_once(':').unwrap();
            let value = rest.split_once('=').unwrap().1.trim().trim_end_matches(';');
            (name.trim().to_string(), value.to_string())
        })
        .collect()
}

#[test]
fn the_record_kind_table_matches_the_code() {
    let doc: BTreeMap<String, String> = table("record-kinds")
        .into_iter()
        .map(|row| (format!("KIND_{}", row[1]), row[0].clone()))
        .collect();
    assert_eq!(doc, consts(RECORD_RS, "KIND_"));
}

#[test]
fn the_settle_reason_table_matches_the_code() {
    let enum_src = RECORD_RS
        .split("enum SettleReason {")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    let code: BTreeMap<String, String> = enum_src
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').split_once(" = "))
        .map(|(name, v)| (name.to_lowercase(), v.to_string()))
        .collect();
    let doc: BTreeMap<String, String> = table("settle-reasons")
        .into_iter()
        .map(|row| (row[1].clone(), row[0].clone()))
        .collect();
    assert_eq!(doc, code);
}

#[test]
fn the_limits_table_matches_the_code() {
    let code = consts(SEGMENT_RS, "");
    for row in table("limits") {
        let value = code
            .get(&row[0])
            .unwrap_or_else(|| panic!("FORMAT.md names {} that segment.rs lacks", row[0]));
        assert_eq!(value, &row[1], "{}", row[0]);
    }
    let named: Vec<String> = table("limits").into_iter().map(|r| r[0].clone()).collect();
    for name in [
        "MAGIC",
        "VERSION",
        "HEADER_LEN",
        "FRAME_HEADER_LEN",
        "MIN_PAYLOAD",
        "MAX_PAYLOAD",
    ] {
        assert!(
            named.iter().any(|n| n == name),
            "FORMAT.md's limits table lacks {name}"
        );
    }
}
