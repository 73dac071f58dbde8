//! [`Config`] of a node: fsync policy, limits, event retention.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// When committed writes reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Group commit: a batch holding a `Sync` write is fsynced before any of its writes
    /// is acknowledged; `Buffered` writes ride along. The default.
    #[default]
    Always,
    /// Writes are acknowledged once written to the OS; everything is fsynced every
    /// interval. A crash of the machine loses at most one interval.
    Interval(Duration),
    /// Never fsync; the OS writes back when it likes.
    Never,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => write!(f, "always"),
            FsyncPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
            FsyncPolicy::Never => write!(f, "never"),
        }
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;

    /// `always`, `never` or `interval:MS` (MS ≥ 1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(FsyncPolicy::Interval(Duration::from_millis(ms))),
                _ => Err(format!(
                    "invalid fsync policy {s:?}: expected always, never or interval:MS (MS >= 1)"
                )),
            },
        }
    }
}

/// The on-disk engine of a new data directory (an existing one keeps its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// fjall, a log-structured engine: one journal append and one fsync per group
    /// commit. The default (README "Storage" says why).
    #[default]
    Fjall,
    /// redb, a copy-on-write B-tree in one file.
    Redb,
    /// [`MemoryStorage`](crate::MemoryStorage): nothing on disk, every key lost when
    /// the node stops (redis without persistence). For tests and for measuring what
    /// the engine costs; `fsync` policies have nothing to sync.
    Memory,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Fjall => "fjall",
            Engine::Redb => "redb",
            Engine::Memory => "memory",
        })
    }
}

impl FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fjall" => Ok(Engine::Fjall),
            "redb" => Ok(Engine::Redb),
            "memory" => Ok(Engine::Memory),
            _ => Err(format!(
                "invalid engine {s:?}: expected fjall, redb or memory"
            )),
        }
    }
}

/// Sizes the node refuses beyond, with a typed error naming the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key in bytes. Default 4096.
    pub max_key: usize,
    /// Longest value in bytes. Default 1 MiB (the RPC frame limit is 16 MiB).
    pub max_value: usize,
    /// Most entries one scan returns. Default 10,000.
    pub max_scan: u32,
    /// Most operations in one [`batch`](crate::Kv::batch). Default 1024.
    pub max_batch_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key: 4096,
            max_value: 1 << 20,
            max_scan: 10_000,
            max_batch_ops: 1024,
        }
    }
}

/// Settings of one node. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// When writes reach the disk. Default [`FsyncPolicy::Always`].
    pub fsync: FsyncPolicy,
    /// The engine of a new data directory ([`Kv::open`](crate::Kv::open) keeps the
    /// engine an existing directory has). Default [`Engine::Fjall`].
    pub engine: Engine,
    /// Key, value and scan limits.
    pub limits: Limits,
    /// Watch events kept for watchers that resume from a past revision. Default
    /// 100,000; older ones are compacted (a watch from before them gets
    /// [`KvError::Compacted`](crate::KvError::Compacted)).
    pub retain_events: u64,
    /// How often expired keys are looked for and reclaimed. Default 1 s. An expired key
    /// is never returned, reclaimed or not.
    pub reap_interval: Duration,
    /// Most operations in one group commit. Default 1024.
    pub max_batch: usize,
    /// Write operations waiting for the writer before callers wait too. Default 8192.
    pub queue_depth: usize,
    /// Keys whose version, create revision, change count and expiry the writer keeps
    /// in memory, so a put or delete need not read the key from the engine first.
    /// Default 1,000,000 (about 100 bytes each plus the key); when full it starts
    /// again empty. 0 disables it.
    pub key_cache: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fsync: FsyncPolicy::Always,
            engine: Engine::default(),
            limits: Limits::default(),
            retain_events: 100_000,
            reap_interval: Duration::from_secs(1),
            max_batch: 1024,
            queue_depth: 8192,
            key_cache: 1_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policies_parse_and_print_back() {
        for s in ["always", "never", "interval:250"] {
            assert_eq!(s.parse::<FsyncPolicy>().unwrap().to_string(), s);
        }
        for bad in ["", "sometimes", "interval:", "interval:0", "interval:-1"] {
            let err = bad.parse::<FsyncPolicy>().unwrap_err();
            assert!(err.contains("invalid fsync policy"), "{err}");
        }
    }
}
