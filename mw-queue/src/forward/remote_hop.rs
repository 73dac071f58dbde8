//! The broker's `mw.queue` service as a [`NextHop`] ([`RemoteHop`], [`RemoteConnect`]).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use mw_rpc::ClientConfig;
use tokio::sync::Mutex;

use super::hop::{Connect, HopError, NextHop};
use crate::message::Message;
use crate::remote::{QueueError, RemoteError, RemoteQueues, MAX_BATCH};

/// Deadline of one call to a hop by default: long enough for a batch and a busy
/// disk, short enough that a hung hop is retried (and its messages kept invisible)
/// rather than waited on forever.
pub const DEFAULT_HOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker (or any `mw.queue` server) at an address, as a [`NextHop`]: sends
/// with [`RemoteQueue::send_batch`](crate::remote::RemoteQueue::send_batch) and
/// keeps the ids, so the broker's dedup window stores resends once.
///
/// Connects on first use and again after any failed call (so a broker that
/// restarts is found again). Every call has a deadline
/// ([`DEFAULT_HOP_TIMEOUT`] unless set with [`with_timeout`](RemoteHop::with_timeout)).
#[derive(Debug)]
pub struct RemoteHop {
    addr: String,
    config: ClientConfig,
    client: Mutex<Option<RemoteQueues>>,
}

impl RemoteHop {
    /// The hop at `addr` (`HOST:PORT`, `unix:PATH`, `inproc:NAME`). Does not connect yet.
    pub fn new(addr: &str) -> RemoteHop {
        RemoteHop::with_timeout(addr, DEFAULT_HOP_TIMEOUT)
    }

    /// Like [`new`](RemoteHop::new), with this deadline for each call.
    pub fn with_timeout(addr: &str, timeout: Duration) -> RemoteHop {
        RemoteHop::with_config(
            addr,
            ClientConfig {
                default_timeout: timeout,
                ..ClientConfig::default()
            },
        )
    }

    /// Like [`new`](RemoteHop::new), connecting with `config`: TLS and credentials for a
    /// next broker that requires them, and `default_timeout` as the deadline of each call.
    pub fn with_config(addr: &str, config: ClientConfig) -> RemoteHop {
        RemoteHop {
            addr: addr.to_string(),
            config,
            client: Mutex::new(None),
        }
    }

    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn try_send(&self, queue: &str, msgs: Vec<Message>) -> Result<(), HopError> {
        // Held across the call: one transmission queue has one forwarder, and one call
        // at a time keeps the order on the wire.
        let mut slot = self.client.lock().await;
        let client = match &*slot {
            Some(c) => c.clone(),
            None => {
                let c = RemoteQueues::connect_with(&self.addr, self.config.clone())
                    .await
                    .map_err(|e| classify(&e))?;
                *slot = Some(c.clone());
                c
            }
        };
        let q = client.queue(queue);
        let mut msgs = msgs;
        while !msgs.is_empty() {
            let rest = msgs.split_off(msgs.len().min(MAX_BATCH));
            let results = match q.send_batch(msgs).await {
                Ok(r) => r,
                Err(e) => {
                    if matches!(e, RemoteError::Rpc(_) | RemoteError::Connect { .. }) {
                        *slot = None; // reconnect on the next attempt
                    }
                    return Err(classify(&e));
                }
            };
            // The first refusal decides; messages before it are stored, later ones may
            // be, and a resend stores each of those once.
            if let Some(e) = results.into_iter().find_map(Result::err) {
                return Err(classify(&RemoteError::Refused(e)));
            }
            msgs = rest;
        }
        Ok(())
    }
}

/// Refusals that cannot change are [`HopError::Refused`]; everything else (including
/// a hop that does not speak `mw.queue`, or refuses the route's user a queue: a
/// configuration mistake that may be fixed) is retried.
fn classify(e: &RemoteError) -> HopError {
    let text = mw_core::error::chain(e);
    match e {
        RemoteError::Refused(QueueError::PermissionDenied(_)) => HopError::Unavailable(text),
        RemoteError::Refused(q) if q.is_permanent() => HopError::Refused(text),
        _ => HopError::Unavailable(text),
    }
}

impl NextHop for RemoteHop {
    fn send<'a>(
        &'a self,
        queue: &'a str,
        msgs: Vec<Message>,
    ) -> BoxFuture<'a, Result<(), HopError>> {
        Box::pin(self.try_send(queue, msgs))
    }
}

/// Reaches hops with [`RemoteHop`] (what `mw broker --route` uses).
#[derive(Debug, Clone)]
pub struct RemoteConnect {
    /// Deadline of each call to a hop. Default: [`DEFAULT_HOP_TIMEOUT`].
    pub timeout: Duration,
    /// How hops are connected to: TLS and credentials (`client.tls`,
    /// `client.credentials`) for next brokers that require them. Its `default_timeout`
    /// is replaced by `timeout`.
    pub client: ClientConfig,
}

impl Default for RemoteConnect {
    fn default() -> Self {
        RemoteConnect {
            timeout: DEFAULT_HOP_TIMEOUT,
            client: ClientConfig::default(),
        }
    }
}

impl Connect for RemoteConnect {
    fn connect(&self, addr: &str) -> Arc<dyn NextHop> {
        let config = ClientConfig {
            default_timeout: self.timeout,
            ..self.client.clone()
        };
        Arc::new(RemoteHop::with_config(addr, config))
    }
}
