"""Click caps at the redirect: compiled once per cache fill, checked and counted per click in
one script call, many clicks per round trip (docs/commissions.md, "Click caps at the redirect").

``EdgeCaps`` is a link's click caps (``app.links.caps``) as the redirect judges them: each cap's
window period, its campaign (a campaign cap counts only the clicks whose ``cn`` is it) and its
fallback destination split around the click id, as the link's own. ``CapGate`` asks Redis: for
each click the script reads every counter of the caps applying to it and, only if none is full,
increments them all (``_COUNT``): Redis runs a script whole, so N clicks racing around a limit
never let more than the cap through. The clicks that arrive while one batch is in flight form
the next batch: one script call per publisher (its counters share a hash tag), all in one write
on one connection, as the group commit does.

A counter is one Redis integer per (cap, window) (``RedisKeys.cap_clicks``), its window named by
its first day in the period time zone (``app.caps.windows``), and expires a day after the window
ends: a new window starts from zero by its key alone.

When the check cannot be made (Redis failing or slower than ``timeout_s``, or the click writer
already spooling), the answer is ``UNCHECKED``: the click is over cap (not billable), and goes
where it would have gone; see docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from app.caps.windows import CapPeriod, window_end_instant, window_start
from app.core.aio import raise_if_cancelling
from app.core.keys import RedisKeys
from app.core.resp import Script, Sender, bulk
from app.core.resp_cluster import sender_for
from app.links.caps import ClickCap

log = logging.getLogger(__name__)

# A counter outlives its window by this much (s): a clock a little behind still finds it.
EXPIRE_AFTER_END_S = 86_400
FAILURE_LOG_EVERY_S = 60.0

# One call per publisher and batch: the clicks of the batch, one after the other, each checked
# against the caps applying to it and, only when none is full, counted by all of them. A
# counter is read once per call and written once at its end (INCRBY), set to expire when the
# call created it. KEYS: every click's counters in turn. ARGV: per click, its number of caps n,
# then n caps, then n expiries (epoch s). Returns per click 0 (counted) or the 1-based position
# of its first full cap (nothing counted).
_COUNT = Script(
    b"""
local used, added, expire, out = {}, {}, {}, {}
local k, a = 0, 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local full = 0
  for i = 1, n do
    local key = KEYS[k + i]
    if used[key] == nil then
      used[key] = tonumber(redis.call('GET', key) or '0')
    end
    if used[key] >= tonumber(ARGV[a + i]) then
      full = i
      break
    end
  end
  if full == 0 then
    for i = 1, n do
      local key = KEYS[k + i]
      used[key] = used[key] + 1
      added[key] = (added[key] or 0) + 1
      expire[key] = ARGV[a + n + i]
    end
  end
  out[#out + 1] = full
  k = k + n
  a = a + 1 + 2 * n
end
for key, count in pairs(added) do
  if redis.call('INCRBY', key, count) == count then
    redis.call('EXPIREAT', key, expire[key])
  end
end
return out
"""
)


class Destination:
    """A cap's fallback: its Location is two strings around the click id."""

    __slots__ = ("location_head", "location_tail")

    def __init__(self, location: tuple[str, str]) -> None:
        self.location_head, self.location_tail = location

    def location(self, click_id: str) -> str:
        return self.location_head + click_id + self.location_tail


class EdgeCap:
    """One click cap, compiled. ``fallback``: None for wherever the click would have gone."""

    __slots__ = ("campaign", "cap", "cap_id", "fallback", "period")

    def __init__(self, cap: ClickCap, period: CapPeriod, fallback: Destination | None) -> None:
        self.cap_id = cap.cap_id
        self.cap = b"%d" % cap.cap
        self.period = period
        self.campaign = cap.campaign
        self.fallback = fallback


UNCHECKED = EdgeCap(ClickCap(0, 0, "day"), CapPeriod.day, None)
"""``CapGate.check``'s answer when the caps could not be checked: over cap, no fallback."""


class EdgeCaps:
    """A link's click caps, in the order they are judged (the first full one chooses the
    fallback). ``campaigns``: True when one of them counts a campaign only."""

    __slots__ = ("campaigns", "caps", "prepared")

    def __init__(self, caps: tuple[EdgeCap, ...]) -> None:
        self.caps = caps
        self.campaigns = any(cap.campaign is not None for cap in caps)
        # (windows' generation, publisher, the script call's part) of the last click counted
        # by all of ``caps``: the next one almost always has the same (``CapGate.check``).
        self.prepared: tuple[int, int, Prepared] | None = None

    @classmethod
    def compile(
        cls, caps: Sequence[ClickCap], split: Callable[[str], tuple[str, str]]
    ) -> EdgeCaps | None:
        """``caps`` compiled, ``split`` making a fallback's Location (``linkcache``); None
        when none can be counted (a period a newer release wrote is skipped)."""
        compiled = tuple(
            EdgeCap(cap, CapPeriod(cap.period), _fallback(cap.fallback_url, split))
            for cap in caps
            if cap.period in CapPeriod.__members__
        )
        return cls(compiled) if compiled else None

    def applying(self, cn: str | None) -> tuple[EdgeCap, ...]:
        """The caps that count a click whose campaign is ``cn``."""
        if not self.campaigns:
            return self.caps
        return tuple(cap for cap in self.caps if cap.campaign is None or cap.campaign == cn)


def _fallback(url: str | None, split: Callable[[str], tuple[str, str]]) -> Destination | None:
    return Destination(split(url)) if url else None


class Windows:
    """The current window of each period, cached until it ends: per click, one comparison.
    ``generation`` changes whenever a cached window ends: a call prepared under the same
    generation still names the right counters (``CapGate.check``)."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        # period -> (window name YYYYMMDD, first µs, first µs after it, counter expiry epoch s)
        self._current: dict[CapPeriod, tuple[str, int, int, bytes]] = {}
        self.generation = 0
        self._forget()

    def _forget(self) -> None:
        self._current.clear()
        self.generation += 1
        # Every cached window holds [_from_us, _until_us).
        self._from_us, self._until_us = -(1 << 62), 1 << 62

    def current(self, now_us: int) -> int:
        """The generation, once every cached window holds ``now_us`` (else they are dropped)."""
        if not self._from_us <= now_us < self._until_us:
            self._forget()
        return self.generation

    def window(self, period: CapPeriod, now_us: int) -> tuple[str, bytes]:
        """(the name of the window of ``period`` holding ``now_us``, µs since the epoch; the
        expiry its counters get, epoch s as ASCII)."""
        cached = self._current.get(period)
        if cached is not None and cached[1] <= now_us < cached[2]:
            return cached[0], cached[3]
        if cached is not None:  # its window ended: what was prepared with it is stale
            self._forget()
        entry = window_of(period, now_us, self.tz)
        self._current[period] = entry
        self._from_us = max(self._from_us, entry[1])
        self._until_us = min(self._until_us, entry[2])
        return entry[0], entry[3]


def window_of(period: CapPeriod, now_us: int, tz: tzinfo) -> tuple[str, int, int, bytes]:
    """(window name YYYYMMDD, its first µs, the first µs after it, its counters' expiry epoch
    s as ASCII) of the window of ``period`` in ``tz`` holding ``now_us``. Pure."""
    instant = datetime.fromtimestamp(now_us / 1_000_000, UTC)
    start = window_start(period, instant, tz)
    first = datetime(start.year, start.month, start.day, tzinfo=tz)
    end = window_end_instant(period, start, tz)
    expire = int((end + timedelta(seconds=EXPIRE_AFTER_END_S)).timestamp())
    return (
        start.strftime("%Y%m%d"),
        int(first.timestamp() * 1_000_000),
        int(end.timestamp() * 1_000_000),
        b"%d" % expire,
    )


Call = tuple[list[bytes], list[bytes]]
# One click's part of a script call: (its keys, its arguments) as RESP bulk strings, with
# their numbers.
Prepared = tuple[int, int, bytes, bytes]
_EVALSHA = bulk(b"EVALSHA") + bulk(_COUNT.sha)
_EVAL = bulk(b"EVAL") + bulk(_COUNT.text)


class _Check:
    """One click's check: its publisher, its part of the script call, and the future its
    request awaits (the script's answer for it; None: not checked)."""

    __slots__ = ("future", "prepared", "publisher_id")

    def __init__(
        self, publisher_id: int, prepared: Prepared, future: asyncio.Future[int | None]
    ) -> None:
        self.publisher_id = publisher_id
        self.prepared = prepared
        self.future = future


class CapGate:
    """Checks and counts clicks against their caps in Redis. ``timeout_s``: the most a batch
    waits for its replies; ``healthy``: False while the click writer spools (Redis known
    down): the check is not even tried."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: RedisKeys,
        tz: tzinfo,
        *,
        timeout_s: float,
        healthy: Callable[[], bool] = lambda: True,
    ) -> None:
        self._sender = sender_for(redis)  # one Redis, or the nodes of a cluster
        self._keys = keys
        self.windows = Windows(tz)
        self._timeout_s = timeout_s
        self._healthy = healthy
        self._pending: list[_Check] = []
        self._drainer: asyncio.Task[None] | None = None
        self._failure_logged_at = float("-inf")

    def call(self, caps: Sequence[EdgeCap], publisher_id: int, now_us: int) -> Call:
        """One click's part of a ``_COUNT`` call, at ``now_us`` against ``caps``: (its
        counters' keys, [len(caps), each cap, each counter's expiry])."""
        keys: list[bytes] = []
        expiries: list[bytes] = []
        for cap in caps:
            window, expire_at = self.windows.window(cap.period, now_us)
            keys.append(self._keys.cap_clicks(publisher_id, cap.cap_id, window).encode())
            expiries.append(expire_at)
        return keys, [b"%d" % len(caps), *(cap.cap for cap in caps), *expiries]

    def _prepare(
        self, caps: EdgeCaps, applying: tuple[EdgeCap, ...], publisher_id: int, now_us: int
    ) -> Prepared:
        """``call`` in RESP, kept on ``caps`` while the windows hold when all of them apply
        (no campaign cap left out): the next click of the link reuses it."""
        generation = self.windows.current(now_us)
        prepared = caps.prepared
        if (
            applying is caps.caps
            and prepared is not None
            and prepared[:2] == (generation, publisher_id)
        ):
            return prepared[2]
        keys, args = self.call(applying, publisher_id, now_us)
        part = (len(keys), len(args), b"".join(map(bulk, keys)), b"".join(map(bulk, args)))
        if applying is caps.caps:
            caps.prepared = (self.windows.generation, publisher_id, part)
        return part

    async def check(
        self, caps: EdgeCaps, publisher_id: int, cn: str | None, now_us: int
    ) -> EdgeCap | None:
        """Count the click (campaign ``cn``, at ``now_us``) against the caps applying to it:
        None when it was counted by every one; else the first full cap (nothing counted), or
        ``UNCHECKED`` when Redis could not tell. Never raises but for cancellation."""
        applying = caps.applying(cn)
        if not applying:
            return None
        if not self._healthy():
            return UNCHECKED
        prepared = self._prepare(caps, applying, publisher_id, now_us)
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Check(publisher_id, prepared, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        full = await future
        if full is None:
            return UNCHECKED
        return applying[full - 1] if full else None

    async def _drain(self) -> None:
        """Send the batches one after the other until none is waiting; every future is
        settled, on every path (None: not checked)."""
        batch: list[_Check] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                for check, full in zip(batch, await self._send(batch), strict=True):
                    if not check.future.done():
                        check.future.set_result(full)
                batch = []
        finally:
            self._drainer = None
            for check in [*batch, *self._pending]:
                if not check.future.done():
                    check.future.set_result(None)
            self._pending = []

    async def _send(self, batch: list[_Check]) -> list[int | None]:
        """Per check of ``batch``, in order: the script's answer, or None for all when Redis
        failed or did not answer in time. One script call per publisher (its counters share
        a hash tag), all in one write."""
        by_publisher: dict[int, list[_Check]] = {}
        for check in batch:
            by_publisher.setdefault(check.publisher_id, []).append(check)
        groups = list(by_publisher.values())
        parts = [[check.prepared for check in group] for group in groups]
        try:
            async with asyncio.timeout(self._timeout_s):
                replies = await _run(self._sender, parts)
        except Exception as exc:  # Redis down, slow, or a surprise: the clicks go unchecked
            raise_if_cancelling()
            self._log_failure(exc)
            return [None] * len(batch)
        found = {id(c): int(full) for group, reply in zip(groups, replies, strict=True)
                 for c, full in zip(group, reply, strict=True)}  # fmt: skip
        return [found[id(check)] for check in batch]

    def _log_failure(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._failure_logged_at >= FAILURE_LOG_EVERY_S:
            self._failure_logged_at = now
            log.warning("click caps not checked; clicks flagged over_cap: %r", exc)

    async def close(self) -> None:
        if self._drainer is not None:
            await self._drainer
        await self._sender.close()


def _command(script: bytes, parts: list[Prepared]) -> bytes:
    """One ``_COUNT`` call (``script``: ``_EVALSHA`` or ``_EVAL``) of the clicks' ``parts``."""
    keys = sum(part[0] for part in parts)
    args = sum(part[1] for part in parts)
    return b"*%d\r\n%s%s%s%s" % (
        3 + keys + args,
        script,
        bulk(b"%d" % keys),
        b"".join(part[2] for part in parts),
        b"".join(part[3] for part in parts),
    )


async def _run(sender: Sender, calls: list[list[Prepared]]) -> list[Any]:
    """The replies of ``calls`` (each one script call), sent in one write; by the script's
    text when Redis does not know its SHA1 (NOSCRIPT fails before anything ran)."""
    try:
        return await sender.send([_command(_EVALSHA, parts) for parts in calls])
    except NoScriptError:
        return await sender.send([_command(_EVAL, parts) for parts in calls])
