//! Connection-level frames: `Ping`, `Pong` and `GoAway` concern the whole connection, not
//! one exchange, and mean the same to a client and a server.
//!
//! [`ConnectionReader`] reads a connection's frames for either side. It answers every
//! `Ping` itself (with a `Pong` of the same id, body not echoed), so both sides stay
//! responsive while busy, and sorts the rest into [`Incoming`]: the connection-level
//! events the layer above reacts to, and the frames of its exchanges, which it handles
//! alone. The layer above never sees a `Ping`, `Pong` or `GoAway` frame.
//!
//! ```text
//!   socket ─► FrameReader ─► ConnectionReader ─┬─ Ping ─► Pong written at once
//!                                              ├─ Pong, GoAway ─► Incoming events
//!                                              └─ the rest ─► Incoming::Exchange
//! ```

use futures::StreamExt;

use crate::connection::{FrameReader, WriteBuffer};
use crate::error::{CoreError, FrameError};
use crate::frame::{Frame, FrameKind};

/// One incoming frame, as the connection layer sorts it.
///
/// Deliberately exhaustive: a new connection-level frame must be handled by both sides,
/// so adding a variant is a compile error in every `match` on it, never a silent
/// catch-all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A frame of one exchange (call, reply, stream item or end, cancel, credit, error):
    /// never a `Ping`, `Pong` or `GoAway`.
    Exchange(Frame),
    /// The peer pinged with this id and has been answered: the connection is in use.
    Pinged(u64),
    /// The answer to our `Ping` with this id.
    Pong(u64),
    /// The peer is going away: it starts or accepts no new exchanges on this connection.
    GoAway,
}

/// Reads a connection's frames and deals with the connection-level ones itself.
pub struct ConnectionReader {
    frames: FrameReader,
    write_buf: WriteBuffer,
}

impl std::fmt::Debug for ConnectionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionReader")
            .field("write_buf", &self.write_buf)
            .finish_non_exhaustive()
    }
}

impl ConnectionReader {
    /// Reads `frames`, answering pings through `write_buf` (the same connection's).
    pub fn new(frames: FrameReader, write_buf: WriteBuffer) -> Self {
        ConnectionReader { frames, write_buf }
    }

    /// The next frame, sorted; `None` once the peer closed the connection.
    ///
    /// # Errors
    /// [`FrameError`] for a frame that does not decode (too large, malformed, unknown
    /// kind) or a failed read: the connection cannot be read any further.
    ///
    /// # Cancel safety
    /// Cancel safe: a frame is taken from the reader only when it is returned (or, for a
    /// `Ping`, answered) without waiting in between.
    pub async fn next(&mut self) -> Option<Result<Incoming, FrameError>> {
        Some(Ok(match self.frames.next().await? {
            Err(e) => return Some(Err(e)),
            Ok(frame) => match frame.kind {
                FrameKind::Ping => {
                    // A pong is a few bytes and must not wait: past the high-water mark
                    // on purpose. On a closed connection nobody waits for it either.
                    let _ = self.write_buf.push(FrameKind::Pong, 0, frame.id, &[]);
                    Incoming::Pinged(frame.id)
                }
                FrameKind::Pong => Incoming::Pong(frame.id),
                FrameKind::GoAway => Incoming::GoAway,
                FrameKind::Request
                | FrameKind::Response
                | FrameKind::Error
                | FrameKind::Oneway
                | FrameKind::Ack
                | FrameKind::Cancel
                | FrameKind::StreamItem
                | FrameKind::StreamEnd
                | FrameKind::Credit => Incoming::Exchange(frame),
            },
        }))
    }
}

impl WriteBuffer {
    /// Sends a `Ping` with exchange id `id`; the peer's [`ConnectionReader`] answers with a
    /// `Pong` of the same id. Does not wait for space (a ping is a few bytes).
    ///
    /// # Errors
    /// [`CoreError::Closed`] if the connection is closed.
    pub fn ping(&self, id: u64) -> Result<(), CoreError> {
        self.push(FrameKind::Ping, 0, id, &[])
    }

    /// Tells the peer this side is going away (`GoAway`, id 0): it must start no new
    /// exchanges on this connection. Does not wait for space.
    ///
    /// # Errors
    /// [`CoreError::Closed`] if the connection is closed.
    pub fn go_away(&self) -> Result<(), CoreError> {
        self.push(FrameKind::GoAway, 0, 0, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{client_connection, server_connection, TransportConfig};
    use crate::transport::{connect, Address, Listener};

    #[tokio::test]
    async fn pings_are_answered_by_the_reader_and_the_rest_is_sorted() {
        let mut listener = Listener::bind(&"inproc:0".parse::<Address>().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().clone();
        let config = TransportConfig::default();
        let server_config = config.clone();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (frames, write_buf, _writer) =
                server_connection(stream, &server_config).await.unwrap();
            let mut reader = ConnectionReader::new(frames, write_buf);
            let mut seen = Vec::new();
            while let Some(next) = reader.next().await {
                seen.push(next.unwrap());
            }
            seen
        });
        let stream = connect(&addr).await.unwrap();
        let (frames, write_buf, _writer) = client_connection(stream, &config).await.unwrap();
        let mut client = ConnectionReader::new(frames, write_buf.clone());
        write_buf.ping(7).unwrap();
        assert_eq!(client.next().await.unwrap().unwrap(), Incoming::Pong(7));
        write_buf.push(FrameKind::Cancel, 0, 3, &[]).unwrap();
        write_buf.go_away().unwrap();
        write_buf.close();
        let seen = server.await.unwrap();
        assert_eq!(
            seen,
            [
                Incoming::Pinged(7),
                Incoming::Exchange(Frame::new(FrameKind::Cancel, 3, bytes::Bytes::new())),
                Incoming::GoAway,
            ]
        );
    }
}
