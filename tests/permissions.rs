//! Permissions inside services over real sockets, with the README's `examples/auth.toml`:
//! alice may send to and receive from `orders.*`, bob may only subscribe to `sensors.>`,
//! `ci` (admin) may do everything. Each refusal is a typed `PermissionDenied` naming the
//! user, the operation and the resource; nothing is done; and the same connection keeps
//! serving what is allowed. Internal queues (`xmit.*`, `durable.*`, `*.dlq`) are refused
//! to wildcard grants; listings show a user only their own queues.

#[allow(unused_macros)]
mod common;

use std::sync::Arc;

use common::{start_server, within, Transport};
use mw::auth::AuthFile;
use mw::pubsub::remote::{PubSubServer, PubSubService, RemoteBus, RemoteConfig};
use mw::pubsub::{Bus, PubSubError, RemoteError, SubscribeOptions};
use mw::queue::remote::{QueueError, QueueServiceImpl, QueueServiceServer, RemoteQueues};
use mw::queue::{ConsumerOptions, Message, QueueManager};
use mw::rpc::auth::{Action, Credentials, Denied};
use mw::rpc::{ClientConfig, ServerConfig};

const AUTH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/auth.toml");

struct Broker {
    server: common::TestServer,
    _dir: tempfile::TempDir,
}

async fn broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let qm = QueueManager::open(dir.path().join("q"), mw::queue::Config::default())
        .await
        .unwrap();
    let bus = Bus::new(mw::pubsub::Config::default());
    let pubsub = PubSubService::with_durable(bus, qm.clone(), &dir.path().join("ps")).unwrap();
    let config = ServerConfig {
        auth: Some(Arc::new(AuthFile::load(AUTH.as_ref()).unwrap())),
        ..ServerConfig::default()
    };
    let server = start_server(Transport::Tcp, config, |b| {
        b.add(QueueServiceServer::new(QueueServiceImpl::new(qm)))
            .add(PubSubServer::new(pubsub))
    })
    .await;
    Broker { server, _dir: dir }
}

fn login(user: &str, password: &str) -> ClientConfig {
    ClientConfig {
        credentials: Some(Credentials::Password {
            user: user.into(),
            password: password.into(),
        }),
        ..ClientConfig::default()
    }
}

fn ci() -> ClientConfig {
    ClientConfig {
        credentials: Some(Credentials::Token("ci.ci-secret".into())),
        ..ClientConfig::default()
    }
}

async fn queues(addr: &str, config: ClientConfig) -> RemoteQueues {
    within("connect", RemoteQueues::connect_with(addr, config))
        .await
        .unwrap()
}

fn denied(user: &str, action: Action, resource: &str) -> Denied {
    Denied {
        user: user.into(),
        action,
        resource: resource.into(),
    }
}

/// The broker's refusal as a `QueueError`, or a panic naming what came instead.
fn queue_error<T: std::fmt::Debug>(r: mw::queue::remote::RemoteResult<T>) -> QueueError {
    let e = r.unwrap_err();
    e.refusal()
        .cloned()
        .unwrap_or_else(|| panic!("not a broker refusal: {e}"))
}

#[tokio::test]
async fn queue_grants_are_checked_per_operation_and_the_connection_stays_usable() {
    let b = broker().await;
    let alice = queues(&b.server.addr, login("alice", "alice-secret")).await;
    let admin = queues(&b.server.addr, ci()).await;

    within("send", alice.queue("orders.a").send(Message::new("one")))
        .await
        .unwrap();
    let e = queue_error(within("send", alice.queue("payments.a").send(Message::new("x"))).await);
    assert_eq!(
        e,
        QueueError::PermissionDenied(denied("alice", Action::QueueSend, "payments.a"))
    );
    assert_eq!(
        e.to_string(),
        "permission denied: user \"alice\" may not send to queue payments.a"
    );
    // The admin sees that nothing was stored on payments.a.
    let names: Vec<String> = within("list", admin.queues())
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert!(!names.contains(&"payments.a".to_string()), "{names:?}");
    within("send", admin.queue("payments.a").send(Message::new("p")))
        .await
        .unwrap();

    // Receiving: refused on payments.a, allowed on orders.a, same connection.
    let e = within(
        "consume",
        alice
            .queue("payments.a")
            .consumer(ConsumerOptions::default()),
    )
    .await;
    let e = match e {
        Err(e) => e.refusal().cloned(),
        Ok(mut c) => within("recv", c.recv())
            .await
            .err()
            .and_then(|e| e.refusal().cloned()),
    };
    assert_eq!(
        e,
        Some(QueueError::PermissionDenied(denied(
            "alice",
            Action::QueueReceive,
            "payments.a"
        )))
    );
    let mut c = within(
        "consume",
        alice.queue("orders.a").consumer(ConsumerOptions::default()),
    )
    .await
    .unwrap();
    let d = within("recv", c.recv()).await.unwrap();
    assert_eq!(&d.body()[..], b"one");
    within("ack", d.ack()).await.unwrap();

    // Managing is another grant.
    let e = queue_error(within("purge", alice.queue("orders.a").purge()).await);
    assert_eq!(
        e,
        QueueError::PermissionDenied(denied("alice", Action::QueueManage, "orders.a"))
    );
    assert_eq!(
        within("purge", admin.queue("payments.a").purge())
            .await
            .unwrap(),
        1
    );

    // Listings show alice her queues only; the admin all of them.
    let mine: Vec<String> = within("list", alice.queues())
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(mine, ["orders.a"]);
    let all = within("list", admin.queues()).await.unwrap();
    assert!(all.iter().any(|q| q.name == "payments.a"), "{all:?}");
}

#[tokio::test]
async fn internal_queues_are_refused_to_wildcard_grants() {
    let b = broker().await;
    let alice = queues(&b.server.addr, login("alice", "alice-secret")).await;
    let admin = queues(&b.server.addr, ci()).await;
    // orders.* does not reach orders.a.dlq (three tokens), nor xmit.* or durable.*.
    for (queue, action) in [
        ("xmit.qm2", Action::QueueSend),
        ("durable.orders", Action::QueueSend),
        ("orders.dlq", Action::QueueSend),
    ] {
        let e = queue_error(within("send", alice.queue(queue).send(Message::new("x"))).await);
        assert_eq!(
            e,
            QueueError::PermissionDenied(denied("alice", action, queue))
        );
    }
    // Her literal grant `orders.*.dlq` lets her read dead letters; the admin may write them.
    within(
        "send",
        admin.queue("orders.a.dlq").send(Message::new("dead")),
    )
    .await
    .unwrap();
    let mut c = within(
        "consume",
        alice
            .queue("orders.a.dlq")
            .consumer(ConsumerOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(&within("recv", c.recv()).await.unwrap().body()[..], b"dead");
    let e = queue_error(within("send", alice.queue("orders.a.dlq").send(Message::new("x"))).await);
    assert_eq!(
        e,
        QueueError::PermissionDenied(denied("alice", Action::QueueSend, "orders.a.dlq"))
    );
}

async fn bus(addr: &str, client: ClientConfig) -> RemoteBus {
    let mut config = RemoteConfig::default();
    config.client = client;
    within("connect", RemoteBus::connect_with(addr, config))
        .await
        .unwrap()
}

fn refusal(e: RemoteError) -> PubSubError {
    match e {
        RemoteError::Refused(r) => r,
        other => panic!("not a broker refusal: {other}"),
    }
}

#[tokio::test]
async fn topic_grants_cover_publishes_and_subscriptions() {
    let b = broker().await;
    let bob = bus(&b.server.addr, login("bob", "bob-secret")).await;
    let admin = bus(&b.server.addr, ci()).await;

    for pattern in [">", "sensors", "other.>"] {
        let e = within(
            "subscribe",
            bob.subscribe(pattern, SubscribeOptions::default()),
        )
        .await
        .unwrap_err();
        assert_eq!(
            refusal(e),
            PubSubError::PermissionDenied(denied("bob", Action::TopicSubscribe, pattern)),
            "{pattern}"
        );
    }
    let e = within("publish", bob.publish_report("sensors.k1.temp", "21"))
        .await
        .unwrap_err();
    let e = refusal(e);
    assert_eq!(
        e.to_string(),
        "permission denied: user \"bob\" may not publish to topic sensors.k1.temp"
    );
    let e = within("durable", bob.subscribe_durable("bobs", "other.>"))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(e),
        PubSubError::PermissionDenied(denied("bob", Action::TopicSubscribe, "other.>"))
    );

    // After the refusals, the same connection subscribes to what is granted.
    let mut sub = within(
        "subscribe",
        bob.subscribe("sensors.*.temp", SubscribeOptions::default()),
    )
    .await
    .unwrap();
    within("publish", admin.publish_report("sensors.k1.temp", "21"))
        .await
        .unwrap();
    let event = within("recv", sub.recv()).await.unwrap();
    assert_eq!(event.topic.as_str(), "sensors.k1.temp");
    assert_eq!(&event.payload[..], b"21");
}

/// The refusals' bytes as PROTOCOL.md §1.1 and §4.8 give them: appended variants (13 of
/// `QueueError`, 11 of `PubSubError`), then `Denied` (user, action, resource).
#[test]
fn denials_have_the_wire_indices_protocol_md_gives() {
    let d = denied("al", Action::QueueManage, "q");
    let denied_bytes = [2, b'a', b'l', 2, 1, b'q'];
    let q = postcard::to_allocvec(&QueueError::PermissionDenied(d.clone())).unwrap();
    assert_eq!(q, [&[13][..], &denied_bytes].concat());
    let p = postcard::to_allocvec(&PubSubError::PermissionDenied(d)).unwrap();
    assert_eq!(p, [&[11][..], &denied_bytes].concat());
}

/// Redriving moves dead letters out of `QUEUE.dlq`: it needs `manage` on that internal
/// queue too, which a wildcard grant does not give.
#[tokio::test]
async fn redrive_needs_the_dead_letter_queue_too() {
    let dir = tempfile::tempdir().unwrap();
    let qm = QueueManager::open(dir.path().join("q"), mw::queue::Config::default())
        .await
        .unwrap();
    let hash = mw::auth::hash_password("pw").unwrap();
    let file = AuthFile::parse(&format!(
        "[users.wide]\npassword = \"{hash}\"\nqueues = {{ manage = [\"orders.>\"] }}\n\
         [users.ops]\npassword = \"{hash}\"\n\
         queues = {{ manage = [\"orders.>\", \"orders.*.dlq\"] }}\n"
    ))
    .unwrap();
    let config = ServerConfig {
        auth: Some(Arc::new(file)),
        ..ServerConfig::default()
    };
    let server = start_server(Transport::Tcp, config, |b| {
        b.add(QueueServiceServer::new(QueueServiceImpl::new(qm.clone())))
    })
    .await;
    qm.queue("orders.x.dlq")
        .send(Message::new("dead"))
        .await
        .unwrap();
    let wide = queues(&server.addr, login("wide", "pw")).await;
    let e = queue_error(within("redrive", wide.queue("orders.x").redrive()).await);
    assert_eq!(
        e,
        QueueError::PermissionDenied(denied("wide", Action::QueueManage, "orders.x.dlq"))
    );
    let ops = queues(&server.addr, login("ops", "pw")).await;
    assert_eq!(
        within("redrive", ops.queue("orders.x").redrive())
            .await
            .unwrap(),
        1
    );
}
