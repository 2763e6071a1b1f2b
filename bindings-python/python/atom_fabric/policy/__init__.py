"""The trust layer: post-quantum keys and signatures, DSSE envelopes, OpenSSF model-signing
bundles, and (in :mod:`atom_fabric.policy.merkle`) the auditor's Merkle functions.

``pqc_mode`` is ``"hybrid"`` (a classical and an ML-DSA signature, both must verify),
``"classical"`` or ``"off"`` (only with ``simulation=True``).

>>> from atom_fabric.policy import SigningKey, sign_envelope, verify_envelope
>>> key = SigningKey.generate("hybrid")
>>> env = sign_envelope(b'{"job": 1}', key, payload_type="application/vnd.atom-fabric.job+json")
>>> verify_envelope(env, [key.verifying_key()], payload_type="application/vnd.atom-fabric.job+json")
b'{"job": 1}'

The audit log: appends are durable when they return; checkpoints are C2SP signed notes (Ed25519,
plus an ML-DSA-44 cosignature in hybrid mode).

>>> import tempfile, os
>>> from atom_fabric.policy import AuditLog, NoteSignerKey, merkle
>>> signers = NoteSignerKey.generate("example.org/log")
>>> log = AuditLog.create(os.path.join(tempfile.mkdtemp(), "log"), "example.org/log", [s.vkey for s in signers])
>>> log.append({"v": 1, "time": 1, "actor": {"tenant": "acme"}, "action": "job.dispatch",
...             "subject": {"kind": "job", "id": "hmac-sha256:" + "00" * 32},
...             "decision": {"outcome": "allow", "policies": ["P2", "P5"]}})
0
>>> note = log.checkpoint(signers)
>>> p = log.prove(0)
>>> merkle.verify_inclusion(p["leaf_hash"], 0, p["size"], p["proof"], p["root"])
True
"""

from atom_fabric._native import (
    AuditLog,
    NoteSignerKey,
    SigningKey,
    VerifyingKey,
    sign_envelope,
    sign_model,
    verify_envelope,
    verify_model,
)
from atom_fabric.policy import merkle

__all__ = [
    "AuditLog",
    "NoteSignerKey",
    "SigningKey",
    "VerifyingKey",
    "merkle",
    "sign_envelope",
    "sign_model",
    "verify_envelope",
    "verify_model",
]
