//! Replays every committed fuzz corpus and regression input (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`), plus the seeds and regressions generated in code,
//! through the same harness functions the cargo-fuzz targets call (`fuzz/harness/`).
//!
//! The inputs run in a child process of this test binary ([`replay_child`]): all of a
//! target's at once, then, if that fails, each alone. An input fails if it panics
//! anywhere (any thread: a panic caught by the RPC server counts too, as it does under
//! libFuzzer) or does not finish within the watchdog's limit.
//! `MW_FUZZ_WRITE_SEEDS=1 cargo test --test fuzz_corpus` (re)writes the generated seeds
//! and regressions into `fuzz/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/harness/common.rs"]
mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/harness/frame_codec.rs"]
mod frame_codec;
#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/harness/handshake.rs"]
mod handshake;
#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/harness/pubsub_batch.rs"]
mod pubsub_batch;
#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/harness/queue_api.rs"]
mod queue_api;
#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/harness/queue_recovery.rs"]
mod queue_recovery;
#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/harness/rpc_client.rs"]
mod rpc_client;
#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/harness/rpc_server.rs"]
mod rpc_server;
#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/harness/rpc_wire.rs"]
mod rpc_wire;
#[allow(dead_code, unreachable_pub)]
#[path = "../fuzz/harness/seeds.rs"]
mod seeds;

/// Longest one child (one input, or all of a target's) may run before it counts as a
/// hang. Every input takes well under a second in a debug build; a slow path must fail
/// here, not only under libFuzzer (a quadratic recovery scan took about 30 s on
/// `repeating-10000200-1mib` in a debug build). A whole batch that times out is retried input by
/// input, so the limit only ever fails a single slow input.
const WATCHDOG: Duration = Duration::from_secs(20);
/// Set in a child process: the target whose harness [`replay_child`] runs.
const CHILD_TARGET: &str = "MW_FUZZ_REPLAY_TARGET";
/// Set in a child process: the file holding the input.
const CHILD_INPUT: &str = "MW_FUZZ_REPLAY_INPUT";

fn harness(target: &str) -> fn(&[u8]) {
    match target {
        "frame_codec" => frame_codec::run,
        "handshake" => handshake::run,
        "rpc_wire" => rpc_wire::run,
        "rpc_server" => rpc_server::run,
        "rpc_client" => rpc_client::run,
        "pubsub_batch" => pubsub_batch::run,
        "queue_api" => queue_api::run,
        "queue_recovery" => queue_recovery::run,
        other => panic!("no harness for {other}"),
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Committed inputs of `target`: corpus first, then regressions, each sorted by name.
fn committed(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.expect("directory entry").path())
            // Dotfiles (`.gitkeep`) only keep empty directories in git.
            .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        files.sort();
        for p in files {
            let name = format!(
                "{kind}/{target}/{}",
                p.file_name().unwrap().to_string_lossy()
            );
            out.push((name, std::fs::read(&p).expect("read input")));
        }
    }
    out
}

/// The child side of [`replay`]: runs the input file (or every file of the directory, in
/// name order) that the environment names, and turns any panic, on any thread (a handler
/// panic the RPC server catches included), into an abort, as libFuzzer does. Without the
/// environment it has nothing to do.
#[test]
fn replay_child() {
    let (Some(target), Some(input)) = (
        std::env::var_os(CHILD_TARGET),
        std::env::var_os(CHILD_INPUT),
    ) else {
        return;
    };
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        std::process::abort();
    }));
    let run = harness(&target.to_string_lossy());
    let input = PathBuf::from(input);
    let mut files = vec![input.clone()];
    if input.is_dir() {
        files = std::fs::read_dir(&input)
            .expect("read input directory")
            .map(|e| e.expect("directory entry").path())
            .collect();
        files.sort();
    }
    for f in files {
        run(&std::fs::read(&f).expect("read input"));
    }
}

/// Runs `inputs` in one child process of this test binary (so a panic, an abort or a hang
/// cannot take the test down with it); `Err` says how it failed.
fn replay(target: &str, inputs: &[&[u8]]) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, data) in inputs.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i:06}")), data).expect("write input");
    }
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "replay_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_TARGET, target)
        .env(CHILD_INPUT, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn replay child");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
                .filter(|l| !l.trim_start().starts_with("at "))
                .take(6)
                .collect();
            Err(format!("{} ({})", first.join(" | "), out.status))
        }
        Ok(Err(e)) => Err(format!("could not run the child: {e}")),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            Err(format!("still running after {WATCHDOG:?} (hang); killed"))
        }
    }
}

fn replay_target(target: &str) {
    let mut inputs = committed(target);
    inputs.extend(
        seeds::seeds(target)
            .into_iter()
            .map(|(n, d)| (format!("generated seed {n}"), d)),
    );
    inputs.extend(
        seeds::regressions()
            .into_iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, (n, d))| (format!("generated regression {n}"), d)),
    );
    assert!(!inputs.is_empty(), "no inputs for {target}");
    // All inputs in one child first; only if that fails, one child per input, to name
    // every input that fails and why.
    let all: Vec<&[u8]> = inputs.iter().map(|(_, d)| &d[..]).collect();
    if replay(target, &all).is_ok() {
        return;
    }
    let mut failures = Vec::new();
    for (name, data) in &inputs {
        if let Err(why) = replay(target, &[data]) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs of fuzz target {target} failed:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

#[test]
fn frame_codec_inputs() {
    replay_target("frame_codec");
}

#[test]
fn handshake_inputs() {
    replay_target("handshake");
}

#[test]
fn rpc_wire_inputs() {
    replay_target("rpc_wire");
}

#[test]
fn rpc_server_inputs() {
    replay_target("rpc_server");
}

#[test]
fn rpc_client_inputs() {
    replay_target("rpc_client");
}

#[test]
fn pubsub_batch_inputs() {
    replay_target("pubsub_batch");
}

#[test]
fn queue_api_inputs() {
    replay_target("queue_api");
}

#[test]
fn queue_recovery_inputs() {
    replay_target("queue_recovery");
}

/// Every generated seed and regression is committed under `fuzz/`, so the fuzzer starts
/// from them; with `MW_FUZZ_WRITE_SEEDS=1` they are (re)written first.
#[test]
fn generated_inputs_are_committed() {
    let write = std::env::var_os("MW_FUZZ_WRITE_SEEDS").is_some();
    let mut all: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for target in seeds::TARGETS {
        for (name, data) in seeds::seeds(target) {
            all.push((fuzz_dir().join("corpus").join(target).join(name), data));
        }
    }
    for (target, (name, data)) in seeds::regressions() {
        all.push((fuzz_dir().join("regressions").join(target).join(name), data));
    }
    let mut missing = Vec::new();
    for (path, data) in all {
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).expect("create fuzz dir");
            std::fs::write(&path, data).expect("write input");
        } else if !path.is_file() {
            missing.push(path.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "generated inputs not committed (run MW_FUZZ_WRITE_SEEDS=1 cargo test --test fuzz_corpus):\n{}",
        missing.join("\n")
    );
}
