//! Behaviour of the embedded bus: fan-out, ordering, slow-consumer policies, retained messages,
//! unsubscribe, sinks, typed layer, close.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mw_pubsub::{
    Bus, CloseReason, Config, DeliverySink, Error, Event, SinkDelivery, SlowConsumerPolicy,
    SubscribeOptions, Topic,
};

fn opts(buffer: usize, policy: SlowConsumerPolicy) -> SubscribeOptions {
    SubscribeOptions { buffer, policy }
}

fn n(i: u32) -> Bytes {
    Bytes::copy_from_slice(&i.to_be_bytes())
}

fn num(e: &Event) -> u32 {
    u32::from_be_bytes(e.payload[..4].try_into().unwrap())
}

fn drain(sub: &mut mw_pubsub::Subscription) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(Some(e)) = sub.try_recv() {
        out.push(e);
    }
    out
}

/// Safety net so a bug shows up as a failure, not a hung test; never used to synchronise.
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test timed out")
}

#[tokio::test]
async fn fan_out_reaches_every_matching_subscriber_with_one_shared_payload() {
    let bus = Bus::default();
    let patterns = [
        "sensors.kitchen.temp",
        "sensors.*.temp",
        "sensors.>",
        ">",
        "*.kitchen.*",
    ];
    let mut subs: Vec<_> = (0..100)
        .map(|i| {
            bus.subscribe(patterns[i % patterns.len()], SubscribeOptions::default())
                .unwrap()
        })
        .collect();
    let mut others = [
        bus.subscribe("sensors.*.humidity", SubscribeOptions::default())
            .unwrap(),
        bus.subscribe("sensors.kitchen", SubscribeOptions::default())
            .unwrap(),
    ];

    let payload = Bytes::from(vec![7u8; 16]);
    let report = bus
        .publish("sensors.kitchen.temp", payload.clone())
        .unwrap();
    assert_eq!(
        (report.matched, report.delivered, report.rejected),
        (100, 100, 0)
    );
    assert_eq!(report.reached(), 100);

    for sub in &mut subs {
        let event = sub.recv().await.unwrap();
        assert_eq!(event.topic.as_str(), "sensors.kitchen.temp");
        // Same allocation: fan-out did not copy the payload.
        assert_eq!(event.payload.as_ptr(), payload.as_ptr());
        assert_eq!(event.dropped_before, 0);
    }
    for sub in &mut others {
        assert!(sub.try_recv().unwrap().is_none());
    }
}

#[test]
fn per_publisher_order_is_kept_under_concurrent_publishers_and_losses_are_exact() {
    const PUBLISHERS: u32 = 2;
    const EACH: u32 = 20_000;
    let bus = Bus::default();
    // Small buffer so both ordering and loss accounting are exercised.
    let mut sub = bus
        .subscribe("load.>", opts(256, SlowConsumerPolicy::DropNewest))
        .unwrap();
    let mut oldest = bus
        .subscribe("load.*", opts(256, SlowConsumerPolicy::DropOldest))
        .unwrap();

    let threads: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                let topic = Topic::new(format!("load.p{p}")).unwrap();
                for i in 0..EACH {
                    bus.publish(&topic, n(p << 24 | i)).unwrap();
                }
            })
        })
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let total = u64::from(PUBLISHERS * EACH);
    let check = |sub: &mut mw_pubsub::Subscription,
                 received: &mut Vec<u32>,
                 gaps: &mut u64,
                 last: &mut [Option<u32>]| {
        let e = rt.block_on(bounded(sub.recv())).unwrap();
        let (p, i) = ((num(&e) >> 24) as usize, num(&e) & 0xff_ffff);
        assert!(
            last[p].is_none_or(|prev| prev < i),
            "publisher {p}: {i} after {:?}",
            last[p]
        );
        last[p] = Some(i);
        *gaps += e.dropped_before;
        received.push(num(&e));
    };

    // Consume concurrently with the publishers; waiting in recv means the buffer is empty, so the
    // next event is delivered rather than dropped and the loop cannot hang.
    let (mut got, mut gaps, mut last) = (Vec::new(), 0u64, vec![None; PUBLISHERS as usize]);
    while got.len() as u64 + sub.dropped() < total {
        check(&mut sub, &mut got, &mut gaps, &mut last);
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(sub.try_recv().unwrap().is_none());
    assert_eq!(got.len() as u64 + sub.dropped(), total);
    // Every loss is attributed to some later event, except those after the last one received.
    assert!(gaps <= sub.dropped());

    let (mut got2, mut gaps2, mut last2) = (Vec::new(), 0u64, vec![None; PUBLISHERS as usize]);
    while !oldest.is_empty() {
        check(&mut oldest, &mut got2, &mut gaps2, &mut last2);
    }
    assert_eq!(got2.len() as u64 + oldest.dropped(), total);
    assert_eq!(gaps2, oldest.dropped());
    // DropOldest keeps the newest `buffer` events: for each publisher present, a contiguous run
    // ending with its very last event.
    assert_eq!(got2.len(), 256);
    for (p, last) in last2.iter().enumerate() {
        let mine: Vec<u32> = got2
            .iter()
            .filter(|v| (*v >> 24) as usize == p)
            .map(|v| v & 0xff_ffff)
            .collect();
        if let Some(&first) = mine.first() {
            assert_eq!(*last, Some(EACH - 1));
            assert_eq!(mine, (first..EACH).collect::<Vec<_>>());
        }
    }
}

#[tokio::test]
async fn slow_subscriber_never_slows_publisher_or_others() {
    for policy in [
        SlowConsumerPolicy::DropOldest,
        SlowConsumerPolicy::DropNewest,
        SlowConsumerPolicy::Disconnect,
    ] {
        let bus = Bus::default();
        let slow = bus.subscribe("t", opts(8, policy)).unwrap();
        let mut fast = bus
            .subscribe("t", opts(1, SlowConsumerPolicy::Disconnect))
            .unwrap();
        for i in 0..1000 {
            // Publish is synchronous and never waits; `fast` keeps up by reading each event.
            bus.publish("t", n(i)).unwrap();
            assert!(slow.len() <= 8);
            assert_eq!(num(&fast.recv().await.unwrap()), i);
        }
        assert_eq!(fast.dropped(), 0);
        assert!(slow.len() <= slow.capacity());
    }
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest_and_counts_exactly() {
    let bus = Bus::default();
    let mut sub = bus
        .subscribe("t", opts(4, SlowConsumerPolicy::DropOldest))
        .unwrap();
    for i in 0..100 {
        let report = bus.publish("t", n(i)).unwrap();
        assert_eq!(report.delivered, 1);
        assert_eq!(report.displaced, usize::from(i >= 4));
        assert!(sub.len() <= 4);
    }
    assert_eq!(sub.dropped(), 96);
    let events = drain(&mut sub);
    let got: Vec<_> = events.iter().map(|e| (num(e), e.dropped_before)).collect();
    assert_eq!(got, [(96, 96), (97, 0), (98, 0), (99, 0)]);
}

#[tokio::test]
async fn drop_newest_keeps_the_oldest_and_shows_the_gap_on_the_next_event() {
    let bus = Bus::default();
    let mut sub = bus
        .subscribe("t", opts(4, SlowConsumerPolicy::DropNewest))
        .unwrap();
    for i in 0..100 {
        let report = bus.publish("t", n(i)).unwrap();
        assert_eq!(
            (report.delivered, report.rejected),
            if i < 4 { (1, 0) } else { (0, 1) }
        );
        assert!(sub.len() <= 4);
    }
    assert_eq!(sub.dropped(), 96);
    let got: Vec<_> = drain(&mut sub)
        .iter()
        .map(|e| (num(e), e.dropped_before))
        .collect();
    assert_eq!(got, [(0, 0), (1, 0), (2, 0), (3, 0)]);
    bus.publish("t", n(100)).unwrap();
    let next = sub.recv().await.unwrap();
    assert_eq!((num(&next), next.dropped_before), (100, 96));
}

#[tokio::test]
async fn disconnect_closes_after_delivering_what_was_buffered() {
    let bus = Bus::default();
    let mut sub = bus
        .subscribe("t", opts(4, SlowConsumerPolicy::Disconnect))
        .unwrap();
    for i in 0..4 {
        assert_eq!(bus.publish("t", n(i)).unwrap().delivered, 1);
    }
    let report = bus.publish("t", n(4)).unwrap();
    assert_eq!(
        (report.matched, report.rejected, report.disconnected),
        (1, 1, 1)
    );
    assert_eq!(sub.close_reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(sub.dropped(), 1);
    // Removed from the bus at once, though the handle is still alive.
    assert_eq!(bus.stats().subscriptions, 0);
    assert_eq!(bus.publish("t", n(5)).unwrap().matched, 0);

    for i in 0..4 {
        assert_eq!(num(&sub.recv().await.unwrap()), i);
    }
    assert!(matches!(
        sub.recv().await,
        Err(Error::SlowConsumer { capacity: 4 })
    ));
    assert!(matches!(sub.recv().await, Err(Error::SlowConsumer { .. })));
    drop(sub);
    assert_eq!(bus.stats().trie_nodes, 1);
}

#[tokio::test]
async fn retained_message_goes_only_to_late_subscribers_whose_pattern_matches() {
    let bus = Bus::default();
    let r1 = bus
        .publish_retained("home.kitchen.temp", Bytes::from_static(b"19"))
        .unwrap();
    assert!(r1.retained);
    assert_eq!(r1.matched, 0);
    bus.publish_retained("home.kitchen.temp", Bytes::from_static(b"21"))
        .unwrap();
    // A plain publish does not replace the retained message.
    bus.publish("home.kitchen.temp", Bytes::from_static(b"live"))
        .unwrap();
    assert_eq!(bus.stats().retained_topics, 1);

    for pattern in ["home.kitchen.temp", "home.*.temp", "home.>", ">"] {
        let mut sub = bus.subscribe(pattern, SubscribeOptions::default()).unwrap();
        let got: Vec<_> = drain(&mut sub).into_iter().map(|e| e.payload).collect();
        assert_eq!(got, [Bytes::from_static(b"21")], "{pattern}");
    }
    for pattern in [
        "home.kitchen",
        "home.kitchen.temp.>",
        "home.*",
        "*.temp",
        "office.>",
    ] {
        let mut sub = bus.subscribe(pattern, SubscribeOptions::default()).unwrap();
        assert!(sub.try_recv().unwrap().is_none(), "{pattern}");
    }
}

#[tokio::test]
async fn retained_message_comes_before_later_live_events_and_can_be_cleared() {
    let bus = Bus::default();
    bus.publish_retained("a.b", Bytes::from_static(b"state"))
        .unwrap();
    bus.publish_retained("a.c", Bytes::from_static(b"other"))
        .unwrap();
    let mut sub = bus.subscribe("a.*", SubscribeOptions::default()).unwrap();
    bus.publish("a.b", Bytes::from_static(b"live")).unwrap();
    let got: Vec<_> = drain(&mut sub)
        .into_iter()
        .map(|e| (e.topic.to_string(), e.payload))
        .collect();
    assert_eq!(
        got,
        [
            ("a.b".to_owned(), Bytes::from_static(b"state")),
            ("a.c".to_owned(), Bytes::from_static(b"other")),
            ("a.b".to_owned(), Bytes::from_static(b"live")),
        ]
    );
    assert_eq!(bus.retained("a.>").unwrap().len(), 2);

    assert!(bus.clear_retained("a.b").unwrap());
    assert!(!bus.clear_retained("a.b").unwrap());
    let mut late = bus.subscribe("a.b", SubscribeOptions::default()).unwrap();
    assert!(late.try_recv().unwrap().is_none());
}

#[tokio::test]
async fn retained_store_is_bounded_and_a_full_store_publishes_nothing() {
    let mut config = Config::default();
    config.max_retained_topics = 2;
    let bus = Bus::new(config);
    let mut sub = bus.subscribe(">", SubscribeOptions::default()).unwrap();
    bus.publish_retained("a", n(1)).unwrap();
    bus.publish_retained("b", n(2)).unwrap();
    assert!(matches!(
        bus.publish_retained("c", n(3)),
        Err(Error::RetainedFull { limit: 2 })
    ));
    // Replacing an existing topic still works when full.
    bus.publish_retained("a", n(4)).unwrap();
    let got: Vec<_> = drain(&mut sub).iter().map(num).collect();
    assert_eq!(got, [1, 2, 4]);
    assert_eq!(bus.stats().retained_topics, 2);
}

#[tokio::test]
async fn retained_replay_obeys_the_new_subscribers_buffer_policy() {
    let bus = Bus::default();
    for t in ["r.a", "r.b", "r.c"] {
        bus.publish_retained(t, Bytes::from_static(b"x")).unwrap();
    }
    let mut small = bus
        .subscribe("r.*", opts(2, SlowConsumerPolicy::DropOldest))
        .unwrap();
    assert_eq!(small.len(), 2);
    assert_eq!(small.dropped(), 1);
    assert_eq!(small.recv().await.unwrap().topic.as_str(), "r.b");

    let mut strict = bus
        .subscribe("r.*", opts(2, SlowConsumerPolicy::Disconnect))
        .unwrap();
    assert_eq!(strict.close_reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(drain(&mut strict).len(), 2);
    assert_eq!(bus.stats().subscriptions, 1);
}

#[tokio::test]
async fn dropping_subscriptions_unsubscribes_and_prunes_the_trie() {
    let bus = Bus::default();
    let subs: Vec<_> = ["a.b.c", "a.*.c", "a.>", ">", "x.y.z.w", "a.b.c"]
        .into_iter()
        .map(|p| bus.subscribe(p, SubscribeOptions::default()).unwrap())
        .collect();
    assert_eq!(bus.publish("a.b.c", Bytes::new()).unwrap().matched, 5);
    assert_eq!(bus.stats().subscriptions, 6);
    let mut subs = subs.into_iter();
    subs.next().unwrap().unsubscribe();
    assert_eq!(bus.publish("a.b.c", Bytes::new()).unwrap().matched, 4);
    drop(subs);
    let report = bus.publish("a.b.c", Bytes::new()).unwrap();
    assert_eq!((report.matched, report.reached()), (0, 0));
    let stats = bus.stats();
    assert_eq!((stats.subscriptions, stats.trie_nodes), (0, 1));
}

#[tokio::test]
async fn recv_wakes_when_an_event_is_published_later() {
    let bus = Bus::default();
    let mut sub = bus
        .subscribe("wake.me", SubscribeOptions::default())
        .unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn(async move {
        ready_tx.send(()).unwrap();
        sub.recv().await.map(|e| e.payload)
    });
    ready_rx.await.unwrap();
    // On this single-threaded runtime the waiter ran up to its pending `recv` before we resumed,
    // so this publish exercises the wake path.
    bus.publish("wake.me", Bytes::from_static(b"hi")).unwrap();
    assert_eq!(
        bounded(waiter).await.unwrap().unwrap(),
        Bytes::from_static(b"hi")
    );
}

#[tokio::test]
async fn subscription_is_a_stream_and_recv_many_batches() {
    let bus = Bus::default();
    let mut sub = bus.subscribe("s", SubscribeOptions::default()).unwrap();
    for i in 0..10 {
        bus.publish("s", n(i)).unwrap();
    }
    let first: Vec<_> = sub.by_ref().take(3).map(|e| num(&e)).collect().await;
    assert_eq!(first, [0, 1, 2]);
    let mut batch = Vec::new();
    assert_eq!(sub.recv_many(&mut batch, 4).await.unwrap(), 4);
    assert_eq!(sub.recv_many(&mut batch, 100).await.unwrap(), 3);
    assert_eq!(
        batch.iter().map(num).collect::<Vec<_>>(),
        [3, 4, 5, 6, 7, 8, 9]
    );
    assert_eq!(sub.recv_many(&mut batch, 0).await.unwrap(), 0);

    bus.close();
    assert!(sub.next().await.is_none());
    assert_eq!(sub.close_reason(), Some(CloseReason::BusClosed));
}

#[tokio::test]
async fn closing_the_bus_lets_subscribers_drain_then_reports_closed() {
    let bus = Bus::default();
    let mut sub = bus.subscribe("c", SubscribeOptions::default()).unwrap();
    bus.publish_retained("c", n(1)).unwrap();
    bus.close();
    assert!(bus.is_closed());
    assert!(matches!(bus.publish("c", n(2)), Err(Error::Closed)));
    assert!(matches!(
        bus.subscribe("c", SubscribeOptions::default()),
        Err(Error::Closed)
    ));
    assert_eq!(num(&sub.recv().await.unwrap()), 1);
    assert!(matches!(sub.recv().await, Err(Error::Closed)));
    let stats = bus.stats();
    assert_eq!(
        (
            stats.subscriptions,
            stats.sinks,
            stats.retained_topics,
            stats.trie_nodes
        ),
        (0, 0, 0, 1)
    );
}

#[tokio::test]
async fn dropping_every_bus_handle_closes_subscriptions() {
    let bus = Bus::default();
    let mut sub = bus.subscribe("d", SubscribeOptions::default()).unwrap();
    let clone = bus.clone();
    drop(bus);
    clone.publish("d", n(7)).unwrap();
    drop(clone);
    assert_eq!(num(&sub.recv().await.unwrap()), 7);
    assert!(matches!(bounded(sub.recv()).await, Err(Error::Closed)));
}

#[test]
fn subscribe_options_and_limits_are_enforced() {
    let mut config = Config::default();
    config.max_buffer = 10;
    config.max_subscriptions = 2;
    let bus = Bus::new(config);
    assert!(matches!(
        bus.subscribe("a", opts(0, SlowConsumerPolicy::DropOldest)),
        Err(Error::ZeroBuffer)
    ));
    assert!(matches!(
        bus.subscribe("a", opts(11, SlowConsumerPolicy::DropOldest)),
        Err(Error::BufferTooLarge {
            requested: 11,
            max: 10
        })
    ));
    let _a = bus
        .subscribe("a", opts(10, SlowConsumerPolicy::DropOldest))
        .unwrap();
    let sink: Arc<dyn DeliverySink> = Arc::new(|_: &Topic, _: &Bytes| SinkDelivery::Accepted);
    let _b = bus.attach("b", sink.clone()).unwrap();
    assert!(matches!(
        bus.subscribe("c", opts(1, SlowConsumerPolicy::DropOldest)),
        Err(Error::TooManySubscriptions { limit: 2 })
    ));
    assert!(matches!(
        bus.attach("c", sink),
        Err(Error::TooManySubscriptions { limit: 2 })
    ));
}

/// A sink recording what it got, refusing after `room` events, like a bounded durable queue.
struct RecordingSink {
    got: Mutex<Vec<(Topic, Bytes)>>,
    room: usize,
}

impl DeliverySink for RecordingSink {
    fn deliver(&self, topic: &Topic, payload: &Bytes) -> SinkDelivery {
        let mut got = self.got.lock().unwrap();
        if got.len() >= self.room {
            return SinkDelivery::Refused;
        }
        got.push((topic.clone(), payload.clone()));
        SinkDelivery::Accepted
    }
}

#[tokio::test]
async fn attached_sink_receives_matching_events_alongside_subscribers() {
    let bus = Bus::default();
    let sink = Arc::new(RecordingSink {
        got: Mutex::new(Vec::new()),
        room: 2,
    });
    let attachment = bus.attach("orders.*", sink.clone()).unwrap();
    let mut sub = bus
        .subscribe("orders.>", SubscribeOptions::default())
        .unwrap();
    assert_eq!(bus.stats().sinks, 1);

    let payload = Bytes::from_static(b"order-1");
    let r = bus.publish("orders.eu", payload.clone()).unwrap();
    assert_eq!((r.matched, r.delivered), (2, 2));
    bus.publish("orders.eu.late", Bytes::from_static(b"sub only"))
        .unwrap();
    bus.publish("orders.us", Bytes::from_static(b"order-2"))
        .unwrap();
    let r = bus
        .publish("orders.us", Bytes::from_static(b"order-3"))
        .unwrap();
    assert_eq!((r.delivered, r.rejected), (1, 1));

    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1.as_ptr(), payload.as_ptr());
    assert_eq!(drain(&mut sub).len(), 4);

    attachment.detach();
    assert_eq!(bus.stats().sinks, 0);
    assert_eq!(bus.publish("orders.eu", Bytes::new()).unwrap().matched, 1);
}

#[test]
fn sink_reporting_closed_is_detached() {
    let bus = Bus::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let _attachment = bus
        .attach(
            ">",
            Arc::new(move |_: &Topic, _: &Bytes| {
                c.fetch_add(1, Ordering::SeqCst);
                SinkDelivery::Closed
            }),
        )
        .unwrap();
    let r = bus.publish("x", Bytes::new()).unwrap();
    assert_eq!((r.matched, r.rejected), (1, 1));
    assert_eq!(bus.publish("x", Bytes::new()).unwrap().matched, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(bus.stats().sinks, 0);
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reading {
    room: String,
    celsius: f32,
}

#[tokio::test]
async fn typed_publish_and_subscribe_round_trip_and_report_decode_errors() {
    let bus = Bus::default();
    let mut sub = bus
        .subscribe_typed::<Reading>("sensors.*.temp", SubscribeOptions::default())
        .unwrap();
    let reading = Reading {
        room: "kitchen".into(),
        celsius: 21.5,
    };
    assert_eq!(
        bus.publish_typed("sensors.kitchen.temp", &reading)
            .unwrap()
            .reached(),
        1
    );
    // Not a `Reading`: an empty payload.
    bus.publish("sensors.hall.temp", Bytes::new()).unwrap();
    bus.publish_retained_typed(
        "sensors.attic.temp",
        &Reading {
            room: "attic".into(),
            celsius: 30.0,
        },
    )
    .unwrap();

    let first = sub.recv().await.unwrap();
    assert_eq!(
        (first.topic.as_str(), &first.value),
        ("sensors.kitchen.temp", &reading)
    );
    match sub.recv().await {
        Err(Error::Decode { topic, .. }) => assert_eq!(topic.as_str(), "sensors.hall.temp"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(sub.recv().await.unwrap().value.room, "attic");
    assert!(sub.try_recv().unwrap().is_none());

    let mut late = bus
        .subscribe_typed::<Reading>("sensors.>", SubscribeOptions::default())
        .unwrap();
    assert_eq!(late.next().await.unwrap().unwrap().value.celsius, 30.0);
    assert_eq!(late.raw().dropped(), 0);
}

#[test]
fn subscribing_during_retained_publishes_sees_each_value_once_in_order() {
    let bus = Bus::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let publisher = {
        let (bus, stop) = (bus.clone(), stop.clone());
        std::thread::spawn(move || {
            let topic = Topic::from_static("state.x").unwrap();
            let mut i = 0u32;
            // Bounded below the subscribers' buffer so that no subscriber can lose anything.
            while !stop.load(Ordering::Relaxed) && i < 60_000 {
                bus.publish_retained(&topic, n(i)).unwrap();
                if i == 0 {
                    ready_tx.send(()).unwrap();
                }
                i += 1;
            }
            i
        })
    };
    ready_rx.recv().unwrap();
    let mut subs = Vec::new();
    for round in 0..200 {
        subs.push(
            bus.subscribe("state.*", opts(65_536, SlowConsumerPolicy::DropOldest))
                .unwrap(),
        );
        if round % 20 == 19 {
            // Churn: unsubscribe concurrently with the publisher too.
            subs.drain(..10);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().unwrap();
    for sub in &mut subs {
        let got: Vec<u32> = drain(sub).iter().map(num).collect();
        // The retained value came first, then live ones: consecutive, no duplicate, no gap.
        assert!(!got.is_empty());
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
        assert_eq!(*got.last().unwrap(), published - 1);
    }
    drop(subs);
    assert_eq!(bus.stats().trie_nodes, 1);
}
