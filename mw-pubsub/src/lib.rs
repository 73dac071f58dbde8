//! Event-based communication for mw: an in-process topic bus with wildcard subscriptions,
//! bounded per-subscriber buffers and retained messages.
//!
//! Publishers send events to **topics**; subscribers receive the events whose topics match their
//! **patterns**. Neither names the other (no referential coupling) and a publish returns at once
//! (transient asynchronous): an event published while nobody matches is lost, and the
//! [`PublishReport`] says so.
//!
//! ```
//! use bytes::Bytes;
//! use mw_pubsub::{Bus, Config, SlowConsumerPolicy, SubscribeOptions};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let bus = Bus::new(Config::default());
//! let mut temps = bus.subscribe(
//!     "sensors.*.temp",
//!     SubscribeOptions { buffer: 64, policy: SlowConsumerPolicy::DropOldest },
//! )?;
//!
//! let report = bus.publish("sensors.kitchen.temp", Bytes::from_static(b"21.5"))?;
//! assert_eq!(report.reached(), 1);
//! assert_eq!(bus.publish("sensors.kitchen.humidity", Bytes::new())?.matched, 0);
//!
//! let event = temps.recv().await?;
//! assert_eq!(event.topic.as_str(), "sensors.kitchen.temp");
//! # Ok::<(), mw_pubsub::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Topics and patterns
//!
//! Topics are dot-separated non-empty tokens of printable ASCII, such as `sensors.kitchen.temp`,
//! at most [`topic::MAX_NAME_LEN`] bytes. In a pattern, the token `*` matches exactly one level and
//! a final `>` matches one or more remaining levels (NATS syntax): `sensors.*.temp` matches
//! `sensors.kitchen.temp`; `sensors.>` matches `sensors.a` and `sensors.a.b` but not `sensors`.
//! Invalid names are typed errors ([`Error::EmptyToken`], [`Error::WildcardInTopic`],
//! ...). Details in [`topic`].
//!
//! # Slow consumers
//!
//! Every subscription has a bounded buffer ([`SubscribeOptions::buffer`]) and a declared
//! [`SlowConsumerPolicy`] for when it is full:
//!
//! | policy | on a full buffer | the subscriber keeps |
//! |---|---|---|
//! | [`DropOldest`](SlowConsumerPolicy::DropOldest) (default) | evict the oldest buffered event | the newest `buffer` events |
//! | [`DropNewest`](SlowConsumerPolicy::DropNewest) | discard the new event | the oldest `buffer` events |
//! | [`Disconnect`](SlowConsumerPolicy::Disconnect) | close the subscription | what it had buffered, then [`Error::SlowConsumer`] |
//!
//! A publish never waits for a subscriber, so a slow one never slows the publisher or the others,
//! and memory per subscriber is capped by its buffer. Losses are counted
//! ([`Subscription::dropped`]) and shown in order: [`Event::dropped_before`] says how many events
//! were lost just before that one.
//!
//! # Guarantees
//!
//! - Every subscriber sees each publisher's events in publish order (minus policy losses).
//! - Fan-out shares one payload: every subscriber gets a clone of the publisher's [`Bytes`](bytes::Bytes).
//! - A new subscription receives the matching retained messages ([`Bus::publish_retained`]) once,
//!   before any event published after it subscribed.
//! - Dropping a [`Subscription`] (or [`Attachment`]) unsubscribes and prunes the trie.
//!
//! # Building on the bus (networked broker, durable subscriptions)
//!
//! The core API is raw [`Bytes`](bytes::Bytes) plus a [`Topic`], so a broker can forward payloads without
//! decoding them. Two hooks:
//!
//! - A remote subscriber is a [`Subscription`] drained by a forwarding task, ideally with
//!   [`Subscription::recv_many`] to write many frames per syscall; its buffer and policy bound
//!   the memory a slow connection can pin.
//! - A durable subscription (or any consumer that has its own bounded queue) is a
//!   [`DeliverySink`] attached with [`Bus::attach`]: the bus calls it synchronously, for every
//!   matching event, from within `publish`. It must not block.
//!
//! # Design notes
//!
//! - [`Bus::publish`] is a plain function, not `async`: it never has anything to wait for, because a full subscriber
//!   buffer is resolved by that subscriber's policy on the spot. Not being async keeps it usable
//!   from any thread and costs no future per event.
//! - [`Bus::subscribe`] takes [`SubscribeOptions`] explicitly, so every subscriber declares its
//!   buffer and policy (`SubscribeOptions::default()` when it does not care).
//!
//! # Layout
//!
//! Listed bottom-up: each module imports only from the ones above it.
//!
//! | module | owns |
//! |---|---|
//! | `error`, `config`, `report` | [`Error`] and [`PubSubError`] (the broker's refusal on the wire); [`Config`]; [`PublishReport`], [`BusStats`] |
//! | [`topic`] | [`Topic`], [`Pattern`]: syntax, validation, direct matching |
//! | `trie` | `Trie`: subscriptions indexed by pattern, for matching without a scan; [`SubscriptionId`] |
//! | `event` | [`Event`] |
//! | `membership` | a handle's registration on its bus, removed on drop (the bus implements its `Unsubscribe`) |
//! | `subscriber` | [`Subscription`], its bounded buffer, [`SubscribeOptions`], [`SlowConsumerPolicy`] |
//! | `sink` | [`DeliverySink`], [`Attachment`]: the hook for durable and network consumers |
//! | `retained` | the bounded store of retained messages |
//! | `bus` | [`Bus`]: publish, subscribe, attach, retained, close; the locking story |
//! | `typed` | [`Bus::publish_typed`], [`TypedSubscription`]: postcard on top of the raw bus |
//! | [`remote`] | the networked bus: the `mw.pubsub` service a broker hosts, [`RemoteBus`] (its client), durable subscriptions |

#![deny(missing_docs)]

mod bus;
mod config;
mod error;
mod event;
mod membership;
pub mod remote;
mod report;
mod retained;
mod sink;
mod subscriber;
pub mod topic;
mod trie;
mod typed;

pub use bus::Bus;
pub use config::Config;
pub use error::{Error, Result};
pub use event::Event;
pub use remote::{
    DurableEvent, DurableSubscription, PubSubError, RemoteBus, RemoteConfig, RemoteError,
    RemoteResult, RemoteSubscription, RemoteTypedSubscription,
};
pub use report::{BusStats, PublishReport};
pub use sink::{Attachment, DeliverySink, SinkDelivery};
pub use subscriber::{CloseReason, SlowConsumerPolicy, SubscribeOptions, Subscription};
pub use topic::{IntoPattern, IntoTopic, Pattern, Topic};
pub use trie::SubscriptionId;
pub use typed::{TypedEvent, TypedSubscription};
