//! mw-rpc: remote procedure calls over the mw-core transport.
//!
//! Annotate a trait with [`service`](macro@service) to get a typed client (`XxxClient`) and a server
//! dispatcher (`XxxServer`); host dispatchers in a [`Server`]; call them through a
//! [`Channel`].
//!
//! # Layout
//! - [`service`](mod@service): [`ServiceId`], [`MethodKind`], [`Ack`], the [`Service`]
//!   trait that generated dispatchers implement.
//! - [`client`]: [`Channel`], [`ReplyHandle`] (deferred synchronous calls), [`ClientStream`].
//! - [`server`]: [`Server`], [`ServerConfig`], [`RunningServer`], graceful shutdown.
//! - [`connections`]: [`Connections`], the table of open connections (list, close).
//! - [`metrics`]: Prometheus metrics of a server (`ServerConfig::metrics_addr`).
//! - [`wire`]: call header and error codes inside mw-core frames.
//! - [`error`]: [`RpcError`] (what callers see) and [`ServerError`].
#![deny(missing_docs)]

extern crate self as mw_rpc;

pub mod auth;
pub mod client;
pub mod connections;
pub mod error;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod service;
pub mod wire;

pub use client::{Channel, ClientConfig, ClientStream, ReplyHandle};
pub use connections::{ConnectionInfo, Connections};
pub use error::{RpcError, ServerError};
pub use mw_macros::service;
pub use prometheus_client;
pub use server::{ExecutionMode, RunningServer, Server, ServerBuilder, ServerConfig};
pub use service::{Ack, Handler, MethodInfo, MethodKind, Service, ServiceId, Streaming};

#[doc(hidden)]
pub use service::private as __private;
