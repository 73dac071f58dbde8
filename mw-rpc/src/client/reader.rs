//! The reader task: routes each incoming frame to the exchange waiting for it, until the
//! connection ends; then fails whatever still waits.
//!
//! Connection-level frames are sorted out by mw-core's [`ConnectionReader`] (which also
//! answers the server's pings): here a `Pong` completes a ping, `GoAway` stops new calls.
//! A frame only a client sends (`Request`, `Oneway`, `Cancel`, `Credit`) is a protocol
//! violation by the server: the connection is closed and every call fails with
//! [`RpcError::Protocol`], as for a frame that does not decode (PROTOCOL.md §3.6).

use std::sync::Weak;

use bytes::Bytes;
use mw_core::{ConnectionReader, Frame, FrameError, FrameKind, Incoming};

use super::conn::Conn;
use super::pending::{Slot, StreamMsg, STREAM_FINAL_ROOM};
use crate::error::RpcError;
use crate::wire;

/// What reading goes on with after one frame.
enum Next {
    Continue,
    /// The server said why it is about to close the connection (`Error` with id 0): calls
    /// failed by the close get this reason.
    Reason(RpcError),
    /// The server broke the protocol: close the connection with this error.
    Close(RpcError),
}

/// Routes frames until the connection ends, then fails what is left. Holds only a
/// `Weak`: once every channel clone is gone, the connection closes.
///
/// A server that said GoAway closes the connection only once it holds none of our
/// calls, every call it read answered (PROTOCOL.md §4.5.9); so when such a connection
/// ends cleanly, a call still waiting was never read: it fails with
/// [`RpcError::NotRun`], which a reconnecting channel sends again.
pub(super) async fn read_loop(mut reader: ConnectionReader, conn: Weak<Conn>) {
    let mut failure = RpcError::Disconnected;
    let mut clean_end = false;
    loop {
        let Some(next) = reader.next().await else {
            clean_end = true;
            break;
        };
        let Some(conn) = conn.upgrade() else { return };
        let incoming = match next {
            Ok(incoming) => incoming,
            // The transport failed (e.g. reset by the peer): the connection is lost, which
            // callers see as `Disconnected`, not as a protocol violation.
            Err(FrameError::Io(e)) => {
                tracing::debug!(error = %e, "connection to server lost");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "dropping connection after bad frame from server");
                failure = RpcError::Protocol(e.to_string());
                break;
            }
        };
        match route(&conn, incoming) {
            Next::Continue => {}
            Next::Reason(e) => failure = e,
            Next::Close(e) => {
                failure = e;
                break;
            }
        }
    }
    if let Some(conn) = conn.upgrade() {
        if clean_end && conn.went_away() && matches!(failure, RpcError::Disconnected) {
            failure = RpcError::NotRun;
        }
        conn.fail_all(&failure);
    }
}

fn route(conn: &Conn, incoming: Incoming) -> Next {
    match incoming {
        Incoming::Exchange(frame) => on_exchange_frame(conn, frame),
        Incoming::Pong(id) => {
            deliver_reply(conn, FrameKind::Pong, id, Bytes::new());
            Next::Continue
        }
        Incoming::GoAway => {
            conn.stop_new_calls();
            Next::Continue
        }
        // Answered by the reader already.
        Incoming::Pinged(_) => Next::Continue,
    }
}

fn on_exchange_frame(conn: &Conn, frame: Frame) -> Next {
    match frame.kind {
        // Id 0 is the connection itself: the server says why it is about to close.
        FrameKind::Error if frame.id == 0 => {
            let e = wire::decode_error(frame.body);
            tracing::warn!(error = %e, "server reported a connection error");
            Next::Reason(e)
        }
        FrameKind::Response | FrameKind::Error | FrameKind::Ack => {
            deliver_reply(conn, frame.kind, frame.id, frame.body);
            Next::Continue
        }
        FrameKind::StreamItem => {
            deliver_item(conn, frame.id, frame.body);
            Next::Continue
        }
        FrameKind::StreamEnd => {
            deliver_end(conn, frame);
            Next::Continue
        }
        kind @ (FrameKind::Request | FrameKind::Oneway | FrameKind::Cancel | FrameKind::Credit) => {
            tracing::warn!(
                ?kind,
                "dropping connection: the server sent a client's frame"
            );
            Next::Close(RpcError::Protocol(format!(
                "a server may not send {kind:?} frames"
            )))
        }
        // `ConnectionReader` never passes these on as exchange frames.
        FrameKind::Ping | FrameKind::Pong | FrameKind::GoAway => Next::Continue,
    }
}

/// A one-frame answer (`Response`, `Error`, `Ack`, `Pong`) to the exchange with `id`.
fn deliver_reply(conn: &Conn, kind: FrameKind, id: u64, body: Bytes) {
    match conn.take(id) {
        Some(Slot::Reply(tx)) => {
            let _ = tx.send(Ok((kind, body)));
        }
        Some(Slot::Stream(tx)) => {
            let msg = if kind == FrameKind::Error {
                StreamMsg::Err(wire::decode_error(body))
            } else {
                StreamMsg::Err(RpcError::Protocol(format!("{kind:?} frame on a stream")))
            };
            let _ = tx.try_send(msg);
        }
        // A reply to a call that was cancelled or timed out: nobody waits for it.
        None => {}
    }
}

fn deliver_item(conn: &Conn, id: u64, body: Bytes) {
    let mut pending = conn.pending.lock();
    if let Some(Slot::Stream(tx)) = pending.get(&id) {
        // Credit keeps a correct server within the window, which leaves the channel's
        // last places for the stream's final message. An item that would take one is
        // beyond the server's credit: refuse it while there is still room to say so (on a
        // full channel the error would be lost and the reader would see `Disconnected`
        // instead).
        let beyond_credit = tx.capacity() <= STREAM_FINAL_ROOM;
        if beyond_credit || tx.try_send(StreamMsg::Item(body)).is_err() {
            if let Some(Slot::Stream(tx)) = pending.remove(&id) {
                // Stop the server's side too: nobody will grant it credit.
                let _ = conn.write_buf.push(FrameKind::Cancel, 0, id, &[]);
                let _ = tx.try_send(StreamMsg::Err(RpcError::Protocol(
                    "server sent stream items beyond its credit".into(),
                )));
            }
        }
    }
}

fn deliver_end(conn: &Conn, frame: Frame) {
    match conn.take(frame.id) {
        Some(Slot::Stream(tx)) => {
            let _ = tx.try_send(StreamMsg::End);
        }
        // Not a stream: the call fails as a protocol error ("unexpected StreamEnd reply"),
        // not as a lost connection.
        Some(Slot::Reply(tx)) => {
            let _ = tx.send(Ok((frame.kind, frame.body)));
        }
        None => {}
    }
}
