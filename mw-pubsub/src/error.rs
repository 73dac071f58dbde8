//! The crate's single error type, [`PubSubError`].
//!
//! Name validation errors say which name and which level (token index, from 0) or byte offset is at
//! fault, so a caller can point at the offending part of a topic it got from a user or a peer.

use crate::topic::Topic;

/// Everything that can go wrong in `mw-pubsub`.
///
/// Expected conditions are not errors: a publish that reaches nobody is an `Ok` [`PublishReport`]
/// with `matched == 0`, and a full subscriber buffer is handled by its
/// [`SlowConsumerPolicy`] and counted, not reported to the publisher as a failure.
///
/// [`PublishReport`]: crate::PublishReport
/// [`SlowConsumerPolicy`]: crate::SlowConsumerPolicy
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PubSubError {
    /// A topic or pattern was the empty string.
    #[error("topic or pattern is empty")]
    EmptyName,

    /// A topic or pattern is longer than [`MAX_NAME_LEN`](crate::topic::MAX_NAME_LEN) bytes.
    #[error("name of {len} bytes is longer than the limit of {max} bytes")]
    NameTooLong {
        /// Length of the rejected name in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// Two dots in a row, or a leading or trailing dot.
    #[error("`{name}` has an empty token at level {level}")]
    EmptyToken {
        /// The rejected name.
        name: String,
        /// Index of the empty token, counting from 0.
        level: usize,
    },

    /// A character outside printable ASCII (whitespace, control, non-ASCII).
    #[error("`{name}` has invalid character {ch:?} at byte {offset}")]
    InvalidChar {
        /// The rejected name.
        name: String,
        /// The offending character.
        ch: char,
        /// Its byte offset in the name.
        offset: usize,
    },

    /// A `*` or `>` inside a longer token, such as `temp*` or `a>b`.
    #[error(
        "`{name}` has a wildcard inside token at level {level}; `*` and `>` must be whole tokens"
    )]
    PartialWildcard {
        /// The rejected name.
        name: String,
        /// Index of the offending token.
        level: usize,
    },

    /// A `>` that is not the last token of a pattern.
    #[error("`{name}` has `>` at level {level}, but `>` may only be the last token")]
    FullWildcardNotLast {
        /// The rejected pattern.
        name: String,
        /// Index of the `>` token.
        level: usize,
    },

    /// A wildcard in a topic given to publish: events are published to concrete topics only.
    #[error("topic `{name}` has wildcard `{wildcard}` at level {level}; publish topics must be concrete")]
    WildcardInTopic {
        /// The rejected topic.
        name: String,
        /// The wildcard found, `*` or `>`.
        wildcard: char,
        /// Index of the wildcard token.
        level: usize,
    },

    /// [`SubscribeOptions::buffer`](crate::SubscribeOptions::buffer) was 0.
    #[error("subscriber buffer must hold at least one event")]
    ZeroBuffer,

    /// [`SubscribeOptions::buffer`](crate::SubscribeOptions::buffer) exceeds
    /// [`Config::max_buffer`](crate::Config::max_buffer).
    #[error("subscriber buffer of {requested} events exceeds the configured maximum of {max}")]
    BufferTooLarge {
        /// The buffer asked for.
        requested: usize,
        /// The configured maximum.
        max: usize,
    },

    /// The bus already has [`Config::max_subscriptions`](crate::Config::max_subscriptions)
    /// subscriptions and sinks.
    #[error("too many subscriptions: the limit is {limit}")]
    TooManySubscriptions {
        /// The configured limit.
        limit: usize,
    },

    /// A retained publish to a new topic found the retained store full
    /// ([`Config::max_retained_topics`](crate::Config::max_retained_topics)). Nothing was published.
    #[error("retained store is full: {limit} topics already hold a retained message")]
    RetainedFull {
        /// The configured limit.
        limit: usize,
    },

    /// A publish's payload is larger than [`Config::max_event_size`](crate::Config::max_event_size)
    /// (or, for a [`RemoteBus`](crate::RemoteBus), than a frame can carry). Nothing was
    /// published.
    #[error("event of {size} bytes exceeds the max event size of {limit} bytes")]
    EventTooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The subscription was closed by the bus because its buffer overflowed under
    /// [`SlowConsumerPolicy::Disconnect`](crate::SlowConsumerPolicy::Disconnect). Events buffered
    /// before that were still delivered.
    #[error(
        "subscription disconnected as a slow consumer: its buffer of {capacity} events was full"
    )]
    SlowConsumer {
        /// The buffer size that overflowed.
        capacity: usize,
    },

    /// The bus was closed ([`Bus::close`](crate::Bus::close) or every `Bus` handle dropped).
    #[error("bus is closed")]
    Closed,

    /// A typed publish could not serialize its value.
    #[error("failed to encode payload for topic `{topic}`")]
    Encode {
        /// The topic being published to.
        topic: Topic,
        /// The postcard error.
        #[source]
        source: postcard::Error,
    },

    /// A typed subscription received a payload that does not decode as its type. The subscription
    /// stays open; the next `recv` returns the next event.
    #[error("failed to decode payload on topic `{topic}`")]
    Decode {
        /// The topic the undecodable event was published on.
        topic: Topic,
        /// The postcard error.
        #[source]
        source: postcard::Error,
    },

    /// The broker refused a request made through a [`RemoteBus`](crate::RemoteBus) (bad name,
    /// limit reached, unknown durable subscription, ...). Only this request failed.
    #[error("broker refused the request: {0}")]
    Remote(crate::remote::RemoteError),

    /// Talking to the broker failed: unreachable, disconnected, timed out, protocol mismatch.
    #[error("broker call failed")]
    Rpc(#[source] mw_rpc::RpcError),

    /// The broker's storage for durable subscriptions (mw-queue) failed.
    #[error("durable storage failed")]
    Storage(#[source] mw_queue::Error),
}

impl From<mw_rpc::RpcError> for PubSubError {
    fn from(e: mw_rpc::RpcError) -> Self {
        PubSubError::Rpc(e)
    }
}

impl From<mw_rpc::RpcError<crate::remote::RemoteError>> for PubSubError {
    fn from(e: mw_rpc::RpcError<crate::remote::RemoteError>) -> Self {
        crate::remote::from_rpc(e)
    }
}

/// `Result` with [`PubSubError`] as the default error.
pub type Result<T, E = PubSubError> = std::result::Result<T, E>;
