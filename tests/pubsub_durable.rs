//! Durable subscriptions over the network: events published while the subscriber is offline
//! are delivered when it returns, with acknowledgements; unacknowledged ones come back.

mod pubsub_support;

use pubsub_support::{start_broker, start_broker_in, wait_for_stats, within};

#[tokio::test]
async fn durable_subscription_receives_what_was_published_while_offline() {
    let b = start_broker().await;
    let publisher = b.bus().await;

    // First session creates the durable subscription, then the subscriber goes away.
    let subscriber = b.bus().await;
    let sub = subscriber
        .subscribe_durable("billing", "orders.>")
        .await
        .unwrap();
    assert!(sub.created());
    drop(sub);
    drop(subscriber);

    for i in 0..5 {
        publisher
            .publish(format!("orders.eu.{i}").as_str(), format!("order {i}"))
            .await
            .unwrap();
    }
    publisher
        .publish("other.topic", "not for billing")
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    wait_for_stats(&publisher, "5 events stored for billing", |s| {
        s.durable
            .iter()
            .any(|d| d.name == "billing" && d.depth == 5)
    })
    .await;

    // The subscriber returns under the same name and gets them in order.
    let subscriber = b.bus().await;
    let mut sub = subscriber
        .subscribe_durable("billing", "orders.>")
        .await
        .unwrap();
    assert!(!sub.created());
    for i in 0..5 {
        let d = within("stored event", sub.recv()).await.unwrap();
        assert_eq!(d.event.topic.as_str(), format!("orders.eu.{i}"));
        assert_eq!(&d.event.payload[..], format!("order {i}").as_bytes());
        assert_eq!(d.attempt, 1);
        assert!(d.ack().await.unwrap());
    }
    wait_for_stats(&publisher, "billing drained", |s| {
        s.durable
            .iter()
            .any(|d| d.name == "billing" && d.depth == 0)
    })
    .await;
    drop(sub);
    b.stop().await;
}

#[tokio::test]
async fn unacknowledged_events_are_redelivered_to_the_next_session() {
    let b = start_broker().await;
    let publisher = b.bus().await;
    let subscriber = b.bus().await;
    let mut sub = subscriber
        .subscribe_durable("audit", "log.*")
        .await
        .unwrap();
    for i in 0..3 {
        publisher
            .publish("log.app", format!("line {i}"))
            .await
            .unwrap();
    }
    // Ack the first, leave the other two unacknowledged, disconnect.
    let first = within("first", sub.recv()).await.unwrap();
    assert_eq!(&first.event.payload[..], b"line 0");
    assert!(first.ack().await.unwrap());
    for expected in [&b"line 1"[..], b"line 2"] {
        let held = within("held", sub.recv()).await.unwrap();
        assert_eq!(&held.event.payload[..], expected);
        drop(held);
    }
    drop(sub);
    drop(subscriber);

    // The next session gets exactly the two unacknowledged ones again.
    let subscriber = b.bus().await;
    let mut sub = subscriber
        .subscribe_durable("audit", "log.*")
        .await
        .unwrap();
    let mut again = Vec::new();
    for _ in 0..2 {
        let d = within("redelivery", sub.recv()).await.unwrap();
        assert_eq!(d.attempt, 2);
        again.push(String::from_utf8_lossy(&d.event.payload).into_owned());
        assert!(d.ack().await.unwrap());
    }
    again.sort();
    assert_eq!(again, ["line 1", "line 2"]);
    wait_for_stats(&publisher, "audit drained", |s| {
        s.durable.iter().any(|d| d.name == "audit" && d.depth == 0)
    })
    .await;

    // A durable name is bound to its pattern.
    let err = subscriber
        .subscribe_durable("audit", "other.>")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            mw::pubsub::RemoteError::Refused(mw::pubsub::PubSubError::DurableConflict { .. })
        ),
        "{err:?}"
    );
    drop(sub);
    b.stop().await;
}

#[tokio::test]
async fn durable_subscription_keeps_collecting_across_a_broker_restart() {
    let b = start_broker().await;
    let subscriber = b.bus().await;
    drop(
        subscriber
            .subscribe_durable("night", "jobs.>")
            .await
            .unwrap(),
    );
    drop(subscriber);
    let dir = b.stop().await;

    // Restarted on the same data: the definition is reloaded and collects again.
    let b = start_broker_in(dir).await;
    let publisher = b.bus().await;
    publisher
        .publish("jobs.build", "after restart")
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    wait_for_stats(&publisher, "stored after restart", |s| {
        s.durable.iter().any(|d| d.name == "night" && d.depth == 1)
    })
    .await;
    drop(publisher);
    let dir = b.stop().await;

    // And what it stored survives another restart.
    let b = start_broker_in(dir).await;
    let subscriber = b.bus().await;
    let mut sub = subscriber
        .subscribe_durable("night", "jobs.>")
        .await
        .unwrap();
    let d = within("stored event", sub.recv()).await.unwrap();
    assert_eq!(&d.event.payload[..], b"after restart");
    assert!(d.ack().await.unwrap());
    drop(sub);
    assert!(subscriber.unsubscribe_durable("night").await.unwrap());
    assert!(!subscriber.unsubscribe_durable("night").await.unwrap());
    assert!(subscriber.stats().await.unwrap().durable.is_empty());
    drop(subscriber);
    b.stop().await;
}
