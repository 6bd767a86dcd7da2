"""The redirect's view of links: a compact record, mirrored in Redis, read through from Postgres.

Writers (the API) change Postgres, then call ``publish_change``: it overwrites the Redis copy
with the new state and tells every redirect worker to forget its in-process copy. Readers
fill a missing Redis copy from Postgres with ``SET NX`` only, so a reader that fetched the old
row just before a change can never overwrite the writer's newer copy. A worker that misses a
message (disconnected) clears its whole cache when it resubscribes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.core.db import Pool
from app.core.keys import RedisKeys
from app.links.model import Link, LinkStatus

log = logging.getLogger(__name__)

# A Redis copy lives this long at most: it bounds staleness should a change notice be lost
# while Redis was unreachable.
MIRROR_TTL_S = 600


@dataclass(frozen=True, slots=True)
class EdgeLink:
    id: int
    code: str
    publisher_id: int
    destination: str
    active: bool
    expires_at: float | None  # epoch seconds


def encode(link: EdgeLink) -> bytes:
    return orjson.dumps(
        [link.id, link.publisher_id, link.destination, link.active, link.expires_at]
    )


def decode(code: str, raw: bytes | str) -> EdgeLink:
    link_id, publisher_id, destination, active, expires_at = orjson.loads(raw)
    return EdgeLink(link_id, code, publisher_id, destination, active, expires_at)


async def load_from_postgres(pool: Pool, code: str) -> EdgeLink | None:
    row = await pool.fetchrow(
        """SELECT id, publisher_id, destination, status = 'active' AS active,
                  extract(epoch FROM expires_at)::float8 AS expires_at
           FROM links WHERE code = $1""",
        code,
    )
    if row is None:
        return None
    return EdgeLink(
        row["id"], code, row["publisher_id"], row["destination"], row["active"], row["expires_at"]
    )


def from_link(link: Link) -> EdgeLink:
    return EdgeLink(
        link.id,
        link.code,
        link.publisher_id,
        link.destination,
        link.status is LinkStatus.active,
        None if link.expires_at is None else link.expires_at.timestamp(),
    )


async def publish_change(redis: aioredis.Redis, keys: RedisKeys, link: Link) -> None:
    code = link.code
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.link(code), encode(from_link(link)), ex=MIRROR_TTL_S)
            pipe.publish(keys.links_changed_channel, code)
            await pipe.execute()
    except RedisError as exc:
        log.warning(
            "link change not announced; redirect caches catch up within %ss",
            MIRROR_TTL_S,
            extra={"code": code, "error": str(exc)},
        )
