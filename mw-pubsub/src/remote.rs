//! The networked bus: the `mw.pubsub` RPC service a broker hosts ([`PubSubService`]) and its
//! client, [`RemoteBus`], which mirrors the embedded [`Bus`](crate::Bus) API.
//!
//! ```no_run
//! use mw_pubsub::{RemoteBus, SubscribeOptions};
//!
//! # async fn run() -> mw_pubsub::RemoteResult<()> {
//! let bus = RemoteBus::connect("127.0.0.1:7800").await?;
//! let mut temps = bus.subscribe("sensors.*.temp", SubscribeOptions::default()).await?;
//! bus.publish("sensors.kitchen.temp", "21.5").await?;      // fire-and-forget, batched
//! let report = bus.publish_report("sensors.hall.temp", "19.0").await?;
//! assert_eq!(report.reached(), 1);
//! let event = temps.recv().await?;
//! println!("{} {:?}", event.topic, event.payload);
//!
//! // Durable: keeps collecting on the broker while this process is away.
//! let mut orders = bus.subscribe_durable("billing", "orders.>").await?;
//! let d = orders.recv().await?;
//! d.ack().await?;
//! # Ok(()) }
//! ```
//!
//! # How it maps onto the embedded bus
//!
//! | client | broker |
//! |---|---|
//! | [`RemoteBus::publish`] (queued, sent in batches by one task per connection, one-way) | [`Bus::publish`](crate::Bus::publish) for each event, in order |
//! | [`RemoteBus::publish_report`] / [`publish_retained`](RemoteBus::publish_retained) (unary) | [`Bus::publish`](crate::Bus::publish) / [`Bus::publish_retained`](crate::Bus::publish_retained), the report sent back |
//! | [`RemoteBus::subscribe`] → [`RemoteSubscription`] | a [`Subscription`](crate::Subscription) with the declared buffer and policy, drained into batches on a credit-controlled stream |
//! | [`RemoteBus::subscribe_durable`] → [`DurableSubscription`] | a [`DeliverySink`](crate::DeliverySink) storing into the mw-queue queue `durable.<name>`; a consumer of that queue streams the events, acked by tag |
//!
//! Publishes made through one `RemoteBus` (and its clones) reach the broker in call order,
//! whichever of the calls above made them, so every subscriber sees one publisher's events in
//! its publish order.
//!
//! # Slow subscribers over the network
//!
//! The broker forwards a subscription only while the subscriber grants stream credit (the
//! client's [`ClientConfig::stream_window`](mw_rpc::ClientConfig::stream_window) batches of at most
//! [`MAX_BATCH_EVENTS`] events). A subscriber that does not keep up stops granting credit, its
//! events collect in its broker-side buffer and its policy applies there: the broker's memory for
//! it is bounded by its declared buffer plus the window, whatever the publishers do. Losses
//! arrive in order as [`Event::dropped_before`](crate::Event::dropped_before) and add up in
//! [`RemoteSubscription::dropped`]; under [`Disconnect`](crate::SlowConsumerPolicy::Disconnect)
//! the subscriber gets what was buffered, then [`RemoteError::Refused`] with [`PubSubError::SlowConsumer`].
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | argument and item types, the packed batch encoding ([`PubSubError`] is re-exported from the crate's `error`) |
//! | `service` | the [`PubSub`] service trait and [`PubSubService`] (the broker side) |
//! | `durable` | durable subscriptions: the sink, the writer task, sessions, definitions file |
//! | `error` | [`RemoteError`], what a client call reports |
//! | `client` | [`RemoteBus`], [`RemoteSubscription`], [`RemoteTypedSubscription`], [`DurableSubscription`] |

mod client;
mod durable;
mod error;
mod retained_file;
mod service;
pub mod wire;

pub use client::{
    DurableEvent, DurableSubscription, RemoteBus, RemoteConfig, RemoteSubscription,
    RemoteTypedSubscription,
};
pub use durable::{DurableName, DEFINITIONS_FILE, MAX_UNSTORED_EVENTS, QUEUE_PREFIX};
pub use error::{RemoteError, RemoteResult};
pub use retained_file::RETAINED_FILE;
pub use service::{
    PubSub, PubSubClient, PubSubRequest, PubSubResponse, PubSubServer, PubSubService,
    MAX_BATCH_BYTES, MAX_BATCH_EVENTS,
};
pub use wire::{PubSubError, RemoteStats};
