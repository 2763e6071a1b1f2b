"""atom-quantum against Qiskit: random Qiskit circuits dumped with qiskit.qasm2.dumps, simulated by
`atom qasm run`, compared with qiskit.quantum_info.Statevector; sampled counts against exact
probabilities; our exporter read back by qiskit.qasm2.loads (Operators compared)."""

from __future__ import annotations

import json

import numpy as np
import pytest

qiskit = pytest.importorskip("qiskit")
from qiskit import QuantumCircuit, qasm2  # noqa: E402
from qiskit.circuit import library as lib  # noqa: E402
from qiskit.quantum_info import Operator, Statevector  # noqa: E402

LOAD = dict(custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)

# (builder, number of qubits, number of parameters)
GATES = [
    (lambda p: lib.IGate(), 1, 0), (lambda p: lib.XGate(), 1, 0), (lambda p: lib.YGate(), 1, 0),
    (lambda p: lib.ZGate(), 1, 0), (lambda p: lib.HGate(), 1, 0), (lambda p: lib.SGate(), 1, 0),
    (lambda p: lib.SdgGate(), 1, 0), (lambda p: lib.TGate(), 1, 0), (lambda p: lib.TdgGate(), 1, 0),
    (lambda p: lib.SXGate(), 1, 0), (lambda p: lib.SXdgGate(), 1, 0), (lambda p: lib.RXGate(*p), 1, 1),
    (lambda p: lib.RYGate(*p), 1, 1), (lambda p: lib.RZGate(*p), 1, 1), (lambda p: lib.PhaseGate(*p), 1, 1),
    (lambda p: lib.U1Gate(*p), 1, 1), (lambda p: lib.U2Gate(*p), 1, 2), (lambda p: lib.U3Gate(*p), 1, 3),
    (lambda p: lib.UGate(*p), 1, 3), (lambda p: lib.RGate(*p), 1, 2),
    (lambda p: lib.CXGate(), 2, 0), (lambda p: lib.CYGate(), 2, 0), (lambda p: lib.CZGate(), 2, 0),
    (lambda p: lib.CHGate(), 2, 0), (lambda p: lib.SwapGate(), 2, 0), (lambda p: lib.CRXGate(*p), 2, 1),
    (lambda p: lib.CRYGate(*p), 2, 1), (lambda p: lib.CRZGate(*p), 2, 1), (lambda p: lib.CU1Gate(*p), 2, 1),
    (lambda p: lib.CPhaseGate(*p), 2, 1), (lambda p: lib.CU3Gate(*p), 2, 3), (lambda p: lib.CUGate(*p), 2, 4),
    (lambda p: lib.CSXGate(), 2, 0), (lambda p: lib.CSGate(), 2, 0), (lambda p: lib.CSdgGate(), 2, 0),
    (lambda p: lib.RXXGate(*p), 2, 1), (lambda p: lib.RYYGate(*p), 2, 1), (lambda p: lib.RZZGate(*p), 2, 1),
    (lambda p: lib.RZXGate(*p), 2, 1), (lambda p: lib.ECRGate(), 2, 0), (lambda p: lib.iSwapGate(), 2, 0),
    (lambda p: lib.DCXGate(), 2, 0), (lambda p: lib.XXMinusYYGate(*p), 2, 2),
    (lambda p: lib.XXPlusYYGate(*p), 2, 2), (lambda p: lib.CCXGate(), 3, 0), (lambda p: lib.CSwapGate(), 3, 0),
    (lambda p: lib.CCZGate(), 3, 0), (lambda p: lib.RCCXGate(), 3, 0), (lambda p: lib.C3XGate(), 4, 0),
    (lambda p: lib.C3SXGate(), 4, 0), (lambda p: lib.RC3XGate(), 4, 0), (lambda p: lib.C4XGate(), 5, 0),
    (lambda p: lib.MCXGate(5), 6, 0),
]


def random_circuit(rng, n, depth, measure=True, barriers=True):
    qc = QuantumCircuit(n, n)
    usable = [g for g in GATES if g[1] <= n]
    for layer in range(depth):
        build, k, np_ = usable[rng.integers(len(usable))]
        qs = [int(q) for q in rng.permutation(n)[:k]]
        qc.append(build([float(x) for x in rng.uniform(-np.pi, np.pi, np_)]), qs)
        if barriers and layer % 7 == 6:
            qc.barrier()
    if measure:
        qc.measure(range(n), range(n))
    return qc


def run_sv(run_atom, tmp_path, src, *extra):
    path = tmp_path / "c.qasm"
    path.write_text(src)
    res = run_atom("qasm", "run", path, "--statevector", "--format", "json", *extra)
    assert res.returncode == 0, res.stderr.decode()
    out = json.loads(res.stdout)
    assert set(out) >= {"statevector", "seconds"}
    return np.array([complex(a, b) for a, b in out["statevector"]])


def reference(qc):
    return Statevector(qc.remove_final_measurements(inplace=False)).data


@pytest.mark.parametrize("seed", range(24))
def test_random_circuits_match_qiskit(run_atom, tmp_path, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 13))
    qc = random_circuit(rng, n, depth=int(rng.integers(5, 60)))
    src = qasm2.dumps(qc)
    ref = reference(qc)
    # Qiskit's own reading of the same text (what OpenQASM 2 means, global phase included).
    ref_text = reference(qasm2.loads(src, **LOAD))
    got = run_sv(run_atom, tmp_path, src)
    assert np.max(np.abs(got - ref_text)) < 1e-10
    # Against the original circuit up to the global phase OpenQASM 2 cannot carry.
    phase = np.vdot(ref, got)
    assert abs(abs(phase) - 1) < 1e-10
    assert np.max(np.abs(got - ref * phase / abs(phase))) < 1e-10
    single = run_sv(run_atom, tmp_path, src, "--precision", "single")
    single = single / np.linalg.norm(single)
    assert np.max(np.abs(single - ref_text)) < 1e-5


def test_every_gate_alone_matches_qiskit_exactly(run_atom, tmp_path):
    # Library gates Qiskit writes by name carry their exact matrices (global phase included).
    rng = np.random.default_rng(7)
    for build, k, np_ in GATES:
        n = k + 1
        qc = QuantumCircuit(n)
        for q in range(n):
            qc.u(*rng.uniform(-3, 3, 3), q)
        for q in range(n - 1):
            qc.cx(q, q + 1)
        gate = build([float(x) for x in rng.uniform(-3, 3, np_)])
        qc.append(gate, [int(q) for q in rng.permutation(n)[:k]])
        src = qasm2.dumps(qc)
        got = run_sv(run_atom, tmp_path, src)
        assert np.max(np.abs(got - Statevector(qasm2.loads(src, **LOAD)).data)) < 1e-10, gate.name
        ref = Statevector(qc).data
        phase = np.vdot(ref, got)
        assert np.max(np.abs(got - ref * phase / abs(phase))) < 1e-10, gate.name


def test_sampled_counts_match_probabilities(run_atom, tmp_path):
    rng = np.random.default_rng(11)
    n = 5
    qc = random_circuit(rng, n, depth=40, barriers=False)
    probs = np.abs(reference(qc)) ** 2
    path = tmp_path / "s.qasm"
    path.write_text(qasm2.dumps(qc))
    shots = 20000
    res = run_atom("qasm", "run", path, "--shots", shots, "--seed", 3, "--format", "json")
    assert res.returncode == 0, res.stderr.decode()
    out = json.loads(res.stdout)
    assert out["shots"] == shots and sum(out["counts"].values()) == shots
    emp = np.zeros(2**n)
    for key, v in out["counts"].items():
        emp[int(key, 2)] = v / shots  # clbit i = qubit i, clbit 0 rightmost
    # Total variation distance: E[TVD] <= sqrt(2^n / shots) / 2 ≈ 0.02 here.
    assert 0.5 * np.abs(emp - probs).sum() < 0.04
    again = run_atom("qasm", "run", path, "--shots", shots, "--seed", 3, "--format", "json")
    assert json.loads(again.stdout)["counts"] == out["counts"]


def test_counts_key_format_matches_qiskit(run_atom, tmp_path):
    from qiskit.circuit import ClassicalRegister, QuantumRegister

    q = QuantumRegister(3, "q")
    a, b = ClassicalRegister(2, "a"), ClassicalRegister(1, "b")
    qc = QuantumCircuit(q, a, b)
    qc.x(0)
    qc.x(2)
    qc.measure(0, a[0])
    qc.measure(1, a[1])
    qc.measure(2, b[0])
    path = tmp_path / "k.qasm"
    path.write_text(qasm2.dumps(qc))
    res = run_atom("qasm", "run", path, "--shots", 10, "--format", "json")
    assert json.loads(res.stdout)["counts"] == {"1 01": 10}


def test_exporter_output_is_read_by_qiskit(run_atom, tmp_path):
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        n = int(rng.integers(2, 8))
        qc = random_circuit(rng, n, depth=30, measure=False, barriers=False)
        path = tmp_path / "e.qasm"
        path.write_text(qasm2.dumps(qc))
        res = run_atom("qasm", "export", path)
        assert res.returncode == 0, res.stderr.decode()
        back = qasm2.loads(res.stdout.decode(), **LOAD)
        assert Operator(back).equiv(Operator(qc))
        assert np.max(np.abs(Operator(back).data - Operator(qasm2.loads(qasm2.dumps(qc), **LOAD)).data)) < 1e-10


def test_probabilities_field_and_invalid_qasm(run_atom, tmp_path):
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    path = tmp_path / "g.qasm"
    path.write_text(qasm2.dumps(qc))
    res = run_atom("qasm", "run", path, "--probabilities", "--format", "json")
    out = json.loads(res.stdout)
    assert set(out) == {"probabilities", "seconds"}
    assert np.allclose(out["probabilities"], [0.5, 0, 0, 0, 0, 0, 0, 0.5], atol=1e-12)
    bad = tmp_path / "bad.qasm"
    bad.write_text('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncx q[0] q[1];\n')
    res = run_atom("qasm", "run", bad, "--format", "json")
    assert res.returncode != 0
    assert "4:9" in res.stderr.decode()
