//! The shared state of one simulated network: endpoints, open connections, cuts,
//! fault profiles, the log; binding by `sim:` address and registering new connections
//! (the relay in [`super::relay`] carries them).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dice::Draws;
use super::events::{Direction, Fault, FaultEvent, FaultStats};
use super::faults::{fires, Faults};
use super::topology::Topology;
use crate::error::CoreError;
use crate::frame::FrameKind;

/// Connections a simulated listener queues before `connect` waits (like a TCP backlog).
const BACKLOG: usize = 128;
/// Events the log keeps; later ones are only counted ([`FaultStats::unlogged`]). About
/// 10 MB at most: plenty for a test, bounded for a long-running simulation.
pub(crate) const LOG_CAPACITY: usize = 100_000;

/// What a listener receives: the server's end of a connection and a description of it.
pub(crate) type Incoming = (DuplexStream, String);

/// One simulated network, shared by its [`FaultNet`](super::FaultNet) handles, its
/// listeners and its connections' relays.
#[derive(Debug)]
pub(crate) struct Net {
    pub name: String,
    pub seed: u64,
    state: Mutex<NetState>,
}

#[derive(Debug, Default)]
struct NetState {
    /// Listening endpoints by name.
    endpoints: HashMap<String, Endpoint>,
    next_bind: u64,
    topology: Topology,
    faults: Faults,
    /// Per-link profiles: (sender, receiver, profile). Few, so a list.
    link_faults: Vec<(String, String, Faults)>,
    /// Open connections by key, for `kill_endpoint`.
    conns: HashMap<u64, OpenConn>,
    next_conn: u64,
    /// Connections opened so far from each endpoint to each other one: the next one's number.
    opened: HashMap<(String, String), u64>,
    log: Vec<FaultEvent>,
    stats: FaultStats,
}

#[derive(Debug)]
struct Endpoint {
    bind_id: u64,
    tx: mpsc::Sender<Incoming>,
}

#[derive(Debug)]
struct OpenConn {
    from: String,
    to: String,
    kill: CancellationToken,
}

/// One connection as the relay knows it.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub from: String,
    pub to: String,
    /// The connection's number among those from `from` to `to`.
    pub connection: u64,
    /// The connection's key in [`NetState::conns`].
    key: u64,
}

impl Link {
    /// (sender, receiver) of a frame travelling in `direction`.
    pub fn ends(&self, direction: Direction) -> (&str, &str) {
        match direction {
            Direction::Forward => (&self.from, &self.to),
            Direction::Backward => (&self.to, &self.from),
        }
    }
}

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Verdict {
    pub lost: bool,
    pub duplicate: bool,
    pub delay: Option<Duration>,
    /// Hold it back until the next frame (or `reorder_window`).
    pub reorder: bool,
    pub reorder_window: Duration,
}

type Registry = Mutex<HashMap<String, Weak<Net>>>;

fn registry() -> &'static Registry {
    static NETS: OnceLock<Registry> = OnceLock::new();
    NETS.get_or_init(Default::default)
}

fn lock_registry() -> MutexGuard<'static, HashMap<String, Weak<Net>>> {
    // Only inserts and removes happen under this lock; a poisoned map is still whole.
    registry().lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks a network or endpoint name: non-empty, and free of the address separators.
pub(crate) fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("empty {what} name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '>') || c.is_whitespace())
    {
        return Err(format!("{what} name {name:?} contains {c:?}"));
    }
    Ok(())
}

impl Net {
    /// Creates and registers a network.
    pub fn create(name: &str, seed: u64) -> Result<Arc<Net>, CoreError> {
        check_name(name, "network").map_err(|reason| CoreError::BadAddress {
            addr: format!("sim:{name}"),
            reason,
        })?;
        let mut reg = lock_registry();
        if reg.get(name).is_some_and(|w| w.strong_count() > 0) {
            return Err(CoreError::Bind {
                addr: format!("sim:{name}"),
                source: io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "a simulated network by that name exists",
                ),
            });
        }
        let net = Arc::new(Net {
            name: name.to_string(),
            seed,
            state: Mutex::new(NetState::default()),
        });
        reg.insert(name.to_string(), Arc::downgrade(&net));
        Ok(net)
    }

    fn find(name: &str) -> Option<Arc<Net>> {
        lock_registry().get(name).and_then(Weak::upgrade)
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        // Every critical section leaves the state whole (no partial updates across a
        // panic point), so a poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn partition(&self, side_a: &[&str], side_b: &[&str]) {
        self.lock().topology.partition(side_a, side_b);
    }

    pub fn isolate(&self, endpoint: &str) {
        self.lock().topology.isolate(endpoint);
    }

    pub fn heal(&self) {
        self.lock().topology.heal();
    }

    pub fn unreachable(&self, from: &str, to: &str) -> Option<String> {
        self.lock().topology.unreachable(from, to)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    pub fn set_link_faults(&self, sender: &str, receiver: &str, faults: Faults) {
        let mut st = self.lock();
        st.link_faults
            .retain(|(s, r, _)| !(s == sender && r == receiver));
        st.link_faults
            .push((sender.to_string(), receiver.to_string(), faults));
    }

    pub fn clear_faults(&self) {
        let mut st = self.lock();
        st.faults = Faults::default();
        st.link_faults.clear();
    }

    /// Closes every connection to or from `endpoint` and unbinds its listener.
    pub fn kill_endpoint(&self, endpoint: &str) -> usize {
        let mut st = self.lock();
        // Dropping the sender ends the listener's queue: its accept waits forever, as
        // a dead process's would, and the name is free for a restarted server.
        st.endpoints.remove(endpoint);
        let doomed: Vec<u64> = st
            .conns
            .iter()
            .filter(|(_, c)| c.from == endpoint || c.to == endpoint)
            .map(|(k, _)| *k)
            .collect();
        for key in &doomed {
            if let Some(c) = st.conns.remove(key) {
                c.kill.cancel();
            }
        }
        st.stats.killed += doomed.len() as u64;
        doomed.len()
    }

    pub fn open_connections(&self) -> usize {
        self.lock().conns.len()
    }

    pub fn stats(&self) -> FaultStats {
        self.lock().stats
    }

    pub fn log(&self) -> Vec<FaultEvent> {
        self.lock().log.clone()
    }

    pub fn take_log(&self) -> Vec<FaultEvent> {
        std::mem::take(&mut self.lock().log)
    }

    /// Decides the fate of frame `index` travelling in `direction` on `link`, counts and
    /// logs it. `may_hold`: no frame of that direction is held for reordering now.
    #[allow(clippy::too_many_arguments)] // one call site, the relay's per-frame step
    pub fn judge(
        &self,
        link: &Link,
        direction: Direction,
        index: u64,
        kind: FrameKind,
        id: u64,
        draws: &Draws,
        may_hold: bool,
    ) -> Verdict {
        let mut st = self.lock();
        let (sender, receiver) = link.ends(direction);
        st.stats.frames += 1;
        let faults = st
            .link_faults
            .iter()
            .find(|(s, r, _)| s == sender && r == receiver)
            .map(|(_, _, f)| *f)
            .unwrap_or(st.faults);
        let mut verdict = Verdict {
            lost: false,
            duplicate: false,
            delay: None,
            reorder: false,
            reorder_window: faults.reorder_window,
        };
        let mut faults_hit = Vec::new();
        if st.topology.unreachable(sender, receiver).is_some() {
            verdict.lost = true;
            faults_hit.push(Fault::Blocked);
        } else if fires(draws.drop, faults.drop) {
            verdict.lost = true;
            faults_hit.push(Fault::Dropped);
        } else {
            if fires(draws.duplicate, faults.duplicate) {
                verdict.duplicate = true;
                faults_hit.push(Fault::Duplicated);
            }
            if fires(draws.delay, faults.delay) {
                let d = faults.delay_for(draws.delay_pick);
                verdict.delay = Some(d);
                faults_hit.push(Fault::Delayed(d));
            }
            // A frame arriving while another is held already overtakes that one.
            if may_hold && fires(draws.reorder, faults.reorder) {
                verdict.reorder = true;
                faults_hit.push(Fault::Reordered);
            }
        }
        for fault in faults_hit {
            st.stats.count(fault);
            if st.log.len() < LOG_CAPACITY {
                let event = FaultEvent {
                    from: link.from.clone(),
                    to: link.to.clone(),
                    connection: link.connection,
                    direction,
                    frame: index,
                    kind,
                    id,
                    fault,
                };
                tracing::trace!(net = %self.name, %event, "fault injected");
                st.log.push(event);
            } else {
                st.stats.unlogged += 1;
            }
        }
        verdict
    }

    /// The relay of connection `key` ended.
    pub fn closed(&self, link: &Link) {
        self.lock().conns.remove(&link.key);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let mut reg = lock_registry();
        // Remove our entry, not a newer network that took the name after we died.
        if reg.get(&self.name).is_some_and(|w| w.strong_count() == 0) {
            reg.remove(&self.name);
        }
    }
}

/// A bound simulated endpoint: the queue of incoming connections, and the registration
/// that is undone when the listener is dropped.
#[derive(Debug)]
pub(crate) struct SimListener {
    pub incoming: mpsc::Receiver<Incoming>,
    pub name: String,
    registration: Registration,
}

#[derive(Debug)]
struct Registration {
    net: Arc<Net>,
    name: String,
    bind_id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut st = self.net.lock();
        // Only our own binding: after `kill_endpoint` a restarted server may hold the name.
        if st
            .endpoints
            .get(&self.name)
            .is_some_and(|e| e.bind_id == self.bind_id)
        {
            st.endpoints.remove(&self.name);
        }
    }
}

impl SimListener {
    /// The network this listener belongs to.
    pub fn net(&self) -> &str {
        &self.registration.net.name
    }
}

fn no_net(addr: &str, net: &str) -> CoreError {
    CoreError::Connect {
        addr: addr.to_string(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            format!("no simulated network {net:?} in this process (create it with FaultNet::new)"),
        ),
    }
}

/// Binds endpoint `name` (`0` picks a free name) on network `net`.
pub(crate) fn bind(addr: &str, net: &str, name: &str) -> Result<SimListener, CoreError> {
    let bind_err = |kind, msg: String| CoreError::Bind {
        addr: addr.to_string(),
        source: io::Error::new(kind, msg),
    };
    let net = Net::find(net).ok_or_else(|| {
        bind_err(
            io::ErrorKind::NotFound,
            format!("no simulated network {net:?} in this process (create it with FaultNet::new)"),
        )
    })?;
    static AUTO: AtomicU64 = AtomicU64::new(1);
    let name = if name == "0" {
        format!("auto-{}", AUTO.fetch_add(1, Ordering::Relaxed))
    } else {
        name.to_string()
    };
    let (tx, rx) = mpsc::channel(BACKLOG);
    let bind_id = {
        let mut st = net.lock();
        if st.endpoints.get(&name).is_some_and(|e| !e.tx.is_closed()) {
            return Err(bind_err(
                io::ErrorKind::AddrInUse,
                format!(
                    "endpoint {name} is already bound on simulated network {}",
                    net.name
                ),
            ));
        }
        st.next_bind += 1;
        let bind_id = st.next_bind;
        st.endpoints.insert(name.clone(), Endpoint { bind_id, tx });
        bind_id
    };
    Ok(SimListener {
        incoming: rx,
        name: name.clone(),
        registration: Registration { net, name, bind_id },
    })
}

/// Why `connect` to endpoint `to` on network `net` was refused: nobody listens there.
pub(crate) fn refused(addr: &str, net: &str, to: &str) -> CoreError {
    CoreError::Connect {
        addr: addr.to_string(),
        source: io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("no endpoint {to} listening on simulated network {net}"),
        ),
    }
}

/// A connection registered on its network but not yet relayed: where to deliver the
/// server's end, the link it runs over, and the token that kills it.
pub(crate) struct Opened {
    pub net: Arc<Net>,
    pub listener: mpsc::Sender<Incoming>,
    pub link: Link,
    pub kill: CancellationToken,
}

/// Registers a connection from `from` (empty: anonymous) to endpoint `to` on network
/// `net_name`, unless the topology cuts it or nobody listens there. The caller relays it
/// ([`super::relay::connect`]) and reports [`Net::closed`] when it ends.
pub(crate) fn open(addr: &str, net_name: &str, from: &str, to: &str) -> Result<Opened, CoreError> {
    let net = Net::find(net_name).ok_or_else(|| no_net(addr, net_name))?;
    let mut st = net.lock();
    // Checked before the handshake, so a partitioned connect fails at once instead of
    // waiting out the handshake timeout.
    if let Some(reason) = st.topology.unreachable(from, to) {
        st.stats.refused += 1;
        return Err(CoreError::Unreachable {
            addr: addr.to_string(),
            reason,
        });
    }
    let Some(endpoint) = st.endpoints.get(to) else {
        return Err(refused(addr, net_name, to));
    };
    let listener = endpoint.tx.clone();
    let counter = st
        .opened
        .entry((from.to_string(), to.to_string()))
        .or_insert(0);
    let connection = *counter;
    *counter += 1;
    st.next_conn += 1;
    let key = st.next_conn;
    let kill = CancellationToken::new();
    st.conns.insert(
        key,
        OpenConn {
            from: from.to_string(),
            to: to.to_string(),
            kill: kill.clone(),
        },
    );
    st.stats.connections += 1;
    let link = Link {
        from: from.to_string(),
        to: to.to_string(),
        connection,
        key,
    };
    drop(st);
    Ok(Opened {
        net,
        listener,
        link,
        kill,
    })
}
