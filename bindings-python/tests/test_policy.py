"""atom_fabric.policy: keys, signatures, envelopes, model manifests, Merkle functions."""

from __future__ import annotations

import hashlib

import pytest
from dilithium_py.ml_dsa import ML_DSA_65

from atom_fabric import errors
from atom_fabric.policy import SigningKey, VerifyingKey, merkle, sign_envelope, sign_model, verify_envelope, verify_model


def test_keys_round_trip_and_never_show_secrets(tmp_path):
    key = SigningKey.generate("hybrid")
    assert key.algorithm == "ecdsa-p256+ml-dsa-65"
    assert "REDACTED" in repr(key)
    key.write(tmp_path / "k.key")
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    again = SigningKey.read(tmp_path / "k.key")
    assert again.key_id == key.key_id
    pub = VerifyingKey.from_text(key.verifying_key().to_text())
    assert pub.key_id == key.key_id
    with pytest.raises(errors.KeyFormatError):
        SigningKey.generate("rsa-4096")
    with pytest.raises(OSError):
        key.write(tmp_path / "k.key")  # never overwrites


def test_raw_signature_verifies_in_dilithium_py():
    key = SigningKey.generate("ml-dsa-65")
    sig = key.sign_raw(b"model bytes")
    pk = key.verifying_key().raw()
    assert ML_DSA_65.verify(pk, b"model bytes", sig)
    assert key.verifying_key().verify_raw(b"model bytes", sig)
    assert not key.verifying_key().verify_raw(b"model bytez", sig)


def test_envelopes_and_modes():
    key = SigningKey.generate("hybrid")
    other = SigningKey.generate("hybrid")
    env = sign_envelope(b"payload", key)
    assert verify_envelope(env, [key.verifying_key()]) == b"payload"
    with pytest.raises(errors.VerificationError, match="unknown key"):
        verify_envelope(env, [other.verifying_key()])
    with pytest.raises(errors.VerificationError, match="wrong payload type"):
        verify_envelope(env, [key.verifying_key()], payload_type="application/json")
    with pytest.raises(errors.ConfigError):
        sign_envelope(b"x", key, pqc_mode="off")
    assert sign_envelope(b"x", key, pqc_mode="off", simulation=True)
    with pytest.raises(errors.KeyFormatError, match="hybrid"):
        sign_envelope(b"x", SigningKey.generate("ml-dsa-44"))


def test_model_manifest_and_tampering(tmp_path):
    model = tmp_path / "m"
    (model / "w").mkdir(parents=True)
    (model / "w" / "a.bin").write_bytes(b"\x01" * 1000)
    (model / "cfg.json").write_text("{}")
    key = SigningKey.generate("hybrid")
    bundle = sign_model(model, key)
    out = verify_model(model, bundle, [key.verifying_key()])
    assert out["model_name"] == "m"
    assert out["files"]["w/a.bin"] == hashlib.sha256(b"\x01" * 1000).hexdigest()
    (model / "w" / "a.bin").write_bytes(b"\x02" * 1000)
    with pytest.raises(errors.ManifestError, match="digest mismatch for w/a.bin"):
        verify_model(model, bundle, [key.verifying_key()])
    assert issubclass(errors.ManifestError, errors.VerificationError)


def _mth(leaves):
    """RFC 6962 MTH written here from the RFC, as the independent reference."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_merkle_functions_match_rfc6962(n):
    leaves = [f"leaf-{i}".encode() for i in range(n)]
    assert merkle.root(leaves) == _mth(leaves)
    r = merkle.root(leaves)
    for i in range(n):
        proof = merkle.inclusion_proof(leaves, i)
        assert merkle.verify_inclusion(merkle.leaf_hash(leaves[i]), i, n, proof, r)
        assert not merkle.verify_inclusion(merkle.leaf_hash(leaves[i]), i, n, proof, b"\x00" * 32)
        assert not merkle.verify_inclusion(merkle.leaf_hash(leaves[i]), i, n, proof, b"short")
    for old in range(1, n + 1):
        proof = merkle.consistency_proof(leaves, old)
        assert merkle.verify_consistency(old, n, _mth(leaves[:old]), r, proof)
        if proof:
            bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:]] + proof[1:]
            assert not merkle.verify_consistency(old, n, _mth(leaves[:old]), r, bad)
    assert not merkle.verify_consistency(0, n, b"\x00" * 32, r, [])
    with pytest.raises(errors.VerificationError):
        merkle.inclusion_proof(leaves, n)


def test_rfc6962_empty_and_single_leaf_vectors():
    # The empty tree hash and the hash of the empty leaf (RFC 6962 test vectors).
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
