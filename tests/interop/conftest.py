"""Shared fixtures for the interop tests: they drive the real `atom` binary and
compare its output with independent implementations (Qiskit, dilithium-py,
model_signing, ...)."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def atom_bin() -> pathlib.Path:
    """Path of the `atom` binary (set ATOM_BIN, else target/debug/atom)."""
    path = pathlib.Path(os.environ.get("ATOM_BIN", ROOT / "target" / "debug" / "atom"))
    if not path.exists():
        raise RuntimeError(f"atom binary not found at {path}; run `cargo build -p atom-examples` first")
    return path


@pytest.fixture(scope="session")
def run_atom(atom_bin):
    """Run `atom ARGS...`; returns the CompletedProcess (never raises on exit code)."""

    def _run(*args: str, input: bytes | None = None, cwd: str | None = None, env: dict | None = None):
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        return subprocess.run(
            [str(atom_bin), *map(str, args)],
            input=input,
            capture_output=True,
            cwd=cwd,
            env=full_env,
            timeout=600,
        )

    return _run
