//! [`FjallStorage`]: an on-disk engine on [fjall](https://docs.rs/fjall/2) (an LSM tree
//! with a write-ahead journal), behind the `fjall` cargo feature.
//!
//! Layout: the node's data directory holds one fjall keyspace, `kv.fjall/`, with four
//! partitions like [`RedbStorage`](crate::redb_engine::RedbStorage)'s tables: `data`
//! (key → postcard [`Versioned`]), `events` (8-byte big-endian revision → postcard
//! [`Event`]), `expiry` (8-byte big-endian expiry time ‖ key → nothing, so the earliest
//! expiry sorts first) and `meta` (`format`, `revision`, `oldest_event`, each an 8-byte
//! big-endian integer).
//!
//! A group commit is one fjall write batch: one record in the journal, atomic across
//! partitions (a torn record is dropped at recovery). With `sync` the journal is
//! `fdatasync`ed before [`commit`](Storage::commit) returns and before the batch is
//! visible to readers (one fsync per commit: the journal is preallocated, so its size
//! never changes between fsyncs); without it the batch is written to the OS
//! (`PersistMode::Buffer`: it survives a crash of the process, not of the machine).
//! Memtable flushes and compactions run on fjall's background threads.
//!
//! fjall 2 does not lock its directory, so [`FjallStorage::open`] holds an exclusive
//! `flock` on the data directory while the store is open: a second open (from this
//! process or another) is refused.

use std::collections::BTreeMap;
use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use crate::error::{KvError, Result};
use crate::storage::{prefix_end, Batch, Meta, Storage};
use crate::types::{Entry, Event, Versioned};

/// The directory inside a data directory that holds the fjall keyspace.
pub const STORE_DIR: &str = "kv.fjall";
/// The on-disk format version this build writes and reads.
pub const FORMAT: u64 = 1;
/// The longest key fjall stores is `u16::MAX` bytes; expiry keys add 8.
const MAX_KEY: usize = u16::MAX as usize - 8;
/// What fjall itself creates in a keyspace directory before its `version` marker.
const FJALL_PARTS: [&str; 2] = ["journals", "partitions"];
/// fjall's marker: present once a keyspace is fully created.
const FJALL_MARKER: &str = "version";
/// The partitions of an mw-kv store.
const PARTITIONS: [&str; 4] = ["data", "events", "expiry", "meta"];
/// The store file of the redb engine, to name it when refusing its directory.
const REDB_FILE: &str = crate::redb_engine::DB_FILE;

/// A fjall keyspace in a node's data directory.
pub struct FjallStorage {
    // Fields drop in order: the keyspace (stopping its threads, fsyncing the journal
    // when the last partition handle goes) before the directory lock is released.
    keyspace: Keyspace,
    data: PartitionHandle,
    events: PartitionHandle,
    expiry: PartitionHandle,
    meta: PartitionHandle,
    path: PathBuf,
    _lock: DirLock,
}

impl std::fmt::Debug for FjallStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStorage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn expiry_key(at: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| KvError::storage(&format!("decode {what}"), e))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|e| KvError::storage("encode", e))
}

fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| KvError::Storage(format!("decode {what}: {} bytes, not 8", bytes.len())))
}

/// The names in `dir` (lossy), for messages.
fn list(dir: &Path) -> std::io::Result<Vec<String>> {
    Ok(fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

fn shown(names: &[String]) -> String {
    let mut s = names.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 3 {
        s.push_str(&format!(" and {} more", names.len() - 3));
    }
    s
}

impl FjallStorage {
    /// Opens the store in `dir`, creating `dir` (owner-only permissions) and a new store
    /// if it does not exist or is empty.
    ///
    /// # Errors
    ///
    /// [`KvError::DataDir`] when `dir` holds other files but no store (a foreign
    /// directory, or a redb engine's one), when the store is damaged or not an mw-kv
    /// store, when it has another format version, or when it is open already (in this
    /// process or another). A directory is never reset or overwritten.
    pub fn open(dir: &Path) -> Result<FjallStorage> {
        let refuse = |reason: String| KvError::DataDir {
            path: dir.display().to_string(),
            reason,
        };
        create_private_dir(dir).map_err(|e| refuse(format!("cannot create: {e}")))?;
        let lock = DirLock::acquire(dir).map_err(|e| refuse(e.to_string()))?;
        let path = dir.join(STORE_DIR);
        let existed = path.exists();
        if !existed {
            let others = list(dir).map_err(|e| refuse(format!("cannot list: {e}")))?;
            if others.iter().any(|n| n == REDB_FILE) {
                return Err(refuse(format!(
                    "it holds a store of the redb engine ({REDB_FILE}), not of the fjall \
                     engine; open it with the redb engine"
                )));
            }
            if !others.is_empty() {
                return Err(refuse(format!(
                    "not an mw-kv data directory (no {STORE_DIR}, but it holds {}); \
                     use an empty or new directory",
                    shown(&others)
                )));
            }
        } else if !path.is_dir() {
            return Err(refuse(format!("{STORE_DIR} is not a directory")));
        } else if !path.join(FJALL_MARKER).exists() {
            // fjall writes its marker last: without it, either its creation was
            // interrupted (only its own folders exist; it creates them again) or this
            // is not a fjall keyspace.
            let inside = list(&path).map_err(|e| refuse(format!("cannot list: {e}")))?;
            let foreign: Vec<String> = inside
                .into_iter()
                .filter(|n| !FJALL_PARTS.contains(&n.as_str()))
                .collect();
            if !foreign.is_empty() {
                return Err(refuse(format!(
                    "{STORE_DIR} is not a fjall keyspace (no {FJALL_MARKER} marker; it \
                     holds {})",
                    shown(&foreign)
                )));
            }
        }
        let keyspace = Config::new(&path)
            .open()
            .map_err(|e| refuse(format!("cannot open {STORE_DIR}: {e}")))?;
        // Another application's keyspace: refuse before creating anything in it.
        let theirs: Vec<String> = keyspace
            .list_partitions()
            .iter()
            .map(|n| n.to_string())
            .filter(|n| !PARTITIONS.contains(&n.as_str()))
            .collect();
        if !theirs.is_empty() {
            return Err(refuse(format!(
                "{STORE_DIR} is not an mw-kv store: it has partition(s) {}",
                shown(&theirs)
            )));
        }
        let part = |name: &str| {
            keyspace
                .open_partition(name, PartitionCreateOptions::default())
                .map_err(|e| refuse(format!("cannot open partition {name} of {STORE_DIR}: {e}")))
        };
        let storage = FjallStorage {
            data: part("data")?,
            events: part("events")?,
            expiry: part("expiry")?,
            meta: part("meta")?,
            keyspace,
            path,
            _lock: lock,
        };
        storage.check_format().map_err(|e| match e {
            KvError::DataDir { .. } => e,
            other => refuse(other.to_string()),
        })?;
        Ok(storage)
    }

    /// The keyspace directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_format(&self) -> Result<()> {
        let format = self
            .meta
            .get("format")
            .map_err(|e| KvError::storage("read format", e))?;
        match format {
            Some(v) => match decode_u64("format", &v)? {
                FORMAT => Ok(()),
                other => Err(self.foreign(&format!(
                    "format version {other}, this build reads version {FORMAT}"
                ))),
            },
            // A store whose creation was interrupted before its metadata was committed
            // is empty: initializing it loses nothing. Anything else is not ours.
            None if self.is_empty()? => self.init(),
            None => Err(self.foreign("it has no format version")),
        }
    }

    fn is_empty(&self) -> Result<bool> {
        for p in [&self.data, &self.events, &self.expiry, &self.meta] {
            if !p.is_empty().map_err(|e| KvError::storage("read", e))? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn init(&self) -> Result<()> {
        let mut b = self.keyspace.batch().durability(Some(PersistMode::SyncAll));
        b.insert(&self.meta, "revision", 0u64.to_be_bytes());
        b.insert(&self.meta, "oldest_event", 1u64.to_be_bytes());
        b.insert(&self.meta, "format", FORMAT.to_be_bytes());
        b.commit().map_err(|e| KvError::storage("init", e))
    }

    fn meta_u64(&self, name: &str) -> Result<Option<u64>> {
        match self
            .meta
            .get(name)
            .map_err(|e| KvError::storage("read meta", e))?
        {
            Some(v) => Ok(Some(decode_u64(name, &v)?)),
            None => Ok(None),
        }
    }

    fn foreign(&self, why: &str) -> KvError {
        KvError::DataDir {
            path: self
                .path
                .parent()
                .unwrap_or(Path::new("."))
                .display()
                .to_string(),
            reason: format!("{STORE_DIR} is not an mw-kv store: {why}"),
        }
    }

    /// A snapshot of `p` holding every fully applied batch and nothing of one being
    /// applied (scans see a batch whole or not at all).
    fn snapshot(&self, p: &PartitionHandle) -> fjall::Snapshot {
        p.snapshot_at(self.keyspace.instant())
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// An exclusive lock ([`fs::File::try_lock`], `flock` on Unix) on the data directory, held
/// while the store is open.
struct DirLock {
    /// Held, never read: closing it releases the lock.
    _file: fs::File,
}

impl DirLock {
    #[cfg(unix)]
    fn acquire(dir: &Path) -> std::io::Result<DirLock> {
        let file = fs::File::open(dir)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "the store is open already (by this or another process)",
                ))
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(std::io::Error::new(e.kind(), format!("cannot lock: {e}")))
            }
        }
        Ok(DirLock { _file: file })
    }

    #[cfg(not(unix))]
    fn acquire(dir: &Path) -> std::io::Result<DirLock> {
        // No portable directory lock here: a second process is not refused.
        Ok(DirLock {
            _file: fs::File::open(dir)?,
        })
    }
}

impl Storage for FjallStorage {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn blocking(&self) -> bool {
        true
    }

    fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        match self.data.get(key).map_err(|e| KvError::storage("get", e))? {
            Some(v) => Ok(Some(decode("value", &v)?)),
            None => Ok(None),
        }
    }

    fn scan(&self, prefix: &[u8], start_after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        let lower = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(s),
            _ => Bound::Included(prefix),
        };
        let end = prefix_end(prefix);
        let upper = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        let snap = self.snapshot(&self.data);
        let mut out = Vec::new();
        for item in snap.range::<&[u8], _>((lower, upper)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| KvError::storage("scan", e))?;
            out.push(Entry {
                key: Bytes::copy_from_slice(&k),
                value: decode("value", &v)?,
            });
        }
        Ok(out)
    }

    fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>> {
        let snap = self.snapshot(&self.events);
        let start = from.to_be_bytes();
        let mut out = Vec::new();
        for item in snap.range::<&[u8], _>((Bound::Included(&start[..]), Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item.map_err(|e| KvError::storage("events", e))?;
            out.push(decode("event", &v)?);
        }
        Ok(out)
    }

    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Bytes>> {
        let snap = self.snapshot(&self.expiry);
        let end = now_ms.checked_add(1).map(|t| t.to_be_bytes());
        let upper = match &end {
            Some(e) => Bound::Excluded(&e[..]),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in snap.range::<&[u8], _>((Bound::Unbounded, upper)) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item.map_err(|e| KvError::storage("expiry", e))?;
            if k.len() < 8 {
                return Err(KvError::Storage(format!(
                    "decode expiry: a key of {} bytes",
                    k.len()
                )));
            }
            out.push(Bytes::copy_from_slice(&k[8..]));
        }
        Ok(out)
    }

    fn meta(&self) -> Result<Meta> {
        Ok(Meta {
            revision: self.meta_u64("revision")?.unwrap_or(0),
            oldest_event: self.meta_u64("oldest_event")?.unwrap_or(1).max(1),
        })
    }

    fn commit(&self, batch: &Batch, sync: bool) -> Result<()> {
        // The final change of each key per partition (a key may appear more than once in
        // a batch; the last change wins). All items of a fjall batch share one sequence
        // number, so one item per key keeps that rule out of fjall's hands.
        let mut data: BTreeMap<&[u8], Option<Vec<u8>>> = BTreeMap::new();
        let mut expiry: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        for w in &batch.writes {
            if w.key.len() > MAX_KEY {
                return Err(KvError::Storage(format!(
                    "write: a key of {} bytes is longer than the fjall engine stores \
                     ({MAX_KEY})",
                    w.key.len()
                )));
            }
            if let Some(at) = w.old_expiry {
                expiry.insert(expiry_key(at, &w.key), false);
            }
            match &w.new {
                Some(v) => {
                    if let Some(at) = v.expires_at_ms {
                        expiry.insert(expiry_key(at, &w.key), true);
                    }
                    data.insert(&w.key[..], Some(encode(v)?));
                }
                None => {
                    data.insert(&w.key[..], None);
                }
            }
        }
        let mode = if sync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        let mut b = self.keyspace.batch().durability(Some(mode));
        for (k, v) in data {
            match v {
                Some(v) => b.insert(&self.data, k, v),
                None => b.remove(&self.data, k),
            }
        }
        for (k, live) in expiry {
            if live {
                b.insert(&self.expiry, k, []);
            } else {
                b.remove(&self.expiry, k);
            }
        }
        let oldest = if batch.compact_below > 0 {
            self.meta_u64("oldest_event")?.unwrap_or(1)
        } else {
            0
        };
        let compacting = batch.compact_below > oldest;
        for e in &batch.events {
            if !(compacting && e.revision < batch.compact_below) {
                b.insert(&self.events, e.revision.to_be_bytes(), encode(e)?);
            }
        }
        if compacting {
            for rev in oldest..batch.compact_below {
                b.remove(&self.events, rev.to_be_bytes());
            }
            b.insert(
                &self.meta,
                "oldest_event",
                batch.compact_below.to_be_bytes(),
            );
        }
        b.insert(&self.meta, "revision", batch.revision.to_be_bytes());
        b.commit().map_err(|e| KvError::storage("commit", e))
    }

    fn sync(&self) -> Result<()> {
        self.keyspace
            .persist(PersistMode::SyncData)
            .map_err(|e| KvError::storage("sync", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keys_sort_by_time_then_key() {
        let a = expiry_key(1, b"zz");
        let b = expiry_key(2, b"aa");
        let c = expiry_key(2, b"ab");
        assert!(a < b && b < c);
        assert_eq!(&c[8..], b"ab");
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = FjallStorage::open(dir.path()).unwrap();
        let err = FjallStorage::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, KvError::DataDir { reason, .. } if reason.contains("open already")),
            "{err}"
        );
        drop(first);
        FjallStorage::open(dir.path()).unwrap();
    }

    #[test]
    fn an_interrupted_creation_is_completed_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        // fjall created its keyspace, the process died before mw-kv's metadata.
        drop(Config::new(dir.path().join(STORE_DIR)).open().unwrap());
        let s = FjallStorage::open(dir.path()).unwrap();
        assert_eq!(
            s.meta().unwrap(),
            Meta {
                revision: 0,
                oldest_event: 1
            }
        );
    }

    #[test]
    fn a_fjall_keyspace_of_someone_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ks = Config::new(dir.path().join(STORE_DIR)).open().unwrap();
            let p = ks
                .open_partition("theirs", PartitionCreateOptions::default())
                .unwrap();
            p.insert("k", "v").unwrap();
        }
        let err = FjallStorage::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, KvError::DataDir { reason, .. } if reason.contains("not an mw-kv store")),
            "{err}"
        );
    }
}
