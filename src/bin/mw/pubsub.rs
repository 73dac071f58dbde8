//! The `mw pub` and `mw sub` verbs, as library functions the binary calls.
//!
//! - `mw pub --broker ADDR TOPIC [MESSAGE]` publishes MESSAGE, or each line of stdin when no
//!   MESSAGE is given (pipelined, in order), and prints one line per event once the broker
//!   handled it: how many subscribers it reached (`--json`: the broker's whole report), or
//!   `-` for an event the broker refused (named with its line number on stderr; exit 1).
//!   `--file PATH` publishes a whole file as one event, `--framed` reads length-framed
//!   events from stdin ([`crate::input`]).
//! - `mw sub --broker ADDR PATTERN [--durable NAME] [--count N] [--timeout SECS] [--json]`
//!   prints one `TOPIC BODY` line per event (the body as UTF-8, invalid bytes replaced; with
//!   `--json`, `{"topic":..,"body":..}` lines). Once subscribed it prints
//!   `subscribed to PATTERN` on stderr, a readiness signal for scripts. With `--durable` it reads
//!   the durable subscription NAME (created on first use) and acknowledges each event after
//!   printing it; with `--count` it exits after N events.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::input::{body_json, item_name, spawn_reader, Source};
use crate::space::parse_secs;
use mw::cli_args::BrokerAddr;
use mw::pubsub::{PublishReport, RemoteBus, RemoteError, SlowConsumerPolicy, SubscribeOptions};
use mw::run::BoxError;

/// Options of `mw pub`.
#[derive(Debug, Clone, clap::Args)]
pub struct PubArgs {
    /// The broker's address.
    #[command(flatten)]
    pub broker: BrokerAddr,
    /// Keep the message as the topic's retained message for late subscribers (an empty
    /// one clears it).
    #[arg(long)]
    pub retain: bool,
    /// Print each event's report (reached, matched, delivered, ...) as a JSON line instead
    /// of the number of subscribers it reached.
    #[arg(long)]
    pub json: bool,
    /// Publish the whole of FILE (`-`: all of stdin) as one event, byte for byte.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["message", "framed"])]
    pub file: Option<PathBuf>,
    /// Read events from stdin length-framed (each a 4-byte big-endian length, then that
    /// many bytes).
    #[arg(long, conflicts_with = "message")]
    pub framed: bool,
    /// Topic, such as sensors.kitchen.temp.
    pub topic: String,
    /// The message; without it (and without --file or --framed), each line of stdin is
    /// one event.
    pub message: Option<String>,
}

/// Options of `mw sub`.
#[derive(Debug, Clone, clap::Args)]
pub struct SubArgs {
    /// The broker's address.
    #[command(flatten)]
    pub broker: BrokerAddr,
    /// Read (creating it if new) the durable subscription NAME, acknowledging each event.
    #[arg(long, value_name = "NAME")]
    pub durable: Option<String>,
    /// Exit after N events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Give up (exit 1) when no event arrives within SECS seconds of subscribing or of
    /// the previous event; default: wait forever.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Print each event as a JSON line: topic and body (or body_hex when it is not UTF-8).
    #[arg(long)]
    pub json: bool,
    /// Broker-side buffer in events (slow-consumer policy: drop oldest).
    #[arg(long, default_value_t = 1024)]
    pub buffer: usize,
    /// Pattern: dot-separated, `*` matches one level, a final `>` the rest.
    pub pattern: String,
}

async fn connect(addr: &str) -> Result<RemoteBus, BoxError> {
    RemoteBus::connect_with(addr, mw::cli_tls::bus_config())
        .await
        .map_err(|e| match e {
            RemoteError::Connect { source, .. } => {
                format!("cannot reach broker at {addr}: {}", mw::run::chain(&source)).into()
            }
            other => mw::run::chain(&other).into(),
        })
}

async fn publish_one(
    bus: RemoteBus,
    topic: String,
    body: Bytes,
    retain: bool,
) -> Result<PublishReport, RemoteError> {
    if retain {
        bus.publish_retained(topic.as_str(), body).await
    } else {
        bus.publish_report(topic.as_str(), body).await
    }
}

/// Most publishes `mw pub` has in flight at once (answered in order).
const PUB_WINDOW: usize = 256;

/// Runs `mw pub`, printing one line per event to `out`: how many subscribers it reached
/// (with `--json`, the broker's whole report), or `-` for an event the broker refused
/// (the reason and line number go to stderr, and the exit code is 1; the lines after it
/// are still published).
///
/// # Errors
///
/// An unreachable broker, an invalid topic, refused events, a failed read of the input.
pub async fn publish(args: PubArgs, out: &mut dyn Write) -> Result<(), BoxError> {
    // Checked before connecting so a typo is reported as such even without a broker.
    mw::pubsub::Topic::new(&args.topic)?;
    let source = Source::from_flags(args.message.clone(), args.file.clone(), args.framed)?;
    let item = item_name(&source);
    let single = source.is_single();
    let bus = connect(&args.broker.addr).await?;
    let publish = |body: Bytes| publish_one(bus.clone(), args.topic.clone(), body, args.retain);
    let mut refused = Vec::new();
    let mut report = |n: u64, r: Result<PublishReport, RemoteError>, out: &mut dyn Write| match r {
        Ok(rep) if args.json => writeln!(out, "{}", report_json(&args.topic, &rep)),
        Ok(rep) => writeln!(out, "{}", rep.reached()),
        Err(RemoteError::Rpc(e)) => Err(std::io::Error::other(format!(
            "{item} {n} and those after it may or may not be published: {}",
            mw::run::chain(&e)
        ))),
        Err(e) => {
            eprintln!("mw pub: {item} {n} not published: {e}");
            refused.push(n);
            writeln!(out, "-")
        }
    };
    let mut input = spawn_reader(source);
    if single {
        // One event: its refusal is the command's error, on one line.
        let body = input.recv().await.ok_or("no input")??;
        let rep = publish(body).await?;
        report(1, Ok(rep), out)?;
        return Ok(());
    }
    let mut in_flight = futures::stream::FuturesOrdered::new();
    let mut read_no = 0u64;
    let mut eof = false;
    while !eof || !in_flight.is_empty() {
        tokio::select! {
            body = input.recv(), if !eof && in_flight.len() < PUB_WINDOW => {
                match body {
                    Some(body) => {
                        let body = match body {
                            Ok(b) => b,
                            Err(e) => {
                                // Report what was published before the bad input.
                                while let Some((n, r)) = futures::StreamExt::next(&mut in_flight).await {
                                    report(n, r, out)?;
                                }
                                return Err(format!("reading {item} {} failed (every {item} before it was published): {e}", read_no + 1).into());
                            }
                        };
                        read_no += 1;
                        let n = read_no;
                        let p = publish(body);
                        in_flight.push_back(async move { (n, p.await) });
                    }
                    None => eof = true,
                }
            }
            Some((n, r)) = futures::StreamExt::next(&mut in_flight) => {
                report(n, r, out)?;
                out.flush()?;
            }
        }
    }
    crate::queue::refused_error(item, "published", &refused)
}

/// `report` as one JSON object: the topic, how many subscriptions matched, took it
/// (`delivered`), refused it under their slow-consumer policy, and whether it is retained.
pub fn report_json(topic: &str, report: &PublishReport) -> String {
    serde_json::json!({
        "topic": topic,
        "reached": report.reached(),
        "matched": report.matched,
        "delivered": report.delivered,
        "rejected": report.rejected,
        "displaced": report.displaced,
        "disconnected": report.disconnected,
        "retained": report.retained,
    })
    .to_string()
}

fn print_event(out: &mut impl Write, json: bool, topic: &str, body: &[u8]) -> std::io::Result<()> {
    if json {
        let (key, body) = body_json(body);
        writeln!(out, "{}", serde_json::json!({ "topic": topic, key: body }))?;
    } else {
        writeln!(out, "{topic} {}", String::from_utf8_lossy(body))?;
    }
    out.flush()
}

/// `fut`, given up after `timeout` (if any) with an error naming the pattern.
async fn within<T>(
    timeout: Option<Duration>,
    pattern: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, BoxError> {
    match timeout {
        None => Ok(fut.await),
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .map_err(|_| format!("no event on {pattern} within {} s", t.as_secs_f64()).into()),
    }
}

/// Runs `mw sub`, printing to `out`.
///
/// # Errors
///
/// An unreachable broker, an invalid pattern or durable name, a broken connection, a
/// slow-consumer disconnect, or no event within `--timeout`.
pub async fn subscribe(args: SubArgs, out: &mut impl Write) -> Result<(), BoxError> {
    mw::pubsub::Pattern::new(&args.pattern)?;
    let bus = connect(&args.broker.addr).await?;
    let limit = args.count.unwrap_or(u64::MAX);
    let mut seen = 0u64;
    let pattern = args.pattern.as_str();
    match &args.durable {
        Some(name) => {
            let mut sub = bus.subscribe_durable(name, pattern).await?;
            eprintln!("subscribed to {pattern} (durable {name})");
            while seen < limit {
                let d = within(args.timeout, pattern, sub.recv()).await??;
                print_event(out, args.json, d.event.topic.as_str(), &d.event.payload)?;
                d.ack().await?;
                seen += 1;
            }
        }
        None => {
            let options = SubscribeOptions {
                buffer: args.buffer,
                policy: SlowConsumerPolicy::DropOldest,
            };
            let mut sub = bus.subscribe(pattern, options).await?;
            eprintln!("subscribed to {pattern}");
            let mut reported = 0;
            while seen < limit {
                let e = within(args.timeout, pattern, sub.recv()).await??;
                if sub.dropped() > reported {
                    reported = sub.dropped();
                    eprintln!("mw sub: {reported} events missed so far (slow consumer)");
                }
                print_event(out, args.json, e.topic.as_str(), &e.payload)?;
                seen += 1;
            }
        }
    }
    Ok(())
}
