"""The fault suite's session: one Redis and one Postgres of its own, the table at the end.

``CLICKTRACK_FAULTS=full`` (what ``make faults`` sets) runs every scenario at full length;
otherwise they run short, inside the ordinary ``pytest`` run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.faults.harness import ROWS, Faults, mode_from_env, table
from tests.support.processes import PROJECT_ROOT

ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
async def faults() -> AsyncIterator[Faults]:
    session = Faults(mode_from_env())
    try:
        await session.open()
        yield session
    finally:
        await session.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    mode = mode_from_env().name
    text = table(ROWS)
    terminalreporter.section(f"fault table ({mode})")
    terminalreporter.write_line(text)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"faults-{mode}.md").write_text(text + "\n")
