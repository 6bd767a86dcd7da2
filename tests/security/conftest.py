"""Bad input, on the whole app with real Redis and Postgres.

One app per module (its lifespan run once: fuzzers send thousands of requests), a link and
the keys of an admin and of a publisher; the fuzz counts are printed at the end of the run.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from app.accounts.apikeys import Role, create_key
from app.core.db import Pool
from app.links import model as link_model
from app.links import store as link_store
from app.main import create_app
from app.settings import Settings
from tests.conftest import TEST_REDIS_URL

DESTINATION = "https://shop.example.com/item/42?ref=blog#reviews"
FUZZ: Counter[str] = Counter()  # cases tried, by fuzzer; a failure fails its test


@dataclass(frozen=True)
class Target:
    """The app, running, and what to call it with."""

    app: ASGIApp
    settings: Settings
    link: link_model.Link
    admin_key: str
    publisher_key: str
    publisher_id: int


def security_settings(database_url: str, prefix: str, spool_dir: Path) -> Settings:
    return Settings(
        redis_url=TEST_REDIS_URL,
        database_url=database_url,
        key_prefix=prefix,
        spool_dir=spool_dir,
        cookie_secure=False,
        cookie_secret="security-test-cookie-secret-0123456789",
        allowed_hosts=("example.com", "*.example.com"),
    )


@pytest.fixture(scope="module")
async def target(
    database_url: str, pool: Pool, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    prefix = f"ctsec:{uuid.uuid4().hex[:12]}"
    settings = security_settings(database_url, prefix, tmp_path_factory.mktemp("spool"))
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('security') RETURNING id"
        )
        link = await link_store.create_link(conn, publisher_id, DESTINATION)
        _, admin_key = await create_key(conn, Role.admin, None, "security admin")
        _, publisher_key = await create_key(conn, Role.publisher, publisher_id, "security")
    try:
        async with LifespanManager(create_app(settings)) as manager:
            yield Target(manager.app, settings, link, admin_key, publisher_key, publisher_id)
    finally:
        client = aioredis.Redis.from_url(TEST_REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FUZZ:
        terminalreporter.section("fuzz runs")
        for name, count in sorted(FUZZ.items()):
            terminalreporter.write_line(f"{name}: {count} cases")
