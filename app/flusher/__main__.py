"""``python -m app.flusher``: settings, logging, signals, exit codes.

Exit 0 after SIGTERM or SIGINT (the batch in hand is written and acked first), 2 on bad
configuration. Outages of Redis or Postgres are waited out, never a reason to exit.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import redis.asyncio as aioredis

from app.db import create_pool
from app.flusher.loop import Flusher, log
from app.logs import setup_logging
from app.settings import ConfigError, Settings, load_settings

EXIT_BAD_CONFIG = 2


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The socket timeout must outlast a blocking read.
    redis = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.flush_block_ms / 1000 + 10,
        socket_connect_timeout=5,
    )
    pool = await create_pool(settings.database_url, min_size=0, max_size=2)  # connects lazily
    try:
        await Flusher(settings, redis, pool).run(stop)
    finally:
        await pool.close()
        await redis.aclose()


def main() -> int:
    setup_logging()
    try:
        settings = load_settings()
    except ConfigError as exc:
        log.error("invalid_configuration", extra={"error": str(exc)})
        return EXIT_BAD_CONFIG
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
