//! Connection loss: a call in flight when the server dies fails with `Disconnected`
//! instead of hanging; a client with `reconnect: true` reaches a server restarted at the
//! same address, one without it keeps reporting `Disconnected`; and dropping the last
//! clone of a channel closes its connection; a call the server went away without reading
//! is sent again (or fails as `NotRun`).

#[macro_use]
mod common;

use std::sync::Arc;

use common::{eventually, start_server_at, within, Counter, Endpoint, IsolatedServer, Transport};
use futures::StreamExt;
use mw::core::FrameKind;
use mw::rpc::{Channel, ClientConfig, RpcError, ServerConfig};

#[mw::service(name = "flaky", version = 1)]
pub trait Flaky {
    async fn inc(&self, n: u64) -> u64;
    /// Never answers.
    async fn hang(&self) -> u64;
}

#[derive(Default)]
struct Probe {
    started: Arc<Counter>,
    dropped: Arc<Counter>,
}

struct FlakyImpl(Arc<Probe>);

impl Flaky for FlakyImpl {
    async fn inc(&self, n: u64) -> u64 {
        n + 1
    }
    async fn hang(&self) -> u64 {
        let _guard = self.0.dropped.guard();
        self.0.started.incr();
        std::future::pending::<()>().await;
        unreachable!()
    }
}

fn flaky(probe: &Arc<Probe>) -> impl FnOnce(mw::rpc::ServerBuilder) -> mw::rpc::ServerBuilder {
    let p = probe.clone();
    move |b| b.add(FlakyServer::new(FlakyImpl(p)))
}

async fn client(addr: &str, reconnect: bool) -> FlakyClient {
    let config = ClientConfig {
        reconnect,
        ..Default::default()
    };
    FlakyClient::new(Channel::connect_with(addr, config).await.expect("connect"))
}

async fn call_in_flight_when_server_dies_is_disconnected(t: Transport) {
    let probe = Arc::new(Probe::default());
    let server =
        IsolatedServer::start(&Endpoint::new(t), ServerConfig::default(), flaky(&probe)).await;
    let plain = client(&server.addr, false).await;
    let reconnecting = client(&server.addr, true).await;
    let calls = [
        tokio::spawn({
            let c = plain.clone();
            async move { c.hang().await }
        }),
        tokio::spawn({
            let c = reconnecting.clone();
            async move { c.hang().await }
        }),
    ];
    probe.started.reaches(2, "both calls running").await;
    server.kill().await;
    probe
        .dropped
        .reaches(2, "handlers died with the server")
        .await;
    for (call, who) in calls.into_iter().zip(["plain", "reconnecting"]) {
        match within("call in flight", call).await.unwrap() {
            Err(RpcError::Disconnected) => {}
            other => panic!("{who} client: expected Disconnected, got {other:?}"),
        }
    }
    assert!(plain.channel().is_closed());
    assert!(reconnecting.channel().is_closed());
}

async fn stream_in_flight_when_server_dies_ends_with_disconnected(t: Transport) {
    #[mw::service(name = "ticker", version = 1)]
    pub trait Ticker {
        async fn ticks(&self) -> mw::rpc::Streaming<u64>;
    }
    struct T;
    impl Ticker for T {
        async fn ticks(&self) -> mw::rpc::Streaming<u64> {
            Box::pin(futures::stream::iter(0..))
        }
    }
    let server = IsolatedServer::start(&Endpoint::new(t), ServerConfig::default(), |b| {
        b.add(TickerServer::new(T))
    })
    .await;
    let c = TickerClient::connect(&server.addr).await.unwrap();
    let mut s = c.ticks().await.unwrap();
    assert_eq!(within("first tick", s.next()).await.unwrap().unwrap(), 0);
    server.kill().await;
    // Items already received may still come; then the stream reports the loss and ends.
    let mut last = None;
    for _ in 0..10_000 {
        match within("stream after the server died", s.next()).await {
            Some(Ok(_)) => continue,
            other => {
                last = Some(other);
                break;
            }
        }
    }
    match last {
        Some(Some(Err(RpcError::Disconnected))) => {}
        other => panic!("expected the stream to end with Disconnected, got {other:?}"),
    }
    assert!(s.next().await.is_none());
}

/// Restarting at the same address: a Unix socket path or an in-process name. (A TCP
/// port freed by one test could be taken by a parallel test before the restart.)
async fn reconnecting_client_reaches_restarted_server(t: Transport) {
    let probe = Arc::new(Probe::default());
    let server =
        IsolatedServer::start(&Endpoint::new(t), ServerConfig::default(), flaky(&probe)).await;
    let endpoint = server.endpoint();
    let reconnecting = client(&server.addr, true).await;
    let plain = client(&server.addr, false).await;
    assert_eq!(reconnecting.inc(1).await.unwrap(), 2);
    assert_eq!(plain.inc(1).await.unwrap(), 2);

    server.kill().await;
    eventually("clients notice the lost connection", || {
        reconnecting.channel().is_closed() && plain.channel().is_closed()
    })
    .await;
    // While nothing listens: the reconnect attempt fails fast, the plain client is
    // disconnected.
    assert!(matches!(
        within("call while down", reconnecting.inc(2)).await,
        Err(RpcError::Transport(_))
    ));
    assert!(matches!(plain.inc(2).await, Err(RpcError::Disconnected)));

    let restarted = start_server_at(&endpoint, ServerConfig::default(), flaky(&probe)).await;
    assert_eq!(restarted.addr, endpoint.addr);
    assert_eq!(
        within("call after restart", reconnecting.inc(5))
            .await
            .unwrap(),
        6
    );
    assert!(!reconnecting.channel().is_closed());
    // Clones share the new connection.
    assert_eq!(reconnecting.clone().inc(6).await.unwrap(), 7);
    assert!(matches!(plain.inc(5).await, Err(RpcError::Disconnected)));
    restarted.shutdown().await;
}

/// A listener for a fake server on a fresh endpoint of `t`, and its address. The
/// endpoint keeps a Unix socket's directory: hold it as long as the listener.
async fn fake_server_listener(t: Transport) -> (Endpoint, mw::core::Listener, String) {
    let endpoint = Endpoint::new(t);
    let listener = mw::core::Listener::bind(&endpoint.addr.parse().unwrap())
        .await
        .expect("bind");
    let addr = listener.local_addr().to_string();
    (endpoint, listener, addr)
}

/// A fake server that completes the handshake, answers pings and reports when the
/// client's side of the connection ends.
async fn dropping_the_last_channel_clone_closes_the_connection(t: Transport) {
    let (_endpoint, mut listener, addr) = fake_server_listener(t).await;
    let closed = Counter::new();
    let server = tokio::spawn({
        let closed = closed.clone();
        async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (mut reader, write_buf, _writer) =
                mw::core::server_connection(stream, &Default::default())
                    .await
                    .expect("handshake");
            while let Some(Ok(frame)) = reader.next().await {
                if frame.kind == FrameKind::Ping {
                    write_buf.push(FrameKind::Pong, 0, frame.id, &[]).unwrap();
                }
            }
            closed.incr();
        }
    });
    let channel = within("connect", Channel::connect(&addr)).await.unwrap();
    let clone = channel.clone();
    drop(channel);
    // A clone still holds the connection: a round trip on it still works.
    within("ping on the clone", clone.ping()).await.unwrap();
    assert_eq!(closed.get(), 0, "connection closed while a clone was alive");
    drop(clone);
    closed
        .reaches(
            1,
            "server sees the connection end after the last clone dropped",
        )
        .await;
    within("fake server", server).await.unwrap();
}

/// Serves one fake connection: reads frames until a `Request`, and returns its id, the
/// connection's write buffer and writer task.
async fn read_one_request(
    listener: &mut mw::core::Listener,
) -> (
    u64,
    mw::core::FrameReader,
    mw::core::WriteBuffer,
    tokio::task::JoinHandle<Result<(), mw::core::CoreError>>,
) {
    let (stream, _) = listener.accept().await.expect("accept");
    let (mut reader, write_buf, writer) = mw::core::server_connection(stream, &Default::default())
        .await
        .expect("handshake");
    loop {
        let frame = reader.next().await.expect("a frame").expect("a good frame");
        if frame.kind == FrameKind::Request {
            return (frame.id, reader, write_buf, writer);
        }
    }
}

/// The race of an idle timeout with a call: the server says GoAway and closes the
/// connection cleanly with the request unread. That call was not run: a reconnecting
/// channel sends it again on a new connection and gets its answer; one without
/// `reconnect` fails it with `NotRun` (not `Disconnected`: the caller knows it may resend).
async fn a_call_the_server_went_away_without_reading_is_sent_again(t: Transport) {
    for reconnect in [true, false] {
        let (_endpoint, mut listener, addr) = fake_server_listener(t).await;
        let server = tokio::spawn(async move {
            // Connection 1: the request arrives as the server goes away.
            let (_, reader, write_buf, writer) = read_one_request(&mut listener).await;
            write_buf.go_away().unwrap();
            write_buf.close();
            writer.await.unwrap().unwrap();
            drop(reader);
            if !reconnect {
                return;
            }
            // Connection 2: the same call again, answered.
            let (id, _reader, write_buf, writer) = read_one_request(&mut listener).await;
            let body = postcard::to_allocvec(&42u64).unwrap();
            write_buf.push(FrameKind::Response, 0, id, &body).unwrap();
            write_buf.close();
            writer.await.unwrap().unwrap();
        });
        let c = client(&addr, reconnect).await;
        let result = within("call across a GoAway", c.inc(1)).await;
        if reconnect {
            assert_eq!(result.unwrap(), 42, "answered on the second connection");
        } else {
            match result {
                Err(RpcError::NotRun) => {}
                other => panic!("expected NotRun, got {other:?}"),
            }
        }
        within("fake server", server).await.unwrap();
    }
}

/// A server that vanishes with our request unread resets the connection (TCP RST,
/// `ECONNRESET` on a Unix socket). For the caller that is a lost connection like any
/// other — `Disconnected` — not a protocol violation. (In-process pipes cannot reset.)
async fn connection_reset_by_server_is_disconnected(t: Transport) {
    use tokio::io::AsyncReadExt;
    let (_endpoint, mut listener, addr) = fake_server_listener(t).await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        mw::core::handshake::server_handshake(&mut stream, 1, 1)
            .await
            .expect("handshake");
        // Read the start of the (1 MiB) request, then close with the rest unread.
        let mut start = [0u8; 4096];
        stream.read_exact(&mut start).await.expect("request start");
        drop(stream);
    });
    let c = FlakyClient::connect(&addr).await.expect("connect");
    let big = (vec![0u8; 1 << 20],);
    let call = c.channel().call::<_, u64>(FlakyClient::SERVICE, 1, &big);
    match within("call on a connection the server resets", call).await {
        Err(RpcError::Disconnected) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
    within("fake server", server).await.unwrap();
}

mod connection_reset_by_server_is_disconnected {
    use crate::common::{run, Transport};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tcp() {
        run(
            super::connection_reset_by_server_is_disconnected,
            Transport::Tcp,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unix() {
        run(
            super::connection_reset_by_server_is_disconnected,
            Transport::Unix,
        )
        .await
    }
}

per_transport!(
    a_call_the_server_went_away_without_reading_is_sent_again,
    call_in_flight_when_server_dies_is_disconnected,
    stream_in_flight_when_server_dies_ends_with_disconnected,
    dropping_the_last_channel_clone_closes_the_connection,
);

mod reconnecting_client_reaches_restarted_server {
    use crate::common::{run, Transport};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unix() {
        run(
            super::reconnecting_client_reaches_restarted_server,
            Transport::Unix,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inproc() {
        run(
            super::reconnecting_client_reaches_restarted_server,
            Transport::InProc,
        )
        .await
    }
}
