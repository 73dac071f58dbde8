//! The `mw-kv` command line as a user meets it: the README walk-through against a real
//! node process, `MW_KV_NODE`, exit codes, one clear line for every bad input, and
//! SIGTERM draining and syncing buffered writes.

#[path = "../../../tests/support/certs.rs"]
mod certs;
mod common;

use std::io::Write;
use std::process::{Output, Stdio};

use common::{mw_kv, NodeProcess};

fn run(node: &str, args: &[&str]) -> Output {
    mw_kv().env("MW_KV_NODE", node).args(args).output().unwrap()
}

fn ok(node: &str, args: &[&str]) -> String {
    let out = run(node, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Fails with exit code `code` and exactly one line on stderr containing `needle`.
fn fails(node: &str, args: &[&str], code: i32, needle: &str) {
    let out = run(node, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    if code == 1 {
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    }
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
}

#[test]
fn walk_through_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let n = node.addr.as_str();
    assert_eq!(ok(n, &["put", "greeting", "hello"]), "1\n");
    assert_eq!(ok(n, &["get", "greeting"]), "hello\n");
    assert!(ok(n, &["get", "-v", "greeting"]).contains("version 1 created 1 changes 1"));
    assert_eq!(
        ok(n, &["put", "greeting", "hi", "--if-version", "1"]),
        "2\n"
    );
    fails(
        n,
        &["put", "greeting", "bye", "--if-version", "1"],
        1,
        "version conflict: expected 1, current 2",
    );
    assert_eq!(ok(n, &["incr", "hits"]), "1\n");
    assert_eq!(ok(n, &["incr", "hits", "41"]), "42\n");
    assert_eq!(ok(n, &["incr", "hits", "-2"]), "40\n");
    fails(n, &["incr", "greeting"], 1, "not a 64-bit decimal integer");
    ok(n, &["put", "user/2", "bob"]);
    ok(n, &["put", "user/1", "alice"]);
    assert_eq!(ok(n, &["scan", "user/"]), "user/1\talice\nuser/2\tbob\n");
    assert_eq!(ok(n, &["scan", "user/", "--limit", "1"]), "user/1\talice\n");
    assert_eq!(
        ok(n, &["scan", "user/", "--start-after", "user/1"]),
        "user/2\tbob\n"
    );
    assert_eq!(ok(n, &["del", "user/2"]), "deleted version 6\n");
    fails(n, &["del", "user/2"], 1, "not found");
    fails(n, &["get", "user/2"], 1, "not found");
    assert_eq!(
        ok(
            n,
            &["watch", "user/", "--from-revision", "1", "--count", "3"]
        ),
        "6 PUT user/2 bob\n7 PUT user/1 alice\n8 DELETE user/2\n"
    );
    let status = ok(n, &["status"]);
    assert!(
        status.contains("revision 8\n") && status.contains("engine fjall"),
        "{status}"
    );
    // --node beats MW_KV_NODE.
    let out = mw_kv()
        .env("MW_KV_NODE", "127.0.0.1:1")
        .args(["get", "--node", n, "greeting"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "hi\n");
    // Values from a file or stdin, binary included.
    let file = dir.path().join("blob");
    std::fs::write(&file, [0u8, 159, 146, 150]).unwrap();
    ok(n, &["put", "blob", "--file", file.to_str().unwrap()]);
    let out = run(n, &["get", "blob"]);
    assert_eq!(out.stdout, [0u8, 159, 146, 150, b'\n']);
    let mut child = mw_kv()
        .env("MW_KV_NODE", n)
        .args(["put", "piped", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(ok(n, &["get", "piped"]), "from stdin\n");
}

#[test]
fn bad_inputs_end_in_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &[]);
    let n = node.addr.as_str();
    fails(
        "127.0.0.1:1",
        &["get", "k"],
        1,
        "node 127.0.0.1:1: cannot connect",
    );
    fails("nonsense", &["get", "k"], 1, "invalid address \"nonsense\"");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; (1 << 20) + 1]).unwrap();
    fails(
        n,
        &["put", "k", "--file", big.to_str().unwrap()],
        1,
        "value of 1048577 bytes exceeds the limit of 1048576 bytes",
    );
    fails(
        n,
        &["put", "k", "--file", "/no/such/file"],
        1,
        "cannot read /no/such/file",
    );
    let long_key = "k".repeat(4097);
    fails(
        n,
        &["get", &long_key],
        1,
        "key of 4097 bytes exceeds the limit of 4096 bytes",
    );
    fails(n, &["get", ""], 1, "empty key");
    fails(n, &["put", "k", "v", "--ttl", "0"], 2, "must be positive");
    fails(
        n,
        &["put", "k", "v", "--ttl", "soon"],
        2,
        "not a number of seconds",
    );
    fails(
        n,
        &["put", "k", "v", "--if-version", "-3"],
        2,
        "unexpected argument",
    );
    fails(n, &["put", "k"], 2, "required");
    fails(
        n,
        &["scan", "", "--limit", "20000"],
        1,
        "scan limit 20000 exceeds the maximum of 10000",
    );
    fails(n, &["frobnicate"], 2, "unrecognized subcommand");
    fails(
        n,
        &["serve", "--fsync", "sometimes"],
        2,
        "invalid fsync policy",
    );
    // Nothing above was half-applied.
    fails(n, &["get", "k"], 1, "not found");
}

#[test]
fn sigterm_drains_and_syncs_buffered_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), &["--fsync", "never"]);
    for i in 0..20 {
        ok(&node.addr, &["put", &format!("b{i}"), "v", "--buffered"]);
    }
    let pid = node.child.id() as i32;
    // SAFETY: sending a signal to our own child by pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = node.child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let node = NodeProcess::start(dir.path(), &[]);
    assert_eq!(ok(&node.addr, &["scan", "b"]).lines().count(), 20);
}

/// `serve --tls-cert/--tls-key`: client verbs with `--tls-ca` are served; a plaintext one
/// is told TLS is required; a ring member serving TLS needs the CA to reach its peers.
#[test]
fn a_tls_node_serves_tls_clients_and_refuses_plaintext_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new(dir.path(), "ca");
    let (cert, key) = ca.server(dir.path(), "node");
    let (cert, key, ca_pem) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca.pem.to_str().unwrap(),
    );
    let data = dir.path().join("data");
    let node = NodeProcess::start(&data, &["--tls-cert", cert, "--tls-key", key]);
    let n = node.addr.as_str();
    assert_eq!(ok(n, &["--tls-ca", ca_pem, "put", "k", "v"]), "1\n");
    assert_eq!(ok(n, &["get", "k", "--tls-ca", ca_pem]), "v\n");
    fails(n, &["get", "k"], 1, "requires TLS");
    fails(
        n,
        &["get", "k", "--tls-cert", cert],
        1,
        "--tls-cert needs --tls-key",
    );

    let out = mw_kv()
        .args(["serve", "--ring", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("ring"))
        .args(["--tls-cert", cert, "--tls-key", key])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --peer-tls-ca FILE"), "{err}");
}

/// `serve --auth examples/auth.toml`: carol may read and write keys under `app/` and
/// nothing else; every refusal is one line naming her, the operation and the key; a
/// client without a login is told to log in; a ring member refuses `--auth`.
#[test]
fn a_node_with_auth_checks_key_prefixes() {
    let auth = concat!(env!("CARGO_MANIFEST_DIR"), "/../auth.toml");
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("data"), &["--auth", auth]);
    let n = node.addr.as_str();
    let carol = ["--user", "carol", "--password", "carol-secret"];
    let with = |args: &[&'static str]| -> Vec<&'static str> { [&carol[..], args].concat() };
    assert_eq!(ok(n, &with(&["put", "app/colour", "blue"])), "1\n");
    assert_eq!(ok(n, &with(&["get", "app/colour"])), "blue\n");
    assert_eq!(ok(n, &with(&["incr", "app/hits", "2"])), "2\n");
    assert_eq!(
        ok(n, &with(&["scan", "app/"])),
        "app/colour\tblue\napp/hits\t2\n"
    );
    fails(
        n,
        &with(&["put", "admin/root", "x"]),
        1,
        "permission denied: user \"carol\" may not write key admin/root",
    );
    fails(
        n,
        &with(&["get", "admin/root"]),
        1,
        "permission denied: user \"carol\" may not read key admin/root",
    );
    fails(
        n,
        &with(&["scan", ""]),
        1,
        "permission denied: user \"carol\" may not read key prefix \"\"",
    );
    fails(
        n,
        &with(&["del", "other"]),
        1,
        "permission denied: user \"carol\" may not write key other",
    );
    fails(n, &["get", "app/colour"], 1, "authentication required");
    fails(
        n,
        &["get", "app/colour", "--user", "carol", "--password", "nope"],
        1,
        "authentication failed for user \"carol\"",
    );
    // alice may call mw.queue only.
    fails(
        n,
        &[
            "get",
            "app/colour",
            "--user",
            "alice",
            "--password",
            "alice-secret",
        ],
        1,
        "may not call service mw.kv",
    );
    // The ci admin reads what carol may not.
    assert_eq!(
        ok(n, &["--token", "ci.ci-secret", "get", "app/colour"]),
        "blue\n"
    );

    let out = mw_kv()
        .args(["serve", "--ring", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("ring"))
        .args(["--auth", auth])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --peer-token USER.SECRET"), "{err}");
}

/// A ring of two members over TLS with `--auth`: the members reach and log in to each
/// other (`--peer-tls-ca`, `--peer-token`), so a W=2 write by carol is stored on both;
/// her grants hold on the ring as on a single node; a plaintext client is refused.
#[test]
fn a_ring_over_tls_with_logins() {
    let auth = concat!(env!("CARGO_MANIFEST_DIR"), "/../auth.toml");
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new(dir.path(), "ca");
    let (cert, key) = ca.server(dir.path(), "member");
    let (cert, key, ca_pem) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca.pem.to_str().unwrap(),
    );
    let secure = [
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--peer-tls-ca",
        ca_pem,
        "--auth",
        auth,
        "--peer-token",
        "ci.ci-secret",
        "--n",
        "2",
        "--w",
        "2",
        "--r",
        "2",
    ];
    let a = NodeProcess::start(&dir.path().join("a"), &[&["--ring"][..], &secure].concat());
    let b = NodeProcess::start(
        &dir.path().join("b"),
        &[&["--join", a.addr.as_str()][..], &secure].concat(),
    );
    let n = a.addr.as_str();
    let admin = ["--tls-ca", ca_pem, "--token", "ci.ci-secret"];
    // Both members up and reachable from the first, which pings the second over TLS.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ring = ok(n, &[&admin[..], &["ring"]].concat());
        let reachable = ring
            .lines()
            .filter(|l| l.contains(" up ") && l.contains(" yes "))
            .count();
        if reachable == 2 && ring.contains(b.addr.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ring never formed: {ring}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let carol = [
        "--tls-ca",
        ca_pem,
        "--user",
        "carol",
        "--password",
        "carol-secret",
    ];
    let with = |args: &[&'static str]| -> Vec<&str> { [&carol[..], args].concat() };
    // Prints the write's dot (NODE:COUNTER), coordinated by the node asked.
    assert!(ok(n, &with(&["put", "app/colour", "blue"])).starts_with(n));
    assert_eq!(ok(b.addr.as_str(), &with(&["get", "app/colour"])), "blue\n");
    // A ring put reads the key first (for its context), a blind one only writes.
    fails(
        n,
        &with(&["put", "admin/root", "x"]),
        1,
        "permission denied: user \"carol\" may not read key admin/root",
    );
    fails(
        n,
        &with(&["put", "--blind", "admin/root", "x"]),
        1,
        "permission denied: user \"carol\" may not write key admin/root",
    );
    fails(n, &["get", "app/colour"], 1, "requires TLS");

    // Half-configured rings are refused at start, one line each.
    for (extra, says) in [
        (
            vec!["--tls-cert", cert, "--tls-key", key],
            "needs --peer-tls-ca FILE",
        ),
        (
            vec!["--peer-tls-ca", ca_pem],
            "--peer-tls-ca needs --tls-cert",
        ),
        (vec!["--auth", auth], "needs --peer-token"),
        (
            vec!["--peer-token", "ci.ci-secret"],
            "--peer-token needs --auth",
        ),
    ] {
        let out = mw_kv()
            .args(["serve", "--ring", "--addr", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("refused"))
            .args(&extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{extra:?}: {err}");
    }
}

/// `serve --metrics-addr`: the node serves Prometheus text with its calls counted.
#[test]
fn a_node_serves_metrics() {
    use std::io::{BufRead, BufReader, Read, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let mut child = mw_kv()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let node = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    // The log says where the metrics are; read on a thread so the wait is bounded.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in stderr.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let _node = common::NodeProcess {
        child,
        addr: node.clone(),
    };
    let mut metrics = None;
    for _ in 0..50 {
        let Ok(l) = rx.recv_timeout(common::STEP) else {
            break;
        };
        if let Some(rest) = l.split("metrics on http://").nth(1) {
            metrics = Some(rest.split('/').next().unwrap().to_string());
            break;
        }
    }
    let metrics = metrics.expect("a metrics line in the log");
    assert_eq!(ok(&node, &["put", "k", "v"]), "1\n");
    let mut s = std::net::TcpStream::connect(&metrics).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(
        body.contains("mw_rpc_calls_total{service=\"mw.kv\",method=\"put\",outcome=\"ok\"} 1"),
        "{body}"
    );
}
