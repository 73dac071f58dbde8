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
    let mut stream_request = call_frame(FrameKind::Request, flags::STREAM, 6, 0, INC, 2, &(3u32,));
    stream_request.extend(frame(FrameKind::Credit, 0, 6, &4u32.to_be_bytes()));
    assert_bytes("stream-request", &stream_request);
    let mut replies = Vec::new();
    for i in 1..=3u32 {
        replies.extend(frame(FrameKind::StreamItem, 0, 6, &postcard(&i)));
    }
    replies.extend(frame(FrameKind::StreamEnd, 0, 6, &[]));
    assert_bytes("stream-replies", &replies);
    assert_bytes("goaway", &frame(FrameKind::GoAway, 0, 0, &[]));
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

/// `<!-- check:defaults -->`: limits and defaults of the reference implementation.
#[test]
fn defaults_table_matches_the_configuration_defaults() {
    let documented: BTreeMap<String, u64> = table("defaults")
        .iter()
        .map(|r| (r[0].clone(), r[1].replace(',', "").parse().expect("number")))
        .collect();
    let c = ClientConfig::default();
    let s = ServerConfig::default();
    let t = mw_core::TransportConfig::default();
    let ms = |d: Duration| d.as_millis() as u64;
    let actual: BTreeMap<String, u64> = [
        ("MIN_VERSION", handshake::MIN_VERSION as u64),
        ("MAX_VERSION", handshake::MAX_VERSION as u64),
        ("LENGTH_LEN", mw_core::frame::LENGTH_LEN as u64),
        ("HEADER_LEN", mw_core::frame::HEADER_LEN as u64),
        ("max_frame_len", t.max_frame_len as u64),
        ("handshake_timeout", ms(t.handshake_timeout)),
        ("outbox_high_water", t.outbox_high_water as u64),
        ("default_timeout", ms(c.default_timeout)),
        ("stream_window", c.stream_window as u64),
        ("max_in_flight", s.max_in_flight as u64),
        ("max_queued", s.max_queued as u64),
        ("max_connections", s.max_connections as u64),
        ("drain_timeout", ms(s.drain_timeout)),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    assert_eq!(documented, actual);
    assert_eq!(c.transport.max_frame_len, s.transport.max_frame_len);
    assert_eq!(t.max_frame_len, DEFAULT_MAX_FRAME_LEN);
    assert_eq!(&handshake::MAGIC, b"mwrp");
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

/// The prose examples the brief names, spelled out independently of the table.
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
