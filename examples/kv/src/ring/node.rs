//! [`RingNode`]: one member of a ring. It is a replica for the ranges it owns and a
//! coordinator for any request a client sends it: it walks the key's preference list,
//! sends the write (or read) to the N replicas, and answers once W (or R) of them did.
//!
//! Failures, as the Dynamo paper handles them:
//! - a replica its failure detector sees down is replaced by the next healthy node on
//!   the ring, which keeps the write as a *hint* in a persistent mw-queue queue
//!   (`hints.<target>`) and delivers it when the target is back (sloppy quorum, hinted
//!   handoff);
//! - a read that sees stale replicas sends them the merged state (read repair);
//! - a membership change moves every key to its new preference list in the background;
//! - replicas compare Merkle trees per key range and exchange what differs, and collect
//!   tombstones every replica has ([`anti_entropy`](crate::ring::anti_entropy)).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use mw::queue::{Message, QueueManager};
use mw::rpc::{Channel, ClientConfig, RpcError};

use crate::config::Config;
use crate::error::{KvError, Result};
use crate::kv::Kv;
use crate::ring::dvv::{Dot, Sibling, SiblingSet, VersionVector};
use crate::ring::hash::{key_position, Ring, DEFAULT_TOKENS};
use crate::ring::merkle::RANGES;
use crate::ring::service::ReplicaClient;
use crate::ring::store::{ReplicaStore, LOCAL_OVERHEAD};
use crate::ring::types::{
    AntiEntropyStats, Located, Member, MemberState, MemberView, Membership, Quorum, ReplicaReply,
    RingRead, RingView, RingWrite, RingWriteOptions,
};
use crate::types::{Durability, PutOptions};

/// Settings of a ring node. The cluster's N, W and R are the defaults of each request.
#[derive(Debug, Clone)]
pub struct RingConfig {
    /// Replicas per key. Default 3.
    pub n: usize,
    /// Write acknowledgements a put waits for. Default 2.
    pub w: usize,
    /// Replies a get waits for. Default 2.
    pub r: usize,
    /// Virtual nodes per member. Default 512.
    pub tokens: u32,
    /// How long a coordinator waits for one replica. Default 1 s.
    pub replica_timeout: Duration,
    /// How often peers are pinged (failure detection). Default 250 ms.
    pub ping_interval: Duration,
    /// How often membership is gossiped to a random peer. Default 500 ms.
    pub gossip_interval: Duration,
    /// How often hints are offered to targets that are back. Default 250 ms.
    pub handoff_interval: Duration,
    /// How often an anti-entropy round compares one key range with the peers. Default
    /// 2 s; zero turns anti-entropy (and tombstone GC) off.
    pub anti_entropy_interval: Duration,
    /// Keys anti-entropy may exchange per second: a round exchanges at most this times
    /// the interval (at least 1). Default 500.
    pub anti_entropy_keys_per_sec: u32,
    /// How long a key must have been tombstones only, unchanged, before GC may remove
    /// it (covers writes still in flight when every replica agreed). Default 30 s.
    pub tombstone_grace: Duration,
    /// The local store's settings (fsync policy, retention).
    pub store: Config,
    /// How this node connects to the other members: TLS (`peer_client.tls`) when they
    /// serve TLS, and credentials (`peer_client.credentials`) when they require logins
    /// (`mw-kv serve --ring --peer-tls-ca FILE --peer-token USER.SECRET`). Its
    /// `default_timeout` is replaced by `replica_timeout`.
    pub peer_client: ClientConfig,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            n: 3,
            w: 2,
            r: 2,
            tokens: DEFAULT_TOKENS,
            replica_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_millis(250),
            gossip_interval: Duration::from_millis(500),
            handoff_interval: Duration::from_millis(250),
            anti_entropy_interval: Duration::from_secs(2),
            anti_entropy_keys_per_sec: 500,
            tombstone_grace: Duration::from_secs(30),
            store: Config::default(),
            peer_client: ClientConfig::default(),
        }
    }
}

impl RingConfig {
    /// Whether every read quorum meets every write quorum (W + R > N): then a read
    /// sees the latest acknowledged write whenever the preference list is intact.
    pub fn overlapping(&self) -> bool {
        self.w + self.r > self.n
    }
}

/// Prefix of a hint queue's name; the rest is the target node.
const HINTS: &str = "hints.";
/// Local key of the persisted membership view.
const MEMBERS_KEY: &str = "m/members";
/// Local key of the boot epoch (dots are `epoch << 40 | sequence`).
const EPOCH_KEY: &str = "m/epoch";
/// Keys moved per page during a rebalance.
const MOVE_PAGE: u32 = 256;

/// One member of a ring. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RingNode {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: String,
    config: RingConfig,
    store: ReplicaStore,
    hints: QueueManager,
    membership: Mutex<Membership>,
    rings: RwLock<Arc<Rings>>,
    peers: Mutex<HashMap<String, Arc<PeerSlot>>>,
    /// Peers the failure detector last saw down.
    down: Mutex<HashMap<String, Instant>>,
    dots: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
    /// Rebalances started (a new one supersedes the one running).
    rebalance: AtomicU64,
    left: tokio::sync::Notify,
    anti_entropy: AntiEntropyState,
}

/// Where one write goes: N (the replicas the ring has, at most the cluster's N), the
/// acknowledgements it waits for, the key's preference list, and while the ring changes
/// the key's future owners beyond it.
struct WriteTargets {
    n: usize,
    needed: usize,
    preference: Vec<String>,
    extra: Vec<String>,
}

/// The ring reads use (members up or leaving) and the ring writes also go to (members
/// up or joining); the same ring when no member is joining or leaving.
#[derive(Debug)]
struct Rings {
    current: Ring,
    future: Ring,
    settled: bool,
}

impl Rings {
    fn of(view: &Membership, tokens: u32) -> Rings {
        Rings {
            current: Ring::new(view.readers(), tokens),
            future: Ring::new(view.future(), tokens),
            settled: view.settled(),
        }
    }
}

/// A connection to one peer, made on first use and remade after it broke.
#[derive(Debug)]
struct PeerSlot {
    addr: String,
    conn: tokio::sync::Mutex<Option<(Channel, ReplicaClient)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a few map operations that cannot leave the map
    // half-updated, so a poisoned lock still guards a whole value.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rpc(e: RpcError<KvError>) -> KvError {
    match e.into_application() {
        Ok(k) => k,
        Err(e) => KvError::Storage(format!("replica call failed: {e}")),
    }
}

impl RingNode {
    /// Opens the node's data (`DIR/store`, `DIR/hints`) as member `id` (its advertised
    /// address), and starts failure detection, gossip and hint delivery. With `seed`,
    /// joins the ring the seed belongs to; without, starts (or restarts into) its own.
    ///
    /// # Errors
    ///
    /// The data directory is refused; the seed cannot be reached.
    pub async fn open(
        dir: &Path,
        id: &str,
        config: RingConfig,
        seed: Option<&str>,
    ) -> Result<RingNode> {
        let mut store_config = config.store.clone();
        store_config.limits.max_key += LOCAL_OVERHEAD;
        let kv = Kv::open(dir.join("store"), store_config).await?;
        let hints = QueueManager::open(dir.join("hints"), mw::queue::Config::default())
            .await
            .map_err(|e| KvError::DataDir {
                path: dir.join("hints").display().to_string(),
                reason: e.to_string(),
            })?;
        let epoch = kv.incr(EPOCH_KEY, 1).await? as u64;
        let mut membership = match kv.get(MEMBERS_KEY).await? {
            Some(v) => postcard::from_bytes(&v.value)
                .map_err(|e| KvError::storage("decode membership", e))?,
            None => Membership::default(),
        };
        let me = membership.members.get(id).copied();
        let was_up = me.is_some_and(|m| m.state == MemberState::Up);
        // A new member of an existing ring joins (pulls its data first); a member that
        // was up restarts up; a first node starts up.
        let joining = seed.is_some() && !was_up;
        if !was_up {
            membership.members.insert(
                id.to_string(),
                Member {
                    state: if joining {
                        MemberState::Joining
                    } else {
                        MemberState::Up
                    },
                    epoch: me.map_or(1, |m| m.epoch + 1),
                },
            );
        }
        let rings = Rings::of(&membership, config.tokens);
        let node = RingNode {
            inner: Arc::new(Inner {
                id: id.to_string(),
                store: ReplicaStore::new(kv),
                hints,
                membership: Mutex::new(membership),
                rings: RwLock::new(Arc::new(rings)),
                peers: Mutex::new(HashMap::new()),
                down: Mutex::new(HashMap::new()),
                dots: Arc::new(AtomicU64::new(epoch << 40)),
                stop: tokio_util::sync::CancellationToken::new(),
                rebalance: AtomicU64::new(0),
                left: tokio::sync::Notify::new(),
                anti_entropy: AntiEntropyState::default(),
                config,
            }),
        };
        node.persist_membership().await?;
        if let Some(seed) = seed {
            let view = node
                .peer(seed)
                .await?
                .join(id.to_string())
                .await
                .map_err(|e| KvError::Storage(format!("cannot join via {seed}: {}", rpc(e))))?;
            node.adopt(&view).await;
        }
        node.spawn_background();
        if joining {
            node.bootstrap().await?;
        }
        Ok(node)
    }

    /// This member's name.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The node's settings.
    pub fn config(&self) -> &RingConfig {
        &self.inner.config
    }

    /// The local replica store.
    pub fn store(&self) -> &ReplicaStore {
        &self.inner.store
    }

    fn rings(&self) -> Arc<Rings> {
        self.inner
            .rings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The ring reads go to (members up or leaving).
    pub fn ring(&self) -> Ring {
        self.rings().current.clone()
    }

    /// The current membership view.
    pub fn membership(&self) -> Membership {
        lock(&self.inner.membership).clone()
    }

    /// Resolves once this node has left the ring (after [`leave`](Self::leave)).
    pub async fn left(&self) {
        self.inner.left.notified().await
    }

    /// Stops background work and closes the stores.
    ///
    /// # Errors
    ///
    /// The final sync failed.
    pub async fn close(&self) -> Result<()> {
        self.inner.stop.cancel();
        let _ = self.inner.hints.close().await;
        self.inner.store.kv().close().await
    }

    /// A client of `node`, connecting (within the replica timeout) if there is no live
    /// connection.
    pub(crate) async fn peer(&self, node: &str) -> Result<ReplicaClient> {
        let slot = lock(&self.inner.peers)
            .entry(node.to_string())
            .or_insert_with(|| {
                Arc::new(PeerSlot {
                    addr: node.to_string(),
                    conn: tokio::sync::Mutex::new(None),
                })
            })
            .clone();
        let mut conn = slot.conn.lock().await;
        if let Some((ch, client)) = conn.as_ref() {
            if !ch.is_closed() {
                return Ok(client.clone());
            }
        }
        let config = ClientConfig {
            default_timeout: self.inner.config.replica_timeout,
            ..self.inner.config.peer_client.clone()
        };
        // On a simulated network (`sim:NET/NAME`), dial as this node's endpoint so that
        // partitions between named nodes apply; elsewhere the address is used as is.
        let dial = match (
            slot.addr.parse::<mw::core::transport::Address>(),
            self.inner.id.parse::<mw::core::transport::Address>(),
        ) {
            (Ok(peer), Ok(me)) => peer.dialed_from(&me).to_string(),
            _ => slot.addr.clone(),
        };
        // A login (argon2 at the peer) may take longer than a replica call should.
        let connect_timeout = if config.credentials.is_some() {
            self.inner
                .config
                .replica_timeout
                .max(Duration::from_secs(5))
        } else {
            self.inner.config.replica_timeout
        };
        let connect = Channel::connect_with(&dial, config);
        let ch = match tokio::time::timeout(connect_timeout, connect).await {
            Ok(Ok(ch)) => ch,
            Ok(Err(e)) => return Err(KvError::Storage(format!("cannot reach {node}: {e}"))),
            Err(_) => return Err(KvError::Storage(format!("cannot reach {node}: timed out"))),
        };
        let client = ReplicaClient::new(ch.clone());
        *conn = Some((ch, client.clone()));
        Ok(client)
    }

    pub(crate) fn is_up(&self, node: &str) -> bool {
        node == self.inner.id || !lock(&self.inner.down).contains_key(node)
    }

    fn mark(&self, node: &str, up: bool) {
        let mut down = lock(&self.inner.down);
        let was_down = down.contains_key(node);
        if up {
            down.remove(node);
            if was_down {
                tracing::info!(node, "peer is back");
            }
        } else if !was_down {
            down.insert(node.to_string(), Instant::now());
            tracing::warn!(node, "peer is down");
        }
    }

    pub(crate) fn anti_entropy_state(&self) -> &AntiEntropyState {
        &self.inner.anti_entropy
    }

    /// The anti-entropy counters.
    pub fn anti_entropy_stats(&self) -> AntiEntropyStats {
        self.inner.anti_entropy.stats()
    }

    pub(crate) fn stop_token(&self) -> tokio_util::sync::CancellationToken {
        self.inner.stop.clone()
    }

    async fn persist_membership(&self) -> Result<()> {
        let view = self.membership();
        let bytes = postcard::to_allocvec(&view).map_err(|e| KvError::storage("encode", e))?;
        self.inner
            .store
            .kv()
            .put(MEMBERS_KEY, bytes, PutOptions::default())
            .await?;
        Ok(())
    }

    /// Merges a membership view; on a change, rebuilds the ring, persists the view and
    /// moves keys to their new owners in the background.
    async fn adopt(&self, view: &Membership) -> bool {
        let changed = {
            let mut mine = lock(&self.inner.membership);
            let changed = mine.merge(view);
            if changed {
                let rings = Rings::of(&mine, self.inner.config.tokens);
                *self.inner.rings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rings);
            }
            changed
        };
        if changed {
            tracing::info!(members = ?self.membership().owners(), "ring changed");
            if let Err(e) = self.persist_membership().await {
                tracing::error!(error = %e, "cannot persist membership");
            }
            self.spawn_rebalance();
        }
        changed
    }

    // ---- replica side -------------------------------------------------------------

    /// Merges siblings into the local replica (the `store` handler).
    ///
    /// # Errors
    ///
    /// As [`ReplicaStore::merge`].
    pub async fn store_local(
        &self,
        key: &[u8],
        siblings: Vec<Sibling>,
        new_write: bool,
    ) -> Result<u64> {
        Ok(self
            .inner
            .store
            .merge(key, siblings, Durability::Sync, new_write)
            .await?
            .digest())
    }

    /// Keeps a hint for `target` (the `hint` handler): durable in `hints.<target>`.
    ///
    /// # Errors
    ///
    /// The hint queue refused or failed.
    pub async fn keep_hint(&self, target: &str, key: Bytes, siblings: Vec<Sibling>) -> Result<()> {
        let body = postcard::to_allocvec(&(key, siblings))
            .map_err(|e| KvError::storage("encode hint", e))?;
        self.inner
            .hints
            .queue(&format!("{HINTS}{target}"))
            .send(Message::new(body))
            .await
            .map_err(|e| KvError::storage("store hint", e))?;
        Ok(())
    }

    /// Hints held, per target.
    pub fn hints(&self) -> std::collections::BTreeMap<String, u64> {
        self.inner
            .hints
            .queues()
            .into_iter()
            .filter_map(|(name, s)| {
                let target = name.strip_prefix(HINTS)?;
                let held = s.depth + s.in_flight;
                (held > 0).then(|| (target.to_string(), held))
            })
            .collect()
    }

    /// The `join` handler: adds `node` as a joining member (a member already up, such
    /// as one restarting, stays up).
    pub async fn admit(&self, node: &str) -> Membership {
        let mut view = self.membership();
        let known = view.members.get(node).copied();
        if known.is_none_or(|m| m.state == MemberState::Left) {
            view.members.insert(
                node.to_string(),
                Member {
                    state: MemberState::Joining,
                    epoch: known.map_or(1, |m| m.epoch + 1),
                },
            );
            self.adopt(&view).await;
        }
        self.mark(node, true);
        self.membership()
    }

    /// A joining member pulls, from every other member, the keys it will own, then
    /// announces itself up to every member. Writes reach it all along (it is in the
    /// future ring), so nothing written during the pull is missed.
    async fn bootstrap(&self) -> Result<()> {
        let started = Instant::now();
        let mut pulled = 0u64;
        let n = self.inner.config.n;
        for member in self.membership().owners() {
            if member == self.inner.id {
                continue;
            }
            let mut after: Option<Bytes> = None;
            loop {
                let page = self
                    .peer(&member)
                    .await?
                    .range(0, u64::MAX, after.clone(), MOVE_PAGE)
                    .await
                    .map_err(rpc)?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                let future = self.rings().future.clone();
                for (key, state) in page {
                    if future
                        .preference_list(&key, n)
                        .contains(&self.inner.id.as_str())
                    {
                        self.inner
                            .store
                            .merge(&key, state.siblings, Durability::Buffered, false)
                            .await?;
                        pulled += 1;
                    }
                }
            }
        }
        self.inner.store.kv().sync_now().await?;
        let mut view = self.membership();
        let epoch = view.members.get(&self.inner.id).map_or(1, |m| m.epoch + 1);
        view.members.insert(
            self.inner.id.clone(),
            Member {
                state: MemberState::Up,
                epoch,
            },
        );
        self.adopt(&view).await;
        self.announce().await;
        tracing::info!(
            pulled,
            ms = started.elapsed().as_millis() as u64,
            "joined the ring"
        );
        Ok(())
    }

    /// Pushes this node's view to every member at once (joins and leaves should not
    /// wait for gossip to spread).
    async fn announce(&self) {
        let view = self.membership();
        let pushes = view
            .owners()
            .into_iter()
            .filter(|m| m != &self.inner.id)
            .map(|m| {
                let this = self.clone();
                let view = view.clone();
                async move {
                    if let Ok(c) = this.peer(&m).await {
                        if let Ok(theirs) = c.gossip(view).await {
                            this.adopt(&theirs).await;
                        }
                    }
                }
            });
        futures::future::join_all(pushes).await;
    }

    /// The `gossip` handler.
    pub async fn exchange(&self, view: &Membership) -> Membership {
        self.adopt(view).await;
        self.membership()
    }

    // ---- coordinator side -----------------------------------------------------------

    async fn store_on(
        &self,
        node: &str,
        hint_for: Option<&str>,
        key: &Bytes,
        siblings: Vec<Sibling>,
        new_write: bool,
    ) -> Result<()> {
        match (hint_for, node == self.inner.id) {
            (Some(target), true) => self.keep_hint(target, key.clone(), siblings).await,
            (Some(target), false) => {
                let c = self.peer(node).await?;
                self.bounded(node, c.hint(target.to_string(), key.clone(), siblings))
                    .await?
                    .map_err(rpc)
            }
            (None, true) => self.store_local(key, siblings, new_write).await.map(|_| ()),
            (None, false) => {
                let c = self.peer(node).await?;
                self.bounded(node, c.store(key.clone(), siblings, new_write))
                    .await?
                    .map(|_| ())
                    .map_err(rpc)
            }
        }
    }

    /// `call` bounded by the replica timeout as a whole. An mw-rpc deadline covers the
    /// wait for the reply, not the wait to send: a peer that stopped reading (SIGSTOP)
    /// fills the connection and a send would wait for it forever, holding memory and,
    /// for pings, the failure detector.
    async fn bounded<T>(
        &self,
        node: &str,
        call: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        tokio::time::timeout(self.inner.config.replica_timeout, call)
            .await
            .map_err(|_| KvError::Storage(format!("{node} did not answer in time")))
    }

    async fn fetch_from(&self, node: &str, key: &Bytes) -> Result<SiblingSet> {
        if node == self.inner.id {
            self.inner.store.read(key).await
        } else {
            let c = self.peer(node).await?;
            self.bounded(node, c.fetch(key.clone())).await?.map_err(rpc)
        }
    }

    /// Healthy nodes after the preference list, to stand in for replicas that are down.
    fn stand_ins(&self, ring: &Ring, key: &[u8], n: usize) -> Vec<String> {
        ring.walk(key_position(key))
            .skip(n)
            .filter(|m| self.is_up(m))
            .map(String::from)
            .collect()
    }

    /// Writes `value` (`None`: a tombstone) as a new sibling replacing `options.context`.
    ///
    /// The write is coordinated by a replica of the key: this node if it is in the key's
    /// preference list, else the first member of the list that answers (the request is
    /// forwarded to it). See [`coordinate`](Self::coordinate) for why.
    ///
    /// # Errors
    ///
    /// [`KvError::QuorumFailed`] when fewer than W replicas acknowledged in time (the
    /// write may still have reached some: it is not undone), or when no replica of the
    /// key could coordinate; size limits.
    pub async fn write(
        &self,
        key: Bytes,
        value: Option<Bytes>,
        options: RingWriteOptions,
    ) -> Result<RingWrite> {
        check_key(&key, &self.inner.config)?;
        let preference = self.locate(&key).preference;
        if preference.iter().any(|p| p == &self.inner.id) {
            return self.coordinate(key, value, options).await;
        }
        let needed = options
            .w
            .map_or(self.inner.config.w, |q| q.count(preference.len().max(1)));
        // The request goes to one replica only. Once it is sent, a missing answer does not
        // say whether the write was applied, and having the next replica coordinate it
        // again would mint a second dot for the same write (one put, two writes: a delete
        // that read one of them leaves the other). So it fails over only when the replica
        // certainly did not run it: no connection, or the call refused unseen. The
        // coordinator waits up to a replica timeout for its replicas, then for stand-ins:
        // the forwarded call gets three.
        let budget = self.inner.config.replica_timeout * 3;
        let mut failures = Vec::new();
        for p in &preference {
            if !self.is_up(p) {
                continue;
            }
            let c = match self.peer(p).await {
                Ok(c) => c.with_timeout(budget),
                Err(e) => {
                    self.mark(p, false);
                    failures.push(reply(p.clone(), None, 0, Some(e.to_string())));
                    continue;
                }
            };
            let call = c.coordinate(key.clone(), value.clone(), options.clone());
            let error = match tokio::time::timeout(budget, call).await {
                Ok(Ok(w)) => return Ok(w),
                Ok(Err(e @ (RpcError::ShuttingDown | RpcError::Overloaded(_)))) => {
                    failures.push(reply(p.clone(), None, 0, Some(e.to_string())));
                    continue;
                }
                Ok(Err(e)) => match e.into_application() {
                    Ok(k) => return Err(k),
                    Err(e) => e.to_string(),
                },
                Err(_) => format!("no answer in {budget:?}"),
            };
            self.mark(p, false);
            let error = format!("{error}; the write may have been applied");
            failures.push(reply(p.clone(), None, 0, Some(error)));
            return Err(quorum_failed(needed, 0, &failures));
        }
        Err(quorum_failed(needed, 0, &failures))
    }

    /// Coordinates a write as a replica of the key: mints the write's dot and merges it
    /// into the local state in one step on the local writer, then sends that whole
    /// merged state (not just the new sibling) to the other replicas.
    ///
    /// This keeps the invariant that makes version-vector contexts sound: a state that
    /// holds a dot `(X, n)` of a key also holds every earlier dot `X` minted for that key,
    /// or a sibling that replaced it. So a reader whose context says "`X` up to `n`"
    /// really did see all of them, and its write replaces only what it read. (Minting
    /// from a node-wide counter on any node and sending only the new sibling broke it:
    /// a replica could hold `(X, 2)` without `(X, 1)`, and a context read from there
    /// dropped an acknowledged write its writer never saw.)
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    pub async fn coordinate(
        &self,
        key: Bytes,
        value: Option<Bytes>,
        options: RingWriteOptions,
    ) -> Result<RingWrite> {
        self.check_write(&key, value.as_ref())?;
        let rings = self.rings();
        let ring = &rings.current;
        let WriteTargets {
            n,
            needed,
            preference,
            extra,
        } = self.write_targets(&rings, &key, options.w);
        let started = Instant::now();
        let (state, dot) = self.mint_and_merge(&key, value, options.context).await?;
        let mut replies = vec![reply(
            self.inner.id.clone(),
            None,
            started.elapsed().as_micros() as u64,
            None,
        )];
        let mut spares = self
            .stand_ins(ring, &key, n)
            .into_iter()
            .filter(|s| !extra.contains(s))
            .collect::<Vec<_>>()
            .into_iter();
        let mut pending = FuturesUnordered::new();
        let send = |node: String, hint_for: Option<String>| {
            let this = self.clone();
            let key = key.clone();
            let s = state.siblings.clone();
            async move {
                let r = this
                    .store_on(&node, hint_for.as_deref(), &key, s, false)
                    .await;
                (node, hint_for, r)
            }
        };
        // This node is a replica (or was chosen to coordinate): its copy is written.
        for p in preference
            .iter()
            .chain(&extra)
            .filter(|p| **p != self.inner.id)
        {
            if self.is_up(p) {
                pending.push(send(p.clone(), None));
            } else if let Some(spare) = spares.next() {
                pending.push(send(spare, Some(p.clone())));
            } else {
                pending.push(send(p.clone(), None));
            }
        }
        let is_extra = |node: &str, hint_for: &Option<String>| {
            extra
                .iter()
                .any(|e| Some(e) == hint_for.as_ref() || (hint_for.is_none() && e == node))
        };
        let local_extra = usize::from(extra.contains(&self.inner.id));
        let (mut acks, mut extra_acks) = (1 - local_extra, local_extra);
        while acks < needed || extra_acks < extra.len() {
            let Some((node, hint_for, r)) = pending.next().await else {
                break;
            };
            let micros = started.elapsed().as_micros() as u64;
            match r {
                Ok(()) => {
                    if is_extra(&node, &hint_for) {
                        extra_acks += 1;
                    } else {
                        acks += 1;
                    }
                    replies.push(reply(node, hint_for, micros, None));
                }
                Err(e) => {
                    if matches!(e, KvError::TooManySiblings { .. }) {
                        return Err(e);
                    }
                    if node != self.inner.id {
                        self.mark(&node, false);
                    }
                    // Sloppy quorum: the write goes to the next healthy node, as a hint
                    // for the replica that failed.
                    let target = hint_for.clone().unwrap_or_else(|| node.clone());
                    if let Some(spare) = spares.next() {
                        pending.push(send(spare, Some(target)));
                    }
                    replies.push(reply(node, hint_for, micros, Some(e.to_string())));
                }
            }
        }
        self.finish_in_background(pending);
        if acks < needed {
            return Err(quorum_failed(needed, acks, &replies));
        }
        Ok(RingWrite {
            dot,
            replicas: replies,
            needed,
        })
    }

    /// Refuses a write of `key` (and `value`) over the limits before anything is done.
    fn check_write(&self, key: &[u8], value: Option<&Bytes>) -> Result<()> {
        check_key(key, &self.inner.config)?;
        if let Some(v) = value {
            let limit = self.inner.config.store.limits.max_value;
            if v.len() > limit {
                return Err(KvError::ValueTooLarge {
                    size: v.len(),
                    limit,
                });
            }
        }
        Ok(())
    }

    /// Replicas still writing when the coordinator has its answer finish in the
    /// background (and are not undone); one that fails is marked down.
    fn finish_in_background<F>(&self, mut pending: FuturesUnordered<F>)
    where
        F: std::future::Future<Output = (String, Option<String>, Result<()>)> + Send + 'static,
    {
        if pending.is_empty() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            while let Some((node, _, r)) = pending.next().await {
                if r.is_err() && node != this.inner.id {
                    this.mark(&node, false);
                }
            }
        });
    }

    /// Where a write of `key` goes on `rings` and how many acknowledgements it waits
    /// for (`w`, default the cluster's W).
    fn write_targets(&self, rings: &Rings, key: &[u8], w: Option<Quorum>) -> WriteTargets {
        let ring = &rings.current;
        let n = self.inner.config.n.min(ring.nodes().len()).max(1);
        let needed = w.map_or(self.inner.config.w, |q| q.count(n)).min(n);
        let preference: Vec<String> = ring
            .preference_list(key, n)
            .into_iter()
            .map(String::from)
            .collect();
        // While a member joins or leaves, the write also goes to the key's future
        // owners, and waits for them too: when the ring settles they have it.
        let extra: Vec<String> = if rings.settled {
            Vec::new()
        } else {
            rings
                .future
                .preference_list(key, self.inner.config.n)
                .into_iter()
                .filter(|f| !preference.iter().any(|p| p == f))
                .map(String::from)
                .collect()
        };
        WriteTargets {
            n,
            needed,
            preference,
            extra,
        }
    }

    /// Mints the write's dot and merges the new sibling into the local state of `key`
    /// in one step on the local writer (see [`coordinate`](Self::coordinate) for why);
    /// returns the merged state and the dot.
    async fn mint_and_merge(
        &self,
        key: &Bytes,
        value: Option<Bytes>,
        context: VersionVector,
    ) -> Result<(SiblingSet, Dot)> {
        let dots = self.inner.dots.clone();
        let id = self.inner.id.clone();
        self.inner
            .store
            .merge_new(key, Durability::Sync, move || Sibling {
                dot: Dot {
                    node: id,
                    counter: dots.fetch_add(1, Ordering::SeqCst) + 1,
                },
                context,
                value,
            })
            .await
    }

    /// Reads `key` from its preference list, answering after R replies; stale replicas
    /// (and late ones) get the merged state (read repair).
    ///
    /// # Errors
    ///
    /// [`KvError::QuorumFailed`] when fewer than R replicas answered in time.
    pub async fn read(&self, key: Bytes, r: Option<Quorum>) -> Result<RingRead> {
        check_key(&key, &self.inner.config)?;
        let rings = self.rings();
        let ring = &rings.current;
        let n = self.inner.config.n.min(ring.nodes().len()).max(1);
        let needed = r.map_or(self.inner.config.r, |q| q.count(n)).min(n);
        let preference: Vec<String> = ring
            .preference_list(&key, n)
            .into_iter()
            .map(String::from)
            .collect();
        let started = Instant::now();
        let mut pending = FuturesUnordered::new();
        for p in &preference {
            let this = self.clone();
            let key = key.clone();
            let p = p.clone();
            pending.push(async move {
                let r = this.fetch_from(&p, &key).await;
                (p, r)
            });
        }
        let mut merged = SiblingSet::default();
        let mut states: Vec<(String, u64)> = Vec::new();
        let mut replies = Vec::new();
        while states.len() < needed {
            let Some((node, r)) = pending.next().await else {
                break;
            };
            let micros = started.elapsed().as_micros() as u64;
            match r {
                Ok(set) => {
                    states.push((node.clone(), set.digest()));
                    merged.merge(set.siblings);
                    replies.push(reply(node, None, micros, None));
                }
                Err(e) => {
                    if node != self.inner.id {
                        self.mark(&node, false);
                    }
                    replies.push(reply(node, None, micros, Some(e.to_string())));
                }
            }
        }
        if states.len() < needed {
            return Err(quorum_failed(needed, states.len(), &replies));
        }
        let digest = merged.digest();
        for (node, d) in &states {
            if *d != digest {
                if let Some(rep) = replies.iter_mut().find(|r| &r.node == node) {
                    rep.repaired = true;
                }
                self.spawn_repair(node.clone(), key.clone(), merged.clone());
            }
        }
        // Late replies are compared too, and repaired if stale.
        if !pending.is_empty() {
            let this = self.clone();
            let key = key.clone();
            let mut merged = merged.clone();
            tokio::spawn(async move {
                let mut late = Vec::new();
                while let Some((node, r)) = pending.next().await {
                    if let Ok(set) = r {
                        late.push((node, set.digest()));
                        merged.merge(set.siblings);
                    }
                }
                let digest = merged.digest();
                for (node, d) in late {
                    if d != digest {
                        this.spawn_repair(node, key.clone(), merged.clone());
                    }
                }
            });
        }
        Ok(RingRead {
            values: merged.values(),
            context: merged.context(),
            siblings: merged.siblings.len(),
            replicas: replies,
            needed,
        })
    }

    fn spawn_repair(&self, node: String, key: Bytes, state: SiblingSet) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this
                .store_on(&node, None, &key, state.siblings, false)
                .await
            {
                tracing::debug!(node, error = %e, "read repair failed");
            }
        });
    }

    /// Where `key` lives.
    pub fn locate(&self, key: &[u8]) -> Located {
        let rings = self.rings();
        let ring = &rings.current;
        Located {
            position: key_position(key),
            preference: ring
                .preference_list(key, self.inner.config.n)
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    /// The ring as this node sees it.
    pub fn view(&self) -> RingView {
        let rings = self.rings();
        let ring = &rings.current;
        let membership = self.membership();
        let shares = ring.shares();
        RingView {
            node: self.inner.id.clone(),
            version: membership.version(),
            members: membership
                .members
                .iter()
                .map(|(name, m)| MemberView {
                    node: name.clone(),
                    state: m.state,
                    reachable: self.is_up(name),
                    share: shares.get(name.as_str()).copied().unwrap_or(0.0),
                })
                .collect(),
            n: self.inner.config.n,
            w: self.inner.config.w,
            r: self.inner.config.r,
            tokens: ring.tokens(),
            hints: self.hints(),
            anti_entropy: self.anti_entropy_stats(),
        }
    }

    /// Leaves the ring: announces `Leaving`, hands every key to its new owners, then
    /// announces `Left` to every member.
    ///
    /// # Errors
    ///
    /// A key could not be handed off (the node stays `Leaving`; call again).
    pub async fn leave(&self) -> Result<()> {
        self.set_state(MemberState::Leaving).await;
        self.announce().await;
        let moved = self.move_keys(u64::MAX).await?;
        if moved.1 > 0 {
            return Err(KvError::Storage(format!(
                "{} keys could not be handed off; still leaving",
                moved.1
            )));
        }
        self.set_state(MemberState::Left).await;
        self.announce().await;
        tracing::info!(moved = moved.0, "left the ring");
        self.inner.left.notify_waiters();
        Ok(())
    }

    async fn set_state(&self, state: MemberState) {
        let mut view = self.membership();
        let epoch = view.members.get(&self.inner.id).map_or(1, |m| m.epoch + 1);
        view.members
            .insert(self.inner.id.clone(), Member { state, epoch });
        self.adopt(&view).await;
    }

    // ---- background ---------------------------------------------------------------

    fn spawn_background(&self) {
        let stop = self.inner.stop.clone();
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.inner.config.ping_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => this.ping_all().await,
                }
            }
        });
        let stop = self.inner.stop.clone();
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.inner.config.gossip_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => this.gossip_once().await,
                }
            }
        });
        let stop = self.inner.stop.clone();
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.inner.config.handoff_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => this.deliver_hints().await,
                }
            }
        });
        self.spawn_anti_entropy();
    }

    async fn ping_all(&self) {
        let peers: Vec<String> = self
            .membership()
            .owners()
            .into_iter()
            .filter(|m| m != &self.inner.id)
            .collect();
        let pings = peers.into_iter().map(|p| {
            let this = self.clone();
            async move {
                let ok = match this.peer(&p).await {
                    Ok(c) => matches!(this.bounded(&p, c.ping()).await, Ok(Ok(_))),
                    Err(_) => false,
                };
                this.mark(&p, ok);
            }
        });
        futures::future::join_all(pings).await;
    }

    async fn gossip_once(&self) {
        let view = self.membership();
        let peers: Vec<String> = view
            .owners()
            .into_iter()
            .filter(|m| m != &self.inner.id && self.is_up(m))
            .collect();
        if peers.is_empty() {
            return;
        }
        let pick = &peers[rand::random_range(0..peers.len())];
        if let Ok(c) = self.peer(pick).await {
            if let Ok(theirs) = c.gossip(view).await {
                self.adopt(&theirs).await;
            }
        }
    }

    async fn deliver_hints(&self) {
        for (target, _) in self.hints() {
            if !self.is_up(&target) {
                continue;
            }
            let queue = self.inner.hints.queue(&format!("{HINTS}{target}"));
            let mut consumer = queue.consumer(mw::queue::ConsumerOptions::default());
            // Bounded per pass so one target cannot starve the others.
            for _ in 0..1024 {
                let d = match tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await
                {
                    Ok(Ok(d)) => d,
                    _ => break,
                };
                let Ok((key, siblings)) = postcard::from_bytes::<(Bytes, Vec<Sibling>)>(d.body())
                else {
                    tracing::error!(target, "undecodable hint dropped");
                    let _ = d.reject().await;
                    continue;
                };
                let delivered = match self.peer(&target).await {
                    Ok(c) => c.store(key, siblings, false).await.map_err(rpc),
                    Err(e) => Err(e),
                };
                match delivered {
                    Ok(_) => {
                        let _ = d.ack().await;
                    }
                    Err(e) => {
                        tracing::debug!(target, error = %e, "hint not delivered yet");
                        let _ = d.nack(None).await;
                        self.mark(&target, false);
                        break;
                    }
                }
            }
        }
    }

    fn spawn_rebalance(&self) {
        let this = self.clone();
        let generation = self.inner.rebalance.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::spawn(async move {
            match this.move_keys(generation).await {
                Ok((moved, failed)) if moved + failed > 0 => {
                    tracing::info!(moved, failed, "rebalanced after a ring change")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "rebalance failed"),
            }
        });
    }

    /// Sends every local key to the members of its preference list that are not this
    /// node, and drops the local copy of keys this node no longer owns once all their
    /// owners have them. Stops early when a newer rebalance started (`generation`;
    /// `u64::MAX` never stops). Returns (keys moved, keys that could not be).
    async fn move_keys(&self, generation: u64) -> Result<(u64, u64)> {
        let (mut moved, mut failed) = (0u64, 0u64);
        let mut after: Option<Bytes> = None;
        loop {
            if generation != u64::MAX && self.inner.rebalance.load(Ordering::SeqCst) != generation {
                return Ok((moved, failed));
            }
            let page = self
                .inner
                .store
                .range(0, u64::MAX, after.clone(), MOVE_PAGE)
                .await?;
            let Some((last, _)) = page.last() else {
                return Ok((moved, failed));
            };
            after = Some(last.clone());
            let rings = self.rings();
            let ring = &rings.future;
            let n = self.inner.config.n;
            for (key, state) in page {
                let owners = ring.preference_list(&key, n);
                let mine = owners.contains(&self.inner.id.as_str());
                let mut all_ok = true;
                for o in owners.iter().filter(|o| **o != self.inner.id) {
                    if !mine || generation == u64::MAX || !self.has_same(o, &key, &state).await {
                        let r = self
                            .store_on(o, None, &key, state.siblings.clone(), false)
                            .await;
                        all_ok &= r.is_ok();
                    }
                }
                if !mine {
                    if !all_ok {
                        failed += 1;
                    } else if rings.settled {
                        // Only once no member joins or leaves: until then readers may
                        // still ask this node for the key.
                        let _ = self.inner.store.remove_if(&key, state.digest()).await;
                        moved += 1;
                    } else {
                        moved += 1;
                    }
                }
            }
        }
    }

    async fn has_same(&self, node: &str, key: &Bytes, state: &SiblingSet) -> bool {
        matches!(self.fetch_from(node, key).await, Ok(s) if s.digest() == state.digest())
    }
}

fn check_key(key: &[u8], config: &RingConfig) -> Result<()> {
    let limit = config.store.limits.max_key;
    if key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if key.len() > limit {
        return Err(KvError::KeyTooLarge {
            size: key.len(),
            limit,
        });
    }
    Ok(())
}

fn reply(
    node: String,
    hint_for: Option<String>,
    micros: u64,
    error: Option<String>,
) -> ReplicaReply {
    ReplicaReply {
        node,
        hint_for,
        ok: error.is_none(),
        micros,
        error,
        repaired: false,
    }
}

fn quorum_failed(needed: usize, acks: usize, replies: &[ReplicaReply]) -> KvError {
    let detail = replies
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{}: {}", r.node, r.error.as_deref().unwrap_or("no answer")))
        .collect::<Vec<_>>()
        .join("; ");
    KvError::QuorumFailed {
        needed,
        acks,
        detail: if detail.is_empty() {
            "not enough replicas".into()
        } else {
            detail
        },
    }
}

/// A node's anti-entropy state: the next range, the counters, the tombstones waiting out
/// their grace. Kept here in the node; the rounds that use it are in
/// [`anti_entropy`](crate::ring::anti_entropy).
#[derive(Debug)]
pub(crate) struct AntiEntropyState {
    /// The next range to compare.
    pub(crate) cursor: AtomicU32,
    pub(crate) rounds: AtomicU64,
    pub(crate) ranges_compared: AtomicU64,
    pub(crate) keys_exchanged: AtomicU64,
    pub(crate) max_round_keys: AtomicU64,
    pub(crate) tombstones_collected: AtomicU64,
    /// Tombstone-only keys: the digest seen and since when (the GC grace).
    pub(crate) tombstones: Mutex<HashMap<Bytes, (u64, Instant)>>,
    /// One round at a time.
    pub(crate) running: tokio::sync::Mutex<()>,
}

impl Default for AntiEntropyState {
    fn default() -> Self {
        AntiEntropyState {
            cursor: AtomicU32::new(rand::random_range(0..RANGES)),
            rounds: AtomicU64::new(0),
            ranges_compared: AtomicU64::new(0),
            keys_exchanged: AtomicU64::new(0),
            max_round_keys: AtomicU64::new(0),
            tombstones_collected: AtomicU64::new(0),
            tombstones: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(()),
        }
    }
}

impl AntiEntropyState {
    /// The counters. A round counts itself when it starts and each key before it
    /// exchanges it, and this reads the keys before the rounds, so `keys_exchanged <=
    /// budget × rounds` holds in every snapshot, and a key repaired is already counted.
    pub(crate) fn stats(&self) -> AntiEntropyStats {
        let keys_exchanged = self.keys_exchanged.load(Ordering::SeqCst);
        let max_round_keys = self.max_round_keys.load(Ordering::SeqCst);
        let tombstones_collected = self.tombstones_collected.load(Ordering::SeqCst);
        let ranges_compared = self.ranges_compared.load(Ordering::SeqCst);
        AntiEntropyStats {
            rounds: self.rounds.load(Ordering::SeqCst),
            ranges_compared,
            keys_exchanged,
            max_round_keys,
            tombstones_collected,
        }
    }
}
