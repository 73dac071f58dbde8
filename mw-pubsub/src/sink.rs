//! Delivery sinks: the hook for consumers that are not in-memory subscriptions.
//!
//! A [`DeliverySink`] attached with [`Bus::attach`](crate::Bus::attach) is offered every event
//! matching its pattern, in the same publish call and order as the in-memory subscribers. It is
//! how a networked broker routes events into a durable subscription's queue, or straight into a
//! connection's bounded outgoing-frame queue, without an extra hop through a [`Subscription`].
//!
//! [`Subscription`]: crate::Subscription

use std::fmt;

use bytes::Bytes;

use crate::membership::Membership;
use crate::topic::{Pattern, Topic};
use crate::trie::SubscriptionId;

/// What a [`DeliverySink`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkDelivery {
    /// Taken; counts in [`PublishReport::delivered`](crate::PublishReport::delivered).
    Accepted,
    /// Not taken (for example, its own bounded buffer is full); counts in
    /// [`PublishReport::rejected`](crate::PublishReport::rejected). The sink keeps its own
    /// loss counters.
    Refused,
    /// The sink is gone for good: counts as rejected, and the bus detaches it after this publish.
    Closed,
}

/// A consumer of matched events that the bus calls synchronously from inside `publish`.
///
/// # Contract
///
/// - **Never block and never await**: `deliver` runs on the publisher's thread while the bus
///   holds its subscription table locked (for reading; for writing during a retained publish). Hand the event to a bounded structure
///   (`tokio::sync::mpsc::Sender::try_send`, a ring buffer) and return; shed load with
///   [`SinkDelivery::Refused`] rather than wait.
/// - **Never call back into the bus** from `deliver` (publish, subscribe, drop a subscription):
///   that may deadlock.
/// - Cloning `topic` and `payload` is cheap (reference counts); the payload is the publisher's own
///   `Bytes`, shared with every other subscriber.
/// - Calls for one publisher arrive in its publish order; concurrent publishers may call
///   concurrently, hence `Sync`.
///
/// Closures `Fn(&Topic, &Bytes) -> SinkDelivery` are sinks:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use bytes::Bytes;
/// use mw_pubsub::{Bus, Config, DeliverySink, SinkDelivery, Topic};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let sink: Arc<dyn DeliverySink> = Arc::new(move |t: &Topic, p: &Bytes| {
///     log.lock().unwrap().push((t.clone(), p.clone()));
///     SinkDelivery::Accepted
/// });
/// let bus = Bus::new(Config::default());
/// let _attachment = bus.attach("orders.>", sink)?;
/// assert_eq!(bus.publish("orders.eu.new", Bytes::from_static(b"#1"))?.delivered, 1);
/// assert_eq!(seen.lock().unwrap().len(), 1);
/// # Ok::<(), mw_pubsub::Error>(())
/// ```
pub trait DeliverySink: Send + Sync + 'static {
    /// Offers one event. See the trait docs for the contract.
    fn deliver(&self, topic: &Topic, payload: &Bytes) -> SinkDelivery;
}

impl<F> DeliverySink for F
where
    F: Fn(&Topic, &Bytes) -> SinkDelivery + Send + Sync + 'static,
{
    fn deliver(&self, topic: &Topic, payload: &Bytes) -> SinkDelivery {
        self(topic, payload)
    }
}

/// Keeps a [`DeliverySink`] attached; dropping it (or [`detach`](Self::detach)) detaches the sink.
#[must_use = "the sink is detached as soon as the attachment is dropped"]
pub struct Attachment {
    membership: Membership,
    pattern: Pattern,
}

impl Attachment {
    pub(crate) fn new(membership: Membership, pattern: Pattern) -> Self {
        Attachment {
            membership,
            pattern,
        }
    }

    /// The attachment's id on its bus.
    pub fn id(&self) -> SubscriptionId {
        self.membership.id()
    }

    /// The pattern the sink is attached to.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Detaches the sink now. After this returns no publish calls it again.
    pub fn detach(self) {}
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("id", &self.id())
            .field("pattern", &self.pattern)
            .finish()
    }
}
