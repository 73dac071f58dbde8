//! The spilled backlog: reading a queue's never-delivered messages back from
//! the segments they were written to.
//!
//! Beyond [`Config::ready_head`](crate::Config::ready_head) ready slots, the
//! index remembers a queue's backlog as *runs*: (segment, byte offset to
//! resume at, number of the queue's messages left in it). A run's members are
//! exactly the `ENQUEUE` records of that queue with `not_before == 0` from the
//! resume offset on, up to the count: while a queue has runs, every such send
//! is appended to its last run (and a delayed send never is; see the `index`
//! module). Reading a run back is a sequential scan of that part of the
//! segment, done on the blocking pool (or during recovery, which already runs
//! there).

use crate::error::{Error, Result};
use crate::name::QueueName;
use crate::storage::reader::SegmentReader;
use crate::storage::record::{self, RecordView};
use crate::storage::segment::{self, Frame, FRAME_HEADER_LEN};

/// A never-delivered message in LSN order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub lsn: u64,
    pub offset: u32,
    pub len: u32,
}

/// A run as the index had it when a refill started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunSnapshot {
    pub segment: u64,
    pub offset: u32,
    pub count: u64,
}

/// What to read: the front runs of `queue`, at most `want` messages.
#[derive(Debug)]
pub(crate) struct RefillJob {
    pub queue: QueueName,
    pub runs: Vec<RunSnapshot>,
    pub want: usize,
}

/// What was read: the slots in log order, and per run read (in order) how many of
/// its messages were taken and the offset to resume at.
#[derive(Debug, Default)]
pub(crate) struct RefillRead {
    pub slots: Vec<Slot>,
    pub progress: Vec<(u64, u32)>,
}

/// Bytes read per `pread` while scanning a run.
const CHUNK: usize = 256 << 10;

/// Whether a decoded record is a member of `queue`'s runs.
fn is_member(view: &RecordView<'_>, queue: &str) -> bool {
    matches!(view, RecordView::Enqueue { queue: q, header, .. } if *q == queue && header.not_before_ms == 0)
}

/// Scans the runs of `job` in order and returns up to `job.want` of their messages.
pub(crate) fn read_runs<R: SegmentReader + ?Sized>(
    reader: &R,
    job: &RefillJob,
) -> Result<RefillRead> {
    let mut out = RefillRead::default();
    let mut buf = vec![0u8; CHUNK];
    for run in &job.runs {
        if out.slots.len() >= job.want {
            break;
        }
        let mut pos = run.offset as u64;
        let mut left = run.count;
        'run: while left > 0 && out.slots.len() < job.want {
            let n = reader.read_at(run.segment, pos, &mut buf)?;
            let mut i = 0usize;
            loop {
                match segment::parse_frame(&buf[i..n]) {
                    Frame::Valid { payload, frame_len } => {
                        let at = pos + i as u64;
                        let (lsn, view) = record::decode(payload).map_err(|reason| {
                            Error::corrupt(reader.path(run.segment), at, reason)
                        })?;
                        i += frame_len;
                        if is_member(&view, &job.queue) {
                            out.slots.push(Slot {
                                lsn,
                                offset: at as u32,
                                len: frame_len as u32,
                            });
                            left -= 1;
                            if left == 0 || out.slots.len() >= job.want {
                                pos += i as u64;
                                break 'run;
                            }
                        }
                    }
                    Frame::Incomplete if n == buf.len() => {
                        if i == 0 {
                            // A frame larger than the buffer: grow it to fit.
                            let need = buf.get(..4).map_or(0, |b| {
                                u32::from_le_bytes(b.try_into().expect("4")) as usize
                            });
                            buf.resize((FRAME_HEADER_LEN + need).max(buf.len() * 2), 0);
                        }
                        pos += i as u64;
                        continue 'run;
                    }
                    _ => {
                        return Err(Error::corrupt(
                            reader.path(run.segment),
                            pos + i as u64,
                            format!(
                                "spilled backlog of {} ends early ({left} messages missing)",
                                job.queue
                            ),
                        ))
                    }
                }
            }
        }
        out.progress.push((run.count - left, pos as u32));
        if left > 0 {
            break;
        }
    }
    Ok(out)
}
