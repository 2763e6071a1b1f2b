"""atom_fabric.hybrid: the coordinator from Python, signed jobs, and the worked VQC, with the
encoder's ONNX checked against onnxruntime (an independent runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from atom_fabric import errors, hybrid, policy

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def test_vqc_end_to_end_and_onnx_matches_onnxruntime(tmp_path: Path) -> None:
    x, y = hybrid.make_moons(60, noise=0.1, seed=11)
    assert len(x) == 60 and sorted(set(y)) == [0, 1]
    enc = tmp_path / "encoder.onnx"
    pipeline, losses = hybrid.train_vqc(x, y, enc, epochs=40, seed=3)
    assert losses[-1] < 0.6 * losses[0]
    c = hybrid.Coordinator(simulation=True)
    c.register_model("vqc-encoder", enc)
    c.register_pipeline("vqc", pipeline, "hybrid")
    tx, ty = hybrid.make_moons(40, noise=0.1, seed=99)
    ids = [c.submit({"tenant": "t1", "mode": "hybrid", "payload": {"pipeline": "vqc", "inputs": {"x": p}}}) for p in tx]
    assert c.run_all() == len(ids)
    sess = ort.InferenceSession(str(enc))
    right = 0
    for job_id, p, label in zip(ids, tx, ty):
        s = c.status(job_id, tenant="t1")
        assert s["state"] == "completed", s["error"]
        # The encoder stage (tract) agrees with onnxruntime on the same ONNX file.
        ref = sess.run(None, {"x": np.array([p], dtype=np.float32)})[0]
        np.testing.assert_allclose(s["outputs"]["angles"]["data"], ref.ravel(), rtol=1e-5, atol=1e-6)
        right += int(s["outputs"]["label"][0] == label)
    assert right / len(ids) >= 0.85


def test_signed_jobs_outside_simulation() -> None:
    key = policy.SigningKey.generate("hybrid")
    c = hybrid.Coordinator(simulation=False, trusted_keys=[key.verifying_key()])
    job = {"tenant": "acme", "mode": "quantum", "payload": {"stages": [
        {"name": "bell", "kind": "quantum", "qasm": BELL, "shots": 100, "seed": 1, "output": "c"}]}}
    with pytest.raises(errors.VerificationError):
        c.submit(job, tenant="acme")
    signed = hybrid.sign_job(job, key)
    with pytest.raises(errors.HybridError):
        c.submit(signed, tenant="other")
    tampered = dict(signed, payload={"stages": []})
    with pytest.raises(errors.VerificationError):
        c.submit(tampered, tenant="acme")
    job_id = c.submit(signed, tenant="acme")
    c.run_all()
    s = c.status(job_id, tenant="acme")
    assert s["manifest"]["verified"] is True
    assert s["outputs"]["c"].get("00", 0) + s["outputs"]["c"].get("11", 0) == 100
    with pytest.raises(errors.HybridError):
        c.status(job_id, tenant="other")
    assert 'nf_quantum_shots_total{target="local"} 100' in c.metrics_text()


def test_invalid_jobs_raise_hybrid_errors() -> None:
    c = hybrid.Coordinator()
    with pytest.raises(errors.HybridError, match="payload.stages\\[0\\].qasm"):
        c.submit({"tenant": "t", "mode": "quantum", "payload": {"stages": [
            {"name": "s", "kind": "quantum", "qasm": "OPENQASM 2.0; qreg q[1]; nope q[0];", "output": "c"}]}})
    with pytest.raises(ValueError):
        c.submit({"tenant": "t", "mode": "teleport", "payload": {}})
    with pytest.raises(ValueError):
        hybrid.train_vqc([[0.0, 0.0]], [2], "/tmp/x.onnx")


def _tvd(counts: dict, probs: dict) -> float:
    shots = sum(counts.values())
    keys = set(counts) | set(probs)
    return 0.5 * sum(abs(counts.get(k, 0) / shots - probs.get(k, 0.0)) for k in keys)


# A circuit with a known answer: ry(θ) on q0, then CX: P(00) = cos²(θ/2), P(11) = sin²(θ/2).
ROTATED = ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nry(1.2) q[0];\ncx q[0],q[1];\n'
           'rz(0.3) q[1];\nh q[1];\nmeasure q -> c;\n')


def test_qiskit_provider_runs_stages_on_aer_and_agrees_with_the_local_simulator() -> None:
    pytest.importorskip("qiskit_aer")  # in requirements-test.txt: present in make test
    from atom_fabric.quantum import Circuit, simulate

    c = hybrid.coordinator_from_env({"QUANTUM_PROVIDER": "qiskit"})
    stage = {"name": "q", "kind": "quantum", "qasm": ROTATED, "shots": 20000, "seed": 7, "output": "c"}
    on_aer = c.submit({"tenant": "t1", "mode": "quantum", "payload": {"stages": [dict(stage, provider="qiskit")]}})
    local = c.submit({"tenant": "t1", "mode": "quantum", "payload": {"stages": [dict(stage, provider="local")]}})
    assert c.run_all() == 2
    aer, ours = c.status(on_aer), c.status(local)
    assert aer["state"] == ours["state"] == "completed", (aer.get("error"), ours.get("error"))
    assert aer["stages"][0]["target"] == "qiskit" and ours["stages"][0]["target"] == "local"
    # Both sample the same distribution: the exact probabilities from our statevector.
    exact = simulate(Circuit.from_qasm(ROTATED.replace("measure q -> c;\n", ""))).probabilities()
    probs = {format(i, "02b"): float(p) for i, p in enumerate(exact) if p > 1e-12}
    assert sum(aer["outputs"]["c"].values()) == 20000
    assert _tvd(aer["outputs"]["c"], probs) < 0.02
    assert _tvd(ours["outputs"]["c"], probs) < 0.02
    assert 'target="qiskit"' in c.metrics_text()


def test_a_python_provider_that_fails_is_failed_over_and_bad_providers_are_refused() -> None:
    calls = []

    def broken(qasm: str, shots: int, seed):
        calls.append(shots)
        raise RuntimeError("device offline")

    c = hybrid.Coordinator()
    c.register_provider("flaky", broken)
    with pytest.raises(ValueError):
        c.register_provider("local", broken)
    with pytest.raises(ValueError):
        c.register_provider("x", 42)  # type: ignore[arg-type]
    job = c.submit({"tenant": "t1", "mode": "quantum", "payload": {"stages": [
        {"name": "bell", "kind": "quantum", "qasm": BELL, "shots": 64, "seed": 1, "provider": "flaky", "output": "c"}]}})
    c.run_all()
    s = c.status(job)
    assert calls == [64]
    assert s["state"] == "completed", s.get("error")
    assert s["stages"][0]["target"] == "local"
    assert any("device offline" in str(f) for f in s["stages"][0].get("failovers", [])), s["stages"][0]
    with pytest.raises(ValueError, match="QUANTUM_PROVIDER"):
        hybrid.coordinator_from_env({"QUANTUM_PROVIDER": "qiskitt"})
