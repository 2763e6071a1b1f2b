"""docs/tutorial.py runs from start to end (each of its cells asserts what it shows), and
docs/architecture.md links only to files that exist."""

from __future__ import annotations

import re
import runpy
import tempfile
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.py"


def test_tutorial_runs(tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "cwd"
    scratch = tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    runpy.run_path(str(TUTORIAL), run_name="__main__")
    out = capsys.readouterr().out
    assert "entry 7 is in the log" in out
    assert "state completed" in out
    assert "signed job: completed manifest verified: True" in out
    # Nothing is written to the working directory, and the temporary directory is removed.
    assert not list(cwd.iterdir())
    assert not list(scratch.iterdir())


def test_architecture_links_resolve():
    """Every relative link in docs/architecture.md points at a file or directory that exists."""
    doc = TUTORIAL.parent / "architecture.md"
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text())
    assert len(targets) > 20
    missing = [t for t in targets if not (doc.parent / t).exists()]
    assert not missing, missing
