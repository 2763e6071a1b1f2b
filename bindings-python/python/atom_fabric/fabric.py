"""The embedded fabric: nodes, tenant quotas, placement, request status, metrics.

Nodes, requests and outcomes are plain dicts in the scheduler's JSON format (the same bodies the
HTTP host accepts). With ``data_dir`` the state persists (snapshot + journal) and survives restarts.

>>> from atom_fabric.fabric import Fabric
>>> f = Fabric()
>>> _ = f.register_node({"id": "node-1", "cpu_milli": 16000, "memory_mib": 65536,
...                      "gpus": [{"model": "A100", "memory_mib": 40960}] * 2})
>>> out = f.schedule({"tenant_id": "t1", "model_id": "m1", "model_version": "v1", "resources": {"gpu": 1}})
>>> out["result"], out["placement"]["replicas"][0]["node"]
('placed', 'node-1')
>>> f.status("t1", out["request_id"])["phase"]
'placed'
"""

from atom_fabric._native import Fabric

__all__ = ["Fabric"]
