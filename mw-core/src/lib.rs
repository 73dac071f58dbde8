//! mw-core: the one transport that mw's RPC, queues and pub/sub share.
//!
//! It knows frames, connections and transports, and nothing of services, queues or
//! topics.
//!
//! # Layout
//! - [`frame`]: the wire form of a message (length prefix, kind, flags, id, body) and
//!   [`FrameCodec`], which checks the maximum frame length before allocating.
//! - [`handshake`]: the versioned greeting that opens every connection.
//! - [`transport`]: [`Address`] (`HOST:PORT`, `unix:PATH`, `inproc:NAME`,
//!   `sim:NET/NAME`), [`Listener`], [`Stream`] and [`connect`] over TCP, Unix sockets and
//!   in-process pipes.
//! - [`fault`]: [`FaultNet`], a simulated in-process network that drops, duplicates,
//!   delays and reorders frames and partitions endpoints, deterministically from a seed.
//! - [`tls`]: TLS on TCP connections (rustls): [`tls::TlsServer`], [`tls::TlsClient`].
//! - [`connection`]: the batching writer ([`WriteBuffer`]), the frame reader, and the
//!   client/server connection set-up.
//! - [`control`]: [`ConnectionReader`], which answers `Ping`s and sorts the other
//!   connection-level frames (`Pong`, `GoAway`) from the frames of exchanges
//!   ([`Incoming`]), the same way for clients and servers.
//! - [`error`]: [`CoreError`] and [`FrameError`]; [`error::chain`], how every binary
//!   and log line prints an error with its causes.
//! - [`time`]: wall-clock milliseconds ([`time::unix_ms`]) and saturating conversion.
//!
//! PROTOCOL.md at the repository root specifies the bytes.
#![deny(missing_docs)]

pub mod connection;
pub mod control;
pub mod error;
pub mod fault;
pub mod frame;
pub mod handshake;
pub mod time;
pub mod tls;
pub mod transport;

pub use connection::{
    client_connection, server_connection, spawn_writer, FrameReader, TransportConfig, WriteBuffer,
};
pub use control::{ConnectionReader, Incoming};
pub use error::{CoreError, FrameError};
pub use fault::{FaultNet, Faults};
pub use frame::{flags, Frame, FrameCodec, FrameKind};
pub use transport::{connect, Address, Listener, Stream};
