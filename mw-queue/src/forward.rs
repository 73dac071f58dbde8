//! Store and forward: moving messages between queue managers, hop by hop.
//!
//! The model is the message-queuing system of the lectures:
//!
//! ```text
//!  sender A                                                         receiver B
//!     │ send                                                             ▲ recv
//!     ▼                                                                  │
//!  [send queue] ──forwarder──▶ router R1 ──forwarder──▶ router R2 ──▶ [receive queue]
//!   (Outbox, or        (xmit.R2 queue at R1)     (xmit.B queue at R2)    (B's queue
//!    a Router)                                                            manager)
//! ```
//!
//! Messages are addressed to *queues*, not to processes. Each queue manager on
//! the way stores a message durably before it confirms it to the one before,
//! so a message is always on some disk; the previous hop deletes its copy (acks
//! it locally) only after that confirmation. A queue manager that does not own
//! a queue keeps its messages in a **transmission queue** for the next hop
//! (`xmit.<hop>`), and a [`Forwarder`] moves them on as soon as, and whenever,
//! the hop is reachable.
//!
//! **What is guaranteed**: delivery *to the destination queue*, once, in the
//! order each transmission queue received them, eventually. Not *when* (a hop
//! may be down for minutes), and not that a receiver ever reads it. Exactly
//! once comes from ids: every message keeps the id it got when first stored,
//! every hop sends it on with that id, and a queue manager stores an id it has
//! seen within its dedup window ([`Config::dedup_window`](crate::Config::dedup_window))
//! only once, so the resend that follows a crash between "the next hop
//! confirmed" and "we acked locally" is harmless.
//!
//! The parts:
//!
//! | item | role |
//! |---|---|
//! | [`NextHop`], [`HopError`], [`Connect`] | where a forwarder sends; implemented by the broker's `mw.queue` client, by [`QueueManager`](crate::QueueManager) and by [`Router`] (in process) |
//! | [`Forwarder`], [`ForwarderConfig`], [`ForwarderStats`] | moves one transmission queue to its hop: batches, ordered, ack after confirm, retry with capped jittered backoff |
//! | [`RoutingTable`], [`Route`], [`QueuePattern`] | queue name or prefix (`orders.*`) → next-hop address |
//! | [`Router`] | a queue manager with a routing table: local queues directly, others via `xmit.<hop>` |
//! | [`Outbox`] | the persistent asynchronous client: `send` returns once stored locally; delivered to the broker when it is up |
//! | [`RemoteHop`], [`RemoteConnect`] | a broker's `mw.queue` service as a next hop (confirmed `send_batch`, reconnects) |
//! | [`Router`] as a [`SendRoute`](crate::remote::SendRoute) | the `mw.queue` service with a router behind it (`QueueServiceImpl::with_route`, `mw broker --route`) |
//!
//! Ordering is per transmission queue (so per producer whose messages take one
//! path). The TTL and delay of a message are kept as absolute times (local
//! clock) while it waits in a transmission queue and sent on as the time that
//! remains, so hosts' clocks need not agree (time on the wire is not counted).
//! An expired message is dropped, never forwarded.

mod backoff;
mod envelope;
mod forwarder;
mod hop;
mod outbox;
mod remote_hop;
mod routing;

pub use forwarder::{Forwarder, ForwarderConfig, ForwarderStats};
pub use hop::{Connect, HopError, NextHop};
pub use outbox::{Outbox, OutboxConfig, OutboxStats, OUTBOX_QUEUE};
pub use remote_hop::{RemoteConnect, RemoteHop, DEFAULT_HOP_TIMEOUT};
pub use routing::{
    xmit_queue, HopStatus, ParseRouteError, QueuePattern, Route, Router, RoutingTable, XMIT_PREFIX,
};
