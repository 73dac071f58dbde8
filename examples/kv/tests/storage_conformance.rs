//! One list of checks of the [`Storage`] contract, run against every engine:
//! [`MemoryStorage`], [`RedbStorage`] and (with the `fjall` feature) `FjallStorage`.
//!
//! Every engine: get after commit, delete, the last change of a key in a batch wins,
//! scan order / prefix / `start_after` / limit, events from a revision, compaction
//! (`compact_below`) and meta, the expiry index (expired keys in time order, removal when
//! a value is replaced or deleted, also inside one batch). Disk engines besides: reopen
//! after close keeps everything (buffered commits too), a foreign, damaged or other
//! engine's directory is refused and left as it was, a store open already is refused,
//! a new data directory is owner-only.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use mw_kv::storage::{Batch, Meta, Write};
use mw_kv::types::{Event, EventKind, Version, Versioned};
use mw_kv::{KvError, MemoryStorage, RedbStorage, Result, Storage};

/// How a test reaches one engine.
#[derive(Clone, Copy)]
struct Engine {
    /// Opens (or creates) the store in a data directory.
    open: fn(&Path) -> Result<Arc<dyn Storage>>,
    /// Where the store lives inside the data directory (disk engines).
    store: &'static str,
    /// Makes the store in a data directory unreadable as a store.
    damage: fn(&Path),
}

const MEMORY: Engine = Engine {
    open: |_| Ok(Arc::new(MemoryStorage::new())),
    store: "",
    damage: |_| {},
};

const REDB: Engine = Engine {
    open: |dir| Ok(Arc::new(RedbStorage::open(dir)?)),
    store: mw_kv::redb_engine::DB_FILE,
    damage: |dir| std::fs::write(dir.join(mw_kv::redb_engine::DB_FILE), [0x5a; 8192]).unwrap(),
};

const FJALL: Engine = Engine {
    open: |dir| Ok(Arc::new(mw_kv::fjall_engine::FjallStorage::open(dir)?)),
    store: mw_kv::fjall_engine::STORE_DIR,
    damage: |dir| {
        let store = dir.join(mw_kv::fjall_engine::STORE_DIR);
        std::fs::write(store.join("version"), b"not a fjall marker").unwrap();
    },
};

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

/// Builds batches as the node's writer does: revisions by one per change, versions and
/// old expiry times from what this builder wrote before.
#[derive(Default)]
struct Builder {
    revision: u64,
    current: std::collections::HashMap<Bytes, Versioned>,
    batch: Batch,
}

impl Builder {
    fn after(revision: u64) -> Builder {
        Builder {
            revision,
            ..Builder::default()
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8], expires_at_ms: Option<u64>) -> &mut Self {
        self.revision += 1;
        let key = b(key);
        let old = self.current.get(&key);
        let new = Versioned {
            value: b(value),
            version: Version(self.revision),
            create_revision: old.map_or(self.revision, |o| o.create_revision),
            changes: old.map_or(1, |o| o.changes + 1),
            expires_at_ms,
        };
        self.batch.writes.push(Write {
            key: key.clone(),
            old_expiry: old.and_then(|o| o.expires_at_ms),
            new: Some(new.clone()),
        });
        self.batch.events.push(Event {
            revision: self.revision,
            kind: EventKind::Put,
            key: key.clone(),
            value: Some(b(value)),
            version: new.version,
        });
        self.current.insert(key, new);
        self
    }

    fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.revision += 1;
        let key = b(key);
        let old = self
            .current
            .remove(&key)
            .expect("deleting a key this builder wrote");
        self.batch.writes.push(Write {
            key: key.clone(),
            old_expiry: old.expires_at_ms,
            new: None,
        });
        self.batch.events.push(Event {
            revision: self.revision,
            kind: EventKind::Delete,
            key,
            value: None,
            version: old.version,
        });
        self
    }

    fn compact_below(&mut self, rev: u64) -> &mut Self {
        self.batch.compact_below = rev;
        self
    }

    /// Commits the batch built since the last commit.
    fn commit(&mut self, s: &dyn Storage, sync: bool) {
        let mut batch = std::mem::take(&mut self.batch);
        batch.revision = self.revision;
        s.commit(&batch, sync).expect("commit");
    }
}

fn keys(s: &dyn Storage, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<Vec<u8>> {
    s.scan(prefix, after, limit)
        .unwrap()
        .into_iter()
        .map(|e| e.key.to_vec())
        .collect()
}

fn revisions(s: &dyn Storage, from: u64, limit: usize) -> Vec<u64> {
    s.events(from, limit)
        .unwrap()
        .into_iter()
        .map(|e| e.revision)
        .collect()
}

fn expired(s: &dyn Storage, now: u64, limit: usize) -> Vec<Vec<u8>> {
    s.expired(now, limit)
        .unwrap()
        .into_iter()
        .map(|k| k.to_vec())
        .collect()
}

fn v(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|k| k.to_vec()).collect()
}

fn fresh(engine: Engine) -> (tempfile::TempDir, Arc<dyn Storage>) {
    let dir = tempfile::tempdir().unwrap();
    let s = (engine.open)(&dir.path().join("data")).expect("open a new store");
    (dir, s)
}

fn assert_refused(r: Result<Arc<dyn Storage>>, what: &str) -> String {
    match r {
        Err(KvError::DataDir { reason, .. }) => reason,
        Err(other) => panic!("{what}: expected a DataDir refusal, got {other}"),
        Ok(s) => panic!("{what}: opened as a {} store", s.name()),
    }
}

// ---- checks every engine passes ----

fn new_store_meta(e: Engine) {
    let (_d, s) = fresh(e);
    assert_eq!(
        s.meta().unwrap(),
        Meta {
            revision: 0,
            oldest_event: 1
        }
    );
    assert_eq!(s.get(b"k").unwrap(), None);
    assert!(s.scan(b"", None, 10).unwrap().is_empty());
    assert!(s.events(0, 10).unwrap().is_empty());
    assert!(s.expired(u64::MAX - 1, 10).unwrap().is_empty());
}

fn get_after_commit(e: Engine) {
    let (_d, s) = fresh(e);
    let mut w = Builder::default();
    w.put(b"k1", b"one", None).put(b"k2", b"two", Some(123_456));
    w.commit(&*s, true);
    let k1 = s.get(b"k1").unwrap().unwrap();
    assert_eq!(
        k1,
        Versioned {
            value: b(b"one"),
            version: Version(1),
            create_revision: 1,
            changes: 1,
            expires_at_ms: None,
        }
    );
    assert_eq!(s.get(b"k2").unwrap().unwrap().expires_at_ms, Some(123_456));
    assert_eq!(s.meta().unwrap().revision, 2);
    // An update keeps the creation revision and counts the change.
    w.put(b"k1", b"uno", None);
    w.commit(&*s, false);
    let k1 = s.get(b"k1").unwrap().unwrap();
    assert_eq!(
        (&k1.value[..], k1.version, k1.create_revision, k1.changes),
        (&b"uno"[..], Version(3), 1, 2)
    );
    assert_eq!(s.meta().unwrap().revision, 3);
    // Binary keys and values, empty value.
    w.put(b"\x00\xff\x00", b"", None);
    w.commit(&*s, true);
    assert_eq!(&s.get(b"\x00\xff\x00").unwrap().unwrap().value[..], b"");
    assert_eq!(s.get(b"\x00\xff").unwrap(), None);
}

fn delete(e: Engine) {
    let (_d, s) = fresh(e);
    let mut w = Builder::default();
    w.put(b"a", b"1", None).put(b"b", b"2", None);
    w.commit(&*s, true);
    w.delete(b"a");
    w.commit(&*s, true);
    assert_eq!(s.get(b"a").unwrap(), None);
    assert!(s.get(b"b").unwrap().is_some());
    assert_eq!(keys(&*s, b"", None, 10), v(&[b"b"]));
    // Re-created: a new incarnation.
    w.put(b"a", b"again", None);
    w.commit(&*s, true);
    let a = s.get(b"a").unwrap().unwrap();
    assert_eq!((a.create_revision, a.changes), (4, 1));
}

fn last_change_in_a_batch_wins(e: Engine) {
    let (_d, s) = fresh(e);
    let mut w = Builder::default();
    w.put(b"k", b"1", None)
        .put(b"k", b"2", None)
        .put(b"gone", b"x", None)
        .delete(b"gone")
        .put(b"back", b"x", None)
        .delete(b"back")
        .put(b"back", b"y", None);
    w.commit(&*s, true);
    let k = s.get(b"k").unwrap().unwrap();
    assert_eq!(
        (&k.value[..], k.version, k.changes),
        (&b"2"[..], Version(2), 2)
    );
    assert_eq!(s.get(b"gone").unwrap(), None);
    assert_eq!(&s.get(b"back").unwrap().unwrap().value[..], b"y");
    assert_eq!(keys(&*s, b"", None, 10), v(&[b"back", b"k"]));
    assert_eq!(revisions(&*s, 0, 100), (1..=7).collect::<Vec<_>>());
}

fn scan_order_prefix_start_after_limit(e: Engine) {
    let (_d, s) = fresh(e);
    let all: [&[u8]; 10] = [
        b"a",
        b"ab",
        b"abc",
        b"abd",
        b"ac",
        b"b",
        b"b\x00",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
    ];
    let mut w = Builder::default();
    // Written out of order, in two batches.
    for k in all.iter().rev().step_by(2) {
        w.put(k, k, None);
    }
    w.commit(&*s, true);
    for k in all.iter().rev().skip(1).step_by(2) {
        w.put(k, k, None);
    }
    w.put(b"abx", b"deleted", None);
    w.commit(&*s, true);
    w.delete(b"abx");
    w.commit(&*s, true);

    assert_eq!(keys(&*s, b"", None, 100), v(&all));
    assert_eq!(keys(&*s, b"ab", None, 100), v(&[b"ab", b"abc", b"abd"]));
    assert_eq!(keys(&*s, b"ab", None, 2), v(&[b"ab", b"abc"]));
    assert_eq!(keys(&*s, b"ab", Some(b"abc"), 100), v(&[b"abd"]));
    assert_eq!(keys(&*s, b"ab", Some(b"ab"), 1), v(&[b"abc"]));
    // A start before the prefix starts at the prefix; one past it ends the scan.
    assert_eq!(
        keys(&*s, b"ab", Some(b"a"), 100),
        v(&[b"ab", b"abc", b"abd"])
    );
    assert_eq!(keys(&*s, b"ab", Some(b"zz"), 100), Vec::<Vec<u8>>::new());
    // A start between keys.
    assert_eq!(keys(&*s, b"", Some(b"abcc"), 3), v(&[b"abd", b"ac", b"b"]));
    // Prefixes ending in 0xff have no finite end.
    assert_eq!(
        keys(&*s, b"\xff", None, 100),
        v(&[b"\xff", b"\xff\x00", b"\xff\xff"])
    );
    assert_eq!(keys(&*s, b"\xff\xff", None, 100), v(&[b"\xff\xff"]));
    assert_eq!(keys(&*s, b"b", None, 100), v(&[b"b", b"b\x00"]));
    assert_eq!(keys(&*s, b"c", None, 100), Vec::<Vec<u8>>::new());
    assert!(s.scan(b"", None, 0).unwrap().is_empty());
    // Entries carry their values.
    let e0 = &s.scan(b"abd", None, 1).unwrap()[0];
    assert_eq!(
        (&e0.key[..], &e0.value.value[..]),
        (&b"abd"[..], &b"abd"[..])
    );
    // Paging by the last key seen visits every key once.
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = keys(&*s, b"", after.as_deref(), 3);
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        seen.extend(page);
    }
    assert_eq!(seen, v(&all));
}

fn events_from_a_revision(e: Engine) {
    let (_d, s) = fresh(e);
    let mut w = Builder::default();
    w.put(b"a", b"1", None).put(b"b", b"2", None);
    w.commit(&*s, true);
    w.put(b"a", b"3", None).delete(b"b");
    w.commit(&*s, false);
    w.put(b"c", b"5", Some(77));
    w.commit(&*s, true);

    let all = s.events(0, 100).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(
        all[3],
        Event {
            revision: 4,
            kind: EventKind::Delete,
            key: b(b"b"),
            value: None,
            version: Version(2),
        }
    );
    assert_eq!(
        all[2],
        Event {
            revision: 3,
            kind: EventKind::Put,
            key: b(b"a"),
            value: Some(b(b"3")),
            version: Version(3),
        }
    );
    assert_eq!(revisions(&*s, 1, 100), vec![1, 2, 3, 4, 5]);
    assert_eq!(revisions(&*s, 3, 100), vec![3, 4, 5]);
    assert_eq!(revisions(&*s, 2, 2), vec![2, 3]);
    assert_eq!(revisions(&*s, 5, 100), vec![5]);
    assert!(revisions(&*s, 6, 100).is_empty());
    assert!(revisions(&*s, u64::MAX, 100).is_empty());
    assert!(revisions(&*s, 1, 0).is_empty());
    // Revisions past 255 and 65535 still come in numeric order (big-endian keys).
    let mut w = Builder::after(250);
    for i in 0..10u8 {
        w.put(&[i], b"x", None);
    }
    w.commit(&*s, true);
    let mut w = Builder::after(65_530);
    for i in 0..10u8 {
        w.put(&[i], b"y", None);
    }
    w.commit(&*s, true);
    let revs = revisions(&*s, 250, 100);
    assert_eq!(revs.len(), 20);
    assert!(revs.windows(2).all(|p| p[0] < p[1]), "{revs:?}");
}

fn compaction_and_meta(e: Engine) {
    let (_d, s) = fresh(e);
    let mut w = Builder::default();
    for i in 0..10u8 {
        w.put(&[b'k', i], b"v", None);
    }
    w.commit(&*s, true);
    assert_eq!(
        s.meta().unwrap(),
        Meta {
            revision: 10,
            oldest_event: 1
        }
    );
    // Compaction alone in a batch with a change.
    w.put(b"x", b"1", None).compact_below(4);
    w.commit(&*s, true);
    assert_eq!(
        s.meta().unwrap(),
        Meta {
            revision: 11,
            oldest_event: 4
        }
    );
    assert_eq!(revisions(&*s, 0, 100), (4..=11).collect::<Vec<_>>());
    assert_eq!(revisions(&*s, 1, 2), vec![4, 5]);
    // A lower or equal watermark changes nothing.
    w.put(b"x", b"2", None).compact_below(2);
    w.commit(&*s, true);
    assert_eq!(s.meta().unwrap().oldest_event, 4);
    w.put(b"x", b"3", None).compact_below(4);
    w.commit(&*s, true);
    assert_eq!(
        s.meta().unwrap(),
        Meta {
            revision: 13,
            oldest_event: 4
        }
    );
    assert_eq!(revisions(&*s, 0, 100), (4..=13).collect::<Vec<_>>());
    // Compaction reaching into the batch's own events.
    w.put(b"y", b"1", None)
        .put(b"y", b"2", None)
        .compact_below(15);
    w.commit(&*s, true);
    assert_eq!(
        s.meta().unwrap(),
        Meta {
            revision: 15,
            oldest_event: 15
        }
    );
    assert_eq!(revisions(&*s, 0, 100), vec![15]);
    // Compaction never touches the keys.
    assert_eq!(keys(&*s, b"k", None, 100).len(), 10);
    assert_eq!(&s.get(b"y").unwrap().unwrap().value[..], b"2");
}

fn expiry_index(e: Engine) {
    let (_d, s) = fresh(e);
    let mut w = Builder::default();
    w.put(b"a", b"", Some(300))
        .put(b"b", b"", Some(100))
        .put(b"c", b"", Some(200))
        .put(b"d", b"", None)
        .put(b"e", b"", Some(100))
        .put(b"z", b"", Some(1 << 40));
    w.commit(&*s, true);
    assert!(expired(&*s, 0, 10).is_empty());
    assert!(expired(&*s, 99, 10).is_empty());
    // Due at `now` counts; same time: key order.
    assert_eq!(expired(&*s, 100, 10), v(&[b"b", b"e"]));
    assert_eq!(expired(&*s, 250, 10), v(&[b"b", b"e", b"c"]));
    assert_eq!(expired(&*s, 250, 2), v(&[b"b", b"e"]));
    assert_eq!(
        expired(&*s, 1 << 40, 10),
        v(&[b"b", b"e", b"c", b"a", b"z"])
    );
    assert!(expired(&*s, 250, 0).is_empty());

    // Replaced with a later expiry, replaced without one, deleted.
    w.put(b"b", b"", Some(400))
        .put(b"c", b"", None)
        .delete(b"a");
    w.commit(&*s, true);
    assert_eq!(expired(&*s, 1000, 10), v(&[b"e", b"b"]));
    // A key with no expiry given one.
    w.put(b"d", b"", Some(50));
    w.commit(&*s, false);
    assert_eq!(expired(&*s, 1000, 10), v(&[b"d", b"e", b"b"]));

    // Inside one batch: put with an expiry then replace; put with an expiry then delete.
    w.put(b"f", b"", Some(60))
        .put(b"f", b"", Some(70))
        .put(b"g", b"", Some(65))
        .delete(b"g")
        .put(b"h", b"", Some(66))
        .put(b"h", b"", None);
    w.commit(&*s, true);
    assert_eq!(expired(&*s, 69, 10), v(&[b"d"]));
    assert_eq!(expired(&*s, 70, 10), v(&[b"d", b"f"]));
    assert_eq!(s.get(b"g").unwrap(), None);
    assert_eq!(s.get(b"h").unwrap().unwrap().expires_at_ms, None);

    // The expiry index is not the data: a reclaimed (deleted) key leaves both.
    w.delete(b"d").delete(b"e");
    w.commit(&*s, true);
    assert_eq!(expired(&*s, 1000, 10), v(&[b"f", b"b"]));
    // Expired values are still stored until removed (the node filters them).
    assert!(s.get(b"f").unwrap().is_some());
}

// ---- checks of the disk engines ----

fn reopen_keeps_everything(e: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let mut w = Builder::default();
    {
        let s = (e.open)(&path).unwrap();
        w.put(b"a", b"1", None)
            .put(b"b", b"2", Some(500))
            .put(b"c", b"3", None);
        w.commit(&*s, true);
        w.delete(b"c").compact_below(2);
        w.commit(&*s, true);
        // Buffered: a clean close still keeps it.
        w.put(b"d", b"4", Some(100));
        w.commit(&*s, false);
        s.sync().unwrap();
        w.put(b"e", b"5", None);
        w.commit(&*s, false);
    }
    let check = |s: &dyn Storage| {
        assert_eq!(
            s.meta().unwrap(),
            Meta {
                revision: 6,
                oldest_event: 2
            }
        );
        assert_eq!(keys(s, b"", None, 10), v(&[b"a", b"b", b"d", b"e"]));
        assert_eq!(&s.get(b"d").unwrap().unwrap().value[..], b"4");
        assert_eq!(revisions(s, 0, 10), vec![2, 3, 4, 5, 6]);
        assert_eq!(expired(s, 1000, 10), v(&[b"d", b"b"]));
    };
    {
        let s = (e.open)(&path).unwrap();
        check(&*s);
        // The revision continues.
        w.put(b"f", b"6", None);
        w.commit(&*s, true);
    }
    let s = (e.open)(&path).unwrap();
    assert_eq!(s.meta().unwrap().revision, 7);
    assert_eq!(&s.get(b"f").unwrap().unwrap().value[..], b"6");
}

fn refuses_a_foreign_directory(e: Engine) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let reason = assert_refused((e.open)(dir.path()), "a foreign directory");
    assert!(reason.contains("notes.txt"), "{reason}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["notes.txt"],
        "a refused directory is left as it was"
    );
    assert_eq!(
        std::fs::read(dir.path().join("notes.txt")).unwrap(),
        b"mine"
    );
    // A file where the directory should be.
    let file = dir.path().join("notes.txt");
    assert!(matches!((e.open)(&file), Err(KvError::DataDir { .. })));
}

fn refuses_a_damaged_store(e: Engine) {
    let dir = tempfile::tempdir().unwrap();
    drop((e.open)(dir.path()).unwrap());
    (e.damage)(dir.path());
    let before = snapshot(dir.path());
    assert_refused((e.open)(dir.path()), "a damaged store");
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused store is left as it was"
    );
}

fn refuses_a_store_open_already(e: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let first = (e.open)(dir.path()).unwrap();
    let mut w = Builder::default();
    w.put(b"k", b"v", None);
    w.commit(&*first, true);
    assert_refused((e.open)(dir.path()), "a store open already");
    assert_eq!(&first.get(b"k").unwrap().unwrap().value[..], b"v");
    drop(first);
    let again = (e.open)(dir.path()).unwrap();
    assert_eq!(&again.get(b"k").unwrap().unwrap().value[..], b"v");
}

fn creates_an_owner_only_directory(e: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new").join("data");
    drop((e.open)(&path).unwrap());
    assert!(path.join(e.store).exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{mode:o}");
    }
}

/// Every file under `dir` with its contents, for "left as it was".
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

macro_rules! conformance {
    ($engine:ident: $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                super::$check(super::$engine);
            }
        )*
    };
}

macro_rules! every_engine_checks {
    ($engine:ident) => {
        conformance!($engine:
            new_store_meta,
            get_after_commit,
            delete,
            last_change_in_a_batch_wins,
            scan_order_prefix_start_after_limit,
            events_from_a_revision,
            compaction_and_meta,
            expiry_index,
        );
    };
}

macro_rules! disk_engine_checks {
    ($engine:ident) => {
        conformance!($engine:
            reopen_keeps_everything,
            refuses_a_foreign_directory,
            refuses_a_damaged_store,
            refuses_a_store_open_already,
            creates_an_owner_only_directory,
        );
    };
}

mod memory {
    every_engine_checks!(MEMORY);
}

mod redb {
    every_engine_checks!(REDB);
    disk_engine_checks!(REDB);
}

mod fjall {
    every_engine_checks!(FJALL);
    disk_engine_checks!(FJALL);
}

/// Each disk engine refuses the other's directory, and the refusal changes nothing.
#[test]
fn disk_engines_refuse_each_others_directories() {
    for (mine, other, name) in [(REDB, FJALL, "redb"), (FJALL, REDB, "fjall")] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = (mine.open)(dir.path()).unwrap();
            let mut w = Builder::default();
            w.put(b"k", b"v", None);
            w.commit(&*s, true);
        }
        let before = snapshot(dir.path());
        let reason = assert_refused((other.open)(dir.path()), &format!("a {name} directory"));
        assert!(reason.contains(mine.store), "{reason}");
        assert_eq!(snapshot(dir.path()), before);
        let s = (mine.open)(dir.path()).unwrap();
        assert_eq!(&s.get(b"k").unwrap().unwrap().value[..], b"v");
    }
}
