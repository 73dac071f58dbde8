//! Durable subscriptions on the broker: a [`DeliverySink`] per durable name that stores every
//! matching event in the mw-queue queue `durable.<name>`, and sessions that stream the stored
//! events to a returning subscriber with acknowledgements.
//!
//! ```text
//! publish ─▶ Bus ─▶ DurableSink::deliver ─try_send─▶ bounded channel ─▶ writer task ─▶ queue.send
//!                                                                         (in order, group commit)
//! subscriber ◀── DurableItem::Deliveries ◀── session stream ◀── queue consumer (prefetch)
//!            ──▶ ack(tags) ──▶ queue.ack
//! ```
//!
//! - The sink never blocks (the bus calls it inside `publish`): it hands the event to a bounded
//!   channel of [`MAX_UNSTORED_EVENTS`] events and refuses (counted in `refused`) when the disk falls that
//!   far behind, rather than slowing every publisher.
//! - The writer starts each batch's sends in order; mw-queue appends a send to its log in its
//!   first poll, so stored order is publish order, and one batch shares one group commit.
//! - Definitions (name and pattern) live in `pubsub-durable.txt` in the broker's data directory,
//!   one `name<TAB>pattern` line each, rewritten atomically (temp file + rename); the broker
//!   re-attaches them on start, so a durable subscription keeps collecting across restarts.
//! - A delivery not acknowledged when its session ends (the subscriber disconnected) is returned
//!   to the queue at once, so the next session gets it again; one never acknowledged at all is
//!   redelivered after mw-queue's visibility timeout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use mw_queue::{ConsumerOptions, DeliveryTag, Message, QueueManager};
use mw_rpc::Streaming;
use tokio::sync::mpsc;

use super::wire::{pack_one, DurableItem, DurableStats, EventBatch, PubSubError, WireDelivery};
use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::sink::{Attachment, DeliverySink, SinkDelivery};
use crate::topic::{Pattern, Topic};

/// Events that may wait between the bus and the disk, per durable subscription: the
/// bound of the channel from its sink to its writer task. A publish finding it full is
/// not stored for that subscription (counted in `refused`) rather than waiting.
pub const MAX_UNSTORED_EVENTS: usize = 65_536;
/// Most deliveries a session packs into one stream item.
const MAX_DELIVERIES: usize = 256;
/// Most unacknowledged deliveries a session may ask for.
const MAX_PREFETCH: u32 = 10_000;
/// The definitions file in the data directory.
pub const DEFINITIONS_FILE: &str = "pubsub-durable.txt";
/// Prefix of the queue holding a durable subscription's events.
pub const QUEUE_PREFIX: &str = "durable.";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single map operation; a poisoned map is still whole.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A durable subscription's name, validated: 1 to 200 bytes of `A-Z a-z 0-9 _ - .`, so
/// that [`QUEUE_PREFIX`]`<name>` is a valid mw-queue queue name and the name fits on one
/// line of the definitions file.
///
/// ```
/// use mw_pubsub::remote::DurableName;
/// assert_eq!(DurableName::new("billing-v2").unwrap().as_str(), "billing-v2");
/// assert!(DurableName::new("no spaces").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DurableName(String);

impl DurableName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`PubSubError::InvalidName`] saying what a durable name may hold.
    pub fn new(name: &str) -> Result<DurableName, PubSubError> {
        let ok = !name.is_empty()
            && name.len() <= 200
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if ok {
            Ok(DurableName(name.to_string()))
        } else {
            Err(PubSubError::InvalidName(format!(
                "durable name {name:?} must be 1 to 200 characters of A-Z a-z 0-9 _ - ."
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DurableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct DurableSink {
    tx: mpsc::Sender<(Topic, Bytes)>,
    refused: Arc<AtomicU64>,
}

impl DeliverySink for DurableSink {
    fn deliver(&self, topic: &Topic, payload: &Bytes) -> SinkDelivery {
        match self.tx.try_send((topic.clone(), payload.clone())) {
            Ok(()) => SinkDelivery::Accepted,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                SinkDelivery::Refused
            }
            Err(mpsc::error::TrySendError::Closed(_)) => SinkDelivery::Closed,
        }
    }
}

/// Stores handed-off events in the queue, in order, until the sink is detached.
async fn write_loop(queue: mw_queue::Queue, mut rx: mpsc::Receiver<(Topic, Bytes)>) {
    let mut buf = Vec::with_capacity(MAX_DELIVERIES);
    while rx.recv_many(&mut buf, MAX_DELIVERIES).await > 0 {
        let mut sends: FuturesOrdered<_> = buf
            .drain(..)
            .map(|(topic, payload)| {
                let q = queue.clone();
                async move { q.send(Message::new(pack_one(&topic, &payload))).await }
            })
            .collect();
        while let Some(r) = sends.next().await {
            if let Err(e) = r {
                tracing::warn!(queue = queue.name(), error = %e, "durable event not stored");
            }
        }
    }
}

struct Durable {
    name: String,
    pattern: Pattern,
    queue: mw_queue::Queue,
    attachment: Mutex<Option<Attachment>>,
    refused: Arc<AtomicU64>,
    sessions: AtomicU64,
    /// Deliveries handed to a session and not yet acknowledged, with the session's id.
    outstanding: Mutex<HashMap<DeliveryTag, u64>>,
}

/// Every durable subscription of one broker.
pub(crate) struct Durables {
    bus: Bus,
    queues: QueueManager,
    file: PathBuf,
    subs: Mutex<HashMap<String, Arc<Durable>>>,
    /// Serializes rewrites of the definitions file.
    file_lock: tokio::sync::Mutex<()>,
    next_session: AtomicU64,
}

impl Durables {
    /// Loads the definitions in `dir` and attaches each. Must run inside a tokio runtime.
    pub(crate) fn open(bus: Bus, queues: QueueManager, dir: &Path) -> Result<Durables> {
        let file = dir.join(DEFINITIONS_FILE);
        let durables = Durables {
            bus,
            queues,
            file,
            subs: Mutex::new(HashMap::new()),
            file_lock: tokio::sync::Mutex::new(()),
            next_session: AtomicU64::new(1),
        };
        let text = match std::fs::read_to_string(&durables.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::StateFile(format!(
                    "cannot read {}: {e}",
                    durables.file.display()
                )))
            }
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: String| {
                Error::StateFile(format!("{} line {}: {why}", durables.file.display(), n + 1))
            };
            let (name, pattern) = line
                .split_once('\t')
                .ok_or_else(|| bad("expected NAME<TAB>PATTERN".into()))?;
            DurableName::new(name).map_err(|e| bad(e.to_string()))?;
            let pattern = Pattern::new(pattern).map_err(|e| bad(e.to_string()))?;
            let d = durables.attach(name, pattern)?;
            lock(&durables.subs).insert(name.to_string(), d);
        }
        Ok(durables)
    }

    fn attach(&self, name: &str, pattern: Pattern) -> Result<Arc<Durable>> {
        let queue = self.queues.queue(&format!("{QUEUE_PREFIX}{name}"));
        let (tx, rx) = mpsc::channel(MAX_UNSTORED_EVENTS);
        let refused = Arc::new(AtomicU64::new(0));
        let sink = Arc::new(DurableSink {
            tx,
            refused: refused.clone(),
        });
        let attachment = self.bus.attach(&pattern, sink)?;
        tokio::spawn(write_loop(queue.clone(), rx));
        Ok(Arc::new(Durable {
            name: name.to_string(),
            pattern,
            queue,
            attachment: Mutex::new(Some(attachment)),
            refused,
            sessions: AtomicU64::new(0),
            outstanding: Mutex::new(HashMap::new()),
        }))
    }

    /// Rewrites the definitions file from the current map (temp file, fsync, rename).
    async fn save(&self) -> Result<(), PubSubError> {
        let _one_writer = self.file_lock.lock().await;
        let mut text = String::new();
        {
            let subs = lock(&self.subs);
            let mut names: Vec<&String> = subs.keys().collect();
            names.sort();
            for name in names {
                text.push_str(&format!("{name}\t{}\n", subs[name].pattern));
            }
        }
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let tmp = file.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &file)?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PubSubError::Storage(format!(
                "cannot write {}: {e}",
                self.file.display()
            ))),
            Err(e) => Err(PubSubError::Storage(e.to_string())),
        }
    }

    async fn get_or_create(
        &self,
        name: &str,
        pattern: &str,
    ) -> Result<(Arc<Durable>, bool), PubSubError> {
        let name = DurableName::new(name)?;
        let name = name.as_str();
        let pattern = Pattern::new(pattern).map_err(PubSubError::from)?;
        let created = {
            let mut subs = lock(&self.subs);
            if let Some(d) = subs.get(name) {
                if d.pattern != pattern {
                    return Err(PubSubError::DurableConflict {
                        name: name.into(),
                        existing: d.pattern.to_string(),
                        requested: pattern.to_string(),
                    });
                }
                return Ok((d.clone(), false));
            }
            let d = self.attach(name, pattern)?;
            subs.insert(name.to_string(), d.clone());
            d
        };
        if let Err(e) = self.save().await {
            // Keep memory and disk in agreement: a definition that is not on disk is undone.
            lock(&self.subs).remove(name);
            return Err(e);
        }
        Ok((created, true))
    }

    /// Opens a session on `name`: `Ready`, then batches of stored deliveries.
    pub(crate) async fn session(
        self: Arc<Self>,
        name: &str,
        pattern: &str,
        prefetch: u32,
    ) -> Streaming<Result<DurableItem, PubSubError>> {
        let (durable, created) = match self.get_or_create(name, pattern).await {
            Ok(x) => x,
            Err(e) => return Box::pin(futures::stream::iter([Err(e)])),
        };
        let consumer = durable.queue.consumer(ConsumerOptions {
            prefetch: prefetch.clamp(1, MAX_PREFETCH),
            visibility_timeout: None,
        });
        durable.sessions.fetch_add(1, Ordering::Relaxed);
        let guard = SessionGuard {
            durable,
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
        };
        let ready = futures::stream::iter([Ok(DurableItem::Ready { created })]);
        let deliveries = futures::stream::unfold(Some((consumer, guard)), |state| async move {
            let (mut consumer, guard) = state?;
            let first = match consumer.recv().await {
                Ok(d) => d,
                Err(e) => return Some((Err(PubSubError::Storage(e.to_string())), None)),
            };
            let mut batch = vec![first];
            while batch.len() < MAX_DELIVERIES {
                match consumer.recv().now_or_never() {
                    Some(Ok(d)) => batch.push(d),
                    _ => break,
                }
            }
            let items = {
                let mut out = lock(&guard.durable.outstanding);
                batch
                    .into_iter()
                    .map(|d| {
                        out.insert(d.tag(), guard.id);
                        // Settled later through the queue by tag (see `ack`).
                        WireDelivery {
                            tag: d.tag(),
                            attempt: d.attempt(),
                            event: EventBatch(d.body().clone()),
                        }
                    })
                    .collect()
            };
            Some((Ok(DurableItem::Deliveries(items)), Some((consumer, guard))))
        });
        Box::pin(ready.chain(deliveries))
    }

    /// The pattern of durable subscription `name`, if it exists.
    pub(crate) fn pattern_of(&self, name: &str) -> Option<String> {
        lock(&self.subs).get(name).map(|d| d.pattern.to_string())
    }

    pub(crate) async fn ack(&self, name: &str, tags: &[DeliveryTag]) -> Result<u64, PubSubError> {
        let durable = lock(&self.subs)
            .get(name)
            .cloned()
            .ok_or_else(|| PubSubError::UnknownDurable(name.into()))?;
        let mut acked = 0;
        for tag in tags {
            if lock(&durable.outstanding).remove(tag).is_none() {
                continue;
            }
            match durable.queue.ack(*tag).await {
                Ok(()) => acked += 1,
                Err(mw_queue::Error::DeliveryNotFound { .. }) => {}
                Err(e) => return Err(PubSubError::Storage(e.to_string())),
            }
        }
        Ok(acked)
    }

    pub(crate) async fn remove(&self, name: &str) -> Result<bool, PubSubError> {
        let name = DurableName::new(name)?;
        let name = name.as_str();
        let Some(durable) = lock(&self.subs).remove(name) else {
            return Ok(false);
        };
        // Detaching drops the sink's sender, which ends the writer task.
        drop(lock(&durable.attachment).take());
        self.save().await?;
        // Discard what it stored: at most the depth seen now, so the loop is bounded.
        let depth = durable.queue.stats().depth;
        if depth > 0 {
            let mut consumer = durable.queue.consumer(ConsumerOptions {
                prefetch: 1000,
                visibility_timeout: None,
            });
            for _ in 0..depth {
                match consumer.recv().now_or_never() {
                    Some(Ok(d)) => {
                        let _ = d.ack().await;
                    }
                    _ => break,
                }
            }
        }
        Ok(true)
    }

    pub(crate) fn stats(&self) -> Vec<DurableStats> {
        let mut out: Vec<DurableStats> = lock(&self.subs)
            .values()
            .map(|d| {
                let q = d.queue.stats();
                DurableStats {
                    name: d.name.clone(),
                    pattern: d.pattern.to_string(),
                    depth: q.depth + q.in_flight,
                    sessions: d.sessions.load(Ordering::Relaxed),
                    refused: d.refused.load(Ordering::Relaxed),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Ends a session: returns its unacknowledged deliveries to the queue at once.
struct SessionGuard {
    durable: Arc<Durable>,
    id: u64,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.durable.sessions.fetch_sub(1, Ordering::Relaxed);
        let tags: Vec<DeliveryTag> = {
            let mut out = lock(&self.durable.outstanding);
            let mine: Vec<DeliveryTag> = out
                .iter()
                .filter(|(_, s)| **s == self.id)
                .map(|(t, _)| *t)
                .collect();
            for t in &mine {
                out.remove(t);
            }
            // Returned oldest first, so the queue keeps publish order where it can.
            let mut mine = mine;
            mine.sort_by_key(|t| t.lsn());
            mine
        };
        if tags.is_empty() {
            return;
        }
        let queue = self.durable.queue.clone();
        // Without a runtime (broker shutting down) they come back after the visibility timeout.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for tag in tags {
                    let _ = queue.nack(tag, None).await;
                }
            });
        }
    }
}
