"""The Postgres pool. Opened in lifespan (or by the flusher/CLI) and passed explicitly.

``create_pool`` can open a pool without connecting (``min_size=0``): the web app and the
flusher start while Postgres is down, and connect when a request needs it. ``unreachable``
says which errors mean "Postgres cannot be reached or did not answer in time" (a 503, try
again) rather than "Postgres refused this request".
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# What queries take: a plain connection (CLI) or one borrowed from the pool (API).
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# Errors Postgres itself sends when it cannot take the request now, whatever the request:
# class 08 (connection exception), 53 (insufficient resources: too many connections, disk
# full, out of memory), 57 (operator intervention: shutting down, starting up, a query
# cancelled by a timeout).
_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
)

# Seconds a client is asked to wait (``Retry-After``) before trying again a request that met
# Postgres out of reach: about what a restart or a failover takes.
RETRY_AFTER_S = 5

# An OSError with one of these numbers is the network's (the rest, a file's, say, are not).
_NETWORK_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.ETIMEDOUT}
)


if TYPE_CHECKING:
    _PoolBase = asyncpg.Pool[asyncpg.Record]
else:  # generic only in the type stubs
    _PoolBase = asyncpg.Pool


class _BoundedPool(_PoolBase):
    """A pool whose ``acquire()`` waits at most ``acquire_timeout_s`` unless told otherwise:
    every caller (``pool.fetchval`` included) is bounded without naming a timeout, and so is
    the release of what it acquired (asyncpg gives the release the acquire's timeout)."""

    __slots__ = ("_acquire_timeout",)

    def __init__(self, *args: Any, acquire_timeout_s: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout = acquire_timeout_s

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext[asyncpg.Record]:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)


async def create_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    server_settings: dict[str, str] | None = None,
    connect_timeout_s: float = 60.0,
    acquire_timeout_s: float | None = None,
    command_timeout_s: float = 30.0,
) -> Pool:
    """A pool of at most ``max_size`` connections to ``database_url``.

    ``min_size``: connections opened before this returns and kept when idle (asyncpg
    reopens missing ones in the background); 0 opens none, so that Postgres being down does
    not fail a start: connections are opened when a caller needs one.
    ``connect_timeout_s``: how long opening one connection may take, in seconds.
    ``acquire_timeout_s``: how long ``acquire()`` may wait for a connection, connecting
    included (None: as long as it takes). ``command_timeout_s``: how long one query may run.
    Raises ``OSError``, ``TimeoutError`` or an ``asyncpg.PostgresError`` only when it must
    connect (``min_size`` > 0) and cannot.
    """
    pool = _BoundedPool(
        database_url,
        acquire_timeout_s=acquire_timeout_s,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        command_timeout=command_timeout_s,
        timeout=connect_timeout_s,
        server_settings=server_settings,
    )
    return await pool


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means Postgres could not be reached or did not answer in time: a
    refused or reset connection (``ConnectionError``), a host or network out of reach, a
    name that does not resolve, a timeout (``TimeoutError``: the pool's acquire, a query's
    command timeout), a connection lost mid-query, the server shutting down or out of
    connections. Such a request may succeed if tried again; any other error is about the
    request itself, or a bug."""
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, *_UNAVAILABLE)):
        return True
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return True
    # asyncpg's own "connection is closed" / "pool is closing": a lost connection. Its other
    # interface errors are misuse (a bug), not an outage.
    return type(exc) is asyncpg.InterfaceError and "clos" in str(exc)
