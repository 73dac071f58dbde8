//! Queues over the network: a broker (in-process, or the real `mw broker` binary for the
//! CLI verbs) and `RemoteQueues` clients on real sockets. Send, consume and ack round trip;
//! a consumer that goes away without acking gets its message redelivered to another;
//! prefetch holds over the network; the broker's refusals arrive typed; malformed
//! requests are refused while other clients keep working; `mw send`, `mw recv` and
//! `mw queues` as processes.

mod queue_support;

use std::collections::HashSet;
use std::time::Duration;

use mw::queue::remote::{QueueError, RemoteError, RemoteQueues};
use mw::queue::{Config, ConsumerOptions, Message, MessageId};
use queue_support::{dead_addr, run_mw, start_broker, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?}: {what}"))
}

fn opts(prefetch: u32) -> ConsumerOptions {
    ConsumerOptions {
        prefetch,
        ..Default::default()
    }
}

#[tokio::test]
async fn remote_send_consume_ack_round_trip() {
    let broker = TestBroker::start(Config::default()).await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let q = remote.queue("orders");

    let a = q.send(Message::new("one widget")).await.unwrap();
    let b = q.send(Message::new("two").with_id(42u128)).await.unwrap();
    assert_eq!(b, MessageId(42));
    let batch = q
        .send_batch(vec![Message::new("three"), Message::new("four")])
        .await
        .unwrap();
    assert_eq!(batch.len(), 2);
    // Confirmed means stored at the broker.
    assert_eq!(broker.queues.stats("orders").depth, 4);

    let mut c = q.consumer(opts(10)).await.unwrap();
    let mut bodies = Vec::new();
    for expected_id in [Some(a), Some(b), None, None] {
        let d = within("delivery", c.recv()).await.unwrap();
        assert_eq!(d.attempt(), 1);
        assert_eq!(d.queue(), "orders");
        if let Some(id) = expected_id {
            assert_eq!(d.id(), id);
        }
        bodies.push(String::from_utf8(d.body().to_vec()).unwrap());
        d.ack().await.unwrap();
    }
    assert_eq!(bodies, ["one widget", "two", "three", "four"], "FIFO");

    let info = remote.queues().await.unwrap();
    let orders = info.iter().find(|i| i.name == "orders").unwrap();
    assert_eq!(
        (orders.depth, orders.in_flight, orders.consumers),
        (0, 0, 1)
    );
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn batches_are_stored_and_delivered_in_order() {
    let broker = TestBroker::start(Config::default()).await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let q = remote.queue("ordered");
    let n = 3000u32;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let msgs = chunk.iter().map(|i| Message::new(i.to_string())).collect();
        for r in q.send_batch(msgs).await.unwrap() {
            r.unwrap();
        }
    }
    let mut c = q.consumer(opts(500)).await.unwrap();
    for i in 0..n {
        let d = within("ordered delivery", c.recv()).await.unwrap();
        assert_eq!(d.body(), i.to_string().as_bytes(), "FIFO across batches");
        d.ack().await.unwrap();
    }
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn nack_redelivers_and_reject_dead_letters() {
    let broker = TestBroker::start(Config::default()).await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let q = remote.queue("jobs");
    q.send(Message::new("flaky")).await.unwrap();
    let mut c = q.consumer(opts(1)).await.unwrap();
    let d = within("first delivery", c.recv()).await.unwrap();
    d.nack(None).await.unwrap();
    let d = within("redelivery", c.recv()).await.unwrap();
    assert_eq!(d.attempt(), 2);
    d.reject().await.unwrap();
    let info = remote.queues().await.unwrap();
    let jobs = info.iter().find(|i| i.name == "jobs").unwrap();
    assert_eq!((jobs.depth, jobs.dead_letters), (0, 1));
    assert_eq!(q.redrive().await.unwrap(), 1);
    let d = within("redriven delivery", c.recv()).await.unwrap();
    assert_eq!(&d.body()[..], b"flaky");
    d.ack().await.unwrap();
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn resend_with_the_same_id_is_stored_once() {
    let broker = TestBroker::start(Config::default()).await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let q = remote.queue("outbox");
    // What a store-and-forward sender does after losing a reply: resend, same id.
    let first = q.send(Message::new("m").with_id(7u128)).await.unwrap();
    let again = q.send(Message::new("m").with_id(7u128)).await.unwrap();
    let batch = q
        .send_batch(vec![Message::new("m").with_id(7u128)])
        .await
        .unwrap();
    assert_eq!((first, again), (MessageId(7), MessageId(7)));
    assert_eq!(batch[0].as_ref().unwrap(), &MessageId(7));
    assert_eq!(broker.queues.stats("outbox").depth, 1);
    broker.stop().await;
}

#[tokio::test]
async fn consumer_that_disconnects_without_acking_has_its_message_redelivered_to_another() {
    let broker = TestBroker::start(Config {
        visibility_timeout: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let sender = RemoteQueues::connect(&broker.addr).await.unwrap();
    sender
        .queue("work")
        .send(Message::new("job"))
        .await
        .unwrap();

    // The first consumer, on its own connection, takes the job and vanishes.
    let first = RemoteQueues::connect(&broker.addr).await.unwrap();
    let mut c1 = first.queue("work").consumer(opts(1)).await.unwrap();
    let d = within("first delivery", c1.recv()).await.unwrap();
    assert_eq!(d.attempt(), 1);
    let id = d.id();
    drop(d);
    drop(c1);
    drop(first);

    // Another consumer gets it once the visibility timeout expires.
    let second = RemoteQueues::connect(&broker.addr).await.unwrap();
    let mut c2 = second.queue("work").consumer(opts(1)).await.unwrap();
    let d = within("redelivery to another consumer", c2.recv())
        .await
        .unwrap();
    assert_eq!((d.id(), d.attempt()), (id, 2));
    d.ack().await.unwrap();
    drop(c2);
    broker.stop().await;
}

#[tokio::test]
async fn a_limited_consumer_leaves_nothing_in_flight_behind() {
    // Visibility timeout far beyond the test's bound: anything stranded would hang it.
    let broker = TestBroker::start(Config {
        visibility_timeout: Duration::from_secs(3600),
        ..Config::default()
    })
    .await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let q = remote.queue("tray");
    for i in 0..5 {
        q.send(Message::new(format!("m{i}"))).await.unwrap();
    }
    let mut c = q.consumer_with_limit(opts(100), 2).await.unwrap();
    for _ in 0..2 {
        within("limited delivery", c.recv())
            .await
            .unwrap()
            .ack()
            .await
            .unwrap();
    }
    let end = within("end of limited consumer", c.recv()).await;
    assert!(matches!(end, Err(RemoteError::LimitReached(2))), "{end:?}");
    drop(c);
    // The other three are available at once to the next consumer.
    let mut c = q.consumer(opts(10)).await.unwrap();
    for i in 2..5 {
        let d = within("remaining delivery", c.recv()).await.unwrap();
        assert_eq!(d.body(), format!("m{i}").as_bytes());
        assert_eq!(d.attempt(), 1, "returned without counting an attempt");
        d.ack().await.unwrap();
    }
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn prefetch_bounds_unsettled_deliveries_over_the_network() {
    let broker = TestBroker::start(Config::default()).await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let q = remote.queue("bins");
    let msgs = (0..10).map(|i| Message::new(format!("{i}"))).collect();
    for r in q.send_batch(msgs).await.unwrap() {
        r.unwrap();
    }
    let mut greedy = q.consumer(opts(3)).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(within("prefetched delivery", greedy.recv()).await.unwrap());
    }
    let stats = broker.queues.stats("bins");
    assert_eq!((stats.in_flight, stats.depth), (3, 7));
    // Everything else is left for a competing consumer.
    let other = RemoteQueues::connect(&broker.addr).await.unwrap();
    let mut c2 = other.queue("bins").consumer(opts(100)).await.unwrap();
    let mut seen: HashSet<Vec<u8>> = held.iter().map(|d| d.body().to_vec()).collect();
    for _ in 0..7 {
        let d = within("competing delivery", c2.recv()).await.unwrap();
        assert!(seen.insert(d.body().to_vec()), "delivered twice");
        d.ack().await.unwrap();
    }
    assert_eq!(seen.len(), 10);
    for d in held {
        d.ack().await.unwrap();
    }
    drop((greedy, c2));
    broker.stop().await;
}

#[tokio::test]
async fn broker_refusals_reach_the_client_typed() {
    let broker = TestBroker::start(Config {
        max_queue_len: Some(2),
        max_message_size: 1024,
        ..Config::default()
    })
    .await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let q = remote.queue("machine");
    q.send(Message::new("a")).await.unwrap();
    q.send(Message::new("b")).await.unwrap();
    let full = q.send(Message::new("c")).await.unwrap_err();
    match &full {
        RemoteError::Refused(QueueError::QueueFull { queue, limit }) => {
            assert_eq!((queue.as_str(), *limit), ("machine", 2));
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert_eq!(full.to_string(), "queue machine is full (2 messages)");
    assert!(!full.is_permanent(), "a full queue may drain");

    let big = remote
        .queue("other")
        .send(Message::new(vec![0u8; 2048]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            big,
            RemoteError::Refused(QueueError::MessageTooLarge {
                size: 2048,
                limit: 1024
            })
        ),
        "{big:?}"
    );
    assert!(big.is_permanent());

    // A batch into a nearly full queue: per-message results.
    let results = remote
        .queue("pair")
        .send_batch(vec![
            Message::new("1"),
            Message::new("2"),
            Message::new("3"),
        ])
        .await
        .unwrap();
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(matches!(results[2], Err(QueueError::QueueFull { .. })));
    broker.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_refused_and_other_clients_keep_working() {
    let broker = TestBroker::start(Config::default()).await;
    let good = RemoteQueues::connect(&broker.addr).await.unwrap();
    let bad = RemoteQueues::connect(&broker.addr).await.unwrap();

    let long = "x".repeat(256);
    for name in ["", "has space", "new\nline", "bell\u{7}", long.as_str()] {
        let e = bad.queue(name).send(Message::new("x")).await.unwrap_err();
        assert!(
            matches!(e, RemoteError::Refused(QueueError::InvalidQueueName(ref n)) if n == name),
            "{name:?}: {e:?}"
        );
        let mut c = bad.queue(name).consumer(opts(1)).await.unwrap();
        let e = within("invalid consumer", c.recv()).await.unwrap_err();
        assert!(
            matches!(e, RemoteError::Refused(QueueError::InvalidQueueName(_))),
            "{e:?}"
        );
    }
    let e = bad
        .queue("q")
        .ack(mw::queue::DeliveryTag::new(999, 1))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        RemoteError::Refused(QueueError::DeliveryNotFound { .. })
    ));

    // Garbage on a raw connection: the broker drops that connection only.
    let mut raw = tokio::net::TcpStream::connect(&broker.addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: nonsense\r\n\r\n\xff\xff\xff\xff")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = within("broker closes the garbage connection", async {
        let mut buf = [0u8; 4096];
        // Bounded: at most 1 MiB of refusal before we give up reading.
        while sink.len() < 1 << 20 {
            match raw.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;

    // The invalid names created nothing, and a good client is served as ever.
    let q = good.queue("fine");
    q.send(Message::new("still here")).await.unwrap();
    let mut c = q.consumer(opts(1)).await.unwrap();
    let d = within("good delivery", c.recv()).await.unwrap();
    assert_eq!(&d.body()[..], b"still here");
    d.ack().await.unwrap();
    let names: Vec<String> = good
        .queues()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["fine"]);
    drop(c);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_on_one_connection_are_coalesced_and_each_answered() {
    let broker = TestBroker::start(Config::default()).await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let senders = 64usize;
    let per_sender = 50usize;
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            // A handle per sender: handles of one name share the coalescing.
            let q = remote.queue("many");
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..per_sender {
                    let id = q.send(Message::new(format!("{s}:{i}"))).await.unwrap();
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        for id in within("sender", t).await.unwrap() {
            assert!(ids.insert(id), "id {id:?} answered twice");
        }
    }
    let total = senders * per_sender;
    assert_eq!(ids.len(), total);
    // Confirmed means durable at the broker: everything is there before any receive.
    assert_eq!(broker.queues.stats("many").depth, total as u64);

    // One consumer, FIFO: every confirmed message once, each sender's in its order.
    let q = remote.queue("many");
    let mut c = q.consumer(opts(500)).await.unwrap();
    let mut next = vec![0usize; senders];
    let mut acks = Vec::new();
    for _ in 0..total {
        let d = within("delivery", c.recv()).await.unwrap();
        assert!(ids.remove(&d.id()), "unknown or repeated id {:?}", d.id());
        let body = String::from_utf8(d.body().to_vec()).unwrap();
        let (s, i) = body.split_once(':').unwrap();
        let (s, i): (usize, usize) = (s.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[s], "sender {s} out of order");
        next[s] += 1;
        // Acked concurrently (merged into ack_many calls) while receiving goes on:
        // the prefetch of 500 holds only while they complete.
        acks.push(tokio::spawn(d.ack()));
    }
    for r in within("acks", futures::future::join_all(acks)).await {
        r.unwrap().unwrap();
    }
    let stats = broker.queues.stats("many");
    assert_eq!((stats.depth, stats.in_flight), (0, 0));

    // The broker's counters, read remotely, account for all of it.
    let bs = remote.stats().await.unwrap();
    assert!(bs.log.appends >= 2 * total as u64, "{bs:?}");
    assert!(
        bs.log.fsyncs >= 1 && bs.log.synced_records >= bs.log.fsyncs,
        "{bs:?}"
    );
    assert!(bs.records_per_fsync() >= 1.0, "{bs:?}");
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn a_cancelled_sender_does_not_affect_the_others_merged_with_it() {
    let broker = TestBroker::start(Config::default()).await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let q = remote.queue("partly");
    let n = 300usize;
    let mut sends: Vec<Option<_>> = (0..n)
        .map(|i| {
            let q = q.clone();
            Some(Box::pin(async move {
                q.send(Message::new(format!("{i}")).with_id(i as u128))
                    .await
            }))
        })
        .collect();
    // Poll each once: the first go out alone, the rest wait to be merged.
    for s in sends.iter_mut() {
        let polled = futures::poll!(s.as_mut().unwrap().as_mut());
        assert!(polled.is_pending());
    }
    // Cancel some while they wait...
    let mut cancelled = HashSet::new();
    for i in (2..n).step_by(7) {
        sends[i] = None;
        cancelled.insert(i);
    }
    // ...and, once the first answers have come back (so a batch is in flight), some more.
    for (i, s) in sends.iter_mut().enumerate().take(2) {
        let r = within("first sends", s.take().unwrap()).await;
        assert_eq!(r.unwrap(), MessageId(i as u128));
    }
    for i in (3..n).step_by(11) {
        if sends[i].take().is_some() {
            cancelled.insert(i);
        }
    }
    // Everyone else gets their own answer.
    for (i, s) in sends.into_iter().enumerate() {
        if let Some(s) = s {
            assert_eq!(within("send", s).await.unwrap(), MessageId(i as u128));
        }
    }

    // Every confirmed message is stored once; a cancelled one at most once.
    let depth = broker.queues.stats("partly").depth as usize;
    assert!(depth >= n - cancelled.len() && depth <= n, "{depth}");
    let mut c = q.consumer(opts(500)).await.unwrap();
    let mut seen = HashSet::new();
    for _ in 0..depth {
        let d = within("delivery", c.recv()).await.unwrap();
        let i = d.id().0 as usize;
        assert!(seen.insert(i), "{i} delivered twice");
        d.ack().await.unwrap();
    }
    for i in 0..n {
        assert!(
            seen.contains(&i) || cancelled.contains(&i),
            "confirmed message {i} lost"
        );
    }
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn batched_acks_settle_exactly_the_acked_deliveries() {
    let broker = TestBroker::start(Config {
        visibility_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let q = remote.queue("half");
    let n = 200u128;
    let msgs = (0..n).map(|i| Message::new("x").with_id(i)).collect();
    for r in q.send_batch(msgs).await.unwrap() {
        r.unwrap();
    }
    let mut c = q.consumer(opts(n as u32)).await.unwrap();
    let mut acks = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..n {
        let d = within("delivery", c.recv()).await.unwrap();
        if d.id().0 % 2 == 0 {
            acks.push(d.ack());
        } else {
            kept.push(d);
        }
    }
    // Concurrent acks (merged into ack_many calls): each is applied when it answers.
    for r in within("acks", futures::future::join_all(acks)).await {
        r.unwrap();
    }
    let stats = broker.queues.stats("half");
    assert_eq!((stats.depth, stats.in_flight), (0, n as u64 / 2));

    // ack_many directly: one result per tag, a stale tag refused on its own.
    let stale = kept[0].tag();
    let tags = vec![kept[0].tag(), kept[1].tag()];
    let results = q.ack_many(tags).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let results = q.ack_many(vec![stale, kept[2].tag()]).await.unwrap();
    assert!(
        matches!(results[0], Err(QueueError::DeliveryNotFound { .. })),
        "{results:?}"
    );
    assert!(results[1].is_ok());
    let acked_odd: HashSet<u128> = kept.drain(..3).map(|d| d.id().0).collect();

    // The unacked ones (and only they) come back after the visibility timeout.
    drop(kept);
    drop(c);
    let mut c = q.consumer(opts(n as u32)).await.unwrap();
    let expected = (n / 2 - 3) as usize;
    let mut again = Vec::new();
    for _ in 0..expected {
        let d = within("redelivery", c.recv()).await.unwrap();
        assert_eq!(d.id().0 % 2, 1, "acked message {:?} redelivered", d.id());
        assert!(!acked_odd.contains(&d.id().0));
        assert_eq!(d.attempt(), 2);
        again.push(d.ack());
    }
    for r in within("acks of redeliveries", futures::future::join_all(again)).await {
        r.unwrap();
    }
    let stats = broker.queues.stats("half");
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
    drop(c);
    broker.stop().await;
}

#[test]
fn cli_send_recv_and_queues_against_a_real_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());

    let out = run_mw(
        &["send", "--broker", &addr, "cans"],
        Some("cola\nlemon\norange\n"),
    );
    assert!(out.status.success(), "{:?}", out.stderr);
    assert_eq!(out.stdout.len(), 3, "one id per line: {:?}", out.stdout);
    assert!(out
        .stdout
        .iter()
        .all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())));
    let out = run_mw(&["send", "--broker", &addr, "cans", "water"], None);
    assert!(out.status.success(), "{:?}", out.stderr);
    assert_eq!(out.stdout.len(), 1);

    let out = run_mw(&["queues", "--broker", &addr], None);
    assert!(out.status.success(), "{:?}", out.stderr);
    assert_eq!(out.stdout[0].split_whitespace().next(), Some("QUEUE"));
    let row: Vec<&str> = out.stdout[1].split_whitespace().collect();
    assert_eq!(row, ["cans", "4", "0", "0", "0"], "{:?}", out.stdout);

    let out = run_mw(&["recv", "--broker", &addr, "cans", "--count", "3"], None);
    assert!(out.status.success(), "{:?}", out.stderr);
    assert_eq!(out.stdout, ["cola", "lemon", "orange"]);
    // Acked, and nothing left in flight by the exiting consumer.
    let out = run_mw(&["queues", "--broker", &addr], None);
    let row: Vec<&str> = out.stdout[1].split_whitespace().collect();
    assert_eq!(row, ["cans", "1", "0", "0", "0"], "{:?}", out.stdout);
    let out = run_mw(&["recv", "--broker", &addr, "cans", "--count", "1"], None);
    assert_eq!(out.stdout, ["water"]);
}

#[test]
fn cli_errors_are_one_plain_line_and_a_failure_code() {
    let nobody = dead_addr();
    let out = run_mw(&["send", "--broker", &nobody, "q", "x"], None);
    assert!(!out.status.success());
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr[0].starts_with(&format!("mw: cannot connect to broker at {nobody}")),
        "{:?}",
        out.stderr
    );
    let out = run_mw(&["queues", "--broker", &nobody], None);
    assert!(!out.status.success());

    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let out = run_mw(&["send", "--broker", &addr, "bad name", "x"], None);
    assert!(!out.status.success());
    assert_eq!(out.stderr, ["mw: invalid queue name \"bad name\""]);
}

/// A remote client may send any u64 of milliseconds: `u64::MAX` as TTL, send delay,
/// nack delay or visibility extension means "never", and the broker keeps serving
/// (before the fix, nack and extend panicked while holding the state lock and poisoned
/// it for every later operation).
#[tokio::test]
async fn absurd_remote_durations_saturate_and_the_broker_keeps_serving() {
    let broker = TestBroker::start(Config::default()).await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let q = remote.queue("absurd");
    q.send(Message::new("ttl").with_ttl(Duration::MAX))
        .await
        .unwrap();
    q.send(Message::new("delay").with_delay(Duration::MAX))
        .await
        .unwrap();
    let mut c = q.consumer(opts(10)).await.unwrap();
    let d = within("ttl message", c.recv()).await.unwrap();
    assert_eq!(&d.body()[..], b"ttl", "an absurd TTL did not expire it");
    d.extend_visibility(Duration::MAX).await.unwrap();
    d.nack(Some(Duration::MAX)).await.unwrap();
    let stats = broker.queues.stats("absurd");
    assert_eq!((stats.delayed, stats.in_flight), (2, 0));
    // Still serving: a plain message goes through on the same queue.
    q.send(Message::new("plain")).await.unwrap();
    let d = within("plain message", c.recv()).await.unwrap();
    assert_eq!(&d.body()[..], b"plain");
    d.ack().await.unwrap();
    drop(c);
    broker.stop().await;
}

/// A refused line in the middle of `mw send`'s stdin must not hide what
/// was stored. Every input line gets one stdout line, in order (its id, or `-` when it
/// was not stored), each refused line is named on stderr with its line number, and the
/// exit code is 1.
#[test]
fn cli_send_reports_every_lines_outcome_when_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let big = "x".repeat((4 << 20) + 1);
    let mut input = String::new();
    for n in 1..=10 {
        if n == 6 {
            input.push_str(&big);
        } else {
            input.push_str(&format!("line {n}"));
        }
        input.push('\n');
    }
    let out = run_mw(&["send", "--broker", &addr, "mixed"], Some(&input));
    assert!(!out.status.success(), "a refused line fails the command");
    assert_eq!(
        out.stdout.len(),
        10,
        "one outcome per line: {:?}",
        out.stdout
    );
    for (i, line) in out.stdout.iter().enumerate() {
        if i == 5 {
            assert_eq!(line, "-", "line 6 was not stored");
        } else {
            assert!(
                line.len() == 32 && line.chars().all(|c| c.is_ascii_hexdigit()),
                "line {}: {line:?}",
                i + 1
            );
        }
    }
    assert!(
        out.stderr
            .iter()
            .any(|l| l.contains("line 6") && l.contains("max message size")),
        "{:?}",
        out.stderr
    );
    let out = run_mw(&["queues", "--broker", &addr], None);
    let row: Vec<&str> = out.stdout[1].split_whitespace().collect();
    assert_eq!(row[..2], ["mixed", "9"], "{:?}", out.stdout);
}

/// Settings that cannot work are refused at start, with one line and a
/// failure code, instead of a broker that misbehaves later.
#[test]
fn cli_broker_refuses_settings_that_cannot_work() {
    for (flag, value, says) in [
        ("--visibility-timeout", "0", "visibility timeout"),
        ("--max-queue-len", "0", "max queue length"),
        ("--route", "*=notanaddr", "notanaddr"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let out = run_mw(
            &[
                "broker",
                "--addr",
                "127.0.0.1:0",
                "--data",
                data,
                flag,
                value,
            ],
            None,
        );
        assert!(!out.status.success(), "{flag} {value} accepted");
        assert!(
            out.stdout.is_empty(),
            "it must not listen: {:?}",
            out.stdout
        );
        assert_eq!(out.stderr.len(), 1, "{flag} {value}: {:?}", out.stderr);
        assert!(
            out.stderr[0].contains(says),
            "{flag} {value}: {:?}",
            out.stderr
        );
    }
}

/// `mw recv --timeout SECS` gives up when nothing arrives in
/// time, with one line and exit code 1, instead of blocking forever.
#[test]
fn cli_recv_gives_up_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    // A known queue, empty again.
    let out = run_mw(&["send", "--broker", &addr, "empty", "x"], None);
    assert!(out.status.success(), "{:?}", out.stderr);
    let out = run_mw(&["recv", "--broker", &addr, "empty", "--count", "1"], None);
    assert_eq!(out.stdout, ["x"], "{:?}", out.stderr);
    let out = run_mw(
        &["recv", "--broker", &addr, "empty", "--timeout", "1"],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
    assert!(out.stdout.is_empty());
    assert_eq!(
        out.stderr,
        ["mw: no message on queue empty within 1 s"],
        "{:?}",
        out.stderr
    );
}

/// `mw recv` on a name the broker does not know fails at once with one
/// line naming it, instead of waiting forever and leaving the queue behind; its
/// dead-letter queue is known before its first dead letter.
#[test]
fn cli_recv_refuses_an_unknown_queue_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let out = run_mw(&["send", "--broker", &addr, "orders", "x"], None);
    assert!(out.status.success(), "{:?}", out.stderr);

    let out = run_mw(&["recv", "--broker", &addr, "ordrs"], None);
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
    assert!(out.stdout.is_empty());
    assert_eq!(
        out.stderr,
        ["mw: no queue named \"ordrs\" on the broker"],
        "{:?}",
        out.stderr
    );
    let out = run_mw(&["queues", "--broker", &addr], None);
    assert_eq!(out.stdout.len(), 2, "only orders: {:?}", out.stdout);
    assert!(out.stdout[1].starts_with("orders "), "{:?}", out.stdout);

    // The dead-letter queue of a known queue may be read while still empty.
    let out = run_mw(
        &["recv", "--broker", &addr, "orders.dlq", "--timeout", "1"],
        None,
    );
    assert_eq!(
        out.stderr,
        ["mw: no message on queue orders.dlq within 1 s"],
        "{:?}",
        out.stderr
    );
}

/// A remote consumer of a queue nobody sent to leaves nothing behind
/// once it goes away.
#[tokio::test]
async fn a_remote_consumer_of_an_unknown_queue_creates_nothing() {
    let broker = TestBroker::start(Config::default()).await;
    let remote = RemoteQueues::connect(&broker.addr).await.unwrap();
    let c = remote.queue("typo").consumer(opts(1)).await.unwrap();
    drop(c);
    // The broker drops its consumer when it handles the stream's cancel, which it reads
    // before the next call on this connection; wait for that, bounded.
    for _ in 0..10_000 {
        if remote.queues().await.unwrap().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(remote.queues().await.unwrap().is_empty());
    broker.stop().await;
}
