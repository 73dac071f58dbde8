//! mw-kv's storage recovery over damaged data directories: a store (fjall or redb, the
//! first byte chooses) is written through `Kv` and closed; then the input damages its
//! files (flip bytes at chosen offsets, truncate, append) and the store is opened again.
//!
//! Checked: opening never panics and either succeeds or fails with a typed `KvError`
//! (`DataDir` or `Storage`); a store that opens can be read (get, scan, watch history)
//! and written without panicking.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use mw_kv::{Config, Engine, Kv, KvError, PutOptions};

use crate::common::{block_on, Cursor};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

async fn populate(dir: &Path, engine: Engine, n: u8) {
    let kv = Kv::open(
        dir,
        Config {
            engine,
            ..Config::default()
        },
    )
    .await
    .expect("a fresh store opens");
    for i in 0..(n % 64) {
        kv.put(
            format!("key{i}"),
            format!("value {i}"),
            PutOptions::default(),
        )
        .await
        .expect("put");
        if i % 7 == 3 {
            kv.delete(format!("key{}", i / 2), Default::default())
                .await
                .expect("delete");
        }
    }
    kv.close().await.expect("close");
}

fn damage(dir: &Path, c: &mut Cursor<'_>) {
    let mut all = Vec::new();
    files(dir, &mut all);
    // Lock files and empty files are not worth damaging.
    all.retain(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0));
    if all.is_empty() {
        return;
    }
    for _ in 0..(c.u8() % 8 + 1) {
        let path = &all[c.u8() as usize % all.len()];
        let Ok(mut bytes) = std::fs::read(path) else {
            continue;
        };
        match c.u8() % 4 {
            0 if !bytes.is_empty() => {
                let at = c.u32() as usize % bytes.len();
                bytes.truncate(at);
            }
            1 => bytes.extend_from_slice(&c.rest()[..c.rest().len().min(64)]),
            _ if !bytes.is_empty() => {
                for _ in 0..(c.u8() % 4 + 1) {
                    let at = c.u32() as usize % bytes.len();
                    bytes[at] ^= c.u8() | 1;
                }
            }
            _ => {}
        }
        let _ = std::fs::write(path, &bytes);
    }
}

async fn reopen(dir: &Path) {
    match Kv::open(dir, Config::default()).await {
        Ok(kv) => {
            for i in 0..8 {
                let _ = kv.get(format!("key{i}")).await;
            }
            if let Ok(mut s) = kv.scan("key", None, 100) {
                while let Some(item) = s.next().await {
                    if item.is_err() {
                        break;
                    }
                }
            }
            let mut w = kv.watch("", Some(1));
            let _ = tokio::time::timeout(std::time::Duration::from_millis(1), w.next()).await;
            drop(w);
            let _ = kv.put("after", "damage", PutOptions::default()).await;
            let _ = kv.close().await;
        }
        Err(KvError::DataDir { .. } | KvError::Storage(_)) => {}
        Err(e) => panic!("opening a damaged store failed with an untyped error: {e}"),
    }
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let engine = if c.u8().is_multiple_of(2) {
        Engine::Fjall
    } else {
        Engine::Redb
    };
    let n = c.u8();
    let dir = crate::common::tempdir();
    block_on(async {
        populate(dir.path(), engine, n).await;
        damage(dir.path(), &mut c);
        reopen(dir.path()).await;
    });
}
