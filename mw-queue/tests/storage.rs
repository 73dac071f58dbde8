//! Storage behaviour seen through the public API: reopen, torn tails,
//! corruption, group commit, crash safety, segment deletion, backlog memory
//! (bounded by `Config::ready_head` plus a run per segment).

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use mw_queue::{Config, ConsumerOptions, Error, FsyncPolicy, Message, QueueManager};

fn cfg() -> Config {
    Config {
        fsync: FsyncPolicy::Never,
        ..Config::default()
    }
}

#[tokio::test]
async fn sends_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let qm = open(dir.path(), Config::default()).await;
    let q = qm.queue("orders");
    for i in 0..50 {
        q.send(Message::new(format!("m{i}"))).await.unwrap();
    }
    qm.queue("other").send(Message::new("x")).await.unwrap();
    drop(q);
    qm.close().await.unwrap();
    drop(qm);

    let qm = open(dir.path(), Config::default()).await;
    assert_eq!(qm.recovery_report().live_messages, 51);
    assert!(qm.recovery_report().torn_tail.is_none());
    assert_eq!(qm.stats("orders").depth, 50);
    let mut c = qm.queue("orders").consumer(ConsumerOptions::default());
    for i in 0..50 {
        let d = recv(&mut c).await;
        assert_eq!(body(&d), format!("m{i}"));
        d.ack().await.unwrap();
    }
    assert_eq!(qm.stats("orders").depth, 0);
    let names: Vec<String> = qm.queues().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["orders", "other"]);
}

#[tokio::test]
async fn torn_tail_is_truncated_and_complete_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let qm = open(dir.path(), cfg()).await;
        for i in 0..10 {
            qm.queue("q")
                .send(Message::new(format!("m{i}")))
                .await
                .unwrap();
        }
        qm.close().await.unwrap();
    }
    let last = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    // Half a frame: a length promising 100 bytes, a CRC and 7 bytes of payload.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    f.write_all(&100u32.to_le_bytes()).unwrap();
    f.write_all(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).unwrap();
    drop(f);

    let qm = open(dir.path(), cfg()).await;
    let torn = qm
        .recovery_report()
        .torn_tail
        .clone()
        .expect("torn tail reported");
    assert_eq!(torn.file, last);
    assert_eq!(torn.offset, len);
    assert_eq!(torn.discarded_bytes, 15);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len);
    assert_eq!(qm.stats("q").depth, 10);
    // Appending after the truncation works and survives another reopen.
    qm.queue("q").send(Message::new("after")).await.unwrap();
    qm.close().await.unwrap();
    drop(qm);
    let qm = open(dir.path(), cfg()).await;
    assert!(qm.recovery_report().torn_tail.is_none());
    assert_eq!(qm.stats("q").depth, 11);
}

#[tokio::test]
async fn mid_file_corruption_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let qm = open(dir.path(), cfg()).await;
        for i in 0..10 {
            qm.queue("q")
                .send(Message::new(format!("body-{i:04}")))
                .await
                .unwrap();
        }
        qm.close().await.unwrap();
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // Find the fifth body and flip a bit in it.
    let pos = bytes.windows(9).position(|w| w == b"body-0004").unwrap();
    bytes[pos] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();

    let err = QueueManager::open(dir.path(), cfg()).await.unwrap_err();
    match &err {
        Error::Corrupt { file, offset, .. } => {
            assert_eq!(file, &seg);
            assert!(
                *offset > 24 && (*offset as usize) < pos,
                "offset {offset} is the frame start"
            );
        }
        other => panic!("expected corruption, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(".seg") && msg.contains("offset"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_covers_many_sends_per_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let qm = open(dir.path(), Config::default()).await; // FsyncPolicy::Always
    let q = qm.queue("q");
    let before = qm.log_stats();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let q = q.clone();
            tokio::spawn(async move {
                for j in 0..5 {
                    q.send(Message::new(format!("{i}-{j}"))).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = qm.log_stats();
    let fsyncs = s.fsyncs - before.fsyncs;
    let records = s.synced_records - before.synced_records;
    assert_eq!(records, 1000);
    let per = records as f64 / fsyncs as f64;
    println!(
        "1000 sends by 200 tasks: {fsyncs} fsyncs, {per:.1} records/fsync, max {}",
        s.max_records_per_fsync
    );
    assert!(per > 1.0, "group commit: {per} records per fsync");
    assert!(s.max_records_per_fsync >= 10);
    assert_eq!(qm.stats("q").depth, 1000);
}

#[tokio::test]
async fn drop_without_close_keeps_acknowledged_sends_and_unacked_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let qm = open(dir.path(), Config::default()).await;
        let q = qm.queue("q");
        for i in 0..20 {
            q.send(Message::new(format!("m{i}"))).await.unwrap();
        }
        let mut c = q.consumer(ConsumerOptions {
            prefetch: 5,
            ..Default::default()
        });
        // Ack m0..m2; m3 and m4 are delivered but never settled.
        for _ in 0..3 {
            recv(&mut c).await.ack().await.unwrap();
        }
        let d3 = recv(&mut c).await;
        let d4 = recv(&mut c).await;
        assert_eq!((body(&d3), body(&d4)), ("m3".into(), "m4".into()));
        // Dropped unsettled (as if the consumer died holding them): still in flight.
        drop((d3, d4));
        drop(c);
        drop(q);
        drop(qm);
    }
    let qm = open(dir.path(), Config::default()).await;
    assert_eq!(qm.stats("q").depth, 17);
    let mut c = qm.queue("q").consumer(ConsumerOptions::default());
    let d = recv(&mut c).await;
    assert_eq!(
        (body(&d), d.attempt()),
        ("m3".into(), 2),
        "delivery count survives"
    );
    let d = recv(&mut c).await;
    assert_eq!((body(&d), d.attempt()), ("m4".into(), 2));
    let d = recv(&mut c).await;
    assert_eq!((body(&d), d.attempt()), ("m5".into(), 1));
}

#[tokio::test]
async fn consumed_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let qm = open(
        dir.path(),
        Config {
            segment_size: 4096,
            ..cfg()
        },
    )
    .await;
    let q = qm.queue("q");
    for i in 0..300 {
        q.send(Message::new(format!("{i:0100}"))).await.unwrap();
    }
    let full = segments(dir.path()).len();
    assert!(full >= 8, "{full} segments");
    assert_eq!(qm.segment_count(), full);
    let mut c = q.consumer(ConsumerOptions {
        prefetch: 50,
        ..Default::default()
    });
    for i in 0..150 {
        let d = recv(&mut c).await;
        assert_eq!(body(&d), format!("{i:0100}"));
        d.ack().await.unwrap();
    }
    let half = segments(dir.path()).len();
    assert!(
        half < full && half > 1,
        "{half} of {full} segments left at half way"
    );
    for _ in 150..300 {
        recv(&mut c).await.ack().await.unwrap();
    }
    // Everything is acked: only the active segment is left.
    assert_eq!(segments(dir.path()).len(), 1);
    assert_eq!(
        qm.log_stats().segments_deleted as usize + 1,
        qm.log_stats().segments_created as usize
    );
    drop(c);
    drop(q);
    qm.close().await.unwrap();
    drop(qm);
    let qm = open(dir.path(), cfg()).await;
    assert_eq!(qm.recovery_report().live_messages, 0);
}

/// Receives `n` deliveries, checks they are `message number {from..}` in order and
/// acks them (concurrently, in groups, so acks share group commits).
async fn drain_in_order(q: &mw_queue::Queue, c: &mut mw_queue::Consumer, from: usize, n: usize) {
    let mut acks = Vec::new();
    for i in from..from + n {
        let d = recv(c).await;
        assert_eq!(body(&d), format!("message number {i:08}"));
        acks.push(q.ack(d.tag()));
        if acks.len() == 256 {
            for r in futures::future::join_all(acks.drain(..)).await {
                r.unwrap();
            }
        }
    }
    for r in futures::future::join_all(acks).await {
        r.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_memory_does_not_grow_per_message_and_bodies_come_from_disk() {
    const N: usize = 200_000;
    const HEAD: usize = 1024;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        body_cache_bytes: 0, // every body must be read back from its segment
        segment_size: 256 << 10,
        ready_head: HEAD,
        ..cfg()
    };
    let qm = open(dir.path(), config.clone()).await;
    let q = qm.queue("backlog");
    for chunk in 0..N / 1000 {
        let msgs = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| Message::new(format!("message number {i:08}")))
            .collect();
        for r in q.send_batch(msgs).await {
            r.unwrap();
        }
    }
    // The index holds the head (16 bytes a slot, up to twice that in spare deque
    // capacity), about one run and one segment record per segment, and a few KiB of
    // fixed overhead: nothing per spilled message.
    let bound = |segments: usize| (HEAD * 32 + segments * (40 + 2 * 24) + 8192) as u64;
    let m = qm.memory();
    let segs = qm.segment_count();
    println!(
        "{N} messages in {segs} segments: {m:?}, {:.2} bytes per message (bound {})",
        m.index_bytes as f64 / N as f64,
        bound(segs)
    );
    assert_eq!(m.messages, N as u64);
    assert_eq!(m.cache_bytes, 0);
    assert_eq!(m.ready_slots, HEAD as u64);
    assert_eq!(m.spilled_messages, (N - HEAD) as u64);
    assert!(m.spilled_runs as usize <= segs, "{m:?}");
    assert!(m.index_bytes <= bound(segs), "{m:?}");
    assert!(m.index_bytes < N as u64, "under a byte per message: {m:?}");
    let mut c = q.consumer(ConsumerOptions {
        prefetch: 256,
        ..Default::default()
    });
    drain_in_order(&q, &mut c, 0, N / 2).await;
    // Plus the in-flight bookkeeping of a 256-message prefetch (about 80 bytes each,
    // twice that in spare capacity): bounded by the prefetch, not the backlog.
    let m = qm.memory();
    assert!(
        m.index_bytes <= bound(segs) + 256 * 160,
        "while draining: {m:?}"
    );
    assert!(qm.segment_count() < segs, "consumed segments are deleted");
    drop(c);
    drop(q);
    qm.close().await.unwrap();
    drop(qm);
    // Replay builds the same compact index, and the rest comes back in order.
    let qm = open(dir.path(), config).await;
    let m = qm.memory();
    let segs = qm.segment_count();
    println!("after reopen, {segs} segments: {m:?}");
    assert_eq!(m.messages, (N / 2) as u64);
    assert!(m.ready_slots <= HEAD as u64, "{m:?}");
    assert!(m.index_bytes <= bound(segs), "{m:?}");
    let q = qm.queue("backlog");
    let mut c = q.consumer(ConsumerOptions {
        prefetch: 256,
        ..Default::default()
    });
    drain_in_order(&q, &mut c, N / 2, N / 2).await;
    assert_eq!(qm.stats("backlog").depth, 0);
    assert_eq!(qm.memory().spilled_runs, 0);
}

#[tokio::test]
async fn second_manager_on_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let qm = open(dir.path(), cfg()).await;
    let err = QueueManager::open(dir.path(), cfg()).await.unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err}");
    qm.close().await.unwrap();
    let again = QueueManager::open(dir.path(), cfg()).await;
    assert!(again.is_ok(), "lock released by close");
}

#[tokio::test]
async fn interval_policy_defers_fsync_and_close_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let qm = open(
        dir.path(),
        Config {
            fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
            ..Config::default()
        },
    )
    .await;
    let before = qm.log_stats();
    for i in 0..10 {
        qm.queue("q")
            .send(Message::new(format!("{i}")))
            .await
            .unwrap();
    }
    assert_eq!(qm.log_stats().fsyncs, before.fsyncs, "no fsync per send");
    qm.close().await.unwrap();
    let s = qm.log_stats();
    assert_eq!(s.fsyncs, before.fsyncs + 1);
    assert_eq!(s.synced_records, before.synced_records + 10);
}

/// A damaged length field in the middle of the last segment must be reported as
/// corruption, not mistaken for a torn tail (which would truncate the acknowledged records
/// after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_length_mid_segment_is_corruption_not_a_torn_tail() {
    for (name, new_len) in [
        ("past the end of the file", 60u32 << 20),
        ("within the file", 64),
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            let qm = open(dir.path(), cfg()).await;
            for i in 0..10 {
                qm.queue("q")
                    .send(Message::new(format!("body-{i:04}")))
                    .await
                    .unwrap();
            }
            qm.close().await.unwrap();
        }
        let seg = segments(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        // Walk the frames ([len u32 LE][crc u32 LE][payload]) after the 24-byte header and
        // damage the length of the fifth.
        let mut at = 24usize;
        for _ in 0..4 {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            at += 8 + len;
        }
        bytes[at..at + 4].copy_from_slice(&new_len.to_le_bytes());
        std::fs::write(&seg, &bytes).unwrap();

        match QueueManager::open(dir.path(), cfg()).await {
            Err(Error::Corrupt { file, offset, .. }) => {
                assert_eq!(file, seg, "{name}");
                assert_eq!(offset as usize, at, "{name}: the damaged frame's offset");
            }
            Err(other) => panic!("{name}: expected corruption, got {other}"),
            Ok(_) => panic!("{name}: opened by truncating acknowledged records"),
        }
        assert_eq!(
            std::fs::read(&seg).unwrap().len(),
            bytes.len(),
            "{name}: nothing truncated"
        );
    }
}
