//! Store and forward over real sockets: sender → R1 → R2 → receiver through the
//! `mw.queue` service, with R2 down for a while; a forwarder crash between the
//! remote confirm and the local ack; the outbox while the broker is down.

mod forward_common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use forward_common::*;
use mw_queue::forward::{
    ForwarderConfig, NextHop, Outbox, OutboxConfig, RemoteConnect, RemoteHop, Router, RoutingTable,
};
use mw_queue::remote::{QueueServiceImpl, QueueServiceServer, RemoteQueues};
use mw_queue::{ConsumerOptions, Message, MessageId, QueueManager};
use mw_rpc::{RunningServer, Server};

/// Connect with a short call deadline, so a hop that vanishes mid-call is retried soon.
fn connect() -> RemoteConnect {
    RemoteConnect {
        timeout: Duration::from_secs(5),
        ..RemoteConnect::default()
    }
}

async fn serve_plain(qm: &QueueManager, addr: &str) -> RunningServer {
    Server::builder()
        .add(QueueServiceServer::new(QueueServiceImpl::new(qm.clone())))
        .build()
        .spawn(addr)
        .await
        .expect("bind")
}

async fn serve_router(router: &Router, addr: &str) -> RunningServer {
    Server::builder()
        .add(QueueServiceServer::new(
            QueueServiceImpl::new(router.queue_manager().clone()).with_route(router.clone()),
        ))
        .build()
        .spawn(addr)
        .await
        .expect("bind")
}

fn unix_addr(dir: &Path, name: &str) -> String {
    format!("unix:{}", dir.join(name).display())
}

/// Receives `n` messages of `queue` at the broker `addr` over the network, acking each.
async fn receive(addr: &str, queue: &str, n: usize) -> Vec<(MessageId, String)> {
    let client = RemoteQueues::connect(addr).await.unwrap();
    let mut c = client
        .queue(queue)
        .consumer(ConsumerOptions {
            prefetch: 32,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let d = bounded("remote receive", c.recv()).await.unwrap();
        out.push((d.id(), String::from_utf8(d.body().to_vec()).unwrap()));
        d.ack().await.unwrap();
    }
    out
}

#[tokio::test]
async fn relay_through_two_routers_with_r2_down_delivers_every_message_once_in_producer_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

    // Receiver: a plain broker on an ephemeral TCP port.
    let receiver_qm = open(dirs[2].path()).await;
    let receiver = serve_plain(&receiver_qm, "127.0.0.1:0").await;
    let receiver_addr = receiver.local_addr().to_string();

    // R2's address is known in advance (a Unix socket in a temp dir); it starts later.
    let r2_addr = unix_addr(tmp.path(), "r2.sock");
    let r1 = Router::start(
        open(dirs[0].path()).await,
        RoutingTable::new()
            .with(&format!("orders.*={r2_addr}"))
            .unwrap(),
        connect(),
        fast(),
    );
    let r1_server = serve_router(&r1, "127.0.0.1:0").await;
    let r1_addr = r1_server.local_addr().to_string();

    // Two producers send concurrently to R1 (persistent synchronous: each send returns
    // once durable at R1), each with its own ids, and each retries its first five.
    const N: u64 = 40;
    let mut producers = Vec::new();
    for p in 0..2u64 {
        let addr = r1_addr.clone();
        producers.push(tokio::spawn(async move {
            let q = RemoteQueues::connect(&addr)
                .await
                .unwrap()
                .queue("orders.eu");
            for i in 0..N {
                let id = MessageId(((p as u128) << 64) | i as u128);
                q.send(Message::new(format!("p{p}-{i}")).with_id(id))
                    .await
                    .unwrap();
            }
            for i in 0..5 {
                let id = MessageId(((p as u128) << 64) | i as u128);
                q.send(Message::new(format!("p{p}-{i}")).with_id(id))
                    .await
                    .unwrap();
            }
        }));
    }
    for p in producers {
        bounded("producer", p).await.unwrap();
    }
    // R1 has everything and has tried R2, which is not there.
    bounded(
        "R1 meets R2 down",
        r1.wait_for_hop(&r2_addr, |s| s.retries > 0),
    )
    .await
    .unwrap();
    assert_eq!(r1.pending(), 2 * N);
    assert_eq!(receiver_qm.stats("orders.eu").depth, 0);

    // R2 comes up and routes on to the receiver.
    let r2 = Router::start(
        open(dirs[1].path()).await,
        RoutingTable::new()
            .with(&format!("orders.*={receiver_addr}"))
            .unwrap(),
        connect(),
        fast(),
    );
    let r2_server = serve_router(&r2, &r2_addr).await;
    bounded("R1 drained", r1.drained()).await.unwrap();
    bounded("R2 drained", r2.drained()).await.unwrap();

    let got = receive(&receiver_addr, "orders.eu", 2 * N as usize).await;
    let mut per_producer: HashMap<u64, Vec<u64>> = HashMap::new();
    for (id, body) in &got {
        let (p, i) = ((id.0 >> 64) as u64, id.0 as u64);
        assert_eq!(body, &format!("p{p}-{i}"), "the id travels with its body");
        per_producer.entry(p).or_default().push(i);
    }
    for p in 0..2 {
        assert_eq!(
            per_producer[&p],
            (0..N).collect::<Vec<_>>(),
            "producer {p}: once each, in order"
        );
    }
    let s = receiver_qm.stats("orders.eu");
    assert_eq!(
        (s.depth, s.in_flight),
        (0, 0),
        "no duplicate stored at the receiver"
    );

    r1_server.shutdown().await;
    r2_server.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test]
async fn forwarder_crash_after_the_remote_confirm_resends_and_the_receiver_stores_once() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let receiver_qm = open(b.path()).await;
    let receiver = serve_plain(&receiver_qm, "127.0.0.1:0").await;
    let receiver_addr = receiver.local_addr().to_string();
    let route = format!("orders.*={receiver_addr}");
    let sent = bodies("k", 30);
    {
        let remote: Arc<dyn NextHop> = Arc::new(RemoteHop::new(&receiver_addr));
        let hop = Switch::new(remote, false);
        hop.hang_after_next_confirm();
        let qm = open(a.path()).await;
        let h = hop.clone();
        let r1 = Router::start(
            qm.clone(),
            RoutingTable::new().with(&route).unwrap(),
            move |_: &str| -> Arc<dyn NextHop> { h.clone() },
            fast(),
        );
        for body in &sent {
            r1.send("orders.eu", Message::new(body.clone()))
                .await
                .unwrap();
        }
        hop.set_up(true); // the whole backlog goes in one confirmed batch, then "crash"
        bounded("crash after confirm", hop.crashed.notified()).await;
        assert!(receiver_qm.stats("orders.eu").depth >= 1);
        r1.shutdown().await;
        drop(r1);
        qm.close().await.unwrap();
    }
    let r1 = Router::start(
        open(a.path()).await,
        RoutingTable::new().with(&route).unwrap(),
        connect(),
        fast(),
    );
    bounded("drained after restart", r1.drained())
        .await
        .unwrap();
    let got: Vec<String> = receive(&receiver_addr, "orders.eu", 30)
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(got, sent);
    let s = receiver_qm.stats("orders.eu");
    assert_eq!((s.depth, s.in_flight), (0, 0), "the resend was stored once");
    receiver.shutdown().await;
}

#[tokio::test]
async fn outbox_accepts_sends_with_the_broker_absent_and_delivers_them_after_restart_and_start() {
    let (tmp, local, data) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let broker_addr = unix_addr(tmp.path(), "broker.sock");
    {
        // No broker anywhere: sends still return Ok, stored locally.
        let outbox = Outbox::open(local.path(), &broker_addr).await.unwrap();
        for body in bodies("a", 10) {
            bounded("local send", outbox.send("jobs", Message::new(body)))
                .await
                .unwrap();
        }
        assert_eq!(outbox.stats().pending, 10);
        outbox.close().await.unwrap(); // the client stops with messages pending
    }
    let outbox = Outbox::with_hop(
        local.path(),
        Arc::new(RemoteHop::new(&broker_addr)),
        OutboxConfig {
            forwarder: ForwarderConfig {
                backoff_max: Duration::from_millis(50),
                ..ForwarderConfig::default()
            },
            ..OutboxConfig::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        outbox.pending(),
        10,
        "pending messages survive the client restart"
    );
    for body in bodies("b", 10) {
        outbox.send("jobs", Message::new(body)).await.unwrap();
    }

    let broker_qm = open(data.path()).await;
    let broker = serve_plain(&broker_qm, &broker_addr).await;
    bounded("outbox drained", outbox.drained()).await.unwrap();
    assert_eq!(outbox.stats().pending, 0);
    let got: Vec<String> = receive(&broker_addr, "jobs", 20)
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let mut want = bodies("a", 10);
    want.extend(bodies("b", 10));
    assert_eq!(got, want);
    broker.shutdown().await;
}
