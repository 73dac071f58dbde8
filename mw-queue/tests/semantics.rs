//! Queue semantics: redelivery, dead letters, TTL, delays, prefetch, dedup,
//! length limits and tag-based settling. Time is a manual clock.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use mw_queue::{Clock, Config, ConsumerOptions, Error, Message, MessageId};

const VIS: Duration = Duration::from_secs(10);

#[tokio::test]
async fn unacked_delivery_is_redelivered_after_visibility_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let q = qm.queue("q");
    q.send(Message::new("job")).await.unwrap();
    let mut a = q.consumer(ConsumerOptions::default());
    let mut b = q.consumer(ConsumerOptions::default());
    let d = recv(&mut a).await;
    assert_eq!(d.attempt(), 1);
    drop(d); // no ack
    assert!(try_recv(&mut b).is_none(), "invisible while in flight");
    assert_eq!(qm.stats("q").in_flight, 1);
    clock.advance(VIS - Duration::from_millis(1));
    assert!(try_recv(&mut b).is_none(), "not before the timeout");
    clock.advance(Duration::from_millis(1));
    let d = recv(&mut b).await;
    assert_eq!((body(&d), d.attempt()), ("job".into(), 2));
    d.ack().await.unwrap();
    assert_eq!(qm.stats("q").depth + qm.stats("q").in_flight, 0);
}

#[tokio::test]
async fn dropped_consumer_returns_prefetched_messages_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let q = qm.queue("q");
    for i in 0..5 {
        q.send(Message::new(format!("m{i}"))).await.unwrap();
    }
    let mut a = q.consumer(ConsumerOptions {
        prefetch: 5,
        ..Default::default()
    });
    let first = recv(&mut a).await; // fetches all five, hands out one
    assert_eq!(qm.stats("q").in_flight, 5);
    drop(a);
    assert_eq!(
        qm.stats("q").in_flight,
        1,
        "the four not handed out are back"
    );
    let mut b = q.consumer(ConsumerOptions {
        prefetch: 5,
        ..Default::default()
    });
    for i in 1..5 {
        let d = recv(&mut b).await;
        assert_eq!(
            (body(&d), d.attempt()),
            (format!("m{i}"), 1),
            "not counted as an attempt"
        );
    }
    first.ack().await.unwrap();
}

#[tokio::test]
async fn extended_visibility_postpones_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let q = qm.queue("q");
    q.send(Message::new("slow job")).await.unwrap();
    let mut a = q.consumer(ConsumerOptions::default());
    let mut b = q.consumer(ConsumerOptions::default());
    let d = recv(&mut a).await;
    clock.advance(Duration::from_secs(8));
    d.extend_visibility(Duration::from_secs(30)).unwrap();
    clock.advance(Duration::from_secs(25)); // past the original deadline
    assert!(try_recv(&mut b).is_none());
    assert_eq!(qm.stats("q").in_flight, 1);
    d.ack().await.unwrap();
}

#[tokio::test]
async fn stale_tag_cannot_settle_a_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let q = qm.queue("q");
    q.send(Message::new("x")).await.unwrap();
    let mut c = q.consumer(ConsumerOptions::default());
    let first = recv(&mut c).await;
    let stale = first.tag();
    drop(first);
    clock.advance(VIS);
    let second = recv(&mut c).await;
    assert_eq!(second.attempt(), 2);
    let err = q.ack(stale).await.unwrap_err();
    assert!(matches!(err, Error::DeliveryNotFound { .. }), "{err}");
    // The broker path: settle by tag after dropping the Delivery object.
    let tag = second.tag();
    drop(second);
    q.ack(tag).await.unwrap();
    assert!(q.ack(tag).await.is_err(), "a tag settles once");
    assert_eq!(q.stats().depth + q.stats().in_flight, 0);
}

/// A queue whose name leaves no room for the dead-letter suffix (253 bytes + ".dlq" >
/// 255) has no dead-letter queue: an exhausted message stays and is retried, as in a
/// DLQ, and the log stays readable (a longer name would not fit its length byte).
#[tokio::test]
async fn a_queue_name_too_long_for_a_dlq_keeps_its_exhausted_messages() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let config = Config {
        max_attempts: Some(1),
        ..manual(&clock)
    };
    let name = "q".repeat(253);
    let qm = open(dir.path(), config.clone()).await;
    let q = qm.queue(&name);
    q.send(Message::new("keep")).await.unwrap();
    let mut c = q.consumer(ConsumerOptions {
        prefetch: 1,
        ..Default::default()
    });
    recv(&mut c).await.nack(None).await.unwrap();
    let d = recv(&mut c).await;
    assert_eq!(
        (body(&d), d.attempt()),
        ("keep".into(), 2),
        "retried, not dropped"
    );
    drop(d);
    drop(c);
    drop(q);
    qm.close().await.unwrap();
    drop(qm);
    let qm = open(dir.path(), config).await;
    let s = qm.stats(&name);
    assert_eq!((s.depth, s.dead_letters), (1, 0));
}

#[tokio::test]
async fn exhausted_messages_go_to_the_dead_letter_queue_and_redrive_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let config = Config {
        max_attempts: Some(3),
        ..manual(&clock)
    };
    let qm = open(dir.path(), config.clone()).await;
    let q = qm.queue("orders");
    q.send(Message::new("poison")).await.unwrap();
    q.send(Message::new("bad")).await.unwrap();
    let mut c = q.consumer(ConsumerOptions {
        prefetch: 1,
        ..Default::default()
    });
    // poison: nack, nack, time out -> dead after three attempts.
    recv(&mut c).await.nack(None).await.unwrap();
    recv(&mut c).await.nack(None).await.unwrap();
    let d = recv(&mut c).await;
    assert_eq!((body(&d), d.attempt()), ("poison".into(), 3));
    drop(d);
    clock.advance(VIS);
    // bad: rejected at once.
    let d = recv(&mut c).await;
    assert_eq!(body(&d), "bad");
    d.reject().await.unwrap();

    let s = qm.stats("orders");
    assert_eq!((s.depth, s.in_flight, s.dead_letters), (0, 0, 2));
    assert_eq!(qm.stats("orders.dlq").depth, 2);
    assert!(try_recv(&mut c).is_none());

    // Dead letters survive a restart.
    drop(c);
    drop(q);
    qm.close().await.unwrap();
    drop(qm);
    let qm = open(dir.path(), config).await;
    assert_eq!(qm.stats("orders").dead_letters, 2);
    let mut dlq = qm.queue("orders.dlq").consumer(ConsumerOptions {
        prefetch: 1,
        ..Default::default()
    });
    let d = recv(&mut dlq).await;
    assert_eq!(body(&d), "poison", "dead letters keep send order");
    d.nack(None).await.unwrap();
    for attempt in 2..=4 {
        // A dead-letter queue retries forever: it has no dead-letter queue itself.
        let d = recv(&mut dlq).await;
        assert_eq!((body(&d), d.attempt()), ("poison".into(), attempt));
        d.nack(None).await.unwrap();
    }
    assert_eq!(qm.stats("orders.dlq").depth, 2);
    drop(dlq);

    assert_eq!(qm.redrive("orders").await.unwrap(), 2);
    assert_eq!(qm.stats("orders").dead_letters, 0);
    let mut c = qm.queue("orders").consumer(ConsumerOptions::default());
    let d = recv(&mut c).await;
    assert_eq!(
        (body(&d), d.attempt()),
        ("poison".into(), 1),
        "attempts reset"
    );
    d.ack().await.unwrap();
    recv(&mut c).await.ack().await.unwrap();
    assert_eq!(qm.stats("orders").depth, 0);
}

#[tokio::test]
async fn without_dead_letter_queue_rejected_messages_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(
        dir.path(),
        Config {
            dead_letter_suffix: None,
            ..manual(&clock)
        },
    )
    .await;
    let q = qm.queue("q");
    q.send(Message::new("x")).await.unwrap();
    let mut c = q.consumer(ConsumerOptions::default());
    recv(&mut c).await.reject().await.unwrap();
    assert_eq!(qm.queues().len(), 1);
    assert_eq!(qm.stats("q").depth, 0);
}

#[tokio::test]
async fn expired_messages_are_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let config = manual(&clock);
    let qm = open(dir.path(), config.clone()).await;
    let q = qm.queue("q");
    q.send(Message::new("short").with_ttl(Duration::from_secs(5)))
        .await
        .unwrap();
    q.send(Message::new("long").with_ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    q.send(Message::new("forever")).await.unwrap();
    clock.advance(Duration::from_secs(6));
    let mut c = q.consumer(ConsumerOptions::default());
    let d = recv(&mut c).await;
    assert_eq!(body(&d), "long");
    d.nack(None).await.unwrap();
    clock.advance(Duration::from_secs(60));
    let d = recv(&mut c).await;
    assert_eq!(body(&d), "forever"); // was prefetched with "long"
    d.ack().await.unwrap();
    // "long" expired while waiting for redelivery: it is discarded when reached.
    q.send(Message::new("end")).await.unwrap();
    let d = recv(&mut c).await;
    assert_eq!(body(&d), "end");
    d.ack().await.unwrap();
    assert_eq!(qm.stats("q").depth + qm.stats("q").in_flight, 0);
    // Expiry is recorded: nothing comes back after a restart.
    drop(c);
    drop(q);
    qm.close().await.unwrap();
    drop(qm);
    let qm = open(dir.path(), config).await;
    assert_eq!(qm.recovery_report().live_messages, 0);
}

#[tokio::test]
async fn delayed_messages_wait_until_due() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let config = manual(&clock);
    let qm = open(dir.path(), config.clone()).await;
    let q = qm.queue("q");
    q.send(Message::new("later").with_delay(Duration::from_secs(30)))
        .await
        .unwrap();
    q.send(Message::new("now")).await.unwrap();
    let mut c = q.consumer(ConsumerOptions::default());
    let d = recv(&mut c).await;
    assert_eq!(body(&d), "now");
    d.nack(Some(Duration::from_secs(60))).await.unwrap(); // retry in a minute
    assert!(try_recv(&mut c).is_none());
    assert_eq!(qm.stats("q").delayed, 2);

    // Delays survive a restart.
    drop(c);
    drop(q);
    qm.close().await.unwrap();
    drop(qm);
    let qm = open(dir.path(), config).await;
    assert_eq!(qm.stats("q").delayed, 2);
    let mut c = qm.queue("q").consumer(ConsumerOptions::default());
    clock.advance(Duration::from_secs(29));
    assert!(try_recv(&mut c).is_none());
    clock.advance(Duration::from_secs(1));
    let d = recv(&mut c).await;
    assert_eq!(body(&d), "later");
    d.ack().await.unwrap();
    assert!(try_recv(&mut c).is_none());
    clock.advance(Duration::from_secs(30));
    let d = recv(&mut c).await;
    assert_eq!((body(&d), d.attempt()), ("now".into(), 2));
    d.ack().await.unwrap();
}

#[tokio::test]
async fn prefetch_limits_unsettled_deliveries_per_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let q = qm.queue("q");
    for i in 0..10 {
        q.send(Message::new(format!("m{i}"))).await.unwrap();
    }
    let mut c = q.consumer(ConsumerOptions {
        prefetch: 3,
        ..Default::default()
    });
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(recv(&mut c).await);
    }
    assert!(try_recv(&mut c).is_none(), "credit exhausted");
    assert_eq!(qm.stats("q").in_flight, 3);
    // A competing consumer gets the rest.
    let mut other = q.consumer(ConsumerOptions {
        prefetch: 100,
        ..Default::default()
    });
    let d = recv(&mut other).await;
    assert_eq!(body(&d), "m3");
    assert_eq!(qm.stats("q").in_flight, 10);
    drop(other); // returns m4..m9 (prefetched, not handed out)
    d.ack().await.unwrap();
    held.remove(0).ack().await.unwrap();
    let next = recv(&mut c).await;
    assert_eq!(body(&next), "m4");
    assert!(try_recv(&mut c).is_none());
    assert!(qm.stats("q").in_flight <= 3);
}

#[tokio::test]
async fn competing_consumers_share_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let q = qm.queue("q");
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let mut c = q.consumer(ConsumerOptions {
                prefetch: 4,
                ..Default::default()
            });
            tokio::spawn(async move {
                let mut got = Vec::new();
                while got.len() < 50 {
                    let d = c.next().await.unwrap().unwrap();
                    got.push(body(&d));
                    d.ack().await.unwrap();
                    if got.len() % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                got
            })
        })
        .collect();
    for i in 0..200 {
        q.send(Message::new(format!("{i:03}"))).await.unwrap();
    }
    let mut all = Vec::new();
    for c in consumers {
        // (No per-consumer order check: a consumer that stops returns its
        // prefetched messages, which another may get after newer ones.)
        let got = c.await.unwrap();
        all.extend(got);
    }
    all.sort();
    let expected: Vec<String> = (0..200).map(|i| format!("{i:03}")).collect();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn producer_ids_are_deduplicated_within_the_window_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let config = Config {
        dedup_window: Duration::from_secs(60),
        ..manual(&clock)
    };
    let qm = open(dir.path(), config.clone()).await;
    let q = qm.queue("q");
    let id = MessageId(0xfeed);
    assert_eq!(q.send(Message::new("a").with_id(id)).await.unwrap(), id);
    assert_eq!(q.send(Message::new("a").with_id(id)).await.unwrap(), id);
    // Concurrent retries of one id are stored once too.
    let (x, y) = tokio::join!(
        q.send(Message::new("b").with_id(7u128)),
        q.send(Message::new("b").with_id(7u128))
    );
    assert_eq!((x.unwrap(), y.unwrap()), (MessageId(7), MessageId(7)));
    assert_eq!(q.stats().depth, 2);
    // Consuming does not forget the id.
    let mut c = q.consumer(ConsumerOptions::default());
    let d = recv(&mut c).await;
    assert_eq!(d.id(), id);
    d.ack().await.unwrap();
    drop(c);
    drop(q);
    qm.close().await.unwrap();
    drop(qm);

    let qm = open(dir.path(), config.clone()).await;
    assert_eq!(qm.memory().dedup_entries, 2);
    let q = qm.queue("q");
    q.send(Message::new("a").with_id(id)).await.unwrap();
    assert_eq!(
        q.stats().depth,
        1,
        "a retry after restart is not stored again"
    );
    // The same id on another queue is another message, after a restart too.
    let other = qm.queue("other");
    other.send(Message::new("o").with_id(id)).await.unwrap();
    assert_eq!(other.stats().depth, 1, "ids are per queue");
    clock.advance(Duration::from_secs(61));
    q.send(Message::new("a").with_id(id)).await.unwrap();
    assert_eq!(q.stats().depth, 2, "outside the window it is a new message");
}

#[tokio::test]
async fn queue_length_limit_rejects_sends_with_queue_full() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(
        dir.path(),
        Config {
            max_queue_len: Some(3),
            ..manual(&clock)
        },
    )
    .await;
    let q = qm.queue("q");
    for i in 0..3 {
        q.send(Message::new(format!("{i}"))).await.unwrap();
    }
    let err = q.send(Message::new("one too many")).await.unwrap_err();
    assert!(
        matches!(&err, Error::QueueFull { queue, limit: 3 } if queue == "q"),
        "{err}"
    );
    assert_eq!(err.to_string(), "queue q is full (3 messages)");
    let mut c = q.consumer(ConsumerOptions::default());
    let d = recv(&mut c).await;
    assert!(
        q.send(Message::new("x")).await.is_err(),
        "in-flight messages count"
    );
    d.ack().await.unwrap();
    q.send(Message::new("fits again")).await.unwrap();
    // Other queues are unaffected.
    qm.queue("other").send(Message::new("x")).await.unwrap();
}

#[tokio::test]
async fn invalid_input_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(
        dir.path(),
        Config {
            max_message_size: 10,
            ..manual(&clock)
        },
    )
    .await;
    let err = qm
        .queue("q")
        .send(Message::new(vec![0u8; 11]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::MessageTooLarge {
            size: 11,
            limit: 10
        }
    ));
    let err = qm.queue("").send(Message::new("x")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidQueueName(_)));
    let mut c = qm
        .queue(&"n".repeat(256))
        .consumer(ConsumerOptions::default());
    assert!(matches!(c.recv().await, Err(Error::InvalidQueueName(_))));
}

#[tokio::test]
async fn close_ends_consumers_and_refuses_sends() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let q = qm.queue("q");
    let mut c = q.consumer(ConsumerOptions::default());
    let waiting = tokio::spawn(async move { c.next().await.is_none() });
    tokio::task::yield_now().await;
    qm.close().await.unwrap();
    assert!(waiting.await.unwrap(), "the stream ends on close");
    assert!(matches!(
        q.send(Message::new("x")).await,
        Err(Error::Closed)
    ));
}

/// Receiving from a queue nobody sent to does not create it. While a
/// consumer waits the name is listed (with its consumer); once the consumer leaves,
/// nothing of it remains. A queue that was sent to stays when its consumer leaves.
#[tokio::test]
async fn a_consumer_of_an_unknown_queue_leaves_no_queue_behind() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let mut c = qm.queue("typo").consumer(ConsumerOptions::default());
    assert!(try_recv(&mut c).is_none());
    assert_eq!(qm.stats("typo").consumers, 1);
    drop(c);
    assert!(qm.queues().is_empty(), "{:?}", qm.queues());

    let q = qm.queue("real");
    let mut c = q.consumer(ConsumerOptions::default());
    q.send(Message::new("x")).await.unwrap();
    recv(&mut c).await.ack().await.unwrap();
    drop(c);
    let names: Vec<String> = qm.queues().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["real"]);
}
