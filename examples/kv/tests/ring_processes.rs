//! Five `mw-kv serve` processes on loopback, as the README walk-through runs them:
//! writes under load with W=2, one node SIGKILLed while the writes go on (every W=2
//! write still succeeds, through hints), the node restarted at its address, its hints
//! delivered, and every acknowledged write read back (lost 0).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{within, NodeProcess};
use mw::rpc::Channel;
use mw_kv::ring::service::RingKvClient;
use mw_kv::ring::types::{Quorum, RingWriteOptions};

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn start(data: &std::path::Path, addr: &str, seed: Option<&str>) -> NodeProcess {
    let mut args = vec!["--addr", addr, "--fsync", "always"];
    match seed {
        Some(s) => args.extend(["--join", s]),
        None => args.push("--ring"),
    }
    NodeProcess::start_with(data, &args)
}

/// Pairs × ranges whose pair Merkle trees differ (or cannot be compared yet).
async fn merkle_mismatches(addrs: &[String]) -> usize {
    use mw_kv::ring::anti_entropy::{ring_fingerprint, RANGES};
    use mw_kv::ring::service::ReplicaClient;
    let view = match client(&addrs[0]).await.ring().await {
        Ok(v) => v,
        Err(_) => return usize::MAX,
    };
    let ring = mw_kv::ring::hash::Ring::new(addrs.iter().cloned(), view.tokens);
    let fingerprint = ring_fingerprint(&ring, view.n);
    let mut replicas = Vec::new();
    for a in addrs {
        replicas.push(ReplicaClient::new(Channel::connect(a).await.unwrap()));
    }
    let mut bad = 0;
    for i in 0..addrs.len() {
        for j in i + 1..addrs.len() {
            for range in 0..RANGES {
                let a = replicas[i]
                    .merkle(range, addrs[j].clone(), fingerprint)
                    .await;
                let b = replicas[j]
                    .merkle(range, addrs[i].clone(), fingerprint)
                    .await;
                match (a, b) {
                    (Ok(Some(a)), Ok(Some(b))) if a.get(1) == b.get(1) => {}
                    _ => bad += 1,
                }
            }
        }
    }
    bad
}

async fn client(addr: &str) -> RingKvClient {
    RingKvClient::new(Channel::connect(addr).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_survive_a_sigkill_with_hints_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = (0..5).map(|_| free_addr()).collect();
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let seed = (i > 0).then(|| addrs[0].as_str());
        nodes.push(start(&dir.path().join(format!("n{i}")), a, seed));
    }
    let coordinators: Vec<RingKvClient> = {
        let mut v = Vec::new();
        for a in &addrs[..4] {
            v.push(client(a).await);
        }
        v
    };
    // Every member sees five reachable members.
    within("ring of five", async {
        loop {
            let view = coordinators[0].ring().await.unwrap();
            if view.members.len() == 5 && view.members.iter().all(|m| m.reachable) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let ambiguous = Arc::new(Mutex::new(Vec::<String>::new()));
    let phase = Arc::new(tokio::sync::watch::channel(0u32).0);
    let mut writers = Vec::new();
    for (w, c) in coordinators.iter().enumerate() {
        let (c, acked, failures, ambiguous, mut phase) = (
            c.clone(),
            acked.clone(),
            failures.clone(),
            ambiguous.clone(),
            phase.subscribe(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0..100_000u32 {
                if *phase.borrow_and_update() >= 3 {
                    return;
                }
                let (k, v) = (format!("w{w}/{i}"), format!("v{w}.{i}"));
                let opts = RingWriteOptions {
                    context: Default::default(),
                    w: Some(Quorum::Count(2)),
                };
                // A write in flight to the member at the instant it is killed gets an
                // ambiguous answer ("may have been applied"): it is not coordinated again
                // by another replica (that could store it twice, see ring_faults.rs), so
                // the client retries it, as a real client must.
                let mut result = Err(String::new());
                for attempt in 0..3 {
                    match c
                        .put(Bytes::from(k.clone()), Bytes::from(v.clone()), opts.clone())
                        .await
                    {
                        Ok(_) => {
                            result = Ok(());
                            break;
                        }
                        Err(e)
                            if e.to_string().contains("may have been applied") && attempt < 2 =>
                        {
                            ambiguous.lock().unwrap().push(format!("{k}: {e}"));
                        }
                        Err(e) => {
                            result = Err(format!("{k}: {e}"));
                            break;
                        }
                    }
                }
                match result {
                    Ok(()) => {
                        acked.lock().unwrap().insert(k, v);
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        }));
    }
    let count = || acked.lock().unwrap().len();
    within("writes before the kill", async {
        while count() < 300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    nodes[4].kill(); // SIGKILL the fifth node (not a coordinator) under load
    phase.send_replace(1);
    let at_kill = count();
    within("writes while it is down", async {
        while count() < at_kill + 600 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let hinted: u64 = {
        let view = coordinators[0].ring().await.unwrap();
        let mut total = view.hints.values().sum::<u64>();
        for c in &coordinators[1..] {
            total += c.ring().await.unwrap().hints.values().sum::<u64>();
        }
        total
    };
    assert!(hinted > 0, "writes for the dead node were hinted");
    // Restart it at its address; hints drain to it.
    nodes[4] = start(&dir.path().join("n4"), &addrs[4], Some(&addrs[0]));
    phase.send_replace(3);
    for w in writers {
        within("writers stop", w).await.unwrap();
    }
    assert!(
        failures.lock().unwrap().is_empty(),
        "every W=2 write succeeded: {:?}",
        failures.lock().unwrap().first()
    );
    // Only writes in flight to the killed member at that instant, at most one per
    // writer (each has one write in flight), were ambiguous.
    let ambiguous = ambiguous.lock().unwrap().clone();
    println!("ambiguous writes, retried: {ambiguous:?}");
    assert!(ambiguous.len() <= coordinators.len(), "{ambiguous:?}");
    within("hints delivered", async {
        loop {
            let mut left = 0;
            for c in &coordinators {
                left += c.ring().await.unwrap().hints.values().sum::<u64>();
            }
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Anti-entropy: for every range, every pair of members has equal Merkle trees over
    // the keys they both replicate, within a bounded wait.
    // Comparing is itself 2 × 10 pairs × 64 ranges of tree builds, and a range is
    // visited every 128 s by default: the bound is generous for a loaded CI machine.
    let mut last = usize::MAX;
    let matched = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            last = merkle_mismatches(&addrs).await;
            if last == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        matched.is_ok(),
        "merkle trees still differ after 180 s: {last} pair-ranges"
    );
    // Nothing acknowledged is lost: every key reads back (R = all, so the restarted
    // node answers too).
    let acked = acked.lock().unwrap().clone();
    let reader = client(&addrs[4]).await;
    let mut lost = Vec::new();
    for (k, v) in &acked {
        let r = reader
            .get(Bytes::from(k.clone()), Some(Quorum::All))
            .await
            .unwrap();
        let v = Bytes::from(v.clone());
        // A retried ambiguous write may have been applied twice: two concurrent siblings
        // of the same value (a blind write does not replace what it did not read).
        let retried = ambiguous.iter().any(|a| a.starts_with(&format!("{k}: ")));
        let ok = if retried {
            !r.values.is_empty() && r.values.len() <= 2 && r.values.iter().all(|x| *x == v)
        } else {
            r.values == [v]
        };
        if !ok {
            lost.push((k.clone(), r.values));
        }
    }
    assert!(
        lost.is_empty(),
        "lost {} of {}: {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
}
