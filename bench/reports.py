"""``make bench-reports``: how fast the reports answer on a large history, and what the traffic
rollups cost the flusher. See docs/performance.md, "Reports".

1. **Flusher cost of the rollups.** 200,000 clicks are added to the stream
   (``app.clicks.stream.add_many``) and drained by ``app.flusher.loop.Flusher`` in-process, with the
   rollups and without (``ClickSink(count_traffic=False)``), each on a fresh database,
   alternately; and the sink alone (``ClickSink.write`` of 2,000-row batches) the same way.
2. **History.** 10 million clicks over 60 days and 100,000 orders are generated straight in
   Postgres (``generate_series``): 1,000 publishers, the largest (publisher 1, the one
   measured) with a tenth of everything: 1 million clicks on 200 links, each link used with
   one to four combinations of af, cn and cv (30 af values in all), a free dp on half of
   them. The rollups are then built by ``backfill-rollups``' code,
   the statement the flusher runs. Two calculation periods of publisher 1 are closed (credits,
   a balance).
3. **Reports.** The API in-process (httpx over ASGI, the app's own pool): each report is asked
   ``--runs`` times after two warm-ups; the median and the 95th percentile are reported.

Everything runs on its own throwaway Redis and Postgres (``scripts/devstack/``), under
``.data/bench-reports/<time>/``, removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from devstack import base, net, probes, servers

from app.accounts.apikeys import Role, create_key
from app.clicks import stream
from app.clicks.record import Click, encode
from app.core.db import create_pool
from app.core.keys import RedisKeys
from app.core.migrate import migrate
from app.flusher.loop import Flusher
from app.flusher.sink import ClickSink, to_row
from app.main import create_app
from app.money import closing, plans_store
from app.money.periods import Period
from app.money.plan import DEFAULT_PLAN_FILE, read_plan_file
from app.settings import Settings
from app.traffic import recount, rollups
from bench import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results" / "reports.json"
DAYS = 60
BIG_SHARE = 0.10  # publisher 1's share of clicks and orders
PUBLISHERS = 1000
BIG_LINKS, LINKS = 200, 20
TYPICAL = 500  # a publisher with an average share (also measured)


def log(message: str) -> None:
    print(f"[bench-reports] {message}", flush=True)


# -- the servers -----------------------------------------------------------------------------


class Stores:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis = servers.start_redis(workdir / "redis", devstack_port())
        self.postgres = servers.start_postgres(workdir / "pg", devstack_port())

    def database(self, name: str) -> str:
        probes.ensure_database(self.postgres.url, name)
        url: str = net.with_database(self.postgres.url, name)
        return url

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()


def devstack_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def migrated(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


# -- 1. the flusher with and without rollups -------------------------------------------------


def drain_clicks(count: int, seed: int) -> list[Click]:
    """Today's clicks as the redirect makes them: 50 publishers, 1,000 links (popular ones
    more often), each link used with a few combinations of af, cn and cv (as publishers tag
    their placements), a free dp on half the clicks, returning sessions, a tenth flagged."""
    rng = random.Random(seed)
    now_us = int(time.time() * 1_000_000)
    combos = {
        link: [
            (
                None if rng.random() < 0.2 else f"af{rng.randrange(40)}",
                rng.choice((None, "spring", "summer", "autumn")),
                rng.choice((None, "banner", "text")),
            )
            for _ in range(rng.randint(1, 4))
        ]
        for link in range(1, 1001)
    }
    made = []
    for n in range(count):
        link = 1 + int(1000 * rng.random() ** 2)
        af, cn, cv = rng.choice(combos[link])
        made.append(
            Click(
                click_id=str(uuid.UUID(int=(now_us // 1000 << 80) | (7 << 76) | n)),
                ts_us=now_us - rng.randrange(3_600_000_000),
                link_id=link,
                code=f"L{link}",
                publisher_id=1 + link % 50,
                af=af,
                cn=cn,
                cv=cv,
                dp=None if rng.random() < 0.5 else uuid.UUID(int=rng.getrandbits(128)).hex[:12],
                session_id=f"s{rng.randrange(60_000)}",
                session_new=rng.random() < 0.3,
                ip=f"203.0.113.{rng.randrange(256)}",
                user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                referer="https://blog.example.org/post",
                accept_language="en-US,en;q=0.9",
                method="GET",
                flags=rng.choice((1, 2, 8)) if rng.random() < 0.1 else 0,
            )
        )
    return made


async def drain_once(
    stores: Stores, clicks: list[Click], *, count_traffic: bool, name: str, quality: bool
) -> float:
    """Seconds for one in-process flusher to drain ``clicks`` into a fresh database; without
    ``quality``, the flusher's own traffic-quality checks (crawler list, duplicates) are off."""
    url = stores.database(name)
    await migrated(url)
    prefix = f"benchdrain{uuid.uuid4().hex[:6]}"
    settings = Settings(redis_url=stores.redis.url, database_url=url, key_prefix=prefix)
    if not quality:
        off = {"flag_bots": False, "duplicate_window_s": 0, "ip_clicks_per_minute": 0}
        settings = settings.model_copy(update=off)
    redis = aioredis.Redis.from_url(settings.redis_url)
    pool = await create_pool(url, max_size=4)
    try:
        keys = RedisKeys(prefix)
        flusher = Flusher(settings, redis, pool, consumer="bench")
        flusher._sink = ClickSink(  # the switch measured
            pool, zone=settings.period_timezone, count_traffic=count_traffic
        )
        await flusher.run_once()  # the consumer group and today's partitions: not timed
        await stream.add_many(redis, keys, (encode(c) for c in clicks))
        started = time.perf_counter()
        while await flusher.run_once():
            pass
        elapsed = time.perf_counter() - started
        stored = await pool.fetchval("SELECT count(*) FROM clicks")
        assert stored == len(clicks), (stored, len(clicks))
        return elapsed
    finally:
        await pool.close()
        await redis.flushdb()
        await redis.aclose()


async def sink_once(
    stores: Stores, clicks: list[Click], *, count_traffic: bool, name: str
) -> float:
    """Seconds for ``ClickSink.write`` alone, 2,000-row batches, into a fresh database (and,
    with the rollups, the folds of their deltas, one per 50,000 rows as at 50,000 rows/s)."""
    url = stores.database(name)
    await migrated(url)
    pool = await create_pool(url, max_size=2)
    try:
        sink = ClickSink(pool, zone="UTC", count_traffic=count_traffic)
        await sink.ensure_partition(datetime.now(UTC).date())
        await sink.ensure_partition(datetime.now(UTC).date() - timedelta(days=1))
        rows = [to_row(c) for c in clicks]
        started = time.perf_counter()
        for n in range(0, len(rows), 2000):
            await sink.write(rows[n : n + 2000])
            if count_traffic and n % 50_000 == 48_000:  # the flusher folds once a second
                await sink.fold()
        if count_traffic:
            await sink.fold()
        return time.perf_counter() - started
    finally:
        await pool.close()


async def flusher_cost(stores: Stores, count: int, rounds: int) -> dict[str, Any]:
    clicks = drain_clicks(count, seed=1)
    kinds = ("drain", "drain_no_quality", "sink")
    results: dict[str, list[float]] = {
        f"{kind}_{mode}": [] for kind in kinds for mode in ("with", "without")
    }
    for n in range(rounds):
        for with_rollups in (False, True):
            mode = "with" if with_rollups else "without"
            log(f"round {n + 1}/{rounds}, {mode} rollups: {count:,} clicks")
            for kind in kinds:
                name = f"{kind}_{mode}_{n}"
                if kind == "sink":
                    seconds = await sink_once(stores, clicks, count_traffic=with_rollups, name=name)
                else:
                    quality = kind == "drain"
                    seconds = await drain_once(
                        stores, clicks, count_traffic=with_rollups, name=name, quality=quality
                    )
                results[f"{kind}_{mode}"].append(count / seconds)
    summary: dict[str, Any] = {k: round(statistics.median(v)) for k, v in results.items()}
    for kind in kinds:
        summary[f"{kind}_ratio"] = round(summary[f"{kind}_with"] / summary[f"{kind}_without"], 3)
    summary["clicks"] = count
    return summary


# -- 2. the history --------------------------------------------------------------------------

_LINKS = f"""
INSERT INTO links (id, code, publisher_id, destination) OVERRIDING SYSTEM VALUE
SELECT n, 'L' || n,
       CASE WHEN n <= {BIG_LINKS} THEN 1 ELSE 2 + (n - {BIG_LINKS} - 1) / {LINKS} END,
       'https://shop.example.com/item/' || n
FROM generate_series(1, {BIG_LINKS + (PUBLISHERS - 1) * LINKS}) AS n"""

# One chunk of clicks: publisher 1 gets BIG_SHARE of them on its links (popular ones more
# often), the others the rest. Each link is used with one to four combinations of af, cn and
# cv (combination k of link n is a function of n and k), a free dp on half the clicks.
_CLICKS = f"""
INSERT INTO clicks (click_id, ts, link_id, code, publisher_id, af, cn, cv, dp, session_id,
                    session_new, ip, user_agent, referer, accept_language, method, flags)
SELECT gen_random_uuid(), ts, link_id, 'L' || link_id,
       CASE WHEN link_id <= {BIG_LINKS} THEN 1
            ELSE 2 + (link_id - {BIG_LINKS} - 1) / {LINKS} END,
       CASE WHEN (link_id + k) % 10 = 0 THEN NULL ELSE 'af' || (link_id * 7 + k) % 30 END,
       CASE WHEN (link_id + k) % 6 = 0 THEN NULL ELSE 'cn' || (link_id + k) % 5 END,
       CASE WHEN (link_id + k) % 4 = 0 THEN NULL ELSE 'cv' || (link_id + 2 * k) % 3 END,
       CASE WHEN r6 < 0.5 THEN NULL ELSE substr(md5(r6::text), 1, 10) END,
       's' || floor(random() * 3000000)::int, random() < 0.3, '203.0.113.7',
       'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0', NULL, 'en-US', 'GET',
       CASE WHEN random() < 0.1 THEN 8 ELSE 0 END
FROM (
    SELECT ts, link_id, floor(random() * (1 + link_id % 4))::int AS k, r6
    FROM (
        SELECT $1::timestamptz - random() * interval '{DAYS} days' AS ts,
               CASE WHEN r1 < {BIG_SHARE} THEN 1 + floor({BIG_LINKS} * r2 * r2)::int
                    ELSE {BIG_LINKS} + 1 + floor({(PUBLISHERS - 1) * LINKS} * r2)::int
               END AS link_id,
               random() AS r6
        FROM (SELECT random() AS r1, random() AS r2 FROM generate_series(1, $2)) AS draws
    ) AS c
) AS d"""

_ORDERS = f"""
INSERT INTO orders (merchant_id, order_ref, click_ref, ordered_at, amount, category, new_buyer,
                    status, status_at, completed_at, attribution, publisher_id, link_id, code,
                    af, cn, cv, dp, click_flags, attributed_at)
SELECT 1, 'B-' || n, gen_random_uuid()::text, ordered_at,
       round((5 + random() * 300)::numeric, 2),
       (ARRAY['home-garden', 'toys', 'computer-office/tablets', 'apparel'])[1 + n % 4],
       random() < 0.3, status,
       CASE WHEN status = 'completed' THEN completed ELSE ordered_at END,
       CASE WHEN status = 'completed' THEN completed END,
       'attributed', publisher, link_id, 'L' || link_id,
       'af' || floor(30 * random() * random())::int, 'cn' || n % 5, NULL, NULL, 0, ordered_at
FROM (
    SELECT n, ordered_at, completed, status, publisher,
           CASE WHEN publisher = 1 THEN 1 + floor({BIG_LINKS} * random())::int
                ELSE {BIG_LINKS} + 1 + (publisher - 2) * {LINKS} + floor({LINKS} * random())::int
           END AS link_id
    FROM (
        SELECT n, ordered_at,
               LEAST($1::timestamptz, ordered_at + random() * interval '20 days') AS completed,
               (ARRAY['completed', 'completed', 'completed', 'completed', 'incomplete',
                      'incomplete', 'incomplete', 'completed_payment', 'refunded', 'refunded'])
                   [1 + floor(random() * 10)::int] AS status,
               CASE WHEN big THEN 1 ELSE 2 + floor(random() * {PUBLISHERS - 1})::int END
                   AS publisher
        FROM (SELECT n, $1::timestamptz - random() * interval '{DAYS} days' AS ordered_at,
                     random() < {BIG_SHARE} AS big
              FROM generate_series(1, $2) AS n) AS o
    ) AS p
) AS x"""


async def timed(what: str, action: Awaitable[Any]) -> float:
    started = time.perf_counter()
    await action
    seconds = time.perf_counter() - started
    log(f"{what}: {seconds:.1f} s")
    return seconds


async def build_history(url: str, clicks: int, orders: int, now: datetime) -> dict[str, Any]:
    await migrated(url)
    conn = await asyncpg.connect(url, command_timeout=3600)
    figures: dict[str, Any] = {"clicks": clicks, "orders": orders}
    try:
        await conn.execute(
            f"""INSERT INTO publishers (id, name) OVERRIDING SYSTEM VALUE
                SELECT n, 'Bench publisher ' || n FROM generate_series(1, {PUBLISHERS}) AS n"""
        )
        await conn.execute(_LINKS)
        await conn.execute("INSERT INTO merchants (name, secret) VALUES ('bench', repeat('x', 40))")
        await plans_store.put_plan(conn, read_plan_file(DEFAULT_PLAN_FILE))
        today = now.date()
        for back in range(DAYS + 1):
            await conn.execute("SELECT ensure_click_partition($1)", today - timedelta(days=back))
        started = time.perf_counter()
        chunk = 1_000_000
        for done in range(0, clicks, chunk):
            await conn.execute(_CLICKS, now, min(chunk, clicks - done))
            log(f"clicks: {min(done + chunk, clicks):,} of {clicks:,}")
        figures["generate_clicks_s"] = round(time.perf_counter() - started, 1)
        figures["generate_orders_s"] = round(
            await timed("orders", conn.execute(_ORDERS, now, orders)), 1
        )
        started = time.perf_counter()
        days = await rollups.days_with_clicks(conn, today - timedelta(days=DAYS + 1), today, UTC)
        for day in days:
            await rollups.backfill_day(conn, day, UTC)
        seconds = time.perf_counter() - started
        log(f"rollups (backfill, the flusher's statement): {seconds:.1f} s")
        figures["backfill_s"] = round(seconds, 1)
        figures["backfill_clicks_per_s"] = round(clicks / seconds)
        await conn.execute("VACUUM ANALYZE")
        for table in ("traffic_link_days", "traffic_tracking_days", "traffic_sessions", "clicks"):
            rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
            size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            if table == "clicks":
                size = await conn.fetchval(
                    """SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
                       WHERE inhparent = 'clicks'::regclass"""
                )
            figures[f"{table}_rows"] = rows
            figures[f"{table}_mb"] = round(size / 2**20)
        figures["big_publisher_clicks_30d"] = await conn.fetchval(
            """SELECT sum(clicks) FROM traffic_link_days WHERE publisher_id = 1
                 AND day > $1::date - 30""",
            today,
        )
        figures["big_publisher_orders"] = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE publisher_id = 1"
        )
    finally:
        await conn.close()
    pool = await create_pool(url, max_size=2)
    try:
        previous = Period.containing(now, UTC).previous()
        for period in (previous.previous(), previous):
            await closing.close_period(pool, period, UTC, now, publisher_id=1)
        log("closed two periods of publisher 1")
    finally:
        await pool.close()
    return figures


# -- 3. the reports --------------------------------------------------------------------------


async def measure(call: Callable[[], Awaitable[httpx.Response]], runs: int) -> dict[str, float]:
    for _ in range(2):
        answer = await call()
        assert answer.status_code == 200, answer.text[:500]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = await call()
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
        "max_ms": round(times[-1], 1),
    }


async def measure_reports(url: str, redis_url: str, runs: int) -> dict[str, Any]:
    settings = Settings(
        database_url=url, redis_url=redis_url, key_prefix="benchreports", cookie_secure=False
    )
    conn = await asyncpg.connect(url)
    try:
        _, key = await create_key(conn, Role.publisher, 1, "bench")
        _, typical_key = await create_key(conn, Role.publisher, TYPICAL, "bench")
    finally:
        await conn.close()
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {key}"}
    results: dict[str, Any] = {}
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url="http://bench",
            headers=headers,
            timeout=120,
        ) as client,
    ):
        reports = {
            "traffic, 30 days by day": ("/api/v1/reports/traffic", {}),
            "traffic, 30 days by day and link": (
                "/api/v1/reports/traffic",
                {"group_by": "day,link"},
            ),
            "traffic, 30 days by af": ("/api/v1/reports/traffic", {"group_by": "af"}),
            "traffic, 30 days by af, cn, cv": (
                "/api/v1/reports/traffic",
                {"group_by": "af,cn,cv"},
            ),
            "overview, 30 days": ("/api/v1/reports/overview", {}),
            "income, 12 periods": ("/api/v1/reports/income", {}),
        }
        for name, (path, params) in reports.items():
            results[name] = await measure(functools.partial(client.get, path, params=params), runs)
            log(f"{name}: {results[name]}")
        typical = {"Authorization": f"Bearer {typical_key}"}
        for name, path in (
            ("traffic, 30 days by day", "/api/v1/reports/traffic"),
            ("overview, 30 days", "/api/v1/reports/overview"),
        ):
            label = f"{name} (publisher {TYPICAL}: typical)"
            results[label] = await measure(
                functools.partial(client.get, path, headers=typical), runs
            )
            log(f"{label}: {results[label]}")
        # For comparison: what reports from raw clicks cost (no index serves a publisher).
        today = datetime.now(UTC).date()
        conn = await asyncpg.connect(url)
        try:
            started = time.perf_counter()
            await recount.traffic_by_day_and_link(conn, 1, today - timedelta(days=29), today, UTC)
            results["traffic, 30 days by day and link, recounted from raw clicks"] = {
                "seconds": round(time.perf_counter() - started, 2)
            }
        finally:
            await conn.close()
        raw = {"group_by": "day,dp", "from": str(today - timedelta(days=6)), "limit": "1"}
        results["traffic, 7 days by day and dp (raw clicks)"] = await measure(
            lambda: client.get("/api/v1/reports/traffic", params=raw), max(3, runs // 5)
        )
        started = time.perf_counter()
        rows = 0
        async with client.stream(
            "GET", "/api/v1/reports/orders.csv", params={"from": str(today - timedelta(days=DAYS))}
        ) as answer:
            async for line in answer.aiter_lines():
                rows += bool(line)
        seconds = time.perf_counter() - started
        results["Live Order Tracking CSV, every order of publisher 1"] = {
            "rows": rows - 1,
            "seconds": round(seconds, 2),
            "rows_per_s": round((rows - 1) / seconds),
        }
        log(f"orders CSV: {rows - 1:,} rows in {seconds:.2f} s")
        token = (await client.get("/dashboard/login")).text.split('name="csrf" value="')[1]
        await client.post("/dashboard/login", data={"api_key": key, "csrf": token.split('"')[0]})
        results["dashboard page, 30 days"] = await measure(lambda: client.get("/dashboard"), runs)
    return results


async def recount_check(url: str) -> bool:
    """The rollups of one day agree with a recount of its raw rows."""
    conn = await asyncpg.connect(url)
    try:
        day = datetime.now(UTC).date() - timedelta(days=3)
        return await recount.rollup_tracking_days(conn, day, day) == (
            await recount.recount_tracking_days(conn, day, day, UTC)
        )
    finally:
        await conn.close()


async def run(stores: Stores, options: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"started": datetime.now(UTC).isoformat()}
    if options.drain:
        report["flusher"] = await flusher_cost(stores, options.drain, options.rounds)
    url = stores.database("clicktrack_bench_reports")
    now = datetime.now(UTC)
    report["history"] = await build_history(url, options.clicks, options.orders, now)
    report["rollups_match_recount"] = await recount_check(url)
    report["reports"] = await measure_reports(url, stores.redis.url, options.runs)
    return report


def print_report(report: dict[str, Any]) -> None:
    print()
    if "flusher" in report:
        f = report["flusher"]
        print(f"Flusher, {f['clicks']:,} clicks (medians, clicks/s):")
        for kind, label in (
            ("drain", "drain: stream -> Flusher -> Postgres"),
            ("drain_no_quality", "the same, quality checks off"),
            ("sink", "sink alone (ClickSink.write)"),
        ):
            print(
                f"  {label:<38} without rollups {f[kind + '_without']:>8,}   "
                f"with {f[kind + '_with']:>8,}   ratio {f[kind + '_ratio']}"
            )
    h = report["history"]
    print(
        f"History: {h['clicks']:,} clicks, {h['orders']:,} orders; publisher 1: "
        f"{h['big_publisher_clicks_30d']:,} clicks in 30 days, {h['big_publisher_orders']:,} "
        f"orders; rollups built at {h['backfill_clicks_per_s']:,} clicks/s; "
        f"link-day rows {h['traffic_link_days_rows']:,}, tracking-day rows "
        f"{h['traffic_tracking_days_rows']:,}, session rows {h['traffic_sessions_rows']:,}"
    )
    print(f"Rollups agree with a recount of raw rows: {report['rollups_match_recount']}")
    print(f"{'report':<60} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for name, figures in report["reports"].items():
        if "median_ms" in figures:
            print(
                f"{name:<60} {figures['median_ms']:>10} {figures['p95_ms']:>8} "
                f"{figures['max_ms']:>8}"
            )
        else:
            print(f"{name:<60} {figures}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__)
    parser.add_argument("--clicks", type=int, default=10_000_000)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per report")
    parser.add_argument("--drain", type=int, default=200_000, help="clicks; 0: skip phase 1")
    parser.add_argument("--rounds", type=int, default=2, help="drains per mode")
    parser.add_argument("--keep", action="store_true", help="keep the servers' data folder")
    options = parser.parse_args(argv)
    workdir = PROJECT_ROOT / ".data" / "bench-reports" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True)
    try:
        stores = Stores(workdir)
    except base.DevstackError as exc:
        log(f"error: {exc}")
        return 1
    try:
        report = asyncio.run(run(stores, options))
    finally:
        stores.stop()
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report)
    log(f"written to {RESULTS.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
