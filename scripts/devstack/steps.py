"""Child processes: a step in the foreground (the ``devstack: ==> ...`` lines), children under
supervision until one dies or a signal comes, and the environment they get."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from devstack.base import (
    CHILD_GRACE_S,
    PROJECT_ROOT,
    TEST_DATABASE_URL_ENV,
    TEST_REDIS_URL_ENV,
    log,
)
from devstack.discovery import DevStack, Service
from devstack.signals import Interrupted, begin_cleanup, wait_until


def child_env(updates: Mapping[str, str]) -> dict[str, str]:
    """Our environment with updates over it, for a child process."""
    env = dict(os.environ)
    env.update(updates)
    return env


def env_for_tests(redis_service: Service, postgres_service: Service) -> dict[str, str]:
    """The environment for pytest: the test URLs point at the found servers."""
    return child_env(
        {TEST_REDIS_URL_ENV: redis_service.url, TEST_DATABASE_URL_ENV: postgres_service.url}
    )


def not_available(what: str, path: Path) -> int:
    """Say that what is missing from this checkout (path); the exit code for that."""
    log(f"{what} is not available yet: {path.relative_to(PROJECT_ROOT)} does not exist")
    return 1


def _stop_foreground(process: subprocess.Popen[bytes], signum: int) -> None:
    """After a signal: a Ctrl-C reached the child too (same process group); pass others on."""
    begin_cleanup()
    if signum != signal.SIGINT:
        process.send_signal(signum)
    if not wait_until(lambda: process.poll() is not None, 5):
        process.terminate()
        if not wait_until(lambda: process.poll() is not None, 5):
            process.kill()
    process.wait()


def run_step(name: str, command: list[str], env: Mapping[str, str]) -> tuple[int, float]:
    """Run command in the foreground in the project folder; return (exit code, seconds)."""
    log(f"==> {name}")
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)
    try:
        code = process.wait()
    except Interrupted as exc:
        _stop_foreground(process, exc.signum)
        raise
    elapsed = time.monotonic() - started
    outcome = "ok" if code == 0 else f"FAILED (exit code {code})"
    log(f"<== {name}: {outcome} in {elapsed:.1f}s")
    return code, elapsed


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:  # not yet reaped, so the PID (= group ID) is still ours
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def stop_children(children: Sequence[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Stop the children still running: SIGTERM to each group, SIGKILL after a grace."""
    begin_cleanup()
    running = [(name, process) for name, process in children if process.poll() is None]
    for name, process in running:
        log(f"stopping {name} (pid {process.pid})")
        _signal_group(process, signal.SIGTERM)
    wait_until(lambda: all(process.poll() is not None for _, process in running), CHILD_GRACE_S)
    for name, process in running:
        if process.poll() is None:
            log(f"{name} did not stop within {CHILD_GRACE_S:.0f}s; killing it")
            _signal_group(process, signal.SIGKILL)
        process.wait()


def watch(
    children: Sequence[tuple[str, subprocess.Popen[bytes]]],
    stack: DevStack,
    on_ready: Callable[[], bool],
) -> int:
    """Wait until a child or a throwaway server dies (exit code for that) or a signal."""
    ready = False
    while True:
        for name, process in children:
            code = process.poll()
            if code is not None:
                log(f"{name} exited with code {code}; stopping everything")
                return code or 1
        for handle in stack.dead_servers():
            log(f"the throwaway {handle.name} died; see {handle.log_path}; stopping everything")
            stack.started.remove(handle)
            return 1
        ready = ready or on_ready()
        time.sleep(0.2)


def supervise(
    children: Sequence[tuple[str, list[str]]],
    env: Mapping[str, str],
    stack: DevStack,
    on_ready: Callable[[], bool],
) -> int:
    """Start children (each in its own process group, so a Ctrl-C reaches only devstack), wait
    until one dies or a signal comes, then stop them all: SIGTERM, SIGKILL after a grace."""
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for name, command in children:
            log(f"starting {name}: {shlex.join(['python', *command[1:]])}")
            process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, start_new_session=True)
            started.append((name, process))
        return watch(started, stack, on_ready)
    finally:
        stop_children(started)
