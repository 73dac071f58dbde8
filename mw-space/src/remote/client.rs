//! The client side: [`RemoteSpace`].

use std::time::Duration;

use futures::StreamExt;
use mw_pubsub::{RemoteBus, SubscribeOptions};
use mw_rpc::{Channel, ClientConfig, RpcError};

use super::service::TupleSpaceClient;
use crate::error::{Result, SpaceError};
use crate::notify::{self, Notifications};
use crate::pattern::Pattern;
use crate::space::{SpaceStats, Wait};
use crate::value::{Tuple, TupleId};

/// A connection to a broker's tuple space, with the embedded [`Space`](crate::Space)'s API.
///
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RemoteSpace {
    client: TupleSpaceClient,
    addr: String,
}

impl std::fmt::Debug for RemoteSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSpace")
            .field("addr", &self.addr)
            .finish()
    }
}

fn ended() -> SpaceError {
    SpaceError::Rpc(RpcError::Disconnected)
}

impl RemoteSpace {
    /// Connects to the broker at `addr` (`HOST:PORT`, `unix:PATH`, `inproc:NAME`).
    ///
    /// # Errors
    /// [`SpaceError::Rpc`] if the address is bad or the broker cannot be reached.
    pub async fn connect(addr: &str) -> Result<RemoteSpace> {
        RemoteSpace::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects with explicit RPC settings (deadline of `out` and `confirm`, keepalive).
    ///
    /// # Errors
    /// As [`connect`](RemoteSpace::connect).
    pub async fn connect_with(addr: &str, config: ClientConfig) -> Result<RemoteSpace> {
        let channel = Channel::connect_with(addr, config).await?;
        Ok(RemoteSpace {
            client: TupleSpaceClient::new(channel),
            addr: addr.to_string(),
        })
    }

    /// The generated RPC client, for calls this type does not wrap.
    pub fn client(&self) -> &TupleSpaceClient {
        &self.client
    }

    /// [`Space::out`](crate::Space::out) at the broker: returns once the tuple is durable
    /// and visible there.
    ///
    /// # Errors
    /// As the embedded `out`, plus [`SpaceError::Rpc`].
    pub async fn out(&self, tuple: Tuple) -> Result<TupleId> {
        Ok(self.client.out(tuple, None).await?)
    }

    /// [`Space::out_leased`](crate::Space::out_leased) at the broker.
    ///
    /// # Errors
    /// As [`out`](RemoteSpace::out), and [`SpaceError::ZeroLease`].
    pub async fn out_leased(&self, tuple: Tuple, lease: Duration) -> Result<TupleId> {
        if lease.is_zero() {
            return Err(SpaceError::ZeroLease);
        }
        // Whole milliseconds on the wire, rounded up so a short lease is not zero.
        let ms = u64::try_from(lease.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        Ok(self.client.out(tuple, Some(ms)).await?)
    }

    /// [`Space::rd`](crate::Space::rd) at the broker (the broker does the waiting).
    ///
    /// # Errors
    /// As the embedded `rd`, plus [`SpaceError::Rpc`].
    ///
    /// # Cancel safety
    /// Safe: dropping the future cancels the wait at the broker.
    pub async fn rd(&self, pattern: &Pattern, wait: impl Into<Wait>) -> Result<Option<Tuple>> {
        let mut stream = self.client.read(pattern.clone(), wait.into()).await?;
        match stream.next().await {
            Some(Ok(found)) => found,
            Some(Err(e)) => Err(e.into()),
            None => Err(ended()),
        }
    }

    /// [`rd`](RemoteSpace::rd) without waiting.
    ///
    /// # Errors
    /// As [`rd`](RemoteSpace::rd).
    pub async fn rdp(&self, pattern: &Pattern) -> Result<Option<Tuple>> {
        self.rd(pattern, Wait::No).await
    }

    /// [`Space::in_`](crate::Space::in_) at the broker, exactly once: the broker holds the
    /// match for this caller and removes it only when this call confirms receipt (see
    /// [`remote`](crate::remote)).
    ///
    /// # Errors
    /// As the embedded `in_`, plus [`SpaceError::Rpc`] and [`SpaceError::UnknownHold`]
    /// (the confirmation came after the hold expired; the tuple went back).
    ///
    /// # Cancel safety
    /// Dropping the future before the confirmation puts the tuple back at the broker; while
    /// the confirmation is in flight, the broker puts it back too unless its reply was
    /// already on its way.
    pub async fn in_(&self, pattern: &Pattern, wait: impl Into<Wait>) -> Result<Option<Tuple>> {
        let mut stream = self.client.take(pattern.clone(), wait.into()).await?;
        let offer = match stream.next().await {
            Some(Ok(Ok(Some(offer)))) => offer,
            Some(Ok(Ok(None))) => return Ok(None),
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ended()),
        };
        self.client.confirm(offer.hold).await?;
        Ok(Some(offer.tuple))
    }

    /// [`in_`](RemoteSpace::in_) without waiting.
    ///
    /// # Errors
    /// As [`in_`](RemoteSpace::in_).
    pub async fn inp(&self, pattern: &Pattern) -> Result<Option<Tuple>> {
        self.in_(pattern, Wait::No).await
    }

    /// [`Space::notify`](crate::Space::notify) at the broker: subscribes on the broker's
    /// bus (its own connection) and returns once the subscription is registered.
    ///
    /// # Errors
    /// [`SpaceError::Notify`] if the broker cannot be reached or refuses.
    pub async fn notify(
        &self,
        pattern: &Pattern,
        options: SubscribeOptions,
    ) -> Result<Notifications> {
        let bus = RemoteBus::connect(&self.addr).await?;
        let sub = bus
            .subscribe(notify::topic_pattern(pattern).as_str(), options)
            .await?;
        Ok(Notifications::remote(bus, sub, pattern.clone()))
    }

    /// What the broker's space holds.
    ///
    /// # Errors
    /// [`SpaceError::Rpc`].
    pub async fn stats(&self) -> Result<SpaceStats> {
        Ok(self.client.stats().await?)
    }
}
