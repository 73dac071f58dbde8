//! The client side: [`RemoteQueues`], [`RemoteQueue`], [`RemoteConsumer`] and
//! [`RemoteDelivery`], mirroring [`QueueManager`](crate::QueueManager),
//! [`Queue`](crate::Queue), [`Consumer`](crate::Consumer) and
//! [`Delivery`](crate::Delivery).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mw_rpc::{Channel, ClientConfig, ClientStream, RpcError};

use super::service::{ConsumeItem, QueueServiceClient};
use super::wire::{QueueError, QueueInfo, WireDelivery, WireMessage};
use crate::consumer::ConsumerOptions;
use crate::delivery::DeliveryTag;
use crate::message::{Message, MessageId};

/// Why a remote queue operation failed: the broker refused it, or the call itself failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// Connecting to the broker failed.
    #[error("cannot connect to broker at {addr}")]
    Connect {
        /// The address given.
        addr: String,
        /// Why.
        #[source]
        source: RpcError,
    },
    /// The broker refused the operation (queue full, disk full, invalid name, ...).
    #[error(transparent)]
    Queue(QueueError),
    /// The call failed on the way (disconnected, deadline passed, broker shutting
    /// down, ...). For a send, the message may or may not have been stored: resend it
    /// with the same producer-chosen id to be sure it is stored once. Never holds
    /// `RpcError::Application` (that is [`RemoteError::Queue`]).
    #[error("call to the broker failed")]
    Rpc(#[source] RpcError<QueueError>),
    /// A consumer made with [`RemoteQueue::consumer_with_limit`] has received all the
    /// deliveries it asked for.
    #[error("consumer has received the {0} deliveries it asked for")]
    LimitReached(u64),
}

impl RemoteError {
    /// Whether retrying the same request can never succeed: the broker refused it for
    /// what it is (too large, invalid name, stale tag), or the broker does not speak
    /// this interface. Disconnects, timeouts and full queues or disks are not
    /// permanent.
    pub fn is_permanent(&self) -> bool {
        match self {
            RemoteError::Queue(e) => e.is_permanent(),
            RemoteError::Rpc(e) => matches!(
                e,
                RpcError::UnknownService(_)
                    | RpcError::UnknownMethod(_)
                    | RpcError::VersionMismatch(_)
                    | RpcError::BadArguments(_)
            ),
            RemoteError::Connect { .. } | RemoteError::LimitReached(_) => false,
        }
    }

    /// The broker's refusal, if that is what this is.
    pub fn queue_error(&self) -> Option<&QueueError> {
        match self {
            RemoteError::Queue(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RpcError<QueueError>> for RemoteError {
    fn from(e: RpcError<QueueError>) -> Self {
        match e {
            RpcError::Application(q) => RemoteError::Queue(q),
            other => RemoteError::Rpc(other),
        }
    }
}

impl From<RpcError> for RemoteError {
    fn from(e: RpcError) -> Self {
        RemoteError::Rpc(e.widen())
    }
}

/// `Result` with [`RemoteError`].
pub type RemoteResult<T> = Result<T, RemoteError>;

/// A connection to a broker's queues. Cheap to clone; clones share the connection.
///
/// ```no_run
/// # async fn f() -> Result<(), mw_queue::remote::RemoteError> {
/// use mw_queue::{ConsumerOptions, Message};
/// use mw_queue::remote::RemoteQueues;
///
/// let broker = RemoteQueues::connect("127.0.0.1:7800").await?;
/// let orders = broker.queue("orders");
/// let id = orders.send(Message::new("one widget")).await?; // durable at the broker
/// let mut consumer = orders.consumer(ConsumerOptions::default()).await?;
/// let d = consumer.recv().await?;
/// assert_eq!(d.id(), id);
/// d.ack().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RemoteQueues {
    client: QueueServiceClient,
}

impl RemoteQueues {
    /// Connects to the broker at `addr` (`HOST:PORT`, `unix:PATH`, `inproc:NAME`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::Connect`] if the broker cannot be reached.
    pub async fn connect(addr: &str) -> RemoteResult<RemoteQueues> {
        Self::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects with explicit client settings (deadline of calls, reconnecting, ...).
    ///
    /// # Errors
    ///
    /// As [`connect`](RemoteQueues::connect).
    pub async fn connect_with(addr: &str, config: ClientConfig) -> RemoteResult<RemoteQueues> {
        let channel = Channel::connect_with(addr, config)
            .await
            .map_err(|source| RemoteError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Self::from_channel(channel))
    }

    /// Uses an existing channel (shared with other services on the same broker).
    pub fn from_channel(channel: Channel) -> RemoteQueues {
        RemoteQueues {
            client: QueueServiceClient::new(channel),
        }
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel {
        self.client.channel()
    }

    /// A handle to the queue `name` at the broker (created there when first used).
    /// Makes no call.
    pub fn queue(&self, name: &str) -> RemoteQueue {
        RemoteQueue {
            client: self.client.clone(),
            name: name.into(),
        }
    }

    /// Every queue at the broker (dead-letter queues included) with its counters.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Rpc`] if the call fails.
    pub async fn queues(&self) -> RemoteResult<Vec<QueueInfo>> {
        Ok(self.client.queues().await?)
    }
}

/// A handle to one queue at a broker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RemoteQueue {
    client: QueueServiceClient,
    name: Arc<str>,
}

impl RemoteQueue {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends a message; returns its id once it is durable at the broker (persistent
    /// synchronous: under the broker's default `FsyncPolicy::Always`, after the fsync).
    ///
    /// **Resending is safe with a producer-chosen id** ([`Message::with_id`]): the broker
    /// stores a message whose id it already stored within its dedup window once, and
    /// answers `Ok` to the resend. A producer that lost the reply (disconnect, broker
    /// crash, timeout) resends the same message with the same id and it is stored once.
    /// With a generated id a resend is a second message.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Queue`] when the broker refused it (nothing was stored):
    /// [`QueueError::QueueFull`], [`QueueError::DiskFull`],
    /// [`QueueError::MessageTooLarge`], [`QueueError::InvalidQueueName`], ...
    /// [`RemoteError::Rpc`] when the call failed on the way: the message may or may not
    /// be stored.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: a cancelled send may or may not have been stored (as above).
    pub async fn send(&self, message: Message) -> RemoteResult<MessageId> {
        let id = self
            .client
            .send(self.name.to_string(), WireMessage::from(message))
            .await?;
        Ok(MessageId(id))
    }

    /// Sends many messages in one round trip; the broker stores them in order in one
    /// group commit. One result per message, in order (some may be refused, for
    /// instance when the queue fills up midway).
    ///
    /// # Errors
    ///
    /// The outer error: the whole call failed (see [`send`](RemoteQueue::send)), or
    /// the batch was refused as a whole (more than
    /// [`MAX_BATCH`](super::MAX_BATCH) messages, invalid queue name).
    pub async fn send_batch(
        &self,
        messages: Vec<Message>,
    ) -> RemoteResult<Vec<Result<MessageId, QueueError>>> {
        let wire = messages.into_iter().map(WireMessage::from).collect();
        let results = self.client.send_batch(self.name.to_string(), wire).await?;
        Ok(results.into_iter().map(|r| r.map(MessageId)).collect())
    }

    /// Attaches a consumer at the broker. `options.prefetch` bounds the deliveries it
    /// holds unsettled (on the wire, in the client's buffer and being processed);
    /// `options.visibility_timeout` overrides the broker's.
    ///
    /// Dropping the [`RemoteConsumer`] detaches it at the broker: messages fetched but
    /// not yet sent return to the queue at once; deliveries already received and never
    /// settled are redelivered after their visibility timeout.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Rpc`] if the connection is broken. An invalid queue name is
    /// reported by the first [`recv`](RemoteConsumer::recv).
    pub async fn consumer(&self, options: ConsumerOptions) -> RemoteResult<RemoteConsumer> {
        self.open_consumer(options, None).await
    }

    /// Like [`consumer`](RemoteQueue::consumer), for at most `limit` deliveries: the
    /// broker hands out no more than that and then detaches the consumer, so a program
    /// that wants `limit` messages and settles each leaves nothing in flight behind
    /// (`mw recv --count N` uses this). After `limit` deliveries,
    /// [`recv`](RemoteConsumer::recv) fails with [`RemoteError::LimitReached`].
    ///
    /// # Errors
    ///
    /// As [`consumer`](RemoteQueue::consumer).
    pub async fn consumer_with_limit(
        &self,
        options: ConsumerOptions,
        limit: u64,
    ) -> RemoteResult<RemoteConsumer> {
        self.open_consumer(options, Some(limit)).await
    }

    async fn open_consumer(
        &self,
        options: ConsumerOptions,
        limit: Option<u64>,
    ) -> RemoteResult<RemoteConsumer> {
        let visibility = options
            .visibility_timeout
            .map(|d| d.as_millis().min(u64::MAX as u128) as u64);
        let stream = self
            .client
            .consume(self.name.to_string(), options.prefetch, visibility, limit)
            .await?;
        Ok(RemoteConsumer {
            queue: self.clone(),
            stream,
            buffer: VecDeque::new(),
            ended: None,
            limit,
            received: 0,
        })
    }

    /// Acknowledges the delivery named by `tag`.
    ///
    /// # Errors
    ///
    /// [`QueueError::DeliveryNotFound`] for a stale tag; storage errors; call failures.
    pub async fn ack(&self, tag: DeliveryTag) -> RemoteResult<()> {
        Ok(self.client.ack(self.name.to_string(), tag).await?)
    }

    /// Returns the delivery named by `tag` to the queue, visible after `delay` (at once
    /// for `None`).
    ///
    /// # Errors
    ///
    /// As [`ack`](RemoteQueue::ack).
    pub async fn nack(&self, tag: DeliveryTag, delay: Option<Duration>) -> RemoteResult<()> {
        let delay = delay.map(|d| d.as_millis().min(u64::MAX as u128) as u64);
        Ok(self.client.nack(self.name.to_string(), tag, delay).await?)
    }

    /// Dead-letters the delivery named by `tag`.
    ///
    /// # Errors
    ///
    /// As [`ack`](RemoteQueue::ack).
    pub async fn reject(&self, tag: DeliveryTag) -> RemoteResult<()> {
        Ok(self.client.reject(self.name.to_string(), tag).await?)
    }

    /// Keeps the delivery named by `tag` invisible to other consumers for `by` from now.
    ///
    /// # Errors
    ///
    /// As [`ack`](RemoteQueue::ack).
    pub async fn extend_visibility(&self, tag: DeliveryTag, by: Duration) -> RemoteResult<()> {
        let by = by.as_millis().min(u64::MAX as u128) as u64;
        Ok(self.client.extend(self.name.to_string(), tag, by).await?)
    }

    /// This queue's counters (all zero for a queue the broker does not know). Asks for
    /// the broker's whole queue list, so it costs one call however many queues there are.
    ///
    /// # Errors
    ///
    /// Call failures.
    pub async fn stats(&self) -> RemoteResult<QueueInfo> {
        let all = self.client.queues().await?;
        Ok(all
            .into_iter()
            .find(|i| *i.name == *self.name)
            .unwrap_or_else(|| QueueInfo {
                name: self.name.to_string(),
                depth: 0,
                delayed: 0,
                in_flight: 0,
                consumers: 0,
                dead_letters: 0,
            }))
    }

    /// Moves this queue's dead letters back to it; returns how many moved.
    ///
    /// # Errors
    ///
    /// Storage errors at the broker; call failures.
    pub async fn redrive(&self) -> RemoteResult<u64> {
        Ok(self.client.redrive(self.name.to_string()).await?)
    }
}

/// Receives deliveries from one queue at a broker. See [`RemoteQueue::consumer`].
#[must_use = "a consumer does nothing unless received from"]
pub struct RemoteConsumer {
    queue: RemoteQueue,
    stream: ClientStream<ConsumeItem>,
    buffer: VecDeque<WireDelivery>,
    /// Set once the stream has ended, with what every later `recv` reports.
    ended: Option<QueueError>,
    /// Deliveries asked for, if limited.
    limit: Option<u64>,
    /// Deliveries received from the broker so far.
    received: u64,
}

impl std::fmt::Debug for RemoteConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConsumer")
            .field("queue", &self.queue.name)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl RemoteConsumer {
    /// The queue this consumer reads.
    pub fn queue(&self) -> &RemoteQueue {
        &self.queue
    }

    /// Waits for the next delivery.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Rpc`] (`Disconnected`) when the connection to the broker broke;
    /// [`RemoteError::Queue`] when the broker ended the consumer
    /// ([`QueueError::Closed`] when it shut down, [`QueueError::InvalidQueueName`], a
    /// storage error); [`RemoteError::LimitReached`] for a limited consumer. The
    /// consumer is finished after an error.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: no delivery is lost by dropping the future.
    pub async fn recv(&mut self) -> RemoteResult<RemoteDelivery> {
        loop {
            if let Some(d) = self.buffer.pop_front() {
                return Ok(RemoteDelivery {
                    queue: self.queue.clone(),
                    inner: d,
                });
            }
            if let Some(limit) = self.limit.filter(|l| self.received >= *l) {
                return Err(RemoteError::LimitReached(limit));
            }
            if let Some(e) = &self.ended {
                return Err(RemoteError::Queue(e.clone()));
            }
            match self.stream.next().await {
                Some(Ok(Ok(batch))) => {
                    self.received += batch.len() as u64;
                    self.buffer.extend(batch);
                }
                Some(Ok(Err(e))) => self.ended = Some(e),
                None => self.ended = Some(QueueError::Closed),
                Some(Err(e)) => {
                    self.ended = Some(QueueError::Closed);
                    return Err(RemoteError::from(e));
                }
            }
        }
    }
}

/// A message delivered to a remote consumer, to be settled with
/// [`ack`](RemoteDelivery::ack), [`nack`](RemoteDelivery::nack) or
/// [`reject`](RemoteDelivery::reject).
///
/// Dropping it unsettled does nothing: the message stays in flight at the broker and is
/// redelivered when its visibility timeout expires.
#[derive(Debug)]
#[must_use = "an unsettled delivery is redelivered after the visibility timeout"]
pub struct RemoteDelivery {
    queue: RemoteQueue,
    inner: WireDelivery,
}

impl RemoteDelivery {
    /// The tag that names this delivery.
    pub fn tag(&self) -> DeliveryTag {
        self.inner.tag
    }

    /// The message id.
    pub fn id(&self) -> MessageId {
        MessageId(self.inner.id)
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.inner.body
    }

    /// Which delivery of this message this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.inner.tag.delivery()
    }

    /// The queue it came from.
    pub fn queue(&self) -> &str {
        self.queue.name()
    }

    /// When it was sent, in ms since the Unix epoch (by the broker's clock).
    pub fn sent_at_ms(&self) -> u64 {
        self.inner.sent_at_ms
    }

    /// Acknowledges it: gone for good once this returns `Ok`.
    ///
    /// # Errors
    ///
    /// [`QueueError::DeliveryNotFound`] if its visibility timeout already expired (it
    /// will be delivered again); storage errors; call failures (then it may or may not
    /// be acked).
    pub async fn ack(self) -> RemoteResult<()> {
        self.queue.ack(self.inner.tag).await
    }

    /// Returns it to the queue, visible again after `delay` (at once for `None`).
    ///
    /// # Errors
    ///
    /// As [`ack`](RemoteDelivery::ack).
    pub async fn nack(self, delay: Option<Duration>) -> RemoteResult<()> {
        self.queue.nack(self.inner.tag, delay).await
    }

    /// Moves it to the dead-letter queue.
    ///
    /// # Errors
    ///
    /// As [`ack`](RemoteDelivery::ack).
    pub async fn reject(self) -> RemoteResult<()> {
        self.queue.reject(self.inner.tag).await
    }

    /// Keeps it invisible to other consumers for `by` from now.
    ///
    /// # Errors
    ///
    /// As [`ack`](RemoteDelivery::ack).
    pub async fn extend_visibility(&self, by: Duration) -> RemoteResult<()> {
        self.queue.extend_visibility(self.inner.tag, by).await
    }
}
