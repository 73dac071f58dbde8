//! The in-process error type, [`Error`], and [`PubSubError`], the form in which the
//! broker's refusals travel. Nothing here depends on the rest of the crate.
//!
//! The crate's errors follow the convention `mw-queue` follows too: [`Error`] is what
//! the in-process [`Bus`](crate::Bus) reports; [`PubSubError`] is the broker's typed
//! refusal on the wire (as `mw_queue::QueueError` is the queue broker's); and
//! [`RemoteError`](crate::RemoteError) is what a [`RemoteBus`](crate::RemoteBus) call
//! reports: refused by the broker, the call failed, connecting failed.
//!
//! Name validation errors say which name and which level (token index, from 0) or byte offset is at
//! fault, so a caller can point at the offending part of a topic it got from a user or a peer.

use serde::{Deserialize, Serialize};

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
pub enum Error {
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
        /// The topic being published to. Its text, not a `Topic`: errors sit below names
        /// (validating a `Topic` returns this error).
        topic: String,
        /// The postcard error.
        #[source]
        source: postcard::Error,
    },

    /// A typed subscription received a payload that does not decode as its type. The subscription
    /// stays open; the next `recv` returns the next event.
    #[error("failed to decode payload on topic `{topic}`")]
    Decode {
        /// The topic the undecodable event was published on.
        topic: String,
        /// The postcard error.
        #[source]
        source: postcard::Error,
    },

    /// A file of the broker's pub/sub state (durable subscription definitions, retained
    /// messages) cannot be read or does not parse; the message names the file.
    #[error("pub/sub state file: {0}")]
    StateFile(String),

    /// The broker's storage for durable subscriptions (mw-queue) failed.
    #[error("durable storage failed")]
    Storage(#[source] mw_queue::Error),
}

/// Why the broker refused a request: the wire form of [`Error`], sent to the one client
/// at fault (the broker keeps serving everyone else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum PubSubError {
    /// A topic, pattern or durable name is malformed; the message says where.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// The subscriber buffer asked for is 0 or above the broker's limit.
    #[error("invalid buffer: {0}")]
    InvalidBuffer(String),
    /// The broker holds as many subscriptions as it allows.
    #[error("too many subscriptions: the limit is {0}")]
    TooManySubscriptions(u64),
    /// The retained store is full.
    #[error("retained store is full: {0} topics already hold a retained message")]
    RetainedFull(u64),
    /// The subscription was closed because its broker-side buffer overflowed under
    /// `SlowConsumerPolicy::Disconnect`.
    #[error("subscription disconnected as a slow consumer: its buffer of {0} events was full")]
    SlowConsumer(u64),
    /// The bus is closed (the broker is shutting down).
    #[error("bus is closed")]
    Closed,
    /// The durable subscription exists with another pattern.
    #[error("durable subscription `{name}` exists with pattern `{existing}`, not `{requested}`")]
    DurableConflict {
        /// The durable name.
        name: String,
        /// Its stored pattern.
        existing: String,
        /// The pattern asked for.
        requested: String,
    },
    /// No durable subscription by that name.
    #[error("no durable subscription named `{0}`")]
    UnknownDurable(String),
    /// The broker's storage (mw-queue) failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A batch did not decode.
    #[error("malformed batch: {0}")]
    Malformed(String),
    /// The payload is larger than the broker's max event size; nothing was published.
    #[error("event of {size} bytes exceeds the broker's max event size of {limit} bytes")]
    EventTooLarge {
        /// The payload's size in bytes.
        size: u64,
        /// The broker's limit (`mw broker --max-event-size`).
        limit: u64,
    },
    /// The logged-in user may not publish to this topic or subscribe to this pattern
    /// (the broker's `--auth` file); nothing was done, and the connection stays usable
    /// for what is allowed.
    #[error("permission denied: {0}")]
    PermissionDenied(mw_rpc::auth::Denied),
}

impl From<mw_rpc::auth::Denied> for PubSubError {
    fn from(d: mw_rpc::auth::Denied) -> Self {
        PubSubError::PermissionDenied(d)
    }
}

impl From<&Error> for PubSubError {
    fn from(e: &Error) -> Self {
        match e {
            Error::EmptyName
            | Error::NameTooLong { .. }
            | Error::EmptyToken { .. }
            | Error::InvalidChar { .. }
            | Error::PartialWildcard { .. }
            | Error::FullWildcardNotLast { .. }
            | Error::WildcardInTopic { .. } => PubSubError::InvalidName(e.to_string()),
            Error::ZeroBuffer | Error::BufferTooLarge { .. } => {
                PubSubError::InvalidBuffer(e.to_string())
            }
            Error::TooManySubscriptions { limit } => {
                PubSubError::TooManySubscriptions(*limit as u64)
            }
            Error::RetainedFull { limit } => PubSubError::RetainedFull(*limit as u64),
            Error::SlowConsumer { capacity } => PubSubError::SlowConsumer(*capacity as u64),
            Error::Closed => PubSubError::Closed,
            Error::EventTooLarge { size, limit } => PubSubError::EventTooLarge {
                size: *size as u64,
                limit: *limit as u64,
            },
            other => PubSubError::Storage(other.to_string()),
        }
    }
}

impl From<Error> for PubSubError {
    fn from(e: Error) -> Self {
        PubSubError::from(&e)
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
