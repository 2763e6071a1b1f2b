"""Side-by-side statevector timings: atom (CLI, double and single) against Qiskit Aer, qulacs,
qsim (qsimcirq) and PRISM-Q on the same circuits (QFT, GHZ, random u3+cx depth 20, quantum
volume), printing seconds and the ratio of atom to the fastest double-precision peer.

Run from the repository root with the bench venv (see benches/quantum/README.md):
    .venv-bench/bin/python benches/quantum/side_by_side.py --n 16 20 22 24
Circuit construction, transpilation and conversion are excluded from every timing; each figure
is the median of --reps runs of the simulation call alone (atom: the `seconds` it reports).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("RAYON_NUM_THREADS", "2")

import numpy as np  # noqa: E402
from qiskit import QuantumCircuit, qasm2, transpile  # noqa: E402
from qiskit.circuit.library import quantum_volume as qv_circuit  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
ATOM = pathlib.Path(os.environ.get("ATOM_BIN", ROOT / "target" / "release" / "atom"))


def qft(n):
    qc = QuantumCircuit(n)
    for j in reversed(range(n)):
        qc.h(j)
        for k in reversed(range(j)):
            qc.cp(np.pi / 2 ** (j - k), k, j)
    for q in range(n // 2):
        qc.swap(q, n - 1 - q)
    return qc


def ghz(n):
    qc = QuantumCircuit(n)
    qc.h(0)
    for q in range(1, n):
        qc.cx(q - 1, q)
    return qc


def random_layers(n, depth=20, seed=1):
    rng = np.random.default_rng(seed)
    qc = QuantumCircuit(n)
    for _ in range(depth):
        for q in range(n):
            qc.u(*rng.uniform(-np.pi, np.pi, 3), q)
        perm = rng.permutation(n)
        for a, b in zip(perm[::2], perm[1::2]):
            qc.cx(int(a), int(b))
    return qc


def quantum_volume(n, depth=None, seed=7):
    qv = qv_circuit(n, depth or n, seed=seed)
    return transpile(qv, basis_gates=["u", "cx"], optimization_level=0)


CIRCUITS = {"qft": qft, "ghz": ghz, "random_u3_cx_d20": random_layers, "quantum_volume": quantum_volume}


def gate_list(qc):
    out = []
    for inst in qc.data:
        qs = [qc.find_bit(q).index for q in inst.qubits]
        out.append((inst.operation.name, qs, [float(p) for p in inst.operation.params], inst.operation))
    return out


def timed(fn, reps):
    ts = []
    for _ in range(reps):
        t = fn()
        ts.append(t)
    return statistics.median(ts)


def atom_package():
    """The atom_fabric package, when it is installed in this interpreter (in-process timing)."""
    if os.environ.get("ATOM_VIA", "package") == "cli":
        return None
    try:
        from atom_fabric import quantum
    except ImportError:
        return None
    return quantum


def run_atom(qc, precision, reps):
    pkg = atom_package()
    if pkg is not None:
        # In-process through the Python package, like the peers: parsing is outside the timing,
        # the GIL is released during the simulation, the statevector comes back as a numpy view.
        circuit = pkg.Circuit.from_qasm(qasm2.dumps(qc))

        def once_pkg():
            t = time.perf_counter()
            pkg.simulate(circuit, precision=precision).statevector
            return time.perf_counter() - t

        return timed(once_pkg, reps)
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "c.qasm"
        path.write_text(qasm2.dumps(qc))

        def once():
            r = subprocess.run([str(ATOM), "qasm", "run", str(path), "--precision", precision, "--format", "json"],
                               capture_output=True, check=True)
            return json.loads(r.stdout)["seconds"]

        return timed(once, reps)


def run_aer(qc, reps):
    from qiskit_aer import AerSimulator

    sim = AerSimulator(method="statevector", max_parallel_threads=2, fusion_enable=True, precision="double")
    c = qc.copy()
    c.save_statevector()

    def once():
        t = time.perf_counter()
        sim.run(c, shots=1).result()
        return time.perf_counter() - t

    return timed(once, reps)


def qulacs_circuit(qc, fuse):
    import qulacs
    from qulacs import gate as qg

    circ = qulacs.QuantumCircuit(qc.num_qubits)
    for name, qs, ps, op in gate_list(qc):
        if name == "h":
            circ.add_H_gate(qs[0])
        elif name == "cx":
            circ.add_CNOT_gate(qs[0], qs[1])
        elif name == "swap":
            circ.add_SWAP_gate(qs[0], qs[1])
        elif name in ("u", "u3"):
            circ.add_U3_gate(qs[0], *ps)
        elif name == "cp":
            g = qg.to_matrix_gate(qg.U1(qs[1], ps[0]))
            g.add_control_qubit(qs[0], 1)
            circ.add_gate(g)
        else:
            raise ValueError(name)
    if fuse:
        from qulacs.circuit import QuantumCircuitOptimizer

        QuantumCircuitOptimizer().optimize(circ, 2)
    return circ


def run_qulacs(qc, reps, fuse):
    import qulacs

    circ = qulacs_circuit(qc, fuse)

    def once():
        # The state is made inside the timing, as every other simulator here (and atom) allocates
        # and zeroes its own state in the timed call: reusing one warm buffer would leave out
        # the page faults that dominate short circuits such as GHZ.
        t = time.perf_counter()
        state = qulacs.QuantumState(qc.num_qubits)
        circ.update_quantum_state(state)
        return time.perf_counter() - t

    return timed(once, reps)


def cirq_circuit(qc):
    import cirq
    from qiskit.quantum_info import Operator

    qs_ = cirq.LineQubit.range(qc.num_qubits)
    ops = []
    for name, qs, ps, op in gate_list(qc):
        q = [qs_[i] for i in qs]
        if name == "h":
            ops.append(cirq.H(q[0]))
        elif name == "cx":
            ops.append(cirq.CNOT(q[0], q[1]))
        elif name == "swap":
            ops.append(cirq.SWAP(q[0], q[1]))
        elif name == "cp":
            ops.append(cirq.CZPowGate(exponent=ps[0] / np.pi).on(q[0], q[1]))
        elif name in ("u", "u3"):
            ops.append(cirq.MatrixGate(Operator(op).data).on(q[0]))
        else:
            raise ValueError(name)
    return cirq.Circuit(ops), qs_


def run_qsim(qc, reps, fuse):
    import qsimcirq

    circ, qs_ = cirq_circuit(qc)
    sim = qsimcirq.QSimSimulator(qsim_options=qsimcirq.QSimOptions(cpu_threads=2, max_fused_gate_size=fuse))

    def once():
        t = time.perf_counter()
        sim.simulate(circ, qubit_order=list(reversed(qs_)))
        return time.perf_counter() - t

    return timed(once, reps)


def run_prism(qc, reps):
    import prism_q

    c = prism_q.parse_qasm(qasm2.dumps(qc))

    def once():
        t = time.perf_counter()
        prism_q.simulate(c).backend(prism_q.BackendKind.statevector()).state_vector()
        return time.perf_counter() - t

    return timed(once, reps)


PEERS = {
    "aer": lambda qc, r: run_aer(qc, r),
    "qulacs": lambda qc, r: run_qulacs(qc, r, False),
    "qulacs_fused": lambda qc, r: run_qulacs(qc, r, True),
    "qsim_f2": lambda qc, r: run_qsim(qc, r, 2),
    "qsim_f4": lambda qc, r: run_qsim(qc, r, 4),
    "prism_q": lambda qc, r: run_prism(qc, r),
}
DOUBLE_PEERS = ["aer", "qulacs", "qulacs_fused", "prism_q"]
SINGLE_PEERS = ["qsim_f2", "qsim_f4"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[16, 20, 22, 24])
    ap.add_argument("--circuits", nargs="+", default=list(CIRCUITS))
    ap.add_argument("--peers", nargs="+", default=list(PEERS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    via = "atom_fabric package, in-process" if atom_package() is not None else f"CLI {ATOM}"
    print(f"atom via: {via}")
    rows = []
    print(f"{'circuit':18} {'n':>3} " + " ".join(f"{p:>12}" for p in ["atom_f64", "atom_f32", *args.peers])
          + f" {'f64/best64':>10} {'f32/qsim':>9} {'floor_s':>8}")
    for name in args.circuits:
        for n in args.n:
            qc = CIRCUITS[name](n)
            reps = args.reps if n <= 22 else max(1, args.reps - 2)
            row = {"circuit": name, "n": n, "gates": len(qc.data), "atom_via": via}
            row["atom_f64"] = run_atom(qc, "double", reps)
            row["atom_f32"] = run_atom(qc, "single", reps)
            for p in args.peers:
                try:
                    row[p] = PEERS[p](qc, reps)
                except Exception as e:  # a peer that fails is reported, not fatal
                    row[p] = None
                    row[p + "_error"] = f"{type(e).__name__}: {e}"[:200]
            best64 = min([row[p] for p in DOUBLE_PEERS if row.get(p)] or [float("nan")])
            best32 = min([row[p] for p in SINGLE_PEERS if row.get(p)] or [float("nan")])
            # One read + write of the complex128 state at ~57 GB/s.
            row["floor_s"] = 2 * 16 * 2**n / 57e9
            row["ratio_f64"] = row["atom_f64"] / best64
            row["ratio_f32"] = row["atom_f32"] / best32
            rows.append(row)
            fmt = lambda v: f"{v:12.4f}" if isinstance(v, float) else f"{'fail':>12}"
            print(f"{name:18} {n:3d} " + " ".join(fmt(row.get(p)) for p in ["atom_f64", "atom_f32", *args.peers])
                  + f" {row['ratio_f64']:10.2f} {row['ratio_f32']:9.2f} {row['floor_s']:8.4f}", flush=True)
            for p in args.peers:
                if row.get(p + "_error"):
                    print(f"    {p}: {row[p + '_error']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
