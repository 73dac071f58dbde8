//! The networked space: the `mw.space` service a broker hosts ([`SpaceService`]) and its
//! client, [`RemoteSpace`], with the embedded [`Space`](crate::Space)'s API.
//!
//! ```no_run
//! use std::time::Duration;
//! use mw_space::{pattern, tuple, RemoteSpace, Type};
//!
//! # async fn run() -> mw_space::Result<()> {
//! let space = RemoteSpace::connect("127.0.0.1:7800").await?;
//! space.out(tuple!("task", 1)).await?;                  // durable at the broker
//! let t = space.in_(&pattern!("task", Type::Int), Duration::from_secs(5)).await?;
//! assert_eq!(t, Some(tuple!("task", 1)));
//! # Ok(()) }
//! ```
//!
//! # Exactly-once take over the network
//!
//! mw-rpc does not tell a unary handler whether its reply reached the caller: once a
//! handler returns, the reply is queued, and a caller that disconnected meanwhile simply
//! never reads it (a unary call even runs to its end after its caller is gone). So a
//! one-step `in` could remove a tuple and lose it with the reply. `in` is therefore two
//! steps on the wire:
//!
//! 1. `take(pattern, wait)` is a *stream*. The broker finds (or waits for) a match, holds
//!    it for this caller — invisible to everyone else — and sends it as the stream's first
//!    item (an [`Offer`] with a hold id). The stream stays open while the hold lasts.
//! 2. The client calls `confirm(hold)`. The broker logs the take (durable as the fsync
//!    policy says), ends the stream, and replies; only then does [`RemoteSpace::in_`]
//!    return the tuple.
//!
//! If the taker goes away before confirming — its process dies, the connection breaks, it
//! drops the call — the server drops the stream (mw-rpc drops a stream's handler when its
//! connection ends or the caller cancels), the hold guard inside it runs, and the tuple goes
//! back into the space, offered to the blocked callers first. A taker that stays connected
//! but never confirms loses the hold after [`Config::hold_timeout`](crate::Config::hold_timeout).
//! A confirmation that arrives after that fails with
//! [`SpaceError::UnknownHold`](crate::SpaceError::UnknownHold), and `in_` returns that error,
//! not the tuple. So no tuple is ever returned by two `in`s, and none is lost to a taker
//! that never got it. The one window left is the confirmation's own reply: if the
//! connection breaks after the broker logged the take but before the reply arrived,
//! `in_` fails with `Disconnected` and the tuple is gone — the unavoidable last message of
//! any acknowledgement protocol.
//!
//! `rd` is a stream for another reason: a blocked reader whose connection breaks stops
//! waiting at once instead of holding a waiter slot until its timeout.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | `service` | the [`TupleSpace`] service trait, [`Offer`], [`SpaceService`] (the broker side) |
//! | `client` | [`RemoteSpace`] |

mod client;
mod service;

pub use client::RemoteSpace;
pub use service::{
    Offer, SpaceService, TupleSpace, TupleSpaceClient, TupleSpaceRequest, TupleSpaceResponse,
    TupleSpaceServer,
};
