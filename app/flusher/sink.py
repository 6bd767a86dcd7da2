"""Postgres bulk write of clicks, idempotent on the click id.

A batch is copied into a per-connection temporary staging table, then inserted into
``clicks`` with ``ON CONFLICT DO NOTHING``, in one transaction: a replayed or re-claimed click
never makes a second row, and a batch is either wholly committed or not at all. The same
statement counts the rows it inserted into the traffic rollups (``app/traffic/rollups.py``),
by their days in the period time zone: the per-dimension and per-link counts as deltas, which
``fold`` adds to their rollups about once a second. Each row carries the click's traffic dimensions
(``app/flusher/dimensions.py``) in the same COPY, then the link's rule that chose its
destination (``rule``, record minor 1.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import asyncpg
from asyncpg.pgproto.pgproto import UUID  # uuid.UUID's subclass, parsed in C: 10x faster

from app.clicks.record import Click, EventError
from app.core.db import Pool
from app.errors import ClickTrackError
from app.flusher.dimensions import DIMENSION_COLUMNS, NO_VALUES, Values
from app.traffic import rollups

COLUMNS = (
    "click_id",
    "ts",
    "link_id",
    "code",
    "publisher_id",
    "af",
    "cn",
    "cv",
    "dp",
    "session_id",
    "session_new",
    "ip",
    "user_agent",
    "referer",
    "accept_language",
    "method",
    "flags",
    *DIMENSION_COLUMNS,
    "rule",  # record minor 1.3: the link's rule that chose the destination (1-based)
)
Row = tuple[object, ...]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_BIGINT = range(-(2**63), 2**63)
_SMALLINT = range(-(2**15), 2**15)
_RULE = range(1, 2**15)  # a 1-based position, stored as smallint
_TEXT = (
    "code", "af", "cn", "cv", "dp", "session_id", "ip", "user_agent", "referer",
    "accept_language", "method",
)  # fmt: skip
_STAGING = "clicks_staging"
_CREATE_STAGING = f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (LIKE clicks) ON COMMIT DELETE ROWS"
_COLUMN_LIST = ", ".join(COLUMNS)
# Sorted, so that flushers inserting overlapping batches lock keys in the same order.
_INSERT = (
    f"INSERT INTO clicks ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {_STAGING} "
    "ORDER BY click_id ON CONFLICT DO NOTHING"
)
_INSERT_AND_COUNT = rollups.counting(f"{_INSERT} RETURNING {rollups.SOURCE_COLUMNS}")


def to_row(click: Click, dimensions: Values = NO_VALUES) -> Row:
    """The click as a ``clicks`` row, with its ``dimensions`` (``DIMENSION_COLUMNS``'
    values, resolved: no NUL, bounded lengths); raises ``EventError`` for what Postgres would refuse
    (so that one bad click goes to the dead letters instead of failing its whole batch)."""
    try:
        click_id = UUID(click.click_id)
        ts = _EPOCH + click.ts_us * _MICROSECOND
    except (ValueError, OverflowError) as exc:
        raise EventError(f"bad click id or time: {exc}") from None
    if int(click.link_id) not in _BIGINT or int(click.publisher_id) not in _BIGINT:
        raise EventError("link or publisher id out of range")
    # int(): after classification flags is an IntFlag, and `in range` is a linear scan for
    # anything but a plain int.
    if int(click.flags) not in _SMALLINT:
        raise EventError("flags out of range")
    if click.rule is not None and click.rule not in _RULE:
        raise EventError("rule out of range")
    # All text fields at once first (one string), each one only to name the culprit.
    if "\x00" in (
        f"{click.code}{click.af}{click.cn}{click.cv}{click.dp}{click.session_id}{click.ip}"
        f"{click.user_agent}{click.referer}{click.accept_language}{click.method}"
    ):
        for name in _TEXT:
            value = getattr(click, name)
            if value is not None and "\x00" in value:
                raise EventError(f"field {name} contains a NUL character")
    return (
        click_id,
        ts,
        click.link_id,
        click.code,
        click.publisher_id,
        click.af,
        click.cn,
        click.cv,
        click.dp,
        click.session_id,
        click.session_new,
        click.ip,
        click.user_agent,
        click.referer,
        click.accept_language,
        click.method,
        click.flags,
        *dimensions,
        click.rule,
    )


def row_day(row: Row) -> date:
    """The UTC day of a row, i.e. its partition."""
    ts = row[1]
    assert isinstance(ts, datetime)
    return ts.date()


class PartitionError(ClickTrackError):
    """A day partition could not be created."""


class ClickSink:
    def __init__(self, pool: Pool, *, zone: str, count_traffic: bool = True) -> None:
        """``zone``: the IANA name of the time zone whose days the rollups count clicks in
        (``CLICKTRACK_PERIOD_TIMEZONE``). ``count_traffic=False`` skips the traffic rollups:
        only to measure their cost."""
        self._pool = pool
        self._zone = zone
        self._count_traffic = count_traffic

    async def write(self, rows: Sequence[Row]) -> int:
        """Store rows not stored yet, in one transaction; return how many were new."""
        if not rows:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_CREATE_STAGING)
            await conn.copy_records_to_table(_STAGING, records=rows, columns=COLUMNS)
            if self._count_traffic:
                new: int = await conn.fetchval(_INSERT_AND_COUNT, self._zone)
                return new
            status = await conn.execute(_INSERT)
        return int(status.rsplit(" ", 1)[-1])

    async def fold(self) -> int:
        """Fold the rollup deltas pending (``rollups.fold``); return how many delta rows."""
        async with self._pool.acquire() as conn:
            return await rollups.fold(conn)

    async def ensure_partition(self, day: date) -> None:
        """Create the partition of one UTC day (moving its rows out of the default one).

        Raises ``PartitionError`` when Postgres refuses: the caller may go on writing, the
        default partition takes the rows. Failing to connect raises as usual."""
        async with self._pool.acquire() as conn:
            try:
                await conn.execute("SELECT ensure_click_partition($1::date)", day)
            except asyncpg.PostgresError as exc:
                raise PartitionError(f"{type(exc).__name__}: {exc}") from exc

    async def drop_partitions_before(self, cutoff: date) -> int:
        """Retention: drop day partitions (and default-partition rows) older than cutoff."""
        dropped: int = await self._pool.fetchval(
            "SELECT drop_click_partitions_before($1::date)", cutoff
        )
        return dropped
