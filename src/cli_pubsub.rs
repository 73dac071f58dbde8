//! The `mw pub` and `mw sub` verbs, as library functions the binary calls.
//!
//! - `mw pub --broker ADDR TOPIC [MESSAGE]` publishes MESSAGE, or each line of stdin when no
//!   MESSAGE is given, then waits until the broker has handled them all.
//! - `mw sub --broker ADDR PATTERN [--durable NAME] [--count N]` prints one `TOPIC BODY` line per
//!   event (the body as UTF-8, invalid bytes replaced). Once subscribed it prints
//!   `subscribed to PATTERN` on stderr, a readiness signal for scripts. With `--durable` it reads
//!   the durable subscription NAME (created on first use) and acknowledges each event after
//!   printing it; with `--count` it exits after N events.

use std::io::Write;

use tokio::io::AsyncBufReadExt;

use crate::pubsub::{PubSubError, RemoteBus, SlowConsumerPolicy, SubscribeOptions};
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
    bus: &RemoteBus,
    topic: &str,
    body: String,
    retain: bool,
) -> Result<(), PubSubError> {
    if retain {
        bus.publish_retained(topic, body).await.map(|_| ())
    } else {
        bus.publish(topic, body).await
    }
}

/// Runs `mw pub`.
///
/// # Errors
///
/// An unreachable broker, an invalid topic, a failed read of stdin.
pub async fn publish(args: PubArgs) -> Result<(), BoxError> {
    // Checked before connecting so a typo is reported as such even without a broker.
    crate::pubsub::Topic::new(&args.topic)?;
    let bus = connect(&args.broker).await?;
    match args.message {
        Some(m) => publish_one(&bus, &args.topic, m, args.retain).await?,
        None => {
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Some(line) = lines.next_line().await? {
                publish_one(&bus, &args.topic, line, args.retain).await?;
            }
        }
    }
    bus.flush().await?;
    Ok(())
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
