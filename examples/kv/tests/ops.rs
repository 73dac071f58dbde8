//! Every operation of `mw.kv` through the generated client, over TCP, Unix sockets and
//! the in-process transport: get/put/delete, versions and revisions, incr, scan order
//! and paging, watch, status; and the typed refusals (oversized key and value, scan
//! limit, CAS conflict) after which the node keeps serving.

mod common;

use bytes::Bytes;
use common::{within, TestNode, Transport, ALL};
use futures::StreamExt;
use mw::rpc::RpcError;
use mw_kv::{DeleteOptions, Durability, EventKind, KvClient, KvError, PutOptions, Version};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn app(e: RpcError<KvError>) -> KvError {
    e.into_application().expect("an application error")
}

async fn put(c: &KvClient, k: &str, v: &str) -> mw_kv::WriteResult {
    c.put(b(k), b(v), PutOptions::default()).await.unwrap()
}

async fn keys(c: &KvClient, prefix: &str, after: Option<&str>, limit: u32) -> Vec<String> {
    let mut s = c.scan(b(prefix), after.map(b), limit).await.unwrap();
    let mut out = Vec::new();
    while let Some(item) = within("scan item", s.next()).await {
        let e = item.unwrap().unwrap();
        out.push(String::from_utf8(e.key.to_vec()).unwrap());
    }
    out
}

async fn every_operation(t: Transport) {
    let node = TestNode::memory(t).await;
    let c = node.client().await;
    put_get_versions_and_revisions(&c).await;
    buffered_writes(&c).await;
    compare_and_set(&c).await;
    delete_with_and_without_condition(&c).await;
    incr_counts(&c).await;
    scan_order_and_paging(&c).await;
    watch_replays_then_follows(&c).await;
    node.stop().await;
}

/// put/get: versions are revisions, revisions grow by one per change.
async fn put_get_versions_and_revisions(c: &KvClient) {
    let w1 = put(c, "a", "1").await;
    assert_eq!((w1.version, w1.revision), (Version(1), 1));
    assert!(w1.durable, "Sync under fsync always reports durable");
    let w2 = put(c, "a", "2").await;
    assert_eq!(w2.version, Version(2));
    let got = c.get(b("a")).await.unwrap().unwrap();
    assert_eq!(&got.value[..], b"2");
    assert_eq!(
        (got.version, got.create_revision, got.changes),
        (Version(2), 1, 2)
    );
    assert_eq!(c.get(b("missing")).await.unwrap(), None);
}

/// Buffered writes are applied and visible, and say they were not durable.
async fn buffered_writes(c: &KvClient) {
    let wb = c
        .put(
            b("buffered"),
            b("x"),
            PutOptions {
                durability: Durability::Buffered,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!wb.durable);
    assert_eq!(
        &c.get(b("buffered")).await.unwrap().unwrap().value[..],
        b"x"
    );
}

/// compare-and-set: create-only, then on the current version, then a stale one.
async fn compare_and_set(c: &KvClient) {
    let create = PutOptions {
        if_version: Some(Version::ABSENT),
        ..Default::default()
    };
    let err = app(c.put(b("a"), b("3"), create.clone()).await.unwrap_err());
    assert_eq!(
        err,
        KvError::VersionConflict {
            expected: Version::ABSENT,
            current: Some(Version(2))
        }
    );
    let fresh = c.put(b("new"), b("n"), create).await.unwrap();
    let ok = c
        .put(
            b("new"),
            b("n2"),
            PutOptions {
                if_version: Some(fresh.version),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(ok.version > fresh.version);
    let stale = app(c
        .put(
            b("new"),
            b("n3"),
            PutOptions {
                if_version: Some(fresh.version),
                ..Default::default()
            },
        )
        .await
        .unwrap_err());
    assert!(matches!(stale, KvError::VersionConflict { current: Some(v), .. } if v == ok.version));
}

/// delete, with and without a version condition; a second delete finds nothing.
async fn delete_with_and_without_condition(c: &KvClient) {
    let err = app(c
        .delete(
            b("a"),
            DeleteOptions {
                if_version: Some(Version(1)),
                ..Default::default()
            },
        )
        .await
        .unwrap_err());
    assert!(matches!(err, KvError::VersionConflict { .. }), "{err}");
    let d = c.delete(b("a"), DeleteOptions::default()).await.unwrap();
    assert_eq!(d.deleted, Some(Version(2)));
    assert_eq!(c.get(b("a")).await.unwrap(), None);
    let again = c.delete(b("a"), DeleteOptions::default()).await.unwrap();
    assert_eq!(again.deleted, None);
    // A re-created key gets a new, larger version: no ABA for a CAS holding the old one.
    let re = put(c, "a", "again").await;
    assert!(re.version > Version(2));
    assert_eq!(c.get(b("a")).await.unwrap().unwrap().changes, 1);
}

/// incr: missing counts as 0, negative deltas, not-an-integer, overflow.
async fn incr_counts(c: &KvClient) {
    assert_eq!(c.incr(b("n"), 5).await.unwrap(), 5);
    assert_eq!(c.incr(b("n"), -7).await.unwrap(), -2);
    assert_eq!(&c.get(b("n")).await.unwrap().unwrap().value[..], b"-2");
    assert_eq!(
        app(c.incr(b("a"), 1).await.unwrap_err()),
        KvError::NotAnInteger
    );
    put(c, "big", &i64::MAX.to_string()).await;
    assert_eq!(
        app(c.incr(b("big"), 1).await.unwrap_err()),
        KvError::Overflow
    );
}

/// scan: key order within a prefix, paging with start_after, limit.
async fn scan_order_and_paging(c: &KvClient) {
    for k in ["user/3", "user/1", "user/2", "userx", "usa", "user/10"] {
        put(c, k, k).await;
    }
    assert_eq!(
        keys(c, "user/", None, 100).await,
        ["user/1", "user/10", "user/2", "user/3"]
    );
    assert_eq!(keys(c, "user/", None, 2).await, ["user/1", "user/10"]);
    assert_eq!(
        keys(c, "user/", Some("user/10"), 100).await,
        ["user/2", "user/3"]
    );
    assert_eq!(
        keys(c, "user/", Some("user/3"), 100).await,
        Vec::<String>::new()
    );
    assert_eq!(keys(c, "zzz", None, 100).await, Vec::<String>::new());
}

/// watch from a past revision replays history in revision order, then follows.
async fn watch_replays_then_follows(c: &KvClient) {
    let status = c.status().await.unwrap();
    let mut w = c.watch(b("user/"), Some(1)).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let e = within("history event", w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(e.revision);
        assert_eq!(e.kind, EventKind::Put);
    }
    assert!(seen.windows(2).all(|p| p[0] < p[1]), "{seen:?}");
    let live = put(c, "user/9", "nine").await;
    let e = within("live event", w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((e.revision, &e.key[..]), (live.revision, &b"user/9"[..]));
    assert!(live.revision > status.revision);
    c.delete(b("user/9"), DeleteOptions::default())
        .await
        .unwrap();
    let e = within("delete event", w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((e.kind, e.version), (EventKind::Delete, live.version));
}

async fn refusals_are_typed_and_the_node_keeps_serving(t: Transport) {
    let node = TestNode::memory(t).await;
    let c = node.client().await;
    let other = node.client().await;
    let limits = mw_kv::Limits::default();
    let big_key = Bytes::from(vec![b'k'; limits.max_key + 1]);
    assert_eq!(
        app(c
            .put(big_key.clone(), b("v"), PutOptions::default())
            .await
            .unwrap_err()),
        KvError::KeyTooLarge {
            size: limits.max_key + 1,
            limit: limits.max_key
        }
    );
    assert!(matches!(
        app(c.get(big_key).await.unwrap_err()),
        KvError::KeyTooLarge { .. }
    ));
    assert_eq!(
        app(c.get(Bytes::new()).await.unwrap_err()),
        KvError::EmptyKey
    );
    let big_value = Bytes::from(vec![0u8; limits.max_value + 1]);
    assert_eq!(
        app(c
            .put(b("k"), big_value, PutOptions::default())
            .await
            .unwrap_err()),
        KvError::ValueTooLarge {
            size: limits.max_value + 1,
            limit: limits.max_value
        }
    );
    // The largest allowed value goes through.
    let max_value = Bytes::from(vec![7u8; limits.max_value]);
    put(&c, "edge", "").await;
    c.put(b("edge"), max_value.clone(), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(c.get(b("edge")).await.unwrap().unwrap().value, max_value);
    let ttl0 = PutOptions {
        ttl: Some(std::time::Duration::ZERO),
        ..Default::default()
    };
    assert!(matches!(
        app(c.put(b("k"), b("v"), ttl0).await.unwrap_err()),
        KvError::InvalidTtl(_)
    ));
    let mut s = c.scan(b(""), None, limits.max_scan + 1).await.unwrap();
    let first = within("scan refusal", s.next()).await.unwrap().unwrap();
    assert!(
        matches!(first, Err(KvError::ScanTooLarge { .. })),
        "{first:?}"
    );
    // Nothing above was applied; the other connection is still served.
    assert_eq!(other.get(b("k")).await.unwrap(), None);
    put(&other, "k", "fine").await;
    assert_eq!(&c.get(b("k")).await.unwrap().unwrap().value[..], b"fine");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_over_every_transport() {
    for t in ALL {
        within(&format!("{t:?}"), every_operation(t)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_over_every_transport() {
    for t in ALL {
        within(
            &format!("{t:?}"),
            refusals_are_typed_and_the_node_keeps_serving(t),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_typed_errors_and_others_are_served() {
    let node = TestNode::memory(Transport::Tcp).await;
    let good = node.client().await;
    let raw = mw::rpc::Channel::connect(&node.addr).await.unwrap();
    let svc = mw_kv::KvServiceServer::<mw_kv::KvNode>::SERVICE;
    // `put` (method 2) with arguments of the wrong shape.
    let err = raw
        .call::<_, ()>(svc, 2, &(1u8, "not", "a put"))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::BadArguments(_)), "{err}");
    // A method number the service does not have.
    let err = raw.call::<_, ()>(svc, 999, &()).await.unwrap_err();
    assert!(matches!(err, RpcError::UnknownMethod(_)), "{err}");
    // A version the node does not serve.
    let v2 = mw::rpc::ServiceId {
        name: svc.name,
        version: 2,
    };
    let err = raw.call::<_, ()>(v2, 1, &()).await.unwrap_err();
    assert!(matches!(err, RpcError::VersionMismatch(_)), "{err}");
    // The same connection and another one still work.
    put(&good, "k", "v").await;
    let again = KvClient::new(raw);
    assert_eq!(&again.get(b("k")).await.unwrap().unwrap().value[..], b"v");
    node.stop().await;
}
