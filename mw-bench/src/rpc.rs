//! `mw-bench rpc`: mw RPC against the raw TCP floor and tarpc, each server in a child process.
//!
//! Three systems serve the same `inc(n) -> n + 1`:
//! - `raw`: a tokio TCP echo server speaking mw's frame layout (4-byte BE length of what
//!   follows, kind, flags, 8-byte BE id, body = postcard `u64`) with no RPC layer at all.
//!   This is the floor: nothing built on the same framing and runtime can be faster.
//! - `mw`: the service declared with `#[mw_rpc::service]`; the generated `IncrementServer` in an
//!   `mw_rpc::Server`, the generated `IncrementClient` (an `mw_rpc::Channel`) calling it.
//! - `tarpc`: tarpc 0.38, bincode over length-delimited TCP, `TCP_NODELAY`, large in-flight
//!   limits, one spawned task per request (as tarpc's own examples serve).
//!
//! Workloads: sequential round trips (latency), twice: `seq` as the scheduler places threads,
//! and `seq_1cpu` with the client and all servers pinned to one vCPU. On this VM an idle vCPU
//! halts and waking it costs tens of µs per hop, and which hops cross vCPUs depends on sticky
//! thread placement: unpinned, the raw floor flips between ~15 and ~55 µs from run to run,
//! while pinned every hop is a hand-off on one vCPU and the figures repeat within a few
//! percent.
//!
//! Then closed-loop throughput with 256 calls in flight on one connection and with 64 in
//! flight on each of 4 connections. The raw client pipelines instead of running tasks: a
//! writer keeps W requests in flight (batching writes) while a reader consumes replies. Under
//! load, latency is that of one call in [`LATENCY_SAMPLE`], from the call (raw: the write) to
//! its reply.
//!
//! All three servers start first and stay up (idle servers cost nothing). Each workload is
//! then measured in rounds that alternate between the systems, starting with a different
//! one each round, so that a change in background load (the machine is shared) hits all
//! three alike; a series' figures are over all its rounds.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::child::{self, ChildServer};
use crate::machine::{self, CpuSnapshot};
use crate::report::{self, Row, Target};
use crate::stats::{self, fmt_ratio, ratio, Summary, Tally};
use crate::Error;

/// Options of `mw-bench rpc`.
#[derive(Debug, Clone, clap::Args)]
pub struct RpcArgs {
    /// Print one JSON object per series per line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Sequential calls measured per system, split over the rounds (after a warm-up of a
    /// tenth as many, at most 2,000).
    #[arg(long, default_value_t = 20_000)]
    pub seq_calls: u64,
    /// Measured seconds per system and throughput workload, split over the rounds (each
    /// round warms up for a sixth of its length first, at most 0.5 s).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Rounds each throughput workload is split into, alternating between the systems.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Rounds the sequential calls are split into, alternating between the systems. Many
    /// short rounds, because on this VM round-trip latency shifts with where the scheduler
    /// places client and server threads.
    #[arg(long, default_value_t = 10)]
    pub seq_rounds: u32,
    /// Short run for smoke testing (2,000 sequential calls, 0.3 s per throughput workload).
    #[arg(long)]
    pub quick: bool,
    /// Only these systems (comma-separated: raw, mw, mw-tls, tarpc).
    #[arg(long, value_delimiter = ',', value_parser = ["raw", "mw", "mw-tls", "tarpc"])]
    pub systems: Vec<String>,
    /// Also measure mw over TLS (`mw-tls`: the same server and client with rustls, a
    /// P-256 certificate made for the run), with its ratio to plaintext mw.
    #[arg(long)]
    pub tls: bool,
    /// Only these workloads (comma-separated: seq, seq_1cpu, 1conn_x256, 4conn_x64).
    #[arg(long, value_delimiter = ',', value_parser = ["seq", "seq_1cpu", "1conn_x256", "4conn_x64"])]
    pub workloads: Vec<String>,
}

/// The servers `mw-bench serve` knows for this benchmark.
pub const SERVE_TARGETS: &[&str] = &["raw", "mw", "mw-tls", "tarpc"];

/// The directory holding the run's TLS certificate, key and CA (set by the parent for
/// the `mw-tls` server it spawns).
pub(crate) const TLS_DIR_ENV: &str = "MW_BENCH_TLS_DIR";

#[derive(Debug, Clone, Copy)]
struct Plan {
    rounds: u32,
    seq_rounds: u32,
    seq_warmup: u64,
    /// Sequential calls per round.
    seq_calls: u64,
    /// Warm-up of each throughput round.
    warmup: Duration,
    /// Measured length of each throughput round.
    measure: Duration,
}

impl Plan {
    fn new(args: &RpcArgs) -> Plan {
        let (seq_calls, seconds, rounds, seq_rounds) = if args.quick {
            (2_000, 0.3, 1, 2)
        } else {
            (
                args.seq_calls.max(1),
                args.seconds.max(0.05),
                args.rounds.max(1),
                args.seq_rounds.max(1),
            )
        };
        let per_round = seconds / rounds as f64;
        Plan {
            rounds,
            seq_rounds,
            seq_warmup: (seq_calls / 10).clamp(1, 2_000),
            seq_calls: seq_calls.div_ceil(seq_rounds as u64),
            warmup: Duration::from_secs_f64((per_round / 6.0).min(0.5)),
            measure: Duration::from_secs_f64(per_round),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Raw,
    Mw,
    MwTls,
    Tarpc,
}

impl System {
    const ALL: [System; 4] = [System::Raw, System::Mw, System::MwTls, System::Tarpc];

    fn name(self) -> &'static str {
        match self {
            System::Raw => "raw",
            System::Mw => "mw",
            System::MwTls => "mw-tls",
            System::Tarpc => "tarpc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Seq,
    /// Sequential with the client and every server pinned to one vCPU: each hop is a hand-off
    /// on that vCPU, never a wake-up of another (halted) one.
    SeqOneCpu,
    OneConn256,
    FourConn64,
}

impl Workload {
    const ALL: [Workload; 4] = [
        Workload::Seq,
        Workload::SeqOneCpu,
        Workload::OneConn256,
        Workload::FourConn64,
    ];

    fn is_seq(self) -> bool {
        matches!(self, Workload::Seq | Workload::SeqOneCpu)
    }

    fn key(self) -> &'static str {
        match self {
            Workload::Seq => "seq",
            Workload::SeqOneCpu => "seq_1cpu",
            Workload::OneConn256 => "1conn_x256",
            Workload::FourConn64 => "4conn_x64",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Workload::Seq => "seq round trip",
            Workload::SeqOneCpu => "seq, all on one vCPU",
            Workload::OneConn256 => "1 conn x 256 in flight",
            Workload::FourConn64 => "4 conns x 64 in flight",
        }
    }

    /// (connections, calls in flight per connection) for throughput workloads.
    fn shape(self) -> (usize, usize) {
        match self {
            Workload::Seq | Workload::SeqOneCpu => (1, 1),
            Workload::OneConn256 => (1, 256),
            Workload::FourConn64 => (4, 64),
        }
    }
}

type Results = Vec<(System, Workload, Tally)>;

fn tally(results: &mut Results, s: System, w: Workload) -> &mut Tally {
    let i = match results.iter().position(|(a, b, _)| *a == s && *b == w) {
        Some(i) => i,
        None => {
            results.push((s, w, Tally::default()));
            results.len() - 1
        }
    };
    &mut results[i].2
}

/// Runs the whole comparison and prints it.
pub fn run(args: &RpcArgs) -> Result<(), Error> {
    let plan = Plan::new(args);
    let pick = |names: &[String], name: &str| names.is_empty() || names.iter().any(|n| n == name);
    let systems: Vec<System> = System::ALL
        .into_iter()
        .filter(|s| pick(&args.systems, s.name()))
        .filter(|s| *s != System::MwTls || args.tls || !args.systems.is_empty())
        .collect();
    // Certificates for the run, made before the servers start (they read them).
    let _tls_dir = if systems.contains(&System::MwTls) {
        let dir = tempfile::tempdir()?;
        make_certificates(dir.path())?;
        std::env::set_var(TLS_DIR_ENV, dir.path());
        Some(dir)
    } else {
        None
    };
    let workloads: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| pick(&args.workloads, w.key()))
        .collect();
    let progress = |msg: String| {
        if !args.json {
            eprintln!("  {msg}");
        }
    };
    let rt = child::runtime()?;
    let cpu_before = CpuSnapshot::now();
    let mut servers = Vec::new();
    for &system in &systems {
        servers.push((system, ChildServer::spawn(system.name())?));
    }
    let mut results: Results = Vec::new();
    let bench = Bench {
        rt: &rt,
        plan,
        systems: &systems,
        servers: &servers,
        progress: &progress,
    };
    for &workload in &workloads {
        if workload.is_seq() {
            bench.sequential(workload, &mut results)?;
        } else {
            bench.throughput(workload, &mut results)?;
        }
    }
    drop(rt);
    for (_, mut server) in servers {
        server.stop()?;
    }
    let others = cpu_before
        .zip(CpuSnapshot::now())
        .map(|(a, b)| a.others_percent(&b));
    // Report in the canonical order whatever order the rounds ran in.
    let mut summaries = Vec::new();
    for s in System::ALL {
        for w in Workload::ALL {
            if let Some((_, _, t)) = results.iter().find(|(a, b, _)| *a == s && *b == w) {
                summaries.push((s, w, t.summary()));
            }
        }
    }
    let rows = rows(&summaries, others);
    if args.json {
        report::print_json(&rows);
    } else {
        print_text(&plan, others, &summaries, &rows);
    }
    Ok(())
}

/// The systems under test, their servers and the plan: what every round needs.
struct Bench<'a> {
    rt: &'a tokio::runtime::Runtime,
    plan: Plan,
    systems: &'a [System],
    servers: &'a [(System, ChildServer)],
    progress: &'a dyn Fn(String),
}

impl Bench<'_> {
    fn addr_of(&self, s: System) -> String {
        self.servers
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, c)| c.addr().to_string())
            .expect("server started")
    }

    /// Pins this process and every server to `cpus` (`None`: unpins).
    fn pin(&self, cpus: Option<&[usize]>) -> Result<(), Error> {
        machine::pin_process(0, cpus)?;
        for (_, server) in self.servers {
            machine::pin_process(server.pid().unwrap_or(0), cpus)?;
        }
        Ok(())
    }

    /// A sequential workload: one connection per system, warmed up once and kept across
    /// rounds; the systems take turns, starting one later each round.
    fn sequential(&self, workload: Workload, results: &mut Results) -> Result<(), Error> {
        let (rt, plan, systems) = (self.rt, self.plan, self.systems);
        let pinned = workload == Workload::SeqOneCpu;
        if pinned {
            self.pin(Some(&[machine::cpu_count() - 1]))?;
        }
        let mut conns = Vec::new();
        for &system in systems {
            (self.progress)(format!("{} {}: warm-up", system.name(), workload.label()));
            let c = rt.block_on(SeqConn::connect(system, &self.addr_of(system)))?;
            let (c, _) = rt.block_on(rt.spawn(seq_round(c, 0, plan.seq_warmup)))??;
            conns.push(Some(c));
        }
        for round in 0..plan.seq_rounds {
            for k in 0..systems.len() {
                let i = (k + round as usize) % systems.len();
                let system = systems[i];
                (self.progress)(format!(
                    "{} {}: round {}/{}",
                    system.name(),
                    workload.label(),
                    round + 1,
                    plan.seq_rounds
                ));
                let c = conns[i]
                    .take()
                    .expect("connection returned by the last round");
                let first = plan.seq_warmup + round as u64 * plan.seq_calls;
                let (c, t) = rt.block_on(rt.spawn(seq_round(c, first, plan.seq_calls)))??;
                conns[i] = Some(c);
                tally(results, system, workload).add(&t);
            }
        }
        drop(conns);
        if pinned {
            self.pin(None)?;
        }
        Ok(())
    }

    /// A throughput workload: fresh connections per round; the systems take turns,
    /// starting one later each round.
    fn throughput(&self, workload: Workload, results: &mut Results) -> Result<(), Error> {
        let (plan, systems) = (self.plan, self.systems);
        for round in 0..plan.rounds {
            for k in 0..systems.len() {
                let system = systems[(k + round as usize) % systems.len()];
                (self.progress)(format!(
                    "{} {}: round {}/{}",
                    system.name(),
                    workload.label(),
                    round + 1,
                    plan.rounds
                ));
                let t =
                    self.rt
                        .block_on(throughput(system, workload, &self.addr_of(system), plan))?;
                tally(results, system, workload).add(&t);
            }
        }
        Ok(())
    }
}

/// The human-readable report: the setup, how busy the machine was, the table, the ratios.
fn print_text(
    plan: &Plan,
    others: Option<f64>,
    summaries: &[(System, Workload, Summary)],
    rows: &[Row],
) {
    println!(
        "mw-bench rpc: inc(u64) over TCP 127.0.0.1; client and each server in separate processes \
         (tokio multi-thread, 2 workers each, TCP_NODELAY)"
    );
    println!(
        "sequential: {} calls per system after {} warm-up, in {} rounds; throughput: {:.1} s \
         measured per system and workload, in {} rounds (+{:.2} s warm-up each); systems alternate",
        plan.seq_calls * plan.seq_rounds as u64,
        plan.seq_warmup,
        plan.seq_rounds,
        plan.measure.as_secs_f64() * plan.rounds as f64,
        plan.rounds,
        plan.warmup.as_secs_f64(),
    );
    if let Some(p) = others {
        println!(
            "other processes used {p:.0}% of the machine's CPU during the run{}{}",
            machine::loadavg()
                .map(|l| format!(" (load average now {l})"))
                .unwrap_or_default(),
            if p > 5.0 {
                ": figures are disturbed, latency especially (busy vCPUs do not idle)"
            } else {
                ""
            }
        );
    }
    println!();
    report::print_table(rows);
    println!(
        "(throughput rows: latency of 1 call in {LATENCY_SAMPLE} measured under load, call to reply)"
    );
    print_ratios(summaries, rows);
}

/// One throughput round of `workload` against `system`, with fresh connections.
async fn throughput(
    system: System,
    workload: Workload,
    addr: &str,
    plan: Plan,
) -> Result<Tally, Error> {
    let (conns, window) = workload.shape();
    match system {
        System::Raw => raw_pipelined(addr, conns, window, plan).await,
        System::Mw | System::MwTls => {
            let mut clients = Vec::new();
            for _ in 0..conns {
                clients.push(MwCaller::connect(addr, system == System::MwTls).await?);
            }
            closed_loop(clients, window, plan).await
        }
        System::Tarpc => {
            let mut clients = Vec::new();
            for _ in 0..conns {
                clients.push(TarpcCaller::connect(addr).await?);
            }
            closed_loop(clients, window, plan).await
        }
    }
}

fn find(results: &[(System, Workload, Summary)], s: System, w: Workload) -> Option<Summary> {
    results
        .iter()
        .find(|(a, b, _)| *a == s && *b == w)
        .map(|(_, _, x)| *x)
}

const SEQ_P50_LIMIT: f64 = 1.2;
const TP_VS_TARPC_MIN: f64 = 2.0;
const TLS_VS_PLAIN_MIN: f64 = 0.7;

fn rows(results: &[(System, Workload, Summary)], others_cpu: Option<f64>) -> Vec<Row> {
    let mut rows = Vec::new();
    for &(system, workload, summary) in results {
        let mut ratios = Vec::new();
        let mut targets = Vec::new();
        let vs = |other: System, ratios: &mut Vec<(String, f64)>| {
            if let Some(o) = find(results, other, workload) {
                let n = other.name();
                if workload.is_seq() {
                    ratios.push((format!("p50_vs_{n}"), ratio(summary.p50_us, o.p50_us)));
                    ratios.push((format!("p99_vs_{n}"), ratio(summary.p99_us, o.p99_us)));
                    ratios.push((format!("p999_vs_{n}"), ratio(summary.p999_us, o.p999_us)));
                }
                ratios.push((format!("ops_vs_{n}"), ratio(summary.ops_per_s, o.ops_per_s)));
            }
        };
        if system != System::Raw {
            vs(System::Raw, &mut ratios);
        }
        if system == System::MwTls {
            vs(System::Mw, &mut ratios);
            if workload == Workload::OneConn256 {
                let v = ratios
                    .iter()
                    .find(|(n, _)| n == "ops_vs_mw")
                    .map_or(f64::NAN, |(_, v)| *v);
                targets.push(Target::at_least(
                    format!("1-conn 256-in-flight over TLS >= {TLS_VS_PLAIN_MIN}x plaintext mw"),
                    v,
                    TLS_VS_PLAIN_MIN,
                ));
            }
        }
        if system == System::Mw {
            vs(System::Tarpc, &mut ratios);
            let get = |k: &str| {
                ratios
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or(f64::NAN, |(_, v)| *v)
            };
            match workload {
                Workload::Seq => targets.push(Target::at_most(
                    format!("sequential p50 <= {SEQ_P50_LIMIT}x raw floor"),
                    get("p50_vs_raw"),
                    SEQ_P50_LIMIT,
                )),
                Workload::SeqOneCpu => targets.push(Target::at_most(
                    format!(
                        "sequential p50 <= {SEQ_P50_LIMIT}x raw floor, all on one vCPU (steadier)"
                    ),
                    get("p50_vs_raw"),
                    SEQ_P50_LIMIT,
                )),
                Workload::OneConn256 => targets.push(Target::at_least(
                    format!("1-conn 256-in-flight throughput >= {TP_VS_TARPC_MIN}x tarpc"),
                    get("ops_vs_tarpc"),
                    TP_VS_TARPC_MIN,
                )),
                Workload::FourConn64 => {}
            }
        }
        rows.push(Row {
            series: system.name().into(),
            workload: workload.key().into(),
            summary,
            ratios,
            targets,
            others_cpu_percent: others_cpu,
        });
    }
    rows
}

fn print_ratios(results: &[(System, Workload, Summary)], rows: &[Row]) {
    let get = |s, w| find(results, s, w);
    let r = |a: Option<f64>, b: Option<f64>| {
        fmt_ratio(ratio(a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN)))
    };
    println!();
    println!("ratios (same run):");
    for w in Workload::ALL {
        let (raw, mw, tarpc) = (
            get(System::Raw, w),
            get(System::Mw, w),
            get(System::Tarpc, w),
        );
        if raw.is_none() && mw.is_none() && tarpc.is_none() {
            continue;
        }
        let p50 = |s: Option<Summary>| s.map(|s| s.p50_us);
        let p99 = |s: Option<Summary>| s.map(|s| s.p99_us);
        let ops = |s: Option<Summary>| s.map(|s| s.ops_per_s);
        let tls = get(System::MwTls, w);
        if tls.is_some() {
            if w.is_seq() {
                println!(
                    "  {:<24} mw-tls p50 = {} mw, p99 = {} mw",
                    w.label(),
                    r(p50(tls), p50(mw)),
                    r(p99(tls), p99(mw)),
                );
            } else {
                println!(
                    "  {:<24} mw-tls = {} mw (throughput)",
                    w.label(),
                    r(ops(tls), ops(mw))
                );
            }
        }
        if w.is_seq() {
            println!(
                "  {:<24} mw p50 = {} raw, {} tarpc; mw p99 = {} raw, {} tarpc; tarpc p50 = {} raw",
                w.label(),
                r(p50(mw), p50(raw)),
                r(p50(mw), p50(tarpc)),
                r(p99(mw), p99(raw)),
                r(p99(mw), p99(tarpc)),
                r(p50(tarpc), p50(raw)),
            );
        } else {
            println!(
                "  {:<24} mw = {} raw, {} tarpc; tarpc = {} raw",
                w.label(),
                r(ops(mw), ops(raw)),
                r(ops(mw), ops(tarpc)),
                r(ops(tarpc), ops(raw)),
            );
        }
    }
    println!();
    println!("targets:");
    for t in rows.iter().flat_map(|r| r.targets.iter()) {
        println!(
            "  [{}] {} (measured {})",
            t.verdict(),
            t.rule,
            fmt_ratio(t.value)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Shared client drivers
// ---------------------------------------------------------------------------------------

/// One client handle able to call `inc`. Clones share the connection.
trait Caller: Clone + Send + Sync + 'static {
    fn call(&self, n: u64) -> impl Future<Output = Result<u64, Error>> + Send;
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Warm-up, then measuring, then stop: read by every client task.
#[derive(Debug)]
struct Phase(AtomicU8);

impl Phase {
    fn new() -> Phase {
        Phase(AtomicU8::new(WARMUP))
    }
    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self, p: u8) {
        self.0.store(p, Ordering::Relaxed)
    }
    /// Sleeps through the warm-up and the measured window; returns the window's real length.
    async fn drive(&self, plan: Plan) -> Duration {
        tokio::time::sleep(plan.warmup).await;
        self.set(MEASURE);
        let t = Instant::now();
        tokio::time::sleep(plan.measure).await;
        self.set(STOP);
        t.elapsed()
    }
}

/// A connection for sequential calls.
enum SeqConn {
    Raw(RawConn),
    Mw(MwCaller),
    Tarpc(TarpcCaller),
}

impl SeqConn {
    async fn connect(system: System, addr: &str) -> Result<SeqConn, Error> {
        Ok(match system {
            System::Raw => SeqConn::Raw(RawConn::connect(addr).await?),
            System::Mw => SeqConn::Mw(MwCaller::connect(addr, false).await?),
            System::MwTls => SeqConn::Mw(MwCaller::connect(addr, true).await?),
            System::Tarpc => SeqConn::Tarpc(TarpcCaller::connect(addr).await?),
        })
    }

    async fn call(&mut self, n: u64) -> Result<u64, Error> {
        match self {
            SeqConn::Raw(c) => c.call(n).await,
            SeqConn::Mw(c) => c.call(n).await,
            SeqConn::Tarpc(c) => c.call(n).await,
        }
    }
}

/// `calls` sequential calls, one at a time, with arguments `first..`: each round trip's
/// latency. Gives the connection back for the next round.
async fn seq_round(mut c: SeqConn, first: u64, calls: u64) -> Result<(SeqConn, Tally), Error> {
    let mut t = Tally::default();
    let start = Instant::now();
    for n in first..first + calls {
        let t0 = Instant::now();
        let r = c.call(n).await?;
        let d = t0.elapsed();
        if r != n + 1 {
            return Err(format!("inc({n}) returned {r}").into());
        }
        stats::record(&mut t.hist, d);
    }
    t.elapsed = start.elapsed();
    t.ops = calls;
    Ok((c, t))
}

/// `per_client` tasks per client, each calling in a loop: a closed loop with that many
/// calls in flight per connection. Counts calls started inside the measured window.
async fn closed_loop<C: Caller>(
    clients: Vec<C>,
    per_client: usize,
    plan: Plan,
) -> Result<Tally, Error> {
    let phase = Arc::new(Phase::new());
    let mut tasks = Vec::new();
    for c in clients {
        for t in 0..per_client {
            let c = c.clone();
            let phase = phase.clone();
            tasks.push(tokio::spawn(async move {
                let mut hist = stats::histogram();
                let mut count = 0u64;
                let mut n = (t as u64) << 32;
                loop {
                    let ph = phase.get();
                    if ph == STOP {
                        break;
                    }
                    // Time one call in LATENCY_SAMPLE: clock reads and histogram updates
                    // on every call would cost the client (the bottleneck) several percent.
                    let timed = ph == MEASURE && n.is_multiple_of(LATENCY_SAMPLE);
                    let t0 = timed.then(Instant::now);
                    let r = c.call(n).await?;
                    if r != n + 1 {
                        return Err::<_, Error>(format!("inc({n}) returned {r}").into());
                    }
                    if let Some(t0) = t0 {
                        stats::record(&mut hist, t0.elapsed());
                    }
                    if ph == MEASURE {
                        count += 1;
                    }
                    n += 1;
                }
                Ok((hist, count))
            }));
        }
    }
    let elapsed = phase.drive(plan).await;
    merge(futures::future::join_all(tasks).await, elapsed)
}

/// Under load, one call (or reply) in this many has its latency recorded.
const LATENCY_SAMPLE: u64 = 8;

/// What one client task measured: latencies (ns) and calls counted.
type TaskTally = (Histogram<u64>, u64);

fn merge(
    parts: Vec<Result<Result<TaskTally, Error>, tokio::task::JoinError>>,
    elapsed: Duration,
) -> Result<Tally, Error> {
    let mut t = Tally {
        elapsed,
        ..Tally::default()
    };
    for p in parts {
        let (h, c) = p??;
        t.hist
            .add(&h)
            .map_err(|e| format!("merging histograms: {e:?}"))?;
        t.ops += c;
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------
// Raw floor: mw's frame layout over plain tokio TCP
// ---------------------------------------------------------------------------------------

const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE: u8 = 2;
const LENGTH_LEN: usize = 4;
const HEADER_LEN: usize = 10;

/// Appends one frame whose body is postcard `n`.
fn put_frame(buf: &mut BytesMut, kind: u8, id: u64, n: u64) {
    let mut body = [0u8; 10];
    let body = postcard::to_slice(&n, &mut body).expect("a u64 fits in 10 bytes");
    buf.put_u32((HEADER_LEN + body.len()) as u32);
    buf.put_u8(kind);
    buf.put_u8(0);
    buf.put_u64(id);
    buf.put_slice(body);
}

/// Parses the frame at the start of `b`: (bytes used, kind, id, n), or `None` if incomplete.
fn parse_frame(b: &[u8]) -> io::Result<Option<(usize, u8, u64, u64)>> {
    if b.len() < LENGTH_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if !(HEADER_LEN..=1024).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad frame length {len}"),
        ));
    }
    if b.len() < LENGTH_LEN + len {
        return Ok(None);
    }
    let f = &b[LENGTH_LEN..LENGTH_LEN + len];
    let id = u64::from_be_bytes(f[2..10].try_into().expect("8 bytes"));
    let n: u64 = postcard::from_bytes(&f[HEADER_LEN..])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(Some((LENGTH_LEN + len, f[0], id, n)))
}

fn reserve_for_read(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
}

/// The raw server's connection: read what is there, answer every whole frame, write the
/// answers with one `write_all`.
async fn raw_serve_conn(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    loop {
        reserve_for_read(&mut rbuf);
        if s.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
        let mut pos = 0;
        while let Some((used, _kind, id, n)) = parse_frame(&rbuf[pos..])? {
            pos += used;
            put_frame(&mut wbuf, KIND_RESPONSE, id, n.wrapping_add(1));
        }
        rbuf.advance(pos);
        if !wbuf.is_empty() {
            s.write_all(&wbuf).await?;
            wbuf.clear();
        }
    }
}

async fn raw_connect(addr: &str) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A raw connection for ping-pong: write one request, read its reply.
struct RawConn {
    s: TcpStream,
    w: BytesMut,
    r: BytesMut,
}

impl RawConn {
    async fn connect(addr: &str) -> io::Result<RawConn> {
        Ok(RawConn {
            s: raw_connect(addr).await?,
            w: BytesMut::with_capacity(64),
            r: BytesMut::with_capacity(64 * 1024),
        })
    }

    async fn call(&mut self, n: u64) -> Result<u64, Error> {
        self.w.clear();
        put_frame(&mut self.w, KIND_REQUEST, n, n);
        self.s.write_all(&self.w).await?;
        loop {
            if let Some((used, _, id, reply)) = parse_frame(&self.r)? {
                self.r.advance(used);
                if id != n {
                    return Err(format!("raw reply for id {id} to request {n}").into());
                }
                return Ok(reply);
            }
            reserve_for_read(&mut self.r);
            if self.s.read_buf(&mut self.r).await? == 0 {
                return Err("raw server closed the connection".into());
            }
        }
    }
}

/// Raw pipelined throughput: per connection, a writer keeps `window` requests in flight
/// (writing every free slot in one batch) while a reader consumes replies. Each request's
/// id is its send time, so the reader gets per-request latency without shared state.
async fn raw_pipelined(
    addr: &str,
    conns: usize,
    window: usize,
    plan: Plan,
) -> Result<Tally, Error> {
    let phase = Arc::new(Phase::new());
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (mut rd, mut wr) = raw_connect(addr).await?.into_split();
        let slots = Arc::new(Semaphore::new(window));
        let writer = tokio::spawn({
            let (slots, phase) = (slots.clone(), phase.clone());
            async move {
                let mut buf = BytesMut::with_capacity(window * 32);
                let mut n = 0u64;
                loop {
                    let Ok(first) = slots.acquire().await else {
                        break;
                    };
                    first.forget();
                    let mut k = 1;
                    let more = slots.available_permits();
                    if more > 0 {
                        if let Ok(p) = slots.try_acquire_many(more as u32) {
                            p.forget();
                            k += more;
                        }
                    }
                    if phase.get() == STOP {
                        break;
                    }
                    let id = epoch.elapsed().as_nanos() as u64;
                    for _ in 0..k {
                        put_frame(&mut buf, KIND_REQUEST, id, n);
                        n += 1;
                    }
                    wr.write_all(&buf).await?;
                    buf.clear();
                }
                // The server answers what it has, then sees EOF and closes: the reader ends.
                wr.shutdown().await?;
                Ok::<_, io::Error>(())
            }
        });
        let phase = phase.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = stats::histogram();
            let mut count = 0u64;
            let mut r = BytesMut::with_capacity(256 * 1024);
            loop {
                reserve_for_read(&mut r);
                if rd.read_buf(&mut r).await? == 0 {
                    break;
                }
                let now = epoch.elapsed().as_nanos() as u64;
                let measuring = phase.get() == MEASURE;
                let mut pos = 0;
                let mut done = 0;
                while let Some((used, _, id, _)) = parse_frame(&r[pos..])? {
                    pos += used;
                    done += 1;
                    if measuring && (count + done as u64).is_multiple_of(LATENCY_SAMPLE) {
                        hist.saturating_record(now.saturating_sub(id).max(1));
                    }
                }
                r.advance(pos);
                if measuring {
                    count += done as u64;
                }
                slots.add_permits(done);
            }
            writer.await??;
            Ok::<_, Error>((hist, count))
        }));
    }
    let elapsed = phase.drive(plan).await;
    merge(futures::future::join_all(tasks).await, elapsed)
}

async fn serve_raw(addr: &str) -> Result<(), Error> {
    let listener = TcpListener::bind(addr).await?;
    child::announce(&listener.local_addr()?);
    loop {
        let (s, _) = listener.accept().await?;
        tokio::spawn(async move {
            // A client that hangs up mid-frame is normal at the end of a run.
            let _ = raw_serve_conn(s).await;
        });
    }
}

// ---------------------------------------------------------------------------------------
// mw
// ---------------------------------------------------------------------------------------

mod mw_inc {
    //! The `inc` service, declared with `#[service]` as an mw user would.

    #[mw_rpc::service(name = "inc", version = 1)]
    pub trait Increment {
        /// `n + 1`.
        async fn inc(&self, n: u64) -> u64;
    }

    pub struct Inc;

    impl Increment for Inc {
        async fn inc(&self, n: u64) -> u64 {
            n.wrapping_add(1)
        }
    }
}

#[derive(Clone)]
struct MwCaller(mw_inc::IncrementClient);

impl MwCaller {
    async fn connect(addr: &str, tls: bool) -> Result<MwCaller, Error> {
        let mut config = mw_rpc::ClientConfig::default();
        if tls {
            let dir = std::path::PathBuf::from(std::env::var(TLS_DIR_ENV)?);
            config.tls = Some(mw_core::tls::TlsClient::new(
                Some(&dir.join("ca.pem")),
                None,
            )?);
        }
        let channel = mw_rpc::Channel::connect_with(addr, config).await?;
        Ok(MwCaller(mw_inc::IncrementClient::new(channel)))
    }
}

/// A CA and a server certificate for `127.0.0.1`, written to `dir` (`ca.pem`,
/// `server.pem`, `server.key`).
pub(crate) fn make_certificates(dir: &std::path::Path) -> Result<(), Error> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let cert =
        CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &ca, &ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(())
}

impl Caller for MwCaller {
    async fn call(&self, n: u64) -> Result<u64, Error> {
        Ok(self.0.inc(n).await?)
    }
}

async fn serve_mw(addr: &str, tls: bool) -> Result<(), Error> {
    let mut config = mw_rpc::ServerConfig::default();
    if tls {
        let dir = std::path::PathBuf::from(std::env::var(TLS_DIR_ENV)?);
        config.tls = Some(mw_core::tls::TlsServer::from_pem_files(
            &dir.join("server.pem"),
            &dir.join("server.key"),
            None,
        )?);
    }
    let server = mw_rpc::Server::builder()
        .add(mw_inc::IncrementServer::new(mw_inc::Inc))
        .config(config)
        .build()
        .spawn(addr)
        .await?;
    child::announce(server.local_addr());
    std::future::pending::<()>().await;
    server.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// tarpc
// ---------------------------------------------------------------------------------------

mod tarpc_inc {
    #[tarpc::service]
    pub trait IncRpc {
        async fn inc(n: u64) -> u64;
    }

    #[derive(Clone)]
    pub struct Inc;

    impl IncRpc for Inc {
        async fn inc(self, _: tarpc::context::Context, n: u64) -> u64 {
            n.wrapping_add(1)
        }
    }
}

use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};

#[derive(Clone)]
struct TarpcCaller(tarpc_inc::IncRpcClient);

impl TarpcCaller {
    async fn connect(addr: &str) -> Result<TarpcCaller, Error> {
        let s = raw_connect(addr).await?;
        let transport = tarpc::serde_transport::new(
            Framed::new(s, LengthDelimitedCodec::new()),
            Bincode::default(),
        );
        let mut config = tarpc::client::Config::default();
        config.max_in_flight_requests = 1 << 20;
        config.pending_request_buffer = 1024;
        Ok(TarpcCaller(
            tarpc_inc::IncRpcClient::new(config, transport).spawn(),
        ))
    }
}

impl Caller for TarpcCaller {
    async fn call(&self, n: u64) -> Result<u64, Error> {
        Ok(self.0.inc(tarpc::context::current(), n).await?)
    }
}

async fn serve_tarpc(addr: &str) -> Result<(), Error> {
    use tarpc::server::Channel as _;
    use tarpc_inc::IncRpc as _;
    let listener = TcpListener::bind(addr).await?;
    child::announce(&listener.local_addr()?);
    loop {
        let (s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let transport = tarpc::serde_transport::new(
            Framed::new(s, LengthDelimitedCodec::new()),
            Bincode::default(),
        );
        let config = tarpc::server::Config {
            pending_response_buffer: 4096,
        };
        let channel = tarpc::server::BaseChannel::new(config, transport);
        // One spawned task per request, as tarpc's own examples serve.
        tokio::spawn(
            channel
                .execute(tarpc_inc::Inc.serve())
                .for_each(|call| async move {
                    tokio::spawn(call);
                }),
        );
    }
}

/// Runs the server `target` (one of [`SERVE_TARGETS`]) on `addr` until killed.
pub async fn serve(target: &str, addr: &str) -> Result<(), Error> {
    match target {
        "raw" => serve_raw(addr).await,
        "mw" => serve_mw(addr, false).await,
        "mw-tls" => serve_mw(addr, true).await,
        "tarpc" => serve_tarpc(addr).await,
        other => Err(format!("unknown rpc server {other:?}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frames_match_mw_layout() {
        let mut b = BytesMut::new();
        put_frame(&mut b, KIND_REQUEST, 7, 300);
        // postcard varint 300 = ac 02; length = 10 header bytes + 2.
        assert_eq!(
            &b[..],
            &[0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0xac, 0x02]
        );
        assert_eq!(parse_frame(&b).unwrap(), Some((16, KIND_REQUEST, 7, 300)));
        assert_eq!(parse_frame(&b[..15]).unwrap(), None);
        // The same bytes mw-core's codec produces for that frame.
        let mut m = BytesMut::new();
        mw_core::frame::encode_with(&mut m, mw_core::FrameKind::Request, 0, 7, 1 << 20, |x| {
            x.put_slice(&postcard::to_allocvec(&300u64).unwrap());
            Ok::<_, mw_core::FrameError>(())
        })
        .unwrap();
        assert_eq!(b, m);
    }
}
