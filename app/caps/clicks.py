"""Click caps, the caps API's side (docs/commissions.md, "Click caps at the redirect"): telling
the redirect that a publisher's click caps changed, and reading what a cap's window used.

The redirect counts clicks against caps in Redis (``app/edge/caps.py``); the caps reach it with
each link's mirror record (``app.links.mirror``, minor 1.2), read from Postgres by
``app.links.caps``. The redirect must not load this module (it is free to load anything the
caps API needs); it loads ``app.caps.windows`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

import redis.asyncio as aioredis

from app.caps.windows import CapPeriod, window_start
from app.core.db import Conn
from app.core.keys import RedisKeys
from app.links import mirror
from app.links.caps import ClickCap, click_caps_for_links

__all__ = [
    "CapRow",
    "ClickCap",
    "LinkMirror",
    "click_caps_for_links",
    "clicks_used",
    "publish_caps",
]


@dataclass(frozen=True)
class LinkMirror:
    """Where link changes are published, as ``app/api/links.py`` does: the Redis client, its
    keys, and whether the mirror is written in the unversioned legacy form
    (``CLICKTRACK_LINK_MIRROR_LEGACY_WRITES``)."""

    redis: aioredis.Redis
    keys: RedisKeys
    legacy: bool = False


class CapRow(Protocol):
    """What ``clicks_used`` reads of a cap (the caps API's row or model)."""

    @property
    def id(self) -> int: ...

    @property
    def publisher_id(self) -> int: ...

    @property
    def period(self) -> str: ...


async def publish_caps(conn: Conn, mirror_to: LinkMirror, publisher_id: int) -> int:
    """Rewrite the mirror record of every link of ``publisher_id`` with the click caps
    Postgres has now (read on ``conn``, after the change's commit) and tell every redirect
    worker to forget its copy: the next click of each link is judged by the new caps. Call
    it after any change of one of the publisher's click caps (a publisher-wide or campaign
    cap applies to all its links). A record holding a newer link change is left as it is
    (its caps are then read from Postgres by the redirect). The number of records written.
    Raises Redis's errors: the caller may say the change applies within the mirror's TTL
    (``MIRROR_TTL_S``) and the link cache's.

    With legacy writes the unversioned record has no room for caps: the links are only
    announced, and caps apply once legacy writes stop (as rules do)."""
    links = await mirror.publisher_links(conn, publisher_id)
    redis, keys = mirror_to.redis, mirror_to.keys
    if mirror_to.legacy:
        async with redis.pipeline(transaction=False) as pipe:
            for link in links:
                pipe.publish(keys.links_changed_channel, link.code)
            await pipe.execute()
        return 0
    return sum(await mirror.write_known(redis, keys, links, announce=True))


async def clicks_used(
    redis: aioredis.Redis, keys: RedisKeys, cap_row: CapRow, now: datetime, tz: tzinfo
) -> int:
    """The clicks counted so far by click cap ``cap_row`` in its window holding ``now``
    (aware) in ``tz`` (the period time zone): what the redirect let through in that window
    (at most the cap), plus any click counted whose record then failed. 0 for a window
    nothing was counted in."""
    start = window_start(CapPeriod(cap_row.period), now, tz)
    key = keys.cap_clicks(cap_row.publisher_id, cap_row.id, start.strftime("%Y%m%d"))
    raw = await redis.get(key)
    return int(raw) if raw is not None else 0
