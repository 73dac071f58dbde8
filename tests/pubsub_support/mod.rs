//! Shared helpers for the pub/sub facade tests: an in-process broker on 127.0.0.1:0 with a
//! temporary data directory, and a bounded wait for broker-side state.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use mw::pubsub::remote::RemoteStats;
use mw::pubsub::RemoteBus;

/// A broker serving on 127.0.0.1:0 with its own temp data directory.
pub struct TestBroker {
    pub server: mw::rpc::RunningServer,
    pub broker: mw::broker::Broker,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

/// Starts a broker on a fresh temp directory.
pub async fn start_broker() -> TestBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    start_broker_in(dir).await
}

/// Starts a broker on `dir` (to restart one on the same data).
pub async fn start_broker_in(dir: tempfile::TempDir) -> TestBroker {
    let broker = mw::broker::open(mw::broker::BrokerConfig::new(dir.path()))
        .await
        .expect("broker opens");
    let server = broker
        .server
        .clone()
        .spawn("127.0.0.1:0")
        .await
        .expect("broker binds");
    let addr = server.local_addr().to_string();
    TestBroker {
        server,
        broker,
        addr,
        dir,
    }
}

impl TestBroker {
    /// Shuts the server down and closes the queue manager, returning the data directory.
    pub async fn stop(self) -> tempfile::TempDir {
        self.server.shutdown().await;
        self.broker.bus.close();
        self.broker.queues.close().await.expect("queues close");
        self.dir
    }

    pub async fn bus(&self) -> RemoteBus {
        RemoteBus::connect(&self.addr).await.expect("connects")
    }
}

/// Polls the broker's stats until `cond` holds: at most 500 tries and 10 s. Broker-side
/// clean-up after a peer disconnects is asynchronous (the broker notices the closed socket
/// on its own schedule), so tests wait for the state they expect, with a bound.
pub async fn wait_for_stats(
    bus: &RemoteBus,
    what: &str,
    cond: impl Fn(&RemoteStats) -> bool,
) -> RemoteStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = None;
    for _ in 0..500 {
        let stats = bus.stats().await.expect("stats");
        if cond(&stats) {
            return stats;
        }
        last = Some(stats);
        if tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("broker never reached state: {what}; last stats {last:?}");
}

/// Awaits `fut` for at most 10 s, so a lost event fails the test instead of hanging it.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
