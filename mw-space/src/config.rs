//! Tunables and limits: [`Config`].
//!
//! Every limit is checked where the thing enters the space and refused with its own
//! typed error; nothing grows without bound.
//!
//! | limit | default | refused with |
//! |---|---|---|
//! | [`max_arity`](Config::max_arity): fields per tuple or pattern | 16 | [`SpaceError::TooManyFields`] |
//! | [`max_tuple_bytes`](Config::max_tuple_bytes): one tuple's (or pattern's) size | 64 KiB | [`SpaceError::TooLarge`] |
//! | [`max_tuples`](Config::max_tuples): tuples held (visible or held for a taker) | 1,000,000 | [`SpaceError::SpaceFull`] |
//! | [`max_bytes`](Config::max_bytes): their sizes added up | 256 MiB | [`SpaceError::SpaceBytesFull`] |
//! | [`max_waiters`](Config::max_waiters): callers blocked in `rd` / `in` | 10,000 | [`SpaceError::TooManyWaiters`] |
//! | [`max_pending_writes`](Config::max_pending_writes): log records queued for the writer | 65,536 | (callers wait) |

use std::time::Duration;

use mw_queue::FsyncPolicy;

use crate::error::{SpaceError, What};
use crate::pattern::{Field, Pattern};
use crate::value::{Tuple, Value};

/// Settings of a [`Space`](crate::Space). Start from `Config::default()`.
#[derive(Debug, Clone)]
// Not `#[non_exhaustive]`: struct-update syntax is the intended way to build it.
pub struct Config {
    /// When the log is fsynced (persistent spaces only): [`FsyncPolicy::Always`] (the
    /// default) makes `out` and a confirmed `in` return only once their record is on disk
    /// (group commit: one fsync per batch of concurrent writes). The broker passes its
    /// `--fsync` policy here.
    pub fsync: FsyncPolicy,
    /// Most fields in a tuple or pattern. Default 16: Linda programs use a handful; the
    /// index keeps one entry per field.
    pub max_arity: usize,
    /// Largest tuple (and pattern), as [`Tuple::size`] counts. Default 64 KiB: a tuple
    /// space coordinates; bulk data belongs in a queue or a store.
    pub max_tuple_bytes: usize,
    /// Most tuples held at once. Default 1,000,000.
    pub max_tuples: usize,
    /// Most bytes of tuples held at once. Default 256 MiB. Memory per tuple is about its
    /// size plus ~100 bytes of index per field.
    pub max_bytes: usize,
    /// Most callers blocked in `rd` / `in` at once. Default 10,000.
    pub max_waiters: usize,
    /// How long a tuple taken by a remote `in` stays reserved for the taker while its
    /// confirmation is awaited; then it goes back into the space. Default 30 s: far longer
    /// than a round trip, short enough that a stuck taker does not hide a tuple for long.
    pub hold_timeout: Duration,
    /// Log records (writes and confirmed takes) queued for the log writer before further
    /// writers wait. Default 65,536.
    pub max_pending_writes: usize,
    /// Compact the log once it holds more than this many records beyond twice the live
    /// tuples. Default 100,000: compaction copies the live tuples into a new file, so it
    /// is done only when that is cheap relative to what it frees.
    pub compact_slack: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fsync: FsyncPolicy::Always,
            max_arity: 16,
            max_tuple_bytes: 64 * 1024,
            max_tuples: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            max_waiters: 10_000,
            hold_timeout: Duration::from_secs(30),
            max_pending_writes: 65_536,
            compact_slack: 100_000,
        }
    }
}

impl Config {
    /// Checks a tuple against the limits; returns its size.
    ///
    /// # Errors
    /// [`SpaceError::TooManyFields`], [`SpaceError::NonFiniteFloat`], [`SpaceError::TooLarge`].
    pub fn check_tuple(&self, tuple: &Tuple) -> Result<usize, SpaceError> {
        self.check_fields(What::Tuple, tuple.len(), tuple.fields().iter().map(Some))?;
        self.check_size(What::Tuple, tuple.size())
    }

    /// Checks a pattern against the limits.
    ///
    /// # Errors
    /// As [`Config::check_tuple`].
    pub fn check_pattern(&self, pattern: &Pattern) -> Result<(), SpaceError> {
        let values = pattern.fields().iter().map(|f| match f {
            Field::Value(v) => Some(v),
            _ => None,
        });
        self.check_fields(What::Pattern, pattern.len(), values)?;
        self.check_size(What::Pattern, pattern.size()).map(|_| ())
    }

    fn check_fields<'a>(
        &self,
        what: What,
        arity: usize,
        values: impl Iterator<Item = Option<&'a Value>>,
    ) -> Result<(), SpaceError> {
        if arity > self.max_arity {
            return Err(SpaceError::TooManyFields {
                what,
                arity,
                limit: self.max_arity,
            });
        }
        for (index, v) in values.enumerate() {
            if let Some(Value::Float(x)) = v {
                if !x.is_finite() {
                    return Err(SpaceError::NonFiniteFloat { what, index });
                }
            }
        }
        Ok(())
    }

    fn check_size(&self, what: What, size: usize) -> Result<usize, SpaceError> {
        if size > self.max_tuple_bytes {
            return Err(SpaceError::TooLarge {
                what,
                size,
                limit: self.max_tuple_bytes,
            });
        }
        Ok(size)
    }
}
