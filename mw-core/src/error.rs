//! Errors of the transport layer, and [`chain`], the one way mw prints an error with its
//! causes.

use std::io;

/// A frame could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame's length exceeds the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The length the frame declared (or would have had).
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The frame's kind byte names no known kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The frame is structurally invalid.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Reading or writing the underlying stream failed.
    #[error("i/o error")]
    Io(#[from] io::Error),
}

/// Everything that can go wrong in mw-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A frame was malformed, unknown or too large.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer refused our protocol versions.
    #[error("protocol version refused: {reason}")]
    VersionRefused {
        /// The peer's explanation, naming the versions each side supports.
        reason: String,
    },
    /// The peer did not open with the mw handshake.
    #[error("not an mw peer: {0}")]
    BadHandshake(String),
    /// The handshake did not complete in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// An address string could not be parsed.
    #[error("invalid address {addr:?}: {reason}")]
    BadAddress {
        /// What the user typed.
        addr: String,
        /// Why it is not an address.
        reason: String,
    },
    /// Connecting to an address failed.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address we tried.
        addr: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A simulated network's partition separates the connecting endpoint from the one
    /// it connects to ([`crate::fault`]).
    #[error("cannot connect to {addr}: {reason}")]
    Unreachable {
        /// The address we tried.
        addr: String,
        /// Which endpoint is cut off from which, and by what.
        reason: String,
    },
    /// Binding a listener failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address we tried.
        addr: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// TLS could not be set up: a certificate or key file that cannot be read or used,
    /// or a TLS handshake that failed (untrusted certificate, a plaintext peer, a
    /// missing client certificate). The text says which and what to check.
    #[error("TLS: {0}")]
    Tls(String),
    /// Any other I/O failure.
    #[error("i/o error")]
    Io(#[from] io::Error),
}

/// `error` and its sources joined with `: ` on one line, skipping a source whose text the
/// previous messages already contain (a `#[error("...: {0}")]` wrapper repeats its cause).
///
/// Binaries print this once where a task ends; messages that travel (a queue's `Io` error
/// text) carry it so the far side sees the cause too.
///
/// ```
/// let io = std::io::Error::other("disk full");
/// let e = mw_core::FrameError::Io(io);
/// assert_eq!(mw_core::error::chain(&e), "i/o error: disk full");
/// ```
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut msg = error.to_string();
    let mut src = error.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    msg
}
