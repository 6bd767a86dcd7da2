"""The benchmark's processes: its own throwaway Redis and Postgres, and the servers it measures.

Redis and Postgres are started here on free ports (``scripts/devstack/``), with their data
in the run's folder, so that nothing else (a developer's stack, another engineer's tests)
shares them during the measurement. Every process started here is stopped here, by PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
from devstack import base, net, probes, servers

from app.core.migrate import migrate
from bench import PROJECT_ROOT
from bench.cpu import descendants
from bench.traffic import LinkRow
from bench.wrk import WrkError

if TYPE_CHECKING:
    from tests.support.redis_cluster import RedisClusterHarness

REDIS_CONF = PROJECT_ROOT / "deploy" / "redis" / "redis.conf"
DATABASE = "clicktrack_bench"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# What stops a run with a message rather than a traceback: ours, wrk's, and devstack's (a
# server that cannot start, a binary that is missing).
STOPPING_ERRORS: tuple[type[Exception], ...] = (BenchError, WrkError, base.DevstackError)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(updates: Mapping[str, str]) -> dict[str, str]:
    """Our environment without CLICKTRACK_* variables (the run sets its own), plus updates."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRACK_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env.update(updates)
    return env


class Process:
    """A child in a session of its own, output to a log file, optionally pinned with taskset."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        workdir: Path,
        *,
        cpus: str | None = None,
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        command = [*(["taskset", "-c", cpus] if cpus else []), sys.executable, *argv]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
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

    def running(self) -> bool:
        return self._process.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM to its process group (uvicorn's workers too), SIGKILL after ``grace``."""
        if self._process.poll() is None:  # our unreaped child: its PID is still its own
            with suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(grace)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
        return self._process.wait()


def wait_for_port(process: Process, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not net.port_open(port):
        if not process.running():
            raise BenchError(f"{process.name} exited at start:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{process.name} did not listen on {port}:\n{process.tail()}")
        time.sleep(0.1)


class Stores:
    """Throwaway Redis (with the deployed redis.conf: AOF, fsync every second) and Postgres."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis: servers.RedisServer | None = None
        self.postgres: servers.PostgresServer | None = None
        self.replica: servers.RedisServer | None = None  # phase "replicas" only
        self.cluster: RedisClusterHarness | None = None  # phase "cluster" only
        self.database_url = ""

    def start(self) -> None:
        config = REDIS_CONF if REDIS_CONF.is_file() else None
        self.redis = servers.start_redis(self.workdir / "redis", free_port(), config=config)
        self.postgres = servers.start_postgres(self.workdir / "pg", free_port())
        probes.ensure_database(self.postgres.url, DATABASE)
        self.database_url = net.with_database(self.postgres.url, DATABASE)
        asyncio.run(self._migrate())

    async def _migrate(self) -> None:
        conn = await asyncpg.connect(self.database_url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    @property
    def redis_url(self) -> str:
        assert self.redis is not None
        url: str = self.redis.url
        return url

    def pids(self) -> list[int]:
        return [pid for pids in self.pids_by_name().values() for pid in pids]

    def pids_by_name(self) -> dict[str, list[int]]:
        """Redis's and Postgres's PIDs (with their children), to tell their CPU apart."""
        found = {
            name: [server.pid]
            for name, server in (
                ("redis", self.redis),
                ("postgres", self.postgres),
                ("replica", self.replica),
            )
            if server is not None
        }
        if self.cluster is not None:
            live = self.cluster.live()
            found["cluster"] = [node.process.pid for node in live if node.process is not None]
        return found

    def pin(self, cpus: set[int] | None) -> None:
        """Move Redis and Postgres (every process and thread) to cpus; None: to all CPUs.
        New Postgres backends inherit the postmaster's affinity."""
        pin_tree(self.pids(), cpus)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        for server in (self.replica, self.redis, self.postgres):
            if server is not None:
                server.stop()

    def remove_moved_data(self) -> None:
        """Delete Postgres's data when devstack put it outside ``workdir`` (its user could not
        reach the workdir: a folder under /tmp), which removing the workdir would leave."""
        if self.postgres is not None and not self.postgres.data_dir.is_relative_to(self.workdir):
            data_dir = self.postgres.data_dir
            shutil.rmtree(data_dir, ignore_errors=True)
            shutil.rmtree(data_dir.with_name(f"{data_dir.name}-run"), ignore_errors=True)


def pin_tree(roots: Sequence[int], cpus: set[int] | None) -> None:
    """Set the CPU affinity of roots and their descendants, every thread (None: all CPUs)."""
    allowed = cpus or set(range(os.cpu_count() or 1))
    for pid in descendants(roots):
        with suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with suppress(OSError):
                    os.sched_setaffinity(int(task.name), allowed)


async def seed_links(database_url: str, count: int) -> list[LinkRow]:
    """One publisher and ``count`` active links, written straight into the database."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            publisher_id = await conn.fetchval(
                "INSERT INTO publishers (name) VALUES ('bench') RETURNING id"
            )
            rows = await conn.fetch(
                """INSERT INTO links (code, publisher_id, destination)
                   SELECT 'bench' || lpad(n::text, 6, '0'), $1,
                          CASE WHEN n % 3 = 0
                               THEN 'https://shop.example.com/item/' || n || '?ref=aff&lang=en'
                               ELSE 'https://shop.example.com/item/' || n END
                   FROM generate_series(1, $2) AS n
                   RETURNING id, code""",
                publisher_id,
                count,
            )
    finally:
        await conn.close()
    return [LinkRow(row["id"], row["code"], publisher_id) for row in rows]


# The rules of the benchmark's links with rules (phase "rules"): three country and device
# rules, as a publisher would write them (issue 19).
BENCH_RULES = [
    {"when": "country", "in": ["DE", "AT", "CH"], "destination": "https://shop.example.com/dach"},
    {"when": "device", "in": ["mobile"], "destination": "https://m.example.com/"},
    {"when": "device", "in": ["tablet"], "destination": "https://shop.example.com/tablet"},
]
RULES_CODE_PREFIX = "r"


async def seed_rule_links(database_url: str) -> int:
    """A copy of every seeded link (``bench%``: same publisher and destination) under the
    code ``r<code>``, with ``BENCH_RULES``; how many were written (none twice)."""
    conn = await asyncpg.connect(database_url)
    try:
        status = await conn.execute(
            """INSERT INTO links (code, publisher_id, destination, rules)
               SELECT $1 || code, publisher_id, destination, $2::jsonb
               FROM links WHERE code LIKE 'bench%'
               ON CONFLICT (code) DO NOTHING""",
            RULES_CODE_PREFIX,
            json.dumps(BENCH_RULES),
        )
    finally:
        await conn.close()
    return int(status.rsplit(" ", 1)[-1])


# The click caps of the benchmark's links with caps (phase "caps"): two caps of each copied
# link, a day and a month, too high to be reached, so that every click is checked and counted
# against both (two counters, one script call).
BENCH_CAP_PERIODS = ("day", "month")
BENCH_CAP = 1_000_000_000
CAPS_CODE_PREFIX = "c"


async def seed_capped_links(database_url: str) -> int:
    """A copy of every seeded link (``bench%``: same publisher and destination) under the
    code ``c<code>``, with a link click cap per ``BENCH_CAP_PERIODS``; how many links were
    written (none twice)."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            ids = await conn.fetch(
                """INSERT INTO links (code, publisher_id, destination)
                   SELECT $1 || code, publisher_id, destination
                   FROM links WHERE code LIKE 'bench%'
                   ON CONFLICT (code) DO NOTHING RETURNING id, publisher_id""",
                CAPS_CODE_PREFIX,
            )
            await conn.executemany(
                """INSERT INTO caps (publisher_id, link_id, metric, period, cap)
                   VALUES ($1, $2, 'clicks', $3, $4)""",
                [
                    (row["publisher_id"], row["id"], period, BENCH_CAP)
                    for row in ids
                    for period in BENCH_CAP_PERIODS
                ],
            )
    finally:
        await conn.close()
    return len(ids)
