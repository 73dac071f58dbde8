//! A real mw-rpc server over the in-process transport, fed arbitrary frames.
//!
//! The server hosts `mw.queue` (over an embedded queue manager), `mw.pubsub` (with
//! durable subscriptions) and [`Fuzz`], a small service with every method kind (unary,
//! fallible, one-way with each acknowledgement, streaming). The harness connects over
//! `inproc:`, completes a valid handshake, writes the input as the rest of the byte
//! stream, closes its sending side and reads everything the server answers until it
//! closes the connection.
//!
//! Checked: no panic anywhere (handlers, the server, the queue manager); the server ends
//! the connection after the input ends (no hang); everything it sends is a well-formed
//! frame of a kind a server may send, and its `Error` frames carry known codes.

use std::sync::Arc;

use bytes::BytesMut;
use futures::StreamExt;
use mw_core::frame::{FrameCodec, FrameKind};
use mw_core::handshake::{client_handshake, MAX_VERSION, MIN_VERSION};
use mw_core::{connect, Address, Listener};
use mw_pubsub::remote::{PubSubServer, PubSubService};
use mw_pubsub::Bus;
use mw_queue::remote::{QueueServiceImpl, QueueServiceServer};
use mw_queue::QueueManager;
use mw_rpc::{Server, ServerConfig, Streaming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

use crate::common::block_on;

/// A service with one method of every kind, for the server to dispatch to.
#[mw_rpc::service(name = "fuzz", version = 1)]
pub trait Fuzz {
    /// Answers its argument.
    async fn echo(&self, v: Vec<u8>) -> Vec<u8>;
    /// `a + b`, or an application error on overflow.
    async fn add(&self, a: u64, b: u64) -> Result<u64, String>;
    /// One-way, never acknowledged.
    #[oneway]
    async fn note(&self, s: String);
    /// One-way, acknowledged on receipt.
    #[oneway(receipt)]
    async fn hint(&self, n: u32);
    /// One-way, acknowledged on delivery.
    #[oneway(delivery)]
    async fn touch(&self, n: u32);
    /// Streams `0..n` (at most 100 items).
    async fn count(&self, n: u32) -> Streaming<u32>;
}

/// [`Fuzz`]'s implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct FuzzImpl;

impl Fuzz for FuzzImpl {
    async fn echo(&self, v: Vec<u8>) -> Vec<u8> {
        v
    }
    async fn add(&self, a: u64, b: u64) -> Result<u64, String> {
        a.checked_add(b).ok_or_else(|| "overflow".to_string())
    }
    async fn note(&self, _s: String) {}
    async fn hint(&self, _n: u32) {}
    async fn touch(&self, _n: u32) {}
    async fn count(&self, n: u32) -> Streaming<u32> {
        futures::stream::iter(0..n.min(100)).boxed()
    }
}

/// Frame kinds a server may send.
fn server_may_send(kind: FrameKind) -> bool {
    !matches!(
        kind,
        FrameKind::Request | FrameKind::Oneway | FrameKind::Cancel | FrameKind::Credit
    )
}

/// Checks the server's byte stream: valid frames of allowed kinds with known error codes.
pub fn check_server_output(out: &[u8]) {
    let mut buf = BytesMut::from(out);
    let mut codec = FrameCodec::default();
    while !buf.is_empty() {
        let frame = match codec.decode(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => panic!(
                "server output ends inside a frame: {} bytes left",
                buf.len()
            ),
            Err(e) => panic!("server sent a malformed frame: {e}"),
        };
        assert!(
            server_may_send(frame.kind),
            "server sent a {:?} frame",
            frame.kind
        );
        if frame.kind == FrameKind::Error {
            assert!(frame.body.len() >= 2, "error frame without a code");
            let code = u16::from_be_bytes([frame.body[0], frame.body[1]]);
            assert!((1..=10).contains(&code), "unknown error code {code}");
        }
    }
}

/// Starts the server on a fresh in-process address, writes `input` after a valid
/// handshake, and returns everything the server sent back.
pub async fn exchange(dir: &std::path::Path, input: &[u8]) -> Vec<u8> {
    let qm = QueueManager::open(dir, crate::queue_recovery::config())
        .await
        .expect("open queue manager");
    let bus = Bus::default();
    let pubsub = PubSubService::with_durable(bus.clone(), qm.clone(), dir).expect("pubsub service");
    let server = Server::builder()
        .config(ServerConfig {
            drain_timeout: std::time::Duration::from_secs(5),
            ..ServerConfig::default()
        })
        .add(QueueServiceServer::new(QueueServiceImpl::new(qm.clone())))
        .add(PubSubServer::new(pubsub))
        .add(FuzzServer::new(FuzzImpl))
        .build();
    let listener = Listener::bind(&"inproc:0".parse::<Address>().expect("address"))
        .await
        .expect("bind inproc");
    let addr = listener.local_addr().clone();
    let running = server.spawn_on(listener);
    let mut stream = connect(&addr).await.expect("connect inproc");
    client_handshake(&mut stream, MIN_VERSION, MAX_VERSION)
        .await
        .expect("handshake with a real server");
    let (mut r, mut w) = tokio::io::split(stream);
    let input = Arc::<[u8]>::from(input);
    let writer = async move {
        // The server may close early (bad frame): then writing fails, which is fine.
        let _ = w.write_all(&input).await;
        let _ = w.shutdown().await;
    };
    let reader = async move {
        let mut out = Vec::new();
        let _ = r.read_to_end(&mut out).await;
        out
    };
    let ((), out) = tokio::join!(writer, reader);
    running.shutdown().await;
    bus.close();
    qm.close().await.expect("close queue manager");
    out
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let dir = crate::common::tempdir();
    let out = block_on(exchange(dir.path(), data));
    check_server_output(&out);
}
