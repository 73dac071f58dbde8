//! The event bus over the network, through an in-process broker on 127.0.0.1:0: fan-out,
//! per-publisher order, publish reports, typed events, retained messages, slow-consumer
//! policies with bounded broker memory, clean-up on unsubscribe and disconnect, and bad
//! requests that fail only for the client that sent them.

mod pubsub_support;

use std::io::Write;

use mw::pubsub::remote::wire::{EventBatch, SubscribeItem};
use mw::pubsub::remote::PubSubClient;
use mw::pubsub::{
    PubSubError, RemoteBus, RemoteConfig, RemoteError, SlowConsumerPolicy, SubscribeOptions,
};
use pubsub_support::{start_broker, wait_for_stats, within};

fn seq(payload: &[u8]) -> u64 {
    u64::from_be_bytes(payload[..8].try_into().expect("8-byte sequence number"))
}

fn numbered(publisher: u8, i: u64) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.push(publisher);
    v
}

#[tokio::test]
async fn fan_out_keeps_each_publishers_order_for_every_subscriber() {
    let b = start_broker().await;
    const N: u64 = 2000;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let bus = b.bus().await;
        let opts = SubscribeOptions {
            buffer: 8192,
            policy: SlowConsumerPolicy::DropNewest,
        };
        subs.push((bus.subscribe("sensors.>", opts).await.unwrap(), bus));
    }
    let publishers: Vec<_> = futures::future::join_all((0..2).map(|_| b.bus())).await;
    let tasks: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(p, bus)| {
            tokio::spawn(async move {
                let topic = format!("sensors.p{p}.temp");
                for i in 0..N {
                    bus.publish(topic.as_str(), numbered(p as u8, i))
                        .await
                        .unwrap();
                }
                bus.flush().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for (sub, _bus) in &mut subs {
        let mut next = [0u64; 2];
        for _ in 0..2 * N {
            let e = within("fan-out event", sub.recv()).await.unwrap();
            let p = e.payload[8] as usize;
            assert_eq!(e.topic.as_str(), format!("sensors.p{p}.temp"));
            assert_eq!(seq(&e.payload), next[p], "publisher {p} out of order");
            assert_eq!(e.dropped_before, 0);
            next[p] += 1;
        }
        assert_eq!(sub.dropped(), 0);
    }
    drop(subs);
    b.stop().await;
}

#[tokio::test]
async fn publish_report_counts_subscribers_reached_and_typed_events_round_trip() {
    let b = start_broker().await;
    let bus = b.bus().await;
    assert_eq!(
        bus.publish_report("chat.lobby", "nobody")
            .await
            .unwrap()
            .matched,
        0
    );

    let mut raw = bus
        .subscribe("chat.*", SubscribeOptions::default())
        .await
        .unwrap();
    let mut typed = bus
        .subscribe_typed::<(String, u32)>("chat.lobby", SubscribeOptions::default())
        .await
        .unwrap();
    let report = bus
        .publish_report("chat.lobby", postcard_pair("ann", 3))
        .await
        .unwrap();
    assert_eq!((report.matched, report.reached()), (2, 2));
    bus.publish_typed("chat.lobby", &("bob".to_string(), 4u32))
        .await
        .unwrap();

    let t = within("typed event", typed.recv()).await.unwrap();
    assert_eq!(t.value, ("ann".to_string(), 3));
    assert_eq!(
        within("typed event", typed.recv()).await.unwrap().value.0,
        "bob"
    );
    assert_eq!(
        within("raw event", raw.recv())
            .await
            .unwrap()
            .topic
            .as_str(),
        "chat.lobby"
    );
    drop((raw, typed));
    b.stop().await;
}

fn postcard_pair(name: &str, n: u32) -> Vec<u8> {
    // The typed layer is postcard; build the same bytes by hand-free encoding through it.
    let bus = mw::pubsub::Bus::default();
    let mut sub = bus.subscribe("x", SubscribeOptions::default()).unwrap();
    bus.publish_typed("x", &(name.to_string(), n)).unwrap();
    sub.try_recv().unwrap().unwrap().payload.to_vec()
}

#[tokio::test]
async fn late_subscriber_gets_the_retained_message_first() {
    let b = start_broker().await;
    let bus = b.bus().await;
    bus.publish_retained("sensors.kitchen.temp", "21.5")
        .await
        .unwrap();
    bus.publish_retained("sensors.kitchen.temp", "22.0")
        .await
        .unwrap();
    bus.publish_retained("sensors.hall.temp", "19.0")
        .await
        .unwrap();
    bus.publish("sensors.kitchen.temp", "not retained")
        .await
        .unwrap();
    bus.flush().await.unwrap();

    let late = b.bus().await;
    let mut sub = late
        .subscribe("sensors.*.temp", SubscribeOptions::default())
        .await
        .unwrap();
    bus.publish("sensors.kitchen.temp", "live").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = within("retained + live", sub.recv()).await.unwrap();
        got.push(format!(
            "{} {}",
            e.topic,
            String::from_utf8_lossy(&e.payload)
        ));
    }
    assert_eq!(
        got,
        [
            "sensors.hall.temp 19.0",
            "sensors.kitchen.temp 22.0",
            "sensors.kitchen.temp live"
        ]
    );
    assert!(late.clear_retained("sensors.hall.temp").await.unwrap());
    assert_eq!(late.stats().await.unwrap().retained_topics, 1);
    drop(sub);
    b.stop().await;
}

/// A subscriber that never reads: window of one batch, tiny broker-side buffer.
async fn stalled_subscriber(
    addr: &str,
    policy: SlowConsumerPolicy,
) -> (mw::pubsub::RemoteSubscription, RemoteBus) {
    let mut config = RemoteConfig::default();
    config.client.stream_window = 1;
    let bus = RemoteBus::connect_with(addr, config).await.unwrap();
    let sub = bus
        .subscribe("load.>", SubscribeOptions { buffer: 8, policy })
        .await
        .unwrap();
    (sub, bus)
}

#[tokio::test]
async fn slow_subscriber_is_bounded_by_its_buffer_counts_what_it_missed_and_does_not_slow_others() {
    let b = start_broker().await;
    let publisher = b.bus().await;
    const N: u64 = 3000;
    for policy in [
        SlowConsumerPolicy::DropNewest,
        SlowConsumerPolicy::DropOldest,
    ] {
        let (mut slow, _slow_bus) = stalled_subscriber(&b.addr, policy).await;
        let fast_bus = b.bus().await;
        let opts = SubscribeOptions {
            buffer: 65_536,
            policy: SlowConsumerPolicy::DropNewest,
        };
        let mut fast = fast_bus.subscribe("load.>", opts).await.unwrap();

        for i in 0..N {
            publisher.publish("load.x", numbered(0, i)).await.unwrap();
        }
        publisher.flush().await.unwrap();

        // Broker side: the stalled subscriber never holds more than its 8 events, and every
        // event is accounted for as forwarded, buffered or dropped.
        let stats = wait_for_stats(&publisher, "slow subscriber settled", |s| {
            s.remote.iter().any(|r| {
                assert!(
                    r.buffered <= r.capacity,
                    "buffer over its declared size: {r:?}"
                );
                r.capacity == 8 && r.forwarded + r.buffered + r.dropped == N
            })
        })
        .await;
        let slow_stats = stats
            .remote
            .iter()
            .find(|r| r.capacity == 8)
            .unwrap()
            .clone();
        assert!(slow_stats.dropped > 0, "{slow_stats:?}");

        // The fast subscriber got everything, in order, unaffected.
        for i in 0..N {
            let e = within("fast subscriber", fast.recv()).await.unwrap();
            assert_eq!((seq(&e.payload), e.dropped_before), (i, 0));
        }

        // The slow one reads now; a marker closes the books: received + missed = published.
        let mut received = Vec::new();
        let mut marker_seen = false;
        let mut marker_sent = false;
        for _ in 0..N + 1 {
            if !marker_sent {
                // Sent once the subscriber drained what the broker had forwarded and buffered.
                if received.len() as u64 >= slow_stats.forwarded + slow_stats.buffered {
                    publisher.publish("load.x", numbered(0, N)).await.unwrap();
                    marker_sent = true;
                }
            }
            let e = within("slow subscriber", slow.recv()).await.unwrap();
            let s = seq(&e.payload);
            received.push((s, e.dropped_before));
            if s == N {
                marker_seen = true;
                break;
            }
        }
        assert!(marker_seen);
        let missed: u64 = received.iter().map(|(_, d)| d).sum();
        assert_eq!(received.len() as u64 + missed, N + 1, "{policy:?}");
        assert_eq!(missed, slow_stats.dropped);
        assert_eq!(slow.dropped(), slow_stats.dropped);
        assert!(received.windows(2).all(|w| w[0].0 < w[1].0), "order kept");
        if policy == SlowConsumerPolicy::DropOldest {
            // It kept the newest events: the last 8 before the marker are the last 8 published.
            let tail: Vec<u64> = received
                .iter()
                .rev()
                .skip(1)
                .take(8)
                .map(|(s, _)| *s)
                .collect();
            assert_eq!(tail, (N - 8..N).rev().collect::<Vec<_>>());
        }
        drop((slow, fast));
        wait_for_stats(&publisher, "subscriptions gone", |s| s.subscriptions == 0).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn disconnect_policy_ends_the_subscription_after_its_buffered_events() {
    let b = start_broker().await;
    let publisher = b.bus().await;
    let (mut slow, _bus) = stalled_subscriber(&b.addr, SlowConsumerPolicy::Disconnect).await;
    for i in 0..100 {
        publisher.publish("load.x", numbered(0, i)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    let mut n = 0;
    let err = loop {
        match within("slow consumer", slow.recv()).await {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(n <= 100);
    };
    assert!(
        matches!(err, RemoteError::Refused(PubSubError::SlowConsumer(8))),
        "{err:?}"
    );
    assert!(n < 100);
    wait_for_stats(&publisher, "disconnected subscription removed", |s| {
        s.subscriptions == 0
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn unsubscribe_and_disconnect_remove_the_broker_side_subscription() {
    let b = start_broker().await;
    let observer = b.bus().await;
    let a = b.bus().await;
    let sub1 = a
        .subscribe("a.>", SubscribeOptions::default())
        .await
        .unwrap();
    let sub2 = a
        .subscribe("b.*", SubscribeOptions::default())
        .await
        .unwrap();
    let other = b.bus().await;
    let sub3 = other
        .subscribe("c", SubscribeOptions::default())
        .await
        .unwrap();
    assert_eq!(observer.stats().await.unwrap().subscriptions, 3);

    sub1.unsubscribe();
    wait_for_stats(&observer, "unsubscribed", |s| s.subscriptions == 2).await;
    assert_eq!(observer.publish_report("a.x", "").await.unwrap().matched, 0);

    // Dropping the whole client closes its connection: the broker forgets its subscriptions.
    drop(sub2);
    drop(a);
    drop(sub3);
    drop(other);
    let stats = wait_for_stats(&observer, "every subscription gone", |s| {
        s.subscriptions == 0
    })
    .await;
    assert!(stats.remote.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn bad_requests_get_typed_errors_and_do_not_disturb_other_clients() {
    let b = start_broker().await;
    let good = b.bus().await;
    let mut watching = good
        .subscribe("ok.>", SubscribeOptions::default())
        .await
        .unwrap();

    // Invalid names sent past the client-side checks, with the raw generated client.
    let raw = PubSubClient::connect(&b.addr).await.unwrap();
    let err = raw
        .publish_report("bad..topic".into(), bytes::Bytes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            mw::rpc::RpcError::Application(PubSubError::InvalidName(_))
        ),
        "{err:?}"
    );
    let err = raw
        .publish_retained("wild.*".into(), bytes::Bytes::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            mw::rpc::RpcError::Application(PubSubError::InvalidName(_))
        ),
        "{err:?}"
    );
    let mut s = raw
        .subscribe("a.>.b".into(), 8, SlowConsumerPolicy::DropOldest)
        .await
        .unwrap();
    use futures::StreamExt;
    assert!(matches!(
        s.next().await,
        Some(Ok(Err(PubSubError::InvalidName(_))))
    ));
    let mut s = raw
        .subscribe("a".into(), 0, SlowConsumerPolicy::DropOldest)
        .await
        .unwrap();
    assert!(matches!(
        s.next().await,
        Some(Ok(Err(PubSubError::InvalidBuffer(_))))
    ));
    let mut s = raw
        .subscribe("a".into(), u32::MAX, SlowConsumerPolicy::DropOldest)
        .await
        .unwrap();
    assert!(matches!(
        s.next().await,
        Some(Ok(Err(PubSubError::InvalidBuffer(_))))
    ));
    let mut s = raw
        .subscribe_durable("no spaces".into(), "a".into(), 1)
        .await
        .unwrap();
    assert!(matches!(
        s.next().await,
        Some(Ok(Err(PubSubError::InvalidName(_))))
    ));
    // A malformed batch publishes the events before the bad one and nothing after.
    raw.publish_batch(EventBatch(bytes::Bytes::from_static(&[
        4, b'o', b'k', b'.', b'1', 0, 1, b'x', 9, 0,
    ])))
    .await
    .unwrap();
    raw.flush().await.unwrap();
    // The same client still works.
    assert!(matches!(s.next().await, None | Some(Ok(Err(_)))));
    let mut s = raw
        .subscribe("ok.raw".into(), 8, SlowConsumerPolicy::DropOldest)
        .await
        .unwrap();
    assert!(matches!(s.next().await, Some(Ok(Ok(SubscribeItem::Ready)))));

    // Client-side checks give the embedded bus's errors without a round trip.
    assert!(matches!(
        good.publish("a.*", "x").await,
        Err(RemoteError::Local(
            mw::pubsub::Error::WildcardInTopic { .. }
        ))
    ));

    // Garbage on a raw TCP connection ends that connection only.
    let mut junk = std::net::TcpStream::connect(&b.addr).unwrap();
    junk.write_all(&[0xff; 64]).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    drop(junk);

    good.publish("ok.after", "still here").await.unwrap();
    let first = within("event from the batch", watching.recv())
        .await
        .unwrap();
    assert_eq!(
        (first.topic.as_str(), &first.payload[..]),
        ("ok.1", &b"x"[..])
    );
    let e = within("event after the junk", watching.recv())
        .await
        .unwrap();
    assert_eq!(
        (e.topic.as_str(), &e.payload[..]),
        ("ok.after", &b"still here"[..])
    );
    drop((watching, s));
    b.stop().await;
}

/// A fire-and-forget publish too large for a frame is refused at once,
/// typed and naming the limit, and the connection keeps working (before, it ended the
/// publishing task and every later call failed with `disconnected from server`).
#[tokio::test]
async fn an_event_too_large_for_a_frame_is_refused_and_the_bus_keeps_working() {
    let b = start_broker().await;
    let bus = b.bus().await;
    let mut sub = bus
        .subscribe("big.>", SubscribeOptions::default())
        .await
        .unwrap();
    let e = bus
        .publish("big.one", vec![0u8; 17 << 20])
        .await
        .unwrap_err();
    assert!(
        matches!(e, RemoteError::Local(mw::pubsub::Error::EventTooLarge { size, .. }) if size == 17 << 20),
        "{e:?}"
    );
    // Over the broker's max event size (1 MiB) but within a frame: the report says why.
    let e = bus
        .publish_report("big.two", vec![0u8; 2 << 20])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RemoteError::Refused(PubSubError::EventTooLarge { limit, .. }) if limit == 1 << 20
        ),
        "{e:?}"
    );
    bus.publish("big.three", "fits").await.unwrap();
    bus.flush().await.unwrap();
    let got = within("the event that fits", sub.recv()).await.unwrap();
    assert_eq!(&got.payload[..], b"fits");
}
