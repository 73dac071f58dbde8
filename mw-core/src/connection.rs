//! One connection's two directions: a batching writer and a frame reader.
//!
//! Every connection has exactly one writer task. Producers (callers, handlers, stream
//! tasks) encode frames straight into a shared [`WriteBuffer`] buffer under a short lock;
//! the writer swaps the whole buffer out and writes it with one `write_all`. Under
//! load many frames accumulate while a write is in progress, so they leave in one
//! syscall; when idle, each frame is written as soon as the writer wakes. The buffer
//! is bounded: [`WriteBuffer::ready`] waits while more than `high_water` bytes are queued,
//! which is how a slow peer pushes back on producers instead of growing memory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use crate::error::{CoreError, FrameError};
use crate::frame::{self, FrameCodec, FrameKind, DEFAULT_MAX_FRAME_LEN};
use crate::handshake::{self, DEFAULT_HANDSHAKE_TIMEOUT};
use crate::transport::{ReadHalf, Stream, WriteHalf};

/// Tunables shared by clients and servers.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Largest accepted frame (header + body), checked before allocating.
    /// Default 16 MiB: large enough for big values, small enough that a hostile
    /// length cannot exhaust memory.
    pub max_frame_len: usize,
    /// Bytes queued in a connection's write buffer above which producers wait.
    /// Default 1 MiB: about 30k small frames, enough to keep the socket busy,
    /// bounded so a peer that stops reading costs at most this much.
    pub write_buffer_high_water: usize,
    /// How long to wait for the peer's half of the handshake. Default 10 s.
    pub handshake_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            write_buffer_high_water: 1024 * 1024,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// Reads frames from a connection's read half, reusing one buffer.
pub type FrameReader = FramedRead<ReadHalf, FrameCodec>;

#[derive(Debug)]
struct WriteBufferState {
    buf: BytesMut,
    closed: bool,
}

#[derive(Debug)]
struct WriteBufferShared {
    state: Mutex<WriteBufferState>,
    /// Wakes the writer; `notify_one` stores a permit, so no wake-up is lost.
    wake_writer: Notify,
    /// Wakes producers waiting for space (or for the close).
    drained: Notify,
    high_water: usize,
    max_frame_len: usize,
    /// Exchanges in flight on this connection, as told by the layer above
    /// ([`WriteBuffer::set_in_flight`]); a hint for batching, never a limit.
    in_flight: std::sync::atomic::AtomicUsize,
}

/// The sending side of a connection: cheap to clone, shared by every producer.
#[derive(Debug, Clone)]
pub struct WriteBuffer {
    shared: Arc<WriteBufferShared>,
}

impl WriteBuffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriteBufferState> {
        // A panic while holding this lock can only come from an encoder; the buffer
        // is truncated back on error paths, so the state is still consistent.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one frame, writing its body in place, without waiting for space.
    ///
    /// Use for small control frames (acks, cancels, credits) that must not block; use
    /// [`WriteBuffer::ready`] first for anything a peer could make accumulate.
    ///
    /// # Errors
    /// [`CoreError::Closed`] if the connection is closed, [`FrameError::TooLarge`] if the
    /// frame exceeds the maximum, or the error `body` returned. Nothing is queued on error.
    pub fn push_with<E>(
        &self,
        kind: FrameKind,
        flags: u8,
        id: u64,
        body: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<FrameError> + From<CoreError>,
    {
        let was_empty;
        {
            let mut st = self.lock();
            if st.closed {
                return Err(CoreError::Closed.into());
            }
            was_empty = st.buf.is_empty();
            frame::encode_with(
                &mut st.buf,
                kind,
                flags,
                id,
                self.shared.max_frame_len,
                body,
            )?;
        }
        if was_empty {
            self.shared.wake_writer.notify_one();
        }
        Ok(())
    }

    /// Appends a frame with a ready-made body without waiting for space.
    ///
    /// # Errors
    /// As [`WriteBuffer::push_with`].
    pub fn push(&self, kind: FrameKind, flags: u8, id: u64, body: &[u8]) -> Result<(), CoreError> {
        self.push_with(kind, flags, id, |b| {
            b.extend_from_slice(body);
            Ok::<_, CoreError>(())
        })
    }

    /// Waits until the write buffer is below its high-water mark.
    ///
    /// # Errors
    /// [`CoreError::Closed`] if the connection closed meanwhile.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn ready(&self) -> Result<(), CoreError> {
        loop {
            // Fast path: below the mark, answer without registering a waiter.
            {
                let st = self.lock();
                if st.closed {
                    return Err(CoreError::Closed);
                }
                if st.buf.len() < self.shared.high_water {
                    return Ok(());
                }
            }
            let notified = self.shared.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.lock();
                if st.closed {
                    return Err(CoreError::Closed);
                }
                if st.buf.len() < self.shared.high_water {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Tells the writer how many exchanges are in flight. With more than one, more frames
    /// are likely to be pushed right after the one that woke the writer (a batch of
    /// replies wakes many callers on the same worker), so the writer yields once and lets
    /// them gather: one write instead of one per frame. With one or none it writes at
    /// once, so a lone call pays no extra latency.
    pub fn set_in_flight(&self, n: usize) {
        self.shared
            .in_flight
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bytes queued and not yet handed to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.lock().buf.len()
    }

    /// Closes the write buffer: frames already queued are still written, then the write
    /// half is shut down. Later pushes fail with [`CoreError::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.shared.wake_writer.notify_one();
        self.shared.drained.notify_waiters();
    }

    /// Whether [`WriteBuffer::close`] was called or the writer failed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Starts the writer task for `write`, returning the write buffer that feeds it.
///
/// The task ends when the write buffer is closed and drained (after shutting the write half
/// down) or when a write fails; either way the write buffer is closed afterwards.
pub fn spawn_writer(
    write: WriteHalf,
    config: &TransportConfig,
) -> (WriteBuffer, JoinHandle<Result<(), CoreError>>) {
    let shared = Arc::new(WriteBufferShared {
        state: Mutex::new(WriteBufferState {
            buf: BytesMut::with_capacity(64 * 1024),
            closed: false,
        }),
        wake_writer: Notify::new(),
        drained: Notify::new(),
        high_water: config.write_buffer_high_water,
        max_frame_len: config.max_frame_len,
        in_flight: std::sync::atomic::AtomicUsize::new(0),
    });
    let write_buf = WriteBuffer { shared };
    let task_buf = write_buf.clone();
    let handle = tokio::spawn(async move {
        let result = write_loop(write, &task_buf).await;
        task_buf.close();
        if result.is_err() {
            // Nothing queued can be sent any more: drop it, so that nobody waits on (or
            // pauses reading for) bytes that will never drain.
            task_buf.lock().buf.clear();
            task_buf.shared.drained.notify_waiters();
        }
        result
    });
    (write_buf, handle)
}

async fn write_loop(mut write: WriteHalf, write_buf: &WriteBuffer) -> Result<(), CoreError> {
    loop {
        let chunk = {
            let mut st = write_buf.lock();
            if st.buf.is_empty() {
                if st.closed {
                    break;
                }
                None
            } else {
                Some(st.buf.split())
            }
        };
        match chunk {
            Some(chunk) => {
                write.write_all(&chunk).await?;
                drop(chunk);
                write_buf.shared.drained.notify_waiters();
            }
            None => {
                write.flush().await?;
                write_buf.shared.wake_writer.notified().await;
                // With other exchanges in flight, more producers are likely queued on this
                // worker right now: run after them, so one write takes them all. (An
                // unconditional yield would cost a lone call ~14 µs here: tokio would poll
                // epoll and wake the other worker.)
                if write_buf
                    .shared
                    .in_flight
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 1
                    && write_buf.queued_bytes() > 0
                {
                    SelfYield(false).await;
                }
            }
        }
    }
    write.flush().await?;
    // The peer may already be gone; a failed shutdown changes nothing for us.
    let _ = write.shutdown().await;
    Ok(())
}

/// Returns `Pending` once after waking itself: tokio then runs the task behind the tasks
/// already queued on this worker, instead of in the LIFO slot right after its waker.
struct SelfYield(bool);

impl std::future::Future for SelfYield {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Client side: handshake, then split into a frame reader and a writer-fed write buffer.
///
/// # Errors
/// Handshake failures ([`CoreError::VersionRefused`], [`CoreError::BadHandshake`],
/// [`CoreError::HandshakeTimeout`]) or I/O errors.
pub async fn client_connection(
    mut stream: Stream,
    config: &TransportConfig,
) -> Result<(FrameReader, WriteBuffer, JoinHandle<Result<(), CoreError>>), CoreError> {
    let tls = matches!(stream, Stream::Tls(_));
    tokio::time::timeout(
        config.handshake_timeout,
        handshake::client_handshake(&mut stream, handshake::MIN_VERSION, handshake::MAX_VERSION),
    )
    .await
    .map_err(|_| CoreError::HandshakeTimeout)?
    .map_err(|e| match e {
        // Under TLS 1.3 a server refuses a client certificate after the client's side
        // of the TLS handshake is done: the refusal arrives as the first read fails.
        CoreError::Io(io) if tls => {
            crate::tls::explain_io("the server", &io).unwrap_or(CoreError::Io(io))
        }
        e => e,
    })?;
    Ok(split(stream, config))
}

/// Server side: handshake, then split into a frame reader and a writer-fed write buffer.
///
/// # Errors
/// As [`client_connection`]; a refused client has already been told why.
pub async fn server_connection(
    mut stream: Stream,
    config: &TransportConfig,
) -> Result<(FrameReader, WriteBuffer, JoinHandle<Result<(), CoreError>>), CoreError> {
    tokio::time::timeout(
        config.handshake_timeout,
        handshake::server_handshake(&mut stream, handshake::MIN_VERSION, handshake::MAX_VERSION),
    )
    .await
    .map_err(|_| CoreError::HandshakeTimeout)??;
    Ok(split(stream, config))
}

fn split(
    stream: Stream,
    config: &TransportConfig,
) -> (FrameReader, WriteBuffer, JoinHandle<Result<(), CoreError>>) {
    let (r, w) = stream.into_split();
    let reader = FramedRead::with_capacity(r, FrameCodec::new(config.max_frame_len), 64 * 1024);
    let (write_buf, handle) = spawn_writer(w, config);
    (reader, write_buf, handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{connect, Address, Listener};
    use futures::StreamExt;

    #[tokio::test]
    async fn frames_flow_both_ways_and_close_flushes() {
        let mut l = Listener::bind(&"inproc:0".parse::<Address>().unwrap())
            .await
            .unwrap();
        let addr = l.local_addr().clone();
        let cfg = TransportConfig::default();
        let server = tokio::spawn({
            let cfg = cfg.clone();
            async move {
                let (s, _) = l.accept().await.unwrap();
                let (mut r, out, w) = server_connection(s, &cfg).await.unwrap();
                let mut n = 0;
                while let Some(f) = r.next().await {
                    let f = f.unwrap();
                    out.push(FrameKind::Response, 0, f.id, &f.body).unwrap();
                    n += 1;
                }
                out.close();
                w.await.unwrap().unwrap();
                n
            }
        });
        let (mut r, out, w) = client_connection(connect(&addr).await.unwrap(), &cfg)
            .await
            .unwrap();
        for i in 0..1000u64 {
            out.ready().await.unwrap();
            out.push(FrameKind::Request, 0, i, &i.to_be_bytes())
                .unwrap();
        }
        for i in 0..1000u64 {
            let f = r.next().await.unwrap().unwrap();
            assert_eq!((f.kind, f.id), (FrameKind::Response, i));
            assert_eq!(&f.body[..], &i.to_be_bytes());
        }
        out.close();
        w.await.unwrap().unwrap();
        assert_eq!(server.await.unwrap(), 1000);
    }

    #[tokio::test]
    async fn write_buffer_applies_backpressure_when_peer_does_not_read() {
        let (a, _b) = tokio::io::duplex(1024);
        let (_r, w) = tokio::io::split(a);
        let cfg = TransportConfig {
            write_buffer_high_water: 4096,
            ..Default::default()
        };
        let (out, _h) = spawn_writer(Box::new(w), &cfg);
        let mut pushed = 0usize;
        // The peer never reads: within a bounded number of pushes `ready` must stop
        // returning at once, and the queue must stay near the high-water mark.
        for _ in 0..10_000 {
            let ready = tokio::time::timeout(Duration::from_millis(50), out.ready()).await;
            if ready.is_err() {
                break;
            }
            out.push(FrameKind::StreamItem, 0, 1, &[0u8; 100]).unwrap();
            pushed += 1;
        }
        assert!(pushed < 10_000, "producer was never held back");
        assert!(
            out.queued_bytes() < 4096 + 200,
            "queued {}",
            out.queued_bytes()
        );
    }
}
