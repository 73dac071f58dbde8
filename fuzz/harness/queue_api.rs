//! The embedded mw-queue API driven with arbitrary numeric options.
//!
//! The input is a [`Config`] (visibility timeout, dedup window, max length, max attempts,
//! segment size, ready head, ...) followed by operations: sends with any TTL / delay / id,
//! batches, receives, ack / nack (any delay) / reject / extend-visibility (any duration),
//! settling made-up tags, clock advances, redrive, and close-and-reopen. Any duration can
//! be 0, huge, `u64::MAX` ms (what a remote client can ask for) or `Duration::MAX`.
//!
//! The format is a plain byte code, so seeds and regressions can be written by hand
//! ([`Enc`]); missing bytes read as zeros. Settings: `visibility: dur`, `dedup: dur`,
//! `max_len: opt u64`, `max_attempts: u8 (0 = none)`, `dead_letters: u8 (bit 0)`,
//! `segment_size: u16 (x16 bytes)`, `ready_head: u8`, `max_message_size: u16 (0 =
//! default)`, `body_cache: u16`, `max_pending: u8`. Then operations, opcode `% 12`:
//! see [`Op`]. `dur` is a tag `% 6` (zero, small u8, u32 ms, u64 ms, `u64::MAX` ms,
//! `Duration::MAX`) with its payload; `opt dur` is 0 for none or the tag plus one.
//! Integers are big-endian.
//!
//! Checked: no panic, no hang; errors are typed; a reopen keeps every queue's messages.

use std::collections::VecDeque;
use std::time::Duration;

use mw_queue::{
    Clock, Config, Consumer, ConsumerOptions, Delivery, DeliveryTag, FsyncPolicy, Message,
    QueueManager,
};

use crate::common::{block_on, Cursor, T0_MS};

/// A duration as a remote client could send it, plus the embedded API's extreme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dur {
    /// Zero.
    Zero,
    /// A few milliseconds.
    Small(u8),
    /// Up to about 49 days.
    Ms(u32),
    /// Any number of milliseconds (the wire's `u64`).
    AnyMs(u64),
    /// `u64::MAX` milliseconds.
    MaxMs,
    /// `Duration::MAX`.
    Max,
}

impl Dur {
    /// The duration.
    pub fn get(self) -> Duration {
        match self {
            Dur::Zero => Duration::ZERO,
            Dur::Small(n) => Duration::from_millis(u64::from(n)),
            Dur::Ms(n) => Duration::from_millis(u64::from(n)),
            Dur::AnyMs(n) => Duration::from_millis(n),
            Dur::MaxMs => Duration::from_millis(u64::MAX),
            Dur::Max => Duration::MAX,
        }
    }

    fn read_tagged(tag: u8, c: &mut Cursor<'_>) -> Dur {
        match tag % 6 {
            0 => Dur::Zero,
            1 => Dur::Small(c.u8()),
            2 => Dur::Ms(c.u32()),
            3 => Dur::AnyMs(c.u64()),
            4 => Dur::MaxMs,
            _ => Dur::Max,
        }
    }

    fn read(c: &mut Cursor<'_>) -> Dur {
        let tag = c.u8();
        Dur::read_tagged(tag, c)
    }

    fn read_opt(c: &mut Cursor<'_>) -> Option<Dur> {
        match c.u8() {
            0 => None,
            t => Some(Dur::read_tagged(t - 1, c)),
        }
    }
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Producer-chosen id.
    pub id: Option<u8>,
    /// Time to live.
    pub ttl: Option<Dur>,
    /// Delivery delay.
    pub delay: Option<Dur>,
    /// Body length.
    pub body_len: u8,
}

impl Msg {
    /// A plain message with a 4-byte body.
    pub fn plain() -> Msg {
        Msg {
            id: None,
            ttl: None,
            delay: None,
            body_len: 4,
        }
    }

    fn read(c: &mut Cursor<'_>) -> Msg {
        let id = match c.u8() {
            0 => None,
            n => Some(n),
        };
        Msg {
            id,
            ttl: Dur::read_opt(c),
            delay: Dur::read_opt(c),
            body_len: c.u8(),
        }
    }

    fn message(&self) -> Message {
        let mut msg = Message::new(vec![0xab; usize::from(self.body_len)]);
        if let Some(id) = self.id {
            msg = msg.with_id(u128::from(id));
        }
        if let Some(t) = self.ttl {
            msg = msg.with_ttl(t.get());
        }
        if let Some(d) = self.delay {
            msg = msg.with_delay(d.get());
        }
        msg
    }
}

/// One operation (its opcode is its position, 0 to 11). Queues are picked by `q % 3`
/// from `q`, `q.dlq`, `other`; held deliveries by `i % held`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// 0: send.
    Send(u8, Msg),
    /// 1: send a batch (up to 15 messages).
    SendBatch(u8, Vec<Msg>),
    /// 2: receive one delivery if one is ready (a new consumer if `visibility` is set
    /// or the queue has none yet).
    Recv(u8, u16, Option<Dur>),
    /// 3: ack a held delivery.
    Ack(u8),
    /// 4: nack a held delivery.
    Nack(u8, Option<Dur>),
    /// 5: reject a held delivery.
    Reject(u8),
    /// 6: extend a held delivery's visibility.
    Extend(u8, Dur),
    /// 7: settle a made-up tag (`how % 4`: ack, nack, reject, extend).
    Tag(u8, u64, u32, u8, Dur),
    /// 8: move the manual clock by this many ms.
    Advance(u32),
    /// 9: redrive a queue's dead letters.
    Redrive(u8),
    /// 10: drop every consumer and held delivery.
    DropHandles,
    /// 11: close the manager and open the directory again.
    Reopen,
}

impl Op {
    fn read(c: &mut Cursor<'_>) -> Op {
        match c.u8() % 12 {
            0 => Op::Send(c.u8(), Msg::read(c)),
            1 => {
                let q = c.u8();
                let n = c.u8() % 16;
                Op::SendBatch(q, (0..n).map(|_| Msg::read(c)).collect())
            }
            2 => Op::Recv(c.u8(), c.u16(), Dur::read_opt(c)),
            3 => Op::Ack(c.u8()),
            4 => Op::Nack(c.u8(), Dur::read_opt(c)),
            5 => Op::Reject(c.u8()),
            6 => Op::Extend(c.u8(), Dur::read(c)),
            7 => Op::Tag(c.u8(), c.u64(), c.u32(), c.u8(), Dur::read(c)),
            8 => Op::Advance(c.u32()),
            9 => Op::Redrive(c.u8()),
            10 => Op::DropHandles,
            _ => Op::Reopen,
        }
    }
}

/// Writes inputs in this harness's byte code, for seeds and regressions.
#[derive(Debug, Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    /// Default-ish settings: 30 s visibility, 5 min dedup, no length limit, 5 attempts,
    /// dead letters on, 4 KiB segments, ready head 4.
    pub fn settings() -> Enc {
        let mut e = Enc::default();
        e.dur(Dur::Ms(30_000));
        e.dur(Dur::Ms(300_000));
        e.0.push(0); // no max_len
        e.0.extend_from_slice(&[5, 1]); // max_attempts, dead letters
        e.0.extend_from_slice(&256u16.to_be_bytes()); // segment 4 KiB
        e.0.push(4); // ready head
        e.0.extend_from_slice(&0u16.to_be_bytes()); // max message size: default
        e.0.extend_from_slice(&1024u16.to_be_bytes()); // body cache
        e.0.push(64); // max pending
        e
    }

    /// Appends a duration.
    pub fn dur(&mut self, d: Dur) -> &mut Enc {
        match d {
            Dur::Zero => self.0.push(0),
            Dur::Small(n) => self.0.extend_from_slice(&[1, n]),
            Dur::Ms(n) => {
                self.0.push(2);
                self.0.extend_from_slice(&n.to_be_bytes());
            }
            Dur::AnyMs(n) => {
                self.0.push(3);
                self.0.extend_from_slice(&n.to_be_bytes());
            }
            Dur::MaxMs => self.0.push(4),
            Dur::Max => self.0.push(5),
        }
        self
    }

    fn opt_dur(&mut self, d: Option<Dur>) {
        match d {
            None => self.0.push(0),
            Some(d) => {
                let at = self.0.len();
                self.dur(d);
                self.0[at] += 1;
            }
        }
    }

    fn msg(&mut self, m: &Msg) {
        self.0.push(m.id.unwrap_or(0));
        self.opt_dur(m.ttl);
        self.opt_dur(m.delay);
        self.0.push(m.body_len);
    }

    /// Appends an operation.
    pub fn op(&mut self, op: &Op) -> &mut Enc {
        match op {
            Op::Send(q, m) => {
                self.0.extend_from_slice(&[0, *q]);
                self.msg(m);
            }
            Op::SendBatch(q, ms) => {
                self.0.extend_from_slice(&[1, *q, ms.len() as u8]);
                for m in ms {
                    self.msg(m);
                }
            }
            Op::Recv(q, prefetch, vis) => {
                self.0.extend_from_slice(&[2, *q]);
                self.0.extend_from_slice(&prefetch.to_be_bytes());
                self.opt_dur(*vis);
            }
            Op::Ack(i) => self.0.extend_from_slice(&[3, *i]),
            Op::Nack(i, d) => {
                self.0.extend_from_slice(&[4, *i]);
                self.opt_dur(*d);
            }
            Op::Reject(i) => self.0.extend_from_slice(&[5, *i]),
            Op::Extend(i, d) => {
                self.0.extend_from_slice(&[6, *i]);
                self.dur(*d);
            }
            Op::Tag(q, lsn, delivery, how, d) => {
                self.0.extend_from_slice(&[7, *q]);
                self.0.extend_from_slice(&lsn.to_be_bytes());
                self.0.extend_from_slice(&delivery.to_be_bytes());
                self.0.push(*how);
                self.dur(*d);
            }
            Op::Advance(ms) => {
                self.0.push(8);
                self.0.extend_from_slice(&ms.to_be_bytes());
            }
            Op::Redrive(q) => self.0.extend_from_slice(&[9, *q]),
            Op::DropHandles => self.0.push(10),
            Op::Reopen => self.0.push(11),
        }
        self
    }
}

const QUEUES: [&str; 3] = ["q", "q.dlq", "other"];

fn queue_name(q: u8) -> &'static str {
    QUEUES[usize::from(q) % QUEUES.len()]
}

fn read_config(c: &mut Cursor<'_>, clock: &Clock) -> Config {
    let visibility = Dur::read(c).get();
    let dedup = Dur::read(c).get();
    let max_queue_len = match c.u8() {
        0 => None,
        _ => Some(c.u64()),
    };
    let max_attempts = match c.u8() {
        0 => None,
        n => Some(u32::from(n)),
    };
    let dead_letters = c.u8() & 1 != 0;
    let segment_size = u64::from(c.u16()) * 16;
    let ready_head = usize::from(c.u8());
    let max_message_size = match c.u16() {
        0 => Config::default().max_message_size,
        n => usize::from(n),
    };
    Config {
        fsync: FsyncPolicy::Never,
        segment_size,
        visibility_timeout: visibility,
        max_attempts,
        dead_letter_suffix: dead_letters.then(|| ".dlq".to_string()),
        dedup_window: dedup,
        max_queue_len,
        max_message_size,
        body_cache_bytes: usize::from(c.u16()),
        max_pending_sends: usize::from(c.u8()).max(1),
        ready_head,
        clock: clock.clone(),
    }
}

/// Waits briefly for a delivery that the stats say is ready; `None` if none comes.
async fn recv_ready(qm: &QueueManager, c: &mut Consumer) -> Option<Delivery> {
    let stats = qm.stats(c.queue());
    if stats.depth.saturating_sub(stats.delayed) == 0 {
        return None;
    }
    // Expired messages count as ready until discarded: bound the wait.
    match tokio::time::timeout(Duration::from_millis(20), c.recv()).await {
        Ok(Ok(d)) => Some(d),
        _ => None,
    }
}

fn totals(qm: &QueueManager) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = qm
        .queues()
        .into_iter()
        .map(|(n, s)| (n, s.depth + s.in_flight))
        .filter(|(_, n)| *n > 0)
        .collect();
    v.sort();
    v
}

async fn exercise(data: &[u8], dir: &std::path::Path) {
    let clock = Clock::manual(T0_MS);
    let mut c = Cursor::new(data);
    let cfg = read_config(&mut c, &clock);
    let Ok(mut qm) = QueueManager::open(dir, cfg.clone()).await else {
        return;
    };
    let mut consumers: Vec<Consumer> = Vec::new();
    let mut held: VecDeque<Delivery> = VecDeque::new();
    // Reopening discards expired messages, so compare totals only without TTLs.
    let mut ttl_used = false;
    let mut ops = 0;
    while !c.is_empty() && ops < 64 {
        ops += 1;
        let op = Op::read(&mut c);
        let pick = |held: &VecDeque<Delivery>, i: u8| usize::from(i) % held.len().max(1);
        match op {
            Op::Send(q, m) => {
                ttl_used |= m.ttl.is_some();
                let _ = qm.queue(queue_name(q)).send(m.message()).await;
            }
            Op::SendBatch(q, ms) => {
                ttl_used |= ms.iter().any(|m| m.ttl.is_some());
                let batch = ms.iter().map(Msg::message).collect();
                let _ = qm.queue(queue_name(q)).send_batch(batch).await;
            }
            Op::Recv(q, prefetch, visibility) => {
                let name = queue_name(q);
                let i = match consumers.iter().position(|c| c.queue() == name) {
                    Some(i) if visibility.is_none() => i,
                    _ => {
                        consumers.push(qm.queue(name).consumer(ConsumerOptions {
                            prefetch: u32::from(prefetch),
                            visibility_timeout: visibility.map(Dur::get),
                        }));
                        consumers.len() - 1
                    }
                };
                if let Some(d) = recv_ready(&qm, &mut consumers[i]).await {
                    held.push_back(d);
                }
            }
            Op::Ack(i) => {
                if let Some(d) = held.remove(pick(&held, i)) {
                    let _ = d.ack().await;
                }
            }
            Op::Nack(i, delay) => {
                if let Some(d) = held.remove(pick(&held, i)) {
                    let _ = d.nack(delay.map(Dur::get)).await;
                }
            }
            Op::Reject(i) => {
                if let Some(d) = held.remove(pick(&held, i)) {
                    let _ = d.reject().await;
                }
            }
            Op::Extend(i, by) => {
                if let Some(d) = held.get(pick(&held, i)) {
                    let _ = d.extend_visibility(by.get());
                }
            }
            Op::Tag(q, lsn, delivery, how, d) => {
                let queue = qm.queue(queue_name(q));
                let tag = DeliveryTag::new(lsn, delivery);
                let _ = match how % 4 {
                    0 => queue.ack(tag).await,
                    1 => queue.nack(tag, Some(d.get())).await,
                    2 => queue.reject(tag).await,
                    _ => queue.extend_visibility(tag, d.get()),
                };
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(u64::from(ms)));
                // Let the timer task see the new time.
                tokio::task::yield_now().await;
            }
            Op::Redrive(q) => {
                let _ = qm.redrive(queue_name(q)).await;
            }
            Op::DropHandles => {
                consumers.clear();
                held.clear();
            }
            Op::Reopen => {
                consumers.clear();
                held.clear();
                let before = totals(&qm);
                qm.close().await.expect("close");
                drop(qm);
                qm = QueueManager::open(dir, cfg.clone())
                    .await
                    .expect("a directory this manager wrote reopens");
                if !ttl_used {
                    assert_eq!(before, totals(&qm), "queues changed across a reopen");
                }
            }
        }
    }
    drop(consumers);
    drop(held);
    qm.close().await.expect("close");
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let dir = crate::common::tempdir();
    block_on(exercise(data, dir.path()));
}
