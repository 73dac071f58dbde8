//! `--metrics-addr` serves Prometheus text on `/metrics` (the
//! broker's queues, bus and routes, and every server's connections and calls), scraped
//! here over a real socket.

mod queue_support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;

use queue_support::{lines_of, run_mw, Proc, MW, WAIT};

/// Starts `mw ARGS --metrics-addr 127.0.0.1:0`; returns it, the address it prints on
/// stdout, and the metrics address from its log. Its stderr is kept read.
fn start(args: &[&str]) -> (Proc, String, String) {
    let mut child = Command::new(MW)
        .args(args)
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let err: Receiver<String> = lines_of(child.stderr.take().unwrap());
    let proc = Proc(child);
    let line = out.recv_timeout(WAIT).unwrap();
    let addr = line.strip_prefix("listening on ").unwrap().to_string();
    let mut metrics = None;
    for _ in 0..100 {
        let line = err.recv_timeout(WAIT).expect("a log line");
        if line.contains("serving metrics") {
            let at = line.split("addr=").nth(1).expect("addr= in the line");
            metrics = Some(at.split_whitespace().next().unwrap().to_string());
            break;
        }
    }
    // Keep reading its log so that it never writes into a closed pipe.
    std::thread::spawn(move || while err.recv().is_ok() {});
    (proc, addr, metrics.expect("a `serving metrics` log line"))
}

/// `GET path` over a plain socket: the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: */*\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
fn the_broker_serves_prometheus_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (_broker, addr, metrics) = start(&["broker", "--addr", "127.0.0.1:0", "--data", data]);
    for body in ["a", "b", "c"] {
        let out = run_mw(&["send", "--broker", &addr, "orders", body], None);
        assert!(out.status.success(), "{:?}", out.stderr);
    }
    let out = run_mw(&["pub", "--broker", &addr, "news.a", "x"], None);
    assert!(out.status.success(), "{:?}", out.stderr);

    // The clients have exited; the broker notices their connections closing a moment
    // later: scrape until it has (bounded), then check everything.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = get(&metrics, "/metrics");
        if body.contains("mw_rpc_connections 0") || std::time::Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status, "HTTP/1.1 200 OK");
    for expected in [
        "mw_queue_depth{queue=\"orders\"} 3",
        "mw_queue_in_flight{queue=\"orders\"} 0",
        "# TYPE mw_queue_oldest_message_age_seconds gauge",
        "mw_rpc_calls_total{service=\"mw.queue\",method=\"send\",outcome=\"ok\"} 3",
        "# TYPE mw_rpc_call_duration_seconds histogram",
        "mw_rpc_call_duration_seconds_count{service=\"mw.queue\",method=\"send\"} 3",
        "mw_rpc_connections 0",
        "mw_rpc_calls_in_flight 0",
        "mw_pubsub_events_published_total 1",
        "mw_pubsub_subscriptions 0",
        "# TYPE mw_queue_fsyncs counter",
        "mw_queue_fsync_duration_seconds_count 3",
        "mw_queue_fsync_duration_seconds_bucket{le=\"+Inf\"} 3",
        "# EOF",
    ] {
        assert!(
            body.contains(expected),
            "{expected:?} missing from:\n{body}"
        );
    }
    let (status, _) = get(&metrics, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
fn the_registry_serves_its_call_metrics_too() {
    let (_registry, addr, metrics) = start(&["registry", "--addr", "127.0.0.1:0"]);
    let out = run_mw(&["lookup", "--registry", &addr], None);
    assert!(out.status.success(), "{:?}", out.stderr);
    let (status, body) = get(&metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.contains(
            "mw_rpc_calls_total{service=\"mw.registry\",method=\"list\",outcome=\"ok\"} 1"
        ),
        "{body}"
    );
}

/// A metrics address that is not `HOST:PORT` is refused at start, with one line.
#[test]
fn a_bad_metrics_address_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = run_mw(
        &[
            "broker",
            "--addr",
            "127.0.0.1:0",
            "--data",
            data,
            "--metrics-addr",
            "notanaddr",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "it must not listen: {:?}",
        out.stdout
    );
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr[0].starts_with(
            "mw: invalid broker setting: --metrics-addr notanaddr: expected HOST:PORT"
        ),
        "{:?}",
        out.stderr
    );
}
