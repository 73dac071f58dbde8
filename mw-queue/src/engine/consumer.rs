//! [`Consumer`]: receives deliveries from one queue within a prefetch (credit)
//! limit.
//!
//! A consumer asks the index for up to `prefetch - outstanding` messages at
//! once, reads the bodies that are not cached in one blocking task, and hands
//! them out one by one. Messages it holds count against its credit until they
//! are settled or their visibility timeout expires.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::Notify;

use crate::engine::delivery::Delivery;
use crate::engine::index::Taken;
use crate::engine::shared::{lock, Shared};
use crate::error::{Error, Result};
use crate::message::DeliveryTag;
use crate::message::MessageId;
use crate::name::QueueName;
use crate::storage::record::{self, RecordView, SettleReason, StoredMessage};

/// Options of one consumer.
///
/// ```
/// let opts = mw_queue::ConsumerOptions { prefetch: 100, ..Default::default() };
/// assert_eq!(opts.visibility_timeout, None);
/// ```
#[derive(Debug, Clone)]
// Not `#[non_exhaustive]`: struct-update syntax (`..Default::default()`) is the
// intended way to build it, and that needs every field public and known.
pub struct ConsumerOptions {
    /// Most unsettled deliveries this consumer holds at once (its credit). Higher
    /// values amortize locking and disk reads over more messages; lower values share
    /// work more evenly between competing consumers. At least 1. Default: 10.
    pub prefetch: u32,
    /// Visibility timeout for this consumer's deliveries. `None`: the manager's
    /// `Config::visibility_timeout`. Default: `None`.
    pub visibility_timeout: Option<Duration>,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            prefetch: 10,
            visibility_timeout: None,
        }
    }
}

type Fetch = Pin<Box<dyn Future<Output = Result<Vec<Delivery>>> + Send>>;

/// Receives messages from one queue. Also a [`Stream`] of `Result<Delivery>` that
/// ends when the manager closes.
///
/// Dropping a consumer returns the messages it fetched but had not yet handed out
/// to the queue at once (without counting the attempt). Deliveries already handed
/// out stay in flight until settled or timed out.
#[must_use = "a consumer does nothing unless received from"]
pub struct Consumer {
    shared: Arc<Shared>,
    /// The queue's name as given (what [`queue`](Consumer::queue) shows).
    given: Arc<str>,
    /// The checked name; a consumer of an invalid name is not attached and every
    /// `recv` fails with the error.
    queue: Result<QueueName>,
    id: u64,
    notify: Arc<Notify>,
    options: ConsumerOptions,
    buffer: VecDeque<Delivery>,
    fetch: Option<Fetch>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.given)
            .field("id", &self.id)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        given: Arc<str>,
        queue: Result<QueueName>,
        mut options: ConsumerOptions,
    ) -> Consumer {
        options.prefetch = options.prefetch.max(1);
        let (id, notify) = match &queue {
            Ok(q) => lock(&shared.state).add_consumer(q),
            Err(_) => (0, Arc::new(Notify::new())),
        };
        Consumer {
            shared,
            given,
            queue,
            id,
            notify,
            options,
            buffer: VecDeque::new(),
            fetch: None,
        }
    }

    /// The queue this consumer reads.
    pub fn queue(&self) -> &str {
        &self.given
    }

    /// Waits for the next delivery.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the manager is closed, storage errors (for instance
    /// [`Error::Corrupt`] if a body cannot be read back), and
    /// [`Error::InvalidQueueName`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a fetch in progress is kept and resumed by the next call, so no
    /// message is lost or held back.
    pub async fn recv(&mut self) -> Result<Delivery> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery (the building block of `recv` and `Stream`).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Delivery>> {
        let queue = match &self.queue {
            Ok(q) => q,
            Err(e) => return Poll::Ready(Err(e.clone())),
        };
        loop {
            if let Some(d) = self.buffer.pop_front() {
                return Poll::Ready(Ok(d));
            }
            let fetch = self.fetch.get_or_insert_with(|| {
                Box::pin(fetch(
                    self.shared.clone(),
                    queue.clone(),
                    self.id,
                    self.notify.clone(),
                    self.options.clone(),
                ))
            });
            match fetch.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => {
                    self.fetch = None;
                    self.buffer.extend(r?);
                }
            }
        }
    }
}

impl Stream for Consumer {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.poll_recv(cx) {
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            other => other.map(Some),
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let Ok(queue) = &self.queue else {
            return; // never attached
        };
        // Drop an unfinished fetch first: its guard returns what it took.
        self.fetch = None;
        let tags: Vec<DeliveryTag> = self.buffer.drain(..).map(|d| d.tag).collect();
        lock(&self.shared.state).remove_consumer(queue, self.id, &tags);
    }
}

/// Returns taken-but-not-handed-out messages if a fetch is dropped or fails midway.
struct TakenGuard {
    shared: Arc<Shared>,
    queue: QueueName,
    consumer: u64,
    tags: Vec<DeliveryTag>,
}

impl Drop for TakenGuard {
    fn drop(&mut self) {
        if self.tags.is_empty() {
            return;
        }
        let mut st = lock(&self.shared.state);
        st.release(&self.queue, self.consumer, &self.tags);
    }
}

fn read_body(shared: &Shared, t: &Taken) -> Result<StoredMessage> {
    read_at(shared, t.tag.lsn, t.offset, t.len)
}

/// Reads the message enqueued at `lsn` (its record at `offset`, `len` bytes) back from
/// its segment. Blocking.
pub(crate) fn read_at(shared: &Shared, lsn: u64, offset: u32, len: u32) -> Result<StoredMessage> {
    let payload = shared.log.read(lsn, offset, len)?;
    match record::decode(&payload) {
        Ok((
            _,
            RecordView::Enqueue {
                header,
                body_offset,
                ..
            },
        )) => Ok(StoredMessage {
            header,
            body: Bytes::from(payload).slice(body_offset..),
        }),
        _ => Err(Error::corrupt(
            shared.log.segment_path(lsn),
            offset as u64,
            "expected an enqueue record",
        )),
    }
}

async fn fetch(
    shared: Arc<Shared>,
    queue: QueueName,
    consumer: u64,
    notify: Arc<Notify>,
    options: ConsumerOptions,
) -> Result<Vec<Delivery>> {
    let visibility = options.visibility_timeout.map(mw_core::time::millis);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        // Register interest before looking, so a message committed in between wakes us.
        notified.as_mut().enable();
        let (taken, refill) = {
            let now = shared.now_ms();
            let mut st = lock(&shared.state);
            let t = st.take(&queue, consumer, options.prefetch, visibility, now);
            st.flush(&shared.log);
            // Read spilled messages back once the in-memory head runs low; the refill
            // wakes this queue's consumers when it lands.
            let refill = st.refill_job(&queue, None);
            (t, refill)
        };
        if let Some(job) = refill {
            drop(shared.spawn_refill(job));
        }
        let taken = taken?;
        if taken.is_empty() {
            notified.await;
            continue;
        }
        let mut guard = TakenGuard {
            shared: shared.clone(),
            queue: queue.clone(),
            consumer,
            tags: taken.iter().map(|t| t.tag).collect(),
        };
        let mut fetched: Vec<Option<StoredMessage>> =
            taken.iter().map(|t| t.cached.clone()).collect();
        if fetched.iter().any(Option::is_none) {
            // Disk reads happen on the blocking pool, never on a tokio worker.
            let s = shared.clone();
            let (taken_back, read) = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for (i, t) in taken.iter().enumerate() {
                    if t.cached.is_none() {
                        out.push((i, read_body(&s, t)));
                    }
                }
                (taken, out)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            drop(taken_back);
            for (i, r) in read {
                fetched[i] = Some(r?);
            }
        }
        let now = shared.now_ms();
        let mut out = Vec::with_capacity(fetched.len());
        let mut expired = Vec::new();
        for (tag, f) in guard.tags.iter().zip(fetched) {
            let f = f.expect("filled above");
            if f.header.expires_at_ms != 0 && f.header.expires_at_ms <= now {
                expired.push(*tag);
                continue;
            }
            out.push(Delivery {
                shared: shared.clone(),
                queue: queue.clone(),
                tag: *tag,
                id: MessageId(f.header.id),
                body: f.body,
                sent_at_ms: f.header.timestamp_ms,
            });
        }
        guard.tags.clear();
        if !expired.is_empty() {
            let mut st = lock(&shared.state);
            for tag in expired {
                // Nobody waits for the expiry record: it rides with the next batch.
                let _ = st.settle(&queue, tag, SettleReason::Expired);
            }
            st.flush(&shared.log);
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
}
