//! `mw-bench space`: the tuple space through a broker, out + in pairs per second.
//!
//! ```text
//! cargo run --release -p mw-bench -- space [--json] [--quick] [--seconds S] [--data DIR]
//! ```
//!
//! A broker child process (`mw-bench serve queue-broker`, which runs `mw::broker::open`
//! exactly as `mw broker` does, tuple space included) with fsync `always` and `never`, and
//! clients in this process over 127.0.0.1 using [`RemoteSpace`]. Every `in` is the real
//! exactly-once take: a `take` stream that holds the match, then a `confirm` that logs it.
//!
//! Series, each measured over one window of `--seconds` after a warm-up:
//!
//! 1. **pairs 1 × 1**: one client, one loop: `out(["pair", c, i])`, then
//!    `inp(["pair", c, int])` — the latency of a write plus a take, one after another.
//! 2. **pairs 1 × 16**: the same with 16 loops sharing one connection (group commit).
//! 3. **10 takers**: 10 taker connections blocked in `in(["job", int, int])` compete for
//!    the tuples 16 writer loops (on 2 connections) keep writing; latency is from the
//!    start of the `out` to the taker holding the tuple (clocks of one process). The
//!    writers keep at most 20 jobs untaken (they wait for the takers beyond that), so the
//!    figure is the hand-off under saturation, not the age of a growing backlog. Also
//!    reported: how evenly the takes spread (fewest and most per taker).
//!
//! A pair is one `out` and one `in`: at least two records and two fsyncs under
//! `always`, unless group commit shares them (records per fsync is read from the broker's
//! space counters). The CPU used by other processes during each window is reported.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mw_space::{pattern, tuple, RemoteSpace, SpaceStats, Type, Wait};
use serde_json::json;

use crate::child;
use crate::machine::{self, CpuSnapshot};
use crate::queue::{fs_type, BrokerChild};
use crate::report::Row;
use crate::stats::{fmt_rate, fmt_us, histogram, record, Summary};
use crate::Error;

const TAKERS: usize = 10;
const WRITER_CONNS: usize = 2;
const WRITER_LOOPS: usize = 16;
const PIPELINE: usize = 16;
/// Jobs written but not yet taken, at most: writers wait for takers beyond this, so the
/// latency is the hand-off's, not the age of a growing backlog.
const BACKLOG: usize = 2 * TAKERS;

/// Flags of `mw-bench space`.
#[derive(Debug, clap::Args)]
pub struct SpaceArgs {
    /// One JSON object per series instead of the table.
    #[arg(long)]
    json: bool,
    /// Short windows, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Measured window of each series, seconds (after a 1 s warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Data directory (a temporary directory is made inside it and removed afterwards).
    /// Default: the current directory, which must be on the disk being measured.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Fsync policies to measure (repeatable). Default: always, never.
    #[arg(long, value_parser = ["always", "never"])]
    fsync: Vec<String>,
}

/// One measured series.
struct Measured {
    fsync: String,
    workload: String,
    summary: Summary,
    per_fsync: f64,
    broker_cpu_us: f64,
    others: Option<f64>,
    spread: Option<(u64, u64)>,
}

/// Counters and latencies of one window, filled by the client tasks.
struct Window {
    recording: AtomicBool,
    stop: AtomicBool,
    done: AtomicU64,
}

impl Window {
    fn new() -> Arc<Window> {
        Arc::new(Window {
            recording: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            done: AtomicU64::new(0),
        })
    }
}

/// Runs the measured window around whatever the tasks do: warm-up, counters, CPU.
async fn measure(
    broker: &BrokerChild,
    control: &RemoteSpace,
    window: &Window,
    seconds: f64,
) -> Result<(u64, Duration, SpaceStats, SpaceStats, f64, Option<f64>), Error> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s0 = control.stats().await?;
    let cpu0 = CpuSnapshot::now();
    let b0 = broker.cpu_seconds();
    let d0 = window.done.load(Ordering::Relaxed);
    let t0 = Instant::now();
    window.recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    window.recording.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    let done = window.done.load(Ordering::Relaxed) - d0;
    let s1 = control.stats().await?;
    let cpu1 = CpuSnapshot::now();
    let b1 = broker.cpu_seconds();
    window.stop.store(true, Ordering::Relaxed);
    let broker_cpu = match (b0, b1) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let ncpu = machine::cpu_count().max(1) as f64;
    let others = match (cpu0, cpu1) {
        (Some(a), Some(b)) if broker_cpu.is_finite() => Some(
            (a.others_percent(&b) - broker_cpu / (elapsed.as_secs_f64() * ncpu) * 100.0).max(0.0),
        ),
        _ => None,
    };
    Ok((done, elapsed, s0, s1, broker_cpu, others))
}

fn per_fsync(s0: &SpaceStats, s1: &SpaceStats) -> f64 {
    match (&s0.log, &s1.log) {
        (Some(a), Some(b)) if b.fsyncs > a.fsyncs => {
            (b.written - a.written) as f64 / (b.fsyncs - a.fsyncs) as f64
        }
        _ => f64::NAN,
    }
}

/// `loops` out+in loops on one connection.
async fn pairs(
    broker: &BrokerChild,
    fsync: &str,
    loops: usize,
    seconds: f64,
) -> Result<Measured, Error> {
    let addr = broker.addr().to_string();
    let control = RemoteSpace::connect(&addr).await?;
    let space = RemoteSpace::connect(&addr).await?;
    let window = Window::new();
    let mut tasks = Vec::new();
    for c in 0..loops {
        let (space, window) = (space.clone(), window.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mine = pattern!("pair", c as i64, Type::Int);
            let mut i = 0i64;
            while !window.stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                space.out(tuple!("pair", c as i64, i)).await?;
                let got = space.inp(&mine).await?;
                if got.is_none() {
                    return Err::<Histogram<u64>, Error>("a written tuple was not there".into());
                }
                if window.recording.load(Ordering::Relaxed) {
                    record(&mut hist, start.elapsed());
                    window.done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            Ok(hist)
        }));
    }
    let (done, elapsed, s0, s1, broker_cpu, others) =
        measure(broker, &control, &window, seconds).await?;
    let mut hist = histogram();
    for t in tasks {
        hist.add(&t.await??).expect("same bounds");
    }
    Ok(Measured {
        fsync: fsync.to_string(),
        workload: format!("pairs 1 x {loops}"),
        summary: Summary::new(&hist, done, elapsed),
        per_fsync: per_fsync(&s0, &s1),
        broker_cpu_us: broker_cpu / done.max(1) as f64 * 1e6,
        others,
        spread: None,
    })
}

/// 16 writer loops feeding 10 competing takers.
async fn competing(broker: &BrokerChild, fsync: &str, seconds: f64) -> Result<Measured, Error> {
    let addr = broker.addr().to_string();
    let control = RemoteSpace::connect(&addr).await?;
    let window = Window::new();
    let base = Instant::now();
    let job = pattern!("job", Type::Int, Type::Int);
    let untaken = Arc::new(tokio::sync::Semaphore::new(BACKLOG));
    let mut takers = Vec::new();
    for _ in 0..TAKERS {
        let space = RemoteSpace::connect(&addr).await?;
        let (window, job, untaken) = (window.clone(), job.clone(), untaken.clone());
        takers.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut mine = 0u64;
            loop {
                let t = space.in_(&job, Wait::Forever).await?.ok_or("no job")?;
                let sent = t[2].as_int().unwrap_or(0);
                if sent < 0 {
                    return Ok::<_, Error>((hist, mine));
                }
                untaken.add_permits(1);
                if window.recording.load(Ordering::Relaxed) {
                    let now = base.elapsed().as_nanos() as i64;
                    record(&mut hist, Duration::from_nanos((now - sent).max(1) as u64));
                    window.done.fetch_add(1, Ordering::Relaxed);
                    mine += 1;
                }
            }
        }));
    }
    let mut writers = Vec::new();
    for w in 0..WRITER_CONNS {
        let space = RemoteSpace::connect(&addr).await?;
        for l in 0..WRITER_LOOPS / WRITER_CONNS {
            let (space, window, untaken) = (space.clone(), window.clone(), untaken.clone());
            let id = (w * WRITER_LOOPS + l) as i64;
            writers.push(tokio::spawn(async move {
                let mut i = 0i64;
                while !window.stop.load(Ordering::Relaxed) {
                    // Given back by the taker of this job.
                    untaken.acquire().await?.forget();
                    let sent = base.elapsed().as_nanos() as i64;
                    space
                        .out(tuple!("job", id * 1_000_000_000 + i, sent))
                        .await?;
                    i += 1;
                }
                Ok::<_, Error>(())
            }));
        }
    }
    let (done, elapsed, s0, s1, broker_cpu, others) =
        measure(broker, &control, &window, seconds).await?;
    for w in writers {
        w.await??;
    }
    // What the writers left is drained by the takers; then one stop per taker.
    for _ in 0..TAKERS {
        control.out(tuple!("job", -1, -1)).await?;
    }
    let mut hist = histogram();
    let (mut fewest, mut most) = (u64::MAX, 0);
    for t in takers {
        let (h, mine) = t.await??;
        hist.add(&h).expect("same bounds");
        fewest = fewest.min(mine);
        most = most.max(mine);
    }
    Ok(Measured {
        fsync: fsync.to_string(),
        workload: format!("{TAKERS} takers, {WRITER_LOOPS} writers"),
        summary: Summary::new(&hist, done, elapsed),
        per_fsync: per_fsync(&s0, &s1),
        broker_cpu_us: broker_cpu / done.max(1) as f64 * 1e6,
        others,
        spread: Some((fewest, most)),
    })
}

/// Runs every series.
///
/// # Errors
/// A broker child that does not start, a failed call.
pub fn run(args: &SpaceArgs) -> Result<(), Error> {
    let seconds = if args.quick { 1.0 } else { args.seconds };
    let policies = if args.fsync.is_empty() {
        vec!["always".to_string(), "never".to_string()]
    } else {
        args.fsync.clone()
    };
    let parent = match &args.data {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&parent)?;
    let rt = child::runtime()?;
    let mut results = Vec::new();
    for fsync in &policies {
        let tmp = tempfile::Builder::new()
            .prefix(".mw-bench-space-")
            .tempdir_in(&parent)?;
        if !args.json {
            eprintln!(
                "mw-bench space: fsync {fsync}, data dir {} ({}), load {}",
                tmp.path().display(),
                fs_type(tmp.path()),
                machine::loadavg().unwrap_or_default()
            );
        }
        let broker = BrokerChild::spawn(tmp.path(), fsync)?;
        let r = rt.block_on(async {
            let mut r = vec![pairs(&broker, fsync, 1, seconds).await?];
            r.push(pairs(&broker, fsync, PIPELINE, seconds).await?);
            r.push(competing(&broker, fsync, seconds).await?);
            Ok::<_, Error>(r)
        });
        broker.stop();
        results.extend(r?);
    }
    if args.json {
        for m in &results {
            let mut row = Row {
                series: format!("space-{}", m.fsync),
                workload: m.workload.clone(),
                summary: m.summary,
                ratios: Vec::new(),
                targets: Vec::new(),
                others_cpu_percent: m.others,
            }
            .to_json();
            row["records_per_fsync"] = json!(m.per_fsync);
            row["broker_cpu_us_per_pair"] = json!(m.broker_cpu_us);
            if let Some((lo, hi)) = m.spread {
                row["takes_per_taker"] = json!({"fewest": lo, "most": hi});
            }
            println!("{row}");
        }
        return Ok(());
    }
    println!(
        "{:<7} {:<22} {:>10} {:>9} {:>9} {:>10} {:>12} {:>9}",
        "fsync", "workload", "pairs/s", "p50 µs", "p99 µs", "rec/fsync", "broker µs/op", "others"
    );
    for m in &results {
        let per = if m.per_fsync.is_finite() {
            format!("{:.1}", m.per_fsync)
        } else {
            "-".into()
        };
        println!(
            "{:<7} {:<22} {:>10} {:>9} {:>9} {:>10} {:>12.1} {:>8}%",
            m.fsync,
            m.workload,
            fmt_rate(m.summary.ops_per_s),
            fmt_us(m.summary.p50_us),
            fmt_us(m.summary.p99_us),
            per,
            m.broker_cpu_us,
            m.others.map_or("-".into(), |o| format!("{o:.0}")),
        );
        if let Some((lo, hi)) = m.spread {
            println!(
                "{:<7} {:<22} takes per taker: fewest {lo}, most {hi}",
                "", ""
            );
        }
    }
    Ok(())
}
