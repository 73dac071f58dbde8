//! Storage: the append-only segment log on disk and nothing above it.
//!
//! Nothing here knows about queues' state; the engine drives it. Dependencies
//! point down this list: a module uses only those after it.
//!
//! | module | owns |
//! |---|---|
//! | `log` | the writer thread, group commit, [`FsyncPolicy`](crate::FsyncPolicy), segment roll and deletion, reads, [`LogStats`](crate::LogStats) |
//! | `recovery` | scanning segments on open, torn-tail truncation, [`RecoveryReport`](crate::RecoveryReport) |
//! | `reader` | positional reads of a segment by its first LSN (`SegmentReader`) |
//! | `segment` | segment naming, the segment header, record framing (length + CRC32C) |
//! | `record` | the record kinds and their payload encoding |
//!
//! The bytes are specified in `FORMAT.md` at the repository root.

pub(crate) mod log;
pub(crate) mod reader;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod segment;
