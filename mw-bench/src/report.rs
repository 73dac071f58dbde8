//! Output: a readable table, or one JSON object per series per line.

use serde_json::{json, Map, Value};

use crate::stats::{fmt_rate, fmt_us, Summary};

/// A target from the issue, checked against a measured ratio.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is required, e.g. `sequential p50 <= 1.2x raw`.
    pub rule: String,
    /// The measured value the rule is about.
    pub value: f64,
    /// Whether the rule holds.
    pub pass: bool,
}

impl Target {
    /// A target satisfied when `value <= limit`.
    pub fn at_most(rule: impl Into<String>, value: f64, limit: f64) -> Target {
        Target {
            rule: rule.into(),
            value,
            pass: value.is_finite() && value <= limit,
        }
    }

    /// A target satisfied when `value >= limit`.
    pub fn at_least(rule: impl Into<String>, value: f64, limit: f64) -> Target {
        Target {
            rule: rule.into(),
            value,
            pass: value.is_finite() && value >= limit,
        }
    }

    /// `PASS` or `MISS`.
    pub fn verdict(&self) -> &'static str {
        if self.pass {
            "PASS"
        } else {
            "MISS"
        }
    }
}

/// One measured series: a system under one workload.
#[derive(Debug, Clone)]
pub struct Row {
    /// The system measured (`raw`, `mw`, `tarpc`, …).
    pub series: String,
    /// The workload (`seq`, `1x256`, …).
    pub workload: String,
    /// What was measured.
    pub summary: Summary,
    /// Named ratios to other series (e.g. `p50_vs_raw`).
    pub ratios: Vec<(String, f64)>,
    /// Targets this series is judged by.
    pub targets: Vec<Target>,
    /// Share of the machine's CPU that other processes used during the run (a noisy run
    /// shows here), if known.
    pub others_cpu_percent: Option<f64>,
}

impl Row {
    /// The row as one JSON object (missing figures are `null`).
    pub fn to_json(&self) -> Value {
        let ratios: Map<String, Value> = self
            .ratios
            .iter()
            .map(|(k, v)| (k.clone(), json!(round(*v, 4))))
            .collect();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| json!({"rule": t.rule, "value": round(t.value, 4), "pass": t.pass}))
            .collect();
        json!({
            "series": self.series,
            "workload": self.workload,
            "p50_us": round(self.summary.p50_us, 2),
            "p99_us": round(self.summary.p99_us, 2),
            "p999_us": round(self.summary.p999_us, 2),
            "ops_per_s": round(self.summary.ops_per_s, 0),
            "ops": self.summary.ops,
            "ratios": ratios,
            "targets": targets,
            "others_cpu_percent": self.others_cpu_percent.map(|p| round(p, 1)),
        })
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

/// Prints each row as one JSON line.
pub fn print_json(rows: &[Row]) {
    for r in rows {
        println!("{}", r.to_json());
    }
}

/// Prints the rows as an aligned table (latency in µs, throughput in ops/s).
pub fn print_table(rows: &[Row]) {
    println!(
        "{:<8} {:<24} {:>9} {:>9} {:>9} {:>12}",
        "series", "workload", "p50 µs", "p99 µs", "p99.9 µs", "calls/s"
    );
    for r in rows {
        let s = &r.summary;
        println!(
            "{:<8} {:<24} {:>9} {:>9} {:>9} {:>12}",
            r.series,
            r.workload,
            fmt_us(s.p50_us),
            fmt_us(s.p99_us),
            fmt_us(s.p999_us),
            fmt_rate(s.ops_per_s)
        );
    }
}
