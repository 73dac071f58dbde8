//! Helpers shared by mw-kv's integration tests: a node served over each transport, a
//! bound on every wait, and the `mw-kv` binary as a child process.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mw::rpc::{Channel, RunningServer, Server};
use mw_kv::{Config, Kv, KvClient, KvNode, KvServiceServer};

/// Every wait in a test is bounded by this, so a bug fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(20);

/// Awaits `fut` for at most [`STEP`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?}: {what}"))
}

/// The transports a node is served over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `127.0.0.1:0`.
    Tcp,
    /// `unix:<tempdir>/kv.sock`.
    Unix,
    /// `inproc:0`.
    InProc,
}

pub const ALL: [Transport; 3] = [Transport::Tcp, Transport::Unix, Transport::InProc];

/// A node serving `kv` over a transport, with its address and a temp dir that lives as
/// long as it does.
pub struct TestNode {
    pub kv: Kv,
    pub addr: String,
    pub server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Serves `kv` over `t`.
    pub async fn serve(kv: Kv, t: Transport) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let addr = match t {
            Transport::Tcp => "127.0.0.1:0".to_string(),
            Transport::Unix => format!("unix:{}", dir.path().join("kv.sock").display()),
            Transport::InProc => "inproc:0".to_string(),
        };
        let server = Server::builder()
            .add(KvServiceServer::new(KvNode::new(kv.clone())))
            .build()
            .spawn(&addr)
            .await
            .expect("serve");
        let addr = server.local_addr().to_string();
        TestNode {
            kv,
            addr,
            server: Some(server),
            _dir: dir,
        }
    }

    /// A memory-backed node over `t`.
    pub async fn memory(t: Transport) -> TestNode {
        TestNode::serve(Kv::memory(Config::default()), t).await
    }

    /// A new client connection.
    pub async fn client(&self) -> KvClient {
        KvClient::new(Channel::connect(&self.addr).await.expect("connect"))
    }

    /// Stops as `mw-kv serve` does: stop accepting, end watches, drain, sync.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.begin_shutdown();
            self.kv.end_watches();
            s.shutdown().await;
        }
        self.kv.close().await.unwrap();
    }
}

/// The `mw-kv` binary of this build.
pub fn mw_kv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mw-kv"))
}

/// A `mw-kv serve` child process, killed by its handle when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub addr: String,
}

impl NodeProcess {
    /// Starts `mw-kv serve --addr 127.0.0.1:0 --data DIR EXTRA…` and waits for its
    /// `listening on` line.
    pub fn start(data: &std::path::Path, extra: &[&str]) -> NodeProcess {
        let mut args = vec!["--addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        NodeProcess::start_with(data, &args)
    }

    /// Starts `mw-kv serve --data DIR ARGS…` (ARGS include `--addr`) and waits for its
    /// `listening on` line.
    pub fn start_with(data: &std::path::Path, args: &[&str]) -> NodeProcess {
        let mut child = mw_kv()
            .args(["serve", "--data"])
            .arg(data)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mw-kv serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read ready line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("unexpected first line {line:?}")
            })
            .to_string();
        NodeProcess { child, addr }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
