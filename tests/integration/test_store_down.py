"""The web app with a store down: it starts, serves what it can, says whether it is ready,
and the API fails fast (503, JSON, Retry-After) while Postgres cannot be reached, then works
again when it comes back, without a restart.

Postgres "down" comes in three shapes: a port where nothing listens (connection refused at
once), a listener that accepts and never answers (a host gone silent, dropped packets), and
the real Postgres behind a proxy the test severs, heals or freezes (an established connection
that stops answering). Redis down is a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from app.core.db import Pool
from app.core.keys import RedisKeys
from app.links import mirror
from app.links import model as link_model
from app.links import store as link_store
from app.main import create_app
from app.settings import Settings
from tests.support.processes import free_port
from tests.support.proxy import CuttableProxy

# Short, so that the test measures the bound, not the default (2 s).
TIMEOUT_MS = 1000
# What "answers quickly" means here: the bound plus room for a busy two-core machine.
FAST_S = 2.5
UNKNOWN_CODE = "zzNeverMade1"


@pytest.fixture
async def mirrored(pool: Pool, redis: aioredis.Redis, settings: Settings) -> link_model.Link:
    """A link in Postgres and in the Redis mirror, as the API leaves it."""
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('Down') RETURNING id"
        )
        link = await link_store.create_link(conn, publisher_id, "https://example.com/down")
    await mirror.publish_change(redis, RedisKeys(settings.key_prefix), link)
    return link


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app in-process, its lifespan started (it must start within 10 s)."""
    app = create_app(settings)
    async with (
        LifespanManager(app, startup_timeout=10) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://t"
        ) as client,
    ):
        yield client


@asynccontextmanager
async def silent_listener() -> AsyncIterator[int]:
    """A port on loopback that accepts connections and never answers: its port."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.transport.abort()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


class FreezableProxy(CuttableProxy):
    """A CuttableProxy that can also freeze: connections stay open, nothing gets through
    (a Postgres stopped with SIGSTOP, or a network that drops every packet)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.thawed = asyncio.Event()
        self.thawed.set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.thawed.wait()
                if self.cut:
                    break
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


def database_at(settings: Settings, port: int) -> Settings:
    """The settings with Postgres at ``port`` on loopback (same database name) and the
    short timeouts."""
    url = urlsplit(settings.database_url)
    moved = url._replace(netloc=f"postgres@127.0.0.1:{port}").geturl()
    return settings.model_copy(
        update={
            "database_url": moved,
            "database_timeout_ms": TIMEOUT_MS,
            "database_command_timeout_ms": TIMEOUT_MS,
        }
    )


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


def api_path(link: link_model.Link) -> str:
    """An API call that reads Postgres beyond the key's check."""
    return f"/api/v1/links/{link.code}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_unavailable(response: httpx.Response) -> dict[str, Any]:
    """A 503 in the API's JSON, with a message in words and a Retry-After."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["retry-after"]) > 0
    body: dict[str, Any] = response.json()
    assert body["error"] == "unavailable"
    assert "database" in body["message"], body
    assert "Error" not in body["message"], body  # words, not an exception's repr
    return body


async def assert_serves_without_postgres(
    client: httpx.AsyncClient, link: link_model.Link, admin_key: str
) -> None:
    """What a replica started with Postgres unreachable must do."""
    redirect = await client.get(f"/e/{link.code}")
    assert redirect.status_code == 302, redirect.text
    assert redirect.headers["location"].startswith(link.destination)

    unknown, took = await timed(client.get(f"/e/{UNKNOWN_CODE}"))
    assert unknown.status_code == 503, unknown.text
    assert took < 5.0, f"an uncached link took {took:.2f}s"

    ready, took = await timed(client.get("/readyz"))
    assert ready.status_code == 200, ready.text  # Redis answers: mirror and stream
    body = ready.json()
    assert body["ready"] is True and body["redis"] == "ok", body
    assert body["postgres"].startswith("down"), body
    assert took < FAST_S, f"/readyz took {took:.2f}s"

    api, took = await timed(client.get(api_path(link), headers=bearer(admin_key)))
    assert_unavailable(api)
    assert took < FAST_S, f"the API took {took:.2f}s to answer 503"

    page, took = await timed(client.get("/dashboard/login"))
    assert page.status_code == 503, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert int(page.headers["retry-after"]) > 0
    assert took < FAST_S, f"the dashboard took {took:.2f}s to answer 503"


async def test_starts_and_serves_with_postgres_refusing_connections(
    settings: Settings, mirrored: link_model.Link, admin_key: str
) -> None:
    closed = free_port()  # nothing listens there
    async with running(database_at(settings, closed)) as client:
        await assert_serves_without_postgres(client, mirrored, admin_key)


async def test_starts_and_serves_with_postgres_silent(
    settings: Settings, mirrored: link_model.Link, admin_key: str
) -> None:
    async with silent_listener() as port, running(database_at(settings, port)) as client:
        await assert_serves_without_postgres(client, mirrored, admin_key)
        # Again, with connections to the silent port still pending from the first calls.
        api, took = await timed(client.get(api_path(mirrored), headers=bearer(admin_key)))
        assert_unavailable(api)
        assert took < FAST_S, f"the API took {took:.2f}s to answer 503"


async def api_ok_within(
    client: httpx.AsyncClient, link: link_model.Link, admin_key: str, seconds: float
) -> float:
    """Until the API answers 200: how long that took."""
    started = time.monotonic()
    while True:
        response = await client.get(api_path(link), headers=bearer(admin_key))
        if response.status_code == 200:
            return time.monotonic() - started
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < seconds, "the API did not recover"
        await asyncio.sleep(0.1)


async def test_the_api_recovers_without_a_restart(
    settings: Settings, mirrored: link_model.Link, admin_key: str
) -> None:
    real = urlsplit(settings.database_url)
    proxy = FreezableProxy(real.hostname or "127.0.0.1", real.port or 5432)
    await proxy.start()
    proxy.sever()  # Postgres is down when the app starts
    try:
        async with running(database_at(settings, proxy.port)) as client:
            await assert_serves_without_postgres(client, mirrored, admin_key)
            proxy.heal()  # Postgres is back
            await api_ok_within(client, mirrored, admin_key, 5.0)
            ready = (await client.get("/readyz")).json()
            assert ready["postgres"] == "ok", ready

            proxy.sever()  # connections in the pool are dropped under it
            api, took = await timed(client.get(api_path(mirrored), headers=bearer(admin_key)))
            assert_unavailable(api)
            assert took < FAST_S
            proxy.heal()
            await api_ok_within(client, mirrored, admin_key, 5.0)
    finally:
        await proxy.stop()


async def test_a_frozen_postgres_answers_503_within_the_bound(
    settings: Settings, mirrored: link_model.Link, admin_key: str
) -> None:
    real = urlsplit(settings.database_url)
    proxy = FreezableProxy(real.hostname or "127.0.0.1", real.port or 5432)
    await proxy.start()
    try:
        async with running(database_at(settings, proxy.port)) as client:
            await api_ok_within(client, mirrored, admin_key, 5.0)  # the pool holds a connection
            proxy.thawed.clear()  # established connections stop answering
            calls = [client.get(api_path(mirrored), headers=bearer(admin_key)) for _ in range(12)]
            started = time.monotonic()
            answers = await asyncio.gather(*calls)
            took = time.monotonic() - started
            for answer in answers:
                assert_unavailable(answer)
            # A query waits out the command timeout, then its connection's release waits
            # at most the database timeout: not 30 s, not in a queue behind each other.
            assert took < 2 * TIMEOUT_MS / 1000 + FAST_S, f"12 calls took {took:.2f}s"
            ready, took = await timed(client.get("/readyz"))
            assert ready.json()["postgres"].startswith("down"), ready.json()
            assert took < FAST_S, f"/readyz took {took:.2f}s"
            proxy.thawed.set()
            await api_ok_within(client, mirrored, admin_key, 10.0)
    finally:
        proxy.thawed.set()
        await proxy.stop()


@pytest.mark.parametrize("kind", ["one Redis", "a cluster", "Sentinels"])
async def test_starts_with_redis_down(
    settings: Settings, mirrored: link_model.Link, admin_key: str, kind: str
) -> None:
    """Whatever the Redis URL's kind, none of its hosts answering is "Redis down": clicks
    spooled, links read from Postgres (the cluster client's errors are not RedisErrors)."""
    url = {
        "one Redis": f"redis://127.0.0.1:{free_port()}/0",
        "a cluster": f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}",
        "Sentinels": f"redis+sentinel://127.0.0.1:{free_port()}/primary",
    }[kind]
    no_redis = settings.model_copy(update={"redis_url": url})
    async with running(no_redis) as client:
        ready = await client.get("/readyz")
        body = ready.json()
        # Clicks go to the spool, links come from Postgres: ready.
        assert ready.status_code == 200 and body["ready"] is True, body
        assert body["redis"].startswith("down") and body["postgres"] == "ok", body
        redirect = await client.get(f"/e/{mirrored.code}")
        assert redirect.status_code == 302, redirect.text
        listed = await client.get(api_path(mirrored), headers=bearer(admin_key))
        assert listed.status_code == 200, listed.text


async def test_starts_with_both_stores_down_and_is_not_ready(settings: Settings) -> None:
    both_down = database_at(settings, free_port()).model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    async with running(both_down) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready, took = await timed(client.get("/readyz"))
        assert ready.status_code == 503 and ready.json()["ready"] is False, ready.text
        assert took < FAST_S
        unknown = await client.get(f"/e/{UNKNOWN_CODE}")
        assert unknown.status_code == 503
