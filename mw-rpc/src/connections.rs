//! The table of a server's open connections: listed and closed by administrators
//! ([`Connections`]), and the reason each one ended, for the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

/// One open connection, as [`Connections::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnectionInfo {
    /// The server's number for it, unique while the server runs (for
    /// [`Connections::close`]).
    pub id: u64,
    /// The peer's address (`IP:PORT`, or the transport's name for it).
    pub peer: String,
    /// When it was accepted, in ms since the Unix epoch.
    pub opened_at_ms: u64,
    /// Calls (and streams) it has started so far.
    pub calls: u64,
}

/// The open connections of one [`Server`](crate::Server): a cheap handle, shared with
/// whoever administers the server (`ServerBuilder::connections`).
#[derive(Debug, Clone, Default)]
pub struct Connections {
    inner: Arc<Mutex<Table>>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    peer: String,
    opened_at_ms: u64,
    calls: Arc<AtomicU64>,
    close: CancellationToken,
}

/// A registered connection: its id, its call counter and the token that closes it.
/// Dropping it removes the connection from the table.
#[derive(Debug)]
pub(crate) struct Registration {
    table: Connections,
    pub id: u64,
    pub calls: Arc<AtomicU64>,
    pub close: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.lock().open.remove(&self.id);
    }
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // Held for map operations only; a panic cannot leave the map inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection from `peer`, closed when `parent` is cancelled or
    /// [`close`](Self::close) is called with its id.
    pub(crate) fn register(&self, peer: &str, parent: &CancellationToken) -> Registration {
        let mut t = self.lock();
        t.next_id += 1;
        let id = t.next_id;
        let calls = Arc::new(AtomicU64::new(0));
        let close = parent.child_token();
        let opened_at_ms = mw_core::time::unix_ms();
        t.open.insert(
            id,
            Entry {
                peer: peer.to_string(),
                opened_at_ms,
                calls: calls.clone(),
                close: close.clone(),
            },
        );
        Registration {
            table: self.clone(),
            id,
            calls,
            close,
        }
    }

    /// Every open connection, by id.
    pub fn list(&self) -> Vec<ConnectionInfo> {
        let t = self.lock();
        let mut v: Vec<ConnectionInfo> = t
            .open
            .iter()
            .map(|(id, e)| ConnectionInfo {
                id: *id,
                peer: e.peer.clone(),
                opened_at_ms: e.opened_at_ms,
                calls: e.calls.load(Ordering::Relaxed),
            })
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// How many connections are open.
    pub fn count(&self) -> usize {
        self.lock().open.len()
    }

    /// Closes connection `id` at once, as a hard shutdown would: its calls still running
    /// are answered `CANCELLED` and abandoned. Whether it was open.
    pub fn close(&self, id: u64) -> bool {
        match self.lock().open.get(&id) {
            Some(e) => {
                e.close.cancel();
                true
            }
            None => false,
        }
    }
}
