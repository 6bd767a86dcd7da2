"""The click stream: the only module that speaks Redis stream commands.

The redirect appends one entry per click (``queue_add``, never capped); the flushers read it
through one consumer group, ack what they committed, and ``trim_acknowledged`` drops only
what every group has acked. What the flusher cannot store is set aside with its reason, in
the same MULTI as its ack: dead letters (not a click) and parked entries (a record version it
does not read); ``redrive`` moves them back. ``prune_consumers`` removes consumers long gone.
Entry ids and fields are bytes: use a client without ``decode_responses``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from app.clicks.record import STREAM_FIELD
from app.core import resp
from app.core.keys import RedisKeys

Entry = tuple[bytes, dict[bytes, bytes]]
"""One stream entry: its id and its fields (empty when the entry was deleted meanwhile)."""

_ADD_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry that is not a click: kept aside with the reason, then acked."""

    entry_id: bytes
    reason: str
    payload: bytes | None


@dataclass(frozen=True, slots=True)
class Parked:
    """A record of a major version this flusher does not read: kept aside, then acked."""

    entry_id: bytes
    reason: str
    payload: bytes


# Appends every argument to the stream: one command and one reply for a whole batch, atomic.
_ADD_ALL = resp.Script(
    b"for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', 'c', ARGV[i]) end return #ARGV"
)
ADD_ALL_CHUNK = 1000


async def add_batch(sender: resp.Sender, batch: Sequence[tuple[RedisKeys, bytes]]) -> None:
    """Append every (stream, payload) of a batch: one round trip, one script call per stream
    and chunk. Raises when anything failed (the caller spools the whole batch)."""
    by_stream: dict[RedisKeys, list[bytes]] = {}
    for keys, payload in batch:
        by_stream.setdefault(keys, []).append(payload)
    await _ADD_ALL.run(
        sender,
        [
            ([keys.clicks_stream.encode()], payloads[start : start + ADD_ALL_CHUNK])
            for keys, payloads in by_stream.items()
            for start in range(0, len(payloads), ADD_ALL_CHUNK)
        ],
    )


def queue_add(pipe: Pipeline, keys: RedisKeys, payload: bytes) -> None:
    """Queue ``XADD <clicks> * c <payload>`` on ``pipe``; the caller executes the pipeline."""
    pipe.xadd(keys.clicks_stream, {STREAM_FIELD: payload})


async def add_many(
    redis: aioredis.Redis, keys: RedisKeys, payloads: Iterable[bytes]
) -> list[bytes]:
    """Append payloads in order (pipelined, in chunks); return their entry ids."""
    ids: list[bytes] = []
    chunk: list[bytes] = []
    for payload in payloads:
        chunk.append(payload)
        if len(chunk) >= _ADD_CHUNK:
            ids += await _add_chunk(redis, keys, chunk)
            chunk = []
    if chunk:
        ids += await _add_chunk(redis, keys, chunk)
    return ids


async def _add_chunk(redis: aioredis.Redis, keys: RedisKeys, payloads: list[bytes]) -> list[bytes]:
    async with redis.pipeline(transaction=False) as pipe:
        for payload in payloads:
            queue_add(pipe, keys, payload)
        return list(await pipe.execute())


async def ensure_group(redis: aioredis.Redis, keys: RedisKeys) -> None:
    """Create the consumer group (and the stream) unless it exists; it starts at id 0."""
    try:
        await redis.xgroup_create(keys.clicks_stream, keys.consumer_group, id="0", mkstream=True)
    except ResponseError as exc:
        if not str(exc).startswith("BUSYGROUP"):
            raise


async def read_own_pending(
    redis: aioredis.Redis, keys: RedisKeys, consumer: str, count: int, after: bytes = b"0"
) -> list[Entry]:
    """Entries already delivered to ``consumer`` and not acked yet, oldest first; only
    those with ids above ``after``."""
    response = await redis.xreadgroup(
        keys.consumer_group, consumer, {keys.clicks_stream: after}, count=count
    )
    return _entries(response)


async def read_new(
    redis: aioredis.Redis, keys: RedisKeys, consumer: str, count: int, block_ms: int
) -> list[Entry]:
    """Up to ``count`` never-delivered entries, waiting at most ``block_ms`` for the first."""
    response = await redis.xreadgroup(
        keys.consumer_group, consumer, {keys.clicks_stream: ">"}, count=count, block=block_ms
    )
    return _entries(response)


async def claim_idle(
    redis: aioredis.Redis,
    keys: RedisKeys,
    consumer: str,
    min_idle_ms: int,
    count: int,
    start: bytes = b"0-0",
) -> tuple[list[Entry], bytes]:
    """Take over entries pending longer than ``min_idle_ms`` on any consumer.

    Returns the claimed entries and the cursor to pass as ``start`` next time (``b"0-0"``
    once the whole pending list was scanned)."""
    cursor, claimed, *_ = await redis.xautoclaim(
        keys.clicks_stream, keys.consumer_group, consumer, min_idle_ms, start, count=count
    )
    return [_entry(item) for item in claimed], _as_bytes(cursor)


async def ack(
    redis: aioredis.Redis,
    keys: RedisKeys,
    entry_ids: Sequence[bytes],
    dead_letters: Sequence[DeadLetter] = (),
    parked: Sequence[Parked] = (),
) -> int:
    """Move dead letters and parked entries aside and ack ``entry_ids``, atomically (MULTI):
    an entry leaves the stream only once it is in its side stream. Returns acks done."""
    if not entry_ids and not dead_letters and not parked:
        return 0
    async with redis.pipeline(transaction=True) as pipe:
        for letter in dead_letters:
            queue_dead_letter(pipe, keys, letter)
        for entry in parked:
            _queue_aside(pipe, keys.parked_stream, entry.entry_id, entry.reason, entry.payload)
        if entry_ids:
            pipe.xack(keys.clicks_stream, keys.consumer_group, *entry_ids)
        results = await pipe.execute()
    return int(results[-1]) if entry_ids else 0


def queue_dead_letter(pipe: Pipeline, keys: RedisKeys, letter: DeadLetter) -> None:
    """Queue the dead-letter entry: the original id, the reason and the payload if any."""
    _queue_aside(pipe, keys.dead_letter_stream, letter.entry_id, letter.reason, letter.payload)


def _queue_aside(
    pipe: Pipeline, side_stream: str, entry_id: bytes, reason: str, payload: bytes | None
) -> None:
    fields: dict[bytes, bytes] = {b"id": entry_id, b"reason": reason.encode()}
    if payload is not None:
        fields[STREAM_FIELD] = payload
    pipe.xadd(side_stream, fields)  # type: ignore[arg-type]


async def pending_count(redis: aioredis.Redis, keys: RedisKeys) -> int:
    """How many entries the group has delivered and not acked yet (0 without a group)."""
    try:
        summary = await redis.xpending(keys.clicks_stream, keys.consumer_group)
    except ResponseError:
        return 0
    return int(summary["pending"])


async def trim_acknowledged(redis: aioredis.Redis, keys: RedisKeys) -> int:
    """Delete the entries that every consumer group of the stream has acked; return how many.

    The bound is the oldest entry still needed by any group: its oldest pending entry, or
    the first one after its last-delivered id. The groups' last-delivered ids are read
    *before* their pending lists: an entry below both was delivered before the first read
    and was not pending at the second, so it was acked, and an ack is never undone. Claims
    keep an entry pending; new deliveries only go above the last-delivered id read.
    """
    try:
        groups = await redis.xinfo_groups(keys.clicks_stream)
    except ResponseError:  # no stream yet
        return 0
    if not groups:  # nobody reads it: everything is still needed
        return 0
    bounds = []
    for group in groups:
        bounds.append(_next_id(_parse_id(group["last-delivered-id"])))
        summary = await redis.xpending(keys.clicks_stream, group["name"])
        if summary["pending"]:
            bounds.append(_parse_id(summary["min"]))
    ms, seq = min(bounds)
    if (ms, seq) <= (0, 1):
        return 0
    return int(await redis.xtrim(keys.clicks_stream, minid=f"{ms}-{seq}", approximate=False))


@dataclass(frozen=True, slots=True)
class Backlog:
    length: int  # entries in the stream
    pending: int  # delivered, not acked
    oldest_ms: int | None  # time of the oldest entry not acked yet (None: all acked)


async def backlog(redis: aioredis.Redis, keys: RedisKeys) -> Backlog:
    """How far behind the flushers are: what is still to be stored, and since when."""
    try:
        length = int(await redis.xlen(keys.clicks_stream))
        groups = await redis.xinfo_groups(keys.clicks_stream)
    except ResponseError:  # no stream yet
        return Backlog(0, 0, None)
    group = next((g for g in groups if _as_bytes(g["name"]) == keys.consumer_group.encode()), None)
    if group is None:
        return Backlog(length, 0, None)
    pending = int(group["pending"])
    oldest: tuple[int, int] | None = None
    if pending:
        summary = await redis.xpending(keys.clicks_stream, keys.consumer_group)
        if summary["min"] is not None:  # None: all acked since XINFO was read
            oldest = _parse_id(summary["min"])
    else:
        # The first entry after the last delivered one, if any, has waited the longest.
        after = _next_id(_parse_id(group["last-delivered-id"]))
        first = await redis.xrange(keys.clicks_stream, min=f"{after[0]}-{after[1]}", count=1)
        if first and first[0][0] is not None:
            oldest = _parse_id(first[0][0])
    return Backlog(length, pending, None if oldest is None else oldest[0])


# Moves up to ARGV[3] entries of the side stream KEYS[1], ids ARGV[1] to ARGV[2], back into
# the click stream KEYS[2]: each with a payload is added there and deleted here in one atomic
# step, so it is moved exactly once, whoever else runs the same. Returns, per entry: {side id,
# original id, new id ('': no payload, left in place), reason}.
_REDRIVE = b"""
local moved = {}
for i, entry in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])) do
  local fields, payload, origin, reason, new = entry[2], nil, '', '', ''
  for j = 1, #fields, 2 do
    local name, value = fields[j], fields[j + 1]
    if name == 'c' then payload = value elseif name == 'id' then origin = value
    elseif name == 'reason' then reason = value end
  end
  if payload then
    new = redis.call('XADD', KEYS[2], '*', 'c', payload)
    redis.call('XDEL', KEYS[1], entry[1])
  end
  moved[i] = {entry[1], origin, new, reason}
end
return moved
"""


@dataclass(frozen=True, slots=True)
class SideEntry:
    """An entry of a dead-letter or parked stream, as ``redrive`` found (and moved) it."""

    side_id: bytes  # its id in the side stream
    original_id: bytes  # the id it had in the click stream
    reason: str
    movable: bool  # it has a payload (an entry without one stays where it is)
    new_id: bytes | None  # its id back in the click stream; None: not moved


async def redrive(
    redis: aioredis.Redis,
    keys: RedisKeys,
    side_stream: str,
    count: int,
    after: bytes | None = None,
    until: bytes = b"+",
    *,
    dry_run: bool = False,
) -> list[SideEntry]:
    """Move up to ``count`` entries of ``side_stream`` (a shard's dead-letter or parked
    stream, of the same hash tag as ``keys``) back into the click stream, oldest first:
    those with ids above ``after`` (from the start when None) up to ``until``. One atomic
    script call; an entry without a payload stays. ``dry_run``: only read them."""
    start = b"-" if after is None else b"(" + after
    if dry_run:
        found = map(_entry, await redis.xrange(side_stream, start, until, count) or [])
        return [
            SideEntry(
                i, f.get(b"id", b""), f.get(b"reason", b"").decode("utf-8", "replace"),
                STREAM_FIELD in f, None,
            )
            for i, f in found
        ]  # fmt: skip
    script = redis.register_script(_REDRIVE)
    reply = await script(keys=[side_stream, keys.clicks_stream], args=[start, until, count])
    return [
        SideEntry(side_id, origin, reason.decode("utf-8", "replace"), bool(new), new or None)
        for side_id, origin, new, reason in reply
    ]


async def last_id(redis: aioredis.Redis, stream_key: str) -> bytes | None:
    """The id of the newest entry of a stream (None when it is empty or does not exist)."""
    newest = await redis.xrevrange(stream_key, count=1)
    return _entry(newest[0])[0] if newest else None


# Deletes the consumers of group ARGV[1] idle for more than ARGV[2] ms that hold no pending
# entry, but none of ARGV[3...]; atomic, so a consumer that reads meanwhile is not deleted
# with entries (XGROUP DELCONSUMER drops them: they would never be acked). Returns {name,
# idle ms} per consumer deleted.
_PRUNE = b"""
local own, removed = {}, {}
for i = 3, #ARGV do own[ARGV[i]] = true end
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if not own[info['name']] and info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = {info['name'], info['idle']}
  end
end
return removed
"""


async def prune_consumers(
    redis: aioredis.Redis, keys: RedisKeys, own: Iterable[str], min_idle_ms: int
) -> list[tuple[str, int]]:
    """Delete the group's consumers idle for more than ``min_idle_ms`` that hold no pending
    entry, never those named in ``own``. Returns (name, idle ms) of each deleted."""
    script = redis.register_script(_PRUNE)
    try:
        removed = await script(
            keys=[keys.clicks_stream], args=[keys.consumer_group, min_idle_ms, *own]
        )
    except ResponseError as exc:
        if "no such key" in str(exc) or "NOGROUP" in str(exc):  # nothing to prune yet
            return []
        raise
    return [(_as_bytes(name).decode(), int(idle)) for name, idle in removed]


def _entries(response: Any) -> list[Entry]:
    """XREADGROUP's reply for our single stream, in RESP2 (list) or RESP3 (dict) shape."""
    if not response:
        return []
    if isinstance(response, dict):
        streams = list(response.values())
        return [_entry(item) for item in streams[0]] if streams else []
    return [_entry(item) for item in response[0][1]]


def _entry(item: Any) -> Entry:
    entry_id, fields = item
    return _as_bytes(entry_id), dict(fields or {})


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _parse_id(value: bytes | str) -> tuple[int, int]:
    ms, _, seq = _as_bytes(value).partition(b"-")
    return int(ms), int(seq or 0)


def _next_id(entry_id: tuple[int, int]) -> tuple[int, int]:
    ms, seq = entry_id
    return (ms + 1, 0) if seq >= 2**64 - 1 else (ms, seq + 1)
