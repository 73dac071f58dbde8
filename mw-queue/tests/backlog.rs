//! The spilled backlog: beyond `Config::ready_head` never-delivered messages a
//! queue keeps runs of (segment, offset, count) instead of slots, and reads
//! them back from the segments as consumers drain the head. These tests use a
//! tiny head and small segments so that runs exist and span many segments.

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use common::*;
use mw_queue::{Clock, Config, Consumer, ConsumerOptions, Message, QueueManager};
use proptest::prelude::*;

fn spill(clock: &Clock, head: usize) -> Config {
    Config {
        ready_head: head,
        segment_size: 1024,
        body_cache_bytes: 0,
        max_attempts: None,
        ..manual(clock)
    }
}

fn consumer(qm: &QueueManager, q: &str, prefetch: u32) -> Consumer {
    qm.queue(q).consumer(ConsumerOptions {
        prefetch,
        ..Default::default()
    })
}

async fn send_all(qm: &QueueManager, q: &str, bodies: impl IntoIterator<Item = String>) {
    let msgs: Vec<Message> = bodies.into_iter().map(Message::new).collect();
    for r in qm.queue(q).send_batch(msgs).await {
        r.unwrap();
    }
}

/// Receives `n` messages, acking each, and returns their bodies.
async fn drain(c: &mut Consumer, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let d = recv(c).await;
        out.push(body(&d));
        d.ack().await.unwrap();
    }
    out
}

fn bodies(prefix: &str, r: std::ops::Range<usize>) -> Vec<String> {
    r.map(|i| format!("{prefix}{i:05}")).collect()
}

#[tokio::test]
async fn refill_across_several_segments_keeps_fifo_and_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), spill(&clock, 8)).await;
    send_all(&qm, "q", bodies("m", 0..500)).await;
    let m = qm.memory();
    assert_eq!(m.messages, 500);
    assert_eq!(m.ready_slots, 8, "{m:?}");
    assert_eq!(m.spilled_messages, 492, "{m:?}");
    assert!(m.spilled_runs > 10, "runs span many segments: {m:?}");
    assert!(m.spilled_runs as usize <= qm.segment_count(), "{m:?}");
    assert_eq!(qm.stats("q").depth, 500);
    let mut c = consumer(&qm, "q", 3);
    assert_eq!(drain(&mut c, 500).await, bodies("m", 0..500));
    let m = qm.memory();
    assert_eq!((m.messages, m.spilled_messages, m.spilled_runs), (0, 0, 0));
    assert!(try_recv(&mut c).is_none());
    // Everything acked: consumed segments (all of which held spilled messages) are gone.
    assert_eq!(qm.segment_count(), 1);
}

#[tokio::test]
async fn sends_while_spilled_go_behind_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), spill(&clock, 4)).await;
    let mut c = consumer(&qm, "q", 2);
    let mut model: VecDeque<String> = VecDeque::new();
    let mut next = 0;
    // Alternate bursts of sends and receives so the head empties and refills while
    // new messages keep arriving behind the spilled ones.
    for round in 0..30 {
        let n = 1 + (round * 7) % 13;
        let b = bodies("x", next..next + n);
        next += n;
        model.extend(b.iter().cloned());
        send_all(&qm, "q", b).await;
        let k = ((round * 5) % 11).min(model.len());
        let got = drain(&mut c, k).await;
        let want: Vec<String> = model.drain(..k).collect();
        assert_eq!(got, want, "round {round}");
    }
    let rest = model.len();
    assert_eq!(drain(&mut c, rest).await, Vec::from(model));
}

#[tokio::test]
async fn spilled_segments_stay_until_their_messages_are_acked() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), spill(&clock, 4)).await;
    send_all(&qm, "q", bodies("s", 0..300)).await;
    let full = qm.segment_count();
    assert!(full >= 10, "{full} segments");
    let mut c = consumer(&qm, "q", 5);
    assert_eq!(drain(&mut c, 150).await, bodies("s", 0..150));
    let half = qm.segment_count();
    assert!(half < full && half > 1, "{half} of {full}");
    // Reopen: the remaining spilled messages are intact.
    drop(c);
    qm.close().await.unwrap();
    drop(qm);
    let qm = open(dir.path(), spill(&clock, 4)).await;
    assert_eq!(qm.recovery_report().live_messages, 150);
    assert!(qm.memory().spilled_messages > 0);
    let mut c = consumer(&qm, "q", 5);
    assert_eq!(drain(&mut c, 150).await, bodies("s", 150..300));
    assert_eq!(qm.segment_count(), 1);
}

#[tokio::test]
async fn reopen_with_spilled_runs_and_in_flight_messages() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let config = spill(&clock, 4);
    {
        let qm = open(dir.path(), config.clone()).await;
        send_all(&qm, "q", bodies("r", 0..100)).await;
        let mut c = consumer(&qm, "q", 2);
        assert_eq!(drain(&mut c, 48).await, bodies("r", 0..48));
        // r48 and r49 are delivered and never settled: in flight at the "crash".
        let a = recv(&mut c).await;
        let b = recv(&mut c).await;
        assert_eq!((body(&a), body(&b)), ("r00048".into(), "r00049".into()));
        drop((a, b, c));
        qm.close().await.unwrap();
    }
    // Replay spills too: deliveries of messages it had spilled read them back mid-scan.
    let qm = open(dir.path(), config.clone()).await;
    assert_eq!(qm.recovery_report().live_messages, 52);
    assert_eq!(qm.stats("q").depth, 52);
    let m = qm.memory();
    assert!(m.ready_slots <= 4 && m.spilled_messages > 0, "{m:?}");
    let mut c = consumer(&qm, "q", 2);
    let d = recv(&mut c).await;
    assert_eq!((body(&d), d.attempt()), ("r00048".into(), 2));
    d.ack().await.unwrap();
    let d = recv(&mut c).await;
    assert_eq!((body(&d), d.attempt()), ("r00049".into(), 2));
    d.ack().await.unwrap();
    assert_eq!(drain(&mut c, 25).await, bodies("r", 50..75));
    // And once more, from the middle of the spilled part.
    drop(c);
    qm.close().await.unwrap();
    drop(qm);
    let qm = open(dir.path(), config).await;
    assert_eq!(qm.recovery_report().live_messages, 25);
    let mut c = consumer(&qm, "q", 2);
    assert_eq!(drain(&mut c, 25).await, bodies("r", 75..100));
    assert!(try_recv(&mut c).is_none());
}

#[tokio::test]
async fn expired_messages_inside_runs_are_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), spill(&clock, 2)).await;
    let q = qm.queue("q");
    for i in 0..40 {
        let m = Message::new(format!("m{i:05}"));
        let m = if i % 2 == 1 {
            m.with_ttl(Duration::from_secs(1))
        } else {
            m
        };
        q.send(m).await.unwrap();
    }
    assert!(qm.memory().spilled_messages > 0);
    clock.advance(Duration::from_secs(2));
    let mut c = consumer(&qm, "q", 3);
    let want: Vec<String> = (0..40).step_by(2).map(|i| format!("m{i:05}")).collect();
    assert_eq!(drain(&mut c, 20).await, want);
    assert!(try_recv(&mut c).is_none());
    let s = qm.stats("q");
    assert_eq!(s.depth + s.in_flight, 0, "{s:?}");
}

#[tokio::test]
async fn queues_interleaved_in_the_same_segments_each_refill_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let config = spill(&clock, 3);
    let qm = open(dir.path(), config.clone()).await;
    for i in 0..120 {
        for q in ["a", "b", "c"] {
            if q == "c" && i % 3 != 0 {
                continue;
            }
            qm.queue(q)
                .send(Message::new(format!("{q}{i:05}")))
                .await
                .unwrap();
        }
    }
    let m = qm.memory();
    assert_eq!(m.ready_slots, 9, "{m:?}");
    let want_c: Vec<String> = (0..120).step_by(3).map(|i| format!("c{i:05}")).collect();
    let mut ca = consumer(&qm, "a", 4);
    let mut cb = consumer(&qm, "b", 1);
    let mut cc = consumer(&qm, "c", 2);
    assert_eq!(drain(&mut ca, 60).await, bodies("a", 0..60));
    assert_eq!(drain(&mut cc, 40).await, want_c);
    assert_eq!(drain(&mut cb, 120).await, bodies("b", 0..120));
    drop((ca, cb, cc));
    qm.close().await.unwrap();
    drop(qm);
    let qm = open(dir.path(), config).await;
    assert_eq!(qm.recovery_report().live_messages, 60);
    let mut ca = consumer(&qm, "a", 4);
    assert_eq!(drain(&mut ca, 60).await, bodies("a", 60..120));
    assert_eq!(qm.stats("b").depth + qm.stats("c").depth, 0);
}

#[tokio::test]
async fn delayed_and_due_messages_while_spilled() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), spill(&clock, 2)).await;
    let q = qm.queue("q");
    for i in 0..10 {
        q.send(Message::new(format!("m{i:05}"))).await.unwrap();
    }
    // While spilled: one delayed message, one whose (zero) delay is already due.
    q.send(Message::new("late").with_delay(Duration::from_secs(5)))
        .await
        .unwrap();
    q.send(Message::new("due").with_delay(Duration::ZERO))
        .await
        .unwrap();
    for i in 10..20 {
        q.send(Message::new(format!("m{i:05}"))).await.unwrap();
    }
    assert_eq!(qm.stats("q").delayed, 1);
    let mut c = consumer(&qm, "q", 1);
    let mut want = bodies("m", 0..10);
    want.push("due".into());
    want.extend(bodies("m", 10..20));
    assert_eq!(drain(&mut c, 21).await, want);
    assert!(try_recv(&mut c).is_none());
    clock.advance(Duration::from_secs(5));
    assert_eq!(drain(&mut c, 1).await, vec!["late".to_string()]);
}

#[tokio::test]
async fn redrive_reads_a_spilled_dead_letter_queue_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let config = spill(&clock, 2);
    let qm = open(dir.path(), config.clone()).await;
    // Sent straight to the dead-letter queue, so it has never-delivered, spilled messages.
    send_all(&qm, "q.dlq", bodies("d", 0..30)).await;
    assert!(qm.memory().spilled_messages > 0);
    assert_eq!(qm.redrive("q").await.unwrap(), 30);
    assert_eq!(qm.stats("q").depth, 30);
    assert_eq!(qm.stats("q.dlq").depth, 0);
    let mut c = consumer(&qm, "q", 4);
    assert_eq!(drain(&mut c, 10).await, bodies("d", 0..10));
    drop(c);
    qm.close().await.unwrap();
    drop(qm);
    // Replay reads the spilled ones back to apply the move records.
    let qm = open(dir.path(), config).await;
    assert_eq!(qm.stats("q").depth, 20);
    assert_eq!(qm.stats("q.dlq").depth, 0);
    let mut c = consumer(&qm, "q", 4);
    assert_eq!(drain(&mut c, 20).await, bodies("d", 10..30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_waiting_on_an_empty_head_are_woken_by_refills() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), spill(&clock, 2)).await;
    send_all(&qm, "q", bodies("w", 0..400)).await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let mut c = consumer(&qm, "q", 1);
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..100 {
                    let d = recv(&mut c).await;
                    got.push(body(&d));
                    d.ack().await.unwrap();
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted, "each consumer sees FIFO order");
        all.extend(got);
    }
    all.sort();
    assert_eq!(all, bodies("w", 0..400));
}

#[derive(Debug, Clone)]
enum Op {
    Send(u8),
    Recv(u8),
    Nack,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..12).prop_map(Op::Send),
        4 => (1u8..12).prop_map(Op::Recv),
        1 => Just(Op::Nack),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random sends, receives, nacks and reopens around a head of 1..6 slots keep
    /// FIFO order (a nacked message goes back to the front).
    #[test]
    fn fifo_across_the_spill_boundary(head in 1usize..6, ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let clock = Clock::manual(T0);
            let config = Config { segment_size: 600, ..spill(&clock, head) };
            let mut qm = open(dir.path(), config.clone()).await;
            let mut c = consumer(&qm, "q", 1);
            let mut model: VecDeque<String> = VecDeque::new();
            let mut next = 0;
            for op in ops {
                match op {
                    Op::Send(n) => {
                        let b = bodies("p", next..next + n as usize);
                        next += n as usize;
                        model.extend(b.iter().cloned());
                        send_all(&qm, "q", b).await;
                    }
                    Op::Recv(n) => {
                        let k = (n as usize).min(model.len());
                        let want: Vec<String> = model.drain(..k).collect();
                        assert_eq!(drain(&mut c, k).await, want);
                    }
                    Op::Nack if model.is_empty() => {}
                    Op::Nack => {
                        let d = recv(&mut c).await;
                        assert_eq!(&body(&d), model.front().unwrap());
                        d.nack(None).await.unwrap();
                    }
                    Op::Reopen => {
                        drop(c);
                        qm.close().await.unwrap();
                        drop(qm);
                        qm = open(dir.path(), config.clone()).await;
                        c = consumer(&qm, "q", 1);
                        assert_eq!(qm.recovery_report().live_messages, model.len() as u64);
                    }
                }
                let s = qm.stats("q");
                assert_eq!(s.depth + s.in_flight, model.len() as u64);
                assert!(qm.memory().ready_slots <= head as u64 + 1);
            }
            let rest = model.len();
            assert_eq!(drain(&mut c, rest).await, Vec::from(model));
        });
    }
}
