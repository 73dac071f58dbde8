//! Queues over the network: the broker's `mw.queue` service and its client.
//!
//! The broker hosts a [`QueueServiceImpl`] over its [`QueueManager`](crate::QueueManager)
//! (`mw broker` does this); programs elsewhere reach it with [`RemoteQueues`], whose
//! handles mirror the embedded API:
//!
//! | embedded | remote |
//! |---|---|
//! | [`QueueManager::open`](crate::QueueManager::open) | [`RemoteQueues::connect`] |
//! | [`Queue::send`](crate::Queue::send) | [`RemoteQueue::send`] (returns once durable *at the broker*) |
//! | — | [`RemoteQueue::send_batch`] (one round trip, one group commit) |
//! | [`Queue::consumer`](crate::Queue::consumer) | [`RemoteQueue::consumer`] (`async`: it opens a stream) |
//! | [`Consumer::recv`](crate::Consumer::recv) | [`RemoteConsumer::recv`] |
//! | [`Delivery::ack`](crate::Delivery::ack) / `nack` / `reject` | [`RemoteDelivery::ack`] / `nack` / `reject` |
//! | [`QueueManager::queues`](crate::QueueManager::queues) | [`RemoteQueues::queues`] |
//! | [`QueueManager::purge`](crate::QueueManager::purge) / [`delete`](crate::QueueManager::delete) / [`peek`](crate::QueueManager::peek) | [`RemoteQueue::purge`] / [`delete`](RemoteQueue::delete) / [`peek`](RemoteQueue::peek) |
//! | [`QueueManager::log_stats`](crate::QueueManager::log_stats) / [`memory`](crate::QueueManager::memory) | [`RemoteQueues::stats`] |
//! | [`crate::Error`] | [`RemoteError`]: the broker's refusal ([`QueueError`]) or a failed call |
//!
//! # Semantics over the network
//!
//! * **Persistent synchronous send**: `send` answers once the message is durable at
//!   the broker (under its fsync policy). Concurrent sends from many clients share
//!   group commits, and concurrent sends (and acks) on one connection are merged into
//!   batch calls ([coalescing](RemoteQueues#coalescing)), each still answered for its
//!   own message.
//! * **Resends are stored once**: when a send fails on the way ([`RemoteError::Rpc`]:
//!   disconnect, broker crash, timeout) the message may or may not be stored. Give
//!   messages producer-chosen ids ([`Message::with_id`](crate::Message::with_id)) and
//!   resend with the same id: the broker's dedup window (also rebuilt after a crash)
//!   stores it once. Store-and-forward (`crate::forward`) relies on exactly this.
//! * **Consumers**: each [`RemoteConsumer`] is one consumer inside the broker, fed over
//!   a flow-controlled server stream that packs several deliveries per frame. Its
//!   prefetch bounds the deliveries it holds unsettled anywhere (broker, wire, client).
//!   Settling is by [`DeliveryTag`](crate::DeliveryTag): one call each, except that
//!   concurrent acks are merged into `ack_many` calls.
//! * **A consumer that goes away** (dropped, cancelled, connection lost, client
//!   crashed): what the broker had fetched for it but not sent returns to the queue at
//!   once; what it had received and not settled is redelivered, to any consumer, after
//!   the visibility timeout. Delivery is at-least-once.
//!
//! # Wire interface
//!
//! [`QueueService`] (`mw.queue`, version 1) is an ordinary mw RPC service; its message
//! types are plain structs (the crate's [`Message`](crate::Message) itself, and
//! [`WireDelivery`], [`QueueInfo`], [`QueueError`]), postcard-encoded like every mw call
//! (see `PROTOCOL.md`).

mod client;
mod coalesce;
mod error;
mod service;
mod wire;

pub use client::{
    RemoteConsumer, RemoteDelivery, RemoteQueue, RemoteQueues, COALESCE_IN_FLIGHT,
    COALESCE_MAX_BYTES, COALESCE_MAX_ITEMS,
};
pub use error::{RemoteError, RemoteResult};
pub use service::{
    ConsumeItem, QueueService, QueueServiceClient, QueueServiceImpl, QueueServiceRequest,
    QueueServiceResponse, QueueServiceServer, SendRoute, MAX_BATCH, MAX_DELIVERIES_PER_ITEM,
    MAX_PEEK, MAX_PREFETCH,
};
pub use wire::{
    BrokerStats, QueueError, QueueInfo, WireConsumer, WireDelivery, WirePeeked, WireWaiting,
};

pub use service::check_remote_name;
