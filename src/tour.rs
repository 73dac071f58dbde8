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
    let _ = data_dir;
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
