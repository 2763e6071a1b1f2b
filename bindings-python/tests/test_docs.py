"""The examples in the package docstrings run (doctest)."""

import doctest

import pytest

import atom_fabric
import atom_fabric.errors
import atom_fabric.fabric
import atom_fabric.policy
import atom_fabric.policy.merkle
import atom_fabric.qiskit
import atom_fabric.quantum


@pytest.mark.parametrize(
    "module",
    [atom_fabric, atom_fabric.errors, atom_fabric.fabric, atom_fabric.policy, atom_fabric.policy.merkle, atom_fabric.quantum, atom_fabric.qiskit],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module.__name__} has no examples"
    assert result.failed == 0
