//! The Erlang increment server: `inc(n)` answers `n + 1`.
//!
//! `cargo run --example increment_server -- --addr 127.0.0.1:0 [--registry ADDR] [--iterative]`
//! prints `listening on <addr>` once it accepts connections.

use clap::Parser;
use mw::demo::{IncrementImpl, IncrementServer};
use mw::rpc::{ExecutionMode, ServerConfig};

#[derive(Parser)]
struct Args {
    /// Address to listen on (HOST:PORT, unix:PATH).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: String,
    /// Register with the registry at this address.
    #[arg(long)]
    registry: Option<String>,
    /// Serve one call at a time (the lectures' iterative server) instead of concurrently.
    #[arg(long)]
    iterative: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mw::run::exit_boxed("increment_server", run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), mw::run::BoxError> {
    let mode = if args.iterative {
        ExecutionMode::Iterative
    } else {
        ExecutionMode::Concurrent
    };
    let server = mw::rpc::Server::builder()
        .config(ServerConfig {
            mode,
            ..Default::default()
        })
        .add(IncrementServer::new(IncrementImpl))
        .build();
    let services = [IncrementServer::<IncrementImpl>::SERVICE];
    mw::run::serve(server, &args.addr, args.registry.as_deref(), &services).await?;
    Ok(())
}
