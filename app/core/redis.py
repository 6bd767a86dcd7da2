"""The Redis client factory: every process opens its clients here, with every option explicit.

redis-py's defaults are not a contract: they changed between its major versions (the reply
and connect timeouts went from none to 5 s; the retries, keepalive and the protocol changed
too), so a library upgrade could change how a process waits and retries without a line of
ours changing. Here nothing is left to them: each option that decides how long a command may
wait, whether it is sent again, and how many connections there may be is passed, per client
(``redis_options``), and tests/unit/test_redis_client.py checks what the connections get.

The clients, by role:

======================  ===================================================================
``"web"``               the web app's API, dashboard, link lookups and the links' change
                        notices (pub/sub)
``"click_writer"``      the redirect's group commit of clicks, and the spool's replay
``"flusher"``           a flusher process (``python -m app.flusher``)
``"cli"``               an operator command (``python -m app.cli redrive``)
======================  ===================================================================

``CLICKTRACK_REDIS_URL`` picks the deployment: ``redis://``, ``rediss://``, ``unix://`` one
Redis; ``redis+sentinel://host:port[,host:port...]/<primary name>[/<db>]`` the primary a set
of Sentinels names (redis-py follows a failover: a new connection asks them again);
``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` over TLS) a Redis
Cluster, through redis-py's cluster client, the hosts being seeds only (the client learns the
others). The cluster client answers the same commands as ``aioredis.Redis`` and is handed out
as one (``create_redis``); what must know the difference asks ``is_cluster`` (the hot paths'
packed senders: ``app/core/resp_cluster.py``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.maint_notifications import MaintNotificationsConfig

from app.redis_urls import CLUSTER_SCHEMES, SENTINEL_SCHEMES, multi_host, sentinel_name
from app.settings import Settings

Role = Literal["web", "click_writer", "flusher", "cli"]

# The flusher's retries of one command: at most 3 more sends, each after a random wait of up
# to 0.1 s, 0.2 s, 0.4 s (redis-py's "exponential with jitter": uniform in [0, base * 2^n],
# at most cap); 0.7 s at most in all.
FLUSHER_RETRIES = 3
FLUSHER_RETRY_BASE_S = 0.05
FLUSHER_RETRY_CAP_S = 0.5
# Pool bounds. The web app's: per worker process, shared by concurrent requests (redis-py's
# default until now). The click writer holds two connections (the group commit's and the spool
# replay's) and borrows one for its probe. A flusher holds one per consumer loop for its
# duplicate checks and borrows a few more (its read, the acks of the batches being written,
# claims and trims); 8 per loop, never fewer than the web app's.
WEB_MAX_CONNECTIONS = 100
CLICK_WRITER_MAX_CONNECTIONS = 4
FLUSHER_CONNECTIONS_PER_LOOP = 8
CLI_MAX_CONNECTIONS = 4
# TCP keepalive (seconds, probes): an idle connection whose peer vanished without closing it
# (host gone, network cut, a NAT or load balancer that forgot it) is found dead after
# 30 + 3 x 5 = 45 s, and the probes keep such middleboxes from forgetting it.
KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_PROBES = 3
# What a Redis that cannot be reached raises, on one node or a cluster (the cluster
# client's own errors do not derive from RedisError): every caller that treats Redis as
# down (spool, read through, answer "down") catches these.
REDIS_UNAVAILABLE = (RedisError, RedisClusterException, OSError, TimeoutError)


@dataclass(frozen=True)
class RedisOptions:
    """What a client is opened with; ``open_redis`` passes every field to redis-py.

    ``connect_timeout_s``: opening a connection (DNS, TCP, TLS, the handshake), in seconds.
    ``socket_timeout_s``: one reply, in seconds; past it the command fails with redis-py's
    ``TimeoutError`` and the connection is dropped.
    ``retries``: how many times a command (or a connection) that failed with a
    ``ConnectionError`` (refused, reset, closed) is tried again, on a new connection, after
    a short backoff with jitter; 0: never. A reply timeout is never retried: a Redis that
    did not answer in time gets no second copy of the command to chew on.
    ``max_connections``: the pool's bound. Past it a command fails at once with
    ``ConnectionError("Too many connections")``, it does not queue.
    ``health_check_interval_s``: a connection idle longer than this (whole seconds) is
    PINGed before its next command, under the same retries; 0: never.
    """

    connect_timeout_s: float
    socket_timeout_s: float
    retries: int
    max_connections: int
    health_check_interval_s: int

    def retry(self) -> Retry:
        """The redis-py retry policy of ``retries``."""
        if self.retries == 0:
            return Retry(NoBackoff(), 0)
        backoff = ExponentialWithJitterBackoff(cap=FLUSHER_RETRY_CAP_S, base=FLUSHER_RETRY_BASE_S)
        return Retry(backoff, self.retries, supported_errors=(RedisConnectionError,))


def redis_options(settings: Settings, role: Role) -> RedisOptions:
    """The options of ``role``'s client.

    Timeouts: ``CLICKTRACK_REDIS_CONNECT_TIMEOUT_MS`` to connect, and
    ``CLICKTRACK_REDIS_SOCKET_TIMEOUT_MS`` for a reply, the flusher's plus its blocking read's
    ``CLICKTRACK_FLUSH_BLOCK_MS`` (``XREADGROUP BLOCK`` answers only after it). The redirect's
    paths are bounded tighter by ``CLICKTRACK_REDIS_TIMEOUT_MS`` in the code itself.

    Retries: none, but for the flusher. The click writer and the link lookups run under that
    tighter bound and fall back (to the spool, to Postgres): a retry would only spend the
    time the fallback needs, and resend a batch of clicks that Redis may have taken. The
    API, the dashboard and the CLI report a failure (a 503, an error message) that the
    caller may retry knowingly. A flusher has no caller waiting: a few quick retries on a
    new connection ride out a dropped connection, or one refused for a moment (a failover,
    a proxy restarting), without restarting its batch pipeline; past them its loop backs off
    on its own (up to 5 s between tries).

    Health checks: none. A connection the server closed is found when the pool hands it out
    (redis-py checks it and reconnects), one whose peer vanished by TCP keepalive (below);
    a checking PING would find neither sooner. (redis-py would also PING in the handshake of
    every new connection, with the retries of that PING nested in the connection's.)
    """
    connect_s = settings.redis_connect_timeout_ms / 1000
    reply_s = settings.redis_socket_timeout_ms / 1000
    if role == "web":
        return RedisOptions(connect_s, reply_s, 0, WEB_MAX_CONNECTIONS, 0)
    if role == "click_writer":
        return RedisOptions(connect_s, reply_s, 0, CLICK_WRITER_MAX_CONNECTIONS, 0)
    if role == "flusher":
        loops = len(settings.shards_to_flush()) * settings.flush_loops
        return RedisOptions(
            connect_s,
            reply_s + settings.flush_block_ms / 1000,
            FLUSHER_RETRIES,
            max(WEB_MAX_CONNECTIONS, FLUSHER_CONNECTIONS_PER_LOOP * loops),
            0,
        )
    if role == "cli":
        return RedisOptions(connect_s, reply_s, 0, CLI_MAX_CONNECTIONS, 0)
    raise ValueError(f"unknown Redis client role {role!r}")


def keepalive_options() -> dict[int, int]:
    """TCP keepalive's socket options, those of them this platform has (Linux has all)."""
    idle = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
    wanted = (
        (idle, KEEPALIVE_IDLE_S),
        (getattr(socket, "TCP_KEEPINTVL", None), KEEPALIVE_INTERVAL_S),
        (getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_PROBES),
    )
    return {option: value for option, value in wanted if option is not None}


def open_redis(url: str, options: RedisOptions) -> aioredis.Redis:
    """A client for ``url`` (any of ``REDIS_SCHEMES``: see the module's docstring) over a
    connection pool of its own (per node, on a cluster), with every field of ``options`` and
    these, all passed explicitly:

    - TCP keepalive on (``KEEPALIVE_*``; not for ``unix://``, which has no TCP);
    - maintenance notifications off: redis-py 8 turns them on by default over RESP3, sending
      ``CLIENT MAINT_NOTIFICATIONS`` on every new connection (a round trip, and a DNS lookup
      for a host name), and during a maintenance they replace the reply timeout with a
      relaxed one (10 s) of their own. They serve Redis Enterprise's managed failovers;
    - ``legacy_responses=True``: replies in the shapes the code reads (redis-py 8's default).

    The protocol is left to redis-py, since passing it changes the reply shapes: 8.x speaks
    RESP3 and returns RESP2-shaped replies; pyproject.toml holds redis-py to that major.
    Query-string options in a single Redis's ``url`` (``?socket_timeout=…``) win over
    these, as redis-py has it. Opening the client connects nothing: the first command does.

    On a cluster, ``options.retries`` bounds redis-py's cluster retries, which cover more
    than connection errors (a reply timeout, a cluster down, a slot not served), each after
    a refresh of the slot map; MOVED and ASK redirections are followed whatever the retries.
    """
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": options.connect_timeout_s,
        "socket_timeout": options.socket_timeout_s,
        "retry": options.retry(),
        "max_connections": options.max_connections,
        "health_check_interval": options.health_check_interval_s,
        "legacy_responses": True,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    scheme = urlsplit(url).scheme
    if scheme != "unix":
        kwargs["socket_keepalive"] = True
        kwargs["socket_keepalive_options"] = keepalive_options()
    if scheme in CLUSTER_SCHEMES:
        return cast(aioredis.Redis, _open_cluster(url, kwargs))
    if scheme in SENTINEL_SCHEMES:
        return _open_sentinel(url, kwargs)
    return aioredis.Redis.from_url(url, **kwargs)


def is_cluster(redis: object) -> bool:
    """Whether ``redis`` is a cluster client (``redis+cluster://``)."""
    return isinstance(redis, RedisCluster)


async def prepare_pubsub(redis: aioredis.Redis) -> None:
    """Make ``redis.pubsub()`` usable: a cluster client's routes its SUBSCRIBE by the slot
    map, which it must have read first (redis-py does not read it on its own there)."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def _open_cluster(url: str, kwargs: dict[str, Any]) -> RedisCluster:
    """A cluster client seeded by the URL's hosts; ``max_connections`` is per node."""
    user, password, hosts = multi_host(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in hosts],
        username=user,
        password=password,
        ssl=url.startswith("rediss+"),
        require_full_coverage=True,
        **kwargs,
    )


def _open_sentinel(url: str, kwargs: dict[str, Any]) -> aioredis.Redis:
    """The primary that the URL's Sentinels name (its path: ``/<name>[/<db>]``); every
    connection is opened to the primary they name at that moment. The Sentinels themselves
    are asked with the same timeouts and keepalive, without the password (they have their
    own, if any: set it in the primary's name service, not here)."""
    user, password, hosts = multi_host(url)
    name, db = sentinel_name(url)
    sentinel_kwargs = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(
        name,
        db=db,
        username=user,
        password=password,
        **kwargs,
    )
    return client


def create_redis(settings: Settings, role: Role) -> aioredis.Redis:
    """The client of ``role`` for ``CLICKTRACK_REDIS_URL``: ``open_redis`` with
    ``redis_options(settings, role)``."""
    return open_redis(settings.redis_url, redis_options(settings, role))
