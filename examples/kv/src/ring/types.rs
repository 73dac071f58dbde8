//! What the ring speaks: quorums, membership, and the replies that say which replicas
//! answered.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ring::dvv::{Dot, VersionVector};

/// How many replicas must answer: a named level or an explicit count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quorum {
    /// One replica.
    One,
    /// A majority of N (N/2 + 1).
    Quorum,
    /// All N replicas.
    All,
    /// Exactly this many (at least 1, at most N).
    Count(u8),
}

impl Quorum {
    /// The number of replicas this level needs with replication factor `n`.
    pub fn count(self, n: usize) -> usize {
        match self {
            Quorum::One => 1,
            Quorum::Quorum => n / 2 + 1,
            Quorum::All => n,
            Quorum::Count(c) => (c as usize).clamp(1, n.max(1)),
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::One => write!(f, "one"),
            Quorum::Quorum => write!(f, "quorum"),
            Quorum::All => write!(f, "all"),
            Quorum::Count(c) => write!(f, "{c}"),
        }
    }
}

impl FromStr for Quorum {
    type Err = String;

    /// `one`, `quorum`, `all` or a count from 1 to 255.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "one" => Ok(Quorum::One),
            "quorum" => Ok(Quorum::Quorum),
            "all" => Ok(Quorum::All),
            _ => match s.parse::<u8>() {
                Ok(c) if c >= 1 => Ok(Quorum::Count(c)),
                _ => Err(format!(
                    "invalid quorum {s:?}: expected one, quorum, all or a count from 1 to 255"
                )),
            },
        }
    }
}

/// A member's state in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Joining: takes every write for the ranges it will own and pulls the data it will
    /// own from the other members; not asked by reads until it is `Up`.
    Joining,
    /// Owns ranges and serves.
    Up,
    /// Handing its ranges off; leaves the ring once done.
    Leaving,
    /// Gone for good (kept so the departure spreads by gossip).
    Left,
}

/// One member as the membership view knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its state.
    pub state: MemberState,
    /// Bumped by the member itself at every state change: the higher one wins a merge.
    pub epoch: u64,
}

/// The membership view a node gossips: who is in the ring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Members by name (advertised address).
    pub members: BTreeMap<String, Member>,
}

impl Membership {
    /// Merges `other` in (per member, the higher epoch wins; on a tie the later state).
    /// Returns whether anything changed.
    pub fn merge(&mut self, other: &Membership) -> bool {
        let mut changed = false;
        for (name, m) in &other.members {
            let take = match self.members.get(name) {
                None => true,
                Some(mine) => (m.epoch, m.state as u8) > (mine.epoch, mine.state as u8),
            };
            if take {
                self.members.insert(name.clone(), *m);
                changed = true;
            }
        }
        changed
    }

    /// The members that have not left (joining, up or leaving), sorted.
    pub fn owners(&self) -> Vec<String> {
        self.with(|s| s != MemberState::Left)
    }

    /// The members reads go to: up or leaving (a leaving member still has its data).
    pub fn readers(&self) -> Vec<String> {
        self.with(|s| matches!(s, MemberState::Up | MemberState::Leaving))
    }

    /// The members that will own ranges once joins and leaves finish: joining or up.
    pub fn future(&self) -> Vec<String> {
        self.with(|s| matches!(s, MemberState::Up | MemberState::Joining))
    }

    /// Whether no member is joining or leaving.
    pub fn settled(&self) -> bool {
        self.members
            .values()
            .all(|m| matches!(m.state, MemberState::Up | MemberState::Left))
    }

    fn with(&self, keep: impl Fn(MemberState) -> bool) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| keep(m.state))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// A version of the view: the sum of the epochs (grows with every change).
    pub fn version(&self) -> u64 {
        self.members.values().map(|m| m.epoch).sum()
    }
}

/// How one replica answered one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReply {
    /// The replica (for a hinted write: the node that holds the hint).
    pub node: String,
    /// For a hinted write: the preference-list node the hint is for.
    pub hint_for: Option<String>,
    /// Whether it answered in time with success.
    pub ok: bool,
    /// Microseconds until its answer (or until it was given up on).
    pub micros: u64,
    /// What went wrong, if it did not answer.
    pub error: Option<String>,
    /// For a read: whether its state was stale and read repair updated it.
    pub repaired: bool,
}

/// The answer to a ring read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingRead {
    /// The live values: one normally, several when concurrent writes are siblings, none
    /// when the key is absent or deleted.
    pub values: Vec<Bytes>,
    /// Hand this back with a put or delete to replace what was read.
    pub context: VersionVector,
    /// Siblings, tombstones included.
    pub siblings: usize,
    /// The replicas asked and how each answered.
    pub replicas: Vec<ReplicaReply>,
    /// Replies needed (R).
    pub needed: usize,
}

/// The answer to a ring write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingWrite {
    /// The write's identity.
    pub dot: Dot,
    /// The replicas written (and hint holders) and how each answered.
    pub replicas: Vec<ReplicaReply>,
    /// Acknowledgements needed (W).
    pub needed: usize,
}

/// Options of a ring put or delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingWriteOptions {
    /// What the writer read (from [`RingRead::context`]); the write replaces exactly
    /// that. Empty: a blind write, concurrent with everything stored.
    pub context: VersionVector,
    /// Acknowledgements to wait for (default: the cluster's W).
    pub w: Option<Quorum>,
}

/// The ring as a node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingView {
    /// The node answering.
    pub node: String,
    /// Membership version.
    pub version: u64,
    /// Each member: state, whether this node's failure detector sees it up, share of the
    /// key space (as first owner).
    pub members: Vec<MemberView>,
    /// Replication factor and default quorums.
    pub n: usize,
    /// Default write quorum.
    pub w: usize,
    /// Default read quorum.
    pub r: usize,
    /// Virtual nodes per member.
    pub tokens: u32,
    /// Hints this node holds, per target.
    pub hints: BTreeMap<String, u64>,
    /// This node's anti-entropy counters.
    pub anti_entropy: AntiEntropyStats,
}

/// A node's anti-entropy counters (since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AntiEntropyStats {
    /// Rounds started (rounds skipped because the ring is changing not counted).
    pub rounds: u64,
    /// Range comparisons with a peer (a round compares one range with each peer).
    pub ranges_compared: u64,
    /// Keys found different and exchanged (pulled, pushed or both).
    pub keys_exchanged: u64,
    /// Most keys exchanged in one round (at most the per-round budget).
    pub max_round_keys: u64,
    /// Tombstones removed from this node by GC.
    pub tombstones_collected: u64,
}

/// A replica's answer to a tombstone-GC probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcProbe {
    /// Hints it holds, for any target.
    pub hints: u64,
    /// Its digest of each key probed, in order (`None`: it holds no state for it).
    pub digests: Vec<Option<u64>>,
}

/// One member in a [`RingView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// Its name (address).
    pub node: String,
    /// Its membership state.
    pub state: MemberState,
    /// Whether the answering node's failure detector sees it up.
    pub reachable: bool,
    /// Fraction of the key space it owns first.
    pub share: f64,
}

/// Where a key lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Located {
    /// The key's position on the ring.
    pub position: u64,
    /// Its preference list (N nodes, first = first owner).
    pub preference: Vec<String>,
}
