//! Shared-space communication for mw: a tuple space, as in Linda and JavaSpaces.
//!
//! Processes put **tuples** (ordered lists of typed values) into a shared space and others
//! read or take them by **pattern**. Neither side names the other (referential decoupling)
//! and they need not run at the same time (temporal decoupling): a tuple stays in the space
//! until someone takes it or its lease runs out, also across broker restarts.
//!
//! | operation | Linda / JavaSpaces | here |
//! |---|---|---|
//! | write a tuple | `out` / `write` | [`Space::out`], [`Space::out_leased`] |
//! | read a copy, waiting | `rd` / `read` | [`Space::rd`] |
//! | read a copy, not waiting | `rdp` / `readIfExists` | [`Space::rdp`] |
//! | remove one, waiting | `in` / `take` | [`Space::in_`] |
//! | remove one, not waiting | `inp` / `takeIfExists` | [`Space::inp`] |
//! | hear about writes | — / `notify` | [`Space::notify`] (through mw-pubsub) |
//!
//! The same API works embedded ([`Space`]) and through `mw broker`, which hosts the
//! `mw.space` service ([`RemoteSpace`]).
//!
//! ```
//! use std::time::Duration;
//! use mw_space::{pattern, tuple, Field, Space, Type};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> mw_space::Result<()> {
//! let space = Space::default();
//! // A worker blocks until a task exists; the master writes one later.
//! let worker = {
//!     let space = space.clone();
//!     tokio::spawn(async move { space.in_(&pattern!("task", Type::Int), Duration::from_secs(5)).await })
//! };
//! space.out(tuple!("task", 42)).await?;
//! assert_eq!(worker.await.unwrap()?, Some(tuple!("task", 42)));
//! assert_eq!(space.rdp(&pattern!("task", Field::Any)).await?, None); // taken exactly once
//! # Ok(()) }
//! ```
//!
//! # Tuples and patterns
//!
//! Fields are [`Value`]s: string, int (i64), float (finite f64), bool, bytes. A [`Pattern`]
//! has as many fields as the tuples it matches; each is an actual (equal value of the same
//! type), [`Field::Any`] or a typed formal [`Field::Typed`]. Their JSON form (`["task",
//! {"?": "int"}, null]`) is in [`json`]. Limits (arity, sizes, counts) are in [`Config`].
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | `value` | [`Value`], [`Type`], [`Tuple`], [`TupleId`], the [`tuple!`] macro |
//! | `pattern` | [`Field`], [`Pattern`], the matching rule, the [`pattern!`] macro |
//! | [`json`] | the JSON text form the CLI reads and prints (every `Display` of value, tuple, pattern) |
//! | `index` | visible tuples in buckets by (arity, position, value / type): matching without a scan |
//! | `waiters` | blocked `rd` / `in` callers, served in arrival order |
//! | `space` | [`Space`]: holds, commits, leases, limits, the locking story |
//! | [`log`] | the persistent log: format, recovery, group commit, compaction |
//! | [`notify`] | [`Notifications`]: written tuples through the bus |
//! | [`remote`] | the `mw.space` service ([`remote::SpaceService`]) and [`RemoteSpace`]; exactly-once take |
//! | `config`, `error` | [`Config`] with the limits; [`SpaceError`] |
#![deny(missing_docs)]
#![warn(rust_2018_idioms, unreachable_pub)]

mod config;
mod error;
mod index;
pub mod json;
pub mod log;
pub mod notify;
mod pattern;
pub mod remote;
mod space;
mod value;
mod waiters;

pub use config::Config;
pub use error::{Result, SpaceError, What};
pub use log::LogStats;
pub use notify::Notifications;
pub use pattern::{Field, Pattern};
pub use remote::RemoteSpace;
pub use space::{Space, SpaceStats, Wait};
pub use value::{Tuple, TupleId, Type, Value};
