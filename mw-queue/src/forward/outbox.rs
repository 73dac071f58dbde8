//! [`Outbox`]: the persistent asynchronous client. `send` returns once the
//! message is in a local persistent queue; a [`Forwarder`] delivers it to the
//! broker whenever the broker is reachable.

use std::path::Path;
use std::sync::Arc;

use super::envelope;
use super::forwarder::{Forwarder, ForwarderConfig, ForwarderStats};
use super::hop::NextHop;
use crate::config::Config;
use crate::engine::manager::QueueManager;
use crate::error::Result;
use crate::message::{Message, MessageId};
use crate::name::QueueName;

/// The local queue an outbox keeps its messages in.
pub const OUTBOX_QUEUE: &str = "outbox";

/// Settings of an [`Outbox`].
#[derive(Debug, Clone)]
// Not `#[non_exhaustive]`: built with struct-update syntax, like `Config`.
pub struct OutboxConfig {
    /// The local queue manager's configuration. Default: [`Config::default`] with
    /// `max_attempts: None`, so restarts while the broker is away never dead-letter
    /// a pending message.
    pub queues: Config,
    /// The forwarder's tunables. Default: [`ForwarderConfig::default`].
    pub forwarder: ForwarderConfig,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            queues: Config {
                max_attempts: None,
                ..Config::default()
            },
            forwarder: ForwarderConfig::default(),
        }
    }
}

/// What an [`Outbox`] holds and has done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxStats {
    /// Messages not yet confirmed by the broker.
    pub pending: u64,
    /// Messages the broker refused for good, kept in the local queue `outbox.dlq`.
    pub dead_letters: u64,
    /// The forwarder's counters.
    pub forwarder: ForwarderStats,
}

/// A persistent outbox: the *persistent asynchronous* mode of communication.
///
/// [`send`](Outbox::send) returns as soon as the message is durable in a local
/// queue manager on `local_dir`, whether or not the broker is running; a
/// background [`Forwarder`] delivers it to the broker's queue when the broker is
/// reachable, retrying with backoff, in send order, with the message's id so the
/// broker stores it once even if it is resent. Messages still pending when the
/// process stops are delivered after the outbox is opened again on the same
/// directory.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> mw_queue::Result<()> {
/// use std::sync::Arc;
/// use mw_queue::forward::Outbox;
/// use mw_queue::{Config, Message, QueueManager};
///
/// let (local, remote) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
/// // A stand-in for the broker: an in-process queue manager.
/// let broker = QueueManager::open(remote.path(), Config::default()).await?;
/// let outbox = Outbox::with_hop(local.path(), Arc::new(broker.clone()), Default::default()).await?;
/// outbox.send("orders", Message::new("one widget")).await?; // durable locally
/// outbox.drained().await?;                                  // and now at the broker
/// assert_eq!(outbox.stats().pending, 0);
/// assert_eq!(broker.stats("orders").depth, 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Outbox {
    qm: QueueManager,
    forwarder: Forwarder,
}

impl Outbox {
    /// Opens (creating if needed) the outbox on `local_dir`, delivering to the
    /// broker at `broker_addr` (`HOST:PORT` or `unix:PATH`) through its `mw.queue`
    /// service. Does not contact the broker: sends work while it is down. Messages
    /// left pending by an earlier run are delivered too.
    ///
    /// # Errors
    ///
    /// As for [`QueueManager::open`] (the directory is locked by another outbox,
    /// corruption, I/O).
    pub async fn open(local_dir: impl AsRef<Path>, broker_addr: &str) -> Result<Outbox> {
        Outbox::with_hop(
            local_dir,
            Arc::new(super::remote_hop::RemoteHop::new(broker_addr)),
            OutboxConfig::default(),
        )
        .await
    }

    /// Opens (creating if needed) the outbox on `local_dir`, delivering to `hop`
    /// (for a broker, the `mw.queue` client as a [`NextHop`]). Messages left pending
    /// by an earlier run are delivered too.
    ///
    /// # Errors
    ///
    /// As for [`QueueManager::open`].
    pub async fn with_hop(
        local_dir: impl AsRef<Path>,
        hop: Arc<dyn NextHop>,
        config: OutboxConfig,
    ) -> Result<Outbox> {
        let qm = QueueManager::open(local_dir, config.queues).await?;
        let forwarder = Forwarder::spawn(qm.queue(OUTBOX_QUEUE), hop, config.forwarder);
        Ok(Outbox { qm, forwarder })
    }

    /// Stores `msg` for the broker's queue `queue` and returns its id once it is
    /// durable locally. Does not contact the broker.
    ///
    /// # Errors
    ///
    /// Local storage errors, as for [`Queue::send`](crate::Queue::send);
    /// [`Error::InvalidQueueName`](crate::Error::InvalidQueueName).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: a cancelled send may or may not be stored. Resend with the
    /// same producer-chosen id to be sure it is stored once.
    pub async fn send(&self, queue: &str, msg: Message) -> Result<MessageId> {
        QueueName::new(queue)?;
        let wrapped = envelope::wrap(queue, msg, mw_core::time::unix_ms());
        self.qm.queue(OUTBOX_QUEUE).send(wrapped).await
    }

    /// Messages not yet confirmed by the broker.
    pub fn pending(&self) -> u64 {
        self.forwarder.pending()
    }

    /// Counters.
    pub fn stats(&self) -> OutboxStats {
        let q = self.qm.stats(OUTBOX_QUEUE);
        OutboxStats {
            pending: q.depth + q.in_flight,
            dead_letters: q.dead_letters,
            forwarder: self.forwarder.stats(),
        }
    }

    /// Waits until every message sent so far (and any sent meanwhile) has been
    /// confirmed by the broker. Bound it with `tokio::time::timeout` if the broker
    /// may stay away.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](crate::Error::Closed) if the outbox is closed first.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (it only waits).
    pub async fn drained(&self) -> Result<()> {
        self.forwarder.drained().await
    }

    /// The local queue manager (for inspection).
    pub fn queue_manager(&self) -> &QueueManager {
        &self.qm
    }

    /// Stops forwarding and closes the local queue manager; pending messages stay on
    /// disk for the next [`open`](Outbox::with_hop).
    ///
    /// # Errors
    ///
    /// As for [`QueueManager::close`].
    pub async fn close(self) -> Result<()> {
        let Outbox { qm, forwarder } = self;
        forwarder.shutdown().await;
        qm.close().await
    }
}
