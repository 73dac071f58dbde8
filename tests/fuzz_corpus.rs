//! Replays every committed fuzz corpus and regression input (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`), plus the seeds and regressions generated in code,
//! through the same harness functions the cargo-fuzz targets call (`fuzz/harness/`).
//!
//! An input fails if it panics anywhere (any thread: a panic caught by the RPC server
//! counts too, as it does under libFuzzer) or does not finish within the watchdog's
//! limit. `MW_FUZZ_WRITE_SEEDS=1 cargo test --test fuzz_corpus` (re)writes the generated
//! seeds and regressions into `fuzz/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

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

/// Longest one input may run before it counts as a hang (debug build, loaded machine).
const WATCHDOG: Duration = Duration::from_secs(60);

/// Panics seen by the hook, on any thread.
static PANICS: AtomicUsize = AtomicUsize::new(0);
/// One input at a time, so a panic is charged to the input that caused it.
static SERIAL: Mutex<()> = Mutex::new(());

fn install_panic_counter() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

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

/// Runs one input on its own thread; `Err` says how it failed.
fn replay_one(target: &str, data: Vec<u8>) -> Result<Duration, String> {
    let run = harness(target);
    let before = PANICS.load(Ordering::SeqCst);
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("replay-{target}"))
        .spawn(move || {
            let r = std::panic::catch_unwind(|| run(&data));
            let _ = tx.send(r.is_ok());
        })
        .expect("spawn replay thread");
    match rx.recv_timeout(WATCHDOG) {
        Ok(finished) => {
            let panics = PANICS.load(Ordering::SeqCst) - before;
            if !finished || panics > 0 {
                Err(format!("{panics} panic(s), see the output above"))
            } else {
                Ok(started.elapsed())
            }
        }
        // The thread is left running; the test fails and the process ends with it.
        Err(_) => Err(format!("still running after {WATCHDOG:?} (hang)")),
    }
}

fn replay_target(target: &str) {
    install_panic_counter();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    let mut failures = Vec::new();
    for (name, data) in inputs {
        if let Err(why) = replay_one(target, data) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} input(s) of fuzz target {target} failed:\n{}",
        failures.len(),
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
