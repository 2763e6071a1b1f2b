"""Interop of atom-policy's signatures and manifests with independent implementations:
dilithium-py (a pure-Python FIPS 204 ML-DSA) and the OpenSSF `model_signing` tool."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import shutil
import subprocess
import sys

import pytest
from dilithium_py.ml_dsa import ML_DSA_44, ML_DSA_65, ML_DSA_87

LEVELS = {"ml-dsa-44": ML_DSA_44, "ml-dsa-65": ML_DSA_65, "ml-dsa-87": ML_DSA_87}


def _ok(proc):
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return proc


@pytest.mark.parametrize("alg", sorted(LEVELS))
def test_raw_ml_dsa_signature_verifies_in_dilithium_py(tmp_path, run_atom, alg):
    keys = tmp_path / "keys"
    _ok(run_atom("keys", "generate", "--alg", alg, "--out", keys))
    pk = bytes.fromhex(_ok(run_atom("keys", "show", keys / "signing.pub", "--raw-hex")).stdout.decode().strip())
    msg = tmp_path / "msg.bin"
    msg.write_bytes(b"atom-fabric interop \x00\xff" * 100)
    sig_path = tmp_path / "msg.sig"
    _ok(run_atom("sign", "--key", keys / "signing.key", msg, "--raw", "--out", sig_path))
    sig = sig_path.read_bytes()
    impl = LEVELS[alg]
    assert impl.verify(pk, msg.read_bytes(), sig)
    # Independent rejection: another message, a flipped bit, a non-empty context.
    assert not impl.verify(pk, msg.read_bytes() + b"!", sig)
    flipped = bytearray(sig)
    flipped[len(sig) // 3] ^= 0x10
    assert not impl.verify(pk, msg.read_bytes(), bytes(flipped))
    assert not impl.verify(pk, msg.read_bytes(), sig, ctx=b"other")


@pytest.mark.parametrize("alg", sorted(LEVELS))
def test_dilithium_py_signature_verifies_in_atom(tmp_path, run_atom, alg):
    impl = LEVELS[alg]
    pk, sk = impl.keygen()
    key_id = hashlib.sha256(pk).hexdigest()
    pub = tmp_path / "their.pub"
    pub.write_text(
        "format: atom-key/v1\ntype: public\n"
        f"algorithm: {alg}\nkey-id: {key_id}\npublic.{alg}: {base64.b64encode(pk).decode()}\n"
    )
    msg = tmp_path / "m"
    msg.write_bytes(b"signed elsewhere")
    sig = tmp_path / "m.sig"
    sig.write_bytes(impl.sign(sk, msg.read_bytes()))
    out = _ok(run_atom("verify", "--raw", "--pub", pub, "--sig", sig, msg))
    assert key_id in out.stdout.decode()
    sig.write_bytes(impl.sign(sk, b"something else"))
    bad = run_atom("verify", "--raw", "--pub", pub, "--sig", sig, msg)
    assert bad.returncode != 0
    assert "bad" in bad.stderr.decode()


def _model(tmp_path: pathlib.Path) -> pathlib.Path:
    model = tmp_path / "my-model"
    (model / "weights").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden": 64}')
    (model / "weights" / "w0.bin").write_bytes(bytes(range(256)) * 4096)
    (model / "weights" / "w-1.bin").write_bytes(b"")
    (model / "tokenizer.txt").write_text("a b c\n")
    return model


def _model_signing_verify(sig, pem, model):
    cli = pathlib.Path(sys.executable).parent / "model_signing"
    return subprocess.run(
        [str(cli), "verify", "key", "--signature", str(sig), "--public_key", str(pem), str(model)],
        capture_output=True,
        timeout=300,
    )


def test_model_signing_accepts_our_hybrid_bundle(tmp_path, run_atom):
    keys = tmp_path / "keys"
    _ok(run_atom("keys", "generate", "--alg", "hybrid", "--out", keys))
    model = _model(tmp_path)
    sig = tmp_path / "model.sig"
    _ok(run_atom("manifest", "sign", model, "--key", keys / "signing.key", "--out", sig, env={"PQC_MODE": "hybrid"}))

    bundle = json.loads(sig.read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    env = bundle["dsseEnvelope"]
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert len(env["signatures"]) == 2  # ECDSA first, ML-DSA second
    statement = json.loads(base64.b64decode(env["payload"]))
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    # Every digest agrees with hashlib, and the subject digest is over the raw digests in order.
    resources = statement["predicate"]["resources"]
    for r in resources:
        assert r["digest"] == hashlib.sha256((model / r["name"]).read_bytes()).hexdigest()
    subject = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    assert statement["subject"][0]["digest"]["sha256"] == subject

    pem = keys / "signing.classical.pub.pem"
    proc = _model_signing_verify(sig, pem, model)
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    _ok(run_atom("manifest", "verify", model, "--sig", sig, "--pub", keys / "signing.pub"))

    # Both verifiers refuse a changed weight.
    (model / "weights" / "w0.bin").write_bytes(b"\x01" + bytes(range(255)) + bytes(range(256)) * 4095)
    assert _model_signing_verify(sig, pem, model).returncode != 0
    ours = run_atom("manifest", "verify", model, "--sig", sig, "--pub", keys / "signing.pub")
    assert ours.returncode != 0
    assert "digest mismatch for weights/w0.bin" in ours.stderr.decode()


def test_our_verifier_requires_the_ml_dsa_signature(tmp_path, run_atom):
    keys = tmp_path / "keys"
    _ok(run_atom("keys", "generate", "--alg", "hybrid", "--out", keys))
    model = _model(tmp_path)
    sig = tmp_path / "model.sig"
    _ok(run_atom("manifest", "sign", model, "--key", keys / "signing.key", "--out", sig))
    bundle = json.loads(sig.read_text())
    bundle["dsseEnvelope"]["signatures"] = bundle["dsseEnvelope"]["signatures"][:1]
    stripped = tmp_path / "stripped.sig"
    stripped.write_text(json.dumps(bundle))
    # The reference tool only checks the ECDSA signature, so it still accepts ...
    assert _model_signing_verify(stripped, keys / "signing.classical.pub.pem", model).returncode == 0
    # ... but hybrid mode refuses a bundle without its ML-DSA signature.
    proc = run_atom("manifest", "verify", model, "--sig", stripped, "--pub", keys / "signing.pub", env={"PQC_MODE": "hybrid"})
    assert proc.returncode != 0
    assert "requires a valid ML-DSA signature" in proc.stderr.decode()


def test_signature_inside_model_dir_is_ignored(tmp_path, run_atom):
    keys = tmp_path / "keys"
    _ok(run_atom("keys", "generate", "--alg", "hybrid", "--out", keys))
    model = _model(tmp_path)
    sig = model / "model.sig"
    _ok(run_atom("manifest", "sign", model, "--key", keys / "signing.key", "--out", sig))
    statement = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))
    assert "model.sig" not in [r["name"] for r in statement["predicate"]["resources"]]
    _ok(run_atom("manifest", "verify", model, "--sig", sig, "--pub", keys / "signing.pub"))
    proc = _model_signing_verify(sig, keys / "signing.classical.pub.pem", model)
    assert proc.returncode == 0, proc.stderr.decode()


def test_cli_errors_are_precise(tmp_path, run_atom):
    bad = run_atom("keys", "generate", "--alg", "rsa-2048", "--out", tmp_path / "k")
    assert bad.returncode == 2 and "unknown algorithm" in bad.stderr.decode()
    keys = tmp_path / "k2"
    _ok(run_atom("keys", "generate", "--alg", "ml-dsa-65", "--out", keys))
    f = tmp_path / "f"
    f.write_text("x")
    # A pure ML-DSA key cannot make a hybrid envelope.
    proc = run_atom("sign", "--key", keys / "signing.key", f, env={"PQC_MODE": "hybrid"})
    assert proc.returncode == 1 and "hybrid" in proc.stderr.decode()
    # Key files are private.
    assert (keys / "signing.key").stat().st_mode & 0o777 == 0o600
    assert "secret" not in _ok(run_atom("keys", "show", keys / "signing.key")).stdout.decode()
    off = run_atom("sign", "--key", keys / "signing.key", f, env={"PQC_MODE": "off", "SIMULATION_MODE": "false"})
    assert off.returncode == 2 and "SIMULATION_MODE" in off.stderr.decode()


def test_key_rotation_needs_approval_and_old_key_keeps_verifying(tmp_path, run_atom):
    old, new = tmp_path / "old", tmp_path / "new"
    _ok(run_atom("keys", "generate", "--alg", "hybrid", "--out", old))
    _ok(run_atom("keys", "generate", "--alg", "hybrid", "--out", new))
    ring = tmp_path / "ring.json"
    _ok(run_atom("keys", "trust", "--ring", ring, "--pub", old / "signing.pub"))
    f = tmp_path / "job.json"
    f.write_text('{"job": 1}')
    env = tmp_path / "job.dsse"
    _ok(run_atom("sign", "--key", old / "signing.key", f, "--out", env))
    prod = {"SIMULATION_MODE": "false", "PQC_MODE": "hybrid"}
    refused = run_atom("keys", "rotate", "--ring", ring, "--new", new / "signing.pub", env=prod)
    assert refused.returncode == 1 and "approved_by" in refused.stderr.decode()
    out = _ok(run_atom("keys", "rotate", "--ring", ring, "--new", new / "signing.pub", "--approved-by", "ciso", env=prod))
    record = json.loads(out.stdout)
    assert record["approved_by"] == "ciso" and record["decision"]["outcome"] == "allow"
    keys = json.loads(ring.read_text())["keys"]
    assert [k["status"] for k in keys] == ["retired", "active"]
    # The retired key still verifies what it signed (within its grace period).
    _ok(run_atom("verify", "--pub", ring, "--sig", env, f, env=prod))
