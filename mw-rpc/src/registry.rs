//! A name service like Sun RPC's rpcbind/portmapper, written as an mw service.
//!
//! Servers register `name + version -> address` with a lease they must renew; clients
//! look a service up by name and version and connect to what they get. An entry whose
//! lease ran out is invisible to lookups and is purged. [`LeaseKeeper`] renews a
//! registration in the background and withdraws it when dropped;
//! [`Channel::connect_by_name`] is the client side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{Channel, RpcError};

/// One registration as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Service name, as in `#[service(name = ..)]`.
    pub name: String,
    /// Service version.
    pub version: u32,
    /// Where the server listens (`HOST:PORT`, `unix:PATH`).
    pub addr: String,
    /// Lease length in milliseconds: the entry disappears if not renewed within it.
    pub ttl_ms: u64,
}

/// Why the registry refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The lease id is unknown or has expired; register again.
    #[error("unknown or expired lease {0}")]
    UnknownLease(u64),
    /// The registration is invalid.
    #[error("invalid registration: {0}")]
    Invalid(String),
}

/// The registry's interface.
#[crate::service(name = "mw.registry", version = 1)]
pub trait Registry {
    /// Registers (or replaces) `name`/`version` at `addr`; returns the lease id.
    async fn register(&self, registration: Registration) -> Result<u64, RegistryError>;
    /// Extends a lease by its ttl.
    async fn renew(&self, lease: u64) -> Result<(), RegistryError>;
    /// Withdraws a registration; returns whether it existed.
    async fn unregister(&self, lease: u64) -> bool;
    /// The address of a live registration of `name`/`version`, the most recent one if several.
    async fn lookup(&self, name: String, version: u32) -> Option<String>;
    /// Every live registration.
    async fn list(&self) -> Vec<Registration>;
}

/// Longest lease accepted (one day) and shortest (10 ms).
const MAX_TTL_MS: u64 = 86_400_000;
const MIN_TTL_MS: u64 = 10;

#[derive(Debug)]
struct Entry {
    reg: Registration,
    expires: Instant,
    seq: u64,
}

/// The registry's implementation: an in-memory table with leases.
#[derive(Debug, Default)]
pub struct RegistryImpl {
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

impl RegistryImpl {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        entries.retain(|_, e| e.expires > now);
        entries
    }
}

impl Registry for RegistryImpl {
    async fn register(&self, registration: Registration) -> Result<u64, RegistryError> {
        if registration.name.is_empty() || registration.name.len() > 255 {
            return Err(RegistryError::Invalid("name must be 1 to 255 bytes".into()));
        }
        if let Err(e) = registration.addr.parse::<mw_core::Address>() {
            return Err(RegistryError::Invalid(e.to_string()));
        }
        if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&registration.ttl_ms) {
            return Err(RegistryError::Invalid(format!(
                "ttl must be {MIN_TTL_MS}..={MAX_TTL_MS} ms"
            )));
        }
        let mut entries = self.live();
        // Re-registering the same address replaces the old lease instead of piling up.
        entries.retain(|_, e| {
            !(e.reg.name == registration.name
                && e.reg.version == registration.version
                && e.reg.addr == registration.addr)
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let expires = Instant::now() + Duration::from_millis(registration.ttl_ms);
        entries.insert(
            id,
            Entry {
                reg: registration,
                expires,
                seq: id,
            },
        );
        Ok(id)
    }

    async fn renew(&self, lease: u64) -> Result<(), RegistryError> {
        let mut entries = self.live();
        let e = entries
            .get_mut(&lease)
            .ok_or(RegistryError::UnknownLease(lease))?;
        e.expires = Instant::now() + Duration::from_millis(e.reg.ttl_ms);
        Ok(())
    }

    async fn unregister(&self, lease: u64) -> bool {
        self.live().remove(&lease).is_some()
    }

    async fn lookup(&self, name: String, version: u32) -> Option<String> {
        self.live()
            .values()
            .filter(|e| e.reg.name == name && e.reg.version == version)
            .max_by_key(|e| e.seq)
            .map(|e| e.reg.addr.clone())
    }

    async fn list(&self) -> Vec<Registration> {
        let mut v: Vec<_> = self
            .live()
            .values()
            .map(|e| (e.seq, e.reg.clone()))
            .collect();
        v.sort_by_key(|(s, _)| *s);
        v.into_iter().map(|(_, r)| r).collect()
    }
}

/// Keeps a registration alive: renews it every third of its ttl, withdraws it on drop.
///
/// When a renewal fails because the registry is gone (it crashed or restarted), the
/// keeper connects again and registers afresh at the next renewal tick, and logs that it
/// did; a registry that restarted thus knows the server again within one renewal period
/// of coming back.
#[derive(Debug)]
#[must_use = "the registration is withdrawn when the LeaseKeeper is dropped"]
pub struct LeaseKeeper {
    task: tokio::task::JoinHandle<()>,
    /// The current connection and lease id, replaced by the task when it re-registers.
    // A std Mutex: held only to copy or replace the pair, never across an await.
    state: std::sync::Arc<Mutex<(RegistryClient, u64)>>,
}

impl LeaseKeeper {
    /// Registers `name`/`version` at `addr` with the registry at `registry` and keeps it renewed.
    ///
    /// # Errors
    /// The registry is unreachable or refused the registration.
    pub async fn register(
        registry: &str,
        name: &str,
        version: u32,
        addr: &str,
        ttl: Duration,
    ) -> Result<LeaseKeeper, RpcError<RegistryError>> {
        let client = RegistryClient::connect(registry)
            .await
            .map_err(RpcError::widen)?;
        let reg = Registration {
            name: name.to_string(),
            version,
            addr: addr.to_string(),
            ttl_ms: ttl.as_millis().min(u64::MAX as u128) as u64,
        };
        let lease = client.register(reg.clone()).await?;
        let state = std::sync::Arc::new(Mutex::new((client, lease)));
        let shared = state.clone();
        let registry = registry.to_string();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval((ttl / 3).max(Duration::from_millis(5)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            // Whether the connection is known to be broken: reconnect at the next tick.
            let mut broken = false;
            loop {
                tick.tick().await;
                if broken {
                    match reregister(&registry, &reg).await {
                        Ok((client, lease)) => {
                            tracing::info!(
                                registry = %registry, service = %reg.name, version = reg.version, lease,
                                "reconnected to the registry and registered again"
                            );
                            *lock(&shared) = (client, lease);
                            broken = false;
                        }
                        Err(e) => tracing::warn!(
                            registry = %registry, error = %e,
                            "registry still unreachable; retrying at the next renewal"
                        ),
                    }
                    continue;
                }
                let (client, lease) = lock(&shared).clone();
                match client.renew(lease).await {
                    Ok(()) => {}
                    // The registry restarted or we were too late: register afresh.
                    Err(RpcError::Application(RegistryError::UnknownLease(_))) => {
                        match client.register(reg.clone()).await {
                            Ok(l) => lock(&shared).1 = l,
                            Err(e) => {
                                tracing::warn!(error = %e, "registering again failed; retrying");
                                broken = true;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(
                            registry = %registry, error = %e,
                            "lease renewal failed; reconnecting to the registry"
                        );
                        // The connection may be dead for good (no reconnect on this
                        // client): try a new one right away, then at each tick.
                        match reregister(&registry, &reg).await {
                            Ok((client, lease)) => {
                                tracing::info!(
                                    registry = %registry, service = %reg.name, version = reg.version, lease,
                                    "reconnected to the registry and registered again"
                                );
                                *lock(&shared) = (client, lease);
                            }
                            Err(_) => broken = true,
                        }
                    }
                }
            }
        });
        Ok(LeaseKeeper { task, state })
    }

    /// The lease id the registry gave (the newest, after a re-registration).
    pub fn lease(&self) -> u64 {
        lock(&self.state).1
    }

    /// Withdraws the registration now and stops renewing.
    ///
    /// # Errors
    /// The registry could not be reached (the lease then simply expires).
    pub async fn withdraw(self) -> Result<(), RpcError> {
        self.task.abort();
        let (client, lease) = lock(&self.state).clone();
        client.unregister(lease).await.map(|_| ())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new connection to `registry` and a new lease for `reg` on it.
async fn reregister(
    registry: &str,
    reg: &Registration,
) -> Result<(RegistryClient, u64), RpcError<RegistryError>> {
    let client = RegistryClient::connect(registry)
        .await
        .map_err(RpcError::widen)?;
    let lease = client.register(reg.clone()).await?;
    Ok((client, lease))
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Channel {
    /// Looks `name`/`version` up in the registry at `registry` and connects to it.
    ///
    /// # Errors
    /// [`RpcError::UnknownService`] if nothing live is registered under that name and
    /// version, or any error from reaching the registry or the server.
    pub async fn connect_by_name(
        registry: &str,
        name: &str,
        version: u32,
    ) -> Result<Channel, RpcError> {
        let reg = RegistryClient::connect(registry).await?;
        match reg.lookup(name.to_string(), version).await? {
            Some(addr) => Channel::connect(&addr).await,
            None => Err(RpcError::UnknownService(format!(
                "{name} v{version} is not registered at {registry}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, addr: &str, ttl_ms: u64) -> Registration {
        Registration {
            name: name.into(),
            version: 1,
            addr: addr.into(),
            ttl_ms,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lease_expires_unless_renewed() {
        let r = RegistryImpl::new();
        let a = r.register(reg("date", "127.0.0.1:1", 1000)).await.unwrap();
        let b = r.register(reg("inc", "127.0.0.1:2", 1000)).await.unwrap();
        tokio::time::advance(Duration::from_millis(600)).await;
        r.renew(a).await.unwrap();
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(
            r.lookup("date".into(), 1).await.as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(
            r.lookup("inc".into(), 1).await,
            None,
            "unrenewed lease must expire"
        );
        assert_eq!(r.renew(b).await, Err(RegistryError::UnknownLease(b)));
        assert_eq!(r.lookup("date".into(), 2).await, None, "other version");
    }

    #[tokio::test]
    async fn invalid_registrations_are_refused() {
        let r = RegistryImpl::new();
        assert!(matches!(
            r.register(reg("", "127.0.0.1:1", 1000)).await,
            Err(RegistryError::Invalid(_))
        ));
        assert!(matches!(
            r.register(reg("x", "nonsense", 1000)).await,
            Err(RegistryError::Invalid(_))
        ));
        assert!(matches!(
            r.register(reg("x", "127.0.0.1:1", 0)).await,
            Err(RegistryError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn reregistering_same_address_replaces_and_latest_wins() {
        let r = RegistryImpl::new();
        r.register(reg("s", "127.0.0.1:1", 1000)).await.unwrap();
        r.register(reg("s", "127.0.0.1:1", 1000)).await.unwrap();
        r.register(reg("s", "127.0.0.1:2", 1000)).await.unwrap();
        assert_eq!(r.list().await.len(), 2);
        assert_eq!(
            r.lookup("s".into(), 1).await.as_deref(),
            Some("127.0.0.1:2")
        );
    }
}
