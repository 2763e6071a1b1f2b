"""Pure RFC 6962 / RFC 9162 Merkle functions for auditors, usable without the log.

``leaves`` are raw leaf data (hashed as ``SHA-256(0x00 || data)``); proofs and roots are 32-byte
hashes. The ``verify_*`` functions return ``False`` for any proof that does not verify.

>>> from atom_fabric.policy import merkle
>>> leaves = [b"a", b"b", b"c"]
>>> proof = merkle.inclusion_proof(leaves, 2)
>>> merkle.verify_inclusion(merkle.leaf_hash(b"c"), 2, 3, proof, merkle.root(leaves))
True
>>> merkle.verify_inclusion(merkle.leaf_hash(b"x"), 2, 3, proof, merkle.root(leaves))
False
"""

from atom_fabric._native import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]
