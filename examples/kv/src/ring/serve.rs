//! Hosting a [`RingNode`]: the handlers of its two services, and [`spawn`], which binds
//! an address, names the node after it, and serves.

use std::path::Path;

use bytes::Bytes;
use mw::core::transport::{Address, Listener};
use mw::rpc::auth::{check_key, Action};
use mw::rpc::{RunningServer, Server};

use crate::error::{KvError, Result};
use crate::ring::dvv::{Sibling, SiblingSet};
use crate::ring::node::{RingConfig, RingNode};
use crate::ring::service::{Replica, ReplicaServer, RingKv, RingKvServer};
use crate::ring::types::{
    GcProbe, Located, Membership, Quorum, RingRead, RingView, RingWrite, RingWriteOptions,
};

/// Serves `mw.kv.ring` from a node.
#[derive(Debug, Clone)]
pub struct RingHandler(pub RingNode);

/// Serves `mw.kv.replica` from a node.
#[derive(Debug, Clone)]
pub struct ReplicaHandler(pub RingNode);

impl RingKv for RingHandler {
    async fn get(&self, key: Bytes, r: Option<Quorum>) -> Result<RingRead, KvError> {
        check_key(Action::KvRead, &key)?;
        self.0.read(key, r).await
    }

    async fn put(
        &self,
        key: Bytes,
        value: Bytes,
        options: RingWriteOptions,
    ) -> Result<RingWrite, KvError> {
        check_key(Action::KvWrite, &key)?;
        self.0.write(key, Some(value), options).await
    }

    async fn delete(&self, key: Bytes, options: RingWriteOptions) -> Result<RingWrite, KvError> {
        check_key(Action::KvWrite, &key)?;
        self.0.write(key, None, options).await
    }

    async fn ring(&self) -> RingView {
        self.0.view()
    }

    async fn locate(&self, key: Bytes) -> Located {
        self.0.locate(&key)
    }

    async fn leave(&self) -> Result<(), KvError> {
        self.0.leave().await
    }
}

impl Replica for ReplicaHandler {
    async fn store(
        &self,
        key: Bytes,
        siblings: Vec<Sibling>,
        new_write: bool,
    ) -> Result<u64, KvError> {
        check_key(Action::KvWrite, &key)?;
        self.0.store_local(&key, siblings, new_write).await
    }

    async fn coordinate(
        &self,
        key: Bytes,
        value: Option<Bytes>,
        options: RingWriteOptions,
    ) -> Result<RingWrite, KvError> {
        check_key(Action::KvWrite, &key)?;
        self.0.coordinate(key, value, options).await
    }

    async fn fetch(&self, key: Bytes) -> Result<SiblingSet, KvError> {
        check_key(Action::KvRead, &key)?;
        self.0.store().read(&key).await
    }

    async fn hint(
        &self,
        target: String,
        key: Bytes,
        siblings: Vec<Sibling>,
    ) -> Result<(), KvError> {
        self.0.keep_hint(&target, key, siblings).await
    }

    async fn ping(&self) -> u64 {
        self.0.membership().version()
    }

    async fn gossip(&self, view: Membership) -> Membership {
        self.0.exchange(&view).await
    }

    async fn join(&self, node: String) -> Result<Membership, KvError> {
        Ok(self.0.admit(&node).await)
    }

    async fn range(
        &self,
        from: u64,
        to: u64,
        after: Option<Bytes>,
        limit: u32,
    ) -> Result<Vec<(Bytes, SiblingSet)>, KvError> {
        self.0
            .store()
            .range(from, to, after, limit.min(10_000))
            .await
    }

    async fn merkle(
        &self,
        range: u32,
        with: String,
        ring: u64,
    ) -> Result<Option<Vec<u64>>, KvError> {
        self.0.serve_merkle(range, &with, ring).await
    }

    async fn keys_in(
        &self,
        range: u32,
        leaf: u32,
        with: String,
        ring: u64,
    ) -> Result<Option<Vec<(Bytes, u64)>>, KvError> {
        self.0.serve_keys_in(range, leaf, &with, ring).await
    }

    async fn gc_probe(&self, keys: Vec<Bytes>, ring: u64) -> Result<Option<GcProbe>, KvError> {
        self.0.gc_probe(keys, ring).await
    }

    async fn forget(&self, keys: Vec<(Bytes, u64)>) -> Result<u64, KvError> {
        self.0.forget(keys).await
    }
}

/// A ring node being served.
#[derive(Debug)]
pub struct ServedNode {
    /// The node.
    pub node: RingNode,
    /// Its server.
    pub server: RunningServer,
}

/// Binds `addr`, opens a ring node named after the bound address (or `advertise`) on
/// `data`, joins through `seed` if given, and serves both ring services (default server
/// settings; see [`spawn_with`]).
///
/// # Errors
///
/// A bad or busy address; the data directory refused; the seed unreachable.
pub async fn spawn(
    addr: &str,
    advertise: Option<&str>,
    data: &Path,
    config: RingConfig,
    seed: Option<&str>,
) -> Result<ServedNode> {
    spawn_with(
        addr,
        advertise,
        data,
        config,
        seed,
        mw::rpc::ServerConfig::default(),
    )
    .await
}

/// As [`spawn`], with `server`'s settings (e.g. its metrics endpoint).
///
/// # Errors
///
/// A bad or busy address; the data directory refused; the seed unreachable.
pub async fn spawn_with(
    addr: &str,
    advertise: Option<&str>,
    data: &Path,
    config: RingConfig,
    seed: Option<&str>,
    server: mw::rpc::ServerConfig,
) -> Result<ServedNode> {
    let address: Address = addr.parse().map_err(|e| KvError::Storage(format!("{e}")))?;
    let listener = Listener::bind(&address)
        .await
        .map_err(|e| KvError::Storage(format!("cannot listen on {addr}: {e}")))?;
    let id = advertise
        .map(str::to_string)
        .unwrap_or_else(|| listener.local_addr().to_string());
    let node = RingNode::open(data, &id, config, seed).await?;
    let server = Server::builder()
        .add(RingKvServer::new(RingHandler(node.clone())))
        .add(ReplicaServer::new(ReplicaHandler(node.clone())))
        .config(server)
        .build()
        .spawn_on(listener);
    Ok(ServedNode { node, server })
}
