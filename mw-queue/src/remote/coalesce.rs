//! Client-side coalescing: concurrent single operations on one connection and queue
//! (sends, acks) merged into batch calls.
//!
//! While fewer than [`Limits::max_in_flight`] calls are outstanding, an operation goes
//! out at once, alone, as the plain unary call (no added latency and the same wire
//! traffic as without coalescing when the client is idle). Once that many are
//! outstanding, further operations wait in a FIFO; whenever a call returns, its slot
//! takes what waits (up to [`Limits::max_items`] items or [`Limits::max_bytes`]) as one
//! batch call. So batches grow with the load, with no timer: natural batching.
//!
//! Batch calls run on spawned tasks, not inside any caller's future: a caller that is
//! cancelled never cancels the call carrying other callers' items. Each caller gets its
//! own item's result through a oneshot. An item whose caller went away before its batch
//! was formed is dropped unsent; once sent, its fate is the call's (the caller is gone
//! and cannot learn it).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use mw_rpc::RpcError;
use tokio::sync::oneshot;

use super::error::{RemoteError, RemoteResult};

/// Bounds of one coalescer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Calls (unary or batch) outstanding at once on this connection and queue.
    pub max_in_flight: usize,
    /// Most items in one batch call.
    pub max_items: usize,
    /// Most bytes (by the item's weight) in one batch call; a single heavier item still
    /// goes, alone.
    pub max_bytes: usize,
}

/// An item waiting for a batch, and where its result goes.
pub(crate) struct Pending<T, R> {
    item: T,
    tx: oneshot::Sender<RemoteResult<R>>,
}

struct Inner<T, R> {
    /// Items waiting for a slot. Non-empty only while all slots are taken.
    waiting: VecDeque<Pending<T, R>>,
    /// Calls outstanding (slots taken).
    in_flight: usize,
}

/// Merges concurrent operations of one kind into batch calls (see the module docs).
pub(crate) struct Coalescer<T, R> {
    inner: Mutex<Inner<T, R>>,
    limits: Limits,
    weight: fn(&T) -> usize,
}

impl<T, R> std::fmt::Debug for Coalescer<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("Coalescer")
            .field("waiting", &g.waiting.len())
            .field("in_flight", &g.in_flight)
            .field("limits", &self.limits)
            .finish()
    }
}

/// What [`Coalescer::admit`] decided.
enum Admit<T, R> {
    /// A slot was free: the caller makes the unary call itself, holding the slot.
    Alone(T),
    /// All slots are taken: the item waits for a batch.
    Queued(oneshot::Receiver<RemoteResult<R>>),
}

impl<T, R> Coalescer<T, R> {
    pub(crate) fn new(limits: Limits, weight: fn(&T) -> usize) -> Self {
        Coalescer {
            inner: Mutex::new(Inner {
                waiting: VecDeque::new(),
                in_flight: 0,
            }),
            limits: Limits {
                max_in_flight: limits.max_in_flight.max(1),
                max_items: limits.max_items.max(1),
                max_bytes: limits.max_bytes,
            },
            weight,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T, R>> {
        // Critical sections only move items between containers; a panic inside one
        // cannot leave the queue half-updated in a way that matters more than the panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(&self, item: T) -> Admit<T, R> {
        let mut g = self.lock();
        if g.in_flight < self.limits.max_in_flight {
            // Nothing waits while a slot is free, so this does not overtake anything.
            debug_assert!(g.waiting.is_empty());
            g.in_flight += 1;
            return Admit::Alone(item);
        }
        let (tx, rx) = oneshot::channel();
        g.waiting.push_back(Pending { item, tx });
        Admit::Queued(rx)
    }

    /// For a slot whose call finished: the next batch to send on it, or `None` (the
    /// slot is released).
    fn next_batch(&self) -> Option<Vec<Pending<T, R>>> {
        let mut g = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        while batch.len() < self.limits.max_items {
            let Some(front) = g.waiting.front() else {
                break;
            };
            if front.tx.is_closed() {
                // Its caller went away before it was sent: drop it unsent.
                g.waiting.pop_front();
                continue;
            }
            let w = (self.weight)(&front.item);
            if !batch.is_empty() && bytes.saturating_add(w) > self.limits.max_bytes {
                break;
            }
            bytes = bytes.saturating_add(w);
            batch.extend(g.waiting.pop_front());
        }
        if batch.is_empty() {
            g.in_flight -= 1;
            None
        } else {
            Some(batch)
        }
    }
}

/// The calls behind one coalescer: the unary call and the batch call.
pub(crate) trait Batched<T, R>: Send + Sync + 'static
where
    T: Send + 'static,
    R: Send + 'static,
{
    /// The coalescer of this kind of operation.
    fn coalescer(&self) -> &Coalescer<T, R>;
    /// The operation alone.
    fn call_one(&self, item: T) -> impl Future<Output = RemoteResult<R>> + Send + '_;
    /// Many at once: the outer error fails them all, otherwise one result per item,
    /// in order.
    fn call_many(
        &self,
        items: Vec<T>,
    ) -> impl Future<Output = RemoteResult<Vec<RemoteResult<R>>>> + Send + '_;
}

/// Runs `item` through `link`'s coalescer and returns its own result.
pub(crate) async fn submit<T, R, L>(link: &Arc<L>, item: T) -> RemoteResult<R>
where
    T: Send + 'static,
    R: Send + 'static,
    L: Batched<T, R>,
{
    match link.coalescer().admit(item) {
        Admit::Alone(item) => {
            // Released (and handed to what waits) however this ends, cancellation too.
            let _slot = Slot::new(link.clone());
            link.call_one(item).await
        }
        Admit::Queued(rx) => match rx.await {
            Ok(r) => r,
            // The task carrying it died (a panic, or the runtime shutting down).
            Err(_) => Err(RemoteError::Rpc(RpcError::Internal(
                "the batch carrying this operation was abandoned".into(),
            ))),
        },
    }
}

/// A taken slot. Dropping it passes the slot to what waits (on a new task) or
/// releases it.
struct Slot<T, R, L>
where
    T: Send + 'static,
    R: Send + 'static,
    L: Batched<T, R>,
{
    link: Option<Arc<L>>,
    _kind: std::marker::PhantomData<fn(T) -> R>,
}

impl<T, R, L> Slot<T, R, L>
where
    T: Send + 'static,
    R: Send + 'static,
    L: Batched<T, R>,
{
    fn new(link: Arc<L>) -> Self {
        Slot {
            link: Some(link),
            _kind: std::marker::PhantomData,
        }
    }
}

impl<T, R, L> Drop for Slot<T, R, L>
where
    T: Send + 'static,
    R: Send + 'static,
    L: Batched<T, R>,
{
    fn drop(&mut self) {
        let Some(link) = self.link.take() else {
            return;
        };
        if let Some(batch) = link.coalescer().next_batch() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(drive(link, batch));
                }
                // No runtime (it is gone): dropping the batch fails its callers.
                Err(_) => drop(batch),
            }
        }
    }
}

/// Sends `batch` on a taken slot, then whatever waits, until nothing does.
async fn drive<T, R, L>(link: Arc<L>, mut batch: Vec<Pending<T, R>>)
where
    T: Send + 'static,
    R: Send + 'static,
    L: Batched<T, R>,
{
    // If this task panics or is dropped, the slot still passes on.
    let mut slot = Slot::new(link.clone());
    loop {
        run_batch(&*link, batch).await;
        match link.coalescer().next_batch() {
            Some(b) => batch = b,
            None => {
                // `next_batch` released the slot.
                slot.link = None;
                return;
            }
        }
    }
}

async fn run_batch<T, R, L>(link: &L, batch: Vec<Pending<T, R>>)
where
    T: Send + 'static,
    R: Send + 'static,
    L: Batched<T, R>,
{
    let (items, txs): (Vec<T>, Vec<_>) = batch.into_iter().map(|p| (p.item, p.tx)).unzip();
    if items.len() == 1 {
        let item = items.into_iter().next().expect("one item");
        let r = link.call_one(item).await;
        if let Some(tx) = txs.into_iter().next() {
            let _ = tx.send(r);
        }
        return;
    }
    let n = items.len();
    match link.call_many(items).await {
        Ok(results) if results.len() == n => {
            for (tx, r) in txs.into_iter().zip(results) {
                // A caller that went away does not take its result.
                let _ = tx.send(r);
            }
        }
        Ok(results) => {
            let e = RemoteError::Rpc(RpcError::Protocol(format!(
                "batch of {n} answered with {} results",
                results.len()
            )));
            fail_all(txs, e);
        }
        Err(e) => fail_all(txs, e),
    }
}

fn fail_all<R>(txs: Vec<oneshot::Sender<RemoteResult<R>>>, e: RemoteError) {
    let mut txs = txs.into_iter();
    let last = txs.next_back();
    for tx in txs {
        let _ = tx.send(Err(share(&e)));
    }
    if let Some(tx) = last {
        let _ = tx.send(Err(e));
    }
}

/// A copy of `e` for another caller of the same failed batch. Transport errors (which
/// hold an `io::Error`) are copied as `Disconnected`, which is what they mean to a call.
pub(crate) fn share(e: &RemoteError) -> RemoteError {
    match e {
        RemoteError::Refused(q) => RemoteError::Refused(q.clone()),
        RemoteError::LimitReached(n) => RemoteError::LimitReached(*n),
        RemoteError::Connect { addr, .. } => RemoteError::Connect {
            addr: addr.clone(),
            source: RpcError::Disconnected,
        },
        RemoteError::Rpc(r) => RemoteError::Rpc(match r {
            RpcError::Timeout(d) => RpcError::Timeout(*d),
            RpcError::Cancelled => RpcError::Cancelled,
            RpcError::UnknownService(s) => RpcError::UnknownService(s.clone()),
            RpcError::UnknownMethod(s) => RpcError::UnknownMethod(s.clone()),
            RpcError::VersionMismatch(s) => RpcError::VersionMismatch(s.clone()),
            RpcError::BadArguments(s) => RpcError::BadArguments(s.clone()),
            RpcError::Protocol(s) => RpcError::Protocol(s.clone()),
            RpcError::Overloaded(s) => RpcError::Overloaded(s.clone()),
            RpcError::ShuttingDown => RpcError::ShuttingDown,
            RpcError::Internal(s) => RpcError::Internal(s.clone()),
            RpcError::Unauthenticated(s) => RpcError::Unauthenticated(s.clone()),
            RpcError::PermissionDenied(s) => RpcError::PermissionDenied(s.clone()),
            // Disconnected, Transport and future variants.
            _ => RpcError::Disconnected,
        }),
    }
}
