//! The writer's key cache (`Config::key_cache`) is invisible: any sequence of puts
//! (blind, compare-and-set, with TTLs), deletes, increments and expiries gives the same
//! results, versions, create revisions and change counts with no cache, a cache far
//! smaller than the keys written (so it is emptied again and again), and the default.

use std::time::Duration;

use bytes::Bytes;
use mw_kv::{Config, DeleteOptions, Kv, PutOptions, Version};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        ttl_s: Option<u64>,
        /// Compare-and-set against the key's version as last seen, shifted by this.
        cas: Option<i8>,
    },
    Delete {
        key: u8,
        cas: Option<i8>,
    },
    Incr {
        key: u8,
        delta: i8,
    },
    /// Moves (paused) time on by this many seconds.
    Wait(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..6;
    prop_oneof![
        4 => (key.clone(), proptest::option::of(1u64..4), proptest::option::of(-1i8..=1))
            .prop_map(|(key, ttl_s, cas)| Op::Put { key, ttl_s, cas }),
        2 => (key.clone(), proptest::option::of(-1i8..=1)).prop_map(|(key, cas)| Op::Delete { key, cas }),
        2 => (key, any::<i8>()).prop_map(|(key, delta)| Op::Incr { key, delta }),
        1 => (0u8..3).prop_map(Op::Wait),
    ]
}

fn key(k: u8) -> Bytes {
    Bytes::from(format!("k{k}"))
}

fn cas_version(last: Option<Version>, shift: i8) -> Version {
    let v = last.map_or(0, |v| v.0);
    Version(v.saturating_add_signed(i64::from(shift)))
}

/// Runs `ops` on a store with `key_cache`, returning one line per operation and per
/// key read after it.
async fn run(ops: &[Op], key_cache: usize) -> Vec<String> {
    let kv = Kv::memory(Config {
        key_cache,
        reap_interval: Duration::from_secs(3600),
        ..Config::default()
    });
    let mut out = Vec::new();
    let mut n = 0u32;
    for op in ops {
        n += 1;
        let line = match op {
            Op::Put { key: k, ttl_s, cas } => {
                let last = kv.get(key(*k)).await.unwrap().map(|v| v.version);
                let options = PutOptions {
                    ttl: ttl_s.map(Duration::from_secs),
                    if_version: cas.map(|s| cas_version(last, s)),
                    ..PutOptions::default()
                };
                format!("{:?}", kv.put(key(*k), format!("v{n}"), options).await)
            }
            Op::Delete { key: k, cas } => {
                let last = kv.get(key(*k)).await.unwrap().map(|v| v.version);
                let options = DeleteOptions {
                    if_version: cas.map(|s| cas_version(last, s)),
                    ..DeleteOptions::default()
                };
                format!("{:?}", kv.delete(key(*k), options).await)
            }
            Op::Incr { key: k, delta } => {
                format!("{:?}", kv.incr(key(*k), i64::from(*delta)).await)
            }
            Op::Wait(s) => {
                tokio::time::advance(Duration::from_secs(u64::from(*s))).await;
                String::new()
            }
        };
        out.push(line);
        for k in 0..6 {
            let got = kv.get(key(k)).await.unwrap();
            // Expiry times are wall-clock and differ between stores by when each
            // opened; everything else must match.
            out.push(format!(
                "{:?}",
                got.map(|v| (v.value, v.version, v.create_revision, v.changes))
            ));
        }
    }
    out.push(format!("revision {}", kv.status().revision));
    kv.close().await.unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_key_cache_changes_no_result(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let (none, tiny, default) = rt.block_on(async {
            (
                run(&ops, 0).await,
                run(&ops, 2).await,
                run(&ops, Config::default().key_cache).await,
            )
        });
        prop_assert_eq!(&none, &tiny);
        prop_assert_eq!(&none, &default);
    }
}
