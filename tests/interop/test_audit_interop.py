"""The audit log made by the `atom audit` CLI, checked with independent implementations:
Ed25519 with `cryptography`, ML-DSA-44 cosignatures with `dilithium-py`, and the RFC 6962 tree
and RFC 9162 inclusion-proof verification written here from the RFC with hashlib."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("independent_check", ROOT / "atom-policy/tests/data/audit/independent_check.py")
independent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(independent)

SUBJECT = "hmac-sha256:" + "5b" * 32


def _ok(proc):
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return proc


def _entry(i: int) -> str:
    return json.dumps({
        "v": 1, "time": 1000 + i, "actor": {"tenant": "acme"}, "action": "job.dispatch",
        "subject": {"kind": "job", "id": SUBJECT},
        "decision": {"outcome": "allow", "policies": ["P2", "P5"]},
    })


def _log(tmp_path, run_atom, n=7):
    keys, log = tmp_path / "keys", tmp_path / "log"
    _ok(run_atom("audit", "keygen", "--name", "example.org/atom", "--out", keys))
    _ok(run_atom("audit", "init", log, "--origin", "example.org/atom", "--vkey", keys / "ed25519.vkey", "--vkey", keys / "mldsa44.vkey"))
    for i in range(n):
        _ok(run_atom("audit", "append", log, "--entry", _entry(i)))
    _ok(run_atom("audit", "checkpoint", log, "--key", keys / "ed25519.key", "--key", keys / "mldsa44.key"))
    return log


def _verify_inclusion_rfc9162(leaf_hash: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2, transcribed."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def test_checkpoint_signatures_and_root_verify_independently(tmp_path, run_atom, capsys):
    log = _log(tmp_path, run_atom)
    independent.main(str(log))
    out = capsys.readouterr().out
    assert "Ed25519 checkpoint signature: ok" in out
    assert "ML-DSA-44 cosignature" in out and "ok (dilithium-py)" in out
    assert "matches the checkpoint: ok" in out


def test_inclusion_proofs_verify_with_an_independent_rfc9162_verifier(tmp_path, run_atom):
    log = _log(tmp_path, run_atom, n=7)
    for index in range(7):
        proof = json.loads(_ok(run_atom("audit", "prove", log, "--index", index, "--format", "json")).stdout)
        # The leaf is SHA-256(0x00 || canonical JSON of the entry).
        canonical = json.dumps(json.loads(_entry(index)), sort_keys=True, separators=(",", ":"))
        leaf = hashlib.sha256(b"\x00" + canonical.encode()).digest()
        assert leaf.hex() == proof["leaf_hash"]
        path = [bytes.fromhex(p) for p in proof["proof"]]
        root = bytes.fromhex(proof["root"])
        assert _verify_inclusion_rfc9162(leaf, index, proof["size"], path, root)
        assert not _verify_inclusion_rfc9162(leaf, (index + 1) % 7, proof["size"], path, root)


def test_tampering_is_detected_and_located(tmp_path, run_atom):
    log = _log(tmp_path, run_atom, n=5)
    _ok(run_atom("audit", "verify", log))
    data = bytearray((log / "entries.dat").read_bytes())
    needle = b'"time":1003'
    at = data.find(needle)
    assert at > 0
    data[at + len(needle) - 1] ^= 0x01  # record 3's time: 1003 -> 1002
    (log / "entries.dat").write_bytes(bytes(data))
    proc = run_atom("audit", "verify", log)
    assert proc.returncode == 1
    assert "first bad record 3" in (proc.stdout + proc.stderr).decode()
