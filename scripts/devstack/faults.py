"""``devstack faults``: the fault-injection suite, tests/faults [-- PYTEST_ARGS]."""

from __future__ import annotations

from devstack.base import PROJECT_ROOT, PYTHON
from devstack.discovery import DevStack
from devstack.steps import env_for_tests, not_available, run_step


def cmd_faults(extra: list[str]) -> int:
    """Run tests/faults with pytest, every scenario at full length unless CLICKTRACK_FAULTS
    says otherwise."""
    suite = PROJECT_ROOT / "tests" / "faults"
    if not suite.is_dir():
        return not_available("the fault suite", suite)
    with DevStack() as stack:
        env = env_for_tests(*stack.up())
        env.setdefault("CLICKTRACK_FAULTS", "full")  # every scenario at full length
        code, _ = run_step("fault suite", [PYTHON, "-m", "pytest", "tests/faults", *extra], env)
        return code
