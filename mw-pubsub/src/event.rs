//! [`Event`]: what a subscriber receives.

use bytes::Bytes;

use crate::topic::Topic;

/// One published message as seen by one subscriber.
///
/// The `payload` is the very `Bytes` the publisher handed to the bus, shared (not copied) by
/// every subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The topic it was published on.
    pub topic: Topic,
    /// The payload, opaque to the bus.
    pub payload: Bytes,
    /// How many events this subscriber lost, because its buffer was full, between the previous
    /// event it received and this one. 0 when nothing was lost. The sum over all events received,
    /// plus any loss not yet followed by an event, is
    /// [`Subscription::dropped`](crate::Subscription::dropped).
    pub dropped_before: u64,
}

impl Event {
    /// An event with nothing lost before it.
    pub fn new(topic: Topic, payload: Bytes) -> Self {
        Event {
            topic,
            payload,
            dropped_before: 0,
        }
    }
}
