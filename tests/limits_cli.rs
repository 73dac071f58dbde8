//! The broker's size limits are settings (`--max-message-size`,
//! `--max-event-size`, `--max-frame-size`), they must agree with each other, and a send or
//! publish over one is refused with one line naming the limit (before, an oversized
//! `mw pub` only said `disconnected from server`).

mod queue_support;

use queue_support::{run_mw, start_broker, start_broker_with};

fn is_id(line: &str) -> bool {
    line.len() == 32 && line.chars().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn a_send_over_the_configured_max_message_size_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<String> = ["--max-message-size", "2KiB", "--max-event-size", "1KiB"]
        .map(String::from)
        .to_vec();
    let (_broker, addr) = start_broker_with(dir.path(), "127.0.0.1:0", &extra);
    let out = run_mw(&["send", "--broker", &addr, "q", &"x".repeat(2048)], None);
    assert!(out.status.success(), "{:?}", out.stderr);
    assert!(is_id(&out.stdout[0]), "{:?}", out.stdout);

    let out = run_mw(&["send", "--broker", &addr, "q", &"x".repeat(2049)], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr,
        ["mw: message of 2049 bytes exceeds the broker's max message size of 2048 bytes"],
    );
}

#[test]
fn a_publish_over_the_configured_max_event_size_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--max-event-size".to_string(), "1KiB".to_string()];
    let (_broker, addr) = start_broker_with(dir.path(), "127.0.0.1:0", &extra);
    let out = run_mw(&["pub", "--broker", &addr, "a.b", &"x".repeat(1025)], None);
    assert_eq!(out.status.code(), Some(1), "{:?}", out);
    assert_eq!(
        out.stderr,
        ["mw: broker refused the request: event of 1025 bytes exceeds the broker's max event size of 1024 bytes"],
    );

    // From stdin every line gets its outcome; the refused one does not stop the others.
    let input = format!("small\n{}\nsmall again\n", "y".repeat(4096));
    let out = run_mw(&["pub", "--broker", &addr, "a.b"], Some(&input));
    assert_eq!(out.status.code(), Some(1), "{:?}", out);
    assert_eq!(out.stdout, ["0", "-", "0"], "{:?}", out);
    assert!(
        out.stderr[0].starts_with("mw pub: line 2 not published:")
            && out.stderr[0].contains("max event size of 1024 bytes"),
        "{:?}",
        out.stderr
    );
    assert_eq!(
        out.stderr.last().unwrap(),
        "mw: line 2 was not published; every other line was"
    );
}

/// An event no frame can carry is refused by the client itself, naming the size it can
/// send, and nothing is sent (before: `disconnected from server`).
#[test]
fn a_publish_larger_than_a_frame_is_refused_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = start_broker(dir.path());
    let input = format!("{}\n", "z".repeat(17 << 20));
    let out = run_mw(&["pub", "--broker", &addr, "a.b"], Some(&input));
    assert_eq!(out.status.code(), Some(1), "{:?}", out.stderr);
    assert_eq!(out.stdout, ["-"]);
    assert!(
        out.stderr[0].contains("event of 17825792 bytes exceeds the max event size of"),
        "{:?}",
        out.stderr
    );
}

#[test]
fn size_limits_that_disagree_are_refused_at_start() {
    for (flags, says) in [
        (
            &["--max-message-size", "0"][..],
            "max message size must be 1 to",
        ),
        (
            &["--max-message-size", "1GiB"][..],
            "max message size must be 1 to",
        ),
        (
            &["--max-event-size", "0"][..],
            "max event size must be at least 1 byte",
        ),
        (
            &["--max-event-size", "4MiB"][..],
            "durable subscriptions store events",
        ),
        (
            &["--max-message-size", "32MiB", "--max-event-size", "1MiB"][..],
            "max frame size (16777216 bytes) must exceed the max message size",
        ),
        (
            &["--max-frame-size", "1MiB"][..],
            "max frame size (1048576 bytes)",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let mut args = vec!["broker", "--addr", "127.0.0.1:0", "--data", data];
        args.extend_from_slice(flags);
        let out = run_mw(&args, None);
        assert!(!out.status.success(), "{flags:?} accepted");
        assert!(out.stdout.is_empty(), "{flags:?}: it listened");
        assert_eq!(out.stderr.len(), 1, "{flags:?}: {:?}", out.stderr);
        assert!(out.stderr[0].contains(says), "{flags:?}: {:?}", out.stderr);
    }
}

/// Raised limits work end to end: an 8 MiB message with a 9 MiB message limit.
#[test]
fn raised_limits_let_larger_messages_through() {
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<String> = ["--max-message-size", "9MiB", "--max-event-size", "8MiB"]
        .map(String::from)
        .to_vec();
    let (_broker, addr) = start_broker_with(dir.path(), "127.0.0.1:0", &extra);
    let big = format!("{}\n", "m".repeat(8 << 20));
    let out = run_mw(&["send", "--broker", &addr, "big"], Some(&big));
    assert!(out.status.success(), "{:?}", out.stderr);
    let out = run_mw(&["pub", "--broker", &addr, "a.b"], Some(&big));
    assert!(out.status.success(), "{:?}", out.stderr);
    assert_eq!(out.stdout, ["0"]);
}
