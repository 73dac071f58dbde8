//! The client side: [`RemoteBus`] and the subscriptions it returns.
//!
//! Fire-and-forget publishes go through a bounded queue to one task per connection, which packs
//! whatever has queued up into one `publish_batch` one-way call (up to
//! [`RemoteConfig::max_batch_events`] events or [`RemoteConfig::max_batch_bytes`]). Under load
//! that is hundreds of events per frame; when idle, a lone event leaves at once. Calls that need
//! a reply (`publish_report`, `publish_retained`, `flush`) go through the same task, after the
//! events queued before them, so one `RemoteBus` never reorders its own publishes.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use mw_queue::DeliveryTag;
use mw_rpc::{Channel, ClientConfig, ClientStream, RpcError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::error::{RemoteError, RemoteResult as Result};
use super::service::PubSubClient;
use super::wire::{
    decode_batch, BatchEncoder, DurableItem, PubSubError, RemoteStats, SubscribeItem,
};
use crate::error::Error;
use crate::event::Event;
use crate::report::PublishReport;
use crate::subscriber::SubscribeOptions;
use crate::topic::{IntoPattern, IntoTopic, Pattern, Topic};
use crate::typed::{decode, encode, TypedEvent};

/// Settings of a [`RemoteBus`]. Every field has a documented default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemoteConfig {
    /// The RPC channel's settings. Default: [`ClientConfig::default`] with a
    /// `stream_window` of 32 batches per subscription, enough to keep a fast subscriber
    /// busy across a round trip while bounding what a slow one has in flight.
    pub client: ClientConfig,
    /// Publishes queued for the sending task before [`RemoteBus::publish`] waits. Default
    /// 8192: a few batches, so a publisher faster than the link is slowed down instead of
    /// growing memory.
    pub publish_queue: usize,
    /// Most events in one `publish_batch` call. Default 1024.
    pub max_batch_events: usize,
    /// A batch is sent once it holds this many bytes. Default 64 KiB.
    pub max_batch_bytes: usize,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            client: ClientConfig {
                stream_window: 32,
                ..ClientConfig::default()
            },
            publish_queue: 8192,
            max_batch_events: 1024,
            max_batch_bytes: 64 * 1024,
        }
    }
}

type Start = Box<dyn FnOnce(PubSubClient) -> BoxFuture<'static, ()> + Send>;

enum Cmd {
    Publish(Topic, Bytes),
    /// Starts a call in order after the queued publishes; the closure sends its reply handle
    /// to the waiting caller.
    Start(Start),
}

/// Packs queued publishes into batches; ends when every [`RemoteBus`] clone is gone or the
/// connection broke (later publishes then fail with `Disconnected`).
async fn publish_loop(client: PubSubClient, mut rx: mpsc::Receiver<Cmd>, config: RemoteConfig) {
    let mut cmds = Vec::with_capacity(config.max_batch_events);
    let mut enc = BatchEncoder::new();
    let limit = config.max_batch_events.max(1);
    let frame_room = config
        .client
        .transport
        .max_frame_len
        .saturating_sub(FRAME_OVERHEAD);
    while rx.recv_many(&mut cmds, limit).await > 0 {
        for cmd in cmds.drain(..) {
            match cmd {
                Cmd::Publish(topic, payload) => {
                    // Each event fits in a frame on its own (`publish` checked); a batch
                    // it would push over one frame is sent first, so no call is ever
                    // refused for its size (which would end this task).
                    let need = topic.as_str().len() + payload.len() + EVENT_OVERHEAD;
                    if !enc.is_empty()
                        && enc.bytes() + need > frame_room
                        && client.publish_batch(enc.finish()).await.is_err()
                    {
                        return;
                    }
                    enc.push(&topic, &payload, 0);
                    if enc.bytes() >= config.max_batch_bytes
                        && client.publish_batch(enc.finish()).await.is_err()
                    {
                        return;
                    }
                }
                Cmd::Start(start) => {
                    if !enc.is_empty() && client.publish_batch(enc.finish()).await.is_err() {
                        return;
                    }
                    start(client.clone()).await;
                }
            }
        }
        if !enc.is_empty() && client.publish_batch(enc.finish()).await.is_err() {
            return;
        }
    }
}

/// A connection to a broker's event bus, with the embedded [`Bus`](crate::Bus)'s API.
///
/// Cheap to clone: clones share the connection and the publish order. Needs a tokio runtime
/// (it runs one task per connection for batching publishes).
#[derive(Clone)]
pub struct RemoteBus {
    client: PubSubClient,
    tx: mpsc::Sender<Cmd>,
    /// Largest topic + payload one frame carries (the connection's frame limit less
    /// the headers).
    frame_room: usize,
}

/// Bytes of a frame that are not the batch: frame and call headers, service name,
/// argument length (generous).
const FRAME_OVERHEAD: usize = 1024;
/// Bytes of one packed event besides its topic and payload: three varints.
const EVENT_OVERHEAD: usize = 30;

impl std::fmt::Debug for RemoteBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBus")
            .field("addr", self.client.channel().addr())
            .finish()
    }
}

fn disconnected() -> RemoteError {
    RemoteError::Rpc(RpcError::Disconnected)
}

impl RemoteBus {
    /// Connects to the broker at `addr` (`HOST:PORT`, `unix:PATH`, `inproc:NAME`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::Connect`] if the address is bad or the broker cannot be reached.
    pub async fn connect(addr: &str) -> Result<RemoteBus> {
        RemoteBus::connect_with(addr, RemoteConfig::default()).await
    }

    /// Connects with explicit settings.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with(addr: &str, config: RemoteConfig) -> Result<RemoteBus> {
        let channel = Channel::connect_with(addr, config.client.clone())
            .await
            .map_err(|source| RemoteError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let client = PubSubClient::new(channel);
        let (tx, rx) = mpsc::channel(config.publish_queue.max(1));
        let frame_room = config
            .client
            .transport
            .max_frame_len
            .saturating_sub(FRAME_OVERHEAD);
        tokio::spawn(publish_loop(client.clone(), rx, config));
        Ok(RemoteBus {
            client,
            tx,
            frame_room,
        })
    }

    /// The generated RPC client, for calls this type does not wrap.
    pub fn client(&self) -> &PubSubClient {
        &self.client
    }

    /// Publishes `payload` on `topic`, fire-and-forget: returns once the event is queued for
    /// sending (it leaves in the next batch). Whether anyone received it is not reported; use
    /// [`publish_report`](Self::publish_report) for that.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Local`] with a syntax error in `topic` (checked here, nothing is
    /// sent) or [`Error::EventTooLarge`] for an event no frame can carry (the connection's
    /// `transport.max_frame_len` less the headers; nothing
    /// is sent), or [`RemoteError::Rpc`] with `Disconnected` once the connection is gone.
    /// An event within the frame limit but over the broker's max event size is dropped
    /// by the broker (this call is fire-and-forget); [`publish_report`](Self::publish_report)
    /// reports that refusal.
    ///
    /// # Cancel safety
    ///
    /// If cancelled while waiting for room in the queue, the event is not sent.
    pub async fn publish(&self, topic: impl IntoTopic, payload: impl Into<Bytes>) -> Result<()> {
        let topic = topic.into_topic()?;
        let payload = payload.into();
        self.check_frame(&topic, &payload)?;
        self.tx
            .send(Cmd::Publish(topic, payload))
            .await
            .map_err(|_| disconnected())
    }

    /// Refuses an event that cannot fit in one frame.
    fn check_frame(&self, topic: &Topic, payload: &Bytes) -> Result<()> {
        let limit = self
            .frame_room
            .saturating_sub(topic.as_str().len() + EVENT_OVERHEAD);
        if payload.len() > limit {
            return Err(Error::EventTooLarge {
                size: payload.len(),
                limit,
            }
            .into());
        }
        Ok(())
    }

    /// Encodes `value` with postcard and [`publish`](Self::publish)es it.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish), and [`RemoteError::Local`] with [`Error::Encode`].
    pub async fn publish_typed<T: Serialize + ?Sized>(
        &self,
        topic: impl IntoTopic,
        value: &T,
    ) -> Result<()> {
        let topic = topic.into_topic()?;
        let payload = encode(&topic, value)?;
        self.publish(topic, payload).await
    }

    async fn start<T: Send + 'static>(
        &self,
        f: impl FnOnce(PubSubClient) -> BoxFuture<'static, T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let start: Start = Box::new(move |client| {
            async move {
                let _ = tx.send(f(client).await);
            }
            .boxed()
        });
        self.tx
            .send(Cmd::Start(start))
            .await
            .map_err(|_| disconnected())?;
        rx.await.map_err(|_| disconnected())
    }

    /// Publishes and waits for the broker's [`PublishReport`]: how many subscribers matched
    /// and how many took the event.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Local`] with a syntax error in `topic` or [`Error::EventTooLarge`] for
    /// an event no frame can carry (nothing is sent); [`RemoteError::Refused`] with
    /// [`PubSubError::EventTooLarge`](super::PubSubError::EventTooLarge) for one over the
    /// broker's max event size; [`RemoteError::Rpc`] for a failed call.
    pub async fn publish_report(
        &self,
        topic: impl IntoTopic,
        payload: impl Into<Bytes>,
    ) -> Result<PublishReport> {
        let topic = topic.into_topic()?;
        let payload = payload.into();
        self.check_frame(&topic, &payload)?;
        let handle = self
            .start(move |c| {
                async move { c.start_publish_report(topic.to_string(), payload).await }.boxed()
            })
            .await?
            .map_err(RemoteError::from)?;
        Ok(handle.await.map_err(RemoteError::from)?.into())
    }

    /// Publishes and stores the event as `topic`'s retained message, which every later
    /// subscriber whose pattern matches receives first.
    ///
    /// # Errors
    ///
    /// As [`publish_report`](Self::publish_report), and [`RemoteError::Refused`] with
    /// [`PubSubError::RetainedFull`].
    pub async fn publish_retained(
        &self,
        topic: impl IntoTopic,
        payload: impl Into<Bytes>,
    ) -> Result<PublishReport> {
        let topic = topic.into_topic()?;
        let payload = payload.into();
        self.check_frame(&topic, &payload)?;
        let handle = self
            .start(move |c| {
                async move { c.start_publish_retained(topic.to_string(), payload).await }.boxed()
            })
            .await?
            .map_err(RemoteError::from)?;
        Ok(handle.await.map_err(RemoteError::from)?.into())
    }

    /// Forgets `topic`'s retained message; whether it had one.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Local`] for a syntax error in `topic`; [`RemoteError::Rpc`].
    pub async fn clear_retained(&self, topic: impl IntoTopic) -> Result<bool> {
        let topic = topic.into_topic()?;
        self.flush().await?;
        self.client
            .clear_retained(topic.to_string())
            .await
            .map_err(RemoteError::from)
    }

    /// Waits until the broker has handled every publish made before this call.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Rpc`] if the connection broke.
    pub async fn flush(&self) -> Result<()> {
        let handle = self
            .start(|c| async move { c.start_flush().await }.boxed())
            .await??;
        Ok(handle.await?)
    }

    /// Subscribes to `pattern` with a broker-side buffer and slow-consumer policy. Returns
    /// once the broker registered the subscription: every event published after that reaches
    /// it. Matching retained messages come first.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Local`] for a syntax error in `pattern` (checked here);
    /// [`RemoteError::Refused`] if the broker refused (buffer too large, too many
    /// subscriptions); [`RemoteError::Rpc`].
    pub async fn subscribe(
        &self,
        pattern: impl IntoPattern,
        options: SubscribeOptions,
    ) -> Result<RemoteSubscription> {
        let pattern = pattern.into_pattern()?;
        // Refused as asked rather than cut to u32::MAX, which would be reported as if
        // the caller had asked for 4294967295.
        let buffer = u32::try_from(options.buffer).map_err(|_| Error::BufferTooLarge {
            requested: options.buffer,
            max: u32::MAX as usize,
        })?;
        let mut stream = self
            .client
            .subscribe(pattern.to_string(), buffer, options.policy)
            .await?;
        match stream.next().await {
            Some(Ok(Ok(SubscribeItem::Ready))) => Ok(RemoteSubscription {
                stream,
                pattern,
                pending: VecDeque::new(),
                dropped: 0,
            }),
            Some(Ok(Ok(other))) => Err(RemoteError::Rpc(RpcError::Protocol(format!(
                "expected Ready as the first item of a subscription, got {other:?}"
            )))),
            Some(Ok(Err(e))) => Err(RemoteError::Refused(e)),
            Some(Err(e)) => Err(e.into()),
            None => Err(disconnected()),
        }
    }

    /// [`subscribe`](Self::subscribe)s and decodes each payload as a `T` (postcard).
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub async fn subscribe_typed<T: DeserializeOwned>(
        &self,
        pattern: impl IntoPattern,
        options: SubscribeOptions,
    ) -> Result<RemoteTypedSubscription<T>> {
        Ok(RemoteTypedSubscription {
            inner: self.subscribe(pattern, options).await?,
            _type: PhantomData,
        })
    }

    /// Opens the durable subscription `name` on `pattern`, creating it on the broker if it does
    /// not exist. From its creation on, the broker stores every matching event (in the mw-queue
    /// queue `durable.<name>`), also while no subscriber is connected, and delivers them, at
    /// most 256 unacknowledged at a time.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Refused`] with [`PubSubError::InvalidName`] or
    /// [`PubSubError::DurableConflict`] (the name exists with another pattern);
    /// [`RemoteError::Rpc`].
    pub async fn subscribe_durable(
        &self,
        name: &str,
        pattern: impl IntoPattern,
    ) -> Result<DurableSubscription> {
        self.subscribe_durable_with(name, pattern, 256).await
    }

    /// [`subscribe_durable`](Self::subscribe_durable) with at most `prefetch` deliveries
    /// unacknowledged at once (1 to 10,000).
    ///
    /// # Errors
    ///
    /// As [`subscribe_durable`](Self::subscribe_durable).
    pub async fn subscribe_durable_with(
        &self,
        name: &str,
        pattern: impl IntoPattern,
        prefetch: u32,
    ) -> Result<DurableSubscription> {
        let pattern = pattern.into_pattern()?;
        let mut stream = self
            .client
            .subscribe_durable(name.to_string(), pattern.to_string(), prefetch)
            .await?;
        match stream.next().await {
            Some(Ok(Ok(DurableItem::Ready { created }))) => Ok(DurableSubscription {
                name: Arc::from(name),
                client: self.client.clone(),
                stream,
                pending: VecDeque::new(),
                created,
            }),
            Some(Ok(Ok(other))) => Err(RemoteError::Rpc(RpcError::Protocol(format!(
                "expected Ready as the first item of a durable subscription, got {other:?}"
            )))),
            Some(Ok(Err(e))) => Err(RemoteError::Refused(e)),
            Some(Err(e)) => Err(e.into()),
            None => Err(disconnected()),
        }
    }

    /// Deletes the durable subscription `name`: the broker stops collecting for it and
    /// discards what it stored. Whether it existed.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Refused`] for an invalid name; [`RemoteError::Rpc`].
    pub async fn unsubscribe_durable(&self, name: &str) -> Result<bool> {
        self.client
            .unsubscribe_durable(name.to_string())
            .await
            .map_err(RemoteError::from)
    }

    /// What the broker's bus holds (subscriptions, their buffers and losses, durables).
    ///
    /// # Errors
    ///
    /// [`RemoteError::Rpc`].
    pub async fn stats(&self) -> Result<RemoteStats> {
        Ok(self.client.stats().await?)
    }
}

/// A subscription on a broker's bus. Receive with [`recv`](Self::recv) or as a [`Stream`]
/// of [`Event`]s. Dropping it unsubscribes (the broker drops its buffer at once).
#[must_use = "a subscription receives nothing once dropped"]
pub struct RemoteSubscription {
    stream: ClientStream<std::result::Result<SubscribeItem, PubSubError>>,
    pattern: Pattern,
    pending: VecDeque<Event>,
    dropped: u64,
}

impl std::fmt::Debug for RemoteSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSubscription")
            .field("pattern", &self.pattern)
            .field("pending", &self.pending.len())
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl RemoteSubscription {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            if !self.pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let item = match self.stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(item) => item,
            };
            match item {
                Some(Ok(Ok(SubscribeItem::Events(blob)))) => {
                    let (pending, dropped) = (&mut self.pending, &mut self.dropped);
                    decode_batch(&blob, |e| {
                        *dropped += e.dropped_before;
                        pending.push_back(e);
                    })
                    .map_err(RemoteError::Refused)?;
                }
                Some(Ok(Ok(SubscribeItem::Ready))) => {}
                Some(Ok(Err(e))) => return Poll::Ready(Err(RemoteError::Refused(e))),
                Some(Err(e)) => return Poll::Ready(Err(e.into())),
                None => return Poll::Ready(Err(RemoteError::Refused(PubSubError::Closed))),
            }
        }
    }

    /// Waits for the next event.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Refused`] with [`PubSubError::SlowConsumer`] once the broker
    /// disconnected it under
    /// [`SlowConsumerPolicy::Disconnect`](crate::SlowConsumerPolicy::Disconnect) (after every
    /// event buffered before that), with [`PubSubError::Closed`] when the broker's bus
    /// closed;
    /// [`RemoteError::Rpc`] if the connection broke.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: no event is lost if the future is dropped.
    pub async fn recv(&mut self) -> Result<Event> {
        poll_fn(|cx| self.poll_fill(cx)).await?;
        Ok(self
            .pending
            .pop_front()
            .expect("poll_fill filled the queue"))
    }

    /// Waits until at least one event is available, then moves up to `limit` into `buf`;
    /// returns how many. `Ok(0)` at once if `limit` is 0.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn recv_many(&mut self, buf: &mut Vec<Event>, limit: usize) -> Result<usize> {
        if limit == 0 {
            return Ok(0);
        }
        poll_fn(|cx| self.poll_fill(cx)).await?;
        let n = limit.min(self.pending.len());
        buf.extend(self.pending.drain(..n));
        Ok(n)
    }

    /// Events lost to the slow-consumer policy, as reported by the events received so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Unsubscribes now; the same as dropping it.
    pub fn unsubscribe(self) {}
}

impl Stream for RemoteSubscription {
    type Item = Event;

    /// Yields events until the subscription ends (for any reason), then `None`.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        match this.poll_fill(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(this.pending.pop_front()),
            Poll::Ready(Err(_)) => Poll::Ready(None),
        }
    }
}

/// A [`RemoteSubscription`] whose payloads are decoded as `T`.
#[must_use = "a subscription receives nothing once dropped"]
pub struct RemoteTypedSubscription<T> {
    inner: RemoteSubscription,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for RemoteTypedSubscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTypedSubscription")
            .field("type", &std::any::type_name::<T>())
            .field("inner", &self.inner)
            .finish()
    }
}

impl<T: DeserializeOwned> RemoteTypedSubscription<T> {
    /// Waits for the next event and decodes it.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Local`] with [`Error::Decode`] for a payload that is not a `T` (the subscription stays
    /// usable); otherwise as [`RemoteSubscription::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Result<TypedEvent<T>> {
        Ok(decode(self.inner.recv().await?)?)
    }

    /// The raw subscription.
    pub fn raw(&self) -> &RemoteSubscription {
        &self.inner
    }
}

/// One stored event of a durable subscription. Acknowledge it with [`ack`](Self::ack) once
/// processed; one never acknowledged is delivered again (at once to the next session if this
/// one ends, otherwise after the broker's visibility timeout).
#[derive(Debug)]
#[must_use = "an unacknowledged durable event is delivered again"]
pub struct DurableEvent {
    /// The event.
    pub event: Event,
    /// Which delivery of it this is, 1 for the first.
    pub attempt: u32,
    tag: DeliveryTag,
    name: Arc<str>,
    client: PubSubClient,
}

impl DurableEvent {
    /// The broker's tag for this delivery.
    pub fn tag(&self) -> DeliveryTag {
        self.tag
    }

    /// Acknowledges it: the broker forgets the event. Returns whether it was still
    /// outstanding (false if it had already timed out and gone back to the queue).
    ///
    /// # Errors
    ///
    /// [`RemoteError::Rpc`]; [`RemoteError::Refused`] if the durable subscription was deleted.
    pub async fn ack(self) -> Result<bool> {
        let n = self
            .client
            .ack(self.name.to_string(), vec![self.tag])
            .await
            .map_err(RemoteError::from)?;
        Ok(n == 1)
    }
}

/// A session on a durable subscription: stored events, oldest first, each to be acknowledged.
/// Dropping it ends the session (unacknowledged events return to the broker's queue); the
/// durable subscription itself keeps collecting until
/// [`RemoteBus::unsubscribe_durable`].
#[must_use = "a subscription receives nothing once dropped"]
pub struct DurableSubscription {
    name: Arc<str>,
    client: PubSubClient,
    stream: ClientStream<std::result::Result<DurableItem, PubSubError>>,
    pending: VecDeque<DurableEvent>,
    created: bool,
}

impl std::fmt::Debug for DurableSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableSubscription")
            .field("name", &self.name)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl DurableSubscription {
    /// The durable subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this session created the durable subscription (it did not exist before).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Waits for the next stored event.
    ///
    /// # Errors
    ///
    /// [`RemoteError::Refused`] if the broker's storage failed, or with
    /// [`PubSubError::Closed`] if the broker ended the session; [`RemoteError::Rpc`] if the
    /// connection broke.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Result<DurableEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            match self.stream.next().await {
                Some(Ok(Ok(DurableItem::Deliveries(items)))) => {
                    for d in items {
                        let mut event = None;
                        decode_batch(&d.event, |e| event = Some(e))
                            .map_err(RemoteError::Refused)?;
                        let Some(event) = event else {
                            return Err(RemoteError::Refused(PubSubError::Malformed(
                                "empty durable delivery".into(),
                            )));
                        };
                        self.pending.push_back(DurableEvent {
                            event,
                            attempt: d.attempt,
                            tag: d.tag,
                            name: self.name.clone(),
                            client: self.client.clone(),
                        });
                    }
                }
                Some(Ok(Ok(DurableItem::Ready { .. }))) => {}
                Some(Ok(Err(e))) => return Err(RemoteError::Refused(e)),
                Some(Err(e)) => return Err(e.into()),
                None => return Err(RemoteError::Refused(PubSubError::Closed)),
            }
        }
    }
}
