//! [`Backoff`]: capped, jittered exponential delays between retries.

use std::time::Duration;

/// Exponential backoff with a cap and "equal jitter": the n-th delay is drawn
/// uniformly from `[d/2, d]` where `d = min(initial * 2^n, max)`. The jitter
/// keeps many forwarders that lost the same hop from retrying in lockstep; the
/// lower bound of `d/2` keeps the growth. The forwarder's retry schedule,
/// tuned through [`ForwarderConfig`](super::ForwarderConfig).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `initial` (at least 1 ms) and never exceeds `max` (at least `initial`).
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    /// The delay before the next retry; doubles the next one, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = d / 2;
        let span = (d - half).as_micros() as u64;
        let jitter = if span == 0 {
            0
        } else {
            rand::random::<u64>() % (span + 1)
        };
        half + Duration::from_micros(jitter)
    }

    /// Back to the initial delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stay_within_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(80));
        let mut maxes = Vec::new();
        for _ in 0..6 {
            let d = b.next_delay();
            maxes.push(d);
        }
        assert!(maxes[0] >= Duration::from_millis(5) && maxes[0] <= Duration::from_millis(10));
        assert!(maxes[3] >= Duration::from_millis(40) && maxes[3] <= Duration::from_millis(80));
        for d in &maxes[3..] {
            assert!(*d >= Duration::from_millis(40) && *d <= Duration::from_millis(80));
        }
    }

    #[test]
    fn reset_returns_to_the_initial_delay() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn zero_initial_is_clamped() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(b.next_delay() <= Duration::from_millis(1));
    }
}
