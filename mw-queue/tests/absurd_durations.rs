//! Durations from outside (TTL, delay, nack delay, visibility extension) saturate at
//! "never": `Duration::MAX` and `u64::MAX` milliseconds neither panic, nor poison the
//! queue manager, nor wrap around to "at once". Regression tests for the fuzzing
//! campaign's first finding.

mod common;

use std::time::Duration;

use common::*;
use mw_queue::{Clock, ConsumerOptions, Message};

/// Far more than any test advances the clock, far less than the saturated "never".
const A_CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

const ABSURD: [Duration; 2] = [Duration::MAX, Duration::from_millis(u64::MAX)];

#[tokio::test]
async fn absurd_ttl_means_the_message_never_expires() {
    for ttl in ABSURD {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let qm = open(dir.path(), manual(&clock)).await;
        let q = qm.queue("q");
        q.send(Message::new("forever").with_ttl(ttl)).await.unwrap();
        clock.advance(A_CENTURY);
        let mut c = q.consumer(ConsumerOptions::default());
        let d = try_recv(&mut c).expect("not expired after a century");
        assert_eq!(body(&d), "forever");
        d.ack().await.unwrap();
    }
}

#[tokio::test]
async fn absurd_send_delay_means_the_message_waits_and_others_flow() {
    for delay in ABSURD {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let qm = open(dir.path(), manual(&clock)).await;
        let q = qm.queue("q");
        q.send(Message::new("never").with_delay(delay))
            .await
            .unwrap();
        q.send(Message::new("now")).await.unwrap();
        clock.advance(A_CENTURY);
        let mut c = q.consumer(ConsumerOptions::default());
        let d = recv(&mut c).await;
        assert_eq!(body(&d), "now");
        d.ack().await.unwrap();
        assert!(try_recv(&mut c).is_none(), "the delayed one is not due");
        assert_eq!(qm.stats("q").delayed, 1);
    }
}

#[tokio::test]
async fn absurd_nack_delay_neither_panics_nor_redelivers_at_once() {
    for delay in ABSURD {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let qm = open(dir.path(), manual(&clock)).await;
        let q = qm.queue("q");
        q.send(Message::new("job")).await.unwrap();
        let mut c = q.consumer(ConsumerOptions::default());
        recv(&mut c).await.nack(Some(delay)).await.unwrap();
        clock.advance(A_CENTURY);
        assert!(try_recv(&mut c).is_none(), "not redelivered");
        // The manager still works (no lock poisoned by a panic).
        q.send(Message::new("next")).await.unwrap();
        let d = recv(&mut c).await;
        assert_eq!(body(&d), "next");
        d.ack().await.unwrap();
        assert_eq!(qm.stats("q").delayed, 1);
    }
}

#[tokio::test]
async fn absurd_visibility_extension_keeps_the_delivery_invisible() {
    for by in ABSURD {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(T0);
        let qm = open(dir.path(), manual(&clock)).await;
        let q = qm.queue("q");
        q.send(Message::new("slow job")).await.unwrap();
        let mut a = q.consumer(ConsumerOptions::default());
        let mut b = q.consumer(ConsumerOptions::default());
        let d = recv(&mut a).await;
        d.extend_visibility(by).unwrap();
        clock.advance(A_CENTURY);
        assert!(try_recv(&mut b).is_none(), "still invisible");
        assert_eq!(qm.stats("q").in_flight, 1);
        d.ack().await.unwrap();
        q.send(Message::new("next")).await.unwrap();
        assert_eq!(body(&recv(&mut b).await), "next");
    }
}

#[tokio::test]
async fn absurd_consumer_visibility_timeout_is_saturated() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let qm = open(dir.path(), manual(&clock)).await;
    let q = qm.queue("q");
    q.send(Message::new("job")).await.unwrap();
    let mut a = q.consumer(ConsumerOptions {
        visibility_timeout: Some(Duration::MAX),
        ..Default::default()
    });
    let mut b = q.consumer(ConsumerOptions::default());
    let d = recv(&mut a).await;
    clock.advance(A_CENTURY);
    assert!(try_recv(&mut b).is_none(), "not redelivered");
    d.ack().await.unwrap();
}

#[tokio::test]
async fn absurd_durations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    {
        let qm = open(dir.path(), manual(&clock)).await;
        let q = qm.queue("q");
        q.send(Message::new("ttl").with_ttl(Duration::MAX))
            .await
            .unwrap();
        q.send(Message::new("delay").with_delay(Duration::MAX))
            .await
            .unwrap();
        qm.close().await.unwrap();
    }
    let qm = open(dir.path(), manual(&clock)).await;
    clock.advance(A_CENTURY);
    let q = qm.queue("q");
    let mut c = q.consumer(ConsumerOptions::default());
    assert_eq!(body(&recv(&mut c).await), "ttl");
    assert_eq!(qm.stats("q").delayed, 1);
}
