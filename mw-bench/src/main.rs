//! mw-bench: measures mw against the floor beside it and against peers, in one run.
//!
//! ```text
//! cargo run --release -p mw-bench -- rpc [--json] [--seq-calls N] [--seconds S] [--quick]
//! ```
//!
//! Each benchmark lives in its own module (`rpc.rs`, …) and adds one subcommand here.
//! Servers run in child processes: the parent re-executes this binary with the hidden
//! `serve <target> --addr ADDR` subcommand (see [`child`]).

mod child;
mod kv;
mod kv_ring;
mod machine;
mod peers;
mod pubsub;
mod queue;
mod recovery;
mod report;
mod rpc;
mod space;
mod stats;

use clap::{Parser, Subcommand};

/// The error type of the benchmark drivers.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
#[command(
    name = "mw-bench",
    about = "Benchmarks for mw against the raw floor and peers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// RPC: sequential latency and pipelined throughput of mw, raw TCP and tarpc.
    Rpc(rpc::RpcArgs),
    /// Pub/sub: 1 publisher to 1/10/100 subscribers over TCP and embedded, delivered msgs/s and latency.
    Pubsub(pubsub::PubsubArgs),
    /// Queues: fsync floor, confirmed sends to a broker child (group commit), RSS under backlog.
    Queue(queue::QueueArgs),
    /// Key-value: mw-kv vs redis, SET/GET unbatched and pipelined, durable SET vs appendfsync always.
    Kv(kv::KvArgs),
    /// Key-value ring: 3 mw-kv nodes, YCSB-A, recursive vs iterative routing, healthy and with a replica SIGSTOPped.
    KvRing(kv_ring::KvRingArgs),
    /// Queue recovery: open time on adversarial segments of 1-64 MiB (must grow linearly).
    Recovery(recovery::RecoveryArgs),
    /// Tuple space: out+in pairs per second through a broker child, and 10 competing takers.
    Space(space::SpaceArgs),
    /// Internal: run one benchmark server until killed (started by the parent).
    #[command(hide = true)]
    Serve {
        /// Which server (rpc: raw, mw, tarpc).
        target: String,
        /// Address to bind; the real one is printed as `listening on <addr>`.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
        /// Data directory (queue-broker, kv).
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        /// Fsync policy: always or never (queue-broker); always, never or interval:MS (kv).
        #[arg(long)]
        fsync: Option<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rpc(args) => rpc::run(&args),
        Command::Pubsub(args) => pubsub::run(&args),
        Command::Queue(args) => queue::run(&args),
        Command::Recovery(args) => recovery::run(&args),
        Command::Kv(args) => kv::run(&args),
        Command::KvRing(args) => kv_ring::run(&args),
        Command::Space(args) => space::run(&args),
        Command::Serve {
            target,
            addr,
            data,
            fsync,
        } if queue::SERVE_TARGETS.contains(&target.as_str()) => child::runtime()
            .map_err(Error::from)
            .and_then(|rt| rt.block_on(queue::serve(&addr, data, fsync))),
        Command::Serve {
            target,
            addr,
            data,
            fsync,
        } if kv::SERVE_TARGETS.contains(&target.as_str()) => kv::serve(&addr, data, fsync),
        Command::Serve {
            target,
            addr,
            data,
            fsync,
        } if kv_ring::SERVE_TARGETS.contains(&target.as_str()) => {
            kv_ring::serve(&addr, data, fsync)
        }
        Command::Serve { target, addr, .. } => serve(&target, &addr),
    };
    if let Err(e) = result {
        eprintln!("mw-bench: {e}");
        std::process::exit(1);
    }
}

fn serve(target: &str, addr: &str) -> Result<(), Error> {
    let rt = child::runtime()?;
    // Each benchmark module claims its targets here.
    if rpc::SERVE_TARGETS.contains(&target) {
        return rt.block_on(rpc::serve(target, addr));
    }
    if pubsub::SERVE_TARGETS.contains(&target) {
        return rt.block_on(pubsub::serve(target, addr));
    }
    Err(format!("unknown server target {target:?}").into())
}
