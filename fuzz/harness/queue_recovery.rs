//! mw-queue recovery over generated segment files.
//!
//! The input becomes the segment files of a data directory; a `QueueManager` is opened
//! on it. It must come back `Ok` or with a typed error (`Corrupt` naming file and
//! offset, ...), never panic or hang. When it opens, the directory must reopen cleanly
//! (no torn tail left, the same live messages), and every ready message must be
//! receivable.
//!
//! Byte 0 says how to read the rest:
//! * bit 7 clear, **raw**: the rest is split into files at every segment magic
//!   (`MWQSEG\r\n`), so a concatenation of real segment files is a valid input. A file is
//!   named after the first LSN in its header (bytes 16..24), or after its predecessor
//!   plus one if it is shorter. Bit 0: recompute the CRC of every frame a reader can walk
//!   to (so mutated records get past the CRC check). Bit 1: byte 1 = `k`, the body of the
//!   last file (after its 24-byte header) is repeated to `(k + 1) * 16 KiB`, so a short
//!   input can describe a large damaged segment.
//! * bit 7 set, **structured**: the rest is decoded with `arbitrary` into segments of
//!   records (valid frames with correct CRCs, frames with bad CRCs, raw bytes, repeated
//!   patterns) and a damaged tail.

use std::path::Path;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use mw_queue::{Clock, Config, ConsumerOptions, FsyncPolicy, QueueManager};

use crate::common::{block_on, T0_MS};

/// First eight bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"MWQSEG\r\n";
/// Bytes of a segment header.
pub const HEADER_LEN: usize = 24;
/// Smallest and largest frame payloads the format allows.
const PAYLOAD_RANGE: std::ops::RangeInclusive<u32> = 9..=64 << 20;

/// The 24-byte header of a segment whose first LSN is `first_seq` (format version 1).
pub fn header(first_seq: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&[0; 6]);
    h.extend_from_slice(&first_seq.to_le_bytes());
    h
}

/// CRC32C of a frame: over the 4 length bytes, then the payload.
pub fn frame_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), payload)
}

/// Appends `payload` as a frame (length, CRC32C, payload) to `out`.
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&frame_crc(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A log record, encoded as the crate docs of mw-queue specify ("Record payloads").
#[derive(Debug, Clone)]
pub enum Record<'a> {
    /// Kind 1: a message enters `queue`.
    Enqueue {
        /// Flag bit 0: the producer chose the id.
        producer_id: bool,
        /// Message id.
        id: u128,
        /// Send time, ms since the epoch.
        sent_at: u64,
        /// Expiry, ms since the epoch; 0 = never.
        expires_at: u64,
        /// Not deliverable before, ms since the epoch; 0 = at once.
        not_before: u64,
        /// Queue name bytes (valid names are 1..=255 bytes of UTF-8).
        queue: &'a [u8],
        /// Message body.
        body: &'a [u8],
    },
    /// Kind 2: message `target` was delivered for the `delivery`-th time.
    Deliver {
        /// Queue name bytes.
        queue: &'a [u8],
        /// LSN of the message's ENQUEUE.
        target: u64,
        /// Delivery count.
        delivery: u32,
    },
    /// Kind 3: message `target` is gone (reason 0 acked, 1 expired, 2 dropped).
    Settle {
        /// Queue name bytes.
        queue: &'a [u8],
        /// LSN of the message's ENQUEUE.
        target: u64,
        /// Reason byte.
        reason: u8,
    },
    /// Kind 4: message `target` returned, deliverable from `not_before`.
    Nack {
        /// Queue name bytes.
        queue: &'a [u8],
        /// LSN of the message's ENQUEUE.
        target: u64,
        /// ms since the epoch; 0 = at once.
        not_before: u64,
    },
    /// Kind 5: message `target` moves to queue `to`.
    Move {
        /// Queue name bytes.
        queue: &'a [u8],
        /// LSN of the message's ENQUEUE.
        target: u64,
        /// Destination queue name bytes.
        to: &'a [u8],
    },
}

fn put_name(out: &mut Vec<u8>, name: &[u8]) {
    out.push(name.len().min(255) as u8);
    out.extend_from_slice(&name[..name.len().min(255)]);
}

impl Record<'_> {
    /// The payload of this record with LSN `lsn`.
    pub fn payload(&self, lsn: u64) -> Vec<u8> {
        let mut p = Vec::with_capacity(64);
        let kind = match self {
            Record::Enqueue { .. } => 1,
            Record::Deliver { .. } => 2,
            Record::Settle { .. } => 3,
            Record::Nack { .. } => 4,
            Record::Move { .. } => 5,
        };
        p.push(kind);
        p.extend_from_slice(&lsn.to_le_bytes());
        match self {
            Record::Enqueue {
                producer_id,
                id,
                sent_at,
                expires_at,
                not_before,
                queue,
                body,
            } => {
                p.push(u8::from(*producer_id));
                p.extend_from_slice(&id.to_le_bytes());
                p.extend_from_slice(&sent_at.to_le_bytes());
                p.extend_from_slice(&expires_at.to_le_bytes());
                p.extend_from_slice(&not_before.to_le_bytes());
                put_name(&mut p, queue);
                p.extend_from_slice(body);
            }
            Record::Deliver {
                queue,
                target,
                delivery,
            } => {
                put_name(&mut p, queue);
                p.extend_from_slice(&target.to_le_bytes());
                p.extend_from_slice(&delivery.to_le_bytes());
            }
            Record::Settle {
                queue,
                target,
                reason,
            } => {
                put_name(&mut p, queue);
                p.extend_from_slice(&target.to_le_bytes());
                p.push(*reason);
            }
            Record::Nack {
                queue,
                target,
                not_before,
            } => {
                put_name(&mut p, queue);
                p.extend_from_slice(&target.to_le_bytes());
                p.extend_from_slice(&not_before.to_le_bytes());
            }
            Record::Move { queue, target, to } => {
                put_name(&mut p, queue);
                p.extend_from_slice(&target.to_le_bytes());
                put_name(&mut p, to);
            }
        }
        p
    }
}

/// Splits a concatenation of segment files at every magic; bytes before the first magic
/// form a file of their own.
fn split_at_magic(bytes: &[u8]) -> Vec<&[u8]> {
    let mut starts: Vec<usize> = (0..bytes.len().saturating_sub(MAGIC.len() - 1))
        .filter(|&i| &bytes[i..i + MAGIC.len()] == MAGIC)
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let mut out = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(bytes.len());
        if end > s {
            out.push(&bytes[s..end]);
        }
    }
    out
}

/// Recomputes the CRC of every frame that can be walked to from the header on.
fn fix_crcs(file: &mut [u8]) {
    let mut pos = HEADER_LEN;
    while pos + 8 <= file.len() {
        let len_bytes: [u8; 4] = file[pos..pos + 4].try_into().expect("4 bytes");
        let len = u32::from_le_bytes(len_bytes);
        if !PAYLOAD_RANGE.contains(&len) || pos + 8 + len as usize > file.len() {
            return;
        }
        let end = pos + 8 + len as usize;
        let crc = frame_crc(len_bytes, &file[pos + 8..end]);
        file[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// The segment files (first LSN in the name, contents) that a raw input describes.
pub fn raw_files(flags: u8, data: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let (repeat_to, data) = match (flags & 2 != 0, data.split_first()) {
        (true, Some((&k, rest))) => (Some((usize::from(k) + 1) * 16 * 1024), rest),
        _ => (None, data),
    };
    let mut files: Vec<(u64, Vec<u8>)> = Vec::new();
    for chunk in split_at_magic(data) {
        let name = if chunk.len() >= HEADER_LEN {
            u64::from_le_bytes(chunk[16..24].try_into().expect("8 bytes"))
        } else {
            files.last().map_or(1, |(n, _)| n.wrapping_add(1))
        };
        files.push((name, chunk.to_vec()));
    }
    if let (Some(total), Some((_, last))) = (repeat_to, files.last_mut()) {
        if last.len() > HEADER_LEN {
            let body = last[HEADER_LEN..].to_vec();
            last.truncate(HEADER_LEN);
            last.extend(body.iter().cycle().take(total));
        }
    }
    if flags & 1 != 0 {
        for (_, f) in &mut files {
            fix_crcs(f);
        }
    }
    files
}

// ---------------------------------------------------------------------------
// Structured inputs.

#[derive(Debug, Arbitrary)]
struct Log {
    segments: Vec<Seg>,
    tail: Tail,
}

#[derive(Debug, Arbitrary)]
struct Seg {
    /// Added to the next LSN to name the segment.
    name_gap: u8,
    header: Header,
    items: Vec<Item>,
}

#[derive(Debug, Arbitrary)]
enum Header {
    Valid,
    Version(u16),
    Short(u8),
    OtherFirstLsn(u64),
}

#[derive(Debug, Arbitrary)]
enum Item {
    Rec { lsn_gap: u8, rec: RecSpec },
    BadCrc { lsn_gap: u8, rec: RecSpec },
    Raw(Vec<u8>),
    Zeros(u16),
    Pattern { bytes: [u8; 4], count: u16 },
}

#[derive(Debug, Arbitrary)]
enum Time {
    Zero,
    Past(u32),
    Future(u32),
    Max,
    Raw(u64),
}

impl Time {
    fn ms(&self) -> u64 {
        match self {
            Time::Zero => 0,
            Time::Past(d) => T0_MS - u64::from(*d),
            Time::Future(d) => T0_MS + u64::from(*d),
            Time::Max => u64::MAX,
            Time::Raw(v) => *v,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Raw(Vec<u8>),
}

const NAMES: [&[u8]; 4] = [b"q", b"q.dlq", b"orders", b"durable.x"];

impl Name {
    fn bytes(&self) -> &[u8] {
        match self {
            Name::Known(i) => NAMES[usize::from(*i) % NAMES.len()],
            Name::Raw(b) => b,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Target {
    Enqueued(u8),
    Raw(u64),
}

#[derive(Debug, Arbitrary)]
enum RecSpec {
    Enqueue {
        producer_id: bool,
        id: u8,
        sent_at: Time,
        expires_at: Time,
        not_before: Time,
        queue: Name,
        body: Vec<u8>,
    },
    Deliver {
        queue: Name,
        target: Target,
        delivery: u32,
    },
    Settle {
        queue: Name,
        target: Target,
        reason: u8,
    },
    Nack {
        queue: Name,
        target: Target,
        not_before: Time,
    },
    Move {
        queue: Name,
        target: Target,
        to: Name,
    },
}

#[derive(Debug, Arbitrary)]
enum Tail {
    Intact,
    Cut(u16),
    Flip { at: u32, bit: u8 },
    Garbage(Vec<u8>),
}

fn payload(spec: &RecSpec, lsn: u64, enqueued: &[u64]) -> Vec<u8> {
    let target = |t: &Target| match t {
        Target::Enqueued(i) if !enqueued.is_empty() => enqueued[usize::from(*i) % enqueued.len()],
        Target::Enqueued(i) => u64::from(*i),
        Target::Raw(v) => *v,
    };
    let rec = match spec {
        RecSpec::Enqueue {
            producer_id,
            id,
            sent_at,
            expires_at,
            not_before,
            queue,
            body,
        } => Record::Enqueue {
            producer_id: *producer_id,
            id: u128::from(*id),
            sent_at: sent_at.ms(),
            expires_at: expires_at.ms(),
            not_before: not_before.ms(),
            queue: queue.bytes(),
            body,
        },
        RecSpec::Deliver {
            queue,
            target: t,
            delivery,
        } => Record::Deliver {
            queue: queue.bytes(),
            target: target(t),
            delivery: *delivery,
        },
        RecSpec::Settle {
            queue,
            target: t,
            reason,
        } => Record::Settle {
            queue: queue.bytes(),
            target: target(t),
            reason: *reason,
        },
        RecSpec::Nack {
            queue,
            target: t,
            not_before,
        } => Record::Nack {
            queue: queue.bytes(),
            target: target(t),
            not_before: not_before.ms(),
        },
        RecSpec::Move {
            queue,
            target: t,
            to,
        } => Record::Move {
            queue: queue.bytes(),
            target: target(t),
            to: to.bytes(),
        },
    };
    rec.payload(lsn)
}

fn structured_files(data: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let Ok(log) = Log::arbitrary_take_rest(Unstructured::new(data)) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    let mut next = 1u64;
    let mut enqueued = Vec::new();
    for seg in log.segments.iter().take(4) {
        let first = next.saturating_add(u64::from(seg.name_gap));
        next = first;
        let mut f = match &seg.header {
            Header::Valid => header(first),
            Header::Version(v) => {
                let mut h = header(first);
                h[8..10].copy_from_slice(&v.to_le_bytes());
                h
            }
            Header::Short(n) => header(first)[..usize::from(*n) % HEADER_LEN].to_vec(),
            Header::OtherFirstLsn(v) => header(*v),
        };
        for item in seg.items.iter().take(64) {
            match item {
                Item::Rec { lsn_gap, rec } | Item::BadCrc { lsn_gap, rec } => {
                    let lsn = next.saturating_add(u64::from(*lsn_gap));
                    next = lsn.saturating_add(1);
                    let p = payload(rec, lsn, &enqueued);
                    if matches!(rec, RecSpec::Enqueue { .. }) {
                        enqueued.push(lsn);
                    }
                    let at = f.len();
                    put_frame(&mut f, &p);
                    if matches!(item, Item::BadCrc { .. }) {
                        f[at + 4] ^= 0x5a;
                    }
                }
                Item::Raw(bytes) => f.extend_from_slice(bytes),
                Item::Zeros(n) => f.resize(f.len() + usize::from(*n), 0),
                Item::Pattern { bytes, count } => {
                    for _ in 0..*count {
                        f.extend_from_slice(bytes);
                    }
                }
            }
        }
        files.push((first, f));
    }
    if let Some((_, last)) = files.last_mut() {
        match &log.tail {
            Tail::Intact => {}
            Tail::Cut(n) => last.truncate(last.len().saturating_sub(usize::from(*n))),
            Tail::Flip { at, bit } => {
                if !last.is_empty() {
                    let i = *at as usize % last.len();
                    last[i] ^= 1 << (bit % 8);
                }
            }
            Tail::Garbage(g) => last.extend_from_slice(g),
        }
    }
    files
}

/// The segment files an input describes (see the module docs).
pub fn files(data: &[u8]) -> Vec<(u64, Vec<u8>)> {
    match data.split_first() {
        None => Vec::new(),
        Some((&flags, rest)) if flags & 0x80 != 0 => structured_files(rest),
        Some((&flags, rest)) => raw_files(flags, rest),
    }
}

/// The configuration the harness opens directories with: a manual clock at [`T0_MS`],
/// no fsync, and small limits so that spilling and segment rolls happen.
pub fn config() -> Config {
    Config {
        fsync: FsyncPolicy::Never,
        clock: Clock::manual(T0_MS),
        ready_head: 4,
        segment_size: 4096,
        ..Config::default()
    }
}

/// Writes `files` into `dir` as segment files.
pub fn write_files(dir: &Path, files: &[(u64, Vec<u8>)]) {
    for (first, bytes) in files {
        std::fs::write(dir.join(format!("{first:020}.seg")), bytes).expect("write segment");
    }
}

/// Opens a queue manager on `dir` and checks what it recovered (see the module docs).
pub async fn open_and_check(dir: &Path) {
    let qm = match QueueManager::open(dir, config()).await {
        Ok(qm) => qm,
        // A typed error is a fine answer to a damaged log.
        Err(_) => return,
    };
    let report = qm.recovery_report().clone();
    let mut before: Vec<_> = qm.queues();
    qm.close().await.expect("close after recovery");
    drop(qm);
    let qm = QueueManager::open(dir, config())
        .await
        .expect("a directory that opened once reopens");
    let again = qm.recovery_report().clone();
    assert!(
        again.torn_tail.is_none(),
        "torn tail left behind: {again:?}"
    );
    assert_eq!(
        again.live_messages, report.live_messages,
        "live messages changed on reopen"
    );
    let mut after = qm.queues();
    before.sort_by(|a, b| a.0.cmp(&b.0));
    after.sort_by(|a, b| a.0.cmp(&b.0));
    let depths = |v: &[(String, mw_queue::QueueStats)]| -> Vec<(String, u64)> {
        v.iter().map(|(n, s)| (n.clone(), s.depth)).collect()
    };
    assert_eq!(
        depths(&before),
        depths(&after),
        "queue depths changed on reopen"
    );
    drain(&qm).await;
    qm.close().await.expect("close");
}

/// Receives (and acks) what is ready in every queue, so bodies are read back from disk.
pub async fn drain(qm: &QueueManager) {
    for (name, stats) in qm.queues() {
        let ready = stats.depth.saturating_sub(stats.delayed).min(64);
        if ready == 0 {
            continue;
        }
        let mut consumer = qm.queue(&name).consumer(ConsumerOptions {
            prefetch: 8,
            visibility_timeout: None,
        });
        for _ in 0..ready {
            // Expired messages count in `depth` until discarded, so a message that looked
            // ready may never come: bound the wait instead of trusting the count.
            match tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await {
                Ok(Ok(d)) => {
                    let _ = d.ack().await;
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
    }
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let files = files(data);
    let dir = crate::common::tempdir();
    write_files(dir.path(), &files);
    block_on(open_and_check(dir.path()));
}
