//! A sensor feed over `mw broker`: publishers and subscribers as separate processes that never
//! name each other, only topics.
//!
//! ```text
//! mw broker --addr 127.0.0.1:7800 --data /tmp/mw-data          # terminal 1
//! cargo run --example sensors -- subscribe --broker 127.0.0.1:7800 'sensors.*.temp'
//! cargo run --example sensors -- publish --broker 127.0.0.1:7800 --room kitchen
//! cargo run --example sensors -- publish --broker 127.0.0.1:7800 --room hall --count 5
//! cargo run --example sensors -- subscribe --broker 127.0.0.1:7800 'sensors.>' --durable log
//! ```
//!
//! `publish` sends readings as text (`<value> #<seq>`, so `mw sub` prints them too) to
//! `sensors.<room>.temp` and `sensors.<room>.humidity` every `--interval-ms` (default 500) for
//! `--count` rounds (default 20); the temperature is retained, so a subscriber that starts later
//! sees the last value at once. `subscribe` prints each reading; with `--durable NAME` it uses a
//! durable subscription that keeps collecting while it is not running, and acknowledges each
//! reading after printing it. (Typed, serde-encoded events: `RemoteBus::publish_typed` and
//! `subscribe_typed`.)

use std::time::Duration;

use clap::{Parser, Subcommand};
use mw::pubsub::{RemoteBus, SlowConsumerPolicy, SubscribeOptions};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Publish readings for one room.
    Publish {
        #[arg(long)]
        broker: String,
        #[arg(long)]
        room: String,
        #[arg(long, default_value_t = 20)]
        count: u64,
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
    },
    /// Print readings matching a pattern.
    Subscribe {
        #[arg(long)]
        broker: String,
        pattern: String,
        #[arg(long)]
        durable: Option<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Cmd::Publish {
            broker,
            room,
            count,
            interval_ms,
        } => publish(&broker, &room, count, interval_ms).await,
        Cmd::Subscribe {
            broker,
            pattern,
            durable,
        } => subscribe(&broker, &pattern, durable.as_deref()).await,
    };
    mw::run::exit_boxed("sensors", result)
}

async fn publish(
    broker: &str,
    room: &str,
    count: u64,
    interval_ms: u64,
) -> Result<(), mw::run::BoxError> {
    let bus = RemoteBus::connect(broker).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    for seq in 0..count {
        tick.tick().await;
        let temp = 20.0 + (seq % 7) as f32 * 0.5;
        let humidity = 40 + seq % 5;
        let report = bus
            .publish_retained(
                format!("sensors.{room}.temp").as_str(),
                format!("{temp:.1} #{seq}"),
            )
            .await?;
        bus.publish(
            format!("sensors.{room}.humidity").as_str(),
            format!("{humidity} #{seq}"),
        )
        .await?;
        println!(
            "{room} #{seq}: temp {temp:.1} reached {} subscriber(s)",
            report.reached()
        );
    }
    bus.flush().await?;
    Ok(())
}

async fn subscribe(
    broker: &str,
    pattern: &str,
    durable: Option<&str>,
) -> Result<(), mw::run::BoxError> {
    let bus = RemoteBus::connect(broker).await?;
    let show = |topic: &str, payload: &[u8]| {
        println!("{topic}: {}", String::from_utf8_lossy(payload));
    };
    match durable {
        Some(name) => {
            let mut sub = bus.subscribe_durable(name, pattern).await?;
            eprintln!("durable subscription {name} on {pattern}");
            loop {
                let d = sub.recv().await?;
                show(d.event.topic.as_str(), &d.event.payload);
                d.ack().await?;
            }
        }
        None => {
            let options = SubscribeOptions {
                buffer: 256,
                policy: SlowConsumerPolicy::DropOldest,
            };
            let mut sub = bus.subscribe(pattern, options).await?;
            eprintln!("subscribed to {pattern}");
            loop {
                let e = sub.recv().await?;
                if e.dropped_before > 0 {
                    eprintln!("(missed {} readings)", e.dropped_before);
                }
                show(e.topic.as_str(), &e.payload);
            }
        }
    }
}
