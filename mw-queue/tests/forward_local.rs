//! Store and forward with in-process hops: forwarder retry, order, batching, crash
//! between confirm and ack, refusals, multi-hop routers and the outbox.

mod forward_common;

use std::sync::Arc;

use forward_common::*;
use mw_queue::forward::{xmit_queue, NextHop, Outbox, OutboxConfig, Router, RoutingTable};
use mw_queue::{Message, MessageId};

fn to(hop: &Arc<Switch>) -> impl Fn(&str) -> Arc<dyn NextHop> + Send + Sync + 'static {
    let hop = hop.clone();
    move |_addr: &str| -> Arc<dyn NextHop> { hop.clone() }
}

fn table(route: &str) -> RoutingTable {
    RoutingTable::new().with(route).unwrap()
}

#[tokio::test]
async fn messages_wait_while_the_hop_is_down_then_arrive_once_in_order_in_batches() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (open(a.path()).await, open(b.path()).await);
    let hop = Switch::new(Arc::new(dst.clone()), false);
    let router = Router::start(src.clone(), table("orders.*=dst"), to(&hop), fast());

    let sent = bodies("m", 100);
    for body in &sent {
        // Returns once durable in the local transmission queue, the hop being down.
        router
            .send("orders.eu", Message::new(body.clone()))
            .await
            .unwrap();
    }
    bounded("forwarder meets the hop down", hop.failed.notified()).await;
    assert_eq!(router.pending(), 100);
    assert_eq!(
        src.stats(&xmit_queue("dst")).depth + src.stats(&xmit_queue("dst")).in_flight,
        100
    );
    assert_eq!(dst.stats("orders.eu").depth, 0);

    hop.set_up(true);
    bounded("drained", router.drained()).await.unwrap();
    assert_eq!(drain(&dst, "orders.eu", 100).await, sent);
    assert_eq!(dst.stats("orders.eu").depth, 0, "each message stored once");

    let batches = hop.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 100);
    assert!(batches.iter().all(|&n| n <= 16), "{batches:?}");
    assert!(
        batches.iter().any(|&n| n > 1),
        "a backlog goes in batches: {batches:?}"
    );
    let status = &router.hops()[0];
    assert_eq!((status.pending, status.stats.forwarded), (0, 100));
    assert!(status.stats.retries >= 1 && status.stats.hop_up);
}

#[tokio::test]
async fn a_crash_between_the_hops_confirm_and_the_local_ack_resends_but_stores_once() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dst = open(b.path()).await;
    let sent = bodies("c", 20);
    {
        let src = open(a.path()).await;
        let hop = Switch::new(Arc::new(dst.clone()), false);
        hop.hang_after_next_confirm();
        let router = Router::start(src.clone(), table("orders.*=dst"), to(&hop), fast());
        for body in &sent {
            router
                .send("orders.eu", Message::new(body.clone()))
                .await
                .unwrap();
        }
        hop.set_up(true);
        // The hop stored a batch and confirmed it; the forwarder "crashes" before it
        // acks locally.
        bounded("crash", hop.crashed.notified()).await;
        let stored = dst.stats("orders.eu").depth;
        assert!(stored >= 1, "the hop stored the batch");
        router.shutdown().await;
        drop(router);
        src.close().await.unwrap();
    }
    // Restart: the unacknowledged messages are resent with the same ids.
    let src = open(a.path()).await;
    let hop = Switch::new(Arc::new(dst.clone()), true);
    let router = Router::start(src.clone(), table("orders.*=dst"), to(&hop), fast());
    bounded("drained after restart", router.drained())
        .await
        .unwrap();
    assert_eq!(drain(&dst, "orders.eu", 20).await, sent);
    assert_eq!(
        dst.stats("orders.eu").depth,
        0,
        "the resent batch was stored once"
    );
}

#[tokio::test]
async fn a_message_the_hop_refuses_is_dead_lettered_and_the_rest_still_flow() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (open(a.path()).await, open(b.path()).await);
    let hop = Switch::new(Arc::new(dst.clone()), false);
    hop.refuse(b"poison");
    let router = Router::start(src.clone(), table("orders.*=dst"), to(&hop), fast());
    for body in ["ok-0", "poison", "ok-1"] {
        router.send("orders.eu", Message::new(body)).await.unwrap();
    }
    hop.set_up(true);
    bounded("drained", router.drained()).await.unwrap();
    assert_eq!(drain(&dst, "orders.eu", 2).await, ["ok-0", "ok-1"]);
    let status = &router.hops()[0];
    assert_eq!((status.dead_letters, status.stats.refused), (1, 1));
}

#[tokio::test]
async fn routers_relay_over_two_hops_and_keep_local_queues_local() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let receiver = open(dirs[2].path()).await;
    let r2 = Router::start(
        open(dirs[1].path()).await,
        table("orders.*=receiver"),
        {
            let r = receiver.clone();
            move |_: &str| -> Arc<dyn NextHop> { Arc::new(r.clone()) }
        },
        fast(),
    );
    let r2_hop = Switch::new(Arc::new(r2.clone()), true);
    let r1_qm = open(dirs[0].path()).await;
    let r1 = Router::start(r1_qm.clone(), table("orders.*=r2"), to(&r2_hop), fast());

    assert_eq!(r1.route("orders.eu"), Some("r2"));
    assert_eq!(r1.route("billing"), None);
    r1.send("billing", Message::new("stays here"))
        .await
        .unwrap();
    for i in 0..10u128 {
        let id = MessageId(1000 + i);
        let body = format!("o-{i}");
        assert_eq!(
            r1.send("orders.eu", Message::new(body.clone()).with_id(id))
                .await
                .unwrap(),
            id
        );
        // A producer retry with the same id is acknowledged but stored once.
        r1.send("orders.eu", Message::new(body).with_id(id))
            .await
            .unwrap();
    }
    bounded("r1 drained", r1.drained()).await.unwrap();
    bounded("r2 drained", r2.drained()).await.unwrap();
    assert_eq!(r1_qm.stats("billing").depth, 1);
    assert_eq!(drain(&receiver, "orders.eu", 10).await, bodies("o", 10));
    assert_eq!(receiver.stats("orders.eu").depth, 0);
}

#[tokio::test]
async fn outbox_sends_while_the_broker_is_away_and_delivers_after_a_client_restart() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let broker = open(b.path()).await;
    let config = || OutboxConfig {
        forwarder: fast(),
        ..OutboxConfig::default()
    };
    {
        let hop = Switch::new(Arc::new(broker.clone()), false);
        let outbox = Outbox::with_hop(a.path(), hop.clone(), config())
            .await
            .unwrap();
        for body in bodies("x", 20) {
            outbox.send("orders", Message::new(body)).await.unwrap();
        }
        assert_eq!(outbox.stats().pending, 20);
        outbox.close().await.unwrap();
    }
    let hop = Switch::new(Arc::new(broker.clone()), false);
    let outbox = Outbox::with_hop(a.path(), hop.clone(), config())
        .await
        .unwrap();
    assert_eq!(outbox.pending(), 20, "pending messages survive the restart");
    for body in bodies("y", 5) {
        outbox.send("orders", Message::new(body)).await.unwrap();
    }
    assert_eq!(broker.stats("orders").depth, 0);
    hop.set_up(true);
    bounded("drained", outbox.drained()).await.unwrap();
    let mut want = bodies("x", 20);
    want.extend(bodies("y", 5));
    assert_eq!(drain(&broker, "orders", 25).await, want);
    assert_eq!(outbox.stats().pending, 0);
}

#[tokio::test]
async fn a_routed_batch_is_stored_and_forwarded_in_order() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (open(a.path()).await, open(b.path()).await);
    let hop = Switch::new(Arc::new(dst.clone()), true);
    let router = Router::start(src.clone(), table("orders.*=dst"), to(&hop), fast());

    // Large enough that per-message sends joined together would not keep their order.
    let sent = bodies("b", 1000);
    let results = router
        .send_batch(
            "orders.eu",
            sent.iter().map(|b| Message::new(b.clone())).collect(),
        )
        .await;
    assert_eq!(results.len(), 1000);
    assert!(results.iter().all(Result::is_ok));
    bounded("drained", router.drained()).await.unwrap();
    assert_eq!(drain(&dst, "orders.eu", 1000).await, sent);
}
