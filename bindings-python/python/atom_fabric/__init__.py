"""atom-fabric: place and run neural and quantum inference work, signed with post-quantum
cryptography and proven in a verifiable audit log.

Submodules: :mod:`atom_fabric.fabric` (the embedded scheduler), :mod:`atom_fabric.hybrid` (hybrid
jobs: coordinator, signed manifests, the worked VQC), :mod:`atom_fabric.policy` (keys, signatures, manifests, the auditor's Merkle
functions, the audit log), :mod:`atom_fabric.quantum` (circuits and the statevector simulator),
:mod:`atom_fabric.errors` (the exception hierarchy) and, with the ``qiskit`` extra,
:mod:`atom_fabric.qiskit` (a Qiskit ``BackendV2`` and Primitives V2).

>>> from atom_fabric import quantum
>>> bell = quantum.Circuit(2, 2).h(0).cx(0, 1)
>>> result = quantum.simulate(bell)
>>> result.probabilities().round(3).tolist()
[0.5, 0.0, 0.0, 0.5]
"""

from atom_fabric import errors, fabric, hybrid, policy, quantum
from atom_fabric._native import __version__

__all__ = ["errors", "fabric", "hybrid", "policy", "quantum", "__version__"]
