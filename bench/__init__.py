"""The benchmark: ``make bench`` runs ``bench/run.py`` (see docs/performance.md).

Its modules reuse ``scripts/devstack/`` to start throwaway Redis and Postgres servers; the
folder holding it is put on the import path here, once, for all of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_SCRIPTS = str(PROJECT_ROOT / "scripts")
if _SCRIPTS not in sys.path:
    sys.path.append(_SCRIPTS)
