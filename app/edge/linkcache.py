"""Code → link for the redirect: an in-process cache in front of the Redis mirror, read
through from Postgres on a miss.

Entries expire after a TTL; a change announced on the links channel (``app.links.mirror``) evicts
one at once, and a lost subscription clears everything. When the mirror has no usable copy and
Postgres fails or does not answer within its bound, an expired entry is served rather than
failing the redirect; with none, ``LinkUnavailable`` (the redirect's 503 with Retry-After).

Every lookup ends, whatever happens: one load per code runs as a task of its own that every
request for the code awaits, so an error of any kind reaches them all and cancelling one
request (the first included) leaves the others their answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from enum import Enum
from functools import partial
from typing import Final, Literal
from urllib.parse import quote

import redis.asyncio as aioredis

from app.core.aio import raise_if_cancelling
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.core.metrics import LINK_CACHE, BufferedCounter
from app.core.redis import REDIS_UNAVAILABLE, prepare_pubsub
from app.edge.caps import EdgeCaps
from app.edge.rules import EdgeRules
from app.errors import Unavailable
from app.links import mirror
from app.links.mirror import EdgeLink
from app.links.urls import normalise_destination, param_name

log = logging.getLogger(__name__)

# A destination stored before destinations were normalised on write, and that cannot be:
# every printable ASCII character but space passes, anything else is percent-encoded so that
# the Location header stays ASCII.
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


FOLLOW_POLL_S = 0.5
# After the stores failed to give a code, its expired copy is served this long (s) before
# they are asked again.
STALE_RETRY_S = 1.0
# An unexpected error while loading a link is logged at most this often (s), with a trace.
FAILURE_LOG_EVERY_S = 60.0
_COUNT_HIT = BufferedCounter(LINK_CACHE.labels("hit")).inc
_COUNT_MISS = LINK_CACHE.labels("miss").inc


_failure_logged_at = float("-inf")


def _log_failure(code: str) -> None:
    """Log the exception being handled (a bug, or data this release cannot use), at most
    once per ``FAILURE_LOG_EVERY_S``: a link that fails, fails for every request."""
    global _failure_logged_at
    now = time.monotonic()
    if now - _failure_logged_at >= FAILURE_LOG_EVERY_S:
        _failure_logged_at = now
        log.exception("link could not be loaded; answering 503", extra={"code": code})


class Miss(Enum):
    MISS = 0


MISS: Final = Miss.MISS
"""``LinkCache.cached``: not in the cache, or expired; ``get`` it."""


class LinkUnavailable(Unavailable):
    """The link could not be resolved: no copy anywhere and its stores unreachable."""


class RedirectTarget:
    """A link prepared for the hot path: its Location is two strings around the click id;
    ``rules`` its rules compiled (``app.edge.rules``), None when it has none; ``caps`` its
    click caps compiled (``app.edge.caps``), None when it has none."""

    __slots__ = ("active", "caps", "expires_at", "link", "location_head", "location_tail", "rules")

    def __init__(self, link: EdgeLink, click_id_param: str) -> None:
        self.link = link
        self.active = link.active
        self.expires_at = link.expires_at
        self.location_head, self.location_tail = _split_location(link.destination, click_id_param)
        self.rules = (
            EdgeRules(link.rules, partial(_split_location, param=click_id_param))
            if link.rules
            else None
        )
        split = partial(_split_location, param=click_id_param)
        self.caps = EdgeCaps.compile(link.caps, split) if link.caps else None

    def location(self, click_id: str) -> str:
        return self.location_head + click_id + self.location_tail


def _split_location(destination: str, param: str) -> tuple[str, str]:
    """Destination with ``param=<click id>`` added last in its query, before any fragment;
    an existing ``param`` in the destination (its name compared as the merchant's server
    decodes it: ``aff%5Fclick%5Fid`` is ``aff_click_id``) is dropped so the merchant reads
    ours. Destinations are stored pure ASCII (``app.links.urls``); one stored before that
    rule is normalised here, once per load, and percent-encoded if even that fails."""
    if not destination.isascii():
        with contextlib.suppress(ValueError):
            destination = normalise_destination(destination).url
        destination = quote(destination, safe=_URL_SAFE)
    url, hash_mark, fragment = destination.partition("#")
    base, _, query = url.partition("?")
    kept = [p for p in query.split("&") if p and param_name(p.partition("=")[0]) != param]
    kept.append(f"{param}=")
    return f"{base}?{'&'.join(kept)}", hash_mark + fragment


class LinkCache:
    """Code → ``RedirectTarget`` for the redirect: the in-process cache, then the Redis
    mirror, then Postgres. Each store call is bounded: the mirror by ``redis_timeout_s``,
    the Postgres read-through by ``load_timeout_s`` (waiting for one of ``load_concurrency``
    read slots, the pool's acquire and the query together, s). So a lookup takes at most
    about ``redis_timeout_s + load_timeout_s`` (the mirror, then Postgres; the mirror is
    filled in the background), whatever state the stores are in."""

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
        load_timeout_s: float = 0.5,
        load_concurrency: int = 4,
        legacy_mirror: bool = False,
    ) -> None:
        self._redis = redis
        # A Redis that accepts connections but does not answer (frozen, overloaded, a network
        # that drops packets) must not hold redirects up: past this, Postgres is asked.
        self._redis_timeout_s = redis_timeout_s
        self._pool = pool
        # Postgres gets its own, short bound: the pool's are made for the API's queries.
        self._load_timeout_s = load_timeout_s
        # Read-throughs in flight, a query given up on included (it finishes in the
        # background): a frozen Postgres holds at most this many of the pool's connections,
        # however many codes are asked, and the API keeps the rest.
        self._read_slots = asyncio.Semaphore(load_concurrency)
        self._queries: set[asyncio.Task[EdgeLink | None]] = set()
        self._fills: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references
        self._legacy_mirror = legacy_mirror
        self._keys = keys
        self._param = click_id_param
        self._size = size
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        # code -> (target or None for "no such link", monotonic expiry)
        self._entries: dict[str, tuple[RedirectTarget | None, float]] = {}
        self._loading: dict[str, asyncio.Task[RedirectTarget | None]] = {}
        # Bumped by every eviction: a load that started before one must not store its result.
        self._generation = 0

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    @property
    def redis_timeout_s(self) -> float:
        return self._redis_timeout_s

    def cached(self, code: str) -> RedirectTarget | Literal[Miss.MISS] | None:
        """The link while its cached copy is fresh (None: no such link), else ``MISS``.
        Only codes that went through ``get`` are cached, so a hit needs no validation."""
        entry = self._entries.get(code)
        if entry is not None and entry[1] > time.monotonic():
            _COUNT_HIT()
            return entry[0]
        return MISS

    async def get(self, code: str) -> RedirectTarget | None:
        """The link (None: no such link), or its expired copy when the stores cannot give
        it. Raises ``LinkUnavailable``: no copy, and the stores failed, did not answer in
        time, or gave a link that could not be prepared."""
        cached = self.cached(code)
        if cached is not MISS:
            return cached
        _COUNT_MISS()
        load = self._loading.get(code)
        if load is None:
            # One load per code, in a task of its own: every request for the code awaits it,
            # and cancelling any of them (the first included) cancels no other.
            load = asyncio.ensure_future(self._load(code, self._entries.get(code)))
            self._loading[code] = load
            load.add_done_callback(partial(self._loaded, code))
        return await asyncio.shield(load)

    def _loaded(self, code: str, load: asyncio.Task[RedirectTarget | None]) -> None:
        if self._loading.get(code) is load:
            del self._loading[code]
        if not load.cancelled():
            load.exception()  # retrieved: its awaiters (if any are left) raise it themselves

    async def _load(
        self, code: str, stale: tuple[RedirectTarget | None, float] | None
    ) -> RedirectTarget | None:
        generation = self._generation
        ttl: float | None = None
        try:
            link = await self._fetch(code)
            target = None if link is None else RedirectTarget(link, self._param)
        except Exception as exc:  # whatever went wrong, the requests get an answer
            if not isinstance(exc, LinkUnavailable):
                _log_failure(code)
            if stale is None:
                raise LinkUnavailable(code) from exc
            # Served past its TTL; asked again only after a short while, so that stores that
            # do not answer cost one wait per code, not one per request.
            target, ttl = stale[0], min(STALE_RETRY_S, self._ttl)
        if generation == self._generation:
            self._store(code, target, ttl)
        return target

    async def _fetch(self, code: str) -> EdgeLink | None:
        key = self._keys.link(code)
        try:
            async with asyncio.timeout(self._redis_timeout_s):
                raw = await self._redis.get(key)
        except REDIS_UNAVAILABLE:
            raw = None
            redis_up = False
        else:
            redis_up = True
        mirrored = None if raw is None else mirror.decode(code, raw)
        if mirrored is not None and mirrored.caps is not None:
            return mirrored
        # Unreadable (counted and logged): Postgres decides, and the record stays, since a pod
        # of another release may read it. Caps unknown (a link change wrote it): Postgres
        # gives them, and the full record replaces it.
        try:
            link = await self._read_through(code)
        except LinkUnavailable:
            if mirrored is None:
                raise
            # The link as the mirror has it, its caps not enforced until Postgres answers
            # (docs/reliability.md, "Click caps").
            return dataclasses.replace(mirrored, caps=())
        if link is not None and redis_up and (raw is None or mirrored is not None):
            # In the background: the mirror is only a cache, the answer need not wait for it.
            fill = asyncio.ensure_future(self._fill(key, link))
            self._fills.add(fill)
            fill.add_done_callback(self._fills.discard)
        return link

    async def _fill(self, key: str, link: EdgeLink) -> None:
        """Copy ``link`` to the mirror unless it has a newer copy (``mirror.write_known``: the
        API's link change is newer; a record of the same change with unknown caps is
        replaced); legacy writes: ``SET NX``. At most ``redis_timeout_s``, errors ignored."""
        try:
            async with asyncio.timeout(self._redis_timeout_s):
                if self._legacy_mirror:
                    record = mirror.encode(link, legacy=True)
                    await self._redis.set(key, record, ex=mirror.MIRROR_TTL_S, nx=True)
                else:
                    await mirror.write_known(self._redis, self._keys, [link], announce=False)
        except REDIS_UNAVAILABLE:
            pass

    async def _read_through(self, code: str) -> EdgeLink | None:
        """The link from Postgres (None: no such code), within ``load_timeout_s``. Raises
        ``LinkUnavailable`` on any error, or when no read slot, connection or answer came in
        time. A query given up on is left to finish, holding its slot: cancelling it would
        make asyncpg wait on the same silent server to clean up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._load_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await self._read_slots.acquire()
        except TimeoutError:
            raise LinkUnavailable(code) from None
        query = asyncio.ensure_future(mirror.load_from_postgres(self._pool, code))
        self._queries.add(query)
        query.add_done_callback(self._query_done)
        done, _ = await asyncio.wait((query,), timeout=max(0.0, deadline - loop.time()))
        if not done:
            raise LinkUnavailable(code)
        try:
            return query.result()
        except Exception as exc:  # asyncpg raises many kinds; all mean "Postgres unavailable"
            raise LinkUnavailable(code) from exc

    def _query_done(self, query: asyncio.Task[EdgeLink | None]) -> None:
        self._queries.discard(query)
        self._read_slots.release()
        if not query.cancelled():
            query.exception()  # retrieved: a query given up on has nobody left to raise it

    def _store(self, code: str, target: RedirectTarget | None, ttl: float | None = None) -> None:
        """Cache ``target`` for ``ttl`` s (None: the TTL of a link, or of "no such link")."""
        if len(self._entries) >= self._size and code not in self._entries:
            # Evict the oldest insertion: cheap, and hot codes are re-inserted on expiry.
            del self._entries[next(iter(self._entries))]
        if ttl is None:
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
        swallow a cancellation and go on listening.

        On a Redis Cluster the channel is a classic one: PUBLISH reaches every node over the
        cluster bus, so the subscription, on the node of the channel's slot, hears the notices
        the mirror's script publishes on whichever node holds the link's record. When that
        node fails, the subscription is lost and made again (on the new owner), clearing the
        cache as after any loss."""
        channel = self._keys.links_changed_channel
        while not stop.is_set():
            try:
                await prepare_pubsub(self._redis)
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    self.clear()  # anything may have changed while we were not listening
                    while not stop.is_set():
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=FOLLOW_POLL_S
                        )
                        if message is not None and message["type"] == "message":
                            self.evict(message["data"].decode())
            except REDIS_UNAVAILABLE as exc:
                raise_if_cancelling()
                log.info("links channel lost; retrying", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
