//! What `#[mw::service]` generates, checked without a network: the signatures of the
//! client and server types (by type-checking code that uses them), the method table,
//! and dispatch of encoded arguments to the implementation.
#![deny(missing_docs)]
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mw::rpc::{
    Ack, Channel, ClientStream, Handler, MethodInfo, MethodKind, ReplyHandle, RpcError,
    ServerError, Service, ServiceId, Streaming,
};
use serde::{Deserialize, Serialize};

/// The application error of `div`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    /// Division by zero.
    DivideByZero,
}

/// A service with every kind of method.
#[mw::service(name = "inc", version = 1)]
pub trait Increment {
    /// Adds one.
    async fn inc(&self, n: u64) -> u64;
    /// Divides.
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// Fire and forget.
    #[oneway]
    async fn log(&self, line: String);
    /// Acknowledged on receipt.
    #[oneway(receipt)]
    async fn note(&self, line: String);
    /// Acknowledged on delivery.
    #[oneway(delivery)]
    async fn poke(&self);
    /// Counts up.
    async fn ticks(&self, count: u32) -> Streaming<u64>;
    /// Explicit method number.
    #[method(id = 70)]
    async fn other(&self) -> String;
    /// No return type at all, not one-way: a unary call returning `()`.
    async fn unit(&self, a: u8, b: String, c: Vec<u32>);
}

#[derive(Default)]
struct Impl {
    pokes: AtomicU64,
}

impl Increment for Impl {
    async fn inc(&self, n: u64) -> u64 {
        n + 1
    }
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            Err(MathError::DivideByZero)
        } else {
            Ok(a / b)
        }
    }
    async fn log(&self, _line: String) {}
    async fn note(&self, _line: String) {}
    async fn poke(&self) {
        self.pokes.fetch_add(1, Ordering::SeqCst);
    }
    async fn ticks(&self, count: u32) -> Streaming<u64> {
        Box::pin(futures::stream::iter(0..u64::from(count)))
    }
    async fn other(&self) -> String {
        "other".into()
    }
    async fn unit(&self, _a: u8, _b: String, _c: Vec<u32>) {}
}

/// postcard encoding of an unsigned integer (a varint).
fn varint(v: u64) -> Vec<u8> {
    postcard::to_stdvec(&v).expect("a u64 always encodes")
}

/// postcard encoding of a signed integer (a zigzag varint).
fn zigzag(v: i64) -> Vec<u8> {
    postcard::to_stdvec(&v).expect("an i64 always encodes")
}

async fn run_unary(h: Handler) -> Result<bytes::Bytes, ServerError> {
    match h {
        Handler::Unary(f) => f.await,
        Handler::Stream(_) => panic!("expected a unary handler"),
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

// ---------------------------------------------------------------------------
// Compile-time checks of the client's signatures. Never executed.

#[allow(unused_variables, unreachable_code, clippy::diverging_sub_expression)]
fn client_signatures() {
    const _: ServiceId = IncrementClient::SERVICE;
    let _: fn(Channel) -> IncrementClient = IncrementClient::new;
    let _: for<'a> fn(&'a IncrementClient) -> &'a Channel = IncrementClient::channel;
    let _: fn(&IncrementClient, Duration) -> IncrementClient = IncrementClient::with_timeout;

    drop(async {
        let c: IncrementClient = IncrementClient::connect("inproc:x").await?;
        let c2: IncrementClient = c.clone();
        let _ = format!("{c2:?}");

        let _: Result<u64, RpcError> = c.inc(1).await;
        let h: ReplyHandle<u64> = c.start_inc(1).await?;
        let _: Result<u64, RpcError> = h.await;

        let r: Result<i64, RpcError<MathError>> = c.div(1, 2).await;
        if let Err(RpcError::Application(MathError::DivideByZero)) = r {}
        let h: Result<ReplyHandle<i64, MathError>, RpcError<MathError>> = c.start_div(1, 2).await;
        if let Ok(h) = h {
            let _: Result<i64, RpcError<MathError>> = h.await;
        }

        let _: Result<(), RpcError> = c.log("x".to_string()).await;
        let _: Result<(), RpcError> = c.note("x".to_string()).await;
        let _: Result<(), RpcError> = c.poke().await;
        let s: ClientStream<u64> = c.ticks(3).await?;
        let _ = futures::StreamExt::next(&mut Box::pin(s)).await;
        let _: Result<String, RpcError> = c.other().await;
        let _: Result<String, RpcError> = c.start_other().await?.await;
        let _: Result<(), RpcError> = c.unit(1, String::new(), vec![]).await;
        Ok::<(), Box<dyn std::error::Error>>(())
    });
}

/// The request/response enums exist with the documented shapes.
#[allow(unused_variables)]
fn enum_shapes() {
    let reqs = [
        IncrementRequest::Inc { n: 1 },
        IncrementRequest::Div { a: 1, b: 2 },
        IncrementRequest::Log {
            line: String::new(),
        },
        IncrementRequest::Note {
            line: String::new(),
        },
        IncrementRequest::Poke {},
        IncrementRequest::Ticks { count: 3 },
        IncrementRequest::Other {},
        IncrementRequest::Unit {
            a: 1,
            b: String::new(),
            c: vec![],
        },
    ];
    let resps = [
        IncrementResponse::Inc(2),
        IncrementResponse::Div(Err(MathError::DivideByZero)),
        IncrementResponse::Log(()),
        IncrementResponse::Note(()),
        IncrementResponse::Poke(()),
        IncrementResponse::Ticks(7u64),
        IncrementResponse::Other(String::new()),
        IncrementResponse::Unit(()),
    ];
    fn serde_both<T: Serialize + for<'de> Deserialize<'de> + std::fmt::Debug>(_: &T) {}
    serde_both(&reqs[0]);
    serde_both(&resps[0]);
}

/// The trait's futures are `Send` (required of every implementation).
fn futures_are_send<T: Increment>(t: &T) {
    fn is_send<F: Send>(_: &F) {}
    is_send(&t.inc(1));
    is_send(&t.ticks(1));
}

// ---------------------------------------------------------------------------
// Run-time checks of the server.

#[test]
fn service_identity() {
    assert_eq!(IncrementClient::SERVICE, ServiceId::new("inc", 1));
    assert_eq!(IncrementServer::<Impl>::SERVICE, ServiceId::new("inc", 1));
    let server: Box<dyn Service> = Box::new(IncrementServer::new(Impl::default()));
    assert_eq!(
        server.id(),
        ServiceId {
            name: "inc",
            version: 1
        }
    );
}

#[test]
fn method_table() {
    let server = IncrementServer::new(Impl::default());
    let methods: &'static [MethodInfo] = server.methods();
    let expected = [
        (1, "inc", MethodKind::Unary),
        (2, "div", MethodKind::Unary),
        (3, "log", MethodKind::Oneway(Ack::None)),
        (4, "note", MethodKind::Oneway(Ack::Receipt)),
        (5, "poke", MethodKind::Oneway(Ack::Delivery)),
        (6, "ticks", MethodKind::Stream),
        (70, "other", MethodKind::Unary),
        (8, "unit", MethodKind::Unary),
    ];
    let got: Vec<_> = methods.iter().map(|m| (m.id, m.name, m.kind)).collect();
    assert_eq!(got, expected);
}

#[test]
fn unknown_method() {
    let server: Box<dyn Service> = Box::new(IncrementServer::new(Impl::default()));
    match server.call(99, bytes::Bytes::new()) {
        Err(ServerError::UnknownMethod(99)) => {}
        other => panic!("expected UnknownMethod(99), got {other:?}"),
    }
}

#[test]
fn bad_arguments() {
    let server = IncrementServer::new(Impl::default());
    // `inc` takes a u64; no bytes at all cannot decode.
    assert!(matches!(
        server.call(1, bytes::Bytes::new()),
        Err(ServerError::BadArguments(_))
    ));
    // Trailing bytes are rejected too.
    let mut args = varint(1);
    args.push(0);
    assert!(matches!(
        server.call(1, args.into()),
        Err(ServerError::BadArguments(_))
    ));
}

#[test]
fn unary_dispatch() {
    let server = IncrementServer::new(Impl::default());
    let h = server.call(1, varint(41).into()).expect("handler");
    assert!(matches!(h, Handler::Unary(_)));
    assert_eq!(&block_on(run_unary(h)).unwrap()[..], &varint(42)[..]);
}

#[test]
fn fallible_dispatch_encodes_the_whole_result() {
    let server = IncrementServer::new(Impl::default());
    let mut args = zigzag(7);
    args.extend(zigzag(2));
    let out = block_on(run_unary(server.call(2, args.into()).unwrap())).unwrap();
    // Ok = variant 0, then 3 zigzagged.
    assert_eq!(&out[..], &[0, 6]);
    let mut args = zigzag(7);
    args.extend(zigzag(0));
    let out = block_on(run_unary(server.call(2, args.into()).unwrap())).unwrap();
    // Err = variant 1, DivideByZero = variant 0.
    assert_eq!(&out[..], &[1, 0]);
}

#[test]
fn oneway_and_no_argument_dispatch() {
    let imp = Arc::new(Impl::default());
    let server = IncrementServer::from_arc(Arc::clone(&imp));
    // `poke` has no arguments: the empty tuple encodes as nothing; `()` results too.
    let out = block_on(run_unary(server.call(5, bytes::Bytes::new()).unwrap())).unwrap();
    assert!(out.is_empty());
    assert_eq!(imp.pokes.load(Ordering::SeqCst), 1);
    assert!(Arc::ptr_eq(server.inner(), &imp));
    // A string argument: varint length + bytes.
    let mut args = varint(2);
    args.extend(b"hi");
    let out = block_on(run_unary(server.call(3, args.into()).unwrap())).unwrap();
    assert!(out.is_empty());
}

#[test]
fn explicit_id_dispatch() {
    let server = IncrementServer::new(Impl::default());
    let out = block_on(run_unary(server.call(70, bytes::Bytes::new()).unwrap())).unwrap();
    let mut expected = varint(5);
    expected.extend(b"other");
    assert_eq!(&out[..], &expected[..]);
    // 7 (its position) is not a method.
    assert!(matches!(
        server.call(7, bytes::Bytes::new()),
        Err(ServerError::UnknownMethod(7))
    ));
}

#[test]
fn stream_dispatch() {
    let server = IncrementServer::new(Impl::default());
    let h = server.call(6, varint(3).into()).unwrap();
    let Handler::Stream(s) = h else {
        panic!("expected a stream handler")
    };
    let items: Vec<_> = block_on(futures::StreamExt::collect::<Vec<_>>(s));
    let items: Vec<Vec<u8>> = items.into_iter().map(|i| i.unwrap().to_vec()).collect();
    assert_eq!(items, vec![vec![0], vec![1], vec![2]]);
}

#[test]
fn server_is_clone_and_debug() {
    let server = IncrementServer::new(Impl::default());
    let clone = server.clone();
    assert!(Arc::ptr_eq(server.inner(), clone.inner()));
    assert_eq!(format!("{server:?}"), "IncrementServer { .. }");
}

/// The `crate = ".."` override, and the facade path `::mw::rpc`.
mod crate_override {
    /// A service generated against `::mw::rpc` explicitly.
    #[mw::service(crate = "::mw::rpc", version = 3)]
    pub trait Echo {
        /// Echoes.
        async fn echo(&self, s: String) -> String;
    }

    struct E;
    impl Echo for E {
        async fn echo(&self, s: String) -> String {
            s
        }
    }

    #[test]
    fn works() {
        use mw::rpc::Service;
        assert_eq!(EchoClient::SERVICE, mw::rpc::ServiceId::new("Echo", 3));
        let s = EchoServer::new(E);
        assert_eq!(s.methods().len(), 1);
    }
}

/// Private trait, arguments whose names collide with generated locals, and a
/// user type called `S`.
mod hygiene_of_names {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct S(u8);

    #[mw::service]
    trait Names {
        async fn f(&self, inner: S, args: u8, method: u8, other: u8, this: u8) -> u8;
    }

    struct N;
    impl Names for N {
        async fn f(&self, inner: S, args: u8, method: u8, other: u8, this: u8) -> u8 {
            inner.0 + args + method + other + this
        }
    }

    #[test]
    fn dispatches() {
        use mw::rpc::{Handler, Service};
        let s = NamesServer::new(N);
        let h = s
            .call(1, bytes::Bytes::from_static(&[1, 2, 3, 4, 5]))
            .unwrap();
        let Handler::Unary(f) = h else { panic!() };
        assert_eq!(&futures::executor::block_on(f).unwrap()[..], &[15]);
    }
}

/// Edge cases: a service without methods, and a trait whose name is the server's
/// usual type parameter.
mod edge_cases {
    /// No methods at all.
    #[mw::service]
    pub trait Empty {}

    /// Named like the generated server's type parameter.
    #[mw::service]
    pub trait S {
        /// One method.
        async fn get(&self) -> u8;
    }

    struct Nothing;
    impl Empty for Nothing {}
    impl S for Nothing {
        async fn get(&self) -> u8 {
            7
        }
    }

    #[test]
    fn compile_and_dispatch() {
        use mw::rpc::{ServerError, Service};
        let e = EmptyServer::new(Nothing);
        assert!(e.methods().is_empty());
        assert!(matches!(
            e.call(1, bytes::Bytes::new()),
            Err(ServerError::UnknownMethod(1))
        ));
        let s: SServer<Nothing> = SServer::new(Nothing);
        assert_eq!(s.methods()[0].name, "get");
    }
}
