//! The client side: [`RemoteQueues`], [`RemoteQueue`], [`RemoteConsumer`] and
//! [`RemoteDelivery`], mirroring [`QueueManager`](crate::QueueManager),
//! [`Queue`](crate::Queue), [`Consumer`](crate::Consumer) and
//! [`Delivery`](crate::Delivery).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mw_rpc::{Channel, ClientConfig, ClientStream, RpcError};

use super::coalesce::{self, Batched, Coalescer, Limits};
use super::error::{RemoteError, RemoteResult};
use super::service::{ConsumeItem, QueueServiceClient, MAX_BATCH};
use super::wire::{BrokerStats, QueueError, QueueInfo, WireDelivery};
use crate::engine::consumer::ConsumerOptions;
use crate::message::{DeliveryTag, Message, MessageId};

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
///
/// # Coalescing
///
/// Concurrent [`RemoteQueue::send`]s on one `RemoteQueues` (and its clones) to the same
/// queue are merged into `send_batch` calls, and concurrent acks
/// ([`RemoteDelivery::ack`], [`RemoteQueue::ack`]) into `ack_many` calls: while fewer
/// than [`COALESCE_IN_FLIGHT`] such calls are outstanding per queue, each operation goes
/// out at once, alone; beyond that, operations wait and leave together, up to
/// [`COALESCE_MAX_ITEMS`] items or [`COALESCE_MAX_BYTES`] of bodies per call, as soon as
/// a call returns. No timer is involved, so an idle client sees no added latency; a busy
/// one needs far fewer calls, and the broker fewer group commits. Each operation still
/// gets its own result, and only once its own item is durable (or refused).
#[derive(Debug, Clone)]
pub struct RemoteQueues {
    client: QueueServiceClient,
    links: Arc<Mutex<Links>>,
}

/// Calls outstanding at once per connection, queue and kind of coalesced operation
/// (sends, acks) before further ones wait to be merged into a batch call (see
/// [`RemoteQueues`]).
pub const COALESCE_IN_FLIGHT: usize = 2;
/// Most operations merged into one batch call.
pub const COALESCE_MAX_ITEMS: usize = 1_000;
/// Most message bytes merged into one `send_batch` call (a larger message goes alone).
pub const COALESCE_MAX_BYTES: usize = 1 << 20;

const _: () = assert!(COALESCE_MAX_ITEMS <= MAX_BATCH);

/// The per-queue state of one connection, shared by every [`RemoteQueue`] handle of
/// that name (held weakly: it goes when the last handle does).
#[derive(Debug, Default)]
struct Links {
    by_name: HashMap<Arc<str>, Weak<Link>>,
    /// Size at which dead entries are swept next.
    sweep_at: usize,
}

/// One queue on one connection: its name, and the coalescers of its sends and acks.
struct Link {
    client: QueueServiceClient,
    name: Arc<str>,
    sends: Coalescer<Message, MessageId>,
    acks: Coalescer<DeliveryTag, ()>,
    /// Set when the broker turned out not to know `ack_many` (an older broker): acks are
    /// then sent one by one.
    no_ack_many: AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("name", &self.name)
            .field("sends", &self.sends)
            .field("acks", &self.acks)
            .finish_non_exhaustive()
    }
}

/// Bytes a message counts for in a batch (body plus a rough envelope).
fn message_weight(m: &Message) -> usize {
    m.body.len() + 48
}

impl Link {
    fn new(client: QueueServiceClient, name: Arc<str>) -> Link {
        let limits = Limits {
            max_in_flight: COALESCE_IN_FLIGHT,
            max_items: COALESCE_MAX_ITEMS,
            max_bytes: COALESCE_MAX_BYTES,
        };
        Link {
            client,
            name,
            sends: Coalescer::new(limits, message_weight),
            acks: Coalescer::new(limits, |_| 16),
            no_ack_many: AtomicBool::new(false),
        }
    }
}

impl Batched<Message, MessageId> for Link {
    fn coalescer(&self) -> &Coalescer<Message, MessageId> {
        &self.sends
    }

    async fn call_one(&self, item: Message) -> RemoteResult<MessageId> {
        let id = self.client.send(self.name.to_string(), item).await?;
        Ok(MessageId(id))
    }

    async fn call_many(&self, items: Vec<Message>) -> RemoteResult<Vec<RemoteResult<MessageId>>> {
        let results = self.client.send_batch(self.name.to_string(), items).await?;
        Ok(results
            .into_iter()
            .map(|r| r.map(MessageId).map_err(RemoteError::Refused))
            .collect())
    }
}

impl Batched<DeliveryTag, ()> for Link {
    fn coalescer(&self) -> &Coalescer<DeliveryTag, ()> {
        &self.acks
    }

    async fn call_one(&self, tag: DeliveryTag) -> RemoteResult<()> {
        Ok(self.client.ack(self.name.to_string(), tag).await?)
    }

    async fn call_many(&self, tags: Vec<DeliveryTag>) -> RemoteResult<Vec<RemoteResult<()>>> {
        if !self.no_ack_many.load(Ordering::Relaxed) {
            match self
                .client
                .ack_many(self.name.to_string(), tags.clone())
                .await
            {
                Ok(results) => {
                    return Ok(results
                        .into_iter()
                        .map(|r| r.map_err(RemoteError::Refused))
                        .collect())
                }
                Err(RpcError::UnknownMethod(_)) => {
                    // An older broker: ack one by one from now on.
                    self.no_ack_many.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let acks = tags
            .into_iter()
            .map(|tag| Batched::<DeliveryTag, ()>::call_one(self, tag));
        Ok(futures::future::join_all(acks).await)
    }
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
            links: Arc::default(),
        }
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel {
        self.client.channel()
    }

    /// A handle to the queue `name` at the broker (created there when first used).
    /// Makes no call.
    pub fn queue(&self, name: &str) -> RemoteQueue {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(link) = links.by_name.get(name).and_then(Weak::upgrade) {
            return RemoteQueue { link };
        }
        let name: Arc<str> = name.into();
        let link = Arc::new(Link::new(self.client.clone(), name.clone()));
        links.by_name.insert(name, Arc::downgrade(&link));
        if links.by_name.len() >= links.sweep_at {
            links.by_name.retain(|_, l| l.strong_count() > 0);
            links.sweep_at = (links.by_name.len() * 2).max(64);
        }
        RemoteQueue { link }
    }

    /// The broker's storage counters: its log writer's ([`LogStats::fsyncs`](crate::LogStats::fsyncs),
    /// [`records_per_fsync`](BrokerStats::records_per_fsync), ...) and its index's
    /// memory.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Rpc`] if the call fails (`UnknownMethod` from a broker older than
    /// this call).
    pub async fn stats(&self) -> RemoteResult<BrokerStats> {
        Ok(self.client.stats().await?)
    }

    /// Every queue at the broker (dead-letter queues included) with its counters.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Rpc`] if the call fails.
    pub async fn queues(&self) -> RemoteResult<Vec<QueueInfo>> {
        Ok(self.client.queues().await?)
    }

    /// Every consumer attached at the broker, by id.
    ///
    /// # Errors
    ///
    /// Call failures.
    pub async fn consumers(&self) -> RemoteResult<Vec<super::WireConsumer>> {
        Ok(self.client.consumers().await?)
    }

    /// Closes consumer `id` at the broker (see
    /// [`QueueService::close_consumer`](super::QueueService::close_consumer)); whether it
    /// was attached.
    ///
    /// # Errors
    ///
    /// Call failures.
    pub async fn close_consumer(&self, id: u64) -> RemoteResult<bool> {
        Ok(self.client.close_consumer(id).await?)
    }
}

/// A handle to one queue at a broker. Cheap to clone.
///
/// Handles made by the same [`RemoteQueues`] (or its clones) for the same name share
/// the coalescing of sends and acks (see [`RemoteQueues`]).
#[derive(Debug, Clone)]
pub struct RemoteQueue {
    link: Arc<Link>,
}

impl RemoteQueue {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.link.name
    }

    fn client(&self) -> &QueueServiceClient {
        &self.link.client
    }

    fn name_string(&self) -> String {
        self.link.name.to_string()
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
    /// [`RemoteError::Refused`] when the broker refused it (nothing was stored):
    /// [`QueueError::QueueFull`], [`QueueError::DiskFull`],
    /// [`QueueError::MessageTooLarge`], [`QueueError::InvalidQueueName`], ...
    /// [`RemoteError::Rpc`] when the call failed on the way: the message may or may not
    /// be stored.
    ///
    /// # Coalescing and order
    ///
    /// Concurrent sends to this queue through the same [`RemoteQueues`] are merged into
    /// `send_batch` calls (see [`RemoteQueues`]); each still answers for its own message
    /// only, once that message is durable. Merged messages are stored in the order their
    /// sends were called, so a producer that awaits each send before the next keeps its
    /// order. Concurrent sends, as ever, have no order among themselves.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: a cancelled send may or may not have been stored (as above).
    /// Cancelling it never affects other sends merged with it: they are stored and
    /// answered as if it had not been there.
    pub async fn send(&self, message: Message) -> RemoteResult<MessageId> {
        coalesce::submit(&self.link, message).await
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
        let results = self
            .client()
            .send_batch(self.name_string(), messages)
            .await?;
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
        let visibility = options.visibility_timeout.map(mw_core::time::millis);
        let stream = self
            .client()
            .consume(self.name_string(), options.prefetch, visibility, limit)
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

    /// Acknowledges the delivery named by `tag`; answers once the ack is durable at the
    /// broker.
    ///
    /// Concurrent acks on this queue through the same [`RemoteQueues`] are merged into
    /// `ack_many` calls (see [`RemoteQueues`]); each answers for its own tag.
    ///
    /// # Errors
    ///
    /// [`QueueError::DeliveryNotFound`] for a stale tag; storage errors; call failures
    /// (then it may or may not be acked).
    ///
    /// # Cancel safety
    ///
    /// A cancelled ack may or may not be applied; other acks merged with it are not
    /// affected.
    pub async fn ack(&self, tag: DeliveryTag) -> RemoteResult<()> {
        coalesce::submit(&self.link, tag).await
    }

    /// Acknowledges many deliveries in one call (one group commit at the broker). One
    /// result per tag, in order.
    ///
    /// # Errors
    ///
    /// The outer error: the whole call failed (none, some or all may be acked), or it
    /// was refused as a whole (more than [`MAX_BATCH`] tags, invalid queue name,
    /// `UnknownMethod` from a broker older than this call).
    pub async fn ack_many(
        &self,
        tags: Vec<DeliveryTag>,
    ) -> RemoteResult<Vec<Result<(), QueueError>>> {
        Ok(self.client().ack_many(self.name_string(), tags).await?)
    }

    /// Returns the delivery named by `tag` to the queue, visible after `delay` (at once
    /// for `None`).
    ///
    /// # Errors
    ///
    /// As [`ack`](RemoteQueue::ack).
    pub async fn nack(&self, tag: DeliveryTag, delay: Option<Duration>) -> RemoteResult<()> {
        let delay = delay.map(mw_core::time::millis);
        Ok(self.client().nack(self.name_string(), tag, delay).await?)
    }

    /// Dead-letters the delivery named by `tag`.
    ///
    /// # Errors
    ///
    /// As [`ack`](RemoteQueue::ack).
    pub async fn reject(&self, tag: DeliveryTag) -> RemoteResult<()> {
        Ok(self.client().reject(self.name_string(), tag).await?)
    }

    /// Keeps the delivery named by `tag` invisible to other consumers for `by` from now.
    ///
    /// # Errors
    ///
    /// As [`ack`](RemoteQueue::ack).
    pub async fn extend_visibility(&self, tag: DeliveryTag, by: Duration) -> RemoteResult<()> {
        let by = mw_core::time::millis(by);
        Ok(self.client().extend(self.name_string(), tag, by).await?)
    }

    /// This queue's counters (all zero for a queue the broker does not know). Asks for
    /// the broker's whole queue list, so it costs one call however many queues there are.
    ///
    /// # Errors
    ///
    /// Call failures.
    pub async fn stats(&self) -> RemoteResult<QueueInfo> {
        let all = self.client().queues().await?;
        Ok(all
            .into_iter()
            .find(|i| *i.name == *self.link.name)
            .unwrap_or_else(|| QueueInfo {
                name: self.name_string(),
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
        Ok(self.client().redrive(self.name_string()).await?)
    }

    /// Drops every message waiting in this queue (deliveries in flight stay); returns
    /// how many, once the broker made the drops durable.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownQueue`] for a queue the broker does not know; storage errors
    /// at the broker; call failures.
    pub async fn purge(&self) -> RemoteResult<u64> {
        Ok(self.client().purge(self.name_string()).await?)
    }

    /// Drops every message of this queue, in flight too, and the queue itself; returns
    /// how many messages were dropped.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownQueue`]; [`QueueError::QueueInUse`] while consumers are
    /// attached; storage errors at the broker; call failures.
    pub async fn delete(&self) -> RemoteResult<u64> {
        Ok(self.client().delete(self.name_string()).await?)
    }

    /// Up to `max` messages waiting in this queue (at most
    /// [`MAX_PEEK`](super::MAX_PEEK)), in delivery order, without delivering them.
    ///
    /// # Errors
    ///
    /// [`QueueError::UnknownQueue`]; storage errors at the broker; call failures.
    pub async fn peek(&self, max: u32) -> RemoteResult<Vec<super::WirePeeked>> {
        Ok(self.client().peek(self.name_string(), max).await?)
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
            .field("queue", &self.queue.name())
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
    /// [`RemoteError::Refused`] when the broker ended the consumer
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
                return Err(RemoteError::Refused(e.clone()));
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

    /// Acknowledges it: gone for good once this returns `Ok`. Concurrent acks on one
    /// connection are merged into batch calls (see [`RemoteQueue::ack`]).
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
