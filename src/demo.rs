//! The lectures' example services, shared by the examples and tests.
//!
//! - [`Date`]: Sun RPC's `DATE_PROG` (program `date`, version 1): `bin_date` returns the
//!   seconds since the epoch, `str_date` turns such a number into text.
//! - [`Increment`]: the Erlang increment server: `inc(n)` answers `n + 1`.
//!
//! Both interfaces live here, once, the way an rpcgen `.x` file is shared by client and
//! server; each side uses the generated half it needs.

use std::time::{SystemTime, UNIX_EPOCH};

/// Sun RPC's date service.
#[crate::service(name = "date", version = 1)]
pub trait Date {
    /// Seconds since 1970-01-01 00:00:00 UTC, on the server's clock.
    async fn bin_date(&self) -> i64;
    /// `secs` (seconds since the epoch) as a human-readable UTC date.
    async fn str_date(&self, secs: i64) -> String;
}

/// The date server's implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct DateImpl;

impl Date for DateImpl {
    async fn bin_date(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    async fn str_date(&self, secs: i64) -> String {
        format_utc(secs)
    }
}

/// The Erlang increment server.
#[crate::service(name = "increment", version = 1)]
pub trait Increment {
    /// `n + 1` (wrapping at `u64::MAX`).
    async fn inc(&self, n: u64) -> u64;
}

/// The increment server's implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct IncrementImpl;

impl Increment for IncrementImpl {
    async fn inc(&self, n: u64) -> u64 {
        n.wrapping_add(1)
    }
}

/// Formats seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian).
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for the whole i64 day range we use.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::format_utc;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59 UTC");
    }
}
