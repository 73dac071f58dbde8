//! The increment client: `cargo run --example increment_client -- --addr ADDR --value 41`
//! prints `42`. Use `--registry ADDR` instead of `--addr` to find the server by name.

use clap::Parser;
use mw::demo::IncrementClient;

#[derive(Parser)]
struct Args {
    /// The increment server's address.
    #[arg(long)]
    addr: Option<String>,
    /// Find the server through this registry instead.
    #[arg(long)]
    registry: Option<String>,
    /// The number to increment.
    #[arg(long)]
    value: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mw::run::exit_boxed("increment_client", run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), mw::run::BoxError> {
    let channel = mw::run::connect(
        args.addr.as_deref(),
        args.registry.as_deref(),
        IncrementClient::SERVICE,
    )
    .await?;
    println!("{}", IncrementClient::new(channel).inc(args.value).await?);
    Ok(())
}
