//! Administering a real `mw broker` from the command line: queues
//! (list, peek, purge, delete, redrive of the dead-letter queue), durable subscriptions
//! (list, delete) and retained messages (clear), each with `--json`, and names the
//! broker does not know refused rather than created.

mod queue_support;

use queue_support::{run_mw, start_broker, Output};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

fn ok(out: Output) -> Vec<String> {
    assert!(out.status.success(), "{:?}", out.stderr);
    out.stdout
}

#[test]
fn queue_peek_purge_delete_and_their_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let b = ["--broker", addr.as_str()];
    ok(run_mw(
        &[&["send"][..], &b, &["q"]].concat(),
        Some("a\nb\nc\n"),
    ));

    let peeked = ok(run_mw(
        &[&["queue", "peek"][..], &b, &["q", "--count", "2", "--json"]].concat(),
        None,
    ));
    assert_eq!(peeked.len(), 2);
    let first = json(&peeked[0]);
    assert_eq!(
        (first["body"].as_str(), first["waiting"].as_str()),
        (Some("a"), Some("ready"))
    );
    assert_eq!(json(&peeked[1])["body"], "b");
    let text = ok(run_mw(&[&["queue", "peek"][..], &b, &["q"]].concat(), None));
    assert_eq!(text.len(), 3, "peek delivered nothing: {text:?}");
    assert!(text[2].ends_with(" ready 0 c"), "{text:?}");

    let out = ok(run_mw(
        &[&["queue", "purge"][..], &b, &["q", "--json"]].concat(),
        None,
    ));
    assert_eq!(
        json(&out[0]),
        serde_json::json!({"queue": "q", "purged": 3})
    );
    let list = ok(run_mw(
        &[&["queue", "list"][..], &b, &["--json"]].concat(),
        None,
    ));
    assert_eq!(json(&list[0])[0]["depth"], 0);

    ok(run_mw(&[&["send"][..], &b, &["q", "again"]].concat(), None));
    let out = ok(run_mw(
        &[&["queue", "delete"][..], &b, &["q"]].concat(),
        None,
    ));
    assert_eq!(out, ["deleted q (1 messages)"]);
    let list = ok(run_mw(
        &[&["queue", "list"][..], &b, &["--json"]].concat(),
        None,
    ));
    assert_eq!(json(&list[0]), serde_json::json!([]));

    for verb in ["peek", "purge", "delete", "redrive"] {
        let out = run_mw(&[&["queue", verb][..], &b, &["nosuch"]].concat(), None);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        assert_eq!(
            out.stderr,
            ["mw: no queue named \"nosuch\" on the broker"],
            "{verb}"
        );
    }
    let list = ok(run_mw(
        &[&["queue", "list"][..], &b, &["--json"]].concat(),
        None,
    ));
    assert_eq!(
        json(&list[0]),
        serde_json::json!([]),
        "refusals created nothing"
    );
}

#[test]
fn a_queue_being_consumed_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let b = ["--broker", addr.as_str()];
    ok(run_mw(&[&["send"][..], &b, &["busy", "x"]].concat(), None));
    let mut recv = std::process::Command::new(queue_support::MW)
        .args(["recv", "--broker", &addr, "busy"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = queue_support::lines_of(recv.stdout.take().unwrap());
    let _recv = queue_support::Proc(recv);
    // Readiness: it printed the message, so its consumer is attached.
    assert_eq!(lines.recv_timeout(queue_support::WAIT).unwrap(), "x");
    let out = run_mw(&[&["queue", "delete"][..], &b, &["busy"]].concat(), None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        ["mw: queue busy is in use (1 consumers attached); stop them first"]
    );
}

#[test]
fn redrive_moves_dead_letters_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let b = ["--broker", addr.as_str()];
    // Dead-letter through the library: a rejected delivery goes to orders.dlq.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let remote = mw::queue::remote::RemoteQueues::connect(&addr)
            .await
            .unwrap();
        let q = remote.queue("orders");
        q.send(mw::queue::Message::new("bad")).await.unwrap();
        let mut c = q
            .consumer(mw::queue::ConsumerOptions::default())
            .await
            .unwrap();
        let d = tokio::time::timeout(queue_support::WAIT, c.recv())
            .await
            .unwrap()
            .unwrap();
        d.reject().await.unwrap();
    });
    // Closes the connection: the broker detaches that consumer (a current-thread
    // runtime does nothing outside `block_on`, so dropping the consumer is not enough).
    drop(rt);
    let peeked = ok(run_mw(
        &[&["queue", "peek"][..], &b, &["orders.dlq", "--json"]].concat(),
        None,
    ));
    assert_eq!(json(&peeked[0])["body"], "bad");
    let out = ok(run_mw(
        &[&["queue", "redrive"][..], &b, &["orders", "--json"]].concat(),
        None,
    ));
    assert_eq!(
        json(&out[0]),
        serde_json::json!({"queue": "orders", "moved": 1})
    );
    let out = ok(run_mw(
        &[&["recv"][..], &b, &["orders", "--count", "1"]].concat(),
        None,
    ));
    assert_eq!(out, ["bad"]);
}

#[test]
fn durable_subscriptions_are_listed_and_deleted_and_retained_messages_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let b = ["--broker", addr.as_str()];
    // Creates the durable subscription, then gives up waiting.
    let out = run_mw(
        &[
            &["sub"][..],
            &b,
            &["orders.>", "--durable", "billing", "--timeout", "0.1"],
        ]
        .concat(),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    ok(run_mw(
        &[&["pub"][..], &b, &["orders.new", "o1"]].concat(),
        None,
    ));
    // The broker stores events for a durable subscription on a task of its own: wait
    // (bounded) until the listing counts the one published.
    let mut d = serde_json::Value::Null;
    for _ in 0..100 {
        let list = ok(run_mw(
            &[&["durable", "list"][..], &b, &["--json"]].concat(),
            None,
        ));
        d = json(&list[0])[0].clone();
        if d["stored"] == 1 {
            break;
        }
    }
    assert_eq!(
        (d["name"].as_str(), d["pattern"].as_str()),
        (Some("billing"), Some("orders.>"))
    );
    assert_eq!(d["stored"], 1, "{d}");
    let out = ok(run_mw(
        &[&["durable", "delete"][..], &b, &["billing"]].concat(),
        None,
    ));
    assert_eq!(out, ["deleted durable subscription billing"]);
    let list = ok(run_mw(
        &[&["durable", "list"][..], &b, &["--json"]].concat(),
        None,
    ));
    assert_eq!(json(&list[0]), serde_json::json!([]));
    let out = run_mw(
        &[&["durable", "delete"][..], &b, &["billing"]].concat(),
        None,
    );
    assert_eq!(
        out.stderr,
        ["mw: no durable subscription named \"billing\""]
    );

    ok(run_mw(
        &[&["pub"][..], &b, &["sensors.t", "21", "--retain"]].concat(),
        None,
    ));
    let out = ok(run_mw(
        &[&["retained", "clear"][..], &b, &["sensors.t", "--json"]].concat(),
        None,
    ));
    assert_eq!(
        json(&out[0]),
        serde_json::json!({"topic": "sensors.t", "cleared": true})
    );
    let out = run_mw(
        &[&["retained", "clear"][..], &b, &["sensors.t"]].concat(),
        None,
    );
    assert_eq!(out.stderr, ["mw: topic sensors.t has no retained message"]);
}

#[test]
fn connections_are_listed_and_one_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let b = ["--broker", addr.as_str()];
    let ids = |out: Vec<String>| -> Vec<u64> {
        json(&out[0])
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect()
    };
    // Only the listing's own connection.
    let before = ids(ok(run_mw(
        &[&["conn", "list"][..], &b, &["--json"]].concat(),
        None,
    )));
    assert_eq!(before.len(), 1, "{before:?}");

    let mut sub = std::process::Command::new(queue_support::MW)
        .args(["sub", "--broker", &addr, "a.>"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = queue_support::lines_of(sub.stderr.take().unwrap());
    let mut sub = queue_support::Proc(sub);
    // Readiness: subscribed, so its connection is open.
    assert_eq!(
        err.recv_timeout(queue_support::WAIT).unwrap(),
        "subscribed to a.>"
    );
    let during = ids(ok(run_mw(
        &[&["conn", "list"][..], &b, &["--json"]].concat(),
        None,
    )));
    // The sub's connection, and the listing's own (newer than the sub's).
    assert_eq!(during.len(), 2, "{during:?}");
    let sub_conn = during[0];
    let out = ok(run_mw(
        &[&["conn", "close"][..], &b, &[&sub_conn.to_string()[..]]].concat(),
        None,
    ));
    assert_eq!(out, [format!("closed connection {sub_conn}")]);
    // The subscriber sees its connection end and exits with an error (bounded: its
    // error line comes as it exits).
    let line = err.recv_timeout(queue_support::WAIT).unwrap();
    assert!(line.starts_with("mw: "), "{line}");
    let status = sub.0.wait().unwrap();
    assert!(!status.success());
    let text = ok(run_mw(&[&["conn", "list"][..], &b].concat(), None));
    assert_eq!(text.len(), 2, "header and the listing's own: {text:?}");

    let out = run_mw(&[&["conn", "close"][..], &b, &["999999"]].concat(), None);
    assert_eq!(out.stderr, ["mw: no open connection 999999"]);
}

#[test]
fn consumers_are_listed_and_one_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let b = ["--broker", addr.as_str()];
    ok(run_mw(
        &[&["send"][..], &b, &["work", "job"]].concat(),
        None,
    ));
    let mut recv = std::process::Command::new(queue_support::MW)
        .args(["recv", "--broker", &addr, "work"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = queue_support::lines_of(recv.stdout.take().unwrap());
    let err = queue_support::lines_of(recv.stderr.take().unwrap());
    let mut recv = queue_support::Proc(recv);
    // Readiness: it printed the message, so its consumer is attached.
    assert_eq!(lines.recv_timeout(queue_support::WAIT).unwrap(), "job");
    let list = ok(run_mw(
        &[&["consumer", "list"][..], &b, &["--json"]].concat(),
        None,
    ));
    let all = json(&list[0]);
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all[0]["queue"], "work");
    let id = all[0]["id"].as_u64().unwrap();
    let out = ok(run_mw(
        &[&["consumer", "close"][..], &b, &[&id.to_string()[..]]].concat(),
        None,
    ));
    assert_eq!(out, [format!("closed consumer {id}")]);
    // The receiver is told, and exits with an error.
    let line = err.recv_timeout(queue_support::WAIT).unwrap();
    assert_eq!(
        line,
        format!("mw: consumer {id} was closed by an administrator")
    );
    assert!(!recv.0.wait().unwrap().success());
    let list = ok(run_mw(
        &[&["consumer", "list"][..], &b, &["--json"]].concat(),
        None,
    ));
    assert_eq!(json(&list[0]), serde_json::json!([]));
    let out = run_mw(
        &[&["consumer", "close"][..], &b, &["424242"]].concat(),
        None,
    );
    assert_eq!(out.stderr, ["mw: no consumer 424242 attached"]);
}
