//! [`SegmentLiveness`]: which segments still matter, so the log may delete the
//! ones before them.
//!
//! A segment matters while it holds a live message (enqueued and not settled)
//! or a producer-chosen id still inside the dedup window: deleting it would
//! lose the message, or let a resend of that id be stored twice after a
//! restart. Only a prefix of the log is ever deleted, so the watermark is the
//! first segment that still matters.

use std::collections::BTreeMap;

/// Per-segment bookkeeping for deletion.
#[derive(Debug, Default, Clone, Copy)]
struct SegmentUse {
    /// Messages enqueued in this segment and not yet settled on disk.
    live: u64,
    /// Producer-chosen ids in this segment stay relevant for dedup until then.
    dedup_until_ms: u64,
}

/// Live messages and dedup horizons per segment, by the segment's first LSN.
#[derive(Debug, Default)]
pub(super) struct SegmentLiveness {
    segments: BTreeMap<u64, SegmentUse>,
}

impl SegmentLiveness {
    /// A message was enqueued in `segment`; `dedup_until_ms` is set when its id
    /// was chosen by the producer (the end of its dedup window).
    pub(super) fn enqueued(&mut self, segment: u64, dedup_until_ms: Option<u64>) {
        let s = self.segments.entry(segment).or_default();
        s.live += 1;
        if let Some(until) = dedup_until_ms {
            s.dedup_until_ms = s.dedup_until_ms.max(until);
        }
    }

    /// The message enqueued at `lsn` is settled on disk: its segment (the last one
    /// starting at or before `lsn`) holds one live message fewer.
    pub(super) fn settled(&mut self, lsn: u64) {
        if let Some((_, s)) = self.segments.range_mut(..=lsn).next_back() {
            s.live = s.live.saturating_sub(1);
        }
    }

    /// Forgets the leading segments that no longer matter at `now` and returns the
    /// first LSN of the first one that does (`u64::MAX` when none does): closed
    /// segments starting below it may be deleted.
    pub(super) fn watermark(&mut self, now: u64) -> u64 {
        while let Some((_, s)) = self.segments.first_key_value() {
            if s.live > 0 || s.dedup_until_ms > now {
                break;
            }
            self.segments.pop_first();
        }
        self.segments
            .first_key_value()
            .map_or(u64::MAX, |(k, _)| *k)
    }

    /// Live messages in every segment still tracked.
    pub(super) fn live(&self) -> u64 {
        self.segments.values().map(|s| s.live).sum()
    }

    /// Segments tracked.
    pub(super) fn len(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_stops_at_the_first_segment_with_a_live_message() {
        let mut l = SegmentLiveness::default();
        l.enqueued(1, None); // lsn 1 in segment 1
        l.enqueued(1, None); // lsn 2
        l.enqueued(10, None); // lsn 10 in segment 10
        assert_eq!(l.watermark(0), 1);
        l.settled(10);
        assert_eq!(l.watermark(0), 1, "segment 1 still holds two messages");
        l.settled(1);
        l.settled(2);
        assert_eq!(l.watermark(0), u64::MAX, "nothing live anywhere");
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn a_settle_counts_against_the_segment_holding_its_target() {
        let mut l = SegmentLiveness::default();
        l.enqueued(1, None);
        l.enqueued(5, None);
        l.settled(7); // target 7 lives in segment 5 (the last one starting at or before 7)
        assert_eq!(l.watermark(0), 1);
        assert_eq!(l.live(), 1);
        l.settled(3);
        assert_eq!(l.watermark(0), u64::MAX);
    }

    #[test]
    fn a_producer_chosen_id_keeps_its_segment_until_the_dedup_window_ends() {
        let mut l = SegmentLiveness::default();
        l.enqueued(1, Some(5_000));
        l.enqueued(2, None);
        l.settled(1);
        assert_eq!(l.watermark(4_999), 1, "a resend could still arrive");
        l.settled(2);
        assert_eq!(l.watermark(4_999), 1);
        assert_eq!(l.watermark(5_000), u64::MAX);
    }
}
