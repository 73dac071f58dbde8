//! The simulated network over real mw-core connections (handshake, batching writer,
//! frame reader), on paused time so that delays, windows and timeouts are exact.

use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};

use super::*;
use crate::connection::{client_connection, server_connection, FrameReader, WriteBuffer};
use crate::transport::{connect, Address, Listener};
use crate::{FrameKind, TransportConfig};

struct Side {
    frames: FrameReader,
    out: WriteBuffer,
}

/// Connects `addr` to `listener` and runs both handshakes.
async fn pair(listener: &mut Listener, addr: &str) -> (Side, Side) {
    let cfg = TransportConfig::default();
    let stream = connect(&addr.parse().unwrap()).await.unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    let ((cr, co, _), (sr, so, _)) = tokio::try_join!(
        client_connection(stream, &cfg),
        server_connection(accepted, &cfg)
    )
    .unwrap();
    (
        Side {
            frames: cr,
            out: co,
        },
        Side {
            frames: sr,
            out: so,
        },
    )
}

async fn bind(net: &FaultNet, endpoint: &str) -> Listener {
    Listener::bind(&net.addr(endpoint).parse().unwrap())
        .await
        .unwrap()
}

/// Sends `n` frames with ids 1..=n and closes; returns the ids the other side read.
async fn send_and_collect(from: Side, to: &mut Side, n: u64) -> Vec<u64> {
    for id in 1..=n {
        from.out.ready().await.unwrap();
        from.out
            .push(FrameKind::Oneway, 0, id, &id.to_be_bytes())
            .unwrap();
    }
    from.out.close();
    let mut ids = Vec::new();
    while let Some(f) = to.frames.next().await {
        let f = f.unwrap();
        assert_eq!(
            &f.body[..],
            &f.id.to_be_bytes(),
            "body travels with its frame"
        );
        ids.push(f.id);
    }
    ids
}

/// What the receiver must read, given the log of one direction of one connection.
fn predicted(n: u64, log: &[FaultEvent]) -> Vec<u64> {
    let faults = |frame: u64| -> Vec<Fault> {
        log.iter()
            .filter(|e| e.frame == frame)
            .map(|e| e.fault)
            .collect()
    };
    let mut out = Vec::new();
    let mut held: Option<Vec<u64>> = None;
    for frame in 0..n {
        let id = frame + 1;
        let f = faults(frame);
        if f.contains(&Fault::Dropped) || f.contains(&Fault::Blocked) {
            continue;
        }
        let copies = if f.contains(&Fault::Duplicated) { 2 } else { 1 };
        if f.contains(&Fault::Reordered) {
            held = Some(vec![id; copies]);
            continue;
        }
        out.extend(std::iter::repeat_n(id, copies));
        out.extend(held.take().unwrap_or_default());
    }
    out.extend(held.unwrap_or_default());
    out
}

fn everything() -> Faults {
    Faults::default()
        .with_drop(0.1)
        .with_duplicate(0.1)
        .with_reorder(0.1)
        .with_delay(0.1, Duration::from_millis(1)..=Duration::from_millis(30))
}

/// One run: 300 frames from a client to a server under `everything()`.
async fn one_run(net_name: &str, seed: u64) -> (Vec<FaultEvent>, Vec<u64>, FaultStats) {
    let net = FaultNet::new(net_name, seed).unwrap();
    net.set_faults(everything());
    let mut l = bind(&net, "server").await;
    let (client, mut server) = pair(&mut l, &net.link_addr("client", "server")).await;
    let got = send_and_collect(client, &mut server, 300).await;
    (net.log(), got, net.stats())
}

#[tokio::test(start_paused = true)]
async fn same_seed_gives_same_fault_log_and_same_deliveries() {
    let (log_a, got_a, stats_a) = one_run("det-a", 99).await;
    let (log_b, got_b, stats_b) = one_run("det-b", 99).await;
    assert_eq!(log_a, log_b);
    assert_eq!(got_a, got_b);
    assert_eq!(stats_a, stats_b);
    // Every kind of fault happened, and the deliveries are exactly what the log says.
    for kind in [Fault::Dropped, Fault::Duplicated, Fault::Reordered] {
        assert!(
            log_a.iter().any(|e| e.fault == kind),
            "no {kind:?} in {log_a:#?}"
        );
    }
    assert!(log_a.iter().any(|e| matches!(e.fault, Fault::Delayed(d)
        if d >= Duration::from_millis(1) && d <= Duration::from_millis(30))));
    assert!(log_a.iter().all(|e| e.direction == Direction::Forward
        && e.from == "client"
        && e.to == "server"
        && e.connection == 0
        && e.kind == FrameKind::Oneway
        && e.id == e.frame + 1));
    assert_eq!(got_a, predicted(300, &log_a));
    assert_eq!(stats_a.frames, 300);
    assert_eq!(
        stats_a.dropped,
        log_a.iter().filter(|e| e.fault == Fault::Dropped).count() as u64
    );

    let (log_c, got_c, _) = one_run("det-c", 100).await;
    assert_ne!(log_a, log_c, "another seed, another schedule");
    assert_eq!(got_c, predicted(300, &log_c));
}

#[tokio::test(start_paused = true)]
async fn decisions_do_not_depend_on_timing() {
    // The same frames, once sent in one burst and once one per second: same log.
    let net = FaultNet::new("timing-a", 5).unwrap();
    net.set_faults(Faults::default().with_drop(0.3).with_duplicate(0.3));
    let mut l = bind(&net, "s").await;
    let (client, mut server) = pair(&mut l, &net.link_addr("c", "s")).await;
    let burst = send_and_collect(client, &mut server, 50).await;

    let slow_net = FaultNet::new("timing-b", 5).unwrap();
    slow_net.set_faults(Faults::default().with_drop(0.3).with_duplicate(0.3));
    let mut l = bind(&slow_net, "s").await;
    let (client, mut server) = pair(&mut l, &slow_net.link_addr("c", "s")).await;
    for id in 1..=50u64 {
        client
            .out
            .push(FrameKind::Oneway, 0, id, &id.to_be_bytes())
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    client.out.close();
    let mut slow = Vec::new();
    while let Some(f) = server.frames.next().await {
        slow.push(f.unwrap().id);
    }
    assert_eq!(net.log(), slow_net.log());
    assert_eq!(burst, slow);
}

#[tokio::test(start_paused = true)]
async fn partition_refuses_new_connections_and_silences_open_ones_until_heal() {
    let net = FaultNet::new("part", 1).unwrap();
    let mut a = bind(&net, "a").await;
    let (b_side, mut a_side) = pair(&mut a, &net.link_addr("b", "a")).await;

    net.partition(&["a"], &["b", "c"]);
    assert!(!net.reachable("b", "a"));
    let started = Instant::now();
    let err = connect(&net.link_addr("c", "a").parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot connect to sim:part/c>a: a is unreachable from c: partitioned {a} | {b, c}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "refused at once");

    // The open connection stays open, but its frames vanish both ways.
    b_side.out.push(FrameKind::Request, 0, 1, b"lost").unwrap();
    a_side
        .out
        .push(FrameKind::Oneway, 0, 2, b"lost too")
        .unwrap();
    assert!(timeout(Duration::from_secs(5), a_side.frames.next())
        .await
        .is_err());
    let mut b_side = b_side;
    assert!(timeout(Duration::from_secs(5), b_side.frames.next())
        .await
        .is_err());
    let stats = net.stats();
    assert_eq!((stats.blocked, stats.refused), (2, 1));
    let log = net.log();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|e| e.fault == Fault::Blocked));
    assert_eq!(
        log[0].to_string(),
        "b>a#0 -> frame 0 (Request id 1): blocked by partition"
    );

    net.heal();
    b_side.out.push(FrameKind::Request, 0, 3, b"after").unwrap();
    let f = a_side.frames.next().await.unwrap().unwrap();
    assert_eq!(
        (f.id, &f.body[..]),
        (3, &b"after"[..]),
        "frame 1 was lost, not queued"
    );
    let (_c, _a2) = pair(&mut a, &net.link_addr("c", "a")).await;
}

#[tokio::test(start_paused = true)]
async fn isolation_cuts_anonymous_clients_too_but_partitions_do_not() {
    let net = FaultNet::new("iso", 1).unwrap();
    let mut a = bind(&net, "a").await;
    net.partition(&["a"], &["b"]);
    let _anon = pair(&mut a, &net.addr("a")).await;
    net.isolate("a");
    let err = connect(&net.addr("a").parse().unwrap()).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("a is unreachable from (anonymous client): a is isolated"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn kill_endpoint_closes_its_connections_and_frees_its_name() {
    let net = FaultNet::new("kill", 1).unwrap();
    let mut a = bind(&net, "a").await;
    let mut b = bind(&net, "b").await;
    let (mut x_to_a, mut a_from_x) = pair(&mut a, &net.link_addr("x", "a")).await;
    let (mut a_to_b, mut b_from_a) = pair(&mut a, &net.link_addr("a", "a")).await;
    let (_x_to_b, _b_from_x) = pair(&mut b, &net.link_addr("x", "b")).await;
    assert_eq!(net.open_connections(), 3);
    // A frame still in flight when the endpoint dies is lost with it.
    net.set_link_faults(
        "x",
        "a",
        Faults::default().with_delay(1.0, Duration::from_secs(1)..=Duration::from_secs(1)),
    );
    x_to_a
        .out
        .push(FrameKind::Request, 0, 1, b"in flight")
        .unwrap();
    tokio::task::yield_now().await;

    assert_eq!(net.kill_endpoint("a"), 2);
    assert_eq!(net.open_connections(), 1, "x>b survives");
    for side in [&mut x_to_a, &mut a_from_x, &mut a_to_b, &mut b_from_a] {
        assert!(side.frames.next().await.is_none(), "end of stream");
    }
    assert_eq!(net.stats().killed, 2);

    let err = connect(&net.link_addr("x", "a").parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::Connect { .. }), "{err:?}");
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .to_string()
            .contains("no endpoint a listening"),
        "{err:?}"
    );
    // The dead listener hears nothing; a restarted one takes the name.
    assert!(timeout(Duration::from_secs(5), a.accept()).await.is_err());
    let mut restarted = bind(&net, "a").await;
    drop(a); // must not unbind the restarted endpoint
    let (_x, _a) = pair(&mut restarted, &net.link_addr("x", "a")).await;
}

#[tokio::test(start_paused = true)]
async fn link_faults_apply_to_one_direction_and_override_the_global_profile() {
    let net = FaultNet::new("links", 3).unwrap();
    net.set_faults(Faults::default().with_duplicate(1.0));
    net.set_link_faults("c", "s", Faults::default().with_drop(1.0));
    let mut l = bind(&net, "s").await;
    let (mut client, mut server) = pair(&mut l, &net.link_addr("c", "s")).await;
    client.out.push(FrameKind::Request, 0, 1, b"").unwrap();
    server.out.push(FrameKind::Oneway, 0, 9, b"").unwrap();
    let a = client.frames.next().await.unwrap().unwrap();
    let b = client.frames.next().await.unwrap().unwrap();
    assert_eq!(
        (a.id, b.id),
        (9, 9),
        "server to client: duplicated (global)"
    );
    assert!(timeout(Duration::from_secs(1), server.frames.next())
        .await
        .is_err());
    let faults: Vec<(Direction, Fault)> =
        net.log().iter().map(|e| (e.direction, e.fault)).collect();
    assert!(faults.contains(&(Direction::Forward, Fault::Dropped)));
    assert!(faults.contains(&(Direction::Backward, Fault::Duplicated)));
    assert_eq!(net.log()[0].sender(), "c");

    net.clear_faults();
    client.out.push(FrameKind::Request, 0, 2, b"").unwrap();
    assert_eq!(server.frames.next().await.unwrap().unwrap().id, 2);
}

#[tokio::test(start_paused = true)]
async fn delays_take_their_time_and_keep_frames_in_order() {
    let net = FaultNet::new("delay", 11).unwrap();
    let d = Duration::from_millis(250);
    net.set_faults(Faults::default().with_delay(0.5, d..=d));
    let mut l = bind(&net, "s").await;
    let (client, mut server) = pair(&mut l, &net.link_addr("c", "s")).await;
    let started = Instant::now();
    let got = send_and_collect(client, &mut server, 20).await;
    assert_eq!(got, (1..=20).collect::<Vec<_>>(), "order kept");
    assert!(started.elapsed() >= d);
    assert!(net.stats().delayed > 0);
}

#[tokio::test(start_paused = true)]
async fn a_held_frame_is_released_after_the_window_if_nothing_follows() {
    let net = FaultNet::new("window", 0).unwrap();
    let window = Duration::from_millis(40);
    net.set_faults(Faults {
        reorder: 1.0,
        reorder_window: window,
        ..Faults::default()
    });
    let mut l = bind(&net, "s").await;
    let (client, mut server) = pair(&mut l, &net.link_addr("c", "s")).await;
    let started = Instant::now();
    client.out.push(FrameKind::Oneway, 0, 1, b"").unwrap();
    assert_eq!(server.frames.next().await.unwrap().unwrap().id, 1);
    assert_eq!(started.elapsed(), window);
}

#[tokio::test]
async fn bytes_that_are_not_mw_pass_through_untouched() {
    let net = FaultNet::new("raw", 1).unwrap();
    net.set_faults(Faults::default().with_drop(1.0));
    let mut l = bind(&net, "s").await;
    let mut c = connect(&net.addr("s").parse().unwrap()).await.unwrap();
    let (mut s, peer) = l.accept().await.unwrap();
    assert_eq!(peer, "sim:raw/>s#0");
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    c.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(net.stats().frames, 0);
}

#[tokio::test]
async fn network_names_are_taken_while_the_network_lives() {
    let net = FaultNet::new("names", 1).unwrap();
    assert!(matches!(
        FaultNet::new("names", 2),
        Err(CoreError::Bind { .. })
    ));
    assert!(matches!(
        FaultNet::new("a/b", 2),
        Err(CoreError::BadAddress { .. })
    ));
    let l = bind(&net, "0").await;
    let Address::Sim {
        net: n,
        endpoint,
        from,
    } = l.local_addr().clone()
    else {
        panic!()
    };
    assert_eq!((n.as_str(), from), ("names", None));
    assert!(endpoint.starts_with("auto-"));
    assert!(Listener::bind(l.local_addr()).await.is_err(), "name in use");
    drop(net);
    // The listener keeps the network alive.
    assert!(FaultNet::new("names", 2).is_err());
    drop(l);
    let _again = FaultNet::new("names", 2).unwrap();

    let err = Listener::bind(&"sim:nowhere/a".parse().unwrap())
        .await
        .unwrap_err();
    assert!(format!("{:?}", err).contains("FaultNet::new"), "{err:?}");
    let err = connect(&"sim:nowhere/a".parse().unwrap())
        .await
        .unwrap_err();
    assert!(format!("{:?}", err).contains("FaultNet::new"), "{err:?}");
}
