//! [`RingClient`]: a client that routes *iteratively*, as the lectures compare it with
//! recursive routing. It keeps a copy of the ring, computes each key's preference list
//! itself, and talks to the replicas directly (the `mw.kv.replica` service); a recursive
//! client instead sends every request to one node, which coordinates
//! ([`RingKvClient`]). Iterative routing saves a hop
//! per request; recursive routing keeps clients simple and the ring's knowledge on the
//! servers.
//!
//! The iterative client reads from R replicas itself (and repairs stale ones); for a
//! write it picks the key's first replica that answers and has it coordinate (a replica
//! mints the write's dot from its own state of the key), so it saves the hop from a
//! non-replica node to a replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use mw::rpc::{Channel, RpcError};

use crate::error::{KvError, Result};
use crate::ring::dvv::SiblingSet;
use crate::ring::hash::Ring;
use crate::ring::service::{ReplicaClient, RingKvClient};
use crate::ring::types::{Quorum, ReplicaReply, RingRead, RingWrite, RingWriteOptions};

/// How long a replica asked to coordinate a write may take (it waits for its own
/// replicas, then for stand-ins).
const COORDINATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn rpc(e: RpcError<KvError>) -> KvError {
    match e.into_application() {
        Ok(k) => k,
        Err(e) => KvError::Storage(format!("replica call failed: {e}")),
    }
}

/// An iteratively routing ring client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RingClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    seed: RingKvClient,
    ring: Mutex<Arc<Ring>>,
    n: usize,
    w: usize,
    r: usize,
    replicas: tokio::sync::Mutex<HashMap<String, (Channel, ReplicaClient)>>,
    /// How replicas are connected to (TLS, credentials).
    config: mw::rpc::ClientConfig,
}

impl RingClient {
    /// Connects to `seed`, a member of the ring, and fetches the ring from it.
    ///
    /// # Errors
    ///
    /// The seed cannot be reached or is not a ring member.
    pub async fn connect(seed: &str) -> Result<RingClient> {
        RingClient::connect_with(seed, mw::rpc::ClientConfig::default()).await
    }

    /// [`connect`](Self::connect) with `config` for the seed and every replica: TLS and
    /// credentials for a ring that requires them. The user needs the services
    /// `mw.kv.ring` and `mw.kv.replica` (replica calls are checked against the user's kv
    /// grants key by key).
    ///
    /// # Errors
    ///
    /// The seed cannot be reached or is not a ring member.
    pub async fn connect_with(seed: &str, config: mw::rpc::ClientConfig) -> Result<RingClient> {
        let channel = Channel::connect_with(seed, config.clone())
            .await
            .map_err(|e| KvError::Storage(format!("cannot reach {seed}: {e}")))?;
        let seed = RingKvClient::new(channel);
        let view = seed
            .ring()
            .await
            .map_err(|e| KvError::Storage(format!("not a ring member: {e}")))?;
        let readers: Vec<String> = view
            .members
            .iter()
            .filter(|m| {
                matches!(
                    m.state,
                    crate::ring::types::MemberState::Up | crate::ring::types::MemberState::Leaving
                )
            })
            .map(|m| m.node.clone())
            .collect();
        let client = RingClient {
            inner: Arc::new(Inner {
                seed,
                ring: Mutex::new(Arc::new(Ring::new(readers, view.tokens))),
                n: view.n,
                w: view.w,
                r: view.r,
                replicas: tokio::sync::Mutex::new(HashMap::new()),
                config,
            }),
        };
        Ok(client)
    }

    /// Fetches the ring again (after a join or leave).
    ///
    /// # Errors
    ///
    /// The seed cannot be reached.
    pub async fn refresh(&self) -> Result<()> {
        let view = self
            .inner
            .seed
            .ring()
            .await
            .map_err(|e| KvError::Storage(format!("cannot refresh the ring: {e}")))?;
        let readers = view
            .members
            .iter()
            .filter(|m| m.state != crate::ring::types::MemberState::Joining)
            .filter(|m| m.state != crate::ring::types::MemberState::Left)
            .map(|m| m.node.clone());
        *self.inner.ring.lock().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Ring::new(readers, view.tokens));
        Ok(())
    }

    fn ring(&self) -> Arc<Ring> {
        self.inner
            .ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn replica(&self, node: &str) -> Result<ReplicaClient> {
        let mut map = self.inner.replicas.lock().await;
        if let Some((ch, c)) = map.get(node) {
            if !ch.is_closed() {
                return Ok(c.clone());
            }
        }
        // Replica calls get the nodes' replica timeout rather than the 30 s default: a
        // replica that stopped answering must not hold a client's request for long.
        let config = mw::rpc::ClientConfig {
            default_timeout: std::time::Duration::from_secs(1),
            ..self.inner.config.clone()
        };
        let ch = Channel::connect_with(node, config)
            .await
            .map_err(|e| KvError::Storage(format!("cannot reach {node}: {e}")))?;
        let c = ReplicaClient::new(ch.clone());
        map.insert(node.to_string(), (ch, c.clone()));
        Ok(c)
    }

    fn preference(&self, key: &[u8]) -> (Vec<String>, usize) {
        let ring = self.ring();
        let n = self.inner.n.min(ring.nodes().len()).max(1);
        (
            ring.preference_list(key, n)
                .into_iter()
                .map(String::from)
                .collect(),
            n,
        )
    }

    /// Reads `key` from its replicas directly, answering after R replies.
    ///
    /// # Errors
    ///
    /// [`KvError::QuorumFailed`].
    pub async fn get(&self, key: Bytes, r: Option<Quorum>) -> Result<RingRead> {
        let (preference, n) = self.preference(&key);
        let needed = r.map_or(self.inner.r, |q| q.count(n)).min(n);
        let started = Instant::now();
        let mut pending: FuturesUnordered<_> = preference
            .iter()
            .map(|p| {
                let (this, key, p) = (self.clone(), key.clone(), p.clone());
                async move {
                    let r = match this.replica(&p).await {
                        Ok(c) => c.fetch(key).await.map_err(rpc),
                        Err(e) => Err(e),
                    };
                    (p, r)
                }
            })
            .collect();
        let mut merged = SiblingSet::default();
        let mut got = Vec::new();
        let mut replies = Vec::new();
        while got.len() < needed {
            let Some((node, r)) = pending.next().await else {
                break;
            };
            let micros = started.elapsed().as_micros() as u64;
            match r {
                Ok(set) => {
                    got.push((node.clone(), set.digest()));
                    merged.merge(set.siblings);
                    replies.push(reply(node, micros, None));
                }
                Err(e) => replies.push(reply(node, micros, Some(e.to_string()))),
            }
        }
        if got.len() < needed {
            return Err(KvError::QuorumFailed {
                needed,
                acks: got.len(),
                detail: "replicas did not answer".into(),
            });
        }
        let digest = merged.digest();
        for (node, d) in got {
            if d != digest {
                if let Some(rep) = replies.iter_mut().find(|x| x.node == node) {
                    rep.repaired = true;
                }
                let (this, key, s) = (self.clone(), key.clone(), merged.siblings.clone());
                tokio::spawn(async move {
                    if let Ok(c) = this.replica(&node).await {
                        let _ = c.store(key, s, false).await;
                    }
                });
            }
        }
        Ok(RingRead {
            values: merged.values(),
            context: merged.context(),
            siblings: merged.siblings.len(),
            replicas: replies,
            needed,
        })
    }

    /// Writes `value` (`None`: delete) replacing `options.context`: the client picks
    /// the key's first replica that answers from its own copy of the ring and asks it to
    /// coordinate (no forwarding hop); that replica mints the write's dot, merges it into
    /// its state and replicates the state, answering after W acknowledgements. (A
    /// client does not mint dots itself: a replica must, from its own state of the key,
    /// for contexts to replace only what their writers read: see
    /// [`RingNode::coordinate`](crate::ring::node::RingNode::coordinate).)
    ///
    /// # Errors
    ///
    /// [`KvError::QuorumFailed`]; [`KvError::TooManySiblings`].
    pub async fn put(
        &self,
        key: Bytes,
        value: Option<Bytes>,
        options: RingWriteOptions,
    ) -> Result<RingWrite> {
        let (preference, n) = self.preference(&key);
        let needed = options.w.map_or(self.inner.w, |q| q.count(n)).min(n);
        // One replica only: it fails over to the next only when the replica certainly did
        // not run the write (no connection, or the call refused unseen); after a timeout
        // the write may have been applied, and a second replica would mint a second dot
        // for it (see `RingNode::write`).
        let mut failures = Vec::new();
        for p in &preference {
            let c = match self.replica(p).await {
                Ok(c) => c.with_timeout(COORDINATE_TIMEOUT),
                Err(e) => {
                    failures.push(format!("{p}: {e}"));
                    continue;
                }
            };
            let call = c.coordinate(key.clone(), value.clone(), options.clone());
            let error = match tokio::time::timeout(COORDINATE_TIMEOUT, call).await {
                Ok(Ok(w)) => return Ok(w),
                Ok(Err(e @ (RpcError::ShuttingDown | RpcError::Overloaded(_)))) => {
                    failures.push(format!("{p}: {e}"));
                    continue;
                }
                Ok(Err(e)) => match e.into_application() {
                    Ok(k) => return Err(k),
                    Err(e) => e.to_string(),
                },
                Err(_) => format!("no answer in {COORDINATE_TIMEOUT:?}"),
            };
            failures.push(format!("{p}: {error}; the write may have been applied"));
            break;
        }
        Err(KvError::QuorumFailed {
            needed,
            acks: 0,
            detail: failures.join("; "),
        })
    }
}

fn reply(node: String, micros: u64, error: Option<String>) -> ReplicaReply {
    ReplicaReply {
        node,
        hint_for: None,
        ok: error.is_none(),
        micros,
        error,
        repaired: false,
    }
}
