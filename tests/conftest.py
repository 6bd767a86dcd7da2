"""Shared fixtures. Integration tests run on real Redis and Postgres: each test session gets
its own database (unique name, dropped at the end) and each test its own Redis key prefix
(its keys deleted afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from app.accounts.apikeys import Role, create_key
from app.core.db import Pool, create_pool
from app.core.migrate import migrate
from app.main import create_app
from app.settings import Settings

TEST_REDIS_URL = os.environ.get("CLICKTRACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_ADMIN_DSN = os.environ.get(
    "CLICKTRACK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def dsn_for(database: str) -> str:
    base, _, _ = TEST_ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def create_database(name: str) -> str:
    conn = await asyncpg.connect(TEST_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn_for(name)


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(TEST_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def migrated_database(prefix: str) -> AsyncIterator[str]:
    """A migrated database of its own (a unique name starting with prefix); dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = await create_database(name)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield url
    finally:
        await drop_database(name)


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A migrated database of its own for this test session."""
    async with migrated_database("clicktrack_test") as url:
        yield url


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def key_prefix() -> AsyncIterator[str]:
    """A Redis key space of this test's own; whatever it left there is deleted afterwards."""
    prefix = f"cttest:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis(key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def settings(database_url: str, key_prefix: str, spool_dir: Path) -> Iterator[Settings]:
    yield Settings(
        redis_url=TEST_REDIS_URL,
        database_url=database_url,
        key_prefix=key_prefix,
        spool_dir=spool_dir,
        cookie_secure=False,
        cookie_secret="test-cookie-secret-test-cookie-secret",
        allowed_hosts=("example.com", "*.example.com", "shop.example.net"),
        claim_idle_ms=1000,
        flush_block_ms=50,
    )


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app in-process, lifespan run, behind an httpx client."""
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
        ) as client,
    ):
        yield client


@pytest.fixture
async def admin_key(pool: Pool) -> str:
    async with pool.acquire() as conn:
        _, key = await create_key(conn, Role.admin, None, "test admin")
    return key
