//! `mw demo`: a tour of every part, embedded in one process, on a temporary data directory.
//!
//! It is the quick start's "main job": no server to start, nothing to configure. Each step
//! prints what happened, so the output reads as a walk through the lectures' ideas.

use std::io::Write;
use std::path::Path;

use crate::demo::{
    DateClient, DateImpl, DateServer, IncrementClient, IncrementImpl, IncrementServer,
};
use crate::rpc::registry::{LeaseKeeper, RegistryImpl, RegistryServer};
use crate::rpc::{Channel, RpcError, Server};
use crate::run::{BoxError, REGISTRY_TTL};

/// Runs the whole tour, writing its narration to `out`; `data_dir` holds the queue data.
///
/// # Errors
/// Any failure of a step (none is expected on a healthy machine).
pub async fn run(out: &mut (dyn Write + Send), data_dir: &Path) -> Result<(), BoxError> {
    rpc(out).await?;
    queue(out, data_dir).await?;
    pubsub(out).await?;
    writeln!(out, "\ndone.")?;
    Ok(())
}

async fn rpc(out: &mut (dyn Write + Send)) -> Result<(), BoxError> {
    writeln!(
        out,
        "== RPC (control-oriented, request/reply) over in-process transport"
    )?;
    let registry = Server::builder()
        .add(RegistryServer::new(RegistryImpl::new()))
        .build()
        .spawn("inproc:0")
        .await?;
    let registry_addr = registry.local_addr().to_string();
    let servers = Server::builder()
        .add(DateServer::new(DateImpl))
        .add(IncrementServer::new(IncrementImpl))
        .build()
        .spawn("inproc:0")
        .await?;
    let addr = servers.local_addr().to_string();
    writeln!(
        out,
        "registry at {registry_addr}; date and increment servers at {addr}"
    )?;
    let mut leases = Vec::new();
    for id in [
        DateServer::<DateImpl>::SERVICE,
        IncrementServer::<IncrementImpl>::SERVICE,
    ] {
        leases.push(
            LeaseKeeper::register(&registry_addr, id.name, id.version, &addr, REGISTRY_TTL).await?,
        );
        writeln!(out, "registered {id} (lease {} s)", REGISTRY_TTL.as_secs())?;
    }

    let date = DateClient::new(Channel::connect_by_name(&registry_addr, "date", 1).await?);
    let secs = date.bin_date().await?;
    writeln!(
        out,
        "bin_date() = {secs}   (found by name through the registry)"
    )?;
    writeln!(out, "str_date({secs}) = {:?}", date.str_date(secs).await?)?;

    let inc = IncrementClient::connect(&addr).await?;
    writeln!(out, "inc(41) = {}", inc.inc(41).await?)?;
    // Deferred synchronous: both requests leave now, the answers are collected later.
    let a = inc.start_inc(1).await?;
    let b = inc.start_inc(2).await?;
    writeln!(
        out,
        "deferred: start_inc(1), start_inc(2) ... then awaited: {}, {}",
        a.await?,
        b.await?
    )?;

    let wrong = Channel::connect(&addr).await?;
    match wrong
        .call::<_, u64>(crate::rpc::ServiceId::new("increment", 2), 1, &(1u64,))
        .await
    {
        Err(e @ RpcError::VersionMismatch(_)) => writeln!(out, "a v2 client is told: {e}")?,
        other => writeln!(out, "unexpected: {other:?}")?,
    }
    for lease in leases {
        lease.withdraw().await?;
    }
    servers.shutdown().await;
    registry.shutdown().await;
    Ok(())
}

async fn queue(out: &mut (dyn Write + Send), data_dir: &Path) -> Result<(), BoxError> {
    use crate::queue::{Config, ConsumerOptions, Message, QueueManager};

    writeln!(
        out,
        "\n== Queues (message-oriented, persistent) embedded on {}",
        data_dir.display()
    )?;
    let qm = QueueManager::open(data_dir, Config::default()).await?;
    let orders = qm.queue("orders");
    for item in ["espresso", "latte", "cortado"] {
        // Returns once the message is on disk (fsynced: group commit).
        let id = orders.send(Message::new(item)).await?;
        writeln!(out, "sent {item:?} as {id} (durable when this line prints)")?;
    }
    // Nobody was consuming: the queue holds them. Simulate a crash: drop without closing.
    drop(orders);
    drop(qm);
    let qm = QueueManager::open(data_dir, Config::default()).await?;
    writeln!(
        out,
        "reopened after a simulated crash: depth {}",
        qm.stats("orders").depth
    )?;
    let mut consumer = qm.queue("orders").consumer(ConsumerOptions::default());
    let first = consumer.recv().await?;
    writeln!(
        out,
        "received {:?}; nack -> requeued for redelivery",
        String::from_utf8_lossy(first.body())
    )?;
    first.nack(None).await?;
    for _ in 0..3 {
        let d = consumer.recv().await?;
        writeln!(
            out,
            "received {:?} (attempt {}), ack",
            String::from_utf8_lossy(d.body()),
            d.attempt()
        )?;
        d.ack().await?;
    }
    drop(consumer);
    let log = qm.log_stats();
    writeln!(out, "log: {} appends, {} fsyncs", log.appends, log.fsyncs)?;
    qm.close().await?;
    Ok(())
}

async fn pubsub(out: &mut (dyn Write + Send)) -> Result<(), BoxError> {
    use crate::pubsub::{Bus, Config, SlowConsumerPolicy, SubscribeOptions};

    writeln!(out, "\n== Pub/sub (event-based) embedded bus")?;
    let bus = Bus::new(Config::default());
    let report = bus.publish("sensors.kitchen.temp", "21.5".into())?;
    writeln!(
        out,
        "publish before anyone subscribed reached {} subscribers (lost)",
        report.reached()
    )?;
    let mut temps = bus.subscribe(
        "sensors.*.temp",
        SubscribeOptions {
            buffer: 2,
            policy: SlowConsumerPolicy::DropOldest,
        },
    )?;
    let mut all = bus.subscribe("sensors.>", SubscribeOptions::default())?;
    bus.publish_retained("sensors.hall.temp", "19.0".into())?;
    for (topic, value) in [
        ("sensors.kitchen.temp", "21.6"),
        ("sensors.kitchen.humidity", "40"),
        ("sensors.cellar.temp", "12.1"),
    ] {
        let r = bus.publish(topic, value.into())?;
        writeln!(out, "publish {topic} = {value} reached {}", r.reached())?;
    }
    // `temps` buffers 2 events and drops the oldest when full: it missed one.
    while let Some(e) = temps.try_recv()? {
        writeln!(
            out,
            "sensors.*.temp got {} {} (missed before it: {})",
            e.topic,
            String::from_utf8_lossy(&e.payload),
            e.dropped_before
        )?;
    }
    let mut n = 0;
    while all.try_recv()?.is_some() {
        n += 1;
    }
    writeln!(
        out,
        "sensors.> got {n} events; a late subscriber gets the retained hall temperature:"
    )?;
    let mut late = bus.subscribe("sensors.hall.*", SubscribeOptions::default())?;
    let e = late.recv().await?;
    writeln!(out, "  {} {}", e.topic, String::from_utf8_lossy(&e.payload))?;
    Ok(())
}
