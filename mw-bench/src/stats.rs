//! Latency histograms and the summary every series reports.

use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency histogram in nanoseconds (1 ns .. 60 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Records `d` in nanoseconds, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_nanos() as u64).max(1));
}

/// What one series measured: latency percentiles (if latencies were recorded) and throughput.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Operations completed in the measured window.
    pub ops: u64,
    /// Operations per second over the measured window.
    pub ops_per_s: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p999_us: f64,
}

impl Summary {
    /// Summarises `hist` (nanoseconds) and `ops` operations completed in `elapsed`.
    pub fn new(hist: &Histogram<u64>, ops: u64, elapsed: Duration) -> Summary {
        let us = |q: f64| {
            if hist.is_empty() {
                f64::NAN
            } else {
                hist.value_at_quantile(q) as f64 / 1000.0
            }
        };
        Summary {
            ops,
            ops_per_s: ops as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
        }
    }
}

/// Latencies and a count accumulated over one or more measured windows.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latencies in nanoseconds.
    pub hist: Histogram<u64>,
    /// Operations completed.
    pub ops: u64,
    /// Total length of the measured windows.
    pub elapsed: Duration,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            hist: histogram(),
            ops: 0,
            elapsed: Duration::ZERO,
        }
    }
}

impl Tally {
    /// Adds another window's figures.
    pub fn add(&mut self, other: &Tally) {
        self.hist
            .add(&other.hist)
            .expect("histograms with the same bounds add");
        self.ops += other.ops;
        self.elapsed += other.elapsed;
    }

    /// Percentiles and throughput over all windows.
    pub fn summary(&self) -> Summary {
        Summary::new(&self.hist, self.ops, self.elapsed)
    }
}

/// `a / b`, or NaN when either is missing or `b` is zero.
pub fn ratio(a: f64, b: f64) -> f64 {
    if a.is_finite() && b.is_finite() && b != 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// A ratio as `1.08x` (`n/a` if unknown).
pub fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        if r >= 10.0 {
            format!("{r:.1}x")
        } else {
            format!("{r:.2}x")
        }
    } else {
        "n/a".into()
    }
}

/// A rate with thousands separators, e.g. `1,234,567`.
pub fn fmt_rate(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{:.0}", v);
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in µs with one decimal (`-` if not measured).
pub fn fmt_us(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(fmt_rate(1234567.4), "1,234,567");
        assert_eq!(fmt_rate(999.0), "999");
        assert_eq!(fmt_ratio(1.084), "1.08x");
        assert_eq!(fmt_ratio(ratio(1.0, 0.0)), "n/a");
        let mut h = histogram();
        for i in 1..=1000u64 {
            record(&mut h, Duration::from_micros(i));
        }
        let s = Summary::new(&h, 1000, Duration::from_secs(2));
        assert_eq!(s.ops_per_s, 500.0);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{}", s.p50_us);
    }
}
