"""Exceptions raised by atom-fabric. Every one derives from :class:`AtomError`.

>>> from atom_fabric import errors, quantum
>>> try:
...     quantum.Circuit.from_qasm("OPENQASM 2.0; qreg q[1]; foo q[0];")
... except errors.QasmError as e:
...     print(isinstance(e, errors.AtomError), "1:" in str(e))
True True
"""

from atom_fabric._native import (
    AtomError,
    AuditError,
    ConfigError,
    FabricError,
    HybridError,
    KeyFormatError,
    ManifestError,
    MemoryLimitError,
    QasmError,
    QuantumError,
    VerificationError,
)

__all__ = [
    "AtomError",
    "AuditError",
    "ConfigError",
    "FabricError",
    "HybridError",
    "KeyFormatError",
    "ManifestError",
    "MemoryLimitError",
    "QasmError",
    "QuantumError",
    "VerificationError",
]
