//! The `mw send`, `mw recv` and `mw queues` verbs, as library functions the binary calls.
//!
//! - `mw send --broker ADDR QUEUE [MESSAGE]` sends MESSAGE, or each line of stdin when no
//!   MESSAGE is given, and prints each message id once the broker has it durably stored.
//!   Lines that arrive together are sent as one batch (one round trip, one group commit)
//!   and stored in order. Every input line gets one output line: its id, or `-` when the
//!   broker refused it (the reason and line number go to stderr, and the exit code is 1);
//!   the lines after a refused one are still sent.
//! - `mw recv --broker ADDR QUEUE [--count N]` refuses a queue the broker does not know
//!   (`no queue named "ordrs" on the broker`: receiving creates no queue), then prints each message body (as UTF-8, invalid
//!   bytes replaced) on its own line and acknowledges it after printing. With `--count`
//!   it exits after N messages, asking the broker for exactly N so nothing is left in
//!   flight; without, it runs until Ctrl-C or SIGTERM (a message received but not yet
//!   printed then is redelivered after the broker's visibility timeout).
//! - `mw queues --broker ADDR` prints a table of queues: name, depth, in flight,
//!   consumers, dead letters.
//!
//! Scripting: every verb takes the broker from `--broker`, `$MW_BROKER` or
//! `127.0.0.1:7800`; `send` also reads a whole file (`--file`) or length-framed stdin
//! (`--framed`, see [`crate::input`]) and sets `--ttl`, `--delay` and `--id`; `recv`
//! writes JSON lines (`--json`) or frames (`--framed`); `queues --json` prints an array.
//!
//! Every failure is one plain line (`cannot connect to broker at ..`, `queue q is full`,
//! `broker disk full: ..`) and a non-zero exit code, via [`mw::run::exit_boxed`].

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::input::{body_json, item_name, spawn_reader, write_framed, Source};
use crate::space::parse_secs;
use mw::cli_args::BrokerAddr;
use mw::queue::remote::{QueueError, QueueInfo, RemoteQueues};
use mw::queue::{ConsumerOptions, Message};
use mw::run::BoxError;

/// Most stdin messages sent in one batch by `mw send`.
const SEND_BATCH: usize = 1000;

/// Options of `mw send`.
#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// The broker's address.
    #[command(flatten)]
    pub broker: BrokerAddr,
    /// The queue.
    pub queue: String,
    /// The message; without it (and without --file or --framed), each line of stdin is one
    /// message.
    pub message: Option<String>,
    /// Send the whole of FILE (`-`: all of stdin) as one message, byte for byte.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["message", "framed"])]
    pub file: Option<PathBuf>,
    /// Read messages from stdin length-framed (each a 4-byte big-endian length, then that
    /// many bytes): binary bodies, newlines included.
    #[arg(long, conflicts_with = "message")]
    pub framed: bool,
    /// Time to live: the broker drops a message not consumed within SECS of storing it.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub ttl: Option<Duration>,
    /// Deliver no earlier than SECS after storing.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub delay: Option<Duration>,
    /// The message's id, chosen by you: 32 hex digits (as `mw send` prints ids) or a
    /// decimal number. Sending again with the same id within the broker's dedup window
    /// (5 min) stores it once. Only with one message (MESSAGE or --file).
    #[arg(long, value_name = "ID", value_parser = parse_id)]
    pub id: Option<u128>,
}

/// Options of `mw recv`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecvArgs {
    /// The broker's address.
    #[command(flatten)]
    pub broker: BrokerAddr,
    /// Exit after N messages (default: run until interrupted).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Give up (exit 1) when no message arrives within SECS seconds of starting or of
    /// the previous message; default: wait forever.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Print each message as a JSON line: id, attempt, sent_at_ms and body (or body_hex
    /// when it is not UTF-8).
    #[arg(long, conflicts_with = "framed")]
    pub json: bool,
    /// Write each body length-framed (a 4-byte big-endian length, then the bytes), as
    /// `mw send --framed` reads them.
    #[arg(long)]
    pub framed: bool,
    /// The queue.
    pub queue: String,
}

/// Parses a message id: 32 hex digits (or `0x` and hex digits), else a decimal number.
///
/// # Errors
/// Anything else.
pub fn parse_id(s: &str) -> Result<u128, String> {
    let hex = s.strip_prefix("0x").or((s.len() == 32).then_some(s));
    let parsed = match hex {
        Some(h) => u128::from_str_radix(h, 16),
        None => s.parse::<u128>(),
    };
    parsed.map_err(|_| format!("{s:?}: expected 32 hex digits or a decimal number"))
}

/// Runs `mw send`, printing one line per message to `out`: its id once stored, or `-`
/// for a message the broker refused (named, with its line or message number, on stderr).
///
/// Every message gets its outcome: a refused one does not stop those after it (the
/// broker stores a batch's other messages anyway), so stdout line N always says what
/// became of input message N, and the command exits with an error naming the refused
/// ones. If the connection fails mid-batch, the messages of that batch have an unknown
/// outcome: the error names them and nothing after them is sent.
///
/// # Errors
///
/// An unreachable broker, refused messages, a lost connection, a failed read of the
/// input, `--id` with more than one message.
pub async fn send(args: SendArgs, out: &mut dyn Write) -> Result<(), BoxError> {
    let source = Source::from_flags(args.message.clone(), args.file.clone(), args.framed)?;
    if args.id.is_some() && !source.is_single() {
        return Err("--id names one message: give MESSAGE or --file".into());
    }
    let item = item_name(&source);
    let make = |body: Bytes| {
        let mut m = Message::new(body);
        if let Some(ttl) = args.ttl {
            m = m.with_ttl(ttl);
        }
        if let Some(delay) = args.delay {
            m = m.with_delay(delay);
        }
        if let Some(id) = args.id {
            m = m.with_id(id);
        }
        m
    };
    let broker =
        RemoteQueues::connect_with(&args.broker.addr, mw::cli_tls::client_config()).await?;
    let queue = broker.queue(&args.queue);
    let single = source.is_single();
    let mut input = spawn_reader(source);
    if single {
        let body = input.recv().await.ok_or("no input")??;
        let id = queue.send(make(body)).await?;
        writeln!(out, "{id}")?;
        return Ok(());
    }
    // 1-based number of the next message read.
    let mut next_no = 1u64;
    let mut refused = Vec::new();
    let mut read_error = None;
    while read_error.is_none() {
        let Some(first) = input.recv().await else {
            break;
        };
        let mut batch = vec![make(first?)];
        // Whatever else is already read joins the batch.
        while batch.len() < SEND_BATCH {
            match input.try_recv() {
                Ok(Ok(body)) => batch.push(make(body)),
                Ok(Err(e)) => {
                    read_error = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        let first_no = next_no;
        let last_no = next_no + batch.len() as u64 - 1;
        next_no = last_no + 1;
        let results = queue.send_batch(batch).await.map_err(|e| {
            // The broker refusing the whole batch (a name, a permission) stored none of it;
            // a failed call leaves the outcome unknown.
            let outcome = if e.refusal().is_some() {
                "not stored"
            } else {
                "may or may not be stored"
            };
            let which = if first_no == last_no {
                format!("{item} {first_no}")
            } else {
                format!("{item}s {first_no}-{last_no}")
            };
            format!(
                "{which} {outcome} (nothing after it was sent): {}",
                mw::run::chain(&e)
            )
        })?;
        for (n, result) in (first_no..).zip(results) {
            match result {
                Ok(id) => writeln!(out, "{id}")?,
                Err(e) => {
                    writeln!(out, "-")?;
                    eprintln!("mw send: {item} {n} not stored: {e}");
                    refused.push(n);
                }
            }
        }
        out.flush()?;
    }
    if let Some(e) = read_error {
        return Err(format!(
            "reading {item} {next_no} failed (every {item} before it was sent): {e}"
        )
        .into());
    }
    refused_error(item, "stored", &refused)
}

/// `Ok` when nothing was refused, else the error naming the refused items:
/// `line 6 was not stored; every other line was`.
///
/// # Errors
/// As described.
pub fn refused_error(item: &str, done: &str, refused: &[u64]) -> Result<(), BoxError> {
    match refused {
        [] => Ok(()),
        [n] => Err(format!("{item} {n} was not {done}; every other {item} was").into()),
        many => Err(format!(
            "{} {item}s were not {done} ({item}s {}); every other {item} was",
            many.len(),
            many.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into()),
    }
}

/// Runs `mw recv`, printing each body to `out` (a line, a JSON line or a frame) and
/// acknowledging it after.
///
/// # Errors
///
/// An unreachable or lost broker, an invalid or unknown queue name, a failed write to
/// `out`, no message within `--timeout`.
pub async fn recv(args: RecvArgs, out: &mut dyn Write) -> Result<(), BoxError> {
    let broker =
        RemoteQueues::connect_with(&args.broker.addr, mw::cli_tls::client_config()).await?;
    check_known(&broker, &args.queue).await?;
    let queue = broker.queue(&args.queue);
    let options = ConsumerOptions {
        // Small: whatever the broker pushed ahead is stranded until the visibility
        // timeout if we are interrupted.
        prefetch: 16,
        ..Default::default()
    };
    let mut consumer = match args.count {
        Some(0) => return Ok(()),
        Some(n) => queue.consumer_with_limit(options, n).await?,
        None => queue.consumer(options).await?,
    };
    let mut received = 0u64;
    let interrupted = mw::run::wait_for_signal();
    tokio::pin!(interrupted);
    // Acks run in the background so that printing the next message need not wait for
    // the previous ack's fsync; there are at most `prefetch` of them, since the broker
    // sends nothing more until deliveries are settled.
    let mut acks = tokio::task::JoinSet::new();
    while args.count.is_none_or(|n| received < n) {
        let next = async {
            match args.timeout {
                Some(t) => tokio::time::timeout(t, consumer.recv()).await.ok(),
                None => Some(consumer.recv().await),
            }
        };
        let d = tokio::select! {
            d = next => match d {
                Some(d) => d?,
                None => {
                    // Settle what was printed before giving up.
                    while let Some(done) = acks.join_next().await {
                        done??;
                    }
                    let secs = args.timeout.unwrap_or_default().as_secs_f64();
                    return Err(format!("no message on queue {} within {secs} s", args.queue).into());
                }
            },
            () = &mut interrupted => break,
        };
        if args.json {
            let (key, body) = body_json(d.body());
            let line = serde_json::json!({
                "queue": args.queue,
                "id": d.id().to_string(),
                "attempt": d.attempt(),
                "sent_at_ms": d.sent_at_ms(),
                key: body,
            });
            writeln!(out, "{line}")?;
        } else if args.framed {
            write_framed(out, d.body())?;
        } else {
            writeln!(out, "{}", String::from_utf8_lossy(d.body()))?;
        }
        out.flush()?;
        acks.spawn(d.ack());
        received += 1;
        while let Some(done) = acks.try_join_next() {
            done??;
        }
    }
    // Everything printed is acked before we exit.
    while let Some(done) = acks.join_next().await {
        done??;
    }
    Ok(())
}

/// Refuses a queue name the broker does not list ([`QueueError::UnknownQueue`]), so that
/// receiving from a mistyped name fails at once instead of waiting forever. The
/// dead-letter queue `NAME.dlq` of a listed queue is known even before its first dead
/// letter.
///
/// # Errors
/// [`QueueError::InvalidQueueName`], [`QueueError::UnknownQueue`], a failed call.
pub async fn check_known(broker: &RemoteQueues, name: &str) -> Result<(), BoxError> {
    mw::queue::remote::check_remote_name(name)?;
    let list = broker.queues().await?;
    let base = name.strip_suffix(".dlq");
    if list
        .iter()
        .any(|q| q.name == name || Some(q.name.as_str()) == base)
    {
        Ok(())
    } else {
        // Listings show a logged-in user only their queues: ask for the queue itself,
        // so that one the user may not read is refused as such, not called unknown.
        broker.queue(name).peek(0).await?;
        Err(QueueError::UnknownQueue(name.to_string()).into())
    }
}

/// Options of `mw queues` (and `mw queue list`).
#[derive(Debug, Clone, clap::Args)]
pub struct QueuesArgs {
    /// The broker's address.
    #[command(flatten)]
    pub broker: BrokerAddr,
    /// Print a JSON array of objects (name, depth, delayed, in_flight, consumers,
    /// dead_letters) instead of the table; names are never shortened.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mw queues`, printing a table (or JSON) to `out`.
///
/// # Errors
///
/// An unreachable broker.
pub async fn queues(args: QueuesArgs, out: &mut dyn Write) -> Result<(), BoxError> {
    let broker =
        RemoteQueues::connect_with(&args.broker.addr, mw::cli_tls::client_config()).await?;
    let list = broker.queues().await?;
    if args.json {
        writeln!(out, "{}", queues_json(&list))?;
    } else {
        write_table(&list, out)?;
    }
    Ok(())
}

/// `queues` as a JSON array, one object per queue.
pub fn queues_json(queues: &[QueueInfo]) -> serde_json::Value {
    queues
        .iter()
        .map(|q| {
            serde_json::json!({
                "name": q.name,
                "depth": q.depth,
                "delayed": q.delayed,
                "in_flight": q.in_flight,
                "consumers": q.consumers,
                "dead_letters": q.dead_letters,
            })
        })
        .collect()
}

/// Widest the QUEUE column gets; longer names are shortened in the middle with `…`.
const MAX_NAME_WIDTH: usize = 40;

/// `name` in at most [`MAX_NAME_WIDTH`] characters: its start and its end (where the
/// `.dlq` and `xmit.` parts are) with `…` between.
fn shorten(name: &str) -> String {
    let len = name.chars().count();
    if len <= MAX_NAME_WIDTH {
        return name.to_string();
    }
    let tail = (MAX_NAME_WIDTH - 1) / 2;
    let head = MAX_NAME_WIDTH - 1 - tail;
    let start: String = name.chars().take(head).collect();
    let end: String = name.chars().skip(len - tail).collect();
    format!("{start}…{end}")
}

/// Writes `queues` as an aligned table with a header line. Names longer than 40
/// characters are shortened in the middle (`orders.eu-wes…tbound.dlq`).
///
/// # Errors
///
/// A failed write.
pub fn write_table(queues: &[QueueInfo], out: &mut dyn Write) -> std::io::Result<()> {
    let names: Vec<String> = queues.iter().map(|q| shorten(&q.name)).collect();
    let width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max("QUEUE".len());
    writeln!(
        out,
        "{:<width$}  {:>10}  {:>10}  {:>10}  {:>12}",
        "QUEUE", "DEPTH", "IN FLIGHT", "CONSUMERS", "DEAD LETTERS"
    )?;
    for (q, name) in queues.iter().zip(&names) {
        writeln!(
            out,
            "{:<width$}  {:>10}  {:>10}  {:>10}  {:>12}",
            name, q.depth, q.in_flight, q.consumers, q.dead_letters
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_under_the_header() {
        let q = |name: &str, depth| QueueInfo {
            name: name.into(),
            depth,
            delayed: 0,
            in_flight: 1,
            consumers: 2,
            dead_letters: 3,
        };
        let mut out = Vec::new();
        write_table(&[q("a", 5), q("orders.dlq", 12345)], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("QUEUE     "));
        assert!(lines[2].starts_with("orders.dlq"));
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
        assert!(lines[1].contains("    5"));
    }

    #[test]
    fn long_queue_names_are_shortened_and_columns_stay_aligned() {
        let q = |name: &str| QueueInfo {
            name: name.into(),
            depth: 1,
            delayed: 0,
            in_flight: 0,
            consumers: 0,
            dead_letters: 0,
        };
        let long = format!("orders.{}.dlq", "x".repeat(200));
        let mut out = Vec::new();
        write_table(&[q("a"), q(&long)], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let width = lines[0].chars().count();
        assert!(width <= 100, "table is {width} columns wide:\n{text}");
        assert!(lines.iter().all(|l| l.chars().count() == width), "{text}");
        // The start and the end of the name both show.
        assert!(lines[2].starts_with("orders.xxx"), "{text}");
        assert!(lines[2].contains("x.dlq "), "{text}");
        assert!(lines[2].contains('…'), "{text}");
    }
}
