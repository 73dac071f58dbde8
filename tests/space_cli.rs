//! `mw broker` and the `mw space` verbs as separate processes, as a user runs them: the
//! real binary, readiness read from its output (or asked of the broker), every child
//! killed through its own handle.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mw::space::RemoteSpace;

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

/// Runs `mw space ARGS` to completion (bounded: a hung child is killed and fails the test).
fn space(args: &[&str]) -> Output {
    let child = Command::new(MW)
        .arg("space")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mw space starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("mw space {args:?} did not exit within {WAIT:?}");
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `mw space ARGS` and expects success; returns stdout.
fn ok(args: &[&str]) -> String {
    let o = space(args);
    assert!(
        o.status.success(),
        "mw space {args:?} failed: {}",
        stderr(&o)
    );
    stdout(&o)
}

/// Runs `mw space ARGS` and expects exit status 1 with one line on stderr; returns it.
fn fails(args: &[&str]) -> String {
    let o = space(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "mw space {args:?}: {}",
        stderr(&o)
    );
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(stdout(&o).is_empty(), "nothing on stdout: {:?}", stdout(&o));
    err.trim_end().to_string()
}

/// Asks the broker, over the network, until `cond` holds for its space's stats.
fn broker_reaches(addr: &str, what: &str, cond: impl Fn(&mw::space::SpaceStats) -> bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let remote = RemoteSpace::connect(addr).await.unwrap();
        let deadline = Instant::now() + WAIT;
        // Each check is a round trip to the broker: the loop paces itself.
        for _ in 0..1_000_000 {
            if cond(&remote.stats().await.unwrap()) {
                return;
            }
            assert!(Instant::now() < deadline, "broker never reached: {what}");
        }
        panic!("broker never reached: {what}");
    })
}

#[test]
fn out_rd_in_rdp_inp_through_a_real_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let b = ["--broker", addr.as_str()];
    let id1 = ok(&[&["out"][..], &b, &[r#"["task", 1]"#]].concat());
    let id2 = ok(&[
        &["out"][..],
        &b,
        &[r#"["task", 2.5, true, {"bytes": "00ff"}]"#],
    ]
    .concat());
    assert!(id1.trim().parse::<u64>().unwrap() < id2.trim().parse::<u64>().unwrap());
    let any_task = r#"["task", {"?": "int"}]"#;
    assert_eq!(
        ok(&[&["rd"][..], &b, &[any_task]].concat()),
        "[\"task\",1]\n"
    );
    assert_eq!(
        ok(&[&["rdp"][..], &b, &[r#"["task", null, null, null]"#]].concat()),
        "[\"task\",2.5,true,{\"bytes\":\"00ff\"}]\n"
    );
    assert_eq!(
        ok(&[&["in"][..], &b, &[any_task]].concat()),
        "[\"task\",1]\n"
    );
    assert_eq!(
        fails(&[&["inp"][..], &b, &[any_task]].concat()),
        "mw: no matching tuple"
    );
    assert_eq!(
        fails(&[&["in"][..], &b, &["--timeout", "0.2", any_task]].concat()),
        "mw: no matching tuple"
    );
    assert_eq!(
        ok(&[
            &["inp"][..],
            &b,
            &[r#"["task", {"?": "float"}, {"?": "bool"}, {"?": "bytes"}]"#]
        ]
        .concat()),
        "[\"task\",2.5,true,{\"bytes\":\"00ff\"}]\n"
    );
    ok(&[&["out"][..], &b, &["--lease", "600", "[]"]].concat());
    assert_eq!(ok(&[&["rdp"][..], &b, &["[]"]].concat()), "[]\n");
}

#[test]
fn bad_tuples_patterns_and_flags_fail_with_one_clear_line() {
    // Parsed before connecting: no broker needed to hear about a typo.
    let b = ["--broker", "127.0.0.1:1"];
    let err = fails(&[&["out"][..], &b, &[r#"["task", 1"#]].concat());
    assert!(err.starts_with("mw: invalid tuple: not JSON"), "{err}");
    let err = fails(&[&["out"][..], &b, &["task"]].concat());
    assert!(err.contains(r#"write it as ["task", 7]"#), "{err}");
    let err = fails(&[&["out"][..], &b, &[r#"{"task": 1}"#]].concat());
    assert!(err.contains("expected a JSON array"), "{err}");
    let err = fails(&[&["out"][..], &b, &[r#"["task", null]"#]].concat());
    assert!(err.contains("field 1 is null"), "{err}");
    let err = fails(&[&["rd"][..], &b, &[r#"["task", {"?": "integer"}]"#]].concat());
    assert!(
        err.starts_with("mw: invalid pattern: field 1: unknown type \"integer\""),
        "{err}"
    );
    let err = fails(&[&["out"][..], &b, &["--lease", "0", "[1]"]].concat());
    assert_eq!(err, "mw: --lease must be more than 0 seconds");
    let err = fails(&[&["out"][..], &b, &["[1]"]].concat());
    assert!(
        err.starts_with("mw: cannot reach broker at 127.0.0.1:1"),
        "{err}"
    );
    // Refused by clap's parser: status 2 and a usage hint.
    let o = space(&[&["in"][..], &b, &["--timeout", "soon", "[1]"]].concat());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected a number of seconds"),
        "{}",
        stderr(&o)
    );

    // Limits are the broker's: checked there, reported here as one line.
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let b = ["--broker", addr.as_str()];
    let wide = format!("[{}]", vec!["1"; 17].join(","));
    let err = fails(&[&["out"][..], &b, &[wide.as_str()]].concat());
    assert_eq!(err, "mw: tuple has 17 fields; the limit is 16");
}

#[test]
fn a_blocked_in_that_is_killed_takes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let taker = Command::new(MW)
        .args(["space", "in", "--broker", &addr, r#"["job", null]"#])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mw space in starts");
    let taker = Proc(taker);
    broker_reaches(&addr, "one blocked taker", |s| s.waiters == 1);
    drop(taker); // SIGKILL: the connection ends mid-call
    let id = ok(&["out", "--broker", &addr, r#"["job", "wash"]"#]);
    assert!(!id.is_empty());
    assert_eq!(
        ok(&["rdp", "--broker", &addr, r#"["job", null]"#]),
        "[\"job\",\"wash\"]\n",
        "the dead taker did not take it"
    );
    broker_reaches(&addr, "no blocked taker left", |s| {
        s.waiters == 0 && s.held == 0
    });
}

#[test]
fn a_blocked_in_gets_the_tuple_written_later_and_notify_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let mut notify = Command::new(MW)
        .args([
            "space",
            "notify",
            "--broker",
            &addr,
            "--count",
            "2",
            r#"["job", {"?": "string"}]"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mw space notify starts");
    let notes = lines_of(notify.stdout.take().unwrap());
    let ready = lines_of(notify.stderr.take().unwrap());
    let _notify = Proc(notify);
    let line = next_line(&ready, "mw space notify stderr");
    assert!(line.starts_with("subscribed to"), "{line:?}");
    let mut taker = Command::new(MW)
        .args([
            "space",
            "in",
            "--broker",
            &addr,
            "--timeout",
            "20",
            r#"["job", null]"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mw space in starts");
    let took = lines_of(taker.stdout.take().unwrap());
    let _taker = Proc(taker);
    broker_reaches(&addr, "the taker is blocked", |s| s.waiters == 1);
    ok(&["out", "--broker", &addr, r#"["job", 7]"#]); // not a string: notify skips it
    ok(&["out", "--broker", &addr, r#"["job", "wash"]"#]);
    ok(&["out", "--broker", &addr, r#"["job", "dry"]"#]);
    assert_eq!(next_line(&took, "mw space in"), "[\"job\",7]");
    assert_eq!(next_line(&notes, "mw space notify"), "[\"job\",\"wash\"]");
    assert_eq!(next_line(&notes, "mw space notify"), "[\"job\",\"dry\"]");
}

#[test]
fn tuples_survive_a_killed_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr) = start_broker(dir.path());
    ok(&["out", "--broker", &addr, r#"["kept", 1]"#]);
    ok(&["out", "--broker", &addr, r#"["taken", 2]"#]);
    ok(&["in", "--broker", &addr, r#"["taken", null]"#]);
    // SIGKILL: no shutdown, no final sync; what was acknowledged is on disk.
    drop(broker);
    let (_broker, addr) = start_broker(dir.path());
    assert_eq!(
        ok(&["rdp", "--broker", &addr, r#"[null, null]"#]),
        "[\"kept\",1]\n"
    );
    assert_eq!(
        fails(&["rdp", "--broker", &addr, r#"["taken", null]"#]),
        "mw: no matching tuple"
    );
}
