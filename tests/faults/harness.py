"""The fault-injection harness: real servers, real processes, a load client, and the count.

``Faults`` (one per test session) starts Redis, with the persistence settings that
``deploy/redis/redis.conf`` ships, and Postgres, both on free ports under a temporary folder,
and migrates the database with ``python -m app.cli migrate``. Each scenario
(``Faults.scenario``) gets a key prefix, a link, a spool folder and processes of its own: the
web app (``python -m app.serve``) and flushers (``python -m app.flusher``). The test drives
load at the web app (``Scenario.load``), breaks something, heals it, then ``Scenario.check``
waits until the pipeline has drained and compares the click ids promised in each 302's
``Location`` with the rows in Postgres: one ``Row`` of the fault table.

Only processes started here are signalled, by PID; ``Faults.close`` stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import orjson
import redis.asyncio as aioredis
from devstack import probes, servers
from devstack.procs import Proc
from redis.asyncio.cluster import ClusterNode, RedisCluster

from app.core.keys import RedisKeys
from app.core.redis import is_cluster_url
from app.links import store as link_store
from tests.support.processes import PROJECT_ROOT, Child, child_env, free_port, start_web

REDIS_CONF = PROJECT_ROOT / "deploy" / "redis" / "redis.conf"
CLICK_ID_PARAM = "aff_click_id"
DESTINATION = "https://shop.example.com/item/42?ref=faults"
CLAIM_IDLE_MS = 2000
# Links are re-read from Redis or Postgres every second, so that every fault also hits
# the link lookup, as it would for the many links of a real installation.
LINK_CACHE_TTL_S = "1"
# With side codes (scenario 12), one request in this many asks for one of them.
SIDE_EVERY = 20
MODE_ENV = "CLICKTRACK_FAULTS"


@dataclass(frozen=True)
class Mode:
    """How hard and how long: ``quick`` inside ``make test``, ``full`` for ``make faults``."""

    name: str
    rate: float  # requests per second, the whole client
    concurrency: int
    warmup_s: float  # load before the fault
    outage_s: float  # how long the broken thing stays broken
    tail_s: float  # load after healing
    backlog_s: float  # scenario 9: Postgres down this long
    drain_s: float  # how long the pipeline may take to catch up

    @property
    def max_requests(self) -> int:
        """A bound on any one scenario's requests, whatever happens to its timing."""
        return int(self.rate * (self.warmup_s + self.backlog_s + self.tail_s + 30))


QUICK = Mode("quick", 200, 16, 1.0, 2.0, 1.0, 3.0, 60.0)
# Full length, not full speed: the load stays what a two-core machine serves with room to
# spare, so that a slow redirect in the table means a fault, not a saturated machine.
FULL = Mode("full", 250, 16, 3.0, 6.0, 3.0, 20.0, 120.0)


def mode_from_env() -> Mode:
    return FULL if os.environ.get(MODE_ENV, "").lower() == "full" else QUICK


# --- The table --------------------------------------------------------------------------------


@dataclass
class Row:
    """One scenario's outcome. ``lost``, ``duplicates`` and ``server_errors`` must be 0."""

    scenario: str
    requests: int
    accepted: int  # 302s (plus clicks a scenario wrote to the stream itself)
    stored: int  # rows in Postgres for this scenario's link
    duplicates: int  # rows beyond one per click id
    lost: int  # accepted click ids without a row
    server_errors: int  # 5xx answers
    connection_errors: int  # requests that got no answer at all (never accepted)
    other_answers: int  # anything neither 302 nor 5xx
    mismatched: int  # rows whose af differs from what its request sent
    worst_latency_s: float
    note: str = ""

    HEADER = (
        "| scenario | requests | 302s | stored | duplicates | lost | 5xx | no answer "
        "| worst latency | note |"
    )
    RULE = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"

    def markdown(self) -> str:
        return (
            f"| {self.scenario} | {self.requests} | {self.accepted} | {self.stored} "
            f"| {self.duplicates} | {self.lost} | {self.server_errors} "
            f"| {self.connection_errors} | {self.worst_latency_s * 1000:.0f} ms | {self.note} |"
        )

    def assert_exactly_once(self, *, connection_errors_allowed: bool = False) -> None:
        problems = []
        if self.lost or self.duplicates or self.mismatched:
            problems.append(
                f"lost {self.lost}, duplicates {self.duplicates}, mismatched {self.mismatched}"
            )
        if self.server_errors or self.other_answers:
            problems.append(f"5xx {self.server_errors}, other answers {self.other_answers}")
        if self.connection_errors and not connection_errors_allowed:
            problems.append(f"{self.connection_errors} requests got no answer")
        if self.accepted == 0:
            problems.append("no request was accepted")
        assert not problems, f"{self.scenario}: " + "; ".join(problems)

    def assert_only_losses(self) -> None:
        """A failover without replica acknowledgement: every request answered, none twice,
        no 5xx, and some answered clicks lost (0 would mean the scenario no longer opens the
        window it is about)."""
        assert (self.duplicates, self.mismatched, self.server_errors, self.other_answers) == (
            (0,) * 4
        ), self
        assert self.connection_errors == 0 and self.accepted > 0, self
        assert self.lost > 0, self


ROWS: list[Row] = []  # every row of this session, for the summary at the end


def table(rows: list[Row]) -> str:
    return "\n".join([Row.HEADER, Row.RULE, *(row.markdown() for row in rows)])


# --- Servers ----------------------------------------------------------------------------------


class RedisNode:
    """Our Redis, restartable on the same port and data (its AOF)."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.server: servers.RedisServer | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.server = servers.start_redis(self.data_dir, self.port, config=REDIS_CONF)

    def stop(self) -> None:
        """SIGTERM: Redis shuts down cleanly (its AOF fsynced)."""
        if self.server is not None:
            self.resume()
            self.server.stop()

    def kill(self) -> None:
        """SIGKILL: a crash of the Redis process."""
        if self.server is not None:
            self.server.kill()
            self.paused = False

    def pause(self) -> None:
        if self.server is not None and self.server.is_running():
            os.kill(self.server.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.server is not None and self.server.is_running() and self.paused:
            os.kill(self.server.pid, signal.SIGCONT)
        self.paused = False

    def running(self) -> bool:
        return self.server is not None and self.server.is_running()

    def ensure_up(self) -> None:
        self.resume()
        if not self.running():
            self.start()


class PostgresNode:
    DATABASE = "clicktrack"

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.server: servers.PostgresServer | None = None
        self.paused: list[Proc] = []  # what pause() stopped: the postmaster, its children

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.DATABASE}"

    def start(self) -> None:
        self.server = servers.start_postgres(self.data_dir, self.port)
        probes.ensure_database(self.server.url, self.DATABASE)

    def stop(self) -> None:
        if self.server is not None:
            self.resume()
            self.server.stop()

    def pause(self) -> None:
        """SIGSTOP the postmaster, then each of its children (every backend calls setsid(),
        so one signal to a process group would not reach them): open connections stay open
        and get no answer, new ones wait in the listen backlog. A frozen host, as its
        clients see it."""
        postmaster = Proc.find(self.server.pid) if self.running() and self.server else None
        if postmaster is not None and not self.paused:
            postmaster.signal(signal.SIGSTOP)  # first: it forks nothing new while we look
            self.paused = [postmaster, *postmaster.children()]
            for child in self.paused[1:]:
                child.signal(signal.SIGSTOP)

    def resume(self) -> None:
        for process in reversed(self.paused):  # the postmaster last
            process.signal(signal.SIGCONT)
        self.paused = []

    def running(self) -> bool:
        return self.server is not None and self.server.is_running()

    def ensure_up(self) -> None:
        self.resume()
        if not self.running():
            self.start()


# --- The load client --------------------------------------------------------------------------


@dataclass
class LoadStats:
    sent: int = 0
    accepted: dict[str, str] = field(default_factory=dict)  # click id -> af it was sent with
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    samples_5xx: list[str] = field(default_factory=list)
    worst_latency_s: float = 0.0
    worst_at_s: float = 0.0  # when the slowest request started, from the start of the load
    # Scenario 12's side codes (Scenario.side_codes): answers and slowest, per code; and the
    # 503s with Retry-After for links never cached, kept out of ``statuses`` (not 5xx).
    side_answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    side_worst_s: dict[str, float] = field(default_factory=dict)
    uncached_503s: int = 0


class Load:
    """Paced GETs of ``/e/<code>`` from ``concurrency`` workers over keep-alive connections,
    each with a distinct ``af``; records the click id of every 302. Bounded in count; runs
    until ``stop`` is set."""

    def __init__(self, scenario: Scenario, mode: Mode) -> None:
        self.scenario = scenario
        self.mode = mode
        self.stats = LoadStats()
        self.stop = asyncio.Event()
        self._next_slot = 0.0
        self._counter = 0
        self.started = time.monotonic()

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.mode.concurrency)
        timeout = httpx.Timeout(15.0, connect=5.0)
        # Without cookies every click is a new session, so a new stream shard (the cluster
        # scenarios); with them the whole load is one session, one shard.
        jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        cookies = jar if self.scenario.fresh_sessions else None
        async with httpx.AsyncClient(limits=limits, timeout=timeout, cookies=cookies) as client:
            await asyncio.gather(*(self._worker(client) for _ in range(self.mode.concurrency)))

    async def _pace(self) -> None:
        now = time.monotonic()
        slot = max(self._next_slot, now)
        self._next_slot = slot + 1 / self.mode.rate
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _worker(self, client: httpx.AsyncClient) -> None:
        stats = self.stats
        while not self.stop.is_set() and self._counter < self.mode.max_requests:
            await self._pace()
            if self.stop.is_set():
                return
            self._counter += 1
            af = f"r{self._counter}"
            code = self.scenario.code_for(self._counter)
            url = f"{self.scenario.base_url}/e/{code}?af={af}&cn=faults"
            stats.sent += 1
            started = time.monotonic()
            try:
                response = await client.get(url, headers={"user-agent": "faults/1 Mozilla/5.0"})
            except httpx.TransportError as exc:
                stats.errors[type(exc).__name__] += 1
                continue
            finally:
                latency = time.monotonic() - started
                if latency > stats.worst_latency_s:
                    stats.worst_latency_s = latency
                    stats.worst_at_s = started - self.started
            if code != self.scenario.code and self._uncached_503(code, response, latency):
                stats.uncached_503s += 1
                continue
            stats.statuses[response.status_code] += 1
            if response.status_code == 302:
                query = parse_qs(urlsplit(response.headers["location"]).query)
                stats.accepted[query[CLICK_ID_PARAM][0]] = af
            elif response.status_code >= 500 and len(stats.samples_5xx) < 5:
                stats.samples_5xx.append(f"{response.status_code} {response.text[:200]!r}")

    def _uncached_503(self, code: str, response: httpx.Response, latency: float) -> bool:
        """Note a side code's answer. True for the one 5xx allowed, and only there: a 503
        with Retry-After for a link that no process has had a copy of (it never got a 302
        in this run, and the test says it is in no mirror), while Postgres cannot answer."""
        stats, status = self.stats, response.status_code
        stats.side_answers[(code, status)] += 1
        stats.side_worst_s[code] = max(stats.side_worst_s.get(code, 0.0), latency)
        if status == 302:
            self.scenario.uncached_codes.discard(code)  # cached now: a 503 would be a fault
            return False
        return (
            status == 503
            and code in self.scenario.uncached_codes
            and "retry-after" in response.headers
        )


# --- Scenarios --------------------------------------------------------------------------------


class Scenario:
    def __init__(self, faults: Faults, name: str) -> None:
        self.faults = faults
        self.name = name
        self.mode = faults.mode
        slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:40]
        self.folder = faults.root / slug
        self.prefix = f"ctfault-{uuid.uuid4().hex[:8]}"
        self.keys = RedisKeys(self.prefix)
        self.spool_dir = self.folder / "spool"
        self.code = ""
        self.link_id = 0
        self.publisher_id = 0
        self.base_url = ""  # where the load goes
        self.children: list[Child] = []
        self.load_stats = LoadStats()
        self.extra_expected: dict[str, str] = {}  # clicks a scenario put in the stream itself
        self.notes: list[str] = []
        self.timeline: list[tuple[float, str]] = []
        self.web_urls: dict[str, str] = {}
        self.load_started = time.monotonic()
        # Scenario 12: more links the load asks for, one request in SIDE_EVERY (``code_for``);
        # their clicks are counted with the scenario's link's. Of them, the links no process
        # has a copy of yet: see ``Load._uncached_503``.
        self.side_codes: list[str] = []
        self.uncached_codes: set[str] = set()
        # Scenario 18: a Redis of the scenario's own (behind a proxy) and more settings, for
        # every process it starts and for its own views of the stream.
        self.redis_url: str | None = None
        self.extra_env: dict[str, str] = {}
        # The cluster scenarios (tests/faults/test_cluster_faults.py): the stream shards the
        # drain and the views look at, and a load whose every click is a new session.
        self.shards = 1
        self.fresh_sessions = False

    def code_for(self, n: int) -> str:
        """The code the load's n-th request asks for."""
        if self.side_codes and n % SIDE_EVERY == 0:
            return self.side_codes[n // SIDE_EVERY % len(self.side_codes)]
        return self.code

    # Processes.

    def _settings(self, redis_url: str | None = None) -> dict[str, str]:
        return {
            "CLICKTRACK_REDIS_URL": redis_url or self.redis_url or self.faults.redis.url,
            "CLICKTRACK_DATABASE_URL": self.faults.postgres.url,
            "CLICKTRACK_KEY_PREFIX": self.prefix,
            "CLICKTRACK_SPOOL_DIR": str(self.spool_dir),
            "CLICKTRACK_COOKIE_SECURE": "false",
            "CLICKTRACK_LINK_CACHE_TTL_S": LINK_CACHE_TTL_S,
            "CLICKTRACK_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS),
            "CLICKTRACK_WORKERS": "1",
            **self.extra_env,
        }

    def _log_path(self, name: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{name}.log"

    async def start_web(
        self,
        *,
        redis_url: str | None = None,
        name: str = "web",
        serve: bool = True,
        module: str = "app.serve",
    ) -> Child:
        """A web app on a port of its own; the load goes to it if ``serve``. ``module``: a
        stand-in for ``app.serve`` (scenario 17's next release)."""
        child, base_url = await start_web(
            self._settings(redis_url), self.folder, self._log_path(name), name=name, module=module
        )
        self.children.append(child)
        if serve:
            self.base_url = base_url
        self.web_urls[child.name] = base_url
        return child

    async def wait_ready(self, name: str, within: float = 30.0) -> dict[str, Any]:
        """Until web process ``name``'s ``/readyz`` answers 200 (``start_web`` waits for
        ``/healthz`` only: alive, not necessarily able to serve); its body. Fails if the
        process exits or ``within`` seconds pass."""
        child = next(c for c in self.children if c.name == name)
        deadline = time.monotonic() + within
        last = "no answer"
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                try:
                    response = await client.get(f"{self.web_urls[name]}/readyz")
                    if response.status_code == 200:
                        body: dict[str, Any] = response.json()
                        return body
                    last = f"{response.status_code} {response.text[:200]}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                assert child.running(), f"{name} exited ({child.returncode}):\n{child.tail()}"
                assert time.monotonic() < deadline, f"{name} never ready ({last}):\n{child.tail()}"
                await asyncio.sleep(0.1)

    @contextlib.asynccontextmanager
    async def inserts_held(self) -> AsyncIterator[None]:
        """Postgres takes no new click while this lasts: a flusher that read a batch holds it,
        blocked in its INSERT (a slow or locked database, as the flusher sees it)."""
        conn = await asyncpg.connect(self.faults.postgres.url)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE clicks IN SHARE ROW EXCLUSIVE MODE")
                yield
        finally:
            await conn.close()

    async def start_flusher(
        self, consumer: str, *, module: str = "app.flusher", env: dict[str, str] | None = None
    ) -> Child:
        """A flusher process; ``env``: more settings (``CLICKTRACK_FLUSHER_SHARDS``)."""
        env = child_env(
            {
                **self._settings(),
                **(env or {}),
                "CLICKTRACK_CONSUMER_NAME": consumer,
                "CLICKTRACK_FLUSHER_METRICS_PORT": "0",  # several flushers share the host
                # and a heartbeat file each (the default is one per host: one per container).
                "CLICKTRACK_FLUSHER_HEARTBEAT_FILE": str(self.folder / f"{consumer}.heartbeat"),
            }
        )
        child = Child(consumer, ["-m", module], env, self.folder, self._log_path(consumer))
        self.children.append(child)
        await child.wait_for_log("flusher_started", within=30)
        return child

    async def stop_all(self) -> None:
        await asyncio.gather(*(child.stop() for child in self.children))

    # Load.

    @contextlib.asynccontextmanager
    async def load(self) -> AsyncIterator[Load]:
        """Load runs in the background for the body of the ``async with``."""
        load = Load(self, self.mode)
        self.load_stats = load.stats
        self.load_started = load.started
        task = asyncio.create_task(load.run())
        try:
            yield load
        finally:
            load.stop.set()
            await task

    async def warmup(self) -> None:
        await asyncio.sleep(self.mode.warmup_s)

    async def outage(self, scale: float = 1.0) -> None:
        await asyncio.sleep(self.mode.outage_s * scale)

    async def tail(self) -> None:
        await asyncio.sleep(self.mode.tail_s)

    def expect(self, click_id: str, af: str) -> None:
        self.extra_expected[click_id] = af

    def note(self, text: str) -> None:
        self.notes.append(text)

    def mark(self, event: str) -> None:
        """Remember when something was broken or healed, for messages about latency."""
        self.timeline.append((time.monotonic() - self.load_started, event))

    def describe_latency(self) -> str:
        stats = self.load_stats
        events = ", ".join(f"{what} at {at:.1f}s" for at, what in self.timeline)
        return (
            f"slowest redirect {stats.worst_latency_s:.2f}s, sent at {stats.worst_at_s:.1f}s "
            f"into the load ({events or 'no fault marked'})"
        )

    # Redis views.

    @contextlib.asynccontextmanager
    async def redis(self) -> AsyncIterator[aioredis.Redis]:
        """A client of the scenario's Redis: a cluster client for ``redis+cluster://``."""
        url = self.redis_url or self.faults.redis.url
        options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2}
        if is_cluster_url(url):
            seeds = urlsplit(url).netloc.split(",")
            nodes = [ClusterNode(h, int(p)) for h, _, p in (s.rpartition(":") for s in seeds)]
            client = cast(aioredis.Redis, RedisCluster(startup_nodes=nodes, **options))
        else:
            client = aioredis.Redis.from_url(url, **options)
        try:
            yield client
        finally:
            await client.aclose()

    async def pending_of(self, consumer: str, shard: int = 0) -> int:
        keys = self.keys.for_shard(shard)
        async with self.redis() as client:
            try:
                consumers = await client.xinfo_consumers(keys.clicks_stream, keys.consumer_group)
            except aioredis.ResponseError:
                return 0
        for info in consumers:
            if _text(info["name"]) == consumer:
                return int(info["pending"])
        return 0

    async def stream_length(self) -> int:
        async with self.redis() as client:
            lengths = [
                await client.xlen(self.keys.for_shard(shard).clicks_stream)
                for shard in range(self.shards)
            ]
        return sum(int(n) for n in lengths)

    async def backlog(self) -> tuple[int, bool]:
        """(entries delivered and not acked, whether undelivered entries remain), over
        every stream shard."""
        pending, undelivered = 0, False
        async with self.redis() as client:
            for shard in range(self.shards):
                shard_pending, shard_undelivered = await _backlog(
                    client, self.keys.for_shard(shard)
                )
                pending += shard_pending
                undelivered = undelivered or shard_undelivered
        return pending, undelivered

    def spooled_bytes(self) -> int:
        if not self.spool_dir.is_dir():
            return 0
        return sum(path.stat().st_size for path in self.spool_dir.glob("spool-*.log"))

    async def postgres_activity(self) -> str:
        """Who waits on what in Postgres: for messages about a stalled flusher."""
        conn = await asyncpg.connect(self.faults.postgres.url, timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT pid, state, wait_event_type, wait_event, left(query, 80) AS query "
                "FROM pg_stat_activity WHERE datname = current_database() AND pid <> "
                "pg_backend_pid()"
            )
        finally:
            await conn.close()
        return "\n".join(str(dict(row)) for row in rows)

    # The count.

    async def rows(self) -> list[tuple[str, str | None]]:
        conn = await asyncpg.connect(self.faults.postgres.url, timeout=5)
        try:
            records = await conn.fetch(
                "SELECT click_id::text AS id, af FROM clicks WHERE code = ANY($1::text[])",
                [self.code, *self.side_codes],
            )
        finally:
            await conn.close()
        return [(record["id"], record["af"]) for record in records]

    async def drain(self) -> None:
        """Until nothing is spooled, nothing is waiting in the stream and the row count holds
        still; fails after ``mode.drain_s``."""
        deadline = time.monotonic() + self.mode.drain_s
        previous, steady = -1, 0
        state: object = None
        while True:
            try:
                pending, undelivered = await self.backlog()
                count = len(await self.rows())
                spooled = self.spooled_bytes()
                state = {"pending": pending, "undelivered": undelivered, "spooled": spooled}
                quiet = not pending and not undelivered and not spooled
                steady = steady + 1 if quiet and count == previous else 0
                previous = count
                if steady >= 3:
                    return
            except (OSError, aioredis.RedisError, asyncpg.PostgresError) as exc:
                state, steady = repr(exc), 0
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: the pipeline did not drain in {self.mode.drain_s:.0f}s "
                    f"({state}); logs:\n{self.logs()}"
                )
            await asyncio.sleep(0.25)

    async def check(self) -> Row:
        """Wait for the drain, then count; the row goes to the table."""
        await self.drain()
        stats = self.load_stats
        expected = {**stats.accepted, **self.extra_expected}
        rows = await self.rows()
        ids = Counter(click_id for click_id, _ in rows)
        af_of = dict(rows)
        row = Row(
            scenario=self.name,
            requests=stats.sent,
            accepted=len(expected),
            stored=len(rows),
            duplicates=len(rows) - len(ids),
            lost=sum(1 for click_id in expected if click_id not in ids),
            server_errors=sum(n for status, n in stats.statuses.items() if status >= 500),
            connection_errors=sum(stats.errors.values()),
            other_answers=sum(
                n for status, n in stats.statuses.items() if status != 302 and status < 500
            ),
            mismatched=sum(1 for i, af in expected.items() if i in af_of and af_of[i] != af),
            worst_latency_s=stats.worst_latency_s,
            note="; ".join(self.notes),
        )
        if os.environ.get("CLICKTRACK_FAULTS_DEBUG"):
            row.note += f" [{self.describe_latency()}]"
        if stats.samples_5xx:
            row.note += f"; 5xx seen: {stats.samples_5xx}"
        if stats.errors:
            row.note = "; ".join(
                filter(None, [row.note, f"no answer: {dict(stats.errors)} (never accepted)"])
            )
        ROWS.append(row)
        return row

    def logs(self, lines: int = 15) -> str:
        return "\n".join(
            f"--- {child.name} (pid {child.pid}, exit {child.returncode}):\n{child.tail(lines)}"
            for child in self.children
        )

    async def web_metrics(self) -> dict[str, float]:
        """Every sample of the web process's /metrics (at ``base_url``): the sample's name,
        labels included, -> its value."""
        async with httpx.AsyncClient(timeout=5.0) as client:
            text = (await client.get(f"{self.base_url}/metrics")).text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def flusher_stats(self, child: Child) -> dict[str, Any]:
        """The counters a flusher logged when it stopped (empty if it never did: killed)."""
        for line in reversed(child.log().splitlines()):
            if '"flusher_stopped"' in line:
                stats: dict[str, Any] = orjson.loads(line)
                return stats
        return {}


async def _backlog(client: aioredis.Redis, keys: RedisKeys) -> tuple[int, bool]:
    """One stream's (pending entries, whether undelivered entries remain)."""
    try:
        info = await client.xinfo_stream(keys.clicks_stream)
        groups = await client.xinfo_groups(keys.clicks_stream)
    except aioredis.ResponseError:  # no stream yet
        return 0, False
    last = _text(info["last-generated-id"])
    for group in groups:
        if _text(group["name"]) == keys.consumer_group:
            undelivered = _id(_text(group["last-delivered-id"])) < _id(last)
            return int(group["pending"]), undelivered
    return 0, info["length"] > 0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# --- The session ------------------------------------------------------------------------------


class Faults:
    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        # Postgres runs as an unprivileged user when we are root: it must reach its folder.
        self.root = Path(tempfile.mkdtemp(prefix="clicktrack-faults-"))
        self.root.chmod(0o755)
        self.redis = RedisNode(self.root / "redis", free_port())
        self.postgres = PostgresNode(self.root / "pg", free_port())
        self.publisher_id = 0
        self._keep = False

    async def open(self) -> None:
        await asyncio.gather(
            asyncio.to_thread(self.redis.start), asyncio.to_thread(self.postgres.start)
        )
        migrate = Child(
            "migrate",
            ["-m", "app.cli", "migrate"],
            child_env({"CLICKTRACK_DATABASE_URL": self.postgres.url}),
            self.root,
            self.root / "migrate.log",
        )
        code = await migrate.wait(60)
        assert code == 0, f"migrate failed ({code}):\n{migrate.tail()}"
        conn = await asyncpg.connect(self.postgres.url)
        try:
            self.publisher_id = await conn.fetchval(
                "INSERT INTO publishers (name) VALUES ('faults') RETURNING id"
            )
        finally:
            await conn.close()

    async def close(self) -> None:
        await asyncio.to_thread(self.redis.stop)
        await asyncio.to_thread(self.postgres.stop)
        if not self._keep:
            shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def scenario(self, name: str) -> AsyncIterator[Scenario]:
        """A scenario's processes live for the body; whatever it broke is healed after."""
        await asyncio.to_thread(self.redis.ensure_up)
        await asyncio.to_thread(self.postgres.ensure_up)
        scenario = Scenario(self, name)
        conn = await asyncpg.connect(self.postgres.url)
        try:
            link = await link_store.create_link(conn, self.publisher_id, DESTINATION)
        finally:
            await conn.close()
        scenario.code, scenario.link_id = link.code, link.id
        scenario.publisher_id = self.publisher_id
        try:
            yield scenario
        except BaseException:
            self._keep = True  # leave the logs for a look
            raise
        finally:
            await scenario.stop_all()
            await asyncio.to_thread(self.redis.ensure_up)
            await asyncio.to_thread(self.postgres.ensure_up)
