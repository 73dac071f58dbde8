//! Sun RPC's date server (DATE_PROG), served by mw.
//!
//! `cargo run --example date_server -- --addr 127.0.0.1:0 [--registry ADDR]`
//! prints `listening on <addr>` once it accepts connections.

use clap::Parser;
use mw::demo::{DateImpl, DateServer};

#[derive(Parser)]
struct Args {
    /// Address to listen on (HOST:PORT, unix:PATH).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: String,
    /// Register with the registry at this address.
    #[arg(long)]
    registry: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mw::run::exit_boxed("date_server", run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), mw::run::BoxError> {
    let server = mw::rpc::Server::builder()
        .add(DateServer::new(DateImpl))
        .build();
    mw::run::serve(
        server,
        &args.addr,
        args.registry.as_deref(),
        &[DateServer::<DateImpl>::SERVICE],
    )
    .await?;
    Ok(())
}
