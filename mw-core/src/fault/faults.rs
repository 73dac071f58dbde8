//! A fault profile: how likely each fault is for one frame.

use std::time::Duration;

/// How a simulated network mistreats frames: one probability per fault, drawn
/// independently for every frame.
///
/// The default is a perfect network (every probability 0). Set it for every link with
/// [`FaultNet::set_faults`](super::FaultNet::set_faults), or for frames travelling
/// from one endpoint to another with
/// [`FaultNet::set_link_faults`](super::FaultNet::set_link_faults).
///
/// A probability of 0 (or NaN, or anything below 0) never fires; 1 or more always does.
/// A dropped frame gets no other fault; the others combine (a frame can be duplicated,
/// delayed and reordered at once).
///
/// ```
/// use std::time::Duration;
/// use mw_core::fault::Faults;
///
/// let lossy = Faults::default()
///     .with_drop(0.05)
///     .with_duplicate(0.02)
///     .with_delay(0.2, Duration::from_millis(1)..=Duration::from_millis(20));
/// assert_eq!(lossy.drop, 0.05);
/// assert_eq!(lossy.delay_max, Duration::from_millis(20));
/// assert!(Faults::default().is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a frame is lost. Default 0.
    pub drop: f64,
    /// Probability that a frame is delivered twice (the copy right after the original).
    /// Default 0.
    pub duplicate: f64,
    /// Probability that a frame swaps places with the next frame in the same direction:
    /// it is held back and delivered right after that frame, or alone once
    /// [`Faults::reorder_window`] passes without one. Default 0.
    pub reorder: f64,
    /// Probability that a frame is delayed by a time drawn from
    /// `delay_min..=delay_max`. Frames keep their order in each direction, so the
    /// frames behind a delayed one wait for it (head-of-line blocking, as over TCP).
    /// Default 0.
    pub delay: f64,
    /// Shortest delay. Default 0.
    pub delay_min: Duration,
    /// Longest delay (taken as `delay_min` if smaller). Default 0.
    pub delay_max: Duration,
    /// Longest time a frame picked for reordering waits for a frame to swap with.
    /// Default 10 ms: longer than a burst of pipelined frames takes to arrive, short
    /// enough that a lone call is not held long.
    pub reorder_window: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            drop: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: 0.0,
            delay_min: Duration::ZERO,
            delay_max: Duration::ZERO,
            reorder_window: Duration::from_millis(10),
        }
    }
}

impl Faults {
    /// With probability `p` of dropping each frame.
    pub fn with_drop(mut self, p: f64) -> Self {
        self.drop = p;
        self
    }

    /// With probability `p` of delivering each frame twice.
    pub fn with_duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    /// With probability `p` of swapping each frame with the next one.
    pub fn with_reorder(mut self, p: f64) -> Self {
        self.reorder = p;
        self
    }

    /// With probability `p` of delaying each frame by a time drawn from `range`.
    pub fn with_delay(mut self, p: f64, range: std::ops::RangeInclusive<Duration>) -> Self {
        self.delay = p;
        self.delay_min = *range.start();
        self.delay_max = *range.end();
        self
    }

    /// Whether no fault can fire.
    pub fn is_none(&self) -> bool {
        [self.drop, self.duplicate, self.reorder, self.delay]
            .iter()
            .all(|p| !fires(0.0, *p))
    }

    /// The delay picked by the uniform draw `pick` (any `u64`): `delay_min` plus `pick`
    /// modulo the span in nanoseconds (plus one).
    pub(crate) fn delay_for(&self, pick: u64) -> Duration {
        let span = self.delay_max.saturating_sub(self.delay_min);
        let span_ns = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        let offset = match span_ns.checked_add(1) {
            Some(m) => pick % m,
            None => pick,
        };
        self.delay_min + Duration::from_nanos(offset)
    }
}

/// Whether a fault of probability `p` fires for the uniform draw `u` in `[0, 1)`.
pub(crate) fn fires(u: f64, p: f64) -> bool {
    u < p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_at_and_beyond_the_bounds() {
        assert!(!fires(0.0, 0.0));
        assert!(!fires(0.0, f64::NAN));
        assert!(!fires(0.0, -1.0));
        assert!(fires(0.999_999, 1.0));
        assert!(fires(0.5, 2.0));
        assert!(Faults::default().is_none());
        assert!(!Faults::default().with_reorder(0.1).is_none());
    }

    #[test]
    fn delay_stays_in_its_range() {
        let f =
            Faults::default().with_delay(1.0, Duration::from_millis(5)..=Duration::from_millis(7));
        for pick in [0, 1, 2_000_000, u64::MAX, 123_456_789_012] {
            let d = f.delay_for(pick);
            assert!(
                d >= Duration::from_millis(5) && d <= Duration::from_millis(7),
                "{d:?}"
            );
        }
        let inverted = Faults {
            delay_min: Duration::from_millis(9),
            delay_max: Duration::from_millis(1),
            ..Faults::default()
        };
        assert_eq!(inverted.delay_for(u64::MAX), Duration::from_millis(9));
        let huge = Faults::default().with_delay(1.0, Duration::ZERO..=Duration::MAX);
        assert_eq!(huge.delay_for(7), Duration::from_nanos(7));
    }
}
