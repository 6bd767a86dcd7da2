"""``python -m app.flusher``: settings, logging, signals, exit codes.

Exit 0 after SIGTERM or SIGINT (the batch in hand is written and acked first), 2 on bad
configuration. Outages of Redis or Postgres are waited out, never a reason to exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import UTC, datetime
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from pydantic import ValidationError

from app.db import create_pool
from app.flusher.loop import Flusher, log
from app.settings import Settings

EXIT_BAD_CONFIG = 2
_RECORD_ATTRIBUTES = {*vars(logging.makeLogRecord({})), "message", "asctime", "taskName"}


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, event, then the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        body.update((k, v) for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def config_errors(settings: Settings) -> list[str]:
    """What pydantic cannot see: URLs that the clients would only refuse later."""
    errors = []
    if urlsplit(settings.database_url).scheme not in ("postgresql", "postgres"):
        errors.append("CLICKTRACK_DATABASE_URL: expected postgresql://...")
    if urlsplit(settings.redis_url).scheme not in ("redis", "rediss", "unix"):
        errors.append("CLICKTRACK_REDIS_URL: expected redis://, rediss:// or unix://")
    return errors


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
    configure_logging()
    try:
        settings = Settings()
        errors = config_errors(settings)
    except ValidationError as exc:
        errors = [
            f"CLICKTRACK_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}"
            for err in exc.errors()
        ]
    if errors:
        log.error("invalid_configuration", extra={"errors": errors})
        return EXIT_BAD_CONFIG
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
