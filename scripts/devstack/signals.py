"""Signals: Ctrl-C, SIGTERM or SIGHUP raise Interrupted once; during clean-up they only hurry it.

wait_until() lives here because a second signal cuts its waiting short."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType


class Interrupted(BaseException):
    """Raised, once per process, by the signal handler on Ctrl-C, SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    raised = False  # Interrupted was raised already
    cleaning_up = False  # never raise from now on: clean-up must not be cut short
    hurry = False  # another signal came while cleaning up: skip the grace periods


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _Signals.raised or _Signals.cleaning_up:
        _Signals.hurry = True
        return
    _Signals.raised = True
    raise Interrupted(signum)


def begin_cleanup() -> None:
    """From now on a signal never raises: clean-up must not be cut short."""
    _Signals.cleaning_up = True


def install_signal_handlers() -> None:
    """Handle Ctrl-C, SIGTERM and SIGHUP as described in the module docstring."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll predicate until it is true (True) or timeout seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline or _Signals.hurry:
            return False
        time.sleep(interval)
