"""Postgres's part of the drain, alone: ``ClickSink.write`` of the benchmark's clicks (with
their traffic dimensions), without Redis or the rest of the flusher, on a throwaway Postgres.

Four ways, each on a fresh database, in interleaved rounds: the rows alone
(``count_traffic=False``) and with the rollups, each with one writer and with two (as the
flusher has: two batches in their own transactions at once). With the rollups, the deltas
are folded every 25 batches (a second of clicks at 50,000/s) and once at the end, inside the
timed span. Prints, per row, the wall time and Postgres's CPU (every process of the server,
exited backends included), and the WAL written::

    .venv/bin/python -m bench.sink                 # 200,000 clicks, batches of 2,000, 2 rounds
    .venv/bin/python -m bench.sink --clicks 400000 --rounds 3

Run it on a quiet machine; compare figures of one run (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from devstack import net, probes

from app.clicks.record import decode
from app.core.db import create_pool
from app.core.migrate import migrate
from app.flusher.dimensions import of_click, shared_resolver
from app.flusher.sink import ClickSink, Row, to_row
from bench.cpu import tree_cpu_seconds
from bench.services import STOPPING_ERRORS, Stores
from bench.traffic import LinkRow, click_payloads

BATCH = 2_000
FOLD_EVERY = 25  # batches
WAYS = (("rows", False, 1), ("rows", False, 2), ("rollups", True, 1), ("rollups", True, 2))


def bench_rows(count: int) -> list[Row]:
    """``count`` rows as the flusher makes them from the benchmark's click records."""
    links = [LinkRow(n + 1, f"bench{n:05d}", 1) for n in range(1000)]
    resolver = shared_resolver(None, None)
    clicks = (decode(payload) for payload in click_payloads(links, count))
    return [to_row(click, of_click(resolver, click)) for click in clicks]


async def one_way(url: str, rows: list[Row], rollups: bool, writers: int) -> dict[str, float]:
    """Write ``rows`` into the database at ``url`` (migrated, empty) one way; its figures."""
    conn = await asyncpg.connect(url)
    await migrate(conn)
    pool = await create_pool(url, min_size=writers + 1, max_size=writers + 1)
    try:
        sink = ClickSink(pool, zone="UTC", count_traffic=rollups)
        today = datetime.now(UTC).date()
        for back in range(2):
            await sink.ensure_partition(today - timedelta(days=back))
        lsn = await conn.fetchval("SELECT pg_current_wal_lsn()")
        step = BATCH * writers
        started = time.perf_counter()
        written = 0
        for first in range(0, len(rows), step):
            ends = range(first, min(len(rows), first + step), BATCH)
            await asyncio.gather(*(sink.write(rows[n : n + BATCH]) for n in ends))
            before, written = written, written + len(ends)
            if rollups and written // FOLD_EVERY > before // FOLD_EVERY:
                await sink.fold()
        if rollups:
            await sink.fold()
        seconds = time.perf_counter() - started
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn)
        return {"seconds": seconds, "wal": float(wal)}
    finally:
        await pool.close()
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    parser.add_argument("--clicks", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = bench_rows(args.clicks)
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="clicktrack-sink-") as workdir:
        stores = Stores(Path(workdir))
        try:
            stores.start()
            assert stores.postgres is not None
            for round_ in range(args.rounds):
                for name, rollups, writers in WAYS:
                    database = f"sink_{name}_{writers}_{round_}"
                    probes.ensure_database(stores.postgres.url, database)
                    url = net.with_database(stores.postgres.url, database)
                    cpu = tree_cpu_seconds([stores.postgres.pid])
                    found = asyncio.run(one_way(url, rows, rollups, writers))
                    cpu = tree_cpu_seconds([stores.postgres.pid]) - cpu
                    figures = (found["seconds"], cpu, found["wal"])
                    results.setdefault((name, writers), []).append(figures)
                    took = found["seconds"]
                    print(f"sink: round {round_ + 1}, {name}, {writers} writer(s): {took:.2f} s")
        except STOPPING_ERRORS as exc:
            print(f"sink: {exc}")
            return 2
        finally:
            stores.stop()
            stores.remove_moved_data()  # the temporary folder's removal would leave it
    n = len(rows)
    print(f"\nthe sink alone: {n:,} clicks, batches of {BATCH:,}, median of {args.rounds} rounds")
    print(f"{'':28} {'rows/s':>9} {'wall us/row':>12} {'Postgres us/row':>16} {'WAL B/row':>10}")
    for (name, writers), runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        wal = statistics.median(r[2] for r in runs)
        label = f"{name}, {writers} writer{'s' if writers > 1 else ''}"
        print(
            f"{label:28} {n / wall:9,.0f} {wall / n * 1e6:12.1f} {cpu / n * 1e6:16.1f} "
            f"{wal / n:10,.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
