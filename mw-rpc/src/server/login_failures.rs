//! Recent failed logins per client address: what slows the next attempt from there down.
//!
//! The table is bounded two ways. An address's failures are forgotten
//! [`FAILURE_MEMORY`] after its last one (its slow-down is over: the next failure counts
//! as the first again), and forgotten addresses are dropped at most one
//! [`FAILURE_MEMORY`] later by a sweep that runs at most once per [`FAILURE_MEMORY`]. And
//! it never holds more than [`MAX_ADDRESSES`]: a burst of failures from more addresses
//! than that within one [`FAILURE_MEMORY`] evicts the address whose last failure is
//! oldest, which then gets the quick first answer again (the price of bounded memory).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures older than this are forgiven: the next one is answered quickly again.
pub(super) const FAILURE_MEMORY: Duration = Duration::from_secs(60);

/// Most client addresses remembered at once (about 1 MB at most).
pub(super) const MAX_ADDRESSES: usize = 10_000;

/// Failed logins per client address; see the module doc for its bounds.
#[derive(Debug)]
pub(super) struct LoginFailures {
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    /// Address → (failures in a row, when the last one was).
    hosts: HashMap<String, (u32, Instant)>,
    /// When forgotten addresses were last swept out.
    swept: Instant,
}

impl Default for LoginFailures {
    fn default() -> Self {
        LoginFailures {
            table: Mutex::new(Table {
                hosts: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }
}

impl LoginFailures {
    /// Counts a failed login from `host` at `now`; returns its recent failures, this one
    /// included.
    pub(super) fn count(&self, host: &str, now: Instant) -> u32 {
        // A panic elsewhere while holding the lock leaves a table of counters, still valid.
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.sweep(now);
        if !table.hosts.contains_key(host) && table.hosts.len() >= MAX_ADDRESSES {
            table.evict_oldest();
        }
        let e = table.hosts.entry(host.to_string()).or_insert((0, now));
        if now.saturating_duration_since(e.1) > FAILURE_MEMORY {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
        e.0
    }

    /// Addresses remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap().hosts.len()
    }
}

impl Table {
    /// Drops the addresses whose failures are forgotten, once per [`FAILURE_MEMORY`].
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.swept) <= FAILURE_MEMORY {
            return;
        }
        self.hosts
            .retain(|_, (_, last)| now.saturating_duration_since(*last) <= FAILURE_MEMORY);
        self.swept = now;
    }

    /// Drops the address whose last failure is oldest.
    fn evict_oldest(&mut self) {
        let oldest = self
            .hosts
            .iter()
            .min_by_key(|(_, (_, last))| *last)
            .map(|(host, _)| host.clone());
        if let Some(host) = oldest {
            self.hosts.remove(&host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_from_one_address_count_up_and_are_forgiven_after_the_memory() {
        let f = LoginFailures::default();
        let t = Instant::now();
        assert_eq!(f.count("a", t), 1);
        assert_eq!(f.count("a", t + Duration::from_secs(1)), 2);
        assert_eq!(f.count("b", t + Duration::from_secs(1)), 1);
        assert_eq!(f.count("a", t + Duration::from_secs(2)), 3);
        let later = t + Duration::from_secs(2) + FAILURE_MEMORY + Duration::from_millis(1);
        assert_eq!(f.count("a", later), 1, "forgiven after FAILURE_MEMORY");
    }

    #[test]
    fn forgotten_addresses_are_dropped_by_the_next_sweep() {
        let f = LoginFailures::default();
        let t = Instant::now();
        for i in 0..100 {
            f.count(&format!("10.0.0.{i}"), t);
        }
        assert_eq!(f.len(), 100);
        // Within the memory: nothing is dropped.
        f.count("fresh", t + FAILURE_MEMORY);
        assert_eq!(f.len(), 101);
        // Past it: the old addresses go, the recent one stays.
        let later = t + FAILURE_MEMORY * 2 + Duration::from_secs(1);
        assert_eq!(f.count("new", later), 1);
        assert_eq!(f.len(), 1, "only the address counted now remains");
    }

    #[test]
    fn the_table_never_holds_more_than_max_addresses_and_evicts_the_oldest() {
        let f = LoginFailures::default();
        let t = Instant::now();
        for i in 0..MAX_ADDRESSES {
            f.count(&format!("h{i}"), t + Duration::from_millis(i as u64 % 1000));
        }
        assert_eq!(f.len(), MAX_ADDRESSES);
        let now = t + Duration::from_secs(1);
        // h0 is among the oldest (offset 0): evicted for the newcomer.
        assert_eq!(f.count("newcomer", now), 1);
        assert_eq!(f.len(), MAX_ADDRESSES);
        // An address already present does not evict anyone.
        assert_eq!(f.count("newcomer", now), 2);
        assert_eq!(f.len(), MAX_ADDRESSES);
        for i in 0..50 {
            f.count(&format!("burst{i}"), now);
        }
        assert_eq!(f.len(), MAX_ADDRESSES);
        assert_eq!(f.count("newcomer", now), 3, "the newest are kept");
    }
}
