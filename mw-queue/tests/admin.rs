//! Administration of queues: purge, delete and peek, durable
//! across a reopen, refusing unknown queues instead of creating them.

mod common;

use std::time::Duration;

use common::*;
use mw_queue::{Clock, Config, ConsumerOptions, Error, Message, Waiting};

#[tokio::test]
async fn purge_drops_waiting_messages_durably_and_keeps_those_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    // A small head: most of the backlog is spilled to the segments and read back.
    let config = Config {
        ready_head: 2,
        ..manual(&clock)
    };
    let qm = open(dir.path(), config.clone()).await;
    let q = qm.queue("q");
    for i in 0..10 {
        q.send(Message::new(format!("m{i}"))).await.unwrap();
    }
    q.send(Message::new("later").with_delay(Duration::from_secs(60)))
        .await
        .unwrap();
    let mut c = q.consumer(ConsumerOptions {
        prefetch: 1,
        ..Default::default()
    });
    let held = recv(&mut c).await;
    assert_eq!(qm.purge("q").await.unwrap(), 10, "9 ready + 1 delayed");
    let s = qm.stats("q");
    assert_eq!((s.depth, s.in_flight), (0, 1));
    held.ack().await.unwrap();
    drop(c);
    qm.close().await.unwrap();

    let qm = open(dir.path(), config).await;
    assert_eq!(qm.stats("q").depth, 0, "the purge survived the reopen");
    assert!(matches!(
        qm.purge("nosuch").await,
        Err(Error::UnknownQueue(n)) if n == "nosuch"
    ));
    assert!(!qm.exists("nosuch"), "refusing created nothing");
    assert!(qm.queues().iter().all(|(n, _)| n != "nosuch"));
}

#[tokio::test]
async fn delete_is_refused_while_consumed_then_forgets_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let q = qm.queue("jobs");
    for i in 0..3 {
        q.send(Message::new(format!("j{i}"))).await.unwrap();
    }
    let mut c = q.consumer(ConsumerOptions::default());
    let _unacked = recv(&mut c).await;
    assert!(matches!(
        qm.delete("jobs").await,
        Err(Error::QueueInUse { consumers: 1, .. })
    ));
    drop(c);
    assert_eq!(qm.delete("jobs").await.unwrap(), 3, "in flight too");
    assert!(!qm.exists("jobs"));
    assert!(qm.queues().is_empty());
    assert!(matches!(
        qm.delete("jobs").await,
        Err(Error::UnknownQueue(_))
    ));
    // Sending creates it again, empty but for the new message.
    q.send(Message::new("new")).await.unwrap();
    assert_eq!(qm.stats("jobs").depth, 1);
}

#[tokio::test]
async fn peek_shows_waiting_messages_in_delivery_order_without_delivering() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let config = Config {
        body_cache_bytes: 0, // bodies come back from the segments
        ..manual(&clock)
    };
    let qm = open(dir.path(), config).await;
    let q = qm.queue("p");
    q.send(Message::new("first")).await.unwrap();
    q.send(Message::new("second")).await.unwrap();
    q.send(Message::new("soon").with_delay(Duration::from_secs(5)))
        .await
        .unwrap();
    let mut c = q.consumer(ConsumerOptions {
        prefetch: 1,
        ..Default::default()
    });
    recv(&mut c).await.nack(None).await.unwrap();
    drop(c);
    let seen = qm.peek("p", 10).await.unwrap();
    let summary: Vec<(String, u32, Waiting)> = seen
        .iter()
        .map(|p| {
            (
                String::from_utf8(p.body.to_vec()).unwrap(),
                p.deliveries,
                p.waiting,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("first".to_string(), 1, Waiting::Returned),
            ("second".to_string(), 0, Waiting::Ready),
            (
                "soon".to_string(),
                0,
                Waiting::Delayed { due_ms: T0 + 5_000 }
            ),
        ]
    );
    assert_eq!(qm.peek("p", 1).await.unwrap().len(), 1);
    let s = qm.stats("p");
    assert_eq!((s.depth, s.in_flight), (3, 0), "nothing was delivered");
    assert!(matches!(
        qm.peek("typo", 1).await,
        Err(Error::UnknownQueue(_))
    ));
    // The dead-letter queue of a known queue exists, empty.
    assert!(qm.peek("p.dlq", 1).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_closed_consumer_fails_its_next_recv_and_its_delivery_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let q = qm.queue("w");
    q.send(Message::new("one")).await.unwrap();
    let mut c = q.consumer(ConsumerOptions::default());
    let held = recv(&mut c).await;
    let listed = qm.consumers();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].queue.as_str(), listed[0].unacked), ("w", 1));
    assert!(qm.close_consumer(listed[0].id));
    assert!(!qm.close_consumer(listed[0].id + 1000));
    let e = c.recv().await.unwrap_err();
    assert!(
        matches!(e, Error::ConsumerClosed { consumer } if consumer == listed[0].id),
        "{e:?}"
    );
    drop(held); // never acked
    drop(c);
    assert!(qm.consumers().is_empty());
    clock.advance(Duration::from_secs(10));
    let mut again = q.consumer(ConsumerOptions::default());
    let d = recv(&mut again).await;
    assert_eq!((body(&d), d.attempt()), ("one".to_string(), 2));
}

#[tokio::test]
async fn the_oldest_waiting_message_is_found_cached_or_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    for cache in [0, 1 << 20] {
        let config = Config {
            body_cache_bytes: cache,
            ..manual(&clock)
        };
        let qm = open(dir.path(), config).await;
        let name = format!("age{cache}");
        assert_eq!(qm.oldest_sent_ms_blocking(&name).unwrap(), None);
        let q = qm.queue(&name);
        let sent_at = clock.now_ms();
        q.send(Message::new("old")).await.unwrap();
        clock.advance(Duration::from_secs(5));
        q.send(Message::new("new")).await.unwrap();
        assert_eq!(qm.oldest_sent_ms_blocking(&name).unwrap(), Some(sent_at));
        qm.close().await.unwrap();
    }
}
