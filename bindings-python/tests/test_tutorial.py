"""docs/tutorial.py runs from start to end (each of its cells asserts what it shows)."""

from __future__ import annotations

import runpy
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.py"


def test_tutorial_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(TUTORIAL), run_name="__main__")
    out = capsys.readouterr().out
    assert "entry 7 is in the log" in out
    assert "state completed" in out
