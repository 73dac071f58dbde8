//! `batch`: many operations in one call, as a pipelining client sends them. Over every
//! transport: replies in order, reads that see the batch's earlier writes, one failing
//! operation leaving the others applied, the batch limit refused whole; over a node with
//! logins, operations the user may not do refused one by one.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{within, TestNode, Transport, ALL};
use mw::rpc::auth::{Action, Credentials};
use mw::rpc::{Channel, ClientConfig, Server, ServerConfig};
use mw_kv::{
    BatchOp, BatchReply, Config, DeleteOptions, Kv, KvClient, KvError, KvNode, KvServiceServer,
    Limits, PutOptions, Version,
};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(k: &str, v: &str) -> BatchOp {
    BatchOp::Put {
        key: b(k),
        value: b(v),
        options: PutOptions::default(),
    }
}

fn get(k: &str) -> BatchOp {
    BatchOp::Get { key: b(k) }
}

fn value_of(reply: &Result<BatchReply, KvError>) -> Option<String> {
    match reply {
        Ok(BatchReply::Get(v)) => v
            .as_ref()
            .map(|v| String::from_utf8(v.value.to_vec()).unwrap()),
        other => panic!("expected a get's reply, got {other:?}"),
    }
}

async fn runs_in_order_with_one_result_each(t: Transport) {
    let node = TestNode::memory(t).await;
    let c = node.client().await;
    let replies = within(
        "batch",
        c.batch(vec![
            get("a"),
            put("a", "1"),
            get("a"),
            BatchOp::Incr {
                key: b("a"),
                delta: 41,
            },
            // A compare-and-set on a stale version fails alone ...
            BatchOp::Put {
                key: b("a"),
                value: b("lost"),
                options: PutOptions {
                    if_version: Some(Version(1)),
                    ..Default::default()
                },
            },
            // ... and neither it nor a refused empty key stops what follows.
            get(""),
            BatchOp::Incr {
                key: b("a"),
                delta: 0,
            },
            BatchOp::Delete {
                key: b("a"),
                options: DeleteOptions::default(),
            },
            get("a"),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(replies.len(), 9, "one reply per operation: {replies:?}");
    assert_eq!(value_of(&replies[0]), None);
    let Ok(BatchReply::Put(w)) = &replies[1] else {
        panic!("put: {:?}", replies[1]);
    };
    assert_eq!(w.version, Version(1));
    assert_eq!(
        value_of(&replies[2]).as_deref(),
        Some("1"),
        "read-your-writes"
    );
    assert_eq!(replies[3], Ok(BatchReply::Incr(42)));
    assert_eq!(
        replies[4],
        Err(KvError::VersionConflict {
            expected: Version(1),
            current: Some(Version(2)),
        })
    );
    assert_eq!(replies[5], Err(KvError::EmptyKey));
    assert_eq!(
        replies[6],
        Ok(BatchReply::Incr(42)),
        "the conflict wrote nothing"
    );
    assert!(
        matches!(&replies[7], Ok(BatchReply::Delete(d)) if d.deleted == Some(Version(3))),
        "{:?}",
        replies[7]
    );
    assert_eq!(value_of(&replies[8]), None);
    // What the batch did is what single calls see afterwards.
    assert_eq!(c.get(b("a")).await.unwrap(), None);
    assert_eq!(node.kv.status().revision, 4, "put, incr, incr, delete");
    node.stop().await;
}

#[tokio::test]
async fn a_batch_runs_in_order_with_one_result_each_over_every_transport() {
    for t in ALL {
        runs_in_order_with_one_result_each(t).await;
    }
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole_and_the_node_serves_on() {
    let kv = Kv::memory(Config {
        limits: Limits {
            max_batch_ops: 3,
            ..Limits::default()
        },
        ..Config::default()
    });
    let node = TestNode::serve(kv, Transport::Tcp).await;
    let c = node.client().await;
    let four = vec![put("x", "1"), put("y", "1"), put("z", "1"), get("x")];
    let err = c.batch(four).await.unwrap_err().into_application().unwrap();
    assert_eq!(err, KvError::BatchTooLarge { ops: 4, limit: 3 });
    assert_eq!(c.get(b("x")).await.unwrap(), None, "nothing applied");
    let replies = c.batch(vec![put("x", "1"), get("x")]).await.unwrap();
    assert_eq!(value_of(&replies[1]).as_deref(), Some("1"));
    assert_eq!(c.batch(vec![]).await.unwrap(), vec![], "an empty batch");
    node.stop().await;
}

#[tokio::test]
async fn a_batch_refuses_only_the_operations_the_user_may_not_do() {
    const AUTH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/auth.toml");
    let kv = Kv::memory(Config::default());
    let config = ServerConfig {
        auth: Some(Arc::new(mw::auth::AuthFile::load(AUTH.as_ref()).unwrap())),
        ..ServerConfig::default()
    };
    let server = Server::builder()
        .config(config)
        .add(KvServiceServer::new(KvNode::new(kv.clone())))
        .build()
        .spawn("127.0.0.1:0")
        .await
        .unwrap();
    let carol = ClientConfig {
        credentials: Some(Credentials::Password {
            user: "carol".into(),
            password: "carol-secret".into(),
        }),
        ..ClientConfig::default()
    };
    let channel = within(
        "connect",
        Channel::connect_with(&server.local_addr().to_string(), carol),
    )
    .await
    .unwrap();
    let c = KvClient::new(channel);
    let replies = c
        .batch(vec![
            put("app/a", "1"),
            put("other/b", "1"),
            get("secret"),
            get("app/a"),
        ])
        .await
        .unwrap();
    assert!(matches!(replies[0], Ok(BatchReply::Put(_))), "{replies:?}");
    let refused = |r: &Result<BatchReply, KvError>, action: Action, key: &str| match r {
        Err(KvError::PermissionDenied(d)) => {
            assert_eq!(
                (d.user.as_str(), d.action, d.resource.as_str()),
                ("carol", action, key)
            )
        }
        other => panic!("expected a refusal of {key}, got {other:?}"),
    };
    refused(&replies[1], Action::KvWrite, "other/b");
    refused(&replies[2], Action::KvRead, "secret");
    assert_eq!(value_of(&replies[3]).as_deref(), Some("1"));
    assert_eq!(
        kv.get("other/b").await.unwrap(),
        None,
        "the refused put did nothing"
    );
    server.shutdown().await;
    kv.close().await.unwrap();
}
