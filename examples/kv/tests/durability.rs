//! Durability with real processes: a node killed with SIGKILL while clients write loses
//! no acknowledged `Sync` put; data survives a clean restart; a foreign, corrupt or
//! in-use data directory is refused with one clear line and left untouched.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{mw_kv, within, NodeProcess};
use mw::rpc::Channel;
use mw_kv::{Config, Kv, KvClient, KvError, PutOptions};

async fn client(addr: &str) -> KvClient {
    KvClient::new(Channel::connect(addr).await.expect("connect"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_sync_put() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut node = NodeProcess::start(&data, &["--fsync", "always"]);
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let (enough_tx, mut enough_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut writers = Vec::new();
    for w in 0..16 {
        let c = client(&node.addr).await;
        let acked = acked.clone();
        let enough = enough_tx.clone();
        writers.push(tokio::spawn(async move {
            // Bounded: stops at the first failure (the kill) or after 100k writes.
            for i in 0..100_000u32 {
                let (k, v) = (format!("w{w}/{i}"), format!("value {w} {i}"));
                match c
                    .put(
                        Bytes::from(k.clone()),
                        Bytes::from(v.clone()),
                        PutOptions::default(),
                    )
                    .await
                {
                    Ok(r) => {
                        assert!(r.durable);
                        let n = {
                            let mut a = acked.lock().unwrap();
                            a.insert(k, v);
                            a.len()
                        };
                        if n == 3000 {
                            let _ = enough.try_send(());
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    drop(enough_tx);
    within("3000 acknowledged writes", enough_rx.recv()).await;
    node.kill(); // SIGKILL while the writers are still writing
    for w in writers {
        within("writers stop", w).await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 3000);

    let node = NodeProcess::start(&data, &[]);
    let c = client(&node.addr).await;
    let mut lost = Vec::new();
    for (k, v) in &acked {
        match c.get(Bytes::from(k.clone())).await.unwrap() {
            Some(got) if got.value == v.as_bytes() => {}
            other => lost.push((k.clone(), other)),
        }
    }
    assert!(
        lost.is_empty(),
        "lost {} of {} acknowledged puts, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
    let status = c.status().await.unwrap();
    assert!(status.revision >= acked.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_clean_restart_with_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let kv = Kv::open(dir.path(), Config::default()).await.unwrap();
        for i in 0..100 {
            kv.put(format!("k{i}"), format!("v{i}"), PutOptions::default())
                .await
                .unwrap();
        }
        kv.delete("k7", Default::default()).await.unwrap();
        let s = kv.status();
        kv.close().await.unwrap();
        s
    };
    let kv = Kv::open(dir.path(), Config::default()).await.unwrap();
    assert_eq!(kv.status().revision, before.revision);
    assert_eq!(&kv.get("k42").await.unwrap().unwrap().value[..], b"v42");
    assert_eq!(kv.get("k7").await.unwrap(), None);
    let next = kv.put("k0", "again", PutOptions::default()).await.unwrap();
    assert_eq!(next.revision, before.revision + 1, "revisions continue");
    kv.close().await.unwrap();
}

fn refused(args: &[&str], dir: &std::path::Path) -> String {
    let out = mw_kv()
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "must refuse {}", dir.display());
    assert!(out.stdout.is_empty(), "never listening");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    err
}

#[test]
fn a_foreign_directory_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = refused(&[], dir.path());
    assert!(err.contains("not an mw-kv data directory"), "{err}");
    assert!(err.contains("notes.txt"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_corrupt_store_is_refused_never_reset() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(mw_kv::redb_engine::DB_FILE);
    let garbage: Vec<u8> = (0..65_536u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&file, &garbage).unwrap();
    let err = refused(&[], dir.path());
    assert!(err.contains("cannot open kv.redb"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), garbage, "untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_programs_redb_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(mw_kv::redb_engine::DB_FILE);
    {
        // A valid redb database that is not an mw-kv store.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("theirs");
            txn.open_table(def).unwrap().insert("a", "b").unwrap();
        }
        txn.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Kv::open(dir.path(), Config::default()).await.unwrap_err();
    assert!(
        matches!(&err, KvError::DataDir { reason, .. } if reason.contains("not an mw-kv store")),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _node = NodeProcess::start(dir.path(), &[]);
    let err = refused(&[], dir.path());
    assert!(err.contains("the store is open already"), "{err}");
}

#[tokio::test]
async fn the_memory_engine_keeps_nothing_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = mw_kv::Config {
        engine: "memory".parse().unwrap(),
        ..mw_kv::Config::default()
    };
    let kv = mw_kv::Kv::open(dir.path(), config.clone()).await.unwrap();
    assert_eq!(kv.status().engine, "memory");
    kv.put("k", "v", mw_kv::PutOptions::default())
        .await
        .unwrap();
    kv.close().await.unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
    let again = mw_kv::Kv::open(dir.path(), config).await.unwrap();
    assert_eq!(
        again.get("k").await.unwrap(),
        None,
        "lost with the node, as documented"
    );
    again.close().await.unwrap();
    let err = "memry".parse::<mw_kv::Engine>().unwrap_err();
    assert!(err.contains("expected fjall, redb or memory"), "{err}");
}
