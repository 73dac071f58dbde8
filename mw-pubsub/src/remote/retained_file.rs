//! Retained messages kept across broker restarts: `pubsub-retained.bin` in the broker's
//! data directory.
//!
//! The file is the whole retained store, rewritten atomically (temp file, fsync, rename,
//! directory fsync) after each retained publish or clear made through the `mw.pubsub`
//! service, and read back into the bus when the broker starts:
//!
//! ```text
//! +----------------+------------------------------------------------------+
//! | "MWRETAIN1\n"  | postcard: Vec<(topic: String, payload: Vec<u8>)>     |
//! +----------------+------------------------------------------------------+
//! ```
//!
//! Rewriting everything costs O(retained bytes) per retained publish; retained topics
//! are few and bounded (`Config::max_retained_topics`) and retained publishes are rare
//! next to plain ones, which never touch the file. Simpler than a log with compaction.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::remote::wire::PubSubError;

/// The file, in the broker's data directory.
pub const RETAINED_FILE: &str = "pubsub-retained.bin";

const MAGIC: &[u8] = b"MWRETAIN1\n";

/// The retained store's file; one writer at a time.
#[derive(Debug)]
pub(crate) struct RetainedFile {
    path: PathBuf,
    /// Held across "change the bus, snapshot, write" so the file always ends up holding
    /// the latest state, whatever order concurrent retained publishes finish in.
    pub(crate) writer: tokio::sync::Mutex<()>,
}

impl RetainedFile {
    /// Opens `dir/pubsub-retained.bin` and stores what it holds into `bus`.
    pub(crate) fn open(bus: &Bus, dir: &Path) -> Result<RetainedFile> {
        let path = dir.join(RETAINED_FILE);
        let storage = Error::StateFile;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(storage(format!("cannot read {}: {e}", path.display()))),
        };
        if !bytes.is_empty() {
            let body = bytes.strip_prefix(MAGIC).ok_or_else(|| {
                storage(format!("{}: not a retained-messages file", path.display()))
            })?;
            let entries: Vec<(String, Vec<u8>)> = postcard::from_bytes(body)
                .map_err(|e| storage(format!("{}: corrupt: {e}", path.display())))?;
            for (topic, payload) in entries {
                bus.publish_retained(topic.as_str(), Bytes::from(payload))?;
            }
        }
        Ok(RetainedFile {
            path,
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Rewrites the file from `bus`'s retained store. Call with [`writer`](Self::writer) held.
    pub(crate) async fn save(&self, bus: &Bus) -> std::result::Result<(), PubSubError> {
        let entries: Vec<(String, Vec<u8>)> = bus
            .retained(">")
            .map_err(|e| PubSubError::from(&e))?
            .into_iter()
            .map(|e| (e.topic.to_string(), e.payload.to_vec()))
            .collect();
        let mut bytes = MAGIC.to_vec();
        bytes.extend(
            postcard::to_allocvec(&entries).map_err(|e| PubSubError::Storage(e.to_string()))?,
        );
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PubSubError::Storage(format!(
                "cannot write {}: {e}",
                self.path.display()
            ))),
            Err(e) => Err(PubSubError::Storage(format!(
                "writing {} failed: {e}",
                self.path.display()
            ))),
        }
    }
}
