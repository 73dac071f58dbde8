//! The crate's one error type.
//!
//! Expected conditions are not errors: a torn record at the tail of the last
//! segment is reported in [`RecoveryReport`](crate::RecoveryReport), and an
//! empty queue makes [`Consumer::recv`](crate::Consumer::recv) wait. Every
//! corruption error names the segment file and byte offset.

use std::{path::PathBuf, sync::Arc};

use crate::message::DeliveryTag;

/// Everything that can go wrong in `mw-queue`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A segment holds bytes that cannot be a valid record, and they are not a torn tail.
    #[error("corrupt segment {file}: {reason} at offset {offset}")]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the bad record (or header) inside `file`.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The disk is full: the write was rolled back and nothing was acknowledged.
    #[error("disk full while writing {file}")]
    DiskFull {
        /// The segment being written.
        file: PathBuf,
        /// The underlying error (`ENOSPC`).
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Any other I/O failure.
    #[error("i/o error: {op} {path}")]
    Io {
        /// What was being done (`"open"`, `"write"`, `"fsync"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// An earlier fsync or rollback failed, so the log no longer knows what is on disk.
    ///
    /// The manager must be reopened (which runs recovery).
    #[error("log is poisoned by an earlier failure; reopen the queue manager")]
    Poisoned,
    /// Another process or manager holds the data directory.
    #[error("data directory {0} is locked by another queue manager")]
    Locked(PathBuf),
    /// The queue already holds `Config::max_queue_len` messages.
    #[error("queue {queue} is full ({limit} messages)")]
    QueueFull {
        /// The queue.
        queue: String,
        /// The configured limit.
        limit: u64,
    },
    /// The message body exceeds `Config::max_message_size`.
    #[error("message of {size} bytes exceeds the max message size of {limit} bytes")]
    MessageTooLarge {
        /// Body size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A queue name is empty or longer than 255 bytes.
    #[error("invalid queue name {0:?}")]
    InvalidQueueName(String),
    /// The delivery is no longer in flight: already settled, or its visibility timeout
    /// expired and the message went back to the queue.
    #[error("delivery {tag} on queue {queue} is not in flight")]
    DeliveryNotFound {
        /// The queue.
        queue: String,
        /// The stale tag.
        tag: DeliveryTag,
    },
    /// The queue manager is shutting down.
    #[error("queue manager is closed")]
    Closed,
    /// No queue by that name: nothing was ever stored in it (or it was deleted).
    /// Administrative operations on such a name are refused rather than creating it.
    #[error("no queue named {0:?}")]
    UnknownQueue(String),
    /// The queue cannot be deleted while consumers are attached (or sends to it are
    /// still being written).
    #[error("queue {queue} is in use ({consumers} consumers attached); stop them first")]
    QueueInUse {
        /// The queue.
        queue: String,
        /// Consumers attached.
        consumers: u64,
    },
    /// The consumer was closed by an administrator
    /// ([`QueueManager::close_consumer`](crate::QueueManager::close_consumer)). What it
    /// held unsettled is redelivered after the visibility timeout.
    #[error("consumer {consumer} was closed by an administrator")]
    ConsumerClosed {
        /// The consumer's number.
        consumer: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            Error::DiskFull {
                file: path,
                source: Arc::new(source),
            }
        } else {
            Error::Io {
                op,
                path,
                source: Arc::new(source),
            }
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
