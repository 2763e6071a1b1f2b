"""H.3 end to end: hybrid jobs through the agent host (8700 in the documents)."""

from __future__ import annotations

import time

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hosts import Host  # noqa: E402


def wait_done(host: Host, job: str) -> dict:  # type: ignore[type-arg]
    deadline = time.time() + 30
    while time.time() < deadline:
        s, st, _ = host.request("GET", f"{host.agent}/agent/status/{job}")
        assert s == 200
        if st["state"] in ("completed", "failed"):
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish")


def test_documents_submit_and_status(host: Host) -> None:
    s, body, _ = host.request("POST", f"{host.agent}/agent/submit", {"tenant": "demo", "mode": "hybrid", "payload": {"x": 1}})
    assert s == 201, body
    st = wait_done(host, body["id"])
    assert st["state"] == "completed", st
    assert [x["kind"] for x in st["stages"]] == ["neural", "quantum", "classical"]
    counts = st["outputs"]["counts"]
    assert sum(counts.values()) == 1024
    # zz = P(even) - P(odd), recomputed from the counts.
    even = counts.get("00", 0) + counts.get("11", 0)
    assert abs(st["outputs"]["zz"] - (2 * even - 1024) / 1024) < 1e-12
    assert st["manifest"]["outcome"] == "allow_in_simulation"
    # Every audit index of the job proves against a signed checkpoint.
    for idx in st["audit"]:
        s, proof, _ = host.request("GET", f"{host.scheduler}/audit/proof/{idx}")
        assert s == 200 and proof["index"] == idx
    # The documents' status probe for an unknown id answers 404 with a JSON error.
    s, body, _ = host.request("GET", f"{host.agent}/agent/status/demo")
    assert s == 404 and body["error"]["code"] == "not_found"
    s, health, _ = host.request("GET", f"{host.agent}/health")
    assert s == 200 and health["component"] == "hybrid-agent"
    s, text, _ = host.request("GET", f"{host.agent}/metrics")
    assert 'nf_hybrid_jobs_total{tenant="demo",mode="hybrid",status="completed"} 1' in text
    assert 'nf_quantum_shots_total{target="local"} 1024' in text


def test_explicit_pipeline_with_observables(host: Host) -> None:
    qasm = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\ncx q[0],q[1];\n'
    payload = {"stages": [{"name": "bell", "kind": "quantum", "qasm": qasm, "observables": ["ZZ", "XX", "IZ"], "output": "e"}]}
    s, body, _ = host.request("POST", f"{host.agent}/agent/submit", {"tenant": "t1", "mode": "quantum", "payload": payload})
    st = wait_done(host, body["id"])
    e = st["outputs"]["e"]
    # Bell state: <ZZ> = <XX> = 1, <Z0> = 0 (analytic).
    assert abs(e[0] - 1) < 1e-12 and abs(e[1] - 1) < 1e-12 and abs(e[2]) < 1e-12


def test_invalid_jobs(host: Host) -> None:
    url = f"{host.agent}/agent/submit"
    s, body, _ = host.request("POST", url, {"tenant": "t1", "mode": "teleport", "payload": {}})
    assert s == 422 and body["error"]["field"] == "mode"
    s, body, _ = host.request("POST", url, {"tenant": "t1", "mode": "quantum",
                                            "payload": {"stages": [{"name": "s", "kind": "quantum", "qasm": "OPENQASM 2.0;\nqreg q[1];\nbogus q[0];\n", "output": "c"}]}})
    assert s == 422 and body["error"]["field"] == "payload.stages[0].qasm"
    s, body, _ = host.request("POST", url, raw=b"{")
    assert s == 400


def test_phase_snapshot_from_live_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import os
    import subprocess

    from hosts import ATOM, start, stop

    secret = "S3CRET-jwt-value-4711"
    h = start(tmp_path, {"SIMULATION_MODE": "true", "PQC_MODE": "off", "ATOM_JWT_HS256_SECRET": secret})
    try:
        h.request("POST", f"{h.agent}/agent/submit", {"tenant": "demo", "mode": "hybrid", "payload": {"x": 0.3}})
        out = tmp_path / "reports" / "PhaseH.3_Snapshot.json"
        port = h.scheduler.rsplit(":", 1)[1]
        r = subprocess.run([ATOM, "snapshot", "--out", str(out), "--data-dir", str(tmp_path / "state"),
                            "--host", f"127.0.0.1:{port}", "--env-default", "/nonexistent"],
                           capture_output=True, text=True, env={**os.environ, "ATOM_JWT_HS256_SECRET": secret})
        assert r.returncode == 0, r.stderr
        text = out.read_text()
        snap = json.loads(text)
        assert snap["audit_checkpoint"]["size"] >= 1
        assert snap["policy_matrix"]["P2"]["simulated"] >= 1
        assert len(snap["commit"]) in (40, 6)
        # No secrets: not the JWT secret, not the audit signer's private key.
        signer = (tmp_path / "state" / "keys" / "audit.signer").read_text().strip()
        assert secret not in text
        assert signer.split("+")[-1] not in text
    finally:
        stop(h)
