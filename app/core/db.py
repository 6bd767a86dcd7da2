"""The Postgres pool. Opened in lifespan (or by the flusher/CLI) and passed explicitly."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# What queries take: a plain connection (CLI) or one borrowed from the pool (API).
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


async def create_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    server_settings: dict[str, str] | None = None,
) -> Pool:
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=30,
        server_settings=server_settings,
    )
    assert pool is not None  # asyncpg returns None only when used as an awaitable context
    return pool
