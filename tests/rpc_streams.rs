//! Server streams: items arrive in order and end; a reader that stops reading holds the
//! producer to the credit window (the server does not run ahead and buffer); dropping
//! the stream cancels it on the server; errors arrive as the stream's item.

#[macro_use]
mod common;

use std::sync::Arc;

use common::{start_server, within, Counter, Transport};
use futures::StreamExt;
use mw::rpc::{Channel, ClientConfig, RpcError, ServerConfig, Streaming};

#[mw::service(name = "streams", version = 1)]
pub trait Streams {
    /// `0..n`, counting every item produced.
    async fn count(&self, n: u64) -> Streaming<u64>;
    /// `0..`, never ending.
    async fn endless(&self) -> Streaming<u64>;
    async fn echo(&self, n: u64) -> u64;
}

#[derive(Default)]
struct Probe {
    produced: Arc<Counter>,
    /// Streams whose producer the server dropped (finished or cancelled).
    dropped: Arc<Counter>,
}

struct StreamsImpl(Arc<Probe>);

impl Streams for StreamsImpl {
    async fn count(&self, n: u64) -> Streaming<u64> {
        let produced = self.0.produced.clone();
        let guard = self.0.dropped.guard();
        Box::pin(futures::stream::iter(0..n).map(move |i| {
            let _alive = &guard;
            produced.incr();
            i
        }))
    }
    async fn endless(&self) -> Streaming<u64> {
        let produced = self.0.produced.clone();
        let guard = self.0.dropped.guard();
        Box::pin(futures::stream::iter(0..).map(move |i| {
            let _alive = &guard;
            produced.incr();
            i
        }))
    }
    async fn echo(&self, n: u64) -> u64 {
        n
    }
}

const WINDOW: u32 = 8;
/// Items the server may have produced beyond what the client allowed (none today; a
/// producer that pulls one item ahead of its credit would still be fine).
const SLACK: usize = 2;

async fn setup(t: Transport, window: u32) -> (common::TestServer, StreamsClient, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let server = start_server(t, ServerConfig::default(), move |b| {
        b.add(StreamsServer::new(StreamsImpl(p)))
    })
    .await;
    let config = ClientConfig {
        stream_window: window,
        ..Default::default()
    };
    let channel = Channel::connect_with(&server.addr, config)
        .await
        .expect("connect");
    (server, StreamsClient::new(channel), probe)
}

async fn stream_items_arrive_in_order_then_end(t: Transport) {
    let (server, c, probe) = setup(t, ClientConfig::default().stream_window).await;
    let s = c.count(1000).await.unwrap();
    let items: Vec<u64> = within("1000 items", s.map(|r| r.unwrap()).collect()).await;
    assert_eq!(items, (0..1000).collect::<Vec<_>>());
    // Exactly the window's worth, an empty stream, and two streams interleaved with calls.
    let s = c.count(u64::from(WINDOW)).await.unwrap();
    let items: Vec<u64> = within("window items", s.map(|r| r.unwrap()).collect()).await;
    assert_eq!(items.len(), WINDOW as usize);
    let mut empty = c.count(0).await.unwrap();
    assert!(within("empty stream end", empty.next()).await.is_none());
    let (mut a, mut b) = (c.count(50).await.unwrap(), c.count(50).await.unwrap());
    for i in 0..50u64 {
        assert_eq!(within("a", a.next()).await.unwrap().unwrap(), i);
        assert_eq!(c.echo(i).await.unwrap(), i);
        assert_eq!(within("b", b.next()).await.unwrap().unwrap(), i);
    }
    assert!(within("a end", a.next()).await.is_none());
    assert!(within("b end", b.next()).await.is_none());
    // Once ended, a stream stays ended.
    assert!(a.next().await.is_none());
    probe
        .dropped
        .reaches(5, "every finished producer dropped")
        .await;
    server.shutdown().await;
}

async fn slow_reader_holds_the_producer_to_the_credit_window(t: Transport) {
    let (server, c, probe) = setup(t, WINDOW).await;
    const N: u64 = 2000;
    let mut s = c.count(N).await.unwrap();
    probe
        .produced
        .reaches(WINDOW as usize, "producer filled the window")
        .await;
    // Give an unbounded producer ample chance to run ahead: every round trip passes
    // through the server task that also drives the stream.
    for i in 0..20 {
        assert_eq!(c.echo(i).await.unwrap(), i);
        assert!(c.channel().ping().await.is_ok());
    }
    let ahead = probe.produced.get();
    assert!(
        ahead <= WINDOW as usize + SLACK,
        "server produced {ahead} items for a reader that read none (window {WINDOW})"
    );
    // Read part of it: the producer may move on by what was read, no further.
    for i in 0..100 {
        assert_eq!(within("item", s.next()).await.unwrap().unwrap(), i);
    }
    for i in 0..20 {
        assert_eq!(c.echo(i).await.unwrap(), i);
    }
    let ahead = probe.produced.get();
    assert!(
        ahead <= 100 + WINDOW as usize + SLACK,
        "server produced {ahead} items for a reader that read 100 (window {WINDOW})"
    );
    // The rest arrives complete and in order.
    let rest: Vec<u64> = within("rest of the stream", s.map(|r| r.unwrap()).collect()).await;
    assert_eq!(rest, (100..N).collect::<Vec<_>>());
    assert_eq!(probe.produced.get(), N as usize);
    server.shutdown().await;
}

async fn dropped_stream_is_cancelled_on_the_server(t: Transport) {
    let (server, c, probe) = setup(t, WINDOW).await;
    let mut s = c.endless().await.unwrap();
    for i in 0..3 {
        assert_eq!(within("item", s.next()).await.unwrap().unwrap(), i);
    }
    assert_eq!(probe.dropped.get(), 0);
    drop(s);
    probe
        .dropped
        .reaches(1, "server dropped the endless producer")
        .await;
    // Dropping a stream nobody read from cancels it too.
    let s = c.endless().await.unwrap();
    probe
        .produced
        .reaches(3 + WINDOW as usize, "second producer filled its window")
        .await;
    drop(s);
    probe
        .dropped
        .reaches(2, "server dropped the unread producer")
        .await;
    assert_eq!(c.echo(1).await.unwrap(), 1);
    server.shutdown().await;
}

async fn stream_errors_arrive_as_the_first_item(t: Transport) {
    let (server, c, _probe) = setup(t, WINDOW).await;
    let svc = StreamsClient::SERVICE;
    let mut s = c
        .channel()
        .call_stream::<_, u64>(svc, 99, &())
        .await
        .unwrap();
    match within("error item", s.next()).await {
        Some(Err(RpcError::UnknownMethod(msg))) => assert!(msg.contains("99"), "{msg}"),
        other => panic!("expected UnknownMethod, got {other:?}"),
    }
    assert!(s.next().await.is_none(), "stream ends after its error");
    // A unary method called as a stream is refused, and vice versa.
    let mut s = c
        .channel()
        .call_stream::<_, u64>(svc, 3, &(1u64,))
        .await
        .unwrap();
    assert!(matches!(
        within("error item", s.next()).await,
        Some(Err(RpcError::Protocol(_)))
    ));
    let r = c.channel().call::<_, u64>(svc, 1, &(1u64,)).await;
    assert!(matches!(r, Err(RpcError::Protocol(_))), "{r:?}");
    server.shutdown().await;
}

per_transport!(
    stream_items_arrive_in_order_then_end,
    slow_reader_holds_the_producer_to_the_credit_window,
    dropped_stream_is_cancelled_on_the_server,
    stream_errors_arrive_as_the_first_item,
);
