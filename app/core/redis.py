"""The Redis client factory: every process opens its clients here, with its options explicit."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis


def create_redis(
    url: str,
    *,
    max_connections: int | None = None,
    socket_timeout_s: float | None = None,
    connect_timeout_s: float | None = None,
) -> aioredis.Redis:
    """A client for ``url`` (``redis://`` or ``rediss://``) over a connection pool of its own.

    ``max_connections``: the pool's bound (None: redis-py's default).
    ``socket_timeout_s``: how long a reply may take, in seconds (None: redis-py's default; a
    blocking read such as ``XREADGROUP BLOCK`` needs one longer than its block).
    ``connect_timeout_s``: how long opening a connection may take, in seconds (None: the
    default).
    Opening the client connects nothing: the first command does.
    """
    options: dict[str, Any] = {}
    # Only what is set: redis-py's own defaults stand for the rest.
    if max_connections is not None:
        options["max_connections"] = max_connections
    if socket_timeout_s is not None:
        options["socket_timeout"] = socket_timeout_s
    if connect_timeout_s is not None:
        options["socket_connect_timeout"] = connect_timeout_s
    return aioredis.Redis.from_url(url, **options)
