//! TLS through the `mw` command: a broker started with `--tls-cert/--tls-key` (and
//! `--tls-client-ca` for mutual TLS) serves client verbs given `--tls-ca` (and their own
//! certificate), and refuses plaintext ones with one line saying TLS is required;
//! half-given or misplaced TLS flags are refused with one line and exit code 1.

#[path = "support/certs.rs"]
mod certs;
mod queue_support;

use certs::Ca;
use queue_support::{run_mw, start_broker_with};

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[test]
fn a_tls_broker_serves_tls_clients_and_refuses_plaintext_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.server(dir.path(), "broker");
    let extra = ["--tls-cert", &s(&cert), "--tls-key", &s(&key)].map(String::from);
    let (_broker, addr) = start_broker_with(&dir.path().join("data"), "127.0.0.1:0", &extra);
    let ca_pem = s(&ca.pem);

    let out = run_mw(
        &[
            "send", "--broker", &addr, "--tls-ca", &ca_pem, "q", "over tls",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let out = run_mw(
        &[
            "recv", "--broker", &addr, "--tls-ca", &ca_pem, "--count", "1", "q",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, ["over tls"]);

    let out = run_mw(&["send", "--broker", &addr, "q", "plain"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stderr.len(), 1, "{out:?}");
    assert!(out.stderr[0].contains("requires TLS"), "{out:?}");

    // A CA that did not sign the broker's certificate.
    let other = Ca::new(dir.path(), "other");
    let out = run_mw(
        &["queues", "--broker", &addr, "--tls-ca", &s(&other.pem)],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr[0].contains("not trusted"), "{out:?}");
}

#[test]
fn a_mutual_tls_broker_wants_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.server(dir.path(), "broker");
    let extra = [
        "--tls-cert",
        &s(&cert),
        "--tls-key",
        &s(&key),
        "--tls-client-ca",
        &s(&ca.pem),
    ]
    .map(String::from);
    let (_broker, addr) = start_broker_with(&dir.path().join("data"), "127.0.0.1:0", &extra);
    let ca_pem = s(&ca.pem);
    let (alice_cert, alice_key) = ca.client(dir.path(), "alice");
    let out = run_mw(
        &[
            "send",
            "--broker",
            &addr,
            "--tls-ca",
            &ca_pem,
            "--tls-cert",
            &s(&alice_cert),
            "--tls-key",
            &s(&alice_key),
            "q",
            "from alice",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let out = run_mw(
        &[
            "send",
            "--broker",
            &addr,
            "--tls-ca",
            &ca_pem,
            "q",
            "anonymous",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr[0].contains("requires a client certificate"),
        "{out:?}"
    );
}

#[test]
fn tls_flags_that_cannot_work_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = s(&dir.path().join("missing.pem"));
    let data = s(&dir.path().join("data"));
    let cases: [(&[&str], &str); 5] = [
        (
            &["broker", "--data", &data, "--tls-cert", &missing],
            "--tls-cert needs --tls-key",
        ),
        (
            &["broker", "--data", &data, "--tls-ca", &missing],
            "for client verbs",
        ),
        (
            &[
                "broker",
                "--data",
                &data,
                "--tls-cert",
                &missing,
                "--tls-key",
                &missing,
            ],
            "missing.pem",
        ),
        (
            &["send", "--tls-client-ca", &missing, "q", "x"],
            "for servers",
        ),
        (&["send", "--tls-ca", &missing, "q", "x"], "missing.pem"),
    ];
    queue_support::assert_one_line_refusals(&cases);
}

/// `MW_TLS_*` are for client verbs: a server started in a shell that exported them for
/// its clients ignores them, and an empty one counts as unset.
#[test]
fn client_tls_environment_variables_do_not_change_servers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let ca_pem = s(&ca.pem);
    // A plaintext broker started with MW_TLS_CA in its environment starts plaintext.
    let mut child = std::process::Command::new(queue_support::MW)
        .args(["broker", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env("MW_TLS_CA", &ca_pem)
        .env("MW_TLS_CLIENT_CA", &ca_pem)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = queue_support::lines_of(child.stdout.take().unwrap());
    let _broker = queue_support::Proc(child);
    let line = out
        .recv_timeout(queue_support::WAIT)
        .expect("the broker starts");
    let addr = line.strip_prefix("listening on ").unwrap().to_string();
    let out = queue_support::run_mw_raw(
        &["send", "--broker", &addr, "q", "plain"],
        b"",
        &[("MW_TLS_CA", "")],
    );
    assert!(out.status.success(), "{out:?}");
}
