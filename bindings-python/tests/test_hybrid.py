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


def test_python_runtimes_serve_neural_stages(tmp_path: Path) -> None:
    """The VQC's encoder served by ONNX Runtime (registered from Python) gives what tract gives."""
    x, y = hybrid.make_moons(30, noise=0.1, seed=5)
    enc = tmp_path / "encoder.onnx"
    pipeline, _ = hybrid.train_vqc(x, y, enc, epochs=10, seed=2)
    on_tract, on_ort = hybrid.Coordinator(), hybrid.Coordinator()
    on_tract.register_model("vqc-encoder", enc)
    on_ort.register_runtime("onnxruntime", hybrid.onnxruntime_runtime())
    on_ort.register_model("vqc-encoder", enc, framework="onnxruntime")
    assert {"name": "onnxruntime", "available": True, "version": None, "mock": False} in on_ort.frameworks()
    for c in (on_tract, on_ort):
        c.register_pipeline("vqc", pipeline, "hybrid")
    points = hybrid.make_moons(8, noise=0.1, seed=17)[0]
    for p in points:
        a = on_tract.submit({"tenant": "t1", "mode": "hybrid", "payload": {"pipeline": "vqc", "inputs": {"x": p}}})
        b = on_ort.submit({"tenant": "t1", "mode": "hybrid", "payload": {"pipeline": "vqc", "inputs": {"x": p}}})
        on_tract.run_all(), on_ort.run_all()
        sa, sb = on_tract.status(a), on_ort.status(b)
        assert sa["state"] == sb["state"] == "completed", (sa.get("error"), sb.get("error"))
        np.testing.assert_allclose(sb["outputs"]["angles"]["data"], sa["outputs"]["angles"]["data"], rtol=1e-5, atol=1e-6)
        assert sb["outputs"]["angles"]["shape"] == sa["outputs"]["angles"]["shape"]


def test_a_python_runtime_that_fails_fails_the_stage_with_its_message(tmp_path: Path) -> None:
    model_file = tmp_path / "m.bin"
    model_file.write_bytes(b"weights")
    loads: list[str] = []

    def load(path: str):
        loads.append(path)

        def model(inputs):
            (v,) = inputs
            assert v.dtype == np.float32
            if float(v.sum()) < 0:
                raise RuntimeError("negative input refused")
            return [v * 2.0, np.ones((1, 2))]

        return model

    c = hybrid.Coordinator()
    with pytest.raises(ValueError, match="not callable"):
        c.register_runtime("py", 3)  # type: ignore[arg-type]
    c.register_runtime("py", load)
    c.register_runtime("broken", lambda path: "not a model")  # type: ignore[arg-type,return-value]
    c.register_model("double", model_file, framework="py")
    c.register_model("bad", model_file, framework="broken")

    def job(model: str, v: list[float]) -> str:
        return c.submit({"tenant": "t", "mode": "hybrid", "payload": {
            "stages": [{"name": "n", "kind": "neural", "model": model, "input": "v", "output": "o"}],
            "inputs": {"v": v}}})

    # A run error fails the target over (and marks it down for a while), so it goes last.
    ok, bad, refused = job("double", [1.0, 2.5]), job("bad", [1.0]), job("double", [-1.0, -2.0])
    c.run_all()
    s = c.status(ok)
    assert s["state"] == "completed", s.get("error")
    assert s["outputs"]["o"]["data"] == [2.0, 5.0] and s["outputs"]["o"]["shape"] == [2]  # first output
    assert loads == [str(model_file)]  # loaded once, then served from the cache
    assert c.status(refused)["state"] == "failed" and "negative input refused" in c.status(refused)["error"]
    assert c.status(bad)["state"] == "failed" and "must return a callable" in c.status(bad)["error"]


def _marginal(probs: np.ndarray, clbit_of: dict[int, int], width: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for index, p in enumerate(probs):
        if p < 1e-14:
            continue
        bits = ["0"] * width
        for c, q in clbit_of.items():
            bits[width - 1 - c] = "1" if (index >> q) & 1 else "0"
        key = "".join(bits)
        out[key] = out.get(key, 0.0) + float(p)
    return out


def test_braket_provider_agrees_with_qiskit_on_random_circuits() -> None:
    """Qiskit's random circuits (every standard gate) on Braket's LocalSimulator through the
    provider, against Qiskit's exact statevector, measured into permuted, partial clbits."""
    pytest.importorskip("braket.devices")
    from qiskit import qasm2
    from qiskit.circuit.random import random_circuit
    from qiskit.quantum_info import Statevector

    run = hybrid.braket_provider()
    rng = np.random.default_rng(4)
    shots = 20000
    for trial in range(8):
        n = int(rng.integers(1, 6))
        qc = random_circuit(n, 6, max_operands=min(n, 3), seed=100 + trial)
        probs = Statevector(qc).probabilities()  # qubit 0 least significant, as ours
        qasm = qasm2.dumps(qc)
        width = n + 1
        clbits = rng.permutation(width)[: max(1, n - trial % 2)]
        clbit_of = {int(c): q for q, c in enumerate(clbits)}
        lines = qasm.splitlines()
        decl = f"creg m[{width}];"
        body = "\n".join(lines + [decl] + [f"measure q[{q}] -> m[{c}];" for c, q in clbit_of.items()])
        counts = run(body, shots, None)
        assert sum(counts.values()) == shots
        assert all(len(k) == width for k in counts)
        assert _tvd(dict(counts), _marginal(probs, clbit_of, width)) < 0.04, (trial, qasm)


def test_braket_provider_runs_stages_and_refuses_what_it_cannot_run() -> None:
    pytest.importorskip("braket.devices")
    from atom_fabric.quantum import Circuit, simulate

    c = hybrid.coordinator_from_env({"QUANTUM_PROVIDER": "braket"})
    stage = {"name": "q", "kind": "quantum", "qasm": ROTATED, "shots": 20000, "seed": 7, "output": "c"}
    job = c.submit({"tenant": "t1", "mode": "quantum", "payload": {"stages": [dict(stage, provider="braket")]}})
    assert c.run_all() == 1
    s = c.status(job)
    assert s["state"] == "completed" and s["stages"][0]["target"] == "braket", s
    exact = simulate(Circuit.from_qasm(ROTATED.replace("measure q -> c;\n", ""))).probabilities()
    assert _tvd(s["outputs"]["c"], {format(i, "02b"): float(p) for i, p in enumerate(exact)}) < 0.02
    run = hybrid.braket_provider()
    mid = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nmeasure q[0] -> c[0];\nx q[0];\n'
    with pytest.raises(ValueError, match="mid-circuit"):
        run(mid, 10, None)
    cond = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nif(c==1) x q[0];\n'
    with pytest.raises(ValueError, match="conditioned"):
        run(cond, 10, None)
