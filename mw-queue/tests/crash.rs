//! Crash safety with a real crash: a child process (this test binary, re-run
//! with an environment variable) sends messages and prints each acknowledged
//! id; the parent kills it with SIGKILL mid-stream, reopens the directory and
//! checks that every acknowledged message is there.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use mw_queue::{Config, ConsumerOptions, Message, QueueManager};

const DIR_VAR: &str = "MW_QUEUE_CRASH_DIR";

/// The child side; does nothing unless started by the parent test.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let qm = QueueManager::open(&dir, Config::default()).await.unwrap();
        let tasks: Vec<_> = (0..16u128)
            .map(|t| {
                let q = qm.queue("q");
                tokio::spawn(async move {
                    // Bounded so an orphaned child cannot run forever.
                    for i in (t..1_000_000).step_by(16) {
                        q.send(Message::new(format!("m{i}")).with_id(i))
                            .await
                            .unwrap();
                        println!("ACK {i}");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[tokio::test]
async fn killed_process_keeps_every_acknowledged_send() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let acked: HashSet<u128> = tokio::task::spawn_blocking(move || {
        let mut acked = HashSet::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.insert(id.parse::<u128>().unwrap());
                if acked.len() == 2000 {
                    break;
                }
            }
        }
        acked
    })
    .await
    .unwrap();
    child.kill().unwrap(); // SIGKILL: no destructors, no final flush
    child.wait().unwrap();
    assert_eq!(acked.len(), 2000, "child stopped early");

    let qm = QueueManager::open(dir.path(), Config::default())
        .await
        .unwrap();
    let depth = qm.stats("q").depth;
    assert!(depth >= 2000, "only {depth} messages survived");
    let mut c = qm.queue("q").consumer(ConsumerOptions {
        prefetch: 256,
        ..Default::default()
    });
    let mut stored = HashSet::new();
    for _ in 0..depth {
        let d = c.recv().await.unwrap();
        assert_eq!(&d.body()[..], format!("m{}", d.id().0).as_bytes());
        assert!(stored.insert(d.id().0), "stored twice: {}", d.id());
        d.ack().await.unwrap();
    }
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}
