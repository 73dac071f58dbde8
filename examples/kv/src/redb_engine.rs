//! [`RedbStorage`]: the on-disk engine, one [redb](https://docs.rs/redb) file per node.
//!
//! Tables: `data` (key → postcard [`Versioned`]), `events` (revision → postcard
//! [`Event`]), `expiry` (8-byte big-endian expiry time ‖ key → nothing, so the earliest
//! expiry sorts first) and `meta` (`format`, `revision`, `oldest_event`). A group commit
//! is one redb write transaction: `Durability::Immediate` (one fsync of the commit
//! slot) when the batch holds a `Sync` write and the node's policy is `always`,
//! `Durability::None` otherwise (durable with the next durable commit; every 256th
//! commit is durable anyway, so that redb frees pages).

use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::error::{KvError, Result};
use crate::storage::{prefix_end, Batch, Meta, Storage};
use crate::types::{Entry, Event, Versioned};

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The file inside a data directory that holds the store.
pub const DB_FILE: &str = "kv.redb";
/// The on-disk format version this build writes and reads.
pub const FORMAT: u64 = 1;

/// A redb database in a node's data directory.
#[derive(Debug)]
pub struct RedbStorage {
    db: Database,
    path: PathBuf,
    /// Commits made with `Durability::None` since the last durable one.
    unsynced: std::sync::atomic::AtomicU32,
}

/// Non-durable commits after which one is made durable anyway: redb frees pages only
/// in durable commits, so a node that never syncs (`--fsync never`) would grow its file.
const MAX_UNSYNCED_COMMITS: u32 = 256;

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

impl RedbStorage {
    /// Opens the store in `dir`, creating `dir` (owner-only permissions) and a new store
    /// if it does not exist or is empty.
    ///
    /// # Errors
    ///
    /// [`KvError::DataDir`] when `dir` holds other files but no store (a foreign
    /// directory), when the store file is damaged or not an mw-kv store, when it has
    /// another format version, or when another process has it open. A directory is
    /// never reset or overwritten.
    pub fn open(dir: &Path) -> Result<RedbStorage> {
        let refuse = |reason: String| KvError::DataDir {
            path: dir.display().to_string(),
            reason,
        };
        create_private_dir(dir).map_err(|e| refuse(format!("cannot create: {e}")))?;
        let path = dir.join(DB_FILE);
        let fresh = !path.exists();
        if fresh {
            let others: Vec<String> = fs::read_dir(dir)
                .map_err(|e| refuse(format!("cannot list: {e}")))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !others.is_empty() {
                let mut shown = others
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if others.len() > 3 {
                    shown.push_str(&format!(" and {} more", others.len() - 3));
                }
                return Err(refuse(format!(
                    "not an mw-kv data directory (no {DB_FILE}, but it holds {shown}); \
                     use an empty or new directory"
                )));
            }
        }
        let db = if fresh {
            Database::create(&path)
        } else {
            Database::open(&path)
        }
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => refuse(
                "the store is open already (by this or another process: is a node serving it?)"
                    .to_string(),
            ),
            other => refuse(format!(
                "cannot open {DB_FILE} (damaged, or not an mw-kv store): {other}"
            )),
        })?;
        let storage = RedbStorage {
            db,
            path,
            unsynced: std::sync::atomic::AtomicU32::new(0),
        };
        // A crash between creating the file and initialising it leaves a database with
        // no table at all: finish the initialisation (there is nothing to lose).
        if fresh || storage.is_blank().map_err(|e| refuse(e.to_string()))? {
            storage.init().map_err(|e| refuse(e.to_string()))?;
        }
        storage.check_format().map_err(|e| match e {
            KvError::DataDir { .. } => e,
            other => refuse(other.to_string()),
        })?;
        Ok(storage)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init(&self) -> Result<()> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| KvError::storage("begin", e))?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| KvError::storage("open meta", e))?;
            meta.insert("format", FORMAT)
                .map_err(|e| KvError::storage("init", e))?;
            meta.insert("revision", 0)
                .map_err(|e| KvError::storage("init", e))?;
            meta.insert("oldest_event", 1)
                .map_err(|e| KvError::storage("init", e))?;
            txn.open_table(DATA)
                .map_err(|e| KvError::storage("create data", e))?;
            txn.open_table(EVENTS)
                .map_err(|e| KvError::storage("create events", e))?;
            txn.open_table(EXPIRY)
                .map_err(|e| KvError::storage("create expiry", e))?;
        }
        txn.commit().map_err(|e| KvError::storage("commit", e))
    }

    fn is_blank(&self) -> Result<bool> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| KvError::storage("begin", e))?;
        let tables = txn
            .list_tables()
            .map_err(|e| KvError::storage("list tables", e))?;
        Ok(tables.count() == 0)
    }

    fn check_format(&self) -> Result<()> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| KvError::storage("begin", e))?;
        let meta = txn
            .open_table(META)
            .map_err(|_| self.foreign("it has no mw-kv metadata"))?;
        let format = meta
            .get("format")
            .map_err(|e| KvError::storage("read format", e))?
            .map(|g| g.value());
        txn.open_table(DATA)
            .map_err(|_| self.foreign("it has no data table"))?;
        match format {
            Some(FORMAT) => Ok(()),
            Some(other) => Err(self.foreign(&format!(
                "format version {other}, this build reads version {FORMAT}"
            ))),
            None => Err(self.foreign("it has no format version")),
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
            reason: format!("{DB_FILE} is not an mw-kv store: {why}"),
        }
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

impl Storage for RedbStorage {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn blocking(&self) -> bool {
        true
    }

    fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| KvError::storage("begin read", e))?;
        let t = txn
            .open_table(DATA)
            .map_err(|e| KvError::storage("open data", e))?;
        match t.get(key).map_err(|e| KvError::storage("get", e))? {
            Some(g) => Ok(Some(decode("value", g.value())?)),
            None => Ok(None),
        }
    }

    fn scan(&self, prefix: &[u8], start_after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| KvError::storage("begin read", e))?;
        let t = txn
            .open_table(DATA)
            .map_err(|e| KvError::storage("open data", e))?;
        let lower = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(s),
            _ => Bound::Included(prefix),
        };
        let end = prefix_end(prefix);
        let upper = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in t
            .range::<&[u8]>((lower, upper))
            .map_err(|e| KvError::storage("scan", e))?
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| KvError::storage("scan", e))?;
            out.push(Entry {
                key: Bytes::copy_from_slice(k.value()),
                value: decode("value", v.value())?,
            });
        }
        Ok(out)
    }

    fn events(&self, from: u64, limit: usize) -> Result<Vec<Event>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| KvError::storage("begin read", e))?;
        let t = txn
            .open_table(EVENTS)
            .map_err(|e| KvError::storage("open events", e))?;
        let mut out = Vec::new();
        for item in t.range(from..).map_err(|e| KvError::storage("events", e))? {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item.map_err(|e| KvError::storage("events", e))?;
            out.push(decode("event", v.value())?);
        }
        Ok(out)
    }

    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Bytes>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| KvError::storage("begin read", e))?;
        let t = txn
            .open_table(EXPIRY)
            .map_err(|e| KvError::storage("open expiry", e))?;
        let end = expiry_key(now_ms.saturating_add(1), b"");
        let mut out = Vec::new();
        for item in t
            .range::<&[u8]>(..end.as_slice())
            .map_err(|e| KvError::storage("expiry", e))?
        {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item.map_err(|e| KvError::storage("expiry", e))?;
            out.push(Bytes::copy_from_slice(&k.value()[8..]));
        }
        Ok(out)
    }

    fn meta(&self) -> Result<Meta> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| KvError::storage("begin read", e))?;
        let t = txn
            .open_table(META)
            .map_err(|e| KvError::storage("open meta", e))?;
        let get = |name: &str| -> Result<u64> {
            Ok(t.get(name)
                .map_err(|e| KvError::storage("read meta", e))?
                .map(|g| g.value())
                .unwrap_or(0))
        };
        Ok(Meta {
            revision: get("revision")?,
            oldest_event: get("oldest_event")?.max(1),
        })
    }

    fn commit(&self, batch: &Batch, sync: bool) -> Result<()> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| KvError::storage("begin write", e))?;
        // `Durability::None`, not `Eventual`: on Linux redb's Eventual fsyncs like
        // Immediate. A None commit becomes durable with the next durable one.
        use std::sync::atomic::Ordering::Relaxed;
        let durable = sync || self.unsynced.load(Relaxed) >= MAX_UNSYNCED_COMMITS;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        {
            let mut data = txn
                .open_table(DATA)
                .map_err(|e| KvError::storage("open data", e))?;
            let mut expiry = txn
                .open_table(EXPIRY)
                .map_err(|e| KvError::storage("open expiry", e))?;
            for w in &batch.writes {
                if let Some(at) = w.old_expiry {
                    expiry
                        .remove(expiry_key(at, &w.key).as_slice())
                        .map_err(|e| KvError::storage("write expiry", e))?;
                }
                match &w.new {
                    Some(v) => {
                        if let Some(at) = v.expires_at_ms {
                            expiry
                                .insert(expiry_key(at, &w.key).as_slice(), ())
                                .map_err(|e| KvError::storage("write expiry", e))?;
                        }
                        data.insert(&w.key[..], encode(v)?.as_slice())
                            .map_err(|e| KvError::storage("write", e))?;
                    }
                    None => {
                        data.remove(&w.key[..])
                            .map_err(|e| KvError::storage("delete", e))?;
                    }
                }
            }
            let mut events = txn
                .open_table(EVENTS)
                .map_err(|e| KvError::storage("open events", e))?;
            for e in &batch.events {
                events
                    .insert(e.revision, encode(e)?.as_slice())
                    .map_err(|e| KvError::storage("write event", e))?;
            }
            let mut meta = txn
                .open_table(META)
                .map_err(|e| KvError::storage("open meta", e))?;
            if batch.compact_below > 0 {
                let oldest = meta
                    .get("oldest_event")
                    .map_err(|e| KvError::storage("read meta", e))?
                    .map(|g| g.value())
                    .unwrap_or(1);
                for rev in oldest..batch.compact_below {
                    events
                        .remove(rev)
                        .map_err(|e| KvError::storage("compact", e))?;
                }
                if batch.compact_below > oldest {
                    meta.insert("oldest_event", batch.compact_below)
                        .map_err(|e| KvError::storage("write meta", e))?;
                }
            }
            meta.insert("revision", batch.revision)
                .map_err(|e| KvError::storage("write meta", e))?;
        }
        txn.commit().map_err(|e| KvError::storage("commit", e))?;
        if durable {
            self.unsynced.store(0, Relaxed);
        } else {
            self.unsynced.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| KvError::storage("begin write", e))?;
        txn.set_durability(Durability::Immediate);
        txn.commit().map_err(|e| KvError::storage("sync", e))?;
        self.unsynced.store(0, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
