//! The broker side: the `mw.space` service trait and [`SpaceService`], its implementation
//! over a [`Space`].

use std::time::Duration;

use futures::{stream, StreamExt};
use mw_rpc::Streaming;
use serde::{Deserialize, Serialize};

use crate::error::SpaceError;
use crate::pattern::Pattern;
use crate::space::{Space, SpaceStats, Wait};
use crate::value::{Tuple, TupleId};

/// A tuple held for the caller of `take` until it confirms (see [`remote`](crate::remote)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Pass it to `confirm`.
    pub hold: u64,
    /// The tuple.
    pub tuple: Tuple,
}

/// The `mw.space` service: a tuple space on the network.
#[mw_rpc::service(name = "mw.space", version = 1)]
pub trait TupleSpace {
    /// Writes a tuple, with a lease in milliseconds if given; returns once it is durable
    /// and visible.
    async fn out(&self, tuple: Tuple, lease_ms: Option<u64>) -> Result<TupleId, SpaceError>;
    /// One item: a copy of a matching tuple, or `None` if none came within `wait`.
    async fn read(
        &self,
        pattern: Pattern,
        wait: Wait,
    ) -> Streaming<Result<Option<Tuple>, SpaceError>>;
    /// First item: a matching tuple held for the caller ([`Offer`]), or `None` if none came
    /// within `wait`. After an offer the stream stays open until the take is confirmed
    /// (it then ends) or the hold expires; dropping it puts the tuple back.
    async fn take(
        &self,
        pattern: Pattern,
        wait: Wait,
    ) -> Streaming<Result<Option<Offer>, SpaceError>>;
    /// Commits the take of an offered tuple; returns once the take is durable.
    async fn confirm(&self, hold: u64) -> Result<(), SpaceError>;
    /// What the space holds.
    async fn stats(&self) -> SpaceStats;
}

/// The implementation of [`TupleSpace`] a broker hosts (`TupleSpaceServer::new(service)`).
#[derive(Debug, Clone)]
pub struct SpaceService {
    space: Space,
}

impl SpaceService {
    /// Serves `space`.
    pub fn new(space: Space) -> SpaceService {
        SpaceService { space }
    }

    /// The space served.
    pub fn space(&self) -> &Space {
        &self.space
    }
}

fn one<T: Send + 'static>(item: T) -> Streaming<T> {
    Box::pin(stream::iter([item]))
}

impl TupleSpace for SpaceService {
    async fn out(&self, tuple: Tuple, lease_ms: Option<u64>) -> Result<TupleId, SpaceError> {
        match lease_ms {
            None => self.space.out(tuple).await,
            Some(ms) => {
                self.space
                    .out_leased(tuple, Duration::from_millis(ms))
                    .await
            }
        }
    }

    async fn read(
        &self,
        pattern: Pattern,
        wait: Wait,
    ) -> Streaming<Result<Option<Tuple>, SpaceError>> {
        one(self.space.rd(&pattern, wait).await)
    }

    async fn take(
        &self,
        pattern: Pattern,
        wait: Wait,
    ) -> Streaming<Result<Option<Offer>, SpaceError>> {
        // While this waits, the handler is dropped if the caller goes: no match is held.
        let hold = match self.space.hold(&pattern, wait).await {
            Ok(Some(hold)) => hold,
            Ok(None) => return one(Ok(None)),
            Err(e) => return one(Err(e)),
        };
        let offer = Offer {
            hold: hold.id(),
            tuple: hold.tuple().clone(),
        };
        let hold_timeout = self.space.config().hold_timeout;
        // The hold lives in the stream: when the stream is dropped (caller gone, cancelled,
        // hold expired), it puts the tuple back unless `confirm` committed it.
        let rest = async move {
            let settled = hold.settled();
            let _ = tokio::time::timeout(hold_timeout, settled).await;
            drop(hold);
        };
        Box::pin(
            stream::once(async move { Ok(Some(offer)) })
                .chain(stream::once(rest).filter_map(|()| async { None })),
        )
    }

    async fn confirm(&self, hold: u64) -> Result<(), SpaceError> {
        self.space.confirm(hold).await.map(|_| ())
    }

    async fn stats(&self) -> SpaceStats {
        self.space.stats()
    }
}
