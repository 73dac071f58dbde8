//! Limits against exhaustion, over real TCP sockets: connections beyond the server's
//! limit, or beyond its limit per client address, complete the handshake and are told
//! `server busy: ...` (OVERLOADED) while the admitted clients keep being served, also
//! under a flood; a freed slot admits the next client; and an idle-connection timeout
//! closes connections that hold nothing, never one with a call in flight.

#[allow(unused_macros)]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    decode_frames, error_of, raw_handshake, read_until_closed, start_server, within, Gate,
    Transport,
};
use mw::core::FrameKind;
use mw::rpc::{RpcError, ServerConfig};

#[mw::service(name = "limits", version = 1)]
pub trait Limits {
    async fn ping(&self, n: u64) -> u64;
    /// Waits until the test opens the gate.
    async fn wait(&self);
}

struct LimitsImpl(Arc<Gate>);

impl Limits for LimitsImpl {
    async fn ping(&self, n: u64) -> u64 {
        n
    }
    async fn wait(&self) {
        self.0.wait().await;
    }
}

async fn server(config: ServerConfig, gate: Arc<Gate>) -> common::TestServer {
    start_server(Transport::Tcp, config, |b| {
        b.add(LimitsServer::new(LimitsImpl(gate)))
    })
    .await
}

/// What a refused raw connection to `addr` was told: the single `Error` frame's message.
async fn refusal(addr: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = within("connect", mw::core::connect(&addr.parse().unwrap()))
        .await
        .unwrap();
    s.write_all(&common::HELLO_V1).await.unwrap();
    let mut reply = [0u8; 8];
    within("handshake reply", s.read_exact(&mut reply))
        .await
        .unwrap();
    assert_eq!(&reply, b"mwrp\x00\x01\x00\x00", "the handshake completes");
    let closed = read_until_closed(&mut s, "refused connection").await;
    let frames = decode_frames(&closed.received);
    assert_eq!(frames.len(), 1, "{frames:?}");
    let (code, message) = error_of(&frames[0]);
    assert_eq!(code, 7, "OVERLOADED: {message}");
    message
}

#[tokio::test]
async fn over_the_connection_limit_a_client_is_told_and_admitted_ones_keep_working() {
    let config = ServerConfig {
        max_connections: 3,
        ..ServerConfig::default()
    };
    let s = server(config, Gate::new()).await;
    let a = LimitsClient::connect(&s.addr).await.unwrap();
    let _b = raw_handshake(&s).await;
    let _c = raw_handshake(&s).await;
    assert_eq!(
        refusal(s.addr.clone()).await,
        "server busy: connection limit 3 reached; try again later"
    );
    // The typed error a client sees.
    match LimitsClient::connect(&s.addr).await {
        Ok(c) => match within("refused call", c.ping(1)).await {
            Err(RpcError::Overloaded(m)) => assert!(m.contains("connection limit 3"), "{m}"),
            other => panic!("expected Overloaded, got {other:?}"),
        },
        Err(RpcError::Overloaded(m)) => assert!(m.contains("connection limit 3"), "{m}"),
        Err(e) => panic!("expected Overloaded, got {e:?}"),
    }
    assert_eq!(within("admitted call", a.ping(7)).await.unwrap(), 7);
    s.shutdown().await;
}

#[tokio::test]
async fn per_address_limit_refuses_a_flood_and_a_freed_slot_admits_the_next() {
    let config = ServerConfig {
        max_connections_per_ip: 4,
        ..ServerConfig::default()
    };
    let s = server(config, Gate::new()).await;
    let admitted = LimitsClient::connect(&s.addr).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(raw_handshake(&s).await);
    }
    // A flood of 40 more from the same address, all at once, while the admitted client
    // keeps calling.
    let flood: Vec<_> = (0..40)
        .map(|_| tokio::spawn(refusal(s.addr.clone())))
        .collect();
    for n in 0..200 {
        assert_eq!(
            within("call under flood", admitted.ping(n)).await.unwrap(),
            n
        );
    }
    for f in flood {
        let m = within("flood refusal", f).await.unwrap();
        assert_eq!(
            m,
            "server busy: 4 connections from 127.0.0.1 already; try again later"
        );
    }
    // Free one slot: the next connection is admitted once the server has seen it go.
    drop(held.pop());
    let next = within("a freed slot admits the next client", async {
        for _ in 0..10_000 {
            let c = LimitsClient::connect(&s.addr).await.unwrap();
            match c.ping(1).await {
                Ok(_) => return c,
                Err(RpcError::Overloaded(_)) => tokio::task::yield_now().await,
                Err(e) => panic!("{e:?}"),
            }
        }
        panic!("no slot freed after 10,000 attempts")
    })
    .await;
    assert_eq!(next.ping(2).await.unwrap(), 2);
    s.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed_but_never_one_with_a_call_in_flight() {
    let gate = Gate::new();
    let config = ServerConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..ServerConfig::default()
    };
    let s = server(config, gate.clone()).await;
    // Busy: a call in flight from the start.
    let busy = LimitsClient::connect(&s.addr).await.unwrap();
    let waiting = tokio::spawn({
        let busy = busy.clone();
        async move { busy.wait().await }
    });
    // Idle: a handshake and nothing else; the server says GoAway and closes.
    let mut idle = raw_handshake(&s).await;
    let closed = read_until_closed(&mut idle, "idle connection").await;
    let frames = decode_frames(&closed.received);
    assert!(
        frames.iter().any(|f| f.kind == FrameKind::GoAway),
        "{frames:?}"
    );
    // The busy connection, open longer than the idle one was, is still served.
    gate.open();
    within("the waiting call", waiting).await.unwrap().unwrap();
    assert_eq!(within("busy ping", busy.ping(5)).await.unwrap(), 5);
    s.shutdown().await;
}
