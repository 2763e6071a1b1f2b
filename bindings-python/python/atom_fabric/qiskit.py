"""Qiskit integration (install the extra: ``pip install atom-fabric[qiskit]``).

- :class:`AtomBackend`: a ``BackendV2`` whose target holds Qiskit's standard gates; ``run()``
  returns counts (and ``memory``) in Qiskit's ``Result`` format.
- :class:`AtomSamplerV2` and :class:`AtomEstimatorV2`: Primitives V2, built like Qiskit's
  ``StatevectorSampler`` / ``StatevectorEstimator``, running on atom's statevector simulator.

Circuits travel as OpenQASM 2 (``qiskit.qasm2.dumps``); a circuit that OpenQASM 2 cannot express
is first transpiled to ``u``/``cx``.

>>> from qiskit import QuantumCircuit
>>> from atom_fabric.qiskit import AtomEstimatorV2, AtomSamplerV2
>>> from qiskit.quantum_info import SparsePauliOp
>>> qc = QuantumCircuit(2); _ = qc.h(0); _ = qc.cx(0, 1)
>>> round(float(AtomEstimatorV2().run([(qc, SparsePauliOp("ZZ"))]).result()[0].data.evs), 12)
1.0
>>> qc.measure_all()
>>> counts = AtomSamplerV2(seed=7).run([qc], shots=100).result()[0].data.meas.get_counts()
>>> sorted(counts)
['00', '11']
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, cast

import numpy as np
from qiskit import QuantumCircuit, qasm2, transpile
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.primitives import (
    BaseEstimatorV2,
    BaseSamplerV2,
    BitArray,
    DataBin,
    PrimitiveJob,
    PrimitiveResult,
    PubResult,
    SamplerPubResult,
)
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers import BackendV2, JobStatus, JobV1, Options
from qiskit.result import Result
from qiskit.transpiler import Target

from atom_fabric import quantum

__all__ = ["AtomBackend", "AtomEstimatorV2", "AtomSamplerV2", "to_atom_circuit"]

_FALLBACK_BASIS = ["u", "cx", "measure", "reset", "barrier"]


def to_atom_circuit(circuit: QuantumCircuit) -> quantum.Circuit:
    """Converts a bound Qiskit circuit through OpenQASM 2 (transpiling to u/cx when needed)."""
    try:
        return quantum.Circuit.from_qasm(qasm2.dumps(circuit))
    except Exception:  # noqa: BLE001 - any QASM 2 limit: fall back to a basis QASM 2 can express
        lowered = transpile(circuit, basis_gates=_FALLBACK_BASIS, optimization_level=0)
        return quantum.Circuit.from_qasm(qasm2.dumps(lowered))


def _split_counts(counts: Mapping[str, int], circuit: QuantumCircuit) -> dict[str, dict[str, int]]:
    """Per-register counts from atom's counts (registers separated by spaces, last register first)."""
    names = [creg.name for creg in circuit.cregs]
    out: dict[str, dict[str, int]] = {name: {} for name in names}
    for key, n in counts.items():
        parts = key.split(" ")[::-1]
        for name, bits in zip(names, parts):
            out[name][bits] = out[name].get(bits, 0) + n
    return out


class AtomSamplerV2(BaseSamplerV2):
    """Sampler V2 on atom's simulator. ``seed`` makes results reproducible."""

    def __init__(self, *, default_shots: int = 1024, seed: int | None = None) -> None:
        self._default_shots = default_shots
        self._seed = seed

    @property
    def default_shots(self) -> int:
        return self._default_shots

    @property
    def seed(self) -> int | None:
        return self._seed

    def run(self, pubs: Iterable[Any], *, shots: int | None = None) -> PrimitiveJob[PrimitiveResult[SamplerPubResult]]:
        coerced = [SamplerPub.coerce(pub, shots if shots is not None else self._default_shots) for pub in pubs]
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[SamplerPub]) -> PrimitiveResult[SamplerPubResult]:
        rng = np.random.default_rng(self._seed)
        return PrimitiveResult([self._run_pub(pub, rng) for pub in pubs], metadata={"version": 2})

    def _run_pub(self, pub: SamplerPub, rng: np.random.Generator) -> SamplerPubResult:
        circuit = pub.circuit
        bound = pub.parameter_values.bind_all(circuit)
        arrays = {
            creg.name: np.zeros(bound.shape + (pub.shots, (creg.size + 7) // 8), dtype=np.uint8)
            for creg in circuit.cregs
        }
        for index, bound_circuit in np.ndenumerate(bound):
            seed = int(rng.integers(0, 2**63 - 1))
            result = quantum.simulate(to_atom_circuit(bound_circuit), shots=pub.shots, seed=seed)
            per_reg = _split_counts(result.counts, circuit)
            for creg in circuit.cregs:
                bits = BitArray.from_counts(per_reg[creg.name], creg.size).array
                # Shots come grouped by outcome; shuffle so memory order looks like sampling order.
                arrays[creg.name][index] = bits[rng.permutation(len(bits))]
        meas = {creg.name: BitArray(arrays[creg.name], creg.size) for creg in circuit.cregs}
        return SamplerPubResult(
            DataBin(**meas, shape=pub.shape),
            metadata={"shots": pub.shots, "circuit_metadata": circuit.metadata},
        )


class AtomEstimatorV2(BaseEstimatorV2):
    """Estimator V2 on atom's simulator: exact expectation values (``precision=0``), or with
    Gaussian noise of standard deviation ``precision`` like ``StatevectorEstimator``."""

    def __init__(self, *, default_precision: float = 0.0, seed: int | None = None) -> None:
        self._default_precision = default_precision
        self._seed = seed

    @property
    def default_precision(self) -> float:
        return self._default_precision

    def run(self, pubs: Iterable[Any], *, precision: float | None = None) -> PrimitiveJob[PrimitiveResult[PubResult]]:
        p = self._default_precision if precision is None else precision
        coerced = [EstimatorPub.coerce(pub, p) for pub in pubs]
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[EstimatorPub]) -> PrimitiveResult[PubResult]:
        rng = np.random.default_rng(self._seed)
        return PrimitiveResult([self._run_pub(pub, rng) for pub in pubs], metadata={"version": 2})

    def _run_pub(self, pub: EstimatorPub, rng: np.random.Generator) -> PubResult:
        bound = pub.parameter_values.bind_all(pub.circuit)
        bc_circuits, bc_obs = np.broadcast_arrays(bound, pub.observables)
        evs = np.zeros_like(bc_circuits, dtype=np.float64)
        stds = np.zeros_like(bc_circuits, dtype=np.float64)
        states: dict[int, quantum.SimulationResult] = {}
        for index in np.ndindex(*bc_circuits.shape):
            circ = bc_circuits[index]
            key = id(circ)
            if key not in states:
                states[key] = quantum.simulate(to_atom_circuit(circ))
            obs = cast("Mapping[str, complex]", bc_obs[index])
            terms = [(float(np.real(coeff)), label) for label, coeff in obs.items()]
            value = states[key].expectation(terms)
            if pub.precision != 0:
                value = float(rng.normal(value, pub.precision))
            evs[index] = value
            stds[index] = pub.precision
        return PubResult(
            DataBin(evs=evs, stds=stds, shape=evs.shape),
            metadata={"target_precision": pub.precision, "circuit_metadata": pub.circuit.metadata},
        )


class _AtomJob(JobV1):
    def __init__(self, backend: BackendV2, job_id: str, result: Result) -> None:
        super().__init__(backend, job_id)
        self._result = result

    def submit(self) -> None:  # the work is done synchronously in run()
        return None

    def result(self, timeout: float | None = None) -> Result:
        return self._result

    def status(self) -> JobStatus:
        return JobStatus.DONE


class AtomBackend(BackendV2):
    """A ``BackendV2`` running circuits on atom's statevector simulator.

    Options: ``shots`` (1024), ``memory`` (False), ``seed_simulator`` (None).
    """

    def __init__(self) -> None:
        super().__init__(name="atom_simulator", description="atom-fabric statevector simulator", backend_version="0.1.0")
        target = Target(description="atom-fabric statevector simulator", num_qubits=None)
        for name, gate in get_standard_gate_name_mapping().items():
            if name in ("delay", "global_phase"):
                continue
            target.add_instruction(gate, properties=None, name=name)
        self._target = target

    @property
    def target(self) -> Target:
        return self._target

    @property
    def max_circuits(self) -> None:
        return None

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=1024, memory=False, seed_simulator=None)

    def run(self, run_input: QuantumCircuit | list[QuantumCircuit], **options: Any) -> _AtomJob:
        circuits = [run_input] if isinstance(run_input, QuantumCircuit) else list(run_input)
        opts = {**self.options.__dict__, **options}
        shots = int(opts.get("shots", 1024))
        rng = np.random.default_rng(opts.get("seed_simulator"))
        results = []
        job_id = str(uuid.uuid4())
        for circuit in circuits:
            start = time.perf_counter()
            seed = int(rng.integers(0, 2**63 - 1))
            res = quantum.simulate(to_atom_circuit(circuit), shots=shots, seed=seed)
            counts = {hex(int(k.replace(" ", ""), 2)): v for k, v in res.counts.items()} if circuit.num_clbits else {}
            data: dict[str, Any] = {"counts": counts}
            if opts.get("memory"):
                memory = [k for k, v in counts.items() for _ in range(v)]
                data["memory"] = [memory[i] for i in rng.permutation(len(memory))]
            results.append(
                {
                    "name": circuit.name,
                    "shots": shots,
                    "success": True,
                    "status": "DONE",
                    "seed_simulator": seed,
                    "data": data,
                    "header": {
                        "name": circuit.name,
                        "n_qubits": circuit.num_qubits,
                        "qreg_sizes": [[q.name, q.size] for q in circuit.qregs],
                        "creg_sizes": [[c.name, c.size] for c in circuit.cregs],
                        "clbit_labels": [[c.name, j] for c in circuit.cregs for j in range(c.size)],
                        "memory_slots": circuit.num_clbits,
                        "global_phase": float(circuit.global_phase),
                        "metadata": circuit.metadata or {},
                    },
                    "time_taken": time.perf_counter() - start,
                }
            )
        result = Result.from_dict(
            {
                "backend_name": self.name,
                "backend_version": self.backend_version,
                "job_id": job_id,
                "qobj_id": job_id,
                "success": True,
                "results": results,
            }
        )
        return _AtomJob(self, job_id, result)
