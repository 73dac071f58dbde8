//! Replays every committed corpus and regression input of the kv fuzz targets
//! (`fuzz/corpus/kv_*`, `fuzz/regressions/kv_*`) through the same harness code the
//! cargo-fuzz targets run (`fuzz/harness/kv_requests.rs`, `kv_storage.rs`), so the
//! fuzzers' findings stay fixed without the fuzzing toolchain. (The other targets are
//! replayed by the facade's `tests/fuzz_corpus.rs`; these live here because the facade
//! cannot depend on mw-kv, which depends on it.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

#[allow(dead_code, unreachable_pub)]
#[path = "../../../fuzz/harness/common.rs"]
mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../../../fuzz/harness/kv_requests.rs"]
mod kv_requests;
#[allow(dead_code, unreachable_pub)]
#[path = "../../../fuzz/harness/kv_storage.rs"]
mod kv_storage;

/// Panics anywhere in the process (a handler's panic that the RPC server turns into an
/// error reply included), counted by a hook: a harness input must cause none.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        files.sort();
        for p in files {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn replay(target: &str, run: fn(&[u8])) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let inputs = inputs(target);
    assert!(
        inputs.len() >= 4,
        "{target}: the committed corpus is missing"
    );
    for (name, data) in &inputs {
        let before = PANICS.load(Ordering::SeqCst);
        let r = std::panic::catch_unwind(|| run(data));
        assert!(
            r.is_ok() && PANICS.load(Ordering::SeqCst) == before,
            "{name} panicked"
        );
    }
}

#[test]
fn kv_requests_corpus_replays_clean() {
    replay("kv_requests", kv_requests::run);
}

#[test]
fn kv_storage_corpus_replays_clean() {
    replay("kv_storage", kv_storage::run);
}
