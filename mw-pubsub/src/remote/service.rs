//! The broker side: [`PubSubService`], the implementation of the `mw.pubsub` service over a
//! [`Bus`].
//!
//! Every network subscriber is an ordinary [`Subscription`] on the broker's bus, with the buffer
//! and policy the subscriber declared. Its stream handler drains it with one lock per batch and
//! sends the batch as one stream item; the RPC layer only polls the handler while the subscriber
//! has credit, so a slow subscriber's events pile up in its own bounded buffer, where its policy
//! applies, and nowhere else. Memory per subscriber is therefore at most its buffer plus the
//! credit window of batches in flight.
//!
//! Ordering: the RPC server starts the calls of one connection in arrival order, and a publish
//! handler finishes inside its first poll (it never awaits), so one publisher's events reach the
//! bus in the order it sent them.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use mw_queue::DeliveryTag;
use mw_rpc::auth::{allowed, check, Action};
use mw_rpc::Streaming;

use super::durable::Durables;
use super::wire::{
    decode_batch, BatchEncoder, DurableItem, EventBatch, PubSubError, RemoteStats,
    RemoteSubscriptionStats, SubscribeItem, WireReport,
};
use crate::bus::Bus;
use crate::subscriber::{CloseReason, SlowConsumerPolicy, SubscribeOptions, Subscription};
use crate::topic::Topic;

/// Most events packed into one subscription stream item.
pub const MAX_BATCH_EVENTS: usize = 1024;
/// A subscription stream item stops growing once it holds this many bytes.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

/// The `mw.pubsub` service: publish, subscribe, retained messages and durable subscriptions.
#[mw_rpc::service(name = "mw.pubsub", version = 1)]
pub trait PubSub {
    /// Publishes one event, fire-and-forget. An invalid topic is logged by the broker and
    /// dropped; use [`publish_report`](PubSub::publish_report) to hear about it.
    #[oneway]
    async fn publish(&self, topic: String, payload: Bytes);
    /// Publishes a batch of events (see [`wire`](super::wire) for the packing), in order,
    /// fire-and-forget. A malformed event ends the batch there (the events before it are
    /// published) and is logged.
    #[oneway]
    async fn publish_batch(&self, batch: EventBatch);
    /// Publishes one event and reports how many subscribers it reached.
    async fn publish_report(
        &self,
        topic: String,
        payload: Bytes,
    ) -> Result<WireReport, PubSubError>;
    /// Publishes one event and keeps it as the topic's retained message for late subscribers.
    async fn publish_retained(
        &self,
        topic: String,
        payload: Bytes,
    ) -> Result<WireReport, PubSubError>;
    /// Forgets a topic's retained message; whether it had one.
    async fn clear_retained(&self, topic: String) -> Result<bool, PubSubError>;
    /// Completes once every call sent before it on this connection has been handled.
    async fn flush(&self);
    /// Subscribes with a broker-side buffer of `buffer` events and a slow-consumer policy.
    /// The first item is [`SubscribeItem::Ready`] or the error; then batches of events. Ends
    /// with [`PubSubError::SlowConsumer`] if the policy disconnected it.
    async fn subscribe(
        &self,
        pattern: String,
        buffer: u32,
        policy: SlowConsumerPolicy,
    ) -> Streaming<Result<SubscribeItem, PubSubError>>;
    /// Opens (creating it if new) the durable subscription `name` on `pattern` and streams its
    /// stored events, at most `prefetch` unacknowledged at once. The first item is
    /// [`DurableItem::Ready`] or the error. Deliveries not acknowledged when the stream ends
    /// are returned to the queue at once.
    async fn subscribe_durable(
        &self,
        name: String,
        pattern: String,
        prefetch: u32,
    ) -> Streaming<Result<DurableItem, PubSubError>>;
    /// Acknowledges deliveries of durable subscription `name`; returns how many were still
    /// outstanding (the others were already settled or timed out).
    async fn ack(&self, name: String, tags: Vec<DeliveryTag>) -> Result<u64, PubSubError>;
    /// Deletes durable subscription `name`: it stops collecting and its stored events are
    /// discarded. Whether it existed.
    async fn unsubscribe_durable(&self, name: String) -> Result<bool, PubSubError>;
    /// What the broker's bus holds.
    async fn stats(&self) -> RemoteStats;
}

/// One network subscription, shared between its stream and the stats registry.
struct RemoteSub {
    sub: Mutex<Subscription>,
    forwarded: AtomicU64,
}

impl RemoteSub {
    fn lock(&self) -> MutexGuard<'_, Subscription> {
        // Held for a few non-panicking calls; a poisoned subscription is still sound.
        self.sub.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type RemoteSubs = Mutex<HashMap<u64, Arc<RemoteSub>>>;

/// The implementation of [`PubSub`] that a broker hosts (`PubSubServer::new(service)`).
pub struct PubSubService {
    bus: Bus,
    durables: Option<Arc<Durables>>,
    /// Where retained messages are kept across restarts (brokers with a data directory).
    retained_file: Option<Arc<super::retained_file::RetainedFile>>,
    remote: Arc<RemoteSubs>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for PubSubService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubService")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl PubSubService {
    /// Serves `bus` without durable subscriptions (they fail with [`PubSubError::Storage`]).
    pub fn new(bus: Bus) -> Self {
        PubSubService {
            bus,
            durables: None,
            retained_file: None,
            remote: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(1),
        }
    }

    /// Serves `bus` with durable subscriptions stored in `queues`, their definitions in
    /// `dir/pubsub-durable.txt`. Re-attaches every durable subscription defined there, so they
    /// keep collecting across broker restarts. Retained messages are kept in
    /// `dir/pubsub-retained.bin` (rewritten on each retained publish or clear through this
    /// service) and stored back into `bus` here.
    ///
    /// # Errors
    ///
    /// The definitions file cannot be read, or holds an invalid line (named by number).
    pub fn with_durable(
        bus: Bus,
        queues: mw_queue::QueueManager,
        dir: &std::path::Path,
    ) -> crate::Result<Self> {
        let durables = Durables::open(bus.clone(), queues, dir)?;
        let retained = super::retained_file::RetainedFile::open(&bus, dir)?;
        Ok(PubSubService {
            durables: Some(Arc::new(durables)),
            retained_file: Some(Arc::new(retained)),
            ..PubSubService::new(bus)
        })
    }

    /// The bus served.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    fn durables(&self) -> Result<&Arc<Durables>, PubSubError> {
        self.durables.as_ref().ok_or_else(|| {
            PubSubError::Storage("this broker has no storage for durable subscriptions".into())
        })
    }
}

fn topic(name: &str) -> Result<Topic, PubSubError> {
    Topic::new(name).map_err(PubSubError::from)
}

impl PubSub for PubSubService {
    async fn publish(&self, topic: String, payload: Bytes) {
        match Topic::new(&topic) {
            Ok(t) => {
                if let Err(denied) = check(Action::TopicPublish, t.as_str()) {
                    // One-way: nobody to answer (`publish_report` answers).
                    tracing::warn!(%denied, "refused a one-way publish");
                    return;
                }
                if let Err(err) = self.bus.publish(&t, payload) {
                    tracing::info!(topic = %t, error = %err, "refused a one-way publish");
                }
            }
            Err(e) => tracing::debug!(error = %e, "dropping one-way publish"),
        }
    }

    async fn publish_batch(&self, batch: EventBatch) {
        let bus = &self.bus;
        let r = decode_batch(&batch, |e| {
            if let Err(denied) = check(Action::TopicPublish, e.topic.as_str()) {
                tracing::warn!(%denied, "refused a one-way publish");
                return;
            }
            if let Err(err) = bus.publish(&e.topic, e.payload) {
                // One-way: nobody to answer, so the refusal (an oversized event, a closed
                // bus) is the operator's to see.
                tracing::info!(topic = %e.topic, error = %err, "refused a one-way publish");
            }
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "dropping the rest of a malformed publish batch");
        }
    }

    async fn publish_report(
        &self,
        topic_name: String,
        payload: Bytes,
    ) -> Result<WireReport, PubSubError> {
        let t = topic(&topic_name)?;
        check(Action::TopicPublish, t.as_str())?;
        match self.bus.publish(&t, payload) {
            Ok(report) => Ok(report.into()),
            Err(e) => {
                tracing::info!(topic = %t, error = %e, "refused a publish");
                Err(e.into())
            }
        }
    }

    async fn publish_retained(
        &self,
        topic_name: String,
        payload: Bytes,
    ) -> Result<WireReport, PubSubError> {
        let t = topic(&topic_name)?;
        check(Action::TopicPublish, t.as_str())?;
        let Some(file) = &self.retained_file else {
            return Ok(self.bus.publish_retained(&t, payload)?.into());
        };
        let _one_writer = file.writer.lock().await;
        let report = self.bus.publish_retained(&t, payload)?;
        file.save(&self.bus).await?;
        Ok(report.into())
    }

    async fn clear_retained(&self, topic_name: String) -> Result<bool, PubSubError> {
        let t = topic(&topic_name)?;
        check(Action::TopicPublish, t.as_str())?;
        let Some(file) = &self.retained_file else {
            return Ok(self.bus.clear_retained(&t)?);
        };
        let _one_writer = file.writer.lock().await;
        let had = self.bus.clear_retained(&t)?;
        if had {
            file.save(&self.bus).await?;
        }
        Ok(had)
    }

    async fn flush(&self) {}

    async fn subscribe(
        &self,
        pattern: String,
        buffer: u32,
        policy: SlowConsumerPolicy,
    ) -> Streaming<Result<SubscribeItem, PubSubError>> {
        let options = SubscribeOptions {
            buffer: buffer as usize,
            policy,
        };
        if let Err(denied) = check(Action::TopicSubscribe, &pattern) {
            return Box::pin(futures::stream::iter([Err(PubSubError::from(denied))]));
        }
        let sub = match self.bus.subscribe(pattern.as_str(), options) {
            Ok(s) => s,
            Err(e) => return Box::pin(futures::stream::iter([Err(PubSubError::from(e))])),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(RemoteSub {
            sub: Mutex::new(sub),
            forwarded: AtomicU64::new(0),
        });
        self.remote
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, shared.clone());
        Box::pin(Forwarder {
            id,
            shared,
            registry: self.remote.clone(),
            encoder: BatchEncoder::new(),
            state: ForwardState::Start,
        })
    }

    async fn subscribe_durable(
        &self,
        name: String,
        pattern: String,
        prefetch: u32,
    ) -> Streaming<Result<DurableItem, PubSubError>> {
        let durables = match self.durables() {
            Ok(d) => d.clone(),
            Err(e) => return Box::pin(futures::stream::iter([Err(e)])),
        };
        if let Err(denied) = check(Action::TopicSubscribe, &pattern) {
            return Box::pin(futures::stream::iter([Err(PubSubError::from(denied))]));
        }
        durables.session(&name, &pattern, prefetch).await
    }

    async fn ack(&self, name: String, tags: Vec<DeliveryTag>) -> Result<u64, PubSubError> {
        let durables = self.durables()?;
        if let Some(pattern) = durables.pattern_of(&name) {
            check(Action::TopicSubscribe, &pattern)?;
        }
        durables.ack(&name, &tags).await
    }

    async fn unsubscribe_durable(&self, name: String) -> Result<bool, PubSubError> {
        let durables = self.durables()?;
        if let Some(pattern) = durables.pattern_of(&name) {
            check(Action::TopicSubscribe, &pattern)?;
        }
        durables.remove(&name).await
    }

    async fn stats(&self) -> RemoteStats {
        let bus = self.bus.stats();
        let remote = self
            .remote
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|r| allowed(Action::TopicSubscribe, r.lock().pattern().as_str()))
            .map(|r| {
                let sub = r.lock();
                RemoteSubscriptionStats {
                    pattern: sub.pattern().to_string(),
                    buffered: sub.len() as u64,
                    capacity: sub.capacity() as u64,
                    policy: sub.policy(),
                    dropped: sub.dropped(),
                    forwarded: r.forwarded.load(Ordering::Relaxed),
                }
            })
            .collect();
        RemoteStats {
            subscriptions: bus.subscriptions as u64,
            sinks: bus.sinks as u64,
            retained_topics: bus.retained_topics as u64,
            remote,
            durable: self
                .durables
                .as_ref()
                .map(|d| d.stats())
                .unwrap_or_default()
                .into_iter()
                .filter(|d| allowed(Action::TopicSubscribe, &d.pattern))
                .collect(),
        }
    }
}

enum ForwardState {
    Start,
    Live,
    Done,
}

/// The stream of one network subscription: `Ready`, then batches drained from its
/// [`Subscription`]. Dropping it (the subscriber cancelled or disconnected) unsubscribes.
struct Forwarder {
    id: u64,
    shared: Arc<RemoteSub>,
    registry: Arc<RemoteSubs>,
    encoder: BatchEncoder,
    state: ForwardState,
}

impl Stream for Forwarder {
    type Item = Result<SubscribeItem, PubSubError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match std::mem::replace(&mut this.state, ForwardState::Live) {
            ForwardState::Start => return Poll::Ready(Some(Ok(SubscribeItem::Ready))),
            ForwardState::Live => {}
            ForwardState::Done => {
                this.state = ForwardState::Done;
                return Poll::Ready(None);
            }
        }
        let mut sub = this.shared.lock();
        let first = match Pin::new(&mut *sub).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(e)) => e,
            Poll::Ready(None) => {
                let reason = sub.close_reason();
                let capacity = sub.capacity() as u64;
                this.state = ForwardState::Done;
                return Poll::Ready(match reason {
                    Some(CloseReason::SlowConsumer) => {
                        Some(Err(PubSubError::SlowConsumer(capacity)))
                    }
                    _ => Some(Err(PubSubError::Closed)),
                });
            }
        };
        let enc = &mut this.encoder;
        enc.push(&first.topic, &first.payload, first.dropped_before);
        while enc.len() < MAX_BATCH_EVENTS && enc.bytes() < MAX_BATCH_BYTES {
            match sub.try_recv() {
                Ok(Some(e)) => enc.push(&e.topic, &e.payload, e.dropped_before),
                // Empty, or closed: the next poll reports the close.
                Ok(None) | Err(_) => break,
            }
        }
        drop(sub);
        this.shared
            .forwarded
            .fetch_add(enc.len() as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(SubscribeItem::Events(enc.finish()))))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let removed = self
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        // Dropped outside the registry lock: this unsubscribes from the bus.
        drop(removed);
    }
}
