"""The flusher's heartbeat and ``python -m app.flusher --check``, the liveness probe: fresh,
stale, missing, unreadable. (A running flusher's heartbeat, a stuck one and the second
signal: tests/integration/test_flusher_liveness.py.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core import liveness

REPO = Path(__file__).resolve().parents[2]


def run_check(heartbeat: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRACK_")}
    environment |= {"CLICKTRACK_FLUSHER_HEARTBEAT_FILE": str(heartbeat), **env}
    return subprocess.run(
        [sys.executable, "-m", "app.flusher", "--check"],
        cwd=heartbeat.parent,  # no .env of a developer's
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def write(path: Path, age_s: float) -> None:
    path.write_text(f"{time.monotonic() - age_s:.3f} 4242\n", encoding="ascii")


def test_a_fresh_heartbeat_passes(tmp_path: Path) -> None:
    heartbeat = tmp_path / "hb"
    liveness.beat(heartbeat)
    assert liveness.check(heartbeat, 30) is None
    done = run_check(heartbeat)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert heartbeat.read_text().split()[1] == str(os.getpid())
    assert [p.name for p in tmp_path.iterdir()] == ["hb"]  # no temporary file left


def test_a_stale_heartbeat_fails_with_one_line(tmp_path: Path) -> None:
    heartbeat = tmp_path / "hb"
    write(heartbeat, age_s=45)
    reason = liveness.check(heartbeat, 30)
    assert reason is not None and "45." in reason and "stuck" in reason
    done = run_check(heartbeat)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "s old (max 30 s)" in done.stderr
    write(heartbeat, age_s=45)
    assert run_check(heartbeat, CLICKTRACK_FLUSHER_HEARTBEAT_MAX_AGE_S="60").returncode == 0


def test_a_missing_heartbeat_fails(tmp_path: Path) -> None:
    done = run_check(tmp_path / "never-written")
    assert done.returncode == 1
    assert done.stderr.startswith("no heartbeat at ") and done.stderr.count("\n") == 1


@pytest.mark.parametrize("content", ["", "soon", "\xff\xfe"])
def test_an_unreadable_heartbeat_fails(tmp_path: Path, content: str) -> None:
    heartbeat = tmp_path / "hb"
    heartbeat.write_text(content, encoding="latin-1")
    reason = liveness.check(heartbeat, 30)
    assert reason is not None and "unreadable" in reason


def test_a_heartbeat_from_before_a_reboot_fails(tmp_path: Path) -> None:
    heartbeat = tmp_path / "hb"
    write(heartbeat, age_s=-3600)
    reason = liveness.check(heartbeat, 30)
    assert reason is not None and "future" in reason


def test_bad_configuration_fails_the_check_on_one_line(tmp_path: Path) -> None:
    done = run_check(tmp_path / "hb", CLICKTRACK_FLUSHER_HEARTBEAT_MAX_AGE_S="soon")
    assert done.returncode == 1
    assert done.stderr.startswith("invalid configuration: ") and done.stderr.count("\n") == 1


async def test_the_heartbeat_is_rewritten_then_removed(tmp_path: Path) -> None:
    heartbeat = tmp_path / "hb"
    task = asyncio.create_task(liveness.keep_beating(heartbeat, max_age_s=2))
    try:
        await asyncio.sleep(0.05)
        first = heartbeat.read_text()
        await asyncio.sleep(liveness.interval(2) * 3)
        assert heartbeat.read_text() != first
        assert liveness.check(heartbeat, 2) is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not heartbeat.exists()


async def test_an_unwritable_heartbeat_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    task = asyncio.create_task(liveness.keep_beating(tmp_path / "no" / "hb", max_age_s=2))
    await asyncio.sleep(liveness.interval(2) * 3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [r.getMessage() for r in caplog.records] == ["heartbeat_failed"]
