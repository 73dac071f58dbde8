//! Calls through generated clients over TCP, Unix sockets and in-process pipes:
//! round trips of every argument shape, deferred calls, hundreds of concurrent calls on
//! one connection each getting its own answer, typed application errors, and a
//! panicking handler that fails only its own call.

#[macro_use]
mod common;

use common::{start_server, within, Transport};
use mw::rpc::{RpcError, ServerConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: i32,
    pub y: i32,
    pub label: String,
}

/// The application error of `checked_div`, with data, to check the exact value arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    DivideByZero { dividend: i64 },
    Overflow,
}

#[mw::service(name = "calls", version = 1)]
pub trait Calls {
    async fn add(&self, a: u64, b: u64) -> u64;
    async fn hello(&self) -> String;
    async fn shout(&self, s: String) -> String;
    async fn sum(&self, v: Vec<u32>) -> u64;
    async fn mirror(&self, p: Point) -> Point;
    async fn nothing(&self);
    async fn checked_div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// Answers `tag * 3` after yielding `tag % 7` times, so replies finish out of order.
    async fn tagged(&self, tag: u64) -> u64;
    async fn explode(&self, msg: String) -> u64;
}

struct CallsImpl;

impl Calls for CallsImpl {
    async fn add(&self, a: u64, b: u64) -> u64 {
        a + b
    }
    async fn hello(&self) -> String {
        "hello".into()
    }
    async fn shout(&self, s: String) -> String {
        s.to_uppercase()
    }
    async fn sum(&self, v: Vec<u32>) -> u64 {
        v.into_iter().map(u64::from).sum()
    }
    async fn mirror(&self, p: Point) -> Point {
        Point {
            x: -p.x,
            y: -p.y,
            label: format!("{}'", p.label),
        }
    }
    async fn nothing(&self) {}
    async fn checked_div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            return Err(MathError::DivideByZero { dividend: a });
        }
        a.checked_div(b).ok_or(MathError::Overflow)
    }
    async fn tagged(&self, tag: u64) -> u64 {
        for _ in 0..tag % 7 {
            tokio::task::yield_now().await;
        }
        tag * 3
    }
    async fn explode(&self, msg: String) -> u64 {
        panic!("{msg}")
    }
}

async fn server_and_client(t: Transport) -> (common::TestServer, CallsClient) {
    let server = start_server(t, ServerConfig::default(), |b| {
        b.add(CallsServer::new(CallsImpl))
    })
    .await;
    let client = within("connect", CallsClient::connect(&server.addr))
        .await
        .expect("connect");
    (server, client)
}

async fn round_trips_of_every_argument_shape(t: Transport) {
    let (server, c) = server_and_client(t).await;
    assert_eq!(c.add(40, 2).await.unwrap(), 42);
    assert_eq!(c.add(u64::MAX - 1, 1).await.unwrap(), u64::MAX);
    assert_eq!(c.hello().await.unwrap(), "hello");
    assert_eq!(c.shout("grüß dich".into()).await.unwrap(), "GRÜSS DICH");
    assert_eq!(c.shout(String::new()).await.unwrap(), "");
    assert_eq!(
        c.sum(vec![1, 2, 3, u32::MAX]).await.unwrap(),
        6 + 4_294_967_295
    );
    assert_eq!(c.sum(Vec::new()).await.unwrap(), 0);
    // A large argument and result: well above one socket buffer, far below the frame limit.
    let big = "x".repeat(1 << 20);
    assert_eq!(c.shout(big).await.unwrap(), "X".repeat(1 << 20));
    let p = Point {
        x: 3,
        y: -4,
        label: "p".into(),
    };
    assert_eq!(
        c.mirror(p).await.unwrap(),
        Point {
            x: -3,
            y: 4,
            label: "p'".into()
        }
    );
    c.nothing().await.unwrap();
    assert_eq!(c.checked_div(7, 2).await.unwrap(), 3);
    server.shutdown().await;
}

async fn deferred_calls_resolve_to_their_own_results(t: Transport) {
    let (server, c) = server_and_client(t).await;
    // Start several calls before awaiting any of them, then await in reverse order.
    let h1 = c.start_add(1, 1).await.unwrap();
    let h2 = c.start_shout("abc".into()).await.unwrap();
    let h3 = c.start_checked_div(9, 0).await.unwrap();
    let h4 = c.start_hello().await.unwrap();
    assert_ne!(h1.id(), h2.id());
    assert_eq!(h4.await.unwrap(), "hello");
    match h3.await {
        Err(RpcError::Application(MathError::DivideByZero { dividend: 9 })) => {}
        other => panic!("expected DivideByZero {{ dividend: 9 }}, got {other:?}"),
    }
    assert_eq!(h2.await.unwrap(), "ABC");
    assert_eq!(h1.await.unwrap(), 2);
    server.shutdown().await;
}

async fn five_hundred_concurrent_calls_each_get_their_own_answer(t: Transport) {
    let (server, c) = server_and_client(t).await;
    let tasks: Vec<_> = (0..500u64)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { (i, c.tagged(i).await) })
        })
        .collect();
    let mut seen = 0;
    for task in tasks {
        let (i, r) = within("concurrent call", task).await.unwrap();
        assert_eq!(r.unwrap(), i * 3, "answer of call {i}");
        seen += 1;
    }
    assert_eq!(seen, 500);
    // The same through unspawned futures polled together on one task.
    let calls = (0..500u64).map(|i| {
        let c = c.clone();
        async move { (i, c.add(i, 1000).await) }
    });
    for (i, r) in within("joined calls", futures::future::join_all(calls)).await {
        assert_eq!(r.unwrap(), i + 1000);
    }
    server.shutdown().await;
}

async fn application_error_arrives_as_the_exact_value(t: Transport) {
    let (server, c) = server_and_client(t).await;
    match c.checked_div(-5, 0).await {
        Err(RpcError::Application(e)) => {
            assert_eq!(e, MathError::DivideByZero { dividend: -5 })
        }
        other => panic!("expected an application error, got {other:?}"),
    }
    match c.checked_div(i64::MIN, -1).await {
        Err(RpcError::Application(e)) => assert_eq!(e, MathError::Overflow),
        other => panic!("expected Overflow, got {other:?}"),
    }
    // The connection is fine afterwards.
    assert_eq!(c.checked_div(-6, 3).await.unwrap(), -2);
    server.shutdown().await;
}

async fn panicking_handler_fails_only_its_call(t: Transport) {
    let (server, c) = server_and_client(t).await;
    let other = c.start_add(2, 3).await.unwrap();
    match c.explode("kaboom 17".into()).await {
        Err(RpcError::Internal(msg)) => assert!(msg.contains("kaboom 17"), "{msg}"),
        other => panic!("expected Internal, got {other:?}"),
    }
    assert_eq!(other.await.unwrap(), 5);
    assert_eq!(c.add(1, 2).await.unwrap(), 3);
    server.shutdown().await;
}

per_transport!(
    round_trips_of_every_argument_shape,
    deferred_calls_resolve_to_their_own_results,
    five_hundred_concurrent_calls_each_get_their_own_answer,
    application_error_arrives_as_the_exact_value,
    panicking_handler_fails_only_its_call,
);
