"""Quality flags that need more than the request: run by the flusher, off the hot path.

- ``bot``: the user agent matches the maintained crawler list (the ``crawler-user-agents``
  package: update the package to update the list) or the operator's extra patterns file.
  Matching ~1,500 patterns costs ~0.2 ms per new user agent, so results are cached.
- ``duplicate``: the same session clicked the same link within ``duplicate_window_s``
  before, or the same IP clicked the same link more than ``ip_clicks_per_minute`` times in
  the minute up to this click. Decided in Redis, one pipelined round trip per batch, from
  the clicks' own times, so a backlog flushed late is judged as it happened.

A click delivered twice (a flusher crash) gets the same answer both times: each click is a
member of a sorted set scored by its time, and only strictly earlier members count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import crawleruseragents
import redis.asyncio as aioredis

from app.events import Click, Flag
from app.keys import RedisKeys
from app.settings import Settings

_PATTERN_CHUNK = 50  # one huge alternation is slower than a few medium ones
_UA_CACHE_SIZE = 50_000
IP_WINDOW_MS = 60_000
# Members older than this before the newest click are dropped; a click re-delivered within
# this long is judged exactly as the first time.
KEEP_MS = 10 * 60_000

# Adds the click to the set and counts the members strictly before it within the window.
_EARLIER_IN_WINDOW = """
local key, member = KEYS[1], ARGV[1]
local score, window, keep = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZADD', key, score, member)
local earlier = 0
local found = redis.call('ZRANGEBYSCORE', key, score - window, score, 'WITHSCORES')
for i = 1, #found, 2 do
  if tonumber(found[i + 1]) < score or found[i] < member then
    earlier = earlier + 1
  end
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (score - window - keep))
redis.call('PEXPIRE', key, window + keep)
return earlier
"""


def load_bot_patterns(extra_file: Path | None) -> list[str]:
    """The package's patterns, then the operator's: a JSON list of strings or of
    ``{"pattern": ...}`` objects (the package's own format)."""
    patterns = [entry["pattern"] for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA]
    if extra_file is not None:
        for entry in json.loads(extra_file.read_text(encoding="utf-8")):
            patterns.append(entry if isinstance(entry, str) else entry["pattern"])
    return patterns


class BotList:
    def __init__(self, patterns: Sequence[str]) -> None:
        self._chunks = [
            re.compile("|".join(patterns[i : i + _PATTERN_CHUNK]))
            for i in range(0, len(patterns), _PATTERN_CHUNK)
        ]
        self._cache: dict[str, bool] = {}

    def is_bot(self, user_agent: str) -> bool:
        known = self._cache.get(user_agent)
        if known is None:
            known = any(chunk.search(user_agent) for chunk in self._chunks)
            if len(self._cache) >= _UA_CACHE_SIZE:
                self._cache.clear()
            self._cache[user_agent] = known
        return known


class ClickClassifier:
    def __init__(self, settings: Settings, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self._bots = (
            BotList(load_bot_patterns(settings.bot_patterns_file)) if settings.flag_bots else None
        )
        self._redis = redis
        self._keys = keys
        self._session_window_ms = int(settings.duplicate_window_s * 1000)
        self._ip_limit = settings.ip_clicks_per_minute
        self._earlier = redis.register_script(_EARLIER_IN_WINDOW)

    async def classify(self, clicks: Sequence[Click]) -> None:
        """Add ``bot`` and ``duplicate`` flags to the clicks, in place."""
        if self._bots is not None:
            for click in clicks:
                if click.user_agent and self._bots.is_bot(click.user_agent):
                    click.flags |= Flag.bot.value
        checks: list[tuple[Click, int]] = []  # (click, threshold) per script call
        async with self._redis.pipeline(transaction=False) as pipe:
            for click in clicks:
                ts_ms = click.ts_us // 1000
                if self._session_window_ms:
                    key = self._keys.seen_by_session(click.link_id, click.session_id)
                    args: list[str | int] = [
                        click.click_id,
                        ts_ms,
                        self._session_window_ms,
                        KEEP_MS,
                    ]
                    await self._earlier(keys=[key], args=args, client=pipe)
                    checks.append((click, 1))
                if self._ip_limit and click.ip:
                    key = self._keys.seen_by_ip(click.link_id, click.ip)
                    await self._earlier(
                        keys=[key], args=[click.click_id, ts_ms, IP_WINDOW_MS, KEEP_MS], client=pipe
                    )
                    checks.append((click, self._ip_limit))
            if not checks:
                return
            counts = await pipe.execute()
        for (click, threshold), earlier in zip(checks, counts, strict=True):
            if earlier >= threshold:
                click.flags |= Flag.duplicate.value
