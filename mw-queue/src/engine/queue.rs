//! [`Queue`]: a cheap handle to one named queue, with the send side and the
//! tag-based settle operations a network broker needs.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::consumer::{Consumer, ConsumerOptions};
use crate::engine::index::QueueStats;
use crate::engine::shared::{lock, Shared};
use crate::error::{Error, Result};
use crate::message::DeliveryTag;
use crate::message::{Message, MessageId};
use crate::name::QueueName;

/// A handle to one named queue of a [`QueueManager`](crate::QueueManager). Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Queue {
    shared: Arc<Shared>,
    /// The name as given (what [`name`](Queue::name) shows, valid or not).
    given: Arc<str>,
    /// The name checked when the handle was made: operations on an invalid name fail
    /// with `InvalidQueueName`, or find no delivery to settle.
    name: Result<QueueName>,
}

impl Queue {
    pub(crate) fn new(shared: Arc<Shared>, name: &str) -> Queue {
        Queue {
            shared,
            given: name.into(),
            name: QueueName::new(name),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.given
    }

    /// The checked name, for operations that refuse an invalid one.
    fn checked(&self) -> Result<&QueueName> {
        self.name.as_ref().map_err(Clone::clone)
    }

    /// No queue can have an invalid name, so no delivery of one is in flight.
    fn not_in_flight(&self, tag: DeliveryTag) -> Error {
        Error::DeliveryNotFound {
            queue: self.given.to_string(),
            tag,
        }
    }

    /// Sends a message. Returns its id once it is durable according to
    /// [`Config::fsync`](crate::Config::fsync) (for `FsyncPolicy::Always`: after the
    /// fsync of the batch that holds it). A message carrying a producer-chosen id
    /// already seen within the dedup window returns `Ok` without storing it again.
    ///
    /// Waits (does not fail) while `Config::max_pending_sends` sends are already
    /// waiting for the disk.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`](crate::Error::QueueFull),
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge),
    /// [`Error::InvalidQueueName`](crate::Error::InvalidQueueName),
    /// [`Error::DiskFull`](crate::Error::DiskFull) and other storage errors (the
    /// message was then not stored), [`Error::Closed`](crate::Error::Closed).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: a cancelled send may or may not have been stored. Resend
    /// with the same producer-chosen id to be sure it is stored once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> mw_queue::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let qm = mw_queue::QueueManager::open(dir.path(), Default::default()).await?;
    /// use mw_queue::Message;
    /// let q = qm.queue("jobs");
    /// q.send(Message::new("x").with_id(7u128)).await?;
    /// q.send(Message::new("x").with_id(7u128)).await?; // a retry: stored once
    /// assert_eq!(q.stats().depth, 1);
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, msg: Message) -> Result<MessageId> {
        self.shared.send(self.checked()?, msg).await
    }

    /// Sends many messages at once, in order: they are enqueued together (consecutive
    /// in the queue and the log, sharing group commits) and each result says whether
    /// that message was stored, as for [`send`](Queue::send). A full queue may refuse
    /// the tail of a batch and accept its head.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: a cancelled batch may be partly stored. Resend it with the same
    /// producer-chosen ids to be sure each message is stored once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> mw_queue::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let qm = mw_queue::QueueManager::open(dir.path(), Default::default()).await?;
    /// use mw_queue::Message;
    /// let q = qm.queue("jobs");
    /// let results = q.send_batch((0..3).map(|i| Message::new(format!("{i}"))).collect()).await;
    /// assert!(results.iter().all(|r| r.is_ok()));
    /// assert_eq!(q.stats().depth, 3);
    /// # Ok(()) }
    /// ```
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Vec<Result<MessageId>> {
        match self.checked() {
            Ok(name) => self.shared.send_batch(name, msgs).await,
            Err(e) => msgs.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Attaches a consumer. Consumers of one queue compete: each message goes to one.
    pub fn consumer(&self, options: ConsumerOptions) -> Consumer {
        Consumer::new(
            self.shared.clone(),
            self.given.clone(),
            self.name.clone(),
            options,
        )
    }

    /// Acknowledges the delivery named by `tag` (see [`Delivery::ack`](crate::Delivery::ack)).
    ///
    /// # Errors
    ///
    /// [`Error::DeliveryNotFound`](crate::Error::DeliveryNotFound) for a stale tag;
    /// storage errors.
    pub async fn ack(&self, tag: DeliveryTag) -> Result<()> {
        match &self.name {
            Ok(name) => self.shared.ack(name, tag).await,
            Err(_) => Err(self.not_in_flight(tag)),
        }
    }

    /// Acknowledges many deliveries at once: their records are written together
    /// (sharing group commits). One result per tag, in order, as for
    /// [`ack`](Queue::ack).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> mw_queue::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let qm = mw_queue::QueueManager::open(dir.path(), Default::default()).await?;
    /// use mw_queue::{ConsumerOptions, Message};
    /// let q = qm.queue("jobs");
    /// q.send_batch(vec![Message::new("a"), Message::new("b")]).await;
    /// let mut c = q.consumer(ConsumerOptions::default());
    /// let tags = vec![c.recv().await?.tag(), c.recv().await?.tag()];
    /// assert!(q.ack_many(&tags).await.iter().all(|r| r.is_ok()));
    /// assert_eq!(q.stats().depth + q.stats().in_flight, 0);
    /// # Ok(()) }
    /// ```
    pub async fn ack_many(&self, tags: &[DeliveryTag]) -> Vec<Result<()>> {
        match &self.name {
            Ok(name) => self.shared.ack_many(name, tags).await,
            Err(_) => tags.iter().map(|&t| Err(self.not_in_flight(t))).collect(),
        }
    }

    /// Returns the delivery named by `tag` to the queue (see [`Delivery::nack`](crate::Delivery::nack)).
    ///
    /// # Errors
    ///
    /// As for [`ack`](Queue::ack).
    pub async fn nack(&self, tag: DeliveryTag, delay: Option<Duration>) -> Result<()> {
        match &self.name {
            Ok(name) => self.shared.nack(name, tag, delay).await,
            Err(_) => Err(self.not_in_flight(tag)),
        }
    }

    /// Dead-letters the delivery named by `tag` (see [`Delivery::reject`](crate::Delivery::reject)).
    ///
    /// # Errors
    ///
    /// As for [`ack`](Queue::ack).
    pub async fn reject(&self, tag: DeliveryTag) -> Result<()> {
        match &self.name {
            Ok(name) => self.shared.reject(name, tag).await,
            Err(_) => Err(self.not_in_flight(tag)),
        }
    }

    /// Extends the visibility timeout of the delivery named by `tag` to `by` from now.
    ///
    /// # Errors
    ///
    /// [`Error::DeliveryNotFound`](crate::Error::DeliveryNotFound) for a stale tag.
    pub fn extend_visibility(&self, tag: DeliveryTag, by: Duration) -> Result<()> {
        match &self.name {
            Ok(name) => self.shared.extend_visibility(name, tag, by),
            Err(_) => Err(self.not_in_flight(tag)),
        }
    }

    /// Moves every message of this queue's dead-letter queue back here. Returns how
    /// many moved.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn redrive(&self) -> Result<u64> {
        self.shared.redrive(self.checked()?).await
    }

    /// This queue's counters.
    pub fn stats(&self) -> QueueStats {
        match &self.name {
            Ok(name) => lock(&self.shared.state).stats(name),
            Err(_) => QueueStats::default(),
        }
    }
}
