"""wrk: make sure it is installed, run it on a request file, read its result.

The figures come from ``done()`` in ``redirect.lua`` (wrk's own counters and latency
histogram), not from scraping its text output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "redirect.lua"
RESULT_MARK = "BENCH_RESULT "


class WrkError(Exception):
    """wrk is missing and cannot be installed, or a run produced no result."""


def ensure_wrk() -> str:
    """The path of wrk, installing the Debian package first if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise WrkError("wrk is not installed: install it (Debian/Ubuntu: apt-get install wrk)")
    print("bench: wrk is not installed; installing it: apt-get install -y wrk", file=sys.stderr)
    command = ["apt-get", "install", "-y", "-q", "wrk"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=env, check=False).returncode != 0:
        # Package lists may be missing or stale on a fresh machine.
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(command, env=env, check=False)
    found = shutil.which("wrk")
    if not found:
        raise WrkError("could not install wrk with apt-get; install it and run again")
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int  # responses received
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    status_errors: int  # responses with a status of 400 or more
    socket_errors: int  # connect, read and write errors, timeouts

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.status_errors + self.socket_errors

    @property
    def good(self) -> int:
        """Responses under 400: redirects, for the servers measured here."""
        return self.requests - self.status_errors

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "rps": round(self.rps, 1), "errors": self.errors}


def parse_result(output: str) -> WrkResult:
    for line in output.splitlines():
        if line.startswith(RESULT_MARK):
            raw = json.loads(line[len(RESULT_MARK) :])
            return WrkResult(
                requests=raw["requests"],
                duration_s=raw["duration_us"] / 1e6,
                p50_ms=raw["p50_us"] / 1000,
                p90_ms=raw["p90_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
                status_errors=raw["status"],
                socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
            )
    raise WrkError(f"wrk printed no result line:\n{output[-2000:]}")


@dataclass(frozen=True)
class WrkRun:
    """One wrk invocation: where, how hard, on which requests."""

    url: str
    requests_file: Path
    connections: int = 64
    threads: int = 1
    duration_s: float = 10.0
    cpus: str | None = None  # taskset CPU list; None: not pinned
    mean_delay_ms: float | None = None  # pacing (see redirect.lua); None: flat out

    def command(self, wrk: str) -> list[str]:
        command = [wrk, f"-t{self.threads}", f"-c{self.connections}", f"-d{self.duration_s:g}s"]
        command += ["--latency", "-s", str(LUA_SCRIPT), self.url]
        return ["taskset", "-c", self.cpus, *command] if self.cpus else command

    def env(self) -> dict[str, str]:
        env = {**os.environ, "BENCH_REQUESTS": str(self.requests_file)}
        env.pop("BENCH_DELAY_MS", None)
        if self.mean_delay_ms is not None:
            env["BENCH_DELAY_MS"] = f"{self.mean_delay_ms:.3f}"
        return env


def start(run: WrkRun, wrk: str, log_path: Path) -> subprocess.Popen[str]:
    """Start wrk; ``finish`` waits for it. Output goes to log_path (and is parsed from it)."""
    log = log_path.open("w")
    try:
        return subprocess.Popen(
            run.command(wrk),
            env=run.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    finally:
        log.close()


def finish(process: subprocess.Popen[str], log_path: Path, timeout: float) -> WrkResult:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise WrkError(f"wrk did not finish within {timeout:.0f}s; see {log_path}") from None
    output = log_path.read_text(errors="replace")
    if code != 0:
        raise WrkError(f"wrk exited with code {code}:\n{output[-2000:]}")
    return parse_result(output)
