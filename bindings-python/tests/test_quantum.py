"""atom_fabric.quantum: results against analytic states, numpy dtypes without copies, errors, GIL."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from atom_fabric import errors
from atom_fabric.quantum import Circuit, SimulationResult, simulate


def test_bell_state_and_counts():
    r = simulate(Circuit(2, 2).h(0).cx(0, 1).measure(0, 0).measure(1, 1), shots=2000, seed=11)
    sv = r.statevector
    np.testing.assert_allclose(sv, [1 / math.sqrt(2), 0, 0, 1 / math.sqrt(2)], atol=1e-12)
    assert set(r.counts) == {"00", "11"} and sum(r.counts.values()) == 2000
    assert abs(r.counts["00"] - 1000) < 150
    # Same seed, same counts.
    again = simulate(Circuit(2, 2).h(0).cx(0, 1).measure(0, 0).measure(1, 1), shots=2000, seed=11)
    assert again.counts == r.counts


def test_qubit_order_is_qiskits():
    # X on qubit 0 of 3: basis state index 1 (qubit 0 = least significant bit).
    p = simulate(Circuit(3).x(0)).probabilities()
    assert p.dtype == np.float64 and p[1] == pytest.approx(1.0)
    r = simulate(Circuit(2, 2).x(0).measure(0, 0).measure(1, 1), shots=10, seed=1)
    assert r.counts == {"01": 10}


def test_statevector_is_a_zero_copy_view_owned_by_the_result():
    r = simulate(Circuit(4).h(0).h(3))
    sv = r.statevector
    assert sv.dtype == np.complex128
    assert isinstance(sv.base, SimulationResult)
    assert not sv.flags.writeable and not sv.flags.owndata
    # Two views share one buffer.
    assert np.shares_memory(sv, r.statevector)
    single = simulate(Circuit(3).h(1), precision="single").statevector
    assert single.dtype == np.complex64
    np.testing.assert_allclose(np.abs(single) ** 2, [0.5, 0, 0.5, 0, 0, 0, 0, 0], atol=1e-6)


def test_expectation_values():
    r = simulate(Circuit(2).h(0).cx(0, 1))
    assert r.expectation({"ZZ": 1.0}) == pytest.approx(1.0, abs=1e-12)
    assert r.expectation([(0.5, "XX"), (2.0, "ZI")]) == pytest.approx(0.5, abs=1e-12)
    theta = 0.7
    ry = simulate(Circuit(1).ry(theta, 0))
    assert ry.expectation({"Z": 1.0}) == pytest.approx(math.cos(theta), abs=1e-12)
    with pytest.raises(errors.QuantumError):
        r.expectation({"ZZZ": 1.0})


def test_qasm_round_trip_and_errors():
    src = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
    c = Circuit.from_qasm(src)
    assert (c.num_qubits, c.num_clbits) == (2, 2)
    again = Circuit.from_qasm(c.to_qasm())
    np.testing.assert_allclose(simulate(again).probabilities(), simulate(c).probabilities())
    with pytest.raises(errors.QasmError, match=r"\d+:\d+"):
        Circuit.from_qasm("OPENQASM 2.0;\nqreg q[1];\nfoo q[0];\n")
    with pytest.raises(ValueError):
        simulate(c, precision="quad")


def test_memory_limit_is_a_clear_error():
    with pytest.raises(errors.MemoryLimitError, match="bytes"):
        simulate(Circuit(40).h(0))


def _layered(n: int, layers: int) -> Circuit:
    circuit = Circuit(n)
    for layer in range(layers):
        for q in range(n):
            circuit.ry(0.1 * (q + layer), q)
        for q in range(n - 1):
            circuit.cx(q, q + 1)
    return circuit


def test_simulation_releases_the_gil():
    # While one thread simulates, another must keep running Python code. (Timing two concurrent
    # simulations against serial ones says nothing here: each run already uses every core.)
    # The circuit grows until one simulation takes long enough to tell (debug or release build).
    n = 16
    while True:
        circuit = _layered(n, 8)
        t0 = time.perf_counter()
        simulate(circuit)
        if time.perf_counter() - t0 > 0.05 or n >= 24:
            break
        n += 2
    done = threading.Event()
    elapsed = []

    def run():
        t0 = time.perf_counter()
        simulate(circuit)
        elapsed.append(time.perf_counter() - t0)
        done.set()

    ticks = 0
    worker = threading.Thread(target=run)
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    # A simulation holding the GIL would leave this thread at most a tick or two.
    assert elapsed[0] > 0.02, "simulation too short to tell"
    assert ticks >= 10, (ticks, elapsed)
