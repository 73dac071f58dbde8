//! A ring of in-process nodes on loopback TCP: quorum reads and writes that say which
//! replicas answered, siblings for concurrent writes and their resolution, hinted
//! handoff through mw-queue while a replica is down, read repair, deletes that never
//! come back, and a join under load with no failed request.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::within;
use mw_kv::ring::dvv::{Dot, Sibling, VersionVector};
use mw_kv::ring::node::{RingConfig, RingNode};
use mw_kv::ring::serve::{spawn, ServedNode};
use mw_kv::ring::types::{Quorum, RingWriteOptions};

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
        for i in 0..k {
            let _ = i;
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
                    let up: Vec<String> = n.node.membership().readers();
                    up == want
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

    fn any(&self) -> &RingNode {
        &self.nodes.values().next().unwrap().node
    }

    async fn stop(&mut self, id: &str) {
        let n = self.nodes.remove(id).unwrap();
        n.server.shutdown().await;
        n.node.close().await.unwrap();
    }
}

fn b(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

async fn put(node: &RingNode, key: &str, value: &str) -> mw_kv::ring::types::RingWrite {
    let read = node.read(b(key), None).await.unwrap();
    node.write(
        b(key),
        Some(b(value)),
        RingWriteOptions {
            context: read.context,
            w: None,
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_writes_and_reads_say_which_replicas_answered() {
    let cluster = Cluster::start(3, fast()).await;
    let ids: Vec<String> = cluster.nodes.keys().cloned().collect();
    let w = put(cluster.node(&ids[0]), "greeting", "hello").await;
    assert!(w.replicas.iter().filter(|r| r.ok).count() >= 2);
    assert_eq!(w.needed, 2);
    let r = cluster
        .node(&ids[2])
        .read(b("greeting"), None)
        .await
        .unwrap();
    assert_eq!(r.values, [b("hello")]);
    assert_eq!(r.needed, 2);
    let answered: Vec<&str> = r
        .replicas
        .iter()
        .filter(|x| x.ok)
        .map(|x| x.node.as_str())
        .collect();
    let preference = cluster.any().locate(b"greeting").preference;
    assert!(answered.iter().all(|a| preference.iter().any(|p| p == a)));
    // R = all waits for every replica.
    let all = cluster
        .node(&ids[1])
        .read(b("greeting"), Some(Quorum::All))
        .await
        .unwrap();
    assert_eq!(all.replicas.iter().filter(|x| x.ok).count(), 3);
    // A missing key reads as no value.
    let none = cluster.any().read(b("missing"), None).await.unwrap();
    assert!(none.values.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_siblings_until_a_write_with_their_context() {
    let cluster = Cluster::start(3, fast()).await;
    let ids: Vec<String> = cluster.nodes.keys().cloned().collect();
    let blind = RingWriteOptions::default();
    cluster
        .node(&ids[0])
        .write(b("cart"), Some(b("apples")), blind.clone())
        .await
        .unwrap();
    cluster
        .node(&ids[1])
        .write(b("cart"), Some(b("pears")), blind)
        .await
        .unwrap();
    let r = cluster
        .node(&ids[2])
        .read(b("cart"), Some(Quorum::All))
        .await
        .unwrap();
    let mut values = r.values.clone();
    values.sort();
    assert_eq!(values, [b("apples"), b("pears")], "both kept, none lost");
    cluster
        .node(&ids[2])
        .write(
            b("cart"),
            Some(b("apples+pears")),
            RingWriteOptions {
                context: r.context,
                w: None,
            },
        )
        .await
        .unwrap();
    let r = cluster
        .any()
        .read(b("cart"), Some(Quorum::All))
        .await
        .unwrap();
    assert_eq!(r.values, [b("apples+pears")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_for_a_down_replica_are_hinted_and_delivered_when_it_is_back() {
    // Replica calls get plenty of time: on a loaded machine a stand-in slower than the
    // replica timeout would not store its hint (the write still succeeds with W=2), and
    // the test waits for every hint.
    let config = RingConfig {
        replica_timeout: Duration::from_secs(5),
        ..fast()
    };
    let mut cluster = Cluster::start(5, config).await;
    let ids: Vec<String> = cluster.nodes.keys().cloned().collect();
    let victim = ids[4].clone();
    let coordinator = cluster.node(&ids[0]).clone();
    // Keys whose preference list includes the victim.
    let keys: Vec<String> = (0..2000)
        .map(|i| format!("k{i}"))
        .filter(|k| {
            coordinator
                .locate(k.as_bytes())
                .preference
                .contains(&victim)
        })
        .take(40)
        .collect();
    cluster.stop(&victim).await;
    let victim_dir = cluster.data_of(&victim);
    // Wait until the coordinator's detector sees the victim down.
    within("victim seen down", async {
        while coordinator
            .view()
            .members
            .iter()
            .any(|m| m.node == victim && m.reachable)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for k in &keys {
        let w = put(&coordinator, k, &format!("v-{k}")).await;
        assert!(w.replicas.iter().filter(|r| r.ok).count() >= 2, "{w:?}");
    }
    // A write answers after W acknowledgements; the third (the hint) may still be on
    // its way, so wait for every hint to be stored.
    within("every write hinted for the victim", async {
        loop {
            let hints: u64 = cluster
                .nodes
                .values()
                .map(|n| n.node.hints().get(&victim).copied().unwrap_or(0))
                .sum();
            if hints >= keys.len() as u64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Restart the victim at the same address; hints drain to it.
    let back = spawn(
        &victim,
        None,
        &victim_dir,
        cluster.config.clone(),
        Some(&ids[0]),
    )
    .await
    .unwrap();
    cluster.nodes.insert(victim.clone(), back);
    within("hints delivered", async {
        loop {
            let left: u64 = cluster
                .nodes
                .values()
                .map(|n| n.node.hints().get(&victim).copied().unwrap_or(0))
                .sum();
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let v = cluster.node(&victim);
    for k in &keys {
        let state = v.store().read(k.as_bytes()).await.unwrap();
        assert_eq!(state.values(), [b(format!("v-{k}"))], "{k} on the victim");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_repairs_a_stale_replica() {
    let cluster = Cluster::start(3, fast()).await;
    let node = cluster.any().clone();
    put(&node, "doc", "v1").await;
    let preference = node.locate(b"doc").preference;
    // A newer write that reached only two of the three replicas.
    let read = node.read(b("doc"), Some(Quorum::All)).await.unwrap();
    let newer = Sibling {
        dot: Dot {
            node: "test".into(),
            counter: 1,
        },
        context: read.context,
        value: Some(b("v2")),
    };
    for p in &preference[..2] {
        cluster
            .node(p)
            .store_local(b"doc", vec![newer.clone()], false)
            .await
            .unwrap();
    }
    let stale = &preference[2];
    assert_eq!(
        cluster
            .node(stale)
            .store()
            .read(b"doc")
            .await
            .unwrap()
            .values(),
        [b("v1")]
    );
    let r = node.read(b("doc"), Some(Quorum::All)).await.unwrap();
    assert_eq!(r.values, [b("v2")]);
    assert!(
        r.replicas.iter().any(|x| &x.node == stale && x.repaired),
        "{r:?}"
    );
    within("repair lands", async {
        loop {
            let state = cluster.node(stale).store().read(b"doc").await.unwrap();
            if state.values() == [b("v2")] {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_never_comes_back_from_a_replica_that_missed_it() {
    let cluster = Cluster::start(3, fast()).await;
    let node = cluster.any().clone();
    put(&node, "gone", "value").await;
    let preference = node.locate(b"gone").preference;
    let read = node.read(b("gone"), Some(Quorum::All)).await.unwrap();
    // The delete reaches two replicas; the third still holds the value.
    let tombstone = Sibling {
        dot: Dot {
            node: "test".into(),
            counter: 9,
        },
        context: read.context,
        value: None,
    };
    for p in &preference[..2] {
        cluster
            .node(p)
            .store_local(b"gone", vec![tombstone.clone()], false)
            .await
            .unwrap();
    }
    for _ in 0..3 {
        let r = node.read(b("gone"), Some(Quorum::All)).await.unwrap();
        assert!(r.values.is_empty(), "deleted stays deleted: {r:?}");
    }
    // The old value, replicated again from the stale replica, cannot resurrect it.
    let old = cluster
        .node(&preference[2])
        .store()
        .read(b"gone")
        .await
        .unwrap();
    for p in &preference[..2] {
        cluster
            .node(p)
            .store_local(b"gone", old.siblings.clone(), false)
            .await
            .unwrap();
    }
    let r = node.read(b("gone"), Some(Quorum::All)).await.unwrap();
    assert!(r.values.is_empty());
    let _ = VersionVector::default();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_under_load_fails_no_quorum_request_and_loses_nothing() {
    let mut cluster = Cluster::start(3, fast()).await;
    let ids: Vec<String> = cluster.nodes.keys().cloned().collect();
    let coordinator = cluster.node(&ids[0]).clone();
    let stop = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for t in 0..4 {
        let (c, stop, failures, written) = (
            coordinator.clone(),
            stop.clone(),
            failures.clone(),
            written.clone(),
        );
        load.push(tokio::spawn(async move {
            for i in 0..100_000u64 {
                if stop.load(Ordering::SeqCst) == 1 {
                    return;
                }
                let key = format!("load{t}/{i}");
                let ok = c
                    .write(
                        b(key.clone()),
                        Some(b(format!("{i}"))),
                        RingWriteOptions::default(),
                    )
                    .await
                    .is_ok()
                    && c.read(b(key), None)
                        .await
                        .is_ok_and(|r| r.values.len() == 1);
                if ok {
                    written.fetch_add(1, Ordering::SeqCst);
                } else {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    within("some load before the join", async {
        while written.load(Ordering::SeqCst) < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap().to_string();
    drop(probe);
    let joined = spawn(
        &addr,
        None,
        &cluster.data_of(&addr),
        cluster.config.clone(),
        Some(&ids[1]),
    )
    .await
    .unwrap();
    cluster.nodes.insert(joined.node.id().to_string(), joined);
    cluster.converge().await;
    let at_join = written.load(Ordering::SeqCst);
    within("load after the join", async {
        while written.load(Ordering::SeqCst) < at_join + 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.store(1, Ordering::SeqCst);
    for l in load {
        within("load stops", l).await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "no failed quorum request"
    );
    // Every key written is readable through the new member too.
    let newcomer = cluster.nodes.values().last().unwrap().node.clone();
    for t in 0..4 {
        for i in 0..20u64 {
            let r = newcomer
                .read(b(format!("load{t}/{i}")), None)
                .await
                .unwrap();
            assert_eq!(r.values, [b(format!("{i}"))]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterative_and_recursive_routing_see_the_same_data() {
    let cluster = Cluster::start(3, fast()).await;
    let node = cluster.any().clone();
    let client = mw_kv::ring::client::RingClient::connect(node.id())
        .await
        .unwrap();
    // Written iteratively, read recursively.
    let w = client
        .put(b("iter"), Some(b("one")), RingWriteOptions::default())
        .await
        .unwrap();
    // The write was coordinated by a replica of the key, not by the client.
    assert!(node.locate(b"iter").preference.contains(&w.dot.node));
    assert!(w.replicas.iter().filter(|r| r.ok).count() >= 2);
    assert_eq!(node.read(b("iter"), None).await.unwrap().values, [b("one")]);
    // Written recursively, read iteratively; then replaced with the context read.
    put(&node, "rec", "two").await;
    let r = client.get(b("rec"), None).await.unwrap();
    assert_eq!(r.values, [b("two")]);
    client
        .put(
            b("rec"),
            Some(b("three")),
            RingWriteOptions {
                context: r.context,
                w: Some(Quorum::All),
            },
        )
        .await
        .unwrap();
    let all = node.read(b("rec"), Some(Quorum::All)).await.unwrap();
    assert_eq!(all.values, [b("three")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_member_hands_its_keys_off_first() {
    let mut cluster = Cluster::start(4, fast()).await;
    let ids: Vec<String> = cluster.nodes.keys().cloned().collect();
    let node = cluster.node(&ids[0]).clone();
    for i in 0..100 {
        put(&node, &format!("k{i}"), &format!("v{i}")).await;
    }
    let leaver = ids[3].clone();
    cluster.node(&leaver).leave().await.unwrap();
    cluster.stop(&leaver).await;
    cluster.converge().await;
    assert!(!node.membership().readers().contains(&leaver));
    for i in 0..100 {
        let r = node
            .read(b(format!("k{i}")), Some(Quorum::All))
            .await
            .unwrap();
        assert_eq!(r.values, [b(format!("v{i}"))], "k{i}");
        assert!(r.replicas.iter().all(|x| x.node != leaver));
    }
}
