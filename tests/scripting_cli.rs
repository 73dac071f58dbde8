//! The `mw` client verbs for scripts: the broker address from
//! `MW_BROKER`, binary input (`--file`, length-framed stdin) and output (`recv --framed`),
//! `--ttl`/`--delay`/`--id` on send, `--timeout` on every waiting verb, `--json` on read
//! verbs, and `pub` saying how many subscribers an event reached.

mod queue_support;

use queue_support::{run_mw, run_mw_raw, start_broker};

fn framed(bodies: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for b in bodies {
        v.extend_from_slice(&(b.len() as u32).to_be_bytes());
        v.extend_from_slice(b);
    }
    v
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

#[test]
fn client_verbs_take_the_broker_from_mw_broker_and_default_to_7800() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let out = run_mw_raw(&["send", "q", "hello"], b"", &[("MW_BROKER", &addr)]);
    assert!(out.status.success(), "{}", out.stderr);
    let out = run_mw_raw(&["queues", "--json"], b"", &[("MW_BROKER", &addr)]);
    assert!(out.status.success(), "{}", out.stderr);
    let list = json(std::str::from_utf8(&out.stdout).unwrap());
    assert_eq!(list[0]["name"], "q");
    assert_eq!(list[0]["depth"], 1);
    // --broker wins over the environment.
    let out = run_mw_raw(
        &["queues", "--broker", &addr],
        b"",
        &[("MW_BROKER", "127.0.0.1:1")],
    );
    assert!(out.status.success(), "{}", out.stderr);
    // Without either, the default is where `mw broker` listens by default.
    let out = run_mw(&["send", "--help"], None);
    let help = out.stdout.join("\n");
    assert!(help.contains("[env: MW_BROKER"), "{help}");
    let default = format!("[default: {}]", mw::cli_args::DEFAULT_BROKER);
    assert!(help.contains(&default), "{help}");
}

#[test]
fn binary_bodies_go_through_file_and_framed_input_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let binary: &[u8] = b"two\nlines\0and \xff bytes";
    let file = dir.path().join("body.bin");
    std::fs::write(&file, binary).unwrap();
    let out = run_mw_raw(
        &[
            "send",
            "--broker",
            &addr,
            "bin",
            "--file",
            file.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert!(out.status.success(), "{}", out.stderr);
    let input = framed(&[b"", b"a\nb", b"\x00\x01"]);
    let out = run_mw_raw(&["send", "--broker", &addr, "bin", "--framed"], &input, &[]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 3);

    let out = run_mw_raw(
        &["recv", "--broker", &addr, "bin", "--framed", "--count", "4"],
        b"",
        &[],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, framed(&[binary, b"", b"a\nb", b"\x00\x01"]));

    // Framed input that ends inside a message is an error naming it; the ones before it
    // were sent.
    let mut torn = framed(&[b"whole"]);
    torn.extend_from_slice(&[0, 0, 0, 9, b'x']);
    let out = run_mw_raw(&["send", "--broker", &addr, "bin", "--framed"], &torn, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("inside message 2"), "{}", out.stderr);
    let out = run_mw_raw(
        &["recv", "--broker", &addr, "bin", "--count", "1"],
        b"",
        &[],
    );
    assert_eq!(out.stdout, b"whole\n");
}

#[test]
fn send_sets_id_delay_and_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let id = "000000000000000000000000000000ab";
    for _ in 0..2 {
        let out = run_mw(&["send", "--broker", &addr, "q", "once", "--id", id], None);
        assert!(out.status.success(), "{:?}", out.stderr);
        assert_eq!(out.stdout, [id], "the id given is the id stored");
    }
    let out = run_mw(
        &[
            "send", "--broker", &addr, "q", "later", "--delay", "3600", "--ttl", "7200",
        ],
        None,
    );
    assert!(out.status.success(), "{:?}", out.stderr);
    let out = run_mw(&["queues", "--broker", &addr, "--json"], None);
    let q = &json(&out.stdout[0])[0];
    assert_eq!(
        (q["depth"].as_u64(), q["delayed"].as_u64()),
        (Some(2), Some(1)),
        "{q}"
    );

    // An id names one message: refused with stdin lines, before anything is sent.
    let out = run_mw(
        &["send", "--broker", &addr, "q", "--id", "7"],
        Some("a\nb\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        ["mw: --id names one message: give MESSAGE or --file"]
    );

    let out = run_mw(
        &["recv", "--broker", &addr, "q", "--json", "--count", "1"],
        None,
    );
    let d = json(&out.stdout[0]);
    assert_eq!(d["id"], id);
    assert_eq!(d["body"], "once");
    assert_eq!(d["attempt"], 1);
    assert_eq!(d["queue"], "q");
}

#[test]
fn waiting_verbs_give_up_after_their_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let out = run_mw(
        &["sub", "--broker", &addr, "quiet.>", "--timeout", "0.2"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr.last().unwrap(),
        "mw: no event on quiet.> within 0.2 s"
    );
    let out = run_mw(
        &[
            "space",
            "notify",
            "--broker",
            &addr,
            "[\"x\"]",
            "--timeout",
            "0.2",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr.last().unwrap(),
        "mw: no tuple matching [\"x\"] within 0.2 s"
    );
}

#[test]
fn pub_says_how_many_subscribers_each_event_reached_and_sub_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let out = run_mw(&["pub", "--broker", &addr, "news.a", "nobody"], None);
    assert_eq!(out.stdout, ["0"], "{:?}", out.stderr);

    // A durable subscription is one subscriber that is always there.
    let out = run_mw(
        &[
            "sub",
            "--broker",
            &addr,
            "news.>",
            "--durable",
            "d",
            "--timeout",
            "0.1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
    let out = run_mw(
        &["pub", "--broker", &addr, "news.b", "--json"],
        Some("one\ntwo\n"),
    );
    assert!(out.status.success(), "{:?}", out.stderr);
    assert_eq!(out.stdout.len(), 2);
    let rep = json(&out.stdout[0]);
    assert_eq!(
        (rep["topic"].as_str(), rep["reached"].as_u64()),
        (Some("news.b"), Some(1))
    );

    let out = run_mw(
        &[
            "sub",
            "--broker",
            &addr,
            "news.>",
            "--durable",
            "d",
            "--json",
            "--count",
            "2",
        ],
        None,
    );
    assert!(out.status.success(), "{:?}", out.stderr);
    let e = json(&out.stdout[1]);
    assert_eq!(
        (e["topic"].as_str(), e["body"].as_str()),
        (Some("news.b"), Some("two"))
    );
}
