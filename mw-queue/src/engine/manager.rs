//! [`QueueManager`]: opens a data directory, replays the log into the index,
//! starts the log writer and the timer task, and hands out [`Queue`] handles.
//! The operations those handles call live on [`Shared`](super::shared::Shared).

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use mw_core::time::millis;

use crate::clock::Clock;
use crate::config::Config;
use crate::engine::consumer::read_at;
use crate::engine::index::{ConsumerInfo, Limits, MemoryStats, QueueStats, State, Waiting};
use crate::engine::queue::Queue;
use crate::engine::shared::{lock, Hook, Shared};
use crate::error::{Error, Result};
use crate::message::MessageId;
use crate::name::QueueName;
use crate::storage::log::{Log, LogConfig, LogStats};
use crate::storage::reader::DirReader;
use crate::storage::recovery::RecoveryReport;
use crate::storage::segment::HEADER_LEN;

/// An embedded queue manager: named persistent queues in one data directory.
///
/// Cheap to clone; all clones share the same queues. Dropping the last clone (and
/// every [`Queue`], consumer and delivery made from it) writes what is pending and
/// stops the log writer, like [`close`](QueueManager::close) but blocking the
/// dropping thread briefly.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> mw_queue::Result<()> {
/// use mw_queue::{Config, ConsumerOptions, Message, QueueManager};
/// let dir = tempfile::tempdir().unwrap();
/// let qm = QueueManager::open(dir.path(), Config::default()).await?;
/// let orders = qm.queue("orders");
/// let id = orders.send(Message::new("one widget")).await?; // durable now
/// let mut consumer = orders.consumer(ConsumerOptions::default());
/// let d = consumer.recv().await?;
/// assert_eq!((d.id(), &d.body()[..]), (id, &b"one widget"[..]));
/// d.ack().await?;
/// assert_eq!(qm.stats("orders").depth, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct QueueManager {
    shared: Arc<Shared>,
}

impl QueueManager {
    /// Opens (creating if needed) the data directory `dir`, recovers the log and
    /// rebuilds every queue, the dedup window and delivery counts from it.
    ///
    /// Messages that were in flight when the previous manager stopped are visible
    /// again at once. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another manager has `dir` open, [`Error::Corrupt`] (with
    /// file and offset) for corruption that is not a torn tail, and I/O errors.
    pub async fn open(dir: impl AsRef<Path>, config: Config) -> Result<QueueManager> {
        let dir = dir.as_ref().to_path_buf();
        let scheduler = Arc::new(Notify::new());
        let limits = Limits {
            visibility_ms: millis(config.visibility_timeout),
            max_attempts: config.max_attempts,
            dlq_suffix: config.dead_letter_suffix.clone(),
            dedup_window_ms: millis(config.dedup_window),
            max_queue_len: config.max_queue_len,
            cache_budget: config.body_cache_bytes,
            ready_head: config.ready_head.max(1),
        };
        let log_config = LogConfig {
            fsync: config.fsync,
            // At least a header and a small record; at most what u32 offsets can address
            // (record positions inside a segment are stored as u32).
            segment_size: config
                .segment_size
                .clamp(HEADER_LEN + 1024, u32::MAX as u64),
        };
        let clock = config.clock.clone();
        let state = State::new(limits, scheduler.clone());
        let dir2 = dir.clone();
        let recovered = tokio::task::spawn_blocking(move || {
            let mut state = state;
            let now = clock.now_ms();
            let reader = DirReader::new(&dir2);
            let mut replay_error = None;
            let recovered = Log::recover(&dir2, log_config, |lsn, view, loc| {
                if replay_error.is_none() {
                    replay_error = state.replay(lsn, view, loc, now, &reader).err();
                }
            })?;
            if let Some(e) = replay_error {
                return Err(e);
            }
            state.set_next_lsn(recovered.next_seq);
            let live = state.finish_replay(now);
            Ok::<_, Error>((state, recovered, live))
        })
        .await;
        let (state, recovered, live) = match recovered {
            Ok(r) => r?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let mut report = recovered.scan_report.clone();
        report.live_messages = live;
        let state = Arc::new(Mutex::new(state));
        let log = recovered.start(Hook {
            state: state.clone(),
            clock: config.clock.clone(),
        })?;
        let shared = Arc::new(Shared::new(state, log, config, dir, report));
        tokio::spawn(scheduler_task(
            Arc::downgrade(&shared),
            scheduler,
            shared.cancel.clone(),
            shared.config.clock.clone(),
        ));
        Ok(QueueManager { shared })
    }

    /// A handle to the queue `name` (created when first used). Cheap.
    ///
    /// Names are 1 to 255 bytes; operations on a handle with an invalid name fail
    /// with [`Error::InvalidQueueName`].
    pub fn queue(&self, name: &str) -> Queue {
        Queue::new(self.shared.clone(), name)
    }

    /// Counters of queue `name` (all zero for an unknown queue).
    pub fn stats(&self, name: &str) -> QueueStats {
        lock(&self.shared.state).stats(name)
    }

    /// Every known queue (including dead-letter queues) with its counters, by name.
    pub fn queues(&self) -> Vec<(String, QueueStats)> {
        let st = lock(&self.shared.state);
        st.queue_names()
            .into_iter()
            .map(|n| {
                let s = st.stats(&n);
                (n, s)
            })
            .collect()
    }

    /// Moves every message waiting in `name`'s dead-letter queue back to `name`,
    /// with delivery counts reset. Returns how many moved.
    ///
    /// # Errors
    ///
    /// Storage errors if the move records could not be written.
    pub async fn redrive(&self, name: &str) -> Result<u64> {
        self.queue(name).redrive().await
    }

    /// Whether the queue `name` exists: it holds or held messages since the manager
    /// opened, or it is the dead-letter queue of one that does. A queue only waited on
    /// by consumers does not.
    pub fn exists(&self, name: &str) -> bool {
        lock(&self.shared.state).exists(name)
    }

    /// Drops every message waiting in `name` (ready, returned or delayed; deliveries in
    /// flight stay and may still be acked). Returns how many were dropped, once the
    /// drops are durable. Spilled messages are read back into memory to be dropped.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownQueue`] for a queue that does not [`exist`](Self::exists);
    /// storage errors.
    pub async fn purge(&self, name: &str) -> Result<u64> {
        self.shared
            .drop_messages(&QueueName::new(name)?, false)
            .await
    }

    /// Drops every message of `name`, those in flight included, and forgets the queue
    /// (its dead-letter queue stays). Returns how many were dropped, once durable.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownQueue`]; [`Error::QueueInUse`] while consumers are attached;
    /// storage errors.
    pub async fn delete(&self, name: &str) -> Result<u64> {
        self.shared
            .drop_messages(&QueueName::new(name)?, true)
            .await
    }

    /// Up to `max` messages waiting in `name`, in the order they would be delivered,
    /// without delivering them (nothing is recorded, no attempt counted). Lists what
    /// the queue holds in memory: the never-delivered head (up to
    /// [`Config::ready_head`](crate::Config::ready_head) messages), returned and delayed
    /// messages.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownQueue`]; storage errors reading a body back.
    pub async fn peek(&self, name: &str, max: usize) -> Result<Vec<Peeked>> {
        QueueName::new(name)?;
        let found = lock(&self.shared.state).browse(name, max)?;
        let shared = self.shared.clone();
        let queue = name.to_string();
        tokio::task::spawn_blocking(move || {
            found
                .into_iter()
                .map(|b| {
                    let m = match b.cached {
                        Some(c) => c,
                        None => read_at(&shared, b.lsn, b.meta.offset, b.meta.len)?,
                    };
                    Ok(Peeked {
                        queue: queue.clone(),
                        id: MessageId(m.header.id),
                        sent_at_ms: m.header.timestamp_ms,
                        deliveries: b.meta.deliveries,
                        waiting: b.waiting,
                        body: m.body,
                    })
                })
                .collect()
        })
        .await
        .map_err(|_| Error::Closed)?
    }

    /// When the oldest message waiting in `name` was sent (ms since the Unix epoch), or
    /// `None` when nothing waits. Blocking: the message's record is read back from its
    /// segment when its body is no longer cached; call it from a blocking context.
    ///
    /// # Errors
    ///
    /// Storage errors reading the record.
    pub fn oldest_sent_ms_blocking(&self, name: &str) -> Result<Option<u64>> {
        let Some(found) = lock(&self.shared.state).oldest_waiting(name) else {
            return Ok(None);
        };
        if let Some(c) = found.cached {
            return Ok(Some(c.header.timestamp_ms));
        }
        let m = read_at(&self.shared, found.lsn, found.meta.offset, found.meta.len)?;
        Ok(Some(m.header.timestamp_ms))
    }

    /// Every attached consumer (remote consumers of a broker included), by id.
    pub fn consumers(&self) -> Vec<ConsumerInfo> {
        lock(&self.shared.state).consumers()
    }

    /// Closes consumer `id`: its next `recv` fails with [`Error::ConsumerClosed`] (a
    /// remote consumer's stream ends with it); what it held unsettled is redelivered
    /// after the visibility timeout. Whether it was attached.
    pub fn close_consumer(&self, id: u64) -> bool {
        lock(&self.shared.state).close_consumer(id)
    }

    /// Counters of the log writer (appends, fsyncs, records per fsync, ...).
    pub fn log_stats(&self) -> LogStats {
        self.shared.log.stats()
    }

    /// Memory held by the in-memory index and body cache.
    pub fn memory(&self) -> MemoryStats {
        lock(&self.shared.state).memory()
    }

    /// What recovery found when this manager was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.shared.report
    }

    /// Segment files currently on disk.
    pub fn segment_count(&self) -> usize {
        self.shared.log.segment_count()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Stops accepting sends and deliveries, writes and syncs everything pending and
    /// stops the log writer, releasing the directory lock. Other clones of this
    /// manager then fail with [`Error::Closed`].
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for reporting a failed final sync.
    pub async fn close(&self) -> Result<()> {
        {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            st.wake_all();
        }
        self.shared.cancel.cancel();
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.log.shutdown()).await;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// A waiting message as [`QueueManager::peek`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Peeked {
    /// The queue it waits in.
    pub queue: String,
    /// Its id.
    pub id: MessageId,
    /// When it was sent, in ms since the Unix epoch.
    pub sent_at_ms: u64,
    /// Deliveries so far (in this queue).
    pub deliveries: u32,
    /// Ready, returned or delayed.
    pub waiting: Waiting,
    /// The body.
    pub body: bytes::Bytes,
}

/// Fires visibility timeouts and delays. Holds only a `Weak` to the manager and
/// exits once it is gone or closed.
async fn scheduler_task(
    shared: Weak<Shared>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    clock: Clock,
) {
    let mut manual = clock.subscribe();
    loop {
        let next = {
            let Some(s) = shared.upgrade() else { return };
            let mut st = lock(&s.state);
            let next = st.run_timers(clock.now_ms());
            st.flush(&s.log);
            next
        };
        let now = clock.now_ms();
        let timer = async {
            match (&mut manual, next) {
                (Some(rx), _) => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await
                    }
                }
                (None, Some(t)) => {
                    tokio::time::sleep(Duration::from_millis(t.saturating_sub(now))).await
                }
                (None, None) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = timer => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConsumerOptions, Message};

    #[tokio::test]
    async fn disk_full_fails_the_send_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let qm = QueueManager::open(dir.path(), Config::default())
            .await
            .unwrap();
        let q = qm.queue("q");
        q.send(Message::new("a")).await.unwrap();
        qm.shared().log.fail_next_writes(1);
        let err = q.send(Message::new("b").with_id(5u128)).await.unwrap_err();
        assert!(matches!(err, Error::DiskFull { .. }), "{err}");
        assert_eq!(qm.stats("q").depth, 1);
        // The failed id is not remembered as sent: a retry stores it.
        q.send(Message::new("b").with_id(5u128)).await.unwrap();
        assert_eq!(qm.stats("q").depth, 2);
        drop(q);
        drop(qm);
        let qm = QueueManager::open(dir.path(), Config::default())
            .await
            .unwrap();
        let mut c = qm.queue("q").consumer(ConsumerOptions::default());
        let a = c.recv().await.unwrap();
        let b = c.recv().await.unwrap();
        assert_eq!((&a.body()[..], &b.body()[..]), (&b"a"[..], &b"b"[..]));
    }
}
