"""The click stream: the only module that speaks Redis stream commands.

The redirect appends one entry per click (``queue_add``, never capped); the flushers read it
through one consumer group, ack what they committed, and ``trim_acknowledged`` drops only
what every group has acked. Entry ids and fields are bytes: use a client without
``decode_responses``.
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


# Appends every argument to the stream: one command and one reply for a whole batch, atomic.
_ADD_ALL = resp.Script(
    b"for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', 'c', ARGV[i]) end return #ARGV"
)
ADD_ALL_CHUNK = 1000


async def add_batch(sender: resp.PackedSender, batch: Sequence[tuple[RedisKeys, bytes]]) -> None:
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
) -> int:
    """Move dead letters aside and ack ``entry_ids``, atomically (MULTI); return acks done."""
    if not entry_ids and not dead_letters:
        return 0
    async with redis.pipeline(transaction=True) as pipe:
        for letter in dead_letters:
            queue_dead_letter(pipe, keys, letter)
        if entry_ids:
            pipe.xack(keys.clicks_stream, keys.consumer_group, *entry_ids)
        results = await pipe.execute()
    return int(results[-1]) if entry_ids else 0


def queue_dead_letter(pipe: Pipeline, keys: RedisKeys, letter: DeadLetter) -> None:
    """Queue the dead-letter entry: the original id, the reason and the payload if any."""
    fields: dict[bytes, bytes] = {b"id": letter.entry_id, b"reason": letter.reason.encode()}
    if letter.payload is not None:
        fields[STREAM_FIELD] = letter.payload
    pipe.xadd(keys.dead_letter_stream, fields)  # type: ignore[arg-type]


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
