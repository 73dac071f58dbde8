//! The subscriber side: [`Subscription`], its bounded buffer and its [`SlowConsumerPolicy`].
//!
//! Each subscription owns one [`SubscriberBuffer`]: a `VecDeque` of at most `buffer` events
//! behind a std `Mutex`, plus the waker of the task waiting on it. The publisher's side
//! ([`SubscriberBuffer::push`]) never waits for the subscriber: it takes the lock for a few instructions, applies the policy if the
//! buffer is full, and wakes the receiver only when the buffer goes from empty to non-empty. A std
//! mutex (not tokio's) is right here because it is never held across an `.await` and the critical
//! sections are tiny (see mini-redis `db.rs` for the same reasoning).

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::membership::Membership;
use crate::topic::{Pattern, Topic};
use crate::trie::SubscriptionId;

/// What happens when an event arrives for a subscriber whose buffer is full.
///
/// Whatever the policy, the publisher never waits and other subscribers are unaffected; the loss
/// is counted in [`Subscription::dropped`] and shown in order by [`Event::dropped_before`].
///
/// Serialized as it is in the `mw.pubsub` `subscribe` call and in the broker's stats: a
/// postcard enum whose variant indices are its declaration order (0 `DropOldest`, 1
/// `DropNewest`, 2 `Disconnect`), so variants are only ever appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum SlowConsumerPolicy {
    /// Evict the oldest buffered event to make room: the subscriber keeps the most recent
    /// `buffer` events. Right for state updates where only the latest values matter. The default.
    #[default]
    DropOldest,
    /// Discard the new event: the subscriber keeps the oldest `buffer` events and misses what
    /// came after, until it catches up.
    DropNewest,
    /// Close the subscription. The subscriber still receives the events already buffered, then
    /// [`Subscription::recv`] returns [`Error::SlowConsumer`]. Right when a gap is worse
    /// than a restart (the subscriber resubscribes and resynchronises).
    Disconnect,
}

/// How a subscription buffers events. Build with a struct literal or [`Default`].
///
/// ```
/// use mw_pubsub::{SlowConsumerPolicy, SubscribeOptions};
///
/// let options = SubscribeOptions { buffer: 16, policy: SlowConsumerPolicy::DropNewest };
/// assert_eq!(SubscribeOptions::default().buffer, 1024);
/// # let _ = options;
/// ```
// Deliberately not `#[non_exhaustive]`: callers build it with a struct literal. New knobs (such
// as durability) belong to other entry points, like `Bus::attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Most events buffered for this subscriber, at least 1 and at most
    /// [`Config::max_buffer`](crate::Config::max_buffer). Default 1024: enough to ride out a
    /// scheduling hiccup at a million events per second, about 80 KB plus payloads when full.
    pub buffer: usize,
    /// What to do when the buffer is full. Default [`SlowConsumerPolicy::DropOldest`].
    pub policy: SlowConsumerPolicy,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            buffer: 1024,
            policy: SlowConsumerPolicy::DropOldest,
        }
    }
}

/// Why a subscription stopped receiving new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Its buffer overflowed under [`SlowConsumerPolicy::Disconnect`].
    SlowConsumer,
    /// The bus was closed or dropped.
    BusClosed,
}

/// What [`SubscriberBuffer::push`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Buffered; `displaced` if an older event was evicted for it.
    Delivered { displaced: bool },
    /// Not buffered (buffer full under `DropNewest`).
    Rejected,
    /// Not buffered; this push closed the subscription (`Disconnect`).
    Disconnected,
    /// Not buffered; the subscription was already closed.
    Closed,
}

struct State {
    events: VecDeque<Event>,
    /// Losses not yet attributed to a buffered event; added to the next one pushed.
    gap: u64,
    /// The receiver's waker, present only while it waits on an empty buffer.
    waker: Option<Waker>,
    closed: Option<CloseReason>,
}

/// One subscriber's bounded buffer, shared by the bus (pushing) and the [`Subscription`] (popping).
pub(crate) struct SubscriberBuffer {
    state: Mutex<State>,
    capacity: usize,
    policy: SlowConsumerPolicy,
    /// Total lost; only written under `state`'s lock, read without it.
    dropped: AtomicU64,
}

impl SubscriberBuffer {
    pub(crate) fn new(options: SubscribeOptions) -> Self {
        SubscriberBuffer {
            state: Mutex::new(State {
                // Grow on demand: most subscribers keep up and never need `capacity` slots.
                events: VecDeque::with_capacity(options.buffer.min(8)),
                gap: 0,
                waker: None,
                closed: None,
            }),
            capacity: options.buffer,
            policy: options.policy,
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, but if something ever did the queue is still
        // structurally sound, so keep going rather than poison every publisher.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one lost event; the first loss of a subscription is logged (later ones
    /// only counted: a slow consumer would otherwise flood the log).
    fn note_first_drop(&self) {
        if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::info!(
                capacity = self.capacity,
                policy = ?self.policy,
                "slow consumer: its buffer is full, dropping events"
            );
        }
    }

    /// Offers an event; never blocks beyond the brief lock.
    pub(crate) fn push(&self, topic: &Topic, payload: &Bytes) -> Push {
        let mut st = self.lock();
        if st.closed.is_some() {
            return Push::Closed;
        }
        let mut displaced = false;
        if st.events.len() >= self.capacity {
            match self.policy {
                SlowConsumerPolicy::DropOldest => {
                    // Invariant: capacity >= 1, so the buffer is non-empty here.
                    if let Some(old) = st.events.pop_front() {
                        let lost = old.dropped_before + 1;
                        match st.events.front_mut() {
                            Some(next) => next.dropped_before += lost,
                            None => st.gap += lost,
                        }
                    }
                    self.note_first_drop();
                    displaced = true;
                }
                SlowConsumerPolicy::DropNewest => {
                    st.gap += 1;
                    self.note_first_drop();
                    return Push::Rejected;
                }
                SlowConsumerPolicy::Disconnect => {
                    st.closed = Some(CloseReason::SlowConsumer);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        capacity = self.capacity,
                        "slow consumer disconnected: its buffer was full"
                    );
                    let waker = st.waker.take();
                    drop(st);
                    if let Some(w) = waker {
                        w.wake();
                    }
                    return Push::Disconnected;
                }
            }
        }
        let dropped_before = std::mem::take(&mut st.gap);
        st.events.push_back(Event {
            topic: topic.clone(),
            payload: payload.clone(),
            dropped_before,
        });
        let waker = st.waker.take();
        drop(st);
        // Wake outside the lock so the woken task does not immediately contend for it.
        if let Some(w) = waker {
            w.wake();
        }
        Push::Delivered { displaced }
    }

    /// Stops accepting events; buffered ones stay receivable. The first reason sticks.
    pub(crate) fn close(&self, reason: CloseReason) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.closed = Some(reason);
        }
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    fn closed_error(&self, reason: CloseReason) -> Error {
        match reason {
            CloseReason::SlowConsumer => Error::SlowConsumer {
                capacity: self.capacity,
            },
            CloseReason::BusClosed => Error::Closed,
        }
    }

    /// Moves up to `limit` events into `buf`; registers `cx` and returns `Pending` if none.
    fn poll_recv_many(
        &self,
        cx: &mut Context<'_>,
        buf: &mut Vec<Event>,
        limit: usize,
    ) -> Poll<Result<usize>> {
        let mut st = self.lock();
        if !st.events.is_empty() {
            let n = limit.min(st.events.len());
            buf.extend(st.events.drain(..n));
            return Poll::Ready(Ok(n));
        }
        if let Some(reason) = st.closed {
            return Poll::Ready(Err(self.closed_error(reason)));
        }
        match &mut st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Event>> {
        let mut st = self.lock();
        if let Some(event) = st.events.pop_front() {
            return Poll::Ready(Ok(event));
        }
        if let Some(reason) = st.closed {
            return Poll::Ready(Err(self.closed_error(reason)));
        }
        match &mut st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn try_recv(&self) -> Result<Option<Event>> {
        let mut st = self.lock();
        if let Some(event) = st.events.pop_front() {
            return Ok(Some(event));
        }
        match st.closed {
            Some(reason) => Err(self.closed_error(reason)),
            None => Ok(None),
        }
    }
}

/// A live subscription: a bounded buffer of [`Event`]s matching its pattern.
///
/// Receive with [`recv`](Self::recv), [`try_recv`](Self::try_recv),
/// [`recv_many`](Self::recv_many), or as a [`Stream`] of `Event`s. Dropping it unsubscribes.
///
/// ```
/// use bytes::Bytes;
/// use mw_pubsub::{Bus, Config, SubscribeOptions};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let bus = Bus::new(Config::default());
/// let mut sub = bus.subscribe("sensors.*.temp", SubscribeOptions::default())?;
/// bus.publish("sensors.kitchen.temp", Bytes::from_static(b"21.5"))?;
/// let event = sub.recv().await?;
/// assert_eq!(event.topic.as_str(), "sensors.kitchen.temp");
/// assert_eq!(&event.payload[..], b"21.5");
///
/// drop(sub);
/// assert_eq!(bus.publish("sensors.kitchen.temp", Bytes::new())?.matched, 0);
/// # Ok::<(), mw_pubsub::Error>(())
/// # }).unwrap();
/// ```
#[must_use = "a subscription receives nothing once dropped"]
pub struct Subscription {
    /// First, so that dropping a subscription unregisters it before anything else goes.
    membership: Membership,
    pattern: Pattern,
    queue: Arc<SubscriberBuffer>,
}

impl Subscription {
    pub(crate) fn new(
        membership: Membership,
        pattern: Pattern,
        queue: Arc<SubscriberBuffer>,
    ) -> Self {
        Subscription {
            membership,
            pattern,
            queue,
        }
    }

    /// Waits for the next event.
    ///
    /// # Errors
    ///
    /// Once the subscription is closed and its buffer drained: [`Error::SlowConsumer`] if
    /// it was disconnected for falling behind, [`Error::Closed`] if the bus was closed.
    /// Every later call returns the same error.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the future is dropped before completing, no event is lost.
    pub async fn recv(&mut self) -> Result<Event> {
        poll_fn(|cx| self.queue.poll_recv(cx)).await
    }

    /// Waits until at least one event is buffered, then moves up to `limit` of them into `buf`
    /// under one lock and returns how many. Returns `Ok(0)` at once if `limit` is 0.
    ///
    /// Meant for forwarders (such as a network broker writing frames) that gain from batching.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: events are only moved in the poll that completes the future.
    pub async fn recv_many(&mut self, buf: &mut Vec<Event>, limit: usize) -> Result<usize> {
        if limit == 0 {
            return Ok(0);
        }
        poll_fn(|cx| self.queue.poll_recv_many(cx, buf, limit)).await
    }

    /// The next event if one is buffered, `Ok(None)` if the buffer is empty, without waiting.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Result<Option<Event>> {
        self.queue.try_recv()
    }

    /// Total events this subscriber lost to its slow-consumer policy since it subscribed.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Events currently buffered; never more than [`capacity`](Self::capacity).
    pub fn len(&self) -> usize {
        self.queue.lock().events.len()
    }

    /// Whether no event is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer limit asked for in [`SubscribeOptions::buffer`].
    pub fn capacity(&self) -> usize {
        self.queue.capacity
    }

    /// The slow-consumer policy asked for.
    pub fn policy(&self) -> SlowConsumerPolicy {
        self.queue.policy
    }

    /// This subscription's id on its bus.
    pub fn id(&self) -> SubscriptionId {
        self.membership.id()
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Why the subscription stopped taking new events, or `None` while it is live. Buffered
    /// events may remain receivable after it closed.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.queue.lock().closed
    }

    /// Whether the subscription stopped taking new events.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Unsubscribes now, discarding anything still buffered; the same as dropping it. After
    /// this returns no publish reaches it.
    pub fn unsubscribe(self) {}
}

impl Stream for Subscription {
    type Item = Event;

    /// Yields events until the subscription is closed and drained, then ends; see
    /// [`close_reason`](Subscription::close_reason) for why it ended.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.queue.poll_recv(cx).map(Result::ok)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id())
            .field("pattern", &self.pattern)
            .field("capacity", &self.queue.capacity)
            .field("policy", &self.queue.policy)
            .field("dropped", &self.dropped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_n(q: &SubscriberBuffer, n: u8) -> Vec<Push> {
        let topic = Topic::from_static("t").unwrap();
        (0..n)
            .map(|i| q.push(&topic, &Bytes::from(vec![i])))
            .collect()
    }

    fn drain(q: &SubscriberBuffer) -> Vec<(u8, u64)> {
        let mut out = Vec::new();
        while let Ok(Some(e)) = q.try_recv() {
            out.push((e.payload[0], e.dropped_before));
        }
        out
    }

    proptest::proptest! {
        /// With one publisher numbering its events, every loss shows up exactly as the jump in
        /// numbers before the next event received, whatever the interleaving of pushes and pops.
        #[test]
        fn dropped_before_equals_the_gap_in_sequence_numbers(
            buffer in 1usize..6,
            oldest in proptest::bool::ANY,
            ops in proptest::collection::vec(proptest::bool::weighted(0.7), 0..200),
        ) {
            let policy = if oldest { SlowConsumerPolicy::DropOldest } else { SlowConsumerPolicy::DropNewest };
            let q = SubscriberBuffer::new(SubscribeOptions { buffer, policy });
            let topic = Topic::from_static("t").unwrap();
            let (mut next, mut expected, mut gaps) = (0u64, 0u64, 0u64);
            let mut check = |e: Event| {
                let seq = u64::from_be_bytes(e.payload[..].try_into().unwrap());
                proptest::prop_assert_eq!(seq - expected, e.dropped_before);
                gaps += e.dropped_before;
                expected = seq + 1;
                Ok(())
            };
            for push in ops {
                if push {
                    q.push(&topic, &Bytes::copy_from_slice(&next.to_be_bytes()));
                    next += 1;
                    proptest::prop_assert!(q.lock().events.len() <= buffer);
                } else if let Some(e) = q.try_recv().unwrap() {
                    check(e)?;
                }
            }
            while let Some(e) = q.try_recv().unwrap() {
                check(e)?;
            }
            let pending = q.lock().gap;
            proptest::prop_assert_eq!(q.dropped.load(Ordering::Relaxed), gaps + pending);
            proptest::prop_assert_eq!(next - expected, pending);
        }
    }

    #[test]
    fn drop_oldest_attributes_gap_to_the_new_head() {
        let q = SubscriberBuffer::new(SubscribeOptions {
            buffer: 2,
            policy: SlowConsumerPolicy::DropOldest,
        });
        push_n(&q, 5);
        assert_eq!(drain(&q), [(3, 3), (4, 0)]);
    }

    #[test]
    fn drop_oldest_with_buffer_one_carries_gap() {
        let q = SubscriberBuffer::new(SubscribeOptions {
            buffer: 1,
            policy: SlowConsumerPolicy::DropOldest,
        });
        push_n(&q, 4);
        assert_eq!(drain(&q), [(3, 3)]);
    }

    #[test]
    fn drop_newest_attributes_gap_to_next_accepted() {
        let q = SubscriberBuffer::new(SubscribeOptions {
            buffer: 2,
            policy: SlowConsumerPolicy::DropNewest,
        });
        let pushes = push_n(&q, 4);
        assert_eq!(pushes[3], Push::Rejected);
        assert_eq!(drain(&q), [(0, 0), (1, 0)]);
        q.push(&Topic::from_static("t").unwrap(), &Bytes::from_static(&[9]));
        assert_eq!(drain(&q), [(9, 2)]);
    }
}
