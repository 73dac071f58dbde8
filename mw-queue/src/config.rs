//! Tunables: [`Config`] for a queue manager and [`FsyncPolicy`] for its log.

use std::time::Duration;

use crate::clock::Clock;

/// When the log writer calls `fdatasync` on the active segment.
///
/// | policy | a `send` returns after | a power failure can lose | cost |
/// |---|---|---|---|
/// | `Always` (default) | the batch holding it was written **and fsynced** | nothing acknowledged | one fsync per batch (group commit) |
/// | `Interval(d)` | the batch was written to the OS page cache | up to `d` of acknowledged sends | one fsync per `d` |
/// | `Never` | the batch was written to the OS page cache | whatever the OS had not flushed | no fsync (except on segment roll) |
///
/// A process crash (as opposed to a power or kernel failure) loses nothing
/// acknowledged under any policy: acknowledgement always follows the `write`.
/// Segments are fsynced when they are closed, and before consumed segments are
/// deleted, under every policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// Group commit: every batch is fsynced before any of its senders is answered.
    #[default]
    Always,
    /// Fsync at most this long after a write (the writer wakes up to do it when idle).
    Interval(Duration),
    /// Leave flushing to the OS.
    Never,
}

/// The largest [`Config::max_message_size`] the segment format can hold: a record's
/// payload is at most 64 MiB, and it also carries the queue name and message metadata.
pub const MAX_MESSAGE_SIZE: usize = (64 << 20) - 4096;

/// Configuration of a [`QueueManager`](crate::QueueManager). Every field has a
/// documented default; start from `Config::default()` and change what you need.
///
/// ```
/// use std::time::Duration;
/// use mw_queue::{Config, FsyncPolicy};
/// let config = Config {
///     fsync: FsyncPolicy::Interval(Duration::from_millis(10)),
///     max_attempts: Some(3),
///     ..Config::default()
/// };
/// assert_eq!(config.visibility_timeout, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone)]
// Not `#[non_exhaustive]`: struct-update syntax (`..Default::default()`) is the
// intended way to build it, and that needs every field public and known.
pub struct Config {
    /// Durability of acknowledged sends. Default: [`FsyncPolicy::Always`].
    pub fsync: FsyncPolicy,
    /// A segment is closed and a new one started once it would grow past this many
    /// bytes. Larger segments mean fewer files and fsyncs of directory entries;
    /// smaller ones free disk sooner, since a segment is deleted only when nothing in
    /// it (and in the segments before it) is live. Default: 64 MiB; values are clamped
    /// to 1 KiB ..= 4 GiB − 1 (offsets inside a segment are 32-bit).
    pub segment_size: u64,
    /// How long a delivery stays invisible to other consumers before it is
    /// redelivered unless acked, nacked or extended. Default: 30 s.
    pub visibility_timeout: Duration,
    /// After this many deliveries without an ack, a message that is nacked or times
    /// out goes to the dead-letter queue. `None`: retry forever. Default: `Some(5)`.
    pub max_attempts: Option<u32>,
    /// The dead-letter queue of queue `q` is named `q` + this suffix. `None`: rejected
    /// and exhausted messages are dropped. Queues whose name ends with the suffix
    /// have no dead-letter queue of their own (their messages are retried forever).
    /// Default: `Some(".dlq")`.
    pub dead_letter_suffix: Option<String>,
    /// A send carrying a producer-chosen id already seen within this window is
    /// acknowledged but stored once. Rebuilt from the log on open; segments holding
    /// ids still inside the window are kept. Costs about 56 bytes of memory per
    /// producer-chosen id inside the window (generated ids are never tracked).
    /// Default: 5 min.
    pub dedup_window: Duration,
    /// Sends to a queue already holding this many messages (ready, delayed and in
    /// flight) fail with [`Error::QueueFull`](crate::Error::QueueFull). `None`:
    /// unlimited. Default: `None`.
    pub max_queue_len: Option<u64>,
    /// Largest accepted message body; larger sends fail with
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge). Default: 4 MiB. At most
    /// [`MAX_MESSAGE_SIZE`] (what a segment record can hold).
    pub max_message_size: usize,
    /// Most sends waiting for the log writer at once; further senders wait (they are
    /// not failed). Bounds memory while the disk is slow. Default: 65 536.
    pub max_pending_sends: usize,
    /// Bodies of recently sent messages are kept in memory up to this many bytes so
    /// that a consumer keeping up never reads the disk; beyond it, bodies are read
    /// back from the segment on delivery. Default: 32 MiB.
    pub body_cache_bytes: usize,
    /// Most never-delivered messages of one queue kept in memory as ready slots
    /// (16 bytes each). Beyond it a queue's backlog is *spilled*: it is remembered
    /// as runs of (segment, resume offset, count), 24 bytes per segment the backlog
    /// touches instead of 16 bytes per message, and read back from the segments
    /// in order (on the blocking pool) as consumers drain the in-memory head. So a
    /// backlog of millions of messages costs memory per segment, not per message.
    /// At least 1. Default: 16 384.
    pub ready_head: usize,
    /// Time source for TTLs, delays and visibility timeouts. Default:
    /// [`Clock::system`]; tests use [`Clock::manual`].
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fsync: FsyncPolicy::Always,
            segment_size: 64 << 20,
            visibility_timeout: Duration::from_secs(30),
            max_attempts: Some(5),
            dead_letter_suffix: Some(".dlq".to_string()),
            dedup_window: Duration::from_secs(300),
            max_queue_len: None,
            max_message_size: 4 << 20,
            max_pending_sends: 65_536,
            body_cache_bytes: 32 << 20,
            ready_head: 16_384,
            clock: Clock::system(),
        }
    }
}
