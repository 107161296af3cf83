//! The Merkle tree over the journal (RFC 9162, `journal::merkle`), kept as derived state so that
//! a signed tree head, an inclusion proof and a consistency proof are answered in O(log n) reads,
//! never by scanning the journal.
//!
//! Leaf `i` is entry `i + 1`: its hash is SHA-256(0x00 ‖ the entry's stored bytes), whatever the
//! entry's format version. The tree is additive: the chain and the entries stay as they are.
//!
//! What is stored (derived state, written once, never one key per entry): the hash of each perfect
//! subtree of height 8, 16, 24, … (`L` level(1) index(8)), that is 32 bytes per 256 entries. The
//! leaves themselves are not stored: the journal holds the entries, and a full tile's 256 leaves
//! are hashed again from them when a proof needs them (one bounded read of 256 consecutive entries,
//! ~0.1 ms of hashing), which keeps the tree's disk cost at an eighth of a byte per entry instead of
//! 32 bytes that no compression shrinks and every merge of derived state would copy again.
//!
//! The leaves of the tile not yet full (at most 255) and the compact form (one hash per set bit of
//! the size) are in memory (`Tail`), rebuilt at start from the checkpoint and the journal's last
//! entries. Any perfect subtree's hash is folded from at most 128 hashes of the level below it
//! that is a multiple of 8: a proof costs O(log n) reads of derived state, at most a few tiles'
//! entries, and at most ~8,000 hashes.
//!
//! Invariant: the tree's size is always the sequence of the journal head derived state reflects
//! (`Derived::apply` asserts it), so tree and records are checkpointed and rebuilt together.

use super::journal::Journal;
use super::journal::merkle::{self, Compact, Hash, Subtrees};
use super::keys;
use crate::store::{Op, Store, StoreError};

/// Leaves per tile: the span of a stored subtree of the lowest stored level.
pub const TILE_LEAVES: usize = 256;

/// Where a full tile's leaf hashes come from: the journal's entries, hashed again.
pub trait Leaves {
    /// The leaf hashes of leaves `first .. first + count` (all below the tree's size).
    fn leaves(&self, first: u64, count: usize) -> Result<Vec<Hash>, StoreError>;
}

/// A view's source of full tiles' leaves.
#[derive(Clone, Copy)]
pub enum Source<'s> {
    /// The journal the tree is of: its entries, hashed again.
    Journal(&'s dyn Journal),
    /// Leaves from elsewhere (tests).
    Other(&'s dyn Leaves),
    /// None: while the tail loads, every peak is in a stored level or the tail.
    None,
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Journal(_) => "Source::Journal",
            Source::Other(_) => "Source::Other",
            Source::None => "Source::None",
        })
    }
}

impl Source<'_> {
    fn leaves(&self, first: u64, count: usize) -> Result<Vec<Hash>, StoreError> {
        match self {
            Source::Journal(journal) => {
                let read =
                    journal.read(first + 1, count).map_err(|e| StoreError::Unavailable(format!("the journal: {e}")))?;
                if read.len() != count || read.first().is_some_and(|s| s.sequence != first + 1) {
                    return Err(missing(&format!("journal entries {} to {}", first + 1, first + count as u64)));
                }
                Ok(read.iter().map(|s| merkle::leaf_hash(&s.bytes)).collect())
            }
            Source::Other(leaves) => leaves.leaves(first, count),
            Source::None => {
                Err(missing(&format!("leaves from {first} while loading (a peak outside the stored levels)")))
            }
        }
    }
}
/// Heights between stored levels: log2(TILE_LEAVES).
const LEVEL_STEP: u32 = 8;

/// The part of the tree not yet stored: the compact form, and the leaves of the tile being filled.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    compact: Compact,
    leaves: Vec<Hash>,
}

impl Tail {
    pub fn size(&self) -> u64 {
        self.compact.size()
    }

    pub fn root(&self) -> Hash {
        self.compact.root()
    }

    /// Appends a leaf; the stored-level subtrees it completes go into `ops`, to be written with
    /// the group's other derived writes.
    pub fn push(&mut self, leaf: Hash, ops: &mut Vec<(Vec<u8>, Op)>) {
        self.compact.push_reporting(leaf, |height, index, hash| {
            if height % LEVEL_STEP == 0 {
                ops.push((keys::tree_node(height, index), Op::Put(hash.to_vec())));
            }
        });
        self.leaves.push(leaf);
        if self.leaves.len() == TILE_LEAVES {
            // The tile is full: its subtree's hash was just stored; its leaves are the journal's.
            self.leaves.clear();
        }
        debug_assert_eq!(self.leaves.len() as u64, self.compact.size() % TILE_LEAVES as u64);
    }

    /// The tail of a tree of `size` leaves whose stored levels are in `store` and whose last
    /// `size % 256` leaves are `leaves` (hashed from the journal's last entries). Every peak of a
    /// tree lies in a stored level or in those leaves: no full tile is read.
    pub fn load(store: &dyn Store, size: u64, leaves: Vec<Hash>) -> Result<Tail, StoreError> {
        assert_eq!(leaves.len() as u64, size % TILE_LEAVES as u64, "the leaves of the tile being filled");
        let mut view = View { store, source: Source::None, size, leaves, root: [0; 32] };
        let compact = Compact::from_peaks(size, |height, index| view.perfect(height, index))?;
        Ok(Tail { compact, leaves: view.leaves })
    }

    /// A reader's view of the tree as it is now, over `store` (derived state), hashing full tiles'
    /// leaves from `journal`.
    pub fn view<'s>(&self, store: &'s dyn Store, source: Source<'s>) -> View<'s> {
        View { store, source, size: self.size(), leaves: self.leaves.clone(), root: self.root() }
    }
}

/// The tree at one size: what a proof is made from. Full tiles only grow, so the store may move
/// on meanwhile; this view's tail and size stay as they were.
pub struct View<'s> {
    store: &'s dyn Store,
    source: Source<'s>,
    size: u64,
    leaves: Vec<Hash>,
    root: Hash,
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("size", &self.size).finish_non_exhaustive()
    }
}

impl View<'_> {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> Hash {
        self.root
    }

    /// The root of the tree of the first `size` leaves (`size` at most this view's).
    pub fn root_at(&mut self, size: u64) -> Result<Hash, StoreError> {
        assert!(size <= self.size, "a root of a tree this view holds");
        match size {
            0 => Ok(merkle::empty_root()),
            s if s == self.size => Ok(self.root),
            s => self.range_hash(0, s),
        }
    }

    /// The hash of leaf `index`.
    pub fn leaf(&mut self, index: u64) -> Result<Hash, StoreError> {
        Ok(self.level_hashes(0, index, 1)?[0])
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion(&mut self, index: u64, size: u64) -> Result<Option<Vec<Hash>>, StoreError> {
        if size > self.size {
            return Ok(None);
        }
        merkle::inclusion_path(index, size, self)
    }

    /// The consistency proof from the tree of `first_size` leaves to the tree of `size` leaves.
    pub fn consistency(&mut self, first_size: u64, size: u64) -> Result<Option<Vec<Hash>>, StoreError> {
        if size > self.size {
            return Ok(None);
        }
        merkle::consistency_path(first_size, size, self)
    }

    /// The hash of the perfect subtree of `height` and `index` (leaves `index·2^height ..`).
    fn perfect(&mut self, height: u32, index: u64) -> Result<Hash, StoreError> {
        let level = height - height % LEVEL_STEP;
        let rise = height - level;
        let mut row = self.level_hashes(level, index << rise, 1 << rise)?;
        while row.len() > 1 {
            row = row.chunks_exact(2).map(|pair| merkle::node_hash(&pair[0], &pair[1])).collect();
        }
        Ok(row[0])
    }

    /// `count` hashes of stored level `level` from `first` on, all within one tile's span.
    fn level_hashes(&mut self, level: u32, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        debug_assert!(level.is_multiple_of(LEVEL_STEP) && count <= TILE_LEAVES as u64);
        if level > 0 {
            return (first..first + count)
                .map(|index| {
                    let key = keys::tree_node(level, index);
                    let bytes = self.store.get(&key)?.ok_or_else(|| missing(&format!("node {level}/{index}")))?;
                    to_hash(&bytes, &key)
                })
                .collect();
        }
        let tile = first / TILE_LEAVES as u64;
        let at = (first % TILE_LEAVES as u64) as usize;
        let end = at + count as usize;
        if tile == self.size / TILE_LEAVES as u64 {
            return self.leaves.get(at..end).map(<[Hash]>::to_vec).ok_or_else(|| missing(&format!("leaf {first}")));
        }
        // A full tile: its leaves hashed again from the journal's entries.
        let leaves = self.source.leaves(tile * TILE_LEAVES as u64, TILE_LEAVES)?;
        Ok(leaves[at..end].to_vec())
    }
}

impl Subtrees for View<'_> {
    type Error = StoreError;

    /// The range as RFC 9162 splits it: perfect subtrees, largest first, folded from the right.
    fn range_hash(&mut self, start: u64, end: u64) -> Result<Hash, StoreError> {
        assert!(start < end && end <= self.size, "a range of leaves the view holds");
        let mut parts = Vec::with_capacity(64);
        let mut at = start;
        while at < end {
            let height = (end - at).ilog2().min(if at == 0 { u32::MAX } else { at.trailing_zeros() });
            parts.push(self.perfect(height, at >> height)?);
            at += 1 << height;
        }
        let last = parts.pop().expect("a range of one leaf or more");
        Ok(parts.iter().rev().fold(last, |right, left| merkle::node_hash(left, &right)))
    }
}

fn missing(what: &str) -> StoreError {
    StoreError::Corrupt(format!("the journal's Merkle tree has no {what}: rebuild derived state"))
}

fn to_hash(bytes: &[u8], key: &[u8]) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(format!("a tree hash of {} bytes at {key:?}", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, MemoryStore};
    use proptest::prelude::*;

    fn leaf(i: u64) -> Hash {
        merkle::leaf_hash(&i.to_be_bytes())
    }

    /// The journal's part: leaf hashes computed again, as from entries.
    struct Computed;

    impl Leaves for Computed {
        fn leaves(&self, first: u64, count: usize) -> Result<Vec<Hash>, StoreError> {
            Ok((first..first + count as u64).map(leaf).collect())
        }
    }

    /// A stored tree of `n` leaves, checkpointed at `cut` (its tail reloaded from the store there).
    fn grown(n: u64, cut: u64) -> (MemoryStore, Tail) {
        let store = MemoryStore::default();
        let mut tail = Tail::default();
        for i in 0..n {
            if i == cut {
                let leaves = (i - i % TILE_LEAVES as u64..i).map(leaf).collect();
                tail = Tail::load(&store, i, leaves).unwrap();
            }
            let mut ops = Vec::new();
            tail.push(leaf(i), &mut ops);
            store.commit(Batch { ops }).unwrap();
        }
        (store, tail)
    }

    #[test]
    fn one_key_per_stored_subtree_and_the_tail_reloads_to_the_same_tree() {
        let n = 256 * 256 * 2 + 300;
        let (store, tail) = grown(n, 256 * 256 + 17);
        let reference: Vec<Hash> = (0..n).map(leaf).collect();
        assert_eq!(tail.root(), merkle::root(&reference));
        let nodes = store.scan(b"L", None, usize::MAX).unwrap().len();
        assert_eq!(nodes as u64, n / 256 + n / 65536, "one key per stored-level subtree, none per entry");
        let mut view = tail.view(&store, Source::Other(&Computed));
        for size in [1, 255, 256, 257, 65536, 65537, n - 1, n] {
            assert_eq!(view.root_at(size).unwrap(), merkle::root(&reference[..size as usize]), "size {size}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn proofs_from_the_stored_tree_are_the_reference_proofs(
            n in 1u64..1400, a in any::<u64>(), b in any::<u64>(), cut in any::<u64>()
        ) {
            let (store, tail) = grown(n, cut % n);
            let reference: Vec<Hash> = (0..n).map(leaf).collect();
            let mut view = tail.view(&store, Source::Other(&Computed));
            let size = 1 + b % n;
            let index = a % size;
            let expected = merkle::inclusion_proof(index as usize, &reference[..size as usize]);
            prop_assert_eq!(view.inclusion(index, size).unwrap(), expected);
            let first = 1 + a % size;
            let expected = merkle::consistency_proof(first as usize, &reference[..size as usize]);
            prop_assert_eq!(view.consistency(first, size).unwrap(), expected);
            prop_assert_eq!(view.leaf(index).unwrap(), reference[index as usize]);
        }
    }
}
