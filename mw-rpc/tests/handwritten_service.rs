//! The runtime driven by a hand-written `Service` (what `#[service]` generates, spelled out),
//! over every transport.

use std::time::Duration;

use bytes::Bytes;
use mw_rpc::__private::{decode, unary};
use mw_rpc::{
    Channel, Handler, MethodInfo, MethodKind, RpcError, Server, ServerError, Service, ServiceId,
};

struct Inc;

const INC: ServiceId = ServiceId::new("inc", 1);

impl Service for Inc {
    fn id(&self) -> ServiceId {
        INC
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &[MethodInfo {
            id: 1,
            name: "inc",
            kind: MethodKind::Unary,
        }]
    }
    fn call(&self, method: u32, args: Bytes) -> Result<Handler, ServerError> {
        match method {
            1 => {
                let (n,): (u64,) = decode(&args)?;
                Ok(unary(async move { n + 1 }))
            }
            m => Err(ServerError::UnknownMethod(m)),
        }
    }
}

async fn round_trip(addr: &str) {
    let server = Server::builder()
        .add(Inc)
        .build()
        .spawn(addr)
        .await
        .unwrap();
    let ch = Channel::connect(&server.local_addr().to_string())
        .await
        .unwrap();
    assert_eq!(ch.call::<_, u64>(INC, 1, &(41u64,)).await.unwrap(), 42);
    // Many concurrent calls on one channel each get their own answer.
    let calls = (0..500u64).map(|i| {
        let ch = ch.clone();
        async move { (i, ch.call::<_, u64>(INC, 1, &(i,)).await.unwrap()) }
    });
    for (i, r) in futures::future::join_all(calls).await {
        assert_eq!(r, i + 1);
    }
    let err = ch.call::<_, u64>(INC, 9, &(1u64,)).await.unwrap_err();
    assert!(matches!(err, RpcError::UnknownMethod(_)), "{err}");
    let err = ch
        .call::<_, u64>(ServiceId::new("inc", 2), 1, &(1u64,))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::VersionMismatch(_)), "{err}");
    let err = ch
        .call::<_, u64>(ServiceId::new("nope", 1), 1, &(1u64,))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::UnknownService(_)), "{err}");
    let err = ch
        .call::<_, u64>(INC, 1, &("not a number",))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::BadArguments(_)), "{err}");
    assert!(ch.ping().await.unwrap() < Duration::from_secs(10));
    server.shutdown().await;
}

#[tokio::test]
async fn handwritten_service_over_tcp_unix_inproc() {
    round_trip("127.0.0.1:0").await;
    let dir = tempfile::tempdir().unwrap();
    round_trip(&format!("unix:{}", dir.path().join("s.sock").display())).await;
    round_trip("inproc:0").await;
}
