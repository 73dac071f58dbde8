//! Keeps PROTOCOL.md (the wire specification at the repository root) honest.
//!
//! Every ```` ```hex NAME ```` block of the document is a byte string that this file
//! either builds with the real encoders (`mw_core::frame::encode_with`,
//! `mw_rpc::wire::put_call_header`, the handshake functions, postcard) or captures from
//! real peers on 127.0.0.1:
//!
//! - a real [`Channel`] talking to a raw `TcpListener` that plays the server by hand;
//! - a raw `TcpStream` that plays the client by hand against a real [`Server`].
//!
//! The tables marked `<!-- check:NAME -->` (frame kinds, flags, error codes, defaults,
//! postcard examples) are parsed and compared with the constants of the implementation,
//! in both directions: a row the code does not know fails, and so does a constant the
//! table forgets. In a hex block, `#` starts a comment; everything else must be pairs of
//! hex digits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mw_core::frame::{encode_with, flags, FrameCodec, FrameKind, DEFAULT_MAX_FRAME_LEN};
use mw_core::{handshake, FrameError};
use mw_rpc::__private::{decode, stream, unary};
use mw_rpc::wire::{self, code};
use mw_rpc::{
    Channel, ClientConfig, Handler, MethodInfo, MethodKind, Server, ServerConfig, ServerError,
    Service, ServiceId, Streaming,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::Decoder;

const DOC: &str = include_str!("../../PROTOCOL.md");
const WIRE_RS: &str = include_str!("../src/wire.rs");
const FRAME_RS: &str = include_str!("../../mw-core/src/frame.rs");

/// Bounds every network wait so a broken peer fails the test instead of hanging it.
const IO_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Reading the document
// ---------------------------------------------------------------------------------------

/// Every ```` ```hex NAME ```` block, by name.
fn hex_blocks() -> BTreeMap<String, Vec<u8>> {
    let mut blocks = BTreeMap::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```hex") else {
            continue;
        };
        let name = name.trim().to_string();
        assert!(
            !name.is_empty(),
            "a ```hex block in PROTOCOL.md has no name"
        );
        let mut bytes = Vec::new();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("```hex {name} is not closed"));
            if line.trim() == "```" {
                break;
            }
            let data = line.split('#').next().unwrap();
            for token in data.split_whitespace() {
                assert!(
                    token.len() % 2 == 0 && token.chars().all(|c| c.is_ascii_hexdigit()),
                    "```hex {name}: {token:?} is not hex bytes (comments start with #)"
                );
                for i in (0..token.len()).step_by(2) {
                    bytes.push(u8::from_str_radix(&token[i..i + 2], 16).unwrap());
                }
            }
        }
        assert!(
            blocks.insert(name.clone(), bytes).is_none(),
            "two ```hex blocks are named {name}"
        );
    }
    blocks
}

fn block(name: &str) -> Vec<u8> {
    hex_blocks()
        .remove(name)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no ```hex {name} block"))
}

/// The data rows of the table that follows `<!-- check:NAME -->`, cells trimmed and
/// stripped of backticks.
fn table(name: &str) -> Vec<Vec<String>> {
    let marker = format!("<!-- check:{name} -->");
    let start = DOC
        .find(&marker)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no {marker}"));
    assert_eq!(
        DOC.matches(&marker).count(),
        1,
        "{marker} appears more than once"
    );
    let rows: Vec<Vec<String>> = DOC[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(|l| {
            let l = l.trim();
            l[1..l.len() - 1]
                .split('|')
                .map(|c| c.trim().replace('`', ""))
                .collect()
        })
        .collect();
    assert!(rows.len() >= 3, "{marker} is not followed by a table");
    assert!(
        rows[1].iter().all(|c| c.chars().all(|c| "-: ".contains(c))),
        "{marker}: second row is not a separator"
    );
    rows.into_iter().skip(2).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[track_caller]
fn assert_bytes(name: &str, actual: &[u8]) {
    let documented = block(name);
    assert!(
        actual == documented.as_slice(),
        "```hex {name} in PROTOCOL.md differs from the implementation\n  document: {}\n  actual:   {}",
        hex(&documented),
        hex(actual)
    );
}

// ---------------------------------------------------------------------------------------
// Building bytes with the implementation
// ---------------------------------------------------------------------------------------

fn frame(kind: FrameKind, frame_flags: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_with(&mut b, kind, frame_flags, id, DEFAULT_MAX_FRAME_LEN, |b| {
        b.extend_from_slice(body);
        Ok::<_, FrameError>(())
    })
    .unwrap();
    b.to_vec()
}

fn call_frame<A: Serialize>(
    kind: FrameKind,
    frame_flags: u8,
    id: u64,
    deadline_ms: u32,
    svc: ServiceId,
    method: u32,
    args: &A,
) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_with(&mut b, kind, frame_flags, id, DEFAULT_MAX_FRAME_LEN, |b| {
        wire::put_call_header(b, deadline_ms, svc.name, svc.version, method);
        b.extend_from_slice(&postcard::to_allocvec(args).unwrap());
        Ok::<_, FrameError>(())
    })
    .unwrap();
    b.to_vec()
}

fn error_frame(id: u64, code: u16, message: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    wire::error_body(&mut body, code, message);
    frame(FrameKind::Error, 0, id, &body)
}

fn postcard<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap()
}

// ---------------------------------------------------------------------------------------
// The example service: what `#[service(name = "inc", version = 1)]` would generate for
//
//     trait Increment {
//         async fn inc(&self, n: u64) -> u64;                   // method 1
//         async fn count(&self, n: u32) -> Streaming<u32>;      // method 2: 1, 2, .., n
//         #[oneway(receipt)] async fn note(&self, line: String); // method 3
//         async fn checked_inc(&self, n: u64) -> Result<u64, String>; // method 4
//     }
// ---------------------------------------------------------------------------------------

const INC: ServiceId = ServiceId::new("inc", 1);

struct Inc;

impl Service for Inc {
    fn id(&self) -> ServiceId {
        INC
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &[
            MethodInfo {
                id: 1,
                name: "inc",
                kind: MethodKind::Unary,
            },
            MethodInfo {
                id: 2,
                name: "count",
                kind: MethodKind::Stream,
            },
            MethodInfo {
                id: 3,
                name: "note",
                kind: MethodKind::Oneway(mw_rpc::Ack::Receipt),
            },
            MethodInfo {
                id: 4,
                name: "checked_inc",
                kind: MethodKind::Unary,
            },
        ]
    }
    fn call(&self, method: u32, args: Bytes) -> Result<Handler, ServerError> {
        match method {
            1 => {
                let (n,): (u64,) = decode(&args)?;
                Ok(unary(async move { n + 1 }))
            }
            2 => {
                let (n,): (u32,) = decode(&args)?;
                Ok(stream(async move {
                    Box::pin(futures::stream::iter(1..=n)) as Streaming<u32>
                }))
            }
            3 => {
                let (_line,): (String,) = decode(&args)?;
                Ok(unary(async {}))
            }
            4 => {
                let (n,): (u64,) = decode(&args)?;
                Ok(unary(async move {
                    n.checked_add(1).ok_or_else(|| "overflow".to_string())
                }))
            }
            m => Err(ServerError::UnknownMethod(m)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw socket helpers (what a non-Rust peer does)
// ---------------------------------------------------------------------------------------

async fn read_exact_n<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    tokio::time::timeout(IO_LIMIT, r.read_exact(&mut b))
        .await
        .expect("peer too slow")
        .expect("read failed");
    b
}

/// One whole frame, length prefix included, exactly as it came off the socket.
async fn read_raw_frame<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut f = read_exact_n(r, 4).await;
    let len = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
    assert!(
        (10..=DEFAULT_MAX_FRAME_LEN).contains(&len),
        "bad length {len}"
    );
    f.extend(read_exact_n(r, len).await);
    f
}

async fn read_raw_frames<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> Vec<u8> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.extend(read_raw_frame(r).await);
    }
    all
}

async fn read_to_eof<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut b = Vec::new();
    tokio::time::timeout(IO_LIMIT, r.read_to_end(&mut b))
        .await
        .expect("peer did not close the connection")
        .expect("read failed");
    b
}

async fn spawn_server() -> mw_rpc::RunningServer {
    Server::builder()
        .add(Inc)
        .build()
        .spawn("127.0.0.1:0")
        .await
        .unwrap()
}

async fn raw_connect(server: &mw_rpc::RunningServer) -> TcpStream {
    TcpStream::connect(server.local_addr().to_string())
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Section 8: the inc(41) exchange
// ---------------------------------------------------------------------------------------

/// The handshake bytes come from the real handshake functions, the frames from the real
/// encoders; decoding them back checks the field-by-field annotations.
#[tokio::test]
async fn inc41_bytes_built_by_the_implementation_match_the_document() {
    // Client half of the handshake: run the real client against a pipe and record it.
    let (mut client_end, mut server_end) = tokio::io::duplex(1024);
    let client = tokio::spawn(async move {
        handshake::client_handshake(
            &mut client_end,
            handshake::MIN_VERSION,
            handshake::MAX_VERSION,
        )
        .await
    });
    let hello = read_exact_n(&mut server_end, 8).await;
    assert_bytes("client-hello", &hello);

    // Server half: feed that hello to the real server and record its answer.
    let (mut srv, mut peer) = tokio::io::duplex(1024);
    peer.write_all(&hello).await.unwrap();
    let agreed =
        handshake::server_handshake(&mut srv, handshake::MIN_VERSION, handshake::MAX_VERSION)
            .await
            .unwrap();
    assert_eq!(agreed, 1);
    let reply = read_exact_n(&mut peer, 8).await;
    assert_bytes("server-hello", &reply);
    server_end.write_all(&reply).await.unwrap();
    assert_eq!(client.await.unwrap().unwrap(), 1);

    // The Request frame.
    let request = call_frame(FrameKind::Request, 0, 1, 30_000, INC, 1, &(41u64,));
    assert_bytes("inc-request", &request);
    let f = FrameCodec::default()
        .decode(&mut BytesMut::from(&request[..]))
        .unwrap()
        .unwrap();
    assert_eq!((f.kind, f.flags, f.id), (FrameKind::Request, 0, 1));
    let (h, args) = wire::parse_call(f.body).unwrap();
    assert_eq!(
        h,
        wire::CallHeader {
            deadline_ms: 30_000,
            version: 1,
            method: 1,
            service: "inc".into()
        }
    );
    assert_eq!(decode::<(u64,)>(&args).unwrap(), (41,));

    // The Response frame.
    let response = frame(FrameKind::Response, 0, 1, &postcard(&42u64));
    assert_bytes("inc-response", &response);
}

/// A real `Channel` talks to a hand-played server: the bytes it sends are the
/// documented ones, and the documented replies satisfy it.
#[tokio::test]
async fn real_channel_sends_the_documented_bytes_to_a_hand_played_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake_server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let hello = read_exact_n(&mut s, 8).await;
        s.write_all(&block("server-hello")).await.unwrap();
        let request = read_raw_frame(&mut s).await;
        s.write_all(&block("inc-response")).await.unwrap();
        (hello, request)
    });
    let ch = Channel::connect(&addr.to_string())
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(30));
    let n: u64 = ch.call(INC, 1, &(41u64,)).await.unwrap();
    assert_eq!(n, 42);
    let (hello, request) = fake_server.await.unwrap();
    assert_bytes("client-hello", &hello);
    assert_bytes("inc-request", &request);
}

/// A hand-played client sends the documented bytes to a real `Server` and gets the
/// documented replies, for every example exchange of section 8.
#[tokio::test]
async fn real_server_answers_the_documented_bytes_of_a_hand_played_client() {
    let server = spawn_server().await;
    let mut s = raw_connect(&server).await;

    s.write_all(&block("client-hello")).await.unwrap();
    assert_bytes("server-hello", &read_exact_n(&mut s, 8).await);

    s.write_all(&block("inc-request")).await.unwrap();
    assert_bytes("inc-response", &read_raw_frame(&mut s).await);

    s.write_all(&block("unknown-method-request")).await.unwrap();
    assert_bytes("unknown-method-error", &read_raw_frame(&mut s).await);

    s.write_all(&block("ping")).await.unwrap();
    assert_bytes("pong", &read_raw_frame(&mut s).await);

    s.write_all(&block("oneway-receipt-request")).await.unwrap();
    assert_bytes("oneway-ack", &read_raw_frame(&mut s).await);

    s.write_all(&block("fallible-request")).await.unwrap();
    assert_bytes("fallible-response", &read_raw_frame(&mut s).await);

    s.write_all(&block("stream-request")).await.unwrap();
    assert_bytes("stream-replies", &read_raw_frames(&mut s, 4).await);

    server.shutdown().await;
    // Graceful shutdown: the server says GoAway (id 0) and closes.
    assert_bytes("goaway", &read_to_eof(&mut s).await);
}

/// The examples of section 8 are what the encoders produce, not only what the server
/// happens to accept.
#[test]
fn example_frames_are_what_the_encoders_produce() {
    assert_bytes(
        "unknown-method-request",
        &call_frame(FrameKind::Request, 0, 2, 30_000, INC, 9, &(41u64,)),
    );
    assert_bytes(
        "unknown-method-error",
        &error_frame(
            2,
            code::UNKNOWN_METHOD,
            "service inc v1 has no method number 9",
        ),
    );
    assert_bytes("ping", &frame(FrameKind::Ping, 0, 3, &[]));
    assert_bytes("pong", &frame(FrameKind::Pong, 0, 3, &[]));
    assert_bytes(
        "oneway-receipt-request",
        &call_frame(
            FrameKind::Oneway,
            flags::ACK_RECEIPT,
            4,
            30_000,
            INC,
            3,
            &("hi",),
        ),
    );
    assert_bytes("oneway-ack", &frame(FrameKind::Ack, 0, 4, &[]));
    assert_bytes(
        "fallible-request",
        &call_frame(FrameKind::Request, 0, 5, 30_000, INC, 4, &(u64::MAX,)),
    );
    assert_bytes(
        "fallible-response",
        &frame(
            FrameKind::Response,
            0,
            5,
            &postcard(&Err::<u64, String>("overflow".into())),
        ),
    );
    // Credit for exactly the three items: the StreamEnd needs none.
    let mut stream_request = call_frame(FrameKind::Request, flags::STREAM, 6, 0, INC, 2, &(3u32,));
    stream_request.extend(frame(FrameKind::Credit, 0, 6, &3u32.to_be_bytes()));
    assert_bytes("stream-request", &stream_request);
    let mut replies = Vec::new();
    for i in 1..=3u32 {
        replies.extend(frame(FrameKind::StreamItem, 0, 6, &postcard(&i)));
    }
    replies.extend(frame(FrameKind::StreamEnd, 0, 6, &[]));
    assert_bytes("stream-replies", &replies);
    assert_bytes("goaway", &frame(FrameKind::GoAway, 0, 0, &[]));
    assert_bytes(
        "overloaded-error",
        &error_frame(
            3,
            code::OVERLOADED,
            "1 calls running and 1 queued on this connection; the call was not run",
        ),
    );
    assert_bytes(
        "shutting-down-error",
        &error_frame(
            3,
            code::SHUTTING_DOWN,
            "server is shutting down; the call was not run",
        ),
    );
    assert_bytes(
        "id0-error",
        &error_frame(0, code::PROTOCOL, "call id 0 is reserved"),
    );
    assert_bytes(
        "duplicate-id-error",
        &error_frame(
            7,
            code::PROTOCOL,
            "call id 7 is already in use on this connection",
        ),
    );
    assert_bytes(
        "connection-limit-error",
        &error_frame(
            0,
            code::OVERLOADED,
            "server busy: connection limit 1 reached; try again later",
        ),
    );
    let max = DEFAULT_MAX_FRAME_LEN;
    assert_bytes("oversized-length", &((max + 1) as u32).to_be_bytes());
    assert_bytes(
        "oversized-error",
        &error_frame(
            0,
            code::PROTOCOL,
            &FrameError::TooLarge { len: max + 1, max }.to_string(),
        ),
    );
}

/// A declared length above the maximum: Error frame with id 0 and code PROTOCOL, then
/// the server closes the connection.
#[tokio::test]
async fn oversized_frame_gets_connection_error_then_close() {
    let server = spawn_server().await;
    let mut s = raw_connect(&server).await;
    s.write_all(&block("client-hello")).await.unwrap();
    assert_bytes("server-hello", &read_exact_n(&mut s, 8).await);
    s.write_all(&block("oversized-length")).await.unwrap();
    assert_bytes("oversized-error", &read_to_eof(&mut s).await);
    server.shutdown().await;
}

/// Disjoint versions: the refusal, with its text, then the server closes.
#[tokio::test]
async fn version_refusal_bytes_match_the_document() {
    let server = spawn_server().await;
    let mut s = raw_connect(&server).await;
    s.write_all(&block("refused-hello")).await.unwrap();
    assert_bytes("refusal", &read_to_eof(&mut s).await);
    server.shutdown().await;

    // The real client reports the server's text.
    let (mut a, mut b) = tokio::io::duplex(1024);
    let (c, _) = tokio::join!(
        handshake::client_handshake(&mut a, 2, 3),
        handshake::server_handshake(&mut b, handshake::MIN_VERSION, handshake::MAX_VERSION)
    );
    match c {
        Err(mw_core::CoreError::VersionRefused { reason }) => assert_eq!(
            reason,
            "server speaks protocol versions 1..=1, client offered 2..=3"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The Python snippet of section 9 uses the same bytes as the hex dump.
#[test]
fn python_snippet_is_present_and_speaks_version_1() {
    let start = DOC
        .find("```python")
        .expect("PROTOCOL.md has a Python snippet");
    let snippet = &DOC[start..];
    let snippet = &snippet[..snippet[3..].find("```").unwrap() + 3];
    for needle in [
        "import socket",
        "import struct",
        "b\"mwrp\"",
        "struct.pack(\">HH\", 1, 1)",
        "\">IBBQ\"",
        "\">IIIB\"",
    ] {
        assert!(snippet.contains(needle), "Python snippet lacks {needle}");
    }
}

// ---------------------------------------------------------------------------------------
// Behaviour a raw client sees: refusals, flow control, shutdown (sections 4.5-4.7, 6.3)
// ---------------------------------------------------------------------------------------

/// A second service for the behaviour tests; not part of the document's example.
///
/// 1 `wait()` blocks until the test adds a permit to the gate; 2 `big(n) -> Vec<u8>`;
/// 3 `big_items(n) -> Streaming<Vec<u8>>` (one item of `n` bytes); 4 `boom()` panics.
const GATE: ServiceId = ServiceId::new("gate", 1);

struct Gate {
    open: Arc<Semaphore>,
}

impl Service for Gate {
    fn id(&self) -> ServiceId {
        GATE
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &[
            MethodInfo {
                id: 1,
                name: "wait",
                kind: MethodKind::Unary,
            },
            MethodInfo {
                id: 2,
                name: "big",
                kind: MethodKind::Unary,
            },
            MethodInfo {
                id: 3,
                name: "big_items",
                kind: MethodKind::Stream,
            },
            MethodInfo {
                id: 4,
                name: "boom",
                kind: MethodKind::Unary,
            },
        ]
    }
    fn call(&self, method: u32, args: Bytes) -> Result<Handler, ServerError> {
        match method {
            1 => {
                let (): () = decode(&args)?;
                let open = self.open.clone();
                Ok(unary(async move {
                    open.acquire_owned().await.unwrap().forget();
                }))
            }
            2 => {
                let (n,): (u32,) = decode(&args)?;
                Ok(unary(async move { vec![7u8; n as usize] }))
            }
            3 => {
                let (n,): (u32,) = decode(&args)?;
                Ok(stream(async move {
                    Box::pin(futures::stream::iter([vec![7u8; n as usize]])) as Streaming<Vec<u8>>
                }))
            }
            4 => {
                let (): () = decode(&args)?;
                Ok(unary(async move {
                    if method == 4 {
                        panic!("boom (a test of the one-way rules; this panic is expected)");
                    }
                }))
            }
            m => Err(ServerError::UnknownMethod(m)),
        }
    }
}

/// A server with `inc` and `gate`; the semaphore opens the gate.
async fn spawn_gate_server(config: ServerConfig) -> (mw_rpc::RunningServer, Arc<Semaphore>) {
    let open = Arc::new(Semaphore::new(0));
    let server = Server::builder()
        .add(Inc)
        .add(Gate { open: open.clone() })
        .config(config)
        .build()
        .spawn("127.0.0.1:0")
        .await
        .unwrap();
    (server, open)
}

/// Connects and completes the handshake by hand.
async fn hello(server: &mw_rpc::RunningServer) -> TcpStream {
    let mut s = raw_connect(server).await;
    s.write_all(&block("client-hello")).await.unwrap();
    assert_bytes("server-hello", &read_exact_n(&mut s, 8).await);
    s
}

/// A call frame with the Rust client's default deadline.
fn req<A: Serialize>(id: u64, svc: ServiceId, method: u32, args: &A) -> Vec<u8> {
    call_frame(FrameKind::Request, 0, id, 30_000, svc, method, args)
}

fn oneway<A: Serialize>(id: u64, ack: u8, svc: ServiceId, method: u32, args: &A) -> Vec<u8> {
    call_frame(FrameKind::Oneway, ack, id, 30_000, svc, method, args)
}

fn ping(id: u64) -> Vec<u8> {
    frame(FrameKind::Ping, 0, id, &[])
}

async fn send(s: &mut TcpStream, frames: &[Vec<u8>]) {
    s.write_all(&frames.concat()).await.unwrap();
}

/// Reads one frame and returns (kind, id, body).
async fn next_frame(s: &mut TcpStream) -> (FrameKind, u64, Vec<u8>) {
    let f = read_raw_frame(s).await;
    let kind = FrameKind::from_u8(f[4]).unwrap_or_else(|| panic!("unknown kind in {}", hex(&f)));
    assert_eq!(f[5], 0, "flags on a server frame");
    let id = u64::from_be_bytes(f[6..14].try_into().unwrap());
    (kind, id, f[14..].to_vec())
}

/// The next frame must be exactly `expected`.
async fn expect(s: &mut TcpStream, expected: Vec<u8>) {
    let got = read_raw_frame(s).await;
    assert!(
        got == expected,
        "unexpected frame\n  expected: {}\n  got:      {}",
        hex(&expected),
        hex(&got)
    );
}

/// The next frame must be an `Error` for `id` with `code`; returns its message.
async fn expect_error(s: &mut TcpStream, id: u64, code: u16) -> String {
    let (kind, got_id, body) = next_frame(s).await;
    assert_eq!(
        (kind, got_id),
        (FrameKind::Error, id),
        "body {}",
        hex(&body)
    );
    assert_eq!(u16::from_be_bytes([body[0], body[1]]), code, "{body:?}");
    String::from_utf8(body[2..].to_vec()).unwrap()
}

/// With `max_in_flight` 1 and `max_queued` 1, a third call is refused at once with
/// OVERLOADED, while Ping and Cancel are still read and answered (section 4.7).
#[tokio::test]
async fn full_queue_refuses_calls_with_overloaded_and_still_reads_control_frames() {
    let config = ServerConfig {
        max_in_flight: 1,
        max_queued: 1,
        ..ServerConfig::default()
    };
    let (server, open) = spawn_gate_server(config).await;
    let mut s = hello(&server).await;
    send(
        &mut s,
        &[
            req(1, GATE, 1, &()),      // runs, and blocks
            req(2, GATE, 1, &()),      // waits in the queue, which is now full
            req(3, INC, 1, &(41u64,)), // refused
            ping(4),                   // still answered
        ],
    )
    .await;
    assert_bytes("overloaded-error", &read_raw_frame(&mut s).await);
    expect(&mut s, frame(FrameKind::Pong, 0, 4, &[])).await;
    // A Cancel is read too: it takes call 2 out of the queue, making room for call 5.
    send(
        &mut s,
        &[
            frame(FrameKind::Cancel, 0, 2, &[]),
            req(5, INC, 1, &(41u64,)),
            ping(6),
        ],
    )
    .await;
    expect(&mut s, frame(FrameKind::Pong, 0, 6, &[])).await;
    open.add_permits(1);
    expect(&mut s, frame(FrameKind::Response, 0, 1, &[])).await;
    expect(&mut s, frame(FrameKind::Response, 0, 5, &postcard(&42u64))).await;
    // Nothing for the cancelled call 2.
    send(&mut s, &[ping(7)]).await;
    expect(&mut s, frame(FrameKind::Pong, 0, 7, &[])).await;
    server.shutdown().await;
}

/// After GoAway the server keeps reading while it drains: a new call is refused with
/// SHUTTING_DOWN, an unacknowledged one-way call is dropped without a word, a Ping is
/// answered, the call already running finishes, then the server closes (section 4.5.9).
#[tokio::test]
async fn call_after_goaway_is_refused_with_shutting_down_while_the_drain_goes_on() {
    let (server, open) = spawn_gate_server(ServerConfig::default()).await;
    let mut s = hello(&server).await;
    send(&mut s, &[req(1, GATE, 1, &()), ping(2)]).await;
    expect(&mut s, frame(FrameKind::Pong, 0, 2, &[])).await; // call 1 is running
    server.begin_shutdown();
    assert_bytes("goaway", &read_raw_frame(&mut s).await);
    send(
        &mut s,
        &[
            req(3, INC, 1, &(41u64,)),
            oneway(4, 0, INC, 3, &("hi",)),
            ping(5),
        ],
    )
    .await;
    assert_bytes("shutting-down-error", &read_raw_frame(&mut s).await);
    expect(&mut s, frame(FrameKind::Pong, 0, 5, &[])).await;
    open.add_permits(1);
    expect(&mut s, frame(FrameKind::Response, 0, 1, &[])).await;
    assert_eq!(
        read_to_eof(&mut s).await,
        b"",
        "nothing after the last reply"
    );
    server.shutdown().await;
}

/// At the hard end of a drain (drain_timeout) calls still running get CANCELLED, then
/// the connection closes.
#[tokio::test]
async fn calls_abandoned_at_the_end_of_the_drain_get_cancelled() {
    let config = ServerConfig {
        drain_timeout: Duration::from_millis(50),
        ..ServerConfig::default()
    };
    let (server, _open) = spawn_gate_server(config).await;
    let mut s = hello(&server).await;
    send(
        &mut s,
        &[
            req(1, GATE, 1, &()),                                                  // blocks
            call_frame(FrameKind::Request, flags::STREAM, 2, 0, INC, 2, &(3u32,)), // no credit
            ping(3),
        ],
    )
    .await;
    expect(&mut s, frame(FrameKind::Pong, 0, 3, &[])).await;
    server.begin_shutdown();
    assert_bytes("goaway", &read_raw_frame(&mut s).await);
    let mut cancelled = Vec::new();
    let rest = read_to_eof(&mut s).await;
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(&rest[..]);
    while let Some(f) = codec.decode(&mut buf).unwrap() {
        assert_eq!(f.kind, FrameKind::Error);
        assert_eq!(&f.body[..2], &code::CANCELLED.to_be_bytes());
        assert_eq!(&f.body[2..], b"server shut down before the call finished");
        cancelled.push(f.id);
    }
    assert!(buf.is_empty(), "a partial frame before the close");
    cancelled.sort();
    assert_eq!(cancelled, [1, 2]);
    server.shutdown().await;
}

/// Bug (reported): the hard end of a drain sends CANCELLED to one-way calls without
/// acknowledgement too, which must never get an Error frame.
#[tokio::test]
async fn unacknowledged_oneway_gets_no_cancelled_at_the_end_of_the_drain() {
    let config = ServerConfig {
        drain_timeout: Duration::from_millis(50),
        ..ServerConfig::default()
    };
    let (server, _open) = spawn_gate_server(config).await;
    let mut s = hello(&server).await;
    send(&mut s, &[oneway(1, 0, GATE, 1, &()), ping(2)]).await;
    expect(&mut s, frame(FrameKind::Pong, 0, 2, &[])).await;
    server.begin_shutdown();
    assert_bytes("goaway", &read_raw_frame(&mut s).await);
    assert_eq!(
        hex(&read_to_eof(&mut s).await),
        "",
        "an Error for a one-way call without ack"
    );
    server.shutdown().await;
}

/// A stream's end needs no credit: `count(0)` ends without any Credit, and `count(2)`
/// with one unit at a time sends item, item, StreamEnd (section 4.5.7).
#[tokio::test]
async fn stream_end_needs_no_credit() {
    let server = spawn_server().await;
    let mut s = hello(&server).await;
    let stream_req =
        |id: u64, n: u32| call_frame(FrameKind::Request, flags::STREAM, id, 0, INC, 2, &(n,));
    let credit = |id: u64, n: u32| frame(FrameKind::Credit, 0, id, &n.to_be_bytes());
    let item = |id: u64, v: u32| frame(FrameKind::StreamItem, 0, id, &postcard(&v));
    let end = |id: u64| frame(FrameKind::StreamEnd, 0, id, &[]);

    send(&mut s, &[stream_req(1, 0)]).await;
    expect(&mut s, end(1)).await;

    send(&mut s, &[stream_req(2, 2), credit(2, 1)]).await;
    expect(&mut s, item(2, 1)).await;
    // Out of credit: nothing more until the next grant (the Ping overtakes item 2).
    send(&mut s, &[ping(3)]).await;
    expect(&mut s, frame(FrameKind::Pong, 0, 3, &[])).await;
    send(&mut s, &[credit(2, 1)]).await;
    expect(&mut s, item(2, 2)).await;
    expect(&mut s, end(2)).await;
    server.shutdown().await;
}

/// Id 0 is refused (PROTOCOL, with id 0: the only id the reply can carry); the
/// connection stays open (section 3.5).
#[tokio::test]
async fn call_with_id_0_is_refused() {
    let server = spawn_server().await;
    let mut s = hello(&server).await;
    send(
        &mut s,
        &[
            req(0, INC, 1, &(41u64,)),
            oneway(0, 0, INC, 3, &("hi",)), // no acknowledgement asked: silently dropped
            req(1, INC, 1, &(41u64,)),
        ],
    )
    .await;
    assert_bytes("id0-error", &read_raw_frame(&mut s).await);
    expect(&mut s, frame(FrameKind::Response, 0, 1, &postcard(&42u64))).await;
    server.shutdown().await;
}

/// An id still in use on the connection is refused; once its call is over, it is free
/// again (section 3.5).
#[tokio::test]
async fn call_with_an_id_in_use_is_refused() {
    let (server, open) = spawn_gate_server(ServerConfig::default()).await;
    let mut s = hello(&server).await;
    send(&mut s, &[req(7, GATE, 1, &()), req(7, INC, 1, &(41u64,))]).await;
    assert_bytes("duplicate-id-error", &read_raw_frame(&mut s).await);
    open.add_permits(1);
    expect(&mut s, frame(FrameKind::Response, 0, 7, &[])).await;
    send(&mut s, &[req(7, INC, 1, &(41u64,))]).await;
    expect(&mut s, frame(FrameKind::Response, 0, 7, &postcard(&42u64))).await;
    server.shutdown().await;
}

/// A one-way call without an ACK flag never gets an Error, whatever goes wrong; with
/// both flags exactly one Ack comes; the deadline does not bound a one-way handler
/// while it bounds a Request (sections 3.4, 4.3, 4.5.3).
#[tokio::test]
async fn oneway_rules() {
    let (server, open) = spawn_gate_server(ServerConfig::default()).await;
    let mut s = hello(&server).await;
    const NOPE: ServiceId = ServiceId::new("nope", 1);
    const INC2: ServiceId = ServiceId::new("inc", 2);
    send(
        &mut s,
        &[
            oneway(1, 0, NOPE, 1, &()),                 // unknown service
            oneway(2, 0, INC2, 1, &(41u64,)),           // unknown version
            oneway(3, 0, INC, 9, &(41u64,)),            // unknown method
            oneway(4, 0, INC, 3, &(41u64,)),            // arguments do not decode
            oneway(5, 0, INC, 2, &(3u32,)),             // streaming method
            oneway(6, 0, GATE, 4, &()),                 // handler panics
            frame(FrameKind::Oneway, 0, 7, &[0, 1, 2]), // call header too short
            ping(8),
        ],
    )
    .await;
    expect(&mut s, frame(FrameKind::Pong, 0, 8, &[])).await;

    // Both ACK flags: one Ack (delivery implies receipt).
    let both = flags::ACK_RECEIPT | flags::ACK_DELIVERY;
    send(&mut s, &[oneway(9, both, INC, 3, &("hi",)), ping(10)]).await;
    expect(&mut s, frame(FrameKind::Ack, 0, 9, &[])).await;
    expect(&mut s, frame(FrameKind::Pong, 0, 10, &[])).await;

    // With an ACK flag, refusals are reported.
    send(&mut s, &[oneway(11, flags::ACK_RECEIPT, INC, 9, &(41u64,))]).await;
    assert_eq!(
        expect_error(&mut s, 11, code::UNKNOWN_METHOD).await,
        "service inc v1 has no method number 9"
    );

    // deadline_ms 1 on an acknowledged one-way call that blocks, then on a Request that
    // blocks: only the Request is stopped. (Had the one-way call a deadline, it would
    // expire first, so its Error would come before the Request's.)
    send(
        &mut s,
        &[call_frame(
            FrameKind::Oneway,
            flags::ACK_RECEIPT,
            12,
            1,
            GATE,
            1,
            &(),
        )],
    )
    .await;
    expect(&mut s, frame(FrameKind::Ack, 0, 12, &[])).await;
    send(
        &mut s,
        &[call_frame(FrameKind::Request, 0, 13, 1, GATE, 1, &())],
    )
    .await;
    assert_eq!(
        expect_error(&mut s, 13, code::DEADLINE_EXCEEDED).await,
        "deadline exceeded on the server"
    );
    send(&mut s, &[ping(14)]).await;
    expect(&mut s, frame(FrameKind::Pong, 0, 14, &[])).await;
    open.add_permits(1); // let the one-way call 12 finish
    server.shutdown().await;
}

/// A Request's deadline runs from its arrival: time spent queued counts (section 4.3).
#[tokio::test]
async fn deadline_counts_time_spent_queued() {
    let config = ServerConfig {
        max_in_flight: 1,
        ..ServerConfig::default()
    };
    let (server, open) = spawn_gate_server(config).await;
    let mut s = hello(&server).await;
    send(
        &mut s,
        &[
            call_frame(FrameKind::Request, 0, 1, 0, GATE, 1, &()), // no deadline; runs
            call_frame(FrameKind::Request, 0, 2, 5, GATE, 1, &()), // 5 ms; queued
            ping(3),
        ],
    )
    .await;
    expect(&mut s, frame(FrameKind::Pong, 0, 3, &[])).await;
    // Not synchronisation: only lets call 2's deadline pass while it is still queued.
    tokio::time::sleep(Duration::from_millis(20)).await;
    open.add_permits(1);
    expect(&mut s, frame(FrameKind::Response, 0, 1, &[])).await;
    expect_error(&mut s, 2, code::DEADLINE_EXCEEDED).await;
    server.shutdown().await;
}

/// Bug (reported): a queued Request whose deadline passed while it waited is still
/// started, and a handler that completes on its first poll is answered with a Response
/// instead of DEADLINE_EXCEEDED (the fast path does not look at the deadline).
#[tokio::test]
async fn call_whose_deadline_passed_in_the_queue_is_not_run() {
    let config = ServerConfig {
        max_in_flight: 1,
        ..ServerConfig::default()
    };
    let (server, open) = spawn_gate_server(config).await;
    let mut s = hello(&server).await;
    send(
        &mut s,
        &[
            call_frame(FrameKind::Request, 0, 1, 0, GATE, 1, &()), // runs
            call_frame(FrameKind::Request, 0, 2, 5, INC, 1, &(41u64,)), // 5 ms; queued
            ping(3),
        ],
    )
    .await;
    expect(&mut s, frame(FrameKind::Pong, 0, 3, &[])).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    open.add_permits(1);
    expect(&mut s, frame(FrameKind::Response, 0, 1, &[])).await;
    expect_error(&mut s, 2, code::DEADLINE_EXCEEDED).await;
    server.shutdown().await;
}

/// A result or stream item too large for a frame is reported as INTERNAL (section 3.2).
#[tokio::test]
async fn results_too_large_for_a_frame_are_reported_as_internal() {
    let mut config = ServerConfig::default();
    config.transport.max_frame_len = 1024;
    let (server, _open) = spawn_gate_server(config).await;
    let mut s = hello(&server).await;
    send(
        &mut s,
        &[
            req(1, GATE, 2, &(2000u32,)),
            call_frame(
                FrameKind::Request,
                flags::STREAM,
                2,
                0,
                GATE,
                3,
                &(2000u32,),
            ),
            frame(FrameKind::Credit, 0, 2, &1u32.to_be_bytes()),
        ],
    )
    .await;
    let m = expect_error(&mut s, 1, code::INTERNAL).await;
    assert!(m.starts_with("result cannot be sent"), "{m}");
    let m = expect_error(&mut s, 2, code::INTERNAL).await;
    assert!(m.contains("stream item cannot be sent"), "{m}");
    send(&mut s, &[req(3, GATE, 2, &(3u32,))]).await;
    expect(
        &mut s,
        frame(FrameKind::Response, 0, 3, &postcard(&vec![7u8; 3])),
    )
    .await;
    server.shutdown().await;
}

/// Over the connection limit, the handshake completes and the server says why, with
/// Error id 0 OVERLOADED, then closes (section 2.4).
#[tokio::test]
async fn connection_over_the_limit_is_told_why() {
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let (server, _open) = spawn_gate_server(config).await;
    let _first = hello(&server).await;
    let mut second = hello(&server).await;
    assert_bytes("connection-limit-error", &read_to_eof(&mut second).await);
    server.shutdown().await;
}

/// When the client's side of the connection ends, its streams are cancelled while a
/// running unary call still finishes and is answered (section 1.4).
#[tokio::test]
async fn client_eof_cancels_streams_but_not_calls() {
    let (server, open) = spawn_gate_server(ServerConfig::default()).await;
    let mut s = hello(&server).await;
    send(
        &mut s,
        &[
            call_frame(FrameKind::Request, flags::STREAM, 1, 0, INC, 2, &(3u32,)), // no credit
            req(2, GATE, 1, &()),
            ping(3),
        ],
    )
    .await;
    expect(&mut s, frame(FrameKind::Pong, 0, 3, &[])).await;
    s.shutdown().await.unwrap(); // half-close: the server reads end-of-stream
    open.add_permits(1);
    expect(&mut s, frame(FrameKind::Response, 0, 2, &[])).await;
    assert_eq!(
        read_to_eof(&mut s).await,
        b"",
        "the stream was cancelled silently"
    );
    server.shutdown().await;
}

/// The Python snippet of section 7.2, run as written (only the port changed) against a
/// real server, prints 42. Skipped when no `python3` is installed.
#[tokio::test(flavor = "multi_thread")]
async fn python_snippet_runs_against_a_real_server() {
    let start = DOC
        .find("```python\n")
        .expect("PROTOCOL.md has a Python snippet")
        + 10;
    let snippet = &DOC[start..];
    let snippet = &snippet[..snippet.find("\n```").unwrap() + 1];
    assert_eq!(snippet.matches("(\"127.0.0.1\", 7000)").count(), 1);
    let server = spawn_server().await;
    let port = server.local_addr().to_string();
    let port = port.rsplit(':').next().unwrap().to_string();
    let program = snippet.replace("(\"127.0.0.1\", 7000)", &format!("(\"127.0.0.1\", {port})"));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(program)
            .output()
    })
    .await
    .unwrap();
    match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("python3 not found: the snippet was not run");
        }
        Err(e) => panic!("cannot run python3: {e}"),
        Ok(out) => {
            assert!(
                out.status.success(),
                "the snippet failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
        }
    }
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------

/// `<!-- check:frame-kinds -->`: value and name of every kind, and no other value.
#[test]
fn frame_kind_table_matches_frame_kind() {
    let rows = table("frame-kinds");
    let documented: BTreeMap<u8, String> = rows
        .iter()
        .map(|r| (r[0].parse().expect("kind value"), r[1].clone()))
        .collect();
    assert_eq!(documented.len(), rows.len(), "a kind value appears twice");
    let actual: BTreeMap<u8, String> = (0..=255u8)
        .filter_map(|v| FrameKind::from_u8(v).map(|k| (v, format!("{k:?}"))))
        .collect();
    assert_eq!(documented, actual);
    for (v, name) in &actual {
        assert_eq!(
            FrameKind::from_u8(*v).map(|k| k as u8),
            Some(*v),
            "{name}: from_u8 and the discriminant disagree"
        );
        assert!(
            FRAME_RS.contains(&format!("{name} = {v},")),
            "{name} = {v} not found in frame.rs"
        );
    }
}

/// `<!-- check:flags -->`.
#[test]
fn flag_table_matches_flags() {
    let documented: BTreeMap<String, u8> = table("flags")
        .iter()
        .map(|r| {
            let v = r[1].trim_start_matches("0x");
            (r[0].clone(), u8::from_str_radix(v, 16).expect("flag value"))
        })
        .collect();
    let actual: BTreeMap<String, u8> = [
        ("STREAM", flags::STREAM),
        ("ACK_RECEIPT", flags::ACK_RECEIPT),
        ("ACK_DELIVERY", flags::ACK_DELIVERY),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    assert_eq!(documented, actual);
    // Every `pub const X: u8` of `mod flags` is in the table.
    let src = &FRAME_RS[FRAME_RS.find("pub mod flags").unwrap()..];
    let src = &src[..src.find("\n}").unwrap()];
    assert_eq!(
        consts_in(src, "u8").len(),
        actual.len(),
        "flags added to frame.rs?"
    );
}

fn consts_in(src: &str, ty: &str) -> BTreeMap<String, u64> {
    let prefix = "pub const ";
    src.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let (t, value) = rest.split_once('=')?;
            if t.trim() != ty {
                return None;
            }
            let value = value.trim().trim_end_matches(';');
            let value = match value.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok()?,
                None => value.parse().ok()?,
            };
            Some((name.trim().to_string(), value))
        })
        .collect()
}

/// `<!-- check:error-codes -->`: every code of `mw_rpc::wire::code`, and no other.
#[test]
fn error_code_table_matches_wire_code() {
    let documented: BTreeMap<String, u16> = table("error-codes")
        .iter()
        .map(|r| (r[1].clone(), r[0].parse().expect("code value")))
        .collect();
    let actual: BTreeMap<String, u16> = [
        ("UNKNOWN_SERVICE", code::UNKNOWN_SERVICE),
        ("UNKNOWN_METHOD", code::UNKNOWN_METHOD),
        ("VERSION_MISMATCH", code::VERSION_MISMATCH),
        ("BAD_REQUEST", code::BAD_REQUEST),
        ("DEADLINE_EXCEEDED", code::DEADLINE_EXCEEDED),
        ("CANCELLED", code::CANCELLED),
        ("OVERLOADED", code::OVERLOADED),
        ("SHUTTING_DOWN", code::SHUTTING_DOWN),
        ("INTERNAL", code::INTERNAL),
        ("PROTOCOL", code::PROTOCOL),
        ("UNAUTHENTICATED", code::UNAUTHENTICATED),
        ("PERMISSION_DENIED", code::PERMISSION_DENIED),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    assert_eq!(documented, actual);
    // A code added to wire.rs but not to this test (and so not to the table) fails too.
    let src = &WIRE_RS[WIRE_RS.find("pub mod code").unwrap()..];
    let src = &src[..src.find("\n}").unwrap()];
    let in_source: BTreeMap<String, u16> = consts_in(src, "u16")
        .into_iter()
        .map(|(n, v)| (n, v as u16))
        .collect();
    assert_eq!(in_source, actual, "wire.rs `mod code` changed");
}

/// `<!-- check:defaults -->`: limits and defaults of the reference implementation, keyed
/// by (name, where) since client and server share some names.
#[test]
fn defaults_table_matches_the_configuration_defaults() {
    let documented: BTreeMap<(String, String), String> = table("defaults")
        .iter()
        .map(|r| ((r[0].clone(), r[3].clone()), r[1].replace(',', "")))
        .collect();
    let c = ClientConfig::default();
    let s = ServerConfig::default();
    let t = mw_core::TransportConfig::default();
    let ms = |d: Duration| (d.as_millis() as u64).to_string();
    let actual: BTreeMap<(String, String), String> = [
        (
            "MIN_VERSION",
            "mw_core::handshake",
            handshake::MIN_VERSION.to_string(),
        ),
        (
            "MAX_VERSION",
            "mw_core::handshake",
            handshake::MAX_VERSION.to_string(),
        ),
        (
            "LENGTH_LEN",
            "mw_core::frame",
            mw_core::frame::LENGTH_LEN.to_string(),
        ),
        (
            "HEADER_LEN",
            "mw_core::frame",
            mw_core::frame::HEADER_LEN.to_string(),
        ),
        (
            "max_frame_len",
            "TransportConfig",
            t.max_frame_len.to_string(),
        ),
        (
            "handshake_timeout",
            "TransportConfig",
            ms(t.handshake_timeout),
        ),
        (
            "write_buffer_high_water",
            "TransportConfig",
            t.write_buffer_high_water.to_string(),
        ),
        ("default_timeout", "ClientConfig", ms(c.default_timeout)),
        ("stream_window", "ClientConfig", c.stream_window.to_string()),
        ("max_in_flight", "ClientConfig", c.max_in_flight.to_string()),
        (
            "keepalive",
            "ClientConfig",
            c.keepalive.map_or("off".to_string(), ms),
        ),
        ("max_in_flight", "ServerConfig", s.max_in_flight.to_string()),
        ("max_queued", "ServerConfig", s.max_queued.to_string()),
        (
            "max_connections",
            "ServerConfig",
            s.max_connections.to_string(),
        ),
        ("drain_timeout", "ServerConfig", ms(s.drain_timeout)),
    ]
    .into_iter()
    .map(|(n, w, v)| ((n.to_string(), w.to_string()), v))
    .collect();
    assert_eq!(documented, actual);
    assert_eq!(c.transport.max_frame_len, s.transport.max_frame_len);
    assert_eq!(t.max_frame_len, DEFAULT_MAX_FRAME_LEN);
    assert_eq!(&handshake::MAGIC, b"mwrp");
    // Stated in section 3.2; the constant is private, so its source is checked.
    assert!(FRAME_RS.contains("const MAX_RESERVE_AHEAD: usize = 64 * 1024;"));
}

// ---------------------------------------------------------------------------------------
// Section 7: postcard
// ---------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Serialize, Deserialize)]
#[allow(dead_code)]
enum Shape {
    Empty,
    Circle(u32),
    Rect { w: u32, h: u32 },
}

#[derive(Serialize, Deserialize)]
struct Meters(u32);

/// Every example the postcard table may show: (type, value) -> bytes from postcard itself.
fn postcard_examples() -> HashMap<(&'static str, &'static str), Vec<u8>> {
    let mut m: HashMap<(&'static str, &'static str), Vec<u8>> = HashMap::new();
    let mut add = |t: &'static str, v: &'static str, b: Vec<u8>| {
        assert!(m.insert((t, v), b).is_none(), "duplicate example {t} {v}");
    };
    add("u8", "41", postcard(&41u8));
    add("u8", "255", postcard(&255u8));
    add("i8", "-1", postcard(&-1i8));
    add("i8", "-128", postcard(&-128i8));
    add("bool", "false", postcard(&false));
    add("bool", "true", postcard(&true));
    add("u16", "300", postcard(&300u16));
    add("u32", "0", postcard(&0u32));
    add("u32", "127", postcard(&127u32));
    add("u32", "128", postcard(&128u32));
    add("u32", "4294967295", postcard(&u32::MAX));
    add("u64", "41", postcard(&41u64));
    add("u64", "42", postcard(&42u64));
    add("u64", "300", postcard(&300u64));
    add("u64", "18446744073709551615", postcard(&u64::MAX));
    add("u128", "300", postcard(&300u128));
    add("usize", "300", postcard(&300usize));
    add("i16", "-300", postcard(&-300i16));
    add("i32", "0", postcard(&0i32));
    add("i32", "-1", postcard(&-1i32));
    add("i32", "1", postcard(&1i32));
    add("i64", "-1", postcard(&-1i64));
    add("i64", "-64", postcard(&-64i64));
    add("i64", "64", postcard(&64i64));
    add("i64", "-9223372036854775808", postcard(&i64::MIN));
    add("f32", "1.5", postcard(&1.5f32));
    add("f64", "1.5", postcard(&1.5f64));
    add("f64", "-0.1", postcard(&-0.1f64));
    add("char", "'A'", postcard(&'A'));
    add("char", "'é'", postcard(&'é'));
    add("String", "\"hi\"", postcard("hi"));
    add("String", "\"\"", postcard(""));
    add("String", "\"héllo\"", postcard("héllo"));
    add("Vec<u8>", "[1, 2, 3]", postcard(&vec![1u8, 2, 3]));
    add("Vec<u32>", "[1, 300]", postcard(&vec![1u32, 300]));
    add("Vec<String>", "[\"a\", \"bc\"]", postcard(&vec!["a", "bc"]));
    add("[u8; 3]", "[1, 2, 3]", postcard(&[1u8, 2, 3]));
    add("Option<u32>", "None", postcard(&None::<u32>));
    add("Option<u32>", "Some(300)", postcard(&Some(300u32)));
    add("()", "()", postcard(&()));
    add("(u64,)", "(41,)", postcard(&(41u64,)));
    add(
        "(u32, String, bool)",
        "(1, \"hi\", true)",
        postcard(&(1u32, "hi", true)),
    );
    add(
        "Result<u64, String>",
        "Ok(42)",
        postcard(&Ok::<u64, String>(42)),
    );
    add(
        "Result<u64, String>",
        "Err(\"no\")",
        postcard(&Err::<u64, String>("no".into())),
    );
    add(
        "Point",
        "Point { x: 1, y: -2 }",
        postcard(&Point { x: 1, y: -2 }),
    );
    add("Meters", "Meters(300)", postcard(&Meters(300)));
    add("Shape", "Shape::Empty", postcard(&Shape::Empty));
    add("Shape", "Shape::Circle(5)", postcard(&Shape::Circle(5)));
    add(
        "Shape",
        "Shape::Rect { w: 2, h: 3 }",
        postcard(&Shape::Rect { w: 2, h: 3 }),
    );
    add(
        "BTreeMap<String, u32>",
        "{\"a\": 1, \"b\": 300}",
        postcard(&BTreeMap::from([
            ("a".to_string(), 1u32),
            ("b".to_string(), 300),
        ])),
    );
    m
}

/// `<!-- check:postcard -->`: every row is postcard's own output, and the table shows
/// every example this test knows (so neither side can drift).
#[test]
fn postcard_table_matches_postcard() {
    let examples = postcard_examples();
    let rows = table("postcard");
    let mut seen = Vec::new();
    for r in &rows {
        let (t, v, bytes) = (r[0].as_str(), r[1].as_str(), r[2].as_str());
        let documented: Vec<u8> = if bytes == "(nothing)" {
            Vec::new()
        } else {
            bytes
                .split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("{t} {v}: {b:?}")))
                .collect()
        };
        let Some(actual) = examples.get(&(t, v)) else {
            panic!("postcard table row `{t}` `{v}` is not among this test's examples");
        };
        assert_eq!(
            hex(&documented),
            hex(actual),
            "postcard table row `{t}` `{v}`"
        );
        seen.push((t, v));
    }
    for k in examples.keys() {
        assert!(seen.contains(k), "postcard table lacks the example {k:?}");
    }
}

/// The postcard examples PROTOCOL.md gives in prose, spelled out independently of the table.
#[test]
fn postcard_rules_stated_in_prose() {
    assert_eq!(postcard(&41u64), [0x29]);
    assert_eq!(postcard(&300u64), [0xAC, 0x02]);
    assert_eq!(postcard(&-1i64), [0x01]);
    assert_eq!(postcard("hi"), [0x02, 0x68, 0x69]);
    // Tuples of arguments in declaration order; a Result is an enum (Ok = 0, Err = 1).
    assert_eq!(postcard(&(41u64, "hi")), [0x29, 0x02, 0x68, 0x69]);
    assert_eq!(postcard(&Err::<u64, u8>(7)), [0x01, 0x07]);
    // Decoders reject a bool other than 0/1, over-long varints and varints that
    // overflow their type.
    assert!(postcard::from_bytes::<bool>(&[2]).is_err());
    assert!(postcard::from_bytes::<u16>(&[0x80, 0x80, 0x80, 0x00]).is_err());
    assert!(postcard::from_bytes::<u16>(&[0xff, 0xff, 0x07]).is_err());
    assert_eq!(
        postcard::from_bytes::<u16>(&[0xff, 0xff, 0x03]).unwrap(),
        u16::MAX
    );
    // Zigzag as stated: -2 -> 3, 2 -> 4.
    assert_eq!(postcard(&-2i32), [3]);
    assert_eq!(postcard(&2i32), [4]);
    // A call header integer and the same number as an argument differ (section 1.1).
    assert_eq!(postcard(&30_000u32), [0xb0, 0xea, 0x01]);
    // Varints are little-endian base-128: the longest u32 is 5 bytes, u64 10 bytes.
    assert_eq!(postcard(&u32::MAX).len(), 5);
    assert_eq!(postcard(&u64::MAX).len(), 10);
    assert_eq!(postcard(&u16::MAX).len(), 3);
    assert_eq!(postcard(&u128::MAX).len(), 19);
    // A one-way method's result, and a method with no arguments: nothing at all.
    assert!(postcard(&()).is_empty());
}

/// Every `](#anchor)` link of the document names a heading (GitHub's slug rules).
#[test]
fn internal_links_resolve() {
    let slug = |h: &str| -> String {
        h.trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    };
    let mut in_code = false;
    let mut anchors = Vec::new();
    for line in DOC.lines() {
        let l = line.trim_start();
        if l.starts_with("```") && !l.starts_with("````") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            anchors.push(slug(line.trim_start_matches('#')));
        }
    }
    let mut rest = DOC;
    let mut links = 0;
    while let Some(i) = rest.find("](#") {
        let after = &rest[i + 3..];
        let end = after.find(')').unwrap();
        let target = &after[..end];
        assert!(
            anchors.iter().any(|a| a == target),
            "link to #{target} names no heading"
        );
        links += 1;
        rest = &after[end..];
    }
    assert!(links > 10, "only {links} internal links found");
}
