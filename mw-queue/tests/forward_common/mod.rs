//! Helpers shared by the store-and-forward tests: fake next hops and bounded waits.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use mw_queue::forward::{ForwarderConfig, HopError, NextHop};
use mw_queue::{Config, ConsumerOptions, Message, QueueManager};
use tokio::sync::Notify;

/// Upper bound for any wait in these tests: a hang fails the test instead of
/// blocking CI. Never an assertion about speed.
pub const BOUND: Duration = Duration::from_secs(30);

/// Awaits `fut`, failing the test if it takes longer than [`BOUND`].
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {BOUND:?}"))
}

/// Fast retries so tests spend little time backing off.
pub fn fast() -> ForwarderConfig {
    ForwarderConfig {
        max_batch: 16,
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(20),
        ..ForwarderConfig::default()
    }
}

pub async fn open(dir: &std::path::Path) -> QueueManager {
    QueueManager::open(dir, Config::default()).await.unwrap()
}

/// A next hop in front of another, that can be switched off (it then fails with
/// `Unavailable` without passing anything on), records the size of every batch
/// passed on, and can "crash" after the inner hop confirmed: it then never answers.
pub struct Switch {
    inner: Arc<dyn NextHop>,
    up: AtomicBool,
    pub batches: Mutex<Vec<usize>>,
    pub failures: AtomicUsize,
    /// Notified (a permit is stored) on every failed send: a readiness signal that
    /// the forwarder has met the hop down.
    pub failed: Notify,
    /// Once set, the next confirmed send hangs forever and `crashed` is notified.
    hang_after_confirm: AtomicBool,
    pub crashed: Notify,
    /// Messages whose body equals this are refused for good.
    refuse_body: Mutex<Option<Vec<u8>>>,
}

impl Switch {
    pub fn new(inner: Arc<dyn NextHop>, up: bool) -> Arc<Switch> {
        Arc::new(Switch {
            inner,
            up: AtomicBool::new(up),
            batches: Mutex::new(Vec::new()),
            failures: AtomicUsize::new(0),
            failed: Notify::new(),
            hang_after_confirm: AtomicBool::new(false),
            crashed: Notify::new(),
            refuse_body: Mutex::new(None),
        })
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    pub fn hang_after_next_confirm(&self) {
        self.hang_after_confirm.store(true, Ordering::SeqCst);
    }

    pub fn refuse(&self, body: &[u8]) {
        *self.refuse_body.lock().unwrap() = Some(body.to_vec());
    }
}

impl NextHop for Switch {
    fn send<'a>(
        &'a self,
        queue: &'a str,
        msgs: Vec<Message>,
    ) -> BoxFuture<'a, Result<(), HopError>> {
        Box::pin(async move {
            if !self.up.load(Ordering::SeqCst) {
                self.failures.fetch_add(1, Ordering::SeqCst);
                self.failed.notify_one();
                return Err(HopError::Unavailable("switched off".into()));
            }
            if let Some(bad) = &*self.refuse_body.lock().unwrap() {
                if msgs.iter().any(|m| &m.body()[..] == bad.as_slice()) {
                    return Err(HopError::Refused("poison".into()));
                }
            }
            let n = msgs.len();
            self.inner.send(queue, msgs).await?;
            self.batches.lock().unwrap().push(n);
            if self.hang_after_confirm.swap(false, Ordering::SeqCst) {
                self.crashed.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }
}

/// Receives `n` messages from `queue` of `qm`, acking each; returns their bodies.
pub async fn drain(qm: &QueueManager, queue: &str, n: usize) -> Vec<String> {
    let mut c = qm.queue(queue).consumer(ConsumerOptions {
        prefetch: 64,
        ..Default::default()
    });
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let d = bounded("receive", c.recv()).await.unwrap();
        out.push(String::from_utf8(d.body().to_vec()).unwrap());
        d.ack().await.unwrap();
    }
    out
}

/// `prefix-0`, `prefix-1`, ...
pub fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}
