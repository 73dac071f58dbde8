//! `mw-bench kv`: the mw-kv node against redis, same shapes, same kind of client, one run.
//!
//! ```text
//! cargo run --release -p mw-bench -- kv [--json] [--quick] [--seconds S] [--data DIR]
//!     [--clients 50] [--pipeline 16] [--keys 100000] [--redis-pipeline pipe|concurrent]
//!     [--mw-pipeline pipe|concurrent]
//!     [--mw-kv PATH] [--node-arg ARG]... [--relaxed-fsync never|interval:MS]
//!     [--only get|set|durable]... [--depth 1|16]... [--no-redis-benchmark]
//!     [--no-engine-floor]
//! ```
//!
//! Workloads: 100-byte values over a keyspace of `--keys` keys (`key:%012d`, the names
//! `redis-benchmark -r` uses), uniformly random per operation. `--clients` TCP connections
//! (default 50), each with 1 operation in flight ("unbatched", `50x1`) or `--pipeline`
//! (default 16) in flight ("pipelined", `50x16`). GET reads keys the bench preloaded;
//! SET overwrites them.
//!
//! - **mw-kv** runs as a child process on a temporary data directory: by default
//!   `mw-bench serve kv --addr 127.0.0.1:0 --data DIR --fsync POLICY`, which parses
//!   `mw-kv serve …` with mw-kv's own command line ([`mw_kv::cli::Cli`]) and runs it with
//!   [`mw_kv::cli::run`] on a default multi-thread tokio runtime, exactly as the `mw-kv`
//!   binary does, so it is always built in the bench's profile and never stale;
//!   `--mw-kv PATH` runs a built `mw-kv` binary instead (`PATH serve --addr … --data …
//!   --fsync …`, e.g. `--mw-kv target/release/mw-kv`). `--node-arg ARG` (repeatable)
//!   adds arguments to `mw-kv serve` in both cases (e.g. `--node-arg=--engine=redb`);
//!   the engine and fsync policy each node reports (`status`) are printed.
//!   Clients: one [`mw_kv::KvClient`] (one `mw::rpc::Channel`, i.e. one multiplexed TCP
//!   connection) per client connection. Pipelined, by default (`--mw-pipeline pipe`):
//!   one `batch` call of 16 operations per round trip per connection, the shape of a
//!   redis pipe; `--mw-pipeline concurrent`: 16 tasks sharing the connection, each with
//!   one call in flight.
//! - **redis** runs as a child process on a free loopback port (`redis-server`, found on
//!   PATH; `apt-get update && apt-get install -y redis-server`). Clients: the `redis`
//!   crate (tokio), one `MultiplexedConnection` per client connection. Pipelined, by
//!   default (`--redis-pipeline pipe`): 16 commands per `redis::pipe()` round trip per
//!   connection, exactly what `redis-benchmark -P 16` does (each command's latency is its
//!   pipe's round trip); `--redis-pipeline concurrent`: 16 tasks each with one command in
//!   flight on the shared multiplexed connection, the shape of the mw-kv side.
//!   Without `redis-server` the redis series and the targets are skipped with a note and
//!   mw-kv's figures are still printed.
//! - Plain SET/GET: mw-kv node with `--fsync never` (`--relaxed-fsync`), puts with
//!   `Durability::Buffered`; redis `--save '' --appendonly no`.
//! - Durable SET: mw-kv node with `--fsync always`, puts with `Durability::Sync` (each
//!   acknowledged only once fsynced, group commit); redis `--appendonly yes
//!   --appendfsync always --save ''`. Both data directories are in one temporary
//!   directory under `--data` (default: the current directory), so on the same disk,
//!   whose fsync floor (append + fdatasync) is measured first.
//! - Engine floor (`mw-kv mem`, skipped with `--no-engine-floor`): the plain series
//!   again against a third node on `--engine memory`, no storage engine at all; the
//!   difference to `mw-kv` is what the engine costs.
//! - If `redis-benchmark` is on PATH, it is run against the same redis servers with the
//!   same shapes (`-c 50 -P 1|16 -d 100 -r KEYS -t set,get --csv`) as a reference line: C
//!   client, no hdrhistogram (its own p50/p99).
//!
//! Each series: warm-up (1 s; 0.3 s with `--quick`), then one measured window of
//! `--seconds` (4; 1 with `--quick`): ops/s, p50/p99/p99.9 latency, and the CPU that
//! the server process and this (client) process used per operation, read from
//! `/proc/PID/stat` over the window, plus the CPU share of other processes. Everything
//! shares the machine's 2 vCPUs, so compare ratios within a run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use mw_kv::{BatchOp, BatchReply, Durability, KvClient, PutOptions, WriteResult};
use serde_json::{json, Value};

use crate::child::READY_PREFIX;
use crate::machine::{self, CpuSnapshot};
use crate::peers::{on_path, PeerServer};
use crate::queue::{fs_type, measure_floor, proc_cpu_seconds, Floor};
use crate::report::{Row, Target};
use crate::stats::{self, fmt_rate, fmt_ratio, fmt_us, histogram, Summary};
use crate::Error;

/// Server targets of this benchmark (`mw-bench serve <target>`).
pub const SERVE_TARGETS: &[&str] = &["kv"];

/// Value size, bytes.
const VALUE_SIZE: usize = 100;
/// Target: unbatched GET and SET, mw-kv ops/s over redis's.
const TARGET_UNBATCHED: f64 = 1.0;
/// Target: pipelined GET and SET, mw-kv over redis `-P 16`.
const TARGET_PIPELINED: f64 = 0.7;
/// Target: durable SET, mw-kv (`Sync`, fsync always) over redis `appendfsync always`.
const TARGET_DURABLE: f64 = 1.5;

/// How a pipelined series keeps `--pipeline` operations in flight per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pipelining {
    /// N operations per round trip: one `redis::pipe()` (what `redis-benchmark -P N`
    /// does), one mw-kv `batch` call.
    Pipe,
    /// N tasks, each with one operation in flight on the shared connection.
    Concurrent,
}

impl Pipelining {
    /// Tasks per connection and operations per call at depth `d`.
    fn shape(self, d: usize) -> (usize, usize) {
        match self {
            Pipelining::Pipe => (1, d),
            Pipelining::Concurrent => (d, 1),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Pipelining::Pipe => "pipe",
            Pipelining::Concurrent => "concurrent",
        }
    }
}

/// Flags of `mw-bench kv`.
#[derive(Debug, clap::Args)]
pub struct KvArgs {
    /// One JSON object per series instead of the table.
    #[arg(long)]
    json: bool,
    /// Short windows (1 s), for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Measured window of each series, seconds (after a 1 s warm-up).
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Directory on the disk to measure; a temporary directory is made inside it for the
    /// mw-kv and redis data and removed afterwards. Default: the current directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Client connections.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Operations in flight per connection in the pipelined series.
    #[arg(long, default_value_t = 16)]
    pipeline: usize,
    /// Keys in the keyspace (preloaded for GET).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// How the redis client pipelines.
    #[arg(long, value_enum, default_value_t = Pipelining::Pipe)]
    redis_pipeline: Pipelining,
    /// How the mw-kv client pipelines (`pipe`: one `batch` call of N operations).
    #[arg(long, value_enum, default_value_t = Pipelining::Pipe)]
    mw_pipeline: Pipelining,
    /// Run this `mw-kv` binary as the node instead of `mw-bench serve kv`.
    #[arg(long, value_name = "PATH")]
    mw_kv: Option<PathBuf>,
    /// Extra argument for `mw-kv serve` (repeatable), e.g. `--node-arg=--engine=redb`.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    node_arg: Vec<String>,
    /// Fsync policy of the mw-kv node in the plain SET/GET series.
    #[arg(long, default_value = "never")]
    relaxed_fsync: String,
    /// Do not run `redis-benchmark` even if it is on PATH.
    #[arg(long)]
    no_redis_benchmark: bool,
    /// Skip the `mw-kv mem` series (the plain series again against a node on
    /// `--engine memory`: what mw-kv costs without a storage engine).
    #[arg(long)]
    no_engine_floor: bool,
    /// Run only these operations (get, set, durable; repeatable). Default: all.
    #[arg(long, value_parser = ["get", "set", "durable"])]
    only: Vec<String>,
    /// Run only these shapes: ops in flight per connection, 1 or the --pipeline depth
    /// (repeatable). Default: both.
    #[arg(long)]
    depth: Vec<usize>,
}

impl KvArgs {
    fn wants(&self, op: Op) -> bool {
        let name = match op {
            Op::Get => "get",
            Op::Set => "set",
            Op::DurableSet => "durable",
        };
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

// ---------------------------------------------------------------------------------------
// The mw-kv node child
// ---------------------------------------------------------------------------------------

/// Extra `mw-kv serve` arguments for the `mw-bench serve kv` child, one per line (set by
/// the parent from `--node-arg`).
const NODE_ARGS_ENV: &str = "MW_BENCH_KV_NODE_ARGS";

/// `mw-bench serve kv`: parses `mw-kv serve --addr … --data … --fsync …` (plus the
/// `--node-arg`s) with mw-kv's own command line and runs it as the `mw-kv` binary does
/// ([`mw_kv::cli::run`] on a default multi-thread runtime), until SIGTERM or Ctrl-C.
pub fn serve(addr: &str, data: Option<PathBuf>, fsync: Option<String>) -> Result<(), Error> {
    use clap::Parser;
    let data = data.ok_or("serve kv needs --data DIR")?;
    let mut argv: Vec<std::ffi::OsString> = ["mw-kv", "serve", "--addr", addr]
        .iter()
        .map(Into::into)
        .collect();
    argv.push("--data".into());
    argv.push(data.into_os_string());
    argv.push("--fsync".into());
    argv.push(fsync.unwrap_or_else(|| "always".into()).into());
    if let Ok(extra) = std::env::var(NODE_ARGS_ENV) {
        argv.extend(extra.lines().filter(|l| !l.is_empty()).map(Into::into));
    }
    let cli = mw_kv::cli::Cli::try_parse_from(argv)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut out = std::io::stdout();
        mw_kv::cli::run(cli, &mut out).await
    })?;
    Ok(())
}

fn self_exe() -> std::io::Result<PathBuf> {
    // /proc/self/exe still names this binary if a build in the shared target directory
    // replaced the file during the run (current_exe() would not).
    let proc_exe = Path::new("/proc/self/exe");
    if proc_exe.exists() {
        Ok(proc_exe.to_path_buf())
    } else {
        std::env::current_exe()
    }
}

/// A mw-kv node in a child process; SIGTERM (drain and sync) on [`NodeChild::stop`],
/// killed on drop.
struct NodeChild {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    addr: String,
}

impl NodeChild {
    fn spawn(
        bin: Option<&Path>,
        data: &Path,
        fsync: &str,
        extra: &[String],
    ) -> Result<NodeChild, Error> {
        let mut cmd = match bin {
            Some(b) => {
                let mut c = Command::new(b);
                c.arg("serve").args(extra);
                c
            }
            None => {
                let mut c = Command::new(self_exe()?);
                c.args(["serve", "kv"]).env(NODE_ARGS_ENV, extra.join("\n"));
                c
            }
        };
        let mut child = cmd
            .args(["--addr", "127.0.0.1:0", "--fsync", fsync])
            .arg("--data")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the mw-kv node {:?}: {e}", cmd.get_program()))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout was piped"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let mut node = NodeChild {
            child,
            _stdout: stdout,
            addr: String::new(),
        };
        read?;
        match line.trim_end().strip_prefix(READY_PREFIX) {
            Some(addr) => node.addr = addr.to_string(),
            None => {
                node.stop();
                return Err(format!(
                    "mw-kv node printed {line:?} instead of \"{READY_PREFIX}<addr>\""
                )
                .into());
            }
        }
        Ok(node)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (the node drains and syncs), up to 20 s, then SIGKILL.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clients and operations
// ---------------------------------------------------------------------------------------

/// The operation of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    /// mw-kv: a `Buffered` put on the relaxed node; redis: SET without AOF.
    Set,
    /// mw-kv: a `Sync` put on the `always` node; redis: SET with `appendfsync always`.
    DurableSet,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Set => "SET",
            Op::DurableSet => "SET durable",
        }
    }
}

/// One client connection.
#[derive(Clone)]
enum Conn {
    Mw(KvClient),
    Redis(redis::aio::MultiplexedConnection),
}

fn key(i: u64) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

/// xorshift64*: a cheap uniform key choice per operation.
fn next_rand(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Performs `op` on each key of `keys` (one call for one key; for more, one mw-kv
/// `batch` call or one redis pipe). Returns how many GETs found nothing.
async fn call(conn: &mut Conn, op: Op, keys: &[u64], value: &Bytes) -> Result<u64, Error> {
    match conn {
        Conn::Mw(client) => {
            let options = PutOptions {
                durability: if op == Op::DurableSet {
                    Durability::Sync
                } else {
                    Durability::Buffered
                },
                ..Default::default()
            };
            let check = |w: &WriteResult| {
                if op == Op::DurableSet && !w.durable {
                    return Err::<(), Error>(
                        "the node acknowledged a Sync put as not durable \
                         (is its fsync policy `always`?)"
                            .into(),
                    );
                }
                Ok(())
            };
            if let [k] = keys {
                let k = Bytes::from(key(*k));
                return match op {
                    Op::Get => Ok(u64::from(client.get(k).await?.is_none())),
                    Op::Set | Op::DurableSet => {
                        check(&client.put(k, value.clone(), options).await?)?;
                        Ok(0)
                    }
                };
            }
            let ops = keys
                .iter()
                .map(|&k| {
                    let key = Bytes::from(key(k));
                    match op {
                        Op::Get => BatchOp::Get { key },
                        Op::Set | Op::DurableSet => BatchOp::Put {
                            key,
                            value: value.clone(),
                            options: options.clone(),
                        },
                    }
                })
                .collect();
            let mut misses = 0;
            for reply in client.batch(ops).await? {
                match reply? {
                    BatchReply::Get(v) => misses += u64::from(v.is_none()),
                    BatchReply::Put(w) => check(&w)?,
                    other => return Err(format!("unexpected batch reply {other:?}").into()),
                }
            }
            Ok(misses)
        }
        Conn::Redis(c) => {
            if let [k] = keys {
                return match op {
                    Op::Get => {
                        let v: Option<Vec<u8>> =
                            redis::cmd("GET").arg(key(*k)).query_async(c).await?;
                        Ok(u64::from(v.is_none()))
                    }
                    Op::Set | Op::DurableSet => {
                        redis::cmd("SET")
                            .arg(key(*k))
                            .arg(&value[..])
                            .query_async::<()>(c)
                            .await?;
                        Ok(0)
                    }
                };
            }
            let mut pipe = redis::pipe();
            for &k in keys {
                match op {
                    Op::Get => {
                        pipe.cmd("GET").arg(key(k));
                    }
                    Op::Set | Op::DurableSet => {
                        pipe.cmd("SET").arg(key(k)).arg(&value[..]).ignore();
                    }
                }
            }
            if op == Op::Get {
                let vs: Vec<Option<Vec<u8>>> = pipe.query_async(c).await?;
                Ok(vs.iter().filter(|v| v.is_none()).count() as u64)
            } else {
                pipe.query_async::<()>(c).await?;
                Ok(0)
            }
        }
    }
}

fn value() -> Bytes {
    Bytes::from(vec![0x5Au8; VALUE_SIZE])
}

async fn connect_mw(addr: &str, n: usize) -> Result<Vec<Conn>, Error> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = mw::rpc::Channel::connect(addr).await?;
        conns.push(Conn::Mw(KvClient::new(channel)));
    }
    Ok(conns)
}

async fn connect_redis(port: u16, n: usize) -> Result<Vec<Conn>, Error> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    // The default response timeout (500 ms) is meant for interactive use, not for a
    // queue of 800 requests behind a server that fsyncs.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::Redis(
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await?,
        ));
    }
    Ok(conns)
}

/// Stores every key of the keyspace, `tasks` concurrent calls spread over `conns`.
async fn preload(conns: &[Conn], keys: u64, depth: usize) -> Result<(), Error> {
    let tasks = (conns.len() * depth.max(1)) as u64;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let mut conn = conns[(t as usize) % conns.len()].clone();
        handles.push(tokio::spawn(async move {
            let value = value();
            let mut k = t;
            while k < keys {
                call(&mut conn, Op::Set, &[k], &value).await?;
                k += tasks;
            }
            Ok::<(), Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// One series
// ---------------------------------------------------------------------------------------

/// A node on `--engine memory` (the node's own `--node-arg`s, with their `--engine`
/// replaced), for the engine floor: the plain series against it, printed as
/// `mw-kv mem`, differ from `mw-kv` by what the storage engine costs.
fn spawn_memory_node(args: &KvArgs, dir: &Path) -> Result<NodeChild, Error> {
    let mut node_args = Vec::new();
    let mut given = args.node_arg.iter();
    while let Some(a) = given.next() {
        if a == "--engine" {
            given.next();
        } else if !a.starts_with("--engine=") {
            node_args.push(a.clone());
        }
    }
    node_args.push("--engine=memory".into());
    if !args.json {
        eprintln!("  plain: mw-kv node --engine memory (the engine's share)");
    }
    NodeChild::spawn(
        args.mw_kv.as_deref(),
        &dir.join("mw-kv-memory"),
        &args.relaxed_fsync,
        &node_args,
    )
}

/// What one series measured.
#[derive(Debug, Clone)]
struct Measured {
    summary: Summary,
    misses: u64,
    server_cpu_us_per_op: f64,
    client_cpu_us_per_op: f64,
    others_cpu_percent: Option<f64>,
}

struct Counters {
    ops: AtomicU64,
    misses: AtomicU64,
    recording: AtomicBool,
    stop: AtomicBool,
}

/// Runs `op` on `conns`: `tasks_per_conn` tasks per connection, each with one call of
/// `batch` keys in flight. Warm-up, then one window of `seconds`.
#[allow(clippy::too_many_arguments)]
async fn measure(
    conns: &[Conn],
    tasks_per_conn: usize,
    batch: usize,
    op: Op,
    keys: u64,
    warmup: Duration,
    seconds: f64,
    server_pid: u32,
) -> Result<Measured, Error> {
    let counters = Arc::new(Counters {
        ops: AtomicU64::new(0),
        misses: AtomicU64::new(0),
        recording: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    // One histogram per connection (a task's record holds the lock for nanoseconds).
    let hists: Vec<Arc<Mutex<Histogram<u64>>>> = conns
        .iter()
        .map(|_| Arc::new(Mutex::new(histogram())))
        .collect();
    let mut handles = Vec::new();
    for (c, conn) in conns.iter().enumerate() {
        for t in 0..tasks_per_conn {
            let mut conn = conn.clone();
            let hist = hists[c].clone();
            let counters = counters.clone();
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (((c as u64) << 20) | (t as u64 + 1));
            handles.push(tokio::spawn(async move {
                let value = value();
                let mut batch_keys = vec![0u64; batch];
                while !counters.stop.load(Ordering::Relaxed) {
                    for k in batch_keys.iter_mut() {
                        *k = next_rand(&mut rng) % keys;
                    }
                    let t0 = Instant::now();
                    let misses = call(&mut conn, op, &batch_keys, &value).await?;
                    let d = t0.elapsed();
                    counters.ops.fetch_add(batch as u64, Ordering::Relaxed);
                    if counters.recording.load(Ordering::Relaxed) {
                        let ns = (d.as_nanos() as u64).max(1);
                        hist.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .saturating_record_n(ns, batch as u64);
                        if misses > 0 {
                            counters.misses.fetch_add(misses, Ordering::Relaxed);
                        }
                    }
                }
                Ok::<(), Error>(())
            }));
        }
    }

    tokio::time::sleep(warmup).await;
    let server_stat = format!("/proc/{server_pid}/stat");
    let cpu0 = CpuSnapshot::now();
    let srv0 = proc_cpu_seconds(&server_stat);
    let own0 = proc_cpu_seconds("/proc/self/stat");
    let ops0 = counters.ops.load(Ordering::Relaxed);
    let t0 = Instant::now();
    counters.recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    counters.recording.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    let ops1 = counters.ops.load(Ordering::Relaxed);
    let cpu1 = CpuSnapshot::now();
    let srv1 = proc_cpu_seconds(&server_stat);
    let own1 = proc_cpu_seconds("/proc/self/stat");
    counters.stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await??;
    }

    let mut hist = histogram();
    for h in &hists {
        hist.add(&*h.lock().unwrap_or_else(|p| p.into_inner()))
            .expect("histograms with the same bounds add");
    }
    let ops = ops1 - ops0;
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let server_cpu = diff(srv0, srv1);
    let own_cpu = diff(own0, own1);
    let per_op = |cpu: f64| {
        if ops > 0 {
            cpu / ops as f64 * 1e6
        } else {
            f64::NAN
        }
    };
    // CpuSnapshot counts the running server as "others": take its share back out.
    let secs = elapsed.as_secs_f64();
    let ncpu = machine::cpu_count() as f64;
    let others = match (cpu0, cpu1) {
        (Some(a), Some(b)) if server_cpu.is_finite() => {
            Some((a.others_percent(&b) - server_cpu / (secs * ncpu) * 100.0).max(0.0))
        }
        _ => None,
    };
    Ok(Measured {
        summary: Summary::new(&hist, ops, elapsed),
        misses: counters.misses.load(Ordering::Relaxed),
        server_cpu_us_per_op: per_op(server_cpu),
        client_cpu_us_per_op: per_op(own_cpu),
        others_cpu_percent: others,
    })
}

// ---------------------------------------------------------------------------------------
// redis-benchmark (reference)
// ---------------------------------------------------------------------------------------

/// One line of `redis-benchmark --csv`.
#[derive(Debug, Clone)]
struct BenchLine {
    op: Op,
    depth: usize,
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs `redis-benchmark` against `port`; `tests` is `set,get` or `set`.
#[allow(clippy::too_many_arguments)]
fn redis_benchmark(
    port: u16,
    tests: &str,
    durable: bool,
    clients: usize,
    depth: usize,
    requests: u64,
    keys: u64,
) -> Result<Vec<BenchLine>, Error> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &clients.to_string(), "-P", &depth.to_string()])
        .args(["-n", &requests.to_string(), "-d", &VALUE_SIZE.to_string()])
        .args(["-r", &keys.to_string(), "-t", tests, "--csv"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(format!("redis-benchmark exited with {}", out.status).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| {
            l.split(',')
                .map(|f| f.trim().trim_matches('"').to_string())
                .collect()
        })
        .collect();
    let header = rows
        .iter()
        .find(|r| r.first().is_some_and(|f| f == "test"))
        .ok_or("redis-benchmark printed no CSV header")?;
    let col = |name: &str| header.iter().position(|h| h == name);
    let (rps, p50, p99) = (col("rps"), col("p50_latency_ms"), col("p99_latency_ms"));
    let num = |r: &Vec<String>, c: Option<usize>, scale: f64| {
        c.and_then(|c| r.get(c))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |v| v * scale)
    };
    let mut lines = Vec::new();
    for r in &rows {
        let op = match r.first().map(String::as_str) {
            Some("GET") => Op::Get,
            Some("SET") if durable => Op::DurableSet,
            Some("SET") => Op::Set,
            _ => continue,
        };
        lines.push(BenchLine {
            op,
            depth,
            ops_per_s: num(r, rps, 1.0),
            p50_us: num(r, p50, 1000.0),
            p99_us: num(r, p99, 1000.0),
        });
    }
    Ok(lines)
}

// ---------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------

/// One measured series.
#[derive(Debug, Clone)]
struct Series {
    system: &'static str,
    op: Op,
    clients: usize,
    depth: usize,
    m: Measured,
}

impl Series {
    fn shape(&self) -> String {
        format!("{}x{}", self.clients, self.depth)
    }
}

/// Everything one run measured.
struct Run {
    fs: String,
    dir: PathBuf,
    load: (String, String),
    floors: Vec<Floor>,
    series: Vec<Series>,
    bench: Vec<BenchLine>,
    notes: Vec<String>,
    targets: Vec<Target>,
    redis_version: Option<String>,
    node: String,
    /// What each node reported (`status`): engine and fsync policy, per phase.
    node_status: Vec<String>,
    redis_pipeline: Pipelining,
    mw_pipeline: Pipelining,
    relaxed_fsync: String,
    keys: u64,
}

impl Run {
    fn find(&self, system: &str, op: Op, depth: usize) -> Option<&Series> {
        self.series
            .iter()
            .find(|s| s.system == system && s.op == op && s.depth == depth)
    }

    /// mw-kv's ops/s over redis's (same op and shape), if both were measured.
    /// `s`'s ops/s over redis's (same op and shape): for mw-kv's series, and for the
    /// engine floor's.
    fn vs_redis(&self, s: &Series) -> f64 {
        match (
            self.find(s.system, s.op, s.depth),
            self.find("redis", s.op, s.depth),
        ) {
            (Some(m), Some(r)) => stats::ratio(m.m.summary.ops_per_s, r.m.summary.ops_per_s),
            _ => f64::NAN,
        }
    }

    /// mw-kv's ops/s over redis-benchmark's (same op and shape).
    fn vs_redis_benchmark(&self, op: Op, depth: usize) -> f64 {
        match (
            self.find("mw-kv", op, depth),
            self.bench.iter().find(|b| b.op == op && b.depth == depth),
        ) {
            (Some(m), Some(b)) => stats::ratio(m.m.summary.ops_per_s, b.ops_per_s),
            _ => f64::NAN,
        }
    }
}

/// Runs the whole benchmark and prints the table (or JSON lines).
pub fn run(args: &KvArgs) -> Result<(), Error> {
    if args.clients == 0 || args.pipeline == 0 || args.keys == 0 {
        return Err("--clients, --pipeline and --keys must be at least 1".into());
    }
    let seconds = if args.quick { 1.0 } else { args.seconds };
    let warmup = Duration::from_secs_f64(if args.quick { 0.3 } else { 1.0 });
    let floor_seconds = if args.quick { 0.5 } else { 2.0 };
    let parent = match &args.data {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".mw-bench-kv-")
        .tempdir_in(&parent)?;
    let dir = tmp.path().to_path_buf();
    let fs = fs_type(&dir);
    let load_before = machine::loadavg().unwrap_or_default();
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    say(format!(
        "mw-bench kv: data dir {} ({fs}), load {load_before}",
        dir.display()
    ));
    if fs == "tmpfs" || fs == "ramfs" {
        eprintln!("WARNING: the data directory is on {fs}: fsync there does not reach a disk");
    }
    let mut notes = Vec::new();
    let have_redis = on_path("redis-server");
    if !have_redis {
        notes.push(
            "redis-server not on PATH: redis series and targets skipped \
             (apt-get update && apt-get install -y redis-server)"
                .to_string(),
        );
    }
    let have_bench = have_redis && on_path("redis-benchmark") && !args.no_redis_benchmark;
    let redis_version = if have_redis { redis_version() } else { None };

    // 1. The floor.
    let mut floors = Vec::new();
    for size in [VALUE_SIZE, 4096] {
        say(format!(
            "  floor: {size} B append + fdatasync, {floor_seconds} s"
        ));
        floors.push(measure_floor(&dir, size, floor_seconds)?);
    }

    let rt = crate::child::runtime()?;
    let (clients, depth, keys) = (args.clients, args.pipeline, args.keys);
    let shapes: Vec<usize> = [1, depth]
        .into_iter()
        .filter(|d| args.depth.is_empty() || args.depth.contains(d))
        .collect();
    // 2. Plain SET/GET on a relaxed node, then durable SET; redis beside each.
    let mut out = PhaseOutput::default();
    for (phase, ops) in [
        ("plain", &[Op::Get, Op::Set][..]),
        ("durable", &[Op::DurableSet][..]),
    ] {
        let ops: Vec<Op> = ops.iter().copied().filter(|&op| args.wants(op)).collect();
        if !ops.is_empty() {
            let setup = PhaseSetup {
                name: phase,
                ops,
                shapes: &shapes,
                have_redis,
                have_bench,
                warmup,
                seconds,
            };
            run_phase(&rt, args, &dir, &setup, &mut out)?;
        }
    }
    let PhaseOutput {
        series,
        bench,
        mut notes_more,
        node_status,
    } = out;
    notes.append(&mut notes_more);
    drop(rt);
    if have_redis && !have_bench && !args.no_redis_benchmark {
        notes.push("redis-benchmark not on PATH: no reference line".into());
    }

    let mut run = Run {
        fs,
        dir: dir.clone(),
        load: (load_before, machine::loadavg().unwrap_or_default()),
        floors,
        series,
        bench,
        notes,
        targets: Vec::new(),
        redis_version,
        node: match &args.mw_kv {
            Some(p) => format!("{} serve", p.display()),
            None => "mw-bench serve kv (mw_kv::cli::run, as `mw-kv serve`)".into(),
        },
        node_status,
        redis_pipeline: args.redis_pipeline,
        mw_pipeline: args.mw_pipeline,
        relaxed_fsync: args.relaxed_fsync.clone(),
        keys,
    };
    if have_redis {
        run.targets = targets(&run, clients, depth);
    }
    if args.json {
        print_json(&run);
    } else {
        print_table(&run);
    }
    Ok(())
}

/// What a phase is: its node's name and fsync, the operations and shapes to run.
struct PhaseSetup<'a> {
    name: &'static str,
    ops: Vec<Op>,
    shapes: &'a [usize],
    have_redis: bool,
    have_bench: bool,
    warmup: Duration,
    seconds: f64,
}

/// What the phases measured, gathered for the report.
#[derive(Default)]
struct PhaseOutput {
    series: Vec<Series>,
    bench: Vec<BenchLine>,
    notes_more: Vec<String>,
    node_status: Vec<String>,
}

fn redis_version() -> Option<String> {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_string))
        })
}

/// One phase: an mw-kv node and a redis server configured alike (relaxed or durable),
/// each series against both, the engine floor (plain phase), then redis-benchmark.
fn run_phase(
    rt: &tokio::runtime::Runtime,
    args: &KvArgs,
    dir: &Path,
    setup: &PhaseSetup<'_>,
    out: &mut PhaseOutput,
) -> Result<(), Error> {
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let (phase, ops, shapes) = (setup.name, &setup.ops, setup.shapes);
    let (have_redis, have_bench) = (setup.have_redis, setup.have_bench);
    let (warmup, seconds) = (setup.warmup, setup.seconds);
    let (clients, depth, keys) = (args.clients, args.pipeline, args.keys);
    let (series, bench, notes, node_status) = (
        &mut out.series,
        &mut out.bench,
        &mut out.notes_more,
        &mut out.node_status,
    );
    let durable = phase == "durable";
    let fsync = if durable {
        "always"
    } else {
        args.relaxed_fsync.as_str()
    };
    let node_dir = dir.join(format!("mw-kv-{phase}"));
    say(format!("  {phase}: mw-kv node --fsync {fsync}"));
    let mut node = NodeChild::spawn(args.mw_kv.as_deref(), &node_dir, fsync, &args.node_arg)?;
    let redis = if have_redis {
        Some(spawn_redis(&dir.join(format!("redis-{phase}")), durable)?)
    } else {
        None
    };
    let mw_conns = rt.block_on(connect_mw(&node.addr, clients))?;
    if let Some(Conn::Mw(c)) = mw_conns.first() {
        let st = rt.block_on(c.status())?;
        node_status.push(format!("{phase}: engine {}, fsync {}", st.engine, st.fsync));
    }
    let redis_conns = match &redis {
        Some(r) => Some(rt.block_on(connect_redis(r.port(), clients))?),
        None => None,
    };
    if ops.contains(&Op::Get) {
        say(format!("  preloading {keys} keys into mw-kv and redis"));
        rt.block_on(preload(&mw_conns, keys, depth))?;
        if let Some(rc) = &redis_conns {
            rt.block_on(preload(rc, keys, depth))?;
        }
    }
    let one_series =
        |system: &'static str, conns: &[Conn], how: Pipelining, pid: u32, d: usize, op: Op| {
            say(format!(
                "  {} {clients}x{d}: {system}, {seconds} s",
                op.name()
            ));
            let (tasks, batch) = how.shape(d);
            let m = rt.block_on(measure(conns, tasks, batch, op, keys, warmup, seconds, pid))?;
            Ok::<_, Error>(Series {
                system,
                op,
                clients,
                depth: d,
                m,
            })
        };
    for &d in shapes {
        for &op in ops {
            series.push(one_series(
                "mw-kv",
                &mw_conns,
                args.mw_pipeline,
                node.pid(),
                d,
                op,
            )?);
            if let (Some(r), Some(rc)) = (&redis, &redis_conns) {
                series.push(one_series(
                    "redis",
                    rc,
                    args.redis_pipeline,
                    r.pid(),
                    d,
                    op,
                )?);
            }
        }
    }
    drop(mw_conns);
    drop(redis_conns);
    if !durable && !args.no_engine_floor {
        series.extend(engine_floor(rt, args, dir, setup, &one_series)?);
    }
    if let (Some(r), true) = (&redis, have_bench) {
        reference_lines(args, r, setup, series, bench, notes);
    }
    node.stop();
    drop(redis);
    Ok(())
}

/// One series of a phase: the system's name, its connections, how it pipelines, the
/// server's pid, the depth and the operation.
type OneSeries<'a> =
    dyn Fn(&'static str, &[Conn], Pipelining, u32, usize, Op) -> Result<Series, Error> + 'a;

/// The engine floor: the phase's series again against a node on `--engine memory`.
fn engine_floor(
    rt: &tokio::runtime::Runtime,
    args: &KvArgs,
    dir: &Path,
    setup: &PhaseSetup<'_>,
    one_series: &OneSeries<'_>,
) -> Result<Vec<Series>, Error> {
    let mut mem = spawn_memory_node(args, dir)?;
    let conns = rt.block_on(connect_mw(&mem.addr, args.clients))?;
    if setup.ops.contains(&Op::Get) {
        rt.block_on(preload(&conns, args.keys, args.pipeline))?;
    }
    let mut series = Vec::new();
    for &d in setup.shapes {
        for &op in &setup.ops {
            series.push(one_series(
                "mw-kv mem",
                &conns,
                args.mw_pipeline,
                mem.pid(),
                d,
                op,
            )?);
        }
    }
    drop(conns);
    mem.stop();
    Ok(series)
}

/// A redis server for a phase, its data in `dir`: without persistence, or with
/// `appendfsync always` for the durable phase.
fn spawn_redis(dir: &Path, durable: bool) -> Result<PeerServer, Error> {
    std::fs::create_dir_all(dir)?;
    let dir_arg = dir.to_string_lossy().into_owned();
    let mut config = vec!["--save", "", "--dir", dir_arg.as_str()];
    if durable {
        config.extend(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        config.extend(["--appendonly", "no"]);
    }
    Ok(PeerServer::redis_with(&config)?)
}

/// redis-benchmark (C client) against the phase's redis server, each shape for about
/// the phase's window at the rate the Rust client reached (C is faster).
fn reference_lines(
    args: &KvArgs,
    redis: &PeerServer,
    setup: &PhaseSetup<'_>,
    series: &[Series],
    bench: &mut Vec<BenchLine>,
    notes: &mut Vec<String>,
) {
    let durable = setup.name == "durable";
    let tests = if durable { "set" } else { "set,get" };
    for &d in setup.shapes {
        let rate = series
            .iter()
            .filter(|s| s.system == "redis" && s.depth == d && setup.ops.contains(&s.op))
            .map(|s| s.m.summary.ops_per_s)
            .fold(0.0, f64::max);
        let requests = ((rate * setup.seconds) as u64).clamp(10_000, 10_000_000);
        if !args.json {
            eprintln!(
                "  redis-benchmark -c {} -P {d} -d {VALUE_SIZE} -t {tests} -n {requests}",
                args.clients
            );
        }
        match redis_benchmark(
            redis.port(),
            tests,
            durable,
            args.clients,
            d,
            requests,
            args.keys,
        ) {
            Ok(lines) => bench.extend(lines),
            Err(e) => notes.push(format!("redis-benchmark -P {d} ({}): {e}", setup.name)),
        }
    }
}

fn targets(run: &Run, clients: usize, depth: usize) -> Vec<Target> {
    let mut out = Vec::new();
    let mut judge = |op: Op, d: usize, limit: f64, what: &str| {
        if let Some(s) = run.find("mw-kv", op, d) {
            out.push(Target::at_least(
                format!(
                    "{} {clients}x{d}: mw-kv >= {limit}x redis {what}",
                    op.name()
                ),
                run.vs_redis(s),
                limit,
            ));
        }
    };
    judge(Op::Get, 1, TARGET_UNBATCHED, "(unbatched)");
    judge(Op::Set, 1, TARGET_UNBATCHED, "(unbatched)");
    judge(Op::Get, depth, TARGET_PIPELINED, &format!("-P {depth}"));
    judge(Op::Set, depth, TARGET_PIPELINED, &format!("-P {depth}"));
    judge(Op::DurableSet, 1, TARGET_DURABLE, "appendfsync always");
    judge(
        Op::DurableSet,
        depth,
        TARGET_DURABLE,
        &format!("appendfsync always -P {depth}"),
    );
    out
}

fn print_json(run: &Run) {
    for f in &run.floors {
        let row = Row {
            series: "fsync-floor".into(),
            workload: format!("append {} B + fdatasync", f.size),
            summary: f.summary,
            ratios: vec![],
            targets: vec![],
            others_cpu_percent: None,
        };
        let mut v = row.to_json();
        v["filesystem"] = json!(run.fs);
        v["data_dir"] = json!(run.dir.display().to_string());
        println!("{v}");
    }
    for s in &run.series {
        let row = Row {
            series: s.system.into(),
            workload: format!("{} {} {VALUE_SIZE}B", s.op.name(), s.shape()),
            summary: s.m.summary,
            ratios: vec![("vs_redis".into(), run.vs_redis(s))],
            targets: vec![],
            others_cpu_percent: s.m.others_cpu_percent,
        };
        let mut v = row.to_json();
        v["server_cpu_us_per_op"] = json!(round2(s.m.server_cpu_us_per_op));
        v["client_cpu_us_per_op"] = json!(round2(s.m.client_cpu_us_per_op));
        v["get_misses"] = json!(s.m.misses);
        if s.depth > 1 {
            let how = if s.system == "redis" {
                run.redis_pipeline
            } else {
                run.mw_pipeline
            };
            v["pipelining"] = json!(how.name());
        }
        println!("{v}");
    }
    for b in &run.bench {
        println!(
            "{}",
            json!({
                "series": "redis-benchmark",
                "workload": format!("{} {}x{} {VALUE_SIZE}B", b.op.name(), run.series.first().map_or(0, |s| s.clients), b.depth),
                "ops_per_s": b.ops_per_s.round(),
                "p50_us": round2(b.p50_us),
                "p99_us": round2(b.p99_us),
                "mw_kv_ratio": round2(run.vs_redis_benchmark(b.op, b.depth)),
            })
        );
    }
    let t: Vec<Value> = run
        .targets
        .iter()
        .map(|t| json!({"rule": t.rule, "value": round2(t.value), "pass": t.pass}))
        .collect();
    println!(
        "{}",
        json!({
            "series": "targets",
            "targets": t,
            "notes": run.notes,
            "redis_version": run.redis_version,
            "node": run.node,
            "node_status": run.node_status,
            "load": [run.load.0, run.load.1],
        })
    );
}

fn print_table(run: &Run) {
    let fs = &run.fs;
    println!(
        "data dir {} on {fs}{}; load average before {} / after {}",
        run.dir.display(),
        if fs == "tmpfs" || fs == "ramfs" {
            " (NOT A DISK: fsync figures are meaningless)"
        } else {
            ""
        },
        run.load.0,
        run.load.1
    );
    println!(
        "mw-kv node: {} (plain: --fsync {} + Buffered puts; durable: --fsync always + Sync puts); redis {}: --save '' --appendonly no / --appendonly yes --appendfsync always",
        run.node,
        run.relaxed_fsync,
        run.redis_version.as_deref().unwrap_or("(absent)")
    );
    if !run.node_status.is_empty() {
        println!("mw-kv node status: {}", run.node_status.join("; "));
    }
    println!();
    print_floors(run);
    print_series(run);
    print_reference(run);
    for n in &run.notes {
        println!("note: {n}");
    }
    println!();
    println!("targets (mw-kv ops/s over redis's, same Rust client side)");
    if run.targets.is_empty() {
        println!("  (not judged: no redis in this run)");
    }
    for t in &run.targets {
        println!("  {}  {:<60} {}", t.verdict(), t.rule, fmt_ratio(t.value));
    }
}

/// Part 1: the disk's fsync floor.
fn print_floors(run: &Run) {
    println!("1. fsync floor of the data disk: append + File::sync_data (fdatasync), one thread");
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>10}",
        "append", "p50 µs", "p99 µs", "p99.9 µs", "syncs/s"
    );
    for f in &run.floors {
        println!(
            "{:<10} {:>9} {:>9} {:>9} {:>10}",
            format!("{} B", f.size),
            fmt_us(f.summary.p50_us),
            fmt_us(f.summary.p99_us),
            fmt_us(f.summary.p999_us),
            fmt_rate(f.summary.ops_per_s)
        );
    }
    println!();
}

/// Part 2: every series, with its ratio to redis and the CPU per operation.
fn print_series(run: &Run) {
    let mw_pipelining = match run.mw_pipeline {
        Pipelining::Pipe => "one batch call of N operations per round trip",
        Pipelining::Concurrent => "N concurrent calls on the multiplexed connection",
    };
    let pipelining = match run.redis_pipeline {
        Pipelining::Pipe => "one redis::pipe() of N commands per round trip",
        Pipelining::Concurrent => "N concurrent commands on the multiplexed connection",
    };
    println!(
        "2. {VALUE_SIZE} B values, {} random keys; shape = connections x ops in flight per connection (mw-kv: {mw_pipelining}; redis: {pipelining})",
        fmt_rate(run.keys as f64)
    );
    println!(
        "{:<9} {:<12} {:<6} {:>11} {:>9} {:>9} {:>9} {:>8} {:>13} {:>7}",
        "system",
        "op",
        "shape",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "x redis",
        "cpu µs/op s+c",
        "others"
    );
    for s in &run.series {
        let r = if s.system != "redis" {
            fmt_ratio(run.vs_redis(s))
        } else {
            String::new()
        };
        let miss = if s.m.misses > 0 {
            format!("  ({} GET misses!)", s.m.misses)
        } else {
            String::new()
        };
        println!(
            "{:<9} {:<12} {:<6} {:>11} {:>9} {:>9} {:>9} {:>8} {:>13} {:>7}{miss}",
            s.system,
            s.op.name(),
            s.shape(),
            fmt_rate(s.m.summary.ops_per_s),
            fmt_us(s.m.summary.p50_us),
            fmt_us(s.m.summary.p99_us),
            fmt_us(s.m.summary.p999_us),
            r,
            format!(
                "{}+{}",
                fmt_cpu(s.m.server_cpu_us_per_op),
                fmt_cpu(s.m.client_cpu_us_per_op)
            ),
            s.m.others_cpu_percent
                .map_or("-".into(), |p| format!("{p:.0}%"))
        );
    }
    println!("cpu = server process + bench (client) process CPU per operation over the window (both on the same vCPUs); others = CPU share of other processes");
}

/// redis-benchmark's reference lines, with mw-kv's ratio to each.
fn print_reference(run: &Run) {
    if !run.bench.is_empty() {
        println!();
        println!("reference: redis-benchmark (C client) against the same redis servers, -d {VALUE_SIZE} -r {}", run.keys);
        println!(
            "{:<16} {:<12} {:<6} {:>11} {:>9} {:>9} {:>14}",
            "system", "op", "shape", "ops/s", "p50 µs", "p99 µs", "mw-kv x this"
        );
        let clients = run.series.first().map_or(0, |s| s.clients);
        for b in &run.bench {
            println!(
                "{:<16} {:<12} {:<6} {:>11} {:>9} {:>9} {:>14}",
                "redis-benchmark",
                b.op.name(),
                format!("{clients}x{}", b.depth),
                fmt_rate(b.ops_per_s),
                fmt_us(b.p50_us),
                fmt_us(b.p99_us),
                fmt_ratio(run.vs_redis_benchmark(b.op, b.depth))
            );
        }
    }
}

fn fmt_cpu(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-".into()
    }
}

fn round2(v: f64) -> Option<f64> {
    v.is_finite().then(|| (v * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_redis_benchmark_names() {
        assert_eq!(key(42), b"key:000000000042".to_vec());
    }

    #[test]
    fn random_keys_cover_the_keyspace() {
        let mut rng = 7;
        let mut seen = [false; 16];
        for _ in 0..1000 {
            seen[(next_rand(&mut rng) % 16) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
