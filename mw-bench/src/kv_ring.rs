//! `mw-bench kv-ring`: a ring of three mw-kv nodes under a YCSB-A-like workload, routed
//! recursively and iteratively, healthy and with one replica SIGSTOPped.
//!
//! ```text
//! cargo run --release -p mw-bench -- kv-ring [--json] [--quick] [--seconds S] [--data DIR]
//!     [--keys 10000] [--conns 4] [--tasks 8] [--context process|task|blind]
//!     [--fsync always|never|interval:MS] [--routing recursive|iterative] [--mw-kv PATH]
//! ```
//!
//! **The ring.** Three node processes on free loopback ports, each on its own temporary
//! data directory (under `--data`, default the current directory): by default
//! `mw-bench serve kv-ring --addr 127.0.0.1:0 --data DIR --fsync F`, which parses
//! `mw-kv serve --ring|--join SEED --n 3 --w 2 --r 2 …` with mw-kv's own command line and
//! runs it ([`mw_kv::cli::run`], hence `mw_kv::ring::serve::spawn`) on a default tokio
//! runtime exactly as the `mw-kv` binary does — so the node is always built in the
//! bench's profile and never stale. `--mw-kv target/release/mw-kv` runs that binary
//! instead (`cargo build --release -p mw-kv`). The first node starts the ring, the other
//! two join through it; the bench waits until every node's `ring()` shows three members
//! up and reachable. With N=3 on three nodes every node is a replica of every key.
//!
//! **The workload** (YCSB workload A): `--keys` keys (`user%010d`) preloaded with 1 KiB
//! values, then a closed loop of `--conns` clients × `--tasks` tasks each (one operation
//! in flight per task): 50% reads (R=2), 50% updates (a put of a new 1 KiB value, W=2),
//! keys drawn from YCSB's zipfian generator (constant 0.99, Gray et al.'s algorithm as
//! in YCSB's `ZipfianGenerator`) with ranks scrambled by FNV-1a 64 over the key space
//! (as YCSB's `ScrambledZipfianGenerator`, so the hot keys are spread over the ring).
//! YCSB's updates are blind writes; on a ring with siblings a write with an empty
//! context is concurrent with everything stored and a hot key would soon hold the 16
//! siblings a key may have. So updates carry a context, `--context`:
//! - `process` (default): the latest context the bench process saw for the key — every
//!   read's context is merged into a per-key cache, and every acknowledged put adds its
//!   own dot — like an application server that caches what it read;
//! - `task`: the same, but each task keeps its own cache (a client that writes with the
//!   context of its own previous read of the key);
//! - `blind`: empty contexts (YCSB's literal blind writes).
//!
//! Reads report how many siblings they saw (tombstones included; the table prints the
//! distribution), and puts refused with `TooManySiblings` are counted.
//!
//! **Routing.** Recursive: `--conns` [`RingKvClient`]s, each one `mw::rpc::Channel` to the
//! first node, which coordinates every request. Iterative: `--conns` [`RingClient`]s
//! (each fetches the ring from the first node and keeps one channel to each replica),
//! contacting the replicas themselves.
//!
//! **Series**, each a warm-up (1 s; 0.3 s with `--quick`) and one measured window of
//! `--seconds` (10; 1 with `--quick`): recursive healthy, iterative healthy, recursive
//! with the third node (a replica of every key, not the coordinator, not the seed)
//! SIGSTOPped, iterative with it SIGSTOPped. The replica is stopped at the start of the
//! measured window (so the window includes the moment of failure and the failure
//! detector noticing) and SIGCONTed at its end; before the next series the bench waits
//! until every node sees it reachable again. Reported per series and operation: ops/s,
//! p50/p99/p99.9 (hdrhistogram, every operation including failed ones), the quorum wait
//! (microseconds from the coordinator's — or iterative client's — fan-out to the
//! R-th/W-th reply, from the replies' own timings), the CPU each node and the bench
//! process used per operation (`/proc/PID/stat`), the CPU share of other processes, and
//! each process's resident memory at the start and end of the window (`VmRSS`).
//!
//! Target: p99.9 over all operations with one replica stopped ≤ 3× the healthy
//! run's, per routing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use mw_kv::ring::client::RingClient;
use mw_kv::ring::dvv::VersionVector;
use mw_kv::ring::service::RingKvClient;
use mw_kv::ring::types::{MemberState, ReplicaReply, RingRead, RingWrite, RingWriteOptions};
use mw_kv::KvError;
use serde_json::{json, Value};

use crate::child::READY_PREFIX;
use crate::machine::{self, CpuSnapshot};
use crate::queue::{fs_type, proc_cpu_seconds};
use crate::report::{Row, Target};
use crate::stats::{self, fmt_rate, fmt_ratio, fmt_us, histogram, record, Summary};
use crate::Error;

/// Server targets of this benchmark (`mw-bench serve <target>`).
pub const SERVE_TARGETS: &[&str] = &["kv-ring"];

/// The `mw-kv serve` ring flags of a `mw-bench serve kv-ring` child, one per line.
const RING_ARGS_ENV: &str = "MW_BENCH_KV_RING_ARGS";
/// Value size, bytes (YCSB's default record: 10 fields of 100 B; here one 1 KiB value).
const VALUE_SIZE: usize = 1024;
/// YCSB's zipfian constant.
const ZIPF_THETA: f64 = 0.99;
/// Share of reads (YCSB-A: 50/50).
const READ_FRACTION: f64 = 0.5;
/// Nodes in the ring.
const NODES: usize = 3;
/// The node SIGSTOPped: neither the recursive clients' coordinator nor the seed (0).
const VICTIM: usize = 2;
/// Target: p99.9 with one replica stopped over the healthy p99.9, at most.
const TARGET_STOPPED: f64 = 3.0;
/// Sibling counts above this are counted together.
const SIBLING_BUCKETS: usize = 17;

/// How updates choose their context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContextMode {
    /// The latest context any task of the bench saw for the key.
    Process,
    /// The context of this task's own last read (or write) of the key.
    Task,
    /// Empty contexts: YCSB's blind writes.
    Blind,
}

/// Flags of `mw-bench kv-ring`.
#[derive(Debug, clap::Args)]
pub struct KvRingArgs {
    /// One JSON object per series instead of the table.
    #[arg(long)]
    json: bool,
    /// Short windows (1 s), for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Measured window of each series, seconds (after a 1 s warm-up). p99.9 needs the
    /// samples: ~6,000 ops/s x 10 s puts 60 operations above it.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Directory for the nodes' data (a temporary directory is made inside it and removed
    /// afterwards). Default: the current directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Keys (preloaded with 1 KiB values).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Client connections (recursive: channels to the coordinator; iterative: clients).
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Tasks per connection, each with one operation in flight.
    #[arg(long, default_value_t = 8)]
    tasks: usize,
    /// Where updates take their context from.
    #[arg(long, value_enum, default_value_t = ContextMode::Process)]
    context: ContextMode,
    /// Fsync policy of the nodes (replicas store with `Durability::Sync`).
    #[arg(long, default_value = "always")]
    fsync: String,
    /// Run only these routings (repeatable). Default: both.
    #[arg(long, value_parser = ["recursive", "iterative"])]
    routing: Vec<String>,
    /// Run this `mw-kv` binary as the nodes instead of `mw-bench serve kv-ring`.
    #[arg(long, value_name = "PATH")]
    mw_kv: Option<PathBuf>,
    /// Extra argument for `mw-kv serve` (repeatable), e.g. `--node-arg=--engine=redb`.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    node_arg: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// The node children
// ---------------------------------------------------------------------------------------

/// `mw-bench serve kv-ring`: parses `mw-kv serve --addr … --data … --fsync …` plus the
/// ring flags the parent put in the environment with mw-kv's own command line and runs
/// it as the `mw-kv` binary does ([`mw_kv::cli::run`] on a default multi-thread
/// runtime), until SIGTERM or Ctrl-C.
pub fn serve(addr: &str, data: Option<PathBuf>, fsync: Option<String>) -> Result<(), Error> {
    use clap::Parser;
    let data = data.ok_or("serve kv-ring needs --data DIR")?;
    let mut argv: Vec<std::ffi::OsString> = ["mw-kv", "serve", "--addr", addr]
        .iter()
        .map(Into::into)
        .collect();
    argv.push("--data".into());
    argv.push(data.into_os_string());
    argv.push("--fsync".into());
    argv.push(fsync.unwrap_or_else(|| "always".into()).into());
    let extra = std::env::var(RING_ARGS_ENV).unwrap_or_else(|_| "--ring".into());
    argv.extend(extra.lines().filter(|l| !l.is_empty()).map(Into::into));
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

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of our own child, which is not reaped yet.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Resident memory of `pid` (0: this process), MiB.
fn rss_mib(pid: u32) -> f64 {
    let path = if pid == 0 {
        "/proc/self/status".to_string()
    } else {
        format!("/proc/{pid}/status")
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line["VmRSS:".len()..]
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A ring node in a child process. Dropping it SIGCONTs and kills it.
struct Node {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    addr: String,
}

impl Node {
    /// Starts a node; `ring` are its `mw-kv serve` ring flags (`--ring` or `--join SEED`,
    /// N/W/R, extras).
    fn spawn(bin: Option<&Path>, data: &Path, fsync: &str, ring: &[String]) -> Result<Node, Error> {
        let mut cmd = match bin {
            Some(b) => {
                let mut c = Command::new(b);
                c.arg("serve").args(ring);
                c
            }
            None => {
                let mut c = Command::new(self_exe()?);
                c.args(["serve", "kv-ring"])
                    .env(RING_ARGS_ENV, ring.join("\n"));
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
            .map_err(|e| {
                format!(
                    "cannot start the mw-kv node {:?}: {e}{}",
                    cmd.get_program(),
                    if bin.is_some() {
                        " (build it with `cargo build --release -p mw-kv`)"
                    } else {
                        ""
                    }
                )
            })?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout was piped"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let mut node = Node {
            child,
            _stdout: stdout,
            addr: String::new(),
        };
        read?;
        match line.trim_end().strip_prefix(READY_PREFIX) {
            Some(addr) => node.addr = addr.to_string(),
            None => {
                return Err(format!(
                    "mw-kv ring node printed {line:?} instead of \"{READY_PREFIX}<addr>\""
                )
                .into())
            }
        }
        Ok(node)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGCONT, SIGTERM (the node shuts down and syncs), up to 10 s, then SIGKILL.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        signal(self.pid(), libc::SIGCONT);
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
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

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.pid(), libc::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGSTOPs a process; SIGCONTs it when dropped (also on an early return).
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        signal(pid, libc::SIGSTOP);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

/// Waits until every node's `ring()` shows `NODES` members, all up and reachable.
async fn converge(addrs: &[String], within: Duration) -> Result<Duration, Error> {
    let started = Instant::now();
    let mut clients = Vec::new();
    for a in addrs {
        clients.push(RingKvClient::new(mw::rpc::Channel::connect(a).await?));
    }
    let mut last = String::new();
    while started.elapsed() < within {
        let mut ok = true;
        for c in &clients {
            let view = match c.ring().await {
                Ok(v) => v,
                Err(e) => {
                    last = e.to_string();
                    ok = false;
                    break;
                }
            };
            let good = view.members.len() == NODES
                && view
                    .members
                    .iter()
                    .all(|m| m.state == MemberState::Up && m.reachable);
            if !good {
                last = format!(
                    "{}: {}",
                    view.node,
                    view.members
                        .iter()
                        .map(|m| format!("{} {:?} reachable {}", m.node, m.state, m.reachable))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                ok = false;
                break;
            }
        }
        if ok {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("the ring did not converge within {within:?}: {last}").into())
}

// ---------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------

/// YCSB's `ZipfianGenerator` (Gray et al., "Quickly generating billion-record synthetic
/// databases", SIGMOD 1994) over ranks `0..n`.
#[derive(Debug, Clone)]
struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    fn new(n: u64, theta: f64) -> Zipfian {
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    /// The rank for a uniform `u` in `[0, 1)`.
    fn rank(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }

    /// The probability of rank 0.
    fn p0(&self) -> f64 {
        1.0 / self.zetan
    }
}

/// FNV-1a 64 of the rank's little-endian bytes (YCSB's `fnvhash64` scrambling).
fn fnv64(v: u64) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in v.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// xorshift64*: the per-task random source.
fn next_rand(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Uniform in `[0, 1)`.
fn uniform(state: &mut u64) -> f64 {
    (next_rand(state) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// What every task shares: keys, key choice, values.
struct Workload {
    keys: Vec<Bytes>,
    zipf: Zipfian,
    value: Bytes,
    stamp: AtomicU64,
}

impl Workload {
    fn new(keys: u64) -> Workload {
        Workload {
            keys: (0..keys)
                .map(|i| Bytes::from(format!("user{i:010}")))
                .collect(),
            zipf: Zipfian::new(keys, ZIPF_THETA),
            value: Bytes::from(vec![0x5Au8; VALUE_SIZE]),
            stamp: AtomicU64::new(0),
        }
    }

    /// A key index: a zipfian rank, scrambled over the key space.
    fn pick(&self, rng: &mut u64) -> usize {
        let rank = self.zipf.rank(uniform(rng));
        (fnv64(rank) % self.keys.len() as u64) as usize
    }

    /// A fresh 1 KiB value (the first 8 bytes differ per write).
    fn value(&self) -> Bytes {
        let mut v = BytesMut::from(&self.value[..]);
        let s = self.stamp.fetch_add(1, Ordering::Relaxed);
        v[..8].copy_from_slice(&s.to_le_bytes());
        v.freeze()
    }
}

/// Contexts shared by every task of a series (`--context process`).
struct SharedContexts(Vec<Mutex<VersionVector>>);

/// Where a task gets the context of an update and records what it learned.
enum Contexts {
    Shared(Arc<SharedContexts>),
    Own(HashMap<usize, VersionVector>),
    Blind,
}

impl Contexts {
    fn get(&self, k: usize) -> VersionVector {
        match self {
            Contexts::Shared(s) => s.0[k].lock().unwrap_or_else(|p| p.into_inner()).clone(),
            Contexts::Own(m) => m.get(&k).cloned().unwrap_or_default(),
            Contexts::Blind => VersionVector::default(),
        }
    }

    /// After a read (its context) or an acknowledged put (its context plus its dot).
    fn learn(&mut self, k: usize, seen: VersionVector) {
        match self {
            Contexts::Shared(s) => s.0[k]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .merge(&seen),
            Contexts::Own(m) => {
                m.entry(k).or_default().merge(&seen);
            }
            Contexts::Blind => {}
        }
    }
}

/// A client of either routing.
#[derive(Clone)]
enum Client {
    Recursive(RingKvClient),
    Iterative(RingClient),
}

fn app(e: mw::rpc::RpcError<KvError>) -> KvError {
    match e.into_application() {
        Ok(k) => k,
        Err(e) => KvError::Storage(format!("rpc: {e}")),
    }
}

impl Client {
    async fn get(&self, key: Bytes) -> Result<RingRead, KvError> {
        match self {
            Client::Recursive(c) => c.get(key, None).await.map_err(app),
            Client::Iterative(c) => c.get(key, None).await,
        }
    }

    async fn put(
        &self,
        key: Bytes,
        value: Bytes,
        context: VersionVector,
    ) -> Result<RingWrite, KvError> {
        let options = RingWriteOptions { context, w: None };
        match self {
            Client::Recursive(c) => c.put(key, value, options).await.map_err(app),
            Client::Iterative(c) => c.put(key, Some(value), options).await,
        }
    }
}

/// Microseconds until the last reply that counted (the R-th or W-th), if any answered.
fn quorum_micros(replies: &[ReplicaReply]) -> Option<u64> {
    replies.iter().filter(|r| r.ok).map(|r| r.micros).max()
}

/// Stores every key once (recursively through `addr`, empty contexts).
async fn preload(addr: &str, wl: &Arc<Workload>, tasks: usize) -> Result<(), Error> {
    let channel = mw::rpc::Channel::connect(addr).await?;
    let client = RingKvClient::new(channel);
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (client, wl, next) = (client.clone(), wl.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                if k >= wl.keys.len() {
                    return Ok::<(), Error>(());
                }
                client
                    .put(wl.keys[k].clone(), wl.value(), RingWriteOptions::default())
                    .await
                    .map_err(|e| format!("preload put: {}", app(e)))?;
            }
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

/// What one task (then one series) measured in the window.
#[derive(Debug, Clone)]
struct Stats {
    read: Histogram<u64>,
    update: Histogram<u64>,
    /// Quorum waits of reads and updates (ns).
    read_quorum: Histogram<u64>,
    update_quorum: Histogram<u64>,
    read_errors: u64,
    update_errors: u64,
    /// Puts refused with `TooManySiblings`.
    refused: u64,
    /// Reads by siblings seen (the last bucket: that many or more).
    siblings: [u64; SIBLING_BUCKETS + 1],
    /// Reads that returned more than one value.
    multi_value: u64,
    max_siblings: usize,
    first_error: Option<String>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            read: histogram(),
            update: histogram(),
            read_quorum: histogram(),
            update_quorum: histogram(),
            read_errors: 0,
            update_errors: 0,
            refused: 0,
            siblings: [0; SIBLING_BUCKETS + 1],
            multi_value: 0,
            max_siblings: 0,
            first_error: None,
        }
    }
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        for (a, b) in [
            (&mut self.read, &o.read),
            (&mut self.update, &o.update),
            (&mut self.read_quorum, &o.read_quorum),
            (&mut self.update_quorum, &o.update_quorum),
        ] {
            a.add(b).expect("histograms with the same bounds add");
        }
        self.read_errors += o.read_errors;
        self.update_errors += o.update_errors;
        self.refused += o.refused;
        for (a, b) in self.siblings.iter_mut().zip(o.siblings) {
            *a += b;
        }
        self.multi_value += o.multi_value;
        self.max_siblings = self.max_siblings.max(o.max_siblings);
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
    }

    fn mean_siblings(&self) -> f64 {
        let n: u64 = self.siblings.iter().sum();
        let s: u64 = self
            .siblings
            .iter()
            .enumerate()
            .map(|(i, c)| i as u64 * c)
            .sum();
        stats::ratio(s as f64, n as f64)
    }

    fn error(&mut self, e: &KvError) {
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

/// One measured series.
#[derive(Debug, Clone)]
struct Series {
    routing: &'static str,
    stopped: bool,
    stats: Stats,
    elapsed: Duration,
    /// CPU µs per operation of each node, then of the bench process.
    cpu_us_per_op: Vec<f64>,
    others_cpu_percent: Option<f64>,
    /// Resident MiB of each node, then of the bench process, at the start and the end of
    /// the window.
    rss_start: Vec<f64>,
    rss_end: Vec<f64>,
    /// After the window: how long until every node saw the stopped replica again.
    recovered_in: Option<Duration>,
}

impl Series {
    fn name(&self) -> String {
        format!(
            "{} {}",
            self.routing,
            if self.stopped { "1 stopped" } else { "healthy" }
        )
    }

    fn summary(&self, op: &str) -> Summary {
        let s = &self.stats;
        let (hist, ops) = match op {
            "read" => (s.read.clone(), s.read.len() - s.read_errors),
            "update" => (s.update.clone(), s.update.len() - s.update_errors),
            _ => {
                let mut h = s.read.clone();
                h.add(&s.update).expect("same bounds");
                let ok = h.len() - s.read_errors - s.update_errors;
                (h, ok)
            }
        };
        Summary::new(&hist, ops, self.elapsed)
    }

    fn quorum(&self, op: &str) -> (f64, f64) {
        let h = if op == "read" {
            &self.stats.read_quorum
        } else {
            &self.stats.update_quorum
        };
        let q = Summary::new(h, h.len(), self.elapsed);
        (q.p50_us, q.p999_us)
    }
}

/// Runs the workload on `clients` (`tasks` tasks each): warm-up, then one window of
/// `seconds`; with `stop`, that process is SIGSTOPped for exactly the window.
#[allow(clippy::too_many_arguments)]
async fn measure(
    routing: &'static str,
    clients: &[Client],
    tasks: usize,
    wl: &Arc<Workload>,
    mode: ContextMode,
    warmup: Duration,
    seconds: f64,
    pids: &[u32],
    stop: Option<u32>,
) -> Result<Series, Error> {
    let recording = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let handles = spawn_workers(clients, tasks, wl, mode, &recording, &done);

    tokio::time::sleep(warmup).await;
    let before = CpuSample::take(pids);
    let rss_start = rss_of(pids);
    let stopped = stop.map(Stopped::new);
    let t0 = Instant::now();
    recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    recording.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    let rss_end = rss_of(pids);
    drop(stopped);
    let after = CpuSample::take(pids);
    done.store(true, Ordering::Relaxed);
    let mut stats = Stats::default();
    for h in handles {
        stats.add(&h.await?);
    }

    let ops = stats.read.len() + stats.update.len();
    let (cpu_us_per_op, others) = before.cpu_use(&after, ops, elapsed);
    Ok(Series {
        routing,
        stopped: stop.is_some(),
        stats,
        elapsed,
        cpu_us_per_op,
        others_cpu_percent: others,
        rss_start,
        rss_end,
        recovered_in: None,
    })
}

/// Records an answered operation: its latency `d`, and the wait for its quorum of
/// `replicas`.
fn record_answer(
    latency: &mut Histogram<u64>,
    quorum: &mut Histogram<u64>,
    d: Duration,
    replicas: &[ReplicaReply],
) {
    record(latency, d);
    if let Some(q) = quorum_micros(replicas) {
        record(quorum, Duration::from_micros(q));
    }
}

/// Resident memory (MiB) of each node, then of this process.
fn rss_of(pids: &[u32]) -> Vec<f64> {
    pids.iter()
        .map(|&p| rss_mib(p))
        .chain([rss_mib(0)])
        .collect()
}

/// CPU time at one instant: the machine's, each node's and this process's.
struct CpuSample {
    machine: Option<CpuSnapshot>,
    nodes: Vec<Option<f64>>,
    own: Option<f64>,
}

impl CpuSample {
    fn take(pids: &[u32]) -> CpuSample {
        CpuSample {
            machine: CpuSnapshot::now(),
            nodes: pids
                .iter()
                .map(|&p| proc_cpu_seconds(&format!("/proc/{p}/stat")))
                .collect(),
            own: proc_cpu_seconds("/proc/self/stat"),
        }
    }

    /// From this sample to `after`, over `ops` operations in `elapsed`: CPU µs per op of
    /// each node and of this process, and the other processes' share of the machine (%).
    fn cpu_use(&self, after: &CpuSample, ops: u64, elapsed: Duration) -> (Vec<f64>, Option<f64>) {
        let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        let per_op = |cpu: f64| stats::ratio(cpu * 1e6, ops as f64);
        let node_cpu: Vec<f64> = self
            .nodes
            .iter()
            .zip(&after.nodes)
            .map(|(a, b)| diff(*a, *b))
            .collect();
        let mut cpu_us_per_op: Vec<f64> = node_cpu.iter().map(|&c| per_op(c)).collect();
        cpu_us_per_op.push(per_op(diff(self.own, after.own)));
        // CpuSnapshot counts the nodes as "others": take their share back out.
        let secs = elapsed.as_secs_f64();
        let ncpu = machine::cpu_count() as f64;
        let nodes_total: f64 = node_cpu.iter().filter(|c| c.is_finite()).sum();
        let others = match (&self.machine, &after.machine) {
            (Some(a), Some(b)) => {
                Some((a.others_percent(b) - nodes_total / (secs * ncpu) * 100.0).max(0.0))
            }
            _ => None,
        };
        (cpu_us_per_op, others)
    }
}

/// Starts `tasks` workload tasks per client; they record while `recording` is set and
/// return their stats once `done` is.
fn spawn_workers(
    clients: &[Client],
    tasks: usize,
    wl: &Arc<Workload>,
    mode: ContextMode,
    recording: &Arc<AtomicBool>,
    done: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Stats>> {
    let shared = Arc::new(SharedContexts(
        (0..wl.keys.len())
            .map(|_| Mutex::new(VersionVector::default()))
            .collect(),
    ));
    let mut handles = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        for t in 0..tasks {
            let contexts = match mode {
                ContextMode::Process => Contexts::Shared(shared.clone()),
                ContextMode::Task => Contexts::Own(HashMap::new()),
                ContextMode::Blind => Contexts::Blind,
            };
            let rng = 0x9E37_79B9_7F4A_7C15u64 ^ (((c as u64) << 20) | (t as u64 + 1));
            let worker = Worker {
                client: client.clone(),
                wl: wl.clone(),
                contexts,
                recording: recording.clone(),
                stats: Stats::default(),
            };
            handles.push(tokio::spawn(worker.run(rng, done.clone())));
        }
    }
    handles
}

/// One workload task: its connection, its contexts and what it recorded.
struct Worker {
    client: Client,
    wl: Arc<Workload>,
    contexts: Contexts,
    recording: Arc<AtomicBool>,
    stats: Stats,
}

impl Worker {
    /// Reads or updates a Zipfian key, [`READ_FRACTION`] of them reads, until `done`.
    async fn run(mut self, mut rng: u64, done: Arc<AtomicBool>) -> Stats {
        while !done.load(Ordering::Relaxed) {
            let read = uniform(&mut rng) < READ_FRACTION;
            let k = self.wl.pick(&mut rng);
            if read {
                self.read(k).await;
            } else {
                self.update(k).await;
            }
        }
        self.stats
    }

    /// Reads key `k`, learning its context; records latency, quorum time and siblings.
    async fn read(&mut self, k: usize) {
        let key = self.wl.keys[k].clone();
        let st = &mut self.stats;
        let t0 = Instant::now();
        let r = self.client.get(key).await;
        let d = t0.elapsed();
        let rec = self.recording.load(Ordering::Relaxed);
        match r {
            Ok(read) => {
                if rec {
                    record_answer(&mut st.read, &mut st.read_quorum, d, &read.replicas);
                    st.siblings[read.siblings.min(SIBLING_BUCKETS)] += 1;
                    st.max_siblings = st.max_siblings.max(read.siblings);
                    st.multi_value += u64::from(read.values.len() > 1);
                }
                self.contexts.learn(k, read.context);
            }
            Err(e) if rec => {
                record(&mut st.read, d);
                st.read_errors += 1;
                st.error(&e);
            }
            Err(_) => {}
        }
    }

    /// Writes key `k` with the context known for it, learning the new dot; records
    /// latency, quorum time and refusals.
    async fn update(&mut self, k: usize) {
        let key = self.wl.keys[k].clone();
        let st = &mut self.stats;
        let t0 = Instant::now();
        let context = self.contexts.get(k);
        let r = self.client.put(key, self.wl.value(), context.clone()).await;
        let d = t0.elapsed();
        let rec = self.recording.load(Ordering::Relaxed);
        match r {
            Ok(w) => {
                if rec {
                    record_answer(&mut st.update, &mut st.update_quorum, d, &w.replicas);
                }
                let mut seen = context;
                seen.insert(&w.dot);
                self.contexts.learn(k, seen);
            }
            Err(e) if rec => {
                record(&mut st.update, d);
                st.update_errors += 1;
                if matches!(e, KvError::TooManySiblings { .. }) {
                    st.refused += 1;
                }
                st.error(&e);
            }
            Err(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------

/// Everything one run measured.
struct Run {
    fs: String,
    load: (String, String),
    addrs: Vec<String>,
    node: String,
    fsync: String,
    keys: u64,
    conns: usize,
    tasks: usize,
    context: ContextMode,
    preload: Duration,
    series: Vec<Series>,
    targets: Vec<(String, Target, f64, f64)>,
}

/// Runs the whole benchmark and prints the table (or JSON lines).
pub fn run(args: &KvRingArgs) -> Result<(), Error> {
    if args.conns == 0 || args.tasks == 0 || args.keys < 2 {
        return Err("--conns and --tasks must be at least 1, --keys at least 2".into());
    }
    let parent = match &args.data {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".mw-bench-kv-ring-")
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
        "mw-bench kv-ring: data dir {} ({fs}), load {load_before}",
        dir.display()
    ));
    if let Some(b) = &args.mw_kv {
        if !b.exists() {
            return Err(format!(
                "{} does not exist: build it with `cargo build --release -p mw-kv`",
                b.display()
            )
            .into());
        }
    }

    // 1. The ring.
    let mut nodes = start_ring(args, &dir, &say)?;
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let rt = crate::child::runtime()?;
    let took = rt.block_on(converge(&addrs, Duration::from_secs(30)))?;
    say(format!(
        "  ring converged in {} ms: 3 members up and reachable on every node",
        took.as_millis()
    ));

    // 2. Preload.
    let wl = Arc::new(Workload::new(args.keys));
    say(format!(
        "  preloading {} keys of {VALUE_SIZE} B",
        fmt_rate(args.keys as f64)
    ));
    let t = Instant::now();
    rt.block_on(preload(&addrs[0], &wl, 32))?;
    let preload_took = t.elapsed();

    // 3. The series.
    let routings: Vec<&'static str> = ["recursive", "iterative"]
        .into_iter()
        .filter(|r| args.routing.is_empty() || args.routing.iter().any(|a| a == r))
        .collect();
    let pids: Vec<u32> = nodes.iter().map(Node::pid).collect();
    let series = rt.block_on(run_series(args, &routings, &addrs, &pids, &wl, &say))?;
    drop(rt);
    for n in &mut nodes {
        n.stop();
    }
    drop(nodes);

    let run = Run {
        fs,
        load: (load_before, machine::loadavg().unwrap_or_default()),
        addrs,
        node: match &args.mw_kv {
            Some(p) => format!("{} serve", p.display()),
            None => "mw-bench serve kv-ring (mw_kv::cli::run)".into(),
        },
        fsync: args.fsync.clone(),
        keys: args.keys,
        conns: args.conns,
        tasks: args.tasks,
        context: args.context,
        preload: preload_took,
        targets: stopped_targets(&routings, &series),
        series,
    };
    if args.json {
        print_json(&run);
    } else {
        print_table(&run);
    }
    Ok(())
}

/// Starts the [`NODES`] ring members in `dir` (N=3 W=2 R=2, plus `--node-arg`s), the
/// first with `--ring` and the others joining it.
fn start_ring(args: &KvRingArgs, dir: &Path, say: &impl Fn(String)) -> Result<Vec<Node>, Error> {
    let quorum: Vec<String> = ["--n", "3", "--w", "2", "--r", "2"]
        .iter()
        .map(|s| s.to_string())
        .chain(args.node_arg.iter().cloned())
        .collect();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..NODES {
        let mut ring = match nodes.first() {
            None => vec!["--ring".to_string()],
            Some(seed) => vec!["--join".to_string(), seed.addr.clone()],
        };
        ring.extend(quorum.iter().cloned());
        let data = dir.join(format!("node{i}"));
        nodes.push(Node::spawn(
            args.mw_kv.as_deref(),
            &data,
            &args.fsync,
            &ring,
        )?);
        say(format!(
            "  node {i}: {} (pid {})",
            nodes[i].addr,
            nodes[i].pid()
        ));
    }
    Ok(nodes)
}

/// `args.conns` connections to `addr` per routing.
async fn connect_clients(
    routings: &[&'static str],
    conns: usize,
    addr: &str,
) -> Result<HashMap<&'static str, Vec<Client>>, Error> {
    let mut clients: HashMap<&'static str, Vec<Client>> = HashMap::new();
    for &r in routings {
        let mut v = Vec::new();
        for _ in 0..conns {
            v.push(match r {
                "recursive" => {
                    Client::Recursive(RingKvClient::new(mw::rpc::Channel::connect(addr).await?))
                }
                _ => Client::Iterative(RingClient::connect(addr).await?),
            });
        }
        clients.insert(r, v);
    }
    Ok(clients)
}

/// Measures every routing healthy, then every routing with node [`VICTIM`] stopped for
/// the window (waiting for the ring to recover after each of those).
async fn run_series(
    args: &KvRingArgs,
    routings: &[&'static str],
    addrs: &[String],
    pids: &[u32],
    wl: &Arc<Workload>,
    say: &impl Fn(String),
) -> Result<Vec<Series>, Error> {
    let seconds = if args.quick { 1.0 } else { args.seconds };
    let warmup = Duration::from_secs_f64(if args.quick { 0.3 } else { 1.0 });
    let clients = connect_clients(routings, args.conns, &addrs[0]).await?;
    let mut series = Vec::new();
    for stopped in [false, true] {
        for &r in routings {
            say(format!(
                "  {r}, {}: {} x {} in flight, {seconds} s",
                if stopped {
                    format!("node {VICTIM} SIGSTOPped for the window")
                } else {
                    "healthy".into()
                },
                args.conns,
                args.tasks
            ));
            let mut s = measure(
                r,
                &clients[r],
                args.tasks,
                wl,
                args.context,
                warmup,
                seconds,
                pids,
                stopped.then_some(pids[VICTIM]),
            )
            .await?;
            if stopped {
                // The next series starts from a healthy ring.
                s.recovered_in = Some(converge(addrs, Duration::from_secs(60)).await?);
            }
            series.push(s);
        }
    }
    Ok(series)
}

/// Per routing: the target that p99.9 with a replica stopped stays within
/// [`TARGET_STOPPED`] times the healthy p99.9, with both figures.
fn stopped_targets(
    routings: &[&'static str],
    series: &[Series],
) -> Vec<(String, Target, f64, f64)> {
    let mut targets = Vec::new();
    for &r in routings {
        let find = |stopped: bool| {
            series
                .iter()
                .find(|s| s.routing == r && s.stopped == stopped)
                .map(|s| s.summary("all").p999_us)
        };
        if let (Some(h), Some(s)) = (find(false), find(true)) {
            targets.push((
                r.to_string(),
                Target::at_most(
                    format!("{r}: p99.9 with 1 replica stopped <= {TARGET_STOPPED}x healthy"),
                    stats::ratio(s, h),
                    TARGET_STOPPED,
                ),
                h,
                s,
            ));
        }
    }
    targets
}

const OPS: [&str; 3] = ["all", "read", "update"];

fn print_json(run: &Run) {
    for s in &run.series {
        for op in OPS {
            let ratios = run
                .series
                .iter()
                .find(|h| h.routing == s.routing && !h.stopped)
                .filter(|_| s.stopped)
                .map(|h| {
                    vec![(
                        "p999_vs_healthy".to_string(),
                        stats::ratio(s.summary(op).p999_us, h.summary(op).p999_us),
                    )]
                })
                .unwrap_or_default();
            let row = Row {
                series: s.routing.into(),
                workload: format!("{} {op}", if s.stopped { "1-stopped" } else { "healthy" }),
                summary: s.summary(op),
                ratios,
                targets: if op == "all" && s.stopped {
                    run.targets
                        .iter()
                        .filter(|t| t.0 == s.routing)
                        .map(|t| t.1.clone())
                        .collect()
                } else {
                    vec![]
                },
                others_cpu_percent: s.others_cpu_percent,
            };
            let mut v = row.to_json();
            let st = &s.stats;
            match op {
                "read" => {
                    let (p50, p999) = s.quorum("read");
                    v["quorum_wait_p50_us"] = json!(round2(p50));
                    v["quorum_wait_p999_us"] = json!(round2(p999));
                    v["errors"] = json!(st.read_errors);
                    v["siblings_per_read"] = json!(st.siblings.to_vec());
                    v["siblings_mean"] = json!(round2(st.mean_siblings()));
                    v["siblings_max"] = json!(st.max_siblings);
                    v["multi_value_reads"] = json!(st.multi_value);
                }
                "update" => {
                    let (p50, p999) = s.quorum("update");
                    v["quorum_wait_p50_us"] = json!(round2(p50));
                    v["quorum_wait_p999_us"] = json!(round2(p999));
                    v["errors"] = json!(st.update_errors);
                    v["refused_too_many_siblings"] = json!(st.refused);
                }
                _ => {
                    v["cpu_us_per_op"] = json!({
                        "node0": round2(s.cpu_us_per_op[0]),
                        "node1": round2(s.cpu_us_per_op[1]),
                        "node2": round2(s.cpu_us_per_op[2]),
                        "bench": round2(s.cpu_us_per_op[3]),
                    });
                    v["first_error"] = json!(st.first_error);
                    v["recovered_ms"] = json!(s.recovered_in.map(|d| d.as_millis() as u64));
                    let mib = |v: &[f64]| v.iter().map(|&m| round2(m)).collect::<Vec<_>>();
                    v["rss_mib_start"] = json!(mib(&s.rss_start));
                    v["rss_mib_end"] = json!(mib(&s.rss_end));
                }
            }
            println!("{v}");
        }
    }
    let t: Vec<Value> = run
        .targets
        .iter()
        .map(|(_, t, h, s)| {
            json!({"rule": t.rule, "value": round2(t.value), "pass": t.pass,
                   "healthy_p999_us": round2(*h), "stopped_p999_us": round2(*s)})
        })
        .collect();
    println!(
        "{}",
        json!({
            "series": "targets",
            "targets": t,
            "nodes": run.addrs,
            "node": run.node,
            "fsync": run.fsync,
            "keys": run.keys,
            "in_flight": run.conns * run.tasks,
            "context": format!("{:?}", run.context).to_lowercase(),
            "filesystem": run.fs,
            "load": [run.load.0, run.load.1],
        })
    );
}

/// The human-readable report: the setup, then one table per aspect, then the targets.
fn print_table(run: &Run) {
    print_setup(run);
    println!();
    print_latency_table(run);
    println!();
    print_sibling_table(run);
    println!();
    print_targets(run);
}

/// The ring, the machine's load and the workload.
fn print_setup(run: &Run) {
    println!(
        "ring: 3 nodes {} ({}), N=3 R=2 W=2, --fsync {} on {}; coordinator / seed node 0, stopped: node {VICTIM}",
        run.addrs.join(" "),
        run.node,
        run.fsync,
        run.fs
    );
    println!(
        "load average before {} / after {}; preload {} keys in {:.1} s",
        run.load.0,
        run.load.1,
        fmt_rate(run.keys as f64),
        run.preload.as_secs_f64()
    );
    println!(
        "YCSB-A: 50% reads (R=2) / 50% updates (W=2, context: {}), zipfian {ZIPF_THETA} (scrambled; hottest key {:.1}% of ops) over {} keys, {VALUE_SIZE} B values; {} conns x {} tasks = {} in flight",
        format!("{:?}", run.context).to_lowercase(),
        Zipfian::new(run.keys, ZIPF_THETA).p0() * 100.0,
        fmt_rate(run.keys as f64),
        run.conns,
        run.tasks,
        run.conns * run.tasks
    );
}

/// Per series and operation: throughput, latency, quorum wait, CPU per op.
fn print_latency_table(run: &Run) {
    println!(
        "{:<22} {:<7} {:>9} {:>9} {:>9} {:>9} {:>15} {:>21} {:>7}",
        "series",
        "op",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "quorum p50/99.9",
        "cpu µs/op n0/n1/n2/b",
        "others"
    );
    for s in &run.series {
        for op in OPS {
            let sum = s.summary(op);
            let quorum = if op == "all" {
                String::new()
            } else {
                let (a, b) = s.quorum(op);
                format!("{}/{}", fmt_int(a), fmt_int(b))
            };
            let (cpu, others) = if op == "all" {
                (
                    s.cpu_us_per_op
                        .iter()
                        .map(|&c| fmt_int(c))
                        .collect::<Vec<_>>()
                        .join("/"),
                    s.others_cpu_percent
                        .map_or("-".into(), |p| format!("{p:.0}%")),
                )
            } else {
                (String::new(), String::new())
            };
            println!(
                "{:<22} {:<7} {:>9} {:>9} {:>9} {:>9} {:>15} {:>21} {:>7}",
                if op == "all" { s.name() } else { String::new() },
                op,
                fmt_rate(sum.ops_per_s),
                fmt_us(sum.p50_us),
                fmt_us(sum.p99_us),
                fmt_us(sum.p999_us),
                quorum,
                cpu,
                others
            );
        }
    }
    println!("quorum = µs from the fan-out to the R-th/W-th reply, at the coordinator (recursive) or the client (iterative); cpu = CPU per op of node 0/1/2 and the bench; others = CPU share of other processes");
}

/// Per series: siblings seen, refusals, errors, memory, recovery time.
fn print_sibling_table(run: &Run) {
    println!(
        "siblings seen per read (tombstones included), puts refused with TooManySiblings (limit 16), errors; resident MiB at the window's start -> end; time until every node saw the stopped node again"
    );
    println!(
        "{:<22} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9} {:>9}  {:<36} recovered",
        "series",
        "mean",
        "max",
        "=1 %",
        ">1 %",
        ">=4 %",
        "refused",
        "errors",
        "rss MiB n0 / n1 / n2 / bench"
    );
    for s in &run.series {
        let st = &s.stats;
        let n = st.siblings.iter().sum::<u64>().max(1) as f64;
        let pct = |c: u64| format!("{:.2}", c as f64 / n * 100.0);
        let ge4: u64 = st.siblings[4..].iter().sum();
        let gt1: u64 = st.siblings[2..].iter().sum();
        let rss = s
            .rss_start
            .iter()
            .zip(&s.rss_end)
            .map(|(a, b)| format!("{}->{}", fmt_int(*a), fmt_int(*b)))
            .collect::<Vec<_>>()
            .join(" / ");
        println!(
            "{:<22} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9} {:>9}  {:<36} {}",
            s.name(),
            format!("{:.3}", st.mean_siblings()),
            st.max_siblings,
            pct(st.siblings[1]),
            pct(gt1),
            pct(ge4),
            st.refused,
            st.read_errors + st.update_errors,
            rss,
            s.recovered_in
                .map_or(String::new(), |d| format!("{} ms", d.as_millis()))
        );
        if let Some(e) = &st.first_error {
            println!("  first error: {e}");
        }
    }
}

/// Each target with its verdict and the two figures it compares.
fn print_targets(run: &Run) {
    println!("targets (p99.9 of all operations, same run)");
    for (_, t, h, s) in &run.targets {
        println!(
            "  {}  {:<58} {}  ({} -> {} µs)",
            t.verdict(),
            t.rule,
            fmt_ratio(t.value),
            fmt_us(*h),
            fmt_us(*s)
        );
    }
}

fn fmt_int(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
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
    fn zipfian_matches_its_distribution() {
        let z = Zipfian::new(10_000, ZIPF_THETA);
        let mut rng = 42;
        let n = 200_000;
        let mut counts = vec![0u64; 10_000];
        for _ in 0..n {
            let r = z.rank(uniform(&mut rng));
            assert!(r < 10_000);
            counts[r as usize] += 1;
        }
        // Rank 0 with probability 1/zeta(n); rank 1 with 2^-theta of that.
        let p0 = counts[0] as f64 / n as f64;
        assert!((p0 - z.p0()).abs() < 0.01, "{p0} vs {}", z.p0());
        let p1 = counts[1] as f64 / n as f64;
        let want = z.p0() * 0.5f64.powf(ZIPF_THETA);
        assert!((p1 - want).abs() < 0.01, "{p1} vs {want}");
        // Heavy tail: the top 1% of ranks take about half the operations.
        let top: u64 = counts[..100].iter().sum();
        let share = top as f64 / n as f64;
        assert!((0.4..0.65).contains(&share), "{share}");
    }

    #[test]
    fn scrambled_keys_stay_in_range() {
        let wl = Workload::new(1000);
        let mut rng = 7;
        for _ in 0..10_000 {
            assert!(wl.pick(&mut rng) < 1000);
        }
        assert_eq!(wl.value().len(), VALUE_SIZE);
        assert_eq!(&wl.keys[42][..], b"user0000000042");
    }
}
