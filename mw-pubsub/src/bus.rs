//! [`Bus`]: the embedded, in-process event bus.
//!
//! # Concurrency
//!
//! The subscription table (trie, ids, retained store) sits behind one std `RwLock`. A publish
//! takes the read lock, walks the trie, and for each match pushes into that subscriber's own
//! bounded queue (a brief mutex) or calls its sink; it never awaits and never waits for a
//! subscriber, so a slow subscriber cannot slow the publisher or anyone else. Concurrent
//! publishers share the read lock. Subscribe, unsubscribe and retained publishes take the write
//! lock briefly; taking it for a retained publish and for a subscribe's retained replay is what
//! guarantees that a new subscriber sees a topic's retained message exactly once and before any
//! later live event on it.
//!
//! Per-publisher order holds for every subscriber because each publish finishes all its pushes
//! before returning.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::membership::{Membership, Unsubscribe};
use crate::report::{BusStats, PublishReport};
use crate::retained::Retained;
use crate::sink::{Attachment, DeliverySink, SinkDelivery};
use crate::subscriber::{CloseReason, Push, SubscribeOptions, SubscriberBuffer, Subscription};
use crate::topic::{IntoPattern, IntoTopic, Pattern, Topic};
use crate::trie::{SubscriptionId, Trie};

/// Where a matched event goes.
enum Target {
    Local(Arc<SubscriberBuffer>),
    Sink(Arc<dyn DeliverySink>),
}

struct State {
    trie: Trie<Target>,
    /// Pattern of every entry in `trie`, to remove by id.
    patterns: HashMap<SubscriptionId, Pattern>,
    retained: Retained,
    sinks: usize,
    closed: bool,
}

impl State {
    /// Offers the event to every match. Ids of targets found closed are added to `dead` (rare,
    /// so the `Vec` is only allocated then) for removal once the read lock is released.
    fn deliver(
        &self,
        topic: &Topic,
        payload: &Bytes,
        dead: &mut Option<Vec<SubscriptionId>>,
    ) -> PublishReport {
        let mut r = PublishReport::default();
        self.trie.for_each_match(topic, |id, target| {
            r.matched += 1;
            let gone = match target {
                Target::Local(queue) => match queue.push(topic, payload) {
                    Push::Delivered { displaced } => {
                        r.delivered += 1;
                        r.displaced += usize::from(displaced);
                        false
                    }
                    Push::Rejected => {
                        r.rejected += 1;
                        false
                    }
                    Push::Disconnected => {
                        r.rejected += 1;
                        r.disconnected += 1;
                        true
                    }
                    Push::Closed => {
                        r.rejected += 1;
                        true
                    }
                },
                Target::Sink(sink) => match sink.deliver(topic, payload) {
                    SinkDelivery::Accepted => {
                        r.delivered += 1;
                        false
                    }
                    SinkDelivery::Refused => {
                        r.rejected += 1;
                        false
                    }
                    SinkDelivery::Closed => {
                        r.rejected += 1;
                        true
                    }
                },
            };
            if gone {
                dead.get_or_insert_with(Vec::new).push(id);
            }
        });
        r
    }

    fn remove(&mut self, id: SubscriptionId) -> Option<Target> {
        let pattern = self.patterns.remove(&id)?;
        let target = self.trie.remove(&pattern, id)?;
        if matches!(target, Target::Sink(_)) {
            self.sinks -= 1;
        }
        Some(target)
    }

    /// Closes every subscription and forgets everything; returns the targets to drop unlocked.
    fn close(&mut self) -> Vec<Target> {
        self.closed = true;
        let mut targets = Vec::with_capacity(self.trie.len());
        self.trie.for_each(|_, target| {
            if let Target::Local(queue) = target {
                queue.close(CloseReason::BusClosed);
            }
        });
        let ids: Vec<SubscriptionId> = self.patterns.keys().copied().collect();
        for id in ids {
            targets.extend(self.remove(id));
        }
        self.trie.clear();
        self.retained.clear_all();
        targets
    }
}

/// Shared by every [`Bus`] clone; subscriptions and attachments hold a `Weak` to it (through
/// their [`Membership`]).
pub(crate) struct BusInner {
    config: Config,
    state: RwLock<State>,
    next_id: AtomicU64,
    /// Events published, events taken by a subscriber or sink, and events lost to a
    /// slow-consumer policy (rejected, displaced or disconnected), since the bus began.
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl BusInner {
    // Poisoning cannot leave `State` half-updated in a way later calls would misread (every
    // mutation is a single insert/remove), so recover the guard instead of panicking forever.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn remove_all(&self, ids: &[SubscriptionId]) {
        let mut removed = Vec::with_capacity(ids.len());
        {
            let mut state = self.write();
            for id in ids {
                removed.extend(state.remove(*id));
            }
        }
        drop(removed);
    }

    fn next_id(&self) -> SubscriptionId {
        SubscriptionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

impl Unsubscribe for BusInner {
    fn unsubscribe(&self, id: SubscriptionId) {
        let target = self.write().remove(id);
        // Dropped here, after the lock: a sink's `Drop` may do arbitrary work.
        drop(target);
    }
}

impl Drop for BusInner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        drop(state.close());
    }
}

/// An in-process publish/subscribe bus: publishers send events to topics, subscribers receive
/// those matching their patterns, each through its own bounded buffer.
///
/// Cheap to clone: clones share one bus. The bus closes when [`close`](Self::close) is called or
/// the last clone is dropped; subscriptions then drain what they have buffered and report
/// [`Error::Closed`].
///
/// The core deals in raw [`Bytes`]; [`publish_typed`](Self::publish_typed) and
/// [`subscribe_typed`](Self::subscribe_typed) add postcard encoding on top.
///
/// ```
/// use bytes::Bytes;
/// use mw_pubsub::{Bus, Config, SlowConsumerPolicy, SubscribeOptions};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let bus = Bus::new(Config::default());
/// let opts = SubscribeOptions { buffer: 2, policy: SlowConsumerPolicy::DropOldest };
/// let mut sub = bus.subscribe("sensors.>", opts)?;
/// for i in 0..5u8 {
///     bus.publish("sensors.kitchen.temp", Bytes::from(vec![i]))?;
/// }
/// // The buffer kept the newest two; the gap is visible in order and counted.
/// let first = sub.recv().await?;
/// assert_eq!((first.payload[0], first.dropped_before), (3, 3));
/// assert_eq!(sub.recv().await?.payload[0], 4);
/// assert_eq!(sub.dropped(), 3);
/// # Ok::<(), mw_pubsub::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new(Config::default())
    }
}

impl Bus {
    /// A registration for `id` that unsubscribes from this bus when dropped.
    fn membership(&self, id: SubscriptionId) -> Membership {
        let bus = Arc::downgrade(&self.inner);
        Membership::new(id, bus)
    }

    /// A new, empty bus with the given limits.
    pub fn new(config: Config) -> Self {
        let retained = Retained::new(config.max_retained_topics);
        Bus {
            inner: Arc::new(BusInner {
                config,
                state: RwLock::new(State {
                    trie: Trie::new(),
                    patterns: HashMap::new(),
                    retained,
                    sinks: 0,
                    closed: false,
                }),
                next_id: AtomicU64::new(1),
                published: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The limits the bus was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Adds one publish's outcome to the bus's totals.
    fn count(&self, report: &PublishReport) {
        let i = &self.inner;
        i.published.fetch_add(1, Ordering::Relaxed);
        i.delivered
            .fetch_add(report.delivered as u64, Ordering::Relaxed);
        let lost = report.rejected + report.displaced + report.disconnected;
        if lost > 0 {
            i.dropped.fetch_add(lost as u64, Ordering::Relaxed);
        }
    }

    /// Refuses a payload over [`Config::max_event_size`].
    fn check_size(&self, payload: &Bytes) -> Result<()> {
        let limit = self.inner.config.max_event_size;
        if payload.len() > limit {
            return Err(Error::EventTooLarge {
                size: payload.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Publishes `payload` on `topic` to every matching subscription and sink, now.
    ///
    /// Never waits: each matching subscriber either buffers the event or applies its
    /// [`SlowConsumerPolicy`](crate::SlowConsumerPolicy). The same `payload` is shared by every
    /// subscriber, not copied. Pass a pre-built `&Topic` on hot paths to skip validation and
    /// allocation.
    ///
    /// Cost: a read lock, a trie walk, and per matching subscriber a brief mutex plus two
    /// reference-count increments. Nothing is allocated per subscriber, provided the payload clones
    /// without allocating: `Bytes::from_static` and `BytesMut::freeze` payloads do; a
    /// `Bytes::from(Vec<u8>)` allocates a shared header once, on its first clone.
    ///
    /// # Errors
    ///
    /// A syntax error in `topic` (see [`Topic::new`]), [`Error::EventTooLarge`] or
    /// [`Error::Closed`]. Reaching nobody is not an error: see [`PublishReport`].
    pub fn publish(&self, topic: impl IntoTopic, payload: Bytes) -> Result<PublishReport> {
        let topic = topic.into_topic()?;
        self.check_size(&payload)?;
        let mut dead = None;
        let report = {
            let state = self.inner.read();
            if state.closed {
                return Err(Error::Closed);
            }
            state.deliver(&topic, &payload, &mut dead)
        };
        if let Some(dead) = dead {
            self.inner.remove_all(&dead);
        }
        self.count(&report);
        Ok(report)
    }

    /// Publishes like [`publish`](Self::publish) and also stores the event as `topic`'s retained
    /// message, replacing the previous one. Each later subscription whose pattern matches `topic`
    /// receives it first. Attached sinks are not replayed to.
    ///
    /// An empty `payload` clears `topic`'s retained message instead (as in MQTT): the empty
    /// event is delivered to current subscribers and nothing is retained
    /// (`report.retained` is `false`).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish), and [`Error::RetainedFull`] if `topic` has no
    /// retained message yet and [`Config::max_retained_topics`] topics already do; then nothing
    /// is published.
    pub fn publish_retained(&self, topic: impl IntoTopic, payload: Bytes) -> Result<PublishReport> {
        let topic = topic.into_topic()?;
        self.check_size(&payload)?;
        let mut dead = None;
        let report = {
            let mut state = self.inner.write();
            if state.closed {
                return Err(Error::Closed);
            }
            // MQTT's convention: an empty retained message clears the topic's retained
            // message (and is still delivered to current subscribers).
            let keep = !payload.is_empty();
            if keep {
                state.retained.store(&topic, &payload)?;
            } else {
                state.retained.clear(&topic);
            }
            let mut report = state.deliver(&topic, &payload, &mut dead);
            report.retained = keep;
            report
        };
        if let Some(dead) = dead {
            self.inner.remove_all(&dead);
        }
        self.count(&report);
        Ok(report)
    }

    /// Forgets `topic`'s retained message; returns whether it had one.
    ///
    /// # Errors
    ///
    /// A syntax error in `topic`.
    pub fn clear_retained(&self, topic: impl IntoTopic) -> Result<bool> {
        let topic = topic.into_topic()?;
        Ok(self.inner.write().retained.clear(&topic))
    }

    /// The retained messages whose topics match `pattern`, in topic order.
    ///
    /// A snapshot: a broker attaching a durable sink can use it to seed the sink.
    ///
    /// # Errors
    ///
    /// A syntax error in `pattern`.
    pub fn retained(&self, pattern: impl IntoPattern) -> Result<Vec<Event>> {
        let pattern = pattern.into_pattern()?;
        let mut out = Vec::new();
        self.inner
            .read()
            .retained
            .for_each_matching(&pattern, |t, p| out.push(Event::new(t.clone(), p.clone())));
        Ok(out)
    }

    /// Subscribes to every topic matching `pattern`, buffering as `options` say.
    ///
    /// Retained messages matching `pattern` are buffered first, in topic order (and are subject
    /// to the buffer limit and policy like any event), before any event published afterwards.
    ///
    /// # Errors
    ///
    /// A syntax error in `pattern`; [`Error::ZeroBuffer`] or
    /// [`Error::BufferTooLarge`] for `options.buffer`;
    /// [`Error::TooManySubscriptions`]; [`Error::Closed`].
    pub fn subscribe(
        &self,
        pattern: impl IntoPattern,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        let pattern = pattern.into_pattern()?;
        if options.buffer == 0 {
            return Err(Error::ZeroBuffer);
        }
        if options.buffer > self.inner.config.max_buffer {
            return Err(Error::BufferTooLarge {
                requested: options.buffer,
                max: self.inner.config.max_buffer,
            });
        }
        let queue = Arc::new(SubscriberBuffer::new(options));
        let id = self.inner.next_id();
        {
            let mut guard = self.inner.write();
            let state = &mut *guard;
            self.check_room(state)?;
            state
                .retained
                .for_each_matching(&pattern, |topic, payload| {
                    queue.push(topic, payload);
                });
            // A `Disconnect` subscriber may already have overflowed on the replay; then it is
            // closed and never enters the table.
            if !queue.is_closed() {
                state
                    .trie
                    .insert(&pattern, id, Target::Local(queue.clone()));
                state.patterns.insert(id, pattern.clone());
            }
        }
        Ok(Subscription::new(self.membership(id), pattern, queue))
    }

    /// Attaches `sink` to receive every event matching `pattern` from now on, until the returned
    /// [`Attachment`] is dropped or the sink returns [`SinkDelivery::Closed`].
    ///
    /// This is the hook for durable subscriptions and network forwarding; see
    /// [`DeliverySink`] for the contract. Retained messages are not replayed to it (see
    /// [`retained`](Self::retained)).
    ///
    /// # Errors
    ///
    /// A syntax error in `pattern`; [`Error::TooManySubscriptions`];
    /// [`Error::Closed`].
    pub fn attach(
        &self,
        pattern: impl IntoPattern,
        sink: Arc<dyn DeliverySink>,
    ) -> Result<Attachment> {
        let pattern = pattern.into_pattern()?;
        let id = self.inner.next_id();
        {
            let mut state = self.inner.write();
            self.check_room(&state)?;
            state.trie.insert(&pattern, id, Target::Sink(sink));
            state.patterns.insert(id, pattern.clone());
            state.sinks += 1;
        }
        Ok(Attachment::new(self.membership(id), pattern))
    }

    fn check_room(&self, state: &State) -> Result<()> {
        if state.closed {
            return Err(Error::Closed);
        }
        let limit = self.inner.config.max_subscriptions;
        if state.trie.len() >= limit {
            return Err(Error::TooManySubscriptions { limit });
        }
        Ok(())
    }

    /// Closes the bus: every subscription stops taking events (it can still drain its buffer,
    /// then reports [`Error::Closed`]), sinks are detached, retained messages forgotten,
    /// and later publishes and subscribes fail with [`Error::Closed`]. Idempotent.
    pub fn close(&self) {
        let targets = self.inner.write().close();
        drop(targets);
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.read().closed
    }

    /// Counts of what the bus holds. Walks the trie, so it costs O(nodes): for tests, metrics and
    /// benchmarks rather than hot paths.
    pub fn stats(&self) -> BusStats {
        let state = self.inner.read();
        BusStats {
            subscriptions: state.trie.len() - state.sinks,
            sinks: state.sinks,
            retained_topics: state.retained.len(),
            trie_nodes: state.trie.node_count(),
            published: self.inner.published.load(Ordering::Relaxed),
            delivered: self.inner.delivered.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}
