//! Linda's bag of tasks on mw's tuple space: a master `out`s tasks, worker *processes*
//! `in` them and `out` results, the master `in`s the results. Nobody names anybody: the
//! master does not know how many workers there are or which one does what; a worker does
//! not know who wrote a task. Each task is done exactly once, whichever worker is fastest.
//!
//! ```text
//! cargo run --example tuplespace                        # its own broker, 3 workers
//! cargo run --example tuplespace -- --workers 5 --tasks 40
//! mw broker --addr 127.0.0.1:7800 --data /tmp/mw-data &
//! cargo run --example tuplespace -- --broker 127.0.0.1:7800
//! ```
//!
//! Tuples:
//!
//! | tuple | written by | taken by |
//! |---|---|---|
//! | `["task", i, n]`: count the Collatz steps of n | master | a worker (`["task", int, int]`) |
//! | `["result", i, steps, worker]` | the worker that took task i | master (`["result", int, int, string]`) |
//! | `["task", -1, 0]`: no more work (one per worker) | master | each worker, which then exits |
//!
//! The master writes every task *before* any worker exists (they wait in the space), then
//! starts the workers (this program, `worker` subcommand) and collects. It prints who did
//! what and a tally per worker, which adds up to the number of tasks.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mw::run::BoxError;
use mw::space::{pattern, tuple, RemoteSpace, Tuple, Type, Wait};

#[derive(Parser)]
struct Args {
    /// Use the tuple space of this broker; without it the example runs its own broker
    /// in-process (on a temporary data directory).
    #[arg(long)]
    broker: Option<String>,
    /// Worker processes to start.
    #[arg(long, default_value_t = 3)]
    workers: u32,
    /// Tasks to hand out.
    #[arg(long, default_value_t = 20)]
    tasks: u32,
    #[command(subcommand)]
    role: Option<Role>,
}

#[derive(Subcommand)]
enum Role {
    /// Run one worker (the master starts these itself).
    Worker {
        /// The broker's address.
        #[arg(long)]
        broker: String,
        /// The worker's name, written into its results.
        #[arg(long)]
        name: String,
    },
}

/// The work: steps of the Collatz sequence from `n` down to 1.
fn collatz_steps(mut n: i64) -> i64 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

async fn worker(broker: &str, name: &str) -> Result<(), BoxError> {
    let space = RemoteSpace::connect(broker).await?;
    let task = pattern!("task", Type::Int, Type::Int);
    loop {
        let t = space.in_(&task, Wait::Forever).await?.ok_or("no task")?;
        let (i, n) = (field(&t, 1)?, field(&t, 2)?);
        if i < 0 {
            return Ok(());
        }
        space
            .out(tuple!("result", i, collatz_steps(n), name))
            .await?;
    }
}

fn field(t: &Tuple, i: usize) -> Result<i64, BoxError> {
    t.get(i)
        .and_then(|v| v.as_int())
        .ok_or_else(|| format!("field {i} of {t} is not an int").into())
}

async fn master(args: &Args, broker: &str) -> Result<(), BoxError> {
    let space = RemoteSpace::connect(broker).await?;
    for i in 0..args.tasks {
        let n = 1_000 + 37 * i64::from(i);
        space.out(tuple!("task", i64::from(i), n)).await?;
    }
    println!(
        "master: wrote {} tasks; no worker is running yet",
        args.tasks
    );

    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for w in 1..=args.workers {
        let child = tokio::process::Command::new(&exe)
            .args([
                "worker",
                "--broker",
                broker,
                "--name",
                &format!("worker-{w}"),
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        workers.push(child);
    }
    println!("master: started {} worker processes", args.workers);

    let result = pattern!("result", Type::Int, Type::Int, Type::String);
    let mut done: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    for _ in 0..args.tasks {
        let r = space
            .in_(&result, Duration::from_secs(60))
            .await?
            .ok_or("no result within 60 s: are the workers running?")?;
        let who = r.get(3).and_then(|v| v.as_str()).unwrap_or("?").to_string();
        done.insert(field(&r, 1)?, (field(&r, 2)?, who));
    }
    for (i, (steps, who)) in &done {
        let n = 1_000 + 37 * i;
        println!("task {i:>2}: collatz({n}) takes {steps:>3} steps   done by {who}");
    }
    let mut tally: BTreeMap<&str, u32> = BTreeMap::new();
    for (_, who) in done.values() {
        *tally.entry(who.as_str()).or_default() += 1;
    }
    let per_worker: Vec<String> = tally.iter().map(|(w, n)| format!("{w} {n}")).collect();
    println!(
        "tally: {} ({} tasks, each done once)",
        per_worker.join(", "),
        tally.values().sum::<u32>()
    );

    // One poison pill per worker; each takes one and exits.
    for _ in 0..args.workers {
        space.out(tuple!("task", -1, 0)).await?;
    }
    for (w, mut child) in workers.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    return Err(format!("worker-{} failed: {status}", w + 1).into());
                }
            }
            Err(_) => {
                child.kill().await?;
                return Err(format!("worker-{} did not stop", w + 1).into());
            }
        }
    }
    println!("master: all workers stopped");
    Ok(())
}

async fn run(args: Args) -> Result<(), BoxError> {
    if let Some(Role::Worker { broker, name }) = &args.role {
        return worker(broker, name).await;
    }
    if let Some(broker) = &args.broker {
        return master(&args, broker).await;
    }
    // No broker given: run one here, on a temporary data directory.
    let dir = tempfile::tempdir()?;
    let broker = mw::broker::open(mw::broker::BrokerConfig::new(dir.path())).await?;
    let running = broker.server.clone().spawn("127.0.0.1:0").await?;
    let addr = running.local_addr().to_string();
    println!("master: started a broker on {addr}");
    let result = master(&args, &addr).await;
    running.shutdown().await;
    broker.router.shutdown().await;
    broker.space.close().await?;
    broker.queues.close().await?;
    result
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mw::run::exit_boxed("tuplespace", run(Args::parse()).await)
}
