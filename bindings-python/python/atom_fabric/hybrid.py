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
from typing import Any, Callable, Mapping, Optional, Sequence

from atom_fabric._native import Coordinator, make_moons, sign_job, train_vqc

__all__ = [
    "Coordinator",
    "braket_provider",
    "coordinator_from_env",
    "make_moons",
    "onnxruntime_runtime",
    "qiskit_provider",
    "sign_job",
    "train_vqc",
]

ProviderFn = Callable[[str, int, Optional[int]], Mapping[str, int]]
ModelFn = Callable[[list[Any]], Sequence[Any]]
LoadFn = Callable[[str], ModelFn]


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


# Gates the Braket SDK has under its own name, with the same matrix and argument order as Qiskit's
# (controls first). Every other gate goes over as its exact unitary.
_BRAKET_NATIVE = {
    "id": "i", "x": "x", "y": "y", "z": "z", "h": "h", "s": "s", "sdg": "si", "t": "t",
    "tdg": "ti", "sx": "v", "sxdg": "vi", "rx": "rx", "ry": "ry", "rz": "rz", "p": "phaseshift",
    "u1": "phaseshift", "cx": "cnot", "cy": "cy", "cz": "cz", "swap": "swap",
    "cp": "cphaseshift", "cu1": "cphaseshift", "rxx": "xx", "ryy": "yy", "rzz": "zz",
    "iswap": "iswap", "ccx": "ccnot", "cswap": "cswap",
}


def braket_provider(device: Any = None) -> ProviderFn:
    """A quantum provider that runs circuits on an Amazon Braket device (the Braket SDK's
    ``LocalSimulator()`` by default).

    The OpenQASM 2 text the router sends is parsed by atom's own parser and rebuilt as a
    ``braket.circuits.Circuit``: gates Braket has are sent under their Braket names, the others
    as their exact unitary (:func:`atom_fabric.quantum.gate_matrix`). Braket measures every qubit
    at the end, so measurements must be terminal: a circuit with a gate after a measurement, a
    ``reset`` or an ``if`` raises ``ValueError`` and the router fails the stage over to the next
    target. Braket's local simulator takes no seed, so counts are not reproducible by seed.
    Counts come back keyed as Qiskit does (clbit 0 rightmost). Needs ``amazon-braket-sdk``.
    """
    import numpy as np
    from braket.circuits import Circuit as BraketCircuit
    from braket.devices import LocalSimulator

    from atom_fabric.quantum import Circuit, gate_matrix

    if device is None:
        device = LocalSimulator()

    def run(qasm: str, shots: int, seed: Optional[int]) -> dict[str, int]:
        del seed  # the Braket local simulator has no seed option
        if shots < 1:
            raise ValueError(f"braket provider: shots must be at least 1, got {shots}")
        circuit = Circuit.from_qasm(qasm)
        bc = BraketCircuit()
        for q in range(circuit.num_qubits):
            bc.i(q)  # every qubit present, so Braket measures (and reports) all of them
        clbit_of: dict[int, int] = {}
        measured: set[int] = set()
        for name, qubits, clbits, params, condition in circuit.instructions():
            if condition is not None:
                raise ValueError(f"braket provider: conditioned {name} is not supported")
            if name == "barrier":
                continue
            if name == "measure":
                clbit_of[clbits[0]] = qubits[0]
                measured.add(qubits[0])
                continue
            if name == "reset":
                raise ValueError("braket provider: reset is not supported")
            if measured.intersection(qubits):
                raise ValueError(f"braket provider: {name} after a measurement (mid-circuit measurement)")
            native = _BRAKET_NATIVE.get(name)
            if native is not None:
                getattr(bc, native)(*qubits, *params)
            else:
                # Braket reads a matrix with targets[0] most significant; ours has argument 0 least.
                m = gate_matrix(name, params, len(qubits))
                bc.unitary(matrix=np.asarray(m), targets=list(reversed(qubits)))
        result = device.run(bc, shots=shots).result()
        column = {int(q): i for i, q in enumerate(result.measured_qubits)}
        rows = np.asarray(result.measurements)
        width = circuit.num_clbits
        counts: dict[str, int] = {}
        for row in rows:
            bits = ["0"] * width
            for c, q in clbit_of.items():
                bits[width - 1 - c] = "1" if row[column[q]] else "0"
            key = "".join(bits)
            counts[key] = counts.get(key, 0) + 1
        return counts

    return run


def onnxruntime_runtime(providers: Sequence[str] = ("CPUExecutionProvider",)) -> LoadFn:
    """A neural runtime on ONNX Runtime, for :meth:`Coordinator.register_runtime`.

    ``coordinator.register_runtime("onnxruntime", onnxruntime_runtime())`` and then
    ``register_model(name, path, framework="onnxruntime")``: neural stages run the model in an
    ``onnxruntime.InferenceSession`` (inputs fed in the model's input order). Needs ``onnxruntime``.
    """
    import numpy as np
    import onnxruntime

    def load(path: str) -> ModelFn:
        session = onnxruntime.InferenceSession(path, providers=list(providers))
        names = [i.name for i in session.get_inputs()]

        def model(inputs: list[Any]) -> Sequence[Any]:
            if len(inputs) != len(names):
                raise ValueError(f"{path}: the model takes {len(names)} input(s), got {len(inputs)}")
            feed = {n: np.asarray(x, dtype=np.float32) for n, x in zip(names, inputs)}
            return list(session.run(None, feed))

        return model

    return load


def coordinator_from_env(env: Mapping[str, str] | None = None, **kwargs: Any) -> Coordinator:
    """A :class:`Coordinator` with the quantum provider named by ``QUANTUM_PROVIDER`` registered.

    ``QUANTUM_PROVIDER=qiskit`` registers :func:`qiskit_provider` (Aer) as ``"qiskit"``,
    ``QUANTUM_PROVIDER=braket`` registers :func:`braket_provider` (the Braket SDK's
    ``LocalSimulator``) as ``"braket"``; unset, ``local`` or ``mock`` use the built-in simulator
    only. Any other value is a ``ValueError`` (a typo must not silently fall back to the local
    simulator). ``kwargs`` go to ``Coordinator``.
    """
    env = os.environ if env is None else env
    provider = env.get("QUANTUM_PROVIDER", "local").strip().lower() or "local"
    c = Coordinator(**kwargs)
    if provider == "qiskit":
        c.register_provider("qiskit", qiskit_provider())
    elif provider == "braket":
        c.register_provider("braket", braket_provider())
    elif provider not in ("local", "mock"):
        raise ValueError(f"QUANTUM_PROVIDER={provider!r}: expected qiskit, braket, local or mock")
    return c
