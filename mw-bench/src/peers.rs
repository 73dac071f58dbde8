//! Peers of the pub/sub benchmark: `redis-server` and `nats-server`, measured in the same run
//! when they are on PATH (`apt-get install redis-server nats-server`); skipped with a note when
//! they are not. Nothing in the project requires them.
//!
//! Each server runs as a child process on a free loopback port (found by binding
//! 127.0.0.1:0), is probed for readiness with a bounded retry loop, and is killed by its handle
//! when the [`PeerServer`] is dropped. The workload is the shape of mw's tcp 1->1 series: one
//! publisher connection, one subscriber connection, the same timestamped payloads, the
//! publisher paced to [`WINDOW`] events ahead of the subscriber, gaps counted as lost.
//!
//! - **redis** (the `redis` crate, tokio): the publisher pipelines [`REDIS_BATCH`] `PUBLISH`
//!   commands per write (one `redis::pipe()`), with up to [`REDIS_DEPTH`] pipelines in flight
//!   on one multiplexed connection; the subscriber reads the `on_message` stream. The window
//!   keeps redis's pubsub output buffer (client-output-buffer-limit pubsub 32mb 8mb 60) far
//!   from its limit; a subscriber redis drops anyway shows up as lost messages.
//! - **nats** (the `async-nats` crate): `Client::publish` per message (the client coalesces
//!   writes itself), a plain subscription on a second connection.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, Stream, StreamExt};

use crate::pubsub::workload::{
    account_bytes, collect, pace, payload, Outcome, Progress, Seen, IDLE, WINDOW,
};
use crate::Error;

/// `PUBLISH` commands per redis pipeline (one write).
pub const REDIS_BATCH: u64 = 256;
/// Redis pipelines in flight at once.
pub const REDIS_DEPTH: usize = 4;
const CHANNEL: &str = "bench.feed";
/// Readiness probe: at most this many attempts, [`PROBE_EVERY`] apart (10 s in all).
const PROBE_TRIES: u32 = 200;
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// Whether `program` is an executable file on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false)
}

/// A peer server in a child process; killed (by its handle) and reaped on drop.
#[derive(Debug)]
pub struct PeerServer {
    child: Child,
    port: u16,
}

impl PeerServer {
    /// `redis-server --port N --save '' --appendonly no --bind 127.0.0.1`, ready once it
    /// answers PING.
    pub fn redis() -> io::Result<PeerServer> {
        Self::redis_with(&["--save", "", "--appendonly", "no"])
    }

    /// `redis-server --port N --bind 127.0.0.1` followed by `config` (e.g.
    /// `["--appendonly", "yes", "--dir", DIR]`), ready once it answers PING.
    pub fn redis_with(config: &[&str]) -> io::Result<PeerServer> {
        Self::start(
            "redis-server",
            |port| {
                let mut args = vec![
                    "--port".into(),
                    port.to_string(),
                    "--bind".into(),
                    "127.0.0.1".into(),
                ];
                args.extend(config.iter().map(|a| a.to_string()));
                args
            },
            |s| {
                s.write_all(b"PING\r\n")?;
                let mut buf = [0u8; 7];
                s.read_exact(&mut buf)?;
                Ok(&buf == b"+PONG\r\n")
            },
        )
    }

    /// `nats-server -a 127.0.0.1 -p N`, ready once it sends its INFO line.
    pub fn nats() -> io::Result<PeerServer> {
        Self::start(
            "nats-server",
            |port| {
                vec![
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.to_string(),
                ]
            },
            |s| {
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line)?;
                Ok(line.starts_with("INFO "))
            },
        )
    }

    fn start(
        program: &str,
        args: impl Fn(u16) -> Vec<String>,
        probe: impl Fn(&mut TcpStream) -> io::Result<bool>,
    ) -> io::Result<PeerServer> {
        // A free port: the kernel picks one, we release it and hand it to the server.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(program)
            .args(args(port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = PeerServer { child, port };
        for _ in 0..PROBE_TRIES {
            if let Some(status) = server.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "{program} exited before it was ready ({status})"
                )));
            }
            let ready = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                probe(&mut s)
            });
            if matches!(ready, Ok(true)) {
                return Ok(server);
            }
            std::thread::sleep(PROBE_EVERY);
        }
        Err(io::Error::other(format!(
            "{program} was not ready on port {port} after {:?}",
            PROBE_EVERY * PROBE_TRIES
        )))
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        // Fails only if it already exited; `wait` reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The subscriber side shared by the peers: reads whatever is ready (up to 1,024 messages),
/// accounts each payload, reports progress to the paced publisher. Stops after `messages`
/// received or lost, or after [`IDLE`] without a message (the shortfall counts as lost).
fn spawn_subscriber<S, T, F>(
    stream: S,
    payload_of: F,
    origin: Instant,
    progress: Arc<Progress>,
    messages: u64,
) -> tokio::task::JoinHandle<Seen>
where
    S: Stream<Item = T> + Send + Unpin + 'static,
    T: Send + 'static,
    F: Fn(&T) -> &[u8] + Send + 'static,
{
    tokio::spawn(async move {
        let mut seen = Seen::new();
        let mut next = 0;
        let mut chunks = stream.ready_chunks(1024);
        while seen.received + seen.lost < messages {
            let Ok(Some(batch)) = tokio::time::timeout(IDLE, chunks.next()).await else {
                break;
            };
            for m in &batch {
                account_bytes(origin, payload_of(m), &mut seen, &mut next);
            }
            seen.last_at = Instant::now();
            progress.advance(0, seen.received + seen.lost);
        }
        // A subscriber that stopped early must not stall the paced publisher.
        progress.advance(0, messages);
        seen
    })
}

/// redis 1->1: pipelined `PUBLISH` on one connection, `SUBSCRIBE` on another.
pub async fn run_redis(port: u16, size: usize, messages: u64) -> Result<Outcome, Error> {
    let origin = Instant::now();
    let progress = Arc::new(Progress::new(1));
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut sub = client.get_async_pubsub().await?;
    sub.subscribe(CHANNEL).await?;
    let task = spawn_subscriber(
        sub.into_on_message(),
        |m: &redis::Msg| m.get_payload_bytes(),
        origin,
        progress.clone(),
        messages,
    );
    // The default response timeout (500 ms) is meant for interactive use, not for a pipeline
    // queued behind a busy single-threaded server.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let mut seq = 0;
    loop {
        // Registered before the check, so no wakeup between the check and the wait is missed.
        let advanced = progress.advanced.notified();
        let window_open = seq < messages && seq.saturating_sub(progress.slowest()) < WINDOW;
        if window_open && inflight.len() < REDIS_DEPTH {
            let n = REDIS_BATCH.min(messages - seq);
            let mut pipe = redis::pipe();
            for s in seq..seq + n {
                pipe.cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(&payload(origin, s, size)[..])
                    .ignore();
            }
            seq += n;
            let mut conn = conn.clone();
            // FuturesUnordered polls new futures in push order, and a pipeline enters the
            // connection's queue on its first poll: pipelines go out in sequence order.
            inflight.push(async move { pipe.query_async::<()>(&mut conn).await });
            continue;
        }
        if seq >= messages && inflight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(r) = inflight.next(), if !inflight.is_empty() => r?,
            // Bounded: the subscriber notifies on every batch; the timeout only guards a stall.
            _ = tokio::time::timeout(Duration::from_millis(100), advanced), if !window_open => {}
        }
    }
    collect("redis", 1, size, messages, start, vec![task]).await
}

/// NATS 1->1: `publish` per message on one connection, a subscription on another.
pub async fn run_nats(port: u16, size: usize, messages: u64) -> Result<Outcome, Error> {
    let origin = Instant::now();
    let progress = Arc::new(Progress::new(1));
    let url = format!("nats://127.0.0.1:{port}");
    let sub_client = async_nats::ConnectOptions::new()
        .subscription_capacity(2 * WINDOW as usize)
        .connect(&url)
        .await?;
    let sub = sub_client.subscribe(CHANNEL).await?;
    // The server has registered the subscription once it answered the flush's PING.
    sub_client.flush().await?;
    let task = spawn_subscriber(
        sub,
        |m: &async_nats::Message| &m.payload[..],
        origin,
        progress.clone(),
        messages,
    );
    let publisher = async_nats::connect(&url).await?;
    let start = Instant::now();
    for seq in 0..messages {
        if seq % 256 == 0 {
            pace(&progress, seq).await;
        }
        publisher
            .publish(CHANNEL, payload(origin, seq, size))
            .await?;
    }
    publisher.flush().await?;
    let outcome = collect("nats", 1, size, messages, start, vec![task]).await;
    drop(sub_client);
    outcome
}
