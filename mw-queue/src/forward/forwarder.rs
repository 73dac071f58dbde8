//! [`Forwarder`]: moves the messages of one transmission queue to a [`NextHop`],
//! in order, acknowledging each locally only after the hop confirmed it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::envelope;
use super::hop::{HopError, NextHop};
use crate::engine::consumer::{Consumer, ConsumerOptions};
use crate::engine::delivery::Delivery;
use crate::engine::queue::Queue;
use crate::error::Error;
use crate::message::{DeliveryTag, Message};

/// Tunables of a [`Forwarder`].
///
/// ```
/// use std::time::Duration;
/// let c = mw_queue::forward::ForwarderConfig { max_batch: 16, ..Default::default() };
/// assert_eq!(c.backoff_max, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
// Not `#[non_exhaustive]`: built with struct-update syntax, like `Config`.
pub struct ForwarderConfig {
    /// Most messages sent to the hop in one call. A batch is only what is already
    /// waiting (the forwarder never waits to fill one), so a lone message goes at
    /// once and a backlog goes in batches. Default: 64.
    pub max_batch: usize,
    /// First retry delay after a failed send. Default: 50 ms.
    pub backoff_initial: Duration,
    /// Cap of the retry delay (doubling, jittered). Bounds how long a hop that came
    /// back waits to be noticed. Default: 5 s.
    pub backoff_max: Duration,
    /// Visibility timeout of the messages the forwarder holds; it extends them every
    /// third of this while it retries, so they are redelivered (and resent, stored
    /// once thanks to their ids) only if the forwarder stopped without settling them.
    /// Default: 30 s.
    pub hold: Duration,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        ForwarderConfig {
            max_batch: 64,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            hold: Duration::from_secs(30),
        }
    }
}

/// What a [`Forwarder`] has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwarderStats {
    /// Messages the hop confirmed (and that were then acknowledged locally).
    pub forwarded: u64,
    /// Successful calls to the hop.
    pub batches: u64,
    /// Failed calls to the hop that were retried.
    pub retries: u64,
    /// Messages the hop refused for good; moved to the transmission queue's
    /// dead-letter queue.
    pub refused: u64,
    /// Messages whose TTL ran out while waiting; dropped without being sent.
    pub expired: u64,
    /// Messages that were not envelopes (sent to a transmission queue by hand);
    /// moved to the dead-letter queue.
    pub malformed: u64,
    /// Whether the last call to the hop succeeded (`false` until one has).
    pub hop_up: bool,
    /// The last error from the hop or the local queue, if any since the last success.
    pub last_error: Option<String>,
    /// Whether the forwarder has stopped (shut down, or its queue manager closed).
    pub stopped: bool,
}

/// Moves messages from a local transmission queue to a [`NextHop`].
///
/// Each message in the transmission queue is an envelope naming its destination
/// queue (written by [`Router::send`](super::Router::send) or
/// [`Outbox::send`](super::Outbox::send)). The forwarder:
///
/// 1. takes the messages waiting, up to [`ForwarderConfig::max_batch`], in queue order;
/// 2. sends consecutive messages for the same destination in one
///    [`NextHop::send`], **with the same message id** they have locally;
/// 3. acknowledges them locally only once the hop confirmed them durable;
/// 4. while the hop fails with [`HopError::Unavailable`], retries the same
///    messages after a capped, jittered exponential backoff (from
///    [`ForwarderConfig::backoff_initial`] up to [`ForwarderConfig::backoff_max`]),
///    keeping them invisible to anyone else, so order is kept and nothing
///    overtakes them.
///
/// A crash between the hop's confirmation and the local ack makes the messages
/// visible again locally (at once on reopen); they are resent with the same ids
/// and the hop's dedup window stores them once. So every hop is durable before
/// it acknowledges upstream, and the destination stores each message once
/// (provided the resend happens within the hop's dedup window, 5 minutes by
/// default).
///
/// Messages the hop refuses for good are dead-lettered locally (never dropped).
/// Run exactly one forwarder per transmission queue: two would compete for its
/// messages and could reorder them.
///
/// Dropping the handle stops the task at its next await point; messages it held
/// stay in flight until [`ForwarderConfig::hold`] expires (or the queue manager
/// reopens), then are resent.
#[derive(Debug)]
pub struct Forwarder {
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
    pub(super) stats: watch::Receiver<ForwarderStats>,
    queue: Queue,
}

impl Forwarder {
    /// Starts forwarding `queue` to `hop` on a tokio task.
    pub fn spawn(queue: Queue, hop: Arc<dyn NextHop>, config: ForwarderConfig) -> Forwarder {
        let cancel = CancellationToken::new();
        let (tx, rx) = watch::channel(ForwarderStats::default());
        let task = tokio::spawn(run(queue.clone(), hop, config, tx, cancel.clone()));
        Forwarder {
            cancel,
            task: Some(task),
            stats: rx,
            queue,
        }
    }

    /// The transmission queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Counters so far.
    pub fn stats(&self) -> ForwarderStats {
        self.stats.borrow().clone()
    }

    /// Messages still in the transmission queue (waiting, delayed or held by the
    /// forwarder), dead letters excluded.
    pub fn pending(&self) -> u64 {
        let s = self.queue.stats();
        s.depth + s.in_flight
    }

    /// Waits until the transmission queue is empty ([`pending`](Self::pending) is 0).
    /// Messages sent meanwhile count too, so under a steady stream this may wait long:
    /// bound it with `tokio::time::timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the forwarder stops first.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (it only waits).
    pub async fn drained(&self) -> Result<(), Error> {
        wait_drained(&self.queue, self.stats.clone()).await
    }

    /// Waits until the stats satisfy `pred` (for instance until the hop was
    /// reached), or the forwarder stops.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the forwarder stops first.
    pub async fn wait_for(
        &self,
        pred: impl FnMut(&ForwarderStats) -> bool,
    ) -> Result<ForwarderStats, Error> {
        wait_stats(self.stats.clone(), pred).await
    }

    /// Stops the forwarder and waits for its task to end. A send in progress is
    /// abandoned (its messages stay unacknowledged and are resent later).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Waits until `queue` holds nothing (waiting or in flight), waking on every
/// stats update of its forwarder.
pub(super) async fn wait_drained(
    queue: &Queue,
    mut rx: watch::Receiver<ForwarderStats>,
) -> Result<(), Error> {
    loop {
        // Mark the current stats seen *before* looking at the queue: an ack that
        // happens after the look is followed by a stats update, which wakes us.
        let stopped = rx.borrow_and_update().stopped;
        let s = queue.stats();
        if s.depth + s.in_flight == 0 {
            return Ok(());
        }
        if stopped || rx.changed().await.is_err() {
            return Err(Error::Closed);
        }
    }
}

/// Waits until the stats satisfy `pred`; `Closed` if the forwarder stops first.
pub(super) async fn wait_stats(
    mut rx: watch::Receiver<ForwarderStats>,
    mut pred: impl FnMut(&ForwarderStats) -> bool,
) -> Result<ForwarderStats, Error> {
    let r = rx.wait_for(|s| pred(s) || s.stopped).await;
    match r {
        Ok(s) if pred(&s) => Ok(s.clone()),
        _ => Err(Error::Closed),
    }
}

/// One message taken from the transmission queue.
struct Held {
    delivery: Delivery,
    /// `None`: not an envelope.
    unwrapped: Option<envelope::Unwrapped>,
}

async fn run(
    queue: Queue,
    hop: Arc<dyn NextHop>,
    config: ForwarderConfig,
    stats: watch::Sender<ForwarderStats>,
    cancel: CancellationToken,
) {
    let max_batch = config.max_batch.max(1);
    let mut consumer = queue.consumer(ConsumerOptions {
        prefetch: max_batch.min(u32::MAX as usize) as u32,
        visibility_timeout: Some(config.hold),
    });
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    let w = Worker {
        queue: &queue,
        hop: &*hop,
        config: &config,
        stats: &stats,
        cancel: &cancel,
    };
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            r = consumer.recv() => r,
        };
        let first = match first {
            Ok(d) => d,
            Err(Error::Closed) => break,
            Err(e) => {
                tracing::warn!(queue = queue.name(), error = %e, "transmission queue read failed");
                stats.send_modify(|s| s.last_error = Some(e.to_string()));
                if w.pause(backoff.next_delay(), &[]).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let batch = take_batch(&mut consumer, first, max_batch);
        if w.forward(batch, &mut backoff).await.is_err() {
            break;
        }
    }
    stats.send_modify(|s| s.stopped = true);
}

/// `first` plus whatever else is ready at once, up to `max`.
fn take_batch(consumer: &mut Consumer, first: Delivery, max: usize) -> Vec<Held> {
    let mut batch = vec![first];
    while batch.len() < max {
        // `recv` is cancel-safe: a fetch left pending is resumed by the next call.
        match consumer.recv().now_or_never() {
            Some(Ok(d)) => batch.push(d),
            _ => break,
        }
    }
    batch
        .into_iter()
        .map(|delivery| Held {
            unwrapped: envelope::unwrap(delivery.body()),
            delivery,
        })
        .collect()
}

/// The cancellation token fired.
struct Stopped;

struct Worker<'a> {
    queue: &'a Queue,
    hop: &'a dyn NextHop,
    config: &'a ForwarderConfig,
    stats: &'a watch::Sender<ForwarderStats>,
    cancel: &'a CancellationToken,
}

impl Worker<'_> {
    /// Forwards one batch completely (retrying as long as it takes).
    async fn forward(&self, batch: Vec<Held>, backoff: &mut Backoff) -> Result<(), Stopped> {
        let now = mw_core::time::unix_ms();
        // Runs of consecutive messages for the same destination, in queue order.
        let mut runs: VecDeque<(String, Vec<(DeliveryTag, Message)>)> = VecDeque::new();
        let mut tags: Vec<DeliveryTag> = Vec::with_capacity(batch.len());
        let mut expired = Vec::new();
        let mut malformed = Vec::new();
        for h in batch {
            let tag = h.delivery.tag();
            let Some(u) = h.unwrapped else {
                malformed.push(tag);
                continue;
            };
            let Some(msg) = u.message(h.delivery.id(), now) else {
                expired.push(tag);
                continue;
            };
            tags.push(tag);
            match runs.back_mut() {
                Some((q, v)) if *q == u.queue => v.push((tag, msg)),
                _ => runs.push_back((u.queue, vec![(tag, msg)])),
            }
        }
        if !malformed.is_empty() {
            tracing::error!(
                queue = self.queue.name(),
                count = malformed.len(),
                "messages in a transmission queue are not envelopes; dead-lettering them"
            );
            self.settle(&malformed, Settle::Reject).await;
            self.stats
                .send_modify(|s| s.malformed += malformed.len() as u64);
        }
        if !expired.is_empty() {
            self.settle(&expired, Settle::Ack).await;
            self.stats
                .send_modify(|s| s.expired += expired.len() as u64);
        }
        while let Some((dest, run)) = runs.pop_front() {
            let msgs: Vec<Message> = run.iter().map(|(_, m)| m.clone()).collect();
            let run_tags: Vec<DeliveryTag> = run.iter().map(|(t, _)| *t).collect();
            let result = self.keep_alive(&tags, self.hop.send(&dest, msgs)).await?;
            match result {
                Ok(()) => {
                    backoff.reset();
                    let was_up = self.stats.borrow().hop_up;
                    if !was_up {
                        tracing::info!(queue = self.queue.name(), destination = %dest, "route up: the next hop takes messages");
                    }
                    self.settle(&run_tags, Settle::Ack).await;
                    tags.retain(|t| !run_tags.contains(t));
                    self.stats.send_modify(|s| {
                        s.forwarded += run_tags.len() as u64;
                        s.batches += 1;
                        s.hop_up = true;
                        s.last_error = None;
                    });
                }
                Err(HopError::Refused(reason)) if run.len() > 1 => {
                    // Find out which message is refused: resend one at a time.
                    tracing::debug!(queue = self.queue.name(), %reason, "batch refused; splitting");
                    for one in run.into_iter().rev() {
                        runs.push_front((dest.clone(), vec![one]));
                    }
                }
                Err(HopError::Refused(reason)) => {
                    tracing::error!(
                        queue = self.queue.name(),
                        destination = %dest,
                        %reason,
                        "next hop refused a message for good; dead-lettering it"
                    );
                    self.settle(&run_tags, Settle::Reject).await;
                    tags.retain(|t| !run_tags.contains(t));
                    self.stats.send_modify(|s| {
                        s.refused += 1;
                        s.hop_up = true;
                        s.last_error = Some(reason);
                    });
                }
                Err(HopError::Unavailable(reason)) => {
                    let (was_up, retried) = {
                        let s = self.stats.borrow();
                        (s.hop_up, s.retries > 0)
                    };
                    // Logged when the route goes down (or is found down at first), not
                    // on every retry.
                    if was_up || !retried {
                        tracing::warn!(queue = self.queue.name(), destination = %dest, %reason, "route down: next hop unavailable; retrying with backoff");
                    } else {
                        tracing::debug!(queue = self.queue.name(), %reason, "next hop unavailable; will retry");
                    }
                    self.stats.send_modify(|s| {
                        s.retries += 1;
                        s.hop_up = false;
                        s.last_error = Some(reason);
                    });
                    self.pause(backoff.next_delay(), &tags).await?;
                    runs.push_front((dest, run));
                }
            }
        }
        Ok(())
    }

    /// Runs `fut`, extending the visibility of `tags` every third of `hold` meanwhile.
    async fn keep_alive<T>(
        &self,
        tags: &[DeliveryTag],
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, Stopped> {
        let period = (self.config.hold / 3).max(Duration::from_millis(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(Stopped),
                r = &mut fut => return Ok(r),
                _ = tick.tick() => self.extend(tags),
            }
        }
    }

    /// Sleeps `d` (keeping `tags` invisible), unless cancelled.
    async fn pause(&self, d: Duration, tags: &[DeliveryTag]) -> Result<(), Stopped> {
        self.keep_alive(tags, tokio::time::sleep(d)).await
    }

    fn extend(&self, tags: &[DeliveryTag]) {
        for t in tags {
            // A stale tag means the message went back to the queue (we were too slow):
            // it will be resent, and stored once thanks to its id.
            let _ = self.queue.extend_visibility(*t, self.config.hold);
        }
    }

    /// Acks or rejects `tags`, all at once so they share one group commit.
    async fn settle(&self, tags: &[DeliveryTag], how: Settle) {
        let results = futures::future::join_all(tags.iter().map(|t| async move {
            match how {
                Settle::Ack => self.queue.ack(*t).await,
                Settle::Reject => self.queue.reject(*t).await,
            }
        }))
        .await;
        for r in results {
            if let Err(e) = r {
                // Not lost: the message is still in the queue and will be resent (or
                // the manager is closing). Duplicates are removed by id downstream.
                tracing::warn!(queue = self.queue.name(), error = %e, "settling a forwarded message failed");
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Settle {
    Ack,
    Reject,
}
