"""atom_fabric.policy.AuditLog: appends, checkpoints verified by independent implementations,
proofs checked with the pure Merkle functions, tampering located."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from atom_fabric import errors
from atom_fabric.policy import AuditLog, NoteSignerKey, merkle

ORIGIN = "example.org/atom-test"


def entry(i: int) -> dict:
    return {
        "v": 1, "time": 1_000 + i, "actor": {"tenant": "acme"}, "action": "deploy.promote",
        "subject": {"kind": "model", "id": "hmac-sha256:" + hashlib.sha256(str(i).encode()).hexdigest()},
        "decision": {"outcome": "allow", "policies": ["P2", "P3"]},
    }


def test_append_checkpoint_prove_and_reopen(tmp_path):
    signers = NoteSignerKey.generate(ORIGIN)
    assert len(signers) == 2 and "REDACTED" in repr(signers[0])
    path = tmp_path / "log"
    log = AuditLog.create(path, ORIGIN, [s.vkey for s in signers])
    for i in range(9):
        assert log.append(entry(i)) == i
    note = log.checkpoint(signers)
    text, sigs = note.split("\n\n", 1)
    assert text.splitlines()[:2] == [ORIGIN, "9"]
    # The Ed25519 line verifies with `cryptography` over the note text (C2SP signed note).
    vkey = signers[0].vkey
    name, kid, key_b64 = vkey.split("+", 2)
    raw_key = base64.b64decode(key_b64)
    assert raw_key[0] == 0x01
    line = next(l for l in sigs.splitlines() if base64.b64decode(l.split(" ")[-1])[:4].hex() == kid)
    Ed25519PublicKey.from_public_bytes(raw_key[1:]).verify(base64.b64decode(line.split(" ")[-1])[4:], (text + "\n").encode())
    # Every proof verifies against the signed root.
    root = base64.b64decode(text.splitlines()[2])
    for i in range(9):
        p = log.prove(i)
        assert p["root"] == root
        canonical = json.dumps(entry(i), sort_keys=True, separators=(",", ":")).encode()
        assert p["leaf_hash"] == merkle.leaf_hash(canonical)
        assert merkle.verify_inclusion(p["leaf_hash"], i, 9, p["proof"], root)
    assert json.loads(log.read(3)) == entry(3)
    log.close()
    again = AuditLog.open(path)
    assert again.size == 9 and again.verify()["checkpoint_size"] == 9
    again.close()


def test_bad_entries_and_tampering(tmp_path):
    signers = NoteSignerKey.generate(ORIGIN, mode="classical")
    log = AuditLog.create(tmp_path / "log", ORIGIN, [s.vkey for s in signers], mode="classical")
    with pytest.raises(errors.AuditError):
        log.append({"v": 1, "raw_prompt": "my password is hunter2"})
    bad = entry(0)
    bad["subject"]["id"] = "alice@example.com"  # identifiers below tenant level must be hashed (P1)
    with pytest.raises(errors.AuditError):
        log.append(bad)
    for i in range(4):
        log.append(entry(i))
    log.checkpoint(signers)
    log.close()
    data = bytearray((tmp_path / "log" / "entries.dat").read_bytes())
    at = data.find(b'"time":1002')
    data[at + 10] ^= 0x01
    (tmp_path / "log" / "entries.dat").write_bytes(bytes(data))
    with pytest.raises(errors.AuditError, match="2"):
        AuditLog.open(tmp_path / "log").verify()
