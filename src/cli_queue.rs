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
//! Every failure is one plain line (`cannot connect to broker at ..`, `queue q is full`,
//! `broker disk full: ..`) and a non-zero exit code, via [`crate::run::exit_boxed`].

use std::io::Write;

use futures::FutureExt;
use tokio::io::AsyncBufReadExt;

use crate::queue::remote::{QueueError, QueueInfo, RemoteQueues};
use crate::queue::{ConsumerOptions, Message};
use crate::run::BoxError;

/// Most stdin lines sent in one batch by `mw send`.
const SEND_BATCH: usize = 1000;

/// Options of `mw send`.
#[derive(Debug, Clone)]
pub struct SendArgs {
    /// The broker's address.
    pub broker: String,
    /// The queue.
    pub queue: String,
    /// The message; `None` sends each line of stdin.
    pub message: Option<String>,
}

/// Options of `mw recv`.
#[derive(Debug, Clone)]
pub struct RecvArgs {
    /// The broker's address.
    pub broker: String,
    /// The queue.
    pub queue: String,
    /// Exit after this many messages.
    pub count: Option<u64>,
    /// Give up when no message arrives within this long (of starting, or of the
    /// previous message).
    pub timeout: Option<std::time::Duration>,
}

/// Runs `mw send`, printing one line per message to `out`: its id once stored, or `-`
/// for a line the broker refused (named, with its line number, on stderr).
///
/// Every line gets its outcome: a refused line does not stop the lines after it (the
/// broker stores a batch's other messages anyway), so stdout line N always says what
/// became of input line N, and the command exits with an error naming the refused
/// lines. If the connection fails mid-batch, the lines of that batch have an unknown
/// outcome: the error names them and nothing after them is sent.
///
/// # Errors
///
/// An unreachable broker, refused lines, a lost connection, a failed read of stdin.
pub async fn send(args: SendArgs, out: &mut dyn Write) -> Result<(), BoxError> {
    let broker = RemoteQueues::connect(&args.broker).await?;
    let queue = broker.queue(&args.queue);
    if let Some(m) = args.message {
        let id = queue.send(Message::new(m)).await?;
        writeln!(out, "{id}")?;
        return Ok(());
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut eof = false;
    // 1-based number of the next line read.
    let mut line_no = 1u64;
    let mut refused = Vec::new();
    while !eof {
        let Some(first) = lines.next_line().await? else {
            break;
        };
        let mut batch = vec![Message::new(first)];
        // Whatever else is already readable joins the batch; `next_line` is cancel-safe,
        // so a line half-read here is finished by the next call.
        while batch.len() < SEND_BATCH {
            match lines.next_line().now_or_never() {
                Some(Ok(Some(line))) => batch.push(Message::new(line)),
                Some(Ok(None)) => {
                    eof = true;
                    break;
                }
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        let first_no = line_no;
        let last_no = line_no + batch.len() as u64 - 1;
        line_no = last_no + 1;
        let results = queue.send_batch(batch).await.map_err(|e| {
            format!(
                "lines {first_no}-{last_no} may or may not be stored (nothing after them was sent): {}",
                crate::run::chain(&e)
            )
        })?;
        for (n, result) in (first_no..).zip(results) {
            match result {
                Ok(id) => writeln!(out, "{id}")?,
                Err(e) => {
                    writeln!(out, "-")?;
                    eprintln!("mw send: line {n} not stored: {e}");
                    refused.push(n);
                }
            }
        }
        out.flush()?;
    }
    match refused.as_slice() {
        [] => Ok(()),
        [n] => Err(format!("line {n} was not stored; every other line was").into()),
        many => Err(format!(
            "{} lines were not stored (lines {}); every other line was",
            many.len(),
            many.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into()),
    }
}

/// Runs `mw recv`, printing each body as a line to `out` and acknowledging it after.
///
/// # Errors
///
/// An unreachable or lost broker, an invalid queue name, a failed write to `out`.
pub async fn recv(args: RecvArgs, out: &mut dyn Write) -> Result<(), BoxError> {
    let broker = RemoteQueues::connect(&args.broker).await?;
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
    let interrupted = crate::run::wait_for_signal();
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
        writeln!(out, "{}", String::from_utf8_lossy(d.body()))?;
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
    crate::queue::remote::check_remote_name(name)?;
    let list = broker.queues().await?;
    let base = name.strip_suffix(".dlq");
    if list
        .iter()
        .any(|q| q.name == name || Some(q.name.as_str()) == base)
    {
        Ok(())
    } else {
        Err(QueueError::UnknownQueue(name.to_string()).into())
    }
}

/// Runs `mw queues`, printing a table to `out`.
///
/// # Errors
///
/// An unreachable broker.
pub async fn queues(broker: &str, out: &mut dyn Write) -> Result<(), BoxError> {
    let broker = RemoteQueues::connect(broker).await?;
    let list = broker.queues().await?;
    write_table(&list, out)?;
    Ok(())
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
