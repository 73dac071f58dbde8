//! Persistent synchronous sends survive a broker crash: the real `mw broker` process is
//! SIGKILLed while producers are mid-stream, restarted on the same data directory, and
//! everything is consumed and checked like a Jepsen queue checker.
//!
//! - **lost** (confirmed to its producer, never delivered) must be 0;
//! - **unexpected** (delivered, never sent) must be 0;
//! - **duplicated** (delivered more than once) is reported; it is allowed only for
//!   messages whose send was in flight at the crash and was resent (producer-chosen ids
//!   and the broker's dedup window should make it 0 even then).

mod queue_support;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use mw::queue::remote::{RemoteError, RemoteQueue, RemoteQueues};
use mw::queue::{ConsumerOptions, Message, MessageId};
use queue_support::start_broker;
use tokio::sync::Notify;

const QUEUE: &str = "crash";
/// Producers sending one message at a time each, with this many sends outstanding.
const SINGLE_PRODUCERS: u64 = 4;
const WINDOW: usize = 8;
/// One more producer sends batches of this size.
const BATCH: usize = 16;
/// The broker is killed once this many sends have been confirmed.
const KILL_AFTER: u64 = 400;
/// Upper bound on what one producer sends before the crash (bounds the loop by count).
const MAX_PER_PRODUCER: u64 = 1_000_000;
/// Bound on each phase.
const PHASE: Duration = Duration::from_secs(60);

fn id_of(producer: u64, seq: u64) -> u128 {
    (u128::from(producer) << 64) | u128::from(seq)
}

fn body_of(id: u128) -> String {
    format!("p{}-{}", id >> 64, id as u64)
}

/// What one producer knows after the crash.
#[derive(Debug, Default)]
struct Outcome {
    confirmed: Vec<u128>,
    /// Sent, no confirmation: may or may not be stored.
    in_doubt: Vec<u128>,
}

/// Sends `p`'s messages until the first failure (the crash), counting confirms into
/// `confirms` and waking `reached` once the total passes `KILL_AFTER`.
async fn single_producer(
    q: RemoteQueue,
    p: u64,
    confirms: Arc<AtomicU64>,
    reached: Arc<Notify>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut inflight = FuturesUnordered::new();
    let mut next = 0u64;
    let mut failed = false;
    loop {
        while !failed && inflight.len() < WINDOW && next < MAX_PER_PRODUCER {
            let id = id_of(p, next);
            next += 1;
            let q = q.clone();
            inflight.push(async move {
                let r = q.send(Message::new(body_of(id)).with_id(id)).await;
                (id, r)
            });
        }
        let Some((id, r)) = inflight.next().await else {
            break;
        };
        match r {
            Ok(got) => {
                assert_eq!(got, MessageId(id));
                out.confirmed.push(id);
                if confirms.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    reached.notify_one();
                }
            }
            Err(e) => {
                assert!(is_crash(&e), "unexpected failure {e:?}");
                out.in_doubt.push(id);
                failed = true;
            }
        }
    }
    out
}

/// Like `single_producer`, with `send_batch`.
async fn batch_producer(
    q: RemoteQueue,
    p: u64,
    confirms: Arc<AtomicU64>,
    reached: Arc<Notify>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut next = 0u64;
    while next < MAX_PER_PRODUCER {
        let ids: Vec<u128> = (next..next + BATCH as u64).map(|s| id_of(p, s)).collect();
        next += BATCH as u64;
        let msgs = ids
            .iter()
            .map(|&id| Message::new(body_of(id)).with_id(id))
            .collect();
        match q.send_batch(msgs).await {
            Ok(results) => {
                for (id, r) in ids.into_iter().zip(results) {
                    assert_eq!(r.expect("stored"), MessageId(id));
                    out.confirmed.push(id);
                    if confirms.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                        reached.notify_one();
                    }
                }
            }
            Err(e) => {
                assert!(is_crash(&e), "unexpected failure {e:?}");
                out.in_doubt.extend(ids);
                break;
            }
        }
    }
    out
}

/// The ways a send fails when the broker dies under it.
fn is_crash(e: &RemoteError) -> bool {
    matches!(e, RemoteError::Rpc(_) | RemoteError::Connect { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_sends_survive_a_broker_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, addr) = start_broker(dir.path());

    // Phase 1: producers mid-stream, broker SIGKILLed after KILL_AFTER confirms.
    let confirms = Arc::new(AtomicU64::new(0));
    let reached = Arc::new(Notify::new());
    let mut producers = Vec::new();
    for p in 0..=SINGLE_PRODUCERS {
        // One connection per producer, as separate programs would have.
        let q = RemoteQueues::connect(&addr).await.unwrap().queue(QUEUE);
        let (c, r) = (confirms.clone(), reached.clone());
        producers.push(tokio::spawn(async move {
            if p == SINGLE_PRODUCERS {
                batch_producer(q, p, c, r).await
            } else {
                single_producer(q, p, c, r).await
            }
        }));
    }
    tokio::time::timeout(PHASE, reached.notified())
        .await
        .expect("producers reached the kill point");
    broker.kill(); // SIGKILL: no shutdown, no final sync
    let mut outcomes = Vec::new();
    for p in producers {
        let o = tokio::time::timeout(PHASE, p)
            .await
            .expect("producers notice the crash")
            .unwrap();
        outcomes.push(o);
    }
    let confirmed_before: usize = outcomes.iter().map(|o| o.confirmed.len()).sum();
    let in_doubt: Vec<u128> = outcomes.iter().flat_map(|o| o.in_doubt.clone()).collect();
    assert!(confirmed_before as u64 >= KILL_AFTER);
    assert!(!in_doubt.is_empty(), "the crash hit no send in flight");

    // Phase 2: restart on the same data directory; resend what is in doubt (same ids),
    // then send some more.
    let (_broker, addr) = start_broker(dir.path());
    let remote = RemoteQueues::connect(&addr).await.unwrap();
    let q = remote.queue(QUEUE);
    let mut confirmed: BTreeSet<u128> = outcomes.iter().flat_map(|o| o.confirmed.clone()).collect();
    let mut sent: BTreeSet<u128> = confirmed.iter().copied().collect();
    sent.extend(in_doubt.iter().copied());
    let resends = in_doubt
        .iter()
        .map(|&id| Message::new(body_of(id)).with_id(id))
        .collect::<Vec<_>>();
    for chunk in resends.chunks(1000) {
        let results = tokio::time::timeout(PHASE, q.send_batch(chunk.to_vec()))
            .await
            .expect("resend in time")
            .expect("resend");
        for r in results {
            confirmed.insert(r.expect("resend stored").0);
        }
    }
    let after = 100u64;
    for seq in 0..after {
        let id = id_of(99, seq);
        sent.insert(id);
        q.send(Message::new(body_of(id)).with_id(id)).await.unwrap();
        confirmed.insert(id);
    }

    // Consume everything the broker holds (no consumer ran before, so nothing is in
    // flight), acking each; the limit leaves nothing behind.
    let depth = remote
        .queues()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.name == QUEUE)
        .expect("queue recovered")
        .depth;
    let mut delivered: HashMap<u128, u32> = HashMap::new();
    let mut c = q
        .consumer_with_limit(
            ConsumerOptions {
                prefetch: 256,
                ..Default::default()
            },
            depth,
        )
        .await
        .unwrap();
    tokio::time::timeout(PHASE, async {
        for _ in 0..depth {
            let d = c.recv().await.expect("delivery");
            assert_eq!(d.body(), body_of(d.id().0).as_bytes(), "body intact");
            *delivered.entry(d.id().0).or_default() += 1;
            d.ack().await.expect("ack");
        }
    })
    .await
    .expect("consumed everything in time");
    drop(c);
    let left = remote.queues().await.unwrap();
    let left = left.iter().find(|i| i.name == QUEUE).unwrap();
    assert_eq!((left.depth, left.in_flight), (0, 0));

    // The checker.
    let lost: Vec<u128> = confirmed
        .iter()
        .filter(|id| !delivered.contains_key(id))
        .copied()
        .collect();
    let unexpected: Vec<u128> = delivered
        .keys()
        .filter(|id| !sent.contains(id))
        .copied()
        .collect();
    let duplicated: Vec<u128> = delivered
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let in_doubt_set: BTreeSet<u128> = in_doubt.iter().copied().collect();
    println!(
        "crash checker: sent {} (confirmed before the crash {confirmed_before}, in doubt {}, \
         after restart {after}); delivered {} distinct; lost {}; duplicated {}; unexpected {}",
        sent.len(),
        in_doubt.len(),
        delivered.len(),
        lost.len(),
        duplicated.len(),
        unexpected.len()
    );
    assert!(lost.is_empty(), "confirmed but never delivered: {lost:x?}");
    assert!(
        unexpected.is_empty(),
        "delivered, never sent: {unexpected:x?}"
    );
    assert!(
        duplicated.iter().all(|id| in_doubt_set.contains(id)),
        "duplicates of messages that were not in doubt: {duplicated:x?}"
    );
}
