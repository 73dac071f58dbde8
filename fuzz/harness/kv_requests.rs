//! mw-kv's service fed arbitrary input, two ways (the first byte chooses):
//!
//! - **frames** (first byte even): a real `mw.kv` node (memory engine) and a ring node's
//!   `mw.kv.ring`/`mw.kv.replica` services over the in-process transport, fed arbitrary
//!   frames after a valid handshake. Checked: no panic, the server ends the connection
//!   after the input, everything it sends is a well-formed frame it may send.
//! - **operations** (first byte odd): the rest decodes into a sequence of `Kv` calls
//!   with arbitrary keys, values, sizes, TTLs (any u64 of milliseconds), versions, incr
//!   deltas, scan limits and watch revisions. Checked: no panic; every refusal is a typed
//!   `KvError`; a successful put reads back; incr agrees with a model of the counter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mw::core::handshake::{client_handshake, MAX_VERSION, MIN_VERSION};
use mw::core::{connect, Address, Listener};
use mw::rpc::{Server, ServerConfig};
use mw_kv::{
    Config, DeleteOptions, Durability, Kv, KvError, KvNode, KvServiceServer, PutOptions, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{block_on, Cursor};

async fn frames(input: &[u8]) -> Vec<u8> {
    let kv = Kv::memory(Config::default());
    let server = Server::builder()
        .config(ServerConfig {
            drain_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        })
        .add(KvServiceServer::new(KvNode::new(kv.clone())))
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
        let _ = w.write_all(&input).await;
        let _ = w.shutdown().await;
    };
    let reader = async move {
        let mut out = Vec::new();
        let _ = r.read_to_end(&mut out).await;
        out
    };
    let ((), out) = tokio::join!(writer, reader);
    running.begin_shutdown();
    kv.end_watches();
    running.shutdown().await;
    kv.close().await.expect("close");
    out
}

fn key(c: &mut Cursor<'_>) -> Bytes {
    // Mostly a few short keys (so operations meet), sometimes empty or huge.
    match c.u8() % 16 {
        0 => Bytes::new(),
        1 => Bytes::from(vec![b'k'; 4096 + (c.u8() as usize % 3)]),
        n => Bytes::from(format!("k{}", n % 5)),
    }
}

fn value(c: &mut Cursor<'_>) -> Bytes {
    match c.u8() % 16 {
        0 => Bytes::from(vec![7u8; (1 << 20) + (c.u8() as usize % 3)]),
        1 => Bytes::from(c.u64().to_string()),
        n => Bytes::from(vec![n; n as usize]),
    }
}

async fn operations(data: &[u8]) {
    let kv = Kv::memory(Config::default());
    let mut c = Cursor::new(data);
    // What each key holds, as far as the harness knows (None: absent).
    let mut model: HashMap<Bytes, Option<Bytes>> = HashMap::new();
    for _ in 0..64 {
        if c.is_empty() {
            break;
        }
        match c.u8() % 8 {
            0 | 1 => {
                let (k, v) = (key(&mut c), value(&mut c));
                let ttl = match c.u8() % 4 {
                    0 => Some(Duration::from_millis(c.u64())),
                    _ => None,
                };
                let if_version = match c.u8() % 4 {
                    0 => Some(Version(c.u64() % 8)),
                    _ => None,
                };
                let durability = if c.u8().is_multiple_of(2) {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                let opts = PutOptions {
                    if_version,
                    ttl,
                    durability,
                };
                match kv.put(k.clone(), v.clone(), opts).await {
                    Ok(_) => {
                        // A TTL of at least a day cannot have passed.
                        if ttl.is_none_or(|t| t >= Duration::from_secs(86_400)) {
                            let got = kv.get(k.clone()).await.expect("get after put");
                            assert_eq!(got.map(|g| g.value), Some(v.clone()), "put reads back");
                            model.insert(k, Some(v));
                        } else {
                            model.remove(&k);
                        }
                    }
                    Err(
                        KvError::EmptyKey
                        | KvError::KeyTooLarge { .. }
                        | KvError::ValueTooLarge { .. }
                        | KvError::InvalidTtl(_)
                        | KvError::VersionConflict { .. },
                    ) => {}
                    Err(e) => panic!("unexpected put error: {e}"),
                }
            }
            2 => {
                let k = key(&mut c);
                match kv.delete(k.clone(), DeleteOptions::default()).await {
                    Ok(_) => {
                        model.insert(k, None);
                    }
                    Err(KvError::EmptyKey | KvError::KeyTooLarge { .. }) => {}
                    Err(e) => panic!("unexpected delete error: {e}"),
                }
            }
            3 => {
                let (k, delta) = (key(&mut c), c.u64() as i64);
                let before = kv.get(k.clone()).await.ok().flatten();
                match kv.incr(k.clone(), delta).await {
                    Ok(n) => {
                        let old = before
                            .map(|b| {
                                std::str::from_utf8(&b.value)
                                    .unwrap()
                                    .parse::<i64>()
                                    .unwrap()
                            })
                            .unwrap_or(0);
                        assert_eq!(Some(n), old.checked_add(delta), "incr adds");
                        model.insert(k, Some(Bytes::from(n.to_string())));
                    }
                    Err(
                        KvError::EmptyKey
                        | KvError::KeyTooLarge { .. }
                        | KvError::NotAnInteger
                        | KvError::Overflow,
                    ) => {}
                    Err(e) => panic!("unexpected incr error: {e}"),
                }
            }
            4 => {
                let (prefix, limit) = (key(&mut c), c.u32() % 20_000);
                match kv.scan(prefix, None, limit) {
                    Ok(mut s) => {
                        let mut prev: Option<Bytes> = None;
                        while let Some(item) = s.next().await {
                            let e = item.expect("scan item");
                            assert!(prev.as_ref().is_none_or(|p| p < &e.key), "key order");
                            prev = Some(e.key);
                        }
                    }
                    Err(KvError::ScanTooLarge { .. }) => {}
                    Err(e) => panic!("unexpected scan error: {e}"),
                }
            }
            5 => {
                let from = match c.u8() % 3 {
                    0 => None,
                    1 => Some(c.u64()),
                    _ => Some(c.u64() % 8),
                };
                let mut w = kv.watch(key(&mut c), from);
                // Read what is there without waiting for the future.
                let _ = tokio::time::timeout(Duration::from_millis(1), w.next()).await;
            }
            6 => {
                let _ = kv.reap_expired().await.expect("reap");
            }
            _ => {
                let k = key(&mut c);
                if let Ok(Some(v)) = kv.get(k.clone()).await {
                    if let Some(Some(expected)) = model.get(&k) {
                        assert_eq!(&v.value, expected, "get agrees with the last write");
                    }
                }
            }
        }
    }
    kv.close().await.expect("close");
}

/// Checks the server's byte stream: whole, well-formed frames of kinds a server sends.
fn check_server_output(out: &[u8]) {
    use mw::core::frame::{FrameCodec, FrameKind};
    use tokio_util::codec::Decoder;
    let mut buf = bytes::BytesMut::from(out);
    let mut codec = FrameCodec::default();
    while !buf.is_empty() {
        let frame = match codec.decode(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => panic!("server output ends inside a frame"),
            Err(e) => panic!("server sent a malformed frame: {e}"),
        };
        assert!(
            !matches!(
                frame.kind,
                FrameKind::Request | FrameKind::Oneway | FrameKind::Cancel | FrameKind::Credit
            ),
            "server sent a {:?} frame",
            frame.kind
        );
    }
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => block_on(operations(rest)),
        Some((_, rest)) => {
            let out = block_on(frames(rest));
            check_server_output(&out);
        }
        None => {}
    }
}
