"""H.2 end to end: the documents' requests against a real `atom serve` on loopback."""

from __future__ import annotations

import json
import re
import time

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hosts import Host, start, stop  # noqa: E402


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def wait_phase(host: Host, rid: str, phase: str, timeout: float = 10.0) -> dict:
    """The node agent reports a launch asynchronously (as a kubelet does): poll for it."""
    deadline = time.monotonic() + timeout
    while True:
        s, st, _ = host.request("GET", f"{host.scheduler}/schedule/{rid}")
        assert s == 200, st
        if st["phase"] == phase or time.monotonic() > deadline:
            return st
        time.sleep(0.02)


def test_documents_requests(host: Host) -> None:
    s, body, _ = host.request("GET", f"{host.scheduler}/health")
    assert s == 200 and body["status"] == "ok" and body["mode"]["simulation"] is True
    assert body["uptime_s"] >= 0

    s, body, _ = host.request("POST", f"{host.scheduler}/node/register", {"node_id": "node-sim-1", "gpus": 1})
    assert s == 201 and body["node_id"] == "node-sim-1"

    s, body, _ = host.request("POST", f"{host.scheduler}/schedule",
                              {"tenant_id": "t1", "model_id": "m1", "model_version": "v1", "resources": {"gpu": 1}})
    assert s == 201, body
    assert body["status"] == "placed"
    rid = body["request_id"]
    assert body["placement"]["replicas"][0]["node"] == "node-sim-1"
    assert body["placement"]["replicas"][0]["devices"] == [0]

    # The node agent launches the replica and reports it running; its run file describes it.
    st = wait_phase(host, rid, "running")
    assert st["phase"] == "running" and st["model_id"] == "m1"
    run_files = list((host.data / "state" / "runs").glob("*.json"))
    assert len(run_files) == 1
    record = json.loads(run_files[0].read_text())
    assert record["node"] == "node-sim-1" and record["model_id"] == "m1" and record["tenant_id"] == "t1"

    s, body, _ = host.request("POST", f"{host.scheduler}/node/launch", {"request_id": rid})
    assert s == 200 and len(body["run_files"]) == 1

    s, hs, _ = host.request("GET", f"{host.scheduler}/pqc/handshake")
    assert s == 200 and hs["status"] == "ok" and hs["algorithm"] == "X25519MLKEM768"
    assert re.fullmatch(r"[0-9a-f]{64}", hs["sha256"])

    s, text, hdrs = host.request("GET", f"{host.scheduler}/metrics")
    assert s == 200
    assert hdrs.get("content-type", hdrs.get("Content-Type", "")).startswith("application/openmetrics-text")
    assert metric(text, "nf_sched_requests_total", phase="placed", tenant="t1") >= 1
    assert metric(text, "nf_model_deploys_total", tenant="t1", model="m1") == 1
    assert text.rstrip().endswith("# EOF")


def test_release_stops_the_replica_and_its_run_file_goes(host: Host) -> None:
    host.request("POST", f"{host.scheduler}/node/register", {"node_id": "n1", "gpus": 2})
    s, body, _ = host.request("POST", f"{host.scheduler}/schedule",
                              {"tenant_id": "t1", "model_id": "m", "model_version": "v", "resources": {"gpu": 1}, "replicas": 2})
    assert s == 201, body
    rid = body["request_id"]
    assert wait_phase(host, rid, "running")["phase"] == "running"
    runs = host.data / "state" / "runs"
    number = rid.removeprefix("req-")
    assert sorted(p.name for p in runs.glob("*.json")) == [f"{number}-0.json", f"{number}-1.json"]
    s, body, _ = host.request("POST", f"{host.scheduler}/schedule/{rid}/release", {"tenant_id": "t1"})
    assert s == 200 and body["result"]["phase"] == "completed", body
    deadline = time.monotonic() + 10
    while list(runs.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(runs.glob("*.json")) == []
    s, st, _ = host.request("GET", f"{host.scheduler}/schedule/{rid}")
    assert s == 200 and st["phase"] == "completed"


def test_quota_queues_then_places_when_capacity_frees(host: Host) -> None:
    host.request("POST", f"{host.scheduler}/node/register", {"node_id": "n1", "gpus": 4})
    ids = []
    for _ in range(3):
        s, body, _ = host.request("POST", f"{host.scheduler}/schedule",
                                  {"tenant_id": "t1", "model_id": "m", "model_version": "v", "resources": {"gpu": 1, "mem": "4GB"}})
        ids.append(body["request_id"])
    assert body["status"] == "queued" and body["reason"] == "quota"
    s, body, _ = host.request("POST", f"{host.scheduler}/schedule/{ids[0]}/release", {"tenant_id": "t1"})
    assert s == 200
    s, st, _ = host.request("GET", f"{host.scheduler}/schedule/{ids[2]}")
    assert st["phase"] in ("placed", "running")


def test_bad_input_gets_typed_json_errors(host: Host) -> None:
    url = f"{host.scheduler}/schedule"
    s, body, _ = host.request("POST", url, raw=b"{not json")
    assert s == 400 and body["error"]["code"] == "malformed_json"
    s, body, _ = host.request("POST", url, {"tenant_id": "t1", "model_id": "m", "model_version": "v", "resources": {"gpu": "one"}})
    assert s == 422 and body["error"]["field"] == "resources.gpu"
    s, body, _ = host.request("POST", url, {"tenant_id": "t1", "model_id": "m"})
    assert s == 422 and "model_version" in body["error"]["message"]
    s, body, _ = host.request("POST", url, raw=b"x" * (2 << 20))
    assert s == 413 and body["error"]["code"] == "payload_too_large"
    s, body, _ = host.request("GET", f"{host.scheduler}/schedule/req-12345")
    assert s == 404 and body["error"]["code"] == "not_found"
    s, body, _ = host.request("GET", f"{host.scheduler}/no/such/route")
    assert s == 404
    s, body, _ = host.request("POST", f"{host.scheduler}/node/register", {"node_id": "n", "gpus": -1})
    assert s == 422


def test_audit_proof_and_openapi(host: Host) -> None:
    host.request("POST", f"{host.scheduler}/node/register", {"node_id": "n1", "gpus": 1})
    s, body, _ = host.request("POST", f"{host.scheduler}/schedule",
                              {"tenant_id": "t1", "model_id": "m1", "model_version": "v1", "resources": {"gpu": 1}})
    idx = body["audit_index"]
    s, proof, _ = host.request("GET", f"{host.scheduler}/audit/proof/{idx}")
    assert s == 200 and proof["index"] == idx and proof["tree_size"] > idx
    assert json.loads(proof["record"])["action"] == "schedule.request"
    s, cp, _ = host.request("GET", f"{host.scheduler}/audit/checkpoint")
    assert s == 200 and cp.startswith("atom-fabric/audit\n")
    s, doc, _ = host.request("GET", f"{host.scheduler}/openapi.json")
    assert s == 200 and "/schedule" in doc["paths"] and "/agent/submit" in doc["paths"]


def test_restart_with_the_same_data_dir_loses_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"SIMULATION_MODE": "true", "PQC_MODE": "off"}
    h = start(tmp_path, env)
    h.request("POST", f"{h.scheduler}/node/register", {"node_id": "n1", "gpus": 2})
    _, a, _ = h.request("POST", f"{h.scheduler}/schedule", {"tenant_id": "t1", "model_id": "m", "model_version": "v", "resources": {"gpu": 1}})
    _, audit_before, _ = h.request("GET", f"{h.scheduler}/health")
    assert stop(h) == 0
    h2 = start(tmp_path, env)
    try:
        s, st, _ = h2.request("GET", f"{h2.scheduler}/schedule/{a['request_id']}")
        assert s == 200 and st["phase"] == "running"
        _, health, _ = h2.request("GET", f"{h2.scheduler}/health")
        assert health["audit_size"] == audit_before["audit_size"]
    finally:
        stop(h2)


def test_after_a_kill_the_node_agent_catches_up_with_the_journal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"SIMULATION_MODE": "true", "PQC_MODE": "off"}
    h = start(tmp_path, env)
    h.request("POST", f"{h.scheduler}/node/register", {"node_id": "n1", "gpus": 4})
    s, done, _ = h.request("POST", f"{h.scheduler}/schedule", {"tenant_id": "t1", "model_id": "m", "model_version": "v", "resources": {"gpu": 1}})
    assert s == 201 and wait_phase(h, done["request_id"], "running")["phase"] == "running"
    s, _, _ = h.request("POST", f"{h.scheduler}/schedule/{done['request_id']}/release", {"tenant_id": "t1"})
    assert s == 200
    # Killed right after an answer: the agent's launch and report may or may not have happened.
    s, a, _ = h.request("POST", f"{h.scheduler}/schedule", {"tenant_id": "t1", "model_id": "m", "model_version": "v", "resources": {"gpu": 1}})
    assert s == 201
    h.proc.kill()
    h.proc.wait(timeout=30)
    runs = tmp_path / "state" / "runs"
    # Run files whose requests hold nothing (a stop the kill lost, a stray replica number).
    n_done = done["request_id"].removeprefix("req-")
    n_a = a["request_id"].removeprefix("req-")
    (runs / f"{n_done}-0.json").write_text("{}")
    (runs / f"{n_a}-7.json").write_text("{}")
    h2 = start(tmp_path, env)
    try:
        st = wait_phase(h2, a["request_id"], "running")
        assert st["phase"] == "running"
        assert sorted(p.name for p in runs.glob("*.json")) == [f"{n_a}-0.json"]
        record = json.loads((runs / f"{n_a}-0.json").read_text())
        assert record["request_id"] == int(n_a) and record["node"] == "n1"
    finally:
        stop(h2)
