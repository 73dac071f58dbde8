//! Seed corpora and regression inputs, written by code so that they follow the real
//! formats: frames and call headers from mw-core/mw-rpc's encoders, arguments from
//! postcard, segment files written by a real `QueueManager`.
//!
//! `MW_FUZZ_WRITE_SEEDS=1 cargo test --test fuzz_corpus` writes them to
//! `fuzz/corpus/<target>/seed-*` and `fuzz/regressions/<target>/*`; the same test always
//! replays them from memory too.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mw_core::frame::{encode_with, flags, FrameKind, DEFAULT_MAX_FRAME_LEN};
use mw_core::FrameError;
use mw_pubsub::remote::wire::{BatchEncoder, EventBatch, SubscribeItem};
use mw_pubsub::SlowConsumerPolicy;
use mw_pubsub::Topic;
use mw_queue::remote::{QueueError, WireDelivery};
use mw_queue::{Clock, Config, ConsumerOptions, DeliveryTag, FsyncPolicy, Message, QueueManager};
use mw_rpc::wire::{code, error_body, put_call_header};
use serde::Serialize;

use crate::common::{block_on, T0_MS};
use crate::queue_api::{Dur, Enc, Msg, Op};
use crate::queue_recovery::{header, put_frame, Record};

/// A named input: (file name, bytes).
pub type Seed = (String, Vec<u8>);

/// Every fuzz target, in the order the replay test runs them.
pub const TARGETS: [&str; 8] = [
    "frame_codec",
    "handshake",
    "rpc_wire",
    "rpc_server",
    "rpc_client",
    "pubsub_batch",
    "queue_api",
    "queue_recovery",
];

/// Appends one frame.
pub fn frame(out: &mut Vec<u8>, kind: FrameKind, fl: u8, id: u64, body: &[u8]) {
    let mut b = BytesMut::new();
    encode_with(&mut b, kind, fl, id, DEFAULT_MAX_FRAME_LEN, |b| {
        b.extend_from_slice(body);
        Ok::<_, FrameError>(())
    })
    .expect("encode frame");
    out.extend_from_slice(&b);
}

/// A call body: header for `service` v1 `method`, then postcard `args`.
pub fn call<A: Serialize>(service: &str, method: u32, args: &A) -> Vec<u8> {
    let mut b = BytesMut::new();
    put_call_header(&mut b, 5000, service, 1, method);
    b.extend_from_slice(&postcard::to_stdvec(args).expect("encode args"));
    b.to_vec()
}

fn msg(ttl_ms: Option<u64>, delay_ms: Option<u64>) -> Message {
    let mut m = Message::new(Bytes::from_static(b"hello")).with_id(7u128);
    if let Some(ms) = ttl_ms {
        m = m.with_ttl(std::time::Duration::from_millis(ms));
    }
    if let Some(ms) = delay_ms {
        m = m.with_delay(std::time::Duration::from_millis(ms));
    }
    m
}

fn tag() -> DeliveryTag {
    DeliveryTag::new(1, 1)
}

fn error(code: u16, text: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    error_body(&mut b, code, text);
    b.to_vec()
}

fn batch() -> EventBatch {
    let mut enc = BatchEncoder::new();
    let a = Topic::new("sensors.kitchen.temp").expect("topic");
    let b = Topic::new("orders").expect("topic");
    enc.push(&a, b"21.5", 0);
    enc.push(&a, b"21.6", 3);
    enc.push(&b, b"", 0);
    enc.finish()
}

/// Seeds for `frame_codec`: [chunk seed, max selector] + frames.
pub fn frame_codec() -> Vec<Seed> {
    let mut all = vec![7, 0];
    frame(
        &mut all,
        FrameKind::Request,
        0,
        1,
        &call("fuzz", 1, &(vec![1u8, 2, 3],)),
    );
    frame(&mut all, FrameKind::Response, 0, 1, &[3, 1, 2, 3]);
    frame(
        &mut all,
        FrameKind::Request,
        flags::STREAM,
        2,
        &call("fuzz", 6, &(5u32,)),
    );
    frame(&mut all, FrameKind::Credit, 0, 2, &64u32.to_be_bytes());
    frame(&mut all, FrameKind::StreamItem, 0, 2, &[0]);
    frame(&mut all, FrameKind::StreamEnd, 0, 2, &[]);
    frame(
        &mut all,
        FrameKind::Error,
        0,
        3,
        &error(code::UNKNOWN_METHOD, "no"),
    );
    frame(&mut all, FrameKind::Ping, 0, 4, &[]);
    frame(&mut all, FrameKind::GoAway, 0, 0, &[]);
    let mut small_max = vec![1, 2];
    frame(
        &mut small_max,
        FrameKind::Ack,
        flags::ACK_RECEIPT,
        9,
        &[0; 60],
    );
    frame(&mut small_max, FrameKind::Ack, 0, 9, &[0; 80]);
    vec![
        ("seed-conversation".into(), all),
        ("seed-too-large-for-max".into(), small_max),
        (
            "seed-huge-length".into(),
            vec![3, 0, 0xff, 0xff, 0xff, 0xf0, 1],
        ),
        ("seed-short-length".into(), vec![3, 0, 0, 0, 0, 3, 1, 0, 0]),
        (
            "seed-unknown-kind".into(),
            vec![1, 0, 0, 0, 0, 10, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
    ]
}

/// Seeds for `handshake`: [mode, min, max, peer min, peer max] + peer bytes.
pub fn handshake() -> Vec<Seed> {
    let head = |mode: u8, r: [u16; 4]| {
        let mut v = vec![mode];
        for x in r {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    };
    let mut accept = head(0, [1, 1, 0, 0]);
    accept.extend_from_slice(b"mwrp\x00\x01\x00\x00");
    let mut refuse = head(0, [2, 3, 0, 0]);
    let reason = b"server speaks protocol versions 1..=1, client offered 2..=3";
    refuse.extend_from_slice(b"mwrp\x00\x00");
    refuse.extend_from_slice(&(reason.len() as u16).to_be_bytes());
    refuse.extend_from_slice(reason);
    let mut hello = head(1, [1, 1, 0, 0]);
    hello.extend_from_slice(b"mwrp\x00\x01\x00\x01");
    let mut hello_new = head(1, [1, 2, 0, 0]);
    hello_new.extend_from_slice(b"mwrp\x00\x02\x00\x05");
    let mut http = head(1, [1, 1, 0, 0]);
    http.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    vec![
        ("seed-client-accepted".into(), accept),
        ("seed-client-refused".into(), refuse),
        ("seed-server-hello".into(), hello),
        ("seed-server-newer-client".into(), hello_new),
        ("seed-server-http".into(), http),
        ("seed-pair-overlap".into(), head(2, [1, 3, 2, 5])),
        ("seed-pair-disjoint".into(), head(2, [1, 1, 2, 2])),
    ]
}

/// Seeds for `rpc_wire`: call bodies and error bodies.
pub fn rpc_wire() -> Vec<Seed> {
    vec![
        (
            "seed-queue-send".into(),
            call("mw.queue", 1, &("q", msg(Some(60_000), Some(10)))),
        ),
        (
            "seed-queue-send-batch".into(),
            call(
                "mw.queue",
                2,
                &("q", vec![msg(None, None), msg(Some(1), None)]),
            ),
        ),
        (
            "seed-queue-consume".into(),
            call("mw.queue", 3, &("q", 10u32, Some(30_000u64), None::<u64>)),
        ),
        (
            "seed-queue-nack".into(),
            call("mw.queue", 5, &("q", tag(), Some(u64::MAX))),
        ),
        (
            "seed-queue-extend".into(),
            call("mw.queue", 7, &("q", tag(), u64::MAX)),
        ),
        (
            "seed-queue-ack-many".into(),
            call("mw.queue", 10, &("q", vec![tag(), DeliveryTag::new(2, 3)])),
        ),
        (
            "seed-pubsub-publish".into(),
            call("mw.pubsub", 1, &("a.b", batch())),
        ),
        (
            "seed-pubsub-batch".into(),
            call("mw.pubsub", 2, &(batch(),)),
        ),
        (
            "seed-pubsub-subscribe".into(),
            call(
                "mw.pubsub",
                7,
                &("a.*", 16u32, SlowConsumerPolicy::DropOldest),
            ),
        ),
        (
            "seed-error-body".into(),
            error(code::VERSION_MISMATCH, "v2 only"),
        ),
        (
            "seed-reply-send".into(),
            postcard::to_stdvec(&Ok::<u128, QueueError>(7)).expect("encode"),
        ),
        (
            "seed-reply-deliveries".into(),
            postcard::to_stdvec(&Ok::<_, QueueError>(vec![WireDelivery {
                id: 7,
                tag: tag(),
                sent_at_ms: T0_MS,
                body: Bytes::from_static(b"hi"),
            }]))
            .expect("encode"),
        ),
    ]
}

/// Request frames a real client would send to the `rpc_server` harness's server.
pub fn rpc_server() -> Vec<Seed> {
    let req = |id: u64, fl: u8, service: &str, method: u32, args: Vec<u8>| {
        let mut b = BytesMut::new();
        put_call_header(&mut b, 5000, service, 1, method);
        b.extend_from_slice(&args);
        let mut out = Vec::new();
        frame(&mut out, FrameKind::Request, fl, id, &b);
        out
    };
    let pc = |v: &dyn erased::Ser| v.bytes();
    let mut conversation = Vec::new();
    conversation.extend(req(1, 0, "fuzz", 1, pc(&(vec![1u8, 2, 3],))));
    conversation.extend(req(2, 0, "fuzz", 2, pc(&(u64::MAX, 1u64))));
    conversation.extend(req(3, flags::STREAM, "fuzz", 6, pc(&(5u32,))));
    frame(
        &mut conversation,
        FrameKind::Credit,
        0,
        3,
        &2u32.to_be_bytes(),
    );
    let mut oneway = Vec::new();
    for (id, fl, m) in [
        (1, 0, 3),
        (2, flags::ACK_RECEIPT, 4),
        (3, flags::ACK_DELIVERY, 5),
    ] {
        let args = if m == 3 { pc(&("note",)) } else { pc(&(7u32,)) };
        let mut b = BytesMut::new();
        put_call_header(&mut b, 0, "fuzz", 1, m);
        b.extend_from_slice(&args);
        frame(&mut oneway, FrameKind::Oneway, fl, id, &b);
    }
    frame(&mut oneway, FrameKind::Ping, 0, 4, &[]);
    let mut queue = Vec::new();
    queue.extend(req(
        1,
        0,
        "mw.queue",
        1,
        pc(&("q", msg(Some(60_000), None))),
    ));
    queue.extend(req(2, 0, "mw.queue", 8, pc(&())));
    queue.extend(req(3, 0, "mw.queue", 5, pc(&("q", tag(), Some(10u64)))));
    queue.extend(req(4, 0, "mw.queue", 7, pc(&("q", tag(), 1000u64))));
    queue.extend(req(5, 0, "mw.queue", 11, pc(&())));
    let mut consume = Vec::new();
    consume.extend(req(
        1,
        0,
        "mw.queue",
        2,
        pc(&("q", vec![msg(None, None), msg(None, Some(5))])),
    ));
    consume.extend(req(
        2,
        flags::STREAM,
        "mw.queue",
        3,
        pc(&("q", 4u32, None::<u64>, Some(1u64))),
    ));
    frame(&mut consume, FrameKind::Credit, 0, 2, &8u32.to_be_bytes());
    frame(&mut consume, FrameKind::Cancel, 0, 2, &[]);
    let mut pubsub = Vec::new();
    pubsub.extend(req(
        1,
        flags::STREAM,
        "mw.pubsub",
        7,
        pc(&("a.>", 16u32, SlowConsumerPolicy::DropNewest)),
    ));
    frame(&mut pubsub, FrameKind::Credit, 0, 1, &4u32.to_be_bytes());
    pubsub.extend(req(
        2,
        0,
        "mw.pubsub",
        3,
        pc(&("a.b", Bytes::from_static(b"x"))),
    ));
    {
        let mut b = BytesMut::new();
        put_call_header(&mut b, 0, "mw.pubsub", 1, 2);
        b.extend_from_slice(&pc(&(batch(),)));
        frame(&mut pubsub, FrameKind::Oneway, 0, 3, &b);
    }
    pubsub.extend(req(
        4,
        flags::STREAM,
        "mw.pubsub",
        8,
        pc(&("billing", "orders.>", 8u32)),
    ));
    pubsub.extend(req(5, 0, "mw.pubsub", 11, pc(&())));
    let mut bad = Vec::new();
    bad.extend(req(1, 0, "nope", 1, vec![]));
    bad.extend(req(2, 0, "fuzz", 99, vec![]));
    bad.extend(req(0, 0, "fuzz", 1, pc(&(vec![0u8],))));
    frame(&mut bad, FrameKind::Response, 0, 3, &[]);
    bad.extend_from_slice(&[0, 0, 0, 3, 1]);
    vec![
        ("seed-fuzz-service".into(), conversation),
        ("seed-oneway-acks".into(), oneway),
        ("seed-queue-calls".into(), queue),
        ("seed-queue-consume".into(), consume),
        ("seed-pubsub".into(), pubsub),
        ("seed-protocol-errors".into(), bad),
    ]
}

/// Replies a server could send to the `rpc_client` harness's five calls.
pub fn rpc_client() -> Vec<Seed> {
    let pc = |v: &dyn erased::Ser| v.bytes();
    let mut good = Vec::new();
    frame(&mut good, FrameKind::Response, 0, 1, &pc(&vec![1u8, 2, 3]));
    frame(
        &mut good,
        FrameKind::Response,
        0,
        2,
        &pc(&Ok::<u64, String>(3)),
    );
    frame(
        &mut good,
        FrameKind::Response,
        0,
        3,
        &pc(&Ok::<u128, QueueError>(7)),
    );
    let deliveries: Result<Vec<WireDelivery>, QueueError> = Ok(vec![WireDelivery {
        id: 7,
        tag: tag(),
        sent_at_ms: T0_MS,
        body: Bytes::from_static(b"x"),
    }]);
    frame(&mut good, FrameKind::StreamItem, 0, 4, &pc(&deliveries));
    frame(&mut good, FrameKind::StreamEnd, 0, 4, &[]);
    let ready: Result<SubscribeItem, mw_pubsub::PubSubError> = Ok(SubscribeItem::Ready);
    frame(&mut good, FrameKind::StreamItem, 0, 5, &pc(&ready));
    let events: Result<SubscribeItem, mw_pubsub::PubSubError> = Ok(SubscribeItem::Events(batch()));
    frame(&mut good, FrameKind::StreamItem, 0, 5, &pc(&events));
    frame(&mut good, FrameKind::StreamEnd, 0, 5, &[]);
    let mut errors = Vec::new();
    frame(
        &mut errors,
        FrameKind::Error,
        0,
        1,
        &error(code::OVERLOADED, "busy"),
    );
    frame(
        &mut errors,
        FrameKind::Response,
        0,
        2,
        &pc(&Err::<u64, String>("overflow".into())),
    );
    frame(&mut errors, FrameKind::Ack, 0, 3, &[]);
    frame(
        &mut errors,
        FrameKind::Error,
        0,
        4,
        &error(code::CANCELLED, ""),
    );
    frame(&mut errors, FrameKind::Response, 0, 5, &[]);
    frame(&mut errors, FrameKind::Ping, 0, 77, &[]);
    frame(&mut errors, FrameKind::GoAway, 0, 0, &[]);
    frame(
        &mut errors,
        FrameKind::Error,
        0,
        0,
        &error(code::PROTOCOL, "bye"),
    );
    let mut flood = Vec::new();
    for _ in 0..100 {
        frame(&mut flood, FrameKind::StreamItem, 0, 4, &pc(&deliveries));
    }
    vec![
        ("seed-good-replies".into(), good),
        ("seed-errors".into(), errors),
        ("seed-credit-overrun".into(), flood),
        (
            "seed-garbage".into(),
            vec![0, 0, 0, 12, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff],
        ),
    ]
}

/// Seeds for `pubsub_batch`: [mode] + batch or item.
pub fn pubsub_batch() -> Vec<Seed> {
    let mut raw = vec![0];
    raw.extend_from_slice(&batch().0);
    let mut item = vec![1];
    item.extend(postcard::to_stdvec(&SubscribeItem::Events(batch())).expect("encode"));
    let mut publish = vec![3];
    publish.extend(postcard::to_stdvec(&("a.b".to_string(), batch())).expect("encode"));
    vec![
        ("seed-batch".into(), raw),
        ("seed-subscribe-item".into(), item),
        ("seed-publish".into(), publish),
        ("seed-bad-topic".into(), vec![0, 3, b'a', b'.', b'*', 0, 0]),
    ]
}

/// Seeds for `queue_api`.
pub fn queue_api() -> Vec<Seed> {
    let mut basic = Enc::settings();
    basic
        .op(&Op::Send(0, Msg::plain()))
        .op(&Op::Send(
            0,
            Msg {
                id: Some(9),
                ttl: Some(Dur::Ms(60_000)),
                delay: Some(Dur::Small(5)),
                body_len: 40,
            },
        ))
        .op(&Op::Send(
            0,
            Msg {
                id: Some(9),
                ..Msg::plain()
            },
        ))
        .op(&Op::Recv(0, 2, None))
        .op(&Op::Recv(0, 2, None))
        .op(&Op::Nack(0, Some(Dur::Ms(100))))
        .op(&Op::Extend(0, Dur::Ms(1000)))
        .op(&Op::Ack(0))
        .op(&Op::Advance(200))
        .op(&Op::Recv(0, 2, None))
        .op(&Op::Reject(0))
        .op(&Op::Redrive(0))
        .op(&Op::Reopen)
        .op(&Op::Recv(0, 1, Some(Dur::Ms(10))));
    let mut spill = Enc::settings();
    spill.op(&Op::SendBatch(2, vec![Msg::plain(); 15]));
    spill.op(&Op::SendBatch(
        2,
        vec![
            Msg {
                body_len: 200,
                ..Msg::plain()
            };
            15
        ],
    ));
    for _ in 0..6 {
        spill.op(&Op::Recv(2, 3, None)).op(&Op::Ack(0));
    }
    spill.op(&Op::Reopen).op(&Op::Recv(2, 1, None));
    let mut tags = Enc::settings();
    tags.op(&Op::Send(0, Msg::plain()))
        .op(&Op::Tag(0, 1, 1, 0, Dur::Zero))
        .op(&Op::Tag(0, 1, 0, 1, Dur::Ms(5)))
        .op(&Op::Tag(1, u64::MAX, u32::MAX, 3, Dur::Ms(5)))
        .op(&Op::DropHandles);
    vec![
        ("seed-basic".into(), basic.0),
        ("seed-spill".into(), spill.0),
        ("seed-tags".into(), tags.0),
    ]
}

/// Segment files written by a real queue manager: several segments, dead letters,
/// nacks, deliveries and settles. Returned as a raw `queue_recovery` input (flags 0:
/// the files concatenated).
pub fn real_segments() -> Vec<u8> {
    let dir = crate::common::tempdir();
    block_on(async {
        let cfg = Config {
            fsync: FsyncPolicy::Never,
            segment_size: 1024,
            clock: Clock::manual(T0_MS),
            max_attempts: Some(2),
            ..Config::default()
        };
        let qm = QueueManager::open(dir.path(), cfg).await.expect("open");
        let q = qm.queue("q");
        for i in 0..12u8 {
            let mut m = Message::new(vec![i; 40]);
            if i % 3 == 0 {
                m = m.with_id(u128::from(i)).with_ttl(Duration::from_secs(3600));
            }
            if i % 4 == 1 {
                m = m.with_delay(Duration::from_millis(5));
            }
            q.send(m).await.expect("send");
        }
        let mut c = q.consumer(ConsumerOptions {
            prefetch: 1,
            visibility_timeout: None,
        });
        let d = c.recv().await.expect("recv");
        d.ack().await.expect("ack");
        let d = c.recv().await.expect("recv");
        d.nack(Some(Duration::from_millis(50))).await.expect("nack");
        let d = c.recv().await.expect("recv");
        d.reject().await.expect("reject");
        let d = c.recv().await.expect("recv");
        drop(d); // left in flight
        drop(c);
        qm.queue("other")
            .send(Message::new("x"))
            .await
            .expect("send");
        qm.redrive("q").await.expect("redrive");
        qm.close().await.expect("close");
    });
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    names.sort();
    let mut out = vec![0u8];
    for p in names {
        out.extend(std::fs::read(p).expect("read segment"));
    }
    out
}

/// Seeds for `queue_recovery`.
pub fn queue_recovery() -> Vec<Seed> {
    let real = real_segments();
    let mut torn = real.clone();
    torn.truncate(torn.len() - 7);
    let mut records = vec![1u8];
    records.extend(header(1));
    let recs = [
        Record::Enqueue {
            producer_id: true,
            id: 5,
            sent_at: T0_MS,
            expires_at: 0,
            not_before: 0,
            queue: b"q",
            body: b"body",
        },
        Record::Deliver {
            queue: b"q",
            target: 1,
            delivery: 1,
        },
        Record::Nack {
            queue: b"q",
            target: 1,
            not_before: T0_MS + 10,
        },
        Record::Move {
            queue: b"q",
            target: 1,
            to: b"q.dlq",
        },
        Record::Settle {
            queue: b"q.dlq",
            target: 1,
            reason: 0,
        },
    ];
    for (i, r) in recs.iter().enumerate() {
        put_frame(&mut records, &r.payload(i as u64 + 1));
    }
    // Structured mode: any bytes decode; these give a few segments.
    let structured: Vec<u8> = std::iter::once(0x80)
        .chain((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8))
        .collect();
    vec![
        ("seed-real-segments".into(), real),
        ("seed-real-torn-tail".into(), torn),
        ("seed-every-record".into(), records),
        ("seed-structured".into(), structured),
    ]
}

/// Inputs reproducing the bugs the first fuzzing campaign found (issue 12), by target.
pub fn regressions() -> Vec<(&'static str, Seed)> {
    let mut out = Vec::new();
    // (1) u64::MAX durations (what a remote client can send as ms) overflowed Duration /
    // Instant arithmetic: send TTL, send delay, nack delay, extend-visibility.
    for (name, op_list) in [
        (
            "ttl-u64-max-ms",
            vec![Op::Send(
                0,
                Msg {
                    ttl: Some(Dur::MaxMs),
                    ..Msg::plain()
                },
            )],
        ),
        (
            "delay-u64-max-ms",
            vec![Op::Send(
                0,
                Msg {
                    delay: Some(Dur::MaxMs),
                    ..Msg::plain()
                },
            )],
        ),
        (
            "nack-delay-u64-max-ms",
            vec![
                Op::Send(0, Msg::plain()),
                Op::Recv(0, 1, None),
                Op::Nack(0, Some(Dur::MaxMs)),
            ],
        ),
        (
            "extend-visibility-u64-max-ms",
            vec![
                Op::Send(0, Msg::plain()),
                Op::Recv(0, 1, None),
                Op::Extend(0, Dur::MaxMs),
            ],
        ),
        (
            "consumer-visibility-u64-max-ms",
            vec![Op::Send(0, Msg::plain()), Op::Recv(0, 1, Some(Dur::MaxMs))],
        ),
        (
            "duration-max",
            vec![
                Op::Send(
                    0,
                    Msg {
                        ttl: Some(Dur::Max),
                        delay: Some(Dur::Max),
                        ..Msg::plain()
                    },
                ),
                Op::Send(0, Msg::plain()),
                Op::Recv(0, 1, None),
                Op::Extend(0, Dur::Max),
                Op::Nack(0, Some(Dur::Max)),
            ],
        ),
    ] {
        let mut e = Enc::settings();
        for op in &op_list {
            e.op(op);
        }
        out.push(("queue_api", (name.to_string(), e.0)));
    }
    let mut e = Enc::default();
    e.dur(Dur::MaxMs).dur(Dur::MaxMs); // visibility and dedup window of u64::MAX ms
    e.0.extend_from_slice(&[0, 5, 1, 1, 0, 4, 0, 0, 0, 0, 64]);
    e.op(&Op::Send(
        0,
        Msg {
            id: Some(1),
            ..Msg::plain()
        },
    ))
    .op(&Op::Recv(0, 1, None))
    .op(&Op::Reopen);
    out.push(("queue_api", ("config-u64-max-ms".to_string(), e.0)));
    // The same through the network service.
    let send = |ttl: Option<u64>, delay: Option<u64>| {
        let mut b = BytesMut::new();
        put_call_header(&mut b, 5000, "mw.queue", 1, 1);
        b.extend_from_slice(&postcard::to_stdvec(&("q", msg(ttl, delay))).expect("encode"));
        let mut out = Vec::new();
        frame(&mut out, FrameKind::Request, 0, 1, &b);
        out
    };
    out.push((
        "rpc_server",
        (
            "send-ttl-u64-max-ms".to_string(),
            send(Some(u64::MAX), None),
        ),
    ));
    out.push((
        "rpc_server",
        (
            "send-delay-u64-max-ms".to_string(),
            send(None, Some(u64::MAX)),
        ),
    ));
    // (2) Recovery's search for a newer record after a damaged one was quadratic: a 1 MiB
    // segment of `10 00 02 00` repeated after a valid header (raw mode, bit 1: repeat the
    // body to (63 + 1) * 16 KiB).
    let mut quadratic = vec![2u8, 63];
    quadratic.extend(header(1));
    quadratic.extend_from_slice(&[0x10, 0x00, 0x02, 0x00]);
    out.push((
        "queue_recovery",
        ("repeating-10000200-1mib".to_string(), quadratic),
    ));
    // The same pattern over 4 MiB (the most the harness expands to): recovery must stay
    // linear in the damaged bytes (well under a second), not quadratic (minutes).
    let mut quadratic = vec![2u8, 255];
    quadratic.extend(header(1));
    quadratic.extend_from_slice(&[0x10, 0x00, 0x02, 0x00]);
    out.push((
        "queue_recovery",
        ("repeating-10000200-4mib".to_string(), quadratic),
    ));
    // (3) An ENQUEUE with the producer-id flag and timestamp u64::MAX (valid CRC)
    // overflowed the dedup-window arithmetic during recovery.
    let mut max_ts = vec![0u8];
    max_ts.extend(header(1));
    put_frame(
        &mut max_ts,
        &Record::Enqueue {
            producer_id: true,
            id: 42,
            sent_at: u64::MAX,
            expires_at: 0,
            not_before: 0,
            queue: b"q",
            body: b"x",
        }
        .payload(1),
    );
    out.push((
        "queue_recovery",
        ("enqueue-producer-id-timestamp-u64-max".to_string(), max_ts),
    ));
    out
}

/// The seeds of one target.
pub fn seeds(target: &str) -> Vec<Seed> {
    match target {
        "frame_codec" => frame_codec(),
        "handshake" => handshake(),
        "rpc_wire" => rpc_wire(),
        "rpc_server" => rpc_server(),
        "rpc_client" => rpc_client(),
        "pubsub_batch" => pubsub_batch(),
        "queue_api" => queue_api(),
        "queue_recovery" => queue_recovery(),
        other => panic!("no fuzz target {other}"),
    }
}

/// Postcard-encodes values of different types through one closure.
mod erased {
    /// A value postcard can encode.
    pub trait Ser {
        /// Its postcard encoding.
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn bytes(&self) -> Vec<u8> {
            postcard::to_stdvec(self).expect("encode")
        }
    }
}
