#!/usr/bin/env python3
"""Cross-check an `atom audit` log with independent implementations (manual, not part of
`make test`): Ed25519 with `cryptography`, ML-DSA-44 (tlog-cosignature 0x06, over the
`cosigned_message`) with `dilithium-py`, key ids and the RFC 6962 root with hashlib.

    pip install cryptography dilithium-py
    python3 independent_check.py LOG_DIR
"""
import base64
import hashlib
import json
import struct
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from dilithium_py.ml_dsa import ML_DSA_44


def mth(leaves):
    """RFC 6962 Merkle tree hash (MTH) of raw leaf data."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def main(log):
    cfg = json.load(open(f"{log}/config.json"))
    note = open(f"{log}/checkpoint", encoding="utf-8").read()
    text, sigs = note.rsplit("\n\n", 1)
    text += "\n"
    origin, size, root_b64 = text.splitlines()[:3]
    size, root = int(size), base64.b64decode(root_b64)
    keys = {}
    for v in cfg["vkeys"]:
        name, kid, k = v.split("+", 2)
        raw = base64.b64decode(k)
        assert hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == kid, v
        keys[kid] = (name, raw[0], raw[1:])
    for line in sigs.strip("\n").split("\n"):
        assert line.startswith("\u2014 "), line
        name, b64 = line[2:].split(" ")
        raw = base64.b64decode(b64)
        kname, typ, pk = keys[raw[:4].hex()]
        sig = raw[4:]
        if typ == 0x01:
            Ed25519PublicKey.from_public_bytes(pk).verify(sig, text.encode())
            print("Ed25519 checkpoint signature: ok (cryptography)")
        elif typ == 0x06:
            ts = struct.unpack(">Q", sig[:8])[0]
            msg = (b"subtree/v1\n\x00" + bytes([len(kname)]) + kname.encode()
                   + struct.pack(">Q", ts) + bytes([len(origin)]) + origin.encode()
                   + struct.pack(">QQ", 0, size) + root)
            assert ML_DSA_44.verify(pk, msg, sig[8:]), "ML-DSA-44 cosignature"
            print(f"ML-DSA-44 cosignature (timestamp {ts}): ok (dilithium-py)")
    data = open(f"{log}/entries.dat", "rb").read()
    pos, leaves = 16, []
    while pos < len(data) and len(leaves) < size:
        n = struct.unpack("<I", data[pos:pos + 4])[0]
        leaves.append(data[pos + 12:pos + 12 + n])
        pos += 12 + n
    assert mth(leaves) == root, "records do not hash to the signed root"
    print(f"RFC 6962 root of the first {size} records matches the checkpoint: ok (hashlib)")


if __name__ == "__main__":
    main(sys.argv[1])
