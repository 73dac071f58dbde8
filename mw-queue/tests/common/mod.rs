//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::FutureExt;
use mw_queue::{Clock, Config, Consumer, Delivery, FsyncPolicy, QueueManager};

/// A start time for manual clocks (2026-01-01).
pub const T0: u64 = 1_767_225_600_000;

/// A config with a manual clock, short visibility timeout and no fsync (tests
/// that need durability against power loss are not possible in-process anyway).
pub fn manual(clock: &Clock) -> Config {
    Config {
        fsync: FsyncPolicy::Never,
        clock: clock.clone(),
        visibility_timeout: Duration::from_secs(10),
        ..Config::default()
    }
}

pub async fn open(dir: &Path, config: Config) -> QueueManager {
    QueueManager::open(dir, config)
        .await
        .expect("open queue manager")
}

/// Segment files in `dir`, sorted.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// `Some(delivery)` if one is available without waiting for anything.
pub fn try_recv(c: &mut Consumer) -> Option<Delivery> {
    c.recv().now_or_never().map(|r| r.expect("recv"))
}

/// Receives with a generous bound so a bug fails the test instead of hanging it.
pub async fn recv(c: &mut Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), c.recv())
        .await
        .expect("no delivery within 20 s")
        .expect("recv")
}

pub fn body(d: &Delivery) -> String {
    String::from_utf8(d.body().to_vec()).unwrap()
}
