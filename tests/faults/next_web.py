"""``python -m tests.faults.next_web``: the real web app, as the next release (one minor of
the click record ahead) would run it; see ``tests/faults/record_versions.py``."""

from __future__ import annotations

import sys

from tests.faults.record_versions import run_web

if __name__ == "__main__":
    sys.exit(run_web())
