//! [`Config`]: the bus's limits.

/// Limits of one [`Bus`](crate::Bus). Every field has a documented default; change fields on a
/// `Config::default()`:
///
/// ```
/// let mut config = mw_pubsub::Config::default();
/// config.max_retained_topics = 16;
/// let bus = mw_pubsub::Bus::new(config);
/// assert_eq!(bus.config().max_retained_topics, 16);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Most subscriptions plus attached sinks the bus holds at once. Default `65_536`.
    ///
    /// Bounds the trie and the per-subscription memory when subscriptions come from remote peers.
    /// Beyond it, subscribe fails with
    /// [`Error::TooManySubscriptions`](crate::Error::TooManySubscriptions).
    pub max_subscriptions: usize,

    /// Largest per-subscriber buffer, in events, that
    /// [`SubscribeOptions::buffer`](crate::SubscribeOptions::buffer) may ask for. Default `65_536`.
    ///
    /// A buffer only grows as events actually queue up, so a large limit costs nothing until a
    /// subscriber falls behind; then it costs about 80 bytes per buffered event plus the payloads
    /// (shared with the other subscribers).
    pub max_buffer: usize,

    /// Most topics holding a retained message at once. Default `1024`.
    ///
    /// Replacing the retained message of a topic that already has one always succeeds; a retained
    /// publish to a new topic when the store is full fails with
    /// [`Error::RetainedFull`](crate::Error::RetainedFull) and publishes nothing,
    /// rather than silently evicting another topic's state. Every matching retained message is
    /// replayed to each new subscriber, so this also bounds the work of a subscribe.
    pub max_retained_topics: usize,

    /// Largest event payload, in bytes, that a publish accepts. Default 1 MiB (NATS's
    /// `max_payload`).
    ///
    /// A larger publish fails with [`Error::EventTooLarge`](crate::Error::EventTooLarge)
    /// and reaches nobody. Every subscriber may buffer up to its buffer's worth of events, so
    /// this bounds a subscription's memory (buffer × limit) as much as the publisher's. A
    /// broker also stores events for durable subscriptions as queue messages, so it refuses
    /// to start with a limit above its queue message limit.
    pub max_event_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_subscriptions: 65_536,
            max_buffer: 65_536,
            max_retained_topics: 1024,
            max_event_size: 1 << 20,
        }
    }
}
