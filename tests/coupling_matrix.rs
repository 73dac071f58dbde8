//! The lectures' coupling table, mode by mode, over every transport.
//!
//! | mode | the sender's call returns when | receiver not running at send time |
//! |---|---|---|
//! | persistent asynchronous | the message is in the local persistent outbox | delivered once it starts |
//! | persistent synchronous | the message is durable at the receiver's queue manager | delivered once it starts |
//! | transient asynchronous | at once | lost, and the sender can tell where it asks |
//! | transient synchronous, receipt-based | the receiver's middleware accepted it | the call fails |
//! | transient synchronous, delivery-based | the receiving application was handed it | the call fails |
//! | transient synchronous, response-based | the reply came back | the call fails |
//!
//! Each mode is selected through a public API (`Outbox::send`, `RemoteQueue::send`,
//! `#[oneway]`, `#[oneway(receipt)]`, `#[oneway(delivery)]`, a plain method) and each test
//! checks both columns. The RPC modes hold the receiver's only handler slot with a gated
//! call so "accepted" and "handed to the application" become observable moments.
//!
//! Referential coupling is checked too: queue and topic senders name only a queue or a
//! topic, never a receiver. Temporal coupling is the "receiver not running" column.
//!
//! Shared space (the tuple space, `RemoteSpace::out` / `in_`) is decoupled both ways:
//! writer and reader name neither each other nor any queue or topic — a pattern selects
//! the tuple — and they need not run at the same time: the writer exits (and the broker
//! restarts) before the reader starts, and a reader waiting first gets what a writer that
//! starts later writes.
//! Platform coupling is covered by `mw-rpc/tests/protocol_doc.rs`, which drives the server
//! with hand-written bytes taken from PROTOCOL.md.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};

use common::{start_server, within, Counter, Endpoint, Gate, Transport};
use mw::broker::{Broker, BrokerConfig};
use mw::queue::forward::Outbox;
use mw::queue::remote::RemoteQueues;
use mw::queue::{ConsumerOptions, Message};
use mw::rpc::{Channel, RpcError, ServerConfig};
use mw::space::{pattern, tuple, RemoteSpace, Type};

/// The receiving application: records what it was handed.
#[mw::service(name = "matrix", version = 1)]
pub trait Receiver {
    /// Transient asynchronous.
    #[oneway]
    async fn fire(&self, n: u64);
    /// Transient synchronous, receipt-based.
    #[oneway(receipt)]
    async fn receipt(&self, n: u64);
    /// Transient synchronous, delivery-based.
    #[oneway(delivery)]
    async fn delivery(&self, n: u64);
    /// Transient synchronous, response-based.
    async fn respond(&self, n: u64) -> u64;
    /// Occupies the handler slot until the gate opens.
    async fn hold(&self);
}

#[derive(Default)]
struct App {
    handed: Mutex<Vec<u64>>,
    seen: Arc<Counter>,
    holding: Arc<Counter>,
    gate: Arc<Gate>,
}

impl App {
    fn take(&self, n: u64) {
        self.handed.lock().unwrap().push(n);
        self.seen.incr();
    }
    fn handed(&self) -> Vec<u64> {
        self.handed.lock().unwrap().clone()
    }
}

struct Shared(Arc<App>);

impl Receiver for Shared {
    async fn fire(&self, n: u64) {
        self.0.take(n)
    }
    async fn receipt(&self, n: u64) {
        self.0.take(n)
    }
    async fn delivery(&self, n: u64) {
        self.0.take(n)
    }
    async fn respond(&self, n: u64) -> u64 {
        self.0.take(n);
        n + 1
    }
    async fn hold(&self) {
        self.0.holding.incr();
        self.0.gate.wait().await;
    }
}

/// A receiver with one handler slot, its slot held by a gated call.
async fn busy_receiver(t: Transport) -> (common::TestServer, Arc<App>, ReceiverClient) {
    let app = Arc::new(App::default());
    let impl_ = Shared(app.clone());
    let config = ServerConfig {
        max_in_flight: 1,
        ..Default::default()
    };
    let server = start_server(t, config, |b| b.add(ReceiverServer::new(impl_))).await;
    let client = ReceiverClient::connect(&server.addr).await.unwrap();
    let holder = client.clone();
    tokio::spawn(async move { holder.hold().await });
    app.holding
        .reaches(1, "the gated call occupies the slot")
        .await;
    (server, app, client)
}

/// An address where nothing listens (yet): a receiver that is not running.
fn absent(t: Transport) -> String {
    match t {
        // Port 1 is privileged and unused here: connecting is refused at once.
        Transport::Tcp => "127.0.0.1:1".to_string(),
        Transport::Unix => {
            let dir = tempfile::tempdir().unwrap().keep();
            format!("unix:{}", dir.join("nobody.sock").display())
        }
        Transport::InProc => "inproc:nobody-listens-here".to_string(),
    }
}

async fn transient_asynchronous(t: Transport) {
    let (server, app, client) = busy_receiver(t).await;
    // Returns at once although the application cannot be handed the message yet.
    within("fire-and-forget returns", client.fire(1))
        .await
        .unwrap();
    assert!(app.handed().is_empty(), "nobody was handed it yet");
    app.gate.open();
    app.seen.reaches(1, "the message arrives later").await;
    assert_eq!(app.handed(), vec![1]);
    server.shutdown().await;
    // Receiver not running: where the sender asks (it connects), it can tell.
    let err = ReceiverClient::connect(&absent(t)).await.unwrap_err();
    assert!(matches!(err, RpcError::Transport(_)), "{err}");
}

async fn transient_synchronous_receipt(t: Transport) {
    let (server, app, client) = busy_receiver(t).await;
    // Returns once the middleware accepted it, before the application has it.
    within("receipt ack", client.receipt(2)).await.unwrap();
    assert!(
        app.handed().is_empty(),
        "accepted, not yet handed to the application"
    );
    app.gate.open();
    app.seen.reaches(1, "handed later").await;
    server.shutdown().await;
    let err = ReceiverClient::connect(&absent(t)).await.unwrap_err();
    assert!(matches!(err, RpcError::Transport(_)), "{err}");
}

async fn transient_synchronous_delivery(t: Transport) {
    let (server, app, client) = busy_receiver(t).await;
    let delivered = client.delivery(3);
    tokio::pin!(delivered);
    // Poll once so the request leaves, then prove the server has read it: a receipt-based
    // call sent after it on the same connection is acknowledged.
    assert!(futures::poll!(delivered.as_mut()).is_pending());
    within("receipt of a later call", client.receipt(4))
        .await
        .unwrap();
    assert!(
        futures::poll!(delivered.as_mut()).is_pending(),
        "delivery-based call must wait until the application is handed the message"
    );
    assert!(app.handed().is_empty());
    app.gate.open();
    within("delivery ack", delivered).await.unwrap();
    app.seen.reaches(1, "handed").await;
    assert_eq!(
        app.handed()[0],
        3,
        "the application had it when the call returned"
    );
    server.shutdown().await;
    let err = ReceiverClient::connect(&absent(t)).await.unwrap_err();
    assert!(matches!(err, RpcError::Transport(_)), "{err}");
}

async fn transient_synchronous_response(t: Transport) {
    let (server, app, client) = busy_receiver(t).await;
    let reply = client.respond(41);
    tokio::pin!(reply);
    assert!(
        futures::poll!(reply.as_mut()).is_pending(),
        "no reply while the slot is busy"
    );
    app.gate.open();
    assert_eq!(within("the reply", reply).await.unwrap(), 42);
    assert_eq!(app.handed(), vec![41]);
    // The receiver stops: a call on the old connection fails, it does not hang.
    let channel: Channel = client.channel().clone();
    server.shutdown().await;
    common::eventually("the client notices the server left", || channel.is_closed()).await;
    let err = client.respond(1).await.unwrap_err();
    assert!(matches!(err, RpcError::Disconnected), "{err}");
    let err = ReceiverClient::connect(&absent(t)).await.unwrap_err();
    assert!(matches!(err, RpcError::Transport(_)), "{err}");
}

/// A broker (queue manager + bus) served at `endpoint` on `data`.
struct RunningBroker {
    running: mw::rpc::RunningServer,
    broker: Broker,
    _endpoint: Endpoint,
}

impl RunningBroker {
    async fn start(endpoint: Endpoint, data: &std::path::Path) -> RunningBroker {
        let broker = mw::broker::open(BrokerConfig::new(data)).await.unwrap();
        let running = broker.server.clone().spawn(&endpoint.addr).await.unwrap();
        RunningBroker {
            running,
            broker,
            _endpoint: endpoint,
        }
    }

    fn addr(&self) -> String {
        self.running.local_addr().to_string()
    }

    /// Stops serving and closes the data directory, as a broker shutdown does; returns
    /// the endpoint to serve again at (the same path or name; a fresh port for TCP).
    async fn stop(self) -> Endpoint {
        let mut endpoint = self._endpoint;
        if !endpoint.addr.ends_with(":0") {
            endpoint.addr = self.running.local_addr().to_string();
        }
        if endpoint.addr.starts_with("inproc:") {
            endpoint.addr = self.running.local_addr().to_string();
        }
        self.running.shutdown().await;
        self.broker.router.shutdown().await;
        self.broker.space.close().await.unwrap();
        self.broker.queues.close().await.unwrap();
        endpoint
    }
}

async fn consume_bodies(addr: &str, queue: &str, n: usize) -> Vec<String> {
    let remote = RemoteQueues::connect(addr).await.unwrap();
    let mut consumer = remote
        .queue(queue)
        .consumer(ConsumerOptions::default())
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for _ in 0..n {
        let d = within("a delivery", consumer.recv()).await.unwrap();
        bodies.push(String::from_utf8_lossy(d.body()).into_owned());
        d.ack().await.unwrap();
    }
    bodies
}

async fn persistent_synchronous(t: Transport) {
    let data = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::new(t);
    let broker = RunningBroker::start(endpoint, data.path()).await;
    let addr = broker.addr();
    // The sender names a queue, not a receiver; no consumer is running.
    let queue = RemoteQueues::connect(&addr).await.unwrap().queue("orders");
    for i in 0..5 {
        within(
            "confirmed send",
            queue.send(Message::new(format!("order {i}"))),
        )
        .await
        .unwrap();
    }
    // Confirmed means durable at the receiver's queue manager: it survives a restart.
    let endpoint = broker.stop().await;
    let broker = RunningBroker::start(endpoint, data.path()).await;
    // The receiver starts only now, and gets everything, in order.
    let bodies = consume_bodies(&broker.addr(), "orders", 5).await;
    assert_eq!(
        bodies,
        (0..5).map(|i| format!("order {i}")).collect::<Vec<_>>()
    );
    broker.stop().await;
}

async fn persistent_asynchronous(t: Transport) {
    let data = tempfile::tempdir().unwrap();
    let outbox_dir = tempfile::tempdir().unwrap();
    // Nothing runs at the broker's address while the sender sends: no receiver and no
    // middleware at the other end. Unix and in-process addresses can be chosen before the
    // broker exists; a TCP port cannot without racing other tests, so for TCP the outbox
    // first points at a dead address and is reopened against the broker once it is up.
    let mut later = Endpoint::new(t);
    if t == Transport::InProc {
        later.addr = format!("inproc:matrix-outbox-{}", std::process::id());
    }
    let first_target = if t == Transport::Tcp {
        absent(t)
    } else {
        later.addr.clone()
    };
    let outbox = Outbox::open(outbox_dir.path(), &first_target)
        .await
        .unwrap();
    for i in 0..3 {
        // Returns once the message is in the local persistent outbox.
        within(
            "outbox send",
            outbox.send("jobs", Message::new(format!("job {i}"))),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        outbox.pending(),
        3,
        "held locally while nothing runs at the other end"
    );
    let broker = RunningBroker::start(later, data.path()).await;
    let outbox = if t == Transport::Tcp {
        outbox.close().await.unwrap();
        Outbox::open(outbox_dir.path(), &broker.addr())
            .await
            .unwrap()
    } else {
        outbox
    };
    within("outbox drains once the broker is up", outbox.drained())
        .await
        .unwrap();
    // The receiver starts last and still gets everything, in order.
    let bodies = consume_bodies(&broker.addr(), "jobs", 3).await;
    assert_eq!(bodies, vec!["job 0", "job 1", "job 2"]);
    outbox.close().await.unwrap();
    broker.stop().await;
}

/// Referential decoupling on the bus: publishers name a topic; a publish that reaches
/// nobody is lost, and the publisher can tell (transient asynchronous, asked).
async fn topic_decoupling(t: Transport) {
    let data = tempfile::tempdir().unwrap();
    let broker = RunningBroker::start(Endpoint::new(t), data.path()).await;
    let bus = mw::pubsub::remote::RemoteBus::connect(&broker.addr())
        .await
        .unwrap();
    let report = bus
        .publish_report("sensors.kitchen.temp", &b"21.5"[..])
        .await
        .unwrap();
    assert_eq!(
        report.reached(),
        0,
        "nobody subscribed: lost, and the sender is told"
    );
    let mut sub = bus
        .subscribe("sensors.*.temp", Default::default())
        .await
        .unwrap();
    let report = bus
        .publish_report("sensors.hall.temp", &b"19.0"[..])
        .await
        .unwrap();
    assert_eq!(report.reached(), 1);
    let event = within("event", sub.recv()).await.unwrap();
    assert_eq!(event.topic.as_str(), "sensors.hall.temp");
    drop(sub);
    drop(bus);
    broker.stop().await;
}

/// Shared space: referential and temporal decoupling at once.
async fn shared_space(t: Transport) {
    let data = tempfile::tempdir().unwrap();
    let broker = RunningBroker::start(Endpoint::new(t), data.path()).await;
    {
        // The writer names no reader, queue or topic; it writes and is gone.
        let writer = RemoteSpace::connect(&broker.addr()).await.unwrap();
        for i in 0..3 {
            within("out", writer.out(tuple!("order", i))).await.unwrap();
        }
    }
    // Nothing of the writer is left; the broker even restarts before a reader exists.
    let endpoint = broker.stop().await;
    let broker = RunningBroker::start(endpoint, data.path()).await;
    let reader = RemoteSpace::connect(&broker.addr()).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        match within("inp", reader.inp(&pattern!("order", Type::Int)))
            .await
            .unwrap()
        {
            Some(order) => got.push(order[1].as_int().unwrap()),
            None => break,
        }
    }
    assert_eq!(got, vec![0, 1, 2], "found by pattern, oldest first");
    // The other way round: a reader waits before any writer runs.
    let waiting = {
        let reader = reader.clone();
        tokio::spawn(async move {
            let p = pattern!("reply", Type::String);
            reader.in_(&p, std::time::Duration::from_secs(10)).await
        })
    };
    let space = broker.broker.space.clone();
    common::eventually("the reader is blocked", || space.stats().waiters == 1).await;
    let writer = RemoteSpace::connect(&broker.addr()).await.unwrap();
    within("late out", writer.out(tuple!("reply", "shipped")))
        .await
        .unwrap();
    let reply = within("the waiting reader", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, Some(tuple!("reply", "shipped")));
    drop((reader, writer));
    broker.stop().await;
}

per_transport!(
    transient_asynchronous,
    transient_synchronous_receipt,
    transient_synchronous_delivery,
    transient_synchronous_response,
    persistent_synchronous,
    persistent_asynchronous,
    topic_decoupling,
    shared_space,
);
