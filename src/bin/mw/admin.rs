//! The administration verbs, grouped by what they act on (as `rabbitmqctl` and `nats`
//! group theirs), each with `--json` output for scripts:
//!
//! | verb | does | prints (`--json`) |
//! |---|---|---|
//! | `mw queue list` | queues and their counters (as `mw queues`) | `[{"name",..}]` |
//! | `mw queue peek QUEUE [--count N]` | up to N waiting messages, not delivered | one line each (`{"id","deliveries","waiting","sent_at_ms","body"}` lines) |
//! | `mw queue purge QUEUE` | drops the waiting messages (not those in flight) | `purged N messages from QUEUE` (`{"queue","purged"}`) |
//! | `mw queue delete QUEUE` | drops every message and the queue; refused while consumed | `deleted QUEUE (N messages)` (`{"queue","deleted"}`) |
//! | `mw queue redrive QUEUE` | moves `QUEUE.dlq` back to QUEUE | `moved N messages from QUEUE.dlq to QUEUE` (`{"queue","moved"}`) |
//! | `mw durable list` | durable subscriptions: pattern, stored events, readers | table (`[{"name",..}]`) |
//! | `mw durable delete NAME` | stops collecting and discards the stored events | `deleted durable subscription NAME` (`{"durable","deleted"}`) |
//! | `mw conn list` | client connections: id, peer, opened, calls | table (`[{"id","peer","opened_at_ms","calls"}]`) |
//! | `mw conn close ID` | closes a connection at once | `closed connection ID` (`{"connection","closed"}`) |
//! | `mw consumer list` | queue consumers: id, queue, unacked deliveries | table (`[{"id","queue","unacked"}]`) |
//! | `mw consumer close ID` | ends a consumer; what it held is redelivered | `closed consumer ID` (`{"consumer","closed"}`) |
//! | `mw retained clear TOPIC` | forgets the topic's retained message | `cleared the retained message of TOPIC` (`{"topic","cleared"}`) |
//!
//! A name the broker does not know is an error (exit 1) naming it, never created.

use std::io::Write;

use crate::input::body_json;
use crate::queue::{check_known, queues_json, write_table, QueuesArgs};
use mw::cli_args::BrokerAddr;
use mw::pubsub::RemoteBus;
use mw::queue::remote::{RemoteQueues, WireWaiting};
use mw::run::BoxError;

/// The broker flag and `--json`, shared by every admin verb.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// The broker's address.
    #[command(flatten)]
    pub broker: BrokerAddr,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `mw queue` verbs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum QueueVerb {
    /// List queues: depth, in flight, consumers, dead letters.
    List(QueuesArgs),
    /// Show up to N waiting messages in delivery order, without delivering them.
    Peek {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
        /// How many messages at most (the broker answers at most 1000).
        #[arg(long, value_name = "N", default_value_t = 10)]
        count: u32,
        /// The queue.
        queue: String,
    },
    /// Drop every message waiting in QUEUE (deliveries in flight stay).
    Purge {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
        /// The queue.
        queue: String,
    },
    /// Drop every message of QUEUE, in flight too, and the queue (refused while
    /// consumers are attached; its dead-letter queue stays).
    Delete {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
        /// The queue.
        queue: String,
    },
    /// Move the messages of QUEUE.dlq back to QUEUE, their delivery counts reset.
    Redrive {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
        /// The queue (not its .dlq).
        queue: String,
    },
}

/// `mw durable` verbs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DurableVerb {
    /// List durable subscriptions: pattern, stored events, connected readers.
    List {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
    },
    /// Delete the durable subscription NAME: it stops collecting and its stored events
    /// are discarded.
    Delete {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
        /// The durable subscription's name.
        name: String,
    },
}

/// `mw conn` verbs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConnVerb {
    /// List the broker's client connections: id, peer, opened, calls started.
    List {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
    },
    /// Close connection ID at once (its consumers and subscriptions end with it; what
    /// they had not acknowledged is redelivered).
    Close {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
        /// The connection's id, as `mw conn list` shows it.
        id: u64,
    },
}

/// Runs a `mw conn` verb, printing to `out`.
///
/// # Errors
/// An unreachable broker, an id that is not an open connection (close).
pub async fn conn(verb: ConnVerb, out: &mut dyn Write) -> Result<(), BoxError> {
    let connect = |addr: String| async move {
        mw_rpc::Channel::connect_with(&addr, mw::cli_tls::client_config())
            .await
            .map(mw::admin::AdminClient::new)
            .map_err(|e| -> BoxError {
                format!("cannot reach broker at {addr}: {}", mw::run::chain(&e)).into()
            })
    };
    match verb {
        ConnVerb::List { common } => {
            let list = connect(common.broker.addr).await?.connections().await?;
            if common.json {
                writeln!(out, "{}", serde_json::to_string(&list)?)?;
            } else {
                writeln!(
                    out,
                    "{:>6}  {:<24}  {:>15}  {:>10}",
                    "ID", "PEER", "OPENED (UNIX)", "CALLS"
                )?;
                for c in list {
                    writeln!(
                        out,
                        "{:>6}  {:<24}  {:>15}  {:>10}",
                        c.id,
                        c.peer,
                        c.opened_at_ms / 1000,
                        c.calls
                    )?;
                }
            }
        }
        ConnVerb::Close { common, id } => {
            if !connect(common.broker.addr)
                .await?
                .close_connection(id)
                .await?
            {
                return Err(format!("no open connection {id}").into());
            }
            let v = serde_json::json!({ "connection": id, "closed": true });
            print(out, common.json, v, format!("closed connection {id}"))?;
        }
    }
    Ok(())
}

/// `mw consumer` verbs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConsumerVerb {
    /// List the consumers attached at the broker: id, queue, deliveries held unacked.
    List {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
    },
    /// Close consumer ID: its stream ends with an error; what it held unacked is
    /// redelivered after the visibility timeout.
    Close {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
        /// The consumer's id, as `mw consumer list` shows it.
        id: u64,
    },
}

/// Runs a `mw consumer` verb, printing to `out`.
///
/// # Errors
/// An unreachable broker, an id that is not an attached consumer (close).
pub async fn consumer(verb: ConsumerVerb, out: &mut dyn Write) -> Result<(), BoxError> {
    match verb {
        ConsumerVerb::List { common } => {
            let list = queues(&common.broker.addr).await?.consumers().await?;
            if common.json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|c| serde_json::json!({ "id": c.id, "queue": c.queue, "unacked": c.unacked }))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Array(rows))?;
            } else {
                writeln!(out, "{:>8}  {:<40}  {:>8}", "ID", "QUEUE", "UNACKED")?;
                for c in list {
                    writeln!(out, "{:>8}  {:<40}  {:>8}", c.id, c.queue, c.unacked)?;
                }
            }
        }
        ConsumerVerb::Close { common, id } => {
            if !queues(&common.broker.addr)
                .await?
                .close_consumer(id)
                .await?
            {
                return Err(format!("no consumer {id} attached").into());
            }
            let v = serde_json::json!({ "consumer": id, "closed": true });
            print(out, common.json, v, format!("closed consumer {id}"))?;
        }
    }
    Ok(())
}

/// `mw retained` verbs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RetainedVerb {
    /// Forget TOPIC's retained message.
    Clear {
        /// The broker and the output format.
        #[command(flatten)]
        common: Common,
        /// The topic.
        topic: String,
    },
}

async fn queues(addr: &str) -> Result<RemoteQueues, BoxError> {
    Ok(RemoteQueues::connect_with(addr, mw::cli_tls::client_config()).await?)
}

async fn bus(addr: &str) -> Result<RemoteBus, BoxError> {
    RemoteBus::connect_with(addr, mw::cli_tls::bus_config())
        .await
        .map_err(|e| format!("cannot reach broker at {addr}: {}", mw::run::chain(&e)).into())
}

fn print(
    out: &mut dyn Write,
    json: bool,
    value: serde_json::Value,
    text: String,
) -> Result<(), BoxError> {
    if json {
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "{text}")?;
    }
    Ok(())
}

/// Runs a `mw queue` verb, printing to `out`.
///
/// # Errors
/// An unreachable broker, an unknown or invalid queue, a queue in use (delete), storage
/// errors at the broker.
pub async fn queue(verb: QueueVerb, out: &mut dyn Write) -> Result<(), BoxError> {
    match verb {
        QueueVerb::List(args) => {
            let broker = queues(&args.broker.addr).await?;
            let list = broker.queues().await?;
            if args.json {
                writeln!(out, "{}", queues_json(&list))?;
            } else {
                write_table(&list, out)?;
            }
        }
        QueueVerb::Peek {
            common,
            count,
            queue,
        } => {
            let broker = queues(&common.broker.addr).await?;
            let found = broker.queue(&queue).peek(count).await?;
            for m in found {
                let id = mw::queue::MessageId(m.id).to_string();
                let (state, due) = match m.waiting {
                    WireWaiting::Ready => ("ready", None),
                    WireWaiting::Returned => ("returned", None),
                    WireWaiting::Delayed { due_ms } => ("delayed", Some(due_ms)),
                };
                if common.json {
                    let (key, body) = body_json(&m.body);
                    let mut v = serde_json::json!({
                        "queue": queue,
                        "id": id,
                        "deliveries": m.deliveries,
                        "waiting": state,
                        "sent_at_ms": m.sent_at_ms,
                        key: body,
                    });
                    if let Some(d) = due {
                        v["due_ms"] = d.into();
                    }
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(
                        out,
                        "{id} {state} {} {}",
                        m.deliveries,
                        String::from_utf8_lossy(&m.body)
                    )?;
                }
            }
        }
        QueueVerb::Purge { common, queue } => {
            let broker = queues(&common.broker.addr).await?;
            let n = broker.queue(&queue).purge().await?;
            let v = serde_json::json!({ "queue": queue, "purged": n });
            print(
                out,
                common.json,
                v,
                format!("purged {n} messages from {queue}"),
            )?;
        }
        QueueVerb::Delete { common, queue } => {
            let broker = queues(&common.broker.addr).await?;
            let n = broker.queue(&queue).delete().await?;
            let v = serde_json::json!({ "queue": queue, "deleted": n });
            print(
                out,
                common.json,
                v,
                format!("deleted {queue} ({n} messages)"),
            )?;
        }
        QueueVerb::Redrive { common, queue } => {
            let broker = queues(&common.broker.addr).await?;
            check_known(&broker, &queue).await?;
            let n = broker.queue(&queue).redrive().await?;
            let v = serde_json::json!({ "queue": queue, "moved": n });
            let text = format!("moved {n} messages from {queue}.dlq to {queue}");
            print(out, common.json, v, text)?;
        }
    }
    Ok(())
}

/// Runs a `mw durable` verb, printing to `out`.
///
/// # Errors
/// An unreachable broker, an unknown durable subscription (delete).
pub async fn durable(verb: DurableVerb, out: &mut dyn Write) -> Result<(), BoxError> {
    match verb {
        DurableVerb::List { common } => {
            let stats = bus(&common.broker.addr).await?.stats().await?;
            if common.json {
                let rows: Vec<_> = stats
                    .durable
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "name": d.name, "pattern": d.pattern, "stored": d.depth,
                            "readers": d.sessions, "refused": d.refused,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::Value::Array(rows))?;
            } else {
                writeln!(
                    out,
                    "{:<24}  {:<24}  {:>10}  {:>8}",
                    "NAME", "PATTERN", "STORED", "READERS"
                )?;
                for d in &stats.durable {
                    writeln!(
                        out,
                        "{:<24}  {:<24}  {:>10}  {:>8}",
                        d.name, d.pattern, d.depth, d.sessions
                    )?;
                }
            }
        }
        DurableVerb::Delete { common, name } => {
            let existed = bus(&common.broker.addr)
                .await?
                .unsubscribe_durable(&name)
                .await?;
            if !existed {
                return Err(format!("no durable subscription named {name:?}").into());
            }
            let v = serde_json::json!({ "durable": name, "deleted": true });
            print(
                out,
                common.json,
                v,
                format!("deleted durable subscription {name}"),
            )?;
        }
    }
    Ok(())
}

/// Runs a `mw retained` verb, printing to `out`.
///
/// # Errors
/// An unreachable broker, an invalid topic, a topic without a retained message.
pub async fn retained(verb: RetainedVerb, out: &mut dyn Write) -> Result<(), BoxError> {
    match verb {
        RetainedVerb::Clear { common, topic } => {
            mw::pubsub::Topic::new(&topic)?;
            let had = bus(&common.broker.addr)
                .await?
                .clear_retained(topic.as_str())
                .await?;
            if !had {
                return Err(format!("topic {topic} has no retained message").into());
            }
            let v = serde_json::json!({ "topic": topic, "cleared": true });
            print(
                out,
                common.json,
                v,
                format!("cleared the retained message of {topic}"),
            )?;
        }
    }
    Ok(())
}
