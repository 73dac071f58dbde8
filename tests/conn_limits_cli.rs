//! `mw broker` under a low open-file limit: it lowers `--max-connections` to what the
//! limit allows and says so, so that a flood of idle connections gets a readable
//! `server busy` refusal instead of failing (as it did at `ulimit -n 1024`: every client
//! then timed out in the handshake). Bad limit flags are refused with one line.

mod queue_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use queue_support::{lines_of, run_mw, Proc, MW, WAIT};

#[test]
fn a_low_open_file_limit_lowers_max_connections_and_a_flood_is_refused_readably() {
    let dir = tempfile::tempdir().unwrap();
    // A shell sets soft and hard limits to 300 for the broker only.
    let script = format!(
        "ulimit -n 300 && ulimit -Hn 300 && exec {MW} broker --addr 127.0.0.1:0 --data {}",
        dir.path().join("data").display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    let _broker = Proc(child);
    let line = out.recv_timeout(WAIT).expect("listening line");
    let addr = line.strip_prefix("listening on ").unwrap().to_string();
    let mut log = Vec::new();
    while let Ok(l) = err.recv_timeout(WAIT) {
        let done = l.contains("listening");
        log.push(l);
        if done {
            break;
        }
    }
    assert!(
        log.iter()
            .any(|l| l.contains("max connections lowered from 10000 to 44")),
        "{log:?}"
    );
    // 60 connections at once: 44 admitted, the rest told why. A refused connection gets
    // its Error frame and EOF at once; an admitted one nothing (its read times out).
    let attempts: Vec<_> = (0..60)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.write_all(b"mwrp\x00\x01\x00\x01").unwrap();
                let mut reply = [0u8; 8];
                s.read_exact(&mut reply).unwrap();
                assert_eq!(&reply, b"mwrp\x00\x01\x00\x00");
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
                let told = String::from_utf8_lossy(&rest)
                    .contains("server busy: connection limit 44 reached");
                (told, s)
            })
        })
        .collect();
    let mut conns = Vec::new();
    let mut refused = 0;
    for a in attempts {
        let (told, s) = a.join().unwrap();
        refused += usize::from(told);
        if !told {
            conns.push(s);
        }
    }
    assert_eq!(refused, 16);
    // An admitted client's verb still works: free one slot first.
    drop(conns.remove(0));
    let ok = (0..200).any(|_| {
        run_mw(&["queues", "--broker", &addr], None)
            .status
            .success()
    });
    assert!(ok, "a client is served again once a slot is free");
}

#[test]
fn limit_flags_that_cannot_work_are_refused() {
    for args in [
        ["--max-connections", "0"],
        ["--max-connections-per-ip", "0"],
        ["--idle-timeout", "0"],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let out = run_mw(
            &[&["broker", "--data", &data][..], &args[..]].concat(),
            None,
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(
            out.stderr.iter().any(|l| l.contains(args[0])),
            "{args:?}: {out:?}"
        );
    }
}

/// Every verb refused at the connection limit prints the reason, not a bare
/// `disconnected` (the server reads the refused client's request before closing, and a
/// client remembers why its connection died).
#[test]
fn every_refused_verb_says_the_server_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr, _log) =
        queue_support::start_broker_logged(dir.path(), &["--max-connections", "1"]);
    let mut holder = Command::new(MW)
        .args(["sub", "--broker", &addr, "t.>"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = lines_of(holder.stderr.take().unwrap());
    let _holder = Proc(holder);
    assert_eq!(ready.recv_timeout(WAIT).unwrap(), "subscribed to t.>");
    for verb in [
        &["queues"][..],
        &["send", "q", "x"],
        &["pub", "t.a", "x"],
        &["conn", "list"],
        &["space", "rdp", "[1]"],
    ] {
        for _ in 0..5 {
            let out = run_mw(&[verb, &["--broker", &addr][..]].concat(), None);
            assert_eq!(out.status.code(), Some(1), "{verb:?}: {out:?}");
            assert!(
                out.stderr
                    .iter()
                    .any(|l| l.contains("server busy: connection limit 1 reached")),
                "{verb:?}: {out:?}"
            );
        }
    }
}

/// A client verb reading slow stdin outlives the broker's idle timeout: its next line
/// goes over a new connection.
#[test]
fn a_send_from_slow_stdin_outlives_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr, log) =
        queue_support::start_broker_logged(dir.path(), &["--idle-timeout", "1"]);
    let mut send = Command::new(MW)
        .args(["send", "--broker", &addr, "q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = send.stdin.take().unwrap();
    let ids = lines_of(send.stdout.take().unwrap());
    let _send = Proc(send);
    writeln!(stdin, "first").unwrap();
    ids.recv_timeout(WAIT).expect("first line stored");
    // The broker closes the idle connection (its log says so); then the next line.
    queue_support::log_until(&log, "reason=\"idle\"");
    writeln!(stdin, "second").unwrap();
    drop(stdin);
    ids.recv_timeout(WAIT)
        .expect("second line stored over a new connection");
    let out = run_mw(&["recv", "--broker", &addr, "--count", "2", "q"], None);
    assert_eq!(out.stdout, ["first", "second"], "{out:?}");
}
