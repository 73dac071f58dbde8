//! Connections per client IP address ([`ServerConfig::max_connections_per_ip`]).
//!
//! [`ServerConfig::max_connections_per_ip`]: super::ServerConfig::max_connections_per_ip

use std::collections::HashMap;
use std::sync::Arc;

/// Connections open per client IP address, bounded ([`ServerConfig::max_connections_per_ip`]).
pub(super) struct PerIp {
    max: usize,
    open: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
}

/// One admitted connection's place in its address's count; released on drop.
pub(super) struct IpSlot {
    ip: std::net::IpAddr,
    open: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
}

impl PerIp {
    pub(super) fn new(max: usize) -> PerIp {
        PerIp {
            max,
            open: Arc::default(),
        }
    }

    /// Counts a connection from `peer` (a socket address; anything else is not
    /// counted), or says why it is refused.
    pub(super) fn admit(&self, peer: &str) -> Result<Option<IpSlot>, String> {
        let Ok(addr) = peer.parse::<std::net::SocketAddr>() else {
            return Ok(None);
        };
        let ip = addr.ip();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return Err(format!(
                "server busy: {} connections from {ip} already; try again later",
                self.max
            ));
        }
        *n += 1;
        Ok(Some(IpSlot {
            ip,
            open: self.open.clone(),
        }))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
