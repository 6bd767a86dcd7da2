"""The benchmark's measuring machinery: the servers it starts, the quiet-machine checks,
one measured wrk run, interleaved rounds, and the durability check. ``bench/run.py`` builds
its phases on it."""

from __future__ import annotations

import asyncio
import http.client
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from app.core.keys import RedisKeys
from app.edge.session import SessionCookie
from bench.cpu import CpuMeter, CpuReport, idle_fractions, tree_cpu_seconds
from bench.options import Options, parse_cpus
from bench.services import (
    BenchError,
    Process,
    Stores,
    child_env,
    free_port,
    pin_tree,
    seed_links,
    wait_for_port,
)
from bench.traffic import LinkRow, redirect_requests
from bench.wrk import WrkResult, WrkRun, ensure_wrk, finish, start

KEY_PREFIX = "bench"
COOKIE_SECRET = "bench-cookie-secret-bench-cookie-secret"


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Disturbed(Exception):
    """Other processes used the CPU: the figures would be wrong, so none are reported."""


@dataclass
class Server:
    """One measured configuration: one or more processes behind one port."""

    key: str
    label: str
    port: int
    processes: list[Process]
    clicktrack: bool  # records clicks (so its runs get the durability check)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.running()]

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@dataclass
class Run:
    server: str
    round: int
    result: WrkResult
    cpu: CpuReport
    idle_before: dict[str, float]
    disturbed: bool
    stream_entries: int | None = None
    server_cores: float = 0.0  # CPU the server used: ~1.0 when it, not its dependencies, limits

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "round": self.round,
            **self.result.as_dict(),
            "cpu": self.cpu.as_dict(),
            "idle_before": {k: round(v, 3) for k, v in self.idle_before.items()},
            "disturbed": self.disturbed,
            "stream_entries": self.stream_entries,
            "server_cores": round(self.server_cores, 3),
        }


def _get_status(port: int, path: str) -> int | None:
    """One request with http.client, which never follows a redirect (they point elsewhere)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def clicks_per_batch(port: int) -> float | None:
    """The group commit's mean batch size so far, from the server's /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return None
    finally:
        conn.close()
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("clicktrack_commit_batch_size_sum", "clicktrack_commit_batch_size_count"):
            found[name] = float(value)
    count = found.get("clicktrack_commit_batch_size_count")
    return found["clicktrack_commit_batch_size_sum"] / count if count else None


def median_row(label: str, runs: Sequence[Run]) -> dict[str, Any]:
    return {
        "label": label,
        "rps": round(statistics.median(run.result.rps for run in runs), 1),
        "p50_ms": round(statistics.median(run.result.p50_ms for run in runs), 3),
        "p99_ms": round(statistics.median(run.result.p99_ms for run in runs), 3),
        "errors": sum(run.result.errors for run in runs),
        "server_cores": round(statistics.median(run.server_cores for run in runs), 2),
        "runs_rps": [round(run.result.rps, 1) for run in runs],
    }


class Harness:
    """Servers, runs and their checks; the phases are in ``bench.run.Bench``."""

    def __init__(self, options: Options, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.stores = Stores(workdir)
        self.servers: dict[str, Server] = {}
        self.runs: list[Run] = []
        self.notes: list[str] = []
        self.disturbed = False
        self.links: list[LinkRow] = []
        self.keys = RedisKeys(KEY_PREFIX)
        self.requests_file = workdir / "requests.txt"
        # A measured configuration's own requests (by server key); others send requests_file.
        self.requests_for: dict[str, Path] = {}
        self.meter = CpuMeter(self._our_pids)
        self.summary: dict[str, Any] = {}
        self.wrk = ""
        self._redis: redis.Redis | None = None
        self._wrk_count = 0

    # --- set-up -------------------------------------------------------------------------

    def _our_pids(self) -> list[int]:
        pids = self.stores.pids()
        for server in self.servers.values():
            pids += server.pids()
        return pids

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.stores.redis_url)
        return self._redis

    def set_up(self) -> None:
        self.wrk = ensure_wrk()
        say(f"starting a throwaway Redis and Postgres under {self.workdir}")
        self.stores.start()
        self.links = asyncio.run(seed_links(self.stores.database_url, self.options.links))
        session = SessionCookie(
            COOKIE_SECRET.encode(), name="ct_sid", secure=False, domain=None, max_age=None
        )
        requests = redirect_requests([link.code for link in self.links], session, 4096)
        self.requests_file.write_text("".join(r.line() + "\n" for r in requests))

    def app_env(self, name: str, port: int | None, **extra: str) -> dict[str, str]:
        return child_env(
            {
                "CLICKTRACK_REDIS_URL": self.stores.redis_url,
                "CLICKTRACK_DATABASE_URL": self.stores.database_url,
                "CLICKTRACK_KEY_PREFIX": KEY_PREFIX,
                "CLICKTRACK_HOST": "127.0.0.1",
                **({"CLICKTRACK_PORT": str(port)} if port else {}),
                "CLICKTRACK_COOKIE_SECRET": COOKIE_SECRET,
                "CLICKTRACK_COOKIE_SECURE": "false",
                "CLICKTRACK_SPOOL_DIR": str(self.workdir / f"spool-{name}"),
                "CLICKTRACK_FLUSHER_METRICS_PORT": "0",
                "CLICKTRACK_CONSUMER_NAME": "bench-flusher",
                **extra,
            }
        )

    def start_server(
        self,
        key: str,
        label: str,
        argvs: Sequence[Sequence[str]],
        *,
        cpus: str | None,
        env: Callable[[int], dict[str, str]],
        clicktrack: bool,
    ) -> Server:
        port = free_port()
        processes = []
        for n, argv in enumerate(argvs):
            name = key if len(argvs) == 1 else f"{key}-{n}"
            argv = [part.replace("{port}", str(port)) for part in argv]
            processes.append(Process(name, argv, env(port), self.workdir, cpus=cpus))
        server = Server(key, label, port, processes, clicktrack)
        self.servers[key] = server
        for process in processes:
            wait_for_port(process, port)
        path = "/healthz" if clicktrack else f"/e/{self.links[0].code}"
        deadline = time.monotonic() + 30
        while _get_status(port, path) not in (200, 302):
            if time.monotonic() > deadline:
                raise BenchError(f"{label} does not answer {path}:\n{processes[0].tail()}")
            time.sleep(0.1)
        return server

    def stop_servers(self, keys: Sequence[str]) -> None:
        for key in keys:
            server = self.servers.pop(key, None)
            if server is not None:
                server.stop()

    def uvicorn(self, app: str) -> list[str]:
        return [
            "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}",
            "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--no-server-header", "--log-level", "warning",
        ]  # fmt: skip

    def others_on_wrk_cpu(self, on: bool) -> None:
        """With the server pinned, Redis, Postgres and a flusher run on wrk's CPU, so that the
        measured core runs the server alone (in production they are other machines)."""
        cpus = parse_cpus(self.options.wrk_cpu) if on else None
        self.stores.pin(cpus)
        flusher = self.servers.get("flusher")
        if flusher is not None:
            pin_tree(flusher.pids(), cpus)

    # --- measuring ----------------------------------------------------------------------

    def disturbance(self, message: str) -> None:
        if not self.options.force:
            raise Disturbed(message)
        self.disturbed = True
        self.notes.append(message)
        say(f"DISTURBED (reported anyway, --force): {message}")

    def wait_quiet(self, what: str) -> dict[str, float]:
        deadline = time.monotonic() + self.options.quiet_wait_s
        while True:
            idle = idle_fractions(1.0)
            busy = {core: share for core, share in idle.items() if share < self.options.min_idle}
            if not busy:
                return idle
            shares = ", ".join(f"{core} {share:.0%} idle" for core, share in sorted(idle.items()))
            if time.monotonic() >= deadline:
                self.disturbance(
                    f"before {what}: {shares}, for {self.options.quiet_wait_s:.0f} s "
                    f"(each core needs >= {self.options.min_idle:.0%})"
                )
                return idle
            say(f"machine busy before {what} ({shares}); waiting")
            time.sleep(5)

    def wrk_run(
        self,
        server: Server,
        duration_s: float,
        *,
        pinned: bool = True,
        mean_delay_ms: float | None = None,
        during: Callable[[Callable[[], bool]], None] | None = None,
    ) -> WrkResult:
        run = WrkRun(
            url=server.url,
            requests_file=self.requests_for.get(server.key, self.requests_file),
            connections=self.options.connections,
            duration_s=duration_s,
            cpus=self.options.wrk_cpu if pinned else None,
            mean_delay_ms=mean_delay_ms,
        )
        self._wrk_count += 1
        log_path = self.workdir / f"wrk-{self._wrk_count:03d}-{server.key}.log"
        process = start(run, self.wrk, log_path)
        try:
            if during is not None:
                during(lambda: process.poll() is None)
            return finish(process, log_path, timeout=duration_s + 30)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) or failed: wrk stops too
            if process.poll() is None:
                process.terminate()
                process.wait()
            raise

    def measure(self, server: Server, round_: int, *, pinned: bool = True) -> Run:
        what = f"{server.label}, run {round_ + 1}"
        for attempt in range(self.options.retries + 1):
            idle = self.wait_quiet(what)
            if server.clicktrack:
                self.redis.unlink(self.keys.clicks_stream)
            self.meter.start()
            server_cpu = tree_cpu_seconds(server.pids())
            result = self.wrk_run(server, self.options.duration_s, pinned=pinned)
            server_cpu = tree_cpu_seconds(server.pids()) - server_cpu
            cpu = self.meter.stop()
            quiet_before = min(idle.values(), default=1.0) >= self.options.min_idle
            disturbed = cpu.foreign_cores > self.options.max_foreign or not quiet_before
            if cpu.foreign_cores > self.options.max_foreign:
                message = (
                    f"{what}: other processes used {cpu.foreign_cores:.2f} cores during the "
                    f"run (at most {self.options.max_foreign:.2f} allowed)"
                )
                if attempt < self.options.retries:
                    say(message + "; running it again")
                    continue
                self.disturbance(message)
            break
        run = Run(server.key, round_, result, cpu, idle, disturbed)
        run.server_cores = server_cpu / result.duration_s if result.duration_s else 0.0
        if server.clicktrack:
            time.sleep(0.5)  # requests wrk gave up on at its deadline are still answered
            run.stream_entries = int(self.redis.xlen(self.keys.clicks_stream))
        say(
            f"{what}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 "
            f"{result.p99_ms:.2f} ms, errors {result.errors}, server used "
            f"{run.server_cores:.2f} cores, other processes "
            f"{cpu.foreign_cores:.2f} cores"
            + (
                f", stream entries {run.stream_entries:,} for {result.good:,} 302s"
                if run.stream_entries is not None
                else ""
            )
        )
        self.runs.append(run)
        return run

    def rounds(self, servers: Sequence[Server], *, pinned: bool) -> dict[str, list[Run]]:
        for server in servers:
            say(f"warming up {server.label}")
            self.wrk_run(server, self.options.warmup_s, pinned=pinned)
        found: dict[str, list[Run]] = {server.key: [] for server in servers}
        for round_ in range(self.options.runs):
            for server in servers:
                found[server.key].append(self.measure(server, round_, pinned=pinned))
        return found

    # --- phases -------------------------------------------------------------------------

    def check_durability(self, runs: Sequence[Run]) -> None:
        """Every 302 wrk received must be a stream entry; a few more entries are fine: the
        requests in flight when wrk stopped were answered, but not counted by wrk."""
        bad = []
        for run in runs:
            entries = run.stream_entries or 0
            if not run.result.good <= entries <= run.result.good + self.options.connections:
                bad.append(f"run {run.round + 1}: {run.result.good} 302s, {entries} entries")
        detail = "; ".join(bad) or (
            f"302s <= entries <= 302s + {self.options.connections} in all {len(runs)} runs"
        )
        previous = self.summary.get("durability")
        if previous:
            runs_total = previous["runs"] + len(runs)
            detail = f"{previous['detail']}; {detail}" if bad or not previous["ok"] else detail
            self.summary["durability"] = {
                "ok": previous["ok"] and not bad,
                "runs": runs_total,
                "detail": detail,
            }
        else:
            self.summary["durability"] = {"ok": not bad, "runs": len(runs), "detail": detail}

    def close(self) -> None:
        for key in list(self.servers):
            self.stop_servers([key])
        if self._redis is not None:
            self._redis.close()
        self.stores.stop()
        if not self.options.keep:
            for name in ("redis", "pg", "replica", "cluster"):
                path = self.workdir / name
                shutil.rmtree(path, ignore_errors=True)
            self.stores.remove_moved_data()
