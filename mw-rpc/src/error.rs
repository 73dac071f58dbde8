//! The errors a caller can see.

use std::convert::Infallible;
use std::time::Duration;

use mw_core::CoreError;

/// Why a call failed. Failure is never hidden: each cause has its own variant.
///
/// `E` is the service method's application error type (for methods declared
/// `-> Result<T, E>`); it is [`Infallible`] for methods that cannot fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError<E = Infallible> {
    /// The call's deadline passed before a reply came back (the server was told to stop).
    #[error("deadline of {0:?} exceeded")]
    Timeout(Duration),
    /// The connection broke (or was never made) while the call was outstanding.
    #[error("disconnected from server")]
    Disconnected,
    /// The server said `GoAway` and closed the connection cleanly before it read the
    /// call: the call was not run and may be sent again. A channel with
    /// [`ClientConfig::reconnect`](crate::ClientConfig::reconnect) does that itself
    /// (for `call`, `call_fallible` and acknowledged one-way calls); a caller awaiting a
    /// [`ReplyHandle`](crate::ReplyHandle), or a channel without `reconnect`, sees this.
    #[error("the server closed the connection before reading the call; it was not run")]
    NotRun,
    /// The server abandoned the call (for example because it is shutting down hard).
    #[error("call cancelled by the server")]
    Cancelled,
    /// The server does not host a service by that name (or the registry knows none).
    /// The text says so in full (`no service named "x" on this server`), so it is shown
    /// as it is, not wrapped in a second "unknown service".
    #[error("{0}")]
    UnknownService(String),
    /// The service has no method with that number.
    #[error("unknown method: {0}")]
    UnknownMethod(String),
    /// The server hosts the service but not in the version the client was generated for.
    #[error("version mismatch: {0}")]
    VersionMismatch(String),
    /// The server could not decode the arguments (client and server disagree on the interface).
    #[error("bad arguments: {0}")]
    BadArguments(String),
    /// A peer broke the protocol (bad frame, wrong reply kind, undecodable reply).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server refused the call because it is at capacity.
    #[error("{}", overloaded(.0))]
    Overloaded(String),
    /// The server is shutting down and takes no new calls.
    #[error("server shutting down")]
    ShuttingDown,
    /// The server requires a login and this connection has none, or the login failed
    /// (the text says which user).
    #[error("{0}")]
    Unauthenticated(String),
    /// The logged-in user may not do this (the text names the operation and resource).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The handler panicked or failed inside the server.
    #[error("server internal error: {0}")]
    Internal(String),
    /// The method's own error, as the implementation returned it.
    #[error("application error: {0}")]
    Application(E),
    /// Connecting, the handshake or the transport failed.
    #[error(transparent)]
    Transport(#[from] CoreError),
}

impl RpcError<Infallible> {
    /// Converts an error that cannot hold an application error into one that can.
    pub fn widen<E>(self) -> RpcError<E> {
        match self {
            RpcError::Timeout(d) => RpcError::Timeout(d),
            RpcError::Disconnected => RpcError::Disconnected,
            RpcError::NotRun => RpcError::NotRun,
            RpcError::Cancelled => RpcError::Cancelled,
            RpcError::UnknownService(s) => RpcError::UnknownService(s),
            RpcError::UnknownMethod(s) => RpcError::UnknownMethod(s),
            RpcError::VersionMismatch(s) => RpcError::VersionMismatch(s),
            RpcError::BadArguments(s) => RpcError::BadArguments(s),
            RpcError::Protocol(s) => RpcError::Protocol(s),
            RpcError::Overloaded(s) => RpcError::Overloaded(s),
            RpcError::ShuttingDown => RpcError::ShuttingDown,
            RpcError::Unauthenticated(s) => RpcError::Unauthenticated(s),
            RpcError::PermissionDenied(s) => RpcError::PermissionDenied(s),
            RpcError::Internal(s) => RpcError::Internal(s),
            RpcError::Application(never) => match never {},
            RpcError::Transport(e) => RpcError::Transport(e),
        }
    }
}

impl<E> RpcError<E> {
    /// Separates the method's own error from every other failure: `Ok(e)` for
    /// [`RpcError::Application`], otherwise `Err` with the same failure as an
    /// [`RpcError`] that holds no application error.
    pub fn into_application(self) -> Result<E, RpcError> {
        Err(match self {
            RpcError::Application(e) => return Ok(e),
            RpcError::Timeout(d) => RpcError::Timeout(d),
            RpcError::Disconnected => RpcError::Disconnected,
            RpcError::NotRun => RpcError::NotRun,
            RpcError::Cancelled => RpcError::Cancelled,
            RpcError::UnknownService(s) => RpcError::UnknownService(s),
            RpcError::UnknownMethod(s) => RpcError::UnknownMethod(s),
            RpcError::VersionMismatch(s) => RpcError::VersionMismatch(s),
            RpcError::BadArguments(s) => RpcError::BadArguments(s),
            RpcError::Protocol(s) => RpcError::Protocol(s),
            RpcError::Overloaded(s) => RpcError::Overloaded(s),
            RpcError::ShuttingDown => RpcError::ShuttingDown,
            RpcError::Unauthenticated(s) => RpcError::Unauthenticated(s),
            RpcError::PermissionDenied(s) => RpcError::PermissionDenied(s),
            RpcError::Internal(s) => RpcError::Internal(s),
            RpcError::Transport(e) => RpcError::Transport(e),
        })
    }
}

/// Why the server could not run a call; travels to the client as an `Error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No method with this number in the service.
    #[error("no method number {0}")]
    UnknownMethod(u32),
    /// The arguments did not decode as the method's parameter types.
    #[error("arguments do not decode: {0}")]
    BadArguments(String),
    /// The result could not be encoded.
    #[error("result does not encode: {0}")]
    Encode(String),
    /// The handler panicked.
    #[error("handler panicked: {0}")]
    Panicked(String),
    /// A login failed (the text says which user).
    #[error("{0}")]
    Unauthenticated(String),
}

/// The text of [`RpcError::Overloaded`]: the server's own words when they already say it
/// is busy (`server busy: connection limit N reached`), else prefixed.
fn overloaded(msg: &str) -> String {
    if msg.starts_with("server busy") {
        msg.to_string()
    } else {
        format!("server overloaded: {msg}")
    }
}

#[cfg(test)]
mod overloaded_tests {
    use super::RpcError;

    #[test]
    fn a_busy_server_is_not_called_overloaded_twice() {
        let busy = RpcError::<std::convert::Infallible>::Overloaded(
            "server busy: connection limit 3 reached".into(),
        );
        assert_eq!(busy.to_string(), "server busy: connection limit 3 reached");
        let queued =
            RpcError::<std::convert::Infallible>::Overloaded("1 calls running and 1 queued".into());
        assert_eq!(
            queued.to_string(),
            "server overloaded: 1 calls running and 1 queued"
        );
    }
}
