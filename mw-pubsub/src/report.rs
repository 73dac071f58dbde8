//! [`PublishReport`] and [`BusStats`]: what a publish achieved and what a bus holds.

/// What one publish did, counted over the subscriptions and sinks whose pattern matched.
///
/// `matched == delivered + rejected`. A publish that matched nobody is not an error: in the
/// transient asynchronous mode the event is simply lost, and this report is how the sender can
/// tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishReport {
    /// Subscriptions and sinks whose pattern matched the topic.
    pub matched: usize,
    /// Of those, how many buffered (or, for sinks, accepted) the event.
    pub delivered: usize,
    /// Of those, how many did not take it: buffer full under
    /// [`DropNewest`](crate::SlowConsumerPolicy::DropNewest) or
    /// [`Disconnect`](crate::SlowConsumerPolicy::Disconnect), or a sink refused or was closed.
    pub rejected: usize,
    /// Older events evicted under [`DropOldest`](crate::SlowConsumerPolicy::DropOldest) to make
    /// room for this one (those subscriptions still count as `delivered`).
    pub displaced: usize,
    /// Subscriptions this publish closed for being slow (included in `rejected`).
    pub disconnected: usize,
    /// Whether the event was stored as its topic's retained message.
    pub retained: bool,
}

impl PublishReport {
    /// How many subscribers the event reached: [`delivered`](Self::delivered).
    pub fn reached(&self) -> usize {
        self.delivered
    }
}

/// A snapshot of what a [`Bus`](crate::Bus) holds, from [`Bus::stats`](crate::Bus::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Live in-memory subscriptions.
    pub subscriptions: usize,
    /// Attached [`DeliverySink`](crate::DeliverySink)s.
    pub sinks: usize,
    /// Topics holding a retained message.
    pub retained_topics: usize,
    /// Nodes in the subscription trie, 1 when there are no subscriptions.
    pub trie_nodes: usize,
    /// Events published since the bus began.
    pub published: u64,
    /// Events a subscriber or sink took (one per subscriber reached).
    pub delivered: u64,
    /// Events lost to slow-consumer policies (rejected, displaced, disconnected).
    pub dropped: u64,
}
