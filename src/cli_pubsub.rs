//! The `mw pub` and `mw sub` verbs, as library functions the binary calls.
//!
//! - `mw pub --broker ADDR TOPIC [MESSAGE]` publishes MESSAGE, or each line of stdin when no
//!   MESSAGE is given (pipelined, in order), and prints one line per event once the broker
//!   handled it: how many subscribers it reached (`--json`: the broker's whole report), or
//!   `-` for an event the broker refused (named with its line number on stderr; exit 1).
//! - `mw sub --broker ADDR PATTERN [--durable NAME] [--count N]` prints one `TOPIC BODY` line per
//!   event (the body as UTF-8, invalid bytes replaced). Once subscribed it prints
//!   `subscribed to PATTERN` on stderr, a readiness signal for scripts. With `--durable` it reads
//!   the durable subscription NAME (created on first use) and acknowledges each event after
//!   printing it; with `--count` it exits after N events.

use std::io::Write;

use tokio::io::AsyncBufReadExt;

use crate::pubsub::{PubSubError, PublishReport, RemoteBus, SlowConsumerPolicy, SubscribeOptions};
use crate::run::BoxError;

/// Options of `mw pub`.
#[derive(Debug, Clone)]
pub struct PubArgs {
    /// The broker's address.
    pub broker: String,
    /// The topic to publish to.
    pub topic: String,
    /// The message; `None` publishes each line of stdin.
    pub message: Option<String>,
    /// Keep the (last) message as the topic's retained message.
    pub retain: bool,
    /// Print each event's report as JSON instead of the number of subscribers reached.
    pub json: bool,
}

/// Options of `mw sub`.
#[derive(Debug, Clone)]
pub struct SubArgs {
    /// The broker's address.
    pub broker: String,
    /// The pattern to subscribe to.
    pub pattern: String,
    /// Read this durable subscription instead of a transient one.
    pub durable: Option<String>,
    /// Exit after this many events.
    pub count: Option<u64>,
    /// Broker-side buffer of a transient subscription.
    pub buffer: usize,
}

async fn connect(addr: &str) -> Result<RemoteBus, BoxError> {
    RemoteBus::connect(addr)
        .await
        .map_err(|e| format!("cannot reach broker at {addr}: {}", crate::run::chain(&e)).into())
}

async fn publish_one(
    bus: RemoteBus,
    topic: String,
    body: String,
    retain: bool,
) -> Result<PublishReport, PubSubError> {
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
/// An unreachable broker, an invalid topic, refused events, a failed read of stdin.
pub async fn publish(args: PubArgs, out: &mut dyn Write) -> Result<(), BoxError> {
    // Checked before connecting so a typo is reported as such even without a broker.
    crate::pubsub::Topic::new(&args.topic)?;
    let bus = connect(&args.broker).await?;
    let publish = |body: String| publish_one(bus.clone(), args.topic.clone(), body, args.retain);
    let mut refused = Vec::new();
    let mut report = |n: u64, r: Result<PublishReport, PubSubError>, out: &mut dyn Write| match r {
        Ok(rep) if args.json => writeln!(out, "{}", report_json(&args.topic, &rep)),
        Ok(rep) => writeln!(out, "{}", rep.reached()),
        Err(PubSubError::Rpc(e)) => Err(std::io::Error::other(format!(
            "line {n} and the lines after it may or may not be published: {}",
            crate::run::chain(&e)
        ))),
        Err(e) => {
            eprintln!("mw pub: line {n} not published: {e}");
            refused.push(n);
            writeln!(out, "-")
        }
    };
    match args.message {
        Some(m) => {
            // One event: its refusal is the command's error, on one line.
            let rep = publish(m).await?;
            report(1, Ok(rep), out)?;
        }
        None => {
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            let mut in_flight = futures::stream::FuturesOrdered::new();
            let mut line_no = 0u64;
            let mut eof = false;
            while !eof || !in_flight.is_empty() {
                tokio::select! {
                    line = lines.next_line(), if !eof && in_flight.len() < PUB_WINDOW => {
                        match line? {
                            Some(l) => {
                                line_no += 1;
                                let n = line_no;
                                let p = publish(l);
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
        }
    }
    match refused.as_slice() {
        [] => Ok(()),
        [n] => Err(format!("line {n} was not published; every other line was").into()),
        many => Err(format!(
            "{} lines were not published (lines {}); every other line was",
            many.len(),
            many.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into()),
    }
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

fn print_event(out: &mut impl Write, topic: &str, body: &[u8]) -> std::io::Result<()> {
    writeln!(out, "{topic} {}", String::from_utf8_lossy(body))?;
    out.flush()
}

/// Runs `mw sub`, printing to `out`.
///
/// # Errors
///
/// An unreachable broker, an invalid pattern or durable name, a broken connection, or a
/// slow-consumer disconnect.
pub async fn subscribe(args: SubArgs, out: &mut impl Write) -> Result<(), BoxError> {
    crate::pubsub::Pattern::new(&args.pattern)?;
    let bus = connect(&args.broker).await?;
    let limit = args.count.unwrap_or(u64::MAX);
    let mut seen = 0u64;
    match &args.durable {
        Some(name) => {
            let mut sub = bus.subscribe_durable(name, args.pattern.as_str()).await?;
            eprintln!("subscribed to {} (durable {name})", args.pattern);
            while seen < limit {
                let d = sub.recv().await?;
                print_event(out, d.event.topic.as_str(), &d.event.payload)?;
                d.ack().await?;
                seen += 1;
            }
        }
        None => {
            let options = SubscribeOptions {
                buffer: args.buffer,
                policy: SlowConsumerPolicy::DropOldest,
            };
            let mut sub = bus.subscribe(args.pattern.as_str(), options).await?;
            eprintln!("subscribed to {}", args.pattern);
            let mut reported = 0;
            while seen < limit {
                let e = sub.recv().await?;
                if sub.dropped() > reported {
                    reported = sub.dropped();
                    eprintln!("mw sub: {reported} events missed so far (slow consumer)");
                }
                print_event(out, e.topic.as_str(), &e.payload)?;
                seen += 1;
            }
        }
    }
    Ok(())
}
