//! What a user relies on beyond single calls: compare-and-set under concurrent writers
//! (exactly one wins per version), TTLs under paused time (never returned once expired,
//! reclaimed with an `Expire` event), watches that resume across a reconnect without a
//! gap or a duplicate, `Compacted` past retention, and a slow watcher that falls behind
//! the bus but still sees every revision.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::{within, TestNode, Transport};
use futures::StreamExt;
use mw_kv::{Config, EventKind, Kv, KvError, PutOptions};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_under_concurrent_writers_has_exactly_one_winner_per_version() {
    let node = TestNode::memory(Transport::Tcp).await;
    let setup = node.client().await;
    let mut version = setup
        .put(b("counter"), b("0"), PutOptions::default())
        .await
        .unwrap()
        .version;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(node.client().await);
    }
    for round in 1..=25u32 {
        let mut tasks = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let opts = PutOptions {
                    if_version: Some(version),
                    ..Default::default()
                };
                (
                    i,
                    c.put(b("counter"), Bytes::from(round.to_string()), opts)
                        .await,
                )
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (i, r) = within("cas", t).await.unwrap();
            match r {
                Ok(w) => winners.push((i, w.version)),
                Err(e) => {
                    let e = e.into_application().unwrap();
                    assert!(
                        matches!(e, KvError::VersionConflict { expected, current: Some(_) } if expected == version),
                        "{e}"
                    );
                }
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        version = winners[0].1;
        let now = setup.get(b("counter")).await.unwrap().unwrap();
        assert_eq!(
            (now.version, &now.value[..]),
            (version, round.to_string().as_bytes())
        );
    }
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ttl_hides_expired_keys_and_reclaims_them_with_an_event() {
    let kv = Kv::memory(Config {
        reap_interval: Duration::from_secs(3600),
        ..Config::default()
    });
    let mut watch = kv.watch("s", None);
    let ttl = |s| PutOptions {
        ttl: Some(Duration::from_secs(s)),
        ..Default::default()
    };
    let short = kv.put("s1", "a", ttl(5)).await.unwrap();
    kv.put("s2", "b", ttl(60)).await.unwrap();
    kv.put("s3", "c", PutOptions::default()).await.unwrap();
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert!(kv.get("s1").await.unwrap().is_some(), "not yet");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(kv.get("s1").await.unwrap(), None, "expired: never returned");
    let live: Vec<_> = kv
        .scan("s", None, 10)
        .unwrap()
        .map(|e| e.unwrap().key)
        .collect()
        .await;
    assert_eq!(live, [b("s2"), b("s3")]);
    // Reclaimed (here on demand; the reaper does the same every reap_interval).
    assert_eq!(kv.reap_expired().await.unwrap(), 1);
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let e = watch.next().await.unwrap().unwrap();
        kinds.push((e.kind, e.key.clone()));
    }
    assert_eq!(kinds[3], (EventKind::Expire, b("s1")));
    assert_eq!(kv.reap_expired().await.unwrap(), 0, "reclaimed once");
    // A put over an expired key starts a new incarnation, after its Expire event.
    tokio::time::advance(Duration::from_secs(60)).await;
    let w = kv.put("s2", "new", PutOptions::default()).await.unwrap();
    let e1 = watch.next().await.unwrap().unwrap();
    let e2 = watch.next().await.unwrap().unwrap();
    assert_eq!((e1.kind, e2.kind), (EventKind::Expire, EventKind::Put));
    assert_eq!(kv.get("s2").await.unwrap().unwrap().changes, 1);
    assert!(w.version > short.version);
    // A CAS against the expired incarnation's version fails.
    drop(watch);
    kv.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_background_reaper_reclaims_expired_keys() {
    let kv = Kv::memory(Config {
        reap_interval: Duration::from_secs(1),
        ..Config::default()
    });
    let mut watch = kv.watch("", None);
    kv.put(
        "gone",
        "x",
        PutOptions {
            ttl: Some(Duration::from_millis(1500)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap().kind, EventKind::Put);
    // Paused time advances by itself while the watch waits: the reaper's tick fires.
    let e = within("expire event", watch.next()).await.unwrap().unwrap();
    assert_eq!((e.kind, &e.key[..]), (EventKind::Expire, &b"gone"[..]));
    drop(watch);
    kv.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_across_a_reconnect_without_gap_or_duplicate() {
    let node = TestNode::memory(Transport::Tcp).await;
    let writer = node.client().await;
    let mut next_value = 0u32;
    let mut write = |n: u32| {
        let w = writer.clone();
        let start = next_value;
        next_value += n;
        async move {
            for i in start..start + n {
                let key = if i % 3 == 0 { "other/x" } else { "w/key" };
                w.put(b(key), Bytes::from(i.to_string()), PutOptions::default())
                    .await
                    .unwrap();
            }
        }
    };
    write(30).await;
    let mut seen: Vec<u64> = Vec::new();
    let mut last = 0;
    for _session in 0..3 {
        let c = node.client().await; // a new connection each time
        let mut w = c.watch(b("w/"), Some(last + 1)).await.unwrap();
        write(30).await; // writes while watching
                         // Read some, not all, then drop the connection mid-stream.
        for _ in 0..15 {
            let e = within("event", w.next()).await.unwrap().unwrap().unwrap();
            assert_eq!(&e.key[..], b"w/key");
            seen.push(e.revision);
            last = e.revision;
        }
        drop(w);
        drop(c);
    }
    // Catch up with everything that is left.
    let c = node.client().await;
    let total = writer.status().await.unwrap().revision;
    let mut w = c.watch(b("w/"), Some(last + 1)).await.unwrap();
    // Exactly the revisions of w/ writes, each once, in order.
    let expected: Vec<u64> = (1..=total).filter(|r| (r - 1) % 3 != 0).collect();
    while seen.len() < expected.len() {
        let e = within("tail event", w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(e.revision);
    }
    assert_eq!(seen, expected);
    drop(w);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_older_than_retention_gets_compacted_naming_the_oldest() {
    let kv = Kv::memory(Config {
        retain_events: 10,
        ..Config::default()
    });
    let node = TestNode::serve(kv, Transport::Tcp).await;
    let c = node.client().await;
    for i in 0..50 {
        c.put(b("k"), Bytes::from(format!("{i}")), PutOptions::default())
            .await
            .unwrap();
    }
    let status = c.status().await.unwrap();
    assert_eq!(status.revision, 50);
    assert_eq!(status.oldest_revision, 41, "10 retained");
    let mut w = c.watch(b(""), Some(5)).await.unwrap();
    let first = within("compacted", w.next()).await.unwrap().unwrap();
    assert_eq!(
        first,
        Err(KvError::Compacted {
            requested: 5,
            oldest: 41
        })
    );
    assert!(within("end", w.next()).await.is_none(), "the stream ends");
    // From the oldest available revision, the whole retained history.
    let mut w = c.watch(b(""), Some(41)).await.unwrap();
    for rev in 41..=50 {
        let e = within("retained", w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.revision, rev);
    }
    drop(w);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_falls_back_to_history_and_misses_nothing() {
    let kv = Kv::memory(Config::default());
    // Subscribe, then let far more batches pile up than the bus buffers per watcher.
    let mut w = kv.watch("", None);
    let mut tasks = Vec::new();
    for t in 0..4 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..1500 {
                kv.put(format!("k{t}/{i}"), "v", PutOptions::default())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        within("writers", t).await.unwrap();
    }
    let total = kv.status().revision;
    assert_eq!(total, 6000);
    let mut revs = BTreeSet::new();
    let mut prev = 0;
    while prev < total {
        let e = within("event", w.next()).await.unwrap().unwrap();
        assert_eq!(e.revision, prev + 1, "in order, no gap, no duplicate");
        prev = e.revision;
        revs.insert(e.revision);
    }
    assert_eq!(revs.len() as u64, total);
    drop(w);
    kv.close().await.unwrap();
}
