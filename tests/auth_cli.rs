//! Logins through the `mw` command: a broker started with `--auth examples/auth.toml`
//! (the README's example: alice may send to and receive from `orders.*`, bob may only
//! subscribe to `sensors.>`, `ci` logs in with a token and may do everything) refuses
//! verbs without a login or with a wrong password, one line naming the user; admits the
//! right ones; refuses services, queues and topics a user was not granted; and `mw passwd`
//! makes the hashes the file holds. Bad login flags are refused with one line.

#[path = "support/certs.rs"]
mod certs;
mod queue_support;

use queue_support::{run_mw, run_mw_raw, start_broker_with};

const AUTH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/auth.toml");

#[test]
fn the_example_auth_file_admits_its_users_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--auth".to_string(), AUTH.to_string()];
    let (_broker, addr) = start_broker_with(dir.path(), "127.0.0.1:0", &extra);
    let b = ["--broker", addr.as_str()];
    let alice = ["--user", "alice", "--password", "alice-secret"];

    let out = run_mw(&[&["send", "orders.1", "x"][..], &b].concat(), None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr[0].contains("authentication required"), "{out:?}");

    let out = run_mw(
        &[
            &[
                "send",
                "orders.1",
                "x",
                "--user",
                "alice",
                "--password",
                "nope",
            ][..],
            &b,
        ]
        .concat(),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stderr.len(), 1, "{out:?}");
    assert!(
        out.stderr[0].ends_with("authentication failed for user \"alice\""),
        "{out:?}"
    );

    let out = run_mw(&[&["send", "orders.1", "x"][..], &b, &alice].concat(), None);
    assert!(out.status.success(), "{out:?}");
    let out = run_mw(&[&["pub", "t.x", "hi"][..], &b, &alice].concat(), None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr[0].contains("permission denied: user \"alice\" may not call service mw.pubsub"),
        "{out:?}"
    );

    // bob is admitted to the bus, where he may subscribe to sensors.> and nothing else.
    let bob = ["--user", "bob", "--password", "bob-secret"];
    let out = run_mw(&[&["pub", "sensors.x", "hi"][..], &b, &bob].concat(), None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr[0]
            .contains("permission denied: user \"bob\" may not publish to topic sensors.x"),
        "{out:?}"
    );
    // alice may not send outside orders.*, nor touch what she was not granted.
    let out = run_mw(
        &[&["send", "payments.1", "x"][..], &b, &alice].concat(),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr[0]
            .contains("permission denied: user \"alice\" may not send to queue payments.1"),
        "{out:?}"
    );
    // Several lines at once: refused as a whole, certainly not stored.
    let out = run_mw(
        &[&["send", "payments.1"][..], &b, &alice].concat(),
        Some("a\nb\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr[0].contains(" not stored")
            && !out.stderr[0].contains("may or may not")
            && out.stderr[0].contains("may not send"),
        "{out:?}"
    );
    // A queue that exists but is not hers is refused as such, not called unknown.
    let ci = ["--token", "ci.ci-secret"];
    let out = run_mw(&[&["send", "payments.z", "x"][..], &b, &ci].concat(), None);
    assert!(out.status.success(), "{out:?}");
    let out = run_mw(&[&["recv", "payments.z"][..], &b, &alice].concat(), None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr[0]
            .contains("permission denied: user \"alice\" may not receive from queue payments.z"),
        "{out:?}"
    );
    let out = run_mw(
        &[&["queue", "purge", "orders.1"][..], &b, &alice].concat(),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr[0].contains("permission denied: user \"alice\" may not manage queue orders.1"),
        "{out:?}"
    );

    // The token from the environment.
    let out = run_mw_raw(
        &[&["recv", "--count", "1", "orders.1"][..], &b].concat(),
        b"",
        &[("MW_TOKEN", "ci.ci-secret")],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"x\n");
}

#[test]
fn login_flags_that_cannot_work_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d").display().to_string();
    let missing = dir.path().join("missing.toml").display().to_string();
    let cases: [(&[&str], &str); 5] = [
        (
            &["send", "q", "x", "--user", "alice"],
            "--user needs --password",
        ),
        (
            &[
                "send",
                "q",
                "x",
                "--token",
                "ci.s",
                "--user",
                "a",
                "--password",
                "p",
            ],
            "give --token or --user and --password, not both",
        ),
        (&["send", "q", "x", "--auth", AUTH], "--auth is for servers"),
        (
            &["broker", "--data", &data, "--user", "alice"],
            "for client verbs",
        ),
        (
            &["broker", "--data", &data, "--auth", &missing],
            "cannot read auth file",
        ),
    ];
    queue_support::assert_one_line_refusals(&cases);
}

#[test]
fn mw_passwd_hashes_what_it_reads() {
    let out = run_mw(&["passwd"], Some("alice-secret\n"));
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout[0].starts_with("$argon2id$"), "{out:?}");
    let file = format!("[users.alice]\npassword = \"{}\"\n", out.stdout[0]);
    let parsed = mw::auth::AuthFile::parse(&file).unwrap();
    use mw::rpc::auth::{Authenticator, Credentials};
    assert!(parsed
        .authenticate(&Credentials::Password {
            user: "alice".into(),
            password: "alice-secret".into()
        })
        .is_ok());
    let out = run_mw(&["passwd"], Some("\n"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// The broker's log names the user of each connection when it closes.
#[test]
fn connection_logs_name_the_logged_in_user() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr, log) = queue_support::start_broker_logged(dir.path(), &["--auth", AUTH]);
    let out = run_mw(
        &[
            "queues",
            "--broker",
            &addr,
            "--user",
            "alice",
            "--password",
            "alice-secret",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let closed = queue_support::log_until(&log, "connection closed");
    assert!(closed.contains("user=alice"), "{closed}");
}

/// A broker forwarding `orders.*` to a broker started with `--auth` and TLS logs in
/// there with `--route-token` over TLS (`--route-tls-ca`): the message sent to the first broker is received from the second by
/// alice. A token that is not USER.SECRET is refused at start.
#[test]
fn a_route_logs_in_to_the_next_broker_with_its_token() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ca = certs::Ca::new(dirs[2].path(), "ca");
    let (cert, key) = ca.server(dirs[2].path(), "target");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let extra = [
        "--auth".to_string(),
        AUTH.to_string(),
        "--tls-cert".to_string(),
        path(&cert),
        "--tls-key".to_string(),
        path(&key),
    ];
    let (_target, target) = start_broker_with(dirs[0].path(), "127.0.0.1:0", &extra);
    let route = [
        "--route".to_string(),
        format!("orders.*={target}"),
        "--route-token".to_string(),
        "ci.ci-secret".to_string(),
        "--route-tls-ca".to_string(),
        path(&ca.pem),
    ];
    let (_router, router) = start_broker_with(dirs[1].path(), "127.0.0.1:0", &route);

    let out = run_mw(&["send", "orders.r", "relayed", "--broker", &router], None);
    assert!(out.status.success(), "{out:?}");
    // `mw recv` refuses a queue the broker does not have yet: wait for the forwarded
    // message to create it (bounded).
    let ca_pem = path(&ca.pem);
    let listed = [
        "queue",
        "list",
        "--broker",
        &target,
        "--token",
        "ci.ci-secret",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = run_mw(&[&listed[..], &["--tls-ca", &ca_pem]].concat(), None);
        if out.stdout.iter().any(|l| l.starts_with("orders.r ")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never forwarded: {out:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = run_mw(
        &[
            "recv",
            "--count",
            "1",
            "--timeout",
            "30",
            "orders.r",
            "--broker",
            &target,
            "--user",
            "alice",
            "--password",
            "alice-secret",
            "--tls-ca",
            &path(&ca.pem),
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, ["relayed"], "{out:?}");

    let out = run_mw(
        &[
            "broker",
            "--addr",
            "127.0.0.1:0",
            "--route",
            "a=127.0.0.1:1",
            "--route-token",
            "no-dot",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr[0].contains("--route-token must be USER.SECRET"),
        "{out:?}"
    );
}
