//! The `mw-kv` command line: `serve` runs a node; the other verbs are clients of one.
//!
//! Every failure ends in one line on stderr (`mw-kv: …`) and a non-zero exit: 1 for
//! "not found" answers of `get` and `del`, 2 for bad arguments (clap), 1 otherwise.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use mw::rpc::{RpcError, Server};

use crate::config::{Config, FsyncPolicy};
use crate::error::KvError;
use crate::kv::Kv;
use crate::service::{KvNode, KvServiceClient, KvServiceServer};
use crate::types::{DeleteOptions, Durability, EventKind, PutOptions, Version};

/// The default address of a node (`serve --addr`, and `--node` of the client verbs).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7900";

/// `mw-kv`: a key-value store on mw.
#[derive(Debug, Parser)]
#[command(
    name = "mw-kv",
    version,
    about = "mw's key-value store: run a node, or talk to one"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where a client verb sends its request.
#[derive(Debug, Clone, Args)]
pub struct NodeArg {
    /// The node: HOST:PORT, unix:PATH or inproc:NAME.
    #[arg(long, env = "MW_KV_NODE", default_value = DEFAULT_ADDR)]
    pub node: String,
    /// Seconds to wait for the node's answer.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_secs)]
    pub timeout: f64,
}

/// The verbs.
// `node` fields are flattened `NodeArg`s, documented there; a doc comment on them
// would not reach the help text.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node until Ctrl-C or SIGTERM (then drain and sync).
    Serve {
        /// Address to listen on: HOST:PORT, unix:PATH.
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: String,
        /// Data directory (created if missing, owner-only). Refused if it holds anything
        /// but an mw-kv store.
        #[arg(long, default_value = "mw-kv-data")]
        data: PathBuf,
        /// When writes reach the disk: `always` (group commit; Sync writes are on disk
        /// when acknowledged), `interval:MS`, or `never`.
        #[arg(long, default_value = "always")]
        fsync: FsyncPolicy,
        /// Watch events kept for watchers resuming from a past revision.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        retain_events: u64,
    },
    /// Store VALUE under KEY; prints the new version.
    Put {
        #[command(flatten)]
        node: NodeArg,
        /// The key (UTF-8).
        key: String,
        /// The value (or give --file).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        value: Option<String>,
        /// Read the value's bytes from this file (`-`: standard input) instead.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Expire the key after SECS seconds.
        #[arg(long, value_name = "SECS", value_parser = parse_positive_secs)]
        ttl: Option<f64>,
        /// Only if the key's version is V (0: only if the key does not exist).
        #[arg(long, value_name = "V")]
        if_version: Option<u64>,
        /// Acknowledge before the write is on disk.
        #[arg(long)]
        buffered: bool,
    },
    /// Print the value of KEY (exit 1 and `not found` when absent).
    Get {
        #[command(flatten)]
        node: NodeArg,
        /// The key.
        key: String,
        /// Also print version, revisions and expiry (on stderr-free lines after the value).
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Delete KEY (exit 1 and `not found` when absent).
    Del {
        #[command(flatten)]
        node: NodeArg,
        /// The key.
        key: String,
        /// Only if the key's version is V.
        #[arg(long, value_name = "V")]
        if_version: Option<u64>,
    },
    /// Add DELTA (default 1) to the integer under KEY; prints the new value.
    Incr {
        #[command(flatten)]
        node: NodeArg,
        /// The key.
        key: String,
        /// The amount (may be negative).
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        delta: i64,
    },
    /// Print `KEY<TAB>VALUE` for live keys starting with PREFIX, in key order.
    Scan {
        #[command(flatten)]
        node: NodeArg,
        /// The prefix ("" for every key).
        #[arg(default_value = "")]
        prefix: String,
        /// Start after this key (paging).
        #[arg(long)]
        start_after: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Print changes under PREFIX as they happen: `REVISION PUT|DELETE|EXPIRE KEY [VALUE]`.
    Watch {
        #[command(flatten)]
        node: NodeArg,
        /// The prefix ("" for every key).
        #[arg(default_value = "")]
        prefix: String,
        /// Start from this revision (inclusive), replaying retained history.
        #[arg(long, value_name = "REV")]
        from_revision: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Print the node's revision, oldest watchable revision, engine and fsync policy.
    Status {
        #[command(flatten)]
        node: NodeArg,
    },
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

fn parse_positive_secs(s: &str) -> Result<f64, String> {
    match parse_secs(s)? {
        v if v > 0.0 => Ok(v),
        _ => Err("must be positive".into()),
    }
}

/// A failure of a verb, phrased for a person at a terminal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The key does not exist (`get`, `del`).
    #[error("not found")]
    NotFound,
    /// The node refused the request.
    #[error("{0}")]
    Kv(#[from] KvError),
    /// The node could not be reached or the call failed in transit.
    #[error("node {node}: {source}")]
    Rpc {
        /// The node address.
        node: String,
        /// Why.
        #[source]
        source: RpcError,
    },
    /// Serving failed.
    #[error("{0}")]
    Serve(String),
    /// Reading an input file failed.
    #[error("{0}")]
    Input(String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

fn rpc(node: &str, e: RpcError<KvError>) -> CliError {
    match e.into_application() {
        Ok(kv) => CliError::Kv(kv),
        Err(source) => CliError::Rpc {
            node: node.to_string(),
            source,
        },
    }
}

async fn connect(node: &NodeArg) -> Result<KvServiceClient, CliError> {
    let channel = mw::rpc::Channel::connect(&node.node)
        .await
        .map_err(|source| CliError::Rpc {
            node: node.node.clone(),
            source,
        })?;
    Ok(KvServiceClient::new(channel.with_timeout(
        Duration::from_secs_f64(node.timeout.max(0.001)),
    )))
}

/// Runs one parsed command, writing results to `out`.
///
/// # Errors
///
/// Whatever the verb ran into; [`CliError::NotFound`] for absent keys.
pub async fn run(cli: Cli, out: &mut (dyn std::io::Write + Send)) -> Result<(), CliError> {
    match cli.command {
        Command::Serve {
            addr,
            data,
            fsync,
            retain_events,
        } => {
            let config = Config {
                fsync,
                retain_events,
                ..Config::default()
            };
            serve(&addr, &data, config, out).await
        }
        Command::Put {
            node,
            key,
            value,
            file,
            ttl,
            if_version,
            buffered,
        } => {
            let value = match (value, file) {
                (Some(v), _) => Bytes::from(v),
                (None, Some(path)) => Bytes::from(read_value(&path)?),
                (None, None) => unreachable!("clap requires VALUE or --file"),
            };
            let client = connect(&node).await?;
            let options = PutOptions {
                if_version: if_version.map(Version),
                ttl: ttl.map(Duration::from_secs_f64),
                durability: if buffered {
                    Durability::Buffered
                } else {
                    Durability::Sync
                },
            };
            let w = client
                .put(Bytes::from(key), value, options)
                .await
                .map_err(|e| rpc(&node.node, e))?;
            writeln!(out, "{}", w.version)?;
            Ok(())
        }
        Command::Get { node, key, verbose } => {
            let client = connect(&node).await?;
            let v = client
                .get(Bytes::from(key))
                .await
                .map_err(|e| rpc(&node.node, e))?
                .ok_or(CliError::NotFound)?;
            out.write_all(&v.value)?;
            writeln!(out)?;
            if verbose {
                writeln!(
                    out,
                    "version {} created {} changes {} expires {}",
                    v.version,
                    v.create_revision,
                    v.changes,
                    v.expires_at_ms
                        .map_or("never".to_string(), |ms| format!("{ms} ms")),
                )?;
            }
            Ok(())
        }
        Command::Del {
            node,
            key,
            if_version,
        } => {
            let client = connect(&node).await?;
            let options = DeleteOptions {
                if_version: if_version.map(Version),
                ..Default::default()
            };
            let d = client
                .delete(Bytes::from(key), options)
                .await
                .map_err(|e| rpc(&node.node, e))?;
            match d.deleted {
                Some(v) => writeln!(out, "deleted version {v}")?,
                None => return Err(CliError::NotFound),
            }
            Ok(())
        }
        Command::Incr { node, key, delta } => {
            let client = connect(&node).await?;
            let n = client
                .incr(Bytes::from(key), delta)
                .await
                .map_err(|e| rpc(&node.node, e))?;
            writeln!(out, "{n}")?;
            Ok(())
        }
        Command::Scan {
            node,
            prefix,
            start_after,
            limit,
        } => {
            let client = connect(&node).await?;
            let mut s = client
                .scan(Bytes::from(prefix), start_after.map(Bytes::from), limit)
                .await
                .map_err(|e| rpc(&node.node, e.widen()))?;
            while let Some(item) = s.next().await {
                let entry = item.map_err(|e| rpc(&node.node, e.widen()))??;
                out.write_all(&entry.key)?;
                out.write_all(b"\t")?;
                out.write_all(&entry.value.value)?;
                writeln!(out)?;
            }
            Ok(())
        }
        Command::Watch {
            node,
            prefix,
            from_revision,
            count,
        } => {
            let client = connect(&node).await?;
            let mut s = client
                .watch(Bytes::from(prefix), from_revision)
                .await
                .map_err(|e| rpc(&node.node, e.widen()))?;
            let mut seen = 0u64;
            while count.is_none_or(|c| seen < c) {
                let Some(item) = s.next().await else { break };
                let e = item.map_err(|e| rpc(&node.node, e.widen()))??;
                let kind = match e.kind {
                    EventKind::Put => "PUT",
                    EventKind::Delete => "DELETE",
                    EventKind::Expire => "EXPIRE",
                };
                write!(out, "{} {kind} ", e.revision)?;
                out.write_all(&e.key)?;
                if let Some(v) = &e.value {
                    out.write_all(b" ")?;
                    out.write_all(v)?;
                }
                writeln!(out)?;
                out.flush()?;
                seen += 1;
            }
            Ok(())
        }
        Command::Status { node } => {
            let client = connect(&node).await?;
            let s = client
                .status()
                .await
                .map_err(|e| rpc(&node.node, e.widen()))?;
            writeln!(
                out,
                "revision {}\noldest_revision {}\nengine {}\nfsync {}",
                s.revision, s.oldest_revision, s.engine, s.fsync
            )?;
            Ok(())
        }
    }
}

fn read_value(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let mut buf = Vec::new();
    let read = if path == std::path::Path::new("-") {
        std::io::stdin().read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut buf))
    };
    read.map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
    Ok(buf)
}

/// Opens the store in `data`, serves `mw.kv` on `addr`, prints `listening on <addr>`
/// once connections are accepted, and on Ctrl-C/SIGTERM stops accepting, drains the
/// calls in progress and syncs the store.
///
/// # Errors
///
/// The data directory is refused, or the address cannot be bound.
pub async fn serve(
    addr: &str,
    data: &std::path::Path,
    config: Config,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let kv = Kv::open(data, config).await?;
    let status = kv.status();
    let server = Server::builder()
        .add(KvServiceServer::new(KvNode::new(kv.clone())))
        .build();
    let running = server
        .spawn(addr)
        .await
        .map_err(|e| CliError::Serve(format!("cannot serve on {addr}: {e}")))?;
    tracing::info!(
        data = %data.display(),
        revision = status.revision,
        engine = %status.engine,
        fsync = %status.fsync,
        open_ms = started.elapsed().as_millis() as u64,
        "mw-kv node ready"
    );
    writeln!(out, "listening on {}", running.local_addr())?;
    out.flush()?;
    mw::run::wait_for_signal().await;
    tracing::info!("shutting down: draining calls, then syncing");
    running.begin_shutdown();
    kv.end_watches();
    running.shutdown().await;
    kv.close().await?;
    Ok(())
}
