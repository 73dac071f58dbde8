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
//! | module | owns |
//! |---|---|
//! | `segment` | segment naming, the segment header, record framing (length + CRC32C) |
//! | `record` | the record kinds and their payload encoding |
//! | `recovery` | scanning segments on open, torn-tail truncation, [`RecoveryReport`] |
//! | `log` | the writer thread, group commit, [`FsyncPolicy`], segment roll and deletion, reads, [`LogStats`] |
//! | `index` | the in-memory index and every queue state transition, [`QueueStats`], [`MemoryStats`] |
//! | `backlog` | reading a queue's spilled backlog back from its segments |
//! | `manager` | [`QueueManager`]: open, replay, the timer task, shared operations |
//! | `queue` | [`Queue`]: send, tag-based settling, redrive |
//! | `consumer` | [`Consumer`], [`ConsumerOptions`]: credit-limited fetching |
//! | `delivery` | [`Delivery`], [`DeliveryTag`] |
//! | `message` | [`Message`], [`MessageId`] |
//! | [`remote`] | the broker's `mw.queue` service and its client ([`remote::RemoteQueues`]) |
//! | `config`, `clock`, `error` | [`Config`], [`Clock`], [`Error`] |
//! | [`forward`] | store and forward: [`forward::Forwarder`], [`forward::Router`] with its [`forward::RoutingTable`], [`forward::Outbox`] |
//!
//! Dependencies point one way: `segment` → `record` → `recovery` → `backlog` →
//! `log` → `index` → `manager` → `queue`/`consumer`/`delivery`.
//!
//! # Segment format
//!
//! The data directory holds segment files named after the first log sequence
//! number (LSN) they may hold, zero-padded to 20 digits so listings sort in log
//! order (`00000000000000000001.seg`), and a `LOCK` file (held with `flock`
//! while a manager has the directory open). Every integer is little-endian.
//!
//! ```text
//! segment file
//! +---------------------------+---------+---------+-----+---------+
//! | header (24 bytes)         | frame 0 | frame 1 | ... | frame n |
//! +---------------------------+---------+---------+-----+---------+
//!
//! header
//!  0        8         10      12          16                24
//!  +--------+---------+-------+-----------+-----------------+
//!  | magic  | version | flags | reserved  | first LSN (u64) |
//!  |"MWQSEG\r\n"| u16 = 1 | u16 = 0 | u32 = 0 |             |
//!  +--------+---------+-------+-----------+-----------------+
//!
//! frame
//!  0            4            8
//!  +------------+------------+------------------------------+
//!  | length u32 | crc32c u32 | payload (length bytes)       |
//!  +------------+------------+------------------------------+
//!  length: payload bytes, 9 ..= 64 MiB (0 never occurs in a valid frame)
//!  crc32c: CRC-32C (Castagnoli) over the 4 length bytes, then the payload
//! ```
//!
//! ## Record payloads
//!
//! Every payload starts with a kind byte and the record's LSN. LSNs strictly
//! increase through the log (there may be gaps). A message is named by the LSN
//! of its `ENQUEUE` record; the other records refer to it as `target`. A queue
//! name `q` is written as a length byte (1..=255) and that many UTF-8 bytes.
//!
//! ```text
//! kind 1 ENQUEUE | lsn u64 | flags u8 | id u128 | sent_at u64 | expires_at u64 | not_before u64 | q | body ...
//!                  flags bit 0: the producer chose the id (it enters the dedup window)
//!                  times are ms since the Unix epoch; expires_at 0 = never; not_before 0 = at once
//! kind 2 DELIVER | lsn u64 | q | target u64 | delivery u32      (the delivery count so far)
//! kind 3 SETTLE  | lsn u64 | q | target u64 | reason u8         (0 acked, 1 expired, 2 dropped)
//! kind 4 NACK    | lsn u64 | q | target u64 | not_before u64    (returned; 0 = visible at once)
//! kind 5 MOVE    | lsn u64 | q | target u64 | to                (dead-lettered or redriven to queue `to`)
//! ```
//!
//! Replaying these in order rebuilds every queue: a message is live from its
//! `ENQUEUE` until a `SETTLE`; `DELIVER` restores delivery counts (so
//! `max_attempts` survives a crash); a message delivered but not settled at a
//! crash is visible again at once. The log is never rewritten: a `MOVE` makes
//! the message belong to another queue without copying its body.
//!
//! ## Recovery
//!
//! On open every segment is scanned. In the **last** segment, a frame cut off
//! by the end of the file, a zero (or impossible) length followed only by zero
//! bytes, or a CRC mismatch not followed by another valid frame is a torn
//! tail: the file is truncated there and [`RecoveryReport::torn_tail`] says
//! where. Any other bad frame (in a non-last segment, or followed by a valid
//! frame) is [`Error::Corrupt`] naming the file and byte offset; nothing is
//! ever skipped silently. A segment whose header was cut short by a crash
//! during its creation gets its header rewritten.
//!
//! ## Deleting segments
//!
//! A closed segment is deleted once it, and every segment before it, holds no
//! live message and no producer-chosen id still inside the dedup window. Only
//! a prefix of the log is ever deleted, so a `SETTLE` is never lost while the
//! message it settles is still on disk. The active segment is synced before
//! deleting, so the records that made a segment dead are durable first.
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
//! disk. See the `index` module for the full table; [`QueueManager::memory`]
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

mod backlog;
mod clock;
mod config;
mod consumer;
mod delivery;
mod error;
pub mod forward;
mod index;
mod log;
mod manager;
mod message;
mod queue;
mod record;
mod recovery;
pub mod remote;
mod segment;

pub use clock::Clock;
pub use config::{Config, FsyncPolicy, MAX_MESSAGE_SIZE};
pub use consumer::{Consumer, ConsumerOptions};
pub use delivery::{Delivery, DeliveryTag};
pub use error::{Error, Result};
pub use index::{ConsumerInfo, MemoryStats, QueueStats, Waiting};
pub use log::{LogStats, FSYNC_BUCKETS_SECONDS};
pub use manager::{Peeked, QueueManager};
pub use message::{Message, MessageId};
pub use queue::Queue;
pub use recovery::{RecoveryReport, TornTail};
