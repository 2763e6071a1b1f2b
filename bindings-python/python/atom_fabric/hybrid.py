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

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional

from atom_fabric._native import Coordinator, make_moons, sign_job, train_vqc

__all__ = ["Coordinator", "coordinator_from_env", "make_moons", "qiskit_provider", "sign_job", "train_vqc"]

ProviderFn = Callable[[str, int, Optional[int]], Mapping[str, int]]


def qiskit_provider(backend: Any = None) -> ProviderFn:
    """A quantum provider that runs circuits on a Qiskit ``BackendV2`` (``AerSimulator()`` by default).

    The returned callable takes the OpenQASM 2 text the router sends, transpiles it for the
    backend, runs it with the requested shots (and ``seed_simulator`` when a seed is given, for
    simulators that accept one) and returns Qiskit's counts. Register it with
    ``coordinator.register_provider("qiskit", qiskit_provider())``; needs ``qiskit`` (and
    ``qiskit-aer`` for the default backend).
    """
    from qiskit import QuantumCircuit, transpile

    if backend is None:
        from qiskit_aer import AerSimulator

        backend = AerSimulator()

    def run(qasm: str, shots: int, seed: Optional[int]) -> dict[str, int]:
        circuit = transpile(QuantumCircuit.from_qasm_str(qasm), backend)
        options: dict[str, Any] = {"shots": shots}
        if seed is not None and hasattr(backend.options, "seed_simulator"):
            options["seed_simulator"] = seed
        counts = backend.run(circuit, **options).result().get_counts()
        return {str(k): int(v) for k, v in counts.items()}

    return run


def coordinator_from_env(env: Mapping[str, str] | None = None, **kwargs: Any) -> Coordinator:
    """A :class:`Coordinator` with the quantum provider named by ``QUANTUM_PROVIDER`` registered.

    ``QUANTUM_PROVIDER=qiskit`` registers :func:`qiskit_provider` (Aer) as ``"qiskit"``; unset,
    ``local`` or ``mock`` use the built-in simulator only. Any other value is a ``ValueError``
    (a typo must not silently fall back to the local simulator). ``kwargs`` go to ``Coordinator``.
    """
    env = os.environ if env is None else env
    provider = env.get("QUANTUM_PROVIDER", "local").strip().lower() or "local"
    c = Coordinator(**kwargs)
    if provider == "qiskit":
        c.register_provider("qiskit", qiskit_provider())
    elif provider not in ("local", "mock"):
        raise ValueError(f"QUANTUM_PROVIDER={provider!r}: expected qiskit, local or mock")
    return c
