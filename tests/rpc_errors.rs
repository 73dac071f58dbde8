//! Interface mismatches are reported as their own errors: a client generated for another
//! version of the service (`VersionMismatch` naming both versions), a service the server
//! does not host (`UnknownService`), a method number it lacks (`UnknownMethod`),
//! arguments or replies of the wrong type, and connecting to nothing.

#[macro_use]
mod common;

use common::{start_server, within, Transport};
use mw::rpc::{Channel, RpcError, ServerConfig};

mod v1 {
    #[mw::service(name = "versioned", version = 1)]
    pub trait Versioned {
        async fn which(&self) -> u32;
    }

    pub struct Impl;
    impl Versioned for Impl {
        async fn which(&self) -> u32 {
            1
        }
    }
}

mod v2 {
    #[mw::service(name = "versioned", version = 2)]
    pub trait Versioned {
        async fn which(&self) -> u32;
    }

    pub struct Impl;
    impl Versioned for Impl {
        async fn which(&self) -> u32 {
            2
        }
    }
}

#[mw::service(name = "absent", version = 1)]
pub trait Absent {
    async fn which(&self) -> u32;
}

async fn v1_server(t: Transport) -> common::TestServer {
    start_server(t, ServerConfig::default(), |b| {
        b.add(v1::VersionedServer::new(v1::Impl))
    })
    .await
}

async fn client_of_other_service_version_gets_version_mismatch(t: Transport) {
    let server = v1_server(t).await;
    let v2 = v2::VersionedClient::connect(&server.addr).await.unwrap();
    match v2.which().await {
        Err(RpcError::VersionMismatch(msg)) => {
            assert!(
                msg.contains("versioned") && msg.contains("version 2") && msg.contains("version 1"),
                "message should name the service and both versions: {msg}"
            );
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    // The matching client on the same server works.
    let v1 = v1::VersionedClient::connect(&server.addr).await.unwrap();
    assert_eq!(v1.which().await.unwrap(), 1);
    server.shutdown().await;
}

async fn two_versions_side_by_side_each_answer_their_clients(t: Transport) {
    let server = start_server(t, ServerConfig::default(), |b| {
        b.add(v1::VersionedServer::new(v1::Impl))
            .add(v2::VersionedServer::new(v2::Impl))
    })
    .await;
    let channel = Channel::connect(&server.addr).await.unwrap();
    let c1 = v1::VersionedClient::new(channel.clone());
    let c2 = v2::VersionedClient::new(channel);
    assert_eq!(c1.which().await.unwrap(), 1);
    assert_eq!(c2.which().await.unwrap(), 2);
    server.shutdown().await;
}

async fn unknown_service_and_method_are_named(t: Transport) {
    let server = v1_server(t).await;
    let absent = AbsentClient::connect(&server.addr).await.unwrap();
    match absent.which().await {
        Err(e @ RpcError::UnknownService(_)) => {
            let text = e.to_string();
            assert!(text.contains("absent"), "{text}");
            // Said once, not `unknown service "no service named ..."`.
            assert_eq!(text.matches("service").count(), 1, "{text}");
        }
        other => panic!("expected UnknownService, got {other:?}"),
    }
    let channel = absent.channel().clone();
    let svc = v1::VersionedClient::SERVICE;
    match channel.call::<_, u32>(svc, 99, &()).await {
        Err(RpcError::UnknownMethod(msg)) => assert!(msg.contains("99"), "{msg}"),
        other => panic!("expected UnknownMethod, got {other:?}"),
    }
    // Arguments the method does not take, and a reply read as the wrong type.
    assert!(matches!(
        channel.call::<_, u32>(svc, 1, &("surplus",)).await,
        Err(RpcError::BadArguments(_))
    ));
    assert!(matches!(
        channel.call::<_, String>(svc, 1, &()).await,
        Err(RpcError::Protocol(_))
    ));
    // None of this broke the connection.
    assert_eq!(channel.call::<_, u32>(svc, 1, &()).await.unwrap(), 1);
    server.shutdown().await;
}

async fn connecting_to_nothing_names_the_address(t: Transport) {
    // A server that existed and is gone: its address is free again.
    let server = v1_server(t).await;
    let addr = server.addr.clone();
    server.shutdown().await;
    let err = within("connect", Channel::connect(&addr))
        .await
        .expect_err("nothing listens there any more");
    assert!(matches!(err, RpcError::Transport(_)), "{err:?}");
    assert!(err.to_string().contains(&addr), "{err} should name {addr}");
    let err = Channel::connect("nonsense").await.unwrap_err();
    assert!(err.to_string().contains("nonsense"), "{err}");
}

per_transport!(
    client_of_other_service_version_gets_version_mismatch,
    two_versions_side_by_side_each_answer_their_clients,
    unknown_service_and_method_are_named,
    connecting_to_nothing_names_the_address,
);
