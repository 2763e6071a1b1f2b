"""The host fixture (see hosts.py). Files here are named as the documents name them
(`test_H.2_end2end.py`), so pytest runs them with `--import-mode=importlib`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from hosts import host  # noqa: E402,F401
