"""atom_fabric.fabric: placement, quota queueing, release, tenant isolation, persistence, metrics."""

from __future__ import annotations

import pytest

from atom_fabric import errors
from atom_fabric.fabric import Fabric

NODE = {"id": "node-1", "cpu_milli": 16000, "memory_mib": 65536, "gpus": [{"model": "A100", "memory_mib": 40960}] * 4}


def req(tenant: str, gpu: int) -> dict:
    return {"tenant_id": tenant, "model_id": "m1", "model_version": "v1", "resources": {"gpu": gpu}}


def test_quota_queueing_release_and_isolation():
    f = Fabric()
    f.register_node(NODE)
    a = f.schedule(req("t1", 1))
    b = f.schedule(req("t1", 1))
    assert a["result"] == b["result"] == "placed"
    # MAX_TENANT_GPUs defaults to 2: a third GPU for t1 queues on quota, t2 is unaffected.
    c = f.schedule(req("t1", 1))
    assert (c["result"], c["reason"]) == ("queued", "quota")
    assert f.schedule(req("t2", 1))["result"] == "placed"
    # Devices are distinct (never over-committed).
    devices = [f.status("t1", r["request_id"])["placement"]["replicas"][0]["devices"][0] for r in (a, b)]
    assert len(set(devices)) == 2
    # Releasing one of t1's requests places the queued one at once.
    f.release("t1", a["request_id"])
    assert f.status("t1", c["request_id"])["phase"] == "placed"
    # t2 cannot see t1's request.
    with pytest.raises(errors.FabricError):
        f.status("t2", c["request_id"])
    assert [r["tenant_id"] for r in f.requests("t2")] == ["t2"]
    text = f.metrics_text()
    assert 'nf_sched_requests_total{phase="queued",tenant="t1"} 1' in text
    assert 'nf_model_deploys_total{tenant="t1",model="m1"}' in text


def test_state_survives_reopen(tmp_path):
    f = Fabric(data_dir=tmp_path / "data")
    f.register_node(NODE)
    r = f.schedule(req("t1", 1))
    del f
    again = Fabric(data_dir=tmp_path / "data")
    assert again.status("t1", r["request_id"])["phase"] == "placed"


def test_bad_input_is_a_clear_error():
    f = Fabric()
    with pytest.raises(ValueError, match="invalid request"):
        f.schedule({"tenant_id": "t1"})
    with pytest.raises(ValueError, match="invalid node"):
        f.register_node({"id": "n", "cpu_milli": "lots"})
    with pytest.raises(errors.FabricError):
        f.release("t1", 999)
    assert issubclass(errors.FabricError, errors.AtomError)
