//! The lectures' producer/consumer: a coke machine. Suppliers refill it, customers buy
//! from it, and the machine holds at most `CAPACITY` cans.
//!
//! The machine is a persistent queue; the bound is the classic pair of semaphores of a
//! bounded buffer: `empty slots` (a supplier takes one before putting a can in, and
//! waits, saying so, when the machine is full) and the queue itself as `full slots` (a
//! customer's `recv` waits for a can). Embedded, the queue also has a length limit of
//! `CAPACITY` (`Config::max_queue_len`), so a supplier that ignores the semaphore is
//! refused by the machine itself; the narration shows one trying.
//!
//! ```text
//! cargo run --example coke_machine                      # embedded, no broker
//! mw broker --addr 127.0.0.1:7800 --data /tmp/mw-data &
//! cargo run --example coke_machine -- --broker 127.0.0.1:7800
//! ```
//!
//! It ends with a tally: cans supplied = cans bought + cans left in the machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mw::queue::remote::{RemoteConsumer, RemoteQueue, RemoteQueues};
use mw::queue::{Config, Consumer, ConsumerOptions, Message, Queue, QueueManager};
use mw::run::BoxError;
use tokio::sync::Semaphore;

/// Most cans the machine holds.
const CAPACITY: u64 = 3;
/// Suppliers and the cans each brings (one flavour each).
const FLAVOURS: [&str; 3] = ["cola", "lemon", "cherry"];
const CANS_PER_SUPPLIER: u64 = 4;
/// Customers; together they buy every can supplied.
const CUSTOMERS: u64 = 2;

#[derive(Parser)]
struct Args {
    /// Use the queue on this broker instead of an embedded queue manager.
    #[arg(long)]
    broker: Option<String>,
}

/// The machine's queue, embedded or at a broker.
#[derive(Clone)]
enum Machine {
    Local(Queue),
    Remote(RemoteQueue),
}

/// One customer's way of taking cans out.
enum Slot {
    Local(Consumer),
    Remote(RemoteConsumer),
}

impl Machine {
    async fn put(&self, can: &str) -> Result<(), BoxError> {
        match self {
            Machine::Local(q) => q.send(Message::new(can.to_string())).await.map(drop)?,
            Machine::Remote(q) => q.send(Message::new(can.to_string())).await.map(drop)?,
        }
        Ok(())
    }

    async fn depth(&self) -> Result<u64, BoxError> {
        Ok(match self {
            Machine::Local(q) => q.stats().depth,
            Machine::Remote(q) => q.stats().await?.depth,
        })
    }

    async fn slot(&self, cans: u64) -> Result<Slot, BoxError> {
        let options = ConsumerOptions {
            prefetch: 1,
            ..Default::default()
        };
        Ok(match self {
            Machine::Local(q) => Slot::Local(q.consumer(options)),
            // Limited to this customer's cans: nothing is left in flight when they leave.
            Machine::Remote(q) => Slot::Remote(q.consumer_with_limit(options, cans).await?),
        })
    }
}

impl Slot {
    /// Waits for a can, takes it out for good (ack) and returns its flavour.
    async fn take(&mut self) -> Result<String, BoxError> {
        Ok(match self {
            Slot::Local(c) => {
                let d = c.recv().await?;
                let can = String::from_utf8_lossy(d.body()).into_owned();
                d.ack().await?;
                can
            }
            Slot::Remote(c) => {
                let d = c.recv().await?;
                let can = String::from_utf8_lossy(d.body()).into_owned();
                d.ack().await?;
                can
            }
        })
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mw::run::exit_boxed("coke_machine", run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let (machine, local) = match &args.broker {
        None => {
            let config = Config {
                max_queue_len: Some(CAPACITY),
                ..Config::default()
            };
            let qm = QueueManager::open(dir.path(), config).await?;
            println!("an embedded coke machine for {CAPACITY} cans");
            (Machine::Local(qm.queue("coke")), Some(qm))
        }
        Some(addr) => {
            let remote = RemoteQueues::connect(addr).await?;
            // A fresh queue per run, so cans left by an earlier run do not spoil the tally.
            let name = format!("coke-{}", std::process::id());
            println!("a coke machine for {CAPACITY} cans on queue {name} at broker {addr}");
            (Machine::Remote(remote.queue(&name)), None)
        }
    };

    let empty_slots = Arc::new(Semaphore::new(CAPACITY as usize));
    let in_machine = Arc::new(AtomicU64::new(0));
    let supplied_total = FLAVOURS.len() as u64 * CANS_PER_SUPPLIER;

    let mut customers = Vec::new();
    for c in 1..=CUSTOMERS {
        // Split the cans as evenly as possible.
        let cans = supplied_total / CUSTOMERS + u64::from(c <= supplied_total % CUSTOMERS);
        let mut slot = machine.slot(cans).await?;
        let (empty, inside) = (empty_slots.clone(), in_machine.clone());
        customers.push(tokio::spawn(async move {
            let mut bought = Vec::new();
            for _ in 0..cans {
                let can = slot.take().await?;
                let left = inside.fetch_sub(1, Ordering::SeqCst) - 1;
                println!("  customer {c} buys a {can} ({left}/{CAPACITY} left)");
                bought.push(can);
                empty.add_permits(1); // a slot is free again
                                      // Drinking takes a moment (pacing for the narration, not synchronisation).
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            Ok::<_, BoxError>(bought)
        }));
    }

    let mut suppliers = Vec::new();
    for (s, flavour) in FLAVOURS.iter().enumerate() {
        let s = s + 1;
        let (machine, empty, inside) = (machine.clone(), empty_slots.clone(), in_machine.clone());
        suppliers.push(tokio::spawn(async move {
            for _ in 0..CANS_PER_SUPPLIER {
                let slot = match empty.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        println!("supplier {s} waits: the machine is full");
                        empty.clone().acquire_owned().await?
                    }
                };
                // Counted before it goes in, so a quick customer never counts below zero.
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                machine.put(flavour).await?;
                slot.forget(); // the slot now holds a can until a customer frees it
                println!("supplier {s} puts in a {flavour} ({now}/{CAPACITY})");
            }
            Ok::<_, BoxError>(CANS_PER_SUPPLIER)
        }));
    }

    let mut supplied = 0;
    for s in suppliers {
        supplied += s.await??;
    }
    let mut bought = Vec::new();
    for c in customers {
        bought.push(c.await??);
    }

    let mut rogue = "no length limit at the broker to test".to_string();
    if let Machine::Local(q) = &machine {
        // Fill the machine past the semaphore's back: the queue itself refuses can 4.
        for _ in 0..CAPACITY {
            q.send(Message::new("root beer")).await?;
        }
        rogue = match q.send(Message::new("root beer")).await {
            Err(e) => format!("refused: {e}"),
            Ok(_) => "accepted (the limit did not hold!)".into(),
        };
        // Take the rogue cans back out, so the tally covers the real run only.
        let mut c = q.consumer(ConsumerOptions::default());
        for _ in 0..CAPACITY {
            c.recv().await?.ack().await?;
        }
        drop(c);
    }

    let left = machine.depth().await?;
    let total_bought: usize = bought.iter().map(Vec::len).sum();
    println!("tally:");
    println!(
        "  supplied {supplied} cans ({CANS_PER_SUPPLIER} from each of {} suppliers)",
        FLAVOURS.len()
    );
    for (c, cans) in bought.iter().enumerate() {
        println!(
            "  customer {} bought {}: {}",
            c + 1,
            cans.len(),
            cans.join(", ")
        );
    }
    println!("  left in the machine: {left}");
    println!("  a supplier ignoring the semaphore: {rogue}");
    let ok = supplied == total_bought as u64 + left;
    println!(
        "  {supplied} supplied = {total_bought} bought + {left} left: {}",
        if ok { "adds up" } else { "DOES NOT ADD UP" }
    );
    if let Some(qm) = local {
        qm.close().await?;
    }
    if ok {
        Ok(())
    } else {
        Err("the tally does not add up".into())
    }
}
