//! The committed state every part of a node reads: the revision counters the writer
//! advances, the clock TTLs are measured on, and what "live" means for a stored value.
//! The writer, the streams and [`Kv`](crate::Kv) all depend on this module; it depends
//! on none of them.

use std::sync::atomic::{AtomicU64, AtomicUsize};

pub(crate) use mw::core::time::millis;

use crate::types::Versioned;

/// The bus topic a node publishes each committed batch of events on.
pub(crate) const EVENTS_TOPIC: &str = "kv.events";
/// Wall-clock milliseconds, anchored to tokio's clock when the node opens: TTLs are
/// stored as wall-clock times (they must mean the same after a restart), and tests can
/// move time with `tokio::time::pause`/`advance`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base_ms: u64,
    base: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            base_ms: mw::core::time::unix_ms(),
            base: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.base_ms.saturating_add(millis(self.base.elapsed()))
    }
}

/// Committed state shared by the writer and readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) revision: AtomicU64,
    pub(crate) oldest_event: AtomicU64,
    pub(crate) watchers: AtomicUsize,
}

/// Whether `v` has not expired at `now` (milliseconds since the Unix epoch).
pub(crate) fn live(v: &Versioned, now: u64) -> bool {
    v.expires_at_ms.is_none_or(|at| at > now)
}
