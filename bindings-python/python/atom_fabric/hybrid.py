"""Hybrid quantum-AI jobs: the coordinator, signed job manifests, and the worked variational
quantum classifier (a neural ONNX encoder, a 2-qubit circuit, a classical threshold).

Jobs are dicts ``{"tenant", "mode", "payload", "manifest"?}`` in the same form the agent host's
``POST /agent/submit`` takes. Outside simulation every job needs a manifest signed by a trusted
key (P2) and the caller's tenant (P5).

>>> from atom_fabric.hybrid import Coordinator
>>> c = Coordinator(simulation=True)
>>> qasm = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; h q[0]; cx q[0],q[1];'
>>> job_id = c.submit({"tenant": "t1", "mode": "quantum", "payload": {"stages": [
...     {"name": "bell", "kind": "quantum", "qasm": qasm, "observables": ["ZZ", "IZ"], "output": "e"}]}})
>>> c.run_all()
1
>>> [round(v, 12) for v in c.status(job_id)["outputs"]["e"]]
[1.0, 0.0]
"""

from atom_fabric._native import Coordinator, make_moons, sign_job, train_vqc

__all__ = ["Coordinator", "make_moons", "sign_job", "train_vqc"]
