//! Anti-entropy and tombstone GC on a ring of in-process nodes on loopback TCP: a node
//! that missed writes while down converges through Merkle-tree comparison alone (no
//! read, no hint), the rate limit bounds the keys a round exchanges, tombstones are
//! collected once every replica has them, and a deleted key never comes back, also
//! after a stale replica returns.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::within;
use mw_kv::ring::node::{RingConfig, RingNode};
use mw_kv::ring::serve::{spawn, ServedNode};
use mw_kv::ring::types::{Quorum, RingWriteOptions};

/// The harness of `tests/ring.rs`, with a restart.
struct Cluster {
    dir: tempfile::TempDir,
    nodes: BTreeMap<String, ServedNode>,
    config: RingConfig,
}

fn fast() -> RingConfig {
    RingConfig {
        replica_timeout: Duration::from_millis(500),
        ping_interval: Duration::from_millis(50),
        gossip_interval: Duration::from_millis(50),
        handoff_interval: Duration::from_millis(50),
        anti_entropy_interval: Duration::from_millis(20),
        anti_entropy_keys_per_sec: 50_000,
        tombstone_grace: Duration::from_millis(200),
        ..RingConfig::default()
    }
}

impl Cluster {
    async fn start(k: usize, config: RingConfig) -> Cluster {
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            nodes: BTreeMap::new(),
            config,
        };
        let mut seed: Option<String> = None;
        for _ in 0..k {
            // Bind first to learn the address, so the data directory can be named after it.
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = probe.local_addr().unwrap().to_string();
            drop(probe);
            let n = spawn(
                &addr,
                None,
                &c.data_of(&addr),
                c.config.clone(),
                seed.as_deref(),
            )
            .await
            .expect("start node");
            let id = n.node.id().to_string();
            seed.get_or_insert(id.clone());
            c.nodes.insert(id, n);
        }
        c.converge().await;
        c
    }

    fn data_of(&self, id: &str) -> PathBuf {
        self.dir.path().join(id.replace([':', '.'], "_"))
    }

    /// Waits until every node sees every member, and sees them all reachable.
    async fn converge(&self) {
        let want: Vec<String> = self.nodes.keys().cloned().collect();
        within("membership converges", async {
            loop {
                let done = self.nodes.values().all(|n| {
                    let v = n.node.view();
                    n.node.membership().readers() == want
                        && n.node.membership().settled()
                        && v.members.iter().all(|m| m.reachable)
                });
                if done {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    fn node(&self, id: &str) -> &RingNode {
        &self.nodes[id].node
    }

    fn all(&self) -> impl Iterator<Item = &RingNode> {
        self.nodes.values().map(|n| &n.node)
    }

    /// Stops `id` and waits until every other node's failure detector sees it down.
    async fn stop(&mut self, id: &str) {
        let n = self.nodes.remove(id).unwrap();
        n.server.shutdown().await;
        n.node.close().await.unwrap();
        within("stopped node seen down", async {
            while self
                .all()
                .any(|n| n.view().members.iter().any(|m| m.node == id && m.reachable))
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// Restarts `id` at its address on its data, through `seed`.
    async fn restart(&mut self, id: &str, seed: &str) {
        let back = spawn(id, None, &self.data_of(id), self.config.clone(), Some(seed))
            .await
            .unwrap();
        self.nodes.insert(id.to_string(), back);
        self.converge().await;
    }

    fn hints(&self) -> u64 {
        self.all().map(|n| n.hints().values().sum::<u64>()).sum()
    }

    fn keys_exchanged(&self) -> u64 {
        self.all()
            .map(|n| n.anti_entropy_stats().keys_exchanged)
            .sum()
    }
}

fn b(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

async fn put(node: &RingNode, key: &str, value: &str, w: Option<Quorum>) {
    let read = node.read(b(key), None).await.unwrap();
    node.write(
        b(key),
        Some(b(value)),
        RingWriteOptions {
            context: read.context,
            w,
        },
    )
    .await
    .unwrap();
}

async fn delete(node: &RingNode, key: &str, w: Option<Quorum>) {
    let read = node.read(b(key), None).await.unwrap();
    node.write(
        b(key),
        None,
        RingWriteOptions {
            context: read.context,
            w,
        },
    )
    .await
    .unwrap();
}

/// Writes `count` keys `{prefix}{i}` = `v{i}` with W=2 while the last node is down (3
/// nodes, N=3: no stand-in, so no hint), restarts it and returns it; nothing is read.
async fn miss_writes(cluster: &mut Cluster, prefix: &str, count: usize) -> String {
    let ids: Vec<String> = cluster.nodes.keys().cloned().collect();
    let victim = ids[2].clone();
    cluster.stop(&victim).await;
    let coordinator = cluster.node(&ids[0]).clone();
    for i in 0..count {
        let w = coordinator
            .write(
                b(format!("{prefix}{i}")),
                Some(b(format!("v{i}"))),
                RingWriteOptions::default(),
            )
            .await
            .unwrap();
        assert!(
            w.replicas.iter().all(|r| r.node != victim || !r.ok),
            "the victim missed the write: {w:?}"
        );
    }
    assert_eq!(cluster.hints(), 0, "three nodes, N=3: no hint");
    cluster.restart(&victim, &ids[0]).await;
    victim
}

async fn has_all(node: &RingNode, prefix: &str, count: usize) -> bool {
    for i in 0..count {
        let state = node
            .store()
            .read(format!("{prefix}{i}").as_bytes())
            .await
            .unwrap();
        if state.values() != [b(format!("v{i}"))] {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_writes_converges_through_anti_entropy_alone() {
    let mut cluster = Cluster::start(3, fast()).await;
    let victim = miss_writes(&mut cluster, "k", 200).await;
    within("the victim has every key", async {
        while !has_all(cluster.node(&victim), "k", 200).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    within("every node's Merkle roots match", async {
        loop {
            let mut roots = Vec::new();
            for n in cluster.all() {
                roots.push(n.merkle_roots().await.unwrap());
            }
            if roots.windows(2).all(|w| w[0] == w[1]) {
                assert!(roots[0].iter().any(|(_, r)| *r != 0));
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(cluster.hints(), 0, "no hint was involved");
    // No read, no hint, no ring change: every key reached the victim by anti-entropy.
    assert!(
        cluster.keys_exchanged() >= 200,
        "anti-entropy repaired every missing key: {}",
        cluster.keys_exchanged()
    );
    for n in cluster.all() {
        let s = n.anti_entropy_stats();
        assert!(s.rounds > 0 && s.ranges_compared > 0, "{s:?}");
        let later = n.view().anti_entropy;
        assert!(later.rounds >= s.rounds && later.keys_exchanged >= s.keys_exchanged);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_bounds_the_keys_exchanged_per_round() {
    let config = RingConfig {
        anti_entropy_interval: Duration::from_millis(40),
        // 2 keys per round.
        anti_entropy_keys_per_sec: 50,
        ..fast()
    };
    let mut cluster = Cluster::start(3, config).await;
    assert_eq!(cluster.all().next().unwrap().anti_entropy_budget(), 2);
    let victim = miss_writes(&mut cluster, "r", 200).await;
    within("the victim has every key, two per round per node", async {
        while !has_all(cluster.node(&victim), "r", 200).await {
            for n in cluster.all() {
                let s = n.anti_entropy_stats();
                assert!(s.max_round_keys <= 2, "{s:?}");
                assert!(s.keys_exchanged <= 2 * s.rounds, "{s:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut rounds = 0;
    for n in cluster.all() {
        let s = n.anti_entropy_stats();
        assert!(s.max_round_keys <= 2, "{s:?}");
        assert!(s.keys_exchanged <= 2 * s.rounds, "{s:?}");
        rounds += s.rounds;
    }
    assert!(
        cluster.keys_exchanged() >= 200,
        "{}",
        cluster.keys_exchanged()
    );
    assert!(
        cluster
            .all()
            .any(|n| n.anti_entropy_stats().max_round_keys == 2),
        "some round was cut at the budget"
    );
    assert!(
        rounds >= 100,
        "200 keys at 2 per round need rounds: {rounds}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_are_collected_once_every_replica_has_them() {
    let cluster = Cluster::start(3, fast()).await;
    let node = cluster.all().next().unwrap().clone();
    for i in 0..20 {
        put(&node, &format!("d{i}"), &format!("v{i}"), Some(Quorum::All)).await;
    }
    for i in 0..10 {
        delete(&node, &format!("d{i}"), Some(Quorum::All)).await;
    }
    within("every replica drops the tombstones", async {
        loop {
            let mut held = 0;
            for n in cluster.all() {
                for i in 0..10 {
                    if !n
                        .store()
                        .read(format!("d{i}").as_bytes())
                        .await
                        .unwrap()
                        .is_empty()
                    {
                        held += 1;
                    }
                }
            }
            // Ten tombstones on three replicas, each counted by the replica it left
            // (a tombstone that spread back after a partial GC counts again).
            let collected: u64 = cluster
                .all()
                .map(|n| n.anti_entropy_stats().tombstones_collected)
                .sum();
            if held == 0 && collected >= 30 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for i in 0..20 {
        let r = node
            .read(b(format!("d{i}")), Some(Quorum::All))
            .await
            .unwrap();
        if i < 10 {
            assert!(r.values.is_empty(), "d{i} stays deleted: {r:?}");
            assert_eq!(r.siblings, 0, "d{i} is gone, tombstone included");
        } else {
            assert_eq!(r.values, [b(format!("v{i}"))], "live keys are kept");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_never_comes_back_after_the_stale_replica_returns() {
    let mut cluster = Cluster::start(3, fast()).await;
    let ids: Vec<String> = cluster.nodes.keys().cloned().collect();
    let node = cluster.node(&ids[0]).clone();
    for i in 0..10 {
        put(&node, &format!("g{i}"), &format!("v{i}"), Some(Quorum::All)).await;
    }
    let victim = ids[2].clone();
    cluster.stop(&victim).await;
    for i in 0..10 {
        delete(&node, &format!("g{i}"), None).await;
    }
    // Well past the grace, with many rounds: no replica may drop its tombstone while
    // the victim, which still holds the values, is down.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for n in cluster.all() {
        for i in 0..10 {
            let s = n.store().read(format!("g{i}").as_bytes()).await.unwrap();
            assert!(!s.is_empty() && s.is_deleted(), "g{i} kept as a tombstone");
        }
        assert_eq!(n.anti_entropy_stats().tombstones_collected, 0);
    }
    cluster.restart(&victim, &ids[0]).await;
    let check = |cluster: &Cluster| {
        let nodes: Vec<RingNode> = cluster.all().cloned().collect();
        async move {
            for i in 0..10 {
                let r = nodes[0]
                    .read(b(format!("g{i}")), Some(Quorum::All))
                    .await
                    .unwrap();
                assert!(r.values.is_empty(), "g{i} came back: {r:?}");
            }
        }
    };
    // Reads (which also repair) during convergence never see a value.
    check(&cluster).await;
    within(
        "the tombstones reach the victim and are then collected everywhere",
        async {
            loop {
                let mut held = 0;
                for n in cluster.all() {
                    for i in 0..10 {
                        if !n
                            .store()
                            .read(format!("g{i}").as_bytes())
                            .await
                            .unwrap()
                            .is_empty()
                        {
                            held += 1;
                        }
                    }
                }
                if held == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    check(&cluster).await;
    // And stays gone: for many more rounds no replica holds a value for it (a
    // tombstone may spread back, if a late repair re-created one after a GC, and is
    // collected again), then no replica holds anything.
    for _ in 0..25 {
        for n in cluster.all() {
            for i in 0..10 {
                let s = n.store().read(format!("g{i}").as_bytes()).await.unwrap();
                assert!(s.values().is_empty(), "g{i} came back on {}: {s:?}", n.id());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    within("nothing left of the deleted keys", async {
        loop {
            let mut held = 0;
            for n in cluster.all() {
                for i in 0..10 {
                    let s = n.store().read(format!("g{i}").as_bytes()).await.unwrap();
                    held += usize::from(!s.is_empty());
                }
            }
            if held == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    check(&cluster).await;
}
