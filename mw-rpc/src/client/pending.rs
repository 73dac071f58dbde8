//! The pending-call table: which waiting exchange an incoming frame's id belongs to.
//!
//! Every exchange the client starts gets a fresh id (counting up from 1, never reused on
//! the connection, PROTOCOL.md §3.5) and, if it waits for an answer, a [`Slot`] here
//! until the answer arrives, the caller gives up, or the connection dies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use mw_core::FrameKind;
use tokio::sync::{mpsc, oneshot};

use crate::error::RpcError;

/// Where an exchange's answer goes.
pub(super) enum Slot {
    /// A call, ping or one-way call waiting for its one answer frame.
    Reply(oneshot::Sender<Result<(FrameKind, Bytes), RpcError>>),
    /// A server stream: items, then its end or an error.
    Stream(mpsc::Sender<StreamMsg>),
}

/// Places of a stream's channel beyond its credit window, kept for its final message
/// (end or error), so that it always fits.
pub(super) const STREAM_FINAL_ROOM: usize = 2;

/// What the reader passes to a [`ClientStream`](super::ClientStream).
pub(super) enum StreamMsg {
    Item(Bytes),
    End,
    Err(RpcError),
}

/// The exchanges of one connection that wait for an answer, by id.
pub(super) struct Pending {
    slots: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
}

impl Pending {
    pub(super) fn new() -> Self {
        Pending {
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// A fresh exchange id.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The table, locked. Only inserts and removes happen under this lock; a poisoned
    /// map is still whole.
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `slot` for `id`; returns how many exchanges now wait.
    pub(super) fn insert(&self, id: u64, slot: Slot) -> usize {
        let mut slots = self.lock();
        slots.insert(id, slot);
        slots.len()
    }

    /// Removes `id`'s slot; returns it and how many exchanges still wait.
    pub(super) fn remove(&self, id: u64) -> (Option<Slot>, usize) {
        let mut slots = self.lock();
        (slots.remove(&id), slots.len())
    }

    /// Takes every slot: the connection died and each waiting exchange must be told.
    pub(super) fn drain(&self) -> Vec<Slot> {
        self.lock().drain().map(|(_, s)| s).collect()
    }
}
