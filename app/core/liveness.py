"""Is a worker process alive (the flusher, the postback sender): a heartbeat its event loop
writes, the check the probe runs, and the signals that stop it. ``process`` names it in the
probe's words and the log's events.

- **Heartbeat.** A task of the process's event loop rewrites a small file (the
  ``flusher_heartbeat_file`` / ``sender_heartbeat_file`` setting) every ``max_age / 10``
  seconds, at most every second: ``<time.monotonic()> <pid>``. The monotonic clock is the
  host's, shared by every process of the host, and never steps. A loop that is stuck (a
  blocking call, a busy loop, a deadlocked thread holding the GIL) stops writing, even
  though the metrics port, served by a thread, would still answer. An outage of Redis or
  Postgres does not stop it: the process waits those out, and restarting it would not help.
- **Check.** ``python -m app.flusher --check`` (``python -m app.sender --check``; ``check()``)
  reads the file: fresh, exit 0; missing, unreadable, older than the max age
  (``flusher_heartbeat_max_age_s``) or from the future (written before a reboot), exit 1
  with one line saying which.
- **Signals.** The first SIGTERM or SIGINT asks for a graceful stop (the batch in hand is
  written and acked); a second one exits at once, status 128 + the signal's number, with a
  log line: its entries stay pending, to be read again or claimed. Plain ``signal.signal``
  handlers, which Python runs between bytecodes, so the second signal works even when the
  event loop is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from app.settings import ConfigError, Settings, load_settings

MAX_INTERVAL_S = 1.0


def interval(max_age_s: float) -> float:
    """How often the heartbeat is written for a given max age (seconds)."""
    return min(MAX_INTERVAL_S, max_age_s / 10)


def beat(path: Path) -> None:
    """Write the heartbeat now: to a temporary file renamed over the old one, so that the
    check never reads half a file. Raises ``OSError`` when the folder is not writable."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(f"{time.monotonic():.3f} {os.getpid()}\n", encoding="ascii")
    os.replace(temporary, path)


async def keep_beating(path: Path, max_age_s: float, process: str = "flusher") -> None:
    """Write the heartbeat until cancelled; then remove it (a stopped process is not alive).
    A failed write is logged once, and tried again."""
    log = logging.getLogger(f"clicktrack.{process}")
    failing = False
    try:
        while True:
            try:
                beat(path)
                failing = False
            except OSError as exc:
                if not failing:
                    log.error("heartbeat_failed", extra={"path": str(path), "error": str(exc)})
                failing = True
            await asyncio.sleep(interval(max_age_s))
    finally:
        _remove(path)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def check(path: Path, max_age_s: float, process: str = "flusher") -> str | None:
    """None when the heartbeat at ``path`` is at most ``max_age_s`` seconds old; else why not,
    in one line."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return f"no heartbeat at {path}: the {process} is not running (or not started yet)"
    except (OSError, UnicodeDecodeError) as exc:
        return f"heartbeat {path} unreadable: {exc}"
    try:
        written = float(text.split()[0])
    except (IndexError, ValueError):
        return f"heartbeat {path} unreadable: {text[:40]!r}"
    age = time.monotonic() - written
    if age < -1.0:
        return f"heartbeat {path} is from the future ({-age:.0f} s): written before a reboot"
    if age > max_age_s:
        return f"heartbeat {path} is {age:.1f} s old (max {max_age_s:g} s): the event loop is stuck"
    return None


def probe(process: str, heartbeat: Callable[[Settings], tuple[Path, float]]) -> int:
    """``python -m app.<process> --check``: 0 when the heartbeat is fresh, else 1 and why, on
    one line of stderr. ``heartbeat``: the settings' (file, max age in seconds) of it."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"invalid configuration: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    reason = check(*heartbeat(settings), process)
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    return 0


def stop_on_signals(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, process: str = "flusher"
) -> None:
    """SIGTERM and SIGINT: the first sets ``stop`` (a graceful stop), the second exits now."""
    log = logging.getLogger(f"clicktrack.{process}")
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if received:
            log.critical(
                f"{process}_forced_exit",
                extra={"signal": name, "first": signal.Signals(received[0]).name},
            )
            for handler in logging.getLogger().handlers:
                handler.flush()
            sys.stderr.flush()
            os._exit(128 + signum)
        received.append(signum)
        log.info(f"{process}_stopping", extra={"signal": name})
        with contextlib.suppress(RuntimeError):  # the loop has ended already: nothing to stop
            loop.call_soon_threadsafe(stop.set)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)
