//! Helpers shared by the queue tests: the real `mw` binary as a child process (killed
//! and reaped through its own handle when dropped), its output read on threads so every
//! wait is bounded, and an in-process broker on `127.0.0.1:0`.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

pub const MW: &str = env!("CARGO_BIN_EXE_mw");
/// Bound on any single wait for a process.
pub const WAIT: Duration = Duration::from_secs(30);

/// A child process, killed (SIGKILL on Unix) and reaped when dropped.
pub struct Proc(pub Child);

impl Proc {
    /// SIGKILLs the process now and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lines of `r`, read on a thread so the test can wait for them with a bound.
pub fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Starts `mw broker --addr 127.0.0.1:0 --data DIR` and returns it with the address from
/// its `listening on ADDR` line.
pub fn start_broker(dir: &Path) -> (Proc, String) {
    start_broker_with(dir, "127.0.0.1:0", &[])
}

/// Starts `mw broker --addr ADDR --data DIR EXTRA...` and returns it once it printed
/// `listening on ...`, with the address it printed.
pub fn start_broker_with(dir: &Path, addr: &str, extra: &[String]) -> (Proc, String) {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (proc, addr, _) = spawn_broker(dir, addr, &extra, false);
    (proc, addr)
}

/// Starts `mw broker --addr ADDR --data DIR EXTRA...` and waits for `listening on ...`;
/// with `logged`, its log (stderr) is piped at the default level (`RUST_LOG` removed)
/// and returned line by line.
fn spawn_broker(
    dir: &Path,
    addr: &str,
    extra: &[&str],
    logged: bool,
) -> (Proc, String, Option<mpsc::Receiver<String>>) {
    let mut command = Command::new(MW);
    command
        .args(["broker", "--addr", addr, "--data"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if logged {
        command.env_remove("RUST_LOG").stderr(Stdio::piped());
    } else {
        command.stderr(Stdio::null());
    }
    let mut child = command.spawn().expect("mw broker starts");
    let out = lines_of(child.stdout.take().unwrap());
    let log = child.stderr.take().map(lines_of);
    let proc = Proc(child);
    let line = out
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("mw broker printed nothing within {WAIT:?}"));
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (proc, addr, log)
}

/// Starts `mw broker --addr 127.0.0.1:0 --data DIR EXTRA...` with its log (stderr)
/// piped at the default level (`RUST_LOG` removed); returns it once it printed `listening
/// on ...`, with that address and its log lines.
pub fn start_broker_logged(dir: &Path, extra: &[&str]) -> (Proc, String, mpsc::Receiver<String>) {
    let (proc, addr, log) = spawn_broker(dir, "127.0.0.1:0", extra, true);
    (proc, addr, log.expect("the log is piped"))
}

/// Reads log lines (at most 1000, each within [`WAIT`]) until one contains `what`;
/// returns it.
pub fn log_until(log: &mpsc::Receiver<String>, what: &str) -> String {
    for _ in 0..1000 {
        let line = log
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no log line with {what:?} within {WAIT:?}"));
        if line.contains(what) {
            return line;
        }
    }
    panic!("no log line with {what:?} in 1000 lines");
}

/// What a finished `mw` client process printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// Runs `mw ARGS` with `stdin` to completion (bounded by [`WAIT`]; killed if it takes
/// longer).
pub fn run_mw(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(MW)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mw starts");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let (tx, rx) = mpsc::channel();
    let collect = |r: Box<dyn Read + Send>, tx: mpsc::Sender<(bool, Vec<String>)>, is_out| {
        thread::spawn(move || {
            let lines = BufReader::new(r).lines().map_while(Result::ok).collect();
            let _ = tx.send((is_out, lines));
        });
    };
    collect(Box::new(child.stdout.take().unwrap()), tx.clone(), true);
    collect(Box::new(child.stderr.take().unwrap()), tx, false);
    let mut proc = Proc(child);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let (is_out, lines) = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("mw {args:?} did not finish within {WAIT:?}"));
        if is_out {
            stdout = lines;
        } else {
            stderr = lines;
        }
    }
    // Both pipes are closed: the process has exited (or closed them on its way out).
    let status = proc.0.wait().expect("wait for mw");
    Output {
        status,
        stdout,
        stderr,
    }
}

/// What a finished `mw` process wrote, as bytes.
#[derive(Debug)]
pub struct RawOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs `mw ARGS` with `stdin` bytes and extra environment to completion (bounded by
/// [`WAIT`]; killed if it takes longer); `MW_BROKER` is removed unless `env` sets it.
pub fn run_mw_raw(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> RawOutput {
    let mut cmd = Command::new(MW);
    cmd.args(args).env_remove("MW_BROKER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mw starts");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // Written on a thread: a child that does not read must not block the test.
    thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let (tx, rx) = mpsc::channel();
    let collect = |mut r: Box<dyn Read + Send>, tx: mpsc::Sender<(bool, Vec<u8>)>, is_out| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let _ = tx.send((is_out, buf));
        });
    };
    collect(Box::new(child.stdout.take().unwrap()), tx.clone(), true);
    collect(Box::new(child.stderr.take().unwrap()), tx, false);
    let mut proc = Proc(child);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let (is_out, bytes) = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("mw {args:?} did not finish within {WAIT:?}"));
        if is_out {
            stdout = bytes;
        } else {
            stderr = bytes;
        }
    }
    let status = proc.0.wait().expect("wait for mw");
    RawOutput {
        status,
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// An address nothing listens on (bound, read back, released).
pub fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// An in-process broker (the same assembly as `mw broker`) on `127.0.0.1:0`.
pub struct TestBroker {
    pub addr: String,
    pub queues: mw::queue::QueueManager,
    server: Option<mw::rpc::RunningServer>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start(queue: mw::queue::Config) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let mut config = mw::broker::BrokerConfig::new(dir.path());
        // Events must fit in a queue message (durable subscriptions store them there):
        // a test that lowers the message limit lowers the event limit with it.
        config.pubsub.max_event_size = config.pubsub.max_event_size.min(
            queue
                .max_message_size
                .saturating_sub(mw::broker::DURABLE_HEADROOM),
        );
        config.queue = queue;
        let broker = mw::broker::open(config).await.expect("broker opens");
        let queues = broker.queues.clone();
        let server = broker
            .server
            .spawn("127.0.0.1:0")
            .await
            .expect("broker listens");
        TestBroker {
            addr: server.local_addr().to_string(),
            queues,
            server: Some(server),
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let _ = self.queues.close().await;
    }
}

/// Runs each `mw` command line of `cases` and checks it fails with exit code 1 and one
/// line on stderr containing the text paired with it.
pub fn assert_one_line_refusals(cases: &[(&[&str], &str)]) {
    for (args, says) in cases {
        let out = run_mw(args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert_eq!(out.stderr.len(), 1, "{args:?}: {out:?}");
        assert!(out.stderr[0].contains(says), "{args:?}: {out:?}");
    }
}
