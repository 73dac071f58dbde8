//! The index's transitions driven as the manager drives them, without a log:
//! pending records are "written" to an in-memory segment log ([`MemLog`]), which
//! also serves backlog refills and replay. No file, no thread, no clock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::engine::backlog;
use crate::name::QueueName;
use crate::storage::reader::SegmentReader;
use crate::storage::record::{self, RecordView};
use crate::storage::segment::{self, Frame, HEADER_LEN};

const Q: &str = "q";
const VIS: u64 = 30_000;

fn limits() -> Limits {
    Limits {
        visibility_ms: VIS,
        max_attempts: Some(3),
        dlq_suffix: Some(".dlq".into()),
        dedup_window_ms: 60_000,
        max_queue_len: None,
        cache_budget: 1 << 20,
        ready_head: 1024,
    }
}

/// Segments in memory, by first LSN, framed exactly as on disk.
#[derive(Default)]
struct MemLog {
    segments: BTreeMap<u64, Vec<u8>>,
}

impl MemLog {
    /// Appends records as the log writer does, to the last segment.
    fn write(&mut self, appends: &[Append]) -> Vec<Location> {
        if self.segments.is_empty() {
            self.roll(appends.first().map_or(1, |a| a.lsn));
        }
        let (&seg, buf) = self.segments.iter_mut().next_back().expect("one segment");
        appends
            .iter()
            .map(|a| {
                let offset = buf.len() as u32;
                let len = segment::encode_frame(&a.record, a.lsn, buf) as u32;
                Location {
                    segment: seg,
                    offset,
                    len,
                }
            })
            .collect()
    }

    /// Starts a new segment whose first LSN is `first`.
    fn roll(&mut self, first: u64) {
        self.segments
            .insert(first, segment::encode_header(first).to_vec());
    }

    /// Every record in log order, as recovery scans them.
    fn scan(&self, mut f: impl FnMut(u64, RecordView<'_>, Location)) {
        for (&seg, buf) in &self.segments {
            let mut at = HEADER_LEN as usize;
            while let Frame::Valid { payload, frame_len } = segment::parse_frame(&buf[at..]) {
                let (lsn, view) = record::decode(payload).expect("valid record");
                let loc = Location {
                    segment: seg,
                    offset: at as u32,
                    len: frame_len as u32,
                };
                f(lsn, view, loc);
                at += frame_len;
            }
        }
    }
}

impl SegmentReader for MemLog {
    fn read_at(&self, segment: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let data = &self.segments[&segment];
        let from = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    }

    fn path(&self, segment: u64) -> PathBuf {
        PathBuf::from(format!("mem/{segment}"))
    }
}

/// An index and the log it writes to.
struct Engine {
    st: State,
    log: MemLog,
    /// Deletion watermark returned by the last commit.
    watermark: u64,
}

fn q() -> QueueName {
    Q.into()
}

fn header(id: u128, producer_id: bool, now: u64, not_before_ms: u64) -> EnqueueHeader {
    EnqueueHeader {
        id,
        producer_id,
        timestamp_ms: now,
        expires_at_ms: 0,
        not_before_ms,
    }
}

impl Engine {
    fn new(limits: Limits) -> Engine {
        Engine {
            st: State::new(limits, Arc::new(Notify::new())),
            log: MemLog::default(),
            watermark: 0,
        }
    }

    /// Writes every pending record and applies the commit, as the log writer does.
    fn commit(&mut self, now: u64) -> Vec<Append> {
        let appends = self.st.pending.take();
        let locations = self.log.write(&appends);
        self.watermark = self.st.committed(&appends, &locations, now);
        appends
    }

    /// Sends `body` to `queue` and commits it; returns the message's LSN.
    fn send_to(&mut self, queue: &str, body: &'static str, now: u64) -> u64 {
        let outcome = self
            .st
            .send(&queue.into(), header(0, false, now, 0), body.into(), now)
            .unwrap();
        assert!(matches!(outcome, SendOutcome::Appended(_)));
        self.commit(now)
            .iter()
            .find(|a| matches!(a.record, Record::Enqueue { .. }))
            .expect("an enqueue")
            .lsn
    }

    fn send(&mut self, body: &'static str, now: u64) -> u64 {
        self.send_to(Q, body, now)
    }

    fn consumer(&mut self) -> u64 {
        self.st.add_consumer(&q()).0
    }

    /// LSNs and delivery counts handed to `consumer`, records committed.
    fn take(&mut self, consumer: u64, prefetch: u32, now: u64) -> Vec<DeliveryTag> {
        let taken = self.st.take(&q(), consumer, prefetch, None, now).unwrap();
        self.commit(now);
        taken.into_iter().map(|t| t.tag).collect()
    }

    fn refill(&mut self) {
        let job = self.st.refill_job(&q(), None).expect("a refill is due");
        let read = backlog::read_runs(&self.log, &job);
        self.st.apply_refill(Q, read);
    }

    /// A fresh index rebuilt from the log, as on reopen.
    fn reopen(&self, limits: Limits, now: u64) -> State {
        let mut st = State::new(limits, Arc::new(Notify::new()));
        self.log.scan(|lsn, view, loc| {
            st.replay(lsn, view, loc, now, &self.log).unwrap();
        });
        st.finish_replay(now);
        st
    }
}

fn lsns(tags: &[DeliveryTag]) -> Vec<u64> {
    tags.iter().map(|t| t.lsn()).collect()
}

#[test]
fn messages_are_delivered_in_send_order() {
    let mut e = Engine::new(limits());
    let sent = [e.send("a", 0), e.send("b", 0), e.send("c", 0)];
    let c = e.consumer();
    let tags = e.take(c, 10, 0);
    assert_eq!(lsns(&tags), sent);
    assert!(tags.iter().all(|t| t.delivery() == 1));
    assert_eq!(e.st.stats(Q).in_flight, 3);
}

#[test]
fn a_returned_message_goes_ahead_of_newer_ones() {
    let mut e = Engine::new(limits());
    let a = e.send("a", 0);
    let b = e.send("b", 0);
    let c = e.consumer();
    let first = e.take(c, 1, 0);
    e.st.nack(&q(), first[0], None, 0).unwrap();
    let again = e.take(c, 10, 0);
    assert_eq!(lsns(&again), [a, b]);
    assert_eq!(again[0].delivery(), 2, "a's second delivery");
    assert_eq!(again[1].delivery(), 1);
}

#[test]
fn prefetch_bounds_the_deliveries_a_consumer_holds() {
    let mut e = Engine::new(limits());
    for body in ["a", "b", "c"] {
        e.send(body, 0);
    }
    let c = e.consumer();
    let held = e.take(c, 2, 0);
    assert_eq!(held.len(), 2);
    assert!(e.take(c, 2, 0).is_empty(), "no credit left");
    e.st.settle(&q(), held[0], SettleReason::Acked).unwrap();
    assert_eq!(e.take(c, 2, 0).len(), 1, "one ack, one more delivery");
}

#[test]
fn an_expired_visibility_timeout_redelivers_and_stales_the_old_tag() {
    let mut e = Engine::new(limits());
    let lsn = e.send("a", 0);
    let c = e.consumer();
    let old = e.take(c, 1, 0)[0];
    assert_eq!(e.st.run_timers(VIS - 1), Some(VIS), "not yet");
    assert_eq!(e.st.stats(Q).in_flight, 1);
    assert_eq!(e.st.run_timers(VIS), None);
    assert_eq!((e.st.stats(Q).depth, e.st.stats(Q).in_flight), (1, 0));
    let new = e.take(c, 1, VIS)[0];
    assert_eq!((new.lsn(), new.delivery()), (lsn, 2));
    let err = e.st.settle(&q(), old, SettleReason::Acked).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("delivery {lsn}.1 on queue q is not in flight")
    );
    assert!(e.st.settle(&q(), new, SettleReason::Acked).is_ok());
}

#[test]
fn an_extended_delivery_times_out_at_its_new_deadline() {
    let mut e = Engine::new(limits());
    e.send("a", 0);
    let c = e.consumer();
    let tag = e.take(c, 1, 0)[0];
    e.st.extend(&q(), tag, 2 * VIS, 10).unwrap();
    assert_eq!(e.st.run_timers(VIS), Some(10 + 2 * VIS));
    assert_eq!(e.st.stats(Q).in_flight, 1, "the old deadline is stale");
    e.st.run_timers(10 + 2 * VIS);
    assert_eq!(e.st.stats(Q).in_flight, 0);
}

#[test]
fn a_message_out_of_attempts_moves_to_the_dead_letter_queue() {
    let mut e = Engine::new(limits());
    let lsn = e.send("a", 0);
    let c = e.consumer();
    for attempt in 1..=3 {
        let tag = e.take(c, 1, 0)[0];
        assert_eq!(tag.delivery(), attempt);
        e.st.nack(&q(), tag, None, 0).unwrap();
    }
    let moved = e.commit(0);
    assert!(matches!(
        &moved[..],
        [Append { record: Record::Move { target, to, .. }, .. }] if *target == lsn && &**to == "q.dlq"
    ));
    assert_eq!(e.st.stats(Q).depth, 0);
    assert_eq!(e.st.stats(Q).dead_letters, 1);
    // Redrive brings it back with its delivery count reset.
    let (n, _) = e.st.redrive(&q());
    assert_eq!(n, 1);
    assert_eq!(e.take(c, 1, 0)[0].delivery(), 1);
}

#[test]
fn a_dead_letter_queue_retries_forever() {
    let mut e = Engine::new(limits());
    let dlq: QueueName = "q.dlq".into();
    e.send_to("q.dlq", "a", 0);
    let c = e.st.add_consumer(&dlq).0;
    for _ in 0..5 {
        let t = e.st.take(&dlq, c, 1, None, 0).unwrap();
        e.st.nack(&dlq, t[0].tag, None, 0).unwrap();
    }
    assert_eq!(e.st.stats("q.dlq").depth, 1, "never dropped");
}

#[test]
fn a_rejected_message_is_dead_lettered_at_once() {
    let mut e = Engine::new(limits());
    e.send("a", 0);
    let c = e.consumer();
    let tag = e.take(c, 1, 0)[0];
    e.st.reject(&q(), tag).unwrap();
    assert_eq!(e.st.stats(Q).dead_letters, 1);
}

#[test]
fn a_duplicate_send_is_acknowledged_and_stored_once() {
    let mut e = Engine::new(limits());
    let first = e.st.send(&q(), header(7, true, 0, 0), "x".into(), 0);
    let Ok(SendOutcome::Appended(_)) = first else {
        panic!("stored")
    };
    let Ok(SendOutcome::WaitDuplicate(mut waiting)) =
        e.st.send(&q(), header(7, true, 1, 0), "x".into(), 1)
    else {
        panic!("the first send is not durable yet")
    };
    e.commit(1);
    assert_eq!(waiting.try_recv(), Ok(true));
    assert!(matches!(
        e.st.send(&q(), header(7, true, 2, 0), "x".into(), 2),
        Ok(SendOutcome::Duplicate)
    ));
    assert_eq!(e.st.stats(Q).depth, 1);
    assert_eq!(e.st.memory().dedup_entries, 1);
    // Once the window has passed, the id is new again.
    let after = 60_000;
    assert!(matches!(
        e.st.send(&q(), header(7, true, after, 0), "x".into(), after),
        Ok(SendOutcome::Appended(_))
    ));
}

#[test]
fn a_failed_write_forgets_the_id_and_its_place_in_the_queue() {
    let mut e = Engine::new(Limits {
        max_queue_len: Some(1),
        ..limits()
    });
    assert!(e
        .st
        .send(&q(), header(7, true, 0, 0), "x".into(), 0)
        .is_ok());
    let Ok(SendOutcome::WaitDuplicate(mut dup)) =
        e.st.send(&q(), header(7, true, 0, 0), "x".into(), 0)
    else {
        panic!("waits for the first send")
    };
    let full = e.st.send(&q(), header(8, true, 0, 0), "y".into(), 0);
    assert_eq!(
        full.err().map(|e| e.to_string()),
        Some("queue q is full (1 messages)".to_string()),
        "a send being written counts against the limit"
    );
    let failed = e.st.pending.take();
    e.st.failed(&failed);
    assert_eq!(
        dup.try_recv(),
        Ok(false),
        "the duplicate must store it itself"
    );
    assert!(matches!(
        e.st.send(&q(), header(7, true, 0, 0), "x".into(), 0),
        Ok(SendOutcome::Appended(_))
    ));
}

#[test]
fn delayed_messages_are_not_delivered_before_they_are_due() {
    let mut e = Engine::new(limits());
    e.st.send(&q(), header(0, false, 0, 5_000), "later".into(), 0)
        .unwrap();
    e.commit(0);
    let now_ready = e.send("now", 0);
    let c = e.consumer();
    assert_eq!(lsns(&e.take(c, 10, 0)), [now_ready]);
    assert_eq!(e.st.stats(Q).delayed, 1);
    assert_eq!(e.st.run_timers(4_999), Some(5_000));
    assert!(e.take(c, 10, 4_999).is_empty());
    e.st.run_timers(5_000);
    assert_eq!(e.take(c, 10, 5_000).len(), 1);
}

#[test]
fn a_segment_is_deletable_once_its_messages_are_settled() {
    let mut e = Engine::new(limits());
    e.send("a", 0);
    let c = e.consumer();
    let tag = e.take(c, 1, 0)[0];
    e.log.roll(10);
    e.send("b", 0);
    assert_eq!(e.watermark, 1, "segment 1 holds a live message");
    e.st.settle(&q(), tag, SettleReason::Acked).unwrap();
    e.commit(0);
    assert_eq!(e.watermark, 10, "segment 1 may go; segment 10 holds b");
}

#[test]
fn a_producer_chosen_id_keeps_its_segment_for_the_dedup_window() {
    let mut e = Engine::new(limits());
    e.st.send(&q(), header(7, true, 0, 0), "x".into(), 0)
        .unwrap();
    e.commit(0);
    let c = e.consumer();
    let tag = e.take(c, 1, 0)[0];
    e.st.settle(&q(), tag, SettleReason::Acked).unwrap();
    e.commit(59_999);
    assert_eq!(e.watermark, 1, "a resend of id 7 could still arrive");
    e.commit(60_000);
    assert_eq!(e.watermark, u64::MAX);
}

#[test]
fn the_body_cache_serves_a_delivery_once() {
    let mut e = Engine::new(limits());
    e.send("a", 0);
    assert!(e.st.memory().cache_bytes > 0);
    let c = e.consumer();
    let taken = e.st.take(&q(), c, 1, None, 0).unwrap();
    assert_eq!(
        taken[0].cached.as_ref().map(|b| &b.body[..]),
        Some(&b"a"[..])
    );
    assert_eq!(e.st.memory().cache_bytes, 0);
}

#[test]
fn a_long_backlog_spills_and_is_refilled_in_send_order() {
    let mut e = Engine::new(Limits {
        ready_head: 2,
        ..limits()
    });
    let mut sent = Vec::new();
    for (i, body) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        if i == 3 {
            e.log.roll(100); // the spilled backlog spans two segments
        }
        sent.push(e.send(body, 0));
    }
    let m = e.st.memory();
    assert_eq!(
        (m.ready_slots, m.spilled_messages, m.spilled_runs),
        (2, 3, 2)
    );
    assert_eq!(e.st.stats(Q).depth, 5, "spilled messages count as waiting");
    let c = e.consumer();
    let mut got = e.take(c, 10, 0);
    assert_eq!(got.len(), 2, "the head only; the rest must be read back");
    while e.st.memory().spilled_messages > 0 {
        e.refill();
        got.extend(e.take(c, 10, 0));
    }
    assert_eq!(lsns(&got), sent);
}

#[test]
fn a_returned_message_waits_behind_older_spilled_ones() {
    let mut e = Engine::new(Limits {
        ready_head: 1,
        ..limits()
    });
    let a = e.send("a", 0);
    e.log.roll(100);
    let b = e.send("b", 0); // spilled, in segment 100
    let c = e.consumer();
    let first = e.take(c, 1, 0)[0];
    assert_eq!(first.lsn(), a);
    e.st.nack(&q(), first, None, 0).unwrap();
    // a is older than segment 100, so it goes before b without waiting for a refill.
    assert_eq!(lsns(&e.take(c, 1, 0)), [a]);
    e.st.nack(&q(), DeliveryTag::new(a, 2), None, 0).unwrap();
    e.refill();
    assert_eq!(lsns(&e.take(c, 2, 0)), [a, b]);
}

#[test]
fn reopening_rebuilds_waiting_and_in_flight_messages_and_delivery_counts() {
    let mut e = Engine::new(limits());
    let a = e.send("a", 0);
    let b = e.send("b", 0);
    let acked = e.send("c", 0);
    let c = e.consumer();
    let tags = e.take(c, 3, 0);
    e.st.settle(&q(), tags[2], SettleReason::Acked).unwrap();
    e.st.nack(&q(), tags[1], None, 0).unwrap();
    e.commit(0);
    assert_eq!(lsns(&tags), [a, b, acked]);
    // `a` was in flight at the "crash": visible again at once, its attempt counted.
    let mut st = e.reopen(limits(), 0);
    assert_eq!(st.stats(Q).depth, 2);
    assert_eq!(st.stats(Q).in_flight, 0);
    let c = st.add_consumer(&q()).0;
    let again = st.take(&q(), c, 10, None, 0).unwrap();
    let got: Vec<(u64, u32)> = again
        .iter()
        .map(|t| (t.tag.lsn(), t.tag.delivery()))
        .collect();
    assert_eq!(got, [(a, 2), (b, 2)]);
}

#[test]
fn reopening_a_spilled_backlog_keeps_it_spilled_and_in_order() {
    let small = Limits {
        ready_head: 2,
        ..limits()
    };
    let mut e = Engine::new(small.clone());
    let sent: Vec<u64> = ["a", "b", "c", "d"].map(|b| e.send(b, 0)).to_vec();
    let c = e.consumer();
    // The first delivery is recorded; replay must find the right message for it.
    let first = e.take(c, 1, 0);
    let mut st = e.reopen(small, 0);
    // a was delivered (returned at once after the crash), b is the head, c and d
    // stay on disk.
    assert_eq!(st.memory().ready_slots, 1);
    assert_eq!(st.memory().spilled_messages, 2);
    let c = st.add_consumer(&q()).0;
    let head = st.take(&q(), c, 10, None, 0).unwrap();
    assert_eq!(head[0].tag, DeliveryTag::new(first[0].lsn(), 2));
    assert_eq!(head[1].tag.lsn(), sent[1]);
}

#[test]
fn purge_drops_waiting_messages_but_not_those_in_flight() {
    let mut e = Engine::new(limits());
    e.send("a", 0);
    e.send("b", 0);
    let c = e.consumer();
    let held = e.take(c, 1, 0)[0];
    let (n, _) = e.st.purge(&q()).unwrap();
    assert_eq!(n, 1);
    assert_eq!(e.st.stats(Q).in_flight, 1);
    assert!(e.st.settle(&q(), held, SettleReason::Acked).is_ok());
    let unknown = e.st.purge(&"nope".into()).unwrap_err();
    assert_eq!(unknown.to_string(), "no queue named \"nope\"");
}

#[test]
fn a_consumer_that_leaves_returns_what_it_never_handed_out() {
    let mut e = Engine::new(limits());
    let a = e.send("a", 0);
    let c = e.consumer();
    let buffered = e.take(c, 1, 0);
    e.st.remove_consumer(Q, c, &buffered);
    let c2 = e.consumer();
    let again = e.take(c2, 1, 0)[0];
    assert_eq!(
        (again.lsn(), again.delivery()),
        (a, 1),
        "the attempt is not counted"
    );
}

#[test]
fn receiving_from_a_mistyped_name_leaves_no_queue_behind() {
    let mut e = Engine::new(limits());
    let (c, _) = e.st.add_consumer(&"ordrs".into());
    assert!(!e.st.exists("ordrs"));
    e.st.remove_consumer("ordrs", c, &[]);
    assert!(e.st.queue_names().is_empty());
}
