//! Liveness pings: a server that goes silent is noticed by the keepalive, and calls
//! waiting on it fail with `Disconnected` long before their own deadlines.

use std::time::{Duration, Instant};

use mw::demo::{IncrementClient, IncrementImpl, IncrementServer};
use mw::rpc::{Channel, ClientConfig, RpcError, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts one connection, completes the handshake, then reads and never answers.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 8];
        s.read_exact(&mut hello).await.unwrap();
        s.write_all(b"mwrp\x00\x01\x00\x00").await.unwrap();
        let mut sink = vec![0u8; 4096];
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_is_declared_dead_by_keepalive() {
    let (addr, server) = silent_server().await;
    let config = ClientConfig {
        keepalive: Some(Duration::from_millis(100)),
        default_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let client = IncrementClient::new(Channel::connect_with(&addr, config).await.unwrap());
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(20), client.inc(1))
        .await
        .expect("the keepalive ends the call, not the 60 s deadline")
        .unwrap_err();
    assert!(matches!(err, RpcError::Disconnected), "{err}");
    assert!(client.channel().is_closed());
    assert!(started.elapsed() < Duration::from_secs(20));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_does_not_disturb_a_healthy_connection() {
    let server = Server::builder()
        .add(IncrementServer::new(IncrementImpl))
        .build()
        .spawn("127.0.0.1:0")
        .await
        .unwrap();
    let config = ClientConfig {
        keepalive: Some(Duration::from_millis(20)),
        ..Default::default()
    };
    let client = IncrementClient::new(
        Channel::connect_with(&server.local_addr().to_string(), config)
            .await
            .unwrap(),
    );
    // Enough calls to span many keepalive rounds; every one must succeed.
    let started = Instant::now();
    let mut calls = 0u64;
    while calls < 20_000 && (calls < 200 || started.elapsed() < Duration::from_millis(200)) {
        assert_eq!(client.inc(calls).await.unwrap(), calls + 1);
        calls += 1;
    }
    assert!(!client.channel().is_closed());
    server.shutdown().await;
}
