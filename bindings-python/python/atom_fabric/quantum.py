"""Circuits, OpenQASM 2 and the statevector simulator.

Bit order is Qiskit's: qubit 0 is the least significant bit of a statevector index, and count
keys put clbit 0 rightmost.

>>> from atom_fabric.quantum import Circuit, simulate
>>> ghz = Circuit(3).h(0).cx(0, 1).cx(1, 2).measure_all()
>>> result = simulate(ghz, shots=1000, seed=7)
>>> sorted(result.counts)
['000', '111']
>>> round(result.expectation({"ZZI": 1.0}), 12)
1.0
>>> result.statevector.dtype
dtype('complex128')
"""

from atom_fabric._native import Circuit, SimulationResult, gate_matrix, simulate

__all__ = ["Circuit", "SimulationResult", "gate_matrix", "simulate"]
