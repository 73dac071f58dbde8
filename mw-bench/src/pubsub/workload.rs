//! The pub/sub workload shared by mw's series and the peers' ([`crate::peers`]): timestamped
//! payloads, credit pacing of the publisher, per-subscriber accounting and the summed outcome.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::sync::Notify;

use crate::stats::{histogram, Summary};
use crate::Error;

/// Most events the publisher may be ahead of the slowest subscriber.
pub const WINDOW: u64 = 16_384;
/// How long a subscriber waits for the next event before it gives up on the rest.
pub(crate) const IDLE: Duration = Duration::from_secs(5);

pub(crate) struct Outcome {
    pub(crate) system: &'static str,
    pub(crate) subscribers: usize,
    pub(crate) size: usize,
    pub(crate) summary: Summary,
    pub(crate) lost: u64,
}

/// Progress shared between the publisher and the subscribers, for pacing.
pub(crate) struct Progress {
    pub(crate) received: Vec<AtomicU64>,
    pub(crate) advanced: Notify,
}

impl Progress {
    pub(crate) fn new(subscribers: usize) -> Progress {
        Progress {
            received: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            advanced: Notify::new(),
        }
    }

    /// Records subscriber `i`'s progress (received + lost) and wakes the publisher.
    pub(crate) fn advance(&self, i: usize, done: u64) {
        self.received[i].store(done, Ordering::Release);
        self.advanced.notify_waiters();
    }

    pub(crate) fn slowest(&self) -> u64 {
        self.received
            .iter()
            .map(|r| r.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }
}

pub(crate) fn payload(origin: Instant, seq: u64, size: usize) -> Bytes {
    let mut v = vec![0u8; size.max(16)];
    let ts = origin.elapsed().as_nanos() as u64;
    v[..8].copy_from_slice(&ts.to_le_bytes());
    v[8..16].copy_from_slice(&seq.to_le_bytes());
    Bytes::from(v)
}

/// What one subscriber saw.
pub(crate) struct Seen {
    pub(crate) hist: Histogram<u64>,
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) last_at: Instant,
}

impl Seen {
    pub(crate) fn new() -> Seen {
        Seen {
            hist: histogram(),
            received: 0,
            lost: 0,
            last_at: Instant::now(),
        }
    }
}

/// Per-subscriber bookkeeping of one event's payload: latency, and a gap in sequence numbers
/// as loss.
pub(crate) fn account_bytes(origin: Instant, payload: &[u8], seen: &mut Seen, next: &mut u64) {
    let ts = u64::from_le_bytes(payload[..8].try_into().expect("16-byte payload"));
    let seq = u64::from_le_bytes(payload[8..16].try_into().expect("16-byte payload"));
    let now = origin.elapsed().as_nanos() as u64;
    seen.hist.saturating_record(now.saturating_sub(ts).max(1));
    seen.lost += seq.saturating_sub(*next);
    *next = seq + 1;
    seen.received += 1;
}

pub(crate) async fn pace(progress: &Progress, sent: u64) {
    while sent.saturating_sub(progress.slowest()) >= WINDOW {
        let notified = progress.advanced.notified();
        if sent.saturating_sub(progress.slowest()) < WINDOW {
            break;
        }
        // Bounded: subscribers notify on every batch; the timeout only guards a stall.
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}

pub(crate) async fn collect(
    system: &'static str,
    subscribers: usize,
    size: usize,
    messages: u64,
    start: Instant,
    tasks: Vec<tokio::task::JoinHandle<Seen>>,
) -> Result<Outcome, Error> {
    let mut hist = histogram();
    let (mut received, mut lost) = (0, 0);
    let mut end = start;
    for t in tasks {
        let seen = t.await?;
        hist.add(&seen.hist)?;
        received += seen.received;
        lost += seen.lost + (messages - (seen.received + seen.lost).min(messages));
        end = end.max(seen.last_at);
    }
    Ok(Outcome {
        system,
        subscribers,
        size,
        summary: Summary::new(&hist, received, end - start),
        lost,
    })
}
