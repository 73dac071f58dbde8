//! The versioned handshake that opens every connection.
//!
//! ```text
//! client -> server   +------+----------------+----------------+
//!  (8 bytes)         | "mwrp"| min_version u16 | max_version u16 |
//!                    +------+----------------+----------------+
//! server -> client   +------+----------------+----------------+---------------------+
//!  (8 + n bytes)     | "mwrp"| version u16     | n: u16          | n bytes UTF-8 text   |
//!                    +------+----------------+----------------+---------------------+
//! ```
//!
//! All integers are big-endian. The server picks the highest version both sides
//! support. A `version` of 0 is a refusal: the text then says which versions each
//! side speaks and the server closes the connection. On acceptance the text is
//! empty and frames follow in both directions.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::CoreError;

/// The four bytes every mw connection starts with, in both directions.
pub const MAGIC: [u8; 4] = *b"mwrp";
/// The lowest protocol version this build speaks.
pub const MIN_VERSION: u16 = 1;
/// The highest protocol version this build speaks.
pub const MAX_VERSION: u16 = 1;
/// The start of the refusal text a TLS server sends a plaintext client (as a version-0 reply,
/// so [`client_handshake`] can tell "use TLS" from any other refusal).
pub const TLS_REQUIRED: &str = "this server requires TLS";
/// How long either side waits for the other's half of the handshake by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the client side of the handshake offering `min..=max`; returns the agreed version.
///
/// # Errors
/// [`CoreError::VersionRefused`] with the server's explanation, [`CoreError::Tls`] if the
/// server requires TLS, [`CoreError::BadHandshake`] if the peer is not an mw server, or an
/// I/O error.
///
/// # Cancel safety
/// Not cancel safe: a cancelled handshake leaves the stream in an unknown state; drop it.
pub async fn client_handshake<S>(stream: &mut S, min: u16, max: u16) -> Result<u16, CoreError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = [0u8; 8];
    hello[..4].copy_from_slice(&MAGIC);
    hello[4..6].copy_from_slice(&min.to_be_bytes());
    hello[6..8].copy_from_slice(&max.to_be_bytes());
    stream.write_all(&hello).await?;
    stream.flush().await?;
    let mut reply = [0u8; 8];
    stream.read_exact(&mut reply).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            CoreError::BadHandshake("connection closed during handshake".into())
        } else {
            CoreError::Io(e)
        }
    })?;
    if reply[..4] != MAGIC {
        return Err(CoreError::BadHandshake(format!(
            "expected magic \"mwrp\", got {:02x?}",
            &reply[..4]
        )));
    }
    let version = u16::from_be_bytes([reply[4], reply[5]]);
    let n = u16::from_be_bytes([reply[6], reply[7]]) as usize;
    let mut text = vec![0u8; n];
    stream.read_exact(&mut text).await?;
    let text = String::from_utf8_lossy(&text).into_owned();
    if version == 0 {
        if text.starts_with(TLS_REQUIRED) {
            return Err(CoreError::Tls(text));
        }
        return Err(CoreError::VersionRefused { reason: text });
    }
    if version < min || version > max {
        return Err(CoreError::BadHandshake(format!(
            "server chose version {version}, outside the offered {min}..={max}"
        )));
    }
    Ok(version)
}

/// Runs the server side of the handshake accepting `min..=max`; returns the agreed version.
///
/// On a version mismatch the refusal is written to the peer before the error is returned.
///
/// # Errors
/// [`CoreError::VersionRefused`] (naming both ranges) if the ranges do not overlap,
/// [`CoreError::BadHandshake`] if the peer did not send the mw magic, or an I/O error.
///
/// # Cancel safety
/// Not cancel safe; drop the stream if cancelled.
pub async fn server_handshake<S>(stream: &mut S, min: u16, max: u16) -> Result<u16, CoreError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = [0u8; 8];
    stream.read_exact(&mut hello).await?;
    if hello[..4] != MAGIC {
        return Err(CoreError::BadHandshake(format!(
            "expected magic \"mwrp\", got {:02x?}",
            &hello[..4]
        )));
    }
    let peer_min = u16::from_be_bytes([hello[4], hello[5]]);
    let peer_max = u16::from_be_bytes([hello[6], hello[7]]);
    let chosen = max.min(peer_max);
    let mut reply = Vec::with_capacity(64);
    reply.extend_from_slice(&MAGIC);
    if chosen < min.max(peer_min) {
        let reason = format!(
            "server speaks protocol versions {min}..={max}, client offered {peer_min}..={peer_max}"
        );
        reply.extend_from_slice(&0u16.to_be_bytes());
        reply.extend_from_slice(&(reason.len() as u16).to_be_bytes());
        reply.extend_from_slice(reason.as_bytes());
        stream.write_all(&reply).await?;
        stream.flush().await?;
        return Err(CoreError::VersionRefused { reason });
    }
    reply.extend_from_slice(&chosen.to_be_bytes());
    reply.extend_from_slice(&0u16.to_be_bytes());
    stream.write_all(&reply).await?;
    stream.flush().await?;
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn matching_versions_agree_on_highest_common() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let (c, s) = tokio::join!(
            client_handshake(&mut a, 1, 3),
            server_handshake(&mut b, 1, 2)
        );
        assert_eq!(c.unwrap(), 2);
        assert_eq!(s.unwrap(), 2);
    }

    #[tokio::test]
    async fn disjoint_versions_get_readable_refusal_naming_both_ranges() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let (c, s) = tokio::join!(
            client_handshake(&mut a, 2, 2),
            server_handshake(&mut b, 1, 1)
        );
        let CoreError::VersionRefused { reason } = c.unwrap_err() else {
            panic!()
        };
        assert!(
            reason.contains("1..=1") && reason.contains("2..=2"),
            "{reason}"
        );
        assert!(matches!(s, Err(CoreError::VersionRefused { .. })));
    }

    #[tokio::test]
    async fn garbage_instead_of_magic_is_bad_handshake() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let err = server_handshake(&mut b, 1, 1).await.unwrap_err();
        assert!(matches!(err, CoreError::BadHandshake(_)), "{err}");
    }
}
