"""``python -m app.flusher``: settings, logging, signals, exit codes.

Exit 0 after SIGTERM or SIGINT (the batch in hand is written and acked first), 128 + the
signal's number when a second one comes before that ended, 2 on bad configuration. Outages
of Redis or Postgres are waited out, never a reason to exit.

``python -m app.flusher --check``: the liveness probe. Exit 0 when the heartbeat the running
flusher's event loop writes is fresh, 1 with a one-line reason otherwise
(``app/core/liveness.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvloop
from prometheus_client import start_http_server

from app.core import liveness
from app.core.db import create_pool
from app.core.logs import setup_logging
from app.core.redis import create_redis
from app.flusher.dimensions import resolver_for
from app.flusher.loop import WRITERS, Flusher, default_consumer_name, log
from app.settings import ConfigError, Settings, load_settings

EXIT_BAD_CONFIG = 2


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    liveness.stop_on_signals(asyncio.get_running_loop(), stop)
    # Alive from the start: connecting to Redis or Postgres may take a while.
    heartbeat = asyncio.create_task(
        liveness.keep_beating(settings.flusher_heartbeat_file, settings.flusher_heartbeat_max_age_s)
    )
    try:
        await _serve(settings, stop)
    finally:
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)


async def _serve(settings: Settings, stop: asyncio.Event) -> None:
    # The socket timeout must outlast a blocking read.
    redis = create_redis(settings, "flusher")
    shards = settings.shards_to_flush()
    # A connection per batch being written (WRITERS per loop), plus one for partitions and
    # retention and one for folding the rollup deltas.
    # A flusher frozen mid-transaction (paused, swapped out, partitioned) must not hold its
    # row locks for ever: the others, claiming its entries, would queue behind them.
    # Postgres ends such a transaction well before the entries can be claimed.
    idle_ms = max(1000, settings.claim_idle_ms // 2)
    pool = await create_pool(
        settings.database_url,
        min_size=0,
        max_size=len(shards) * settings.flush_loops * WRITERS + 2,
        server_settings={"idle_in_transaction_session_timeout": str(idle_ms)},
    )
    base_name = settings.consumer_name or default_consumer_name()
    # Several loops per shard keep Redis, Postgres and this process busy at once; each is a
    # consumer of its own, named after the process and its number.
    loops = settings.flush_loops
    flushers = [
        Flusher(settings, redis, pool, consumer=_loop_name(base_name, n, loops), shard=shard)
        for shard in shards
        for n in range(loops)
    ]
    if settings.flusher_metrics_port:
        try:
            start_http_server(settings.flusher_metrics_port, addr=settings.flusher_metrics_host)
        except OSError as exc:  # flushing matters more than being watched
            log.error(
                "metrics_port_unavailable",
                extra={
                    "host": settings.flusher_metrics_host,
                    "port": settings.flusher_metrics_port,
                    "error": str(exc),
                },
            )
    try:
        await asyncio.gather(*(flusher.run(stop) for flusher in flushers))
    finally:
        await pool.close()
        await redis.aclose()


def _loop_name(base: str, number: int, loops: int) -> str:
    return base if loops == 1 else f"{base}-{number}"


def check() -> int:
    """The liveness probe: 0 when the heartbeat is fresh, else 1 and why, on one line."""
    return liveness.probe(
        "flusher", lambda s: (s.flusher_heartbeat_file, s.flusher_heartbeat_max_age_s)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.flusher", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="liveness probe: is the heartbeat fresh?"
    )
    if parser.parse_args(argv).check:
        return check()
    setup_logging()
    try:
        settings = load_settings()
        # Built now, shared by every loop later: an unusable CLICKTRACK_GEO_DATABASE is a bad
        # configuration (exit code and message as such), not a crash in a loop.
        resolver_for(settings)
    except ConfigError as exc:
        log.error("invalid_configuration", extra={"error": str(exc)})
        return EXIT_BAD_CONFIG
    uvloop.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
