//! Logging in on a fresh connection: the `mw.auth` exchange ([`crate::auth`]).

use std::sync::Arc;
use std::time::Duration;

use mw_core::FrameKind;
use tokio::sync::oneshot;

use super::codec::encode_args;
use super::conn::Conn;
use super::pending::Slot;
use crate::error::RpcError;
use crate::wire;

/// How long a login may take: a server answers repeated failures ever more slowly.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Logs in with `creds`, waiting at most [`LOGIN_TIMEOUT`].
pub(super) async fn login(
    conn: &Arc<Conn>,
    creds: &crate::auth::Credentials,
) -> Result<(), RpcError> {
    use crate::auth::{AUTH_SERVICE, AUTH_VERSION, LOGIN_METHOD};
    let id = conn.pending.next_id();
    let (tx, rx) = oneshot::channel();
    conn.pending.insert(id, Slot::Reply(tx));
    conn.write_buf
        .push_with(FrameKind::Request, 0, id, |b| {
            wire::put_call_header(
                b,
                LOGIN_TIMEOUT.as_millis() as u32,
                AUTH_SERVICE,
                AUTH_VERSION,
                LOGIN_METHOD,
            );
            encode_args(b, creds)
        })
        .map_err(|_| conn.death())?;
    match tokio::time::timeout(LOGIN_TIMEOUT, rx).await {
        Ok(Ok(Ok((FrameKind::Response, _)))) => Ok(()),
        Ok(Ok(Ok((FrameKind::Error, body)))) => Err(wire::decode_error(body)),
        Ok(Ok(Ok((kind, _)))) => Err(RpcError::Protocol(format!(
            "login answered with a {kind:?} frame"
        ))),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err(conn.death()),
        Err(_) => Err(RpcError::Timeout(LOGIN_TIMEOUT)),
    }
}
