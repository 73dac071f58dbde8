//! `mw-bench queue`: durable queues over TCP, judged against the disk's fsync floor.
//!
//! ```text
//! cargo run --release -p mw-bench -- queue [--json] [--quick] [--data DIR] [--backlog N]
//! ```
//!
//! One run measures, in order:
//!
//! 1. **The floor**: append 100 B (and 4 KiB) to a file in the data directory and
//!    `File::sync_data` (fdatasync) it, in a loop: p50/p99/p99.9 and syncs/s. The
//!    filesystem type of the data directory is printed; a tmpfs directory is flagged,
//!    since fsync there measures nothing.
//! 2. **Confirmed sends**: a broker child process (`mw-bench serve queue-broker`, which
//!    runs `mw::broker::open` exactly as `mw broker` does, with `--fsync always|never`)
//!    and, from this process over 127.0.0.1, producers of 100-byte messages with
//!    [`RemoteQueue::send`](mw_queue::remote::RemoteQueue::send) (returns once durable at the broker) and one consumer that
//!    acks every delivery. Producer shapes: 1 connection x 1 send in flight (the bare
//!    confirm latency), 8 x 1 (8 producers each awaiting every confirm: the p99 target is
//!    judged here), 1 x 64 and 8 x 64 (64 concurrent send loops per connection, as an
//!    application pipelining its sends would: the throughput and messages-per-fsync
//!    targets are judged on the most loaded shape). The consumer uses prefetch 2,048 and
//!    keeps up to 512 acks in flight. After a warm-up, one window of `--seconds` is
//!    measured: confirmed msgs/s, confirm latency (hdrhistogram), consumer acks/s, and
//!    the broker's [`LogStats`](mw_queue::LogStats) over the window, asked over the
//!    network like any `mw broker`'s ([`RemoteQueues::stats`]): **messages per fsync** =
//!    confirmed sends / fsyncs (records per fsync also counts the consumer's
//!    `DELIVER`/`SETTLE` records).
//! 3. **Memory while a backlog builds**: a fresh broker (fsync `always`) and no consumer;
//!    `--backlog` messages are sent with `send_batch` (batches of 500, 8 in flight over 2
//!    connections, to build the backlog quickly) while the child's `VmRSS` is sampled
//!    every `backlog / 50` messages. Printed: RSS at start, middle and end, and the slope
//!    in bytes per message (least squares over all samples, and over the second half).
//!
//! The default backlog is 10,000,000 messages (about 20 s here); `--quick` uses 100,000,
//! where the first 32 MiB of body cache still dominate the slope. Client and broker share the machine's 2 vCPUs, as
//! in the peers' reference figures; the CPU used by other processes during each window is reported.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use hdrhistogram::Histogram;
use mw_queue::remote::{BrokerStats, RemoteQueues};
use mw_queue::{ConsumerOptions, FsyncPolicy, Message};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::child::{self, READY_PREFIX};
use crate::machine::{self, CpuSnapshot};
use crate::report::{Row, Target};
use crate::stats::{self, fmt_rate, fmt_ratio, fmt_us, histogram, Summary};
use crate::Error;

/// Server targets of this benchmark (`mw-bench serve <target>`).
pub const SERVE_TARGETS: &[&str] = &["queue-broker"];

/// RabbitMQ 3.10 quorum queue, durable publish + confirm, 100 B, 1000 in flight: a published
/// reference figure, not measured here.
const RABBITMQ_QUORUM: f64 = 28_500.0;
/// redis 7.0 `appendfsync always`, 50 clients: a reference figure, not measured here.
const REDIS_ALWAYS: f64 = 69_000.0;
/// Target: confirmed msgs/s with group commit.
const TARGET_RATE: f64 = 100_000.0;
/// Target: messages per fsync under load.
const TARGET_PER_FSYNC: f64 = 64.0;
/// "Flat" RSS: over the second half of the backlog (after the bounded body cache has
/// filled), at most 1 byte per message (1 MB per million messages; a body is 100 B).
const TARGET_RSS_SLOPE: f64 = 1.0;
/// 4 KiB append + fdatasync p50 measured once on the project machine, used when the floor
/// is not measured in the run.
const ANCHOR_FSYNC_P50_US: f64 = 163.0;

const BODY: usize = 100;
const PREFETCH: u32 = 2_048;
const MAX_ACKS_IN_FLIGHT: usize = 512;
const BACKLOG_BATCH: usize = 500;
const BACKLOG_CONNS: usize = 2;
const BACKLOG_TASKS_PER_CONN: usize = 4;
const BACKLOG_SAMPLES: u64 = 50;

/// Flags of `mw-bench queue`.
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    /// One JSON object per series instead of the table.
    #[arg(long)]
    json: bool,
    /// Short windows and a small backlog, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Data directory (a temporary directory is made inside it and removed afterwards).
    /// Default: the current directory, which must be on the disk being measured.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Messages in the backlog of the memory series (10,000,000 takes about 20 s here).
    #[arg(long, default_value_t = 10_000_000)]
    backlog: u64,
    /// Measured window of each confirmed-send series, seconds (after a 1 s warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent send loops per producer connection in the pipelined series.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Producer shapes of the confirmed-send series, `CONNSxIN_FLIGHT` (repeatable).
    /// Default: 1x1, 1xWINDOW, 8xWINDOW.
    #[arg(long, value_parser = parse_shape)]
    shape: Vec<(usize, usize)>,
    /// Fsync policies of the confirmed-send series (repeatable). Default: always, never.
    #[arg(long, value_parser = ["always", "never"])]
    fsync: Vec<String>,
    /// Confirmed-send series without the consumer (isolates the send path; the
    /// workload is marked `nc`).
    #[arg(long)]
    no_consumer: bool,
    /// Also run every confirmed-send series over TLS (rustls, TLS 1.3, a P-256
    /// certificate made for the run) against a second broker child, and print each TLS
    /// series' ratios to the same series in plaintext.
    #[arg(long)]
    tls: bool,
    /// Run only these parts (floor, sends, backlog; repeatable). Default: all.
    #[arg(long, value_parser = ["floor", "sends", "backlog"])]
    only: Vec<String>,
}

impl QueueArgs {
    fn part(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == name)
    }
}

fn parse_shape(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?}: expected CONNSxIN_FLIGHT, e.g. 8x64"))?;
    let n = |v: &str| v.parse::<usize>().map_err(|e| format!("{s:?}: {e}"));
    Ok((n(a)?, n(b)?))
}

// ---------------------------------------------------------------------------------------
// The broker child
// ---------------------------------------------------------------------------------------

fn parse_fsync(s: &str) -> Result<FsyncPolicy, Error> {
    match s {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        other => Err(format!("--fsync {other:?}: expected always or never").into()),
    }
}

/// Set to `1` in a `serve queue-broker` child's environment: serve TLS.
const QUEUE_TLS_ENV: &str = "MW_BENCH_QUEUE_TLS";

/// Runs `mw::broker` on `data` with the given fsync policy until its stdin closes. Its
/// counters are read over the network (`stats` of the `mw.queue` service).
pub async fn serve(addr: &str, data: Option<PathBuf>, fsync: Option<String>) -> Result<(), Error> {
    let data = data.ok_or("serve queue-broker needs --data DIR")?;
    let mut config = mw::broker::BrokerConfig::new(data);
    config.queue.fsync = parse_fsync(fsync.as_deref().unwrap_or("always"))?;
    if std::env::var(QUEUE_TLS_ENV).is_ok_and(|v| v == "1") {
        let dir = PathBuf::from(std::env::var(crate::rpc::TLS_DIR_ENV)?);
        config.server.tls = Some(mw_core::tls::TlsServer::from_pem_files(
            &dir.join("server.pem"),
            &dir.join("server.key"),
            None,
        )?);
    }
    let broker = mw::broker::open(config).await?;
    let queues = broker.queues.clone();
    let router = broker.router.clone();
    let space = broker.space.clone();
    let running = broker.server.spawn(addr).await?;
    child::announce(running.local_addr());
    // Serve until stdin reaches EOF (the parent closed it or died).
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        let _ = tx.send(());
    });
    let _ = rx.await;
    running.shutdown().await;
    router.shutdown().await;
    space.close().await?;
    queues.close().await?;
    Ok(())
}

/// A `serve queue-broker` child: its address, pid, its stdin (closing it stops the
/// child) and a connection for reading its counters. Also used by `mw-bench space`,
/// whose tuple space this same broker hosts.
pub(crate) struct BrokerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    addr: String,
    control: Option<RemoteQueues>,
    /// Set when the child serves TLS (with the run's certificates).
    tls: Option<mw_core::tls::TlsClient>,
}

impl BrokerChild {
    pub(crate) fn spawn(data: &Path, fsync: &str) -> Result<BrokerChild, Error> {
        BrokerChild::spawn_with(data, fsync, false)
    }

    /// [`spawn`](Self::spawn), serving TLS with the run's certificates when `tls` (made
    /// by [`crate::rpc::make_certificates`] in the directory named by
    /// [`crate::rpc::TLS_DIR_ENV`]).
    pub(crate) fn spawn_with(data: &Path, fsync: &str, tls: bool) -> Result<BrokerChild, Error> {
        // /proc/self/exe still names this binary if a build in the shared target
        // directory replaced the file during the run (current_exe() would not).
        let proc_exe = Path::new("/proc/self/exe");
        let exe = if proc_exe.exists() {
            proc_exe.to_path_buf()
        } else {
            std::env::current_exe()?
        };
        let mut child = Command::new(exe)
            .args([
                "serve",
                "queue-broker",
                "--addr",
                "127.0.0.1:0",
                "--fsync",
                fsync,
            ])
            .arg("--data")
            .arg(data)
            .env(QUEUE_TLS_ENV, if tls { "1" } else { "" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout was piped"));
        let tls = if tls {
            let dir = PathBuf::from(std::env::var(crate::rpc::TLS_DIR_ENV)?);
            Some(mw_core::tls::TlsClient::new(
                Some(&dir.join("ca.pem")),
                None,
            )?)
        } else {
            None
        };
        let mut b = BrokerChild {
            child,
            stdin,
            stdout,
            addr: String::new(),
            control: None,
            tls,
        };
        let mut line = String::new();
        b.stdout.read_line(&mut line)?;
        match line.trim_end().strip_prefix(READY_PREFIX) {
            Some(addr) => b.addr = addr.to_string(),
            None => {
                return Err(format!("queue-broker printed {line:?} instead of its address").into())
            }
        }
        Ok(b)
    }

    /// How clients connect to the child: over TLS when it serves TLS.
    pub(crate) fn client_config(&self) -> mw_rpc::ClientConfig {
        mw_rpc::ClientConfig {
            tls: self.tls.clone(),
            ..mw_rpc::ClientConfig::default()
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address the broker listens on.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The child's counters, over its own control connection (made on first use).
    async fn stats(&mut self) -> Result<BrokerStats, Error> {
        if self.control.is_none() {
            self.control =
                Some(RemoteQueues::connect_with(&self.addr, self.client_config()).await?);
        }
        let control = self.control.as_ref().expect("connected above");
        Ok(control.stats().await?)
    }

    /// The child's resident set size in bytes.
    fn rss(&self) -> Option<u64> {
        proc_status_kb(self.pid(), "VmRSS:").map(|kb| kb * 1024)
    }

    /// User + system CPU time of the child so far, seconds.
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        proc_cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }

    /// Closes stdin (the child shuts down gracefully and syncs), waits up to 20 s, kills.
    pub(crate) fn stop(mut self) {
        self.stdin.take();
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

impl Drop for BrokerChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// User + system CPU seconds of the process whose `stat` file is `stat_path`.
pub(crate) fn proc_cpu_seconds(stat_path: &str) -> Option<f64> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() < 2 {
        return None;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((f[0] + f[1]) as f64 / hz)
}

// ---------------------------------------------------------------------------------------
// 1. The floor
// ---------------------------------------------------------------------------------------

/// The filesystem type of `path`, by `statfs` magic.
pub(crate) fn fs_type(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: `buf` is a plain C struct for statfs to fill; `c` is NUL-terminated.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return "unknown".into();
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    match buf.f_type as u64 {
        0xEF53 => "ext4".into(),
        0x0102_1994 => "tmpfs".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x6969 => "nfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x8584_58F6 => "ramfs".into(),
        0x6573_5546 => "fuse".into(),
        t => format!("0x{t:x}"),
    }
}

/// One fsync-floor measurement: `size`-byte appends, each followed by fdatasync.
#[derive(Debug, Clone)]
pub(crate) struct Floor {
    pub(crate) size: usize,
    pub(crate) summary: Summary,
}

/// Appends `size` bytes and fdatasyncs, in a loop for `seconds`.
pub(crate) fn measure_floor(dir: &Path, size: usize, seconds: f64) -> Result<Floor, Error> {
    let path = dir.join(format!("floor-{size}.dat"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let buf = vec![0xA5u8; size];
    // Warm-up: the first syncs include creating the file's extent.
    for _ in 0..20 {
        file.write_all(&buf)?;
        file.sync_data()?;
    }
    let mut hist = histogram();
    let mut n = 0u64;
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    while start.elapsed() < limit {
        let t = Instant::now();
        file.write_all(&buf)?;
        file.sync_data()?;
        stats::record(&mut hist, t.elapsed());
        n += 1;
    }
    let elapsed = start.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(Floor {
        size,
        summary: Summary::new(&hist, n, elapsed),
    })
}

// ---------------------------------------------------------------------------------------
// 2. Confirmed sends
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Series {
    fsync: &'static str,
    tls: bool,
    producers: usize,
    window: usize,
    with_consumer: bool,
    send: Summary,
    consumed_per_s: f64,
    msgs_per_fsync: f64,
    records_per_fsync: f64,
    fsyncs_per_s: f64,
    max_records_per_fsync: u64,
    broker_cpu_us_per_msg: f64,
    client_cpu_us_per_msg: f64,
    others_cpu_percent: Option<f64>,
}

impl Series {
    fn workload(&self) -> String {
        let nc = if self.with_consumer { "" } else { " nc" };
        let tls = if self.tls { " tls" } else { "" };
        format!("{}x{}{nc}{tls}", self.producers, self.window)
    }
}

struct Shared {
    confirmed: AtomicU64,
    consumed: AtomicU64,
    recording: std::sync::atomic::AtomicBool,
}

async fn run_series(
    broker: &mut BrokerChild,
    fsync: &'static str,
    producers: usize,
    window: usize,
    seconds: f64,
    with_consumer: bool,
) -> Result<Series, Error> {
    let queue = format!("bench.{fsync}.{producers}x{window}");
    let shared = Arc::new(Shared {
        confirmed: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        recording: false.into(),
    });
    let stop_producers = CancellationToken::new();
    let stop_consumer = CancellationToken::new();
    let consumer_task = if with_consumer {
        Some(spawn_consumer(broker, &queue, &shared, &stop_consumer).await?)
    } else {
        None
    };
    let tasks =
        spawn_producers(broker, &queue, producers, window, &shared, &stop_producers).await?;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let measured = Window::measure(broker, &shared, seconds).await?;

    stop_producers.cancel();
    let mut hist = histogram();
    for t in tasks {
        let h = t.await??;
        hist.add(&h).expect("histograms with the same bounds add");
    }
    stop_consumer.cancel();
    if let Some(t) = consumer_task {
        t.await??;
    }
    let w = &measured;
    let secs = w.elapsed.as_secs_f64();
    let (s0, s1) = &w.broker;
    let fsyncs = w.fsyncs();
    Ok(Series {
        fsync,
        tls: broker.tls.is_some(),
        producers,
        window,
        with_consumer,
        send: Summary::new(&hist, w.confirmed, w.elapsed),
        consumed_per_s: w.consumed as f64 / secs,
        msgs_per_fsync: stats::ratio(w.confirmed as f64, fsyncs as f64),
        records_per_fsync: stats::ratio(
            s1.log.synced_records.saturating_sub(s0.log.synced_records) as f64,
            fsyncs as f64,
        ),
        fsyncs_per_s: fsyncs as f64 / secs,
        max_records_per_fsync: s1.log.max_records_per_fsync,
        broker_cpu_us_per_msg: w.per_msg(w.broker_cpu),
        client_cpu_us_per_msg: w.per_msg(w.own_cpu),
        others_cpu_percent: w.others_cpu_percent(),
    })
}

/// The consumer: its own connection, acks kept in flight concurrently, counting into
/// `shared.consumed` until `stop`.
async fn spawn_consumer(
    broker: &BrokerChild,
    queue: &str,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<(), Error>>, Error> {
    let consumer_conn =
        RemoteQueues::connect_with(broker.addr.as_str(), broker.client_config()).await?;
    let mut consumer = consumer_conn
        .queue(queue)
        .consumer(ConsumerOptions {
            prefetch: PREFETCH,
            ..Default::default()
        })
        .await?;
    let shared = shared.clone();
    let stop = stop.clone();
    Ok(tokio::spawn(async move {
        let _conn = consumer_conn;
        let mut acks = FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(r) = acks.next(), if !acks.is_empty() => {
                    r?;
                    shared.consumed.fetch_add(1, Ordering::Relaxed);
                }
                d = consumer.recv(), if acks.len() < MAX_ACKS_IN_FLIGHT => {
                    acks.push(d?.ack());
                }
            }
        }
        Ok::<(), Error>(())
    }))
}

/// The producers: `producers` connections, `window` send loops each, counting into
/// `shared.confirmed` and recording send latency while `shared.recording`, until `stop`.
async fn spawn_producers(
    broker: &BrokerChild,
    queue: &str,
    producers: usize,
    window: usize,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<Result<Histogram<u64>, Error>>>, Error> {
    let body = Bytes::from(vec![0x5Au8; BODY]);
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let conn = RemoteQueues::connect_with(broker.addr.as_str(), broker.client_config()).await?;
        for _ in 0..window {
            let q = conn.queue(queue);
            let shared = shared.clone();
            let stop = stop.clone();
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let mut hist = histogram();
                while !stop.is_cancelled() {
                    let t = Instant::now();
                    q.send(Message::new(body.clone())).await?;
                    let d = t.elapsed();
                    shared.confirmed.fetch_add(1, Ordering::Relaxed);
                    if shared.recording.load(Ordering::Relaxed) {
                        stats::record(&mut hist, d);
                    }
                }
                Ok::<Histogram<u64>, Error>(hist)
            }));
        }
    }
    Ok(tasks)
}

/// What one measured window saw, from the readings at its two ends.
struct Window {
    elapsed: Duration,
    confirmed: u64,
    consumed: u64,
    broker: (BrokerStats, BrokerStats),
    machine: (Option<CpuSnapshot>, Option<CpuSnapshot>),
    broker_cpu: f64,
    own_cpu: f64,
}

impl Window {
    /// Records for `seconds`, reading the counters, the broker's stats and the CPU
    /// clocks at both ends.
    async fn measure(
        broker: &mut BrokerChild,
        shared: &Shared,
        seconds: f64,
    ) -> Result<Window, Error> {
        let s0 = broker.stats().await?;
        let cpu0 = CpuSnapshot::now();
        let bcpu0 = broker.cpu_seconds();
        let own0 = proc_cpu_seconds("/proc/self/stat");
        let c0 = shared.confirmed.load(Ordering::Relaxed);
        let k0 = shared.consumed.load(Ordering::Relaxed);
        let t0 = Instant::now();
        shared.recording.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        shared.recording.store(false, Ordering::Relaxed);
        let elapsed = t0.elapsed();
        let c1 = shared.confirmed.load(Ordering::Relaxed);
        let k1 = shared.consumed.load(Ordering::Relaxed);
        let s1 = broker.stats().await?;
        let cpu1 = CpuSnapshot::now();
        let bcpu1 = broker.cpu_seconds();
        let own1 = proc_cpu_seconds("/proc/self/stat");
        let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        Ok(Window {
            elapsed,
            confirmed: c1 - c0,
            consumed: k1 - k0,
            broker: (s0, s1),
            machine: (cpu0, cpu1),
            broker_cpu: diff(bcpu0, bcpu1),
            own_cpu: diff(own0, own1),
        })
    }

    /// The broker's fsyncs in the window.
    fn fsyncs(&self) -> u64 {
        let (s0, s1) = &self.broker;
        s1.log.fsyncs.saturating_sub(s0.log.fsyncs)
    }

    /// CPU seconds `cpu` as µs per confirmed message.
    fn per_msg(&self, cpu: f64) -> f64 {
        if self.confirmed > 0 {
            cpu / self.confirmed as f64 * 1e6
        } else {
            f64::NAN
        }
    }

    /// Other processes' share of the machine's CPU (%), the broker's taken back out.
    fn others_cpu_percent(&self) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        // CpuSnapshot counts the running child as "others": take its share back out.
        let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        match &self.machine {
            (Some(a), Some(b)) if self.broker_cpu.is_finite() => {
                Some((a.others_percent(b) - self.broker_cpu / (secs * ncpu) * 100.0).max(0.0))
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. Memory while a backlog builds
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Backlog {
    messages: u64,
    samples: Vec<(u64, u64)>,
    elapsed: Duration,
    slope: f64,
    slope_second_half: f64,
    end_stats: BrokerStats,
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(u64, u64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let mx = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let sxy: f64 = points
        .iter()
        .map(|p| (p.0 as f64 - mx) * (p.1 as f64 - my))
        .sum();
    let sxx: f64 = points.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
    stats::ratio(sxy, sxx)
}

async fn run_backlog(broker: &mut BrokerChild, total: u64, quiet: bool) -> Result<Backlog, Error> {
    let sent = Arc::new(AtomicU64::new(0));
    let tickets = Arc::new(AtomicU64::new(0));
    let batches = total.div_ceil(BACKLOG_BATCH as u64);
    let body = Bytes::from(vec![0x5Au8; BODY]);
    let mut samples = vec![(0, broker.rss().unwrap_or(0))];
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..BACKLOG_CONNS {
        let conn = RemoteQueues::connect_with(broker.addr.as_str(), broker.client_config()).await?;
        for _ in 0..BACKLOG_TASKS_PER_CONN {
            let q = conn.queue("bench.backlog");
            let (sent, tickets, body) = (sent.clone(), tickets.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = tickets.fetch_add(1, Ordering::Relaxed);
                    if i >= batches {
                        return Ok::<(), Error>(());
                    }
                    let n = (total - i * BACKLOG_BATCH as u64).min(BACKLOG_BATCH as u64);
                    let msgs = (0..n).map(|_| Message::new(body.clone())).collect();
                    for r in q.send_batch(msgs).await? {
                        r?;
                    }
                    sent.fetch_add(n, Ordering::Relaxed);
                }
            }));
        }
    }
    let step = (total / BACKLOG_SAMPLES).max(1);
    let mut next = step;
    loop {
        let done = tasks.iter().all(|t| t.is_finished());
        let s = sent.load(Ordering::Relaxed);
        if s >= next || (done && s > samples.last().map_or(0, |p| p.0)) {
            samples.push((s, broker.rss().unwrap_or(0)));
            if !quiet && samples.len() % 10 == 1 {
                eprintln!(
                    "    backlog {s} messages, broker RSS {:.1} MiB, {:.0} s",
                    mib(samples.last().map_or(0, |p| p.1)),
                    start.elapsed().as_secs_f64()
                );
            }
            next = (s / step + 1) * step;
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    for t in tasks {
        t.await??;
    }
    let end_stats = broker.stats().await?;
    let half = samples.len() / 2;
    Ok(Backlog {
        messages: sent.load(Ordering::Relaxed),
        slope: slope(&samples),
        slope_second_half: slope(&samples[half..]),
        samples,
        elapsed,
        end_stats,
    })
}

impl Backlog {
    /// The first, middle and last (messages, RSS bytes) samples.
    fn start_middle_end(&self) -> ((u64, u64), (u64, u64), (u64, u64)) {
        let at = |i: usize| self.samples.get(i).copied().unwrap_or((0, 0));
        (
            at(0),
            at(self.samples.len() / 2),
            at(self.samples.len().saturating_sub(1)),
        )
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------

/// Runs the whole benchmark and prints the table (or JSON lines).
pub fn run(args: &QueueArgs) -> Result<(), Error> {
    let seconds = if args.quick { 1.0 } else { args.seconds };
    let floor_seconds = if args.quick { 0.5 } else { 3.0 };
    let backlog = if args.quick {
        args.backlog.min(100_000)
    } else {
        args.backlog
    };
    let parent = match &args.data {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".mw-bench-queue-")
        .tempdir_in(&parent)?;
    let dir = tmp.path().to_path_buf();
    let fs = fs_type(&dir);
    let load_before = machine::loadavg().unwrap_or_default();
    say(
        args,
        format!(
            "mw-bench queue: data dir {} ({fs}), load {load_before}",
            dir.display()
        ),
    );
    if fs == "tmpfs" || fs == "ramfs" {
        eprintln!("WARNING: the data directory is on {fs}: fsync there does not reach a disk");
    }

    // 1. The floor.
    let floors = measure_floors(args, &dir, floor_seconds)?;
    // Without a measured floor, the reference 4 KiB p50.
    let floor_4k_p50 = floors
        .get(1)
        .map_or(ANCHOR_FSYNC_P50_US, |f| f.summary.p50_us);
    let latency_target_us = 2.0 * floor_4k_p50 + 1000.0;

    // 2. Confirmed sends; 3. memory while a backlog builds.
    let rt = child::runtime()?;
    let series = measure_sends(args, &rt, &dir, seconds)?;
    let bl = if args.part("backlog") {
        Some(measure_backlog(args, &rt, &dir, backlog)?)
    } else {
        None
    };
    drop(rt);
    let load_after = machine::loadavg().unwrap_or_default();

    let targets = targets(&series, bl.as_ref(), latency_target_us);
    let out = Output {
        fs: &fs,
        dir: &dir,
        floors: &floors,
        series: &series,
        backlog: bl.as_ref(),
        targets: &targets,
        latency_target_us,
        load: (&load_before, &load_after),
    };
    if args.json {
        out.print_json();
    } else {
        out.print_table();
    }
    Ok(())
}

/// A progress line on stderr, unless the output is JSON.
fn say(args: &QueueArgs, s: String) {
    if !args.json {
        eprintln!("{s}");
    }
}

/// Append + fdatasync in a loop, at the benchmark's body size and at 4 KiB.
fn measure_floors(args: &QueueArgs, dir: &Path, floor_seconds: f64) -> Result<Vec<Floor>, Error> {
    let mut floors = Vec::new();
    if args.part("floor") {
        for size in [BODY, 4096] {
            say(
                args,
                format!("  floor: {size} B append + fdatasync, {floor_seconds} s"),
            );
            floors.push(measure_floor(dir, size, floor_seconds)?);
        }
    }
    Ok(floors)
}

/// Confirmed sends to a broker child, for each fsync policy and shape asked for (and over
/// TLS too with `--tls`).
fn measure_sends(
    args: &QueueArgs,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    seconds: f64,
) -> Result<Vec<Series>, Error> {
    // Certificates for the TLS series, made before their brokers start (they read them).
    let _tls_dir = if args.tls && args.part("sends") {
        let dir = tempfile::tempdir()?;
        crate::rpc::make_certificates(dir.path())?;
        std::env::set_var(crate::rpc::TLS_DIR_ENV, dir.path());
        Some(dir)
    } else {
        None
    };
    let mut series = Vec::new();
    let shapes = if args.shape.is_empty() {
        vec![(1usize, 1usize), (8, 1), (1, args.window), (8, args.window)]
    } else {
        args.shape.clone()
    };
    let policies: Vec<&'static str> = if args.part("sends") {
        ["always", "never"]
            .into_iter()
            .filter(|p| args.fsync.is_empty() || args.fsync.iter().any(|f| f == p))
            .collect()
    } else {
        vec![]
    };
    for &fsync in &policies {
        for &(producers, window) in &shapes {
            if producers == 0 || window == 0 {
                return Err("--shape: connections and in-flight sends must be at least 1".into());
            }
        }
        for tls in [false, true] {
            if tls && !args.tls {
                continue;
            }
            let data = dir.join(format!("broker-{fsync}{}", if tls { "-tls" } else { "" }));
            let mut broker = BrokerChild::spawn_with(&data, fsync, tls)?;
            for &(producers, window) in &shapes {
                say(
                    args,
                    format!(
                        "  confirmed sends{}: fsync {fsync}, {producers} producer(s) x {window} in flight, {seconds} s",
                        if tls { " over TLS" } else { "" }
                    ),
                );
                let s = rt.block_on(run_series(
                    &mut broker,
                    fsync,
                    producers,
                    window,
                    seconds,
                    !args.no_consumer,
                ))?;
                series.push(s);
            }
            broker.stop();
            let _ = std::fs::remove_dir_all(&data);
        }
    }
    Ok(series)
}

/// The broker's memory while `backlog` messages pile up with no consumer.
fn measure_backlog(
    args: &QueueArgs,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    backlog: u64,
) -> Result<Backlog, Error> {
    say(
        args,
        format!("  backlog: {backlog} messages, no consumer, fsync always"),
    );
    let data = dir.join("broker-backlog");
    let mut broker = BrokerChild::spawn(&data, "always")?;
    let bl = rt.block_on(run_backlog(&mut broker, backlog, args.json))?;
    broker.stop();
    Ok(bl)
}

/// The targets, judged on the most loaded group-commit series.
fn targets(series: &[Series], bl: Option<&Backlog>, latency_target_us: f64) -> Vec<Target> {
    let mut targets = Vec::new();
    let loaded = series
        .iter()
        .filter(|s| s.fsync == "always" && !s.tls)
        .max_by_key(|s| s.producers * s.window);
    if let Some(loaded) = loaded {
        targets.push(Target::at_least(
            format!(
                "confirmed msgs/s >= 100,000 with group commit (always {})",
                loaded.workload()
            ),
            loaded.send.ops_per_s,
            TARGET_RATE,
        ));
        targets.push(Target::at_least(
            format!(
                "messages per fsync >= 64 under load (always {})",
                loaded.workload()
            ),
            loaded.msgs_per_fsync,
            TARGET_PER_FSYNC,
        ));
    }
    // Latency is judged where producers wait for their confirms (8 producers, one send
    // each in flight): with 512 sends outstanding, queueing alone (Little's law: 512 /
    // 100k/s = 5 ms) exceeds any per-message bound, whatever the middleware does.
    let waiting = series
        .iter()
        .filter(|s| s.fsync == "always" && s.window == 1 && !s.tls)
        .max_by_key(|s| s.producers);
    if let Some(w) = waiting {
        targets.push(Target::at_most(
            format!(
                "p99 confirm <= 2 x fsync p50 + 1 ms = {latency_target_us:.0} µs (always {}, producers awaiting each confirm)",
                w.workload()
            ),
            w.send.p99_us,
            latency_target_us,
        ));
    }
    if let Some(bl) = bl {
        targets.push(Target::at_most(
            format!(
                "broker RSS flat while the backlog builds (2nd-half slope <= {TARGET_RSS_SLOPE} B/msg)"
            ),
            bl.slope_second_half,
            TARGET_RSS_SLOPE,
        ));
    }
    targets
}

/// Everything one run measured, for printing.
struct Output<'a> {
    fs: &'a str,
    dir: &'a Path,
    floors: &'a [Floor],
    series: &'a [Series],
    backlog: Option<&'a Backlog>,
    targets: &'a [Target],
    latency_target_us: f64,
    load: (&'a str, &'a str),
}

fn series_ratios(s: &Series, latency_target_us: f64) -> Vec<(String, f64)> {
    vec![
        (
            "vs_rabbitmq_quorum".into(),
            stats::ratio(s.send.ops_per_s, RABBITMQ_QUORUM),
        ),
        (
            "vs_redis_always".into(),
            stats::ratio(s.send.ops_per_s, REDIS_ALWAYS),
        ),
        (
            "p99_vs_latency_target".into(),
            stats::ratio(s.send.p99_us, latency_target_us),
        ),
        (
            "msgs_per_fsync_vs_64".into(),
            stats::ratio(s.msgs_per_fsync, TARGET_PER_FSYNC),
        ),
    ]
}

/// A TLS series' throughput and latency as multiples of the same series in plaintext.
fn tls_ratios(tls: &Series, plain: &Series) -> Vec<(String, f64)> {
    vec![
        (
            "tls_vs_plaintext".into(),
            stats::ratio(tls.send.ops_per_s, plain.send.ops_per_s),
        ),
        (
            "tls_p50_vs_plaintext".into(),
            stats::ratio(tls.send.p50_us, plain.send.p50_us),
        ),
        (
            "tls_p99_vs_plaintext".into(),
            stats::ratio(tls.send.p99_us, plain.send.p99_us),
        ),
    ]
}

impl Output<'_> {
    /// The plaintext series measured like the TLS series `s` (`None` for a plaintext one).
    fn plaintext_of(&self, s: &Series) -> Option<&Series> {
        if !s.tls {
            return None;
        }
        self.series.iter().find(|p| {
            !p.tls
                && p.fsync == s.fsync
                && p.producers == s.producers
                && p.window == s.window
                && p.with_consumer == s.with_consumer
        })
    }

    fn print_json(&self) {
        for f in self.floors {
            let row = Row {
                series: "fsync-floor".into(),
                workload: format!("append {} B + fdatasync", f.size),
                summary: f.summary,
                ratios: vec![],
                targets: vec![],
                others_cpu_percent: None,
            };
            let mut v = row.to_json();
            v["filesystem"] = json!(self.fs);
            v["data_dir"] = json!(self.dir.display().to_string());
            println!("{v}");
        }
        for s in self.series {
            let row = Row {
                series: format!(
                    "mw-queue-{}-fsync-{}",
                    if s.tls { "tls" } else { "tcp" },
                    s.fsync
                ),
                workload: format!("{} 100B", s.workload()),
                summary: s.send,
                ratios: {
                    let mut r = series_ratios(s, self.latency_target_us);
                    if let Some(p) = self.plaintext_of(s) {
                        r.extend(tls_ratios(s, p));
                    }
                    r
                },
                targets: vec![],
                others_cpu_percent: s.others_cpu_percent,
            };
            let mut v = row.to_json();
            v["consumer_acks_per_s"] = json!(s.consumed_per_s.round());
            v["msgs_per_fsync"] = json!(round2(s.msgs_per_fsync));
            v["records_per_fsync"] = json!(round2(s.records_per_fsync));
            v["fsyncs_per_s"] = json!(s.fsyncs_per_s.round());
            v["max_records_per_fsync"] = json!(s.max_records_per_fsync);
            v["broker_cpu_us_per_msg"] = json!(round2(s.broker_cpu_us_per_msg));
            v["client_cpu_us_per_msg"] = json!(round2(s.client_cpu_us_per_msg));
            println!("{v}");
        }
        if let Some(bl) = self.backlog {
            let (s0, sm, se) = bl.start_middle_end();
            println!(
                "{}",
                json!({
                    "series": "broker-rss-backlog",
                    "workload": format!("{} x 100B, no consumer, fsync always", bl.messages),
                    "messages": bl.messages,
                    "seconds": round2(bl.elapsed.as_secs_f64()),
                    "rss_start_bytes": s0.1,
                    "rss_middle_bytes": sm.1,
                    "rss_end_bytes": se.1,
                    "slope_bytes_per_msg": round2(bl.slope),
                    "slope_second_half_bytes_per_msg": round2(bl.slope_second_half),
                    "index_bytes": bl.end_stats.memory.index_bytes,
                    "cache_bytes": bl.end_stats.memory.cache_bytes,
                    "samples": bl.samples,
                })
            );
        }
        let t: Vec<Value> = self
            .targets
            .iter()
            .map(|t| json!({"rule": t.rule, "value": round2(t.value), "pass": t.pass}))
            .collect();
        println!(
            "{}",
            json!({"series": "targets", "targets": t, "load": [self.load.0, self.load.1]})
        );
    }

    fn print_table(&self) {
        let fs = self.fs;
        println!(
            "data dir {} on {fs}{}; load average before {} / after {}",
            self.dir.display(),
            if fs == "tmpfs" || fs == "ramfs" {
                " (NOT A DISK: fsync figures are meaningless)"
            } else {
                ""
            },
            self.load.0,
            self.load.1
        );
        if !self.floors.is_empty() {
            println!();
            println!("1. fsync floor: append + File::sync_data (fdatasync), one thread");
            println!(
                "{:<10} {:>9} {:>9} {:>9} {:>10}",
                "append", "p50 µs", "p99 µs", "p99.9 µs", "syncs/s"
            );
            for f in self.floors {
                println!(
                    "{:<10} {:>9} {:>9} {:>9} {:>10}",
                    format!("{} B", f.size),
                    fmt_us(f.summary.p50_us),
                    fmt_us(f.summary.p99_us),
                    fmt_us(f.summary.p999_us),
                    fmt_rate(f.summary.ops_per_s)
                );
            }
            println!("(anchor: 4 KiB append + fdatasync p50 163 µs, ~5.8k syncs/s)");
            if let Some(f) = self.floors.get(1) {
                if f.summary.p50_us > 2.0 * ANCHOR_FSYNC_P50_US {
                    println!(
                        "WARNING: fsync p50 is {} the anchor: the disk is busy (other processes syncing?); re-run when it is quiet",
                        fmt_ratio(f.summary.p50_us / ANCHOR_FSYNC_P50_US)
                    );
                }
            }
        }
        if !self.series.is_empty() {
            self.print_series();
        }
        if let Some(bl) = self.backlog {
            println!();
            println!(
                "3. broker RSS while a backlog of {} x 100 B builds (no consumer, fsync always, send_batch {BACKLOG_BATCH} x {} in flight): {:.1} s, {} msgs/s",
                fmt_rate(bl.messages as f64),
                BACKLOG_CONNS * BACKLOG_TASKS_PER_CONN,
                bl.elapsed.as_secs_f64(),
                fmt_rate(bl.messages as f64 / bl.elapsed.as_secs_f64().max(1e-9))
            );
            let (s0, sm, se) = bl.start_middle_end();
            for (label, (m, rss)) in [("start", s0), ("middle", sm), ("end", se)] {
                println!(
                    "  {label:<7} {:>12} msgs  RSS {:>8.1} MiB",
                    fmt_rate(m as f64),
                    mib(rss)
                );
            }
            println!(
                "  slope {:.1} B/msg (least squares over {} samples), second half {:.1} B/msg; body is {BODY} B",
                bl.slope,
                bl.samples.len(),
                bl.slope_second_half
            );
            println!(
                "  broker's own estimate at the end: index {:.1} MiB ({:.1} B/msg), body cache {:.1} MiB (bounded by Config::body_cache_bytes, 32 MiB), {} messages",
                mib(bl.end_stats.memory.index_bytes),
                stats::ratio(bl.end_stats.memory.index_bytes as f64, bl.end_stats.memory.messages as f64),
                mib(bl.end_stats.memory.cache_bytes),
                fmt_rate(bl.end_stats.memory.messages as f64)
            );
        }
        println!();
        println!("targets");
        for t in self.targets {
            println!("  {}  {:<82} {}", t.verdict(), t.rule, fmt_opt(t.value));
        }
    }

    fn print_series(&self) {
        println!();
        println!("2. confirmed sends, 100 B, TCP to a broker child; 1 consumer acking (prefetch {PREFETCH}, {MAX_ACKS_IN_FLIGHT} acks in flight) unless marked nc");
        println!(
            "{:<7} {:<10} {:>11} {:>8} {:>8} {:>9} {:>11} {:>9} {:>9} {:>9} {:>14} {:>7}",
            "fsync",
            "prod",
            "confirmed/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "consumer/s",
            "msg/fsync",
            "rec/fsync",
            "fsyncs/s",
            "cpu µs/msg b+c",
            "others"
        );
        let never = |s: &Series, v: f64| {
            if s.fsync == "never" {
                "-".into()
            } else {
                fmt_opt(v)
            }
        };
        for s in self.series {
            println!(
                "{:<7} {:<10} {:>11} {:>8} {:>8} {:>9} {:>11} {:>9} {:>9} {:>9} {:>14} {:>7}",
                s.fsync,
                s.workload(),
                fmt_rate(s.send.ops_per_s),
                fmt_us(s.send.p50_us),
                fmt_us(s.send.p99_us),
                fmt_us(s.send.p999_us),
                fmt_rate(s.consumed_per_s),
                never(s, s.msgs_per_fsync),
                never(s, s.records_per_fsync),
                fmt_rate(s.fsyncs_per_s),
                format!(
                    "{}+{}",
                    fmt_opt(s.broker_cpu_us_per_msg),
                    fmt_opt(s.client_cpu_us_per_msg)
                ),
                s.others_cpu_percent
                    .map_or("-".into(), |p| format!("{p:.0}%"))
            );
        }
        println!("prod = producer connections x concurrent sends per connection; msg/fsync = confirmed sends / fsyncs; rec/fsync also counts DELIVER/SETTLE records;");
        println!("cpu = broker + bench-client CPU per confirmed message (both on the same 2 vCPUs); others = CPU share of other processes");
        println!();
        let floor = if self.floors.len() > 1 {
            "measured 4 KiB fsync p50"
        } else {
            "anchor 4 KiB fsync p50"
        };
        println!(
            "ratios (anchors: RabbitMQ quorum 28.5k, redis appendfsync always 69k msgs/s; latency target 2 x {floor} + 1 ms = {:.0} µs)",
            self.latency_target_us
        );
        println!(
            "{:<7} {:<10} {:>12} {:>12} {:>14} {:>14}",
            "fsync", "prod", "x RabbitMQ", "x redis", "p99 x target", "msg/fsync x 64"
        );
        for s in self.series {
            let r = series_ratios(s, self.latency_target_us);
            println!(
                "{:<7} {:<10} {:>12} {:>12} {:>14} {:>14}",
                s.fsync,
                s.workload(),
                fmt_ratio(r[0].1),
                fmt_ratio(r[1].1),
                fmt_ratio(r[2].1),
                if s.fsync == "never" {
                    "-".into()
                } else {
                    fmt_ratio(r[3].1)
                }
            );
        }
        let pairs: Vec<(&Series, &Series)> = self
            .series
            .iter()
            .filter_map(|s| self.plaintext_of(s).map(|p| (s, p)))
            .collect();
        if !pairs.is_empty() {
            println!();
            println!(
                "TLS (rustls, TLS 1.3) as multiples of the same series in plaintext, this run"
            );
            println!(
                "{:<7} {:<10} {:>12} {:>10} {:>10}",
                "fsync", "prod", "confirmed/s", "p50", "p99"
            );
            for (tls, plain) in pairs {
                let r = tls_ratios(tls, plain);
                println!(
                    "{:<7} {:<10} {:>12} {:>10} {:>10}",
                    tls.fsync,
                    tls.workload(),
                    fmt_ratio(r[0].1),
                    fmt_ratio(r[1].1),
                    fmt_ratio(r[2].1)
                );
            }
        }
    }
}

fn round2(v: f64) -> Option<f64> {
    v.is_finite().then(|| (v * 100.0).round() / 100.0)
}

fn fmt_opt(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        fmt_rate(v)
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(u64, u64)> = (0..10).map(|i| (i * 1000, 5_000 + i * 16_000)).collect();
        assert!((slope(&pts) - 16.0).abs() < 1e-9);
        assert!(slope(&pts[..1]).is_nan());
    }

    #[test]
    fn shapes() {
        assert_eq!(parse_shape("8x64").unwrap(), (8, 64));
        assert!(parse_shape("8").is_err());
        assert!(parse_shape("ax1").is_err());
    }

    #[test]
    fn fsync_policies() {
        assert_eq!(parse_fsync("always").unwrap(), FsyncPolicy::Always);
        assert_eq!(parse_fsync("never").unwrap(), FsyncPolicy::Never);
        assert!(parse_fsync("sometimes").is_err());
    }
}
