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
use crate::ring::node::RingConfig;
use crate::ring::service::RingKvClient;
use crate::ring::types::{Quorum, RingRead, RingWrite, RingWriteOptions};
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
    /// TLS: `serve --tls-cert FILE --tls-key FILE [--tls-client-ca FILE]` (ring members
    /// also `--peer-tls-ca`, and no `--tls-client-ca`);
    /// client verbs `--tls-ca FILE [--tls-cert FILE --tls-key FILE]` (mw's TLS flags).
    #[command(flatten)]
    pub tls: mw::cli_tls::TlsArgs,
    /// Logins: `serve --auth FILE` (ring members also `--peer-token`; users and their key
    /// prefixes, see
    /// examples/auth.toml); client verbs `--user USER --password PW` or `--token`.
    #[command(flatten)]
    pub auth: mw::cli_tls::AuthArgs,
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

/// Flags of `serve` that make the node a ring member.
#[derive(Debug, Clone, Args)]
pub struct RingArgs {
    /// Start a ring of its own (the first node), instead of a single node.
    #[arg(long)]
    pub ring: bool,
    /// Join the ring this member belongs to (implies --ring).
    #[arg(long, value_name = "SEED_ADDR")]
    pub join: Option<String>,
    /// The name other members reach this node by (default: the bound address).
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<String>,
    /// Replicas per key.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..))]
    pub n: u8,
    /// Acknowledgements a write waits for (default for each request).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..))]
    pub w: u8,
    /// Replies a read waits for (default for each request).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..))]
    pub r: u8,
    /// Virtual nodes per member.
    #[arg(long, default_value_t = crate::ring::hash::DEFAULT_TOKENS, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub tokens: u32,
    /// Members serve TLS (--tls-cert/--tls-key): connect to the other members over TLS,
    /// trusting the CA certificates in FILE (PEM).
    #[arg(long, value_name = "FILE")]
    pub peer_tls_ca: Option<std::path::PathBuf>,
    /// Members require logins (--auth): log in to the other members with this token,
    /// USER.SECRET (or MW_KV_PEER_TOKEN); the user needs the services mw.kv.ring and
    /// mw.kv.replica and `kv = { read = [""], write = [""] }` (or `admin = true`).
    #[arg(
        long,
        value_name = "USER.SECRET",
        env = "MW_KV_PEER_TOKEN",
        hide_env_values = true
    )]
    pub peer_token: Option<String>,
}

impl RingArgs {
    /// How this member connects to the others, checked against how it serves: a TLS
    /// member needs `--peer-tls-ca`, a member with `--auth` needs `--peer-token`.
    fn peer_client(
        &self,
        server: &mw::rpc::ServerConfig,
    ) -> Result<mw::rpc::ClientConfig, CliError> {
        let mut client = mw::rpc::ClientConfig::default();
        match (&server.tls, &self.peer_tls_ca) {
            (Some(tls), _) if tls.requires_client_certificates() => {
                return Err(CliError::Serve(
                    "--tls-client-ca is for single nodes: ring members present no client \
                     certificates to each other (not supported yet); use --auth with \
                     --peer-token"
                        .into(),
                ))
            }
            (Some(_), None) => {
                return Err(CliError::Serve(
                    "a ring member serving TLS needs --peer-tls-ca FILE (the CA that signed \
                     the members' certificates) to reach the other members"
                        .into(),
                ))
            }
            (None, Some(_)) => {
                return Err(CliError::Serve(
                    "--peer-tls-ca needs --tls-cert and --tls-key: members serve TLS to each \
                     other or not at all"
                        .into(),
                ))
            }
            (Some(_), Some(ca)) => {
                let tls = mw::core::tls::TlsClient::new(Some(ca.as_path()), None)
                    .map_err(|e| CliError::Tls(format!("--peer-tls-ca: {e}")))?;
                client.tls = Some(tls);
            }
            (None, None) => {}
        }
        let token = self.peer_token.clone().filter(|t| !t.is_empty());
        match (&server.auth, token) {
            (Some(_), None) => {
                return Err(CliError::Serve(
                    "a ring member with --auth needs --peer-token USER.SECRET (or \
                     MW_KV_PEER_TOKEN) to log in to the other members"
                        .into(),
                ))
            }
            (_, Some(t)) if !t.contains('.') => {
                return Err(CliError::Tls("--peer-token must be USER.SECRET".into()))
            }
            (None, Some(_)) => {
                return Err(CliError::Serve(
                    "--peer-token needs --auth FILE: members require logins of each other \
                     or not at all"
                        .into(),
                ))
            }
            (Some(_), Some(t)) => {
                client.credentials = Some(mw::rpc::auth::Credentials::Token(t));
            }
            (None, None) => {}
        }
        Ok(client)
    }
}

/// Per-request quorum flags of the client verbs (ring nodes only).
#[derive(Debug, Clone, Copy, Args)]
pub struct QuorumArgs {
    /// Replies to wait for on a ring: one, quorum, all or a count (default: the cluster's R).
    #[arg(long, value_name = "R")]
    pub r: Option<Quorum>,
    /// Acknowledgements to wait for on a ring: one, quorum, all or a count (default: W).
    #[arg(long, value_name = "W")]
    pub w: Option<Quorum>,
    /// On a ring: print which replicas answered, in what time, and what was repaired or hinted.
    #[arg(long)]
    pub trace: bool,
    /// On a ring: write without reading first (an empty context), so the write is
    /// concurrent with what is stored and becomes a sibling of it.
    #[arg(long)]
    pub blind: bool,
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
        /// Storage engine of a new data directory (an existing one keeps its own): fjall,
        /// redb, or memory (nothing on disk; every key is lost when the node stops).
        #[arg(long, default_value = "fjall")]
        engine: crate::config::Engine,
        /// Watch events kept for watchers resuming from a past revision.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        retain_events: u64,
        /// Serve Prometheus metrics (connections, calls by method and outcome, latency)
        /// on http://HOST:PORT/metrics; off when absent.
        #[arg(long, value_name = "HOST:PORT")]
        metrics_addr: Option<String>,
        #[command(flatten)]
        ring: RingArgs,
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
        #[command(flatten)]
        quorum: QuorumArgs,
    },
    /// Print the value of KEY (exit 1 and `not found` when absent).
    Get {
        #[command(flatten)]
        node: NodeArg,
        /// The key.
        key: String,
        /// Also print version, revisions and expiry (on a ring: siblings and context).
        #[arg(long, short = 'v')]
        verbose: bool,
        #[command(flatten)]
        quorum: QuorumArgs,
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
        #[command(flatten)]
        quorum: QuorumArgs,
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
    /// Ring: print the members, their state, their share of the key space, the ring
    /// version, N/W/R and the hints the node holds.
    Ring {
        #[command(flatten)]
        node: NodeArg,
    },
    /// Ring: print KEY's hash position and preference list.
    Locate {
        #[command(flatten)]
        node: NodeArg,
        /// The key.
        key: String,
    },
    /// Ring: read KEY and show the request's fan-out (replicas, answers, times, repairs).
    Trace {
        #[command(flatten)]
        node: NodeArg,
        /// The key.
        key: String,
        /// Replies to wait for.
        #[arg(long, value_name = "R")]
        r: Option<Quorum>,
    },
    /// Ring: hand the node's ranges to their new owners and take it out of the ring.
    Leave {
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
    /// The TLS or login flags cannot work (a half-given pair, a file that cannot be used,
    /// a server flag given to a client verb).
    #[error("{0}")]
    Tls(String),
    /// Reading an input file failed.
    #[error("{0}")]
    Input(String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

fn rpc(node: &str, e: RpcError<KvError>) -> CliError {
    if let RpcError::UnknownService(s) = &e {
        if s.contains("\"mw.kv\"") {
            return CliError::Kv(KvError::NotOnRing {
                op: "this verb (incr, scan, watch, status)".into(),
            });
        }
    }
    match e.into_application() {
        Ok(kv) => CliError::Kv(kv),
        Err(source) => CliError::Rpc {
            node: node.to_string(),
            source,
        },
    }
}

async fn connect(node: &NodeArg) -> Result<KvServiceClient, CliError> {
    let channel = mw::rpc::Channel::connect_with(&node.node, mw::cli_tls::client_config())
        .await
        .map_err(|source| CliError::Rpc {
            node: node.node.clone(),
            source,
        })?;
    Ok(KvServiceClient::new(channel.with_timeout(
        Duration::from_secs_f64(node.timeout.max(0.001)),
    )))
}

/// Where a verb writes what it prints.
type Out<'a> = &'a mut (dyn std::io::Write + Send);

/// Runs one parsed command, writing results to `out`.
///
/// # Errors
///
/// Whatever the verb ran into; [`CliError::NotFound`] for absent keys.
pub async fn run(cli: Cli, out: Out<'_>) -> Result<(), CliError> {
    let security = install_security(&cli)?;
    match cli.command {
        Command::Serve {
            addr,
            data,
            fsync,
            engine,
            retain_events,
            metrics_addr,
            ring,
        } => {
            let server = mw::rpc::ServerConfig {
                metrics_addr,
                ..security
            };
            let config = Config {
                fsync,
                engine,
                retain_events,
                ..Config::default()
            };
            serve_single_or_ring(&addr, &data, config, &ring, server, out).await
        }
        Command::Put {
            node,
            key,
            value,
            file,
            ttl,
            if_version,
            buffered,
            quorum,
        } => {
            let value = match (value, file) {
                (Some(v), _) => Bytes::from(v),
                (None, Some(path)) => Bytes::from(read_value(&path)?),
                (None, None) => unreachable!("clap requires VALUE or --file"),
            };
            let flags = PutFlags {
                ttl,
                if_version,
                buffered,
            };
            put(&node, key, value, flags, quorum, out).await
        }
        Command::Get {
            node,
            key,
            verbose,
            quorum,
        } => get(&node, key, verbose, quorum, out).await,
        Command::Del {
            node,
            key,
            if_version,
            quorum,
        } => delete(&node, key, if_version, quorum, out).await,
        Command::Incr { node, key, delta } => incr(&node, key, delta, out).await,
        Command::Scan {
            node,
            prefix,
            start_after,
            limit,
        } => scan(&node, prefix, start_after, limit, out).await,
        Command::Watch {
            node,
            prefix,
            from_revision,
            count,
        } => watch(&node, prefix, from_revision, count, out).await,
        Command::Ring { node } => print_ring(&node, out).await,
        Command::Locate { node, key } => locate(&node, key, out).await,
        Command::Trace { node, key, r } => trace(&node, key, r, out).await,
        Command::Leave { node } => leave(&node, out).await,
        Command::Status { node } => status(&node, out).await,
    }
}

/// The TLS and credentials flags put to work: for `serve`, the server's TLS and auth (in
/// the returned config); for a client verb, installed as the process's client settings
/// (and the returned config is the default, unused).
fn install_security(cli: &Cli) -> Result<mw::rpc::ServerConfig, CliError> {
    if matches!(cli.command, Command::Serve { .. }) {
        return Ok(mw::rpc::ServerConfig {
            tls: cli.tls.server().map_err(CliError::Tls)?,
            auth: cli.auth.server().map_err(CliError::Tls)?,
            ..mw::rpc::ServerConfig::default()
        });
    }
    mw::cli_tls::install_client(cli.tls.client().map_err(CliError::Tls)?);
    mw::cli_tls::install_credentials(cli.auth.client().map_err(CliError::Tls)?);
    Ok(mw::rpc::ServerConfig::default())
}

/// `serve`: a ring member with `--ring` or `--join`, else a single node (which refuses the
/// ring-only flags).
async fn serve_single_or_ring(
    addr: &str,
    data: &std::path::Path,
    config: Config,
    ring: &RingArgs,
    server: mw::rpc::ServerConfig,
    out: Out<'_>,
) -> Result<(), CliError> {
    if ring.ring || ring.join.is_some() {
        return serve_ring(addr, data, config, ring, server, out).await;
    }
    if ring.peer_tls_ca.is_some() || ring.peer_token.is_some() {
        return Err(CliError::Serve(
            "--peer-tls-ca and --peer-token are for ring members (--ring or --join)".into(),
        ));
    }
    serve(addr, data, config, server, out).await
}

/// The single-node flags of `put`; a ring refuses `ttl` and `if_version`.
struct PutFlags {
    ttl: Option<f64>,
    if_version: Option<u64>,
    buffered: bool,
}

/// `put`: a ring write (read, then write with the context read), or a single node's put
/// printing the new version.
async fn put(
    node: &NodeArg,
    key: String,
    value: Bytes,
    flags: PutFlags,
    quorum: QuorumArgs,
    out: Out<'_>,
) -> Result<(), CliError> {
    if let Some(ring) = ring_client(node).await? {
        if flags.ttl.is_some() || flags.if_version.is_some() {
            return Err(CliError::Kv(KvError::NotOnRing {
                op: if flags.ttl.is_some() {
                    "a ttl"
                } else {
                    "compare-and-set"
                }
                .into(),
            }));
        }
        return ring_put(&ring, node, key, Some(value), quorum, out).await;
    }
    let client = connect(node).await?;
    let options = PutOptions {
        if_version: flags.if_version.map(Version),
        ttl: flags.ttl.map(Duration::from_secs_f64),
        durability: if flags.buffered {
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

/// `get`: the values a ring read returns (siblings and context when there are several or
/// `verbose`), or a single node's value (with version, revisions and expiry if `verbose`).
async fn get(
    node: &NodeArg,
    key: String,
    verbose: bool,
    quorum: QuorumArgs,
    out: Out<'_>,
) -> Result<(), CliError> {
    if let Some(ring) = ring_client(node).await? {
        let read = ring
            .get(Bytes::from(key), quorum.r)
            .await
            .map_err(|e| rpc(&node.node, e))?;
        return print_ring_read(&read, verbose, quorum.trace, out);
    }
    let client = connect(node).await?;
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

/// Prints what `get` read from a ring: the replicas if `trace`, then each value.
fn print_ring_read(
    read: &RingRead,
    verbose: bool,
    trace: bool,
    out: Out<'_>,
) -> Result<(), CliError> {
    if trace {
        print_replicas(out, "read", read.needed, &read.replicas)?;
    }
    if read.values.is_empty() {
        return Err(CliError::NotFound);
    }
    for v in &read.values {
        out.write_all(v)?;
        writeln!(out)?;
    }
    if verbose || read.values.len() > 1 {
        writeln!(out, "siblings {} context {}", read.siblings, read.context)?;
    }
    Ok(())
}

/// `del`: a ring delete (a write of a tombstone), or a single node's delete printing the
/// version deleted.
async fn delete(
    node: &NodeArg,
    key: String,
    if_version: Option<u64>,
    quorum: QuorumArgs,
    out: Out<'_>,
) -> Result<(), CliError> {
    if let Some(ring) = ring_client(node).await? {
        if if_version.is_some() {
            return Err(CliError::Kv(KvError::NotOnRing {
                op: "compare-and-set".into(),
            }));
        }
        return ring_put(&ring, node, key, None, quorum, out).await;
    }
    let client = connect(node).await?;
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

/// `incr`: adds `delta` to a single node's counter and prints the new value.
async fn incr(node: &NodeArg, key: String, delta: i64, out: Out<'_>) -> Result<(), CliError> {
    let client = connect(node).await?;
    let n = client
        .incr(Bytes::from(key), delta)
        .await
        .map_err(|e| rpc(&node.node, e))?;
    writeln!(out, "{n}")?;
    Ok(())
}

/// `scan`: prints `key<TAB>value` for each key under `prefix`, in key order.
async fn scan(
    node: &NodeArg,
    prefix: String,
    start_after: Option<String>,
    limit: u32,
    out: Out<'_>,
) -> Result<(), CliError> {
    let client = connect(node).await?;
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

/// `watch`: prints one line per event under `prefix` (`REVISION KIND KEY [VALUE]`), flushed
/// as it comes, until `count` events or the stream ends.
async fn watch(
    node: &NodeArg,
    prefix: String,
    from_revision: Option<u64>,
    count: Option<u64>,
    out: Out<'_>,
) -> Result<(), CliError> {
    let client = connect(node).await?;
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

/// `ring`: the ring as `node` sees it — quorums, members, hints, anti-entropy counters.
async fn print_ring(node: &NodeArg, out: Out<'_>) -> Result<(), CliError> {
    let ring = ring_client(node).await?.ok_or_else(|| not_a_ring(node))?;
    let v = ring.ring().await.map_err(|e| rpc(&node.node, e.widen()))?;
    let overlap = if v.w + v.r > v.n {
        "overlapping: every read quorum meets every write quorum"
    } else {
        "NOT overlapping (W+R <= N): a read may miss the latest write"
    };
    writeln!(out, "ring version {} as seen by {}", v.version, v.node)?;
    writeln!(
        out,
        "N={} W={} R={} ({overlap}), {} tokens per node",
        v.n, v.w, v.r, v.tokens
    )?;
    writeln!(
        out,
        "{:<24} {:<8} {:<11} {:>7}",
        "member", "state", "reachable", "share"
    )?;
    for m in &v.members {
        writeln!(
            out,
            "{:<24} {:<8} {:<11} {:>6.2}%",
            m.node,
            format!("{:?}", m.state).to_lowercase(),
            if m.reachable { "yes" } else { "NO" },
            m.share * 100.0
        )?;
    }
    for (target, n) in &v.hints {
        writeln!(out, "hints for {target}: {n}")?;
    }
    let ae = v.anti_entropy;
    writeln!(
        out,
        "anti-entropy: {} rounds, {} range comparisons, {} keys exchanged, {} tombstones collected",
        ae.rounds, ae.ranges_compared, ae.keys_exchanged, ae.tombstones_collected
    )?;
    Ok(())
}

/// `locate`: the key's ring position and preference list.
async fn locate(node: &NodeArg, key: String, out: Out<'_>) -> Result<(), CliError> {
    let ring = ring_client(node).await?.ok_or_else(|| not_a_ring(node))?;
    let l = ring
        .locate(Bytes::from(key))
        .await
        .map_err(|e| rpc(&node.node, e.widen()))?;
    writeln!(out, "position {:#018x}", l.position)?;
    writeln!(out, "preference {}", l.preference.join(" "))?;
    Ok(())
}

/// `trace`: a ring read with every replica's answer, then what it found.
async fn trace(
    node: &NodeArg,
    key: String,
    r: Option<Quorum>,
    out: Out<'_>,
) -> Result<(), CliError> {
    let ring = ring_client(node).await?.ok_or_else(|| not_a_ring(node))?;
    let read: RingRead = ring
        .get(Bytes::from(key), r)
        .await
        .map_err(|e| rpc(&node.node, e))?;
    print_replicas(out, "read", read.needed, &read.replicas)?;
    writeln!(
        out,
        "{} value(s), {} sibling(s), context {}",
        read.values.len(),
        read.siblings,
        read.context
    )?;
    Ok(())
}

/// `leave`: asks the ring member at `node` to leave the ring.
async fn leave(node: &NodeArg, out: Out<'_>) -> Result<(), CliError> {
    let ring = ring_client(node).await?.ok_or_else(|| not_a_ring(node))?;
    ring.leave().await.map_err(|e| rpc(&node.node, e))?;
    writeln!(out, "left the ring")?;
    Ok(())
}

/// `status`: a single node's revisions, engine and fsync policy.
async fn status(node: &NodeArg, out: Out<'_>) -> Result<(), CliError> {
    let client = connect(node).await?;
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

fn not_a_ring(node: &NodeArg) -> CliError {
    CliError::Serve(format!(
        "node {} is a single node, not a ring member (start it with --ring or --join)",
        node.node
    ))
}

/// A ring client if the node at `node` serves `mw.kv.ring`, `None` if it is a single
/// node (it answers that it does not know the service).
async fn ring_client(node: &NodeArg) -> Result<Option<RingKvClient>, CliError> {
    let channel = mw::rpc::Channel::connect_with(&node.node, mw::cli_tls::client_config())
        .await
        .map_err(|source| CliError::Rpc {
            node: node.node.clone(),
            source,
        })?;
    let channel = channel.with_timeout(Duration::from_secs_f64(node.timeout.max(0.001)));
    let ring = RingKvClient::new(channel.clone());
    match ring.locate(Bytes::from_static(b"probe")).await {
        Ok(_) => Ok(Some(ring)),
        Err(RpcError::UnknownService(_)) => Ok(None),
        // Not granted mw.kv.ring: a single node if it serves mw.kv, else a ring member
        // this user may not use, which is what they are told.
        Err(RpcError::PermissionDenied(m)) => match KvServiceClient::new(channel).status().await {
            Err(RpcError::UnknownService(_)) => Err(CliError::Rpc {
                node: node.node.clone(),
                source: RpcError::PermissionDenied(m),
            }),
            _ => Ok(None),
        },
        Err(source) => Err(CliError::Rpc {
            node: node.node.clone(),
            source,
        }),
    }
}

/// A ring write (`value: None` deletes): reads the key first (R) and writes with the
/// context read, so the write replaces what is there.
async fn ring_put(
    ring: &RingKvClient,
    node: &NodeArg,
    key: String,
    value: Option<Bytes>,
    quorum: QuorumArgs,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), CliError> {
    let key = Bytes::from(key);
    let read = if quorum.blind {
        RingRead {
            values: Vec::new(),
            context: Default::default(),
            siblings: 0,
            replicas: Vec::new(),
            needed: 0,
        }
    } else {
        ring.get(key.clone(), quorum.r)
            .await
            .map_err(|e| rpc(&node.node, e))?
    };
    if value.is_none() && read.values.is_empty() && !quorum.blind {
        return Err(CliError::NotFound);
    }
    let options = RingWriteOptions {
        context: read.context,
        w: quorum.w,
    };
    let deleting = value.is_none();
    let w: RingWrite = match value {
        Some(v) => ring.put(key, v, options).await,
        None => ring.delete(key, options).await,
    }
    .map_err(|e| rpc(&node.node, e))?;
    if quorum.trace {
        if !quorum.blind {
            print_replicas(out, "read", read.needed, &read.replicas)?;
        }
        print_replicas(out, "write", w.needed, &w.replicas)?;
    }
    if deleting {
        writeln!(out, "deleted ({})", w.dot)?;
    } else {
        writeln!(out, "{}", w.dot)?;
    }
    Ok(())
}

fn print_replicas(
    out: &mut (dyn std::io::Write + Send),
    what: &str,
    needed: usize,
    replicas: &[crate::ring::types::ReplicaReply],
) -> Result<(), CliError> {
    let ok = replicas.iter().filter(|r| r.ok).count();
    writeln!(out, "{what}: {ok} of {needed} needed answered")?;
    for r in replicas {
        let status = match (&r.error, r.repaired) {
            (Some(e), _) => format!("FAILED {e}"),
            (None, true) => "ok, stale: repaired".to_string(),
            (None, false) => "ok".to_string(),
        };
        let hint = r
            .hint_for
            .as_ref()
            .map_or(String::new(), |t| format!(" (hint for {t})"));
        writeln!(out, "  {}{hint} {:>8} us  {status}", r.node, r.micros)?;
    }
    Ok(())
}

/// Runs a ring node until Ctrl-C/SIGTERM, or until it has left the ring.
///
/// # Errors
///
/// The address, data directory or seed are refused.
pub async fn serve_ring(
    addr: &str,
    data: &std::path::Path,
    config: Config,
    args: &RingArgs,
    server: mw::rpc::ServerConfig,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), CliError> {
    if let Some(warning) =
        mw::cli_tls::exposure_warning(addr, server.tls.as_ref(), server.auth.is_some())
    {
        tracing::warn!("{warning}");
    }
    let peer_client = args.peer_client(&server)?;
    let ring_config = RingConfig {
        peer_client,
        n: args.n as usize,
        w: args.w as usize,
        r: args.r as usize,
        tokens: args.tokens,
        store: config,
        ..RingConfig::default()
    };
    if args.w > args.n || args.r > args.n {
        return Err(CliError::Serve(format!(
            "W ({}) and R ({}) must not exceed N ({})",
            args.w, args.r, args.n
        )));
    }
    if !ring_config.overlapping() {
        tracing::warn!(
            n = args.n,
            w = args.w,
            r = args.r,
            "W + R <= N: read and write quorums do not overlap; reads may miss acknowledged writes"
        );
    }
    let served = crate::ring::serve::spawn_with(
        addr,
        args.advertise.as_deref(),
        data,
        ring_config,
        args.join.as_deref(),
        server,
    )
    .await?;
    if let Some(m) = served.server.metrics_addr() {
        tracing::info!(addr = %m, "metrics on http://{m}/metrics");
    }
    tracing::info!(node = served.node.id(), members = ?served.node.membership().owners(), "ring node ready");
    writeln!(out, "listening on {}", served.server.local_addr())?;
    out.flush()?;
    tokio::select! {
        _ = mw::run::wait_for_signal() => {}
        _ = served.node.left() => {}
    }
    served.server.shutdown().await;
    served.node.close().await?;
    Ok(())
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

/// Opens the store in `data`, serves `mw.kv` on `addr` (over TLS with `tls`), prints `listening on <addr>`
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
    server: mw::rpc::ServerConfig,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    if let Some(warning) =
        mw::cli_tls::exposure_warning(addr, server.tls.as_ref(), server.auth.is_some())
    {
        tracing::warn!("{warning}");
    }
    let kv = Kv::open(data, config).await?;
    let status = kv.status();
    let server = Server::builder()
        .add(KvServiceServer::new(KvNode::new(kv.clone())))
        .config(server)
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
    if let Some(m) = running.metrics_addr() {
        tracing::info!(addr = %m, "metrics on http://{m}/metrics");
    }
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
