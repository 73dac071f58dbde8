//! Wall-clock milliseconds, the one time unit that mw puts on the wire and on disk
//! (message send times, connection open times, tuple expiries).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch on the system clock; 0 if the clock reads before
/// 1970 (a stamp of 0 is "unknown", never an error).
///
/// ```
/// assert!(mw_core::time::unix_ms() > 1_600_000_000_000);
/// ```
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// `d` in whole milliseconds, saturating at `u64::MAX` ("never") instead of wrapping.
///
/// A duration that comes from outside (a TTL, a delay) goes through this and then
/// `saturating_add`, so an absurd duration means "as late as representable", never
/// "at once" or a panic.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(mw_core::time::millis(Duration::from_micros(2_500)), 2);
/// assert_eq!(mw_core::time::millis(Duration::MAX), u64::MAX);
/// ```
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
