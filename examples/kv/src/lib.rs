//! mw-kv: mw's flagship, a key-value store written only on mw's public API.
//!
//! One node is like redis or etcd: `get`/`put`/`delete`/`incr`, compare-and-set on
//! versions, TTLs, ordered prefix scans, and `watch` streams of changes that resume by
//! revision. Clients reach it over any mw transport (TCP, Unix, in-process) with the
//! generated [`KvClient`], or embed it with [`Kv::open`].
//!
//! # Layout
//! - [`types`]: versions, revisions, stored values, options, events.
//! - [`error`]: [`KvError`], the same embedded and over the wire.
//! - [`config`]: [`Config`], [`FsyncPolicy`], [`Limits`].
//! - [`storage`]: the [`Storage`] seam and [`MemoryStorage`];
//!   [`redb_engine`]: [`RedbStorage`], the on-disk engine.
//! - [`kv`]: [`Kv`], one node's store: reads, the single writer with group commit,
//!   watch fan-out through an mw-pubsub bus.
//! - [`service`]: the `mw.kv` service ([`KvService`]) and [`KvNode`], which serves it.
//! - [`cli`]: the `mw-kv` command line.
#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod error;
pub mod fjall_engine;
pub mod kv;
pub mod redb_engine;
pub mod ring;
pub mod service;
mod state;
pub mod storage;
mod streams;
pub mod types;
mod writer;

pub use config::{Config, Engine, FsyncPolicy, Limits};
pub use error::{KvError, Result};
pub use kv::Kv;
pub use redb_engine::RedbStorage;
pub use service::{
    KvNode, KvService, KvServiceClient, KvServiceClient as KvClient, KvServiceServer,
};
pub use storage::{MemoryStorage, Storage};
pub use types::{
    BatchOp, BatchReply, DeleteOptions, DeleteResult, Durability, Entry, Event, EventKind,
    PutOptions, Status, Update, UpdateResult, Version, Versioned, WriteResult,
};
