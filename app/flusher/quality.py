"""Quality flags that need more than the request: run by the flusher, off the hot path.

- ``bot``: the user agent matches the maintained crawler list (the ``crawler-user-agents``
  package: update the package to update the list), our own ``LINK_PREVIEW_PATTERNS`` (the
  link-preview fetchers of social apps the package misses) or the operator's extra patterns
  file.
  Matching ~1,500 patterns costs ~0.2 ms per new user agent, so results are cached.
- ``duplicate``: the same session clicked the same link within ``duplicate_window_s``
  before, or the same IP clicked the same link more than ``ip_clicks_per_minute`` times in
  the minute up to this click. "The same IP" is the same full client address, whatever
  ``CLICKTRACK_IP_MODE`` stores: the record's ``ip_key``, a keyed hash of the address made
  by the redirect (``app/edge/privacy.py``), which lives in these windows only; a record
  without one (written by a web release before record minor 1.1) is judged by its stored
  ``ip``, which is a whole network's in truncate mode. Decided in Redis, one pipelined
  round trip per batch, from the clicks' own times, so a backlog flushed late is judged as
  it happened. The checks of a batch run in Lua, a few hundred per script call, all calls
  in one write. On a Redis Cluster the windows carry hash tags (``app/core/keys.py``) and a
  batch's checks are grouped by slot: one script call holds keys of one slot only.

A click delivered twice (a flusher crash) gets the same answer both times: each click is a
member of a sorted set scored by its time, and only strictly earlier members count. The
windows are kept in Redis's memory only, not in its AOF (see ``_EARLIER_IN_WINDOW``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import crawleruseragents
import redis.asyncio as aioredis
from redis.crc import key_slot

from app.clicks.record import Click, Flag
from app.core import resp
from app.core.keys import RedisKeys
from app.core.redis import is_cluster
from app.core.resp_cluster import sender_for
from app.settings import Settings

_PATTERN_CHUNK = 50  # one huge alternation is slower than a few medium ones
_UA_CACHE_SIZE = 50_000
IP_WINDOW_MS = 60_000
# Members older than this before the newest click are dropped; a click re-delivered within
# this long is judged exactly as the first time.
KEEP_MS = 10 * 60_000
_KEEP = b"%d" % KEEP_MS
_BOT = int(Flag.bot)
_DUPLICATE = int(Flag.duplicate)

# For each check i, KEYS[i] with ARGV[3i-1..3i+1] = member, score (ms), window (ms): adds
# the click to the set and returns how many members come strictly before it, in (score,
# member) order, within the window: a re-delivered click gets the same answer. Most keys
# hold a single click (a visitor's first on a link), answered without counting.
# The windows are not written to the AOF nor sent to replicas (REPL_NONE): they are
# short-lived and rebuilt by the clicks that follow, and writing two sorted-set updates per
# click to the AOF cost Redis about as much as the updates themselves. After a Redis restart
# or a failover the windows start empty: for one window's length, a click whose earlier
# click came before it is not flagged ``duplicate``.
_EARLIER_IN_WINDOW = resp.Script(b"""
redis.set_repl(redis.REPL_NONE)
local keep = tonumber(ARGV[1])
local counts = {}
for i = 1, #KEYS do
  local key, member = KEYS[i], ARGV[3 * i - 1]
  local score, window = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  redis.call('ZADD', key, score, member)
  local earlier = 0
  if redis.call('ZCARD', key) > 1 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (score - window - keep))
    earlier = redis.call('ZRANK', key, member)
      - redis.call('ZCOUNT', key, '-inf', '(' .. (score - window))
  end
  redis.call('PEXPIRE', key, window + keep)
  counts[i] = earlier
end
return counts
""")
# Checks per script call: each call holds Redis for its duration, and the redirect's writes
# wait behind it; the calls of a batch still go in one round trip.
CHECKS_PER_CALL = 200


# Link-preview fetchers: a social or chat app fetches a shared link to draw its card, and that
# fetch is no visitor. The crawler-user-agents package (1.67) already matches Mastodon,
# Slackbot-LinkExpanding, Discordbot, TelegramBot, WhatsApp (also Signal's preview, which sends
# "WhatsApp/2"), facebookexternalhit and Facebot (also iMessage's), Twitterbot, LinkedInBot,
# Iframely, Embedly, SkypeUriPreview (also Teams), Applebot, Google's snippet fetcher,
# redditbot, Pinterest, Snapchat, Viber, vkShare, Mattermost-Bot, Synapse (Matrix), Lemmy,
# Friendica and gotosocial (tests/unit/test_bot_patterns.py checks each, so an update of the
# package that drops one shows). These are the ones it misses, each with a real user agent:
LINK_PREVIEW_PATTERNS = (
    # Bluesky's card fetcher: "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:...)"
    r"Bluesky Cardyb",
    # Google Chat's and Google+'s page renderer, without the snippet URL the package matches
    r"Google-PageRenderer",
    # Misskey (and its forks Sharkey, Firefish...) fetching a note's link: "Misskey/2024.10.1 (...)"
    r"^(?:Misskey|Sharkey|Firefish|Iceshrimp)/",
    # Pleroma and Akkoma fetching a post's link: "Pleroma 2.6.0; https://host <admin@host>"
    r"^(?:Pleroma|Akkoma) \d",
)


def load_bot_patterns(extra_file: Path | None) -> list[str]:
    """The package's patterns, ours (``LINK_PREVIEW_PATTERNS``), then the operator's: a JSON
    list of strings or of ``{"pattern": ...}`` objects (the package's own format)."""
    patterns = [entry["pattern"] for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA]
    patterns += LINK_PREVIEW_PATTERNS
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
        self._sender = sender_for(redis)
        self._keys = keys
        self._cluster = is_cluster(redis)
        self._session_tag = keys.session_window_tag if self._cluster else ""
        session_window_ms = int(settings.duplicate_window_s * 1000)
        self._session_window = b"%d" % session_window_ms if session_window_ms else None
        self._ip_window = b"%d" % IP_WINDOW_MS
        self._ip_limit = settings.ip_clicks_per_minute

    async def classify(self, clicks: Sequence[Click]) -> None:
        """Add ``bot`` and ``duplicate`` flags to the clicks, in place."""
        if self._bots is not None:
            for click in clicks:
                if click.user_agent and self._bots.is_bot(click.user_agent):
                    click.flags |= _BOT
        checked: list[tuple[Click, int]] = []  # (click, threshold) per check
        keys: list[bytes] = []
        args: list[bytes] = []  # member, score, window per check
        session_window, session_tag, cluster = (
            self._session_window,
            self._session_tag,
            self._cluster,
        )
        for click in clicks:
            member = click.click_id.encode()
            score = b"%d" % (click.ts_us // 1000)
            if session_window is not None:
                session_key = self._keys.seen_by_session(
                    click.link_id, click.session_id, session_tag
                )
                keys.append(session_key.encode())
                args += (member, score, session_window)
                checked.append((click, 1))
            address = click.ip_key or click.ip
            if self._ip_limit and address:
                ip_tag = RedisKeys.ip_window_tag(address) if cluster else ""
                keys.append(self._keys.seen_by_ip(click.link_id, address, ip_tag).encode())
                args += (member, score, self._ip_window)
                checked.append((click, self._ip_limit))
        if not checked:
            return
        counts = await self._earlier_in_window(keys, args)
        for (click, threshold), earlier in zip(checked, counts, strict=True):
            if earlier >= threshold:
                click.flags |= _DUPLICATE

    async def close(self) -> None:
        """Give back the Redis connection the checks are sent on."""
        await self._sender.close()

    async def _earlier_in_window(self, keys: list[bytes], args: list[bytes]) -> list[int]:
        """One script call per CHECKS_PER_CALL checks, all in one round trip."""
        if self._cluster:
            return await self._earlier_by_slot(keys, args)
        calls: list[tuple[list[bytes], list[bytes]]] = []
        for start in range(0, len(keys), CHECKS_PER_CALL):
            end = start + CHECKS_PER_CALL
            calls.append((keys[start:end], [_KEEP, *args[3 * start : 3 * end]]))
        replies = await _EARLIER_IN_WINDOW.run(self._sender, calls)
        return [int(count) for reply in replies for count in reply]

    async def _earlier_by_slot(self, keys: list[bytes], args: list[bytes]) -> list[int]:
        """On a cluster: the checks grouped by their keys' slot (in order within a slot),
        one script call per CHECKS_PER_CALL checks of a slot, all in one round trip per
        node; the counts put back in the checks' order."""
        by_slot: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            by_slot.setdefault(key_slot(key), []).append(index)
        order: list[int] = []
        calls: list[tuple[list[bytes], list[bytes]]] = []
        for indices in by_slot.values():
            for start in range(0, len(indices), CHECKS_PER_CALL):
                chunk = indices[start : start + CHECKS_PER_CALL]
                call_args = [_KEEP]
                for i in chunk:
                    call_args += args[3 * i : 3 * i + 3]
                calls.append(([keys[i] for i in chunk], call_args))
                order += chunk
        replies = await _EARLIER_IN_WINDOW.run(self._sender, calls)
        counts = [0] * len(keys)
        for index, count in zip(order, (c for reply in replies for c in reply), strict=True):
            counts[index] = int(count)
        return counts
