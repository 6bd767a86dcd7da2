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
- 1.2: ``caps`` and ``caps_us``: the link's click caps (``app.links.caps``: link, campaign and
  publisher-wide, ``[[id, cap, period, campaign, fallback_url], ...]``) and the latest change
  of any of them in µs (0: none ever), after ``rules`` (``[]`` when it has none). ``caps`` is
  null, with ``caps_us`` -1, when the writer did not know them: ``publish_change`` is given a
  ``Link`` after the API's commit, without its caps; the redirect then reads the link through
  from Postgres (and writes the full record back), or, Postgres failing, follows the mirror's
  copy without enforcing caps. A link whose caps are known and that has none, and never had
  any, is written as before (1.0 or 1.1). A reader of 1.0 or 1.1 ignores both items (it
  enforces no cap: caps apply once every web pod reads 1.2).

Two writes of one record are ordered by ``updated_us``, then, for the same link state, by
``caps_us`` (``_WRITE``): a link change (``publish_change``) wins over an older link state; a
write that read the link and its caps from Postgres (the read-through's fill, ``publish_caps``)
replaces a record of the same link state whose caps are older or unknown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from app.core.db import Conn, Pool
from app.core.keys import RedisKeys
from app.core.metrics import LINK_MIRROR_UNREADABLE
from app.core.redis import REDIS_UNAVAILABLE
from app.core.resp import Script
from app.core.resp_cluster import sender_for
from app.links.caps import CAPS_OF_LINK, ClickCap, caps_from_stored, caps_json
from app.links.model import Link, LinkStatus, Rule
from app.links.rules import as_json, from_stored

log = logging.getLogger(__name__)

# A Redis copy lives this long at most: it bounds staleness should a change notice be lost
# while Redis was unreachable.
MIRROR_TTL_S = 600
# The record format this release writes; it reads any MINOR of the same MAJOR. A link
# without rules nor caps is written as minor 0 (exactly as before rules existed), one with
# rules and no caps as minor 1.
MAJOR, MINOR = 1, 2
_VERSION_WITHOUT_RULES = [MAJOR, 0]
_VERSION_WITH_RULES = [MAJOR, 1]
# caps_us of a record whose writer did not know the caps (caps null).
CAPS_UNKNOWN_US = -1
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
    # The click caps that may apply (app.links.caps), in the order they are judged; None: not
    # known to the record's writer (read them from Postgres).
    caps: tuple[ClickCap, ...] | None = ()
    caps_us: int = 0  # the latest change of its caps, µs; 0: none ever; -1: caps unknown


def encode(link: EdgeLink, *, legacy: bool = False) -> bytes:
    """The Redis record of ``link``; ``legacy``: the unversioned form of earlier releases
    (for a rolling upgrade from one of them: they cannot read the versioned one)."""
    fields = [link.id, link.publisher_id, link.destination, link.active, link.expires_at]
    if legacy:
        return orjson.dumps(fields)
    if link.caps == () and link.caps_us == 0:  # no caps, never any: as before caps existed
        if not link.rules:
            return orjson.dumps([_VERSION_WITHOUT_RULES, link.updated_us, *fields])
        return orjson.dumps([_VERSION_WITH_RULES, link.updated_us, *fields, as_json(link.rules)])
    caps = None if link.caps is None else caps_json(link.caps)
    caps_us = CAPS_UNKNOWN_US if link.caps is None else link.caps_us
    return orjson.dumps(
        [[MAJOR, MINOR], link.updated_us, *fields, as_json(link.rules), caps, caps_us]
    )


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
        # Minor 0 has no rules, 1 no caps: no item past what the minor has is read.
        link = _link(code, record[2:], record[1], version[1]) if len(record) > 1 else None
    else:
        link = None
    return link or "corrupt"


def _link(code: str, fields: Sequence[Any], updated_us: Any, minor: int = 0) -> EdgeLink | None:
    """The link from the five fields every format carries, then, as ``minor`` has them, the
    rules (1 and up) and the caps (2 and up) when present (more are ignored); None when one
    is missing or of the wrong type."""
    if len(fields) < 5 or not _is_int(updated_us):
        return None
    link_id, publisher_id, destination, active, expires_at = fields[:5]
    expires_ok = expires_at is None or (_is_int(expires_at) or isinstance(expires_at, float))
    if not (_is_int(link_id) and _is_int(publisher_id) and expires_ok):
        return None
    if not (isinstance(destination, str) and isinstance(active, bool)):
        return None
    expires = None if expires_at is None else float(expires_at)
    caps: tuple[ClickCap, ...] | None = ()
    caps_us = 0
    try:
        rules = from_stored(fields[5]) if minor >= 1 and len(fields) > 5 else ()
        if minor >= 2 and len(fields) > 7:
            caps_us = fields[7]
            if not _is_int(caps_us):
                return None
            caps = None if fields[6] is None else caps_from_stored(fields[6])
    except ValueError:
        return None
    return EdgeLink(
        link_id, code, publisher_id, destination, active, expires, updated_us, rules, caps, caps_us
    )


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
    """The link from Postgres, with its click caps (None: no such code). Unbounded in time:
    the caller bounds it."""
    row = await pool.fetchrow(f"{_SELECT_EDGE_LINKS} WHERE l.code = $1", code)
    return None if row is None else _edge_link(row)


# The links as the redirect sees them, with their click caps (app.links.caps).
_SELECT_EDGE_LINKS = f"""
    SELECT l.id, l.code, l.publisher_id, l.destination, l.status <> 'disabled' AS active,
           CASE WHEN l.status = 'archived' THEN 0.0
                ELSE extract(epoch FROM l.expires_at)::float8 END AS expires_at,
           (extract(epoch FROM l.updated_at) * 1000000)::int8 AS updated_us, l.rules,
           k.caps, k.caps_us
    FROM links l {CAPS_OF_LINK}"""


def _edge_link(row: asyncpg.Record) -> EdgeLink:
    caps = row["caps"]  # jsonb arrives as text; NULL: no enabled cap
    return EdgeLink(
        row["id"],
        row["code"],
        row["publisher_id"],
        row["destination"],
        row["active"],
        row["expires_at"],
        row["updated_us"],
        from_stored(orjson.loads(row["rules"])),
        caps_from_stored(None if caps is None else orjson.loads(caps)),
        row["caps_us"],
    )


async def publisher_links(conn: Conn, publisher_id: int) -> list[EdgeLink]:
    """Every link of ``publisher_id`` as the redirect sees it, with its click caps."""
    rows = await conn.fetch(f"{_SELECT_EDGE_LINKS} WHERE l.publisher_id = $1", publisher_id)
    return [_edge_link(row) for row in rows]


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
        None,  # the caps: not known here (the record says so; the redirect reads them)
        CAPS_UNKNOWN_US,
    )


# Write the record unless the one in Redis is of a more recent link change (its second item,
# whatever its MAJOR version) or, ARGV[6] given, of the same one with caps at least as recent
# (its caps_us; 0 for a record without caps, -1 for caps unknown); without ARGV[6] (a link
# change) the same change is kept. A record that does not decode, or an unversioned one, is
# replaced. The change is announced when ARGV[4] names a channel.
# KEYS: the link's key. ARGV: record, updated_us, ttl (s), channel or "", code, caps_us or "".
_WRITE = Script(
    b"""
local current = redis.call('GET', KEYS[1])
local written = 1
if current then
  local ok, record = pcall(cjson.decode, current)
  if ok and type(record) == 'table' and type(record[1]) == 'table'
      and type(record[2]) == 'number' then
    local mine = tonumber(ARGV[2])
    if record[2] > mine or (record[2] == mine and ARGV[6] == '') then
      written = 0
    elseif record[2] == mine then
      local caps_us = 0
      if record[1][1] == 1 and type(record[1][2]) == 'number' and record[1][2] >= 2
          and type(record[10]) == 'number' then
        caps_us = record[10]
      end
      if caps_us > tonumber(ARGV[6]) then
        written = 0
      end
    end
  end
end
if written == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return written
"""
)
# Links written per round trip by write_known.
WRITE_CHUNK = 500


async def write_known(
    redis: aioredis.Redis, keys: RedisKeys, links: Sequence[EdgeLink], *, announce: bool
) -> list[bool]:
    """Write each of ``links`` (read with their caps from Postgres: ``load_from_postgres``,
    ``publisher_links``) unless its record holds a newer link change, or the same one with
    newer caps (``_WRITE``); ``announce``: tell every redirect worker to forget its copy.
    Per link, True if written. Raises Redis's errors."""
    channel = keys.links_changed_channel.encode() if announce else b""
    ttl = b"%d" % MIRROR_TTL_S
    written: list[bool] = []
    sender = sender_for(redis)
    try:
        for start in range(0, len(links), WRITE_CHUNK):
            calls = [
                (
                    (keys.link(link.code).encode(),),
                    (
                        encode(link),
                        b"%d" % link.updated_us,
                        ttl,
                        channel,
                        link.code.encode(),
                        b"%d" % max(link.caps_us, 0),
                    ),
                )
                for link in links[start : start + WRITE_CHUNK]
            ]
            written += [bool(reply) for reply in await _WRITE.run(sender, calls)]
    finally:
        await sender.close()
    return written


async def publish_change(
    redis: aioredis.Redis, keys: RedisKeys, link: Link, *, legacy: bool = False
) -> bool:
    """Write ``link`` (as just committed) to the mirror unless it holds a newer change, and
    announce it. True if written. Its caps are not known here: the record says so, and the
    redirect reads them from Postgres (``EdgeLink.caps``). Never raises: a Redis failure is
    logged, the caches catch up within ``MIRROR_TTL_S``. ``legacy``: write the unversioned
    record, unordered (see ``encode``)."""
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
            (*args, keys.links_changed_channel.encode(), code.encode(), b""),
        )
        sender = sender_for(redis)
        try:
            [written] = await _WRITE.run(sender, [call])
        finally:
            await sender.close()
        return bool(written)
    except REDIS_UNAVAILABLE as exc:
        log.warning(
            "link change not announced; redirect caches catch up within %ss",
            MIRROR_TTL_S,
            extra={"code": code, "error": str(exc)},
        )
        return False
