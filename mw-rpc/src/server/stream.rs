//! Server streams: items sent as the client grants credit.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use mw_core::{CoreError, FrameKind, WriteBuffer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::call_state::{panic_message, Outcome};
use crate::error::ServerError;

/// Drives a server stream: each item waits for one unit of credit; the end does not.
///
/// Once `shutdown` is cancelled, a stream that has to wait for its next item (an idle
/// subscription or consumer) ends with [`Outcome::ShuttingDown`]: it could hold the
/// drain until its timeout otherwise. A stream whose items are ready keeps going (its
/// reader grants credit as it reads), so a finite result still arrives whole.
pub(super) async fn run_stream(
    id: u64,
    mut items: futures::stream::BoxStream<'static, Result<Bytes, ServerError>>,
    credits: Option<Arc<Semaphore>>,
    write_buf: &WriteBuffer,
    shutdown: CancellationToken,
) -> Outcome {
    let Some(credits) = credits else {
        return Outcome::Reply(Err(ServerError::Encode(
            "stream call without credit state".into(),
        )));
    };
    // Armed once for the whole stream, not per item (each arming takes a lock).
    let stopping = shutdown.cancelled();
    tokio::pin!(stopping);
    loop {
        let next = tokio::select! {
            biased;
            next = AssertUnwindSafe(items.next()).catch_unwind() => next,
            () = &mut stopping => return Outcome::ShuttingDown,
        };
        let item = match next {
            Ok(Some(Ok(item))) => item,
            Ok(Some(Err(e))) => return Outcome::Reply(Err(e)),
            Ok(None) => {
                let _ = write_buf.push(FrameKind::StreamEnd, 0, id, &[]);
                return Outcome::Quiet;
            }
            Err(p) => return Outcome::Reply(Err(ServerError::Panicked(panic_message(&p)))),
        };
        match credits.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => return Outcome::Aborted,
        }
        if write_buf.ready().await.is_err() {
            return Outcome::Aborted;
        }
        match write_buf.push(FrameKind::StreamItem, 0, id, &item) {
            Ok(()) => {}
            Err(CoreError::Closed) => return Outcome::Aborted,
            Err(e) => {
                return Outcome::Reply(Err(ServerError::Encode(format!(
                    "stream item cannot be sent: {e}"
                ))))
            }
        }
    }
}
