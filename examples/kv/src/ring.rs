//! A ring of mw-kv nodes, as the lectures and the Dynamo paper build one: keys
//! partitioned by consistent hashing with virtual nodes, replicated on N nodes, writes
//! acknowledged by W and reads answered by R of them, concurrent writes kept as
//! siblings under dotted version vectors (never last-write-wins), sloppy quorums with
//! hinted handoff kept in mw-queue queues, read repair, and membership by gossip.
//!
//! # Layout
//! - [`hash`]: [`Ring`](hash::Ring), consistent hashing and preference lists.
//! - [`dvv`]: dots, version vectors, siblings and their merge.
//! - [`types`]: quorums, membership, and the replies (which replicas answered).
//! - [`store`]: [`ReplicaStore`](store::ReplicaStore), a node's replicas in its local store.
//! - [`service`]: the `mw.kv.ring` (clients) and `mw.kv.replica` (between nodes) services.
//! - [`node`]: [`RingNode`](node::RingNode): replica, coordinator, failure detector,
//!   gossip, hinted handoff, rebalancing.
//! - [`merkle`]: key ranges and their Merkle trees (pure computation).
//! - [`anti_entropy`]: the trees compared between replicas, the differing keys
//!   exchanged, and tombstone GC.
//! - [`serve`]: hosting a node's services.
//! - [`client`]: [`RingClient`](client::RingClient), the iteratively routing client.
//!
//! `incr`, compare-and-set, `scan` and `watch` need one order of writes, which sloppy
//! quorums do not give: a ring node refuses them (`KvError::NotOnRing`).

pub mod anti_entropy;
pub mod client;
pub mod dvv;
pub mod hash;
pub mod merkle;
pub mod node;
pub mod serve;
pub mod service;
pub mod store;
pub mod types;
