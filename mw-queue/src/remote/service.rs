//! The `mw.queue` v1 service: its interface ([`QueueService`]) and the broker-side
//! implementation over a [`QueueManager`] ([`QueueServiceImpl`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::wire::{BrokerStats, QueueError, QueueInfo, WireConsumer, WireDelivery, WirePeeked};
use crate::engine::consumer::{Consumer, ConsumerOptions};
use crate::engine::delivery::Delivery;
use crate::engine::manager::QueueManager;
use crate::engine::queue::Queue;
use crate::error::Error;
use crate::message::{DeliveryTag, Message, MessageId};
use crate::name::QueueName;
use mw_rpc::auth::{allowed, check, Action};
use mw_rpc::Streaming;

/// Most messages accepted in one `send_batch` call (and tags in one `ack_many`).
pub const MAX_BATCH: usize = 10_000;
/// Largest prefetch a remote consumer may ask for (larger requests are clamped).
pub const MAX_PREFETCH: u32 = 10_000;
/// Most deliveries packed into one stream item of `consume`.
pub const MAX_DELIVERIES_PER_ITEM: usize = 256;

/// One item of a `consume` stream: a batch of deliveries, or the error that ended it.
pub type ConsumeItem = Result<Vec<WireDelivery>, QueueError>;

/// The broker's queue interface (`mw.queue`, version 1).
///
/// Every method that changes state answers only once the change is durable according
/// to the broker's [`FsyncPolicy`](crate::FsyncPolicy) (`Always` by default: after the
/// fsync of the group commit holding it).
#[mw_rpc::service(name = "mw.queue", version = 1)]
pub trait QueueService {
    /// Stores `message` on `queue`; answers with its id once durable (persistent
    /// synchronous). A producer-chosen id already stored within the broker's dedup
    /// window is answered `Ok` but stored once, so resending after a lost reply is safe.
    async fn send(&self, queue: String, message: Message) -> Result<u128, QueueError>;
    /// Stores many messages in one round trip and one group commit, in order. One result
    /// per message: some may fail (queue full) while others are stored.
    async fn send_batch(
        &self,
        queue: String,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<u128, QueueError>>, QueueError>;
    /// Attaches a consumer holding at most `prefetch` unsettled deliveries, and streams
    /// its deliveries (several per item when available). `visibility_ms` overrides the
    /// broker's visibility timeout for these deliveries. With `limit`, the stream ends
    /// after handing out that many deliveries, and the consumer is detached at once (so
    /// nothing beyond `limit` is left in flight). The stream also ends with an error
    /// item or when the broker closes; dropping it detaches the consumer.
    async fn consume(
        &self,
        queue: String,
        prefetch: u32,
        visibility_ms: Option<u64>,
        limit: Option<u64>,
    ) -> Streaming<ConsumeItem>;
    /// Acknowledges a delivery: the message is gone for good once this answers `Ok`.
    async fn ack(&self, queue: String, tag: DeliveryTag) -> Result<(), QueueError>;
    /// Returns a delivery to the queue, visible again after `delay_ms` (or at once).
    async fn nack(
        &self,
        queue: String,
        tag: DeliveryTag,
        delay_ms: Option<u64>,
    ) -> Result<(), QueueError>;
    /// Moves a delivery to the dead-letter queue.
    async fn reject(&self, queue: String, tag: DeliveryTag) -> Result<(), QueueError>;
    /// Keeps a delivery invisible to other consumers for `by_ms` from now.
    async fn extend(&self, queue: String, tag: DeliveryTag, by_ms: u64) -> Result<(), QueueError>;
    /// Every queue (dead-letter queues included) with its counters, by name.
    async fn queues(&self) -> Vec<QueueInfo>;
    /// Moves `queue`'s dead letters back to it; answers how many moved.
    async fn redrive(&self, queue: String) -> Result<u64, QueueError>;
    /// Acknowledges many deliveries in one round trip and one group commit. One result
    /// per tag, in order; each `Ok` means that message is gone for good.
    async fn ack_many(
        &self,
        queue: String,
        tags: Vec<DeliveryTag>,
    ) -> Result<Vec<Result<(), QueueError>>, QueueError>;
    /// The broker's storage counters (log writer and index memory) since it started.
    async fn stats(&self) -> BrokerStats;
    /// Drops every message waiting in `queue` (not those in flight); answers how many,
    /// once durable. An unknown queue is [`QueueError::UnknownQueue`].
    async fn purge(&self, queue: String) -> Result<u64, QueueError>;
    /// Drops every message of `queue` (in flight too) and forgets it; answers how many
    /// messages were dropped. Refused while consumers are attached.
    async fn delete(&self, queue: String) -> Result<u64, QueueError>;
    /// Up to `max` messages waiting in `queue`, in delivery order, without delivering
    /// them (at most [`MAX_PEEK`]).
    async fn peek(&self, queue: String, max: u32) -> Result<Vec<WirePeeked>, QueueError>;
    /// Every consumer attached at the broker (each remote consumer is one), by id.
    async fn consumers(&self) -> Vec<WireConsumer>;
    /// Closes consumer `id`: its stream ends with [`QueueError::ConsumerClosed`], and what
    /// it held unsettled is redelivered after the visibility timeout. Whether it was
    /// attached.
    async fn close_consumer(&self, id: u64) -> bool;
}

/// Most messages one `peek` returns.
pub const MAX_PEEK: u32 = 1000;

/// The broker side of [`QueueService`]: serves the queues of one [`QueueManager`].
///
/// ```no_run
/// # async fn f(qm: mw_queue::QueueManager) -> Result<(), mw_rpc::RpcError> {
/// use mw_queue::remote::{QueueServiceImpl, QueueServiceServer};
/// let server = mw_rpc::Server::builder()
///     .add(QueueServiceServer::new(QueueServiceImpl::new(qm)))
///     .build()
///     .spawn("127.0.0.1:7800")
///     .await?;
/// # Ok(()) }
/// ```
///
/// # Remote consumers
///
/// Each `consume` stream owns one [`Consumer`] inside the broker. Deliveries are sent
/// as stream items and the broker keeps only their tags; the client settles them with
/// `ack`/`nack`/`reject` by tag. When the stream ends (the client dropped it, cancelled
/// it, or its connection broke), the consumer is dropped: messages it had fetched but
/// not yet sent return to the queue at once. Deliveries already sent and never settled
/// stay in flight and are redelivered, to any consumer, when their visibility timeout
/// expires (at-least-once: the client may have processed them).
///
/// # Queue names
///
/// Remote names are stricter than embedded ones: 1 to 255 bytes with no whitespace and
/// no control characters, so that every name prints on one line. Others are refused
/// with [`QueueError::InvalidQueueName`] and create nothing.
///
/// # Routing
///
/// With a [`SendRoute`] ([`with_route`](QueueServiceImpl::with_route)), sends to the
/// queues it routes are stored where it says (store-and-forward: `mw broker --route`
/// serves this service with a `forward::Router`); every other call, and sends to other
/// queues, work on `qm` as without one.
#[derive(Debug, Clone)]
pub struct QueueServiceImpl {
    qm: QueueManager,
    /// Handles of the queues named so far (names already checked), so that a call
    /// finds its queue without building a handle.
    handles: Arc<Mutex<HashMap<String, Queue>>>,
    /// Where sends to routed queues go; `None`: every queue is local.
    route: Option<Arc<dyn SendRoute>>,
}

/// Where [`QueueServiceImpl`] stores the sends to queues this broker does not own:
/// the seam store-and-forward routing plugs into (the `forward` layer's `Router`
/// implements it). Only `send` and `send_batch` consult it.
pub trait SendRoute: std::fmt::Debug + Send + Sync + 'static {
    /// Whether sends to `queue` go through this route rather than to the local queue.
    fn is_routed(&self, queue: &str) -> bool;

    /// Stores `msg` for the routed `queue`; its id once durable here.
    fn send<'a>(&'a self, queue: &'a str, msg: Message) -> BoxFuture<'a, Result<MessageId, Error>>;

    /// Stores `msgs` for the routed `queue`, in order and in one group commit; one
    /// result per message.
    fn send_batch<'a>(
        &'a self,
        queue: &'a str,
        msgs: Vec<Message>,
    ) -> BoxFuture<'a, Vec<Result<MessageId, Error>>>;
}

/// Where a send goes: a local queue, or a route.
enum SendTarget<'a> {
    Local(Queue),
    Routed(&'a dyn SendRoute),
}

/// Most handles [`QueueServiceImpl`] keeps; beyond that the cache starts over (a
/// client naming ever new queues costs a lookup miss per call, nothing more).
const MAX_CACHED_HANDLES: usize = 4096;

impl QueueServiceImpl {
    /// Serves the queues of `qm`.
    pub fn new(qm: QueueManager) -> Self {
        QueueServiceImpl {
            qm,
            handles: Arc::default(),
            route: None,
        }
    }

    /// Sends to the queues `route` routes go through it (see [Routing](Self#routing)).
    pub fn with_route(mut self, route: impl SendRoute) -> Self {
        self.route = Some(Arc::new(route));
        self
    }

    /// The manager served.
    pub fn manager(&self) -> &QueueManager {
        &self.qm
    }

    /// The handle of `name`, if it is a valid remote name.
    fn queue(&self, name: &str) -> Result<Queue, QueueError> {
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = handles.get(name) {
            return Ok(q.clone());
        }
        check_remote_name(name)?;
        if handles.len() >= MAX_CACHED_HANDLES {
            handles.clear();
        }
        let q = self.qm.queue(name);
        handles.insert(name.to_string(), q.clone());
        Ok(q)
    }

    /// Where a send to `queue` goes, once the name is checked.
    fn send_target(&self, queue: &str) -> Result<SendTarget<'_>, QueueError> {
        match &self.route {
            Some(route) if route.is_routed(queue) => {
                check_remote_name(queue)?;
                Ok(SendTarget::Routed(route.as_ref()))
            }
            _ => self.queue(queue).map(SendTarget::Local),
        }
    }
}

/// Logs sends the broker refused (`refused` of them, the first for `error`): at `info`
/// for what a client can cause (full queue, oversized message), at `warn` for storage
/// trouble.
fn log_refusal(queue: &str, refused: usize, error: &QueueError) {
    if error.is_permanent() || matches!(error, QueueError::QueueFull { .. }) {
        tracing::info!(queue, refused, %error, "refused sends");
    } else {
        tracing::warn!(queue, refused, %error, "sends failed");
    }
}

/// Whether the calling user may do anything with `queue` (what listings show them).
fn may_see(queue: &str) -> bool {
    [Action::QueueSend, Action::QueueReceive, Action::QueueManage]
        .into_iter()
        .any(|a| allowed(a, queue))
}

/// Refuses names a remote client may not use (see [`QueueServiceImpl`]): empty, longer
/// than 255 bytes, or holding whitespace or control characters.
///
/// # Errors
/// [`QueueError::InvalidQueueName`] naming the name.
pub fn check_remote_name(name: &str) -> Result<(), QueueError> {
    QueueName::new_remote(name)
        .map(drop)
        .map_err(QueueError::from)
}

impl QueueService for QueueServiceImpl {
    async fn send(&self, queue: String, message: Message) -> Result<u128, QueueError> {
        check(Action::QueueSend, &queue)?;
        let sent = match self.send_target(&queue)? {
            SendTarget::Local(q) => q.send(message).await,
            SendTarget::Routed(route) => route.send(&queue, message).await,
        };
        match sent {
            Ok(id) => Ok(id.0),
            Err(e) => {
                let e = QueueError::from(e);
                log_refusal(&queue, 1, &e);
                Err(e)
            }
        }
    }

    async fn send_batch(
        &self,
        queue: String,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<u128, QueueError>>, QueueError> {
        check(Action::QueueSend, &queue)?;
        let target = self.send_target(&queue)?;
        if messages.len() > MAX_BATCH {
            return Err(QueueError::BadRequest(format!(
                "batch of {} messages exceeds the limit of {MAX_BATCH}",
                messages.len()
            )));
        }
        // Enqueued together and in order: consecutive in the log, one group commit
        // (a routed batch too: not one send per message, whose order a join would not keep).
        let results = match target {
            SendTarget::Local(q) => q.send_batch(messages).await,
            SendTarget::Routed(route) => route.send_batch(&queue, messages).await,
        };
        let results: Vec<Result<u128, QueueError>> = results
            .into_iter()
            .map(|r| r.map(|id| id.0).map_err(QueueError::from))
            .collect();
        let refused = results.iter().filter(|r| r.is_err()).count();
        if let Some(Err(first)) = results.iter().find(|r| r.is_err()) {
            log_refusal(&queue, refused, first);
        }
        Ok(results)
    }

    async fn consume(
        &self,
        queue: String,
        prefetch: u32,
        visibility_ms: Option<u64>,
        limit: Option<u64>,
    ) -> Streaming<ConsumeItem> {
        let q = match check(Action::QueueReceive, &queue)
            .map_err(QueueError::from)
            .and_then(|()| self.queue(&queue))
        {
            Ok(q) => q,
            Err(e) => return Box::pin(futures::stream::once(async move { Err(e) })),
        };
        if limit == Some(0) {
            return Box::pin(futures::stream::empty());
        }
        let mut prefetch = prefetch.clamp(1, MAX_PREFETCH);
        if let Some(l) = limit {
            // Never take more than will be handed out.
            prefetch = prefetch.min(l.min(u64::from(MAX_PREFETCH)) as u32);
        }
        let consumer = q.consumer(ConsumerOptions {
            prefetch,
            visibility_timeout: visibility_ms.map(Duration::from_millis),
        });
        Box::pin(futures::stream::unfold(
            ConsumeState {
                consumer: Some(consumer),
                pending_error: None,
                remaining: limit,
            },
            next_batch,
        ))
    }

    async fn ack(&self, queue: String, tag: DeliveryTag) -> Result<(), QueueError> {
        check(Action::QueueReceive, &queue)?;
        Ok(self.queue(&queue)?.ack(tag).await?)
    }

    async fn nack(
        &self,
        queue: String,
        tag: DeliveryTag,
        delay_ms: Option<u64>,
    ) -> Result<(), QueueError> {
        check(Action::QueueReceive, &queue)?;
        let delay = delay_ms.map(Duration::from_millis);
        Ok(self.queue(&queue)?.nack(tag, delay).await?)
    }

    async fn reject(&self, queue: String, tag: DeliveryTag) -> Result<(), QueueError> {
        check(Action::QueueReceive, &queue)?;
        Ok(self.queue(&queue)?.reject(tag).await?)
    }

    async fn extend(&self, queue: String, tag: DeliveryTag, by_ms: u64) -> Result<(), QueueError> {
        check(Action::QueueReceive, &queue)?;
        let by = Duration::from_millis(by_ms);
        Ok(self.queue(&queue)?.extend_visibility(tag, by)?)
    }

    async fn queues(&self) -> Vec<QueueInfo> {
        self.qm
            .queues()
            .into_iter()
            .filter(|(name, _)| may_see(name))
            .map(|(name, s)| QueueInfo::new(name, s))
            .collect()
    }

    async fn redrive(&self, queue: String) -> Result<u64, QueueError> {
        // Moving dead letters reads them out of QUEUE.dlq: manage both.
        check(Action::QueueManage, &queue)?;
        check(Action::QueueManage, &format!("{queue}.dlq"))?;
        Ok(self.queue(&queue)?.redrive().await?)
    }

    async fn ack_many(
        &self,
        queue: String,
        tags: Vec<DeliveryTag>,
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        check(Action::QueueReceive, &queue)?;
        let q = self.queue(&queue)?;
        if tags.len() > MAX_BATCH {
            return Err(QueueError::BadRequest(format!(
                "batch of {} tags exceeds the limit of {MAX_BATCH}",
                tags.len()
            )));
        }
        let results = q.ack_many(&tags).await;
        Ok(results
            .into_iter()
            .map(|r| r.map_err(QueueError::from))
            .collect())
    }

    async fn stats(&self) -> BrokerStats {
        BrokerStats {
            log: self.qm.log_stats(),
            memory: self.qm.memory(),
        }
    }

    async fn purge(&self, queue: String) -> Result<u64, QueueError> {
        check(Action::QueueManage, &queue)?;
        check_remote_name(&queue)?;
        Ok(self.qm.purge(&queue).await?)
    }

    async fn delete(&self, queue: String) -> Result<u64, QueueError> {
        check(Action::QueueManage, &queue)?;
        check_remote_name(&queue)?;
        let n = self.qm.delete(&queue).await?;
        // The cached handle would still work (queues are created by sending), but a
        // deleted name should not linger in the cache.
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&queue);
        Ok(n)
    }

    async fn peek(&self, queue: String, max: u32) -> Result<Vec<WirePeeked>, QueueError> {
        // Reading bodies without taking them: for receivers and managers (a refusal
        // names receiving, the everyday reason to read a queue).
        if !allowed(Action::QueueManage, &queue) {
            check(Action::QueueReceive, &queue)?;
        }
        check_remote_name(&queue)?;
        let max = max.min(MAX_PEEK) as usize;
        let found = self.qm.peek(&queue, max).await?;
        Ok(found.into_iter().map(WirePeeked::from).collect())
    }

    async fn consumers(&self) -> Vec<WireConsumer> {
        self.qm
            .consumers()
            .into_iter()
            .filter(|c| may_see(&c.queue))
            .map(|c| WireConsumer {
                queue: c.queue,
                id: c.id,
                unacked: c.unacked,
            })
            .collect()
    }

    async fn close_consumer(&self, id: u64) -> bool {
        // A consumer of a queue the caller may not manage is, to them, not attached.
        let queue = self.qm.consumers().into_iter().find(|c| c.id == id);
        if queue.is_none_or(|c| !allowed(Action::QueueManage, &c.queue)) {
            return false;
        }
        let closed = self.qm.close_consumer(id);
        if closed {
            tracing::info!(consumer = id, "consumer closed by an administrator");
        }
        closed
    }
}

/// State of one `consume` stream. `consumer` is `None` once the stream has ended.
struct ConsumeState {
    consumer: Option<Consumer>,
    /// An error met while topping up a batch, reported as the next item.
    pending_error: Option<Error>,
    /// Deliveries still to hand out when the stream has a limit.
    remaining: Option<u64>,
}

fn to_wire(d: Delivery) -> WireDelivery {
    // The `Delivery` itself is dropped here, which does not settle it: the client
    // settles by tag.
    WireDelivery {
        id: d.id().0,
        tag: d.tag(),
        sent_at_ms: d.sent_at_ms(),
        body: d.body().clone(),
    }
}

async fn next_batch(mut st: ConsumeState) -> Option<(ConsumeItem, ConsumeState)> {
    let consumer = st.consumer.as_mut()?;
    if let Some(e) = st.pending_error.take() {
        return finish(st, e);
    }
    let first = match consumer.recv().await {
        Ok(d) => d,
        Err(e) => return finish(st, e),
    };
    let mut batch = vec![to_wire(first)];
    let max = st.remaining.map_or(MAX_DELIVERIES_PER_ITEM, |r| {
        r.min(MAX_DELIVERIES_PER_ITEM as u64) as usize
    });
    // Top the item up with whatever is ready now, without waiting: many deliveries per
    // frame under load, one per frame when trickling. `recv` is cancel-safe, so a fetch
    // started here is kept and resumed by the next call.
    while batch.len() < max {
        match consumer.recv().now_or_never() {
            Some(Ok(d)) => batch.push(to_wire(d)),
            Some(Err(e)) => {
                st.pending_error = Some(e);
                break;
            }
            None => break,
        }
    }
    if let Some(r) = &mut st.remaining {
        *r -= batch.len() as u64;
        if *r == 0 {
            // Detach now: what the consumer prefetched returns to the queue at once,
            // without counting an attempt.
            st.consumer = None;
        }
    }
    Some((Ok(batch), st))
}

/// Ends the stream after reporting `e` (a closing manager ends it quietly).
fn finish(mut st: ConsumeState, e: Error) -> Option<(ConsumeItem, ConsumeState)> {
    st.consumer = None;
    match e {
        Error::Closed => None,
        e => Some((Err(QueueError::from(e)), st)),
    }
}

#[cfg(test)]
mod tests {
    use super::check_remote_name;

    #[test]
    fn remote_names_are_printable_words() {
        assert!(check_remote_name("orders").is_ok());
        assert!(check_remote_name("orders.dlq").is_ok());
        assert!(check_remote_name("ünïcode-ok_1").is_ok());
        assert!(check_remote_name("").is_err());
        assert!(check_remote_name("a b").is_err());
        assert!(check_remote_name("a\nb").is_err());
        assert!(check_remote_name("bell\u{7}").is_err());
        assert!(check_remote_name(&"x".repeat(256)).is_err());
    }
}
