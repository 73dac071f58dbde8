//! The queue engine: queue state in memory and the handles that change it.
//!
//! It sits on [`storage`](crate::storage), which it drives, and knows nothing of
//! the network service or routing built on it. Dependencies point down this
//! list: a module uses only those after it (and storage).
//!
//! | module | owns |
//! |---|---|
//! | `manager` | [`QueueManager`](crate::QueueManager): open, replay, the timer task |
//! | `queue` | [`Queue`](crate::Queue): send, tag-based settling, redrive |
//! | `consumer` | [`Consumer`](crate::Consumer), [`ConsumerOptions`](crate::ConsumerOptions): credit-limited fetching |
//! | `delivery` | [`Delivery`](crate::Delivery) |
//! | `shared` | `Shared`: the state all handles share and the operations they call |
//! | `index` | the in-memory index and every queue state transition, [`QueueStats`](crate::QueueStats), [`MemoryStats`](crate::MemoryStats) |
//! | `backlog` | reading a queue's spilled backlog back from its segments |

pub(crate) mod backlog;
pub(crate) mod consumer;
pub(crate) mod delivery;
pub(crate) mod index;
pub(crate) mod manager;
pub(crate) mod queue;
pub(crate) mod shared;
