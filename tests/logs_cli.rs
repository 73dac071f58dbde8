//! Issue 11, deliver 2: what `mw broker` logs for an operator, on stderr that is not a
//! terminal (so without colour codes), as text and as JSON lines.

mod queue_support;

use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;

use queue_support::{lines_of, run_mw, Proc, MW, WAIT};

/// Starts a broker with stderr piped; returns it, its address and its stderr lines.
fn broker(dir: &std::path::Path, extra: &[&str]) -> (Proc, String, Receiver<String>) {
    let mut child = Command::new(MW)
        .args(["broker", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    let proc = Proc(child);
    let line = out.recv_timeout(WAIT).unwrap();
    let addr = line.strip_prefix("listening on ").unwrap().to_string();
    (proc, addr, err)
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
