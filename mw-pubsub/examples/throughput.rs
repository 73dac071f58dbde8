//! Rough in-process throughput check with 16-byte payloads. Not a benchmark harness (that lives
//! in mw-bench); a quick sanity figure.
//!
//! 1. Cross-thread: one publisher thread, `subscribers` subscriptions drained by one tokio worker
//!    with `recv_many`. The publisher outruns the consumer, so drops are expected; the figure that
//!    matters is received per second, which on a busy 2-core machine depends on scheduling.
//! 2. Same thread: publish 1000, drain with `try_recv`, repeat; the bus's own per-event cost.
//!
//! `cargo run --release -p mw-pubsub --example throughput -- [messages] [subscribers]`

use std::time::Instant;

use bytes::Bytes;
use mw_pubsub::{Bus, SlowConsumerPolicy, SubscribeOptions, Topic};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let messages: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2_000_000);
    let subs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()?;
    let bus = Bus::default();
    let options = SubscribeOptions {
        buffer: 8192,
        policy: SlowConsumerPolicy::DropNewest,
    };
    let consumers: Vec<_> = (0..subs)
        .map(|_| {
            let mut sub = bus.subscribe("bench.*.data", options)?;
            Ok(rt.spawn(async move {
                let mut batch = Vec::with_capacity(1024);
                let mut received = 0u64;
                while received + sub.dropped() < messages {
                    batch.clear();
                    match sub.recv_many(&mut batch, 1024).await {
                        Ok(n) => received += n as u64,
                        Err(_) => break,
                    }
                }
                (received, sub.dropped())
            }))
        })
        .collect::<Result<_, mw_pubsub::Error>>()?;

    let topic = Topic::from_static("bench.x.data")?;
    let payload = Bytes::from_static(&[0u8; 16]);
    let start = Instant::now();
    let mut delivered = 0u64;
    for _ in 0..messages {
        delivered += bus.publish(&topic, payload.clone())?.delivered as u64;
    }
    let publish_time = start.elapsed();
    let mut received = 0;
    let mut dropped = 0;
    for c in consumers {
        let (r, d) = rt.block_on(c)?;
        received += r;
        dropped += d;
    }
    let total_time = start.elapsed();
    println!(
        "{messages} msgs x {subs} subs: publish {:.2} M msgs/s, {:.2} M deliveries/s buffered; \
         received {received} ({:.2} M/s end to end), dropped {dropped}",
        messages as f64 / publish_time.as_secs_f64() / 1e6,
        delivered as f64 / publish_time.as_secs_f64() / 1e6,
        received as f64 / total_time.as_secs_f64() / 1e6,
    );

    let mut sub = bus.subscribe("bench.*.data", options)?;
    let start = Instant::now();
    let mut received = 0u64;
    for _ in 0..messages / 1000 {
        for _ in 0..1000 {
            bus.publish(&topic, payload.clone())?;
        }
        while let Some(_event) = sub.try_recv()? {
            received += 1;
        }
    }
    println!(
        "same thread, 1 sub: {:.2} M deliveries/s (publish + receive)",
        received as f64 / start.elapsed().as_secs_f64() / 1e6
    );
    Ok(())
}
