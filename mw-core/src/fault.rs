//! Deterministic fault injection: a simulated network that drops, duplicates, delays and
//! reorders frames and partitions named endpoints, from a seed.
//!
//! A [`FaultNet`] is an in-process network (built on the same memory pipes as
//! `inproc:`) that any mw server and client use by address, unchanged:
//!
//! | address | meaning |
//! | --- | --- |
//! | `sim:NET/NAME` | listen as endpoint `NAME` on network `NET`; or connect to it anonymously |
//! | `sim:NET/FROM>NAME` | connect to `NAME` as endpoint `FROM` (partitions between `FROM` and `NAME` apply) |
//!
//! The network must exist first: `FaultNet::new("NET", seed)`. Endpoint names are any
//! non-empty text without `/`, `>` or white space; binding the name `0` picks a free one.
//! A client that does not say who it is is the *anonymous* endpoint, named `""`: only
//! [`FaultNet::isolate`] of its peer (or a partition naming `""`) cuts it off. So a server
//! that calls its peers (a ring node) should say who it is: it dials
//! `peer.dialed_from(&its_own_address)` ([`Address::dialed_from`](crate::Address::dialed_from)),
//! which turns `sim:NET/b` into `sim:NET/a>b` and leaves other addresses alone.
//!
//! # What the network does
//!
//! - **Frames, in both directions, after the handshake.** Each relay cuts the byte stream
//!   into mw-core frames with [`FrameCodec`](crate::FrameCodec) and judges each frame
//!   once, when it enters the network: lost to a partition ([`Fault::Blocked`]), lost by
//!   chance ([`Fault::Dropped`]), or delivered, possibly twice ([`Fault::Duplicated`]),
//!   later ([`Fault::Delayed`]) and/or after the frame that follows it
//!   ([`Fault::Reordered`]). Probabilities come from a [`Faults`] profile, global
//!   ([`FaultNet::set_faults`]) or per sender → receiver ([`FaultNet::set_link_faults`]).
//!   A delay holds up the frames behind it too (each direction stays in order, as over
//!   TCP); only reordering changes the order.
//! - **The handshake is never faulted**, but a partition makes `connect` fail at once with
//!   [`CoreError::Unreachable`] naming both endpoints, never a hang.
//! - **Partitions** ([`FaultNet::partition`], [`FaultNet::isolate`], [`FaultNet::heal`])
//!   also cut connections already open: their frames are lost (counted as blocked) while
//!   the cut lasts. The connection stays open, silently, as a TCP connection through a
//!   failed router does. (Unlike TCP, nothing is retransmitted after the heal.)
//! - **Crashes**: [`FaultNet::kill_endpoint`] closes every connection to or from an
//!   endpoint at once (both sides read end-of-stream, nothing queued is delivered) and
//!   unbinds its listener, so connecting to it is refused until a server binds the name
//!   again. Stopping and restarting the server itself is the caller's business.
//! - **Counters and a log** of every injected fault: [`FaultNet::stats`],
//!   [`FaultNet::log`].
//!
//! # What is deterministic
//!
//! The *decisions* are. What happens to a frame depends only on the seed, the two
//! endpoint names, the connection's number among those opened from `FROM` to `NAME`
//! (0, 1, …), the direction, the frame's index in that direction (from 0), and the
//! profile and partitions in force when the frame is sent — never on time, on other
//! connections, or on the `rand` crate's version (the draws are ChaCha8, keyed as
//! described in the source of `fault/dice.rs`). So the same program sending the same
//! frames under the same seed gets the same fault log; a different seed, a different one.
//!
//! *Timing* is not: when tasks run, how connections interleave, how long a delay really
//! takes on a loaded machine. Whatever depends on timing can change the frames themselves
//! (a call that times out sends a `Cancel`; concurrent calls race for correlation ids;
//! two connections opened at once from the same endpoint to the same one race for their
//! numbers; a frame held for reordering is released alone if no frame follows within
//! [`Faults::reorder_window`]). For a fully repeatable run, drive one connection per link
//! from one task, or run on a current-thread runtime with paused time
//! (`#[tokio::test(start_paused = true)]`), where delays and timeouts are exact.
//!
//! # Example
//!
//! ```
//! use futures::StreamExt;
//! use mw_core::fault::{Fault, FaultNet, Faults};
//! use mw_core::{client_connection, connect, server_connection, FrameKind, Listener};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mw_core::CoreError> {
//! let net = FaultNet::new("doc-fault", 7)?;
//! net.set_faults(Faults::default().with_drop(0.5));
//! let cfg = mw_core::TransportConfig::default();
//!
//! let mut listener = Listener::bind(&net.addr("server").parse()?).await?;
//! let stream = connect(&net.link_addr("client", "server").parse()?).await?;
//! let (accepted, _peer) = listener.accept().await?;
//! let ((mut server_frames, _, _), (_, client_out, _)) = tokio::try_join!(
//!     server_connection(accepted, &cfg),
//!     client_connection(stream, &cfg),
//! )?;
//!
//! for id in 1..=10 {
//!     client_out.push(FrameKind::Oneway, 0, id, b"hello")?;
//! }
//! client_out.close();
//! let mut arrived = Vec::new();
//! while let Some(frame) = server_frames.next().await {
//!     arrived.push(frame?.id);
//! }
//! let lost: Vec<u64> = net.log().iter().filter(|e| e.fault == Fault::Dropped).map(|e| e.id).collect();
//! assert_eq!(arrived.len() + lost.len(), 10);
//! assert!(lost.iter().all(|id| !arrived.contains(id)));
//! assert_eq!(net.stats().dropped, lost.len() as u64);
//! # Ok(())
//! # }
//! ```
//!
//! Over RPC nothing changes but the address: `Server::spawn(&net.addr("kv"))` and
//! `Channel::connect(&net.link_addr("client", "kv"))` (see mw-rpc).

mod dice;
mod events;
mod faults;
mod net;
mod relay;
mod topology;

use std::sync::Arc;

pub use events::{Direction, Fault, FaultEvent, FaultStats};
pub use faults::Faults;

pub(crate) use net::{bind, check_name, SimListener};
pub(crate) use relay::connect;

use crate::error::CoreError;

/// A simulated network and the handle that controls it at run time.
///
/// Cheap to clone; every clone controls the same network. The network lives while a
/// handle, a listener bound on it or a connection through it does; while it lives its
/// name is taken in this process.
///
/// ```
/// use mw_core::fault::FaultNet;
///
/// let net = FaultNet::new("doc-handle", 1).unwrap();
/// assert_eq!(net.addr("a"), "sim:doc-handle/a");
/// assert_eq!(net.link_addr("b", "a"), "sim:doc-handle/b>a");
/// net.partition(&["a"], &["b", "c"]);
/// assert!(!net.reachable("b", "a"));
/// assert!(net.reachable("b", "c"));
/// net.heal();
/// assert!(net.reachable("b", "a"));
/// ```
#[derive(Debug, Clone)]
pub struct FaultNet {
    net: Arc<net::Net>,
}

impl FaultNet {
    /// Creates the network `name` (addresses `sim:name/...`), whose faults are drawn from
    /// `seed`. It starts perfect: no faults, no partitions.
    ///
    /// # Errors
    /// [`CoreError::BadAddress`] if `name` is empty or contains `/`, `>` or white space;
    /// [`CoreError::Bind`] if a network by that name exists in this process.
    pub fn new(name: &str, seed: u64) -> Result<FaultNet, CoreError> {
        Ok(FaultNet {
            net: net::Net::create(name, seed)?,
        })
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.net.name
    }

    /// The seed the faults are drawn from.
    pub fn seed(&self) -> u64 {
        self.net.seed
    }

    /// The address of `endpoint`, `sim:NET/endpoint`: to listen on, or to connect to
    /// anonymously.
    pub fn addr(&self, endpoint: &str) -> String {
        format!("sim:{}/{endpoint}", self.net.name)
    }

    /// The address for connecting to `to` as endpoint `from`: `sim:NET/from>to`.
    pub fn link_addr(&self, from: &str, to: &str) -> String {
        format!("sim:{}/{from}>{to}", self.net.name)
    }

    /// Cuts every endpoint of `side_a` off from every endpoint of `side_b`, in both
    /// directions, until [`FaultNet::heal`]. Cuts add up. Connections across the cut stay
    /// open but lose every frame; new ones are refused with [`CoreError::Unreachable`].
    pub fn partition(&self, side_a: &[&str], side_b: &[&str]) {
        self.net.partition(side_a, side_b);
    }

    /// Cuts `endpoint` off from every other endpoint (anonymous clients included), until
    /// [`FaultNet::heal`].
    pub fn isolate(&self, endpoint: &str) {
        self.net.isolate(endpoint);
    }

    /// Removes every partition and isolation. Frames lost meanwhile stay lost.
    pub fn heal(&self) {
        self.net.heal();
    }

    /// Whether frames from `from` reach `to` now (symmetric; an endpoint reaches itself).
    pub fn reachable(&self, from: &str, to: &str) -> bool {
        self.net.unreachable(from, to).is_none()
    }

    /// Sets the profile for every link that has none of its own.
    pub fn set_faults(&self, faults: Faults) {
        self.net.set_faults(faults);
    }

    /// Sets the profile for frames sent by `sender` to `receiver` (one direction; call it
    /// again the other way for both), overriding the global one.
    ///
    /// ```
    /// use mw_core::fault::{FaultNet, Faults};
    ///
    /// let net = FaultNet::new("doc-link", 1).unwrap();
    /// net.set_faults(Faults::default().with_drop(0.01)); // everywhere else
    /// net.set_link_faults("kv", "alice", Faults::default().with_duplicate(0.5)); // replies to alice
    /// ```
    pub fn set_link_faults(&self, sender: &str, receiver: &str, faults: Faults) {
        self.net.set_link_faults(sender, receiver, faults);
    }

    /// Back to a perfect network: no global profile, no per-link ones. Partitions stay.
    pub fn clear_faults(&self) {
        self.net.clear_faults();
    }

    /// Crashes `endpoint` as far as the network can: closes every connection to or from
    /// it at once (frames in flight are lost; both sides read end-of-stream) and unbinds
    /// its listener, so connecting to it is refused until a server binds `sim:NET/endpoint`
    /// again. The old listener's `accept` then waits forever. Returns how many connections
    /// were closed.
    ///
    /// ```
    /// # use mw_core::fault::FaultNet;
    /// # use mw_core::{connect, CoreError, Listener};
    /// # use tokio::io::AsyncReadExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let net = FaultNet::new("doc-kill", 1).unwrap();
    /// let _server = Listener::bind(&net.addr("kv").parse().unwrap()).await.unwrap();
    /// let mut stream = connect(&net.link_addr("alice", "kv").parse().unwrap()).await.unwrap();
    ///
    /// assert_eq!(net.kill_endpoint("kv"), 1);
    /// assert_eq!(stream.read(&mut [0u8; 8]).await.unwrap(), 0, "end of stream");
    /// let refused = connect(&net.link_addr("alice", "kv").parse().unwrap()).await;
    /// assert!(matches!(refused, Err(CoreError::Connect { .. })));
    /// // A restarted server takes the name again.
    /// let _restarted = Listener::bind(&net.addr("kv").parse().unwrap()).await.unwrap();
    /// # }
    /// ```
    pub fn kill_endpoint(&self, endpoint: &str) -> usize {
        self.net.kill_endpoint(endpoint)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.net.open_connections()
    }

    /// What the network has done so far.
    pub fn stats(&self) -> FaultStats {
        self.net.stats()
    }

    /// Every fault injected so far, in the order they were decided (the first 100,000;
    /// later ones are only counted, in [`FaultStats::unlogged`]).
    pub fn log(&self) -> Vec<FaultEvent> {
        self.net.log()
    }

    /// Like [`FaultNet::log`], and empties the log (the counters keep counting).
    pub fn take_log(&self) -> Vec<FaultEvent> {
        self.net.take_log()
    }
}

// Behaviour over real connections; the pure parts are tested beside their code.
#[cfg(test)]
mod tests;
