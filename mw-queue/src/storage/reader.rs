//! Positional reads of segment files by their first LSN: the [`SegmentReader`]
//! seam between the storage layer and the code that reads records back (the
//! log's reads, the engine's backlog refills, replay during recovery).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::storage::segment;

/// Reads bytes of a segment by its first LSN.
pub(crate) trait SegmentReader {
    /// Reads into `buf` at `offset`, returning how many bytes were read (fewer at
    /// the end of the file).
    fn read_at(&self, segment: u64, offset: u64, buf: &mut [u8]) -> Result<usize>;
    /// The segment's path (for errors).
    fn path(&self, segment: u64) -> PathBuf;
}

/// Reads everything up to `buf.len()` bytes or the end of `file`.
pub(crate) fn read_full(file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    Ok(n)
}

/// Reads segments straight from the data directory (used during recovery,
/// before the log has opened them). Keeps the last file open.
pub(crate) struct DirReader {
    dir: PathBuf,
    open: std::cell::RefCell<Option<(u64, File)>>,
}

impl DirReader {
    pub(crate) fn new(dir: &Path) -> Self {
        DirReader {
            dir: dir.to_path_buf(),
            open: std::cell::RefCell::new(None),
        }
    }
}

impl SegmentReader for DirReader {
    fn read_at(&self, seg: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let path = self.path(seg);
        let mut open = self.open.borrow_mut();
        if open.as_ref().map(|(s, _)| *s) != Some(seg) {
            let f = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            *open = Some((seg, f));
        }
        let (_, f) = open.as_ref().expect("opened above");
        read_full(f, &path, offset, buf)
    }

    fn path(&self, seg: u64) -> PathBuf {
        segment::path(&self.dir, seg)
    }
}
