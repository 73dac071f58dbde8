//! A history of client operations on a ring, and a checker that reads it together with
//! the replicas' final states and reports what went wrong, naming the operations.
//!
//! # What is recorded
//!
//! Every operation a test client sends ([`History`]): the client, the key, what it was
//! (a read; a put of a unique value; a delete), for a write the values and context of
//! the read it carried (*what it replaces*; none for a blind write), the logical times
//! of invocation and completion (one counter for the whole history, so `a.complete <
//! b.invoke` means `a` finished before `b` started, in real time), the outcome, and
//! what came back: a read's values and context, an acknowledged write's dot.
//!
//! Outcomes: `Ok`; `Failed` (the ring said no, e.g. no quorum; the write may still have
//! reached some replicas, the ring does not undo it); `Unknown` (a timeout or a broken
//! connection: it may or may not have run). For the checks, *acknowledged* means `Ok`;
//! a failed or unknown write may or may not have taken effect: it may explain why a
//! value is gone, but it is never required to be there.
//!
//! # The checks ([`check`])
//!
//! Values are unique, so a value names the put that wrote it. `F(k)` is the key's final
//! state: the merge of its replicas' states after healing.
//!
//! Write `w2` *read* value `v` if `v` was among the values of the read whose context
//! `w2` carried. A delete *covers* every value it read, and, transitively, every value
//! read by a put whose value it covers (`covered(D)`); this only follows what writers
//! actually saw, never version-vector arithmetic.
//!
//! - **(a) no acknowledged write lost.** An acknowledged put `w` of `v` is *accounted
//!   for* if `v` is in `F(k)`, or some write `w2` read `v` and `w2` is: a delete (any
//!   outcome: an unknown delete may have run, and tombstone GC may have removed every
//!   trace of it); an acknowledged put that is itself accounted for; or an
//!   unacknowledged put whose value was observed (in some read or replica) and that is
//!   itself accounted for. Every acknowledged put must be accounted for.
//!
//!   A lost write is also said to be *lost to version-vector ranges*
//!   ([`Report::lost_to_ranges`]) when some write of its key that took effect (as
//!   above) carried a context containing its dot without having read its value. A
//!   context is a version vector, `{node: counter}`, claiming every dot of `node` up to
//!   `counter`; the ring mints dots from one counter per node for all keys and
//!   replicates only the new sibling, so a writer that read a later write coordinated by
//!   the same node replaces an earlier one it never saw. That is a ring bug
//!   (`a_context_never_replaces_a_write_its_writer_did_not_read` in tests/ring_faults.rs,
//!   since fixed: a replica of the key coordinates each write and replicates its whole
//!   state); it is counted apart so that a run says which loss it saw.
//! - **(b) every value read was written**: each value of an `Ok` read was written by a
//!   put of the same key invoked before the read completed; each value in a final state
//!   was written by a put of that key.
//! - **(c) no deleted value comes back**: no value covered by an acknowledged delete is
//!   in `F(k)`. In particular, a key whose last acknowledged write is a delete `D` such
//!   that every put of the key (any outcome) was invoked before `D`'s read and is covered
//!   by `D` ("the delete read everything before it") reads as absent: its final values
//!   would be covered (or unwritten, which (b) reports). Such keys are counted in
//!   [`Report::deleted_last`].
//!
//!   A value back in the final state under a dot that the delete's context does not
//!   contain is a *second* write of the value: its put was applied twice, with two dots
//!   (counted in [`Report::reapplied`]; `a_forwarded_write_is_applied_once` in
//!   tests/ring_faults.rs shows how the ring once did that). So is a value held by two siblings of one read or replica
//!   ([`Report::twice`], not a violation by itself).
//! - **(d) replicas converge**: after healing, every replica of every key (its
//!   preference list) holds the same state.
//! - **(e) stale reads** (reported, not a violation: sloppy quorums allow them): an `Ok`
//!   read `r` that started after an acknowledged write `w` of its key completed, and
//!   that missed it: for a put, `r`'s context does not contain `w`'s dot (it saw neither
//!   `w` nor anything that replaced it) and no delete that covers `w`'s value was
//!   invoked before `r` completed (tombstone GC removes the causal history a context
//!   would show); for a delete, `r` returned a value the delete covers. Contexts are
//!   version vectors, which claim every earlier dot of a node: a read can look as if
//!   it saw a write it did not (see `a_context_never_replaces_a_write_its_writer_did_not_read`
//!   in tests/ring_faults.rs), so stale reads may be undercounted, never overcounted.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mw_kv::ring::dvv::{Dot, SiblingSet, VersionVector};
use mw_kv::ring::types::{RingRead, RingWrite};

/// What an operation was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A read.
    Read,
    /// A put of this (unique) value.
    Put(String),
    /// A delete.
    Delete,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not finished when the history was taken (counts as unknown).
    Pending,
    /// Acknowledged (a read: answered).
    Ok,
    /// The ring refused or could not reach a quorum; a write may still have landed.
    Failed(String),
    /// Timed out or disconnected: it may or may not have run.
    Unknown(String),
}

/// An operation that did not succeed, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// See [`Outcome::Failed`].
    Failed(String),
    /// See [`Outcome::Unknown`].
    Unknown(String),
}

/// One client operation.
#[derive(Debug, Clone)]
pub struct Op {
    /// Index in the history.
    pub id: usize,
    /// Who sent it.
    pub client: String,
    /// The key.
    pub key: String,
    /// Read, put or delete.
    pub what: What,
    /// A write: the values of the read whose context it carries (what it replaces).
    pub replaces: Vec<String>,
    /// A write: the logical invocation time of that read (`None`: a blind write).
    pub read_invoke: Option<u64>,
    /// A write: the context it carried. A read: the context it returned.
    pub context: VersionVector,
    /// A read: the values returned.
    pub values: Vec<String>,
    /// An acknowledged write: its dot.
    pub dot: Option<Dot>,
    /// Logical time of invocation.
    pub invoke: u64,
    /// Logical time of completion (`None`: pending).
    pub complete: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time since the history began, at invocation and at completion.
    pub started: Duration,
    /// Wall time since the history began at completion.
    pub ended: Option<Duration>,
}

impl Op {
    /// Whether it is a put or a delete.
    pub fn is_write(&self) -> bool {
        !matches!(self.what, What::Read)
    }

    /// Whether it succeeded.
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// The value it wrote (puts only).
    pub fn value(&self) -> Option<&str> {
        match &self.what {
            What::Put(v) => Some(v),
            _ => None,
        }
    }

    /// Completion time, or "never" for a pending operation.
    fn done(&self) -> u64 {
        self.complete.unwrap_or(u64::MAX)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {} ", self.id, self.client)?;
        match &self.what {
            What::Read => write!(f, "read {}", self.key)?,
            What::Put(v) => write!(f, "put {}={v}", self.key)?,
            What::Delete => write!(f, "delete {}", self.key)?,
        }
        if self.is_write() {
            if self.read_invoke.is_some() {
                write!(f, " replacing {:?} ctx {}", self.replaces, self.context)?;
            } else {
                write!(f, " (blind)")?;
            }
        }
        write!(
            f,
            " [t{}..{}, {:.3}s..",
            self.invoke,
            self.complete.map_or("?".into(), |c| c.to_string()),
            self.started.as_secs_f64()
        )?;
        match self.ended {
            Some(e) => write!(f, "{:.3}s]", e.as_secs_f64())?,
            None => write!(f, "?]")?,
        }
        match &self.outcome {
            Outcome::Ok => {
                write!(f, " ok")?;
                if let Some(d) = &self.dot {
                    write!(f, " dot {d}")?;
                }
                if matches!(self.what, What::Read) {
                    write!(f, " -> {:?} ctx {}", self.values, self.context)?;
                }
                Ok(())
            }
            Outcome::Failed(e) => write!(f, " FAILED ({e})"),
            Outcome::Unknown(e) => write!(f, " UNKNOWN ({e})"),
            Outcome::Pending => write!(f, " PENDING"),
        }
    }
}

/// Records operations from any number of concurrent clients. Cheap to clone.
#[derive(Debug, Clone)]
pub struct History {
    ops: Arc<Mutex<Vec<Op>>>,
    clock: Arc<AtomicU64>,
    epoch: Instant,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl History {
    /// An empty history; its wall clock starts now.
    pub fn new() -> History {
        History {
            ops: Arc::new(Mutex::new(Vec::new())),
            clock: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Op>> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self, client: &str, key: &str, what: What, read: Option<&Op>) -> usize {
        let mut ops = self.lock();
        let id = ops.len();
        // Tick under the lock, so ids and invocation times have the same order.
        let invoke = self.tick();
        let (replaces, read_invoke, context) = match read {
            Some(r) => (r.values.clone(), Some(r.invoke), r.context.clone()),
            None => (Vec::new(), None, VersionVector::default()),
        };
        ops.push(Op {
            id,
            client: client.to_string(),
            key: key.to_string(),
            what,
            replaces,
            read_invoke,
            context,
            values: Vec::new(),
            dot: None,
            invoke,
            complete: None,
            outcome: Outcome::Pending,
            started: self.epoch.elapsed(),
            ended: None,
        });
        id
    }

    /// Records the invocation of a read; returns its id for [`History::read_done`].
    pub fn read(&self, client: &str, key: &str) -> usize {
        self.begin(client, key, What::Read, None)
    }

    /// Records the invocation of a put of `value` (`None`: a delete) carrying the
    /// context of the read `after` (an `Ok` read of the same key), or blind.
    pub fn write(
        &self,
        client: &str,
        key: &str,
        value: Option<&str>,
        after: Option<usize>,
    ) -> usize {
        let read = after.map(|id| self.op(id));
        if let Some(r) = &read {
            assert!(r.ok() && r.key == key && r.what == What::Read, "{r}");
        }
        let what = match value {
            Some(v) => What::Put(v.to_string()),
            None => What::Delete,
        };
        self.begin(client, key, what, read.as_ref())
    }

    fn end(&self, id: usize, f: impl FnOnce(&mut Op)) {
        let ended = self.epoch.elapsed();
        let complete = self.tick();
        let mut ops = self.lock();
        let op = &mut ops[id];
        assert_eq!(op.outcome, Outcome::Pending, "{op} completed twice");
        op.complete = Some(complete);
        op.ended = Some(ended);
        f(op);
    }

    /// Records how the read `id` ended.
    pub fn read_done(&self, id: usize, r: Result<&RingRead, Fail>) {
        self.end(id, |op| match r {
            Ok(read) => {
                op.outcome = Outcome::Ok;
                op.values = read.values.iter().map(text).collect();
                op.values.sort();
                op.context = read.context.clone();
            }
            Err(Fail::Failed(e)) => op.outcome = Outcome::Failed(e),
            Err(Fail::Unknown(e)) => op.outcome = Outcome::Unknown(e),
        });
    }

    /// Records how the write `id` ended.
    pub fn write_done(&self, id: usize, r: Result<&RingWrite, Fail>) {
        self.end(id, |op| match r {
            Ok(w) => {
                op.outcome = Outcome::Ok;
                op.dot = Some(w.dot.clone());
            }
            Err(Fail::Failed(e)) => op.outcome = Outcome::Failed(e),
            Err(Fail::Unknown(e)) => op.outcome = Outcome::Unknown(e),
        });
    }

    /// One operation as recorded so far.
    pub fn op(&self, id: usize) -> Op {
        self.lock()[id].clone()
    }

    /// Every operation so far, in invocation order.
    pub fn ops(&self) -> Vec<Op> {
        self.lock().clone()
    }
}

/// The replicas' states after healing: for each key, `(node, state)` for every node of
/// its preference list.
#[derive(Debug, Clone, Default)]
pub struct FinalState {
    /// Key → replica states.
    pub keys: BTreeMap<String, Vec<(String, SiblingSet)>>,
}

impl FinalState {
    /// The merge of every replica's state of `key` (empty if unknown).
    pub fn merged(&self, key: &str) -> SiblingSet {
        let mut m = SiblingSet::default();
        for (_, s) in self.keys.get(key).into_iter().flatten() {
            m.merge(s.siblings.clone());
        }
        m
    }
}

fn describe(set: &SiblingSet) -> String {
    let parts: Vec<String> = set
        .siblings
        .iter()
        .map(|s| match &s.value {
            Some(v) => format!("{}={}", s.dot, text(v)),
            None => format!("{}=tombstone", s.dot),
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Counts of what the history holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Operations.
    pub ops: usize,
    /// Reads: ok, failed, unknown (pending included).
    pub reads: [usize; 3],
    /// Puts: acknowledged, failed, unknown.
    pub puts: [usize; 3],
    /// Deletes: acknowledged, failed, unknown.
    pub deletes: [usize; 3],
    /// Keys written.
    pub keys: usize,
    /// Keys with live values in the final state.
    pub live_keys: usize,
}

/// What [`check`] found. Each entry names the offending operations.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Counts of operations by kind and outcome.
    pub counts: Counts,
    /// (a) Acknowledged writes lost.
    pub lost: Vec<String>,
    /// (b) Values read (or found) that no put of that key wrote.
    pub unwritten: Vec<String>,
    /// (c) Values an acknowledged delete covers, back in a final state.
    pub resurrected: Vec<String>,
    /// (d) Keys whose replicas differ after healing.
    pub diverged: Vec<String>,
    /// (e) Stale reads (not violations).
    pub stale: Vec<String>,
    /// Keys whose last acknowledged write is a delete that read everything before it,
    /// checked to read as absent.
    pub deleted_last: usize,
    /// Acknowledged puts accounted for by a later write rather than by their own value.
    pub superseded: usize,
    /// Of [`Report::lost`]: writes replaced through a version-vector range (a write that
    /// took effect carried a context containing their dot without having read them).
    pub lost_to_ranges: usize,
    /// Of [`Report::resurrected`]: values back under a dot the delete never saw (their
    /// put was applied twice, with two dots).
    pub reapplied: usize,
    /// Reads and replica states holding one put's value in two siblings (a put applied
    /// twice); not a violation of (a)–(d) by itself.
    pub twice: Vec<String>,
    /// Keys of the violations of (a)–(d).
    pub keys: BTreeSet<String>,
}

impl Report {
    /// Violations of (a)–(d).
    pub fn violations(&self) -> usize {
        self.lost.len() + self.unwritten.len() + self.resurrected.len() + self.diverged.len()
    }

    /// One line of counts.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "{} ops: reads ok/failed/unknown {:?}, puts acked/failed/unknown {:?}, deletes \
             acked/failed/unknown {:?}; {} keys ({} live, {} deleted last); {} acked puts \
             superseded; violations: (a) lost {} ({} to version-vector ranges), (b) unwritten {}, \
             (c) resurrected {} ({} applied twice), (d) diverged {}; (e) stale reads {}; \
             values in two siblings {}",
            c.ops,
            c.reads,
            c.puts,
            c.deletes,
            c.keys,
            c.live_keys,
            self.deleted_last,
            self.superseded,
            self.lost.len(),
            self.lost_to_ranges,
            self.unwritten.len(),
            self.resurrected.len(),
            self.reapplied,
            self.diverged.len(),
            self.stale.len(),
            self.twice.len()
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary())?;
        for (name, list) in [
            ("(a) lost write", &self.lost),
            ("(b) unwritten value", &self.unwritten),
            ("(c) deleted value back", &self.resurrected),
            ("(d) replicas differ", &self.diverged),
            ("(e) stale read", &self.stale),
            ("value in two siblings", &self.twice),
        ] {
            for (i, v) in list.iter().enumerate() {
                if i == 20 {
                    writeln!(f, "{name}: ... {} more", list.len() - 20)?;
                    break;
                }
                writeln!(f, "{name}: {v}")?;
            }
        }
        Ok(())
    }
}

fn outcome_index(o: &Outcome) -> usize {
    match o {
        Outcome::Ok => 0,
        Outcome::Failed(_) => 1,
        Outcome::Unknown(_) | Outcome::Pending => 2,
    }
}

/// Checks `ops` against the final state. See the module documentation for the
/// definitions.
pub fn check(ops: &[Op], fin: &FinalState) -> Report {
    let mut report = Report::default();
    count_ops(ops, &mut report.counts);
    let ix = Indexes::new(ops, fin);
    report.counts.live_keys = ix
        .merged
        .values()
        .filter(|s| !s.values().is_empty())
        .count();
    check_lost(&ix, &mut report);
    check_unwritten(&ix, &mut report);
    check_twice(&ix, &mut report);
    check_resurrected(&ix, &mut report);
    count_deleted_last(&ix, &mut report);
    check_diverged(&ix, &mut report);
    check_stale(&ix, &mut report);
    report
}

/// Counts the operations by kind and outcome, and the keys written.
fn count_ops(ops: &[Op], c: &mut Counts) {
    c.ops = ops.len();
    for op in ops {
        let i = outcome_index(&op.outcome);
        match op.what {
            What::Read => c.reads[i] += 1,
            What::Put(_) => c.puts[i] += 1,
            What::Delete => c.deletes[i] += 1,
        }
    }
    c.keys = written_keys(ops).len();
}

/// The keys some put or delete wrote.
fn written_keys(ops: &[Op]) -> BTreeSet<&str> {
    ops.iter()
        .filter(|o| o.is_write())
        .map(|o| o.key.as_str())
        .collect()
}

/// What the checks look values up in, built once from the history and the final state.
struct Indexes<'a> {
    ops: &'a [Op],
    fin: &'a FinalState,
    /// Key → the merge of its replicas' final states.
    merged: HashMap<&'a str, SiblingSet>,
    empty: SiblingSet,
    /// Value → the put that wrote it.
    put_of: HashMap<&'a str, &'a Op>,
    /// Who read each value (writers only): value → writes that replaced it.
    readers: HashMap<&'a str, Vec<&'a Op>>,
    /// Values observed anywhere: in Ok reads, and on any replica at the end.
    observed: HashSet<String>,
    /// Delete id → the values it covers.
    covers: HashMap<usize, BTreeSet<String>>,
}

impl<'a> Indexes<'a> {
    fn new(ops: &'a [Op], fin: &'a FinalState) -> Indexes<'a> {
        let merged = fin
            .keys
            .keys()
            .map(|k| (k.as_str(), fin.merged(k)))
            .collect();
        let put_of: HashMap<&str, &Op> = ops
            .iter()
            .filter_map(|o| o.value().map(|v| (v, o)))
            .collect();
        let mut readers: HashMap<&str, Vec<&Op>> = HashMap::new();
        for o in ops.iter().filter(|o| o.is_write()) {
            for v in &o.replaces {
                readers.entry(v.as_str()).or_default().push(o);
            }
        }
        let mut observed: HashSet<String> = ops
            .iter()
            .filter(|o| o.ok())
            .flat_map(|o| o.values.iter().cloned())
            .collect();
        for states in fin.keys.values() {
            for (_, s) in states {
                observed.extend(s.values().iter().map(text));
            }
        }
        let covers = ops
            .iter()
            .filter(|o| o.what == What::Delete)
            .map(|d| (d.id, covered(d, &put_of)))
            .collect();
        Indexes {
            ops,
            fin,
            merged,
            empty: SiblingSet::default(),
            put_of,
            readers,
            observed,
            covers,
        }
    }

    /// The merged final state of `k` (empty if no replica has it).
    fn final_of(&self, k: &str) -> &SiblingSet {
        self.merged.get(k).unwrap_or(&self.empty)
    }

    /// The values in the merged final state of `k`.
    fn final_values(&self, k: &str) -> BTreeSet<String> {
        self.final_of(k).values().iter().map(text).collect()
    }

    /// The Ok reads.
    fn reads(&self) -> impl Iterator<Item = &'a Op> {
        self.ops.iter().filter(|o| o.ok() && o.what == What::Read)
    }
}

/// (a) Every acknowledged put is accounted for.
fn check_lost(ix: &Indexes<'_>, report: &mut Report) {
    let final_values = |k: &str| ix.final_values(k);
    let mut memo: HashMap<usize, bool> = HashMap::new();
    for w in ix.ops.iter().filter(|o| o.ok() && o.value().is_some()) {
        if final_values(&w.key).contains(w.value().unwrap()) {
            continue;
        }
        if accounted(w, &final_values, &ix.readers, &ix.observed, &mut memo) {
            report.superseded += 1;
        } else {
            report_lost(ix, w, report);
        }
    }
}

/// Reports acknowledged put `w` lost, with who read it and whose context claimed its dot.
fn report_lost(ix: &Indexes<'_>, w: &Op, report: &mut Report) {
    let by: Vec<String> = ix
        .readers
        .get(w.value().unwrap())
        .into_iter()
        .flatten()
        .map(|r| format!("\n      read by {r}"))
        .collect();
    // Writes that took effect and carried a context containing w's dot though
    // they never read w's value: version-vector ranges (see the module docs).
    let v = w.value().unwrap();
    let d = w.dot.as_ref().expect("acknowledged writes have dots");
    let claimed: Vec<String> = ix
        .ops
        .iter()
        .filter(|o| o.is_write() && o.key == w.key && o.id != w.id)
        .filter(|o| o.context.contains(d) && !o.replaces.iter().any(|r| r == v))
        .filter(|o| match o.value() {
            Some(v2) => o.ok() || ix.observed.contains(v2),
            None => true,
        })
        .map(|o| format!("\n      its dot is in the context of {o}"))
        .collect();
    if !claimed.is_empty() {
        report.lost_to_ranges += 1;
    }
    report.keys.insert(w.key.clone());
    report.lost.push(format!(
        "{w}\n      final state of {}: {}{}{}",
        w.key,
        describe(ix.final_of(&w.key)),
        if by.is_empty() {
            "\n      no write read it".to_string()
        } else {
            by.concat()
        },
        claimed.concat()
    ));
}

/// (b) Every value read was written (by a put of that key, invoked before the read
/// completed); every final value too.
fn check_unwritten(ix: &Indexes<'_>, report: &mut Report) {
    for r in ix.reads() {
        for v in &r.values {
            match ix.put_of.get(v.as_str()) {
                Some(w) if w.key == r.key && w.invoke < r.done() => continue,
                Some(w) => report
                    .unwritten
                    .push(format!("{r}\n      {v} was written by {w}")),
                None => report
                    .unwritten
                    .push(format!("{r}\n      no put wrote {v}")),
            }
            report.keys.insert(r.key.clone());
        }
    }
    for (k, states) in &ix.fin.keys {
        for (node, s) in states {
            for v in s.values().iter().map(text) {
                match ix.put_of.get(v.as_str()) {
                    Some(w) if &w.key == k => continue,
                    Some(w) => report.unwritten.push(format!(
                        "final state of {k} on {node}: {v} was written by {w}"
                    )),
                    None => report.unwritten.push(format!(
                        "final state of {k} on {node}: {}; no put wrote {v}",
                        describe(s)
                    )),
                }
                report.keys.insert(k.clone());
            }
        }
    }
}

/// One put's value in two siblings: in a read, or on a replica.
fn check_twice(ix: &Indexes<'_>, report: &mut Report) {
    for r in ix.reads() {
        let mut seen = BTreeSet::new();
        for v in r.values.iter().filter(|v| !seen.insert(v.as_str())) {
            report.twice.push(format!("{r}\n      {v} twice"));
        }
    }
    for (k, states) in &ix.fin.keys {
        for (node, s) in states {
            let values: Vec<String> = s.values().iter().map(text).collect();
            let mut seen = BTreeSet::new();
            for v in values.iter().filter(|v| !seen.insert(v.as_str())) {
                report.twice.push(format!(
                    "final state of {k} on {node}: {}; {v} twice",
                    describe(s)
                ));
            }
        }
    }
}

/// (c) No value an acknowledged delete covers is in the final state.
fn check_resurrected(ix: &Indexes<'_>, report: &mut Report) {
    for d in ix.ops.iter().filter(|o| o.ok() && o.what == What::Delete) {
        let back: Vec<String> = ix
            .final_values(&d.key)
            .intersection(&ix.covers[&d.id])
            .cloned()
            .collect();
        if back.is_empty() {
            continue;
        }
        let puts: Vec<String> = back
            .iter()
            .filter_map(|v| ix.put_of.get(v.as_str()))
            .map(|w| format!("\n      {w}"))
            .collect();
        // The delete's context holds the dot of each value it covers as it was
        // read; a surviving sibling with another dot is a second write of the value.
        let twice = ix
            .final_of(&d.key)
            .siblings
            .iter()
            .filter(|s| s.value.as_ref().is_some_and(|v| back.contains(&text(v))))
            .all(|s| !d.context.contains(&s.dot));
        if twice {
            report.reapplied += 1;
        }
        report.keys.insert(d.key.clone());
        report.resurrected.push(format!(
            "{d}\n      covers {back:?}, but the final state of {} is {}{}; written by:{}",
            d.key,
            describe(ix.final_of(&d.key)),
            if twice {
                " (the delete's context does not contain that dot: the put was applied \
                 twice)"
            } else {
                ""
            },
            puts.concat()
        ));
    }
}

/// Keys deleted last by a delete that read everything: absent (counted; a value would
/// be reported by (c), or under (b)).
fn count_deleted_last(ix: &Indexes<'_>, report: &mut Report) {
    for k in &written_keys(ix.ops) {
        let last = ix
            .ops
            .iter()
            .filter(|o| &o.key == k && o.is_write() && o.ok())
            .max_by_key(|o| o.done());
        let Some(d) = last.filter(|d| d.what == What::Delete) else {
            continue;
        };
        let Some(read_at) = d.read_invoke else {
            continue;
        };
        let everything = ix
            .ops
            .iter()
            .filter(|o| &o.key == k)
            .filter_map(|o| o.value().map(|v| (o, v)))
            .all(|(o, v)| o.invoke < read_at && ix.covers[&d.id].contains(v));
        if everything && ix.final_values(k).is_empty() {
            report.deleted_last += 1;
        }
    }
}

/// (d) Replicas agree.
fn check_diverged(ix: &Indexes<'_>, report: &mut Report) {
    for (k, states) in &ix.fin.keys {
        if states.windows(2).any(|p| p[0].1 != p[1].1) {
            let parts: Vec<String> = states
                .iter()
                .map(|(n, s)| format!("\n      {n}: {}", describe(s)))
                .collect();
            report.keys.insert(k.clone());
            report.diverged.push(format!("{k}:{}", parts.concat()));
        }
    }
}

/// (e) Stale reads: a read that misses an acknowledged write completed before it began.
fn check_stale(ix: &Indexes<'_>, report: &mut Report) {
    let mut by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for o in ix.ops.iter().filter(|o| o.ok() && o.is_write()) {
        by_key.entry(o.key.as_str()).or_default().push(o);
    }
    let mut deletes_by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for d in ix.ops.iter().filter(|o| o.what == What::Delete) {
        deletes_by_key.entry(d.key.as_str()).or_default().push(d);
    }
    for r in ix.reads() {
        let mut missed = Vec::new();
        for w in by_key.get(r.key.as_str()).into_iter().flatten() {
            if w.done() >= r.invoke {
                continue;
            }
            let stale = match w.value() {
                Some(v) => {
                    !r.context
                        .contains(w.dot.as_ref().expect("acked writes have dots"))
                        && !deletes_by_key
                            .get(r.key.as_str())
                            .into_iter()
                            .flatten()
                            .any(|d| d.invoke < r.done() && ix.covers[&d.id].contains(v))
                }
                None => r.values.iter().any(|v| ix.covers[&w.id].contains(v)),
            };
            if stale {
                missed.push(format!("\n      missed {w}"));
            }
        }
        if !missed.is_empty() {
            report.stale.push(format!("{r}{}", missed.concat()));
        }
    }
}

/// Every operation on `key`, one a line, and each replica's final state: what to read
/// when a check fails.
pub fn dump(ops: &[Op], fin: &FinalState, key: &str) -> String {
    let mut out = format!("history of {key}:\n");
    for o in ops.iter().filter(|o| o.key == key) {
        out.push_str(&format!("  {o}\n"));
    }
    for (node, s) in fin.keys.get(key).into_iter().flatten() {
        out.push_str(&format!("  final on {node}: {}\n", describe(s)));
    }
    out
}

/// Whether the acknowledged or observed put `w` is accounted for (module docs, (a)).
fn accounted(
    w: &Op,
    final_values: &dyn Fn(&str) -> BTreeSet<String>,
    readers: &HashMap<&str, Vec<&Op>>,
    observed: &HashSet<String>,
    memo: &mut HashMap<usize, bool>,
) -> bool {
    if let Some(&known) = memo.get(&w.id) {
        return known;
    }
    // Reads only ever see earlier writes, so the graph has no cycle; guard anyway.
    memo.insert(w.id, false);
    let v = w.value().expect("a put");
    let mut ok = final_values(&w.key).contains(v);
    for w2 in readers.get(v).into_iter().flatten() {
        if ok {
            break;
        }
        ok = match &w2.what {
            What::Delete => true,
            What::Put(v2) => {
                (w2.ok() || observed.contains(v2))
                    && accounted(w2, final_values, readers, observed, memo)
            }
            What::Read => false,
        };
    }
    memo.insert(w.id, ok);
    ok
}

/// The values delete `d` covers: those it read, and those read by puts whose values it
/// covers.
fn covered(d: &Op, put_of: &HashMap<&str, &Op>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<String> = d.replaces.clone();
    while let Some(v) = todo.pop() {
        if !out.insert(v.clone()) {
            continue;
        }
        if let Some(w) = put_of.get(v.as_str()) {
            if w.key == d.key {
                todo.extend(w.replaces.iter().cloned());
            }
        }
    }
    out
}

/// The checker on hand-made histories: each rule fires when it should and only then.
#[cfg(test)]
mod tests {
    use super::*;

    fn dot(n: u64) -> Dot {
        Dot {
            node: "n".into(),
            counter: n,
        }
    }

    fn vv(dots: &[u64]) -> VersionVector {
        let mut v = VersionVector::default();
        for d in dots {
            v.insert(&dot(*d));
        }
        v
    }

    fn read(values: &[&str], ctx: &[u64]) -> RingRead {
        RingRead {
            values: values.iter().map(|v| Bytes::from(v.to_string())).collect(),
            context: vv(ctx),
            siblings: values.len(),
            replicas: Vec::new(),
            needed: 1,
        }
    }

    fn write(d: u64) -> RingWrite {
        RingWrite {
            dot: dot(d),
            replicas: Vec::new(),
            needed: 1,
        }
    }

    fn state(siblings: &[(u64, Option<&str>, &[u64])]) -> SiblingSet {
        let mut s = SiblingSet::default();
        s.merge(
            siblings
                .iter()
                .map(|(d, v, ctx)| mw_kv::ring::dvv::Sibling {
                    dot: dot(*d),
                    context: vv(ctx),
                    value: v.map(|v| Bytes::from(v.to_string())),
                }),
        );
        s
    }

    fn fin(k: &str, s: SiblingSet) -> FinalState {
        let mut f = FinalState::default();
        f.keys
            .insert(k.into(), vec![("r1".into(), s.clone()), ("r2".into(), s)]);
        f
    }

    /// put a (dot 1) acked; read [a]; put b (dot 2) with that context, with `b_outcome`.
    fn replaced(b_ok: bool) -> History {
        let h = History::new();
        let a = h.write("c", "k", Some("a"), None);
        h.write_done(a, Ok(&write(1)));
        let r = h.read("c", "k");
        h.read_done(r, Ok(&read(&["a"], &[1])));
        let b = h.write("c", "k", Some("b"), Some(r));
        if b_ok {
            h.write_done(b, Ok(&write(2)));
        } else {
            h.write_done(b, Err(Fail::Unknown("timeout".into())));
        }
        h
    }

    #[test]
    fn a_write_replaced_by_one_that_read_it_is_not_lost() {
        let h = replaced(true);
        let r = check(&h.ops(), &fin("k", state(&[(2, Some("b"), &[1])])));
        assert_eq!(r.violations(), 0, "{r}");
        assert_eq!(r.superseded, 1);
    }

    #[test]
    fn a_write_gone_with_no_reader_is_lost() {
        let h = History::new();
        let a = h.write("c", "k", Some("a"), None);
        h.write_done(a, Ok(&write(1)));
        let b = h.write("c", "k", Some("b"), None);
        h.write_done(b, Ok(&write(2)));
        // Only b survives, though nobody read a (what a version-vector gap does).
        let r = check(&h.ops(), &fin("k", state(&[(2, Some("b"), &[1])])));
        assert_eq!(r.lost.len(), 1, "{r}");
        assert!(r.lost[0].contains("put k=a"), "{r}");
        assert_eq!(r.lost_to_ranges, 0, "no write carried a's dot: {r}");
        // A writer reads only b; its context {n: 2} also claims a's dot 1.
        let rd = h.read("c", "k");
        h.read_done(rd, Ok(&read(&["b"], &[2])));
        let c = h.write("c", "k", Some("c"), Some(rd));
        h.write_done(c, Ok(&write(3)));
        let r = check(&h.ops(), &fin("k", state(&[(3, Some("c"), &[2])])));
        assert_eq!(r.lost.len(), 1, "{r}");
        assert_eq!(r.lost_to_ranges, 1, "{r}");
        assert_eq!(r.superseded, 1, "b was read and replaced: {r}");
    }

    #[test]
    fn an_unacknowledged_replacement_counts_only_if_it_was_seen() {
        // b unknown, nowhere to be seen, a gone: lost.
        let h = replaced(false);
        let r = check(&h.ops(), &fin("k", SiblingSet::default()));
        assert_eq!(r.lost.len(), 1, "{r}");
        // b unknown but in the final state: it took effect and replaced a.
        let r = check(&h.ops(), &fin("k", state(&[(2, Some("b"), &[1])])));
        assert_eq!(r.violations(), 0, "{r}");
    }

    #[test]
    fn a_deleted_value_back_is_reported_and_a_deleted_key_is_absent() {
        let h = History::new();
        let a = h.write("c", "k", Some("a"), None);
        h.write_done(a, Ok(&write(1)));
        let r = h.read("c", "k");
        h.read_done(r, Ok(&read(&["a"], &[1])));
        let d = h.write("c", "k", None, Some(r));
        h.write_done(d, Ok(&write(2)));
        let gone = check(&h.ops(), &fin("k", state(&[(2, None, &[1])])));
        assert_eq!(gone.violations(), 0, "{gone}");
        assert_eq!(gone.deleted_last, 1, "{gone}");
        // Tombstone collected: still fine.
        let collected = check(&h.ops(), &fin("k", SiblingSet::default()));
        assert_eq!(collected.violations(), 0, "{collected}");
        let back = check(&h.ops(), &fin("k", state(&[(1, Some("a"), &[])])));
        assert_eq!(back.resurrected.len(), 1, "{back}");
        assert_eq!(back.lost.len(), 0, "{back}");
        assert_eq!(back.reapplied, 0, "the very write the delete read: {back}");
        // The value under a dot the delete never saw: a second write of it.
        let again = check(
            &h.ops(),
            &fin("k", state(&[(2, None, &[1]), (5, Some("a"), &[])])),
        );
        assert_eq!(again.resurrected.len(), 1, "{again}");
        assert_eq!(again.reapplied, 1, "{again}");
        assert_eq!(
            again.violations(),
            1,
            "a value back is a violation: {again}"
        );
        // Twice in one state.
        let twice = check(
            &h.ops(),
            &fin("k", state(&[(5, Some("a"), &[]), (6, Some("a"), &[])])),
        );
        assert_eq!(twice.twice.len(), 2, "one per replica: {twice}");
    }

    #[test]
    fn unwritten_values_and_diverged_replicas_are_reported() {
        let h = History::new();
        let r = h.read("c", "k");
        h.read_done(r, Ok(&read(&["ghost"], &[7])));
        let mut f = fin("k", state(&[(7, Some("ghost"), &[])]));
        f.keys.get_mut("k").unwrap()[1].1 = SiblingSet::default();
        let rep = check(&h.ops(), &f);
        // The read, and the one replica holding it.
        assert_eq!(rep.unwritten.len(), 2, "{rep}");
        assert_eq!(rep.diverged.len(), 1, "{rep}");
        // A value read before its put was even invoked.
        let h = History::new();
        let r = h.read("c", "k");
        h.read_done(r, Ok(&read(&["early"], &[1])));
        let w = h.write("c", "k", Some("early"), None);
        h.write_done(w, Ok(&write(1)));
        let rep = check(&h.ops(), &fin("k", state(&[(1, Some("early"), &[])])));
        assert_eq!(rep.unwritten.len(), 1, "{rep}");
    }

    #[test]
    fn stale_reads_are_those_that_missed_an_earlier_acknowledged_write() {
        let h = History::new();
        let a = h.write("c", "k", Some("a"), None);
        h.write_done(a, Ok(&write(1)));
        // Concurrent with nothing, after a: misses it.
        let r1 = h.read("c", "k");
        h.read_done(r1, Ok(&read(&[], &[])));
        // Sees it.
        let r2 = h.read("c", "k");
        h.read_done(r2, Ok(&read(&["a"], &[1])));
        // Delete a, then a read that still returns a is stale; one with nothing is not
        // (even with an empty context: the tombstone may have been collected).
        let d = h.write("c", "k", None, Some(r2));
        h.write_done(d, Ok(&write(2)));
        let r3 = h.read("c", "k");
        h.read_done(r3, Ok(&read(&["a"], &[1])));
        let r4 = h.read("c", "k");
        h.read_done(r4, Ok(&read(&[], &[])));
        // A read concurrent with a write may miss it.
        let w = h.write("c", "k", Some("b"), None);
        let r5 = h.read("c", "k");
        h.read_done(r5, Ok(&read(&[], &[])));
        h.write_done(w, Ok(&write(3)));
        let rep = check(&h.ops(), &fin("k", state(&[(3, Some("b"), &[])])));
        assert_eq!(rep.violations(), 0, "{rep}");
        assert_eq!(rep.stale.len(), 2, "{rep}");
        assert!(rep.stale[0].starts_with(&format!("#{r1} ")), "{rep}");
        assert!(rep.stale[1].starts_with(&format!("#{r3} ")), "{rep}");
    }
}
