//! The `mw` command: hosts daemons (registry, broker) and small client verbs.
//!
//! Thin by design: it parses flags and calls the library.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mw",
    version,
    about = "mw middleware: daemons and client verbs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tour every part of mw in one process, on a temporary data directory (no servers needed).
    Demo,
    /// Run a service registry (like rpcbind): servers register name+version -> address.
    Registry {
        /// Address to listen on: HOST:PORT or unix:PATH.
        #[arg(long, default_value = "127.0.0.1:7700")]
        addr: String,
    },
    /// Run the broker: queues, the event bus and a registry on one address.
    Broker {
        /// Address to listen on: HOST:PORT or unix:PATH.
        #[arg(long, default_value = "127.0.0.1:7800")]
        addr: String,
        /// Data directory for persistent queues (created if missing).
        #[arg(long, default_value = "mw-data")]
        data: std::path::PathBuf,
    },
    /// Show what a registry knows.
    Lookup {
        /// The registry's address.
        #[arg(long)]
        registry: String,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result: Result<(), mw::run::BoxError> = match cli.command {
        Command::Registry { addr } => {
            let server = mw::rpc::Server::builder()
                .add(mw::rpc::registry::RegistryServer::new(
                    mw::rpc::registry::RegistryImpl::new(),
                ))
                .build();
            mw::run::serve(server, &addr, None, &[])
                .await
                .map_err(Into::into)
        }
        Command::Lookup { registry } => lookup(&registry).await,
        Command::Demo => demo().await,
        Command::Broker { addr, data } => broker(&addr, data).await,
    };
    mw::run::exit_boxed("mw", result)
}

async fn lookup(registry: &str) -> Result<(), mw::run::BoxError> {
    let client = mw::rpc::registry::RegistryClient::connect(registry).await?;
    for r in client.list().await? {
        println!("{} v{} {} (ttl {} ms)", r.name, r.version, r.addr, r.ttl_ms);
    }
    Ok(())
}

async fn demo() -> Result<(), mw::run::BoxError> {
    let dir = tempfile::tempdir()?;
    let mut out = std::io::stdout();
    mw::tour::run(&mut out, dir.path()).await
}

async fn broker(addr: &str, data: std::path::PathBuf) -> Result<(), mw::run::BoxError> {
    let broker = mw::broker::open(mw::broker::BrokerConfig::new(data)).await?;
    mw::run::serve(broker.server, addr, None, &[]).await?;
    Ok(())
}
