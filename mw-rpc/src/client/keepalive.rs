//! Liveness pings ([`ClientConfig::keepalive`](super::ClientConfig::keepalive)).

use std::sync::Weak;
use std::time::Duration;

use mw_core::FrameKind;
use tokio::sync::oneshot;

use super::conn::Conn;
use super::pending::Slot;
use crate::error::RpcError;

/// Pings every `every`; if a pong does not come back within `every`, the connection is
/// declared dead and every outstanding call fails with [`RpcError::Disconnected`] at once,
/// instead of each waiting out its own deadline on a peer that went silent.
///
/// Holds only a `Weak`: the pings never keep a connection alive that its channels dropped.
pub(super) async fn keepalive(conn: Weak<Conn>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(c) = conn.upgrade() else { return };
        if c.is_gone() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let id = c.pending.next_id();
        c.pending.insert(id, Slot::Reply(tx));
        if c.write_buf.ping(id).is_err() {
            return;
        }
        // Do not keep the connection alive ourselves while waiting.
        drop(c);
        let answered = matches!(
            tokio::time::timeout(every, rx).await,
            Ok(Ok(Ok((FrameKind::Pong, _))))
        );
        let Some(c) = conn.upgrade() else { return };
        if !answered {
            c.forget(id);
            tracing::warn!(
                ?every,
                "no answer to keepalive ping; connection declared dead"
            );
            c.fail_all(&RpcError::Disconnected);
            return;
        }
    }
}
