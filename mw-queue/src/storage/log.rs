//! The append-only log: one writer thread, group commit, segment rolling and
//! deletion, and positional reads of records.
//!
//! All file writes happen on one dedicated std thread ("mw-queue-log"), never
//! on a tokio worker. Appenders push onto a mutex-protected `Vec` and wake the
//! thread; the thread swaps out *everything* pending, encodes it into one
//! buffer, writes it with one `pwrite`, calls `fdatasync` once (for
//! [`FsyncPolicy::Always`]), hands the batch to the [`CommitHook`] and only
//! then completes the appenders' oneshots. Under load the batch grows while
//! the previous fsync runs, so one fsync covers many records.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::config::FsyncPolicy;
use crate::error::{Error, Result};
use crate::storage::reader::{read_full, SegmentReader};
use crate::storage::record::{Record, RecordView};
use crate::storage::recovery::{self, Location, Scan};
use crate::storage::segment::{self, Frame, FRAME_HEADER_LEN, HEADER_LEN};

/// One record waiting to be written.
#[derive(Debug)]
pub(crate) struct Append {
    /// Its LSN; strictly increasing in push order.
    pub lsn: u64,
    /// The record.
    pub record: Record,
    /// Completed once the record is durable per the fsync policy (or failed).
    pub done: Option<oneshot::Sender<Result<()>>>,
}

/// What the log calls on its writer thread around each written chunk.
pub(crate) trait CommitHook: Send + 'static {
    /// `appends` are durable (per policy) at `locations`. Called before their
    /// waiters are completed, in log order. Returns an LSN watermark: closed
    /// segments whose first LSN is below it hold nothing live and are deleted.
    fn committed(&mut self, appends: &[Append], locations: &[Location]) -> u64;
    /// `appends` were not written; their waiters will get `error`.
    fn failed(&mut self, appends: &[Append], error: &Error);
}

/// Log tunables (a subset of [`Config`](crate::Config)).
#[derive(Debug, Clone)]
pub(crate) struct LogConfig {
    pub fsync: FsyncPolicy,
    pub segment_size: u64,
}

/// Counters of the log writer, readable at any time.
///
/// Serialized as it is in the broker's `stats` answer
/// ([`BrokerStats::log`](crate::remote::BrokerStats::log)): the fields up to
/// `segments_deleted`, in this order (postcard has no field names, so the order is the
/// wire format). The fsync histogram is not part of `mw.queue` v1 (it is exported as
/// metrics); it is skipped, and reads back as zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct LogStats {
    /// Records appended (written successfully).
    pub appends: u64,
    /// Write calls (one per batch chunk).
    pub writes: u64,
    /// Bytes written to segments.
    pub bytes_written: u64,
    /// `fdatasync` calls on segment files.
    pub fsyncs: u64,
    /// Records made durable by those fsyncs (sum over all fsyncs).
    pub synced_records: u64,
    /// The most records a single fsync covered.
    pub max_records_per_fsync: u64,
    /// Segment files created.
    pub segments_created: u64,
    /// Segment files deleted because nothing in them was live.
    pub segments_deleted: u64,
    /// Fsync durations: how many fsyncs took at most each bound of
    /// [`FSYNC_BUCKETS_SECONDS`] (and more than the bound before it); the last slot counts
    /// those over the largest bound.
    #[serde(skip)]
    pub fsync_buckets: [u64; FSYNC_BUCKETS_SECONDS.len() + 1],
    /// Time spent in fsyncs, in nanoseconds.
    #[serde(skip)]
    pub fsync_nanos: u64,
}

/// Upper bounds, in seconds, of the fsync duration buckets of [`LogStats`]: from 100 µs
/// (a battery-backed or NVMe write cache) to 1 s (a disk in trouble).
pub const FSYNC_BUCKETS_SECONDS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

impl LogStats {
    /// Mean number of records covered by one fsync (0 if none happened).
    ///
    /// ```
    /// let s = mw_queue::LogStats::default();
    /// assert_eq!(s.records_per_fsync(), 0.0);
    /// ```
    pub fn records_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 {
            0.0
        } else {
            self.synced_records as f64 / self.fsyncs as f64
        }
    }
}

#[derive(Default)]
struct AtomicStats {
    appends: AtomicU64,
    writes: AtomicU64,
    bytes_written: AtomicU64,
    fsyncs: AtomicU64,
    synced_records: AtomicU64,
    max_records_per_fsync: AtomicU64,
    segments_created: AtomicU64,
    segments_deleted: AtomicU64,
    fsync_buckets: [AtomicU64; FSYNC_BUCKETS_SECONDS.len() + 1],
    fsync_nanos: AtomicU64,
}

#[derive(Default)]
struct Pending {
    appends: Vec<Append>,
    shutdown: bool,
}

struct Inner {
    dir: PathBuf,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Every segment by first LSN, for reads. Writers (roll, delete) are rare.
    segments: RwLock<BTreeMap<u64, Arc<File>>>,
    stats: AtomicStats,
    poisoned: AtomicBool,
    /// Test hook: fail the next N writes with ENOSPC.
    #[cfg(test)]
    fail_writes: AtomicU64,
}

/// The log after recovery, before its writer thread starts.
pub(crate) struct Recovered {
    inner: Arc<Inner>,
    active: Active,
    lock: File,
    config: LogConfig,
    /// The LSN for the next record.
    pub next_seq: u64,
    /// What recovery found.
    pub scan_report: recovery::RecoveryReport,
}

/// Handle to the log. Dropping it flushes pending appends and stops the writer.
pub(crate) struct Log {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Active {
    first_seq: u64,
    path: PathBuf,
    file: Arc<File>,
    pos: u64,
    /// Records written since the last fsync.
    unsynced: u64,
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    // An exclusive advisory lock, held while the file stays open: a second manager on
    // the same directory (in this process or another) is refused, not corrupting.
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync", dir, e))
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<(PathBuf, File)> {
    let path = segment::path(dir, first_seq);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io("create", &path, e))?;
    let init = file
        .write_all_at(&segment::encode_header(first_seq), 0)
        .map_err(|e| Error::io("write", &path, e))
        .and_then(|()| file.sync_all().map_err(|e| Error::io("fsync", &path, e)))
        .and_then(|()| sync_dir(dir));
    if let Err(e) = init {
        // Remove the half-made file so a later roll (after space is freed) can
        // create it again; recovery would also accept it as a torn header.
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok((path, file))
}

impl Log {
    /// Locks `dir`, runs recovery (calling `visit` for every valid record) and opens
    /// the last segment for appending. Blocking: call from `spawn_blocking`.
    pub(crate) fn recover(
        dir: &Path,
        config: LogConfig,
        visit: impl FnMut(u64, RecordView<'_>, Location),
    ) -> Result<Recovered> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create_dir", dir, e))?;
        let lock = lock_dir(dir)?;
        let Scan {
            segments,
            next_seq,
            report,
        } = recovery::scan(dir, visit)?;
        let mut map = BTreeMap::new();
        let mut active = None;
        let count = segments.len();
        for (i, seg) in segments.into_iter().enumerate() {
            let file = OpenOptions::new()
                .read(true)
                .write(i + 1 == count)
                .open(&seg.path)
                .map_err(|e| Error::io("open", &seg.path, e))?;
            let file = Arc::new(file);
            map.insert(seg.first_seq, file.clone());
            if i + 1 == count {
                active = Some(Active {
                    first_seq: seg.first_seq,
                    path: seg.path,
                    file,
                    pos: seg.len,
                    unsynced: 0,
                });
            }
        }
        let stats = AtomicStats::default();
        let active = match active {
            Some(a) => a,
            None => {
                let (path, file) = create_segment(dir, next_seq)?;
                stats.segments_created.fetch_add(1, Ordering::Relaxed);
                let file = Arc::new(file);
                map.insert(next_seq, file.clone());
                Active {
                    first_seq: next_seq,
                    path,
                    file,
                    pos: HEADER_LEN,
                    unsynced: 0,
                }
            }
        };
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            segments: RwLock::new(map),
            stats,
            poisoned: AtomicBool::new(false),
            #[cfg(test)]
            fail_writes: AtomicU64::new(0),
        });
        Ok(Recovered {
            inner,
            active,
            lock,
            config,
            next_seq,
            scan_report: report,
        })
    }

    /// Queues records for writing. Callers must push LSNs in increasing order
    /// (the queue manager does so under its state lock).
    pub(crate) fn append(&self, appends: impl IntoIterator<Item = Append>) {
        let mut p = self.inner.pending.lock().expect("log mutex poisoned");
        let was_empty = p.appends.is_empty();
        if p.shutdown {
            for a in appends {
                if let Some(done) = a.done {
                    let _ = done.send(Err(Error::Closed));
                }
            }
            return;
        }
        p.appends.extend(appends);
        if was_empty {
            self.inner.wake.notify_one();
        }
    }

    /// Reads and verifies the frame of record `seq` at `offset..offset+len`, returning
    /// the payload. Blocking: call from `spawn_blocking`.
    pub(crate) fn read(&self, seq: u64, offset: u32, len: u32) -> Result<Vec<u8>> {
        let (first, file) = {
            let segs = self.inner.segments.read().expect("segments lock poisoned");
            let (first, file) = segs.range(..=seq).next_back().ok_or_else(|| {
                Error::corrupt(&self.inner.dir, 0, format!("no segment holds {seq}"))
            })?;
            (*first, file.clone())
        };
        let path = segment::path(&self.inner.dir, first);
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset as u64)
            .map_err(|e| Error::io("read", &path, e))?;
        match segment::parse_frame(&buf) {
            Frame::Valid { frame_len, .. } if frame_len == buf.len() => {
                buf.drain(..FRAME_HEADER_LEN);
                Ok(buf)
            }
            _ => Err(Error::corrupt(
                path,
                offset as u64,
                "record changed on disk",
            )),
        }
    }

    /// The open file of segment `first` (named by its first LSN).
    fn segment_file(&self, first: u64) -> Result<Arc<File>> {
        let segs = self.inner.segments.read().expect("segments lock poisoned");
        segs.get(&first).cloned().ok_or_else(|| {
            Error::corrupt(
                segment::path(&self.inner.dir, first),
                0,
                "segment holding spilled messages is gone",
            )
        })
    }

    /// The path of the segment holding `lsn` (for error messages).
    pub(crate) fn segment_path(&self, lsn: u64) -> PathBuf {
        let segs = self.inner.segments.read().expect("segments lock poisoned");
        let first = segs.range(..=lsn).next_back().map_or(0, |(k, _)| *k);
        segment::path(&self.inner.dir, first)
    }

    /// A snapshot of the writer's counters.
    pub(crate) fn stats(&self) -> LogStats {
        let s = &self.inner.stats;
        LogStats {
            appends: s.appends.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            synced_records: s.synced_records.load(Ordering::Relaxed),
            max_records_per_fsync: s.max_records_per_fsync.load(Ordering::Relaxed),
            segments_created: s.segments_created.load(Ordering::Relaxed),
            segments_deleted: s.segments_deleted.load(Ordering::Relaxed),
            fsync_buckets: std::array::from_fn(|i| s.fsync_buckets[i].load(Ordering::Relaxed)),
            fsync_nanos: s.fsync_nanos.load(Ordering::Relaxed),
        }
    }

    /// Number of segment files currently on disk.
    pub(crate) fn segment_count(&self) -> usize {
        self.inner
            .segments
            .read()
            .expect("segments lock poisoned")
            .len()
    }

    /// Stops the writer after it has written everything pending, and waits for it.
    /// Blocking.
    pub(crate) fn shutdown(&self) {
        {
            let mut p = self.inner.pending.lock().expect("log mutex poisoned");
            p.shutdown = true;
            self.inner.wake.notify_one();
        }
        let thread = self.thread.lock().expect("log mutex poisoned").take();
        if let Some(t) = thread {
            // The last handle may be dropped on the writer thread itself (a commit hook
            // releasing the final reference); joining ourselves would deadlock.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn fail_next_writes(&self, n: u64) {
        self.inner.fail_writes.store(n, Ordering::SeqCst);
    }
}

impl SegmentReader for Log {
    fn read_at(&self, first: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let file = self.segment_file(first)?;
        read_full(&file, &self.path(first), offset, buf)
    }

    fn path(&self, first: u64) -> PathBuf {
        segment::path(&self.inner.dir, first)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Recovered {
    /// Starts the writer thread.
    pub(crate) fn start(self, hook: impl CommitHook) -> Result<Log> {
        let inner = self.inner.clone();
        let writer = Writer {
            inner: self.inner,
            active: self.active,
            config: self.config,
            last_sync: Instant::now(),
            buf: Vec::with_capacity(1 << 20),
            locations: Vec::new(),
            _lock: self.lock,
        };
        let thread = std::thread::Builder::new()
            .name("mw-queue-log".into())
            .spawn(move || writer.run(hook))
            .map_err(|e| Error::io("spawn", &inner.dir, e))?;
        Ok(Log {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }
}

struct Writer {
    inner: Arc<Inner>,
    active: Active,
    config: LogConfig,
    last_sync: Instant,
    buf: Vec<u8>,
    locations: Vec<Location>,
    /// Held for the writer's lifetime: the directory lock is released when it exits.
    _lock: File,
}

impl Writer {
    fn run(mut self, mut hook: impl CommitHook) {
        let mut batch: Vec<Append> = Vec::new();
        loop {
            let shutdown = {
                let mut p = self.inner.pending.lock().expect("log mutex poisoned");
                loop {
                    if !p.appends.is_empty() {
                        std::mem::swap(&mut p.appends, &mut batch);
                        break false;
                    }
                    if p.shutdown {
                        break true;
                    }
                    match self.config.fsync {
                        FsyncPolicy::Interval(d) if self.active.unsynced > 0 => {
                            let wait = d.saturating_sub(self.last_sync.elapsed());
                            if wait.is_zero() {
                                drop(p);
                                let _ = self.sync();
                                p = self.inner.pending.lock().expect("log mutex poisoned");
                            } else {
                                p = self
                                    .inner
                                    .wake
                                    .wait_timeout(p, wait)
                                    .expect("log mutex poisoned")
                                    .0;
                            }
                        }
                        _ => p = self.inner.wake.wait(p).expect("log mutex poisoned"),
                    }
                }
            };
            if shutdown {
                if self.active.unsynced > 0 && !self.inner.poisoned.load(Ordering::Relaxed) {
                    let _ = self.sync();
                }
                return;
            }
            self.process(&mut batch, &mut hook);
            batch.clear();
        }
    }

    fn fail(&self, appends: &mut [Append], hook: &mut impl CommitHook, err: Error) {
        hook.failed(appends, &err);
        for a in appends {
            if let Some(done) = a.done.take() {
                let _ = done.send(Err(err.clone()));
            }
        }
    }

    fn process(&mut self, batch: &mut [Append], hook: &mut impl CommitHook) {
        if self.inner.poisoned.load(Ordering::Relaxed) {
            self.fail(batch, hook, Error::Poisoned);
            return;
        }
        let mut start = 0;
        while start < batch.len() {
            // Encode the longest run that fits into the active segment (at least one record).
            self.buf.clear();
            self.locations.clear();
            let mut end = start;
            while end < batch.len() {
                let a = &batch[end];
                let frame_len = (FRAME_HEADER_LEN + a.record.encoded_len()) as u64;
                let pos = self.active.pos + self.buf.len() as u64;
                let segment_has_records = pos > HEADER_LEN;
                if segment_has_records && pos + frame_len > self.config.segment_size {
                    break;
                }
                if !segment_has_records && self.active.first_seq > a.lsn {
                    // Cannot happen: a new segment is named after the first record it gets.
                    debug_assert!(
                        false,
                        "record {} before segment {}",
                        a.lsn, self.active.first_seq
                    );
                }
                let n = segment::encode_frame(&a.record, a.lsn, &mut self.buf);
                self.locations.push(Location {
                    segment: self.active.first_seq,
                    offset: pos as u32,
                    len: n as u32,
                });
                end += 1;
            }
            if end == start {
                // The active segment is full: roll and retry this record.
                if let Err(e) = self.roll(batch[start].lsn) {
                    self.fail(&mut batch[start..], hook, e);
                    return;
                }
                continue;
            }
            if let Err(e) = self.write_chunk() {
                self.fail(&mut batch[start..], hook, e);
                return;
            }
            self.active.unsynced += (end - start) as u64;
            let sync_now = match self.config.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
                FsyncPolicy::Never => false,
            };
            if sync_now {
                if let Err(e) = self.sync() {
                    self.fail(&mut batch[start..], hook, e);
                    return;
                }
            }
            let chunk = &mut batch[start..end];
            let watermark = hook.committed(chunk, &self.locations);
            // Deleting before answering makes "acked => its segment may be gone"
            // observable to callers; it happens once per segment at most.
            if let Err(e) = self.delete_below(watermark) {
                tracing::error!(error = %e, "deleting consumed segments failed");
            }
            for a in chunk.iter_mut() {
                if let Some(done) = a.done.take() {
                    let _ = done.send(Ok(()));
                }
            }
            start = end;
        }
    }

    fn write_chunk(&mut self) -> Result<()> {
        #[cfg(test)]
        {
            if self
                .inner
                .fail_writes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                // Simulate a partial write followed by ENOSPC.
                let half = &self.buf[..self.buf.len() / 2];
                let _ = self.active.file.write_all_at(half, self.active.pos);
                let err = std::io::Error::from_raw_os_error(libc::ENOSPC);
                return self.rollback(Error::io("write", self.active.path.clone(), err));
            }
        }
        let a = &mut self.active;
        match a.file.write_all_at(&self.buf, a.pos) {
            Ok(()) => {
                a.pos += self.buf.len() as u64;
                let s = &self.inner.stats;
                s.writes.fetch_add(1, Ordering::Relaxed);
                s.bytes_written
                    .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                s.appends
                    .fetch_add(self.locations.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let err = Error::io("write", a.path.clone(), e);
                self.rollback(err)
            }
        }
    }

    /// Cuts a partial write off so the next batch starts at a record boundary.
    fn rollback(&mut self, err: Error) -> Result<()> {
        if let Err(e) = self.active.file.set_len(self.active.pos) {
            tracing::error!(error = %e, "rollback after failed write failed; poisoning the log");
            self.inner.poisoned.store(true, Ordering::Relaxed);
        }
        Err(err)
    }

    fn sync(&mut self) -> Result<()> {
        let started = Instant::now();
        if let Err(e) = self.active.file.sync_data() {
            // After a failed fsync the page cache state is unknown (the kernel may have
            // dropped the dirty pages), so retrying is unsafe: poison.
            self.inner.poisoned.store(true, Ordering::Relaxed);
            return Err(Error::io("fsync", self.active.path.clone(), e));
        }
        let s = &self.inner.stats;
        let n = std::mem::take(&mut self.active.unsynced);
        s.fsyncs.fetch_add(1, Ordering::Relaxed);
        s.synced_records.fetch_add(n, Ordering::Relaxed);
        s.max_records_per_fsync.fetch_max(n, Ordering::Relaxed);
        let took = started.elapsed();
        let slot = FSYNC_BUCKETS_SECONDS
            .iter()
            .position(|b| took.as_secs_f64() <= *b)
            .unwrap_or(FSYNC_BUCKETS_SECONDS.len());
        s.fsync_buckets[slot].fetch_add(1, Ordering::Relaxed);
        s.fsync_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.last_sync = Instant::now();
        Ok(())
    }

    fn roll(&mut self, first_seq: u64) -> Result<()> {
        // Always sync the closed segment: recovery treats a torn record in a
        // non-last segment as corruption, whatever the fsync policy.
        self.sync()?;
        let (path, file) = create_segment(&self.inner.dir, first_seq)?;
        let file = Arc::new(file);
        self.inner
            .segments
            .write()
            .expect("segments lock poisoned")
            .insert(first_seq, file.clone());
        self.inner
            .stats
            .segments_created
            .fetch_add(1, Ordering::Relaxed);
        self.active = Active {
            first_seq,
            path,
            file,
            pos: HEADER_LEN,
            unsynced: 0,
        };
        Ok(())
    }

    fn delete_below(&mut self, watermark: u64) -> Result<()> {
        let doomed: Vec<u64> = {
            let segs = self.inner.segments.read().expect("segments lock poisoned");
            segs.range(..watermark.min(self.active.first_seq))
                .map(|(k, _)| *k)
                .collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        // The settle records that made these segments dead must be durable before
        // the data goes, whatever the fsync policy.
        if self.active.unsynced > 0 {
            self.sync()?;
        }
        for first in &doomed {
            let path = segment::path(&self.inner.dir, *first);
            std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            self.inner
                .segments
                .write()
                .expect("segments lock poisoned")
                .remove(first);
            self.inner
                .stats
                .segments_deleted
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(file = %path.display(), "deleted consumed segment");
        }
        sync_dir(&self.inner.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::SettleReason;

    type Seen = Arc<Mutex<Vec<(u64, Location)>>>;

    struct Collect(Seen);
    impl CommitHook for Collect {
        fn committed(&mut self, appends: &[Append], locations: &[Location]) -> u64 {
            let mut v = self.0.lock().unwrap();
            for (a, l) in appends.iter().zip(locations) {
                v.push((a.lsn, *l));
            }
            0
        }
        fn failed(&mut self, _: &[Append], _: &Error) {}
    }

    fn rec(target: u64) -> Record {
        Record::Settle {
            queue: "q".into(),
            target,
            reason: SettleReason::Acked,
        }
    }

    fn open(dir: &Path, segment_size: u64) -> (Log, u64, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let r = Log::recover(
            dir,
            LogConfig {
                fsync: FsyncPolicy::Always,
                segment_size,
            },
            |_, _, _| {},
        )
        .unwrap();
        let next = r.next_seq;
        (r.start(Collect(seen.clone())).unwrap(), next, seen)
    }

    async fn append_wait(log: &Log, seq: u64) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        log.append([Append {
            lsn: seq,
            record: rec(seq),
            done: Some(tx),
        }]);
        rx.await.unwrap()
    }

    #[tokio::test]
    async fn append_reopen_round_trip_and_segment_roll() {
        let dir = tempfile::tempdir().unwrap();
        let (log, next, seen) = open(dir.path(), 200);
        assert_eq!(next, 1);
        for s in 1..=20 {
            append_wait(&log, s).await.unwrap();
        }
        assert!(log.segment_count() > 1, "small segments roll");
        let (seq, loc) = seen.lock().unwrap()[7];
        let payload = log.read(seq, loc.offset, loc.len).unwrap();
        assert_eq!(crate::storage::record::decode(&payload).unwrap().0, seq);
        drop(log);
        let (log, next, _) = open(dir.path(), 200);
        assert_eq!(next, 21);
        drop(log);
    }

    #[tokio::test]
    async fn second_open_of_a_locked_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, _, _) = open(dir.path(), 1 << 20);
        let err = Log::recover(
            dir.path(),
            LogConfig {
                fsync: FsyncPolicy::Never,
                segment_size: 1 << 20,
            },
            |_, _, _| {},
        )
        .err()
        .unwrap();
        assert!(matches!(err, Error::Locked(_)));
    }

    #[tokio::test]
    async fn disk_full_is_an_error_and_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _, _) = open(dir.path(), 1 << 20);
        append_wait(&log, 1).await.unwrap();
        log.fail_next_writes(1);
        let err = append_wait(&log, 2).await.unwrap_err();
        assert!(matches!(err, Error::DiskFull { .. }), "{err}");
        append_wait(&log, 3).await.unwrap();
        drop(log);
        let mut seqs = Vec::new();
        let r = Log::recover(
            dir.path(),
            LogConfig {
                fsync: FsyncPolicy::Always,
                segment_size: 1 << 20,
            },
            |s, _, _| seqs.push(s),
        )
        .unwrap();
        assert_eq!(seqs, vec![1, 3]);
        assert!(r.scan_report.torn_tail.is_none());
    }
}
