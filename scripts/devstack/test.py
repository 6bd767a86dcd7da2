"""``devstack test``: ruff check, ruff format --check, mypy, pytest [-- PYTEST_ARGS]."""

from __future__ import annotations

from devstack.base import PYTHON, log
from devstack.browser import ensure_chromium
from devstack.discovery import DevStack
from devstack.steps import env_for_tests, run_step


def cmd_test(extra: list[str]) -> int:
    """Run the checks one after the other, on the found servers; stop at the first failure."""
    ensure_chromium()
    steps = [
        ("ruff check", [PYTHON, "-m", "ruff", "check", "."]),
        ("ruff format --check", [PYTHON, "-m", "ruff", "format", "--check", "."]),
        ("mypy", [PYTHON, "-m", "mypy"]),
        ("pytest", [PYTHON, "-m", "pytest", *extra]),
    ]
    timings = []
    with DevStack() as stack:
        env = env_for_tests(*stack.up())
        for name, command in steps:
            code, seconds = run_step(name, command, env)
            timings.append(f"{name} {seconds:.1f}s")
            if code != 0:
                return code
    log("all passed: " + ", ".join(timings))
    return 0
