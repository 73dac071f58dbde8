//! Routing: [`RoutingTable`] (queue name or prefix → next-hop address) and
//! [`Router`], a queue manager that stores messages for queues it does not own
//! in a transmission queue per hop and runs a [`Forwarder`] for each.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::envelope;
use super::forwarder::{Forwarder, ForwarderConfig, ForwarderStats};
use super::hop::{Connect, HopError, NextHop};
use crate::engine::manager::QueueManager;
use crate::error::Result;
use crate::message::{Message, MessageId};
use crate::name::QueueName;
use crate::remote::SendRoute;

/// Prefix of transmission queue names: the messages waiting for hop `addr` are in
/// queue `xmit.<addr>`.
pub const XMIT_PREFIX: &str = "xmit.";

/// The transmission queue of the hop at `addr`.
///
/// ```
/// assert_eq!(mw_queue::forward::xmit_queue("127.0.0.1:7802"), "xmit.127.0.0.1:7802");
/// ```
pub fn xmit_queue(addr: &str) -> String {
    format!("{XMIT_PREFIX}{addr}")
}

/// Which queue names a route covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueuePattern {
    /// Exactly this name (`orders.eu`).
    Exact(String),
    /// Every name starting with this prefix (`orders.*` is `Prefix("orders.")`;
    /// `*` alone is `Prefix("")`, a default route).
    Prefix(String),
}

impl QueuePattern {
    /// Whether `queue` matches.
    pub fn matches(&self, queue: &str) -> bool {
        match self {
            QueuePattern::Exact(n) => n == queue,
            QueuePattern::Prefix(p) => queue.starts_with(p.as_str()),
        }
    }

    /// How specific the pattern is: longer literal text wins, and an exact name
    /// beats a prefix of the same length.
    fn rank(&self) -> (usize, bool) {
        match self {
            QueuePattern::Exact(n) => (n.len(), true),
            QueuePattern::Prefix(p) => (p.len(), false),
        }
    }
}

impl fmt::Display for QueuePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueuePattern::Exact(n) => f.write_str(n),
            QueuePattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// One route: queues matching `pattern` are forwarded to the queue manager at `hop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The queues covered.
    pub pattern: QueuePattern,
    /// The next hop's address (`HOST:PORT` or `unix:PATH`), as the hop's
    /// [`Connect`] understands it.
    pub hop: String,
}

/// A route string that does not parse.
///
/// Its own type rather than a variant of the crate's [`Error`](crate::Error): it comes from
/// configuration parsing, never from queue operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid route {input:?}: {reason} (expected PATTERN=ADDRESS, e.g. 'orders.*=127.0.0.1:7802')"
)]
pub struct ParseRouteError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for Route {
    type Err = ParseRouteError;

    /// Parses `PATTERN=ADDRESS`: `orders.eu=host:7802` (one queue), `orders.*=…`
    /// (every queue starting `orders.`), `*=…` (every queue without a more
    /// specific route).
    fn from_str(s: &str) -> Result<Route, ParseRouteError> {
        let err = |reason| ParseRouteError {
            input: s.to_string(),
            reason,
        };
        let (pattern, hop) = s.split_once('=').ok_or_else(|| err("missing '='"))?;
        let (pattern, hop) = (pattern.trim(), hop.trim());
        if hop.is_empty() {
            return Err(err("empty address"));
        }
        if xmit_queue(hop).len() > 255 {
            return Err(err("address longer than 250 bytes"));
        }
        let pattern = match pattern.strip_suffix('*') {
            Some(p) if p.contains('*') => return Err(err("'*' is only allowed at the end")),
            Some(p) => QueuePattern::Prefix(p.to_string()),
            None if pattern.is_empty() => return Err(err("empty pattern")),
            None if pattern.contains('*') => return Err(err("'*' is only allowed at the end")),
            None if pattern.len() > 255 => return Err(err("queue name longer than 255 bytes")),
            None => QueuePattern::Exact(pattern.to_string()),
        };
        Ok(Route {
            pattern,
            hop: hop.to_string(),
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.pattern, self.hop)
    }
}

/// Queue name patterns → next-hop addresses. The most specific matching route
/// wins (longest literal text; an exact name beats a prefix); a queue no route
/// matches is local. Transmission queues (`xmit.*`) are always local.
///
/// ```
/// use mw_queue::forward::RoutingTable;
/// let table: RoutingTable = ["orders.*=10.0.0.2:7800", "orders.eu.*=10.0.0.3:7800"]
///     .iter()
///     .map(|r| r.parse())
///     .collect::<Result<_, _>>()?;
/// assert_eq!(table.lookup("orders.us.1"), Some("10.0.0.2:7800"));
/// assert_eq!(table.lookup("orders.eu.1"), Some("10.0.0.3:7800"));
/// assert_eq!(table.lookup("billing"), None);
/// # Ok::<(), mw_queue::forward::ParseRouteError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingTable {
    routes: Vec<Route>,
}

impl RoutingTable {
    /// An empty table: every queue is local.
    pub fn new() -> RoutingTable {
        RoutingTable::default()
    }

    /// Adds a route (a later route for the same pattern replaces the earlier one).
    pub fn add(&mut self, route: Route) {
        self.routes.retain(|r| r.pattern != route.pattern);
        self.routes.push(route);
    }

    /// Adds `PATTERN=ADDRESS`.
    ///
    /// # Errors
    ///
    /// [`ParseRouteError`] if `route` does not parse.
    pub fn with(mut self, route: &str) -> Result<RoutingTable, ParseRouteError> {
        self.add(route.parse()?);
        Ok(self)
    }

    /// The next hop for `queue`, or `None` if it is local.
    pub fn lookup(&self, queue: &str) -> Option<&str> {
        if queue.starts_with(XMIT_PREFIX) {
            return None;
        }
        self.routes
            .iter()
            .filter(|r| r.pattern.matches(queue))
            .max_by_key(|r| r.pattern.rank())
            .map(|r| r.hop.as_str())
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Every distinct next-hop address.
    pub fn hops(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.routes.iter().map(|r| r.hop.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl FromIterator<Route> for RoutingTable {
    fn from_iter<I: IntoIterator<Item = Route>>(iter: I) -> Self {
        let mut t = RoutingTable::new();
        for r in iter {
            t.add(r);
        }
        t
    }
}

/// One hop's transmission queue as [`Router::hops`] reports it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HopStatus {
    /// The hop's address.
    pub hop: String,
    /// Its transmission queue.
    pub queue: String,
    /// Messages waiting for the hop (or held by its forwarder).
    pub pending: u64,
    /// Messages dead-lettered (refused by the hop).
    pub dead_letters: u64,
    /// The forwarder's counters.
    pub stats: ForwarderStats,
}

/// A queue manager that forwards the queues it does not own (store and forward).
///
/// [`send`](Router::send) looks the queue up in the [`RoutingTable`]: a local
/// queue gets the message directly; a routed one is stored, durably, in the
/// transmission queue of its hop (`xmit.<hop>`, see [`xmit_queue`]) together
/// with its destination queue name, and `send` returns then. One [`Forwarder`]
/// per hop moves the transmission queue on. The next hop is typically another
/// router, so a message may pass any number of them (sender → R1 → R2 →
/// receiver), each durable before it confirms to the one before.
///
/// On start, a forwarder is also started for every non-empty transmission queue
/// left in the manager from an earlier configuration, so nothing is stranded
/// when a route is removed.
///
/// Transmission queues count deliveries like any other queue: a message
/// redelivered [`Config::max_attempts`](crate::Config::max_attempts) times
/// because the forwarder crashed or was restarted that often while holding it
/// goes to the transmission queue's dead-letter queue. A manager that routes
/// should run with `max_attempts: None` or have that dead-letter queue watched.
///
/// Routes must not form a loop (R1 → R2 → R1 for the same queue): the message
/// would come back to a manager whose dedup window already holds its id, which
/// acknowledges it without storing it again, so it would be lost. Nothing
/// detects loops today.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use mw_queue::forward::{NextHop, Router, RoutingTable};
/// use mw_queue::{Config, ConsumerOptions, Message, QueueManager};
///
/// let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
/// let receiver = QueueManager::open(d2.path(), Config::default()).await?;
/// let r = receiver.clone();
/// // An in-process "network": the hop named "receiver" is that queue manager.
/// let connect = move |_addr: &str| -> Arc<dyn NextHop> { Arc::new(r.clone()) };
/// let table = RoutingTable::new().with("orders.*=receiver")?;
/// let router = Router::start(
///     QueueManager::open(d1.path(), Config::default()).await?,
///     table,
///     connect,
///     Default::default(),
/// );
/// router.send("orders.eu", Message::new("one widget")).await?; // durable in xmit.receiver
/// let mut c = receiver.queue("orders.eu").consumer(ConsumerOptions::default());
/// let d = c.recv().await?;
/// assert_eq!(&d.body()[..], b"one widget");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    qm: QueueManager,
    table: RoutingTable,
    forwarders: Mutex<BTreeMap<String, Forwarder>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("dir", &self.inner.qm.dir())
            .field("table", &self.inner.table)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Starts a router over `qm`: a forwarder for every hop in `table`, reaching it
    /// through `connect`, and one for every transmission queue already holding
    /// messages. Must be called inside a tokio runtime.
    pub fn start(
        qm: QueueManager,
        table: RoutingTable,
        connect: impl Connect,
        config: ForwarderConfig,
    ) -> Router {
        let mut hops: Vec<String> = table.hops().into_iter().map(str::to_string).collect();
        for (name, stats) in qm.queues() {
            if let Some(hop) = name.strip_prefix(XMIT_PREFIX) {
                // Dead-letter queues of transmission queues hold refused messages:
                // they are for an operator, not for forwarding.
                let is_dlq = hop.ends_with(".dlq");
                if !is_dlq && stats.depth + stats.in_flight > 0 && !hops.iter().any(|h| h == hop) {
                    tracing::info!(
                        hop,
                        "forwarding a transmission queue left from an earlier configuration"
                    );
                    hops.push(hop.to_string());
                }
            }
        }
        let forwarders = hops
            .into_iter()
            .map(|hop| {
                let f = Forwarder::spawn(
                    qm.queue(&xmit_queue(&hop)),
                    connect.connect(&hop),
                    config.clone(),
                );
                (hop, f)
            })
            .collect();
        Router {
            inner: Arc::new(Inner {
                qm,
                table,
                forwarders: Mutex::new(forwarders),
            }),
        }
    }

    /// The underlying queue manager.
    pub fn queue_manager(&self) -> &QueueManager {
        &self.inner.qm
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.inner.table
    }

    /// The next hop of `queue`, or `None` if it is local.
    pub fn route(&self, queue: &str) -> Option<&str> {
        self.inner.table.lookup(queue)
    }

    /// Sends `msg` to `queue`: into the local queue, or, for a routed queue, into
    /// the transmission queue of its hop. Returns the message id once the message
    /// is durable **here** (not at the destination: only delivery to the queue is
    /// guaranteed, and that eventually). A producer-chosen id already seen in the
    /// dedup window is acknowledged but stored once, as for [`Queue::send`](crate::Queue::send).
    ///
    /// # Errors
    ///
    /// As for [`Queue::send`](crate::Queue::send); a routed message's body counts
    /// its envelope (2 + queue name + 16 bytes) against the size limit.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe, like [`Queue::send`](crate::Queue::send): resend with the
    /// same producer-chosen id.
    pub async fn send(&self, queue: &str, msg: Message) -> Result<MessageId> {
        QueueName::new(queue)?;
        match self.inner.table.lookup(queue) {
            None => self.inner.qm.queue(queue).send(msg).await,
            Some(hop) => {
                let wrapped = envelope::wrap(queue, msg, mw_core::time::unix_ms());
                self.inner.qm.queue(&xmit_queue(hop)).send(wrapped).await
            }
        }
    }

    /// Sends many messages to `queue` at once: in order, in one group commit, to the local
    /// queue or (routed) to its hop's transmission queue. One result per message, in order.
    pub async fn send_batch(&self, queue: &str, msgs: Vec<Message>) -> Vec<Result<MessageId>> {
        if let Err(e) = QueueName::new(queue) {
            return msgs.iter().map(|_| Err(e.clone())).collect();
        }
        match self.inner.table.lookup(queue) {
            None => self.inner.qm.queue(queue).send_batch(msgs).await,
            Some(hop) => {
                let now = mw_core::time::unix_ms();
                let wrapped = msgs
                    .into_iter()
                    .map(|m| envelope::wrap(queue, m, now))
                    .collect();
                self.inner
                    .qm
                    .queue(&xmit_queue(hop))
                    .send_batch(wrapped)
                    .await
            }
        }
    }

    /// Every hop with its transmission queue and forwarder counters, by address.
    pub fn hops(&self) -> Vec<HopStatus> {
        let fw = self
            .inner
            .forwarders
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        fw.iter()
            .map(|(hop, f)| {
                let q = f.queue().stats();
                HopStatus {
                    hop: hop.clone(),
                    queue: f.queue().name().to_string(),
                    pending: q.depth + q.in_flight,
                    dead_letters: q.dead_letters,
                    stats: f.stats(),
                }
            })
            .collect()
    }

    /// Messages waiting in every transmission queue.
    pub fn pending(&self) -> u64 {
        self.hops().iter().map(|h| h.pending).sum()
    }

    /// Waits until every transmission queue is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](crate::Error::Closed) if a forwarder stopped first.
    pub async fn drained(&self) -> Result<()> {
        let hops: Vec<String> = {
            let fw = self
                .inner
                .forwarders
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            fw.keys().cloned().collect()
        };
        for hop in hops {
            // Wait on each forwarder in turn without holding the lock across awaits.
            let stats_rx = {
                let fw = self
                    .inner
                    .forwarders
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                fw.get(&hop).map(|f| (f.queue().clone(), f.stats.clone()))
            };
            if let Some((queue, rx)) = stats_rx {
                super::forwarder::wait_drained(&queue, rx).await?;
            }
        }
        Ok(())
    }

    /// Waits until the forwarder of `hop` reports stats satisfying `pred` (for
    /// instance `|s| s.retries > 0`: it has met the hop down), and returns them.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](crate::Error::Closed) if there is no forwarder for `hop` or
    /// it stopped first.
    pub async fn wait_for_hop(
        &self,
        hop: &str,
        pred: impl FnMut(&ForwarderStats) -> bool,
    ) -> Result<ForwarderStats> {
        let rx = {
            let fw = self
                .inner
                .forwarders
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            fw.get(hop).map(|f| f.stats.clone())
        };
        match rx {
            Some(rx) => super::forwarder::wait_stats(rx, pred).await,
            None => Err(crate::Error::Closed),
        }
    }

    /// Stops every forwarder (messages they held are resent after a restart).
    pub async fn shutdown(&self) {
        let fws: Vec<Forwarder> = {
            let mut fw = self
                .inner
                .forwarders
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *fw).into_values().collect()
        };
        for f in fws {
            f.shutdown().await;
        }
    }
}

/// A router as a next hop (in-process relays): each message goes through
/// [`Router::send`], so it is forwarded further if its queue is routed.
impl NextHop for Router {
    fn send<'a>(
        &'a self,
        queue: &'a str,
        msgs: Vec<Message>,
    ) -> BoxFuture<'a, Result<(), HopError>> {
        Box::pin(async move {
            for m in msgs {
                Router::send(self, queue, m)
                    .await
                    .map_err(|e| HopError::from_queue_error(&e))?;
            }
            Ok(())
        })
    }
}

/// A broker's `mw.queue` service with a router behind it: a send to a routed queue is
/// stored in that hop's transmission queue (and answered once durable there);
/// everything else is the router's queue manager, served as without routes.
///
/// ```no_run
/// # async fn f(router: mw_queue::forward::Router) -> Result<(), mw_rpc::RpcError> {
/// use mw_queue::remote::{QueueServiceImpl, QueueServiceServer};
/// let service = QueueServiceImpl::new(router.queue_manager().clone()).with_route(router);
/// let server = mw_rpc::Server::builder()
///     .add(QueueServiceServer::new(service))
///     .build()
///     .spawn("127.0.0.1:7801")
///     .await?;
/// # Ok(()) }
/// ```
impl SendRoute for Router {
    fn is_routed(&self, queue: &str) -> bool {
        self.route(queue).is_some()
    }

    fn send<'a>(&'a self, queue: &'a str, msg: Message) -> BoxFuture<'a, Result<MessageId>> {
        Box::pin(Router::send(self, queue, msg))
    }

    fn send_batch<'a>(
        &'a self,
        queue: &'a str,
        msgs: Vec<Message>,
    ) -> BoxFuture<'a, Vec<Result<MessageId>>> {
        Box::pin(Router::send_batch(self, queue, msgs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_print() {
        let r: Route = "orders.*=127.0.0.1:7802".parse().unwrap();
        assert_eq!(r.pattern, QueuePattern::Prefix("orders.".into()));
        assert_eq!(r.hop, "127.0.0.1:7802");
        assert_eq!(r.to_string(), "orders.*=127.0.0.1:7802");
        let r: Route = "billing = unix:/tmp/b.sock".parse().unwrap();
        assert_eq!(r.pattern, QueuePattern::Exact("billing".into()));
        assert_eq!(r.hop, "unix:/tmp/b.sock");
        let r: Route = "*=h:1".parse().unwrap();
        assert_eq!(r.pattern, QueuePattern::Prefix(String::new()));
        for bad in ["orders", "=h:1", "orders.*=", "a*b=h:1", "a**=h:1"] {
            assert!(bad.parse::<Route>().is_err(), "{bad}");
        }
    }

    #[test]
    fn most_specific_route_wins_and_xmit_queues_stay_local() {
        let t = RoutingTable::new()
            .with("*=default")
            .unwrap()
            .with("orders.*=a")
            .unwrap()
            .with("orders.eu=b")
            .unwrap()
            .with("orders.eu*=c")
            .unwrap();
        assert_eq!(t.lookup("orders.eu"), Some("b"));
        assert_eq!(t.lookup("orders.eu2"), Some("c"));
        assert_eq!(t.lookup("orders.us"), Some("a"));
        assert_eq!(t.lookup("billing"), Some("default"));
        assert_eq!(t.lookup("xmit.a"), None);
        assert_eq!(t.hops(), vec!["a", "b", "c", "default"]);
    }

    #[test]
    fn a_later_route_for_the_same_pattern_replaces_the_earlier() {
        let t = RoutingTable::new()
            .with("q=a")
            .unwrap()
            .with("q=b")
            .unwrap();
        assert_eq!(t.routes().len(), 1);
        assert_eq!(t.lookup("q"), Some("b"));
    }
}
