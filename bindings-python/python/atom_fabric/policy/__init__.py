"""The trust layer: post-quantum keys and signatures, DSSE envelopes, OpenSSF model-signing
bundles, and (in :mod:`atom_fabric.policy.merkle`) the auditor's Merkle functions.

``pqc_mode`` is ``"hybrid"`` (a classical and an ML-DSA signature, both must verify),
``"classical"`` or ``"off"`` (only with ``simulation=True``).

>>> from atom_fabric.policy import SigningKey, sign_envelope, verify_envelope
>>> key = SigningKey.generate("hybrid")
>>> env = sign_envelope(b'{"job": 1}', key, payload_type="application/vnd.atom-fabric.job+json")
>>> verify_envelope(env, [key.verifying_key()], payload_type="application/vnd.atom-fabric.job+json")
b'{"job": 1}'
"""

from atom_fabric._native import (
    SigningKey,
    VerifyingKey,
    sign_envelope,
    sign_model,
    verify_envelope,
    verify_model,
)
from atom_fabric.policy import merkle

__all__ = [
    "SigningKey",
    "VerifyingKey",
    "merkle",
    "sign_envelope",
    "sign_model",
    "verify_envelope",
    "verify_model",
]
