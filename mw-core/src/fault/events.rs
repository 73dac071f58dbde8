//! What a simulated network did: the fault log and its counters.

use std::fmt;
use std::time::Duration;

use crate::frame::FrameKind;

/// Which way a frame travels on a connection `sim:NET/FROM>TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the connecting endpoint to the listening one (`FROM` to `TO`): requests.
    Forward,
    /// From the listening endpoint back to the connecting one: replies.
    Backward,
}

/// One fault injected into one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Lost, by chance ([`Faults::drop`](super::Faults::drop)).
    Dropped,
    /// Lost because a partition separated its endpoints when it was sent.
    Blocked,
    /// Delivered twice.
    Duplicated,
    /// Delivered this much later than it was sent (and the frames behind it with it).
    Delayed(Duration),
    /// Held back and delivered after the frame that followed it.
    Reordered,
}

/// One entry of the fault log: which frame, and what was done to it.
///
/// The log holds only frames that met a fault; the rest were delivered as sent.
///
/// ```
/// use mw_core::fault::{Direction, Fault, FaultEvent};
/// use mw_core::FrameKind;
///
/// let lost_reply = FaultEvent {
///     from: "alice".into(),
///     to: "kv".into(),
///     connection: 0,
///     direction: Direction::Backward,
///     frame: 7,
///     kind: FrameKind::Response,
///     id: 10,
///     fault: Fault::Dropped,
/// };
/// assert_eq!((lost_reply.sender(), lost_reply.receiver()), ("kv", "alice"));
/// assert_eq!(lost_reply.to_string(), "alice>kv#0 <- frame 7 (Response id 10): dropped");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultEvent {
    /// The endpoint that opened the connection (`FROM` in `sim:NET/FROM>TO`; empty for a
    /// client that did not name itself).
    pub from: String,
    /// The listening endpoint (`TO`).
    pub to: String,
    /// Which connection from `from` to `to`: 0 for the first one opened on this network,
    /// 1 for the next, and so on.
    pub connection: u64,
    /// Which way the frame was travelling.
    pub direction: Direction,
    /// The frame's index in that direction of that connection, from 0 (the handshake
    /// does not count).
    pub frame: u64,
    /// The frame's kind.
    pub kind: FrameKind,
    /// The frame's correlation id.
    pub id: u64,
    /// What happened to it.
    pub fault: Fault,
}

impl FaultEvent {
    /// The endpoint that sent the frame.
    pub fn sender(&self) -> &str {
        match self.direction {
            Direction::Forward => &self.from,
            Direction::Backward => &self.to,
        }
    }

    /// The endpoint the frame was going to.
    pub fn receiver(&self) -> &str {
        match self.direction {
            Direction::Forward => &self.to,
            Direction::Backward => &self.from,
        }
    }
}

impl fmt::Display for FaultEvent {
    /// `a>b#0 -> frame 3 (Request id 2): dropped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arrow = match self.direction {
            Direction::Forward => "->",
            Direction::Backward => "<-",
        };
        write!(
            f,
            "{}>{}#{} {arrow} frame {} ({:?} id {}): ",
            self.from, self.to, self.connection, self.frame, self.kind, self.id
        )?;
        match self.fault {
            Fault::Dropped => f.write_str("dropped"),
            Fault::Blocked => f.write_str("blocked by partition"),
            Fault::Duplicated => f.write_str("duplicated"),
            Fault::Delayed(d) => write!(f, "delayed {d:?}"),
            Fault::Reordered => f.write_str("reordered"),
        }
    }
}

/// Counters of what a simulated network did, for tests and for teaching.
///
/// ```
/// use mw_core::fault::{FaultNet, FaultStats};
///
/// let net = FaultNet::new("doc-stats", 1).unwrap();
/// assert_eq!(net.stats(), FaultStats::default());
/// assert_eq!(
///     net.stats().to_string(),
///     "0 connections (0 refused, 0 killed), 0 frames: 0 dropped, 0 blocked, \
///      0 duplicated, 0 delayed, 0 reordered"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultStats {
    /// Connections opened.
    pub connections: u64,
    /// Connections refused because a partition separated the endpoints.
    pub refused: u64,
    /// Connections closed by [`FaultNet::kill_endpoint`](super::FaultNet::kill_endpoint).
    pub killed: u64,
    /// Frames that entered the network (after the handshake; copies not counted).
    pub frames: u64,
    /// Frames lost by chance.
    pub dropped: u64,
    /// Frames lost to a partition.
    pub blocked: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames delayed.
    pub delayed: u64,
    /// Frames held back and delivered after their successor.
    pub reordered: u64,
    /// Events counted here but left out of the log because it was full.
    pub unlogged: u64,
}

impl FaultStats {
    pub(crate) fn count(&mut self, fault: Fault) {
        match fault {
            Fault::Dropped => self.dropped += 1,
            Fault::Blocked => self.blocked += 1,
            Fault::Duplicated => self.duplicated += 1,
            Fault::Delayed(_) => self.delayed += 1,
            Fault::Reordered => self.reordered += 1,
        }
    }
}

impl fmt::Display for FaultStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections ({} refused, {} killed), {} frames: {} dropped, {} blocked, \
             {} duplicated, {} delayed, {} reordered",
            self.connections,
            self.refused,
            self.killed,
            self.frames,
            self.dropped,
            self.blocked,
            self.duplicated,
            self.delayed,
            self.reordered
        )
    }
}
