//! What `mw broker` logs for an operator, on stderr that is not a
//! terminal (so without colour codes), as text and as JSON lines.

mod queue_support;

use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;

use queue_support::{lines_of, run_mw, Proc, MW, WAIT};

fn broker(dir: &std::path::Path, extra: &[&str]) -> (Proc, String, Receiver<String>) {
    queue_support::start_broker_logged(dir, extra)
}

/// Reads stderr lines (bounded) until one contains `what`; returns it. Every line read
/// is checked for colour codes.
fn until(err: &Receiver<String>, what: &str) -> String {
    for _ in 0..1000 {
        let line = err
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no log line with {what:?} within {WAIT:?}"));
        assert!(!line.contains('\u{1b}'), "colour codes on a pipe: {line:?}");
        if line.contains(what) {
            return line;
        }
    }
    panic!("no log line with {what:?} in 1000 lines");
}

#[test]
fn the_broker_logs_its_start_connections_and_refusals_without_colour_on_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr, err) = broker(
        dir.path(),
        &["--max-message-size", "2KiB", "--max-event-size", "1KiB"],
    );
    let start = until(&err, "broker starting");
    assert!(start.contains(" INFO "), "{start}");
    for field in [
        "version=",
        "data_dir=",
        "live_messages=",
        "open_ms=",
        "max_message_size=2048",
    ] {
        assert!(start.contains(field), "{field} missing: {start}");
    }
    until(&err, "listening");

    let out = run_mw(&["send", "--broker", &addr, "q", &"x".repeat(3000)], None);
    assert!(!out.status.success());
    let opened = until(&err, "connection opened");
    assert!(opened.contains("peer=127.0.0.1:"), "{opened}");
    let refused = until(&err, "refused sends");
    assert!(
        refused.contains("max message size of 2048 bytes"),
        "{refused}"
    );
    let closed = until(&err, "connection closed");
    assert!(closed.contains("reason=\"closed by the peer\""), "{closed}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr, err) = broker(dir.path(), &["--log-format", "json"]);
    let start = until(&err, "broker starting");
    let v: serde_json::Value = serde_json::from_str(&start).expect("a JSON line");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["message"], "broker starting: recovery done");
    assert!(v["fields"]["data_dir"].is_string(), "{v}");
    let out = run_mw(&["queues", "--broker", &addr], None);
    assert!(out.status.success());
    let opened: serde_json::Value =
        serde_json::from_str(&until(&err, "connection opened")).unwrap();
    assert!(opened["fields"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

/// A broker whose stderr reader went away (a log shipper that died, `| head`) keeps
/// serving: a failed log write is not reported by panicking on that same stderr.
#[test]
fn the_broker_keeps_serving_when_its_stderr_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(MW)
        .args(["broker", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    drop(child.stderr.take());
    let _broker = Proc(child);
    let addr = out
        .recv_timeout(WAIT)
        .unwrap()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    for body in ["a", "b", "c"] {
        let out = run_mw(&["send", "--broker", &addr, "q", body], None);
        assert!(out.status.success(), "{:?}", out.stderr);
    }
}

/// A store-and-forward route is logged when it is found down (`warn`) and when its next
/// hop takes messages again (`info`).
#[test]
fn routes_going_down_and_up_are_logged() {
    let hop_addr = queue_support::dead_addr();
    let dir = tempfile::tempdir().unwrap();
    let route = format!("orders=127.0.0.1:{}", hop_addr.rsplit(':').next().unwrap());
    let (_router, addr, err) = broker(dir.path(), &["--route", &route]);
    let out = run_mw(&["send", "--broker", &addr, "orders", "o1"], None);
    assert!(out.status.success(), "{:?}", out.stderr);
    let down = until(&err, "route down");
    assert!(down.contains(" WARN "), "{down}");
    // The next hop comes up at that address.
    let hop_dir = tempfile::tempdir().unwrap();
    let (_hop, _) = queue_support::start_broker_with(hop_dir.path(), &hop_addr, &[]);
    let up = until(&err, "route up");
    assert!(up.contains(" INFO "), "{up}");
}

/// A subscriber that stops reading is logged once its broker-side buffer overflows and
/// events start being dropped (once, not per event).
#[test]
fn a_slow_consumer_starting_to_drop_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr, err) = broker(dir.path(), &[]);
    let mut child = Command::new(MW)
        .args(["sub", "--broker", &addr, "flood", "--buffer", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sub_err = lines_of(child.stderr.take().unwrap());
    let sub = Proc(child);
    assert!(sub_err
        .recv_timeout(WAIT)
        .unwrap()
        .starts_with("subscribed to"));
    // Stopped: it grants no more credit, so its broker-side buffer (1 event) overflows.
    let stopped = Command::new("kill")
        .args(["-STOP", &sub.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    // More than the credit window and the socket buffers hold.
    let body = "x".repeat(64 << 10);
    let lines: String = (0..400).map(|i| format!("{i} {body}\n")).collect();
    let out = run_mw(&["pub", "--broker", &addr, "flood"], Some(&lines));
    assert!(out.status.success(), "{:?}", out.stderr);
    let line = until(&err, "slow consumer");
    assert!(
        line.contains("dropping events") && line.contains("capacity=1"),
        "{line}"
    );
    drop(sub); // SIGKILL works on a stopped process
}
