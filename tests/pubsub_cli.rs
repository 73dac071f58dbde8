//! `mw broker`, `mw pub` and `mw sub` as separate processes, as a user runs them: the real
//! binary, readiness read from its output, every child killed through its own handle.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const MW: &str = env!("CARGO_BIN_EXE_mw");
const WAIT: Duration = Duration::from_secs(20);

/// A child process killed and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines on a thread so the test can wait with a bound.
fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
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

fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("no line from {what} within {WAIT:?}"))
}

fn start_broker(dir: &std::path::Path) -> (Proc, String) {
    let mut child = Command::new(MW)
        .args(["broker", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mw broker starts");
    let out = lines_of(child.stdout.take().unwrap());
    let proc = Proc(child);
    let line = next_line(&out, "mw broker");
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (proc, addr)
}

/// Starts `mw sub` and waits for its `subscribed to` line on stderr.
fn start_sub(addr: &str, extra: &[&str]) -> (Proc, mpsc::Receiver<String>) {
    let mut child = Command::new(MW)
        .args(["sub", "--broker", addr])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mw sub starts");
    let out = lines_of(child.stdout.take().unwrap());
    let err: ChildStderr = child.stderr.take().unwrap();
    let err = lines_of(err);
    let proc = Proc(child);
    let ready = next_line(&err, "mw sub stderr");
    assert!(ready.starts_with("subscribed to"), "{ready:?}");
    (proc, out)
}

fn run_pub(addr: &str, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(MW)
        .args(["pub", "--broker", addr])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mw pub starts");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    // Bounded: a hung `mw pub` fails the test (and is killed) instead of hanging the run.
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("mw pub did not exit within 30 s");
        }
    };
    assert!(
        out.status.success(),
        "mw pub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mw_pub_and_mw_sub_talk_through_a_real_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());

    let (mut sub, out) = start_sub(&addr, &["sensors.*.temp", "--count", "3"]);
    run_pub(&addr, &["sensors.kitchen.temp", "21.5"], None);
    run_pub(&addr, &["sensors.hall.temp"], Some("19.0\n19.5\n"));
    run_pub(&addr, &["sensors.kitchen.humidity", "40"], None);
    let got: Vec<String> = (0..3).map(|_| next_line(&out, "mw sub")).collect();
    assert_eq!(
        got,
        [
            "sensors.kitchen.temp 21.5",
            "sensors.hall.temp 19.0",
            "sensors.hall.temp 19.5"
        ]
    );
    // --count 3: it exits by itself, successfully.
    let status = sub.0.wait().unwrap();
    assert!(status.success());
}

#[test]
fn mw_sub_durable_gets_what_was_published_while_it_was_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());

    // Create the durable subscription, then stop the subscriber.
    let (sub, _out) = start_sub(&addr, &["orders.>", "--durable", "shipping"]);
    drop(sub);
    run_pub(&addr, &["orders.eu"], Some("one\ntwo\n"));

    let (mut sub, out) = start_sub(
        &addr,
        &["orders.>", "--durable", "shipping", "--count", "2"],
    );
    assert_eq!(next_line(&out, "durable mw sub"), "orders.eu one");
    assert_eq!(next_line(&out, "durable mw sub"), "orders.eu two");
    assert!(sub.0.wait().unwrap().success());
}

#[test]
fn unreachable_broker_and_bad_topic_are_reported_plainly() {
    let out = Command::new(MW)
        .args(["pub", "--broker", "127.0.0.1:1", "a.b", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach broker at 127.0.0.1:1"), "{err}");

    let out = Command::new(MW)
        .args(["sub", "--broker", "127.0.0.1:1", "a..b"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty token"), "{err}");
}

fn start_broker_with_stderr(dir: &std::path::Path) -> (Proc, String, mpsc::Receiver<String>) {
    let mut child = Command::new(MW)
        .args(["broker", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mw broker starts");
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    let proc = Proc(child);
    let line = next_line(&out, "mw broker");
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (proc, addr, err)
}

fn signal(proc: &Proc, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (bounded) for `proc` to exit; returns how long it took.
fn exits_within(proc: &mut Proc, bound: Duration) -> Duration {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            let _ = status;
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "process still running after {bound:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// An idle `mw sub` does not hold the broker's shutdown for the whole
/// drain timeout (10 s): its stream ends at once and it says why.
#[test]
fn broker_shutdown_ends_an_idle_subscription_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, addr, _err) = start_broker_with_stderr(dir.path());
    let mut child = Command::new(MW)
        .args(["sub", "--broker", &addr, "idle.>"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mw sub starts");
    let err = lines_of(child.stderr.take().unwrap());
    let mut sub = Proc(child);
    assert!(next_line(&err, "mw sub").starts_with("subscribed to"));
    signal(&broker, "-TERM");
    let took = exits_within(&mut broker, WAIT);
    assert!(
        took < Duration::from_secs(5),
        "broker took {took:?} to shut down"
    );
    exits_within(&mut sub, WAIT);
    let why = next_line(&err, "mw sub error");
    assert!(why.contains("server shutting down"), "{why:?}");
}

/// A second signal during the drain exits at once. The drain is held
/// by a stopped subscriber whose stream waits for credit (not idle).
#[test]
fn second_signal_during_the_drain_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, addr, err) = start_broker_with_stderr(dir.path());
    let (stuck, _stuck_out) = start_sub(&addr, &["flood"]);
    let (mut witness, witness_out) = start_sub(&addr, &["flood", "--count", "400"]);
    // 400 × 64 KiB: more than the socket buffers and the connection's outgoing buffer
    // hold, so the stopped subscriber's stream is left waiting to send, not idle.
    let body = "x".repeat(64 << 10);
    let lines: String = (0..400).map(|i| format!("{i} {body}\n")).collect();
    signal(&stuck, "-STOP");
    run_pub(&addr, &["flood"], Some(&lines));
    // The witness got all 400: the broker fanned them out to the stopped subscriber too.
    for _ in 0..400 {
        next_line(&witness_out, "witness");
    }
    exits_within(&mut witness, WAIT);
    signal(&broker, "-TERM");
    loop {
        let line = next_line(&err, "broker stderr");
        if line.contains("shutting down") {
            break;
        }
    }
    signal(&broker, "-TERM");
    let took = exits_within(&mut broker, WAIT);
    assert!(
        took < Duration::from_secs(5),
        "broker took {took:?} after the second signal"
    );
    drop(stuck);
}

/// Retained messages survive a broker restart (kept in its data
/// directory), and an empty retained publish clears the topic's retained message (MQTT's
/// convention) instead of storing an empty one.
#[test]
fn retained_messages_survive_a_restart_and_an_empty_one_clears() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, addr, _err) = start_broker_with_stderr(dir.path());
    run_pub(&addr, &["sensors.x", "21", "--retain"], None);
    run_pub(&addr, &["sensors.y", "5", "--retain"], None);
    run_pub(&addr, &["sensors.y", "", "--retain"], None);
    signal(&broker, "-TERM");
    exits_within(&mut broker, WAIT);
    drop(broker);

    let (_broker, addr) = start_broker(dir.path());
    let (_sub, out) = start_sub(&addr, &["sensors.*", "--count", "2"]);
    run_pub(&addr, &["sensors.z", "live"], None);
    let got: Vec<String> = (0..2).map(|_| next_line(&out, "mw sub")).collect();
    assert_eq!(got, ["sensors.x 21", "sensors.z live"]);
}

/// An out-of-range `--buffer` is refused as given, not silently cut
/// to 4294967295.
#[test]
fn mw_sub_refuses_an_out_of_range_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let child = Command::new(MW)
        .args(["sub", "--broker", &addr, "a.b", "--buffer", "100000000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mw sub starts");
    let mut proc = Proc(child);
    let err = lines_of(proc.0.stderr.take().unwrap());
    exits_within(&mut proc, WAIT);
    let status = proc.0.wait().unwrap();
    assert!(!status.success());
    let text: Vec<String> = err.try_iter().collect();
    assert!(
        text.iter().any(|l| l.contains("buffer of 100000000000")),
        "{text:?}"
    );
}
