//! [`Shared`]: the state every handle of one queue manager shares (the index
//! behind its mutex, the log, the config), and the operations that queue
//! handles, consumers and deliveries call on it. Each operation changes the
//! index and hands the records it queued to the log under one lock, so the
//! log's order is the order of the state changes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use mw_core::time::millis;

use crate::clock::Clock;
use crate::config::Config;
use crate::engine::backlog::{self, RefillJob};
use crate::engine::index::{SendOutcome, State};
use crate::error::{Error, Result};
use crate::message::{DeliveryTag, Message, MessageId};
use crate::name::QueueName;
use crate::storage::log::{Append, CommitHook, Log};
use crate::storage::record::{EnqueueHeader, SettleReason};
use crate::storage::recovery::{Location, RecoveryReport};

/// State shared by every handle of one queue manager.
pub(crate) struct Shared {
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) log: Log,
    pub(crate) config: Config,
    send_permits: Arc<Semaphore>,
    pub(super) cancel: CancellationToken,
    pub(super) dir: PathBuf,
    pub(super) report: RecoveryReport,
    id_prefix: u64,
    id_counter: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.cancel.cancel();
        // `log` drops next: the writer finishes what is pending and exits.
    }
}

/// Applies committed batches to the index on the writer thread.
pub(super) struct Hook {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) clock: Clock,
}

impl CommitHook for Hook {
    fn committed(&mut self, appends: &[Append], locations: &[Location]) -> u64 {
        let now = self.clock.now_ms();
        lock(&self.state).committed(appends, locations, now)
    }

    fn failed(&mut self, appends: &[Append], error: &Error) {
        tracing::error!(error = %error, records = appends.len(), "log write failed");
        lock(&self.state).failed(appends);
    }
}

/// The state mutex is a std `Mutex`: every critical section is short, does no
/// I/O and never awaits, and the log writer thread takes it too.
pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves the index in an unknown state;
    // propagating the panic is the only safe choice.
    state.lock().expect("queue state mutex poisoned")
}

impl Shared {
    /// The shared state of a manager whose log has been recovered and started.
    pub(super) fn new(
        state: Arc<Mutex<State>>,
        log: Log,
        config: Config,
        dir: PathBuf,
        report: RecoveryReport,
    ) -> Shared {
        Shared {
            state,
            log,
            send_permits: Arc::new(Semaphore::new(config.max_pending_sends.max(1))),
            cancel: CancellationToken::new(),
            dir,
            report,
            id_prefix: rand::random(),
            id_counter: AtomicU64::new(0),
            config,
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.config.clock.now_ms()
    }

    fn next_id(&self) -> MessageId {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        MessageId(((self.id_prefix as u128) << 64) | n as u128)
    }

    pub(crate) async fn send(&self, queue: &QueueName, msg: Message) -> Result<MessageId> {
        if msg.body.len() > self.config.max_message_size {
            return Err(Error::MessageTooLarge {
                size: msg.body.len(),
                limit: self.config.max_message_size,
            });
        }
        // Bounds the records queued for the writer; held until the send is durable.
        let _permit = self
            .send_permits
            .acquire()
            .await
            .map_err(|_| Error::Closed)?;
        let id = msg.id.unwrap_or_else(|| self.next_id());
        loop {
            let now = self.now_ms();
            let header = Self::header(&msg, id, now);
            let outcome = {
                let mut st = lock(&self.state);
                let o = st.send(queue, header, msg.body.clone(), now);
                st.flush(&self.log);
                o
            }?;
            match outcome {
                SendOutcome::Appended(rx) => {
                    rx.await.map_err(|_| Error::Closed)??;
                    return Ok(id);
                }
                SendOutcome::Duplicate => return Ok(id),
                SendOutcome::WaitDuplicate(rx) => {
                    if rx.await == Ok(true) {
                        return Ok(id);
                    }
                    // The first send with this id failed: try to store this one.
                }
            }
        }
    }

    fn header(msg: &Message, id: MessageId, now: u64) -> EnqueueHeader {
        EnqueueHeader {
            id: id.0,
            producer_id: msg.id.is_some(),
            timestamp_ms: now,
            expires_at_ms: msg.expires_at_ms(now),
            not_before_ms: msg.not_before_ms(now),
        }
    }

    /// Sends `msgs` in order: all are enqueued under one lock (consecutive in the log,
    /// so they share group commits), then awaited together. One result per message.
    pub(crate) async fn send_batch(
        &self,
        queue: &QueueName,
        msgs: Vec<Message>,
    ) -> Vec<Result<MessageId>> {
        enum Step {
            Done(Result<MessageId>),
            Durable(MessageId, tokio::sync::oneshot::Receiver<Result<()>>),
            /// A duplicate of a send in progress elsewhere: resend if that one fails.
            Duplicate(Message, tokio::sync::oneshot::Receiver<bool>),
        }
        let mut results = Vec::with_capacity(msgs.len());
        // Permits are taken per chunk: a chunk never needs more than exist.
        let chunk = self.config.max_pending_sends.clamp(1, u32::MAX as usize);
        let mut msgs = msgs.into_iter().peekable();
        while msgs.peek().is_some() {
            let part: Vec<Message> = msgs.by_ref().take(chunk).collect();
            let Ok(permit) = self.send_permits.acquire_many(part.len() as u32).await else {
                results.extend(part.iter().map(|_| Err(Error::Closed)));
                continue;
            };
            let steps: Vec<Step> = {
                let now = self.now_ms();
                let mut st = lock(&self.state);
                let steps = part
                    .into_iter()
                    .map(|msg| {
                        if msg.body.len() > self.config.max_message_size {
                            return Step::Done(Err(Error::MessageTooLarge {
                                size: msg.body.len(),
                                limit: self.config.max_message_size,
                            }));
                        }
                        let id = msg.id.unwrap_or_else(|| self.next_id());
                        let header = Self::header(&msg, id, now);
                        match st.send(queue, header, msg.body.clone(), now) {
                            Ok(SendOutcome::Appended(rx)) => Step::Durable(id, rx),
                            Ok(SendOutcome::Duplicate) => Step::Done(Ok(id)),
                            Ok(SendOutcome::WaitDuplicate(rx)) => Step::Duplicate(msg, rx),
                            Err(e) => Step::Done(Err(e)),
                        }
                    })
                    .collect();
                st.flush(&self.log);
                steps
            };
            let mut retry = Vec::new();
            for step in steps {
                results.push(match step {
                    Step::Done(r) => r,
                    Step::Durable(id, rx) => match rx.await {
                        Ok(r) => r.map(|()| id),
                        Err(_) => Err(Error::Closed),
                    },
                    Step::Duplicate(msg, rx) => match (rx.await, msg.id) {
                        (Ok(true), Some(id)) => Ok(id),
                        _ => {
                            retry.push((results.len(), msg));
                            Err(Error::Closed) // replaced below
                        }
                    },
                });
            }
            // Our permits go first: a retry takes its own.
            drop(permit);
            for (i, msg) in retry {
                results[i] = self.send(queue, msg).await;
            }
        }
        results
    }

    async fn finish(rx: Result<tokio::sync::oneshot::Receiver<Result<()>>>) -> Result<()> {
        rx?.await.map_err(|_| Error::Closed)?
    }

    pub(crate) async fn ack(&self, queue: &QueueName, tag: DeliveryTag) -> Result<()> {
        let rx = {
            let mut st = lock(&self.state);
            let r = st.settle(queue, tag, SettleReason::Acked);
            st.flush(&self.log);
            r
        };
        Self::finish(rx).await
    }

    /// Acks many deliveries under one lock (their records share a group commit), then
    /// awaits them all. One result per tag, in order.
    pub(crate) async fn ack_many(
        &self,
        queue: &QueueName,
        tags: &[DeliveryTag],
    ) -> Vec<Result<()>> {
        let rxs: Vec<_> = {
            let mut st = lock(&self.state);
            let rxs = tags
                .iter()
                .map(|&tag| st.settle(queue, tag, SettleReason::Acked))
                .collect();
            st.flush(&self.log);
            rxs
        };
        let mut results = Vec::with_capacity(rxs.len());
        for rx in rxs {
            results.push(Self::finish(rx).await);
        }
        results
    }

    pub(crate) async fn nack(
        &self,
        queue: &QueueName,
        tag: DeliveryTag,
        delay: Option<Duration>,
    ) -> Result<()> {
        let rx = {
            let now = self.now_ms();
            let mut st = lock(&self.state);
            let r = st.nack(queue, tag, delay.map(millis), now);
            st.flush(&self.log);
            r
        };
        Self::finish(rx).await
    }

    pub(crate) async fn reject(&self, queue: &QueueName, tag: DeliveryTag) -> Result<()> {
        let rx = {
            let mut st = lock(&self.state);
            let r = st.reject(queue, tag);
            st.flush(&self.log);
            r
        };
        Self::finish(rx).await
    }

    pub(crate) fn extend_visibility(
        &self,
        queue: &QueueName,
        tag: DeliveryTag,
        by: Duration,
    ) -> Result<()> {
        let now = self.now_ms();
        lock(&self.state).extend(queue, tag, millis(by), now)
    }

    /// Starts reading spilled messages of `job.queue` back on the blocking pool; the
    /// result is applied to the index (and the queue's consumers woken) when it is
    /// read, whether or not anybody awaits the returned handle.
    pub(crate) fn spawn_refill(self: &Arc<Self>, job: RefillJob) -> tokio::task::JoinHandle<()> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let read = backlog::read_runs(&shared.log, &job);
            lock(&shared.state).apply_refill(&job.queue, read);
        })
    }

    pub(crate) async fn redrive(self: &Arc<Self>, queue: &QueueName) -> Result<u64> {
        let dlq = lock(&self.state).dlq_name(queue);
        // Spilled messages of the dead-letter queue are read back into memory first:
        // each needs its own move record.
        let (n, rx) = self
            .with_runs_read(dlq.as_ref(), |st| Ok(st.redrive(queue)))
            .await?;
        if let Some(rx) = rx {
            rx.await.map_err(|_| Error::Closed)??;
        }
        Ok(n)
    }

    /// Drops the waiting messages of `queue` (all of them with `delete`, which also
    /// forgets the queue); answers once the drops are durable.
    pub(crate) async fn drop_messages(
        self: &Arc<Self>,
        queue: &QueueName,
        delete: bool,
    ) -> Result<u64> {
        // Spilled messages are read back first: each needs its own settle record.
        let (n, rx) = self
            .with_runs_read(Some(queue), |st| {
                if delete {
                    st.delete(queue)
                } else {
                    st.purge(queue)
                }
            })
            .await?;
        if let Some(rx) = rx {
            rx.await.map_err(|_| Error::Closed)??;
        }
        Ok(n)
    }

    /// Runs `f` on the state (and flushes its records to the log) once `queue` has no
    /// spilled messages left: they are read back into memory first, on the blocking
    /// pool. A large spilled backlog is held in memory while `f` runs.
    async fn with_runs_read<R>(
        self: &Arc<Self>,
        queue: Option<&QueueName>,
        mut f: impl FnMut(&mut State) -> Result<R>,
    ) -> Result<R> {
        loop {
            let notify = queue.and_then(|q| lock(&self.state).notify_of(q));
            let notified = notify.as_ref().map(|n| n.notified());
            tokio::pin!(notified);
            if let Some(n) = notified.as_mut().as_pin_mut() {
                n.enable();
            }
            let job = {
                let mut st = lock(&self.state);
                if st.closed {
                    return Err(Error::Closed);
                }
                let (runs, refilling) = queue.map_or((false, false), |q| st.runs_of(q));
                if !runs {
                    let r = f(&mut st);
                    st.flush(&self.log);
                    return r;
                }
                if refilling {
                    None
                } else {
                    queue.and_then(|q| st.refill_job(q, Some(usize::MAX)))
                }
            };
            match job {
                Some(job) => {
                    let _ = self.spawn_refill(job).await;
                }
                None => {
                    if let Some(n) = notified.as_mut().as_pin_mut() {
                        n.await;
                    }
                }
            }
        }
    }
}
