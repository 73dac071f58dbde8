//! The registry (rpcbind-like name service) over every transport: a server registered
//! with a `LeaseKeeper` is found by name, a withdrawn one is not (`UnknownService`), and
//! a registration nobody renews disappears once its lease runs out.

#[macro_use]
mod common;

use std::time::Duration;

use common::{start_server, start_server_at, within, IsolatedServer, Transport, STEP_LIMIT};
use mw::demo::{IncrementClient, IncrementImpl, IncrementServer};
use mw::rpc::registry::{LeaseKeeper, Registration, RegistryClient, RegistryImpl, RegistryServer};
use mw::rpc::{Channel, RpcError, ServerConfig};

async fn registry(t: Transport) -> common::TestServer {
    start_server(t, ServerConfig::default(), |b| {
        b.add(RegistryServer::new(RegistryImpl::new()))
    })
    .await
}

async fn registered_service_is_found_by_name_until_withdrawn(t: Transport) {
    let reg = registry(t).await;
    let inc = start_server(t, ServerConfig::default(), |b| {
        b.add(IncrementServer::new(IncrementImpl))
    })
    .await;
    let lease = LeaseKeeper::register(
        &reg.addr,
        "increment",
        1,
        &inc.addr,
        Duration::from_secs(60),
    )
    .await
    .expect("register");

    let channel = within(
        "connect by name",
        Channel::connect_by_name(&reg.addr, "increment", 1),
    )
    .await
    .expect("connect by name");
    assert_eq!(channel.addr().to_string(), inc.addr);
    assert_eq!(IncrementClient::new(channel).inc(41).await.unwrap(), 42);
    // Another version of the name is not registered.
    assert!(matches!(
        Channel::connect_by_name(&reg.addr, "increment", 2).await,
        Err(RpcError::UnknownService(_))
    ));
    let listed = RegistryClient::connect(&reg.addr)
        .await
        .unwrap()
        .list()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].version, &listed[0].addr),
        ("increment", 1, &inc.addr)
    );

    lease.withdraw().await.expect("withdraw");
    match Channel::connect_by_name(&reg.addr, "increment", 1).await {
        Err(RpcError::UnknownService(msg)) => assert!(msg.contains("increment"), "{msg}"),
        other => panic!("expected UnknownService after withdraw, got {other:?}"),
    }
    inc.shutdown().await;
    reg.shutdown().await;
}

async fn unrenewed_registration_disappears_when_its_lease_runs_out(t: Transport) {
    let reg = registry(t).await;
    let client = RegistryClient::connect(&reg.addr).await.unwrap();
    client
        .register(Registration {
            name: "ephemeral".into(),
            version: 1,
            addr: "127.0.0.1:9".into(),
            ttl_ms: 50,
        })
        .await
        .expect("register");
    // Poll until the lease has run out: bounded in time and count, paced so the loop
    // does not spin.
    let deadline = tokio::time::Instant::now() + STEP_LIMIT;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut gone = false;
    for _ in 0..1000 {
        tick.tick().await;
        if client
            .lookup("ephemeral".into(), 1)
            .await
            .unwrap()
            .is_none()
        {
            gone = true;
            break;
        }
        if tokio::time::Instant::now() > deadline {
            break;
        }
    }
    assert!(gone, "a 50 ms lease was still live after {STEP_LIMIT:?}");
    assert!(client.list().await.unwrap().is_empty());
    assert!(matches!(
        Channel::connect_by_name(&reg.addr, "ephemeral", 1).await,
        Err(RpcError::UnknownService(_))
    ));
    reg.shutdown().await;
}

/// The registry crashes and restarts at the same address; the lease
/// keeper notices the dead connection, reconnects and registers again within a renewal
/// period (a third of the ttl), instead of renewing over the dead connection forever.
async fn lease_keeper_reregisters_with_a_restarted_registry(t: Transport) {
    let endpoint = common::Endpoint::new(t);
    let reg = IsolatedServer::start(&endpoint, ServerConfig::default(), |b| {
        b.add(RegistryServer::new(RegistryImpl::new()))
    })
    .await;
    let reg_addr = reg.addr.clone();
    let ttl = Duration::from_millis(600);
    let _lease = LeaseKeeper::register(&reg_addr, "date", 1, "127.0.0.1:9", ttl)
        .await
        .expect("register");
    let endpoint = reg.endpoint();
    reg.kill().await;
    let reg = start_server_at(&endpoint, ServerConfig::default(), |b| {
        b.add(RegistryServer::new(RegistryImpl::new()))
    })
    .await;
    let client = RegistryClient::connect(&reg.addr).await.unwrap();
    // Registered again within one renewal period (ttl / 3) plus scheduling slack: poll,
    // paced and bounded.
    let deadline = tokio::time::Instant::now() + ttl * 2;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut found = None;
    for _ in 0..1000 {
        tick.tick().await;
        found = client.lookup("date".into(), 1).await.unwrap();
        if found.is_some() || tokio::time::Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(
        found.as_deref(),
        Some("127.0.0.1:9"),
        "not re-registered with the restarted registry within {:?}",
        ttl * 2
    );
    reg.shutdown().await;
}

per_transport!(
    registered_service_is_found_by_name_until_withdrawn,
    unrenewed_registration_disappears_when_its_lease_runs_out,
    lease_keeper_reregisters_with_a_restarted_registry,
);
