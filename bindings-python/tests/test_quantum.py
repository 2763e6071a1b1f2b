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


def test_instructions_and_gate_matrices_match_qiskit():
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Operator

    from atom_fabric.quantum import gate_matrix

    qasm = ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[2];\nu3(0.1,0.2,0.3) q[2];\n'
            'crx(0.5) q[1],q[0];\nccx q[0],q[1],q[2];\nbarrier q;\nmeasure q[2] -> c[0];\nreset q[1];\n'
            'if(c==1) x q[0];\n')
    ins = Circuit.from_qasm(qasm).instructions()
    assert ins == [
        ("u3", [2], [], [0.1, 0.2, 0.3], None),
        ("crx", [1, 0], [], [0.5], None),
        ("ccx", [0, 1, 2], [], [], None),
        ("barrier", [0, 1, 2], [], [], None),
        ("measure", [2], [0], [], None),
        ("reset", [1], [], [], None),
        ("x", [0], [], [], ([0, 1], 1)),
    ]
    # Every gate of a Qiskit-written circuit: our matrix equals Qiskit's operator for that gate.
    names = ["id", "x", "y", "z", "h", "s", "sdg", "t", "tdg", "sx", "sxdg", "rx", "ry", "rz", "p",
             "u1", "u2", "u3", "u", "cx", "cy", "cz", "ch", "swap", "crx", "cry", "crz", "cu1", "cp",
             "cu3", "cu", "csx", "rxx", "rzz", "ccx", "cswap", "rccx", "c3x", "c3sqrtx", "rc3x", "c4x"]
    rng = np.random.default_rng(3)
    for name in names:
        k, nq, np_ = _qelib_arity(name)
        params = [float(v) for v in rng.uniform(-3, 3, np_)]
        src = (f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{nq}];\n{name}'
               + (f"({','.join(map(repr, params))})" if params else "")
               + " " + ",".join(f"q[{i}]" for i in range(nq)) + ";\n")
        ((got_name, qubits, _, got_params, _),) = Circuit.from_qasm(src).instructions()
        assert (got_name, qubits) == (k, list(range(nq))), name
        ours = gate_matrix(got_name, got_params, nq)
        assert ours.dtype == np.complex128
        np.testing.assert_allclose(ours, Operator(QuantumCircuit.from_qasm_str(src)).data, atol=1e-12, err_msg=name)
    with pytest.raises(ValueError, match="unknown gate"):
        gate_matrix("nope", [])
    with pytest.raises(ValueError, match="takes 1 parameter"):
        gate_matrix("rx", [])
    with pytest.raises(ValueError, match="needs num_qubits"):
        gate_matrix("mcx", [])


def _qelib_arity(name: str) -> tuple[str, int, int]:
    """(name as we report it, qubits, parameters) of a qelib1 gate."""
    table = {"id": (1, 0), "x": (1, 0), "y": (1, 0), "z": (1, 0), "h": (1, 0), "s": (1, 0), "sdg": (1, 0),
             "t": (1, 0), "tdg": (1, 0), "sx": (1, 0), "sxdg": (1, 0), "rx": (1, 1), "ry": (1, 1),
             "rz": (1, 1), "p": (1, 1), "u1": (1, 1), "u2": (1, 2), "u3": (1, 3), "u": (1, 3),
             "cx": (2, 0), "cy": (2, 0), "cz": (2, 0), "ch": (2, 0), "swap": (2, 0), "crx": (2, 1),
             "cry": (2, 1), "crz": (2, 1), "cu1": (2, 1), "cp": (2, 1), "cu3": (2, 3), "cu": (2, 4),
             "csx": (2, 0), "rxx": (2, 1), "rzz": (2, 1), "ccx": (3, 0), "cswap": (3, 0),
             "rccx": (3, 0), "c3x": (4, 0), "c3sqrtx": (4, 0), "rc3x": (4, 0), "c4x": (5, 0)}
    nq, np_ = table[name]
    return name, nq, np_
