"""clicktrack's own commands (``python -m app.serve``, ``python -m app.flusher``) as real child
processes, for tests that kill, pause and restart them.

Each child runs in its own session, in a folder of the test's (so a developer's ``.env`` is
not read), with its output in a log file, and is only ever signalled by its PID while it is
our unreaped child, so the PID cannot have been reused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child: ours without any CLICKTRACK_* variable, plus settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRACK_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)  # for test-only entry points under tests/
    env.update(settings)
    return env


class Child:
    """One child process: started at construction, stopped by ``stop()``."""

    def __init__(
        self, name: str, args: list[str], env: Mapping[str, str], workdir: Path, log_path: Path
    ) -> None:
        self.name = name
        self.log_path = log_path
        workdir.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, *args],
                cwd=workdir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    def running(self) -> bool:
        return self._process.poll() is None

    def signal(self, signum: int) -> None:
        if self._process.poll() is None:  # not reaped: the PID is still our child's
            self._process.send_signal(signum)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self._process.wait()

    async def wait(self, within: float) -> int | None:
        """The exit code, or None if still running after ``within`` seconds."""
        deadline = time.monotonic() + within
        while (code := self._process.poll()) is None:
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)
        return code

    async def stop(self, grace: float = 15.0) -> int:
        """SIGTERM (after a SIGCONT, should it be paused), SIGKILL after ``grace`` seconds."""
        if self._process.poll() is None:
            self.resume()
            self.signal(signal.SIGTERM)
            if await self.wait(grace) is None:
                self.kill()
        return self._process.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    async def wait_for_log(self, text: str, within: float) -> str:
        """The first log line containing ``text``; fails if the child exits or time runs out."""
        deadline = time.monotonic() + within
        while True:
            for line in self.log().splitlines():
                if text in line:
                    return line
            if not self.running():
                raise AssertionError(f"{self.name} exited ({self.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never logged {text!r}:\n{self.tail()}")
            await asyncio.sleep(0.05)


async def wait_http_ok(child: Child, url: str, within: float = 30.0) -> None:
    """Until ``url`` answers 200 (the web app's /healthz, say)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not child.running():
                raise AssertionError(f"{child.name} exited ({child.returncode}):\n{child.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{child.name} not ready at {url}:\n{child.tail()}")
            await asyncio.sleep(0.1)


async def start_web(
    settings: Mapping[str, str],
    workdir: Path,
    log_path: Path,
    *,
    name: str = "web",
    module: str = "app.serve",
) -> tuple[Child, str]:
    """``python -m app.serve`` (or ``module``, a stand-in for it) on a free port (unless
    settings name one); return it and its base URL once /healthz answers."""
    port = settings.get("CLICKTRACK_PORT") or str(free_port())
    env = child_env({"CLICKTRACK_HOST": "127.0.0.1", "CLICKTRACK_PORT": port, **settings})
    child = Child(name, ["-m", module], env, workdir, log_path)
    base_url = f"http://127.0.0.1:{port}"
    try:
        await wait_http_ok(child, f"{base_url}/healthz")
    except BaseException:
        await child.stop()
        raise
    return child, base_url
