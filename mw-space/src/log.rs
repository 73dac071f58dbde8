//! The space's durable log: one append-only file, a writer thread with group commit, and
//! compaction.
//!
//! A persistent space keeps `DIR/space.log` (format in [`format`]) and a `LOCK` file held
//! with an exclusive lock (`File::try_lock`, `flock` on Unix) while the space is open. Every write (`out`) and every confirmed take is
//! one record, appended by a dedicated thread (not a tokio worker): it takes every record
//! waiting, writes them with one `pwrite`, fsyncs once as the [`FsyncPolicy`] says, then
//! runs each record's completion — so concurrent writers share one fsync (group commit).
//! Completions run on the writer thread, in log order; the space uses them to make a
//! written tuple visible only once it is durable.
//!
//! A failed write is cut off (`ftruncate`) and its records fail with
//! [`SpaceError::Storage`]; a failed fsync poisons the log (every later record fails),
//! since the kernel may have dropped the dirty pages.
//!
//! **Compaction**: the writer remembers where each live tuple's `OUT` frame is. Once the
//! file holds more than `2 × live + Config::compact_slack` records, it copies the live
//! (unexpired) frames into `space.log.compact`, fsyncs it, renames it over `space.log` and
//! fsyncs the directory; a crash at any point leaves one complete log.

pub(crate) mod format;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use mw_core::time::unix_ms;
use mw_queue::FsyncPolicy;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;

use self::format::{Loc, Recovered};
use crate::error::SpaceError;

/// The log file's name inside the space directory.
pub const LOG_FILE: &str = "space.log";
const COMPACT_FILE: &str = "space.log.compact";
/// Most records written (and fsynced) as one batch.
const MAX_BATCH: usize = 4096;

/// What a record's completion is told: written (and synced as the policy says), or why not.
pub(crate) type Done = Box<dyn FnOnce(Result<(), SpaceError>) + Send>;

/// What a record does to the set of live tuples.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Effect {
    Out { id: u64, expires_ms: u64 },
    Take { id: u64 },
}

pub(crate) struct Append {
    pub(crate) frame: Vec<u8>,
    pub(crate) effect: Effect,
    pub(crate) done: Done,
    /// The writer's share of `Config::max_pending_writes`, released once written.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

enum Cmd {
    Append(Append),
    Close(tokio::sync::oneshot::Sender<Result<(), SpaceError>>),
}

/// Counters of the log, as [`SpaceStats::log`](crate::SpaceStats::log) reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    /// Records in the file now.
    pub records: u64,
    /// Records written since the space was opened.
    pub written: u64,
    /// Fsyncs since the space was opened.
    pub fsyncs: u64,
    /// Compactions since the space was opened.
    pub compactions: u64,
    /// The file's size in bytes.
    pub file_bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    written: AtomicU64,
    fsyncs: AtomicU64,
    compactions: AtomicU64,
    file_bytes: AtomicU64,
}

/// Handle to the writer thread. Dropping it writes what is queued, syncs, stops the
/// writer and releases the directory lock before returning (so the directory can be
/// opened again at once).
pub(crate) struct Log {
    tx: Option<mpsc::Sender<Cmd>>,
    thread: Option<std::thread::JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Drop for Log {
    fn drop(&mut self) {
        // Disconnecting the channel ends the writer's loop after the records queued.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            // The last handle can be dropped by a completion running on the writer itself;
            // it then finishes on its own once the completion returns.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("stats", &self.stats()).finish()
    }
}

fn lock_dir(dir: &Path) -> Result<File, SpaceError> {
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| SpaceError::storage("open", &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(SpaceError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(SpaceError::storage("lock", &path, e)),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovers it and starts the writer.
    /// Blocking: call it off the async workers.
    pub(crate) fn open(
        dir: &Path,
        policy: FsyncPolicy,
        compact_slack: u64,
    ) -> Result<(Log, Recovered), SpaceError> {
        std::fs::create_dir_all(dir).map_err(|e| SpaceError::storage("create", dir, e))?;
        let lock = lock_dir(dir)?;
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| SpaceError::storage("open", &path, e))?;
        let data = std::fs::read(&path).map_err(|e| SpaceError::storage("read", &path, e))?;
        let mut recovered = format::scan(&path.display().to_string(), &data, unix_ms())?;
        drop(data);
        if recovered.end == 0 {
            // New (or cut short while being created): write the header.
            file.set_len(0)
                .and_then(|()| file.write_all_at(&format::header(), 0))
                .and_then(|()| file.sync_all())
                .and_then(|()| sync_dir(dir))
                .map_err(|e| SpaceError::storage("create", &path, e))?;
            recovered.end = format::HEADER_LEN;
        } else if let Some(at) = recovered.torn_at {
            tracing::warn!(file = %path.display(), offset = at, "cutting off a torn tail");
            file.set_len(at)
                .and_then(|()| file.sync_all())
                .map_err(|e| SpaceError::storage("truncate", &path, e))?;
        }
        let counters = Arc::new(Counters::default());
        counters.records.store(recovered.records, Ordering::Relaxed);
        counters.file_bytes.store(recovered.end, Ordering::Relaxed);
        let mirror = recovered
            .live
            .iter()
            .map(|(id, (loc, _))| (*id, *loc))
            .collect();
        let writer = Writer {
            dir: dir.to_path_buf(),
            path,
            file,
            pos: recovered.end,
            policy,
            dirty_since: None,
            poisoned: None,
            mirror,
            records: recovered.records,
            compact_slack,
            counters: counters.clone(),
            lock: Some(lock),
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mw-space-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| SpaceError::Storage(format!("cannot start the log writer: {e}")))?;
        let log = Log {
            tx: Some(tx),
            thread: Some(thread),
            counters,
        };
        Ok((log, recovered))
    }

    /// Queues a record. Its completion runs on the writer thread once it is written (or
    /// failed); if the log is closed, at once on this thread, with [`SpaceError::Closed`].
    /// Never call it with a lock held that the completion takes.
    pub(crate) fn append(&self, append: Append) {
        // Unbounded channel: every record holds a permit of `Config::max_pending_writes`
        // (callers wait for one before appending), except the rare re-`OUT` of a take whose
        // taker was gone, bounded by the number of tuples held for takers.
        let Some(tx) = &self.tx else {
            return (append.done)(Err(SpaceError::Closed));
        };
        if let Err(mpsc::SendError(Cmd::Append(a))) = tx.send(Cmd::Append(append)) {
            (a.done)(Err(SpaceError::Closed));
        }
    }

    /// Writes what is queued, syncs, and stops the writer (releasing the directory lock).
    pub(crate) async fn close(&self) -> Result<(), SpaceError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self
            .tx
            .as_ref()
            .is_none_or(|t| t.send(Cmd::Close(tx)).is_err())
        {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    pub(crate) fn stats(&self) -> LogStats {
        let c = &self.counters;
        LogStats {
            records: c.records.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            file_bytes: c.file_bytes.load(Ordering::Relaxed),
        }
    }
}

struct Writer {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    pos: u64,
    policy: FsyncPolicy,
    /// When the oldest unsynced write happened (interval policy).
    dirty_since: Option<std::time::Instant>,
    poisoned: Option<String>,
    /// Where each live tuple's OUT frame is.
    mirror: HashMap<u64, Loc>,
    records: u64,
    compact_slack: u64,
    counters: Arc<Counters>,
    lock: Option<File>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut batch = Vec::new();
        loop {
            let first = match self.interval_left() {
                Some(left) => match rx.recv_timeout(left) {
                    Ok(cmd) => cmd,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.sync();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(cmd) => cmd,
                    Err(_) => break,
                },
            };
            let mut close = None;
            match first {
                Cmd::Append(a) => batch.push(a),
                Cmd::Close(reply) => close = Some(reply),
            }
            while close.is_none() && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Cmd::Append(a)) => batch.push(a),
                    Ok(Cmd::Close(reply)) => close = Some(reply),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.write_batch(std::mem::take(&mut batch));
            }
            if let Some(reply) = close {
                let result = self.close();
                let _ = reply.send(result);
                // Records still queued after the close fail with `Closed`.
                while let Ok(cmd) = rx.try_recv() {
                    if let Cmd::Append(a) = cmd {
                        (a.done)(Err(SpaceError::Closed));
                    }
                }
                return;
            }
        }
        // Every handle is gone: sync what was written and stop.
        let _ = self.close();
    }

    fn interval_left(&self) -> Option<Duration> {
        match (self.policy, self.dirty_since) {
            (FsyncPolicy::Interval(d), Some(since)) => Some(d.saturating_sub(since.elapsed())),
            _ => None,
        }
    }

    fn sync(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        match self.file.sync_data() {
            Ok(()) => {
                self.dirty_since = None;
                self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "fsync failed; the space log refuses further writes");
                self.poisoned = Some(format!("fsync of {} failed: {e}", self.path.display()));
            }
        }
    }

    fn close(&mut self) -> Result<(), SpaceError> {
        let r = match &self.poisoned {
            Some(p) => Err(SpaceError::Storage(p.clone())),
            None => self
                .file
                .sync_data()
                .map_err(|e| SpaceError::storage("sync", &self.path, e)),
        };
        self.lock = None;
        r
    }

    fn write_batch(&mut self, batch: Vec<Append>) {
        if let Some(p) = &self.poisoned {
            let msg = p.clone();
            for a in batch {
                (a.done)(Err(SpaceError::Storage(msg.clone())));
            }
            return;
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|a| a.frame.len()).sum());
        let mut offsets = Vec::with_capacity(batch.len());
        for a in &batch {
            offsets.push(self.pos + buf.len() as u64);
            buf.extend_from_slice(&a.frame);
        }
        if let Err(e) = self.file.write_all_at(&buf, self.pos) {
            // Cut off whatever part was written, so the file ends on a whole record.
            let _ = self.file.set_len(self.pos);
            let msg = format!("cannot write {}: {e}", self.path.display());
            for a in batch {
                (a.done)(Err(SpaceError::Storage(msg.clone())));
            }
            return;
        }
        self.pos += buf.len() as u64;
        match self.policy {
            FsyncPolicy::Never => {}
            FsyncPolicy::Interval(d) => {
                let since = *self.dirty_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= d {
                    self.sync();
                }
            }
            // `Always`, and any policy added later: the safe choice.
            _ => self.sync(),
        }
        if let Some(p) = &self.poisoned {
            let msg = p.clone();
            for a in batch {
                (a.done)(Err(SpaceError::Storage(msg.clone())));
            }
            return;
        }
        let n = batch.len() as u64;
        for (a, offset) in batch.iter().zip(offsets) {
            match a.effect {
                Effect::Out { id, expires_ms } => {
                    let len = a.frame.len() as u32;
                    self.mirror.insert(
                        id,
                        Loc {
                            offset,
                            len,
                            expires_ms,
                        },
                    );
                }
                Effect::Take { id } => {
                    self.mirror.remove(&id);
                }
            }
        }
        self.records += n;
        self.counters.records.store(self.records, Ordering::Relaxed);
        self.counters.written.fetch_add(n, Ordering::Relaxed);
        self.counters.file_bytes.store(self.pos, Ordering::Relaxed);
        for a in batch {
            drop(a.permit);
            (a.done)(Ok(()));
        }
        if self.records > 2 * self.mirror.len() as u64 + self.compact_slack {
            if let Err(e) = self.compact() {
                tracing::warn!(file = %self.path.display(), error = %e, "compaction failed; the log keeps growing until the next attempt");
            }
        }
    }

    fn compact(&mut self) -> std::io::Result<()> {
        let now_ms = unix_ms();
        let tmp = self.dir.join(COMPACT_FILE);
        let mut live: Vec<(u64, Loc)> = self
            .mirror
            .iter()
            .filter(|(_, l)| l.expires_ms == 0 || l.expires_ms > now_ms)
            .map(|(id, l)| (*id, *l))
            .collect();
        live.sort_unstable_by_key(|(_, l)| l.offset);
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        out.write_all(&format::header())?;
        let mut pos = format::HEADER_LEN;
        let mut mirror = HashMap::with_capacity(live.len());
        let mut frame = Vec::new();
        for (id, loc) in live {
            frame.resize(loc.len as usize, 0);
            self.file.read_exact_at(&mut frame, loc.offset)?;
            out.write_all(&frame)?;
            mirror.insert(id, Loc { offset: pos, ..loc });
            pos += loc.len as u64;
        }
        let out = out.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        drop(out);
        std::fs::rename(&tmp, &self.path)?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.pos = pos;
        self.records = mirror.len() as u64;
        self.mirror = mirror;
        self.dirty_since = None;
        self.counters.records.store(self.records, Ordering::Relaxed);
        self.counters.file_bytes.store(self.pos, Ordering::Relaxed);
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
