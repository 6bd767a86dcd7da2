"""Probes: does a Redis or a Postgres answer, and creating a database."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack.base import DevstackError
from devstack.net import redact

T = TypeVar("T")

_POSTGRES_ERRORS = (
    OSError,
    TimeoutError,
    ValueError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run coro to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def redis_problem(url: str, timeout: float = 2.0) -> str | None:
    """None if the Redis at url answers PING, else why not."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
    except ValueError as exc:
        return str(exc)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()
    return None


def redis_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether the Redis at url answers PING."""
    return redis_problem(url, timeout) is None


async def _postgres_ping(dsn: str, connect_timeout: float) -> None:
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def postgres_problem(dsn: str, timeout: float = 3.0) -> str | None:
    """None if a connection to dsn works, else why not."""
    try:
        _run_coroutine(_postgres_ping(dsn, timeout))
    except _POSTGRES_ERRORS as exc:
        return str(exc) or type(exc).__name__
    return None


def postgres_answers(dsn: str, timeout: float = 3.0) -> bool:
    """Whether a connection to dsn works."""
    return postgres_problem(dsn, timeout) is None


async def _ensure_database(maintenance_dsn: str, name: str) -> bool:
    conn = await asyncpg.connect(maintenance_dsn, timeout=5)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:  # created concurrently
            return False
        return True
    finally:
        await conn.close()


def ensure_database(maintenance_dsn: str, name: str) -> bool:
    """Create database name on the server of maintenance_dsn if missing; True if created."""
    try:
        return _run_coroutine(_ensure_database(maintenance_dsn, name))
    except _POSTGRES_ERRORS as exc:
        raise DevstackError(
            f"cannot create database {name!r} via {redact(maintenance_dsn)}: {exc}"
        ) from exc
