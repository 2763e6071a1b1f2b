//! RFC 6962 / RFC 9162 Merkle trees: hashes, proofs and their verification.
//!
//! Pure functions that an auditor can use without the log itself: leaf hash
//! `SHA-256(0x00 || data)`, interior node `SHA-256(0x01 || left || right)`, the
//! empty tree `SHA-256("")`, and the RFC's split of `n` leaves at the largest
//! power of two smaller than `n`. Proof verification follows RFC 9162 sections
//! 2.1.3.2 (inclusion) and 2.1.4.2 (consistency) and names the check that failed.
//!
//! Proof generation works from any [`SubtreeSource`] (the audit log reads stored
//! subtree roots from disk, so a proof costs O(log n) reads); the slice
//! functions ([`inclusion_proof`], [`consistency_proof`]) use an in-memory source.
//!
//! ```
//! use atom_policy::merkle::{leaf_hash, root, inclusion_proof, verify_inclusion};
//! let leaves: Vec<_> = [b"a".as_slice(), b"b", b"c"].iter().map(|d| leaf_hash(d)).collect();
//! let r = root(&leaves);
//! let proof = inclusion_proof(&leaves, 2).unwrap();
//! verify_inclusion(&leaves[2], 2, 3, &proof, &r).unwrap();
//! ```

use sha2::{Digest, Sha256};

/// Length in bytes of every hash in the tree (SHA-256).
pub const HASH_LEN: usize = 32;

/// A SHA-256 tree hash.
pub type Hash = [u8; HASH_LEN];

/// Which hash of a verification call had the wrong length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashRole {
    /// The leaf hash given to inclusion verification.
    Leaf,
    /// The root of an inclusion proof.
    Root,
    /// The old (smaller) root of a consistency proof.
    OldRoot,
    /// The new (larger) root of a consistency proof.
    NewRoot,
    /// Element `i` of the proof.
    ProofElement(usize),
}

impl std::fmt::Display for HashRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashRole::Leaf => f.write_str("leaf hash"),
            HashRole::Root => f.write_str("root hash"),
            HashRole::OldRoot => f.write_str("old root hash"),
            HashRole::NewRoot => f.write_str("new root hash"),
            HashRole::ProofElement(i) => write!(f, "proof element {i}"),
        }
    }
}

/// Why a proof could not be generated or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is out of range for tree size {size} (index must be < size)")]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// A hash has a length other than 32 bytes.
    #[error("{role} has {len} bytes, expected 32")]
    WrongHashLength {
        /// Which hash.
        role: HashRole,
        /// Its actual length.
        len: usize,
    },
    /// The proof has more elements than the tree shape allows.
    #[error("proof too long: {got} hashes, the tree shape needs {expected}")]
    ProofTooLong {
        /// Elements given.
        got: usize,
        /// Elements the (index, size) or (old, new) pair needs.
        expected: usize,
    },
    /// The proof has fewer elements than the tree shape needs.
    #[error("proof too short: {got} hashes, the tree shape needs {expected}")]
    ProofTooShort {
        /// Elements given.
        got: usize,
        /// Elements needed.
        expected: usize,
    },
    /// A consistency proof from the empty tree was requested or given.
    #[error("consistency from tree size 0 is meaningless and rejected")]
    ConsistencyFromEmpty,
    /// The old size exceeds the new size.
    #[error("old tree size {old} is larger than new tree size {new}")]
    OldLargerThanNew {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// The root recomputed from an inclusion proof differs from the expected root.
    #[error("inclusion proof does not lead to the expected root (computed {computed})")]
    RootMismatch {
        /// Hex of the recomputed root.
        computed: String,
    },
    /// The old root recomputed from a consistency proof differs from the given old root.
    #[error("consistency proof does not reproduce the old root (computed {computed})")]
    OldRootMismatch {
        /// Hex of the recomputed old root.
        computed: String,
    },
    /// The new root recomputed from a consistency proof differs from the given new root.
    #[error("consistency proof does not reproduce the new root (computed {computed})")]
    NewRootMismatch {
        /// Hex of the recomputed new root.
        computed: String,
    },
    /// A range of leaves outside the tree was asked of a subtree source.
    #[error("subtree [{start}, {end}) is not inside a tree of size {size}")]
    BadRange {
        /// First leaf.
        start: u64,
        /// One past the last leaf.
        end: u64,
        /// Tree size.
        size: u64,
    },
}

/// `SHA-256(0x00 || data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_LEN];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly smaller than `n` (`n >= 2`): the RFC split point.
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root hash (RFC 9162 MTH) of a list of leaf hashes (see [`leaf_hash`]).
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    let mut f = Frontier::new();
    for h in leaf_hashes {
        f.push(*h, |_, _, _| {});
    }
    f.root()
}

/// Something that can give the root of any subtree `[start, end)` the RFC
/// recursion asks for. Implemented for in-memory slices and by the audit log's
/// on-disk hash store.
pub trait SubtreeSource {
    /// Error of the source (must absorb [`ProofError`] for range checks).
    type Error: From<ProofError>;
    /// MTH of the leaves `[start, end)`, `start < end`.
    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, Self::Error>;
}

/// In-memory source over a slice of leaf hashes.
struct SliceSource<'a>(&'a [Hash]);

impl SubtreeSource for SliceSource<'_> {
    type Error = ProofError;
    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, ProofError> {
        let size = self.0.len() as u64;
        if start >= end || end > size {
            return Err(ProofError::BadRange { start, end, size });
        }
        Ok(root(&self.0[start as usize..end as usize]))
    }
}

/// Inclusion proof (RFC 9162 2.1.3.1) for leaf `index` in the tree of all `leaf_hashes`.
pub fn inclusion_proof(leaf_hashes: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    inclusion_proof_from(
        &mut SliceSource(leaf_hashes),
        index,
        leaf_hashes.len() as u64,
    )
}

/// Consistency proof (RFC 9162 2.1.4.1) from the first `old_size` leaves to all `leaf_hashes`.
pub fn consistency_proof(leaf_hashes: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    consistency_proof_from(
        &mut SliceSource(leaf_hashes),
        old_size,
        leaf_hashes.len() as u64,
    )
}

/// Inclusion proof for leaf `index` in the tree of `size` leaves, reading subtree roots from `src`.
/// Proof elements are ordered from the leaf up to the root.
pub fn inclusion_proof_from<S: SubtreeSource>(
    src: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    // Walk down from the root, collecting siblings; reverse at the end.
    let mut proof = Vec::new();
    let (mut lo, mut hi, m) = (0u64, size, index);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if m < lo + k {
            proof.push(src.subtree_root(lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(src.subtree_root(lo, lo + k)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Consistency proof from tree size `old` to tree size `new`, reading subtree roots from `src`.
/// `old == new` gives the empty proof; `old == 0` and `old > new` are rejected.
pub fn consistency_proof_from<S: SubtreeSource>(
    src: &mut S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, S::Error> {
    if old == 0 {
        return Err(ProofError::ConsistencyFromEmpty.into());
    }
    if old > new {
        return Err(ProofError::OldLargerThanNew { old, new }.into());
    }
    let mut proof = Vec::new();
    // SUBPROOF(m, D[lo:hi], b), unrolled.
    let (mut lo, mut hi, mut m, mut b) = (0u64, new, old, true);
    loop {
        let n = hi - lo;
        if m == n {
            if !b {
                proof.push(src.subtree_root(lo, hi)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            proof.push(src.subtree_root(lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(src.subtree_root(lo, lo + k)?);
            lo += k;
            m -= k;
            b = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size` leaves.
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (mut lo, mut hi, mut len) = (0u64, size, 0usize);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            hi = lo + k;
        } else {
            lo += k;
        }
        len += 1;
    }
    len
}

/// Number of hashes in the consistency proof from `old` to `new` (`0 < old <= new`).
pub fn consistency_proof_len(old: u64, new: u64) -> usize {
    let (mut lo, mut hi, mut m, mut b, mut len) = (0u64, new, old, true, 0usize);
    loop {
        let n = hi - lo;
        if m == n {
            return len + usize::from(!b);
        }
        let k = split_point(n);
        if m <= k {
            hi = lo + k;
        } else {
            lo += k;
            m -= k;
            b = false;
        }
        len += 1;
    }
}

fn to_hash(bytes: &[u8], role: HashRole) -> Result<Hash, ProofError> {
    bytes.try_into().map_err(|_| ProofError::WrongHashLength {
        role,
        len: bytes.len(),
    })
}

fn proof_hashes<P: AsRef<[u8]>>(proof: &[P]) -> Result<Vec<Hash>, ProofError> {
    proof
        .iter()
        .enumerate()
        .map(|(i, p)| to_hash(p.as_ref(), HashRole::ProofElement(i)))
        .collect()
}

fn check_len(got: usize, expected: usize) -> Result<(), ProofError> {
    match got.cmp(&expected) {
        std::cmp::Ordering::Greater => Err(ProofError::ProofTooLong { got, expected }),
        std::cmp::Ordering::Less => Err(ProofError::ProofTooShort { got, expected }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Verify that `leaf_hash` is leaf `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 2.1.3.2).
pub fn verify_inclusion<P: AsRef<[u8]>>(
    leaf_hash: &[u8],
    index: u64,
    size: u64,
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let leaf = to_hash(leaf_hash, HashRole::Leaf)?;
    let root = to_hash(root, HashRole::Root)?;
    let proof = proof_hashes(proof)?;
    check_len(proof.len(), inclusion_proof_len(index, size))?;
    let computed = root_from_inclusion(leaf, index, size, &proof)?;
    if computed != root {
        return Err(ProofError::RootMismatch {
            computed: hex::encode(computed),
        });
    }
    Ok(())
}

/// The RFC 9162 2.1.3.2 loop: the root implied by an inclusion proof.
fn root_from_inclusion(
    leaf: Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    let expected = inclusion_proof_len(index, size);
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::ProofTooLong {
                got: proof.len(),
                expected,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::ProofTooShort {
            got: proof.len(),
            expected,
        });
    }
    Ok(r)
}

/// Verify that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 2.1.4.2). Equal sizes need an empty
/// proof and equal roots; an old size of 0 is rejected.
pub fn verify_consistency<P: AsRef<[u8]>>(
    old_size: u64,
    new_size: u64,
    old_root: &[u8],
    new_root: &[u8],
    proof: &[P],
) -> Result<(), ProofError> {
    if old_size == 0 {
        return Err(ProofError::ConsistencyFromEmpty);
    }
    if old_size > new_size {
        return Err(ProofError::OldLargerThanNew {
            old: old_size,
            new: new_size,
        });
    }
    let old_root = to_hash(old_root, HashRole::OldRoot)?;
    let new_root = to_hash(new_root, HashRole::NewRoot)?;
    let proof = proof_hashes(proof)?;
    let expected = consistency_proof_len(old_size, new_size);
    check_len(proof.len(), expected)?;
    if old_size == new_size {
        if old_root != new_root {
            return Err(ProofError::NewRootMismatch {
                computed: hex::encode(old_root),
            });
        }
        return Ok(());
    }
    // Step 2: a power-of-two old tree is itself a node of the new tree.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(old_root);
    }
    path.extend_from_slice(&proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::ProofTooShort { got: 0, expected });
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::ProofTooLong {
                got: proof.len(),
                expected,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::ProofTooShort {
            got: proof.len(),
            expected,
        });
    }
    if fr != old_root {
        return Err(ProofError::OldRootMismatch {
            computed: hex::encode(fr),
        });
    }
    if sr != new_root {
        return Err(ProofError::NewRootMismatch {
            computed: hex::encode(sr),
        });
    }
    Ok(())
}

/// The right edge of a growing tree (a "compact range" from leaf 0): the roots of the
/// perfect subtrees that make up the first `size` leaves, largest first. Appending costs
/// amortised one node hash; memory is at most 64 hashes whatever the size.
///
/// ```
/// use atom_policy::merkle::{Frontier, leaf_hash, root};
/// let leaves: Vec<_> = (0u8..5).map(|i| leaf_hash(&[i])).collect();
/// let mut f = Frontier::new();
/// for l in &leaves { f.push(*l, |_level, _index, _hash| {}); }
/// assert_eq!(f.root(), root(&leaves));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Perfect subtree roots, largest (leftmost) first; one per set bit of `size`.
    pieces: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild from the perfect-subtree roots of `size` (largest first), e.g. read from disk.
    /// Returns `None` if the number of pieces does not match the set bits of `size`.
    pub fn from_pieces(size: u64, pieces: Vec<Hash>) -> Option<Self> {
        (pieces.len() == size.count_ones() as usize).then_some(Self { size, pieces })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Perfect subtree roots, largest first.
    pub fn pieces(&self) -> &[Hash] {
        &self.pieces
    }

    /// Append a leaf hash. `completed(level, index, hash)` is called for every perfect
    /// subtree this leaf completes, from level 1 (two leaves) upward; `index` counts
    /// subtrees of that level from the left.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let mut h = leaf;
        let mut level = 0u32;
        let idx = self.size;
        while (idx >> level) & 1 == 1 {
            let Some(left) = self.pieces.pop() else {
                break; // unreachable by construction: one piece per set bit
            };
            h = node_hash(&left, &h);
            level += 1;
            completed(level, idx >> level, &h);
        }
        self.pieces.push(h);
        self.size += 1;
    }

    /// The root of the tree (the empty root for size 0).
    pub fn root(&self) -> Hash {
        let mut it = self.pieces.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(root(&[]), empty_root());
    }

    #[test]
    fn frontier_reports_completed_nodes() {
        let mut seen = Vec::new();
        let mut f = Frontier::new();
        for i in 0u8..4 {
            f.push(leaf_hash(&[i]), |l, j, _| seen.push((l, j)));
        }
        assert_eq!(seen, vec![(1, 0), (1, 1), (2, 0)]);
    }
}
