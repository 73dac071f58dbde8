//! mw: remote procedure calls, persistent message queues and publish/subscribe over one
//! transport.
//!
//! Add this one crate; it re-exports the parts:
//! - [`service`]: the `#[service]` attribute that turns an async trait into a typed
//!   client (`XxxClient`) and server dispatcher (`XxxServer`).
//! - [`rpc`]: the RPC runtime ([`rpc::Channel`], [`rpc::Server`], [`rpc::RpcError`]).
//! - [`core`]: the transport (frames, handshake, TCP / Unix / in-process).
//! - [`queue`]: persistent store-and-forward queues.
//! - [`pubsub`]: the topic-based event bus.
//! - [`space`]: the tuple space (Linda / JavaSpaces): `out`, `rd`, `in`, `notify`.
//!
//! and runs them as one daemon:
//! - [`broker`]: `mw broker`'s assembly of every service on one address
//!   ([`broker::BrokerConfig`], its limits and their validation); [`admin`]: its
//!   `mw.admin` service (connections).
//! - [`logs`] and [`metrics`]: what a broker tells an operator (`tracing` set-up and the
//!   start-up summary; Prometheus collectors).
//! - [`run`]: serving until a signal and printing a failure; [`cli_args`] and [`cli_tls`]:
//!   the flags every client program shares (broker address, sizes, TLS, logins). The
//!   `mw` verbs themselves live in the binary (`src/bin/mw/`).
//!
//! ```
//! #[mw::service(name = "inc", version = 1)]
//! pub trait Increment {
//!     async fn inc(&self, n: u64) -> u64;
//! }
//!
//! struct Inc;
//! impl Increment for Inc {
//!     async fn inc(&self, n: u64) -> u64 { n + 1 }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = mw::rpc::Server::builder()
//!     .add(IncrementServer::new(Inc))
//!     .build()
//!     .spawn("inproc:0")
//!     .await?;
//! let client = IncrementClient::connect(&server.local_addr().to_string()).await?;
//! assert_eq!(client.inc(41).await?, 42);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

extern crate self as mw;

pub use mw_core as core;
pub use mw_macros::service;
pub use mw_pubsub as pubsub;
pub use mw_queue as queue;
pub use mw_rpc as rpc;
pub use mw_space as space;

pub mod admin;
pub mod auth;
pub mod broker;
pub mod cli_args;
pub mod cli_tls;
pub mod demo;
pub mod logs;
pub mod metrics;
pub mod run;
pub mod tour;
