//! The server side: accept loop, per-connection dispatch, graceful shutdown.
//!
//! Each connection is served by one task that reads frames, decodes calls, runs up to
//! [`ServerConfig::max_in_flight`] of them concurrently (as futures polled by that task,
//! not spawned tasks: no cross-thread hand-off on the hot path) and writes replies into
//! the connection's batching write buffer. Requests beyond that wait in a bounded
//! per-connection queue of [`ServerConfig::max_queued`]; calls arriving while it is full
//! are refused with `OVERLOADED` (a default [`crate::Channel`] never sends that many).
//! While the client does not read its replies (the write buffer is over its high-water
//! mark) the task stops reading, and TCP pushes back on the client. A handler that blocks
//! the thread blocks its connection: use `spawn_blocking` for blocking work.
//!
//! One-way calls asking for a receipt are acknowledged when they enter that queue (the
//! middleware has accepted them); those asking for delivery when their handler starts.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | `config` | [`ServerConfig`], [`ExecutionMode`] |
//! | `services` | the table of hosted services, by name and version |
//! | `instance` | [`Server`] (what its connections share), [`RunningServer`] |
//! | `builder` | [`ServerBuilder`], [`Server::builder`] |
//! | `accept` | [`Server::serve`]: the accept loop, admission and refusal, the drain |
//! | `limits` | connections per client address |
//! | `connection` | one connection's task: its state, its event loop, its end |
//! | `call_state` | what the connection keeps per call: queued, running, how it ended |
//! | `call` | one call: admission, dispatch, running, its answer |
//! | `login` | the `mw.auth` login call |
//! | `login_failures` | recent failed logins per client address (bounded), for the slow-down |
//! | `stream` | server streams under credit |

mod accept;
mod builder;
mod call;
mod call_state;
mod config;
mod connection;
mod instance;
mod limits;
mod login;
mod login_failures;
mod services;
mod stream;

pub use builder::ServerBuilder;
pub use config::{ExecutionMode, ServerConfig};
pub use instance::{RunningServer, Server};
