"""Code → link for the redirect: an in-process cache in front of the Redis mirror, read
through from Postgres on a miss.

Entries expire after a TTL; a change announced on the links channel (``app.links.mirror``) evicts
one at once, and a lost subscription clears everything. When Redis and Postgres are both
unreachable, an expired entry is served rather than failing the redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from enum import Enum
from typing import Final, Literal
from urllib.parse import quote

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.core.aio import raise_if_cancelling
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.core.metrics import LINK_CACHE, BufferedCounter
from app.errors import Unavailable
from app.links import mirror
from app.links.mirror import EdgeLink

log = logging.getLogger(__name__)

# Every printable ASCII character but space passes; anything else is percent-encoded so that
# the Location header stays ASCII.
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


FOLLOW_POLL_S = 0.5
_COUNT_HIT = BufferedCounter(LINK_CACHE.labels("hit")).inc
_COUNT_MISS = LINK_CACHE.labels("miss").inc


class Miss(Enum):
    MISS = 0


MISS: Final = Miss.MISS
"""``LinkCache.cached``: not in the cache, or expired; ``get`` it."""


class LinkUnavailable(Unavailable):
    """The link could not be resolved: no copy anywhere and its stores unreachable."""


class RedirectTarget:
    """A link prepared for the hot path: its Location is two strings around the click id."""

    __slots__ = ("active", "expires_at", "link", "location_head", "location_tail")

    def __init__(self, link: EdgeLink, click_id_param: str) -> None:
        self.link = link
        self.active = link.active
        self.expires_at = link.expires_at
        self.location_head, self.location_tail = _split_location(link.destination, click_id_param)

    def location(self, click_id: str) -> str:
        return self.location_head + click_id + self.location_tail


def _split_location(destination: str, param: str) -> tuple[str, str]:
    """Destination with ``param=<click id>`` added last in its query, before any fragment;
    an existing ``param`` in the destination is dropped so the merchant reads ours."""
    url, hash_mark, fragment = quote(destination, safe=_URL_SAFE).partition("#")
    base, question, query = url.partition("?")
    kept = [p for p in query.split("&") if p and p.partition("=")[0] != param] if question else []
    kept.append(f"{param}=")
    return f"{base}?{'&'.join(kept)}", hash_mark + fragment


class LinkCache:
    def __init__(
        self,
        redis: aioredis.Redis,
        pool: Pool,
        keys: RedisKeys,
        *,
        click_id_param: str,
        size: int,
        ttl_s: float,
        negative_ttl_s: float,
        redis_timeout_s: float = 0.25,
    ) -> None:
        self._redis = redis
        # A Redis that accepts connections but does not answer (frozen, overloaded, a network
        # that drops packets) must not hold redirects up: past this, Postgres is asked.
        self._redis_timeout_s = redis_timeout_s
        self._pool = pool
        self._keys = keys
        self._param = click_id_param
        self._size = size
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        # code -> (target or None for "no such link", monotonic expiry)
        self._entries: dict[str, tuple[RedirectTarget | None, float]] = {}
        self._loading: dict[str, asyncio.Future[RedirectTarget | None]] = {}
        # Bumped by every eviction: a load that started before one must not store its result.
        self._generation = 0

    def cached(self, code: str) -> RedirectTarget | Literal[Miss.MISS] | None:
        """The link while its cached copy is fresh (None: no such link), else ``MISS``.
        Only codes that went through ``get`` are cached, so a hit needs no validation."""
        entry = self._entries.get(code)
        if entry is not None and entry[1] > time.monotonic():
            _COUNT_HIT()
            return entry[0]
        return MISS

    async def get(self, code: str) -> RedirectTarget | None:
        cached = self.cached(code)
        if cached is not MISS:
            return cached
        _COUNT_MISS()
        entry = self._entries.get(code)  # expired: served if the stores cannot be reached
        loading = self._loading.get(code)
        if loading is not None:  # a concurrent request is already fetching this code
            return await asyncio.shield(loading)
        future: asyncio.Future[RedirectTarget | None] = asyncio.get_running_loop().create_future()
        self._loading[code] = future
        try:
            target = await self._load(code, stale=entry)
            future.set_result(target)
            return target
        except LinkUnavailable as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: concurrent waiters re-raise it themselves
            raise
        finally:
            del self._loading[code]

    async def _load(
        self, code: str, stale: tuple[RedirectTarget | None, float] | None
    ) -> RedirectTarget | None:
        generation = self._generation
        try:
            link = await self._fetch(code)
        except (RedisError, OSError, TimeoutError, LinkUnavailable):
            if stale is not None:
                return stale[0]
            raise LinkUnavailable(code) from None
        target = None if link is None else RedirectTarget(link, self._param)
        if generation == self._generation:
            self._store(code, target)
        return target

    async def _fetch(self, code: str) -> EdgeLink | None:
        key = self._keys.link(code)
        try:
            async with asyncio.timeout(self._redis_timeout_s):
                raw = await self._redis.get(key)
        except (RedisError, OSError, TimeoutError):
            raw = None
            redis_up = False
        else:
            redis_up = True
        if raw is not None:
            return mirror.decode(code, raw)
        try:
            link = await mirror.load_from_postgres(self._pool, code)
        except Exception as exc:  # asyncpg raises many kinds; all mean "Postgres unavailable"
            raise LinkUnavailable(code) from exc
        if link is not None and redis_up:
            try:
                async with asyncio.timeout(self._redis_timeout_s):
                    await self._redis.set(key, mirror.encode(link), ex=mirror.MIRROR_TTL_S, nx=True)
            except (RedisError, OSError, TimeoutError):
                pass  # the mirror is only a cache
        return link

    def _store(self, code: str, target: RedirectTarget | None) -> None:
        if len(self._entries) >= self._size and code not in self._entries:
            # Evict the oldest insertion: cheap, and hot codes are re-inserted on expiry.
            del self._entries[next(iter(self._entries))]
        ttl = self._ttl if target is not None else self._negative_ttl
        self._entries[code] = (target, time.monotonic() + ttl)

    def evict(self, code: str) -> None:
        self._generation += 1
        self._entries.pop(code, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    async def follow_changes(self, stop: asyncio.Event) -> None:
        """Evict codes announced on the links channel until ``stop`` is set.

        Polls with a short timeout instead of waiting to be cancelled: redis-py's pub/sub can
        swallow a cancellation and go on listening."""
        channel = self._keys.links_changed_channel
        while not stop.is_set():
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    self.clear()  # anything may have changed while we were not listening
                    while not stop.is_set():
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=FOLLOW_POLL_S
                        )
                        if message is not None and message["type"] == "message":
                            self.evict(message["data"].decode())
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                log.info("links channel lost; retrying", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
