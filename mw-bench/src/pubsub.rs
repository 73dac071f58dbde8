//! `mw-bench pubsub`: fan-out throughput and publish-to-delivery latency of the event bus.
//!
//! ```text
//! cargo run --release -p mw-bench -- pubsub [--json] [--quick]
//! ```
//!
//! One publisher sends to 1, 10 and 100 subscribers, with 16- and 256-byte payloads:
//!
//! - **tcp**: the broker (`mw.pubsub` on a plain [`Bus`]) runs in a child process; the publisher
//!   and every subscriber are separate [`RemoteBus`] connections over 127.0.0.1 from this
//!   process (so the figure includes client CPU on the same 2 cores, as the peers' reference figures do).
//! - **embedded**: the same workload on an in-process [`Bus`], subscribers as tasks.
//! - **redis**, **nats** (1->1 only): the same workload against a local `redis-server` /
//!   `nats-server` child, when the program is on PATH (see [`crate::peers`]); otherwise the
//!   bench prints a skip note. Neither is required.
//!
//! Every payload starts with the publish time (ns since a process-local origin) and a sequence
//! number; each subscriber records publish-to-delivery latency for every event and counts
//! gaps. Subscriptions use buffer 65,536 with `DropNewest`, and the publisher is credit-paced:
//! it stays at most [`WINDOW`] events ahead of the slowest subscriber, as the NATS anchor was.
//! So nothing may be lost; `lost` is reported per run and must be 0.
//!
//! Delivered msgs/s = events received by all subscribers / time from the first publish to the
//! last delivery.

pub(crate) mod workload;

use std::sync::Arc;
use std::time::Instant;

use mw_pubsub::remote::{PubSubServer, PubSubService};
use mw_pubsub::{Bus, Event, RemoteBus, SlowConsumerPolicy, SubscribeOptions, Topic};
use serde_json::json;

use crate::child::{self, ChildServer};
use crate::peers::{self, PeerServer};
use crate::stats::{fmt_rate, fmt_us};
use crate::Error;
use workload::{account_bytes, collect, pace, payload, Outcome, Progress, Seen, IDLE, WINDOW};

/// Server targets of this benchmark (`mw-bench serve <target>`).
pub const SERVE_TARGETS: &[&str] = &["pubsub-broker"];

const BUFFER: usize = 65_536;

/// Flags of `mw-bench pubsub`.
#[derive(Debug, clap::Args)]
pub struct PubsubArgs {
    /// One JSON object per series instead of the table.
    #[arg(long)]
    json: bool,
    /// A tenth of the messages, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Deliveries per run (split over the subscribers). Default 2,000,000.
    #[arg(long, default_value_t = 2_000_000)]
    deliveries: u64,
}

/// Serves `mw.pubsub` over a plain bus (no durable storage) until killed.
pub async fn serve(_target: &str, addr: &str) -> Result<(), Error> {
    let server = mw_rpc::Server::builder()
        .add(PubSubServer::new(PubSubService::new(Bus::default())))
        .build()
        .spawn(addr)
        .await?;
    child::announce(server.local_addr());
    std::future::pending::<()>().await;
    Ok(())
}

/// [`account_bytes`] for an mw event.
fn account(origin: Instant, e: &Event, seen: &mut Seen, next: &mut u64) {
    account_bytes(origin, &e.payload, seen, next);
}

async fn run_tcp(
    addr: &str,
    subscribers: usize,
    size: usize,
    messages: u64,
) -> Result<Outcome, Error> {
    let origin = Instant::now();
    let progress = Arc::new(Progress::new(subscribers));
    let opts = SubscribeOptions {
        buffer: BUFFER,
        policy: SlowConsumerPolicy::DropNewest,
    };
    let mut tasks = Vec::new();
    for i in 0..subscribers {
        let bus = RemoteBus::connect(addr).await?;
        let mut sub = bus.subscribe("bench.feed", opts).await?;
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let _bus = bus;
            let mut seen = Seen::new();
            let mut next = 0;
            let mut buf = Vec::with_capacity(1024);
            while seen.received + seen.lost < messages {
                buf.clear();
                // Bounded: a subscriber that hears nothing for 5 s stops (its shortfall
                // counts as lost) instead of hanging the benchmark.
                let got = tokio::time::timeout(IDLE, sub.recv_many(&mut buf, 1024)).await;
                if !matches!(got, Ok(Ok(_))) {
                    break;
                }
                for e in &buf {
                    account(origin, e, &mut seen, &mut next);
                }
                progress.advance(i, seen.received + seen.lost);
            }
            // A subscriber that stopped early must not stall the paced publisher.
            progress.advance(i, messages);
            seen.lost += sub.dropped().saturating_sub(seen.lost);
            seen.last_at = Instant::now();
            seen
        }));
    }
    let publisher = RemoteBus::connect(addr).await?;
    let topic = Topic::new("bench.feed")?;
    let start = Instant::now();
    for seq in 0..messages {
        if seq % 256 == 0 {
            pace(&progress, seq).await;
        }
        publisher
            .publish(&topic, payload(origin, seq, size))
            .await?;
    }
    publisher.flush().await?;
    collect("tcp", subscribers, size, messages, start, tasks).await
}

async fn run_embedded(subscribers: usize, size: usize, messages: u64) -> Result<Outcome, Error> {
    let origin = Instant::now();
    let bus = Bus::default();
    let progress = Arc::new(Progress::new(subscribers));
    let opts = SubscribeOptions {
        buffer: BUFFER,
        policy: SlowConsumerPolicy::DropNewest,
    };
    let mut tasks = Vec::new();
    for i in 0..subscribers {
        let mut sub = bus.subscribe("bench.feed", opts)?;
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::new();
            let mut next = 0;
            let mut buf = Vec::with_capacity(1024);
            while seen.received + seen.lost < messages {
                buf.clear();
                // Bounded: a subscriber that hears nothing for 5 s stops (its shortfall
                // counts as lost) instead of hanging the benchmark.
                let got = tokio::time::timeout(IDLE, sub.recv_many(&mut buf, 1024)).await;
                if !matches!(got, Ok(Ok(_))) {
                    break;
                }
                for e in &buf {
                    account(origin, e, &mut seen, &mut next);
                }
                progress.advance(i, seen.received + seen.lost);
            }
            // A subscriber that stopped early must not stall the paced publisher.
            progress.advance(i, messages);
            seen.lost += sub.dropped().saturating_sub(seen.lost);
            seen.last_at = Instant::now();
            seen
        }));
    }
    let topic = Topic::new("bench.feed")?;
    let start = Instant::now();
    for seq in 0..messages {
        if seq % 256 == 0 {
            pace(&progress, seq).await;
        }
        bus.publish(&topic, payload(origin, seq, size))?;
    }
    collect("embedded", subscribers, size, messages, start, tasks).await
}

/// Runs every series and prints the table (or JSON lines).
pub fn run(args: &PubsubArgs) -> Result<(), Error> {
    let deliveries = if args.quick {
        args.deliveries / 10
    } else {
        args.deliveries
    };
    let rt = child::runtime()?;
    let broker = ChildServer::spawn("pubsub-broker")?;
    let mut outcomes = Vec::new();
    for system in ["tcp", "embedded"] {
        for subscribers in [1usize, 10, 100] {
            for size in [16usize, 256] {
                let messages = (deliveries / subscribers as u64).max(1);
                if !args.json {
                    eprintln!("  {system} 1->{subscribers} {size} B: {messages} messages");
                }
                let o = rt.block_on(async {
                    match system {
                        "tcp" => run_tcp(broker.addr(), subscribers, size, messages).await,
                        _ => run_embedded(subscribers, size, messages).await,
                    }
                })?;
                outcomes.push(o);
            }
        }
    }
    drop(broker);
    let (peer_outcomes, peer_notes) = run_peers(&rt, deliveries, args.json);
    outcomes.extend(peer_outcomes);
    if args.json {
        for o in &outcomes {
            println!(
                "{}",
                json!({
                    "series": format!("pubsub-{}", o.system),
                    "workload": format!("1x{} {}B", o.subscribers, o.size),
                    "delivered_per_s": o.summary.ops_per_s.round(),
                    "delivered": o.summary.ops,
                    "p50_us": o.summary.p50_us,
                    "p99_us": o.summary.p99_us,
                    "p999_us": o.summary.p999_us,
                    "lost": o.lost,
                })
            );
        }
        for note in &peer_notes {
            println!("{}", json!({ "note": note }));
        }
        return Ok(());
    }
    println!(
        "{:<9} {:<10} {:>6} {:>14} {:>9} {:>9} {:>9} {:>6}",
        "system", "fan-out", "bytes", "delivered/s", "p50 µs", "p99 µs", "p99.9 µs", "lost"
    );
    for o in &outcomes {
        println!(
            "{:<9} {:<10} {:>6} {:>14} {:>9} {:>9} {:>9} {:>6}",
            o.system,
            format!("1->{}", o.subscribers),
            o.size,
            fmt_rate(o.summary.ops_per_s),
            fmt_us(o.summary.p50_us),
            fmt_us(o.summary.p99_us),
            fmt_us(o.summary.p999_us),
            o.lost
        );
    }
    println!("policy: buffer {BUFFER} DropNewest, publisher credit-paced to {WINDOW} events ahead of the slowest subscriber");
    for note in &peer_notes {
        println!("{note}");
    }
    for peer in ["redis", "nats"] {
        for size in [16usize, 256] {
            let rate = |system: &str| {
                outcomes
                    .iter()
                    .find(|o| o.system == system && o.subscribers == 1 && o.size == size)
                    .map(|o| o.summary.ops_per_s)
            };
            if let (Some(mw), Some(other)) = (rate("tcp"), rate(peer)) {
                println!(
                    "mw tcp / {peer} 1->1 {size} B delivered/s: {:.2}x ({} vs {})",
                    mw / other,
                    fmt_rate(mw),
                    fmt_rate(other)
                );
            }
        }
    }
    let target = outcomes
        .iter()
        .find(|o| o.system == "tcp" && o.subscribers == 1 && o.size == 16)
        .map(|o| o.summary.ops_per_s)
        .unwrap_or(0.0);
    println!(
        "target tcp 1->1 16 B >= 1,000,000 delivered/s: {} ({})",
        if target >= 1e6 { "PASS" } else { "MISS" },
        fmt_rate(target)
    );
    Ok(())
}

/// The peers' 1->1 series, each when its server is on PATH and starts; otherwise a note.
fn run_peers(
    rt: &tokio::runtime::Runtime,
    deliveries: u64,
    quiet: bool,
) -> (Vec<Outcome>, Vec<String>) {
    const ANCHORS: &str =
        "peer anchors: NATS 1.73M, redis 273k, mosquitto 136k msgs/s for 1->1 16 B";
    let mut outcomes = Vec::new();
    let mut notes = Vec::new();
    let mut skipped = false;
    for peer in ["redis", "nats"] {
        let program = format!("{peer}-server");
        if !peers::on_path(&program) {
            notes.push(format!(
                "{program} not installed: {peer} skipped (apt-get install {program})"
            ));
            skipped = true;
            continue;
        }
        let server = match peer {
            "redis" => PeerServer::redis(),
            _ => PeerServer::nats(),
        };
        let server = match server {
            Ok(s) => s,
            Err(e) => {
                notes.push(format!("{program} did not start: {peer} skipped ({e})"));
                continue;
            }
        };
        for size in [16usize, 256] {
            if !quiet {
                eprintln!("  {peer} 1->1 {size} B: {deliveries} messages");
            }
            let outcome = rt.block_on(async {
                match peer {
                    "redis" => peers::run_redis(server.port(), size, deliveries).await,
                    _ => peers::run_nats(server.port(), size, deliveries).await,
                }
            });
            match outcome {
                Ok(o) => outcomes.push(o),
                Err(e) => notes.push(format!("{peer} 1->1 {size} B failed: {e}")),
            }
        }
        drop(server);
    }
    if skipped {
        notes.push(ANCHORS.to_string());
    }
    if !outcomes.is_empty() {
        notes.push(format!(
            "peers: local {} children, 1 publisher -> 1 subscriber, same payloads and {WINDOW}-event window; redis: pipelines of {} PUBLISH, {} in flight",
            ["redis-server", "nats-server"]
                .iter()
                .filter(|p| peers::on_path(p))
                .copied()
                .collect::<Vec<_>>()
                .join(" / "),
            peers::REDIS_BATCH,
            peers::REDIS_DEPTH
        ));
    }
    (outcomes, notes)
}
