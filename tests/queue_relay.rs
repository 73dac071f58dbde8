//! Store and forward through real `mw broker` processes: a sender sends to R1, which
//! routes `orders.*` to R2 (`--route`), which routes them to the receiving broker. R2
//! is not running while the messages are sent, and starts later at an address chosen
//! in advance (a Unix socket in a temp dir). Every message arrives once, in order.

mod queue_support;

use std::path::Path;

use mw::queue::remote::RemoteQueues;
use mw::queue::{ConsumerOptions, Message, MessageId};
use queue_support::{start_broker, start_broker_with, Proc, WAIT};

/// Starts `mw broker --addr ADDR --data DIR --route ROUTE...`.
fn start_router(dir: &Path, addr: &str, routes: &[String]) -> (Proc, String) {
    let args: Vec<String> = routes
        .iter()
        .flat_map(|r| ["--route".to_string(), r.clone()])
        .collect();
    start_broker_with(dir, addr, &args)
}

#[tokio::test]
async fn messages_relayed_through_two_brokers_arrive_once_in_order_after_r2_comes_up() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_receiver, receiver_addr) = start_broker(dirs[0].path());
    let r2_addr = format!("unix:{}", dirs[3].path().join("r2.sock").display());
    let (_r1, r1_addr) = start_router(
        dirs[1].path(),
        "127.0.0.1:0",
        &[format!("orders.*={r2_addr}")],
    );

    // Persistent synchronous sends to R1, which does not own `orders.eu`: each returns
    // once durable in R1's transmission queue, although R2 is down.
    const N: u64 = 50;
    let r1 = RemoteQueues::connect(&r1_addr).await.unwrap();
    let q = r1.queue("orders.eu");
    for i in 0..N {
        q.send(Message::new(format!("m-{i}")).with_id(MessageId(u128::from(i) + 1)))
            .await
            .unwrap();
    }
    // A producer retry of an already-confirmed message: acknowledged, stored once.
    q.send(Message::new("m-0").with_id(MessageId(1)))
        .await
        .unwrap();
    let xmit = format!("xmit.{r2_addr}");
    let waiting = r1.queues().await.unwrap();
    let x = waiting
        .iter()
        .find(|i| i.name == xmit)
        .expect("R1 has a transmission queue for R2");
    assert_eq!(x.depth + x.in_flight, N);

    let (_r2, _) = start_router(
        dirs[2].path(),
        &r2_addr,
        &[format!("orders.*={receiver_addr}")],
    );

    let receiver = RemoteQueues::connect(&receiver_addr).await.unwrap();
    let mut c = receiver
        .queue("orders.eu")
        .consumer(ConsumerOptions {
            prefetch: 16,
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..N {
        let d = tokio::time::timeout(WAIT, c.recv())
            .await
            .unwrap_or_else(|_| panic!("message {i} not relayed within {WAIT:?}"))
            .unwrap();
        assert_eq!(
            (d.id(), &d.body()[..]),
            (MessageId(u128::from(i) + 1), format!("m-{i}").as_bytes())
        );
        d.ack().await.unwrap();
    }
}
