//! The Merkle trees anti-entropy compares ([`crate::ring::anti_entropy`]): the ring's
//! position space cut into [`RANGES`] ranges of [`LEAVES`] leaves each, one tree per
//! range over the `(key, digest)` pairs in it, and the ring fingerprint two nodes must
//! share to compare trees. Pure computation, no I/O.

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::ring::hash::{key_position, Ring};

/// log2 of [`RANGES`].
pub const RANGE_BITS: u32 = 6;
/// Ranges the ring's position space is cut into (equal widths).
pub const RANGES: u32 = 1 << RANGE_BITS;
/// log2 of [`LEAVES`].
pub const LEAF_BITS: u32 = 8;
/// Leaves of a range's Merkle tree (equal sub-ranges).
pub const LEAVES: usize = 1 << LEAF_BITS;

/// The range of ring position `position`.
pub fn range_of(position: u64) -> u32 {
    (position >> (64 - RANGE_BITS)) as u32
}

/// The first and last ring positions of `range` (`range < RANGES`).
pub fn range_bounds(range: u32) -> (u64, u64) {
    let from = u64::from(range % RANGES) << (64 - RANGE_BITS);
    (from, from | ((1u64 << (64 - RANGE_BITS)) - 1))
}

/// The leaf, within its range's tree, of ring position `position`.
pub fn leaf_of(position: u64) -> usize {
    ((position >> (64 - RANGE_BITS - LEAF_BITS)) as usize) & (LEAVES - 1)
}

/// The first and last ring positions of leaf `leaf` of `range`.
pub fn leaf_bounds(range: u32, leaf: usize) -> (u64, u64) {
    let (from, _) = range_bounds(range);
    let width = 64 - RANGE_BITS - LEAF_BITS;
    let from = from | (((leaf % LEAVES) as u64) << width);
    (from, from | ((1u64 << width) - 1))
}

/// A fingerprint of the ring two nodes must share to compare trees: its members, their
/// tokens and the replication factor (which decide every key's preference list).
pub fn ring_fingerprint(ring: &Ring, n: usize) -> u64 {
    let mut h = Xxh3::new();
    h.update(&(n as u64).to_le_bytes());
    h.update(&ring.tokens().to_le_bytes());
    for node in ring.nodes() {
        h.update(node.as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

/// The Merkle tree of one range: [`LEAVES`] leaves over equal sub-ranges, inner nodes
/// hashing their two children. Equal trees mean equal `(key, digest)` sets (up to
/// 64-bit hash collisions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// Heap order: `nodes[1]` is the root, the children of `i` are `2i` and `2i + 1`,
    /// leaf `j` is `nodes[LEAVES + j]`; `nodes[0]` is unused (0).
    nodes: Vec<u64>,
}

impl MerkleTree {
    /// The tree over `entries` (`(key, digest)`, any order; meant for the keys of one
    /// range: keys of other ranges fold into the leaves of the same offset).
    pub fn build<'a>(entries: impl IntoIterator<Item = (&'a [u8], u64)>) -> MerkleTree {
        let mut sorted: Vec<(usize, u64, &[u8], u64)> = entries
            .into_iter()
            .map(|(k, d)| {
                let pos = key_position(k);
                (leaf_of(pos), pos, k, d)
            })
            .collect();
        sorted.sort_unstable();
        let mut nodes = vec![0u64; 2 * LEAVES];
        let mut current: Option<(usize, Xxh3)> = None;
        for (leaf, _, key, digest) in sorted {
            match &mut current {
                Some((l, _)) if *l == leaf => {}
                _ => {
                    if let Some((l, h)) = current.take() {
                        nodes[LEAVES + l] = h.digest();
                    }
                    current = Some((leaf, Xxh3::new()));
                }
            }
            let h = &mut current.as_mut().expect("set above").1;
            h.update(&(key.len() as u32).to_le_bytes());
            h.update(key);
            h.update(&digest.to_le_bytes());
        }
        if let Some((l, h)) = current {
            nodes[LEAVES + l] = h.digest();
        }
        for i in (1..LEAVES).rev() {
            let (a, b) = (nodes[2 * i], nodes[2 * i + 1]);
            nodes[i] = if a == 0 && b == 0 {
                0
            } else {
                let mut buf = [0u8; 16];
                buf[..8].copy_from_slice(&a.to_le_bytes());
                buf[8..].copy_from_slice(&b.to_le_bytes());
                xxh3_64(&buf)
            };
        }
        MerkleTree { nodes }
    }

    /// A tree received from a peer (its [`nodes`](Self::nodes)); `None` if malformed.
    pub fn from_nodes(nodes: Vec<u64>) -> Option<MerkleTree> {
        (nodes.len() == 2 * LEAVES).then_some(MerkleTree { nodes })
    }

    /// The hashes in heap order (what a peer sends).
    pub fn nodes(&self) -> &[u64] {
        &self.nodes
    }

    /// The hashes in heap order, owned (what a node sends a peer).
    pub fn into_nodes(self) -> Vec<u64> {
        self.nodes
    }

    /// The root hash (0: no key).
    pub fn root(&self) -> u64 {
        self.nodes[1]
    }

    /// The hash of leaf `leaf`.
    pub fn leaf(&self, leaf: usize) -> u64 {
        self.nodes[LEAVES + leaf]
    }

    /// The leaves whose hashes differ from `other`'s, ascending, found by descending
    /// only into subtrees whose hashes differ.
    pub fn diff(&self, other: &MerkleTree) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![1usize];
        while let Some(i) = stack.pop() {
            if self.nodes[i] == other.nodes[i] {
                continue;
            }
            if i >= LEAVES {
                out.push(i - LEAVES);
            } else {
                stack.push(2 * i + 1);
                stack.push(2 * i);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entries(n: usize) -> Vec<(Bytes, u64)> {
        (0..n)
            .map(|i| (Bytes::from(format!("key-{i}")), i as u64 * 7 + 1))
            .collect()
    }

    fn tree(e: &[(Bytes, u64)]) -> MerkleTree {
        MerkleTree::build(e.iter().map(|(k, d)| (&k[..], *d)))
    }

    #[test]
    fn ranges_and_leaves_tile_the_ring() {
        assert_eq!(range_bounds(0).0, 0);
        assert_eq!(range_bounds(RANGES - 1).1, u64::MAX);
        for r in 0..RANGES - 1 {
            assert_eq!(range_bounds(r).1 + 1, range_bounds(r + 1).0);
        }
        for r in [0, 17, RANGES - 1] {
            let (from, to) = range_bounds(r);
            assert_eq!(leaf_bounds(r, 0).0, from);
            assert_eq!(leaf_bounds(r, LEAVES - 1).1, to);
            for l in 0..LEAVES - 1 {
                assert_eq!(leaf_bounds(r, l).1 + 1, leaf_bounds(r, l + 1).0);
            }
            for l in [0, 1, 100, LEAVES - 1] {
                let (a, b) = leaf_bounds(r, l);
                assert_eq!((range_of(a), leaf_of(a)), (r, l));
                assert_eq!((range_of(b), leaf_of(b)), (r, l));
            }
        }
    }

    #[test]
    fn same_data_same_root_whatever_the_order() {
        let e = entries(5000);
        let mut reversed = e.clone();
        reversed.reverse();
        let (a, b) = (tree(&e), tree(&reversed));
        assert_eq!(a, b);
        assert_ne!(a.root(), 0);
        assert!(a.diff(&b).is_empty());
        assert_eq!(tree(&[]).root(), 0, "no key: root 0");
        let again = MerkleTree::from_nodes(a.nodes().to_vec()).unwrap();
        assert_eq!(again, a);
        assert!(MerkleTree::from_nodes(vec![0; 3]).is_none());
    }

    #[test]
    fn one_differing_key_in_a_range_is_exactly_one_differing_leaf() {
        // The keys of one range, as anti-entropy builds trees.
        let e: Vec<(Bytes, u64)> = entries(100_000)
            .into_iter()
            .filter(|(k, _)| range_of(key_position(k)) == 5)
            .collect();
        assert!(e.len() > 1000);
        let base = tree(&e);
        for i in [0, e.len() / 2, e.len() - 1] {
            let leaf = leaf_of(key_position(&e[i].0));
            let (from, to) = leaf_bounds(5, leaf);
            assert!((from..=to).contains(&key_position(&e[i].0)));
            let mut changed = e.clone();
            changed[i].1 ^= 1;
            let other = tree(&changed);
            assert_ne!(base.root(), other.root());
            assert_eq!(base.diff(&other), [leaf]);
            assert_eq!(other.diff(&base), [leaf]);
        }
    }

    #[test]
    fn one_differing_key_is_exactly_one_differing_leaf() {
        let e = entries(5000);
        let base = tree(&e);
        for i in [0usize, 1234, 4999] {
            let key = &e[i].0;
            let leaf = leaf_of(key_position(key));
            // A different digest.
            let mut changed = e.clone();
            changed[i].1 += 1;
            assert_eq!(base.diff(&tree(&changed)), [leaf]);
            // A missing key.
            let mut missing = e.clone();
            missing.remove(i);
            assert_eq!(base.diff(&tree(&missing)), [leaf]);
            assert_ne!(base.root(), tree(&missing).root());
        }
        // Two keys in different leaves: two leaves, ascending.
        let mut two = e.clone();
        two[0].1 += 1;
        two[1].1 += 1;
        let mut want = vec![
            leaf_of(key_position(&e[0].0)),
            leaf_of(key_position(&e[1].0)),
        ];
        want.sort();
        want.dedup();
        assert_eq!(base.diff(&tree(&two)), want);
    }
}
