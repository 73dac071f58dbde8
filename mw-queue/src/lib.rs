//! Persistent store-and-forward queues for `mw`, embedded in the process.
//!
//! A [`QueueManager`] owns a data directory holding an append-only log of
//! segment files, and any number of named queues created on demand. Producers
//! [`send`](Queue::send) messages, which return once the message is durable;
//! consumers [`recv`](Consumer::recv) deliveries and settle each with
//! [`ack`](Delivery::ack), [`nack`](Delivery::nack) or
//! [`reject`](Delivery::reject). Everything is async and every handle is
//! cheap to clone. The network broker wraps this API; it can settle
//! deliveries by [`DeliveryTag`] without holding Rust objects for the remote
//! side.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> mw_queue::Result<()> {
//! use std::time::Duration;
//! use mw_queue::{Config, ConsumerOptions, Message, QueueManager};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let qm = QueueManager::open(dir.path(), Config::default()).await?;
//! let q = qm.queue("orders");
//! q.send(Message::new("first").with_ttl(Duration::from_secs(60))).await?;
//! let mut consumer = q.consumer(ConsumerOptions { prefetch: 10, ..Default::default() });
//! let d = consumer.recv().await?;
//! assert_eq!(d.attempt(), 1);
//! d.nack(None).await?;                       // try again
//! let d = consumer.recv().await?;
//! assert_eq!(d.attempt(), 2);
//! d.ack().await?;                            // done for good
//! assert_eq!(qm.stats("orders").depth, 0);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Four layers, each using only the ones before it (and the shared vocabulary
//! below); `scripts/module-cycles.py` checks that no modules import each other
//! in a circle.
//!
//! | layer | module | owns |
//! |---|---|---|
//! | vocabulary | `message`, `name`, `error`, `config`, `clock` | [`Message`], [`MessageId`], [`DeliveryTag`]; the checked queue name; [`Error`]; [`Config`], [`FsyncPolicy`]; [`Clock`] |
//! | storage | `storage` (`segment`, `record`, `recovery`, `reader`, `log`) | the segment log on disk: framing, record encoding, recovery, the writer thread and group commit, [`RecoveryReport`], [`LogStats`] |
//! | engine | `engine` (`backlog`, `index`, `shared`, `delivery`, `consumer`, `queue`, `manager`) | queue state in memory and every transition of it; [`QueueManager`], [`Queue`], [`Consumer`], [`Delivery`], [`QueueStats`], [`MemoryStats`] |
//! | service | [`remote`] | the broker's `mw.queue` service and its client ([`remote::RemoteQueues`]) |
//! | routing | [`forward`] | store and forward: [`forward::Forwarder`], [`forward::Router`] with its [`forward::RoutingTable`], [`forward::Outbox`] |
//!
//! The vocabulary modules import nothing above them; storage never imports the
//! engine; the engine never imports `remote` or `forward`; `forward` may use
//! `remote` (a broker as the next hop), never the reverse.
//!
//! The segment and record bytes are specified in `FORMAT.md` at the repository
//! root (checked by `tests/format_doc.rs`): segment files named after their first
//! log sequence number, a 24-byte header, frames of length + CRC-32C + payload,
//! five record kinds. Replaying the records in order rebuilds every queue.
//!
//! # Durability: fsync policy and group commit
//!
//! All writes happen on one dedicated thread (not a tokio worker). It takes
//! every append waiting in its queue, encodes them into one buffer, writes it
//! with one `pwrite`, and, for [`FsyncPolicy::Always`], calls `fdatasync` once
//! before completing all of their waiters: group commit. Under load a batch
//! fills while the previous fsync runs, so the number of records per fsync
//! grows with the number of concurrent senders ([`LogStats::records_per_fsync`]).
//! See [`FsyncPolicy`] for what each policy may lose. New segments and the
//! directory entry are fsynced when created; a segment is fsynced when closed.
//!
//! A write that fails (for instance `ENOSPC`, [`Error::DiskFull`]) is cut off
//! with `ftruncate` and every sender in that batch gets the error; nothing is
//! acknowledged. A failed fsync poisons the log ([`Error::Poisoned`]): after
//! one, the kernel may have dropped the dirty pages, so the only safe recovery
//! is to reopen.
//!
//! # Memory
//!
//! Message bodies are not kept in memory, and neither is a long backlog: the
//! index keeps 16 bytes (LSN, offset, length) for each of the first
//! [`Config::ready_head`] never-delivered messages of a queue, and remembers the
//! rest as runs of (segment, offset, count), 24 bytes per segment, read back
//! from the segments in order on the blocking pool as consumers drain the head.
//! So a queue's memory is bounded by its head and the number of segments, not
//! by the number of messages waiting. Bodies are read back from the segment on
//! delivery, except for a bounded cache of recently sent bodies
//! ([`Config::body_cache_bytes`]) that lets a consumer keeping up avoid the
//! disk. See the `engine::index` module for the full table; [`QueueManager::memory`]
//! reports the totals ([`MemoryStats::ready_slots`], [`MemoryStats::spilled_messages`],
//! [`MemoryStats::spilled_runs`]).
//!
//! # Semantics
//!
//! * **FIFO per queue**, competing consumers: each message goes to one
//!   consumer at a time. Messages returned to a queue (nacked, timed out,
//!   redriven) go ahead of newer ones, in send order.
//! * **At-least-once**: a delivery is invisible to others until it is settled
//!   or its visibility timeout ([`Config::visibility_timeout`], or per consumer)
//!   expires; then it is delivered again. [`Delivery::extend_visibility`]
//!   pushes the deadline. Dropping a [`Delivery`] does not settle it (it times
//!   out); dropping a [`Consumer`] returns the messages it prefetched but had
//!   not yet handed out at once.
//! * **Attempts and dead letters**: a message nacked or timed out after
//!   [`Config::max_attempts`] deliveries, or rejected, moves to the queue's
//!   dead-letter queue (`<queue>.dlq` by default, see
//!   [`Config::dead_letter_suffix`]); [`Queue::redrive`] moves them back.
//! * **TTL** ([`Message::with_ttl`]): an expired message is never delivered;
//!   it is discarded when it reaches the head of its queue. **Delayed
//!   delivery** ([`Message::with_delay`], [`Delivery::nack`] with a delay): not
//!   delivered before the time given.
//! * **Prefetch**: a consumer never holds more than
//!   [`ConsumerOptions::prefetch`] unsettled deliveries.
//! * **Queue length limit** ([`Config::max_queue_len`]): sends beyond it fail
//!   with [`Error::QueueFull`].
//! * **Dedup**: a send with a producer-chosen [`MessageId`] already stored
//!   within [`Config::dedup_window`] is acknowledged but stored once, also
//!   across restarts (the window is rebuilt from the log).
//! * **Stale tags**: settling a delivery whose visibility timeout expired
//!   fails with [`Error::DeliveryNotFound`]; the message will be redelivered.
#![deny(missing_docs)]
#![warn(rust_2018_idioms, unreachable_pub)]

mod clock;
mod config;
mod error;
mod message;
mod name;

mod storage;

mod engine;

pub mod remote;

pub mod forward;

pub use clock::Clock;
pub use config::{Config, FsyncPolicy, MAX_MESSAGE_SIZE};
pub use engine::consumer::{Consumer, ConsumerOptions};
pub use engine::delivery::Delivery;
pub use engine::index::{ConsumerInfo, MemoryStats, QueueStats, Waiting};
pub use engine::manager::{Peeked, QueueManager};
pub use engine::queue::Queue;
pub use error::{Error, Result};
pub use message::{DeliveryTag, Message, MessageId};
pub use storage::log::{LogStats, FSYNC_BUCKETS_SECONDS};
pub use storage::recovery::{RecoveryReport, TornTail};
