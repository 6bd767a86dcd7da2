"""Every process's Redis clients carry explicit options (app/core/redis.py), checked on what the
connections themselves get: an upgrade of redis-py that changes its defaults changes nothing
here, and one that changes how the options are passed fails these tests."""

from __future__ import annotations

import ast
import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import UnixDomainSocketConnection
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.redis import Role, create_redis, keepalive_options
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

# Linux's TCP keepalive: idle 30 s before the first probe, a probe every 5 s, dead after 3.
KEEPALIVE = {socket.TCP_KEEPIDLE: 30, socket.TCP_KEEPINTVL: 5, socket.TCP_KEEPCNT: 3}

# role -> (reply timeout s, retries, pool bound, health check s), with the settings below
EXPECTED: dict[Role, tuple[float, int, int, int]] = {
    "web": (1.5, 0, 100, 0),
    "click_writer": (1.5, 0, 4, 0),
    "flusher": (1.5 + 0.25, 3, 100, 0),
    "cli": (1.5, 0, 4, 0),
}


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "redis_url": "redis://127.0.0.1:6379/0",
        "redis_connect_timeout_ms": 700,
        "redis_socket_timeout_ms": 1500,
        "flush_block_ms": 250,
        "stream_shards": 1,
        "flush_loops": 1,
    }
    return Settings(_env_file=None, **{**base, **values})


@asynccontextmanager
async def opened(role: Role, **values: Any) -> AsyncIterator[tuple[aioredis.Redis, Any]]:
    client = create_redis(settings(**values), role)
    try:
        yield client, client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


@pytest.mark.parametrize("role", list(EXPECTED))
async def test_each_client_carries_explicit_options(role: Role) -> None:
    reply_s, retries, bound, health_s = EXPECTED[role]
    async with opened(role) as (client, conn):
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        # What the pool hands every connection...
        assert kwargs["socket_connect_timeout"] == 0.7
        assert kwargs["socket_timeout"] == reply_s
        assert kwargs["health_check_interval"] == health_s
        assert kwargs["socket_keepalive"] is True
        assert kwargs["socket_keepalive_options"] == KEEPALIVE
        assert kwargs["legacy_responses"] is True
        assert "protocol" not in kwargs  # passing it would change the reply shapes
        assert kwargs["retry"].get_retries() == retries
        assert pool.max_connections == bound
        # ...and what a connection ends up with.
        assert conn.socket_connect_timeout == 0.7
        assert conn.socket_timeout == reply_s
        assert conn.health_check_interval == health_s
        assert conn.socket_keepalive is True
        assert conn.socket_keepalive_options == KEEPALIVE
        assert conn.retry.get_retries() == retries
        assert conn.retry is not kwargs["retry"]  # a copy each: a Retry is mutable
        # Maintenance notifications off: no CLIENT MAINT_NOTIFICATIONS per connection, and
        # no "relaxed" timeout replacing ours during a maintenance.
        assert conn.maint_notifications_config is None
        assert pool._maint_notifications_pool_handler is None


@pytest.mark.parametrize("role", ["web", "click_writer", "cli"])
async def test_clients_under_a_tighter_bound_never_retry(role: Role) -> None:
    async with opened(role) as (_client, conn):
        assert conn.retry.get_retries() == 0
        assert isinstance(conn.retry._backoff, NoBackoff)


async def test_the_flusher_retries_connection_errors_with_a_short_jittered_backoff() -> None:
    async with opened("flusher") as (_client, conn):
        retry = conn.retry
        assert retry.get_retries() == 3
        assert retry._backoff == ExponentialWithJitterBackoff(cap=0.5, base=0.05)
        # A reply timeout is not retried: the command is not sent again to a Redis that did
        # not answer it.
        assert set(retry._supported_errors) == {RedisConnectionError}
        for _ in range(200):
            waits = [retry._backoff.compute(n) for n in range(1, 4)]
            assert all(0 <= w <= bound for w, bound in zip(waits, (0.1, 0.2, 0.4), strict=True))


async def test_the_flusher_reply_timeout_outlasts_its_blocking_read() -> None:
    async with opened("flusher", flush_block_ms=2000) as (_client, conn):
        assert conn.socket_timeout == 1.5 + 2.0


async def test_the_flusher_pool_grows_with_its_consumer_loops() -> None:
    async with opened("flusher", stream_shards=8, flush_loops=4) as (client, _conn):
        assert client.connection_pool.max_connections == 8 * 4 * 8
    async with opened("flusher", stream_shards=8, flusher_shards="0,1") as (client, _conn):
        assert client.connection_pool.max_connections == 100


async def test_a_unix_socket_gets_the_timeouts_and_no_tcp_options() -> None:
    async with opened("flusher", redis_url="unix:///run/redis/redis.sock") as (client, conn):
        assert isinstance(conn, UnixDomainSocketConnection)
        assert "socket_keepalive" not in client.connection_pool.connection_kwargs
        assert conn.socket_connect_timeout == 0.7
        assert conn.socket_timeout == 1.75
        assert conn.retry.get_retries() == 3


def test_the_timeouts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLICKTRACK_REDIS_CONNECT_TIMEOUT_MS", raising=False)
    monkeypatch.delenv("CLICKTRACK_REDIS_SOCKET_TIMEOUT_MS", raising=False)
    defaults = Settings(_env_file=None)
    assert (defaults.redis_connect_timeout_ms, defaults.redis_socket_timeout_ms) == (2000, 5000)
    monkeypatch.setenv("CLICKTRACK_REDIS_CONNECT_TIMEOUT_MS", "300")
    monkeypatch.setenv("CLICKTRACK_REDIS_SOCKET_TIMEOUT_MS", "900")
    tuned = Settings(_env_file=None)
    assert (tuned.redis_connect_timeout_ms, tuned.redis_socket_timeout_ms) == (300, 900)


def test_keepalive_options_are_the_documented_ones() -> None:
    assert keepalive_options() == KEEPALIVE


# ---- behaviour against a server that misbehaves ----


class Server:
    """A local TCP server that counts its connections and closes each at once (``close``), or
    keeps it open and never answers."""

    def __init__(self, *, close: bool) -> None:
        self.close = close
        self.connections = 0
        self._held: list[asyncio.StreamWriter] = []

    async def handle(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.close:
            writer.close()
        else:
            self._held.append(writer)


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in server._held:
            writer.close()
        listener.close()
        await listener.wait_closed()


@pytest.mark.parametrize(("role", "attempts"), [("web", 1), ("click_writer", 1), ("flusher", 4)])
async def test_a_closed_connection_is_retried_only_by_the_flusher(
    role: Role, attempts: int
) -> None:
    server = Server(close=True)
    async with serving(server) as url:
        client = create_redis(settings(redis_url=url), role)
        started = time.monotonic()
        try:
            with pytest.raises(RedisConnectionError):
                await client.ping()
        finally:
            await client.aclose()
        assert server.connections == attempts
        assert time.monotonic() - started < 1.5  # backoff: 0.7 s at most in all


@pytest.mark.parametrize("role", ["web", "flusher"])
async def test_a_silent_redis_costs_one_reply_timeout(role: Role) -> None:
    server = Server(close=False)
    async with serving(server) as url:
        client = create_redis(
            settings(redis_url=url, redis_socket_timeout_ms=200, flush_block_ms=1), role
        )
        started = time.monotonic()
        try:
            with pytest.raises(RedisTimeoutError):
                await client.ping()
        finally:
            await client.aclose()
        assert server.connections == 1
        assert 0.15 < time.monotonic() - started < 1.0


# ---- every client of app/ comes from the factory ----

FACTORY = ROOT / "app" / "core" / "redis.py"
# module -> the roles of the clients it opens
CLIENTS = {
    "app/main.py": {"web", "click_writer"},
    "app/flusher/__main__.py": {"flusher"},
    "app/cli.py": {"cli"},
    "app/cli_caps.py": {"cli"},  # a click cap change republishes the links it applies to
}
_OPENERS = {"create_redis", "open_redis", "from_url", "from_pool", "Redis", "StrictRedis"}


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def test_every_client_in_app_comes_from_the_factory_with_a_role() -> None:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "app").rglob("*.py")):
        if path == FACTORY:
            continue
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or _called_name(node) not in _OPENERS:
                continue
            assert _called_name(node) == "create_redis", f"{where}:{node.lineno}: use create_redis"
            role = node.args[1] if len(node.args) > 1 else None
            assert isinstance(role, ast.Constant), f"{where}:{node.lineno}: a literal role"
            assert isinstance(role.value, str)
            found.setdefault(where, set()).add(role.value)
    assert found == CLIENTS
