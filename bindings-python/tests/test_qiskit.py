"""Qiskit conformance: AtomSamplerV2 / AtomEstimatorV2 against StatevectorSampler /
StatevectorEstimator on random circuits, AtomBackend under transpile and BackendSamplerV2."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter
from qiskit.circuit.random import random_circuit
from qiskit.primitives import BackendSamplerV2, StatevectorEstimator, StatevectorSampler
from qiskit.quantum_info import SparsePauliOp, Statevector

from atom_fabric.qiskit import AtomBackend, AtomEstimatorV2, AtomSamplerV2

SHOTS = 4000


def _tvd(a: dict, b: dict, shots: int) -> float:
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.get(k, 0) - b.get(k, 0)) for k in keys) / shots


def _random_observable(n: int, rng: np.random.Generator) -> SparsePauliOp:
    labels = ["".join(rng.choice(list("IXYZ"), size=n)) for _ in range(3)]
    return SparsePauliOp(labels, coeffs=rng.normal(size=3))


@pytest.mark.parametrize("seed", range(12))
def test_estimator_matches_statevector_estimator(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 11))
    qc = random_circuit(n, depth=6, max_operands=3, seed=seed)
    obs = _random_observable(n, rng)
    ours = AtomEstimatorV2().run([(qc, obs)]).result()[0].data.evs
    ref = StatevectorEstimator().run([(qc, obs)]).result()[0].data.evs
    assert abs(float(ours) - float(ref)) < 1e-10, (n, qc)


@pytest.mark.parametrize("seed", range(8))
def test_sampler_matches_statevector_sampler(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 9))
    qc = random_circuit(n, depth=5, max_operands=2, seed=100 + seed, measure=True)
    ours = AtomSamplerV2(seed=seed).run([qc], shots=SHOTS).result()[0].data.c.get_counts()
    exact = Statevector(qc.remove_final_measurements(inplace=False)).probabilities_dict()
    exact_counts = {k: v * SHOTS for k, v in exact.items()}
    # Sampling error of 4000 shots: the TVD to the exact distribution stays well below 0.1.
    assert _tvd(ours, exact_counts, SHOTS) < 0.1
    ref = StatevectorSampler(seed=seed).run([qc], shots=SHOTS).result()[0].data.c.get_counts()
    assert _tvd(ours, ref, SHOTS) < 0.12
    assert sum(ours.values()) == SHOTS


def test_parameters_bind_like_qiskit():
    theta, phi = Parameter("θ"), Parameter("φ")
    qc = QuantumCircuit(2)
    qc.ry(theta, 0)
    qc.cx(0, 1)
    qc.rz(phi, 1)
    qc.rx(theta, 1)
    values = np.array([[0.1, 0.2], [1.3, -0.7], [2.9, 3.1]])
    obs = [SparsePauliOp("ZZ"), SparsePauliOp("XI"), SparsePauliOp("IY")]
    ours = AtomEstimatorV2().run([(qc, [[o] for o in obs], values)]).result()[0].data.evs
    ref = StatevectorEstimator().run([(qc, [[o] for o in obs], values)]).result()[0].data.evs
    assert ours.shape == ref.shape == (3, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    qc.measure_all()
    res = AtomSamplerV2(seed=1).run([(qc, values)], shots=500).result()[0]
    assert res.data.meas.array.shape == (3, 500, 1)


def test_backend_runs_transpiled_circuits_and_backend_sampler():
    backend = AtomBackend()
    qc = QuantumCircuit(3, 3)
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.measure([0, 1, 2], [0, 1, 2])
    tqc = transpile(qc, backend, seed_transpiler=1)
    result = backend.run(tqc, shots=2000, seed_simulator=3, memory=True).result()
    counts = result.get_counts()
    assert set(counts) == {"000", "111"} and sum(counts.values()) == 2000
    assert abs(counts["000"] - 1000) < 150
    assert len(result.get_memory()) == 2000
    # Same seed, same counts.
    assert backend.run(tqc, shots=2000, seed_simulator=3).result().get_counts() == counts
    # Qiskit's BackendSamplerV2 drives the backend.
    sampler = BackendSamplerV2(backend=backend, options={"seed_simulator": 5})
    c = sampler.run([tqc], shots=1000).result()[0].data.c.get_counts()
    assert set(c) == {"000", "111"}


def test_two_registers_keep_qiskit_order():
    qc = QuantumCircuit(3)
    from qiskit import ClassicalRegister

    a, b = ClassicalRegister(1, "a"), ClassicalRegister(2, "b")
    qc.add_register(a)
    qc.add_register(b)
    qc.x(0)
    qc.x(2)
    qc.measure(0, a[0])
    qc.measure([1, 2], [b[0], b[1]])
    counts = AtomBackend().run(qc, shots=10).result().get_counts()
    assert counts == {"10 1": 10}
    data = AtomSamplerV2().run([qc], shots=10).result()[0].data
    assert data.a.get_counts() == {"1": 10} and data.b.get_counts() == {"10": 10}
