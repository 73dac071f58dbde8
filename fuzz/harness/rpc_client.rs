//! mw-rpc's client decoding replies from a hostile server.
//!
//! A fake server on `inproc:` completes the handshake, waits until the client has sent
//! its five calls (ids 1 to 5: `fuzz.echo`, `fuzz.add`, `mw.queue.send`, a `mw.queue`
//! `consume` stream and a `mw.pubsub` `subscribe` stream), then writes the input as its
//! byte stream and closes. The client decodes whatever arrives: replies, errors, acks,
//! stream items and ends, credits, pings, frames for unknown ids, garbage.
//!
//! Checked: no panic; every call and stream finishes (with a value or a typed error) once
//! the server has closed, so nothing hangs.

use futures::StreamExt;
use mw_core::frame::{FrameCodec, FrameKind};
use mw_core::handshake::{server_handshake, MAX_VERSION, MIN_VERSION};
use mw_core::{Address, Listener};
use mw_pubsub::remote::PubSubClient;
use mw_pubsub::SlowConsumerPolicy;
use mw_queue::remote::QueueServiceClient;
use mw_rpc::{Channel, ClientConfig};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

use crate::common::block_on;
use crate::rpc_server::FuzzClient;

/// Calls the client makes before the fake server answers.
pub const CALLS: usize = 5;

async fn fake_server(mut listener: Listener, input: Vec<u8>) {
    let Ok((mut stream, _)) = listener.accept().await else {
        return;
    };
    if server_handshake(&mut stream, MIN_VERSION, MAX_VERSION)
        .await
        .is_err()
    {
        return;
    }
    let (r, mut w) = tokio::io::split(stream);
    let mut frames = FramedRead::new(r, FrameCodec::default());
    let mut calls = 0;
    while calls < CALLS {
        match frames.next().await {
            Some(Ok(f)) if f.kind == FrameKind::Request => calls += 1,
            Some(Ok(_)) => {}
            _ => return,
        }
    }
    let _ = w.write_all(&input).await;
    let _ = w.shutdown().await;
}

async fn drain<T>(mut s: impl futures::Stream<Item = T> + Unpin) {
    let mut n = 0;
    while s.next().await.is_some() {
        n += 1;
        assert!(
            n <= 100_000,
            "a stream kept yielding after its server closed"
        );
    }
}

/// Runs the client against a fake server that answers with `input`.
pub async fn exchange(input: &[u8]) {
    let listener = Listener::bind(&"inproc:0".parse::<Address>().expect("address"))
        .await
        .expect("bind inproc");
    let addr = listener.local_addr().to_string();
    let server = tokio::spawn(fake_server(listener, input.to_vec()));
    let channel = Channel::connect_with(&addr, ClientConfig::default())
        .await
        .expect("connect to the fake server");
    let fuzz = FuzzClient::new(channel.clone());
    let queue = QueueServiceClient::new(channel.clone());
    let pubsub = PubSubClient::new(channel.clone());
    let echo = fuzz.start_echo(vec![1, 2, 3]).await.expect("call 1 sent");
    let add = fuzz.start_add(1, 2).await.expect("call 2 sent");
    let send = queue
        .start_send(
            "q".to_string(),
            mw_queue::Message::new(bytes::Bytes::from_static(b"x")),
        )
        .await
        .expect("call 3 sent");
    let consume = queue
        .consume("q".to_string(), 10, None, None)
        .await
        .expect("call 4 sent");
    let subscribe = pubsub
        .subscribe("a.>".to_string(), 16, SlowConsumerPolicy::DropOldest)
        .await
        .expect("call 5 sent");
    let _ = tokio::join!(echo, add, send, drain(consume), drain(subscribe));
    drop((fuzz, queue, pubsub, channel));
    let _ = server.await;
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    block_on(exchange(data));
}
