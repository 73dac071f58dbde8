//! The time source for TTLs, delayed delivery and visibility timeouts.
//!
//! Times are milliseconds since the Unix epoch, because TTL and not-before
//! times are stored in the log and must mean the same after a restart. The
//! system clock is anchored to a monotonic clock when created, so a wall-clock
//! step does not fire every visibility timeout at once. Tests use a manual
//! clock and [`Clock::advance`], which works the same whether or not tokio's
//! time is paused (the log writer is a std thread, so paused-time auto-advance
//! could otherwise jump while a test waits for an fsync).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mw_core::time::{millis, unix_ms};

use tokio::sync::watch;

/// A cloneable time source. All clones share one time.
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    System {
        base_ms: u64,
        base: Instant,
    },
    Manual {
        now_ms: AtomicU64,
        changed: watch::Sender<u64>,
    },
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock {
            inner: Arc::new(Inner::System {
                base_ms: unix_ms(),
                base: Instant::now(),
            }),
        }
    }

    /// A clock that only moves when [`advance`](Clock::advance) is called, starting
    /// at `start_ms` milliseconds since the Unix epoch.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let clock = mw_queue::Clock::manual(1_000);
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(clock.now_ms(), 3_000);
    /// ```
    pub fn manual(start_ms: u64) -> Clock {
        Clock {
            inner: Arc::new(Inner::Manual {
                now_ms: AtomicU64::new(start_ms),
                changed: watch::channel(start_ms).0,
            }),
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match &*self.inner {
            Inner::System { base_ms, base } => base_ms.saturating_add(millis(base.elapsed())),
            Inner::Manual { now_ms, .. } => now_ms.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward and wakes the timers that depend on it.
    ///
    /// # Panics
    ///
    /// On a system clock.
    pub fn advance(&self, by: Duration) {
        match &*self.inner {
            Inner::System { .. } => panic!("Clock::advance on the system clock"),
            Inner::Manual { now_ms, changed } => {
                let now = now_ms.fetch_add(by.as_millis() as u64, Ordering::SeqCst)
                    + by.as_millis() as u64;
                changed.send_replace(now);
            }
        }
    }

    /// For a manual clock, a receiver that changes on every advance.
    pub(crate) fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        match &*self.inner {
            Inner::System { .. } => None,
            Inner::Manual { changed, .. } => Some(changed.subscribe()),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}
