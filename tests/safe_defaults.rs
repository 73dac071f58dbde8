//! Safe defaults of `mw broker`: its data directory is created owner-only, and listening
//! where other machines can connect, without client certificates, logs a warning that
//! says so; on loopback it does not.

mod queue_support;

use std::process::{Command, Stdio};

use queue_support::{lines_of, Proc, MW, WAIT};

/// Starts `mw broker ARGS` and returns its stderr lines up to and including the
/// `listening` log line.
fn stderr_until_listening(args: &[&str]) -> Vec<String> {
    let mut child = Command::new(MW)
        .arg("broker")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mw broker starts");
    let err = lines_of(child.stderr.take().unwrap());
    let _proc = Proc(child);
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        let Ok(line) = err.recv_timeout(WAIT) else {
            break;
        };
        let done = line.contains("listening");
        lines.push(line);
        if done {
            return lines;
        }
    }
    panic!("no listening line: {lines:?}");
}

#[test]
fn a_broker_reachable_from_other_machines_warns_and_a_loopback_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("open");
    let lines = stderr_until_listening(&["--addr", "0.0.0.0:0", "--data", data.to_str().unwrap()]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARNING: listening on 0.0.0.0:0, reachable from other machines")),
        "{lines:?}"
    );
    let data = dir.path().join("local");
    let lines =
        stderr_until_listening(&["--addr", "127.0.0.1:0", "--data", data.to_str().unwrap()]);
    assert!(!lines.iter().any(|l| l.contains("WARNING")), "{lines:?}");
}

#[cfg(unix)]
#[test]
fn the_data_directory_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a").join("data");
    stderr_until_listening(&["--addr", "127.0.0.1:0", "--data", data.to_str().unwrap()]);
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}
