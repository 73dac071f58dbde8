//! A message handed to a consumer: [`Delivery`], named by its
//! [`DeliveryTag`](crate::DeliveryTag).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::engine::shared::Shared;
use crate::error::Result;
use crate::message::{DeliveryTag, MessageId};
use crate::name::QueueName;

/// A message delivered to a consumer, to be settled with [`ack`](Delivery::ack),
/// [`nack`](Delivery::nack) or [`reject`](Delivery::reject).
///
/// Dropping a `Delivery` without settling it does nothing: the message stays in
/// flight and becomes visible again when its visibility timeout expires. (So a
/// broker may keep only the [`tag`](Delivery::tag), drop the `Delivery`, and settle
/// later through the [`Queue`](crate::Queue).)
#[derive(Debug)]
#[must_use = "an unsettled delivery is redelivered after the visibility timeout"]
pub struct Delivery {
    pub(crate) shared: Arc<Shared>,
    pub(crate) queue: QueueName,
    pub(crate) tag: DeliveryTag,
    pub(crate) id: MessageId,
    pub(crate) body: Bytes,
    pub(crate) sent_at_ms: u64,
}

impl Delivery {
    /// The tag that names this delivery.
    pub fn tag(&self) -> DeliveryTag {
        self.tag
    }

    /// The message id.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Which delivery of this message this is in its current queue (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.tag.delivery
    }

    /// The queue it came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// When it was sent, in ms since the Unix epoch (by the manager's clock).
    pub fn sent_at_ms(&self) -> u64 {
        self.sent_at_ms
    }

    /// Acknowledges the message: it is gone for good once this returns `Ok`.
    ///
    /// # Errors
    ///
    /// [`Error::DeliveryNotFound`](crate::Error::DeliveryNotFound) if the visibility
    /// timeout already expired (the message will be delivered again); storage errors
    /// if the ack record could not be written.
    ///
    /// # Cancel safety
    ///
    /// The ack takes effect in memory at once; cancelling only stops waiting for it
    /// to become durable.
    pub async fn ack(self) -> Result<()> {
        self.shared.ack(&self.queue, self.tag).await
    }

    /// Returns the message to the queue, visible again after `delay` (at once for
    /// `None`). If it has used `Config::max_attempts` deliveries it goes to the
    /// dead-letter queue instead.
    ///
    /// # Errors
    ///
    /// As for [`ack`](Delivery::ack).
    pub async fn nack(self, delay: Option<Duration>) -> Result<()> {
        self.shared.nack(&self.queue, self.tag, delay).await
    }

    /// Moves the message to the dead-letter queue at once (or drops it if dead
    /// lettering is disabled).
    ///
    /// # Errors
    ///
    /// As for [`ack`](Delivery::ack).
    pub async fn reject(self) -> Result<()> {
        self.shared.reject(&self.queue, self.tag).await
    }

    /// Keeps the message invisible to other consumers for `by` from now.
    ///
    /// # Errors
    ///
    /// [`Error::DeliveryNotFound`](crate::Error::DeliveryNotFound) if the visibility
    /// timeout already expired.
    pub fn extend_visibility(&self, by: Duration) -> Result<()> {
        self.shared.extend_visibility(&self.queue, self.tag, by)
    }
}
