//! One open connection to the server: its write buffer, its pending calls, whether it
//! still takes new calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mw_core::{FrameKind, WriteBuffer};
use tokio::sync::Semaphore;

use super::pending::{Pending, Slot, StreamMsg};
use crate::error::RpcError;

pub(super) struct Conn {
    pub(super) write_buf: WriteBuffer,
    pub(super) pending: Pending,
    /// Set once the reader ended or the server said GoAway: no new calls on this connection.
    dead: AtomicBool,
    /// Set once the server said GoAway: it will close the connection once it holds none
    /// of our calls, having answered every call it read.
    went_away: AtomicBool,
    /// Why it died, when the server said (an `Error` frame with id 0: over a connection
    /// limit, a protocol error): later calls get that instead of a bare `Disconnected`.
    why: Mutex<Option<RpcError>>,
    /// Slots for outstanding calls ([`ClientConfig::max_in_flight`](super::ClientConfig::max_in_flight)).
    pub(super) slots: Arc<Semaphore>,
}

impl Drop for Conn {
    /// The last channel clone is gone: close the connection (the writer flushes, shuts the
    /// socket down; the server sees end-of-stream and the reader task ends).
    fn drop(&mut self) {
        self.write_buf.close();
    }
}

/// The error every call on a dead connection gets for `failure`: a protocol violation or
/// an overload keeps its message (the server's reason), anything else is `Disconnected`.
fn connection_error(failure: &RpcError) -> RpcError {
    match failure {
        RpcError::Protocol(m) => RpcError::Protocol(m.clone()),
        RpcError::Overloaded(m) => RpcError::Overloaded(m.clone()),
        RpcError::NotRun => RpcError::NotRun,
        _ => RpcError::Disconnected,
    }
}

impl Conn {
    pub(super) fn new(write_buf: WriteBuffer, max_in_flight: usize) -> Self {
        Conn {
            write_buf,
            pending: Pending::new(),
            dead: AtomicBool::new(false),
            went_away: AtomicBool::new(false),
            why: Mutex::new(None),
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// The error a call on this dead connection gets: the server's reason if it gave
    /// one, else [`RpcError::Disconnected`].
    pub(super) fn death(&self) -> RpcError {
        match &*self.why.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => connection_error(why),
            None => RpcError::Disconnected,
        }
    }

    /// Marks the connection dead, closes it and fails every outstanding call and stream.
    pub(super) fn fail_all(&self, failure: &RpcError) {
        if matches!(failure, RpcError::Protocol(_) | RpcError::Overloaded(_)) {
            let mut why = self.why.lock().unwrap_or_else(|e| e.into_inner());
            if why.is_none() {
                *why = Some(connection_error(failure));
            }
        }
        self.dead.store(true, Ordering::Release);
        self.write_buf.close();
        for slot in self.pending.drain() {
            match slot {
                Slot::Reply(tx) => {
                    let _ = tx.send(Err(connection_error(failure)));
                }
                Slot::Stream(tx) => {
                    let _ = tx.try_send(StreamMsg::Err(connection_error(failure)));
                }
            }
        }
    }

    /// The server said GoAway: calls in flight go on, new ones use another connection.
    pub(super) fn stop_new_calls(&self) {
        self.went_away.store(true, Ordering::Release);
        self.dead.store(true, Ordering::Release);
    }

    /// Whether the server said GoAway on this connection.
    pub(super) fn went_away(&self) -> bool {
        self.went_away.load(Ordering::Acquire)
    }

    /// Whether the reader ended or the server said GoAway (a dead connection gets no
    /// keepalive pings).
    pub(super) fn is_gone(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// No new calls can use this connection: the reader ended, the server said GoAway, or
    /// the writer failed (a peer that half-closed may not have been noticed by the reader).
    pub(super) fn is_dead(&self) -> bool {
        self.is_gone() || self.write_buf.is_closed()
    }

    /// Removes a call's slot (keeping the writer's in-flight hint current).
    pub(super) fn take(&self, id: u64) -> Option<Slot> {
        let (slot, n) = self.pending.remove(id);
        self.write_buf.set_in_flight(n);
        slot
    }

    /// Forgets a call; whether it was still waiting.
    pub(super) fn forget(&self, id: u64) -> bool {
        self.take(id).is_some()
    }

    /// Forgets a call and tells the server to stop it.
    pub(super) fn cancel(&self, id: u64) {
        if self.forget(id) {
            // A cancel is a few bytes and must not wait: past the high-water mark on purpose.
            let _ = self.write_buf.push(FrameKind::Cancel, 0, id, &[]);
        }
    }
}
