//! Measures mw-kv's storage engines on the node's write path: durable puts from many
//! concurrent clients, which the single writer groups into one commit (and one fsync)
//! per batch.
//!
//! ```text
//! cargo run --release -p mw-kv --features fjall --example engines -- [--secs 10]
//! ```
//!
//! For each engine, on a fresh directory under `--dir` (default: the temp dir): preload
//! `--keys` keys (100-byte values, with their watch events, so the event log is at its
//! retention and every later batch also compacts), open
//! `Kv::with_storage(engine, Config::default())` (fsync policy `always`), then for
//! `--secs` each: `--clients` tasks doing back-to-back `Durability::Sync` puts of
//! 100-byte values to random keys; the same with `Durability::Buffered`; random GETs.
//! Reported per phase: operations/s, latency p50/p99/p99.9, puts per commit (a wrapper
//! engine counts `Storage::commit` calls), bytes this process sent to the disk per put
//! (`write_bytes` of /proc/self/io: write amplification, background flushes and
//! compactions included) and CPU time per operation. First, the disk's fsync floor:
//! rewrite one 4 KiB block and `fdatasync`, p50/p99.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use mw_kv::storage::{Batch, Meta, Write};
use mw_kv::types::{Entry, Event, EventKind, Version, Versioned};
use mw_kv::{Config, Durability, Kv, MemoryStorage, PutOptions, RedbStorage, Result, Storage};

#[derive(Parser, Debug)]
#[command(about = "Measure mw-kv's storage engines on durable puts from concurrent clients")]
struct Args {
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Concurrent client tasks.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Keys preloaded and written at random.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value: usize,
    /// Engines, comma-separated: memory, redb, fjall (with the `fjall` feature).
    #[arg(long, value_delimiter = ',', default_values_t = default_engines())]
    engines: Vec<String>,
    /// Where the temporary data directories go (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Phases to run, comma-separated: put-sync, put-buffered, get.
    #[arg(long, value_delimiter = ',', default_values_t = ["put-sync".to_string(), "put-buffered".to_string(), "get".to_string()])]
    phases: Vec<String>,
}

fn default_engines() -> Vec<String> {
    let mut e = vec!["memory".to_string(), "redb".to_string()];
    if cfg!(feature = "fjall") {
        e.push("fjall".to_string());
    }
    e
}

fn open(engine: &str, dir: &Path) -> Result<Arc<dyn Storage>> {
    match engine {
        "memory" => Ok(Arc::new(MemoryStorage::new())),
        "redb" => Ok(Arc::new(RedbStorage::open(dir)?)),
        "fjall" => Ok(Arc::new(mw_kv::fjall_engine::FjallStorage::open(dir)?)),
        other => panic!("unknown engine {other:?} (memory, redb, or fjall with --features fjall)"),
    }
}

/// Counts the commits and the writes in them on the way to the real engine.
struct Counting {
    inner: Arc<dyn Storage>,
    commits: AtomicU64,
    synced_commits: AtomicU64,
    writes: AtomicU64,
}

impl Storage for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn blocking(&self) -> bool {
        self.inner.blocking()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        self.inner.get(key)
    }
    fn scan(&self, prefix: &[u8], start_after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        self.inner.scan(prefix, start_after, limit)
    }
    fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>> {
        self.inner.events(from, limit)
    }
    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Bytes>> {
        self.inner.expired(now_ms, limit)
    }
    fn meta(&self) -> Result<Meta> {
        self.inner.meta()
    }
    fn commit(&self, batch: &Batch, sync: bool) -> Result<()> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        if sync {
            self.synced_commits.fetch_add(1, Ordering::Relaxed);
        }
        self.writes
            .fetch_add(batch.writes.len() as u64, Ordering::Relaxed);
        self.inner.commit(batch, sync)
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

/// xorshift64*: a key chooser per task, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key{i:08}"))
}

/// Bytes this process caused to be sent to the storage layer (/proc/self/io).
fn disk_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| {
                    l.strip_prefix("write_bytes: ")
                        .map(|v| v.trim().parse().ok())
                })
                .flatten()
        })
        .unwrap_or(0)
}

/// User + system CPU time of this process.
fn cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) in parentheses.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux ABI this runs on.
    Duration::from_millis(ticks * 10)
}

/// Allocated bytes of every file under `dir` (sparse preallocations count as used).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

fn us(h: &Histogram<u64>, q: f64) -> String {
    let v = h.value_at_quantile(q);
    if v >= 10_000 {
        format!("{:.1}ms", v as f64 / 1000.0)
    } else {
        format!("{v}µs")
    }
}

/// The disk's floor for one durable commit: rewrite a 4 KiB block, `fdatasync`.
fn fsync_floor(dir: &Path) -> std::io::Result<Histogram<u64>> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-floor");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let block = vec![0xa5u8; 4096];
    f.write_all_at(&block, 0)?;
    f.sync_all()?;
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) && h.len() < 2000 {
        let t = Instant::now();
        f.write_all_at(&block, 0)?;
        f.sync_data()?;
        h.record(t.elapsed().as_micros() as u64).ok();
    }
    drop(f);
    std::fs::remove_file(path)?;
    Ok(h)
}

/// Writes `keys` keys with their events straight through the engine, as a node that
/// has been running would hold them.
fn preload(s: &dyn Storage, keys: u64, value: &Bytes) -> Result<()> {
    const STEP: u64 = 5000;
    let mut rev = s.meta()?.revision;
    let mut i = 0;
    while i < keys {
        let mut batch = Batch::default();
        for k in i..(i + STEP).min(keys) {
            rev += 1;
            let key = key(k);
            batch.writes.push(Write {
                key: key.clone(),
                old_expiry: None,
                new: Some(Versioned {
                    value: value.clone(),
                    version: Version(rev),
                    create_revision: rev,
                    changes: 1,
                    expires_at_ms: None,
                }),
            });
            batch.events.push(Event {
                revision: rev,
                kind: EventKind::Put,
                key,
                value: Some(value.clone()),
                version: Version(rev),
            });
        }
        batch.revision = rev;
        s.commit(&batch, false)?;
        i += STEP;
    }
    s.sync()
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Put(Durability),
    Get,
}

struct Outcome {
    ops: u64,
    hist: Histogram<u64>,
    elapsed: Duration,
}

async fn drive(kv: &Kv, args: &Args, phase: Phase, seed: u64) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let value = Bytes::from(vec![b'v'; args.value]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|t| {
            let kv = kv.clone();
            let value = value.clone();
            let keys = args.keys;
            tokio::spawn(async move {
                let mut rng = Rng(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let k = key(rng.next() % keys);
                    let t0 = Instant::now();
                    match phase {
                        Phase::Put(durability) => {
                            let opts = PutOptions {
                                durability,
                                ..PutOptions::default()
                            };
                            kv.put(k, value.clone(), opts).await.expect("put");
                        }
                        Phase::Get => {
                            kv.get(&k).await.expect("get");
                        }
                    }
                    h.record(t0.elapsed().as_micros() as u64).ok();
                    n += 1;
                }
                (n, h)
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut ops = 0;
    for t in tasks {
        let (n, h) = t.await.expect("client task");
        ops += n;
        hist.add(h).expect("merge histograms");
    }
    Outcome {
        ops,
        hist,
        elapsed: start.elapsed(),
    }
}

async fn run_engine(name: &str, args: &Args, base: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("mw-kv-engines-{name}-"))
        .tempdir_in(base)
        .expect("temp dir");
    let dir = tmp.path().join("data");
    let inner = open(name, &dir)?;
    let value = Bytes::from(vec![b'v'; args.value]);
    let t = Instant::now();
    preload(&*inner, args.keys, &value)?;
    let preload_time = t.elapsed();
    let counting = Arc::new(Counting {
        inner,
        commits: AtomicU64::new(0),
        synced_commits: AtomicU64::new(0),
        writes: AtomicU64::new(0),
    });
    let kv = Kv::with_storage(counting.clone(), Config::default())?;
    println!(
        "{name}: preloaded {} keys in {:.1}s; {} clients, {}-byte values, {} s per phase",
        args.keys,
        preload_time.as_secs_f64(),
        args.clients,
        args.value,
        args.secs
    );
    let phases = [
        ("put-sync", Phase::Put(Durability::Sync)),
        ("put-buffered", Phase::Put(Durability::Buffered)),
        ("get", Phase::Get),
    ];
    for (i, (label, phase)) in phases.into_iter().enumerate() {
        if !args.phases.iter().any(|p| p == label) {
            continue;
        }
        let commits0 = counting.commits.load(Ordering::Relaxed);
        let synced0 = counting.synced_commits.load(Ordering::Relaxed);
        let writes0 = counting.writes.load(Ordering::Relaxed);
        let (disk0, cpu0) = (disk_bytes(), cpu());
        let o = drive(&kv, args, phase, 0x5eed + i as u64).await;
        let (disk1, cpu1) = (disk_bytes(), cpu());
        let commits = counting.commits.load(Ordering::Relaxed) - commits0;
        let synced = counting.synced_commits.load(Ordering::Relaxed) - synced0;
        let writes = counting.writes.load(Ordering::Relaxed) - writes0;
        let rate = o.ops as f64 / o.elapsed.as_secs_f64();
        let mut line = format!(
            "  {name:<6} {label:<13} {rate:>9.0}/s  p50 {:>7}  p99 {:>7}  p99.9 {:>7}  cpu {:>5.1}µs/op",
            us(&o.hist, 0.5),
            us(&o.hist, 0.99),
            us(&o.hist, 0.999),
            (cpu1 - cpu0).as_secs_f64() * 1e6 / o.ops.max(1) as f64,
        );
        if phase != Phase::Get {
            line.push_str(&format!(
                "  {:>5.1} puts/commit  {:>5.0} commits/s ({:.0}% fsync)  disk {:>5.0} B/put",
                writes as f64 / commits.max(1) as f64,
                commits as f64 / o.elapsed.as_secs_f64(),
                synced as f64 * 100.0 / commits.max(1) as f64,
                (disk1 - disk0) as f64 / o.ops.max(1) as f64,
            ));
        }
        println!("{line}");
    }
    kv.close().await?;
    drop(kv);
    // Every handle is gone once the writer has stopped; the directory is closed.
    let usage = disk_usage(&dir);
    println!(
        "  {name:<6} store on disk after the run: {:.1} MiB",
        usage as f64 / (1 << 20) as f64
    );
    drop(counting);
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let floor = fsync_floor(&base).expect("fsync floor");
    println!(
        "disk under {}: 4 KiB rewrite + fdatasync p50 {} p99 {} ({} samples)",
        base.display(),
        us(&floor, 0.5),
        us(&floor, 0.99),
        floor.len()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for engine in &args.engines {
        rt.block_on(run_engine(engine, &args, &base))?;
    }
    Ok(())
}
