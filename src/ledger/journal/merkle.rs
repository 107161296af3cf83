//! The Merkle tree of RFC 9162 (Certificate Transparency 2.0) §2.1, over the journal's entries:
//! the hashes, inclusion and consistency proofs, their verification, and the compact form a writer
//! keeps to extend the tree by one entry in O(log n).
//!
//! Why this shape: a bank's registration notice should prove itself. An inclusion proof shows one
//! entry is in the tree a signed head names, with O(log n) hashes whoever wrote the entries around
//! it; a consistency proof shows a later head extends an earlier one, so a witness that kept the
//! earlier head detects a rewritten history. The hashing is exactly RFC 9162's (leaf: SHA-256 of
//! 0x00 and the entry's bytes; node: SHA-256 of 0x01 and both children), so that a client with
//! nothing but SHA-256 checks our proofs, and the tests check them against Certificate
//! Transparency's published reference data.
//!
//! Pure and synchronous: no storage here. `Tree::proof_*` build proofs from a slice of leaf hashes
//! (the reference, and small trees); the verifiers are what clients and `ipledger` run offline.

use sha2::{Digest, Sha256};

/// A node's or a leaf's hash.
pub type Hash = [u8; 32];

/// The most entries a tree holds: sizes travel as `u64`, and the compact form keeps one hash per
/// bit of the size.
pub const SIZE_MAX: u64 = 1 << 62;

/// The root of the empty tree: SHA-256 of nothing (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A leaf's hash: SHA-256(0x00 || entry bytes).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// An interior node's hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two below `n` (n > 1): where RFC 9162 splits a tree of n leaves.
fn split(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[n]): the root of the tree over `leaves` (leaf hashes).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The hash of the tree over leaves `start..end` (`end > start`): what a stored tree answers
/// (`ledger::tree`) and the proofs below are made of. RFC 9162's recursion only ever asks for a
/// range whose start is a multiple of the largest power of two not above its length.
pub trait Subtrees {
    type Error;
    fn range_hash(&mut self, start: u64, end: u64) -> Result<Hash, Self::Error>;
}

/// Leaf hashes in memory: the reference the stored tree is tested against.
impl Subtrees for &[Hash] {
    type Error = std::convert::Infallible;
    fn range_hash(&mut self, start: u64, end: u64) -> Result<Hash, Self::Error> {
        Ok(root(&self[start as usize..end as usize]))
    }
}

/// PATH(m, D[n]) of the tree of `size` leaves: the inclusion proof of leaf `index`, from the
/// leaf's sibling up. `None` when `index` is not a leaf of it.
pub fn inclusion_path<S: Subtrees>(index: u64, size: u64, tree: &mut S) -> Result<Option<Vec<Hash>>, S::Error> {
    if index >= size || size > SIZE_MAX {
        return Ok(None);
    }
    // RFC 9162 §2.1.3.1, iteratively: descend from the whole tree, the sibling of each step
    // goes on the proof, which lists them from the leaf up.
    let (mut start, mut end) = (0, size);
    let mut proof = Vec::with_capacity(64);
    while end - start > 1 {
        let k = split(end - start);
        if index < start + k {
            proof.push(tree.range_hash(start + k, end)?);
            end = start + k;
        } else {
            proof.push(tree.range_hash(start, start + k)?);
            start += k;
        }
    }
    proof.reverse();
    Ok(Some(proof))
}

/// PROOF(m, D[n]): the consistency proof between the tree of the first `first_size` leaves and
/// the tree of `size` leaves. `None` unless 0 < first_size <= size.
pub fn consistency_path<S: Subtrees>(first_size: u64, size: u64, tree: &mut S) -> Result<Option<Vec<Hash>>, S::Error> {
    if first_size == 0 || first_size > size || size > SIZE_MAX {
        return Ok(None);
    }
    // SUBPROOF(m, D[start..end], whole), RFC 9162 §2.1.4.1, iteratively from the top.
    let (mut m, mut start, mut end, mut whole) = (first_size, 0, size, true);
    let mut proof = Vec::with_capacity(64);
    while m != end - start {
        let k = split(end - start);
        if m <= k {
            proof.push(tree.range_hash(start + k, end)?);
            end = start + k;
        } else {
            proof.push(tree.range_hash(start, start + k)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    if !whole {
        proof.push(tree.range_hash(start, end)?);
    }
    proof.reverse();
    Ok(Some(proof))
}

/// PATH(m, D[n]) over leaf hashes in memory.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    let Ok(proof) = inclusion_path(index as u64, leaves.len() as u64, &mut { leaves });
    proof
}

/// PROOF(m, D[n]) over leaf hashes in memory.
pub fn consistency_proof(first_size: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    let Ok(proof) = consistency_path(first_size as u64, leaves.len() as u64, &mut { leaves });
    proof
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2): that `leaf` is leaf `index` of the tree of
/// `size` leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size || size > SIZE_MAX {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            // Up to the next level where this node is a right child (or the last one).
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2): that the tree of `second_size` leaves whose
/// root is `second_root` extends the tree of `first_size` leaves whose root is `first_root`.
pub fn verify_consistency(
    first_size: u64,
    second_size: u64,
    proof: &[Hash],
    first_root: &Hash,
    second_root: &Hash,
) -> bool {
    if first_size == 0 || first_size > second_size || second_size > SIZE_MAX {
        return false;
    }
    if first_size == second_size {
        return proof.is_empty() && first_root == second_root;
    }
    // With first_size a power of two, the first tree is a node of the second: the proof leaves it out.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first_size.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut f_n, mut s_n) = (first_size - 1, second_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && f_r == *first_root && s_r == *second_root
}

/// The compact form of a tree: the roots of its perfect subtrees, largest first (one per set bit
/// of the size). Appending a leaf merges equal subtrees, O(log n) hashes at worst and one on
/// average; the root folds them right to left. What a writer keeps to extend the tree as it
/// appends, and rebuilds by replaying the journal like any derived state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compact {
    size: u64,
    peaks: Vec<Hash>,
}

impl Compact {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the leaf whose hash is `leaf`.
    pub fn push(&mut self, leaf: Hash) {
        self.push_reporting(leaf, |_, _, _| {});
    }

    /// Appends the leaf whose hash is `leaf`, telling `formed` of each perfect subtree it
    /// completes: its height (1 and up), its index among the subtrees of that height, its hash.
    pub fn push_reporting(&mut self, leaf: Hash, mut formed: impl FnMut(u32, u64, &Hash)) {
        assert!(self.size < SIZE_MAX, "a tree of {SIZE_MAX} leaves is full");
        let mut node = leaf;
        // Each trailing one bit of the old size is a perfect subtree the new leaf completes.
        let merges = self.size.trailing_ones();
        for height in 1..=merges {
            let left = self.peaks.pop().expect("a peak per set bit of the size");
            node = node_hash(&left, &node);
            formed(height, ((self.size + 1) >> height) - 1, &node);
        }
        self.peaks.push(node);
        self.size += 1;
        debug_assert_eq!(self.peaks.len(), self.size.count_ones() as usize);
    }

    /// The compact form of a tree of `size` leaves from its perfect subtrees' hashes:
    /// `peak(height, index)` for each set bit of the size, largest first.
    pub fn from_peaks<E>(size: u64, mut peak: impl FnMut(u32, u64) -> Result<Hash, E>) -> Result<Compact, E> {
        assert!(size <= SIZE_MAX, "a tree holds at most {SIZE_MAX} leaves");
        let mut peaks = Vec::with_capacity(size.count_ones() as usize);
        for height in (0..u64::BITS).rev().filter(|h| size & (1 << h) != 0) {
            // The leaves above this bit come before the subtree: its index among its height's.
            peaks.push(peak(height, (size >> height) - 1)?);
        }
        Ok(Compact { size, peaks })
    }

    /// The tree's root (MTH of every leaf pushed).
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else { return empty_root() };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    //! Certificate Transparency's reference data (its C++ log's merkle_tree_test, carried by
    //! transparency-dev/merkle's testonly package): eight leaf inputs, the roots of every size,
    //! and inclusion and consistency proofs; then every proof of random trees, checked both ways.
    use super::*;
    use proptest::prelude::*;

    fn h(hex_text: &str) -> Hash {
        h_bytes(hex_text).try_into().unwrap()
    }

    const INPUTS: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        INPUTS.iter().map(|i| leaf_hash(&h_bytes(i))).collect()
    }

    fn h_bytes(hex_text: &str) -> Vec<u8> {
        (0..hex_text.len()).step_by(2).map(|i| u8::from_str_radix(&hex_text[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn the_roots_of_every_size_are_the_reference_roots() {
        let leaves = leaves();
        let mut compact = Compact::default();
        assert_eq!(compact.root(), h(ROOTS[0]));
        for n in 0..=8 {
            assert_eq!(root(&leaves[..n]), h(ROOTS[n]), "size {n}");
            if n > 0 {
                compact.push(leaves[n - 1]);
                assert_eq!(compact.root(), h(ROOTS[n]), "compact, size {n}");
            }
        }
    }

    #[test]
    fn inclusion_proofs_are_the_reference_proofs_and_verify() {
        // (leaf index from 0, tree size, proof)
        let vectors: [(usize, usize, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let leaves = leaves();
        for (index, size, expected) in vectors {
            let proof = inclusion_proof(index, &leaves[..size]).unwrap();
            assert_eq!(proof, expected.iter().map(|e| h(e)).collect::<Vec<_>>(), "leaf {index} of {size}");
            let root = h(ROOTS[size]);
            assert!(verify_inclusion(index as u64, size as u64, &leaves[index], &proof, &root));
            assert!(!verify_inclusion(index as u64, size as u64, &leaves[index], &proof, &h(ROOTS[0])));
        }
    }

    #[test]
    fn consistency_proofs_are_the_reference_proofs_and_verify() {
        let vectors: [(usize, usize, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let leaves = leaves();
        for (first, second, expected) in vectors {
            let proof = consistency_proof(first, &leaves[..second]).unwrap();
            assert_eq!(proof, expected.iter().map(|e| h(e)).collect::<Vec<_>>(), "{first} -> {second}");
            let (a, b) = (h(ROOTS[first]), h(ROOTS[second]));
            assert!(verify_consistency(first as u64, second as u64, &proof, &a, &b), "{first} -> {second}");
        }
    }

    fn random_leaves(seeds: &[u8]) -> Vec<Hash> {
        seeds.iter().enumerate().map(|(i, s)| leaf_hash(&[*s, i as u8, (i >> 8) as u8])).collect()
    }

    proptest! {
        #[test]
        fn every_inclusion_proof_of_a_random_tree_verifies_and_no_other_leaf_does(
            seeds in proptest::collection::vec(any::<u8>(), 1..200),
            pick in any::<prop::sample::Index>(),
        ) {
            let leaves = random_leaves(&seeds);
            let n = leaves.len();
            let index = pick.index(n);
            let root = root(&leaves);
            let proof = inclusion_proof(index, &leaves).unwrap();
            prop_assert!(verify_inclusion(index as u64, n as u64, &leaves[index], &proof, &root));
            // Another leaf, another index or a proof cut short: refused. (The size is checked with
            // the root: a signed head names both.)
            prop_assert!(!verify_inclusion(index as u64, n as u64, &leaf_hash(b"forged"), &proof, &root));
            if n > 1 {
                let other = (index + 1) % n;
                prop_assert!(!verify_inclusion(other as u64, n as u64, &leaves[index], &proof, &root));
            }
            if let Some((_, shorter)) = proof.split_last() {
                prop_assert!(!verify_inclusion(index as u64, n as u64, &leaves[index], shorter, &root));
            }
        }

        #[test]
        fn every_consistency_proof_of_a_random_tree_verifies_and_a_rewritten_past_does_not(
            seeds in proptest::collection::vec(any::<u8>(), 1..200),
            pick in any::<prop::sample::Index>(),
            rewrite in any::<prop::sample::Index>(),
        ) {
            let leaves = random_leaves(&seeds);
            let n = leaves.len();
            let m = 1 + pick.index(n);
            let (first, second) = (root(&leaves[..m]), root(&leaves));
            let proof = consistency_proof(m, &leaves).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &proof, &first, &second));
            // The compact form agrees with the reference at every size on the way.
            let mut compact = Compact::default();
            for leaf in &leaves[..m] {
                compact.push(*leaf);
            }
            prop_assert_eq!(compact.root(), first);
            // A history edited before m (the same size, re-chained): its new head does not
            // extend the head a witness kept.
            let mut edited = leaves.clone();
            edited[rewrite.index(m)] = leaf_hash(b"rewritten");
            let forged = consistency_proof(m, &edited).unwrap();
            prop_assert!(!verify_consistency(m as u64, n as u64, &forged, &first, &root(&edited)));
        }
    }
}
