//! The relay between the two ends of a simulated connection.
//!
//! ```text
//!  client end ══pipe══ [ forward pump  ─▶ ] ══pipe══ server end
//!                      [ ◀─ backward pump ]
//! ```
//!
//! Each pump passes the handshake through untouched, then cuts the byte stream into
//! frames with [`FrameCodec`], asks the network what to do with each one
//! ([`Net::judge`]) and delivers what survives in order of delivery time. Delivery
//! times never decrease, so frames leave in the order they were judged, apart from a
//! frame held back for reordering. A pump stops reading while more than
//! [`HIGH_WATER`] bytes wait for delivery: a delayed link pushes back on its sender
//! instead of buffering without bound.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

use super::dice::Dice;
use super::events::Direction;
use super::net::{self, Link, Net, Opened};
use super::topology::show;
use crate::error::CoreError;
use crate::frame::{Frame, FrameCodec};
use crate::handshake::MAGIC;

/// Bytes a pump keeps waiting for delivery before it stops reading. 1 MiB, like a
/// connection's write buffer.
const HIGH_WATER: usize = 1024 * 1024;

/// Size of each direction's buffer of each of a simulated connection's two pipes.
const PIPE_BYTES: usize = 256 * 1024;

/// Connects `from` (empty: anonymous) to endpoint `to` on network `net`, through a relay
/// that injects the network's faults; returns the client's end.
pub(crate) async fn connect(
    addr: &str,
    net_name: &str,
    from: &str,
    to: &str,
) -> Result<DuplexStream, CoreError> {
    let Opened {
        net,
        listener,
        link,
        kill,
    } = net::open(addr, net_name, from, to)?;
    let (client_end, relay_client) = tokio::io::duplex(PIPE_BYTES);
    let (relay_server, server_end) = tokio::io::duplex(PIPE_BYTES);
    let peer = format!("sim:{}/{}>{}#{}", net.name, from, to, link.connection);
    if listener.send((server_end, peer)).await.is_err() {
        net.closed(&link);
        return Err(net::refused(addr, net_name, to));
    }
    tracing::debug!(net = %net.name, from = show(from), to, connection = link.connection, "simulated connection opened");
    tokio::spawn(run(net, link, relay_client, relay_server, kill));
    Ok(client_end)
}

/// Relays one connection until both directions end, a pipe breaks, or `kill` fires.
pub(crate) async fn run(
    net: Arc<Net>,
    link: Link,
    client: DuplexStream,
    server: DuplexStream,
    kill: CancellationToken,
) {
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    let forward = Pump::new(&net, &link, Direction::Forward);
    let backward = Pump::new(&net, &link, Direction::Backward);
    tokio::select! {
        _ = kill.cancelled() => {
            tracing::debug!(net = %net.name, from = %link.from, to = %link.to, "connection killed");
        }
        r = async {
            tokio::try_join!(
                forward.run(client_read, server_write),
                backward.run(server_read, client_write)
            )
        } => {
            if let Err(e) = r {
                tracing::debug!(net = %net.name, from = %link.from, to = %link.to, error = %e,
                    "simulated connection broken");
            }
        }
    }
    // Dropping the pipes here closes both ends: each side reads end-of-stream.
    net.closed(&link);
}

/// A frame held back for reordering, with its copy if it was also duplicated.
struct Held {
    frames: Vec<Bytes>,
    /// When it would have been delivered (its delay included).
    at: Instant,
    /// When it is released even if no frame came to swap with.
    until: Instant,
}

/// One direction of a connection.
struct Pump {
    net: Arc<Net>,
    link: Link,
    direction: Direction,
    dice: Dice,
    codec: FrameCodec,
    next_index: u64,
    /// Frames to deliver, with their delivery times (never decreasing).
    queue: VecDeque<(Instant, Bytes)>,
    queued_bytes: usize,
    last_at: Option<Instant>,
    held: Option<Held>,
    /// The stream could not be cut into frames (not mw, or a frame above the relay's
    /// limit): the rest passes through untouched, so that the receiver's own codec
    /// reports what is wrong, exactly as on a real transport.
    raw: bool,
}

impl Pump {
    fn new(net: &Arc<Net>, link: &Link, direction: Direction) -> Pump {
        Pump {
            dice: Dice::new(net.seed, &link.from, &link.to, link.connection, direction),
            net: net.clone(),
            link: link.clone(),
            direction,
            codec: FrameCodec::default(),
            next_index: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            last_at: None,
            held: None,
            raw: false,
        }
    }

    /// Length of the handshake half this pump carries, once enough of it is in `buf`.
    fn handshake_len(&self, buf: &[u8]) -> Option<usize> {
        match self.direction {
            // Client hello: magic, min, max.
            Direction::Forward => Some(8),
            // Server reply: magic, version, n, then n bytes of text.
            Direction::Backward => {
                (buf.len() >= 8).then(|| 8 + usize::from(u16::from_be_bytes([buf[6], buf[7]])))
            }
        }
    }

    async fn run(
        mut self,
        mut src: ReadHalf<DuplexStream>,
        mut dst: WriteHalf<DuplexStream>,
    ) -> std::io::Result<()> {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut eof = false;
        // The handshake passes untouched and unjudged: `connect` has already checked the
        // partition (failing fast), and a lost greeting would only become a handshake
        // timeout, which teaches nothing.
        loop {
            if self.handshake_len(&buf).is_some_and(|n| buf.len() >= n) {
                break;
            }
            if src.read_buf(&mut buf).await? == 0 {
                eof = true;
                break;
            }
        }
        let n = self.handshake_len(&buf).unwrap_or(0).min(buf.len());
        let greeting = buf.split_to(n);
        self.raw = greeting.len() < 8 || greeting[..4] != MAGIC;
        dst.write_all(&greeting).await?;
        loop {
            self.take_frames(&mut buf);
            self.deliver_due(&mut dst).await?;
            if eof {
                self.release_held();
                if self.queue.is_empty() {
                    break;
                }
            }
            let now = Instant::now();
            let next_due = self.queue.front().map(|(at, _)| *at);
            let held_until = self.held.as_ref().map(|h| h.until);
            let room = self.queued_bytes < HIGH_WATER;
            tokio::select! {
                _ = sleep_until(next_due.unwrap_or(now)), if next_due.is_some() => {}
                _ = sleep_until(held_until.unwrap_or(now)), if held_until.is_some() => {
                    self.release_held();
                }
                n = src.read_buf(&mut buf), if !eof && room => {
                    if n? == 0 {
                        eof = true;
                    }
                }
            }
        }
        // The receiver may be gone already; then there is nobody to tell.
        let _ = dst.shutdown().await;
        Ok(())
    }

    /// Judges every whole frame in `buf` and queues the survivors.
    fn take_frames(&mut self, buf: &mut BytesMut) {
        while !self.raw {
            match self.codec.decode(buf) {
                Ok(Some(frame)) => self.on_frame(frame),
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(net = %self.net.name, error = %e,
                        "cannot cut the stream into frames; passing the rest through untouched");
                    self.raw = true;
                    self.release_held();
                }
            }
        }
        if !buf.is_empty() {
            let raw = buf.split().freeze();
            self.push(raw, Instant::now());
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        let index = self.next_index;
        self.next_index += 1;
        let draws = self.dice.roll(index);
        let verdict = self.net.judge(
            &self.link,
            self.direction,
            index,
            frame.kind,
            frame.id,
            &draws,
            self.held.is_none(),
        );
        if verdict.lost {
            return;
        }
        let mut bytes = BytesMut::with_capacity(frame.wire_len());
        // Cannot fail: the frame was decoded with the same codec, so it fits its limit.
        if self.codec.encode(frame, &mut bytes).is_err() {
            return;
        }
        let bytes = bytes.freeze();
        let copies = if verdict.duplicate { 2 } else { 1 };
        let now = Instant::now();
        let at = now + verdict.delay.unwrap_or(Duration::ZERO);
        if verdict.reorder {
            self.held = Some(Held {
                frames: vec![bytes; copies],
                at,
                until: now + verdict.reorder_window,
            });
            return;
        }
        for _ in 0..copies {
            self.push(bytes.clone(), at);
        }
        // This frame has overtaken the held one: now the held one follows it.
        self.release_held();
    }

    fn release_held(&mut self) {
        if let Some(held) = self.held.take() {
            for f in held.frames {
                self.push(f, held.at);
            }
        }
    }

    /// Queues `bytes` for `at`, or behind the last queued frame if that is later.
    fn push(&mut self, bytes: Bytes, at: Instant) {
        let at = self.last_at.map_or(at, |last| last.max(at));
        self.last_at = Some(at);
        self.queued_bytes += bytes.len();
        self.queue.push_back((at, bytes));
    }

    /// Writes every frame whose time has come, in one write.
    async fn deliver_due(&mut self, dst: &mut WriteHalf<DuplexStream>) -> std::io::Result<()> {
        let now = Instant::now();
        let mut out = BytesMut::new();
        while self.queue.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, b)) = self.queue.pop_front() {
                self.queued_bytes -= b.len();
                out.extend_from_slice(&b);
            }
        }
        if !out.is_empty() {
            dst.write_all(&out).await?;
        }
        Ok(())
    }
}
