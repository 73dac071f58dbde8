//! The broker's `mw.queue` service as a [`NextHop`] ([`RemoteHop`], [`RemoteConnect`]),
//! and [`RoutingQueueService`]: that service with a [`Router`] behind it, so a broker
//! forwards the queues it does not own.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use mw_rpc::{ClientConfig, Streaming};
use tokio::sync::Mutex;

use super::hop::{Connect, HopError, NextHop};
use super::routing::Router;
use crate::message::{DeliveryTag, Message};
use crate::remote::check_remote_name;
use crate::remote::{
    BrokerStats, ConsumeItem, QueueError, QueueInfo, QueueService, QueueServiceImpl, RemoteError,
    RemoteQueues, WireConsumer, WireMessage, WirePeeked, MAX_BATCH,
};

/// Deadline of one call to a hop by default: long enough for a batch and a busy
/// disk, short enough that a hung hop is retried (and its messages kept invisible)
/// rather than waited on forever.
pub const DEFAULT_HOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker (or any `mw.queue` server) at an address, as a [`NextHop`]: sends
/// with [`RemoteQueue::send_batch`](crate::remote::RemoteQueue::send_batch) and
/// keeps the ids, so the broker's dedup window stores resends once.
///
/// Connects on first use and again after any failed call (so a broker that
/// restarts is found again). Every call has a deadline
/// ([`DEFAULT_HOP_TIMEOUT`] unless set with [`with_timeout`](RemoteHop::with_timeout)).
#[derive(Debug)]
pub struct RemoteHop {
    addr: String,
    config: ClientConfig,
    client: Mutex<Option<RemoteQueues>>,
}

impl RemoteHop {
    /// The hop at `addr` (`HOST:PORT`, `unix:PATH`, `inproc:NAME`). Does not connect yet.
    pub fn new(addr: &str) -> RemoteHop {
        RemoteHop::with_timeout(addr, DEFAULT_HOP_TIMEOUT)
    }

    /// Like [`new`](RemoteHop::new), with this deadline for each call.
    pub fn with_timeout(addr: &str, timeout: Duration) -> RemoteHop {
        RemoteHop::with_config(
            addr,
            ClientConfig {
                default_timeout: timeout,
                ..ClientConfig::default()
            },
        )
    }

    /// Like [`new`](RemoteHop::new), connecting with `config`: TLS and credentials for a
    /// next broker that requires them, and `default_timeout` as the deadline of each call.
    pub fn with_config(addr: &str, config: ClientConfig) -> RemoteHop {
        RemoteHop {
            addr: addr.to_string(),
            config,
            client: Mutex::new(None),
        }
    }

    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn try_send(&self, queue: &str, msgs: Vec<Message>) -> Result<(), HopError> {
        // Held across the call: one transmission queue has one forwarder, and one call
        // at a time keeps the order on the wire.
        let mut slot = self.client.lock().await;
        let client = match &*slot {
            Some(c) => c.clone(),
            None => {
                let c = RemoteQueues::connect_with(&self.addr, self.config.clone())
                    .await
                    .map_err(|e| classify(&e))?;
                *slot = Some(c.clone());
                c
            }
        };
        let q = client.queue(queue);
        let mut msgs = msgs;
        while !msgs.is_empty() {
            let rest = msgs.split_off(msgs.len().min(MAX_BATCH));
            let results = match q.send_batch(msgs).await {
                Ok(r) => r,
                Err(e) => {
                    if matches!(e, RemoteError::Rpc(_) | RemoteError::Connect { .. }) {
                        *slot = None; // reconnect on the next attempt
                    }
                    return Err(classify(&e));
                }
            };
            // The first refusal decides; messages before it are stored, later ones may
            // be, and a resend stores each of those once.
            if let Some(e) = results.into_iter().find_map(Result::err) {
                return Err(classify(&RemoteError::Refused(e)));
            }
            msgs = rest;
        }
        Ok(())
    }
}

/// Refusals that cannot change are [`HopError::Refused`]; everything else (including
/// a hop that does not speak `mw.queue`, or refuses the route's user a queue: a
/// configuration mistake that may be fixed) is retried.
fn classify(e: &RemoteError) -> HopError {
    let text = mw_core::error::chain(e);
    match e {
        RemoteError::Refused(QueueError::PermissionDenied(_)) => HopError::Unavailable(text),
        RemoteError::Refused(q) if q.is_permanent() => HopError::Refused(text),
        _ => HopError::Unavailable(text),
    }
}

impl NextHop for RemoteHop {
    fn send<'a>(
        &'a self,
        queue: &'a str,
        msgs: Vec<Message>,
    ) -> BoxFuture<'a, Result<(), HopError>> {
        Box::pin(self.try_send(queue, msgs))
    }
}

/// Reaches hops with [`RemoteHop`] (what `mw broker --route` uses).
#[derive(Debug, Clone)]
pub struct RemoteConnect {
    /// Deadline of each call to a hop. Default: [`DEFAULT_HOP_TIMEOUT`].
    pub timeout: Duration,
    /// How hops are connected to: TLS and credentials (`client.tls`,
    /// `client.credentials`) for next brokers that require them. Its `default_timeout`
    /// is replaced by `timeout`.
    pub client: ClientConfig,
}

impl Default for RemoteConnect {
    fn default() -> Self {
        RemoteConnect {
            timeout: DEFAULT_HOP_TIMEOUT,
            client: ClientConfig::default(),
        }
    }
}

impl Connect for RemoteConnect {
    fn connect(&self, addr: &str) -> Arc<dyn NextHop> {
        let config = ClientConfig {
            default_timeout: self.timeout,
            ..self.client.clone()
        };
        Arc::new(RemoteHop::with_config(addr, config))
    }
}

/// The `mw.queue` service with a [`Router`] behind it: a send to a routed queue is
/// stored in that hop's transmission queue (and answered once durable there);
/// everything else is [`QueueServiceImpl`] over the router's queue manager.
///
/// ```no_run
/// # async fn f(router: mw_queue::forward::Router) -> Result<(), mw_rpc::RpcError> {
/// use mw_queue::forward::RoutingQueueService;
/// use mw_queue::remote::QueueServiceServer;
/// let server = mw_rpc::Server::builder()
///     .add(QueueServiceServer::new(RoutingQueueService::new(router)))
///     .build()
///     .spawn("127.0.0.1:7801")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RoutingQueueService {
    router: Router,
    local: QueueServiceImpl,
}

impl RoutingQueueService {
    /// Serves the router's queue manager, forwarding routed queues.
    pub fn new(router: Router) -> Self {
        let local = QueueServiceImpl::new(router.queue_manager().clone());
        RoutingQueueService { router, local }
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }
}

impl QueueService for RoutingQueueService {
    async fn send(&self, queue: String, message: WireMessage) -> Result<u128, QueueError> {
        if self.router.route(&queue).is_none() {
            return self.local.send(queue, message).await;
        }
        mw_rpc::auth::check(mw_rpc::auth::Action::QueueSend, &queue)?;
        check_remote_name(&queue)?;
        let id = self.router.send(&queue, Message::from(message)).await?;
        Ok(id.0)
    }

    async fn send_batch(
        &self,
        queue: String,
        messages: Vec<WireMessage>,
    ) -> Result<Vec<Result<u128, QueueError>>, QueueError> {
        if self.router.route(&queue).is_none() {
            return self.local.send_batch(queue, messages).await;
        }
        mw_rpc::auth::check(mw_rpc::auth::Action::QueueSend, &queue)?;
        check_remote_name(&queue)?;
        if messages.len() > MAX_BATCH {
            return Err(QueueError::BadRequest(format!(
                "batch of {} messages exceeds the limit of {MAX_BATCH}",
                messages.len()
            )));
        }
        let messages = messages.into_iter().map(Message::from).collect();
        // In order and in one group commit, like a local batch (not one send per message,
        // whose enqueue order a join would not keep).
        Ok(self
            .router
            .send_batch(&queue, messages)
            .await
            .into_iter()
            .map(|r| r.map(|id| id.0).map_err(QueueError::from))
            .collect())
    }

    async fn consume(
        &self,
        queue: String,
        prefetch: u32,
        visibility_ms: Option<u64>,
        limit: Option<u64>,
    ) -> Streaming<ConsumeItem> {
        self.local
            .consume(queue, prefetch, visibility_ms, limit)
            .await
    }

    async fn ack(&self, queue: String, tag: DeliveryTag) -> Result<(), QueueError> {
        self.local.ack(queue, tag).await
    }

    async fn nack(
        &self,
        queue: String,
        tag: DeliveryTag,
        delay_ms: Option<u64>,
    ) -> Result<(), QueueError> {
        self.local.nack(queue, tag, delay_ms).await
    }

    async fn reject(&self, queue: String, tag: DeliveryTag) -> Result<(), QueueError> {
        self.local.reject(queue, tag).await
    }

    async fn extend(&self, queue: String, tag: DeliveryTag, by_ms: u64) -> Result<(), QueueError> {
        self.local.extend(queue, tag, by_ms).await
    }

    async fn queues(&self) -> Vec<QueueInfo> {
        self.local.queues().await
    }

    async fn redrive(&self, queue: String) -> Result<u64, QueueError> {
        self.local.redrive(queue).await
    }

    async fn ack_many(
        &self,
        queue: String,
        tags: Vec<DeliveryTag>,
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        self.local.ack_many(queue, tags).await
    }

    async fn stats(&self) -> BrokerStats {
        self.local.stats().await
    }

    async fn purge(&self, queue: String) -> Result<u64, QueueError> {
        self.local.purge(queue).await
    }

    async fn delete(&self, queue: String) -> Result<u64, QueueError> {
        self.local.delete(queue).await
    }

    async fn peek(&self, queue: String, max: u32) -> Result<Vec<WirePeeked>, QueueError> {
        self.local.peek(queue, max).await
    }

    async fn consumers(&self) -> Vec<WireConsumer> {
        self.local.consumers().await
    }

    async fn close_consumer(&self, id: u64) -> bool {
        self.local.close_consumer(id).await
    }
}
