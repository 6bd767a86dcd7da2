"""The redirect's view of links: a compact record, mirrored in Redis, read through from Postgres.

Writers (the API) change Postgres, then call ``publish_change``: it writes the new state to the
Redis copy unless the copy already holds a newer one (two changes of one link may reach Redis
in either order), and tells every redirect worker to forget its in-process copy. Readers fill a
missing Redis copy from Postgres with ``SET NX`` only, so a reader that fetched the old row just
before a change can never overwrite the writer's newer copy. A worker that misses a message
(disconnected) clears its whole cache when it resubscribes.

The record is JSON, versioned so that pods of two releases can share it during a rolling
upgrade::

    [[MAJOR, MINOR], updated_us, id, publisher_id, destination, active, expires_at, ...]

The first two items mean the same in every version: the format version, then the link's
``updated_at`` in µs since the epoch (what ``publish_change`` orders changes by). A MINOR
version only appends items, which older readers ignore; a record of another MAJOR version, or
one that does not decode, is not used: the reader goes to Postgres, leaves the record as it is
(a pod of another release may read it), counts it in ``clicktrack_link_mirror_unreadable`` and
logs it at most once a minute. The unversioned record of earlier releases, ``[id,
publisher_id, destination, active, expires_at]``, is still read.

Minors of major 1:

- 1.0: the five fields above.
- 1.1: ``rules``, the link's rules in their JSON form (``app.links.rules.as_json``), written
  only for a link that has rules: a link without any is written exactly as a 1.0 record.
  A reader of 1.0 ignores the item (it sends every click to the link's destination: the
  rules apply once every web pod reads 1.1); rules that do not decode make the record
  unreadable, as any corrupt field does (a rule of a kind it does not know is kept, and
  never matches: ``app.links.rules.from_stored``); a later minor appends after them, writing ``[]``
  for a link without rules. The unversioned record has no room for them (its
  readers unpack exactly five items): with ``legacy`` writes, rules reach the redirect only
  through Postgres reads, until legacy writes stop and the record is rewritten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.core.db import Pool
from app.core.keys import RedisKeys
from app.core.metrics import LINK_MIRROR_UNREADABLE
from app.core.resp import PackedSender, Script
from app.links.model import Link, LinkStatus, Rule
from app.links.rules import as_json, from_stored

log = logging.getLogger(__name__)

# A Redis copy lives this long at most: it bounds staleness should a change notice be lost
# while Redis was unreachable.
MIRROR_TTL_S = 600
# The record format this release writes; it reads any MINOR of the same MAJOR. A link
# without rules is written as minor 0 (exactly as before rules existed).
MAJOR, MINOR = 1, 1
_VERSION_WITHOUT_RULES = [MAJOR, 0]
# An unreadable record is counted every time, logged at most this often (s) per reason: a
# rolling upgrade can make thousands of them.
UNREADABLE_LOG_EVERY_S = 60.0

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class EdgeLink:
    id: int
    code: str
    publisher_id: int
    destination: str
    active: bool  # False: disabled (404); archived is active and expired at 0.0 (410)
    expires_at: float | None  # epoch seconds
    updated_us: int = 0  # the link's updated_at, µs since the epoch; 0: unknown (old record)
    rules: tuple[Rule, ...] = ()  # in order, the first that matches wins (app.links.rules)


def encode(link: EdgeLink, *, legacy: bool = False) -> bytes:
    """The Redis record of ``link``; ``legacy``: the unversioned form of earlier releases
    (for a rolling upgrade from one of them: they cannot read the versioned one)."""
    fields = [link.id, link.publisher_id, link.destination, link.active, link.expires_at]
    if legacy:
        return orjson.dumps(fields)
    if not link.rules:
        return orjson.dumps([_VERSION_WITHOUT_RULES, link.updated_us, *fields])
    return orjson.dumps([[MAJOR, MINOR], link.updated_us, *fields, as_json(link.rules)])


def decode(code: str, raw: bytes | str) -> EdgeLink | None:
    """The link a Redis record holds; None when it cannot be used (it does not decode, or its
    MAJOR version is not ours): counted and logged, never raised."""
    link = _parse(code, raw)
    if isinstance(link, str):
        _unreadable(link, code)
        return None
    return link


def _parse(code: str, raw: bytes | str) -> EdgeLink | str:
    """The link, or why it cannot be read: "corrupt" or "major"."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "corrupt"
    if not isinstance(record, list) or not record:
        return "corrupt"
    version = record[0]
    if _is_int(version):  # unversioned, from a release before versions: no updated_at
        link = _link(code, record, 0)
    elif isinstance(version, list) and len(version) >= 2 and all(map(_is_int, version[:2])):
        if version[0] != MAJOR:
            return "major"
        rules = version[1] >= 1  # minor 0 has no rules: no item past the five is read
        link = _link(code, record[2:], record[1], rules) if len(record) > 1 else None
    else:
        link = None
    return link or "corrupt"


def _link(
    code: str, fields: Sequence[Any], updated_us: Any, with_rules: bool = False
) -> EdgeLink | None:
    """The link from the five fields every format carries, and ``with_rules`` (minor 1 and
    up) the rules after them when present (more are ignored); None when one is missing or
    of the wrong type."""
    if len(fields) < 5 or not _is_int(updated_us):
        return None
    link_id, publisher_id, destination, active, expires_at = fields[:5]
    expires_ok = expires_at is None or (_is_int(expires_at) or isinstance(expires_at, float))
    if not (_is_int(link_id) and _is_int(publisher_id) and expires_ok):
        return None
    if not (isinstance(destination, str) and isinstance(active, bool)):
        return None
    expires = None if expires_at is None else float(expires_at)
    try:
        rules = from_stored(fields[5]) if with_rules and len(fields) > 5 else ()
    except ValueError:
        return None
    return EdgeLink(link_id, code, publisher_id, destination, active, expires, updated_us, rules)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Unreadable:
    """Per reason: when the last log line was written and how many records since."""

    def __init__(self, reason: str) -> None:
        self.counter = LINK_MIRROR_UNREADABLE.labels(reason)
        self.logged_at = float("-inf")
        self.unlogged = 0


_UNREADABLE = {reason: _Unreadable(reason) for reason in ("corrupt", "major")}


def _unreadable(reason: str, code: str) -> None:
    state = _UNREADABLE[reason]
    state.counter.inc()
    state.unlogged += 1
    now = time.monotonic()
    if now - state.logged_at >= UNREADABLE_LOG_EVERY_S:
        log.warning(
            "link mirror record not readable (%s); read from Postgres instead",
            reason,
            extra={"code": code, "reason": reason, "records": state.unlogged},
        )
        state.logged_at, state.unlogged = now, 0


async def load_from_postgres(pool: Pool, code: str) -> EdgeLink | None:
    """The link from Postgres (None: no such code). Unbounded in time: the caller bounds it."""
    row = await pool.fetchrow(
        """SELECT id, publisher_id, destination, status <> 'disabled' AS active,
                  CASE WHEN status = 'archived' THEN 0.0
                       ELSE extract(epoch FROM expires_at)::float8 END AS expires_at,
                  (extract(epoch FROM updated_at) * 1000000)::int8 AS updated_us, rules
           FROM links WHERE code = $1""",
        code,
    )
    if row is None:
        return None
    return EdgeLink(
        row["id"],
        code,
        row["publisher_id"],
        row["destination"],
        row["active"],
        row["expires_at"],
        row["updated_us"],
        from_stored(orjson.loads(row["rules"])),  # jsonb arrives as text
    )


def from_link(link: Link) -> EdgeLink:
    """The redirect's view of ``link``. An archived link is carried as active and expired at
    the epoch (``expires_at=0.0``): the redirect answers it 410 like an expired link, and so
    does every release that reads this record format, with no new field (``load_from_postgres``
    says the same)."""
    archived = link.status is LinkStatus.archived
    expires_at = None if link.expires_at is None else link.expires_at.timestamp()
    return EdgeLink(
        link.id,
        link.code,
        link.publisher_id,
        link.destination,
        link.status is not LinkStatus.disabled,
        0.0 if archived else expires_at,
        (link.updated_at - _EPOCH) // _MICROSECOND,  # exact: a float would round the µs
        link.rules,
    )


# Write the record unless the one in Redis says it is of a change at least as recent (its
# second item, whatever its MAJOR version); a record that does not decode, or an unversioned
# one, is replaced. The change is announced either way.
# KEYS: the link's key. ARGV: record, updated_us, ttl (s), channel, code.
_PUBLISH = Script(
    b"""
local current = redis.call('GET', KEYS[1])
local written = 1
if current then
  local ok, record = pcall(cjson.decode, current)
  if ok and type(record) == 'table' and type(record[1]) == 'table'
      and type(record[2]) == 'number' and record[2] >= tonumber(ARGV[2]) then
    written = 0
  end
end
if written == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return written
"""
)


async def publish_change(
    redis: aioredis.Redis, keys: RedisKeys, link: Link, *, legacy: bool = False
) -> bool:
    """Write ``link`` (as just committed) to the mirror unless it holds a newer change, and
    announce it. True if written. Never raises: a Redis failure is logged, the caches catch
    up within ``MIRROR_TTL_S``. ``legacy``: write the unversioned record, unordered (see
    ``encode``)."""
    code = link.code
    edge = from_link(link)
    try:
        if legacy:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.set(keys.link(code), encode(edge, legacy=True), ex=MIRROR_TTL_S)
                pipe.publish(keys.links_changed_channel, code)
                await pipe.execute()
            return True
        args = (encode(edge), b"%d" % edge.updated_us, b"%d" % MIRROR_TTL_S)
        call = (
            (keys.link(code).encode(),),
            (*args, keys.links_changed_channel.encode(), code.encode()),
        )
        sender = PackedSender(redis)
        try:
            [written] = await _PUBLISH.run(sender, [call])
        finally:
            await sender.close()
        return bool(written)
    except RedisError as exc:
        log.warning(
            "link change not announced; redirect caches catch up within %ss",
            MIRROR_TTL_S,
            extra={"code": code, "error": str(exc)},
        )
        return False
