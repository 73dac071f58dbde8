//! Anti-entropy and tombstone GC: replicas compare Merkle trees per key range and
//! exchange only the keys that differ, so a replica that missed writes (it was down, a
//! write reached only W of N, a hint was lost) converges even for keys nobody reads; and
//! deletes, kept as tombstones, are removed once every replica has them.
//!
//! # Ranges and trees
//! The ring's 64-bit position space ([`key_position`]) is cut into [`RANGES`] equal
//! ranges. The [`MerkleTree`] of a range has [`LEAVES`] leaves, leaf `i` covering the
//! `i`-th of `LEAVES` equal sub-ranges. A leaf's hash is xxh3 over `(key length, key,
//! digest)` of its keys in `(position, key)` order ([`SiblingSet::digest`] names a state
//! by its dots), `0` when the leaf is empty; an inner node is xxh3 of its two children,
//! `0` when both are. A tree is 511 hashes in heap order (index 1 the root, the leaves
//! from index [`LEAVES`]), about 4 KB on the wire: a peer sends its whole tree in one
//! call, the comparing node descends in memory only into subtrees whose hashes differ,
//! and asks for the keys of the differing leaves only.
//!
//! # Which keys a tree covers: exactly the pair's keys
//! A tree is computed *for a pair* of nodes: node A's tree of range `r` "with B" covers
//! exactly the keys of `r` whose preference list (current ring, N) contains both A and
//! B. With more members than N, A and B replicate different subsets of every range, so
//! trees over everything each holds would differ forever by the keys only one of them
//! replicates (and would push leftover copies, held by a node no longer in a key's
//! preference list, back to owners). Both sides must filter with the same ring: every
//! request carries a fingerprint of the asker's ring ([`ring_fingerprint`]: members,
//! tokens, N), and a replica whose ring differs, or is not settled (a member joining or
//! leaving), declines. While the ring changes, rebalancing moves keys and anti-entropy
//! waits.
//!
//! # Trees are computed on demand
//! Nothing is cached: a tree is built from a scan of the range in the local store (the
//! store is ordered by position, so a range is a local key range of about 1/[`RANGES`]
//! of the store). Cost of comparing one range with one peer: one local scan, one scan
//! on the peer, one call for its tree, one call per differing leaf and one or two per
//! differing key. It is simple and never stale; a cache invalidated on writes would save
//! the scans at the price of hooking every path that changes a replica (writes, repair,
//! hint delivery, bootstrap, rebalancing, GC).
//!
//! # Rounds and the rate limit
//! Every [`anti_entropy_interval`](RingConfig::anti_entropy_interval) a node runs one
//! round ([`RingNode::anti_entropy_round`]): it takes the next range (round robin from a
//! random start) and compares it with every peer of the ring its failure detector sees
//! up (with virtual nodes, nearly every peer shares keys of every range). A round
//! exchanges at most `anti_entropy_keys_per_sec × interval` keys (at least 1;
//! [`RingNode::anti_entropy_budget`]): a differing key counts once, whether it was
//! pulled, pushed or both. When the budget runs out the round stops, and the next round
//! resumes the same range, so a large difference is repaired at the configured rate and
//! never in a burst. A differing key is repaired both ways: the peer's state is fetched
//! and merged here, and the merged state is stored on the peer if it lacked anything.
//!
//! # Tombstone GC
//! A delete is a tombstone, and removing it too early would let an old copy of the
//! value come back (a replica that missed the delete pushes its value to replicas that
//! no longer have the tombstone that replaces it). During a round, node X removes a key
//! `k` of the range (with [`ReplicaStore::remove_if`](crate::ring::store::ReplicaStore::remove_if))
//! only when all of these hold:
//! 1. the ring is settled (no member joining or leaving) and X is in `k`'s preference
//!    list;
//! 2. X's state of `k` is tombstones only, with digest `d`, and X has seen that same
//!    state for at least [`tombstone_grace`](RingConfig::tombstone_grace) (remembered in
//!    memory: a restart starts the wait again);
//! 3. X holds no hint at all, for any target;
//! 4. X's failure detector sees every member of the ring up, and every other member
//!    answers a probe ([`gc_probe`](crate::ring::service::Replica::gc_probe)) with the
//!    same ring fingerprint, holding no hint at all, and holding for `k` the digest `d`
//!    if it is in `k`'s preference list, or either `d` or nothing if it is not.
//!
//! A round considers only the keys of the range it just compared, at most its key
//! budget of them. X then asks every other member to
//! [`forget`](crate::ring::service::Replica::forget) `(k, d)`, and forgets it itself:
//! each removes `k` only if its state is still tombstones only with digest `d`. If
//! some member missed the `forget`, its tombstone spreads back by anti-entropy and is
//! collected again later: extra work, never a resurrection, since only tombstones were
//! left anywhere.
//!
//! Remaining risks: a write or repair that carries a value the tombstone replaced and
//! is delayed for longer than the grace (a replica write still queued after its
//! coordinator gave up, a stalled disk, an iterative client's late write) lands after
//! the removal and brings the value back; so does a copy outside the ring's members (a
//! node that left or was restored from an old backup and rejoins with its old data). A
//! hint stored after the probe is for a write made after it, never for the deleted
//! value. A leftover copy with another state on a node outside `k`'s preference list
//! blocks the GC of `k` (safe; the tombstone stays) until rebalancing drops it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;

use crate::error::{KvError, Result};
#[cfg(doc)]
use crate::ring::dvv::SiblingSet;
use crate::ring::hash::{key_position, Ring};
#[cfg(doc)]
use crate::ring::node::RingConfig;
use crate::ring::node::RingNode;
use crate::ring::service::ReplicaClient;
use crate::ring::types::GcProbe;
use crate::types::Durability;

// The range and tree vocabulary of this protocol lives in `merkle` (pure computation);
// it is public here too, so a caller of anti-entropy finds it in one place.
pub use crate::ring::merkle::{
    leaf_bounds, leaf_of, range_bounds, range_of, ring_fingerprint, MerkleTree, LEAF_BITS, LEAVES,
    RANGES, RANGE_BITS,
};

/// Most keys one `keys_in`, `gc_probe` or `forget` call carries.
pub const MAX_KEYS_PER_CALL: usize = 10_000;
/// Replicas read per page when scanning a range.
const SCAN_PAGE: u32 = 1024;

/// What one anti-entropy round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// The range compared; `None` when the round was skipped (ring not settled, this
    /// node not an owner, anti-entropy already running).
    pub range: Option<u32>,
    /// Peers whose tree was compared.
    pub peers_compared: u32,
    /// Keys that differed and were exchanged (pulled, pushed or both).
    pub keys_exchanged: u64,
    /// Tombstones removed here by GC.
    pub tombstones_collected: u64,
    /// Whether the key budget ran out (the next round resumes this range).
    pub budget_exhausted: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rpc(e: mw::rpc::RpcError<KvError>) -> KvError {
    match e.into_application() {
        Ok(k) => k,
        Err(e) => KvError::Storage(format!("replica call failed: {e}")),
    }
}

/// One replica found in a range scan.
struct Entry {
    key: Bytes,
    digest: u64,
    /// Tombstones only.
    deleted: bool,
    /// Its preference list.
    preference: Vec<String>,
}

impl Entry {
    fn shared_by(&self, a: &str, b: Option<&str>) -> bool {
        self.preference.iter().any(|p| p == a)
            && b.is_none_or(|b| self.preference.iter().any(|p| p == b))
    }
}

impl RingNode {
    /// The ring anti-entropy compares with, its fingerprint, and whether it is settled.
    fn ae_ring(&self) -> (Ring, u64, bool) {
        let settled = self.membership().settled();
        let ring = self.ring();
        let fp = ring_fingerprint(&ring, self.config().n);
        (ring, fp, settled)
    }

    /// Keys exchanged per round at most: `anti_entropy_keys_per_sec × interval`, at
    /// least 1.
    pub fn anti_entropy_budget(&self) -> u64 {
        let c = self.config();
        let per = c.anti_entropy_keys_per_sec as f64 * c.anti_entropy_interval.as_secs_f64();
        (per.round() as u64).max(1)
    }

    /// Every replica here with a position in `[from, to]`, with its preference list
    /// under `ring`.
    async fn scan_range(&self, ring: &Ring, from: u64, to: u64) -> Result<Vec<Entry>> {
        let n = self.config().n;
        let mut out = Vec::new();
        let mut after: Option<Bytes> = None;
        loop {
            let page = self
                .store()
                .range(from, to, after.clone(), SCAN_PAGE)
                .await?;
            let full = page.len() == SCAN_PAGE as usize;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, state) in page {
                if state.is_empty() {
                    continue;
                }
                let preference = ring
                    .preference_list(&key, n)
                    .into_iter()
                    .map(String::from)
                    .collect();
                out.push(Entry {
                    digest: state.digest(),
                    deleted: state.is_deleted(),
                    key,
                    preference,
                });
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// The Merkle tree of `range` over the keys this node replicates (its preference
    /// list under the current ring contains it) and, with `with`, that `with`
    /// replicates too.
    ///
    /// # Errors
    ///
    /// A storage failure.
    pub async fn merkle_tree(&self, range: u32, with: Option<&str>) -> Result<MerkleTree> {
        let (ring, _, _) = self.ae_ring();
        let (from, to) = range_bounds(range);
        let entries = self.scan_range(&ring, from, to).await?;
        Ok(MerkleTree::build(
            entries
                .iter()
                .filter(|e| e.shared_by(self.id(), with))
                .map(|e| (&e.key[..], e.digest)),
        ))
    }

    /// The root of every range's tree over the keys this node replicates, `(range,
    /// root)` for each of the [`RANGES`] ranges (0: no key). Nodes that replicate the
    /// same keys (every node when the ring has at most N members) have equal roots once
    /// they converged; otherwise compare pair trees ([`merkle_tree`](Self::merkle_tree)
    /// with `with`).
    ///
    /// # Errors
    ///
    /// A storage failure.
    pub async fn merkle_roots(&self) -> Result<Vec<(u32, u64)>> {
        let mut out = Vec::with_capacity(RANGES as usize);
        for range in 0..RANGES {
            out.push((range, self.merkle_tree(range, None).await?.root()));
        }
        Ok(out)
    }

    /// The `merkle` handler: the tree of `range` with `with`, if this node's ring has
    /// fingerprint `ring` and is settled.
    ///
    /// # Errors
    ///
    /// A storage failure.
    pub async fn serve_merkle(
        &self,
        range: u32,
        with: &str,
        ring: u64,
    ) -> Result<Option<Vec<u64>>> {
        let (mine, fp, settled) = self.ae_ring();
        if fp != ring || !settled || range >= RANGES {
            return Ok(None);
        }
        let (from, to) = range_bounds(range);
        let entries = self.scan_range(&mine, from, to).await?;
        let tree = MerkleTree::build(
            entries
                .iter()
                .filter(|e| e.shared_by(self.id(), Some(with)))
                .map(|e| (&e.key[..], e.digest)),
        );
        Ok(Some(tree.into_nodes()))
    }

    /// The `keys_in` handler: `(key, digest)` of the keys of leaf `leaf` of `range`
    /// this node replicates with `with`, if its ring has fingerprint `ring` and is
    /// settled.
    ///
    /// # Errors
    ///
    /// A storage failure.
    pub async fn serve_keys_in(
        &self,
        range: u32,
        leaf: u32,
        with: &str,
        ring: u64,
    ) -> Result<Option<Vec<(Bytes, u64)>>> {
        let (mine, fp, settled) = self.ae_ring();
        if fp != ring || !settled || range >= RANGES || leaf as usize >= LEAVES {
            return Ok(None);
        }
        let (from, to) = leaf_bounds(range, leaf as usize);
        let entries = self.scan_range(&mine, from, to).await?;
        Ok(Some(
            entries
                .into_iter()
                .filter(|e| e.shared_by(self.id(), Some(with)))
                .take(MAX_KEYS_PER_CALL)
                .map(|e| (e.key, e.digest))
                .collect(),
        ))
    }

    /// The `gc_probe` handler: the hints this node holds and its digest of each key
    /// (`None`: not held), if its ring has fingerprint `ring` and is settled.
    ///
    /// # Errors
    ///
    /// Too many keys; a storage failure.
    pub async fn gc_probe(&self, keys: Vec<Bytes>, ring: u64) -> Result<Option<GcProbe>> {
        let (_, fp, settled) = self.ae_ring();
        if fp != ring || !settled {
            return Ok(None);
        }
        if keys.len() > MAX_KEYS_PER_CALL {
            return Err(KvError::Storage(format!(
                "gc_probe of {} keys (at most {MAX_KEYS_PER_CALL})",
                keys.len()
            )));
        }
        let hints = self.hints().values().sum();
        let mut digests = Vec::with_capacity(keys.len());
        for k in &keys {
            let s = self.store().read(k).await?;
            digests.push((!s.is_empty()).then(|| s.digest()));
        }
        Ok(Some(GcProbe { hints, digests }))
    }

    /// The `forget` handler: removes each key whose state here is still tombstones
    /// only with the digest given; returns how many were removed.
    ///
    /// # Errors
    ///
    /// Too many keys; a storage failure.
    pub async fn forget(&self, keys: Vec<(Bytes, u64)>) -> Result<u64> {
        if keys.len() > MAX_KEYS_PER_CALL {
            return Err(KvError::Storage(format!(
                "forget of {} keys (at most {MAX_KEYS_PER_CALL})",
                keys.len()
            )));
        }
        let mut removed = 0;
        for (key, digest) in keys {
            let s = self.store().read(&key).await?;
            // Same digest, same dots, same siblings: the check and the removal see the
            // same tombstones (`remove_if` rechecks the digest atomically).
            if s.is_empty() || !s.is_deleted() || s.digest() != digest {
                continue;
            }
            if self.store().remove_if(&key, digest).await? {
                removed += 1;
                let state = self.anti_entropy_state();
                state.tombstones_collected.fetch_add(1, Ordering::SeqCst);
                lock(&state.tombstones).remove(&key);
            }
        }
        Ok(removed)
    }

    /// Runs anti-entropy rounds every `anti_entropy_interval` until the node closes
    /// (never when the interval is zero).
    pub(crate) fn spawn_anti_entropy(&self) {
        let interval = self.config().anti_entropy_interval;
        if interval.is_zero() {
            return;
        }
        let stop = self.stop_token();
        let this = self.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + interval;
            let mut tick = tokio::time::interval_at(start, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = this.anti_entropy_round().await {
                            tracing::debug!(error = %e, "anti-entropy round failed");
                        }
                    }
                }
            }
        });
    }

    /// One anti-entropy round: compares the next range with every peer seen up,
    /// exchanges at most [`anti_entropy_budget`](Self::anti_entropy_budget) differing
    /// keys, and collects the range's tombstones that every replica has (see the module
    /// doc for the exact rule).
    ///
    /// # Errors
    ///
    /// A local storage failure (a peer failing only ends the comparison with it).
    pub async fn anti_entropy_round(&self) -> Result<RoundReport> {
        let state = self.anti_entropy_state();
        let Ok(_running) = state.running.try_lock() else {
            return Ok(RoundReport::default());
        };
        let (ring, fp, settled) = self.ae_ring();
        let me = self.id().to_string();
        if !settled || !ring.nodes().contains(&me) {
            return Ok(RoundReport::default());
        }
        let range = state.cursor.load(Ordering::SeqCst) % RANGES;
        let budget = self.anti_entropy_budget();
        state.rounds.fetch_add(1, Ordering::SeqCst);
        let (from, to) = range_bounds(range);
        let mut entries = self.scan_range(&ring, from, to).await?;
        // Whether keys were exchanged since `entries` was scanned.
        let mut stale = false;
        let mut report = RoundReport {
            range: Some(range),
            ..RoundReport::default()
        };
        let peers: Vec<String> = ring
            .nodes()
            .iter()
            .filter(|p| **p != me && self.is_up(p))
            .cloned()
            .collect();
        let mut merged_here = false;
        for peer in &peers {
            if report.keys_exchanged >= budget {
                report.budget_exhausted = true;
                break;
            }
            if stale {
                // What the last peer sent is here now: do not exchange it again.
                entries = self.scan_range(&ring, from, to).await?;
                stale = false;
            }
            let before = report.keys_exchanged;
            match self
                .compare_with(
                    peer,
                    range,
                    fp,
                    &entries,
                    budget,
                    &mut report,
                    &mut merged_here,
                )
                .await
            {
                Ok(()) => {}
                Err(e) => tracing::debug!(peer, range, error = %e, "anti-entropy with peer failed"),
            }
            stale |= report.keys_exchanged > before;
        }
        if merged_here {
            self.store().kv().sync_now().await?;
        }
        if stale {
            entries = self.scan_range(&ring, from, to).await?;
        }
        report.tombstones_collected = self.collect_tombstones(range, fp, &entries, budget).await?;
        if !report.budget_exhausted {
            state.cursor.store((range + 1) % RANGES, Ordering::SeqCst);
        }
        state
            .ranges_compared
            .fetch_add(u64::from(report.peers_compared), Ordering::SeqCst);
        state
            .max_round_keys
            .fetch_max(report.keys_exchanged, Ordering::SeqCst);
        if report.keys_exchanged > 0 || report.tombstones_collected > 0 {
            tracing::debug!(
                range,
                keys = report.keys_exchanged,
                tombstones = report.tombstones_collected,
                "anti-entropy round"
            );
        }
        Ok(report)
    }

    /// Compares `range` with `peer` and repairs differing keys while the budget lasts.
    #[allow(clippy::too_many_arguments)]
    async fn compare_with(
        &self,
        peer: &str,
        range: u32,
        fp: u64,
        entries: &[Entry],
        budget: u64,
        report: &mut RoundReport,
        merged_here: &mut bool,
    ) -> Result<()> {
        let me = self.id().to_string();
        let mine: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.shared_by(&me, Some(peer)))
            .collect();
        let tree = MerkleTree::build(mine.iter().map(|e| (&e.key[..], e.digest)));
        let client = self.peer(peer).await?;
        let Some(theirs) = client.merkle(range, me.clone(), fp).await.map_err(rpc)? else {
            // Its ring differs (or is changing): compare once both agree.
            return Ok(());
        };
        let theirs = MerkleTree::from_nodes(theirs)
            .ok_or_else(|| KvError::Storage(format!("malformed Merkle tree from {peer}")))?;
        report.peers_compared += 1;
        let mut by_leaf: BTreeMap<usize, BTreeMap<&[u8], u64>> = BTreeMap::new();
        for e in &mine {
            by_leaf
                .entry(leaf_of(key_position(&e.key)))
                .or_default()
                .insert(&e.key[..], e.digest);
        }
        let empty = BTreeMap::new();
        for leaf in tree.diff(&theirs) {
            if report.keys_exchanged >= budget {
                report.budget_exhausted = true;
                return Ok(());
            }
            let Some(their_keys) = client
                .keys_in(range, leaf as u32, me.clone(), fp)
                .await
                .map_err(rpc)?
            else {
                return Ok(());
            };
            let ours = by_leaf.get(&leaf).unwrap_or(&empty);
            let theirs: BTreeMap<Bytes, u64> = their_keys.into_iter().collect();
            let mut differing: BTreeSet<Bytes> = BTreeSet::new();
            for (k, d) in ours {
                if theirs.get(*k) != Some(d) {
                    differing.insert(Bytes::copy_from_slice(k));
                }
            }
            for k in theirs.keys() {
                if !ours.contains_key(&k[..]) {
                    differing.insert(k.clone());
                }
            }
            for key in differing {
                if report.keys_exchanged >= budget {
                    report.budget_exhausted = true;
                    return Ok(());
                }
                report.keys_exchanged += 1;
                self.anti_entropy_state()
                    .keys_exchanged
                    .fetch_add(1, Ordering::SeqCst);
                self.exchange_key(&client, &key, theirs.get(&key).copied(), merged_here)
                    .await?;
            }
        }
        Ok(())
    }

    /// Pulls the peer's state of `key` (if it has one), merges it here, and pushes the
    /// merged state to the peer unless it already has it.
    async fn exchange_key(
        &self,
        client: &ReplicaClient,
        key: &Bytes,
        their_digest: Option<u64>,
        merged_here: &mut bool,
    ) -> Result<()> {
        let theirs = match their_digest {
            Some(_) => client.fetch(key.clone()).await.map_err(rpc)?.siblings,
            None => Vec::new(),
        };
        let merged = self
            .store()
            .merge(key, theirs, Durability::Buffered, false)
            .await?;
        *merged_here = true;
        if !merged.is_empty() && their_digest != Some(merged.digest()) {
            client
                .store(key.clone(), merged.siblings, false)
                .await
                .map_err(rpc)?;
        }
        Ok(())
    }

    /// Tombstone GC of the range just compared (the rule is in the module doc);
    /// returns the tombstones removed here.
    async fn collect_tombstones(
        &self,
        range: u32,
        fp: u64,
        entries: &[Entry],
        budget: u64,
    ) -> Result<u64> {
        let state = self.anti_entropy_state();
        let me = self.id().to_string();
        let grace = self.config().tombstone_grace;
        let now = Instant::now();
        let mut eligible: Vec<&Entry> = Vec::new();
        {
            let mut seen = lock(&state.tombstones);
            // What this range held as tombstones before; kept only for keys that still
            // are, with the same digest.
            let mut before: HashMap<Bytes, (u64, Instant)> = HashMap::new();
            seen.retain(|k, v| {
                if range_of(key_position(k)) == range {
                    before.insert(k.clone(), *v);
                    false
                } else {
                    true
                }
            });
            for e in entries
                .iter()
                .filter(|e| e.deleted && e.shared_by(&me, None))
            {
                let since = match before.get(&e.key) {
                    Some(&(d, t)) if d == e.digest => t,
                    _ => now,
                };
                seen.insert(e.key.clone(), (e.digest, since));
                if now.duration_since(since) >= grace && (eligible.len() as u64) < budget {
                    eligible.push(e);
                }
            }
        }
        eligible.truncate(MAX_KEYS_PER_CALL);
        if eligible.is_empty() || !self.hints().is_empty() {
            return Ok(0);
        }
        let members: Vec<String> = self
            .membership()
            .owners()
            .into_iter()
            .filter(|m| *m != me)
            .collect();
        if members.iter().any(|m| !self.is_up(m)) {
            return Ok(0);
        }
        let keys: Vec<Bytes> = eligible.iter().map(|e| e.key.clone()).collect();
        let mut ok = vec![true; eligible.len()];
        let mut clients = Vec::with_capacity(members.len());
        for m in &members {
            let Ok(client) = self.peer(m).await else {
                return Ok(0);
            };
            let probe = match client.gc_probe(keys.clone(), fp).await {
                Ok(Some(p)) if p.hints == 0 && p.digests.len() == keys.len() => p,
                _ => return Ok(0),
            };
            for (i, e) in eligible.iter().enumerate() {
                let theirs = probe.digests[i];
                ok[i] &= if e.preference.iter().any(|p| p == m) {
                    theirs == Some(e.digest)
                } else {
                    theirs.is_none_or(|d| d == e.digest)
                };
            }
            clients.push(client);
        }
        // Still the ring every member answered for, still no hint here.
        let (_, now_fp, settled) = self.ae_ring();
        if now_fp != fp || !settled || !self.hints().is_empty() {
            return Ok(0);
        }
        let collect: Vec<(Bytes, u64)> = eligible
            .iter()
            .zip(&ok)
            .filter(|(_, ok)| **ok)
            .map(|(e, _)| (e.key.clone(), e.digest))
            .collect();
        if collect.is_empty() {
            return Ok(0);
        }
        for (m, client) in members.iter().zip(&clients) {
            if let Err(e) = client.forget(collect.clone()).await.map_err(rpc) {
                tracing::debug!(member = m, error = %e, "forget failed; the tombstones spread back");
            }
        }
        self.forget(collect).await
    }
}
