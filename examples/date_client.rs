//! Sun RPC's date client: asks the server for the time twice, as a number and as text.
//!
//! `cargo run --example date_client -- --addr ADDR` (or `--registry ADDR`) prints
//! `bin_date: <secs>` and `str_date: <text>`.

use clap::Parser;
use mw::demo::DateClient;

#[derive(Parser)]
struct Args {
    /// The date server's address.
    #[arg(long)]
    addr: Option<String>,
    /// Find the date server through this registry instead.
    #[arg(long)]
    registry: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mw::run::exit_boxed("date_client", run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), mw::run::BoxError> {
    let channel = mw::run::connect(
        args.addr.as_deref(),
        args.registry.as_deref(),
        DateClient::SERVICE,
    )
    .await?;
    let date = DateClient::new(channel);
    let secs = date.bin_date().await?;
    println!("bin_date: {secs}");
    println!("str_date: {}", date.str_date(secs).await?);
    Ok(())
}
